/*
 * codec.h - strict JSON decoders and encoders for the five MQTT payloads.
 *
 * The command payload carries two commands (docs/PROTOCOL.md): "dispense" (cmd, slot,
 * orderId, timeoutMs required; unit, expiresAt optional) and "settle" (cmd, slot, orderId
 * required; unit optional; timeoutMs and expiresAt are not read, like any unknown key).
 *
 * Decoding: vend_decode_<kind>(json, len, out, diag)
 *   - reads exactly len bytes; no NUL terminator needed, never reads past len;
 *   - never allocates; uses about 6 KiB of stack (a fixed array of
 *     VEND_JSON_TOKENS_MAX jsmn tokens), so size firmware task stacks for it;
 *   - returns VEND_OK and fills *out completely (zeroing what was absent), or a
 *     negative VEND_E* code. On error *out may be partially written: callers
 *     must not use it.
 *   - diag may be NULL. Otherwise diag->err is the return value and
 *     diag->field names the offending field ("timeoutMs", "slots[2].level",
 *     "x.y" for a duplicate key inside an unknown object) or "(root)" for
 *     errors about the payload as a whole. Empty string on success.
 *
 * Errors, checked in this order:
 *   VEND_ETOOBIG   len > VEND_PAYLOAD_MAX, or more than VEND_JSON_TOKENS_MAX tokens
 *   VEND_ESYNTAX   not JSON per RFC 8259 (incl. NaN, Infinity, leading zeros,
 *                  control characters or invalid UTF-8 in strings, lone
 *                  surrogates), or the top-level value is not an object
 *   VEND_EDEPTH    more than VEND_JSON_DEPTH_MAX nested objects/arrays
 *   VEND_ETRAILING anything but whitespace after the top-level object
 *   VEND_EDUPKEY   the same key twice in one object, at any depth (keys are
 *                  compared after unescaping); also a repeated slot id
 *   then per field, in the order of the wire format:
 *   VEND_EMISSING  a required field is absent
 *   VEND_ETYPE     wrong JSON type, or not an integer where one is expected
 *                  (1.5, 1.0, 1e3, -0); null counts as a wrong type except
 *                  for the result's "error"
 *   VEND_ERANGE    number out of bounds, string too long or outside its
 *                  character set, timestamp not RFC 3339 UTC
 *   VEND_EENUM     unknown "cmd", "level", "door" or "status" value
 * Unknown keys are allowed and ignored (but must be well-formed JSON).
 *
 * Encoding: vend_encode_<kind>(buf, size, in)
 *   - writes compact JSON with the keys in the integration guide's order and a
 *     NUL; returns the length without the NUL;
 *   - VEND_EINVAL if *in would not decode (out of bounds, bad strings, bad
 *     enum); VEND_ENOSPACE if size is too small (VEND_PAYLOAD_MAX + 1 always
 *     suffices). On error buf holds no valid payload.
 *   - optional fields are written only when present ("unit" and "expiresAt"
 *     when != 0, "durationMs" when has_duration, "settle" when has_settle,
 *     ...); a settle never carries "timeoutMs"; the result's "error" is always
 *     written, as null when !has_error. Temperature is written with at most
 *     two decimals.
 * decode(encode(x)) == x for every x that encodes.
 */
#ifndef VEND_CODEC_H
#define VEND_CODEC_H

#include <stddef.h>

#include "vend/err.h"
#include "vend/msg.h"

#define VEND_JSON_TOKENS_MAX 384 /* a full 64-slot telemetry needs 329 */
#define VEND_JSON_DEPTH_MAX  8   /* the top-level object is depth 1 */

struct vend_diag {
    int err;        /* same as the return value */
    char field[48]; /* NUL-terminated, truncated if longer */
};

int vend_decode_command(const char *json, size_t len, struct vend_command *out,
                        struct vend_diag *diag);
int vend_decode_dispense_result(const char *json, size_t len, struct vend_dispense_result *out,
                                struct vend_diag *diag);
int vend_decode_telemetry(const char *json, size_t len, struct vend_telemetry *out,
                          struct vend_diag *diag);
int vend_decode_status(const char *json, size_t len, struct vend_status *out,
                       struct vend_diag *diag);
int vend_decode_config(const char *json, size_t len, struct vend_config *out,
                       struct vend_diag *diag);

int vend_encode_command(char *buf, size_t size, const struct vend_command *in);
int vend_encode_dispense_result(char *buf, size_t size, const struct vend_dispense_result *in);
int vend_encode_telemetry(char *buf, size_t size, const struct vend_telemetry *in);
int vend_encode_status(char *buf, size_t size, const struct vend_status *in);
int vend_encode_config(char *buf, size_t size, const struct vend_config *in);

#endif
