/*
 * out.h - vendctl's output for people: tables with aligned columns, "label: value" blocks,
 * and vendd's text made safe for a terminal (control characters never reach it). Bold
 * headings only on a terminal, and never with NO_COLOR set or TERM=dumb.
 */
#ifndef VENDCTL_OUT_H
#define VENDCTL_OUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include <jansson.h>

struct out {
    FILE *f;
    bool color;
};

#define OUT_RIGHT 1u /* right-aligned (numbers) */
#define OUT_TIME  2u /* "2025-11-27T09:30:00.000Z" shown as "2025-11-27 09:30:00Z" */

/* One column of a table (or one line of a block): its header and the member it shows. */
struct out_col {
    const char *header;
    const char *key;
    unsigned flags;
};

void out_init(struct out *o, FILE *f);

/*
 * A table of items (an array of objects): a header line, then a line per item, each column
 * as wide as its widest cell. A missing member or null shows "-", a boolean yes/no, an
 * object or array its compact JSON.
 */
void out_table(const struct out *o, const json_t *items, const struct out_col *cols, size_t ncols);
/* One "HEADER  value" line per column of obj, labels aligned. */
void out_fields(const struct out *o, const json_t *obj, const struct out_col *cols, size_t ncols);
/* An empty line and title, to head the next table of a multi-part answer. */
void out_heading(const struct out *o, const char *title);

/* v as a cell (see out_table()), malloc'd; NULL on out of memory. */
char *out_value(const json_t *v, unsigned flags);
/*
 * src into dst (size > 0, always terminated) with every control character (C0, DEL) as '?',
 * so that text from the server cannot move the cursor or change the terminal's colours.
 */
void out_escape(char *dst, size_t size, const char *src);
/* doc as one line of compact JSON and a newline. */
void out_json(FILE *f, const json_t *doc);

#endif
