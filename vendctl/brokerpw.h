/*
 * brokerpw.h - a machine's broker credentials: a random password, and its entry in
 * mosquitto's password file (password_file, deploy/mosquitto/prod.conf) written, replaced or
 * removed in place of mosquitto_passwd, so that `vendctl machines add` issues what the
 * machine needs in one step.
 *
 * The entry is mosquitto 2.0's own format, what `mosquitto_passwd -b` writes and 2.0.11
 * reads: "user:$7$101$SALT$HASH", HASH = PBKDF2-HMAC-SHA512(password, SALT, 101 iterations,
 * 64 bytes), SALT 12 random bytes, both standard base64 with padding.
 *
 * The file is rewritten whole, never edited in place: the other lines are kept as they were,
 * the result goes to a temporary file in the same directory (mode 0640, the old file's owner
 * and group) that is renamed over the old one, so the broker, reloading on SIGHUP, reads
 * either the old file or the new one. Two vendctl runs exclude each other with a lock on the
 * directory. Every function returns an exit status (enum ctl_exit), the detail on stderr.
 */
#ifndef VENDCTL_BROKERPW_H
#define VENDCTL_BROKERPW_H

#include <stdbool.h>
#include <stddef.h>

#define BROKERPW_RANDOM_BYTES 24         /* of a password: 192 bits */
#define BROKERPW_PASSWORD_LEN 32         /* its base64url text */
#define BROKERPW_SALT_BYTES   12         /* mosquitto 2.0's SALT_LEN */
#define BROKERPW_ITERATIONS   101        /* mosquitto 2.0's PW_DEFAULT_ITERATIONS */
#define BROKERPW_HASH_MAX     128        /* "$7$101$" + 16 + "$" + 88 and the NUL */
#define BROKERPW_FILE_MAX     (8u << 20) /* bytes of a password file read */

/* A new password, BROKERPW_PASSWORD_LEN characters of [A-Za-z0-9_-], into out (> that). */
int brokerpw_generate(char *out, size_t size);

/* The "$7$..." hash of password with salt (BROKERPW_SALT_BYTES) into out (BROKERPW_HASH_MAX). */
int brokerpw_hash(const char *password, const unsigned char *salt, char *out, size_t size);

/* Give user password in the file at path: its entry replaced, or added; the file created. */
int brokerpw_set(const char *path, const char *user, const char *password);

/* Remove user's entry; *found says whether there was one (the file is left alone if not). */
int brokerpw_remove(const char *path, const char *user, bool *found);

#endif
