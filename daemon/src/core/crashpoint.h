/*
 * crashpoint.h - deterministic crash points for the crash tests (docs/internals/crashpoints.md,
 * tests/integration/it_crash_matrix.c): VENDD_CRASH_AT=name[:nth], read once at start, makes vendd
 * raise SIGKILL on itself the nth time (default 1) it passes the named point, so that a test
 * can stop it between two durable effects of an order and check what a restart makes of it.
 *
 * Compiled in only with the CMake option VEND_CRASH_POINTS, which the Makefile's test trees
 * (release, asan) turn on and `make install` (its own tree) leaves off. A compile-time switch
 * rather than an always-present hook that only the environment arms: vendd's environment is
 * the operator's, not an attacker's, so the hook would be no real risk, but a production
 * binary that holds no way to kill itself needs no argument at all. Without the option
 * crashpoint() is an empty inline and a VENDD_CRASH_AT in the environment is refused at start,
 * so a test never passes by crashing nowhere.
 */
#ifndef VENDD_CRASHPOINT_H
#define VENDD_CRASHPOINT_H

#include <stdbool.h>
#include <stddef.h>

/* X(id, name): each point sits between two durable effects of an order, or (the last) in the
 * middle of a telemetry batch that a failed message makes vendd apply again. */
#define CRASHPOINTS(X)                                                                             \
    X(CRASH_PAYMENT_RECEIVED, "payment_received")   /* "paid" verified, not applied */             \
    X(CRASH_PAYMENT_COMMITTED, "payment_committed") /* PAID + first unit SENT, not published */    \
    X(CRASH_TRIGGER_COMMITTED,                                                                     \
      "trigger_committed") /* a trigger's SENT committed, not published */                         \
    X(CRASH_COMMAND_PUBLISHED, "command_published") /* a command handed to the broker */           \
    X(CRASH_RESULT_RECEIVED, "result_received")     /* a result PUBACKed, not yet applied */       \
    X(CRASH_RESULT_COMMITTED, "result_committed")   /* a result and the next SENT committed */     \
    X(CRASH_UNIT_EXPIRED, "unit_expired")           /* a unit failed by its deadline, committed */ \
    X(CRASH_UNIT_UNSETTLED, "unit_unsettled")       /* UNSETTLED committed, the ask not sent */    \
    X(CRASH_REFUND_COMMITTED, "refund_committed")   /* a refund SENT, Midtrans not yet called */   \
    X(CRASH_REFUND_ANSWERED, "refund_answered")     /* Midtrans answered, the answer not stored */ \
    X(CRASH_INGEST_REPLAYED, "ingest_replayed")     /* a batch applied again, not committed */

#define CRASHPOINT_ENUM(id, name) id,
enum crashpoint_id { CRASHPOINTS(CRASHPOINT_ENUM) CRASHPOINT_COUNT };
#undef CRASHPOINT_ENUM

#define CRASHPOINT_ENV "VENDD_CRASH_AT"

struct crashpoint {
    bool armed; /* false (as zeroed): no crash point */
    int id;     /* the armed point */
    long nth;   /* crash at this passage (1-based) */
    long hits;  /* passages so far */
};

/*
 * Read spec ("name" or "name:nth", nth 1..1000000; NULL or "": nothing armed) into cp.
 * Returns 0, or -1 with why (size bytes) naming what is wrong: an unknown point, a bad nth,
 * or a build without crash points.
 */
int crashpoint_init(struct crashpoint *cp, const char *spec, char *why, size_t size);

/* The point's name ("?" for an unknown id). */
const char *crashpoint_name(int id);

#ifdef VEND_CRASH_POINTS
/* vendd passes point id: the armed one's nth passage kills the process (SIGKILL). */
void crashpoint(struct crashpoint *cp, enum crashpoint_id id);
#else
static inline void crashpoint(struct crashpoint *cp, enum crashpoint_id id)
{
    (void)cp;
    (void)id;
}
#endif

#endif
