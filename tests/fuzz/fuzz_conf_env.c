/*
 * fuzz_conf_env.c - conf.c's value parsers (numbers, bounds, booleans, hosts, the database,
 * MQTT and HTTP URLs, ids, log format) through conf_load() on an environment: the input's
 * lines are the NAME=VALUE strings of envp (the .env file's own syntax is fuzz_dotenv's).
 * conf_load() must answer VEND_OK or VEND_ECONF, never crash, overrun or leak; every line it
 * reports is "vendd: ..." without a raw control byte; and neither the report nor conf_print()
 * of a loaded config shows a secret (API_TOKEN, MIDTRANS_SERVER_KEY, MQTT_PASSWORD) or the
 * password of a URL.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"
#include "fuzz.h"
#include "vend/err.h"

#define LINES_MAX 64
/* A secret shorter than this could turn up by chance ("1" in a port). */
#define SECRET_MIN 8

/* The secret of one line, if it holds one: the value of a secret option, or a URL's
 * password ("scheme://user:PASSWORD@host", up to the last '@'). */
static bool line_secret(const char *line, const char **s, size_t *n)
{
    static const char *const secret[] = {"API_TOKEN=", "MIDTRANS_SERVER_KEY=", "MQTT_PASSWORD="};
    static const char *const url[] = {"DATABASE_URL=", "MQTT_BROKER_URL=", "MIDTRANS_API_BASE=",
                                      "MIDTRANS_SNAP_BASE=", "MIDTRANS_NOTIFICATION_URL="};
    const char *auth, *at, *colon;
    bool is_url = false;

    for (size_t i = 0; i < sizeof(secret) / sizeof(secret[0]); i++) {
        if (strncmp(line, secret[i], strlen(secret[i])) == 0) {
            *s = line + strlen(secret[i]);
            *n = strlen(*s);
            return true;
        }
    }
    for (size_t i = 0; i < sizeof(url) / sizeof(url[0]); i++)
        is_url = is_url || strncmp(line, url[i], strlen(url[i])) == 0;
    auth = is_url ? strstr(line, "://") : NULL;
    if (auth == NULL || (at = strrchr(auth + 3, '@')) == NULL)
        return false;
    /* Only DATABASE_URL may carry credentials, which end at its last '@' (libpq's passwords
     * may hold '/'); the other URLs refuse user info, so their authority ends at the first
     * '/', '?' or '#', and a '@' after it is in the path, nothing secret (what curl and
     * libmosquitto read too). */
    if (strncmp(line, "DATABASE_URL=", 13) != 0 &&
        (size_t)(at - auth - 3) > strcspn(auth + 3, "/?#"))
        return false;
    colon = memchr(auth + 3, ':', (size_t)(at - auth - 3));
    if (colon == NULL)
        return false;
    *s = colon + 1;
    *n = (size_t)(at - colon - 1);
    return true;
}

/* True if the n bytes at s occur in text (len bytes). */
static bool occurs(const char *text, size_t len, const char *s, size_t n)
{
    for (size_t i = 0; n > 0 && i + n <= len; i++) {
        if (memcmp(text + i, s, n) == 0)
            return true;
    }
    return false;
}

/* What vendd shows of envp: conf_load()'s report, then conf_print() of a loaded config. *rc
 * gets conf_load()'s answer, *report_len the length of its part. malloc'd. */
static char *render(char *const *envp, int *rc, size_t *report_len)
{
    struct vendd_conf conf;
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);

    FUZZ_CHECK(out != NULL);
    *rc = conf_load(&conf, envp, NULL, out);
    FUZZ_CHECK(fflush(out) == 0);
    *report_len = len;
    if (*rc == VEND_OK)
        conf_print(&conf, out);
    FUZZ_CHECK(fclose(out) == 0);
    return text;
}

/*
 * No line's secret shows in text. A secret's bytes may be in it by chance (a value that is
 * also an option's name, or words of the report): it is shown only if it is gone from what
 * vendd shows once that secret alone is changed (each byte's low bit flipped).
 */
static void check_no_secret(char **envp, size_t nlines, const char *text)
{
    for (size_t i = 0; i < nlines; i++) {
        const char *s;
        char *saved, *again;
        size_t n, off, ignored;
        int rc;

        if (!line_secret(envp[i], &s, &n) || n < SECRET_MIN || !occurs(text, strlen(text), s, n))
            continue;
        off = (size_t)(s - envp[i]);
        saved = strdup(envp[i]);
        FUZZ_CHECK(saved != NULL);
        for (size_t k = 0; k < n; k++)
            envp[i][off + k] ^= 1;
        again = render(envp, &rc, &ignored);
        if (!occurs(again, strlen(again), saved + off, n)) {
            fprintf(stderr, "fuzz_conf_env: secret '%.*s' of '%s' shown:\n%s\n", (int)n,
                    saved + off, saved, text);
            abort();
        }
        memcpy(envp[i], saved, strlen(saved));
        free(again);
        free(saved);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *copy = malloc(size + 1), *envp[LINES_MAX + 1], *p, *text;
    size_t nlines = 0, report_len;
    int rc;

    FUZZ_CHECK(copy != NULL);
    memcpy(copy, data, size);
    copy[size] = '\0';
    for (p = copy; nlines < LINES_MAX;) {
        char *nl = strchr(p, '\n');

        envp[nlines++] = p;
        if (nl == NULL)
            break;
        *nl = '\0';
        p = nl + 1;
    }
    envp[nlines] = NULL;

    text = render(envp, &rc, &report_len);
    FUZZ_CHECK(rc == VEND_OK || rc == VEND_ECONF);
    FUZZ_CHECK((rc == VEND_OK) == (report_len == 0));
    for (size_t i = 0; i < report_len; i++) {
        bool line_start = i == 0 || text[i - 1] == '\n';

        FUZZ_CHECK(!line_start || strncmp(text + i, "vendd: ", 7) == 0);
        FUZZ_CHECK(text[i] == '\n' || (unsigned char)text[i] >= 0x20);
        FUZZ_CHECK(text[i] != 0x7f);
    }
    check_no_secret(envp, nlines, text);
    free(text);
    free(copy);
    return 0;
}
