/*
 * vendctl.c - main() of vendctl: the command table, the command line parsed against it, the
 * token, the client, and the handler of the command run (vendctl.h).
 */
#include "vendctl.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "token.h"
#include "vend/topic.h"

#define LIST CTL_OPT_LIST
#define O(x) CTL_OPT(x)
#define NONE 0ull

/* Every command; `vendctl help` prints this table, the man page documents the same. */
static const struct command commands[] = {
    {"machines", "list", true, 0, 0, "", LIST, NONE, cmd_machines_list, "list the machines"},
    {"machines", "show", false, 1, 1, "ID", NONE, NONE, cmd_machines_show,
     "show a machine and its slots"},
    {"machines", "add", false, 1, 2, "ID [NAME]", O(LOCATION) | O(BROKER_PASSWD), NONE,
     cmd_machines_add, "register a machine (and issue its broker password)"},
    {"machines", "passwd", false, 1, 1, "ID", O(BROKER_PASSWD), O(BROKER_PASSWD),
     cmd_machines_passwd, "issue a machine a new broker password"},
    {"machines", "revoke", false, 1, 1, "ID", O(BROKER_PASSWD), O(BROKER_PASSWD),
     cmd_machines_revoke, "remove a machine's broker password"},
    {"slots", NULL, false, 1, 1, "ID", NONE, NONE, cmd_slots,
     "list a machine's slots: product, price, capacity, motor time, version"},
    {"slot", "set", false, 2, 2, "ID N",
     O(PRODUCT) | O(PRICE) | O(CAPACITY) | O(STOCK) | O(MOTOR_MS) | O(INSPECTED) | O(IF_VERSION),
     NONE, cmd_slot_set, "create or change slot N of a machine"},
    {"stock", NULL, false, 1, 1, "ID", NONE, NONE, cmd_stock,
     "list a machine's stock: counted, capacity, sensor level, inspection"},
    {"restock", NULL, false, 3, 3, "ID N COUNT", O(IF_VERSION), NONE, cmd_restock,
     "add COUNT units to slot N"},
    {"audit", NULL, false, 3, 3, "ID N COUNT", O(IF_VERSION), NONE, cmd_audit,
     "set slot N's stock to COUNT units, as counted"},
    {"config", NULL, false, 1, 1, "ID",
     O(MOTOR_TIMEOUT) | O(DROP_SENSOR_DELAY) | O(TELEMETRY_INTERVAL),
     O(MOTOR_TIMEOUT) | O(DROP_SENSOR_DELAY) | O(TELEMETRY_INTERVAL), cmd_config,
     "push a configuration to a machine"},
    {"telemetry", NULL, false, 1, 1, "ID", LIST, NONE, cmd_telemetry,
     "list a machine's telemetry, newest first"},
    {"orders", "list", true, 0, 0, "", LIST | O(STATUS) | O(MACHINE), NONE, cmd_orders_list,
     "list orders, newest first"},
    {"orders", "show", false, 1, 1, "ORDER", NONE, NONE, cmd_orders_show,
     "show an order: items, units, payment events, refund"},
    {"orders", "create", false, 0, 0, "", O(MACHINE) | O(SLOT) | O(QUANTITY) | O(ID),
     O(MACHINE) | O(SLOT), cmd_orders_create, "create a manual (operator's, paid) order"},
    {"orders", "cancel", false, 1, 1, "ORDER", NONE, NONE, cmd_orders_cancel,
     "cancel an order that waits for payment"},
    {"trigger", NULL, false, 1, 1, "ORDER", NONE, NONE, cmd_trigger, "dispense a paid order"},
    {"settle", NULL, false, 1, 1, "ORDER", O(UNIT) | O(DROPPED), O(DROPPED), cmd_settle,
     "say whether an UNSETTLED unit dropped"},
    {"dispense", "status", false, 1, 1, "ORDER", NONE, NONE, cmd_dispense_status,
     "show an order's dispense units"},
    {"dispense", "logs", false, 1, 1, "ID", LIST, NONE, cmd_dispense_logs,
     "list a machine's dispense log"},
    {"refunds", "list", true, 0, 0, "", LIST | O(STATUS), NONE, cmd_refunds_list,
     "list refunds (default: the operator's queue)"},
    {"refunds", "done", false, 1, 1, "ID", O(NOTE), O(NOTE), cmd_refunds_done,
     "mark a refund paid back by a person"},
    {"alerts", "list", true, 0, 0, "", LIST | O(RESOLVED) | O(MACHINE), NONE, cmd_alerts_list,
     "list open alerts, newest first"},
    {"alerts", "resolve", false, 1, 1, "ID", NONE, NONE, cmd_alerts_resolve,
     "resolve an alert (if this vendd can)"},
    {"health", NULL, false, 0, 0, "", NONE, NONE, cmd_health,
     "vendd's health; fails unless both MQTT sessions are up"},
    {"metrics", NULL, false, 0, 0, "", NONE, NONE, cmd_metrics,
     "vendd's Prometheus metrics, as text"},
    {"watch", NULL, false, 0, 0, "", O(COUNT), NONE, cmd_watch,
     "print vendd's events as they happen (GET /api/events)"},
};
#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static const struct {
    const char *name, *metavar, *help;
} options[CTL_NOPTS] = {
#define CTL_OPT_ROW(name, spelling, metavar, help) {spelling, metavar, help},
    CTL_OPTION_MAP(CTL_OPT_ROW)
#undef CTL_OPT_ROW
};

static const struct {
    int status;
    const char *meaning;
} exits[] = {
#define CTL_EXIT_ROW(name, status, meaning) {status, meaning},
    CTL_EXIT_MAP(CTL_EXIT_ROW)
#undef CTL_EXIT_ROW
};

int ctl_fail(int status, const char *fmt, ...)
{
    va_list ap;

    fputs("vendctl: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return status;
}

/* "machines show ID [--x X]": the command's words, arguments and options. */
static void synopsis(FILE *f, const struct command *c)
{
    fprintf(f, "%s", c->name);
    if (c->sub != NULL)
        fprintf(f, " %s", c->sub);
    if (c->args[0] != '\0')
        fprintf(f, " %s", c->args);
    for (int o = 0; o < CTL_NOPTS; o++) {
        bool req = (c->required >> o) & 1u;

        if (!((c->opts >> o) & 1u))
            continue;
        fprintf(f, " %s--%s%s%s%s", req ? "" : "[", options[o].name,
                options[o].metavar != NULL ? " " : "",
                options[o].metavar != NULL ? options[o].metavar : "", req ? "" : "]");
    }
}

int ctl_usage(const struct ctl *ctl, const char *fmt, ...)
{
    va_list ap;

    fputs("vendctl: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    if (ctl != NULL && ctl->cmd != NULL) {
        fputs("usage: vendctl ", stderr);
        synopsis(stderr, ctl->cmd);
        fputc('\n', stderr);
    } else {
        fputs("usage: vendctl [options] COMMAND [ARGS]; 'vendctl help' lists them\n", stderr);
    }
    return CTL_EUSAGE;
}

static void help_all(FILE *f)
{
    fputs("usage: vendctl [--url URL] [--token-file PATH] [--json] [--timeout SECONDS]\n"
          "               COMMAND [ARGS] [options]\n\ncommands:\n",
          f);
    for (size_t i = 0; i < NCOMMANDS; i++) {
        fputs("  ", f);
        synopsis(f, &commands[i]);
        fprintf(f, "\n      %s\n", commands[i].help);
    }
    fputs("\noptions:\n", f);
    for (int o = 0; o < CTL_NOPTS; o++) {
        char left[48];

        snprintf(left, sizeof(left), "--%s%s%s", options[o].name,
                 options[o].metavar != NULL ? " " : "",
                 options[o].metavar != NULL ? options[o].metavar : "");
        fprintf(f, "  %-28s %s\n", left, options[o].help);
    }
    fputs("\nThe token comes from $VENDD_TOKEN or --token-file, never from the command line.\n"
          "\nexit status:\n",
          f);
    for (size_t i = 0; i < sizeof(exits) / sizeof(exits[0]); i++)
        fprintf(f, "  %d  %s\n", exits[i].status, exits[i].meaning);
    fputs("\nSee vendctl(1).\n", f);
}

/* The rows of command name; CTL_EUSAGE if there is none. */
static int help_command(FILE *f, const char *name)
{
    int n = 0;

    for (size_t i = 0; i < NCOMMANDS; i++) {
        if (strcmp(commands[i].name, name) != 0)
            continue;
        fputs(n++ == 0 ? "usage: vendctl " : "       vendctl ", f);
        synopsis(f, &commands[i]);
        fprintf(f, "\n           %s\n", commands[i].help);
    }
    return n > 0 ? CTL_EOK : ctl_usage(NULL, "unknown command '%s'", name);
}

int ctl_int(const struct ctl *ctl, const char *what, const char *s, long long min, long long max,
            long long *out)
{
    char *end;
    long long v;

    errno = 0;
    v = strtoll(s, &end, 10);
    if (s[0] == '\0' || *end != '\0' || errno != 0 || v < min || v > max || s[0] == ' ' ||
        s[0] == '+')
        return ctl_usage(ctl, "%s '%s' is not an integer from %lld to %lld", what, s, min, max);
    *out = v;
    return CTL_EOK;
}

int ctl_opt_int(const struct ctl *ctl, enum ctl_opt o, long long min, long long max, long long *out)
{
    char what[64];

    if (ctl->opt[o] == NULL)
        return CTL_EOK;
    snprintf(what, sizeof(what), "--%s", options[o].name);
    return ctl_int(ctl, what, ctl->opt[o], min, max, out);
}

int ctl_set_str(const struct ctl *ctl, json_t *body, const char *key, const char *val,
                const char *what)
{
    json_t *s = json_string(val);

    /* jansson refuses a string that is not UTF-8: the API's JSON could not carry it. */
    if (s == NULL)
        return ctl_usage(ctl, "%s is not UTF-8 text", what);
    if (json_object_set_new(body, key, s) < 0)
        return ctl_fail(CTL_ELOCAL, "out of memory");
    return CTL_EOK;
}

int ctl_machine_id(const struct ctl *ctl, const char *what, const char *s)
{
    if (vend_machine_id_valid(s))
        return CTL_EOK;
    return ctl_usage(ctl, "%s '%s' is not a machine id: " VEND_MACHINE_ID_PATTERN, what, s);
}

int ctl_order_id(const struct ctl *ctl, const char *what, const char *s)
{
    if (vend_order_id_valid(s))
        return CTL_EOK;
    return ctl_usage(ctl, "%s '%s' is not an order id: " VEND_ORDER_ID_PATTERN, what, s);
}

/* ---- the command line --------------------------------------------------------------- */

struct parsed {
    const char *opt[CTL_NOPTS];
    const char *word[CTL_POS_MAX + 2]; /* the command, its subcommand, the arguments */
    int nwords;
};

static int find_option(const char *name, size_t n)
{
    for (int o = 0; o < CTL_NOPTS; o++) {
        if (strlen(options[o].name) == n && memcmp(options[o].name, name, n) == 0)
            return o;
    }
    return -1;
}

/* Options anywhere (git and curl take them before or after the words), "--" ends them. */
static int parse_argv(int argc, char **argv, struct parsed *p)
{
    bool words_only = false;

    memset(p, 0, sizeof(*p));
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *eq, *val;
        size_t n;
        int o;

        if (!words_only && strcmp(a, "--") == 0) {
            words_only = true;
            continue;
        }
        if (words_only || a[0] != '-' || a[1] == '\0') {
            if (p->nwords == CTL_POS_MAX + 2)
                return ctl_usage(NULL, "too many arguments, from '%s' on", a);
            p->word[p->nwords++] = a;
            continue;
        }
        if (strcmp(a, "-h") == 0) {
            p->opt[CTL_OPT_HELP] = "";
            continue;
        }
        if (a[1] != '-')
            return ctl_usage(NULL, "unknown option '%s'", a);
        eq = strchr(a + 2, '=');
        n = eq != NULL ? (size_t)(eq - (a + 2)) : strlen(a + 2);
        if (n == 5 && memcmp(a + 2, "token", 5) == 0)
            return ctl_usage(NULL, "'--token' is not accepted: a token on the command line is "
                                   "seen by every user of this machine; set VENDD_TOKEN or use "
                                   "--token-file PATH");
        o = find_option(a + 2, n);
        if (o < 0) {
            if (n == 7 && memcmp(a + 2, "version", 7) == 0) {
                puts("vendctl " CTL_VERSION);
                return -1;
            }
            return ctl_usage(NULL, "unknown option '%.*s'", (int)n + 2, a);
        }
        if (p->opt[o] != NULL)
            return ctl_usage(NULL, "option '--%s' given twice", options[o].name);
        if (options[o].metavar == NULL) {
            if (eq != NULL)
                return ctl_usage(NULL, "option '--%s' takes no value", options[o].name);
            val = "";
        } else if (eq != NULL) {
            val = eq + 1;
        } else if (i + 1 < argc) {
            val = argv[++i];
        } else {
            return ctl_usage(NULL, "option '--%s' needs %s", options[o].name, options[o].metavar);
        }
        p->opt[o] = val;
    }
    return CTL_EOK;
}

/* The row for the words; *used gets how many words name it (1 or 2). */
static int find_command(struct ctl *ctl, const struct parsed *p, int *used)
{
    const char *name = p->word[0], *sub = p->nwords > 1 ? p->word[1] : NULL;
    const struct command *dflt = NULL, *first = NULL;
    char subs[160] = "";

    for (size_t i = 0; i < NCOMMANDS; i++) {
        const struct command *c = &commands[i];

        if (strcmp(c->name, name) != 0)
            continue;
        if (first == NULL)
            first = c;
        if (c->sub == NULL) {
            ctl->cmd = c;
            *used = 1;
            return CTL_EOK;
        }
        if (sub != NULL && strcmp(c->sub, sub) == 0) {
            ctl->cmd = c;
            *used = 2;
            return CTL_EOK;
        }
        if (c->dflt)
            dflt = c;
        snprintf(subs + strlen(subs), sizeof(subs) - strlen(subs), "%s%s", subs[0] ? ", " : "",
                 c->sub);
    }
    if (first == NULL)
        return ctl_usage(NULL, "unknown command '%s'", name);
    if (sub == NULL && dflt != NULL) {
        ctl->cmd = dflt;
        *used = 1;
        return CTL_EOK;
    }
    if (sub == NULL)
        return ctl_usage(NULL, "'%s' needs a subcommand: %s", name, subs);
    return ctl_usage(NULL, "unknown subcommand '%s' of '%s' (%s)", sub, name, subs);
}

/* The words and options against the command's row. */
static int check_command(struct ctl *ctl, const struct parsed *p, int used)
{
    const struct command *c = ctl->cmd;

    for (int o = 0; o < CTL_NOPTS; o++) {
        if (p->opt[o] != NULL && !(((c->opts | CTL_OPT_GLOBAL) >> o) & 1u))
            return ctl_usage(ctl, "option '--%s' does not apply to '%s%s%s'", options[o].name,
                             c->name, c->sub != NULL ? " " : "", c->sub != NULL ? c->sub : "");
        ctl->opt[o] = p->opt[o];
    }
    for (int i = used; i < p->nwords; i++)
        ctl->pos[ctl->npos++] = p->word[i];
    if (ctl->npos < c->nargs_min)
        return ctl_usage(ctl, "missing %s", c->args);
    if (ctl->npos > c->nargs_max)
        return ctl_usage(ctl, "too many arguments, from '%s' on", ctl->pos[c->nargs_max]);
    for (int o = 0; o < CTL_NOPTS; o++) {
        if (((c->required >> o) & 1u) && ctl->opt[o] == NULL)
            return ctl_usage(ctl, "missing --%s %s", options[o].name, options[o].metavar);
    }
    return CTL_EOK;
}

int main(int argc, char **argv)
{
    struct ctl ctl = {0};
    struct parsed p;
    char token[CTL_TOKEN_MAX + 1] = "";
    const char *url;
    long long timeout = CTL_TIMEOUT_S;
    int status, used = 0, have;

    status = parse_argv(argc, argv, &p);
    if (status < 0)
        return CTL_EOK; /* --version */
    if (status != CTL_EOK)
        return status;
    if (p.nwords == 0 || strcmp(p.word[0], "help") == 0) {
        if (p.nwords > 1)
            return help_command(stdout, p.word[1]);
        if (p.nwords == 0 && p.opt[CTL_OPT_HELP] == NULL)
            return ctl_usage(NULL, "no command given");
        help_all(stdout);
        return CTL_EOK;
    }
    status = find_command(&ctl, &p, &used);
    if (status != CTL_EOK)
        return status;
    if (p.opt[CTL_OPT_HELP] != NULL)
        return help_command(stdout, ctl.cmd->name);
    status = check_command(&ctl, &p, used);
    if (status == CTL_EOK)
        status = ctl_opt_int(&ctl, CTL_OPT_TIMEOUT, 1, 86400, &timeout);
    if (status != CTL_EOK)
        return status;
    ctl.json = ctl.opt[CTL_OPT_JSON] != NULL;
    out_init(&ctl.out, stdout);
    have = token_load(ctl.opt[CTL_OPT_TOKEN_FILE], token, sizeof(token));
    if (have < 0)
        return CTL_EUSAGE;
    url = ctl.opt[CTL_OPT_URL];
    if (url == NULL)
        url = getenv("VENDCTL_URL");
    if (url == NULL || url[0] == '\0')
        url = "http://127.0.0.1:3001";
    if (client_init(&ctl.client, url, have > 0 ? token : NULL, (long)timeout) < 0) {
        client_release(&ctl.client);
        memset(token, 0, sizeof(token));
        return CTL_EUSAGE;
    }
    memset(token, 0, sizeof(token));
    status = ctl.cmd->run(&ctl);
    client_release(&ctl.client);
    if (fflush(stdout) != 0 || ferror(stdout))
        return ctl_fail(CTL_ELOCAL, "cannot write the output: %s", strerror(errno));
    return status;
}
