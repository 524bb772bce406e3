/*
 * token.c - the bearer token from VENDD_TOKEN or a private file (token.h).
 */
#include "token.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vendctl.h"

/* Printable ASCII without space: what goes after "Bearer " on one header line. */
static bool token_valid(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
            return false;
    }
    return n > 0;
}

static int from_file(const char *path, char *buf, size_t size)
{
    struct stat st;
    ssize_t n;
    size_t len = 0;
    int fd, rc = -1;

    /* O_NOFOLLOW|O_NONBLOCK: a symlink swapped in or a FIFO cannot make us read elsewhere or
     * hang; the checks below run on what was opened, not on the name. */
    fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return ctl_fail(-1, "cannot open token file '%s': %s", path, strerror(errno));
    if (fstat(fd, &st) < 0) {
        ctl_fail(-1, "cannot stat token file '%s': %s", path, strerror(errno));
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        ctl_fail(-1, "token file '%s' is not a regular file", path);
        goto out;
    }
    if (st.st_mode & (S_IRWXG | S_IRWXO)) {
        ctl_fail(-1,
                 "token file '%s' is accessible by its group or others (mode %04o): "
                 "refused; chmod 600 '%s'",
                 path, (unsigned)(st.st_mode & 07777), path);
        goto out;
    }
    if (st.st_uid != geteuid() && st.st_uid != 0) {
        ctl_fail(-1, "token file '%s' belongs to another user (uid %u): refused", path,
                 (unsigned)st.st_uid);
        goto out;
    }
    for (;;) {
        n = read(fd, buf + len, size - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            ctl_fail(-1, "cannot read token file '%s': %s", path, strerror(errno));
            goto out;
        }
        if (n == 0)
            break;
        len += (size_t)n;
        if (len == size) {
            ctl_fail(-1, "token file '%s' is over %zu bytes", path, size - 1);
            goto out;
        }
    }
    if (len > 0 && buf[len - 1] == '\n')
        len--;
    if (len > 0 && buf[len - 1] == '\r')
        len--;
    if (!token_valid(buf, len)) {
        ctl_fail(-1, "token file '%s' is empty or holds a space or a control character", path);
        goto out;
    }
    buf[len] = '\0';
    rc = 1;
out:
    if (rc < 0)
        memset(buf, 0, size);
    close(fd);
    return rc;
}

int token_load(const char *path, char *buf, size_t size)
{
    const char *env = getenv("VENDD_TOKEN");
    size_t n;

    if (path != NULL)
        return from_file(path, buf, size);
    if (env == NULL || env[0] == '\0')
        return 0;
    n = strlen(env);
    if (n >= size)
        return ctl_fail(-1, "VENDD_TOKEN is over %zu bytes", size - 1);
    if (!token_valid(env, n))
        return ctl_fail(-1, "VENDD_TOKEN holds a space or a control character");
    memcpy(buf, env, n + 1);
    return 1;
}
