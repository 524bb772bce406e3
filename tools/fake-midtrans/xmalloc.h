/*
 * xmalloc.h - allocation that cannot fail, as in the daemon: on
 * out-of-memory fake-midtrans prints one line and exits. It is a test tool;
 * a caller that checked for NULL everywhere would only hide the real logic.
 */
#ifndef FAKE_MIDTRANS_XMALLOC_H
#define FAKE_MIDTRANS_XMALLOC_H

#include <stddef.h>

void *xmalloc(size_t size);
void *xcalloc(size_t nmemb, size_t size);
void *xrealloc(void *ptr, size_t size);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);

#endif
