/*
 * fuzz_dotenv.c - the .env parser on arbitrary bytes. conf_load() must answer VEND_OK or
 * VEND_ECONF, never crash, overrun or leak, and every line it reports must be one of ours
 * ("vendd: ...") with no raw control byte from the file in it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf.h"
#include "fuzz.h"
#include "vend/err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[64], *report = NULL;
    char *envp[] = {NULL};
    struct vendd_conf conf;
    size_t report_len = 0;
    FILE *f, *errout;
    int rc;

    snprintf(path, sizeof(path), "/tmp/vendd-fuzz-dotenv-%ld", (long)getpid());
    f = fopen(path, "wb");
    FUZZ_CHECK(f != NULL);
    FUZZ_CHECK(fwrite(data, 1, size, f) == size);
    FUZZ_CHECK(fclose(f) == 0);
    errout = open_memstream(&report, &report_len);
    FUZZ_CHECK(errout != NULL);
    rc = conf_load(&conf, envp, path, errout);
    FUZZ_CHECK(fclose(errout) == 0);
    unlink(path);

    FUZZ_CHECK(rc == VEND_OK || rc == VEND_ECONF);
    FUZZ_CHECK((rc == VEND_OK) == (report_len == 0));
    for (size_t i = 0; i < report_len; i++) {
        bool line_start = i == 0 || report[i - 1] == '\n';

        FUZZ_CHECK(!line_start || strncmp(report + i, "vendd: ", 7) == 0);
        FUZZ_CHECK(report[i] == '\n' || (unsigned char)report[i] >= 0x20);
        FUZZ_CHECK(report[i] != 0x7f);
    }
    free(report);
    return 0;
}
