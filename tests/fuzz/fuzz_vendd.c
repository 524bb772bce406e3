/* fuzz_vendd.c - see fuzz_vendd.h. */
#include "fuzz_vendd.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "db.h"
#include "fuzz.h"
#include "log.h"
#include "loop.h"
#include "vend/err.h"

static struct fuzz_vendd *s_open;

/* The database's files, then the directory; the process is ending. */
static void cleanup(void)
{
    static const char *const files[] = {"vendd.db", "vendd.db-wal", "vendd.db-shm",
                                        "vendd.db-journal"};
    char path[320];

    if (s_open == NULL || s_open->dir[0] == '\0')
        return;
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", s_open->dir, files[i]);
        unlink(path);
    }
    rmdir(s_open->dir);
}

void fuzz_vendd_open(struct fuzz_vendd *f)
{
    char *no_env[] = {NULL};
    char url[320], err[256] = "";
    /* A RAM disk when there is one: the fuzzers write, and an fsync per input costs. */
    const char *tmp = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR");

    memset(f, 0, sizeof(*f));
    log_init(LOG_FORMAT_TEXT, LOG_LEVEL_ERROR, NULL);
    snprintf(f->dir, sizeof(f->dir), "%s/vendd-fuzz-XXXXXX", tmp != NULL && *tmp ? tmp : "/tmp");
    FUZZ_CHECK(mkdtemp(f->dir) != NULL);
    s_open = f;
    FUZZ_CHECK(atexit(cleanup) == 0);
    snprintf(url, sizeof(url), "sqlite:%s/vendd.db", f->dir);
    if (db_open(&f->v.db, url, err, sizeof(err)) != VEND_OK) {
        fprintf(stderr, "fuzz: db_open '%s': %s\n", url, err);
        abort();
    }
    f->v.loop = loop_new();
    FUZZ_CHECK(f->v.loop != NULL);
    f->v.now_ms = vendd_wall_ms;
    f->v.mono_ms = vendd_mono_ms;
    FUZZ_CHECK(conf_load(&f->conf, no_env, NULL, NULL) == VEND_OK);
    f->v.conf = &f->conf;
}
