/*
 * web_assets.h - the files of the dashboard and the purchase page, compiled in at build time
 * (every file of daemon/web/, and Debian's qrcode.js) by cmake/embed_web.cmake. api_web.c
 * serves them.
 */
#ifndef VENDD_WEB_ASSETS_H
#define VENDD_WEB_ASSETS_H

#include <stddef.h>

struct web_asset {
    const char *name;          /* the file's name: "index.html", "app.js" */
    const char *content_type;  /* from its extension, with a charset for text */
    const unsigned char *data; /* its bytes, exactly as on disk */
    size_t len;
    const char *etag; /* a quoted strong ETag: "\"<16 hex digits of its SHA-256>\"" */
};

/* In file-name order; names are unique. */
extern const struct web_asset web_assets[];
extern const size_t web_nassets;

#endif
