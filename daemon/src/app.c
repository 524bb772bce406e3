/*
 * app.c - the running daemon: builds the one struct vendd (database, loop, MQTT, HTTP),
 * resumes what the database says is in flight, runs the loop, and tears down in reverse.
 */
#include "app.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "api.h"
#include "crashpoint.h"
#include "db.h"
#include "deadline.h"
#include "httpc.h"
#include "midtrans.h"
#include "checkout.h"
#include "ratelimit.h"
#include "refunds.h"
#include "dispense.h"
#include "dispense_group.h"
#include "dispense_result.h"
#include "events.h"
#include "http.h"
#include "ingest.h"
#include "log.h"
#include "loop.h"
#include "machines.h"
#include "mqtt.h"
#include "notify.h"
#include "offline.h"
#include "peers.h"
#include "store.h"
#include "telemetry.h"
#include "vend/err.h"
#include "vendd.h"

/* How long the broker keeps our session, and the results queued for it, while we are away. */
#define SESSION_EXPIRY_S (24 * 3600)
/*
 * With MQTT_SHARED_GROUP: none. mosquitto hands a shared subscription's messages round-robin
 * to every member with a session, offline ones too, so a dead instance's session would take
 * its share of the results and hold them until it came back; ended with the connection, it
 * leaves the group and the live instances get everything (docs/DESIGN.md "Several instances").
 */
#define SHARED_SESSION_EXPIRY_S 0

int64_t vendd_wall_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t vendd_mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void vendd_now_iso(const struct vendd *v, char *buf, size_t size)
{
    db_iso_time(buf, size, v->now_ms());
}

static void on_mqtt_state(void *arg, bool connected)
{
    struct vendd *v = arg;

    /* Units that waited for the broker go out now, one per idle machine. */
    if (connected)
        dispense_pump_all(v);
}

/*
 * Created before the dispenses resume (they ask whether it is connected), started after.
 * Two sessions (ingest.h): the dispense session under MQTT_CLIENT_ID, the telemetry session
 * under MQTT_CLIENT_ID + "-telemetry".
 */
static int create_mqtt(struct vendd *v, enum ingest_session session)
{
    const struct vendd_conf *conf = v->conf;
    struct ingest_subscriptions subs;
    struct mqtt_config mc = {0};
    char bulk_id[MQTT_MAX_CLIENT_ID + 1];

    ingest_subscriptions(session, conf->mqtt_shared_group, &subs);
    mc.host = conf->mqtt_host;
    mc.port = (uint16_t)conf->mqtt_port;
    mc.tls = conf->mqtt_tls;
    mc.ca_file = conf->mqtt_ca_file[0] ? conf->mqtt_ca_file : NULL;
    mc.username = conf->mqtt_username[0] ? conf->mqtt_username : NULL;
    mc.password = conf->mqtt_password[0] ? conf->mqtt_password : NULL;
    /* MQTT_CLIENT_ID, never derived from the host name or PORT: the broker keeps our
     * session, and the results queued in it, under this id (SPEC §2). */
    mc.client_id = conf->mqtt_client_id;
    /* mqtt_client_new() copies the filters. */
    mc.subscriptions = subs.filters;
    mc.nsubscriptions = subs.n;
    mc.session_expiry_s =
        conf->mqtt_shared_group[0] != '\0' ? SHARED_SESSION_EXPIRY_S : SESSION_EXPIRY_S;
    mc.after_burst = ingest_commit;
    if (session == INGEST_DISPENSE)
        return mqtt_client_new(&v->mqtt, v->loop, &mc, ingest_message, on_mqtt_state, v);
    if ((size_t)snprintf(bulk_id, sizeof(bulk_id), "%s-telemetry", conf->mqtt_client_id) >=
        sizeof(bulk_id))
        return VEND_EINVAL;
    mc.client_id = bulk_id;
    mc.label = "telemetry session";
    return mqtt_client_new(&v->mqtt_bulk, v->loop, &mc, ingest_message, NULL, v);
}

/* The WAL checkpoint, off the commits' path (db_checkpoint()): once a second. */
#define CHECKPOINT_MS 1000

static void on_checkpoint(void *arg)
{
    struct vendd *v = arg;

    if (db_checkpoint(v->db) < 0)
        log_warnx("database checkpoint failed: %s; the next in %d ms", db_errmsg(v->db),
                  CHECKPOINT_MS);
    v->checkpoint_timer = loop_timer_add(v->loop, CHECKPOINT_MS, on_checkpoint, v);
}

/* A lazy commit is on disk (db.h "Lazy durability"): the event stream may send its rows. */
static void on_durable(void *arg, int fd, unsigned events)
{
    struct vendd *v = arg;

    (void)fd;
    (void)events;
    if (db_durable_take(v->db) < 0)
        log_warnx("telemetry may not survive a power failure: %s; from now on its commits wait "
                  "for the disk",
                  db_errmsg(v->db));
    events_durable(v);
}

/* The broker seam (broker_seam.h): the domain publishes through these, never through mqtt.c. */
static int broker_mqtt_publish(void *ctx, const char *topic, const void *payload, size_t len,
                               int qos, bool retain, uint32_t expiry_s)
{
    return mqtt_client_publish(ctx, topic, payload, len, qos, retain, expiry_s);
}

static bool broker_mqtt_up(void *ctx)
{
    return mqtt_client_connected(ctx);
}

/*
 * Outbound HTTP, Midtrans (only with a server key: without one nothing can be verified or
 * created there), customer orders and refunds, resumed from the rows.
 */
static int start_payments(struct vendd *v)
{
    const struct vendd_conf *conf = v->conf;
    struct midtrans_config mc = {
        .server_key = conf->midtrans_server_key,
        .api_base = conf->midtrans_api_base,
        .snap_base = conf->midtrans_snap_base,
        .notification_url = conf->midtrans_notification_url,
        .timeout_ms = conf->midtrans_timeout_ms,
        .connect_timeout_ms = conf->midtrans_timeout_ms < MIDTRANS_CONNECT_TIMEOUT_MS
                                  ? conf->midtrans_timeout_ms
                                  : MIDTRANS_CONNECT_TIMEOUT_MS,
    };
    int rc;

    rc = httpc_new(&v->httpc, v->loop);
    if (rc < 0)
        return rc;
    if (conf->midtrans_server_key[0] != '\0') {
        rc = midtrans_new(&v->midtrans, v->httpc, &mc);
        if (rc < 0)
            return rc;
        log_info("Midtrans at %s (Snap %s)", conf->midtrans_api_base, conf->midtrans_snap_base);
    } else {
        log_warnx("MIDTRANS_SERVER_KEY is not set: customer orders are refused, refunds wait "
                  "for the operator%s",
                  conf->dev_mode ? ", unsigned payment notifications are taken from loopback" : "");
    }
    v->order_limit = ratelimit_new(conf->order_rate_per_min);
    rc = checkout_new(&v->checkout);
    if (rc < 0)
        return rc;
    rc = checkout_resume(v);
    if (rc == VEND_OK)
        rc = refunds_resume(v);
    if (rc < 0)
        log_warnx("cannot resume payments and refunds: %s", db_errmsg(v->db));
    return rc;
}

/* http_config data_version: what the cached answers of a read route depend on. */
static void http_data_version(void *ctx, const char *pattern, uint64_t version[2])
{
    db_version_of(((struct vendd *)ctx)->db, api_route_reads(pattern), version);
}

static int start_http(struct vendd *v)
{
    struct http_config hc = {
        .host = v->conf->host,
        .port = (uint16_t)v->conf->port,
        .api_token = v->conf->dev_mode ? NULL : v->conf->api_token,
        .data_version = http_data_version,
        .max_conns = v->conf->http_max_connections,
        .local_reserve = v->conf->http_local_reserve,
        .per_addr_max =
            v->conf->http_per_address_max != 0 ? v->conf->http_per_address_max : HTTP_PER_ADDR_OFF,
        .header_s = v->conf->http_header_timeout_s,
        .body_s = v->conf->http_body_timeout_s,
    };
    v->signin_limit = ratelimit_new(API_SIGNIN_PER_MIN);
    /* http.c logs where it listens. */
    return http_server_start(&v->http, v->loop, &hc, api_routes, api_nroutes, v);
}

/* The kernel's id of this boot, or "" where there is none. */
static void read_boot_id(char *buf, size_t size)
{
    FILE *f = fopen("/proc/sys/kernel/random/boot_id", "r");
    size_t n = 0;

    buf[0] = '\0';
    if (f == NULL)
        return;
    if (fgets(buf, (int)size, f) != NULL)
        n = strcspn(buf, "\n");
    buf[n] = '\0';
    fclose(f);
}

int app_run(const struct vendd_conf *conf)
{
    struct vendd v = {
        .conf = conf, .now_ms = vendd_wall_ms, .mono_ms = vendd_mono_ms, .durable_fd = -1};
    char boot_id[65];
    char errbuf[512];
    bool mqtt_lib = false; /* mqtt_lib_init() succeeded */
    int status = 1, rc;

    log_init(conf->log_format, LOG_LEVEL_INFO, NULL);
    /* A test's crash point (crashpoint.h): refused rather than ignored if it names nothing. */
    if (crashpoint_init(&v.crash, getenv(CRASHPOINT_ENV), errbuf, sizeof(errbuf)) < 0) {
        log_warnx("%s", errbuf);
        return 78;
    }
    if (v.crash.armed)
        log_warnx("crash point armed: SIGKILL at %s:%ld", crashpoint_name(v.crash.id), v.crash.nth);
    read_boot_id(boot_id, sizeof(boot_id));
    v.boot_id = boot_id;
    log_info("vendd %s starting", VENDD_VERSION);
    if (conf->dev_mode)
        log_warnx("API_TOKEN is not set: development mode, the operator API answers loopback "
                  "clients only");
    v.loop = loop_new();
    if (v.loop == NULL) {
        log_warn("cannot create the event loop");
        goto out;
    }
    rc = dispense_results_lock(&v);
    if (rc < 0)
        goto out;
    rc = db_open(&v.db, conf->database_url, errbuf, sizeof(errbuf));
    if (rc < 0) {
        log_warnx("cannot open the database: %s", errbuf);
        goto out;
    }
    /* The results file's lock above only sees vendd processes in this directory (or beside
     * a SQLite file); on PostgreSQL the server refuses a second one wherever it runs. */
    rc = db_claim_instance(v.db, conf->mqtt_client_id, conf->mqtt_shared_group[0] != '\0');
    if (rc < 0) {
        log_warnx("cannot start: %s", db_errmsg(v.db));
        goto out;
    }
    rc = machines_register_default(&v, conf->machine_id);
    if (rc < 0) {
        log_warnx("cannot register machine '%s': %s", conf->machine_id, db_errmsg(v.db));
        goto out;
    }
    if (mqtt_lib_init() < 0)
        goto out;
    mqtt_lib = true;
    /* Before the HTTP server: its handlers attach event streams. */
    if (events_start(&v) < 0)
        goto out;
    rc = start_http(&v);
    if (rc < 0) {
        log_warnx("cannot start the HTTP server on %s port %u: %s", conf->host, conf->port,
                  vend_strerror(rc));
        goto out;
    }
    rc = create_mqtt(&v, INGEST_DISPENSE);
    if (rc >= 0)
        rc = create_mqtt(&v, INGEST_BULK);
    if (rc < 0) {
        log_warnx("cannot create the MQTT client: %s", vend_strerror(rc));
        goto out;
    }
    v.broker = (struct broker){.publish = broker_mqtt_publish, .up = broker_mqtt_up, .ctx = v.mqtt};
    rc = deadline_resume(&v);
    if (rc < 0) {
        log_warnx("cannot resume dispenses: %s", db_errmsg(v.db));
        goto out;
    }
    /* Within the grace the deadlines just gave, so a unit is not failed for a result kept. */
    rc = dispense_results_resume(&v);
    if (rc < 0)
        goto out;
    rc = start_payments(&v);
    if (rc < 0)
        goto out;
    telemetry_prune_start(&v);
    offline_start(&v);
    peers_start(&v);
    rc = mqtt_client_start(v.mqtt);
    if (rc >= 0)
        rc = mqtt_client_start(v.mqtt_bulk);
    if (rc < 0) {
        log_warnx("cannot start the MQTT client: %s", vend_strerror(rc));
        goto out;
    }
    v.checkpoint_timer = loop_timer_add(v.loop, CHECKPOINT_MS, on_checkpoint, &v);
    rc = db_durable_fd(v.db) >= 0
             ? loop_io_add(v.loop, db_durable_fd(v.db), LOOP_READ, on_durable, &v)
             : VEND_OK;
    if (rc < 0) {
        log_warnx("cannot watch the database's syncs: %s", vend_strerror(rc));
        goto out;
    }
    v.durable_fd = db_durable_fd(v.db);
    notify_systemd("READY=1");
    rc = loop_run(v.loop);
    notify_systemd("STOPPING=1");
    log_info("vendd stopping");
    status = rc < 0 || v.failed ? 1 : 0;
out:
    /* What the last loop turn read (results PUBACKed, triggers waiting for their answer) is
     * applied while the HTTP server and the MQTT clients are still there. */
    if (v.db != NULL)
        dispense_group_flush(&v);
    /* Whatever holds a waiting HTTP request goes before the HTTP server (http.h). */
    checkout_free(&v);
    if (v.loop != NULL) {
        peers_stop(&v);
        refunds_stop(&v);
    }
    midtrans_free(v.midtrans);
    httpc_free(v.httpc);
    ratelimit_free(v.order_limit);
    http_server_free(v.http);
    ratelimit_free(v.signin_limit);
    /* After the server, which ends every event stream. */
    events_stop(&v);
    /* What the last burst left in its batch is committed before the clients go. */
    if (v.db != NULL)
        ingest_commit(&v);
    ingest_free(&v);
    mqtt_client_free(v.mqtt_bulk);
    mqtt_client_free(v.mqtt);
    /* Paired with the init whichever step failed after it (mqtt.h), not only once a
     * client exists. */
    if (mqtt_lib)
        mqtt_lib_cleanup();
    if (v.loop != NULL) {
        if (v.checkpoint_timer != 0)
            loop_timer_del(v.loop, v.checkpoint_timer);
        if (v.durable_fd >= 0)
            loop_io_del(v.loop, v.durable_fd);
        deadline_stop(&v);
        telemetry_prune_stop(&v);
        offline_stop(&v);
        dispense_results_free(&v);
    }
    db_close(v.db);
    loop_free(v.loop);
    return status;
}
