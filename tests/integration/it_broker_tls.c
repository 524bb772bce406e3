/*
 * it_broker_tls.c - the production broker as shipped: a real mosquitto started with
 * deploy/mosquitto/prod.conf and deploy/mosquitto/vendd.acl themselves, TLS with a CA and a
 * server certificate made here by the openssl command, machine passwords issued by vendctl.
 *
 * The config is copied line by line with only these changes (prod_conf() checks each is
 * made exactly once, so a change of prod.conf that breaks them fails here): a "user" line
 * first (tests/support/broker.h: a broker started as root stays who we are), "listener 8883"
 * becomes "listener PORT 127.0.0.1", the paths under /etc/mosquitto and /var/lib/mosquitto
 * point into the test's directory (the ACL at the tree's own vendd.acl), and "log_dest
 * syslog" becomes a file there. Every other line is prod.conf's.
 *
 * The password file starts with vendd's entry made by mosquitto_passwd, as an operator does;
 * `vendctl machines passwd VM01` and `vendctl machines add VMB` add the machines', the broker
 * reloads on SIGHUP. Then: each machine reaches its own topics and nothing else; wrong
 * passwords, anonymous and plain TCP are refused; vendd (mqtts://, MQTT_CA_FILE) and vmsim
 * over TLS complete an order; vendd given the wrong CA refuses the broker and says why;
 * a password rotated or revoked stops working.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <mosquitto.h>
#include <mqtt_protocol.h>

#include "harness.h"

#define WAIT_MS       5000
#define QUIET_MS      300 /* after a barrier message: time for anything else to show up */
#define PW_VENDD      "it-tls-vendd-broker-password"
#define CLI_MSG_MAX   64
#define CLI_TOPIC_MAX 128

struct tls {
    struct harness h;      /* vendd; its default broker is not used */
    struct test_broker pb; /* prod.conf: the machines' listener on pb.port */
    uint16_t port2;        /* and vendd's */
    char ca[HARNESS_PATH_MAX + 16], other_ca[HARNESS_PATH_MAX + 16];
    char passwd[HARNESS_PATH_MAX + 16];
    char pw_a[64], pw_b[64]; /* VM01's and VMB's, from vendctl */
    pid_t sim;
};

/* ---- running programs ------------------------------------------------------------------- */

/* Run argv with env added; stdout into out (NUL-terminated, may be NULL). Exit status or -1. */
static int run(const char *const *argv, const char *const *env, char *out, size_t size)
{
    int fds[2], status;
    size_t len = 0;
    ssize_t n;
    pid_t pid;

    if (pipe(fds) < 0)
        return -1;
    pid = fork();
    if (pid == 0) {
        int null = open("/dev/null", O_RDONLY);

        dup2(null, 0);
        dup2(fds[1], 1);
        close(fds[0]);
        for (size_t i = 0; env != NULL && env[i] != NULL; i++)
            putenv((char *)env[i]);
        execvp(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(fds[1]);
    for (;;) {
        char sink[256];

        n = out != NULL && len < size - 1 ? read(fds[0], out + len, size - 1 - len)
                                          : read(fds[0], sink, sizeof(sink));
        if (n <= 0)
            break;
        if (out != NULL && len < size - 1)
            len += (size_t)n;
    }
    close(fds[0]);
    if (out != NULL)
        out[len] = '\0';
    if (pid < 0 || waitpid(pid, &status, 0) != pid)
        return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static int vendctl(struct tls *t, const char *const *args, char *out, size_t size)
{
    char url[64];
    const char *argv[12] = {getenv("VENDCTL")};
    const char *env[] = {url, NULL};
    size_t i;

    snprintf(url, sizeof(url), "VENDCTL_URL=http://127.0.0.1:%u", (unsigned)t->h.http_port);
    for (i = 0; args[i] != NULL && i < 10; i++)
        argv[i + 1] = args[i];
    argv[i + 1] = NULL;
    return run(argv, env, out, size);
}

/* The password from "broker password  PW" in vendctl's output. */
static int password_of(const char *out, char *pw, size_t size)
{
    const char *p = strstr(out, "broker password");

    if (p == NULL)
        return -1;
    p += strlen("broker password");
    p += strspn(p, " ");
    snprintf(pw, size, "%.*s", (int)strcspn(p, "\n"), p);
    return strlen(pw) == 32 ? 0 : -1;
}

/* ---- certificates ------------------------------------------------------------------------ */

static int openssl(const char *dir, const char *cmd)
{
    char line[2048];

    snprintf(line, sizeof(line), "cd '%s' && openssl %s >>openssl.log 2>&1", dir, cmd);
    return system(line) == 0 ? 0 : -1;
}

/* ca.crt signs server.crt (localhost, 127.0.0.1); other-ca.crt signs nothing of ours. */
static int make_certs(const char *dir)
{
    static const char *const cmds[] = {
        "req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 "
        "-subj /CN=vendd-test-CA -keyout ca.key -out ca.crt",
        "req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 "
        "-subj /CN=vendd-other-CA -keyout other-ca.key -out other-ca.crt",
        "req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost "
        "-keyout server.key -out server.csr",
        "x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 "
        "-extfile server.ext -out server.crt",
    };
    char path[HARNESS_PATH_MAX + 16];
    FILE *f;

    snprintf(path, sizeof(path), "%s/server.ext", dir);
    f = fopen(path, "w");
    if (f == NULL)
        return -1;
    fputs("subjectAltName=DNS:localhost,IP:127.0.0.1\n", f);
    fclose(f);
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
        if (openssl(dir, cmds[i]) < 0) {
            fprintf(stderr, "it_broker_tls: openssl %s failed (see %s/openssl.log)\n", cmds[i],
                    dir);
            return -1;
        }
    }
    return 0;
}

/* A free loopback port, for vendd's listener. */
static int free_port(uint16_t *port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), rc = -1;

    if (fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
        getsockname(fd, (struct sockaddr *)&sa, &len) == 0) {
        *port = ntohs(sa.sin_port);
        rc = 0;
    }
    if (fd >= 0)
        close(fd);
    return rc;
}

/* ---- prod.conf ------------------------------------------------------------------------ */

enum subst_value { V_PORT, V_PORT2, V_DIR, V_ACL };

/* The line from (found times) becomes: before, the value, after. */
static const struct {
    const char *from, *before;
    enum subst_value value;
    const char *after;
    int times;
} subst[] = {
    {"listener 8883", "listener ", V_PORT, " 127.0.0.1", 1},
    {"listener 8884 127.0.0.1", "listener ", V_PORT2, " 127.0.0.1", 1},
    {"password_file /etc/mosquitto/vendd.passwd", "password_file ", V_DIR, "/vendd.passwd", 1},
    {"acl_file /etc/mosquitto/vendd.acl", "acl_file ", V_ACL, "", 1},
    {"certfile /etc/mosquitto/certs/server.crt", "certfile ", V_DIR, "/server.crt", 2},
    {"keyfile /etc/mosquitto/certs/server.key", "keyfile ", V_DIR, "/server.key", 2},
    {"persistence_location /var/lib/mosquitto/", "persistence_location ", V_DIR, "/", 1},
    {"log_dest syslog", "log_dest file ", V_DIR, "/mosquitto.log", 1},
};
#define NSUBST (sizeof(subst) / sizeof(subst[0]))

static int prod_conf(const struct test_broker *b, FILE *out, void *arg)
{
    const struct tls *t = arg;
    const char *src = getenv("PROD_CONF"), *acl = getenv("PROD_ACL");
    char line[512];
    int made[NSUBST] = {0};
    FILE *in;

    if (src == NULL || acl == NULL || (in = fopen(src, "r")) == NULL) {
        fprintf(stderr, "it_broker_tls: PROD_CONF and PROD_ACL must name the files\n");
        return -1;
    }
    while (fgets(line, sizeof(line), in) != NULL) {
        size_t i;

        line[strcspn(line, "\n")] = '\0';
        for (i = 0; i < NSUBST && strcmp(line, subst[i].from) != 0; i++)
            ;
        if (i == NSUBST) {
            fprintf(out, "%s\n", line);
            continue;
        }
        made[i]++;
        fputs(subst[i].before, out);
        if (subst[i].value == V_PORT || subst[i].value == V_PORT2)
            fprintf(out, "%u", (unsigned)(subst[i].value == V_PORT ? b->port : t->port2));
        else
            fputs(subst[i].value == V_ACL ? acl : t->h.dir, out);
        fprintf(out, "%s\n", subst[i].after);
    }
    fclose(in);
    for (size_t i = 0; i < NSUBST; i++) {
        if (made[i] != subst[i].times) {
            fprintf(stderr, "it_broker_tls: prod.conf has '%s' %d times, not %d\n", subst[i].from,
                    made[i], subst[i].times);
            return -1;
        }
    }
    return 0;
}

/* ---- an MQTT client with TLS and a password ----------------------------------------------- */

struct cli {
    struct mosquitto *m;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int connack; /* -1 until a CONNACK; then its reason code */
    bool down;   /* the connection ended */
    int suback;  /* SUBACKs */
    int puback_mid, puback_rc;
    int n;
    char topics[CLI_MSG_MAX][CLI_TOPIC_MAX];
};

static void cli_on_connect(struct mosquitto *m, void *arg, int rc, int flags,
                           const mosquitto_property *props)
{
    struct cli *c = arg;

    (void)m, (void)flags, (void)props;
    pthread_mutex_lock(&c->mu);
    c->connack = rc;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

static void cli_on_disconnect(struct mosquitto *m, void *arg, int rc,
                              const mosquitto_property *props)
{
    struct cli *c = arg;

    (void)m, (void)rc, (void)props;
    pthread_mutex_lock(&c->mu);
    c->down = true;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

static void cli_on_subscribe(struct mosquitto *m, void *arg, int mid, int n, const int *granted,
                             const mosquitto_property *props)
{
    struct cli *c = arg;

    (void)m, (void)mid, (void)n, (void)granted, (void)props;
    pthread_mutex_lock(&c->mu);
    c->suback++;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

static void cli_on_publish(struct mosquitto *m, void *arg, int mid, int rc,
                           const mosquitto_property *props)
{
    struct cli *c = arg;

    (void)m, (void)props;
    pthread_mutex_lock(&c->mu);
    c->puback_mid = mid;
    c->puback_rc = rc;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

static void cli_on_message(struct mosquitto *m, void *arg, const struct mosquitto_message *msg,
                           const mosquitto_property *props)
{
    struct cli *c = arg;

    (void)m, (void)props;
    pthread_mutex_lock(&c->mu);
    if (c->n < CLI_MSG_MAX)
        snprintf(c->topics[c->n++], CLI_TOPIC_MAX, "%s", msg->topic);
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

/* Wait (bounded) until *what (under c->mu) passes test; true if it did. */
static bool cli_wait(struct cli *c, bool (*test)(const struct cli *c, const void *arg),
                     const void *arg, int timeout_ms)
{
    uint64_t deadline = harness_now_ms() + (uint64_t)timeout_ms;
    bool ok;

    pthread_mutex_lock(&c->mu);
    while (!(ok = test(c, arg)) && harness_now_ms() < deadline) {
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 20 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&c->cv, &c->mu, &ts);
    }
    pthread_mutex_unlock(&c->mu);
    return ok;
}

static bool connack_or_down(const struct cli *c, const void *arg)
{
    (void)arg;
    return c->connack >= 0 || c->down;
}

/*
 * Connect as id with user/pass (NULL: none) over TLS checked against ca (NULL: plain TCP).
 * Returns the CONNACK's reason code (0: in), or -1 if the connection ended without one.
 */
static int cli_open(struct cli *c, uint16_t port, const char *id, const char *user,
                    const char *pass, const char *ca)
{
    int rc;

    memset(c, 0, sizeof(*c));
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    c->connack = -1;
    c->m = mosquitto_new(id, true, c);
    assert_non_null(c->m);
    mosquitto_int_option(c->m, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5);
    if (user != NULL)
        assert_int_equal(mosquitto_username_pw_set(c->m, user, pass), MOSQ_ERR_SUCCESS);
    if (ca != NULL)
        assert_int_equal(mosquitto_tls_set(c->m, ca, NULL, NULL, NULL, NULL), MOSQ_ERR_SUCCESS);
    mosquitto_connect_v5_callback_set(c->m, cli_on_connect);
    mosquitto_disconnect_v5_callback_set(c->m, cli_on_disconnect);
    mosquitto_subscribe_v5_callback_set(c->m, cli_on_subscribe);
    mosquitto_publish_v5_callback_set(c->m, cli_on_publish);
    mosquitto_message_v5_callback_set(c->m, cli_on_message);
    rc = mosquitto_connect_bind_v5(c->m, "localhost", port, 30, NULL, NULL);
    if (rc != MOSQ_ERR_SUCCESS)
        return -1; /* TLS refused in the handshake, or no TCP */
    assert_int_equal(mosquitto_loop_start(c->m), MOSQ_ERR_SUCCESS);
    cli_wait(c, connack_or_down, NULL, WAIT_MS);
    return c->connack;
}

static void cli_close(struct cli *c)
{
    if (c->m == NULL)
        return;
    mosquitto_disconnect(c->m);
    mosquitto_loop_stop(c->m, true);
    mosquitto_destroy(c->m);
    c->m = NULL;
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
}

static bool subacked(const struct cli *c, const void *arg)
{
    return c->suback >= *(const int *)arg;
}

static void cli_sub(struct cli *c, const char *filter)
{
    int want;

    pthread_mutex_lock(&c->mu);
    want = c->suback + 1;
    pthread_mutex_unlock(&c->mu);
    assert_int_equal(mosquitto_subscribe_v5(c->m, NULL, filter, 1, 0, NULL), MOSQ_ERR_SUCCESS);
    assert_true(cli_wait(c, subacked, &want, WAIT_MS));
}

static bool pubacked(const struct cli *c, const void *arg)
{
    return c->puback_mid == *(const int *)arg;
}

/* Publish at QoS 1; the PUBACK's reason code (0 accepted, 0x87 not authorized). */
static int cli_pub(struct cli *c, const char *topic, const char *payload)
{
    int mid = 0, rc;

    assert_int_equal(
        mosquitto_publish_v5(c->m, &mid, topic, (int)strlen(payload), payload, 1, false, NULL),
        MOSQ_ERR_SUCCESS);
    assert_true(cli_wait(c, pubacked, &mid, WAIT_MS));
    pthread_mutex_lock(&c->mu);
    rc = c->puback_rc;
    pthread_mutex_unlock(&c->mu);
    return rc;
}

static bool has_topic(const struct cli *c, const void *arg)
{
    for (int i = 0; i < c->n; i++) {
        if (strcmp(c->topics[i], arg) == 0)
            return true;
    }
    return false;
}

/* Messages c got on topics starting with prefix. */
static int cli_count(struct cli *c, const char *prefix)
{
    int n = 0;

    pthread_mutex_lock(&c->mu);
    for (int i = 0; i < c->n; i++)
        n += strncmp(c->topics[i], prefix, strlen(prefix)) == 0;
    pthread_mutex_unlock(&c->mu);
    return n;
}

/* The barrier arrived (and then QUIET_MS for stragglers). */
static void cli_barrier(struct cli *c, const char *topic)
{
    assert_true(cli_wait(c, has_topic, topic, WAIT_MS));
    harness_sleep_ms(QUIET_MS);
}

/* ---- setup --------------------------------------------------------------------------------- */

static bool reloaded(struct tls *t, const char *user, const char *pw)
{
    struct cli c;
    uint64_t deadline = harness_now_ms() + WAIT_MS;
    int rc = -1;

    while (rc != 0 && harness_now_ms() < deadline) {
        rc = cli_open(&c, strcmp(user, "vendd") == 0 ? t->port2 : t->pb.port, "it-reload", user, pw,
                      t->ca);
        cli_close(&c);
        if (rc != 0)
            harness_sleep_ms(50);
    }
    return rc == 0;
}

static int issue(struct tls *t, const char *const *args, char *pw)
{
    char out[4096];

    if (vendctl(t, args, out, sizeof(out)) != 0 || password_of(out, pw, 64) < 0) {
        fprintf(stderr, "it_broker_tls: vendctl %s %s failed: %s\n", args[0], args[1], out);
        return -1;
    }
    return 0;
}

static int setup(void **state)
{
    struct tls *t = calloc(1, sizeof(*t));
    char kv[HARNESS_PATH_MAX + 32];
    const char *mp[] = {"mosquitto_passwd", "-c", "-b", NULL, "vendd", PW_VENDD, NULL};

    if (t == NULL || getenv("VENDCTL") == NULL || getenv("VMSIM") == NULL) {
        free(t);
        return -1;
    }
    if (harness_prepare(&t->h, NULL) < 0)
        goto fail;
    snprintf(t->ca, sizeof(t->ca), "%s/ca.crt", t->h.dir);
    snprintf(t->other_ca, sizeof(t->other_ca), "%s/other-ca.crt", t->h.dir);
    snprintf(t->passwd, sizeof(t->passwd), "%s/vendd.passwd", t->h.dir);
    mp[3] = t->passwd;
    if (make_certs(t->h.dir) < 0 || run(mp, NULL, NULL, 0) != 0)
        goto fail;
    if (free_port(&t->port2) < 0 || test_broker_start_with(&t->pb, prod_conf, t) < 0)
        goto fail;
    snprintf(kv, sizeof(kv), "MQTT_BROKER_URL=mqtts://localhost:%u", (unsigned)t->port2);
    if (harness_env_set(&t->h, kv) < 0)
        goto fail;
    snprintf(kv, sizeof(kv), "MQTT_CA_FILE=%s", t->ca);
    if (harness_env_set(&t->h, kv) < 0 || harness_env_set(&t->h, "MQTT_USERNAME=vendd") < 0 ||
        harness_env_set(&t->h, "MQTT_PASSWORD=" PW_VENDD) < 0 || harness_vendd_start(&t->h) < 0)
        goto fail;
    /* VM01 is vendd's own machine (MACHINE_ID); VMB is new. */
    if (issue(
            t,
            (const char *const[]){"machines", "passwd", "VM01", "--broker-passwd", t->passwd, NULL},
            t->pw_a) < 0 ||
        issue(t,
              (const char *const[]){"machines", "add", "VMB", "--broker-passwd", t->passwd, NULL},
              t->pw_b) < 0)
        goto fail;
    kill(t->pb.pid, SIGHUP);
    if (!reloaded(t, "VM01", t->pw_a) || !reloaded(t, "VMB", t->pw_b))
        goto fail;
    *state = t;
    return 0;
fail:
    test_broker_stop(&t->pb);
    harness_stop(&t->h);
    free(t);
    return -1;
}

static int teardown(void **state)
{
    struct tls *t = *state;
    int status;

    if (t == NULL)
        return 0; /* the setup failed and cleaned up */
    if (t->sim > 0) {
        kill(t->sim, SIGTERM);
        waitpid(t->sim, &status, 0);
    }
    test_broker_stop(&t->pb);
    harness_stop(&t->h);
    free(t);
    return 0;
}

/* ---- the tests ------------------------------------------------------------------------------- */

static void password_file_is_mosquittos_own_format(void **state)
{
    struct tls *t = *state;
    char text[4096];
    struct stat st;
    FILE *f = fopen(t->passwd, "r");
    size_t n;

    assert_non_null(f);
    n = fread(text, 1, sizeof(text) - 1, f);
    fclose(f);
    text[n] = '\0';
    /* mosquitto_passwd's entry kept, one line each for the machines, no password in clear. */
    assert_non_null(strstr(text, "vendd:$7$101$"));
    assert_non_null(strstr(text, "\nVM01:$7$101$"));
    assert_non_null(strstr(text, "\nVMB:$7$101$"));
    assert_null(strstr(text, t->pw_a));
    assert_null(strstr(text, t->pw_b));
    assert_int_equal(stat(t->passwd, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0640);
}

static void a_machine_reaches_its_own_topics_and_nothing_else(void **state)
{
    struct tls *t = *state;
    struct cli spy, a, b;

    /* spy: the backend's user, which reads every machine's reports. */
    assert_int_equal(cli_open(&spy, t->port2, "it-spy", "vendd", PW_VENDD, t->ca), 0);
    cli_sub(&spy, "vm/#");
    assert_int_equal(cli_open(&a, t->pb.port, "it-a", "VM01", t->pw_a, t->ca), 0);
    assert_int_equal(cli_open(&b, t->pb.port, "it-b", "VMB", t->pw_b, t->ca), 0);
    cli_sub(&a, "#"); /* 2.0.11 grants any subscription; reading is checked at delivery */
    cli_sub(&b, "vm/VMB/#");

    /* Its own reports: accepted and seen by the backend. */
    assert_int_equal(cli_pub(&a, "vm/VM01/telemetry", "{\"it\":1}"), 0);
    assert_int_equal(cli_pub(&a, "vm/VM01/dispense_result", "{\"it\":1}"), 0);
    cli_barrier(&spy, "vm/VM01/dispense_result");
    assert_int_equal(cli_count(&spy, "vm/VM01/telemetry"), 1);

    /* B's reports, commands and configs of anyone: refused, and nobody sees them. */
    assert_int_equal(cli_pub(&a, "vm/VMB/telemetry", "{\"it\":2}"), MQTT_RC_NOT_AUTHORIZED);
    assert_int_equal(cli_pub(&a, "vm/VMB/status", "{\"it\":2}"), MQTT_RC_NOT_AUTHORIZED);
    assert_int_equal(cli_pub(&a, "vm/VMB/dispense_result", "{\"it\":2}"), MQTT_RC_NOT_AUTHORIZED);
    assert_int_equal(cli_pub(&a, "vm/VMB/command", "{\"it\":2}"), MQTT_RC_NOT_AUTHORIZED);
    assert_int_equal(cli_pub(&a, "vm/VMB/config", "{\"it\":2}"), MQTT_RC_NOT_AUTHORIZED);
    assert_int_equal(cli_pub(&a, "vm/VM01/command", "{\"it\":2}"), MQTT_RC_NOT_AUTHORIZED);
    assert_int_equal(cli_pub(&a, "vm/VM01/config", "{\"it\":2}"), MQTT_RC_NOT_AUTHORIZED);
    assert_int_equal(cli_pub(&a, "vm/VM01/telemetry", "{\"it\":\"barrier\"}"), 0);
    cli_barrier(&spy, "vm/VM01/telemetry");
    assert_int_equal(cli_count(&spy, "vm/VMB/"), 0);
    assert_int_equal(cli_count(&b, "vm/VMB/"), 0);
    assert_int_equal(cli_count(&a, "vm/VM01/command"), 0);
    assert_int_equal(cli_count(&a, "vm/VM01/config"), 0);

    /* Commands from the backend: A reads its own and never B's. */
    assert_int_equal(cli_pub(&spy, "vm/VMB/command", "{\"it\":3}"), 0);
    assert_int_equal(cli_pub(&spy, "vm/VM01/command", "{\"it\":3}"), 0);
    cli_barrier(&a, "vm/VM01/command");
    cli_barrier(&b, "vm/VMB/command");
    assert_int_equal(cli_count(&a, "vm/VMB/"), 0);
    assert_int_equal(cli_count(&b, "vm/VM01/"), 0);
    cli_close(&a);
    cli_close(&b);
    cli_close(&spy);
}

/* Results v1 and v2 got between them. */
static int group_count(struct cli *v1, struct cli *v2)
{
    return cli_count(v1, "vm/VM01/dispense_result") + cli_count(v2, "vm/VM01/dispense_result");
}

/*
 * Several vendd in one group (MQTT_SHARED_GROUP): their "$share/G/vm/+/..." subscriptions
 * pass the ACL as the backend's user (mosquitto 2.0.11 checks reading at delivery, on the
 * message's own topic), and each report goes to one member. A machine is granted any
 * subscription (the ACL file checks none): in another group it reads nothing, but in vendd's
 * own group it takes its turn of the round-robin, and what it may not read is dropped. So the
 * group's name must be one a machine cannot guess (docs/CONFIG.md); this test fails, to
 * say so, when a broker stops dropping them.
 */
static void the_backends_shared_subscriptions_get_the_reports(void **state)
{
    struct tls *t = *state;
    struct cli v1, v2, a, b;

    assert_int_equal(cli_open(&v1, t->port2, "it-vendd-1", "vendd", PW_VENDD, t->ca), 0);
    assert_int_equal(cli_open(&v2, t->port2, "it-vendd-2", "vendd", PW_VENDD, t->ca), 0);
    cli_sub(&v1, "$share/k7Qw2-vendd/vm/+/dispense_result");
    cli_sub(&v1, "$share/k7Qw2-vendd/vm/+/telemetry");
    cli_sub(&v2, "$share/k7Qw2-vendd/vm/+/dispense_result");
    cli_sub(&v2, "$share/k7Qw2-vendd/vm/+/telemetry");
    assert_int_equal(cli_open(&a, t->pb.port, "it-a", "VM01", t->pw_a, t->ca), 0);
    assert_int_equal(cli_open(&b, t->pb.port, "it-b", "VMB", t->pw_b, t->ca), 0);
    cli_sub(&b, "$share/vendd/vm/+/dispense_result"); /* a guess: another group */
    cli_sub(&b, "vm/+/dispense_result");

    for (int i = 0; i < 6; i++)
        assert_int_equal(cli_pub(&a, "vm/VM01/dispense_result", "{\"it\":1}"), 0);
    assert_int_equal(cli_pub(&a, "vm/VM01/telemetry", "{\"it\":1}"), 0);
    cli_barrier(&v1, "vm/VM01/dispense_result");
    /* Each result reached exactly one instance, both instances got some, the machine none. */
    assert_int_equal(group_count(&v1, &v2), 6);
    assert_true(cli_count(&v1, "vm/VM01/dispense_result") > 0);
    assert_true(cli_count(&v2, "vm/VM01/dispense_result") > 0);
    assert_int_equal(cli_count(&v1, "vm/VM01/telemetry") + cli_count(&v2, "vm/VM01/telemetry"), 1);
    assert_int_equal(cli_count(&b, "vm/VM01/"), 0);

    /* The machine that knows the group's name: its turns are lost to vendd. */
    cli_sub(&b, "$share/k7Qw2-vendd/vm/+/dispense_result");
    for (int i = 0; i < 6; i++)
        assert_int_equal(cli_pub(&a, "vm/VM01/dispense_result", "{\"it\":2}"), 0);
    harness_sleep_ms(QUIET_MS);
    assert_true(group_count(&v1, &v2) < 12);
    assert_int_equal(cli_count(&b, "vm/VM01/"), 0);
    cli_close(&a);
    cli_close(&b);
    cli_close(&v2);
    cli_close(&v1);
}

static bool is_down(const struct cli *c, const void *arg)
{
    (void)arg;
    return c->down;
}

/* A machine naming itself "vendd" or another machine gets its own session, not theirs. */
static void a_machine_cannot_take_another_clients_session(void **state)
{
    struct tls *t = *state;
    int lost = harness_log_count(&t->h, "connection to broker lost");
    struct cli b, as_vendd, as_b;

    assert_int_equal(cli_open(&b, t->pb.port, "VMB", "VMB", t->pw_b, t->ca), 0);
    assert_int_equal(cli_open(&as_vendd, t->pb.port, "vendd", "VM01", t->pw_a, t->ca), 0);
    assert_int_equal(cli_open(&as_b, t->pb.port, "VMB", "VM01", t->pw_a, t->ca), 0);
    /* A's two connections share the id VM01: one of them is dropped, nobody else. */
    assert_false(cli_wait(&b, is_down, NULL, 1000));
    assert_int_equal(harness_log_count(&t->h, "connection to broker lost"), lost);
    cli_close(&as_b);
    cli_close(&as_vendd);
    cli_close(&b);
    assert_int_equal(harness_log_count(&t->h, "connection to broker lost"), lost);
}

static void wrong_passwords_anonymous_and_plain_tcp_are_refused(void **state)
{
    struct tls *t = *state;
    struct cli c;
    int rc;

    rc = cli_open(&c, t->pb.port, "it-bad", "VM01", "not-the-password", t->ca);
    cli_close(&c);
    assert_true(rc > 0);
    rc = cli_open(&c, t->pb.port, "it-bad", "VM01", t->pw_b, t->ca); /* B's, as A */
    cli_close(&c);
    assert_true(rc > 0);
    rc = cli_open(&c, t->pb.port, "it-bad", NULL, NULL, t->ca);
    cli_close(&c);
    assert_true(rc > 0);
    /* Plain MQTT to the TLS listener: no CONNACK at all. */
    rc = cli_open(&c, t->pb.port, "it-plain", "VM01", t->pw_a, NULL);
    cli_close(&c);
    assert_int_equal(rc, -1);
    /* A client that does not trust the broker's CA gets nowhere either. */
    rc = cli_open(&c, t->pb.port, "it-ca", "VM01", t->pw_a, t->other_ca);
    cli_close(&c);
    assert_int_equal(rc, -1);
}

static void vendd_and_vmsim_complete_an_order_over_tls(void **state)
{
    struct tls *t = *state;
    struct harness *h = &t->h;
    char url[64], state_dir[HARNESS_PATH_MAX + 16], log[HARNESS_PATH_MAX + 16];
    char drops[HARNESS_PATH_MAX + 16]; /* vmsim --drop-log, for harness_check() */
    const char *bin = getenv("VMSIM");

    assert_non_null(bin);
    snprintf(url, sizeof(url), "mqtts://localhost:%u", (unsigned)t->pb.port);
    snprintf(state_dir, sizeof(state_dir), "%s/vmsim", h->dir);
    snprintf(log, sizeof(log), "%s/vmsim.log", h->dir);
    snprintf(drops, sizeof(drops), "%s/drops.log", h->dir);
    assert_int_equal(mkdir(state_dir, 0700), 0);
    assert_int_equal(harness_put_slot(h, 1, 5, 300), 0);
    t->sim = fork();
    if (t->sim == 0) {
        if (freopen(log, "a", stdout) == NULL || dup2(STDOUT_FILENO, STDERR_FILENO) < 0)
            _exit(126);
        setenv("MQTT_BROKER_URL", url, 1);
        setenv("MQTT_USERNAME", "VM01", 1);
        setenv("MQTT_PASSWORD", t->pw_a, 1);
        setenv("MQTT_CA_FILE", t->ca, 1);
        execl(bin, bin, "--id", "VM01", "--slots", "2", "--stock", "10", "--motor-ms", "300",
              "--drop-prob", "1", "--state-dir", state_dir, "--drop-log", drops, (char *)NULL);
        _exit(127);
    }
    assert_true(t->sim > 0);
    assert_int_equal(
        harness_sql_wait(h, "SELECT status FROM machines WHERE id = 'VM01'", "ONLINE", 10000), 0);
    assert_int_equal(harness_order(h, "tls-1", 1, 1), 0);
    assert_int_equal(harness_trigger(h, "tls-1", NULL), 200);
    assert_int_equal(
        harness_sql_wait(h, "SELECT status FROM orders WHERE id = 'tls-1'", "COMPLETED", 10000), 0);
    assert_int_equal(harness_check(h, drops), 0);
}

static void vendd_refuses_a_broker_its_ca_did_not_sign(void **state)
{
    struct tls *t = *state;
    struct harness *h = &t->h;
    char kv[HARNESS_PATH_MAX + 32];
    struct harness_reply r;

    assert_int_equal(harness_vendd_term(h), 0);
    snprintf(kv, sizeof(kv), "MQTT_CA_FILE=%s", t->other_ca);
    assert_int_equal(harness_env_set(h, kv), 0);
    assert_int_equal(harness_vendd_start_nobroker(h), 0);
    /* Three attempts (both sessions retry): each names the reason and the CA file. */
    assert_true(harness_log_wait(h,
                                 "failed: TLS: certificate verify failed (the broker's "
                                 "certificate is not signed by MQTT_CA_FILE",
                                 3, WAIT_MS) >= 3);
    /* Every failed attempt says why, not libmosquitto's "A TLS error occurred". */
    assert_int_equal(harness_log_count(h, "A TLS error occurred"), 0);
    assert_int_equal(harness_log_count(h, "failed: connection closed"), 0);
    assert_int_equal(harness_call(h, "GET", "/health", NULL, &r), 200);
    assert_false(json_is_true(json_object_get(r.json, "mqtt_connected")));
    harness_reply_free(&r);
    /* The right CA again: in. */
    assert_int_equal(harness_vendd_term(h), 0);
    snprintf(kv, sizeof(kv), "MQTT_CA_FILE=%s", t->ca);
    assert_int_equal(harness_env_set(h, kv), 0);
    assert_int_equal(harness_vendd_start(h), 0);
}

/* Whole file as text into buf. */
static void slurp(const char *path, char *buf, size_t size)
{
    FILE *f = fopen(path, "r");
    size_t n;

    assert_non_null(f);
    n = fread(buf, 1, size - 1, f);
    buf[n] = '\0';
    fclose(f);
}

/* --json carries the password; what vendctl must refuse leaves the file as it was. */
static void vendctl_json_and_refusals(void **state)
{
    struct tls *t = *state;
    char out[4096], before[4096], after[4096];
    json_t *doc;
    struct cli c;
    int rc;

    assert_int_equal(vendctl(t,
                             (const char *const[]){"--json", "machines", "add", "VMC",
                                                   "--broker-passwd", t->passwd, NULL},
                             out, sizeof(out)),
                     0);
    doc = json_loads(out, 0, NULL);
    assert_non_null(doc);
    assert_string_equal(json_string_value(json_object_get(doc, "id")), "VMC");
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(doc, "broker"), "username")), "VMC");
    kill(t->pb.pid, SIGHUP);
    assert_true(reloaded(
        t, "VMC", json_string_value(json_object_get(json_object_get(doc, "broker"), "password"))));
    json_decref(doc);

    slurp(t->passwd, before, sizeof(before));
    /* Registered already (409): its password stays. */
    rc = vendctl(
        t, (const char *const[]){"machines", "add", "VMC", "--broker-passwd", t->passwd, NULL}, out,
        sizeof(out));
    assert_int_equal(rc, 3);
    /* Unknown to vendd, the backend's user, no file option. */
    rc = vendctl(
        t, (const char *const[]){"machines", "passwd", "NOPE", "--broker-passwd", t->passwd, NULL},
        out, sizeof(out));
    assert_int_equal(rc, 4);
    rc = vendctl(
        t, (const char *const[]){"machines", "passwd", "vendd", "--broker-passwd", t->passwd, NULL},
        out, sizeof(out));
    assert_int_equal(rc, 2);
    rc = vendctl(t, (const char *const[]){"machines", "revoke", "VMC", NULL}, out, sizeof(out));
    assert_int_equal(rc, 2);
    slurp(t->passwd, after, sizeof(after));
    assert_string_equal(before, after);
    rc = cli_open(&c, t->port2, "it-vendd", "vendd", PW_VENDD, t->ca);
    cli_close(&c);
    assert_int_equal(rc, 0); /* vendd's password is untouched */
}

static void a_rotated_or_revoked_password_stops_working(void **state)
{
    struct tls *t = *state;
    char pw[64], out[1024];
    struct cli c, held;
    int rc;

    assert_int_equal(cli_open(&held, t->pb.port, "VMB", "VMB", t->pw_b, t->ca), 0);
    assert_int_equal(issue(t,
                           (const char *const[]){"machines", "passwd", "VMB", "--broker-passwd",
                                                 t->passwd, NULL},
                           pw),
                     0);
    assert_string_not_equal(pw, t->pw_b);
    kill(t->pb.pid, SIGHUP);
    /* A reload checks the connected clients again: the old password's connection ends. */
    assert_true(cli_wait(&held, is_down, NULL, WAIT_MS));
    cli_close(&held);
    assert_true(reloaded(t, "VMB", pw));
    rc = cli_open(&c, t->pb.port, "it-old", "VMB", t->pw_b, t->ca);
    cli_close(&c);
    assert_true(rc > 0);

    assert_int_equal(cli_open(&held, t->pb.port, "VMB", "VMB", pw, t->ca), 0);
    assert_int_equal(vendctl(t,
                             (const char *const[]){"machines", "revoke", "VMB", "--broker-passwd",
                                                   t->passwd, NULL},
                             out, sizeof(out)),
                     0);
    assert_int_equal(vendctl(t,
                             (const char *const[]){"machines", "revoke", "VMB", "--broker-passwd",
                                                   t->passwd, NULL},
                             out, sizeof(out)),
                     4);
    kill(t->pb.pid, SIGHUP);
    /* mosquitto checks the connected clients again on a reload: the revoked one is dropped. */
    assert_true(cli_wait(&held, is_down, NULL, WAIT_MS));
    cli_close(&held);
    /* And cannot come back (bounded: the reload is asynchronous). */
    for (int i = 0; i < 100; i++) {
        rc = cli_open(&c, t->pb.port, "it-revoked", "VMB", pw, t->ca);
        cli_close(&c);
        if (rc > 0)
            break;
        harness_sleep_ms(50);
    }
    assert_true(rc > 0);
    /* VM01 and the backend are untouched. */
    assert_true(reloaded(t, "VM01", t->pw_a));
    assert_true(reloaded(t, "vendd", PW_VENDD));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(password_file_is_mosquittos_own_format),
        cmocka_unit_test(a_machine_reaches_its_own_topics_and_nothing_else),
        cmocka_unit_test(the_backends_shared_subscriptions_get_the_reports),
        cmocka_unit_test(a_machine_cannot_take_another_clients_session),
        cmocka_unit_test(wrong_passwords_anonymous_and_plain_tcp_are_refused),
        cmocka_unit_test(vendd_and_vmsim_complete_an_order_over_tls),
        cmocka_unit_test(vendd_refuses_a_broker_its_ca_did_not_sign),
        cmocka_unit_test(vendctl_json_and_refusals),
        cmocka_unit_test(a_rotated_or_revoked_password_stops_working),
    };

    mosquitto_lib_init();
    return cmocka_run_group_tests(tests, setup, teardown);
}
