/*
 * json.h - strict JSON lexical layer under the codec (internal to proto/).
 *
 * jsmn tokenizes but accepts much that is not JSON (missing commas, bare
 * words, bad escapes, raw control bytes, invalid UTF-8). json_validate() is a
 * full RFC 8259 recognizer run first, so jsmn only ever sees valid JSON and
 * the codec can trust the token text it reads with the helpers below.
 * Everything works on (pointer, length) slices; nothing needs a NUL.
 */
#ifndef VEND_JSON_H
#define VEND_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Checks that s[0..len) is one JSON object, at most max_depth containers
 * deep, followed only by whitespace. Returns VEND_OK, VEND_ESYNTAX (also for a
 * top-level value that is not an object), VEND_EDEPTH or VEND_ETRAILING.
 */
int json_validate(const char *s, size_t len, int max_depth);

/*
 * The helpers below take the raw content of a string that json_validate()
 * accepted (between the quotes, escapes still in place).
 */

/* Unescapes raw into out (cap bytes plus a NUL). VEND_ERANGE if it does not fit. */
int json_str_decode(const char *raw, size_t rawlen, char *out, size_t cap, size_t *outlen);

/* True if the unescaped contents of a and b are equal. */
bool json_str_eq(const char *a, size_t alen, const char *b, size_t blen);

/* True if the unescaped raw equals the NUL-terminated lit. */
bool json_str_eq_lit(const char *raw, size_t rawlen, const char *lit);

/*
 * Parses a valid JSON number as an integer. VEND_ETYPE if it has a fraction
 * or exponent or is "-0"; VEND_ERANGE if its magnitude exceeds 10^15.
 */
int json_int_parse(const char *s, size_t len, int64_t *out);

/*
 * Parses any valid JSON number to hundredths, rounding half away from zero,
 * with integer arithmetic only (same result on every platform). VEND_ERANGE
 * if the magnitude is 1000 or more.
 */
int json_centi_parse(const char *s, size_t len, int32_t *out);

#endif
