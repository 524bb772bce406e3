/*
 * conf.h - vendd's configuration (SPEC §2): environment variables, also read
 * from a .env file, parsed once into a typed struct vendd_conf.
 *
 * Every variable is one row of a table in conf.c {name, type, bounds,
 * default, field, secret}; parsing, defaults and conf_print() all come from
 * that table, and docs/CONFIG.md documents the same rows.
 *
 * Sources, in order of precedence: the environment given to conf_load(),
 * then the .env file, then the built-in default. A variable that is present
 * but empty counts as unset (so the default applies): this matches the
 * origin backend's `process.env.X || default`.
 *
 * Strings live in fixed-size arrays: a value longer than the array's maximum
 * is an error naming the variable, never a silent truncation. An empty
 * string field means "unset".
 */
#ifndef VENDD_CONF_H
#define VENDD_CONF_H

#include <stdbool.h>
#include <stdio.h>

#include "log.h"
#include "vend/msg.h" /* VEND_MACHINE_ID_MAX */

/* Maximum lengths in bytes, without the terminating NUL. */
#define CONF_HOST_MAX   253  /* a DNS name (RFC 1035) */
#define CONF_URL_MAX    512  /* MQTT_BROKER_URL, MIDTRANS_*_BASE */
#define CONF_DBURL_MAX  1024 /* DATABASE_URL */
#define CONF_PATH_MAX   1024 /* MQTT_CA_FILE, the sqlite path */
#define CONF_SECRET_MAX 255  /* MQTT_USERNAME, MQTT_PASSWORD, API_TOKEN, MIDTRANS_SERVER_KEY */

/*
 * MQTT_CLIENT_ID: what every broker accepts and an ACL can name. No '+', '#' or '/': mosquitto
 * refuses ids holding a wildcard once pattern ACLs exist (deploy/mosquitto/vendd.acl has them).
 */
#define CONF_CLIENT_ID_MAX     64
#define CONF_CLIENT_ID_PATTERN "[A-Za-z0-9_.-]{1,64}"

/* MQTT_SHARED_GROUP: one topic level of "$share/<group>/vm/+/...". */
#define CONF_SHARED_GROUP_MAX     32
#define CONF_SHARED_GROUP_PATTERN "[A-Za-z0-9_-]{1,32}"

/* .env limits: bigger files or longer lines are rejected, not truncated. */
#define CONF_DOTENV_MAX_BYTES 65536
#define CONF_DOTENV_MAX_LINE  4096

enum conf_db_kind {
    CONF_DB_SQLITE,
    CONF_DB_POSTGRES,
};

struct vendd_conf {
    /* HTTP */
    unsigned int port;            /* PORT, 0..65535; 0 = ephemeral (tests) */
    char host[CONF_HOST_MAX + 1]; /* HOST: IPv4/IPv6 literal or host name */

    /* database */
    char database_url[CONF_DBURL_MAX + 1]; /* DATABASE_URL as given */
    enum conf_db_kind db_kind;             /* derived from DATABASE_URL */
    char sqlite_path[CONF_PATH_MAX + 1];   /* derived; "" unless CONF_DB_SQLITE */

    /* MQTT */
    char mqtt_broker_url[CONF_URL_MAX + 1]; /* normalized: "mqtt[s]://host:port" */
    char mqtt_host[CONF_HOST_MAX + 1];      /* derived; IPv6 without brackets */
    unsigned int mqtt_port;                 /* derived; 1883 or 8883 by default */
    bool mqtt_tls;                          /* derived; true for mqtts:// */
    char mqtt_username[CONF_SECRET_MAX + 1];
    char mqtt_password[CONF_SECRET_MAX + 1]; /* secret */
    char mqtt_ca_file[CONF_PATH_MAX + 1];    /* "" = the system CAs */
    /* The broker keeps vendd's session (subscriptions, results queued while it is away)
     * under this id: the same across restarts, port changes and host renames. */
    char mqtt_client_id[CONF_CLIENT_ID_MAX + 1]; /* CONF_CLIENT_ID_PATTERN */
    /* "" = plain subscriptions, one vendd per database; else the shared subscription group
     * of several instances (PostgreSQL only), each with its own MQTT_CLIENT_ID. */
    char mqtt_shared_group[CONF_SHARED_GROUP_MAX + 1]; /* CONF_SHARED_GROUP_PATTERN */

    char machine_id[VEND_MACHINE_ID_MAX + 1]; /* MACHINE_ID, VEND_MACHINE_ID_PATTERN */

    /* security (SPEC §7) */
    char api_token[CONF_SECRET_MAX + 1]; /* secret; "" = development mode */
    bool dev_mode;                       /* derived: API_TOKEN unset */

    /* Midtrans */
    char midtrans_server_key[CONF_SECRET_MAX + 1]; /* secret */
    bool midtrans_is_production;
    char midtrans_api_base[CONF_URL_MAX + 1];         /* no trailing '/'; derived if unset */
    char midtrans_snap_base[CONF_URL_MAX + 1];        /* no trailing '/'; derived if unset */
    char midtrans_notification_url[CONF_URL_MAX + 1]; /* "" = the dashboard's */
    unsigned int midtrans_timeout_ms;                 /* 500..60000 */

    /* timing */
    unsigned int dispense_result_grace_ms; /* 0..600000 */
    unsigned int dispense_dispatch_ttl_s;  /* 1..86400 */
    unsigned int order_payment_ttl_s;      /* 60..86400 */
    unsigned int order_pending_max;        /* PENDING orders per machine, 1..1000 */
    unsigned int order_rate_per_min;       /* customer orders per client address */
    unsigned int refund_retry_s;           /* first backoff of an unanswered refund call */
    unsigned int telemetry_retention_days; /* raw telemetry kept, 1..3650 (telemetry.h) */
    unsigned int machine_offline_alert_s;  /* OFFLINE this long: an alert (offline.h) */
    unsigned int low_stock_percent;        /* of capacity: LOW_STOCK at or below (stock.h) */

    enum log_format log_format; /* LOG_FORMAT: text | json */

    /* HTTP connection limits (http.h struct http_config) */
    unsigned int http_max_connections;  /* 16..100000 */
    unsigned int http_local_reserve;    /* of those, for 127.0.0.1 and ::1; below the max */
    unsigned int http_per_address_max;  /* 0 = no cap */
    unsigned int http_header_timeout_s; /* request headers in within this, 1..600 */
    unsigned int http_body_timeout_s;   /* request body in within this after them, 1..3600 */
};

/*
 * Fills *conf from envp (a NULL-terminated "KEY=VALUE" array such as
 * environ; NULL means empty) and, if dotenv_path is not NULL, from that file
 * (a missing file is fine; any other failure to read it is an error).
 *
 * Checks every variable before returning, and writes one line per problem to
 * errout (NULL: silent), in the form
 *     vendd: <VARIABLE>: <problem> (got '<value>')
 * or, for secrets, "(value hidden)"; passwords inside URLs are masked. .env
 * problems name the file and line: "vendd: <file>:<line>: <problem>".
 *
 * Returns VEND_OK, or VEND_ECONF with *conf zeroed if anything was wrong.
 * Allocates only temporarily (the .env buffer); *conf owns no memory.
 */
int conf_load(struct vendd_conf *conf, char *const *envp, const char *dotenv_path, FILE *errout);

/*
 * Writes the normalized configuration as "NAME=value" lines in table order
 * (the order of docs/CONFIG.md). Secrets print as "(set)" or "(unset)", the
 * password inside a postgres DATABASE_URL as "***"; unset strings print as
 * an empty value. Derived defaults (the Midtrans bases) print as resolved.
 */
void conf_print(const struct vendd_conf *conf, FILE *out);

#endif
