/*
 * notify.c - the notifier: one worker thread POSTs signed notifications with
 * libcurl and retries them on Midtrans's schedule (see notify.h).
 *
 * One thread, one delivery at a time: Midtrans surely delivers in parallel,
 * but serial delivery makes the order a test observes the order it asked
 * for, which is what duplicate and out-of-order tests need.
 */
#include "notify.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

#include "store.h"
#include "vend/err.h"
#include "xmalloc.h"

#define QUEUE_MAX      4096 /* jobs waiting; more are dropped (logged) */
#define LOG_MAX        1000 /* attempts kept for GET /_fake/notifications */
#define REDIRECTS_MAX  5    /* 307/308 hops per attempt (Midtrans) */
#define EXPIRY_SCAN_MS 100  /* how often pending transactions are checked for expiry */
#define EXPIRY_BATCH   64
#define ERR_MAX        128
#define ANSWER_MAX     4096 /* bytes of the receiver's answer we keep */

/* Minutes after each failed attempt before the next (Midtrans's retry policy). */
static const unsigned s_schedule_min[] = {2, 10, 30, 90, 210};
#define MAX_RETRIES (sizeof(s_schedule_min) / sizeof(s_schedule_min[0]))

struct job {
    uint64_t id;
    uint64_t due_ms;
    unsigned attempt; /* 0 = first delivery */
    unsigned copy;    /* 0-based duplicate index */
    char url[FAKE_URL_MAX + 1];
    char order_id[FAKE_ORDER_ID_MAX + 1];
    char status[NOTE_STATUS_MAX + 1];
    char *body;
};

struct attempt {
    uint64_t seq;
    json_t *entry;
};

struct notifier {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t thread;
    bool started, stop;
    struct store *store;
    unsigned retry_unit_ms, timeout_ms;
    bool quiet;
    struct job *jobs[QUEUE_MAX];
    size_t njobs;
    uint64_t next_job_id;
    uint64_t generation; /* bumped by reset: an attempt in flight is not retried */
    struct attempt log[LOG_MAX];
    uint64_t log_seq;
    uint64_t dropped;
    uint64_t t0_ms;
    CURL *curl; /* worker thread only */
};

static uint64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void note_free(struct note *n)
{
    if (n == NULL)
        return;
    free(n->body);
    free(n);
}

static void job_free(struct job *j)
{
    if (j == NULL)
        return;
    free(j->body);
    free(j);
}

/* How many retries an answer earns (Midtrans's retry policy); -1 = follow the redirect. */
static int retries_for(long code)
{
    if (code >= 200 && code < 300)
        return 0;
    switch (code) {
    case 301:
    case 302:
    case 303:
        return 0;
    case 307:
    case 308:
        return -1;
    case 500:
        return 1;
    case 503:
        return 4;
    case 400:
    case 404:
        return 2;
    default:
        return (int)MAX_RETRIES; /* other codes, timeouts, refused connections */
    }
}

/* Appends one attempt to the log ring. Called with mu held. */
static void log_attempt(struct notifier *n, const struct job *j, long code, const char *err,
                        const char *answer, bool final, uint64_t next_ms)
{
    struct attempt *slot;
    json_t *o, *body;

    body = j->body ? json_loads(j->body, 0, NULL) : NULL;
    o = json_pack("{s:I,s:I,s:s,s:s,s:s,s:i,s:i,s:I}", "job", (json_int_t)j->id, "copy",
                  (json_int_t)j->copy, "order_id", j->order_id, "transaction_status", j->status,
                  "url", j->url, "attempt", (int)j->attempt, "http_status", (int)code, "at_ms",
                  (json_int_t)(now_ms() - n->t0_ms));
    json_object_set_new(o, "error", err ? json_string(err) : json_null());
    json_object_set_new(o, "answer", answer ? json_string(answer) : json_null());
    json_object_set_new(o, "final", json_boolean(final));
    json_object_set_new(o, "next_retry_in_ms",
                        final ? json_null() : json_integer((json_int_t)next_ms));
    json_object_set_new(o, "body", body ? body : json_null());
    n->log_seq++;
    json_object_set_new(o, "seq", json_integer((json_int_t)n->log_seq));
    slot = &n->log[n->log_seq % LOG_MAX];
    json_decref(slot->entry);
    slot->entry = o;
    slot->seq = n->log_seq;
}

struct answer {
    char buf[ANSWER_MAX + 1];
    size_t len;
};

static size_t on_answer(char *data, size_t size, size_t nmemb, void *arg)
{
    struct answer *a = arg;
    size_t len = size * nmemb, room = ANSWER_MAX - a->len;

    if (len < room)
        room = len;
    memcpy(a->buf + a->len, data, room);
    a->len += room;
    a->buf[a->len] = '\0';
    return len; /* the rest is read and dropped */
}

/*
 * One delivery attempt, following 307/308 (POST, same body). Returns the
 * final HTTP status, 0 when there was none; err gets curl's message.
 */
static long deliver(struct notifier *n, const struct job *j, char err[ERR_MAX], struct answer *ans)
{
    char url[FAKE_URL_MAX + 1];
    struct curl_slist *hdr = NULL;
    long code = 0;
    int hop;

    err[0] = '\0';
    snprintf(url, sizeof(url), "%s", j->url);
    /* Midtrans's sample notifications carry these three headers. */
    hdr = curl_slist_append(hdr, "Content-Type: application/json");
    hdr = curl_slist_append(hdr, "Accept: application/json");
    hdr = curl_slist_append(hdr, "User-Agent: Veritrans");
    for (hop = 0; hop <= REDIRECTS_MAX; hop++) {
        char *loc = NULL;
        CURLcode rc;

        curl_easy_reset(n->curl);
        ans->len = 0;
        ans->buf[0] = '\0';
        curl_easy_setopt(n->curl, CURLOPT_URL, url);
        curl_easy_setopt(n->curl, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(n->curl, CURLOPT_HTTPHEADER, hdr);
        curl_easy_setopt(n->curl, CURLOPT_POSTFIELDS, j->body);
        curl_easy_setopt(n->curl, CURLOPT_POSTFIELDSIZE, (long)strlen(j->body));
        curl_easy_setopt(n->curl, CURLOPT_TIMEOUT_MS, (long)n->timeout_ms);
        curl_easy_setopt(n->curl, CURLOPT_FOLLOWLOCATION, 0L);
        curl_easy_setopt(n->curl, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(n->curl, CURLOPT_WRITEFUNCTION, on_answer);
        curl_easy_setopt(n->curl, CURLOPT_WRITEDATA, ans);
        rc = curl_easy_perform(n->curl);
        if (rc != CURLE_OK) {
            snprintf(err, ERR_MAX, "%s", curl_easy_strerror(rc));
            code = 0;
            break;
        }
        curl_easy_getinfo(n->curl, CURLINFO_RESPONSE_CODE, &code);
        if (retries_for(code) != -1)
            break;
        curl_easy_getinfo(n->curl, CURLINFO_REDIRECT_URL, &loc);
        if (loc == NULL || strlen(loc) > FAKE_URL_MAX) {
            snprintf(err, ERR_MAX, "redirect %ld without a usable Location", code);
            break;
        }
        snprintf(url, sizeof(url), "%s", loc);
        if (hop == REDIRECTS_MAX)
            snprintf(err, ERR_MAX, "more than %d redirects", REDIRECTS_MAX);
    }
    curl_slist_free_all(hdr);
    return code;
}

/* Queues j. Called with mu held; frees j if the queue is full. */
static bool push(struct notifier *n, struct job *j)
{
    if (n->njobs == QUEUE_MAX) {
        log_attempt(n, j, 0, "dropped: notification queue full", NULL, true, 0);
        n->dropped++;
        job_free(j);
        return false;
    }
    n->jobs[n->njobs++] = j;
    pthread_cond_signal(&n->cv);
    return true;
}

/* The job that falls due first (ties: queued first), or -1. mu held. */
static long earliest(const struct notifier *n)
{
    long best = -1;
    size_t i;

    for (i = 0; i < n->njobs; i++) {
        const struct job *j = n->jobs[i], *b = best < 0 ? NULL : n->jobs[best];

        if (b == NULL || j->due_ms < b->due_ms || (j->due_ms == b->due_ms && j->id < b->id))
            best = (long)i;
    }
    return best;
}

static void run_one(struct notifier *n, struct job *j)
{
    struct answer *ans = xmalloc(sizeof(*ans));
    char err[ERR_MAX];
    uint64_t gen, delay = 0;
    long code;
    int allowed;
    bool final;

    pthread_mutex_lock(&n->mu);
    gen = n->generation;
    pthread_mutex_unlock(&n->mu);

    code = deliver(n, j, err, ans);
    allowed = retries_for(code);
    if (allowed < 0) /* a redirect loop ends as a failure */
        allowed = (int)MAX_RETRIES;
    final = j->attempt >= (unsigned)allowed;
    if (!final)
        delay = (uint64_t)s_schedule_min[j->attempt] * n->retry_unit_ms;
    if (!n->quiet)
        fprintf(stderr, "fake-midtrans: notify '%s' %s -> %s: %ld%s%s\n", j->order_id, j->status,
                j->url, code, err[0] ? " " : "", err);

    pthread_mutex_lock(&n->mu);
    if (gen != n->generation) {
        /* POST /_fake/reset ran meanwhile: the job belongs to the old run. */
        job_free(j);
    } else if (final) {
        log_attempt(n, j, code, err[0] ? err : NULL, ans->len ? ans->buf : NULL, true, 0);
        job_free(j);
    } else {
        log_attempt(n, j, code, err[0] ? err : NULL, ans->len ? ans->buf : NULL, false, delay);
        j->attempt++;
        j->due_ms = now_ms() + delay;
        push(n, j);
    }
    pthread_mutex_unlock(&n->mu);
    free(ans);
}

static void scan_expiry(struct notifier *n)
{
    struct note *notes[EXPIRY_BATCH];
    size_t i, count;

    count = store_expire_due(n->store, time(NULL), notes, EXPIRY_BATCH);
    for (i = 0; i < count; i++)
        notifier_send(n, notes[i], 1);
}

static void *worker(void *arg)
{
    struct notifier *n = arg;
    uint64_t next_scan = 0;

    pthread_mutex_lock(&n->mu);
    while (!n->stop) {
        uint64_t now = now_ms(), wake;
        long i;

        if (now >= next_scan) {
            pthread_mutex_unlock(&n->mu);
            scan_expiry(n);
            pthread_mutex_lock(&n->mu);
            next_scan = now + EXPIRY_SCAN_MS;
            continue;
        }
        i = earliest(n);
        if (i >= 0 && n->jobs[i]->due_ms <= now) {
            struct job *j = n->jobs[i];

            n->jobs[i] = n->jobs[--n->njobs];
            pthread_mutex_unlock(&n->mu);
            run_one(n, j);
            pthread_mutex_lock(&n->mu);
            continue;
        }
        wake = next_scan;
        if (i >= 0 && n->jobs[i]->due_ms < wake)
            wake = n->jobs[i]->due_ms;
        {
            struct timespec ts = {.tv_sec = (time_t)(wake / 1000),
                                  .tv_nsec = (long)(wake % 1000) * 1000000L};

            pthread_cond_timedwait(&n->cv, &n->mu, &ts);
        }
    }
    pthread_mutex_unlock(&n->mu);
    return NULL;
}

struct notifier *notifier_new(struct store *store, unsigned retry_unit_ms, unsigned timeout_ms,
                              bool quiet)
{
    struct notifier *n = xcalloc(1, sizeof(*n));
    pthread_condattr_t ca;

    pthread_mutex_init(&n->mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&n->cv, &ca);
    pthread_condattr_destroy(&ca);
    n->store = store;
    n->retry_unit_ms = retry_unit_ms;
    n->timeout_ms = timeout_ms;
    n->quiet = quiet;
    n->t0_ms = now_ms();
    return n;
}

int notifier_start(struct notifier *n)
{
    n->curl = curl_easy_init();
    if (n->curl == NULL)
        return VEND_EIO;
    if (pthread_create(&n->thread, NULL, worker, n) != 0)
        return VEND_EIO;
    n->started = true;
    return 0;
}

static void clear_locked(struct notifier *n)
{
    size_t i;

    for (i = 0; i < n->njobs; i++)
        job_free(n->jobs[i]);
    n->njobs = 0;
    for (i = 0; i < LOG_MAX; i++) {
        json_decref(n->log[i].entry);
        n->log[i].entry = NULL;
        n->log[i].seq = 0;
    }
    n->dropped = 0;
}

void notifier_free(struct notifier *n)
{
    if (n == NULL)
        return;
    if (n->started) {
        pthread_mutex_lock(&n->mu);
        n->stop = true;
        pthread_cond_signal(&n->cv);
        pthread_mutex_unlock(&n->mu);
        pthread_join(n->thread, NULL);
    }
    clear_locked(n);
    if (n->curl != NULL)
        curl_easy_cleanup(n->curl);
    pthread_cond_destroy(&n->cv);
    pthread_mutex_destroy(&n->mu);
    free(n);
}

size_t notifier_send(struct notifier *n, struct note *note, unsigned copies)
{
    size_t queued = 0, u;
    unsigned c;

    if (note == NULL)
        return 0;
    pthread_mutex_lock(&n->mu);
    if (note->nurls == 0) {
        struct job skipped = {.id = ++n->next_job_id};

        snprintf(skipped.order_id, sizeof(skipped.order_id), "%s", note->order_id);
        snprintf(skipped.status, sizeof(skipped.status), "%s", note->status);
        skipped.body = note->body;
        log_attempt(n, &skipped, 0, "skipped: no notification URL", NULL, true, 0);
    }
    for (c = 0; c < copies; c++) {
        for (u = 0; u < note->nurls; u++) {
            struct job *j = xcalloc(1, sizeof(*j));

            j->id = ++n->next_job_id;
            j->copy = c;
            j->due_ms = now_ms();
            snprintf(j->url, sizeof(j->url), "%s", note->urls[u]);
            snprintf(j->order_id, sizeof(j->order_id), "%s", note->order_id);
            snprintf(j->status, sizeof(j->status), "%s", note->status);
            j->body = xstrdup(note->body);
            if (push(n, j))
                queued++;
        }
    }
    pthread_mutex_unlock(&n->mu);
    note_free(note);
    return queued;
}

json_t *notifier_log_json(struct notifier *n, uint64_t since)
{
    json_t *a = json_array(), *o;
    uint64_t first, seq;

    pthread_mutex_lock(&n->mu);
    first = n->log_seq > LOG_MAX ? n->log_seq - LOG_MAX + 1 : 1;
    if (first <= since)
        first = since + 1;
    for (seq = first; seq <= n->log_seq; seq++) {
        struct attempt *slot = &n->log[seq % LOG_MAX];

        if (slot->seq == seq && slot->entry != NULL)
            json_array_append_new(a, json_deep_copy(slot->entry));
    }
    o = json_pack("{s:o,s:I,s:I,s:I}", "notifications", a, "last_seq", (json_int_t)n->log_seq,
                  "queued", (json_int_t)n->njobs, "dropped", (json_int_t)n->dropped);
    pthread_mutex_unlock(&n->mu);
    return o;
}

void notifier_reset(struct notifier *n)
{
    pthread_mutex_lock(&n->mu);
    clear_locked(n);
    n->generation++;
    pthread_mutex_unlock(&n->mu);
}
