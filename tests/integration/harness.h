/*
 * harness.h - black-box integration harness: a real mosquitto (tests/support/broker.h), the
 * real vendd binary as a child process on a fresh database, an HTTP client (libcurl +
 * jansson), a raw MQTT v5 client (libmosquitto, own thread) and SQL checks on the database.
 *
 * The database is a fresh SQLite file, or with VEND_TEST_DB=pg a fresh database on the test
 * PostgreSQL server whose state file VEND_PG_STATE names (tests/support/pgcluster, the ctest
 * fixture vend_pg: one server for the whole run, one database per test, dropped at the end).
 * The SQL checks take the same text on both: string_agg(x, sep) rather than group_concat, no
 * rowid, no date functions (harness_iso_time() gives the timestamps).
 *
 * The vendd binary comes from the environment variable VENDD (ctest sets it to
 * $<TARGET_FILE:vendd>). Its working directory is a fresh mkdtemp directory holding
 * vendd.db (on SQLite) and vendd.log (its stderr+stdout); the directory goes away in
 * harness_stop().
 * vendd gets `env -i`-style: PATH, PORT (a free loopback port, kept across restarts unless
 * harness_new_http_port() picks another), HOST=127.0.0.1, DATABASE_URL, MQTT_BROKER_URL
 * (unless an extra names it), MACHINE_ID=VM01, the sanitizer options if set, and the
 * caller's extra "KEY=VALUE"s.
 *
 * Most tests want the same start: harness_fixture_new() brings up all of that, creates VM01's
 * slots and connects a client playing machine VM01 (harness_answer() sends its results).
 *
 * Payments: harness_fake_start() runs the real fake-midtrans ($FAKE_MIDTRANS) beside them and
 * points vendd at it; harness_fixture_new_midtrans() is the fixture with it.
 *
 * No cmocka here (the benchmark links it too): functions return 0 / a count on success and
 * -1 on failure after one line on stderr naming what failed. Every wait is bounded.
 * Not thread-safe except where said (the MQTT client's callbacks run on its own thread).
 */
#ifndef VEND_TEST_HARNESS_H
#define VEND_TEST_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>
#include <mosquitto.h>
#include <pthread.h>

#include "broker.h"

struct harness_pg;

#define HARNESS_ENV_MAX      16
#define HARNESS_PATH_MAX     320
#define HARNESS_MSG_MAX      256  /* messages kept by one MQTT client */
#define HARNESS_PAYLOAD_MAX  4200 /* bytes kept per message: VEND_PAYLOAD_MAX and a bit */
#define HARNESS_START_MS     15000
#define HARNESS_HTTP_TIMEOUT 10 /* seconds per HTTP request */

struct harness {
    struct test_broker broker;
    char vendd[HARNESS_PATH_MAX];        /* absolute path of the binary (from $VENDD) */
    char dir[256];                       /* working directory; "" when removed */
    char db_path[HARNESS_PATH_MAX];      /* dir/vendd.db (SQLite) */
    char db_url[HARNESS_PATH_MAX];       /* vendd's DATABASE_URL */
    char pg_db[64];                      /* the test's PostgreSQL database; "" on SQLite */
    char pg_server[HARNESS_PATH_MAX];    /* the test server's URL (its database "vendd") */
    struct harness_pg *pg;               /* the harness's own connection (harness_db.c) */
    char log_path[HARNESS_PATH_MAX];     /* dir/vendd.log */
    char extra_env[HARNESS_ENV_MAX][96]; /* caller's KEY=VALUE */
    size_t nextra_env;
    uint16_t http_port;
    pid_t pid;  /* vendd, 0 while not running */
    int starts; /* successful harness_vendd_start() calls */
    /* vendd's wait status, when harness_vendd_alive() found it dead (during a start, say);
     * reaped says there is one (harness_vendd_wait_death() takes it). */
    bool reaped;
    int reaped_status;
    /* fake-midtrans (harness_fake_start()): 0 while not running */
    pid_t fake_pid;
    uint16_t fake_port;
    /* Give vendd MIDTRANS_SERVER_KEY, _API_BASE, _SNAP_BASE and _NOTIFICATION_URL pointing at
     * the fake (set by harness_fake_start(); an extra_env of the same name wins). */
    bool fake_wire;
    char bearer[128]; /* when not "": every HTTP request to vendd sends Authorization: Bearer */
    /* Requests of harness_call_wake() that vendd answered only once another request woke its
     * HTTP server, and the last one's method and path. */
    int stalled;
    char stalled_what[160];
    /* A peer (harness_peer_prepare()) runs its own vendd on the broker and database of another
     * harness, which owns them: harness_stop() of a peer leaves both. */
    bool peer;
};

/*
 * Start the broker, make the directory and start vendd with extra_env (NULL-terminated
 * "KEY=VALUE" list, or NULL). On failure everything started is stopped again.
 */
int harness_start(struct harness *h, const char *const *extra_env);
/* harness_start() without starting vendd (to start fake-midtrans first). */
int harness_prepare(struct harness *h, const char *const *extra_env);
/* Stop vendd (SIGKILL if still running), the broker, remove the directory. Safe twice. */
void harness_stop(struct harness *h);

/* Start vendd; returns once /health answers 200, MQTT is connected and subscribed. */
int harness_vendd_start(struct harness *h);
/* Start vendd without waiting for the broker (for a broker that is down). */
int harness_vendd_start_nobroker(struct harness *h);
/* SIGTERM and wait (bounded); returns vendd's exit status, or -1 (killed or no exit). */
int harness_vendd_term(struct harness *h);
/* SIGKILL and reap: a crash. */
void harness_vendd_kill(struct harness *h);
/*
 * Wait up to timeout_ms for vendd to end by itself (a crash point, crashpoint.h) and reap it,
 * or take the death harness_vendd_alive() found (a start that failed because vendd died).
 * Returns the signal that ended it; 0 if it exited (its status on stderr); -1 if it is still
 * running (left so) or was not.
 */
int harness_vendd_wait_death(struct harness *h, int timeout_ms);
/* Another free loopback port for the HTTP API from the next harness_vendd_start() on. */
int harness_new_http_port(struct harness *h);
/* Set (or replace) an extra "KEY=VALUE" for vendd from the next harness_vendd_start() on. */
int harness_env_set(struct harness *h, const char *kv);
/* true while the child is running (reaps it if it died). */
bool harness_vendd_alive(struct harness *h);

/* ---- vendd's log ------------------------------------------------------------------------ */

/* Lines of vendd.log containing needle. */
int harness_log_count(const struct harness *h, const char *needle);
/* Lines of the broker's log containing needle ("... as <client id> (p5, c0, k60).") */
int harness_broker_log_count(const struct harness *h, const char *needle);
/* Wait until harness_log_count() >= n; returns the count, or -1 on timeout. */
int harness_log_wait(const struct harness *h, const char *needle, int n, int timeout_ms);

/* ---- HTTP ------------------------------------------------------------------------------- */

struct harness_reply {
    long status;  /* HTTP status, 0 if no answer */
    char *body;   /* malloc'd, NUL-terminated; NULL if none */
    json_t *json; /* parsed body or NULL (not JSON) */
};

/*
 * method path with body (NULL: none) of len bytes and Content-Type content_type (NULL:
 * application/json). Returns the HTTP status or -1; r (if not NULL) gets the reply and must
 * be released with harness_reply_free().
 */
long harness_http(struct harness *h, const char *method, const char *path, const char *content_type,
                  const char *body, size_t len, struct harness_reply *r);
/*
 * harness_call(), but a request vendd has not answered after patience_ms is taken as stalled:
 * GET /health is sent to make vendd's HTTP server run again (which delivers an answer it had
 * made but not sent), h->stalled is counted, and the answer is waited for as usual. A test
 * asserts h->stalled == 0 where every answer must come by itself.
 */
long harness_call_wake(struct harness *h, const char *method, const char *path, const char *body,
                       struct harness_reply *r, int patience_ms);
/*
 * One request of harness_http_parallel(): method, path and body (NUL-terminated JSON, or
 * NULL) in; status (0: no answer) and body (malloc'd or NULL) out.
 */
struct harness_request {
    const char *method, *path, *body;
    long status;
    char *answer;
};
/*
 * Send the n requests to vendd all at once, each on its own connection, through one curl
 * multi handle, and wait (at most timeout_ms) for every answer. Returns how many were
 * answered; release the answers with harness_requests_free().
 */
int harness_http_parallel(struct harness *h, struct harness_request *reqs, size_t n,
                          int timeout_ms);
/* The same, request i to the vendd on ports[i] (several of a fleet) instead of h's. */
int harness_http_parallel_at(struct harness *h, struct harness_request *reqs, const uint16_t *ports,
                             size_t n, int timeout_ms);
void harness_requests_free(struct harness_request *reqs, size_t n);
/* JSON convenience: body is a NUL-terminated JSON text (or NULL). */
long harness_call(struct harness *h, const char *method, const char *path, const char *body,
                  struct harness_reply *r);
void harness_reply_free(struct harness_reply *r);
/* A string member at a dotted path ("error.status", "units.0.status") of r->json, or NULL. */
const char *harness_reply_str(const struct harness_reply *r, const char *dotted);

/* The value of the /metrics sample whose line starts with series ("name{labels}"); 0 if
 * absent; -1 if /metrics does not answer. */
long long harness_metric(struct harness *h, const char *series);
/* 1 if /metrics has a sample of series, 0 if not, -1 if /metrics does not answer. */
int harness_metric_present(struct harness *h, const char *series);

/* PUT slot of VM01: "Coca Cola", price 8000, capacity max(stock, 10). Expects 200/201. */
int harness_put_slot(struct harness *h, int slot, int stock, int motor_ms);
/* POST /api/orders (manual, PAID). Expects 201. */
int harness_order(struct harness *h, const char *id, int slot, int quantity);
/* POST /api/dispense/trigger; returns the HTTP status (r optional, as harness_http). */
long harness_trigger(struct harness *h, const char *order_id, struct harness_reply *r);

/* ---- the database (harness_db.c) ------------------------------------------------------ */

/* true when the test runs on PostgreSQL (VEND_TEST_DB=pg). */
bool harness_db_pg(const struct harness *h);
/* The test's database: db_url for SQLite, or a fresh PostgreSQL database (harness_prepare()
 * calls it); dropped by harness_db_drop() (harness_stop() calls it). */
int harness_db_create(struct harness *h);
void harness_db_drop(struct harness *h);
/* A peer's database is first's (harness_peer_prepare()): its URL, a connection of its own;
 * harness_db_drop() of the peer drops only that connection. */
int harness_db_share(struct harness *peer, const struct harness *first);

/* The first column of the first row of sql as text into buf ("" for NULL; a boolean 1/0);
 * 1 if a row, 0 if none, -1 on error. */
int harness_sql_text(const struct harness *h, const char *sql, char *buf, size_t size);
/* Same, as an integer. */
int harness_sql_int(const struct harness *h, const char *sql, long long *out);
/* Wait until harness_sql_text(sql) equals want; 0, or -1 on timeout (last value on stderr). */
int harness_sql_wait(const struct harness *h, const char *sql, const char *want, int timeout_ms);
/* Every row of every table (by name) as text, one snapshot; malloc'd, NULL on error. */
char *harness_db_dump(const struct harness *h);
/* Print to stderr the rows of two dumps that differ ("-" only before, "+" only after), under
 * their table's name; returns how many. */
int harness_db_diff(const char *before, const char *after);
/* The wall clock now + offset_ms as vendd writes timestamps ("2026-11-27T09:30:00.123Z"). */
void harness_iso_time(char *buf, size_t size, int64_t offset_ms);
/* iso (that format) + offset_ms into out; 0, or -1 if iso is not in that format. */
int harness_iso_add(const char *iso, int64_t offset_ms, char *out, size_t size);

/* Hold the lock every write transaction of vendd takes (SQLite: BEGIN EXCLUSIVE; PostgreSQL:
 * db_pg.c's advisory lock) from a connection of the test's own; NULL on failure. */
struct harness_db_lock;
struct harness_db_lock *harness_db_lock(const struct harness *h);
/* Release it (NULL is fine); 0, or -1 if the release failed. */
int harness_db_unlock(struct harness_db_lock *l);

/* ---- MQTT client ------------------------------------------------------------------------ */

struct harness_mqtt;
/* Called on the client's thread for every message received (after it is recorded). */
typedef void harness_mqtt_fn(struct harness_mqtt *c, const char *topic, const char *payload,
                             size_t len, void *arg);

struct harness_mqtt {
    struct mosquitto *m;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int connects; /* CONNACKs with success */
    int subacks;
    int pubacks;
    size_t n; /* messages received (only the first HARNESS_MSG_MAX are kept) */
    char *topics[HARNESS_MSG_MAX];
    char *payloads[HARNESS_MSG_MAX];
    harness_mqtt_fn *on_message;
    void *arg;
};

/*
 * Connect (MQTT v5, clean start) to the harness's broker as client_id; subscribe to
 * filter at QoS 1 if not NULL and wait for the SUBACK. on_message may be NULL.
 */
int harness_mqtt_open(struct harness_mqtt *c, uint16_t port, const char *client_id,
                      const char *filter, harness_mqtt_fn *on_message, void *arg);
void harness_mqtt_close(struct harness_mqtt *c);
/* Publish at QoS 1 and wait for the PUBACK. Thread-safe. */
int harness_mqtt_publish(struct harness_mqtt *c, const char *topic, const void *payload,
                         size_t len);
/* Publish at QoS 1 without waiting (for use inside on_message). */
int harness_mqtt_publish_nowait(struct harness_mqtt *c, const char *topic, const void *payload,
                                size_t len);
/* Wait until at least n messages arrived or timeout_ms passed; returns the count. */
size_t harness_mqtt_wait(struct harness_mqtt *c, size_t n, int timeout_ms);
/* Message i's payload ("" if not kept). Valid until close. */
const char *harness_mqtt_payload(struct harness_mqtt *c, size_t i);

/*
 * VM01 answers a dispense command: the dispense_result for order_id's unit (0: no "unit"
 * key, a single-unit order as in the guide) from slot, with success and dropDetected true,
 * durationMs 1850 and error null. Published at QoS 1; waits for the PUBACK.
 */
int harness_answer(struct harness_mqtt *machine, const char *order_id, int slot, int unit);
/* The same with success, dropDetected and error (NULL: null) as given. */
int harness_answer_ex(struct harness_mqtt *machine, const char *order_id, int slot, int unit,
                      bool success, bool drop, const char *error);

/* Install (or clear, with NULL) c's message callback; safe while messages arrive. */
void harness_mqtt_set_handler(struct harness_mqtt *c, harness_mqtt_fn *on_message, void *arg);
/*
 * Read a dispense command (vm/{id}/command): orderId into order_id, slot, and unit (0 when
 * the command has no "unit"). Returns 0, or -1 if payload is not a dispense command.
 */
int harness_command_parse(const char *payload, char *order_id, size_t size, int *slot, int *unit);

/*
 * A machine that answers every dispense command by itself (install with
 * harness_mqtt_set_handler(&machine, harness_autoanswer, &a)): success and a drop, except
 * for the units whose bit is set in fail_units (bit N = unit N; a command without "unit" is
 * unit 1), which fail with JAMMED. Counts the commands it answered.
 */
struct harness_autoanswer {
    uint64_t fail_units;
    pthread_mutex_t mu; /* guards answered; init with PTHREAD_MUTEX_INITIALIZER */
    int answered;
};
harness_mqtt_fn harness_autoanswer;

/* VM01 says it is ONLINE (retained status) and vendd has recorded it. */
int harness_machine_online(struct harness *h, struct harness_mqtt *machine);

/* ---- payments: fake-midtrans ($FAKE_MIDTRANS) ------------------------------------------- */

/* The server key the fake is started with (a test signs notifications with it). */
#define HARNESS_FAKE_KEY      "SB-Mid-server-vendd0it0harness0key"
#define HARNESS_FAKE_RETRY_MS 5 /* the fake's "minute" of its notification retry schedule */

/*
 * Start the real fake-midtrans binary (from the environment variable FAKE_MIDTRANS) on
 * 127.0.0.1 port 0 with --server-key HARNESS_FAKE_KEY, --retry-unit-ms HARNESS_FAKE_RETRY_MS,
 * --notify-url vendd's webhook, and args (NULL-terminated extra arguments, or NULL); its
 * stderr goes to dir/fake-midtrans.log. Sets fake_wire, so a vendd started from now on talks
 * to it. Call after harness_prepare() (it needs the directory and vendd's port).
 */
int harness_fake_start(struct harness *h, const char *const *args);
/* SIGTERM the fake and wait (bounded, then SIGKILL). Its exit status, -1 if killed. Safe twice. */
int harness_fake_stop(struct harness *h);
/* An HTTP call to the fake (its control API /_fake/... ); as harness_call(). */
long harness_fake_call(struct harness *h, const char *method, const char *path, const char *body,
                       struct harness_reply *r);
/*
 * GET /_fake/transactions/{order_id}: the fake's view of the transaction (the caller's
 * reference, json_decref() it), or NULL if it has none.
 */
json_t *harness_fake_tx(struct harness *h, const char *order_id);
/* Requests the fake logged for path (exact, e.g. "/v2/ORD.../refund"); -1 on error. With
 * last (may be NULL) the last such request's logged JSON body (caller's reference). */
int harness_fake_requests(struct harness *h, const char *method, const char *path, json_t **last);
/*
 * Wait until the fake has finished delivering (final attempt, retries included) at least n
 * notifications for order_id, of transaction_status status (NULL: any). Returns how many it
 * has, or -1 on timeout; *last_http (may be NULL) gets the last one's HTTP status from vendd.
 */
int harness_fake_notified(struct harness *h, const char *order_id, const char *status, int n,
                          int timeout_ms, long *last_http);

/*
 * POST /api/orders as a customer: {"machine_id":"VM01","items":items_json,
 * "payment_method":method}, through harness_call_wake() (patience HARNESS_PATIENCE_MS beyond
 * MIDTRANS_TIMEOUT_MS, see there). Returns the HTTP status; on 201 the new order's id goes to
 * id. r (optional) gets the reply, as harness_http().
 */
#define HARNESS_PATIENCE_MS 1500
long harness_order_customer(struct harness *h, const char *items_json, const char *method, char *id,
                            size_t id_size, struct harness_reply *r);

/* Midtrans's signature_key: lowercase hex SHA-512(order_id + status_code + gross + key). */
void harness_midtrans_sign(const char *order_id, const char *status_code, const char *gross,
                           const char *key, char out[129]);
/*
 * Send vendd's webhook a Midtrans notification for order_id: transaction_status status with
 * its status_code (settlement/capture 200, pending 201, other 202), gross_amount gross
 * ("8000.00"), payment_type qris, fraud_status accept, signed with key (NULL: no
 * signature_key). Returns the HTTP status; r optional as harness_http().
 */
long harness_notify(struct harness *h, const char *order_id, const char *status, const char *gross,
                    const char *key, struct harness_reply *r);
/* The body harness_notify() sends, into out; -1 if it does not fit. */
int harness_notification(const char *order_id, const char *status, const char *gross,
                         const char *key, char *out, size_t size);

/* ---- the database, writing (only while vendd is stopped) ----------------------------- */

/*
 * Run sql on vendd's database: a test moves vendd's wall clock this way (timestamps set in the
 * past while vendd is down, as if that time had passed). Returns the rows changed, or -1.
 */
int harness_sql_exec(const struct harness *h, const char *sql);

/* ---- the invariant checker -------------------------------------------------------------- */

/*
 * Run vend-check ($VEND_CHECK, tools/vend-check) on vendd's database, read-only, with vmsim's
 * drop log drops (NULL: none) and vendd's LOW_STOCK_PERCENT when an extra sets it. A test
 * calls it last, vendd running or not, so every fault test also proves SPEC §4's invariants.
 * Returns 0 when every invariant holds, else -1 with the violations on stderr.
 */
int harness_check(const struct harness *h, const char *drops);

/* ---- the usual fixture ------------------------------------------------------------------ */

/* A slot of VM01 to create before the test: "Coca Cola", price 8000 (harness_put_slot()). */
struct harness_slot {
    int slot;
    int stock;
    int motor_ms;
};

struct harness_fixture {
    struct harness h;
    struct harness_mqtt machine; /* plays VM01, subscribed to vm/VM01/command; m NULL if none */
};

/*
 * The setup most black-box tests share: harness_start() with extra_env (NULL-terminated or
 * NULL), each of slots (ended by a row with slot 0; NULL: none), then the machine client
 * connected as machine_client_id (NULL: no machine). NULL (everything stopped and freed)
 * on failure.
 */
struct harness_fixture *harness_fixture_new(const char *const *extra_env,
                                            const struct harness_slot *slots,
                                            const char *machine_client_id);
/*
 * The same with payments: fake-midtrans started first (harness_fake_start() with fake_args)
 * and vendd pointed at it; with a machine, VM01 is also ONLINE (harness_machine_online()),
 * since a customer order needs a machine that is there.
 */
struct harness_fixture *harness_fixture_new_midtrans(const char *const *extra_env,
                                                     const char *const *fake_args,
                                                     const struct harness_slot *slots,
                                                     const char *machine_client_id);
/* Closes the machine client, harness_stop(), frees f. NULL is fine. */
void harness_fixture_free(struct harness_fixture *f);

/* ---- several vendd on one database and one broker (issue 11) ------------------------ */

/*
 * peer: another vendd on first's broker and database (and fake-midtrans, when first has one
 * wired), with a working directory, log and HTTP port of its own and extra_env as
 * harness_prepare() takes it; not started. The SQL functions work on a peer too (its own
 * connection). first must outlive it; harness_stop() of the peer leaves what first owns.
 */
int harness_peer_prepare(struct harness *peer, const struct harness *first,
                         const char *const *extra_env);

#define HARNESS_FLEET_MAX    4
#define HARNESS_SHARED_GROUP "vendd" /* the fleet's MQTT_SHARED_GROUP */

/*
 * n vendd on one database (PostgreSQL: VEND_TEST_DB=pg) and one broker, as an operator runs
 * them behind a load balancer: vendd[i] has MQTT_CLIENT_ID=vendd-<i+1>, MQTT_SHARED_GROUP=
 * HARNESS_SHARED_GROUP, its own port, directory and log, and the caller's extras. vendd[0]
 * owns the broker, the database and fake-midtrans (with midtrans, started first and wired to
 * every instance); they start one after the other, vendd[0] first (it migrates the fresh
 * database). Address instance i as &f->vendd[i] with every harness function (harness_vendd_kill()
 * and harness_vendd_start() kill -9 and restart one); the database and harness_check() through
 * any of them.
 */
struct harness_fleet {
    struct harness vendd[HARNESS_FLEET_MAX];
    size_t n;
};

/* Start it; 0, or -1 with everything stopped again. */
int harness_fleet_start(struct harness_fleet *f, size_t n, const char *const *extra_env,
                        bool midtrans);
/* Instance i modulo n: a round-robin over the fleet. */
struct harness *harness_fleet_at(struct harness_fleet *f, size_t i);
/* Stop every vendd (SIGKILL if still running), then what vendd[0] owns. Safe twice. */
void harness_fleet_stop(struct harness_fleet *f);

/* Monotonic milliseconds, and a sleep. */
uint64_t harness_now_ms(void);
void harness_sleep_ms(unsigned ms);

#endif
