/*
 * test_log.c - the logger's exact output, captured through log_init().
 *
 * The timestamp is real time, so its shape is checked character by
 * character and the rest of the line is compared exactly.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "log.h"

#define TS_LEN 24 /* 2024-05-01T12:00:00.123Z */

struct capture {
    FILE *f;
    char *buf;
    size_t len;
};

static int setup(void **state)
{
    struct capture *c = calloc(1, sizeof(*c));

    if (c == NULL)
        return -1;
    c->f = open_memstream(&c->buf, &c->len);
    if (c->f == NULL) {
        free(c);
        return -1;
    }
    *state = c;
    return 0;
}

static int teardown(void **state)
{
    struct capture *c = *state;

    log_init(LOG_FORMAT_TEXT, LOG_LEVEL_INFO, NULL);
    fclose(c->f);
    free(c->buf);
    free(c);
    return 0;
}

/* The logger flushes every line, which publishes buf/len of the memstream. */
static const char *captured(struct capture *c)
{
    return c->len ? c->buf : "";
}

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* Checks "YYYY-MM-DDTHH:MM:SS.mmmZ" without a regex. */
static void assert_timestamp(const char *s)
{
    const char *shape = "dddd-dd-ddTdd:dd:dd.dddZ";

    for (size_t i = 0; i < TS_LEN; i++) {
        if (shape[i] == 'd')
            assert_true(is_digit(s[i]));
        else
            assert_int_equal(s[i], shape[i]);
    }
    assert_true(strncmp(s, "2020", 4) > 0); /* a real clock, not zero */
}

/* Checks one text line: timestamp, then exactly rest. */
static void assert_text_line(const char *line, const char *rest)
{
    assert_true(strlen(line) > TS_LEN);
    assert_timestamp(line);
    assert_string_equal(line + TS_LEN, rest);
}

/* Checks one JSON line: {"ts":"<timestamp>", then exactly rest. */
static void assert_json_line(const char *line, const char *rest)
{
    const char *head = "{\"ts\":\"";
    size_t hl = strlen(head);

    assert_true(strlen(line) > hl + TS_LEN);
    assert_memory_equal(line, head, hl);
    assert_timestamp(line + hl);
    assert_string_equal(line + hl + TS_LEN, rest);
}

static void test_text_format(void **state)
{
    struct capture *c = *state;

    log_init(LOG_FORMAT_TEXT, LOG_LEVEL_INFO, c->f);
    log_info("MQTT connected to %s:%d", "127.0.0.1", 1883);
    assert_text_line(captured(c), " info: MQTT connected to 127.0.0.1:1883\n");
}

static void test_json_format(void **state)
{
    struct capture *c = *state;

    log_init(LOG_FORMAT_JSON, LOG_LEVEL_INFO, c->f);
    log_warnx("rejected %s: %s", "vm/1/status", "bad json");
    assert_json_line(captured(c),
                     "\",\"level\":\"warn\",\"msg\":\"rejected vm/1/status: bad json\"}\n");
}

static void test_json_escaping(void **state)
{
    struct capture *c = *state;

    log_init(LOG_FORMAT_JSON, LOG_LEVEL_INFO, c->f);
    log_info("q\"b\\s/n\nr\rt\te\x01"
             "f\x1f"
             "d\x7f"
             "!");
    assert_json_line(captured(c), "\",\"level\":\"info\",\"msg\":"
                                  "\"q\\\"b\\\\s/n\\nr\\rt\\te\\u0001f\\u001fd\\u007f!\"}\n");
}

static void test_json_invalid_utf8_replaced(void **state)
{
    struct capture *c = *state;

    log_init(LOG_FORMAT_JSON, LOG_LEVEL_INFO, c->f);
    /* Valid: e-acute, euro sign, U+1F600. Invalid: stray 0xff, truncated 0xc3, overlong
     * "/", a UTF-16 surrogate, a code point above U+10FFFF. */
    log_info("%s|%s|%s|%s|%s|%s", "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", "\xff", "\xc3",
             "\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80");
    assert_json_line(captured(c), "\",\"level\":\"info\",\"msg\":\""
                                  "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80|\\ufffd|\\ufffd|"
                                  "\\ufffd\\ufffd|\\ufffd\\ufffd\\ufffd|"
                                  "\\ufffd\\ufffd\\ufffd\\ufffd\"}\n");
}

static void test_text_escapes_control_bytes(void **state)
{
    struct capture *c = *state;

    log_init(LOG_FORMAT_TEXT, LOG_LEVEL_INFO, c->f);
    /* A forged second line must stay on the first one. */
    log_info("topic '%s'", "vm/1\n2024-01-01T00:00:00.000Z error: forged\x1b[0m\xff");
    assert_text_line(captured(c), " info: topic 'vm/1\\n2024-01-01T00:00:00.000Z error: "
                                  "forged\\x1b[0m\xef\xbf\xbd'\n");
}

static void test_log_warn_appends_strerror_and_keeps_errno(void **state)
{
    struct capture *c = *state;
    char want[256];

    log_init(LOG_FORMAT_TEXT, LOG_LEVEL_INFO, c->f);
    snprintf(want, sizeof(want), " warn: cannot open '%s': %s\n", "/nonexistent", strerror(ENOENT));
    errno = ENOENT;
    log_warn("cannot open '%s'", "/nonexistent");
    assert_int_equal(errno, ENOENT);
    assert_text_line(captured(c), want);
}

static void test_level_filtering(void **state)
{
    struct capture *c = *state;

    log_init(LOG_FORMAT_TEXT, LOG_LEVEL_WARN, c->f);
    log_info("hidden info");
    log_debug("hidden debug");
    assert_int_equal(c->len, 0);
    log_warnx("shown");
    assert_text_line(captured(c), " warn: shown\n");

    log_init(LOG_FORMAT_TEXT, LOG_LEVEL_ERROR, c->f);
    size_t before = c->len;
    errno = EIO;
    log_warn("hidden warn");
    log_warnx("hidden warnx");
    log_info("hidden info");
    assert_int_equal(c->len, before);

    log_init(LOG_FORMAT_TEXT, LOG_LEVEL_DEBUG, c->f);
    log_debug("shown debug");
    assert_text_line(captured(c) + before, " debug: shown debug\n");
}

static void test_truncation(void **state)
{
    struct capture *c = *state;
    const char *marker = "...[truncated]";
    char *big = malloc(5001);

    assert_non_null(big);
    memset(big, 'a', 5000);
    big[5000] = '\0';
    log_init(LOG_FORMAT_JSON, LOG_LEVEL_INFO, c->f);
    log_info("%s", big);
    const char *msg = strstr(captured(c), "\"msg\":\"");
    assert_non_null(msg);
    msg += 7;
    /* 2048 bytes of message, marker included, then the closing of the object. */
    assert_int_equal(strlen(msg), 2048 + strlen("\"}\n"));
    assert_memory_equal(msg + 2048 - strlen(marker), marker, strlen(marker));
    assert_string_equal(msg + 2048, "\"}\n");
    assert_int_equal(msg[0], 'a');

    /* Two-byte characters: the cut must not split one (no U+FFFD appears). */
    for (size_t i = 0; i + 1 < 5000; i += 2) {
        big[i] = '\xc3';
        big[i + 1] = '\xa9';
    }
    size_t before = c->len;
    log_info("x%s", big); /* odd offset: the naive cut lands inside a character */
    assert_null(strstr(captured(c) + before, "\\ufffd"));
    assert_non_null(strstr(captured(c) + before, "\xc3\xa9...[truncated]\"}\n"));

    /* Short messages are not marked. */
    before = c->len;
    log_info("%.*s", 2048, big);
    assert_null(strstr(captured(c) + before, marker));
    free(big);
}

static void test_journal_stream_prefix(void **state)
{
    (void)state;
    FILE *f = tmpfile();
    struct stat st;
    char env[64];
    char line[128];

    assert_non_null(f);
    assert_int_equal(fstat(fileno(f), &st), 0);
    snprintf(env, sizeof(env), "%llu:%llu", (unsigned long long)st.st_dev,
             (unsigned long long)st.st_ino);
    assert_int_equal(setenv("JOURNAL_STREAM", env, 1), 0);
    log_init(LOG_FORMAT_TEXT, LOG_LEVEL_INFO, f);
    log_info("started");
    log_warnx("slow");
    /* A different inode is not the journal. */
    assert_int_equal(setenv("JOURNAL_STREAM", "1:2", 1), 0);
    log_init(LOG_FORMAT_TEXT, LOG_LEVEL_INFO, f);
    log_info("plain");
    unsetenv("JOURNAL_STREAM");
    log_init(LOG_FORMAT_TEXT, LOG_LEVEL_INFO, NULL);

    rewind(f);
    assert_non_null(fgets(line, sizeof(line), f));
    assert_string_equal(line, "<6>info: started\n");
    assert_non_null(fgets(line, sizeof(line), f));
    assert_string_equal(line, "<4>warn: slow\n");
    assert_non_null(fgets(line, sizeof(line), f));
    assert_text_line(line, " info: plain\n");
    assert_null(fgets(line, sizeof(line), f));
    fclose(f);
}

/* Runs fn in a child logging to a tmpfile; returns the exit status, output in out. */
static int run_child(void (*fn)(void), char *out, size_t outsz)
{
    FILE *f = tmpfile();
    int status = 0;

    assert_non_null(f);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        log_init(LOG_FORMAT_TEXT, LOG_LEVEL_INFO, f);
        fn();
        _exit(99); /* not reached if fn exits as it should */
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    rewind(f);
    size_t n = fread(out, 1, outsz - 1, f);
    out[n] = '\0';
    fclose(f);
    assert_true(WIFEXITED(status));
    return WEXITSTATUS(status);
}

static void call_fatalx(void)
{
    fatalx("cannot bind %s", "0.0.0.0:8080");
}

static void call_fatal(void)
{
    errno = EACCES;
    fatal("cannot open '%s'", "vendd.db");
}

static void test_fatal_exits_1(void **state)
{
    (void)state;
    char out[256];
    char want[256];

    assert_int_equal(run_child(call_fatalx, out, sizeof(out)), 1);
    assert_text_line(out, " error: cannot bind 0.0.0.0:8080\n");
    assert_int_equal(run_child(call_fatal, out, sizeof(out)), 1);
    snprintf(want, sizeof(want), " error: cannot open 'vendd.db': %s\n", strerror(EACCES));
    assert_text_line(out, want);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_text_format, setup, teardown),
        cmocka_unit_test_setup_teardown(test_json_format, setup, teardown),
        cmocka_unit_test_setup_teardown(test_json_escaping, setup, teardown),
        cmocka_unit_test_setup_teardown(test_json_invalid_utf8_replaced, setup, teardown),
        cmocka_unit_test_setup_teardown(test_text_escapes_control_bytes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_log_warn_appends_strerror_and_keeps_errno, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_level_filtering, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncation, setup, teardown),
        cmocka_unit_test(test_journal_stream_prefix),
        cmocka_unit_test(test_fatal_exits_1),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
