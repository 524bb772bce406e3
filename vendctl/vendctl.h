/*
 * vendctl.h - the operator's command-line client of vendd's HTTP API (docs/VENDCTL.md,
 * vendctl.1): exit statuses, options, the command table and the handlers it points to.
 *
 * A handler returns the exit status of the command (enum ctl_exit): unlike the daemon's
 * functions, which return 0 or a negative VEND_E*, a command's caller (a shell script) needs
 * nothing but that number, and the detail has already gone to stderr, one line naming the
 * subject. No globals: main() builds one struct ctl and passes it down.
 */
#ifndef VENDCTL_H
#define VENDCTL_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "client.h"
#include "out.h"

#define CTL_VERSION "0.1.0"

/* X(name, status, meaning): the exit statuses, stated once (vendctl.1 "EXIT STATUS"). */
#define CTL_EXIT_MAP(X)                                                                            \
    X(OK, 0, "success")                                                                            \
    X(REFUSED, 1, "vendd refused the request (a 4xx answer not listed below)")                     \
    X(USAGE, 2, "usage: bad command line or unsafe token file; nothing was sent")                  \
    X(CONFLICT, 3, "409: a stale slot version, or not in the state the call needs")                \
    X(NOTFOUND, 4, "404: no such machine, slot, order, refund or alert")                           \
    X(SERVER, 5, "server or connection error: 5xx, no or malformed answer, timeout")               \
    X(UNSUPPORTED, 6, "this vendd has no such route (it is older than vendctl)")                   \
    X(LOCAL, 7, "vendctl itself failed: out of memory, cannot write its output")

enum ctl_exit {
#define CTL_EXIT_ENUM(name, status, meaning) CTL_E##name = status,
    CTL_EXIT_MAP(CTL_EXIT_ENUM)
#undef CTL_EXIT_ENUM
};

/*
 * X(name, "option", metavar or NULL for a flag, help): every option of every command, so one
 * spelling means one thing everywhere (house style §3, git and curl as models). Which
 * commands take which option is the command table's business (struct command).
 */
#define CTL_OPTION_MAP(X)                                                                          \
    X(URL, "url", "URL", "vendd's base URL (default $VENDCTL_URL, else http://127.0.0.1:3001)")    \
    X(TOKEN_FILE, "token-file", "PATH", "read the bearer token from PATH (mode 0600 or stricter)") \
    X(JSON, "json", NULL, "print vendd's JSON instead of a table")                                 \
    X(TIMEOUT, "timeout", "SECONDS", "give up on a request after SECONDS (default 30)")            \
    X(HELP, "help", NULL, "print the usage of the command")                                        \
    X(LIMIT, "limit", "N", "show at most N items of a list (default: all)")                        \
    X(PAGE_SIZE, "page-size", "N", "items asked per request, 1..500 (default 500)")                \
    X(CURSOR, "cursor", "CURSOR", "start a list at CURSOR (a next_cursor from --json)")            \
    X(LOCATION, "location", "TEXT", "where the machine stands")                                    \
    X(PRODUCT, "product", "NAME", "the slot's product (created if new)")                           \
    X(PRICE, "price", "RUPIAH", "the product's price")                                             \
    X(CAPACITY, "capacity", "N", "units the slot holds")                                           \
    X(STOCK, "stock", "N", "units in the slot now")                                                \
    X(MOTOR_MS, "motor-ms", "MS", "the slot's motor time")                                         \
    X(INSPECTED, "inspected", NULL, "clear the slot's needs_inspection flag")                      \
    X(IF_VERSION, "if-version", "V", "change the slot only if its version is still V")             \
    X(STATUS, "status", "STATUS", "only items of this status")                                     \
    X(MACHINE, "machine", "ID", "the machine")                                                     \
    X(SLOT, "slot", "N", "the slot number")                                                        \
    X(QUANTITY, "quantity", "Q", "units of the slot (default 1)")                                  \
    X(ID, "id", "ORDER", "the new order's id (default: vendd makes one)")                          \
    X(UNIT, "unit", "N", "the order's unit (default 1)")                                           \
    X(DROPPED, "dropped", "yes|no", "whether the unit dropped")                                    \
    X(NOTE, "note", "TEXT", "how the refund was paid back")                                        \
    X(RESOLVED, "resolved", NULL, "the resolved alerts instead of the open ones")                  \
    X(MOTOR_TIMEOUT, "motor-timeout", "MS", "motorTimeout, ms")                                    \
    X(DROP_SENSOR_DELAY, "drop-sensor-delay", "MS", "dropSensorDelay, ms")                         \
    X(TELEMETRY_INTERVAL, "telemetry-interval", "MS", "telemetryInterval, ms")                     \
    X(COUNT, "count", "N", "stop after N events")                                                  \
    X(BROKER_PASSWD, "broker-passwd", "FILE", "mosquitto's password file: the machine's entry")

enum ctl_opt {
#define CTL_OPT_ENUM(name, spelling, metavar, help) CTL_OPT_##name,
    CTL_OPTION_MAP(CTL_OPT_ENUM)
#undef CTL_OPT_ENUM
        CTL_NOPTS
};

#define CTL_OPT(name) (1ull << CTL_OPT_##name)
#define CTL_OPT_GLOBAL                                                                             \
    (CTL_OPT(URL) | CTL_OPT(TOKEN_FILE) | CTL_OPT(JSON) | CTL_OPT(TIMEOUT) | CTL_OPT(HELP))
#define CTL_OPT_LIST (CTL_OPT(LIMIT) | CTL_OPT(PAGE_SIZE) | CTL_OPT(CURSOR))

#define CTL_POS_MAX   8           /* positional arguments after the command word(s) */
#define CTL_BODY_MAX  (16u << 20) /* bytes of one answer from vendd */
#define CTL_ITEMS_MAX 100000      /* items of one list walked page by page */
#define CTL_PAGE_MAX  500         /* the API's largest page (docs/HTTP-API.md "Lists") */
#define CTL_TOKEN_MAX 1024        /* bytes of a token (vendd's own bound is lower) */
#define CTL_URL_MAX   512
#define CTL_TIMEOUT_S 30

struct ctl;
struct command;

typedef int command_fn(struct ctl *ctl);

/*
 * One row of the command table: `vendctl NAME [SUB] ARGS [options]`. Rows of one NAME with a
 * SUB form a group; the row marked dflt runs when the word after NAME is absent.
 */
struct command {
    const char *name;
    const char *sub; /* NULL: the command has no subcommands */
    bool dflt;       /* the group's default subcommand */
    int nargs_min, nargs_max;
    const char *args;            /* synopsis of the positional arguments ("ID N COUNT") */
    unsigned long long opts;     /* options it takes besides the global ones */
    unsigned long long required; /* of those, the ones it needs */
    command_fn *run;
    const char *help; /* one line */
};

struct ctl {
    const struct command *cmd;
    const char *opt[CTL_NOPTS];   /* values; "" for a flag given; NULL when absent */
    const char *pos[CTL_POS_MAX]; /* positional arguments after the command word(s) */
    int npos;
    struct client client;
    struct out out;
    bool json;
};

/* "vendctl: " and the message on stderr; returns status, so `return ctl_fail(...)` reads. */
int ctl_fail(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A usage error: the message, the command's synopsis, CTL_EUSAGE. */
int ctl_usage(const struct ctl *ctl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- arguments (vendctl.c) ---------------------------------------------------------- */

/*
 * Parse s as an integer from min to max into *out; what names it in the usage error
 * ("COUNT", "--price"). Returns CTL_EOK or CTL_EUSAGE (message printed).
 */
int ctl_int(const struct ctl *ctl, const char *what, const char *s, long long min, long long max,
            long long *out);
/* The same for an option; *out is left alone when the option is absent. */
int ctl_opt_int(const struct ctl *ctl, enum ctl_opt o, long long min, long long max,
                long long *out);
/* body[key] = val; what names val in the usage error for text that is not UTF-8. */
int ctl_set_str(const struct ctl *ctl, json_t *body, const char *key, const char *val,
                const char *what);
/* A machine id (VEND_MACHINE_ID_PATTERN) or an order id (VEND_ORDER_ID_PATTERN). */
int ctl_machine_id(const struct ctl *ctl, const char *what, const char *s);
int ctl_order_id(const struct ctl *ctl, const char *what, const char *s);

/*
 * Walk the list at path (a query may be in it) page by page until its next_cursor is null,
 * --limit items or CTL_ITEMS_MAX, starting at --cursor. *doc gets {array: [...all items],
 * "next_cursor": where the walk stopped}, plus the other members of the first page
 * ("machine_id"), the caller's reference. Returns an exit status (CTL_EOK: *doc set).
 */
int ctl_list(struct ctl *ctl, const char *path, const char *array, json_t **doc);
/* Print doc (--json) or its array as a table of cols; returns CTL_EOK. */
int ctl_print_list(struct ctl *ctl, json_t *doc, const char *array, const struct out_col *cols,
                   size_t ncols);
/* client_call() with --json's flags: vendd's error body goes to stdout too. */
int ctl_call(struct ctl *ctl, const char *method, const char *path, const json_t *body,
             struct reply *r);
/* With --json, print the body of r as it came (one line); true if it did. */
bool ctl_print_raw(const struct ctl *ctl, const struct reply *r);

/*
 * A new broker password for machine id into the password file of --broker-passwd
 * (cmd_broker.c), printed once: after answer (vendd's JSON for the machine, or NULL) with
 * --json, as two lines of text otherwise. Returns an exit status.
 */
int ctl_broker_issue(struct ctl *ctl, const char *id, json_t *answer);

/* ---- handlers (cmd_*.c) ------------------------------------------------------------- */

command_fn cmd_health, cmd_metrics;
command_fn cmd_machines_list, cmd_machines_show, cmd_machines_add, cmd_slots, cmd_stock;
command_fn cmd_machines_passwd, cmd_machines_revoke;
command_fn cmd_slot_set, cmd_restock, cmd_audit, cmd_config, cmd_telemetry;
command_fn cmd_orders_list, cmd_orders_show, cmd_orders_create, cmd_orders_cancel;
command_fn cmd_trigger, cmd_settle, cmd_dispense_status, cmd_dispense_logs;
command_fn cmd_refunds_list, cmd_refunds_done, cmd_alerts_list, cmd_alerts_resolve;
command_fn cmd_watch;

#endif
