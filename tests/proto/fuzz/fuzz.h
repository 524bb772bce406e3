/*
 * fuzz.h - shared by the fuzz targets: the libFuzzer entry point and a check
 * that aborts (so both libFuzzer and the corpus driver report it as a crash).
 */
#ifndef VEND_FUZZ_H
#define VEND_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vend/codec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

/* Whatever the outcome, diag must agree with rc and hold a terminated field name. */
static inline void fuzz_check_diag(int rc, const struct vend_diag *dg)
{
    FUZZ_CHECK(dg->err == rc);
    FUZZ_CHECK(memchr(dg->field, '\0', sizeof(dg->field)) != NULL);
    FUZZ_CHECK((rc == VEND_OK) == (dg->field[0] == '\0'));
}

#endif
