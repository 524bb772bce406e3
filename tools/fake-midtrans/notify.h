/*
 * notify.h - the notifier: sends Midtrans HTTP notifications (webhooks) the
 * way Midtrans's HTTP notification docs describe, from one worker thread.
 *
 * A struct note is one notification, already signed, with the URLs it goes
 * to; the store builds it, notifier_send() takes ownership. Every (copy, URL)
 * pair becomes a job. The worker POSTs jobs in the order they fall due (ties
 * in the order queued), one at a time, so duplicates and deliberately stale
 * notifications arrive in the order they were asked for.
 *
 * Retries follow Midtrans's policy: 2xx and 301/302/303 end a job; 307/308 are followed
 * (same POST body, at most 5 hops); otherwise the answer decides how many
 * retries a job is allowed (500: 1, 503: 4, 400/404: 2, anything else including
 * no answer at all: 5), spaced 2, 10, 30, 90 and 210 "minutes" where a
 * minute is --retry-unit-ms (60000 for real time, a few ms in tests).
 * Midtrans jitters those intervals; the fake does not, so tests are exact.
 *
 * The worker also expires pending transactions whose expiry_time has passed
 * (store_expire_due), as Midtrans's batch expiry does.
 *
 * Every attempt is logged (bounded ring) for GET /_fake/notifications.
 * Thread-safe: any thread may call notifier_send/_log_json/_reset.
 */
#ifndef FAKE_MIDTRANS_NOTIFY_H
#define FAKE_MIDTRANS_NOTIFY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "fake.h"

/* The configured URL (or up to 3 X-Override-Notification URLs) plus up to 3
 * X-Append-Notification URLs. */
#define NOTE_URLS_MAX   (2 * FAKE_URLS_PER_HDR)
#define NOTE_STATUS_MAX 23

struct note {
    char order_id[FAKE_ORDER_ID_MAX + 1];
    char status[NOTE_STATUS_MAX + 1]; /* transaction_status inside body */
    char *body;                       /* signed JSON text, owned (malloc) */
    char urls[NOTE_URLS_MAX][FAKE_URL_MAX + 1];
    size_t nurls;
};

/* Frees n and its body; NULL is fine. */
void note_free(struct note *n);

struct store;
struct notifier;

/* The worker does not run until notifier_start(). Never NULL. */
struct notifier *notifier_new(struct store *store, unsigned retry_unit_ms, unsigned timeout_ms,
                              bool quiet);
/* Starts the worker thread: 0, or VEND_EIO if the thread cannot start. */
int notifier_start(struct notifier *n);
/* Stops the worker (an attempt in flight finishes or times out) and frees
 * everything. NULL is fine. */
void notifier_free(struct notifier *n);

/*
 * Queues note to each of its URLs, copies times (1 = once; more = the
 * duplicates Midtrans sometimes sends). Takes ownership of note even on
 * failure. Returns the number of jobs queued; a note without URLs is logged
 * as skipped and queues nothing; a full queue drops the rest, logged.
 */
size_t notifier_send(struct notifier *n, struct note *note, unsigned copies);

/* The attempt log, oldest first, entries with seq > since: a new reference
 * {"notifications":[...], "queued":N, "dropped":N}. */
json_t *notifier_log_json(struct notifier *n, uint64_t since);

/* Drops every queued job and the log. An attempt in flight still completes
 * but is not retried. */
void notifier_reset(struct notifier *n);

#endif
