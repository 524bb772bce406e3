/*
 * main.c - fake-midtrans: a fake Midtrans (Snap, Core API QRIS, status,
 * expire, cancel, refund, signed notifications) on 127.0.0.1 for vendd's
 * tests and `make run`. Usage and the control API: README.md next to this
 * file.
 *
 * The first line on stdout is "fake-midtrans listening on 127.0.0.1:PORT",
 * flushed before any request is served, so a test that starts us with
 * --port 0 can read the port. SIGINT/SIGTERM stop us cleanly.
 */
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "fake.h"
#include "http.h"
#include "notify.h"
#include "store.h"
#include "xmalloc.h"

/* Shaped like a sandbox key (SB-Mid-server-...) so nobody mistakes it for a real one. */
#define DEFAULT_SERVER_KEY "SB-Mid-server-FAKE0midtrans0test0key"
#define DEFAULT_MERCHANT   "G000000001"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: fake-midtrans [--port N] [--server-key KEY] [--notify-url URL]\n"
            "                     [--retry-unit-ms N] [--notify-timeout-ms N]\n"
            "                     [--max-transactions N] [--merchant-id ID] [--quiet]\n"
            "  --port N              listen on 127.0.0.1:N; 0 (default) picks a free port\n"
            "  --server-key KEY      Basic-auth user and signature key (default %s)\n"
            "  --notify-url URL      where notifications go (default: none)\n"
            "  --retry-unit-ms N     one minute of the retry schedule (default 60000)\n"
            "  --notify-timeout-ms N how long a notification may take (default 15000)\n"
            "  --max-transactions N  transactions kept (default %d)\n"
            "  --quiet               no log line per request on stderr\n",
            DEFAULT_SERVER_KEY, FAKE_MAX_TX_DEFAULT);
}

static int parse_ulong(const char *s, unsigned long lo, unsigned long hi, unsigned long *out)
{
    char *end;
    unsigned long v;

    if (s[0] < '0' || s[0] > '9')
        return -1;
    v = strtoul(s, &end, 10);
    if (*end != '\0' || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

static int parse_args(int argc, char **argv, struct fake_conf *c)
{
    static const struct option opts[] = {
        {"port", required_argument, NULL, 'p'},
        {"server-key", required_argument, NULL, 'k'},
        {"notify-url", required_argument, NULL, 'n'},
        {"retry-unit-ms", required_argument, NULL, 'r'},
        {"notify-timeout-ms", required_argument, NULL, 't'},
        {"max-transactions", required_argument, NULL, 'm'},
        {"merchant-id", required_argument, NULL, 'i'},
        {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    unsigned long v;
    int ch, idx = 0;

    while ((ch = getopt_long(argc, argv, "", opts, &idx)) != -1) {
        switch (ch) {
        case 'p':
            if (parse_ulong(optarg, 0, 65535, &v) < 0)
                goto bad;
            c->port = (uint16_t)v;
            break;
        case 'k':
            if (optarg[0] == '\0' || strlen(optarg) > FAKE_KEY_MAX || strchr(optarg, ':'))
                goto bad;
            snprintf(c->server_key, sizeof(c->server_key), "%s", optarg);
            break;
        case 'n':
            if (strlen(optarg) > FAKE_URL_MAX ||
                (strncmp(optarg, "http://", 7) != 0 && strncmp(optarg, "https://", 8) != 0))
                goto bad;
            snprintf(c->notify_url, sizeof(c->notify_url), "%s", optarg);
            break;
        case 'r':
            if (parse_ulong(optarg, 1, 3600000, &v) < 0)
                goto bad;
            c->retry_unit_ms = (unsigned)v;
            break;
        case 't':
            if (parse_ulong(optarg, 1, 600000, &v) < 0)
                goto bad;
            c->notify_timeout_ms = (unsigned)v;
            break;
        case 'm':
            if (parse_ulong(optarg, 1, 1000000, &v) < 0)
                goto bad;
            c->max_transactions = (size_t)v;
            break;
        case 'i':
            if (optarg[0] == '\0' || strlen(optarg) >= sizeof(c->merchant_id))
                goto bad;
            snprintf(c->merchant_id, sizeof(c->merchant_id), "%s", optarg);
            break;
        case 'q':
            c->quiet = true;
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            return -1;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return -1;
    }
    return 0;
bad:
    fprintf(stderr,
            "fake-midtrans: bad value '%s' for --%s (see --help; a server key has no ':', a "
            "URL is http(s))\n",
            optarg, opts[idx].name);
    return -1;
}

int main(int argc, char **argv)
{
    struct fake f;
    sigset_t sigs;
    int fd, sig, rc = 1;

    memset(&f, 0, sizeof(f));
    snprintf(f.conf.server_key, sizeof(f.conf.server_key), "%s", DEFAULT_SERVER_KEY);
    snprintf(f.conf.merchant_id, sizeof(f.conf.merchant_id), "%s", DEFAULT_MERCHANT);
    f.conf.retry_unit_ms = 60000;
    f.conf.notify_timeout_ms = 15000;
    f.conf.max_transactions = FAKE_MAX_TX_DEFAULT;
    if (parse_args(argc, argv, &f.conf) < 0)
        return 64; /* EX_USAGE */

    /* Signals are taken by sigwait() below; every thread started from here
     * on inherits the mask, so none of them is interrupted by one. */
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
    json_set_alloc_funcs(xmalloc, free);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "fake-midtrans: cannot initialise libcurl\n");
        return 1;
    }

    fd = http_listen(f.conf.port, &f.port);
    if (fd < 0)
        goto out;
    snprintf(f.base, sizeof(f.base), "http://127.0.0.1:%u", (unsigned)f.port);
    f.store = store_new(&f.conf, f.base);
    f.notifier =
        notifier_new(f.store, f.conf.retry_unit_ms, f.conf.notify_timeout_ms, f.conf.quiet);
    if (notifier_start(f.notifier) < 0) {
        fprintf(stderr, "fake-midtrans: cannot start the notifier\n");
        close(fd);
        goto out;
    }
    f.http = http_start(&f, fd);
    if (f.http == NULL)
        goto out;

    printf("fake-midtrans listening on 127.0.0.1:%u\n", (unsigned)f.port);
    if (strcmp(f.conf.server_key, DEFAULT_SERVER_KEY) == 0)
        printf("server key: %s (the default test key)\n", DEFAULT_SERVER_KEY);
    else
        printf("server key: from --server-key\n");
    printf("notify url: %s\n", f.conf.notify_url[0] ? f.conf.notify_url : "(none)");
    fflush(stdout);

    if (sigwait(&sigs, &sig) != 0)
        goto out;
    rc = 0;
out:
    /* Held answers wake up first, so the connection threads can end. */
    if (f.store != NULL)
        store_stop(f.store);
    http_stop(f.http);
    notifier_free(f.notifier);
    store_free(f.store);
    curl_global_cleanup();
    return rc;
}
