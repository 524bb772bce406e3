/*
 * log.h - logging to stderr in "text" or "json" (LOG_FORMAT), after OpenBSD's log.c.
 *
 * Messages start lower-case (except proper names such as "MQTT"), have no
 * trailing full stop, put the failure first and quote the subject:
 *     log_warnx("rejected %s: %s", topic, reason);
 * log_warn() appends strerror(errno). Secrets are never passed to these calls.
 *
 * The sink is the one piece of process-wide state in vendd (like openlog(3)):
 * set once by log_init() before the loop starts, read-only afterwards.
 */
#ifndef VENDD_LOG_H
#define VENDD_LOG_H

#include <stdio.h>

enum log_format { LOG_FORMAT_TEXT, LOG_FORMAT_JSON };
enum log_level { LOG_LEVEL_ERROR, LOG_LEVEL_WARN, LOG_LEVEL_INFO, LOG_LEVEL_DEBUG };

/* Defaults before log_init: text, info, stderr. out may be NULL for stderr. */
void log_init(enum log_format format, enum log_level level, FILE *out);

void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warnx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Log at error level and exit(1). fatal() appends strerror(errno). */
void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
void fatalx(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

#endif
