/*
 * xmalloc.h - allocation that cannot fail: on out-of-memory the daemon logs
 * and exits, and systemd restarts it (docs/HACKING.md). Nothing in the
 * daemon checks for NULL after these. The codec and firmware never allocate.
 */
#ifndef VENDD_XMALLOC_H
#define VENDD_XMALLOC_H

#include <stddef.h>

void *xmalloc(size_t size);
void *xcalloc(size_t nmemb, size_t size);
void *xrealloc(void *ptr, size_t size);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);

/* glibc's malloc as main() sets it (vendd.c): freed heap kept up to the trim threshold, and
 * blocks from the mmap threshold up mapped and unmapped at each allocation. */
#define XMALLOC_TRIM_THRESHOLD (16 * 1024 * 1024)
#define XMALLOC_MMAP_THRESHOLD (1024 * 1024)

#endif
