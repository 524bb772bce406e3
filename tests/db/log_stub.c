/*
 * log_stub.c - log.h for the database tests: everything to stderr, so a failing test
 * shows what the module said, and no dependency on the real log module.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "log.h"

static void emit(const char *level, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

static void emit(const char *level, const char *fmt, va_list ap)
{
    fprintf(stderr, "[%s] ", level);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

void log_init(enum log_format format, enum log_level level, FILE *out)
{
    (void)format;
    (void)level;
    (void)out;
}

#define STUB(fn, level)                                                                            \
    void fn(const char *fmt, ...)                                                                  \
    {                                                                                              \
        va_list ap;                                                                                \
        va_start(ap, fmt);                                                                         \
        emit(level, fmt, ap);                                                                      \
        va_end(ap);                                                                                \
    }

STUB(log_warn, "warn")
STUB(log_warnx, "warn")
STUB(log_info, "info")
STUB(log_debug, "debug")

void fatal(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    emit("fatal", fmt, ap);
    va_end(ap);
    abort();
}

void fatalx(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    emit("fatal", fmt, ap);
    va_end(ap);
    abort();
}
