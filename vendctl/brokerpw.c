/*
 * brokerpw.c - a machine's broker credentials in mosquitto's password file (brokerpw.h).
 */
#include "brokerpw.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "vendctl.h"

#define HASH_BYTES 64 /* SHA-512 */
#define USER_MAX   64 /* machine ids are 32 at most */
#define LINE_MAX_  (USER_MAX + BROKERPW_HASH_MAX + 2)
/* The group Debian's mosquitto package creates: the broker, no longer root, reads the file. */
#define BROKER_GROUP "mosquitto"

int brokerpw_generate(char *out, size_t size)
{
    static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    unsigned char raw[BROKERPW_RANDOM_BYTES];
    size_t o = 0;

    if (size <= BROKERPW_PASSWORD_LEN)
        return ctl_fail(CTL_ELOCAL, "no room for a password");
    if (RAND_bytes(raw, sizeof(raw)) != 1)
        return ctl_fail(CTL_ELOCAL, "the system's random generator failed");
    /* 24 bytes are 8 groups of 3: 32 characters, no padding. */
    for (size_t i = 0; i < sizeof(raw); i += 3) {
        unsigned v = (unsigned)raw[i] << 16 | (unsigned)raw[i + 1] << 8 | raw[i + 2];

        out[o++] = b64url[(v >> 18) & 63];
        out[o++] = b64url[(v >> 12) & 63];
        out[o++] = b64url[(v >> 6) & 63];
        out[o++] = b64url[v & 63];
    }
    out[o] = '\0';
    OPENSSL_cleanse(raw, sizeof(raw));
    return CTL_EOK;
}

int brokerpw_hash(const char *password, const unsigned char *salt, char *out, size_t size)
{
    unsigned char hash[HASH_BYTES];
    char salt64[(BROKERPW_SALT_BYTES + 2) / 3 * 4 + 1], hash64[(HASH_BYTES + 2) / 3 * 4 + 1];
    size_t len = strlen(password);
    int n, status = CTL_EOK;

    if (len > INT_MAX ||
        PKCS5_PBKDF2_HMAC(password, (int)len, salt, BROKERPW_SALT_BYTES, BROKERPW_ITERATIONS,
                          EVP_sha512(), (int)sizeof(hash), hash) != 1)
        return ctl_fail(CTL_ELOCAL, "PBKDF2-SHA512 failed");
    EVP_EncodeBlock((unsigned char *)salt64, salt, BROKERPW_SALT_BYTES);
    EVP_EncodeBlock((unsigned char *)hash64, hash, (int)sizeof(hash));
    n = snprintf(out, size, "$7$%d$%s$%s", BROKERPW_ITERATIONS, salt64, hash64);
    if (n < 0 || (size_t)n >= size)
        status = ctl_fail(CTL_ELOCAL, "no room for a password hash");
    OPENSSL_cleanse(hash, sizeof(hash));
    OPENSSL_cleanse(hash64, sizeof(hash64));
    return status;
}

/* A user name mosquitto_passwd would take, and that cannot break the file's lines. */
static int user_valid(const char *user)
{
    size_t n = strnlen(user, USER_MAX + 1);

    if (n == 0 || n > USER_MAX || strpbrk(user, ":\r\n") != NULL)
        return ctl_fail(CTL_EUSAGE, "'%s' cannot be a broker user name", user);
    return CTL_EOK;
}

struct pwfile {
    const char *path;
    char dir[PATH_MAX];
    int dfd; /* the directory, locked */
    char *text;
    size_t len;
    bool exists;
    uid_t uid;
    gid_t gid;
};

/* Lock the directory and read the file (missing: empty, to be created). */
static int pwfile_open(struct pwfile *f, const char *path)
{
    const char *slash = strrchr(path, '/');
    struct stat st;
    ssize_t n;
    int fd = -1, status = CTL_ELOCAL;

    memset(f, 0, sizeof(*f));
    f->path = path;
    f->dfd = -1;
    if (strlen(path) + 8 >= sizeof(f->dir))
        return ctl_fail(CTL_EUSAGE, "password file name '%s' is too long", path);
    if (slash == NULL)
        snprintf(f->dir, sizeof(f->dir), ".");
    else if (slash == path)
        snprintf(f->dir, sizeof(f->dir), "/");
    else
        snprintf(f->dir, sizeof(f->dir), "%.*s", (int)(slash - path), path);
    f->dfd = open(f->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (f->dfd < 0)
        return ctl_fail(CTL_ELOCAL, "cannot open the directory of '%s': %s", path, strerror(errno));
    if (flock(f->dfd, LOCK_EX) < 0)
        return ctl_fail(CTL_ELOCAL, "cannot lock the directory of '%s': %s", path, strerror(errno));
    f->uid = geteuid();
    f->gid = getegid();
    fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT) {
        struct group *g = geteuid() == 0 ? getgrnam(BROKER_GROUP) : NULL;

        if (g != NULL)
            f->gid = g->gr_gid;
        return CTL_EOK;
    }
    if (fd < 0) {
        ctl_fail(CTL_ELOCAL, "cannot open password file '%s': %s", path, strerror(errno));
        goto out;
    }
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        ctl_fail(CTL_ELOCAL, "password file '%s' is not a regular file", path);
        goto out;
    }
    if ((unsigned long long)st.st_size > BROKERPW_FILE_MAX) {
        ctl_fail(CTL_ELOCAL, "password file '%s' is over %u bytes: refused", path,
                 BROKERPW_FILE_MAX);
        goto out;
    }
    f->exists = true;
    f->uid = st.st_uid;
    f->gid = st.st_gid;
    f->text = malloc((size_t)st.st_size + 1);
    if (f->text == NULL) {
        ctl_fail(CTL_ELOCAL, "out of memory");
        goto out;
    }
    /* Read to the end, bounded: the file may have grown since fstat. */
    while (f->len <= BROKERPW_FILE_MAX &&
           (n = read(fd, f->text + f->len, (size_t)st.st_size + 1 - f->len)) != 0) {
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 || f->len + (size_t)n > (size_t)st.st_size) {
            ctl_fail(CTL_ELOCAL, "cannot read password file '%s': %s", path,
                     n < 0 ? strerror(errno) : "it changed while read");
            goto out;
        }
        f->len += (size_t)n;
    }
    status = CTL_EOK;
out:
    if (fd >= 0)
        close(fd);
    return status;
}

static void pwfile_close(struct pwfile *f)
{
    if (f->text != NULL)
        OPENSSL_cleanse(f->text, f->len);
    free(f->text);
    if (f->dfd >= 0)
        close(f->dfd); /* and the lock with it */
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);

        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/*
 * The file again with user's lines dropped and, if line is not NULL, line in place of the
 * first of them (or at the end): written to a temporary file renamed over the old one.
 */
static int pwfile_rewrite(struct pwfile *f, const char *user, const char *line, bool *found)
{
    size_t ulen = strlen(user), pos = 0;
    char tmp[PATH_MAX];
    int fd, status = CTL_ELOCAL;
    bool placed = false;

    *found = false;
    snprintf(tmp, sizeof(tmp), "%s.XXXXXX", f->path);
    fd = mkstemp(tmp);
    if (fd < 0)
        return ctl_fail(CTL_ELOCAL, "cannot create a file next to '%s': %s", f->path,
                        strerror(errno));
    /* The broker reads it as group "mosquitto" once it has dropped root: owner and group
     * as before, and no more than 0640. */
    if (fchmod(fd, 0640) < 0 ||
        (fchown(fd, f->uid, f->gid) < 0 && (f->uid != geteuid() || f->gid != getegid()))) {
        ctl_fail(CTL_ELOCAL, "cannot give '%s' the owner and mode of '%s': %s", tmp, f->path,
                 strerror(errno));
        goto fail;
    }
    while (pos < f->len) {
        const char *s = f->text + pos, *nl = memchr(s, '\n', f->len - pos);
        size_t n = nl != NULL ? (size_t)(nl - s) : f->len - pos;
        bool mine = n > ulen && memcmp(s, user, ulen) == 0 && s[ulen] == ':';

        pos += n + (nl != NULL);
        if (mine) {
            *found = true;
            if (line == NULL || placed)
                continue;
            placed = true;
            if (write_all(fd, line, strlen(line)) < 0)
                goto wfail;
            continue;
        }
        if (write_all(fd, s, n) < 0 || write_all(fd, "\n", 1) < 0)
            goto wfail;
    }
    if (line != NULL && !placed && write_all(fd, line, strlen(line)) < 0)
        goto wfail;
    if (fsync(fd) < 0)
        goto wfail;
    if (close(fd) < 0) {
        fd = -1;
        goto wfail;
    }
    fd = -1;
    if (rename(tmp, f->path) < 0) {
        ctl_fail(CTL_ELOCAL, "cannot replace password file '%s': %s", f->path, strerror(errno));
        goto fail;
    }
    fsync(f->dfd); /* the rename itself durable; the data already is */
    return CTL_EOK;
wfail:
    ctl_fail(CTL_ELOCAL, "cannot write '%s': %s", tmp, strerror(errno));
fail:
    if (fd >= 0)
        close(fd);
    unlink(tmp);
    return status;
}

int brokerpw_set(const char *path, const char *user, const char *password)
{
    unsigned char salt[BROKERPW_SALT_BYTES];
    char hash[BROKERPW_HASH_MAX], line[LINE_MAX_];
    struct pwfile f;
    bool found;
    int status = user_valid(user);

    if (status != CTL_EOK)
        return status;
    if (RAND_bytes(salt, sizeof(salt)) != 1)
        return ctl_fail(CTL_ELOCAL, "the system's random generator failed");
    status = brokerpw_hash(password, salt, hash, sizeof(hash));
    if (status != CTL_EOK)
        return status;
    snprintf(line, sizeof(line), "%s:%s\n", user, hash);
    status = pwfile_open(&f, path);
    if (status == CTL_EOK)
        status = pwfile_rewrite(&f, user, line, &found);
    pwfile_close(&f);
    OPENSSL_cleanse(line, sizeof(line));
    return status;
}

int brokerpw_remove(const char *path, const char *user, bool *found)
{
    struct pwfile f;
    int status = user_valid(user);

    *found = false;
    if (status != CTL_EOK)
        return status;
    status = pwfile_open(&f, path);
    if (status == CTL_EOK && f.exists) {
        const char *p = f.text;
        size_t ulen = strlen(user);

        /* Rewrite only when there is something to remove. */
        for (size_t i = 0; i < f.len && !*found; i++) {
            if ((i == 0 || p[i - 1] == '\n') && f.len - i > ulen &&
                memcmp(p + i, user, ulen) == 0 && p[i + ulen] == ':')
                *found = true;
        }
        if (*found)
            status = pwfile_rewrite(&f, user, NULL, found);
    }
    pwfile_close(&f);
    return status;
}
