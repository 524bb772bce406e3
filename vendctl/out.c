/*
 * out.c - tables and "label: value" blocks for people, escaped for the terminal (out.h).
 */
#include "out.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BOLD  "\033[1m"
#define RESET "\033[0m"
#define GAP   "  "

void out_init(struct out *o, FILE *f)
{
    const char *nocolor = getenv("NO_COLOR"), *term = getenv("TERM");

    o->f = f;
    o->color = isatty(fileno(f)) && (nocolor == NULL || nocolor[0] == '\0') &&
               (term == NULL || strcmp(term, "dumb") != 0);
}

static bool is_control(unsigned char ch)
{
    return ch < 0x20 || ch == 0x7f;
}

void out_escape(char *dst, size_t size, const char *src)
{
    size_t i = 0;

    for (; src != NULL && *src != '\0' && i + 1 < size; src++, i++)
        dst[i] = is_control((unsigned char)*src) ? '?' : *src;
    dst[i] = '\0';
}

/* Columns a string takes on a terminal: its UTF-8 characters (jansson gives valid UTF-8). */
static size_t width(const char *s)
{
    size_t n = 0;

    for (; *s != '\0'; s++) {
        if (((unsigned char)*s & 0xc0) != 0x80)
            n++;
    }
    return n;
}

/* "2025-11-27T09:30:00.000Z" -> "2025-11-27 09:30:00Z"; anything else as it is. */
static void short_time(char *s)
{
    size_t n = strlen(s);

    if (n == 24 && s[10] == 'T' && s[19] == '.' && s[23] == 'Z') {
        s[10] = ' ';
        s[19] = 'Z';
        s[20] = '\0';
    }
}

char *out_value(const json_t *v, unsigned flags)
{
    char num[32], *s = NULL;

    if (v == NULL || json_is_null(v)) {
        s = strdup("-");
    } else if (json_is_string(v)) {
        size_t n = json_string_length(v);

        s = malloc(n + 1);
        if (s != NULL)
            out_escape(s, n + 1, json_string_value(v));
        if (s != NULL && (flags & OUT_TIME))
            short_time(s);
    } else if (json_is_integer(v)) {
        snprintf(num, sizeof(num), "%lld", (long long)json_integer_value(v));
        s = strdup(num);
    } else if (json_is_real(v)) {
        snprintf(num, sizeof(num), "%g", json_real_value(v));
        s = strdup(num);
    } else if (json_is_boolean(v)) {
        s = strdup(json_is_true(v) ? "yes" : "no");
    } else {
        char *dump = json_dumps(v, JSON_COMPACT);

        if (dump != NULL) {
            /* Escaping never lengthens: in place. */
            out_escape(dump, strlen(dump) + 1, dump);
            s = dump;
        }
    }
    return s;
}

static void pad(FILE *f, size_t n)
{
    while (n-- > 0)
        fputc(' ', f);
}

/* One cell: right or left in width w, no padding after the last column. */
static void cell(const struct out *o, const char *s, size_t w, unsigned flags, bool last)
{
    size_t n = width(s);

    if (flags & OUT_RIGHT)
        pad(o->f, w > n ? w - n : 0);
    fputs(s, o->f);
    if (!(flags & OUT_RIGHT) && !last)
        pad(o->f, w > n ? w - n : 0);
}

void out_table(const struct out *o, const json_t *items, const struct out_col *cols, size_t ncols)
{
    size_t nrows = json_array_size(items), *w = calloc(ncols, sizeof(*w));
    char **cells = calloc(nrows * ncols + 1, sizeof(*cells));

    if (w == NULL || cells == NULL) {
        fputs("vendctl: out of memory\n", stderr);
        goto out;
    }
    for (size_t c = 0; c < ncols; c++)
        w[c] = width(cols[c].header);
    for (size_t r = 0; r < nrows; r++) {
        const json_t *it = json_array_get(items, r);

        for (size_t c = 0; c < ncols; c++) {
            char *s = out_value(json_object_get(it, cols[c].key), cols[c].flags);

            cells[r * ncols + c] = s;
            if (s != NULL && width(s) > w[c])
                w[c] = width(s);
        }
    }
    if (o->color)
        fputs(BOLD, o->f);
    for (size_t c = 0; c < ncols; c++) {
        cell(o, cols[c].header, w[c], cols[c].flags, c + 1 == ncols);
        if (c + 1 < ncols)
            fputs(GAP, o->f);
    }
    if (o->color)
        fputs(RESET, o->f);
    fputc('\n', o->f);
    for (size_t r = 0; r < nrows; r++) {
        for (size_t c = 0; c < ncols; c++) {
            const char *s = cells[r * ncols + c];

            cell(o, s != NULL ? s : "?", w[c], cols[c].flags, c + 1 == ncols);
            if (c + 1 < ncols)
                fputs(GAP, o->f);
        }
        fputc('\n', o->f);
    }
out:
    for (size_t i = 0; cells != NULL && i < nrows * ncols; i++)
        free(cells[i]);
    free(cells);
    free(w);
}

void out_fields(const struct out *o, const json_t *obj, const struct out_col *cols, size_t ncols)
{
    size_t w = 0;

    for (size_t c = 0; c < ncols; c++) {
        if (width(cols[c].header) > w)
            w = width(cols[c].header);
    }
    for (size_t c = 0; c < ncols; c++) {
        char *s = out_value(json_object_get(obj, cols[c].key), cols[c].flags & ~OUT_RIGHT);

        if (o->color)
            fputs(BOLD, o->f);
        fputs(cols[c].header, o->f);
        if (o->color)
            fputs(RESET, o->f);
        pad(o->f, w - width(cols[c].header));
        fprintf(o->f, GAP "%s\n", s != NULL ? s : "?");
        free(s);
    }
}

void out_heading(const struct out *o, const char *title)
{
    fprintf(o->f, "\n%s%s%s\n", o->color ? BOLD : "", title, o->color ? RESET : "");
}

void out_json(FILE *f, const json_t *doc)
{
    /* Compact, one line: what vendd sends, ready for jq or a line-based reader. */
    json_dumpf(doc, f, JSON_COMPACT);
    fputc('\n', f);
}
