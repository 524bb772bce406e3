/*
 * err.h - the one error enum of the project.
 *
 * Every function that can fail returns int: 0 (VEND_OK) or a negative
 * VEND_E* value. Shared by the wire codec, the firmware core and the daemon,
 * so the codes are generic; the detail (which field, which variable, which
 * row) travels separately, e.g. in struct vend_diag.
 *
 * No OS headers: this file is compiled freestanding for the ESP32.
 */
#ifndef VEND_ERR_H
#define VEND_ERR_H

/* X(name, value, message) */
#define VEND_ERR_MAP(X)                                                                            \
    X(OK, 0, "success")                                                                            \
    X(INVAL, -1, "invalid argument")                                                               \
    X(NOMEM, -2, "out of memory")                                                                  \
    X(TOOBIG, -3, "input too large")                                                               \
    X(SYNTAX, -4, "malformed JSON")                                                                \
    X(TYPE, -5, "wrong type")                                                                      \
    X(RANGE, -6, "value out of range")                                                             \
    X(MISSING, -7, "required field missing")                                                       \
    X(DUPKEY, -8, "duplicate key")                                                                 \
    X(ENUM, -9, "unknown enum value")                                                              \
    X(NOSPACE, -10, "output buffer too small")                                                     \
    X(TOPIC, -11, "malformed topic")                                                               \
    X(DEPTH, -12, "nesting too deep")                                                              \
    X(TRAILING, -13, "trailing data after JSON value")                                             \
    X(IO, -14, "input/output error")                                                               \
    X(CONF, -15, "bad configuration")                                                              \
    X(DB, -16, "database error")                                                                   \
    X(CORRUPT, -17, "database file is corrupt or not a database")                                  \
    X(SCHEMA, -18, "database schema is newer than this build")                                     \
    X(NOTFOUND, -19, "not found")                                                                  \
    X(STATE, -20, "wrong state")                                                                   \
    X(CONFLICT, -21, "conflict with existing data")                                                \
    X(CONSTRAINT, -22, "constraint violated")                                                      \
    X(UNAVAILABLE, -23, "service unavailable")                                                     \
    X(AUTH, -24, "not authorized")                                                                 \
    X(BUSY, -25, "busy")                                                                           \
    X(INTERNAL, -26, "internal error")                                                             \
    X(TIMEDOUT, -27, "timed out")                                                                  \
    X(LIMIT, -28, "limit reached")

enum vend_err {
#define VEND_ERR_ENUM(name, value, msg) VEND_E##name = value,
    VEND_ERR_MAP(VEND_ERR_ENUM)
#undef VEND_ERR_ENUM
};

#define VEND_OK VEND_EOK

/* Returns a static, human-readable text for err; never NULL. */
const char *vend_strerror(int err);

/* Returns the symbolic name ("TOOBIG") for err; never NULL. */
const char *vend_errname(int err);

#endif
