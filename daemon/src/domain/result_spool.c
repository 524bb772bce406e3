/* result_spool.c - the results waiting for the database, kept in a file; see result_spool.h. */
#define _POSIX_C_SOURCE 200809L
#include "result_spool.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "vend/codec.h"
#include "vend/err.h"
#include "vend/topic.h"

/* A line: the machine's id, a space, a payload, a newline, a NUL. */
#define LINE_MAX_LEN (VEND_MACHINE_ID_MAX + 1 + VEND_PAYLOAD_MAX + 2)
#define PATH_LEN     4096

static int write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, len);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return VEND_EIO;
        buf += n;
        len -= (size_t)n;
    }
    return VEND_OK;
}

/* fsync the directory of path, so that a rename or an unlink in it is durable. */
static int sync_dir(const char *path)
{
    char dir[PATH_LEN];
    const char *slash = strrchr(path, '/');
    int fd, rc;

    if (slash == NULL)
        snprintf(dir, sizeof(dir), ".");
    else if (slash == path)
        snprintf(dir, sizeof(dir), "/");
    else
        snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path), path);
    fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return VEND_EIO;
    rc = fsync(fd) == 0 ? VEND_OK : VEND_EIO;
    close(fd);
    return rc;
}

int result_spool_save(const char *path, size_t n, result_spool_entry_fn *entry, void *arg)
{
    char tmp[PATH_LEN], line[LINE_MAX_LEN];
    int fd = -1, rc = VEND_OK;

    if (n > RESULT_SPOOL_MAX)
        return VEND_EINVAL;
    if (n == 0) {
        if (unlink(path) == 0)
            return sync_dir(path);
        if (errno == ENOENT)
            return VEND_OK;
        log_warn("cannot remove the results kept in '%s'", path);
        return VEND_EIO;
    }
    if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= sizeof(tmp))
        return VEND_EINVAL;
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        log_warn("cannot keep the results waiting for the database in '%s'", tmp);
        return VEND_EIO;
    }
    for (size_t i = 0; i < n && rc == VEND_OK; i++) {
        const struct result_spool_entry *e = entry(arg, i);
        int id = snprintf(line, sizeof(line), "%s ", e->machine_id);
        int len = vend_encode_dispense_result(line + id, sizeof(line) - (size_t)id - 1, &e->r);

        if (len < 0) {
            log_warnx("cannot keep the result for order '%s' from '%s' in '%s': %s", e->r.order_id,
                      e->machine_id, path, vend_strerror(len));
            rc = VEND_EINVAL;
            break;
        }
        line[id + len] = '\n';
        rc = write_all(fd, line, (size_t)id + (size_t)len + 1);
    }
    if (rc == VEND_OK && fsync(fd) != 0)
        rc = VEND_EIO;
    if (close(fd) != 0 && rc == VEND_OK)
        rc = VEND_EIO;
    fd = -1;
    if (rc == VEND_OK && rename(tmp, path) != 0)
        rc = VEND_EIO;
    if (rc == VEND_OK)
        rc = sync_dir(path);
    if (rc == VEND_EIO)
        log_warn("cannot keep the results waiting for the database in '%s'", path);
    if (rc < 0)
        unlink(tmp);
    return rc;
}

int result_spool_load(const char *path, result_spool_load_fn *fn, void *arg)
{
    char line[LINE_MAX_LEN + 1];
    struct result_spool_entry e;
    struct vend_diag diag;
    FILE *f = fopen(path, "re");
    int n = 0, lineno = 0;

    if (f == NULL) {
        if (errno == ENOENT)
            return 0;
        log_warn("cannot read the results kept in '%s'", path);
        return VEND_EIO;
    }
    while (n < RESULT_SPOOL_MAX) {
        const char *nl, *sp;
        size_t len, idlen;
        int rc;

        /* Cleared first: a newline in the buffer is then this line's, even past a NUL byte
         * in it (which makes the line bad, not the next one too). */
        memset(line, 0, sizeof(line));
        if (fgets(line, sizeof(line), f) == NULL)
            break;
        nl = memchr(line, '\n', sizeof(line) - 1);
        len = nl != NULL ? (size_t)(nl - line) : strlen(line);
        sp = memchr(line, ' ', len);
        idlen = sp != NULL ? (size_t)(sp - line) : 0;
        lineno++;
        if (nl == NULL) { /* longer than any result: skip the rest of it */
            int c;

            while ((c = fgetc(f)) != EOF && c != '\n')
                ;
        }
        memset(&e, 0, sizeof(e));
        rc = sp == NULL || nl == NULL || strnlen(line, len) != len ||
                     !vend_machine_id_valid_len(line, idlen)
                 ? VEND_EINVAL
                 : vend_decode_dispense_result(sp + 1, len - idlen - 1, &e.r, &diag);
        if (rc < 0) {
            log_warnx("skipped line %d of '%s': not a machine's id and result (%s)", lineno, path,
                      vend_strerror(rc));
            continue;
        }
        memcpy(e.machine_id, line, idlen);
        e.machine_id[idlen] = '\0';
        fn(arg, &e);
        n++;
    }
    if (ferror(f)) {
        log_warn("cannot read the results kept in '%s'", path);
        n = VEND_EIO;
    }
    fclose(f);
    return n;
}
