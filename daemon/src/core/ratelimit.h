/*
 * ratelimit.h - requests per client address, for the endpoints anyone may call (a customer's
 * order). A token bucket per address: `per_minute` tokens a minute, as many in a burst. The
 * table has a fixed number of entries, so a flood of addresses cannot grow vendd's memory:
 * when it is full, the entry idle longest makes room (a forgotten address starts afresh,
 * which errs on the customer's side).
 */
#ifndef VENDD_RATELIMIT_H
#define VENDD_RATELIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ratelimit;

/* Addresses tracked at once. */
#define RATELIMIT_ENTRIES 4096

/* per_minute >= 1. Returns the limiter (xmalloc; never NULL). */
struct ratelimit *ratelimit_new(unsigned per_minute);
void ratelimit_free(struct ratelimit *rl);

/* Take one token for addr (a numeric address, <= 45 bytes) at now_ms (monotonic). True when
 * the request may go ahead; false when addr is over its rate. */
bool ratelimit_take(struct ratelimit *rl, const char *addr, int64_t now_ms);

/* Whether addr has a token at now_ms, taking none: for a limit on failures, checked before
 * the attempt and taken only when it fails. */
bool ratelimit_allows(struct ratelimit *rl, const char *addr, int64_t now_ms);

#endif
