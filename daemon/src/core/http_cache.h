/*
 * http_cache.h - answers of read routes kept until the data under them changes.
 *
 * The hot reads (a machine's stock, an order) are asked far more often than the database
 * changes, and building them (SQL, JSON) cost five times a libmicrohttpd hello-world. An
 * answer is kept with the database's data version at the time it was built (db_version():
 * every commit, ours or another process's, moves it) and served again only while the version
 * is the same, so a cached answer is never older than the data. Bounded: HTTP_CACHE_SLOTS
 * answers (sets of 8 by the request's path, the least recently used of a full set replaced)
 * of at most HTTP_CACHE_BODY_MAX bytes each and HTTP_CACHE_BYTES_MAX in all, counted as kept
 * (answers evicted in turn to make room).
 *
 * Kept small: a fleet's stock and order answers are 20 MB as text and the daemon's whole
 * budget is 32 MB. The first answer kept under a path prefix ("/api/orders/") is that
 * prefix's template, and the others are kept as copies from it and the bytes that differ
 * (mostly values: a fifth to a tenth of the text), a few microseconds to write and less to
 * read back.
 */
#ifndef VENDD_HTTP_CACHE_H
#define VENDD_HTTP_CACHE_H

#include <stdint.h>

#define HTTP_CACHE_SLOTS     65536
#define HTTP_CACHE_BODY_MAX  16384
#define HTTP_CACHE_BYTES_MAX (4u * 1024 * 1024)
#define HTTP_CACHE_KEY_MAX   255
/* A version that could not be read: nothing is kept or served at it. */
#define HTTP_CACHE_VERSION_UNKNOWN UINT64_MAX

struct http_cache;

struct http_cache *http_cache_new(void);
void http_cache_free(struct http_cache *c);

/* A malloc'd copy of the answer kept for key at version, or NULL. */
char *http_cache_get(struct http_cache *c, const char *key, const uint64_t version[2]);

/* Keep body as the answer for key at version (not if either is too long). */
void http_cache_put(struct http_cache *c, const char *key, const uint64_t version[2],
                    const char *body);

#endif
