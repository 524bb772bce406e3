/*
 * cmd_broker.c - a machine's broker credentials: `machines add --broker-passwd`, `machines
 * passwd` and `machines revoke` (vendctl.h, brokerpw.h, vendctl.1 "Broker credentials").
 *
 * The broker user of a machine is its id: deploy/mosquitto/vendd.acl's pattern rules on %u
 * give it its own five topics and nothing else. The password is printed once, on stdout, for
 * the installer to put into the machine; only its hash is kept, in the broker's password
 * file. The broker reads the file again when it gets SIGHUP, and then disconnects a machine
 * connected with a password no longer in it.
 */
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>

#include "brokerpw.h"
#include "vendctl.h"

/* The backend's own user in vendd.acl, which may publish commands to every machine. */
#define BACKEND_USER "vendd"

static const char reload_hint[] =
    "vendctl: the broker takes it when it reloads: systemctl reload mosquitto "
    "(or kill -HUP the broker)\n";

static int broker_user(const struct ctl *ctl, const char *id)
{
    if (strcmp(id, BACKEND_USER) == 0)
        return ctl_usage(ctl, "'%s' is the backend's broker user (vendd.acl), not a machine's", id);
    return CTL_EOK;
}

int ctl_broker_issue(struct ctl *ctl, const char *id, json_t *answer)
{
    const char *path = ctl->opt[CTL_OPT_BROKER_PASSWD];
    char pw[BROKERPW_PASSWORD_LEN + 1];
    json_t *creds;
    int status = broker_user(ctl, id);

    if (status == CTL_EOK)
        status = brokerpw_generate(pw, sizeof(pw));
    if (status == CTL_EOK)
        status = brokerpw_set(path, id, pw);
    if (status != CTL_EOK)
        goto out;
    if (ctl->json) {
        creds = json_pack("{ssss}", "username", id, "password", pw);
        if (answer == NULL)
            answer = json_pack("{ss}", "id", id);
        else
            json_incref(answer);
        if (creds == NULL || answer == NULL || json_object_set_new(answer, "broker", creds) < 0) {
            json_decref(answer);
            status = ctl_fail(CTL_ELOCAL, "out of memory");
            goto out;
        }
        json_dumpf(answer, stdout, JSON_COMPACT);
        fputc('\n', stdout);
        json_decref(answer);
    } else {
        printf("broker user      %s\nbroker password  %s\n", id, pw);
    }
    fputs(reload_hint, stderr);
out:
    OPENSSL_cleanse(pw, sizeof(pw));
    return status;
}

int cmd_machines_passwd(struct ctl *ctl)
{
    const char *id = ctl->pos[0];
    char path[128];
    struct reply r = {0};
    int status = ctl_machine_id(ctl, "ID", id);

    if (status == CTL_EOK)
        status = broker_user(ctl, id);
    if (status != CTL_EOK)
        return status;
    /* Only for a machine vendd knows: a typo must not open the broker to a new name. */
    snprintf(path, sizeof(path), "/api/machines/%s", id);
    status = ctl_call(ctl, "GET", path, NULL, &r);
    reply_release(&r);
    if (status == CTL_EOK)
        status = ctl_broker_issue(ctl, id, NULL);
    return status;
}

int cmd_machines_revoke(struct ctl *ctl)
{
    const char *id = ctl->pos[0];
    bool found = false;
    int status = ctl_machine_id(ctl, "ID", id);

    if (status == CTL_EOK)
        status = broker_user(ctl, id);
    if (status == CTL_EOK)
        status = brokerpw_remove(ctl->opt[CTL_OPT_BROKER_PASSWD], id, &found);
    if (status != CTL_EOK)
        return status;
    if (!found)
        return ctl_fail(CTL_ENOTFOUND, "'%s' has no entry in '%s'", id,
                        ctl->opt[CTL_OPT_BROKER_PASSWD]);
    if (ctl->json)
        printf("{\"id\":\"%s\",\"broker\":null}\n", id); /* id: [A-Za-z0-9_-] only */
    else
        printf("broker user '%s' removed\n", id);
    fputs(reload_hint, stderr);
    return CTL_EOK;
}
