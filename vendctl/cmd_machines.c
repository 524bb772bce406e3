/*
 * cmd_machines.c - vendctl's machine commands: machines (list, show, add), slots, stock,
 * slot set, restock, audit, config, telemetry (vendctl.h, docs/HTTP-API.md "Machines",
 * "Slots and stock", "Config").
 *
 * A stock change carries the slot version the operator last saw (optimistic concurrency): a
 * dispense or another operator in between makes vendd answer 409, and vendctl then shows the
 * slot as it is now and changes nothing.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vend/msg.h"
#include "vendctl.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

static const struct out_col machine_cols[] = {
    {"ID", "id", 0},
    {"NAME", "name", 0},
    {"STATUS", "status", 0},
    {"DOOR", "door", 0},
    {"TEMP", "temperature", OUT_RIGHT},
    {"LAST SEEN", "last_seen", OUT_TIME},
    {"LOCATION", "location", 0},
};

static const struct out_col machine_fields[] = {
    {"id", "id", 0},
    {"name", "name", 0},
    {"location", "location", 0},
    {"status", "status", 0},
    {"door", "door", 0},
    {"rssi", "rssi", 0},
    {"firmware", "fw", 0},
    {"temperature", "temperature", 0},
    {"last seen", "last_seen", OUT_TIME},
    {"config", "config", 0},
    {"created", "created_at", OUT_TIME},
    {"updated", "updated_at", OUT_TIME},
};

static const struct out_col slot_cols[] = {
    {"SLOT", "slot_number", OUT_RIGHT},    {"PRODUCT", "product_name", 0},
    {"PRICE", "price", OUT_RIGHT},         {"CAPACITY", "capacity", OUT_RIGHT},
    {"STOCK", "current_stock", OUT_RIGHT}, {"MOTOR MS", "motor_duration_ms", OUT_RIGHT},
    {"INSPECT", "needs_inspection", 0},    {"ACTIVE", "is_active", 0},
    {"VERSION", "version", OUT_RIGHT},
};

static const struct out_col stock_cols[] = {
    {"SLOT", "slot_number", OUT_RIGHT},    {"PRODUCT", "product_name", 0},
    {"STOCK", "current_stock", OUT_RIGHT}, {"CAPACITY", "capacity", OUT_RIGHT},
    {"SENSOR", "sensor_level", 0},         {"SENSOR AT", "sensor_at", OUT_TIME},
    {"INSPECT", "needs_inspection", 0},    {"VERSION", "version", OUT_RIGHT},
};

static const struct out_col telemetry_cols[] = {
    {"ID", "id", OUT_RIGHT},
    {"RECEIVED", "received_at", OUT_TIME},
    {"DEVICE TIME", "device_time", 0},
    {"TEMP", "temperature", OUT_RIGHT},
    {"DOOR", "door", 0},
    {"DATA", "data", 0},
};

int cmd_machines_list(struct ctl *ctl)
{
    json_t *doc;
    int status = ctl_list(ctl, "/api/machines", "machines", &doc);

    if (status == CTL_EOK)
        ctl_print_list(ctl, doc, "machines", machine_cols, N(machine_cols));
    json_decref(doc);
    return status;
}

int cmd_machines_show(struct ctl *ctl)
{
    const char *id = ctl->pos[0];
    char path[128];
    struct reply r = {0};
    int status = ctl_machine_id(ctl, "ID", id);

    if (status != CTL_EOK)
        return status;
    snprintf(path, sizeof(path), "/api/machines/%s", id);
    status = ctl_call(ctl, "GET", path, NULL, &r);
    if (status == CTL_EOK && !ctl_print_raw(ctl, &r)) {
        out_fields(&ctl->out, r.json, machine_fields, N(machine_fields));
        out_heading(&ctl->out, "slots");
        out_table(&ctl->out, json_object_get(r.json, "slots"), slot_cols, N(slot_cols));
    }
    reply_release(&r);
    return status;
}

int cmd_machines_add(struct ctl *ctl)
{
    const char *id = ctl->pos[0];
    struct reply r = {0};
    json_t *body;
    int status = ctl_machine_id(ctl, "ID", id);

    if (status != CTL_EOK)
        return status;
    body = json_pack("{ss}", "id", id);
    if (body == NULL)
        return ctl_fail(CTL_ELOCAL, "out of memory");
    if (ctl->npos > 1)
        status = ctl_set_str(ctl, body, "name", ctl->pos[1], "NAME");
    if (status == CTL_EOK && ctl->opt[CTL_OPT_LOCATION] != NULL)
        status = ctl_set_str(ctl, body, "location", ctl->opt[CTL_OPT_LOCATION], "--location");
    if (status == CTL_EOK)
        status = ctl_call(ctl, "POST", "/api/machines", body, &r);
    /* Registered first: a machine vendd refused (409, it exists) keeps its password. */
    if (status == CTL_EOK && ctl->opt[CTL_OPT_BROKER_PASSWD] != NULL) {
        if (!ctl->json)
            out_fields(&ctl->out, r.json, machine_fields, N(machine_fields));
        status = ctl_broker_issue(ctl, id, r.json);
        if (status != CTL_EOK)
            ctl_fail(status,
                     "'%s' is registered without a broker password; once fixed: "
                     "vendctl machines passwd %s --broker-passwd FILE",
                     id, id);
    } else if (status == CTL_EOK && !ctl_print_raw(ctl, &r)) {
        out_fields(&ctl->out, r.json, machine_fields, N(machine_fields));
    }
    json_decref(body);
    reply_release(&r);
    return status;
}

static int stock_table(struct ctl *ctl, const struct out_col *cols, size_t ncols)
{
    const char *id = ctl->pos[0];
    char path[128];
    struct reply r = {0};
    int status = ctl_machine_id(ctl, "ID", id);

    if (status != CTL_EOK)
        return status;
    snprintf(path, sizeof(path), "/api/stock/%s", id);
    status = ctl_call(ctl, "GET", path, NULL, &r);
    if (status == CTL_EOK && !ctl_print_raw(ctl, &r))
        out_table(&ctl->out, json_object_get(r.json, "slots"), cols, ncols);
    reply_release(&r);
    return status;
}

int cmd_slots(struct ctl *ctl)
{
    return stock_table(ctl, slot_cols, N(slot_cols));
}

int cmd_stock(struct ctl *ctl)
{
    return stock_table(ctl, stock_cols, N(stock_cols));
}

/*
 * Slot n of machine id as vendd shows it now: *slot gets it (the caller's reference) or NULL
 * when the machine has no such slot. Prints nothing in --json mode unless it fails.
 */
static int slot_find(struct ctl *ctl, const char *id, long long n, json_t **slot)
{
    char path[128];
    struct reply r = {0};
    const json_t *it;
    size_t i;
    int status;

    *slot = NULL;
    snprintf(path, sizeof(path), "/api/stock/%s", id);
    status = client_call(&ctl->client, "GET", path, NULL, &r, ctl->json ? CALL_JSON_ERRORS : 0);
    json_array_foreach(json_object_get(r.json, "slots"), i, it)
    {
        if (status == CTL_EOK && json_integer_value(json_object_get(it, "slot_number")) == n)
            *slot = json_incref((json_t *)it);
    }
    reply_release(&r);
    return status;
}

static long long slot_int(const json_t *slot, const char *key)
{
    return (long long)json_integer_value(json_object_get(slot, key));
}

/* After a 409 CONFLICT: the slot now, on stderr (stdout has vendd's error with --json). */
static void show_current(struct ctl *ctl, const char *id, long long n)
{
    json_t *slot = NULL;
    char product[128];

    if (slot_find(ctl, id, n, &slot) != CTL_EOK || slot == NULL) {
        fprintf(stderr, "vendctl: nothing was changed\n");
        return;
    }
    out_escape(product, sizeof(product), json_string_value(json_object_get(slot, "product_name")));
    fprintf(stderr,
            "vendctl: slot %lld of '%s' now: version %lld, stock %lld of %lld, product '%s' at "
            "%lld, motor %lld ms\n"
            "vendctl: nothing was changed; look at the slot again and repeat with its version\n",
            n, id, slot_int(slot, "version"), slot_int(slot, "current_stock"),
            slot_int(slot, "capacity"), product, slot_int(slot, "price"),
            slot_int(slot, "motor_duration_ms"));
    json_decref(slot);
}

/* A table of one row. */
static void one_row(struct ctl *ctl, json_t *obj, const struct out_col *cols, size_t ncols)
{
    json_t *rows = json_pack("[O]", obj);

    out_table(&ctl->out, rows, cols, ncols);
    json_decref(rows);
}

/* PUT the slot; on success print the slot (fields) or what changed (change != NULL). */
static int put_slot(struct ctl *ctl, const char *id, long long n, json_t *body, const char *change)
{
    char path[128];
    struct reply r = {0};
    int status;

    snprintf(path, sizeof(path), "/api/machines/%s/slots/%lld", id, n);
    status = ctl_call(ctl, "PUT", path, body, &r);
    if (status == CTL_EOK && !ctl_print_raw(ctl, &r)) {
        if (change != NULL)
            fprintf(stdout, "slot %lld of '%s': %s, version %lld\n", n, id, change,
                    slot_int(r.json, "version"));
        else
            one_row(ctl, r.json, slot_cols, N(slot_cols));
    }
    if (status == CTL_ECONFLICT &&
        json_is_integer(json_object_get(json_object_get(r.json, "error"), "version")))
        show_current(ctl, id, n);
    reply_release(&r);
    return status;
}

/* ID and N of a slot command. */
static int slot_args(struct ctl *ctl, long long *n)
{
    int status = ctl_machine_id(ctl, "ID", ctl->pos[0]);

    if (status != CTL_EOK)
        return status;
    return ctl_int(ctl, "N", ctl->pos[1], VEND_SLOT_MIN, VEND_SLOT_MAX, n);
}

static int set_int(struct ctl *ctl, json_t *body, enum ctl_opt o, const char *key, long long min,
                   long long max)
{
    long long v;
    int status;

    if (ctl->opt[o] == NULL)
        return CTL_EOK;
    status = ctl_opt_int(ctl, o, min, max, &v);
    if (status == CTL_EOK && json_object_set_new(body, key, json_integer(v)) < 0)
        status = ctl_fail(CTL_ELOCAL, "out of memory");
    return status;
}

int cmd_slot_set(struct ctl *ctl)
{
    static const enum ctl_opt fields[] = {CTL_OPT_PRODUCT, CTL_OPT_PRICE,    CTL_OPT_CAPACITY,
                                          CTL_OPT_STOCK,   CTL_OPT_MOTOR_MS, CTL_OPT_INSPECTED};
    const char *id = ctl->pos[0];
    json_t *body = json_object(), *slot = NULL;
    long long n = 0, version = 0;
    bool any = false;
    int status = slot_args(ctl, &n);

    for (size_t i = 0; i < N(fields); i++)
        any = any || ctl->opt[fields[i]] != NULL;
    if (status == CTL_EOK && !any)
        status = ctl_usage(ctl, "nothing to set: give at least one of --product, --price, "
                                "--capacity, --stock, --motor-ms, --inspected");
    if (status == CTL_EOK && body == NULL)
        status = ctl_fail(CTL_ELOCAL, "out of memory");
    if (status == CTL_EOK && ctl->opt[CTL_OPT_PRODUCT] != NULL)
        status = ctl_set_str(ctl, body, "product_name", ctl->opt[CTL_OPT_PRODUCT], "--product");
    if (status == CTL_EOK)
        status = set_int(ctl, body, CTL_OPT_PRICE, "price", 0, LLONG_MAX);
    if (status == CTL_EOK)
        status = set_int(ctl, body, CTL_OPT_CAPACITY, "capacity", 0, LLONG_MAX);
    if (status == CTL_EOK)
        status = set_int(ctl, body, CTL_OPT_STOCK, "current_stock", 0, LLONG_MAX);
    if (status == CTL_EOK)
        status = set_int(ctl, body, CTL_OPT_MOTOR_MS, "motor_duration_ms", VEND_TIMEOUT_MS_MIN,
                         VEND_TIMEOUT_MS_MAX);
    if (status == CTL_EOK && ctl->opt[CTL_OPT_INSPECTED] != NULL)
        json_object_set_new(body, "needs_inspection", json_false());
    if (status != CTL_EOK)
        goto out;
    if (ctl->opt[CTL_OPT_IF_VERSION] != NULL) {
        status = set_int(ctl, body, CTL_OPT_IF_VERSION, "version", 1, LLONG_MAX);
    } else if (ctl->opt[CTL_OPT_STOCK] != NULL) {
        /* A stock change needs a version: the one of this moment (none for a new slot). */
        status = slot_find(ctl, id, n, &slot);
        version = slot_int(slot, "version");
        if (status == CTL_EOK && slot != NULL)
            json_object_set_new(body, "version", json_integer(version));
    }
    if (status == CTL_EOK)
        status = put_slot(ctl, id, n, body, NULL);
out:
    json_decref(slot);
    json_decref(body);
    return status;
}

/* restock (add) or audit (set): COUNT against the version seen, or --if-version. */
static int stock_change(struct ctl *ctl, bool add)
{
    const char *id = ctl->pos[0];
    long long n = 0, count = 0, version = 0, before, after;
    json_t *slot = NULL, *body = NULL;
    char change[160];
    int status = slot_args(ctl, &n);

    if (status == CTL_EOK)
        status = ctl_int(ctl, "COUNT", ctl->pos[2], add ? 1 : 0, LLONG_MAX / 2, &count);
    if (status == CTL_EOK)
        status = ctl_opt_int(ctl, CTL_OPT_IF_VERSION, 1, LLONG_MAX, &version);
    if (status == CTL_EOK)
        status = slot_find(ctl, id, n, &slot);
    if (status == CTL_EOK && slot == NULL)
        status = ctl_fail(CTL_ENOTFOUND, "machine '%s' has no slot %lld", id, n);
    if (status != CTL_EOK)
        goto out;
    before = slot_int(slot, "current_stock");
    after = add ? before + count : count;
    if (ctl->opt[CTL_OPT_IF_VERSION] == NULL)
        version = slot_int(slot, "version");
    body = json_pack("{sIsI}", "current_stock", (json_int_t)after, "version", (json_int_t)version);
    if (body == NULL) {
        status = ctl_fail(CTL_ELOCAL, "out of memory");
        goto out;
    }
    if (add)
        snprintf(change, sizeof(change), "stock %lld + %lld = %lld", before, count, after);
    else
        snprintf(change, sizeof(change), "stock counted %lld (was %lld)", after, before);
    status = put_slot(ctl, id, n, body, change);
out:
    json_decref(body);
    json_decref(slot);
    return status;
}

int cmd_restock(struct ctl *ctl)
{
    return stock_change(ctl, true);
}

int cmd_audit(struct ctl *ctl)
{
    return stock_change(ctl, false);
}

int cmd_config(struct ctl *ctl)
{
    const char *id = ctl->pos[0];
    char path[128];
    struct reply r = {0};
    json_t *body = json_object();
    int status = ctl_machine_id(ctl, "ID", id);

    if (status == CTL_EOK && body == NULL)
        status = ctl_fail(CTL_ELOCAL, "out of memory");
    /* The wire codec's bounds: what the API accepts, the machine accepts. */
    if (status == CTL_EOK)
        status = set_int(ctl, body, CTL_OPT_MOTOR_TIMEOUT, "motorTimeout",
                         VEND_MOTOR_TIMEOUT_MS_MIN, VEND_MOTOR_TIMEOUT_MS_MAX);
    if (status == CTL_EOK)
        status = set_int(ctl, body, CTL_OPT_DROP_SENSOR_DELAY, "dropSensorDelay", 0,
                         VEND_DROP_DELAY_MS_MAX);
    if (status == CTL_EOK)
        status = set_int(ctl, body, CTL_OPT_TELEMETRY_INTERVAL, "telemetryInterval",
                         VEND_TELEMETRY_INTERVAL_MIN, VEND_TELEMETRY_INTERVAL_MAX);
    if (status != CTL_EOK)
        goto out;
    snprintf(path, sizeof(path), "/api/machines/%s/config", id);
    status = ctl_call(ctl, "PUT", path, body, &r);
    if (status == CTL_EOK && !ctl_print_raw(ctl, &r)) {
        char topic[128], *config = out_value(json_object_get(r.json, "config"), 0);

        out_escape(topic, sizeof(topic), json_string_value(json_object_get(r.json, "topic")));
        printf("pushed to '%s' on %s (retained): %s\n", id, topic, config != NULL ? config : "?");
        free(config);
    }
out:
    json_decref(body);
    reply_release(&r);
    return status;
}

int cmd_telemetry(struct ctl *ctl)
{
    const char *id = ctl->pos[0];
    char path[128];
    json_t *doc = NULL;
    int status = ctl_machine_id(ctl, "ID", id);

    if (status != CTL_EOK)
        return status;
    snprintf(path, sizeof(path), "/api/machines/%s/telemetry", id);
    status = ctl_list(ctl, path, "items", &doc);
    if (status == CTL_EOK)
        ctl_print_list(ctl, doc, "items", telemetry_cols, N(telemetry_cols));
    json_decref(doc);
    return status;
}
