/*
 * test_brokerpw.c - vendctl's writer of mosquitto's password file (vendctl/brokerpw.h): the
 * hash is the one Debian's mosquitto_passwd makes (same password, its salt), the file keeps
 * every other line, an entry is replaced in place and removed, the mode is 0640, and a file
 * that cannot be replaced is left as it was.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "brokerpw.h"
#include "vendctl.h"

/* vendctl.c's, which has main(): the message on stderr. */
int ctl_fail(int status, const char *fmt, ...)
{
    va_list ap;

    fputs("vendctl: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return status;
}

static char dir[] = "/tmp/test-brokerpw-XXXXXX";

static int setup(void **state)
{
    (void)state;
    return mkdtemp(dir) != NULL ? 0 : -1;
}

static int teardown(void **state)
{
    char cmd[128];

    (void)state;
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void slurp(const char *path, char *buf, size_t size)
{
    FILE *f = fopen(path, "r");
    size_t n;

    assert_non_null(f);
    n = fread(buf, 1, size - 1, f);
    buf[n] = '\0';
    fclose(f);
}

static void spit(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");

    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
}

/* base64 of 12 bytes (16 characters, no padding), as in a "$7$" entry. */
static void unbase64_salt(const char *s, unsigned char out[12])
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    for (int g = 0; g < 4; g++) {
        unsigned v = 0;

        for (int i = 0; i < 4; i++) {
            const char *p = strchr(tab, s[g * 4 + i]);

            assert_non_null(p);
            v = v << 6 | (unsigned)(p - tab);
        }
        out[g * 3] = (unsigned char)(v >> 16);
        out[g * 3 + 1] = (unsigned char)(v >> 8);
        out[g * 3 + 2] = (unsigned char)v;
    }
}

static void hash_is_mosquitto_passwds(void **state)
{
    char path[64], cmd[256], text[512], mine[BROKERPW_HASH_MAX];
    unsigned char salt[BROKERPW_SALT_BYTES];
    const char *theirs;

    (void)state;
    snprintf(path, sizeof(path), "%s/theirs", dir);
    snprintf(cmd, sizeof(cmd), "mosquitto_passwd -c -b '%s' VM01 'pa ss:w0rd$7' 2>&1", path);
    assert_int_equal(system(cmd), 0);
    slurp(path, text, sizeof(text));
    text[strcspn(text, "\n")] = '\0';
    assert_memory_equal(text, "VM01:$7$101$", 12);
    theirs = text + 5;
    unbase64_salt(theirs + 7, salt);
    assert_int_equal(brokerpw_hash("pa ss:w0rd$7", salt, mine, sizeof(mine)), 0);
    assert_string_equal(mine, theirs);
    assert_int_equal(brokerpw_hash("pa ss:w0rd$8", salt, mine, sizeof(mine)), 0);
    assert_string_not_equal(mine, theirs);
}

static void passwords_are_new_each_time(void **state)
{
    char a[BROKERPW_PASSWORD_LEN + 1], b[BROKERPW_PASSWORD_LEN + 1];

    (void)state;
    assert_int_equal(brokerpw_generate(a, sizeof(a)), 0);
    assert_int_equal(brokerpw_generate(b, sizeof(b)), 0);
    assert_int_equal(strlen(a), BROKERPW_PASSWORD_LEN);
    assert_int_equal(strspn(a, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"),
                     BROKERPW_PASSWORD_LEN);
    assert_string_not_equal(a, b);
    assert_int_equal(brokerpw_generate(a, BROKERPW_PASSWORD_LEN), 7); /* CTL_ELOCAL */
}

static void entries_are_added_replaced_and_removed_and_the_rest_kept(void **state)
{
    char path[64], text[2048];
    struct stat st;
    bool found = true;
    const char *p;

    (void)state;
    snprintf(path, sizeof(path), "%s/vendd.passwd", dir);
    /* A missing file is created. */
    assert_int_equal(brokerpw_set(path, "VM01", "one"), 0);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0640);
    /* The operator's lines, one without a final newline. */
    spit(path, "# fleet\nvendd:$7$101$x$y\nVM010:$7$101$a$b\nVM01:$7$101$old$old\nVM02:z");
    chmod(path, 0644);
    assert_int_equal(brokerpw_set(path, "VM01", "two"), 0);
    slurp(path, text, sizeof(text));
    assert_memory_equal(text, "# fleet\nvendd:$7$101$x$y\nVM010:$7$101$a$b\nVM01:$7$101$", 51);
    p = strstr(text, "\nVM01:");
    assert_non_null(p);
    assert_null(strstr(text, "$old$old"));
    assert_non_null(strstr(p + 1, "\nVM02:z\n"));
    assert_null(strstr(p + 1, "\nVM01:"));
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0640);
    /* A new user goes to the end. */
    assert_int_equal(brokerpw_set(path, "VM03", "three"), 0);
    slurp(path, text, sizeof(text));
    assert_non_null(strstr(text, "\nVM02:z\nVM03:$7$101$"));
    /* Removed: only that one; a second time, nothing found and nothing changed. */
    assert_int_equal(brokerpw_remove(path, "VM01", &found), 0);
    assert_true(found);
    slurp(path, text, sizeof(text));
    assert_null(strstr(text, "\nVM01:"));
    assert_non_null(strstr(text, "\nVM010:$7$101$a$b\nVM02:z\nVM03:"));
    assert_int_equal(brokerpw_remove(path, "VM01", &found), 0);
    assert_false(found);
    assert_int_equal(brokerpw_remove(path, "VM0", &found), 0); /* a prefix is no match */
    assert_false(found);
    /* Names that would break a line are refused. */
    assert_int_equal(brokerpw_set(path, "a:b", "x"), 2);
    assert_int_equal(brokerpw_set(path, "a\nb", "x"), 2);
    assert_int_equal(brokerpw_set(path, "", "x"), 2);
    /* No temporary file left behind. */
    snprintf(text, sizeof(text), "test $(ls '%s' | wc -l) -eq 2", dir);
    assert_int_equal(system(text), 0);
}

static void an_unwritable_directory_leaves_the_file_alone(void **state)
{
    char sub[64], path[96], before[512], after[512];

    (void)state;
    if (geteuid() == 0)
        skip(); /* root writes anywhere */
    snprintf(sub, sizeof(sub), "%s/ro", dir);
    snprintf(path, sizeof(path), "%s/p", sub);
    assert_int_equal(mkdir(sub, 0700), 0);
    spit(path, "VM01:$7$101$a$b\n");
    assert_int_equal(chmod(sub, 0500), 0);
    slurp(path, before, sizeof(before));
    assert_int_equal(brokerpw_set(path, "VM01", "x"), 7);
    slurp(path, after, sizeof(after));
    assert_string_equal(before, after);
    chmod(sub, 0700);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(hash_is_mosquitto_passwds),
        cmocka_unit_test(passwords_are_new_each_time),
        cmocka_unit_test(entries_are_added_replaced_and_removed_and_the_rest_kept),
        cmocka_unit_test(an_unwritable_directory_leaves_the_file_alone),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
