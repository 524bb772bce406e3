/*
 * cmd_misc.c - vendctl's alerts (list, resolve), health and metrics (vendctl.h,
 * docs/HTTP-API.md "Alerts", "Health and metrics").
 */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "vendctl.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

static const struct out_col alert_cols[] = {
    {"ID", "id", OUT_RIGHT},
    {"MACHINE", "machine_id", 0},
    {"KIND", "kind", 0},
    {"SLOT", "slot_number", OUT_RIGHT},
    {"ORDER", "order_id", 0},
    {"CREATED", "created_at", OUT_TIME},
    {"RESOLVED", "resolved_at", OUT_TIME},
    {"MESSAGE", "message", 0},
};

static const struct out_col health_fields[] = {
    {"status", "status", 0},
    {"version", "version", 0},
    {"mqtt", "mqtt_connected", 0},
    {"mqtt telemetry", "mqtt_telemetry_connected", 0},
};

int cmd_alerts_list(struct ctl *ctl)
{
    char path[256];
    json_t *doc = NULL;
    const char *machine = ctl->opt[CTL_OPT_MACHINE];
    int status = CTL_EOK;

    if (machine != NULL)
        status = ctl_machine_id(ctl, "--machine", machine);
    if (status != CTL_EOK)
        return status;
    snprintf(path, sizeof(path), "/api/alerts?open=%s%s%s",
             ctl->opt[CTL_OPT_RESOLVED] != NULL ? "false" : "true",
             machine != NULL ? "&machine_id=" : "", machine != NULL ? machine : "");
    status = ctl_list(ctl, path, "items", &doc);
    if (status == CTL_EOK)
        ctl_print_list(ctl, doc, "items", alert_cols, N(alert_cols));
    json_decref(doc);
    return status;
}

int cmd_alerts_resolve(struct ctl *ctl)
{
    long long id = 0;
    char path[128];
    struct reply r = {0};
    int status = ctl_int(ctl, "ID", ctl->pos[0], 1, LLONG_MAX, &id);

    if (status != CTL_EOK)
        return status;
    snprintf(path, sizeof(path), "/api/alerts/%lld/resolve", id);
    status = client_call(&ctl->client, "POST", path, NULL, &r,
                         CALL_QUIET | (ctl->json ? CALL_JSON_ERRORS : 0));
    if (status == CTL_EUNSUPPORTED) {
        ctl_fail(status,
                 "resolving an alert by hand is not supported by this vendd (%s: %ld); an "
                 "alert resolves when what it reports is dealt with: 'vendctl audit' for a "
                 "stock mismatch, 'vendctl slot set --inspected' for a slot to inspect, "
                 "'vendctl refunds done' for a refund due",
                 r.what, r.status);
    } else if (r.status != 0 && client_status(&r) != CTL_EOK) {
        client_report(&r);
    } else if (status == CTL_EOK && !ctl_print_raw(ctl, &r)) {
        printf("alert %lld resolved\n", id);
    }
    reply_release(&r);
    return status;
}

int cmd_health(struct ctl *ctl)
{
    struct reply r = {0};
    int status = ctl_call(ctl, "GET", "/health", NULL, &r);
    const char *st = json_string_value(json_object_get(r.json, "status"));

    if (status == CTL_EOK && !ctl_print_raw(ctl, &r))
        out_fields(&ctl->out, r.json, health_fields, N(health_fields));
    /* For a monitor: vendd up but cut off from the machines is not healthy. */
    if (status == CTL_EOK && (st == NULL || strcmp(st, "ok") != 0 ||
                              !json_is_true(json_object_get(r.json, "mqtt_connected")) ||
                              !json_is_true(json_object_get(r.json, "mqtt_telemetry_connected"))))
        status = ctl_fail(CTL_ESERVER,
                          "vendd at '%s' answers, but is not ok or not connected to "
                          "the MQTT broker",
                          ctl->client.base);
    reply_release(&r);
    return status;
}

int cmd_metrics(struct ctl *ctl)
{
    struct reply r = {0};
    int status;

    if (ctl->json)
        return ctl_usage(ctl, "'metrics' prints Prometheus text: --json does not apply");
    status = client_send(&ctl->client, "GET", "/metrics", NULL, &r);
    if (status == CTL_EOK)
        status = client_status(&r);
    if (status == CTL_EOK)
        fwrite(r.body, 1, r.len, stdout);
    else if (r.status != 0)
        client_report(&r);
    reply_release(&r);
    return status;
}
