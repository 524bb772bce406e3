/*
 * cmd_orders.c - vendctl's order commands: orders (list, show, create, cancel), trigger,
 * settle, dispense (status, logs), refunds (list, done) (vendctl.h, docs/HTTP-API.md
 * "Orders", "Payments and refunds", "Dispense").
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vend/msg.h"
#include "vendctl.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

static const struct out_col order_cols[] = {
    {"ID", "id", 0},
    {"MACHINE", "machine_id", 0},
    {"STATUS", "status", 0},
    {"ORIGIN", "origin", 0},
    {"METHOD", "payment_method", 0},
    {"QTY", "quantity", OUT_RIGHT},
    {"TOTAL", "total_amount", OUT_RIGHT},
    {"CREATED", "created_at", OUT_TIME},
    {"FAILURE", "failure_reason", 0},
};

static const struct out_col order_fields[] = {
    {"id", "id", 0},
    {"machine", "machine_id", 0},
    {"status", "status", 0},
    {"origin", "origin", 0},
    {"payment method", "payment_method", 0},
    {"quantity", "quantity", 0},
    {"total", "total_amount", 0},
    {"failure", "failure_reason", 0},
    {"payment url", "payment_url", 0},
    {"paid", "paid_at", OUT_TIME},
    {"dispensed", "dispensed_at", OUT_TIME},
    {"expires", "expires_at", OUT_TIME},
    {"created", "created_at", OUT_TIME},
    {"updated", "updated_at", OUT_TIME},
};

static const struct out_col item_cols[] = {
    {"#", "position", OUT_RIGHT},       {"SLOT", "slot", OUT_RIGHT},
    {"PRODUCT", "product_name", 0},     {"QTY", "quantity", OUT_RIGHT},
    {"PRICE", "unit_price", OUT_RIGHT}, {"TOTAL", "total", OUT_RIGHT},
};

static const struct out_col unit_cols[] = {
    {"UNIT", "unit", OUT_RIGHT},
    {"SLOT", "slot_number", OUT_RIGHT},
    {"STATUS", "status", 0},
    {"SENT", "command_sent_at", OUT_TIME},
    {"COMPLETED", "completed_at", OUT_TIME},
    {"MS", "duration_ms", OUT_RIGHT},
    {"DROP", "drop_detected", 0},
    {"ERROR", "error_message", 0},
};

static const struct out_col event_cols[] = {
    {"RECEIVED", "received_at", OUT_TIME},
    {"STATUS", "transaction_status", 0},
    {"CODE", "status_code", 0},
    {"SIGNED", "signature_ok", 0},
    {"OUTCOME", "outcome", 0},
};

static const struct out_col refund_fields[] = {
    {"id", "id", 0},         {"amount", "amount", 0},       {"reason", "reason", 0},
    {"status", "status", 0}, {"attempts", "attempts", 0},   {"last error", "last_error", 0},
    {"note", "note", 0},     {"done", "done_at", OUT_TIME}, {"created", "created_at", OUT_TIME},
};

static const struct out_col refund_cols[] = {
    {"ID", "id", OUT_RIGHT},
    {"ORDER", "order_id", 0},
    {"MACHINE", "machine_id", 0},
    {"AMOUNT", "amount", OUT_RIGHT},
    {"REASON", "reason", 0},
    {"STATUS", "status", 0},
    {"TRIES", "attempts", OUT_RIGHT},
    {"CREATED", "created_at", OUT_TIME},
    {"NOTE", "note", 0},
    {"LAST ERROR", "last_error", 0},
};

static const struct out_col log_cols[] = {
    {"ORDER", "order_id", 0},
    {"UNIT", "unit", OUT_RIGHT},
    {"SLOT", "slot_number", OUT_RIGHT},
    {"STATUS", "status", 0},
    {"SENT", "command_sent_at", OUT_TIME},
    {"COMPLETED", "completed_at", OUT_TIME},
    {"MS", "duration_ms", OUT_RIGHT},
    {"ERROR", "error_message", 0},
};

/* "&name=value" (or "?..." first) onto path, value escaped; CTL_ELOCAL on no room. */
static int add_query(struct ctl *ctl, char *path, size_t size, const char *name, const char *val)
{
    size_t used = strlen(path);
    char *esc = client_escape(&ctl->client, val);
    int n;

    if (esc == NULL)
        return ctl_fail(CTL_ELOCAL, "out of memory");
    n = snprintf(path + used, size - used, "%s%s=%s", strchr(path, '?') ? "&" : "?", name, esc);
    free(esc);
    if (n < 0 || (size_t)n >= size - used)
        return ctl_usage(ctl, "--%s is too long", name);
    return CTL_EOK;
}

/* An order as `orders show` prints it: its fields, then each part it has. */
static void print_order(struct ctl *ctl, const json_t *o)
{
    const json_t *units = json_object_get(o, "units"), *refund = json_object_get(o, "refund");
    const json_t *events = json_object_get(o, "payment_events");

    out_fields(&ctl->out, o, order_fields, N(order_fields));
    out_heading(&ctl->out, "items");
    out_table(&ctl->out, json_object_get(o, "items"), item_cols, N(item_cols));
    if (json_array_size(units) > 0) {
        out_heading(&ctl->out, "units");
        out_table(&ctl->out, units, unit_cols, N(unit_cols));
    }
    if (json_array_size(events) > 0) {
        out_heading(&ctl->out, "payment events");
        out_table(&ctl->out, events, event_cols, N(event_cols));
    }
    if (json_is_object(refund)) {
        out_heading(&ctl->out, "refund");
        out_fields(&ctl->out, refund, refund_fields, N(refund_fields));
    }
}

int cmd_orders_list(struct ctl *ctl)
{
    char path[512] = "/api/orders";
    json_t *doc = NULL;
    int status = CTL_EOK;

    if (ctl->opt[CTL_OPT_MACHINE] != NULL)
        status = ctl_machine_id(ctl, "--machine", ctl->opt[CTL_OPT_MACHINE]);
    if (status == CTL_EOK && ctl->opt[CTL_OPT_STATUS] != NULL)
        status = add_query(ctl, path, sizeof(path), "status", ctl->opt[CTL_OPT_STATUS]);
    if (status == CTL_EOK && ctl->opt[CTL_OPT_MACHINE] != NULL)
        status = add_query(ctl, path, sizeof(path), "machine_id", ctl->opt[CTL_OPT_MACHINE]);
    if (status == CTL_EOK)
        status = ctl_list(ctl, path, "items", &doc);
    if (status == CTL_EOK)
        ctl_print_list(ctl, doc, "items", order_cols, N(order_cols));
    json_decref(doc);
    return status;
}

int cmd_orders_show(struct ctl *ctl)
{
    const char *id = ctl->pos[0];
    char path[128];
    struct reply r = {0};
    int status = ctl_order_id(ctl, "ORDER", id);

    if (status != CTL_EOK)
        return status;
    snprintf(path, sizeof(path), "/api/orders/%s", id);
    status = ctl_call(ctl, "GET", path, NULL, &r);
    if (status == CTL_EOK && !ctl_print_raw(ctl, &r))
        print_order(ctl, r.json);
    reply_release(&r);
    return status;
}

int cmd_orders_create(struct ctl *ctl)
{
    const char *machine = ctl->opt[CTL_OPT_MACHINE], *id = ctl->opt[CTL_OPT_ID];
    long long slot = 0, quantity = 1;
    struct reply r = {0};
    json_t *body = NULL;
    int status = ctl_machine_id(ctl, "--machine", machine);

    if (status == CTL_EOK)
        status = ctl_opt_int(ctl, CTL_OPT_SLOT, VEND_SLOT_MIN, VEND_SLOT_MAX, &slot);
    if (status == CTL_EOK)
        status = ctl_opt_int(ctl, CTL_OPT_QUANTITY, 1, VEND_UNIT_MAX, &quantity);
    if (status == CTL_EOK && id != NULL)
        status = ctl_order_id(ctl, "--id", id);
    if (status != CTL_EOK)
        return status;
    /* Only the operator's kind: a customer's order goes through Midtrans, not a terminal. */
    body = json_pack("{sssssIsI}", "payment_method", "manual", "machine_id", machine, "slot",
                     (json_int_t)slot, "quantity", (json_int_t)quantity);
    if (body == NULL || (id != NULL && json_object_set_new(body, "id", json_string(id)) < 0)) {
        json_decref(body);
        return ctl_fail(CTL_ELOCAL, "out of memory");
    }
    status = ctl_call(ctl, "POST", "/api/orders", body, &r);
    if (status == CTL_EOK && !ctl_print_raw(ctl, &r))
        print_order(ctl, r.json);
    json_decref(body);
    reply_release(&r);
    return status;
}

/* "order 'X' STATUS" from an answer's order_id and status. */
static void order_line(const json_t *j, const char *tail)
{
    char id[128], st[64];

    out_escape(id, sizeof(id), json_string_value(json_object_get(j, "order_id")));
    out_escape(st, sizeof(st), json_string_value(json_object_get(j, "status")));
    printf("order '%s' %s%s\n", id, st, tail);
}

/* POST path with body, an answer {"order_id","status",...}; units table if units. */
static int order_post(struct ctl *ctl, const char *path, json_t *body, bool units)
{
    struct reply r = {0};
    int status;

    if (body == NULL)
        return ctl_fail(CTL_ELOCAL, "out of memory");
    status = ctl_call(ctl, "POST", path, body, &r);
    if (status == CTL_EOK && !ctl_print_raw(ctl, &r)) {
        const json_t *sent = json_object_get(r.json, "command_sent");

        if (json_is_boolean(sent))
            order_line(r.json, json_is_true(sent) ? ": command sent"
                                                  : ": waits behind the machine's dispense");
        else
            order_line(r.json, "");
        if (units) {
            out_heading(&ctl->out, "units");
            out_table(&ctl->out, json_object_get(r.json, "units"), unit_cols, N(unit_cols));
        }
    }
    json_decref(body);
    reply_release(&r);
    return status;
}

int cmd_orders_cancel(struct ctl *ctl)
{
    const char *id = ctl->pos[0];
    char path[128];
    int status = ctl_order_id(ctl, "ORDER", id);

    if (status != CTL_EOK)
        return status;
    snprintf(path, sizeof(path), "/api/orders/%s/cancel", id);
    return order_post(ctl, path, json_object(), false);
}

int cmd_trigger(struct ctl *ctl)
{
    const char *id = ctl->pos[0];
    int status = ctl_order_id(ctl, "ORDER", id);

    if (status != CTL_EOK)
        return status;
    return order_post(ctl, "/api/dispense/trigger", json_pack("{ss}", "order_id", id), false);
}

int cmd_settle(struct ctl *ctl)
{
    const char *id = ctl->pos[0], *dropped = ctl->opt[CTL_OPT_DROPPED];
    long long unit = 1;
    int status = ctl_order_id(ctl, "ORDER", id);

    if (status == CTL_EOK)
        status = ctl_opt_int(ctl, CTL_OPT_UNIT, VEND_UNIT_MIN, VEND_UNIT_MAX, &unit);
    if (status == CTL_EOK && strcmp(dropped, "yes") != 0 && strcmp(dropped, "no") != 0)
        status = ctl_usage(ctl, "--dropped '%s' is neither yes nor no", dropped);
    if (status != CTL_EOK)
        return status;
    return order_post(ctl, "/api/dispense/settle",
                      json_pack("{sssIsb}", "order_id", id, "unit", (json_int_t)unit, "dropped",
                                strcmp(dropped, "yes") == 0),
                      true);
}

int cmd_dispense_status(struct ctl *ctl)
{
    const char *id = ctl->pos[0];
    char path[128];
    struct reply r = {0};
    int status = ctl_order_id(ctl, "ORDER", id);

    if (status != CTL_EOK)
        return status;
    snprintf(path, sizeof(path), "/api/dispense/status/%s", id);
    status = ctl_call(ctl, "GET", path, NULL, &r);
    if (status == CTL_EOK && !ctl_print_raw(ctl, &r)) {
        order_line(r.json, "");
        out_heading(&ctl->out, "units");
        out_table(&ctl->out, json_object_get(r.json, "units"), unit_cols, N(unit_cols));
    }
    reply_release(&r);
    return status;
}

int cmd_dispense_logs(struct ctl *ctl)
{
    const char *id = ctl->pos[0];
    char path[128];
    json_t *doc = NULL;
    int status = ctl_machine_id(ctl, "ID", id);

    if (status != CTL_EOK)
        return status;
    snprintf(path, sizeof(path), "/api/dispense/logs/%s", id);
    status = ctl_list(ctl, path, "logs", &doc);
    if (status == CTL_EOK)
        ctl_print_list(ctl, doc, "logs", log_cols, N(log_cols));
    json_decref(doc);
    return status;
}

int cmd_refunds_list(struct ctl *ctl)
{
    char path[256] = "/api/refunds";
    json_t *doc = NULL;
    int status = CTL_EOK;

    if (ctl->opt[CTL_OPT_STATUS] != NULL)
        status = add_query(ctl, path, sizeof(path), "status", ctl->opt[CTL_OPT_STATUS]);
    if (status == CTL_EOK)
        status = ctl_list(ctl, path, "refunds", &doc);
    if (status == CTL_EOK)
        ctl_print_list(ctl, doc, "refunds", refund_cols, N(refund_cols));
    json_decref(doc);
    return status;
}

int cmd_refunds_done(struct ctl *ctl)
{
    long long id = 0;
    char path[128];
    struct reply r = {0};
    json_t *body;
    int status = ctl_int(ctl, "ID", ctl->pos[0], 1, LLONG_MAX, &id);

    if (status != CTL_EOK)
        return status;
    body = json_object();
    if (body == NULL)
        return ctl_fail(CTL_ELOCAL, "out of memory");
    status = ctl_set_str(ctl, body, "note", ctl->opt[CTL_OPT_NOTE], "--note");
    snprintf(path, sizeof(path), "/api/refunds/%lld/done", id);
    if (status == CTL_EOK)
        status = ctl_call(ctl, "POST", path, body, &r);
    if (status == CTL_EOK && !ctl_print_raw(ctl, &r)) {
        char st[64];

        out_escape(st, sizeof(st), json_string_value(json_object_get(r.json, "status")));
        printf("refund %lld %s\n", id, st);
    }
    json_decref(body);
    reply_release(&r);
    return status;
}
