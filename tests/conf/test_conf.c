/*
 * test_conf.c - conf_load() edge cases: bounds, booleans, URLs, .env syntax,
 * secrets in messages, and conf_print() output loading back to the same
 * configuration. The whole-program behaviour is in the golden cases.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf.h"
#include "vend/err.h"

/* Messages conf_load() wrote during the last load(). */
struct loaded {
    int rc;
    struct vendd_conf conf;
    char *err;
    size_t errlen;
};

static void loaded_clear(struct loaded *l)
{
    free(l->err);
    l->err = NULL;
}

static void load(struct loaded *l, char *const *envp, const char *dotenv)
{
    FILE *errout;

    l->err = NULL;
    l->errlen = 0;
    errout = open_memstream(&l->err, &l->errlen);
    assert_non_null(errout);
    l->rc = conf_load(&l->conf, envp, dotenv, errout);
    assert_int_equal(fclose(errout), 0);
}

/* Loads with a single "KEY=VALUE" in the environment. */
static void load1(struct loaded *l, const char *kv)
{
    char buf[8192];
    char *envp[] = {buf, NULL};

    assert_true(strlen(kv) < sizeof buf);
    memcpy(buf, kv, strlen(kv) + 1);
    load(l, envp, NULL);
}

static size_t count_lines(const char *s)
{
    size_t n = 0;
    for (; *s != '\0'; s++) {
        if (*s == '\n')
            n++;
    }
    return n;
}

/* A scratch directory holding .env files; removed by the teardown. */
struct scratch {
    char dir[128];
    char path[160];
};

static int scratch_setup(void **state)
{
    struct scratch *s = calloc(1, sizeof *s);
    const char *tmp = getenv("TMPDIR");

    if (s == NULL)
        return -1;
    if (tmp == NULL || *tmp == '\0')
        tmp = "/tmp";
    snprintf(s->dir, sizeof s->dir, "%s/test_conf.XXXXXX", tmp);
    if (mkdtemp(s->dir) == NULL) {
        free(s);
        return -1;
    }
    snprintf(s->path, sizeof s->path, "%s/.env", s->dir);
    *state = s;
    return 0;
}

static int scratch_teardown(void **state)
{
    struct scratch *s = *state;

    unlink(s->path);
    rmdir(s->dir);
    free(s);
    return 0;
}

static void write_file(const char *path, const char *data, size_t len)
{
    FILE *f = fopen(path, "wb");

    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

static void test_defaults(void **state)
{
    struct loaded l;
    char *envp[] = {NULL};

    (void)state;
    load(&l, envp, "/nonexistent/dir/.env"); /* a missing .env is fine */
    assert_int_equal(l.rc, VEND_OK);
    assert_int_equal(l.errlen, 0);
    assert_int_equal(l.conf.port, 3001);
    assert_string_equal(l.conf.host, "0.0.0.0");
    assert_int_equal(l.conf.db_kind, CONF_DB_SQLITE);
    assert_string_equal(l.conf.sqlite_path, "var/vendd.db");
    assert_string_equal(l.conf.mqtt_broker_url, "mqtt://localhost:1883");
    assert_string_equal(l.conf.mqtt_host, "localhost");
    assert_int_equal(l.conf.mqtt_port, 1883);
    assert_false(l.conf.mqtt_tls);
    assert_string_equal(l.conf.mqtt_username, "");
    /* Not derived from the host name or PORT: the broker session survives both changing. */
    assert_string_equal(l.conf.mqtt_client_id, "vendd");
    assert_string_equal(l.conf.machine_id, "VM01");
    assert_true(l.conf.dev_mode);
    assert_false(l.conf.midtrans_is_production);
    assert_string_equal(l.conf.midtrans_api_base, "https://api.sandbox.midtrans.com");
    assert_string_equal(l.conf.midtrans_snap_base, "https://app.sandbox.midtrans.com/snap/v1");
    assert_int_equal(l.conf.dispense_result_grace_ms, 5000);
    assert_int_equal(l.conf.dispense_dispatch_ttl_s, 60);
    assert_int_equal(l.conf.order_payment_ttl_s, 900);
    assert_int_equal(l.conf.log_format, LOG_FORMAT_TEXT);
    loaded_clear(&l);

    /* NULL envp is an empty environment. */
    load(&l, NULL, NULL);
    assert_int_equal(l.rc, VEND_OK);
    loaded_clear(&l);
}

struct kv_case {
    const char *kv;
    bool ok;
};

static void run_cases(const struct kv_case *c, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        struct loaded l;
        load1(&l, c[i].kv);
        if ((l.rc == VEND_OK) != c[i].ok)
            fail_msg("%s: expected %s, got rc %d, messages: %s", c[i].kv,
                     c[i].ok ? "ok" : "an error", l.rc, l.err);
        /* Exactly one line per bad value, naming the variable. */
        if (!c[i].ok) {
            size_t namelen = strcspn(c[i].kv, "=");
            assert_int_equal(count_lines(l.err), 1);
            assert_int_equal(strncmp(l.err, "vendd: ", 7), 0);
            assert_int_equal(strncmp(l.err + 7, c[i].kv, namelen), 0);
            assert_int_equal(l.err[7 + namelen], ':');
        } else {
            assert_int_equal(l.errlen, 0);
        }
        loaded_clear(&l);
    }
}

static void test_numbers(void **state)
{
    static const struct kv_case cases[] = {
        {"PORT=0", true},
        {"PORT=1", true},
        {"PORT=65535", true},
        {"PORT=0080", true},
        {"PORT=65536", false},
        {"PORT=-1", false},
        {"PORT= 1", false},
        {"PORT=+1", false},
        {"PORT=0x10", false},
        {"PORT=1e3", false},
        {"PORT=12 ", false},
        {"PORT=99999999999999999999999", false},
        {"PORT=", true}, /* empty = unset = default */
        {"DISPENSE_RESULT_GRACE_MS=0", false},
        {"DISPENSE_RESULT_GRACE_MS=999", false},
        {"DISPENSE_RESULT_GRACE_MS=1000", true},
        {"DISPENSE_RESULT_GRACE_MS=600000", true},
        {"DISPENSE_RESULT_GRACE_MS=600001", false},
        {"DISPENSE_DISPATCH_TTL_S=0", false},
        {"DISPENSE_DISPATCH_TTL_S=1", true},
        {"DISPENSE_DISPATCH_TTL_S=86400", true},
        {"DISPENSE_DISPATCH_TTL_S=86401", false},
        {"ORDER_PAYMENT_TTL_S=59", false},
        {"ORDER_PAYMENT_TTL_S=60", true},
        {"ORDER_PAYMENT_TTL_S=86400", true},
        {"ORDER_PAYMENT_TTL_S=86401", false},
    };
    struct loaded l;

    (void)state;
    run_cases(cases, sizeof cases / sizeof cases[0]);
    load1(&l, "PORT=0080");
    assert_int_equal(l.conf.port, 80);
    loaded_clear(&l);
    load1(&l, "ORDER_PAYMENT_TTL_S=59");
    assert_string_equal(l.err, "vendd: ORDER_PAYMENT_TTL_S: out of range 60..86400 (got '59')\n");
    loaded_clear(&l);
    load1(&l, "PORT=abc");
    assert_string_equal(l.err, "vendd: PORT: not a decimal number (got 'abc')\n");
    loaded_clear(&l);
}

static void test_bools(void **state)
{
    static const struct kv_case cases[] = {
        {"MIDTRANS_IS_PRODUCTION=true", true},  {"MIDTRANS_IS_PRODUCTION=TRUE", true},
        {"MIDTRANS_IS_PRODUCTION=Yes", true},   {"MIDTRANS_IS_PRODUCTION=1", true},
        {"MIDTRANS_IS_PRODUCTION=false", true}, {"MIDTRANS_IS_PRODUCTION=No", true},
        {"MIDTRANS_IS_PRODUCTION=0", true},     {"MIDTRANS_IS_PRODUCTION=y", false},
        {"MIDTRANS_IS_PRODUCTION=2", false},    {"MIDTRANS_IS_PRODUCTION=truee", false},
        {"MIDTRANS_IS_PRODUCTION=on", false},   {"MIDTRANS_IS_PRODUCTION= true", false},
    };
    static const struct {
        const char *kv;
        bool value;
    } values[] = {
        {"MIDTRANS_IS_PRODUCTION=YES", true},
        {"MIDTRANS_IS_PRODUCTION=1", true},
        {"MIDTRANS_IS_PRODUCTION=False", false},
        {"MIDTRANS_IS_PRODUCTION=0", false},
    };
    struct loaded l;

    (void)state;
    run_cases(cases, sizeof cases / sizeof cases[0]);
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
        load1(&l, values[i].kv);
        assert_int_equal(l.conf.midtrans_is_production, values[i].value);
        loaded_clear(&l);
    }
    /* Production switches the derived bases... */
    load1(&l, "MIDTRANS_IS_PRODUCTION=true");
    assert_string_equal(l.conf.midtrans_api_base, "https://api.midtrans.com");
    assert_string_equal(l.conf.midtrans_snap_base, "https://app.midtrans.com/snap/v1");
    loaded_clear(&l);
    /* ...but never explicit ones, which lose trailing slashes. */
    {
        char *envp[] = {"MIDTRANS_IS_PRODUCTION=true", "MIDTRANS_API_BASE=http://127.0.0.1:8080/",
                        "MIDTRANS_SNAP_BASE=HTTP://[::1]:9/snap/v1//", NULL};
        load(&l, envp, NULL);
        assert_int_equal(l.rc, VEND_OK);
        assert_string_equal(l.conf.midtrans_api_base, "http://127.0.0.1:8080");
        assert_string_equal(l.conf.midtrans_snap_base, "http://[::1]:9/snap/v1");
        loaded_clear(&l);
    }
}

static void test_strings(void **state)
{
    static const struct kv_case cases[] = {
        {"HOST=127.0.0.1", true},
        {"HOST=::", true},
        {"HOST=::1", true},
        {"HOST=localhost", true},
        {"HOST=vendd-1.example.com", true},
        {"HOST=999.1.1.1", false},
        {"HOST=-bad.example", false},
        {"HOST=bad-.example", false},
        {"HOST=a..b", false},
        {"HOST=a_b", false},
        {"HOST=[::1]", false},
        {"MACHINE_ID=VM_01-a", true},
        {"MACHINE_ID=12345678901234567890123456789012", true},
        {"MACHINE_ID=123456789012345678901234567890123", false},
        {"MACHINE_ID=vm/01", false},
        {"MACHINE_ID=vm+", false},
        {"LOG_FORMAT=json", true},
        {"LOG_FORMAT=text", true},
        {"LOG_FORMAT=JSON", false},
        {"LOG_FORMAT=xml", false},
        {"DATABASE_URL=sqlite:/var/lib/vendd/vendd.db", true},
        {"DATABASE_URL=sqlite:", false},
        {"DATABASE_URL=postgres://u:p@h:5432/db", true},
        {"DATABASE_URL=postgresql://h/db", true},
        {"DATABASE_URL=postgres://", false},
        {"DATABASE_URL=mysql://h/db", false},
        {"DATABASE_URL=var/vendd.db", false},
        {"MQTT_BROKER_URL=mqtt://broker", true},
        {"MQTT_BROKER_URL=mqtts://broker.example.com", true},
        {"MQTT_BROKER_URL=MQTT://broker:1884/", true},
        {"MQTT_BROKER_URL=mqtt://[::1]:1883", true},
        {"MQTT_BROKER_URL=mqtt://10.0.0.1:65535", true},
        {"MQTT_BROKER_URL=http://broker", false},
        {"MQTT_BROKER_URL=ws://broker", false},
        {"MQTT_BROKER_URL=broker:1883", false},
        {"MQTT_BROKER_URL=mqtt://", false},
        {"MQTT_BROKER_URL=mqtt://:1883", false},
        {"MQTT_BROKER_URL=mqtt://u:p@broker", false},
        {"MQTT_BROKER_URL=mqtt://broker/x", false},
        {"MQTT_BROKER_URL=mqtt://broker?x", false},
        {"MQTT_BROKER_URL=mqtt://broker:0", false},
        {"MQTT_BROKER_URL=mqtt://broker:65536", false},
        {"MQTT_BROKER_URL=mqtt://broker:", false},
        {"MQTT_BROKER_URL=mqtt://broker:18x3", false},
        {"MQTT_BROKER_URL=mqtt://::1", false},
        {"MQTT_BROKER_URL=mqtt://[::1", false},
        {"MQTT_BROKER_URL=mqtt://[::1]x", false},
        {"MQTT_BROKER_URL=mqtt://[nothex]:1", false},
        {"MIDTRANS_API_BASE=https://api.example", true},
        {"MIDTRANS_API_BASE=ftp://api.example", false},
        {"MIDTRANS_API_BASE=https://", false},
        {"MIDTRANS_API_BASE=https://u:p@api.example", false},
        {"MIDTRANS_API_BASE=https://api.example/?a=1", false},
        {"MIDTRANS_API_BASE=https://api.example/a b", false},
        {"MQTT_CA_FILE=/etc/ssl/certs/ca-certificates.crt", true},
        {"MQTT_USERNAME=tab\there", false},
        {"MQTT_CLIENT_ID=vendd-prod_2.jkt", true},
        {"MQTT_CLIENT_ID=a", true},
        {"MQTT_CLIENT_ID=vendd/1", false},
        {"MQTT_CLIENT_ID=vendd+", false},
        {"MQTT_CLIENT_ID=vendd#", false},
        {"MQTT_CLIENT_ID=vendd 1", false},
        {"MQTT_CLIENT_ID=vendd:1", false},
        {"MQTT_CLIENT_ID=v\xc3\xa9ndd", false},
    };
    struct loaded l;

    (void)state;
    run_cases(cases, sizeof cases / sizeof cases[0]);

    /* DNS bounds: labels of 63 bytes, names of 253. */
    {
        static const struct {
            size_t label, labels;
            bool ok;
        } names[] = {{63, 1, true}, {64, 1, false}, {62, 4, true}, {63, 4, false}};
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
            char kv[512] = "HOST=";
            size_t at = 5;
            for (size_t j = 0; j < names[i].labels; j++) {
                memset(kv + at, 'a', names[i].label);
                at += names[i].label;
                kv[at++] = j + 1 < names[i].labels ? '.' : '\0';
            }
            load1(&l, kv);
            if ((l.rc == VEND_OK) != names[i].ok)
                fail_msg("%zu labels of %zu bytes: rc %d", names[i].labels, names[i].label, l.rc);
            loaded_clear(&l);
        }
    }

    load1(&l, "MQTT_BROKER_URL=MQTTS://[::1]");
    assert_int_equal(l.rc, VEND_OK);
    assert_string_equal(l.conf.mqtt_broker_url, "mqtts://[::1]:8883");
    assert_string_equal(l.conf.mqtt_host, "::1");
    assert_int_equal(l.conf.mqtt_port, 8883);
    assert_true(l.conf.mqtt_tls);
    loaded_clear(&l);

    load1(&l, "DATABASE_URL=postgres://vendd:s3cret@db:5432/vendd");
    assert_int_equal(l.rc, VEND_OK);
    assert_int_equal(l.conf.db_kind, CONF_DB_POSTGRES);
    assert_string_equal(l.conf.sqlite_path, "");
    loaded_clear(&l);
}

/* MQTT_SHARED_GROUP: one topic level of a safe set, 1..32 bytes, and PostgreSQL only. */
static void test_shared_group(void **state)
{
    static const struct {
        const char *group;
        bool ok;
    } cases[] = {
        {"vendd", true},
        {"a", true},
        {"vendd_prod-2", true},
        {"12345678901234567890123456789012", true},
        {"123456789012345678901234567890123", false},
        {"vendd/1", false},
        {"vendd+", false},
        {"#", false},
        {"ven dd", false},
        {"vendd.jkt", false},
        {"$share", false},
    };
    char pg[] = "DATABASE_URL=postgres://u:p@h:5432/db";
    char sqlite[] = "DATABASE_URL=sqlite:x.db";
    char kv[128];
    struct loaded l;

    (void)state;
    load1(&l, "PORT=3001");
    assert_int_equal(l.rc, VEND_OK);
    assert_string_equal(l.conf.mqtt_shared_group, ""); /* default: plain subscriptions */
    loaded_clear(&l);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *envp[] = {pg, kv, NULL};

        snprintf(kv, sizeof kv, "MQTT_SHARED_GROUP=%s", cases[i].group);
        load(&l, envp, NULL);
        if ((l.rc == VEND_OK) != cases[i].ok)
            fail_msg("MQTT_SHARED_GROUP=%s: rc %d, %s", cases[i].group, l.rc, l.err);
        if (cases[i].ok)
            assert_string_equal(l.conf.mqtt_shared_group, cases[i].group);
        loaded_clear(&l);
    }
    {
        char *envp[] = {sqlite, kv, NULL};

        snprintf(kv, sizeof kv, "MQTT_SHARED_GROUP=vendd");
        load(&l, envp, NULL);
        assert_int_equal(l.rc, VEND_ECONF);
        assert_non_null(strstr(l.err, "MQTT_SHARED_GROUP"));
        assert_non_null(strstr(l.err, "DATABASE_URL"));
        loaded_clear(&l);
    }
}

/* Longest accepted value and one byte more, for every bounded string. */
static void test_lengths(void **state)
{
    static const struct {
        const char *name;
        const char *prefix;
        size_t max;
    } bounds[] = {
        {"MQTT_USERNAME", "", CONF_SECRET_MAX},
        {"MQTT_PASSWORD", "", CONF_SECRET_MAX},
        {"API_TOKEN", "", CONF_SECRET_MAX},
        {"MIDTRANS_SERVER_KEY", "", CONF_SECRET_MAX},
        {"MQTT_CA_FILE", "/", CONF_PATH_MAX},
        {"DATABASE_URL", "sqlite:", CONF_DBURL_MAX},
        {"MIDTRANS_API_BASE", "https://h/", CONF_URL_MAX},
        {"MQTT_CLIENT_ID", "", CONF_CLIENT_ID_MAX},
    };
    char kv[2048];
    char user[] = "MQTT_USERNAME=u";

    (void)state;
    for (size_t i = 0; i < sizeof bounds / sizeof bounds[0]; i++) {
        for (size_t extra = 0; extra <= 1; extra++) {
            struct loaded l;
            size_t len = bounds[i].max + extra;
            int head = snprintf(kv, sizeof kv, "%s=%s", bounds[i].name, bounds[i].prefix);
            char *envp[] = {kv, user, NULL};

            memset(kv + head, 'a', len - strlen(bounds[i].prefix));
            kv[head + len - strlen(bounds[i].prefix)] = '\0';
            load(&l, envp, NULL);
            if (extra == 0) {
                if (l.rc != VEND_OK)
                    fail_msg("%s at %zu bytes: %s", bounds[i].name, len, l.err);
            } else {
                char want[128];
                assert_int_equal(l.rc, VEND_ECONF);
                snprintf(want, sizeof want, "vendd: %s: longer than %zu bytes ", bounds[i].name,
                         bounds[i].max);
                assert_int_equal(strncmp(l.err, want, strlen(want)), 0);
                /* Long values are cut in the message: one short line. */
                assert_true(strlen(l.err) < 200);
            }
            loaded_clear(&l);
        }
    }
}

static void test_secrets_hidden(void **state)
{
    char *envp[] = {"MQTT_PASSWORD=hunter2\x01",
                    "API_TOKEN=tok\x7fsecret",
                    "MIDTRANS_SERVER_KEY=SB-Mid-server-\x02zz",
                    "DATABASE_URL=postgress://vendd:pgsecret@db/vendd",
                    "MQTT_BROKER_URL=mqtt://bob:mqsecret@broker",
                    NULL};
    char *envp2[] = {"MQTT_PASSWORD=hunter2", NULL};
    struct loaded l;

    (void)state;
    load(&l, envp, NULL);
    assert_int_equal(l.rc, VEND_ECONF);
    assert_int_equal(count_lines(l.err), 5);
    assert_null(strstr(l.err, "hunter2"));
    assert_null(strstr(l.err, "secret"));
    assert_non_null(strstr(l.err, "vendd: MQTT_PASSWORD: contains a control character "
                                  "(value hidden)\n"));
    assert_non_null(strstr(l.err, "(got 'postgress://vendd:***@db/vendd')"));
    assert_non_null(strstr(l.err, "(got 'mqtt://bob:***@broker')"));
    loaded_clear(&l);

    /* A password needs a user name; still not echoed. */
    load(&l, envp2, NULL);
    assert_int_equal(l.rc, VEND_ECONF);
    assert_string_equal(l.err, "vendd: MQTT_PASSWORD: set without MQTT_USERNAME (value hidden)\n");
    loaded_clear(&l);
}

static void test_all_reported(void **state)
{
    char *envp[] = {
        "PORT=x", "HOST=a..b", "MACHINE_ID=", "LOG_FORMAT=yaml", "ORDER_PAYMENT_TTL_S=1", NULL};
    struct loaded l;

    (void)state;
    load(&l, envp, NULL);
    assert_int_equal(l.rc, VEND_ECONF);
    /* MACHINE_ID= is empty, so unset: the default applies. */
    assert_int_equal(count_lines(l.err), 4);
    assert_non_null(strstr(l.err, "vendd: PORT: "));
    assert_non_null(strstr(l.err, "vendd: HOST: "));
    assert_non_null(strstr(l.err, "vendd: LOG_FORMAT: must be text or json (got 'yaml')\n"));
    assert_non_null(strstr(l.err, "vendd: ORDER_PAYMENT_TTL_S: "));
    /* A failed load leaves nothing half-filled. */
    assert_int_equal(l.conf.port, 0);
    assert_string_equal(l.conf.machine_id, "");
    loaded_clear(&l);
}

static void test_dotenv_syntax(void **state)
{
    struct scratch *s = *state;
    static const char text[] = "# a comment\n"
                               "\n"
                               "   \t\n"
                               "export PORT=4000\r\n"
                               "HOST = 127.0.0.1   # bind to loopback\n"
                               "MACHINE_ID='VM#02'\n"
                               "MQTT_USERNAME=\"with space # and hash\"  # trailing comment\n"
                               "MQTT_PASSWORD=pa#ss\n"
                               "API_TOKEN=\"\"\n"
                               "OTHER_TOOL_VAR=whatever $HOME\n"
                               "LOG_FORMAT=text\n"
                               "LOG_FORMAT=json\n"
                               "MQTT_CA_FILE=$HOME/ca.pem";
    char *envp[] = {NULL};
    struct loaded l;

    write_file(s->path, text, sizeof text - 1);
    load(&l, envp, s->path);
    assert_int_equal(l.rc, VEND_ECONF); /* MACHINE_ID='VM#02' is not a machine id */
    assert_string_equal(l.err, "vendd: MACHINE_ID: must match [A-Za-z0-9_-]{1,32} (got 'VM#02')\n");
    loaded_clear(&l);

    {
        char fixed[sizeof text + 8];
        char *p;
        memcpy(fixed, text, sizeof text);
        p = strstr(fixed, "VM#02");
        p[2] = '_';
        write_file(s->path, fixed, strlen(fixed));
    }
    load(&l, envp, s->path);
    assert_int_equal(l.rc, VEND_OK);
    assert_int_equal(l.conf.port, 4000);
    assert_string_equal(l.conf.host, "127.0.0.1");
    assert_string_equal(l.conf.machine_id, "VM_02");
    assert_string_equal(l.conf.mqtt_username, "with space # and hash");
    assert_string_equal(l.conf.mqtt_password, "pa#ss");
    assert_string_equal(l.conf.api_token, "");
    assert_true(l.conf.dev_mode);
    assert_int_equal(l.conf.log_format, LOG_FORMAT_JSON);     /* the last one wins */
    assert_string_equal(l.conf.mqtt_ca_file, "$HOME/ca.pem"); /* no expansion */
    loaded_clear(&l);

    /* The environment wins over .env, even when it is empty (then the default applies). */
    {
        char *env2[] = {"PORT=5000", "HOST=", NULL};
        load(&l, env2, s->path);
        assert_int_equal(l.rc, VEND_OK);
        assert_int_equal(l.conf.port, 5000);
        assert_string_equal(l.conf.host, "0.0.0.0");
        loaded_clear(&l);
    }
}

static void test_dotenv_malformed(void **state)
{
    struct scratch *s = *state;
    static const char text[] = "PORT=4000\n"
                               "just words\n"
                               "HOST='unterminated\n"
                               "MACHINE_ID=\"VM01\" extra\n"
                               "1BAD=x\n"
                               "export\n"
                               "API_TOKEN=topsecret value\n"
                               "PORT=nope\n";
    char *envp[] = {NULL};
    char want[2048];
    struct loaded l;

    write_file(s->path, text, sizeof text - 1);
    load(&l, envp, s->path);
    assert_int_equal(l.rc, VEND_ECONF);
    snprintf(want, sizeof want,
             "vendd: %1$s:2: malformed line (expected KEY=VALUE)\n"
             "vendd: %1$s:3: unterminated quote\n"
             "vendd: %1$s:4: text after the closing quote\n"
             "vendd: %1$s:5: malformed line (expected KEY=VALUE)\n"
             "vendd: %1$s:6: malformed line (expected KEY=VALUE)\n"
             "vendd: PORT: not a decimal number (got 'nope')\n",
             s->path);
    assert_string_equal(l.err, want);
    loaded_clear(&l);
}

static void test_dotenv_limits(void **state)
{
    struct scratch *s = *state;
    char *envp[] = {NULL};
    char *big = malloc(CONF_DOTENV_MAX_BYTES + 2);
    char want[256];
    struct loaded l;
    size_t n;

    assert_non_null(big);

    /* Exactly the limit, all comments: fine. One more byte: rejected. */
    memset(big, '#', CONF_DOTENV_MAX_BYTES);
    for (size_t i = 100; i < CONF_DOTENV_MAX_BYTES; i += 100)
        big[i] = '\n';
    write_file(s->path, big, CONF_DOTENV_MAX_BYTES);
    load(&l, envp, s->path);
    assert_int_equal(l.rc, VEND_OK);
    loaded_clear(&l);
    write_file(s->path, big, CONF_DOTENV_MAX_BYTES + 1);
    load(&l, envp, s->path);
    assert_int_equal(l.rc, VEND_ECONF);
    snprintf(want, sizeof want, "vendd: %s: larger than 65536 bytes\n", s->path);
    assert_string_equal(l.err, want);
    loaded_clear(&l);

    /* A line of 4096 bytes is fine (the value is then too long); 4097 is not. */
    n = (size_t)snprintf(big, 32, "API_TOKEN=");
    memset(big + n, 'x', CONF_DOTENV_MAX_LINE - n);
    memcpy(big + CONF_DOTENV_MAX_LINE, "\nPORT=1\n", 8);
    write_file(s->path, big, CONF_DOTENV_MAX_LINE + 8);
    load(&l, envp, s->path);
    assert_int_equal(l.rc, VEND_ECONF);
    assert_string_equal(l.err, "vendd: API_TOKEN: longer than 255 bytes (value hidden)\n");
    loaded_clear(&l);
    big[CONF_DOTENV_MAX_LINE] = 'x';
    memcpy(big + CONF_DOTENV_MAX_LINE + 1, "\nPORT=1\n", 8);
    write_file(s->path, big, CONF_DOTENV_MAX_LINE + 9);
    load(&l, envp, s->path);
    assert_int_equal(l.rc, VEND_ECONF);
    snprintf(want, sizeof want, "vendd: %s:1: line longer than 4096 bytes\n", s->path);
    assert_string_equal(l.err, want);
    assert_null(strstr(l.err, "xxxx"));
    loaded_clear(&l);

    /* A NUL byte. */
    write_file(s->path, "PORT=1\0\n", 8);
    load(&l, envp, s->path);
    assert_int_equal(l.rc, VEND_ECONF);
    snprintf(want, sizeof want, "vendd: %s: contains a NUL byte\n", s->path);
    assert_string_equal(l.err, want);
    loaded_clear(&l);

    /* A directory is not a readable .env. */
    load(&l, envp, s->dir);
    assert_int_equal(l.rc, VEND_ECONF);
    assert_int_equal(count_lines(l.err), 1);
    assert_non_null(strstr(l.err, s->dir));
    loaded_clear(&l);
    free(big);
}

/* What conf_print() writes loads back to the same configuration (secrets aside). */
static void test_print_round_trip(void **state)
{
    struct scratch *s = *state;
    char *envp[] = {"PORT=8080",
                    "HOST=::1",
                    "DATABASE_URL=sqlite:/tmp/x.db",
                    "MQTT_BROKER_URL=mqtts://broker.example.com",
                    "MQTT_USERNAME=vendd",
                    "MQTT_CA_FILE=/etc/ca.pem",
                    "MACHINE_ID=VM-7",
                    "MIDTRANS_IS_PRODUCTION=yes",
                    "DISPENSE_RESULT_GRACE_MS=1000",
                    "DISPENSE_DISPATCH_TTL_S=1",
                    "ORDER_PAYMENT_TTL_S=86400",
                    "LOG_FORMAT=json",
                    NULL};
    char *empty[] = {NULL};
    struct loaded a;
    struct loaded b;
    char *text = NULL;
    size_t len = 0;
    FILE *out;

    load(&a, envp, NULL);
    assert_int_equal(a.rc, VEND_OK);
    out = open_memstream(&text, &len);
    assert_non_null(out);
    conf_print(&a.conf, out);
    assert_int_equal(fclose(out), 0);
    assert_non_null(strstr(text, "MQTT_PASSWORD=(unset)\n"));
    assert_non_null(strstr(text, "MQTT_BROKER_URL=mqtts://broker.example.com:8883\n"));
    assert_non_null(strstr(text, "MIDTRANS_IS_PRODUCTION=true\n"));
    /* "(unset)" would load as a value: drop the secret lines. */
    for (char *p = strstr(text, "=(unset)\n"); p != NULL; p = strstr(text, "=(unset)\n"))
        memcpy(p, "=       ", 8);
    write_file(s->path, text, len);
    load(&b, empty, s->path);
    assert_int_equal(b.rc, VEND_OK);
    assert_memory_equal(&a.conf, &b.conf, sizeof a.conf);
    free(text);
    loaded_clear(&a);
    loaded_clear(&b);
}

static void test_print_secrets(void **state)
{
    char *envp[] = {"MQTT_USERNAME=u",
                    "MQTT_PASSWORD=mqpw",
                    "API_TOKEN=tok",
                    "MIDTRANS_SERVER_KEY=key",
                    "DATABASE_URL=postgresql://vendd:pgpw@db:5432/vendd",
                    NULL};
    struct loaded l;
    char *text = NULL;
    size_t len = 0;
    FILE *out;

    (void)state;
    load(&l, envp, NULL);
    assert_int_equal(l.rc, VEND_OK);
    assert_false(l.conf.dev_mode);
    out = open_memstream(&text, &len);
    assert_non_null(out);
    conf_print(&l.conf, out);
    assert_int_equal(fclose(out), 0);
    assert_null(strstr(text, "mqpw"));
    assert_null(strstr(text, "tok\n"));
    assert_null(strstr(text, "key\n"));
    assert_null(strstr(text, "pgpw"));
    assert_non_null(strstr(text, "MQTT_PASSWORD=(set)\nMQTT_CA_FILE=\n"));
    assert_non_null(strstr(text, "DATABASE_URL=postgresql://vendd:***@db:5432/vendd\n"));
    assert_int_equal(count_lines(text), 32); /* one line per option */
    free(text);
    loaded_clear(&l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_numbers),
        cmocka_unit_test(test_bools),
        cmocka_unit_test(test_strings),
        cmocka_unit_test(test_lengths),
        cmocka_unit_test(test_shared_group),
        cmocka_unit_test(test_secrets_hidden),
        cmocka_unit_test(test_all_reported),
        cmocka_unit_test_setup_teardown(test_dotenv_syntax, scratch_setup, scratch_teardown),
        cmocka_unit_test_setup_teardown(test_dotenv_malformed, scratch_setup, scratch_teardown),
        cmocka_unit_test_setup_teardown(test_dotenv_limits, scratch_setup, scratch_teardown),
        cmocka_unit_test_setup_teardown(test_print_round_trip, scratch_setup, scratch_teardown),
        cmocka_unit_test(test_print_secrets),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
