/*
 * fuzz_vendd.h - a struct vendd for the fuzz targets that decode with daemon code: a real
 * SQLite database (migrated) in a temporary directory, a real loop, the default config, the
 * log quiet (errors only) and the wall and monotonic clocks. No cmocka: a failure to set it
 * up aborts, as libFuzzer reports a crash. The directory goes away at exit.
 */
#ifndef VEND_FUZZ_VENDD_H
#define VEND_FUZZ_VENDD_H

#include "conf.h"
#include "vendd.h"

struct fuzz_vendd {
    struct vendd v;
    struct vendd_conf conf;
    char dir[256];
};

/* Set up f (once per process); also removes the directory at exit. */
void fuzz_vendd_open(struct fuzz_vendd *f);

#endif
