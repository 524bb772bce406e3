/*
 * test_mqtt_lib_pairing.c - app_run() pairs mqtt_lib_init() with exactly one
 * mqtt_lib_cleanup() whichever start-up step fails after it, and calls neither when it
 * fails before it.
 *
 * A link-time seam: the test is linked with -Wl,--wrap for both functions, so app.c's calls
 * reach the counting wrappers below, which then call the real ones.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "app.h"
#include "conf.h"
#include "vend/err.h"

/* The wrappers take no argument to carry a context: file-static counters are the only way. */
static int s_inits, s_cleanups;

int __real_mqtt_lib_init(void);
void __real_mqtt_lib_cleanup(void);
int __wrap_mqtt_lib_init(void);
void __wrap_mqtt_lib_cleanup(void);

int __wrap_mqtt_lib_init(void)
{
    s_inits++;
    return __real_mqtt_lib_init();
}

void __wrap_mqtt_lib_cleanup(void)
{
    s_cleanups++;
    __real_mqtt_lib_cleanup();
}

struct fx {
    char dir[256];
    int busy_fd; /* a listening socket that holds the HTTP port */
    uint16_t busy_port;
};

static int setup(void **state)
{
    struct fx *fx = calloc(1, sizeof(*fx));
    struct sockaddr_in sa = {.sin_family = AF_INET};
    socklen_t len = sizeof(sa);
    const char *tmp = getenv("TMPDIR");

    if (fx == NULL)
        return -1;
    *state = fx;
    snprintf(fx->dir, sizeof(fx->dir), "%s/vendd-libpair-XXXXXX",
             tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp");
    if (mkdtemp(fx->dir) == NULL)
        return -1;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    fx->busy_fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fx->busy_fd < 0 || bind(fx->busy_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
        listen(fx->busy_fd, 1) < 0 || getsockname(fx->busy_fd, (struct sockaddr *)&sa, &len) < 0)
        return -1;
    fx->busy_port = ntohs(sa.sin_port);
    s_inits = 0;
    s_cleanups = 0;
    return 0;
}

static int teardown(void **state)
{
    struct fx *fx = *state;
    char path[300];

    if (fx == NULL)
        return 0;
    if (fx->busy_fd > 0)
        close(fx->busy_fd);
    for (const char *const *f = (const char *const[]){"v.db", "v.db-wal", "v.db-shm", NULL};
         *f != NULL; f++) {
        snprintf(path, sizeof(path), "%s/%s", fx->dir, *f);
        unlink(path);
    }
    rmdir(fx->dir);
    free(fx);
    return 0;
}

/* app_run() with PORT, DATABASE_URL and a broker nobody listens on. */
static int run(const char *port, const char *database_url)
{
    char port_var[32], db_var[352];
    char *envp[] = {port_var, db_var, (char *)"HOST=127.0.0.1",
                    (char *)"MQTT_BROKER_URL=mqtt://127.0.0.1:1", NULL};
    struct vendd_conf conf;

    snprintf(port_var, sizeof(port_var), "PORT=%s", port);
    snprintf(db_var, sizeof(db_var), "DATABASE_URL=%s", database_url);
    assert_int_equal(conf_load(&conf, envp, NULL, stderr), VEND_OK);
    return app_run(&conf);
}

/* The HTTP port is taken: start-up fails after mqtt_lib_init(), before any MQTT client. */
static void http_failure_cleans_up_once(void **state)
{
    struct fx *fx = *state;
    char port[8], url[320];

    snprintf(port, sizeof(port), "%u", (unsigned)fx->busy_port);
    snprintf(url, sizeof(url), "sqlite:%s/v.db", fx->dir);
    assert_int_equal(run(port, url), 1);
    assert_int_equal(s_inits, 1);
    assert_int_equal(s_cleanups, 1);
}

/* The database cannot be opened (its directory cannot exist): start-up fails before
 * mqtt_lib_init(). */
static void early_failure_touches_nothing(void **state)
{
    (void)state;
    assert_int_equal(run("0", "sqlite:/dev/null/v.db"), 1);
    assert_int_equal(s_inits, 0);
    assert_int_equal(s_cleanups, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(http_failure_cleans_up_once, setup, teardown),
        cmocka_unit_test_setup_teardown(early_failure_touches_nothing, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
