/*
 * page.h - the one pagination rule of every list route (docs/HTTP-API.md "Lists").
 *
 * In: ?limit= (1..PAGE_LIMIT_MAX, default PAGE_LIMIT_DEFAULT) and ?cursor=, which is the
 * next_cursor of the page before, passed back as given. Out: at most limit items and
 * "next_cursor", the cursor of the page after them, or null on the last page.
 *
 * Keyset pagination: a cursor holds the sort key of the last item shown, and the next page
 * is the rows after that key, read from an index, never by OFFSET. So a page costs the same
 * at the end of a long list as at its start, and a row added or removed while a client
 * walks the list never makes it skip or repeat another one. A cursor is opaque to clients
 * (base64url of the list's name and the key), and checked field by field as strictly as the
 * identifiers it holds: a bad one is 422 naming 'cursor', never a silent first page.
 *
 * A handler reads the page (page_read), asks its domain function for at most limit + 1
 * rows after the key (the extra row only tells that a next page exists) and answers with
 * page_reply(), which drops that row and encodes the cursor from the last item.
 */
#ifndef VENDD_PAGE_H
#define VENDD_PAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "http.h"
#include "store.h"
#include "vend/topic.h"

/* Items per page: the default, and the most a client may ask for. */
#define PAGE_LIMIT_DEFAULT 50
#define PAGE_LIMIT_MAX     500

/* Fields in a sort key, and the longest one (an order id). */
#define PAGE_KEYS_MAX 2
#define PAGE_KEY_MAX  VEND_ORDER_ID_MAX

/* What a field of a sort key is, and so the rule a cursor's copy of it must keep. */
enum page_key_kind {
    PAGE_KEY_MACHINE_ID, /* VEND_MACHINE_ID_PATTERN */
    PAGE_KEY_ORDER_ID,   /* VEND_ORDER_ID_PATTERN */
    PAGE_KEY_TIME,       /* the schema's ISO 8601 form, "2026-11-27T09:30:00.123Z" */
    PAGE_KEY_TIME_NULL,  /* the same, or null (key[] is then "") */
    PAGE_KEY_ROWID,      /* an INTEGER PRIMARY KEY, 1..INT64_MAX */
};

/* A list's sort key: the fields of its items it is made of, in sort order. */
struct page_spec {
    const char *list; /* names the list in its cursors: another list's cursor is refused */
    size_t nkeys;
    struct {
        const char *field;
        enum page_key_kind kind;
    } keys[PAGE_KEYS_MAX];
};

/* A request's page. */
struct page {
    int64_t limit;
    bool after; /* a cursor was given: the page starts after key */
    char key[PAGE_KEYS_MAX][PAGE_KEY_MAX + 1];
    int64_t key_int[PAGE_KEYS_MAX]; /* PAGE_KEY_ROWID fields, as numbers */
};

/*
 * Read ?limit= and ?cursor= of req for the list spec into *pg. On a bad one, answers 422
 * INVALID_FIELD naming it and returns false; the handler then just returns.
 */
bool page_read(const struct http_request *req, const struct page_spec *spec, struct page *pg,
               struct http_response *res);

/* The rows a handler asks its domain function for: one more than the page shows. */
static inline int64_t page_rows(const struct page *pg)
{
    return pg->limit + 1;
}

/*
 * Answer 200 with doc (stolen), rows (stolen: at most page_rows(pg) of the list's items, in
 * its order) set in it as array_key, and "next_cursor". NULL doc or rows (a domain function
 * that failed after all) is a 500.
 */
void page_reply(struct http_response *res, const struct page_spec *spec, const struct page *pg,
                json_t *doc, const char *array_key, json_t *rows);

#endif
