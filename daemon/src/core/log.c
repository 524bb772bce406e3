/*
 * log.c - one line per message on stderr (or the FILE given to log_init).
 *
 * Text format, chosen for journald first:
 *   - stderr connected to the journal ($JOURNAL_STREAM names its device and
 *     inode): "<4>warn: message". journald stamps time, unit, pid and host
 *     itself and turns the sd-daemon(3) "<N>" prefix into the entry's
 *     priority, so `journalctl -p warning` works; a second timestamp would
 *     only be noise.
 *   - anywhere else (a terminal, a file, a container log): a UTC timestamp
 *     with milliseconds, "2024-05-01T12:00:00.123Z warn: message", because
 *     nothing else will record when it happened. No "vendd[pid]": one
 *     process writes to the stream and the supervisor knows which.
 * JSON format: {"ts":"...","level":"warn","msg":"..."} for log shippers.
 *
 * Both formats keep one message on one line: control bytes are escaped (a
 * topic or payload with "\n" cannot forge a second entry) and invalid UTF-8
 * becomes U+FFFD (journald stores non-UTF-8 messages as opaque blobs, and
 * JSON must be UTF-8). The line is built in a stack buffer and written with
 * one fwrite() and a flush, so lines of concurrent processes sharing the
 * stream do not interleave (a pipe write is atomic up to PIPE_BUF, 4 KiB).
 */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

/* Longest message text, marker included; longer ones are cut at a UTF-8 boundary. */
#define LOG_MSG_MAX      2048
#define LOG_TRUNC_MARKER "...[truncated]"
/* Room for ": <strerror>" after the message. */
#define LOG_ERRSTR_MAX 128
/* Worst case: every message byte escaped to six ("\u00XX"), plus timestamp and keys. */
#define LOG_LINE_MAX (6 * (LOG_MSG_MAX + LOG_ERRSTR_MAX) + 128)

/*
 * The sink: process-wide like openlog(3), so that any module can log without
 * a handle being threaded through every call. Written by log_init() before
 * the loop starts and only read afterwards. out == NULL means stderr, which
 * is not a constant expression and so cannot be the initializer.
 */
static struct {
    enum log_format format;
    enum log_level level;
    FILE *out;
    bool journal;
} s_log = {LOG_FORMAT_TEXT, LOG_LEVEL_INFO, NULL, false};

static const char *const s_level_names[] = {"error", "warn", "info", "debug"};
/* syslog priorities for the sd-daemon prefix: LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG. */
static const char s_level_prio[] = {'3', '4', '6', '7'};

struct linebuf {
    char buf[LOG_LINE_MAX];
    size_t len;
};

/* Is out the stream journald handed us? sd-daemon: $JOURNAL_STREAM is "device:inode". */
static bool stream_is_journal(FILE *out)
{
    const char *env = getenv("JOURNAL_STREAM");
    struct stat st;
    char *end;
    int fd;

    if (env == NULL || *env == '\0')
        return false;
    fd = fileno(out);
    if (fd < 0 || fstat(fd, &st) != 0)
        return false;
    errno = 0;
    unsigned long long dev = strtoull(env, &end, 10);
    if (errno != 0 || end == env || *end != ':')
        return false;
    const char *ino_s = end + 1;
    unsigned long long ino = strtoull(ino_s, &end, 10);
    if (errno != 0 || end == ino_s || *end != '\0')
        return false;
    return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

void log_init(enum log_format format, enum log_level level, FILE *out)
{
    int saved = errno;

    s_log.format = format == LOG_FORMAT_JSON ? LOG_FORMAT_JSON : LOG_FORMAT_TEXT;
    s_log.level = level > LOG_LEVEL_DEBUG ? LOG_LEVEL_DEBUG : level;
    s_log.out = out;
    s_log.journal = stream_is_journal(out != NULL ? out : stderr);
    errno = saved;
}

static void put(struct linebuf *b, const char *s, size_t n)
{
    /* Sized for the worst case; the check keeps a miscount from overflowing. */
    if (n > sizeof(b->buf) - b->len)
        n = sizeof(b->buf) - b->len;
    memcpy(b->buf + b->len, s, n);
    b->len += n;
}

static void puts_(struct linebuf *b, const char *s)
{
    put(b, s, strlen(s));
}

/* Length of the well-formed UTF-8 sequence at s (RFC 3629), or 0 if it is not one. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    unsigned char lo = 0x80, hi = 0xBF;
    size_t len;

    if (s[0] < 0x80)
        return 1;
    if (s[0] >= 0xC2 && s[0] <= 0xDF)
        len = 2;
    else if (s[0] >= 0xE0 && s[0] <= 0xEF)
        len = 3;
    else if (s[0] >= 0xF0 && s[0] <= 0xF4)
        len = 4;
    else
        return 0;
    /* Exclude overlong forms, UTF-16 surrogates and code points above U+10FFFF. */
    if (s[0] == 0xE0)
        lo = 0xA0;
    else if (s[0] == 0xED)
        hi = 0x9F;
    else if (s[0] == 0xF0)
        lo = 0x90;
    else if (s[0] == 0xF4)
        hi = 0x8F;
    if (n < len || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
    }
    return len;
}

/* Appends msg with control bytes escaped and invalid UTF-8 replaced; json adds JSON rules. */
static void put_escaped(struct linebuf *b, const char *msg, bool json)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *s = (const unsigned char *)msg;
    size_t n = strlen(msg);

    for (size_t i = 0; i < n;) {
        unsigned char c = s[i];
        size_t len = utf8_len(s + i, n - i);
        if (len == 0) {
            put(b, json ? "\\ufffd" : "\xEF\xBF\xBD", json ? 6 : 3);
            i++;
            continue;
        }
        if (len > 1) {
            put(b, msg + i, len);
            i += len;
            continue;
        }
        i++;
        if (c == '\n') {
            puts_(b, "\\n");
        } else if (c == '\r') {
            puts_(b, "\\r");
        } else if (c == '\t') {
            puts_(b, "\\t");
        } else if (json && (c == '"' || c == '\\')) {
            char esc[2] = {'\\', (char)c};
            put(b, esc, 2);
        } else if ((c < 0x20 || c == 0x7F) && json) {
            char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 0xF]};
            put(b, esc, 6);
        } else if (c < 0x20 || c == 0x7F) {
            char esc[4] = {'\\', 'x', hex[c >> 4], hex[c & 0xF]};
            put(b, esc, 4);
        } else {
            put(b, (const char *)&c, 1);
        }
    }
}

static void put_timestamp(struct linebuf *b)
{
    struct timespec ts;
    struct tm tm;
    char date[32];
    char ms[8];

    clock_gettime(CLOCK_REALTIME, &ts);
    if (gmtime_r(&ts.tv_sec, &tm) == NULL ||
        strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%S", &tm) == 0) {
        puts_(b, "0000-00-00T00:00:00.000Z");
        return;
    }
    snprintf(ms, sizeof(ms), ".%03uZ", (unsigned)(ts.tv_nsec / 1000000L) % 1000u);
    puts_(b, date);
    puts_(b, ms);
}

/* errnum < 0: no strerror suffix. Callers save and restore errno around this. */
__attribute__((format(printf, 3, 0))) static void log_emit(enum log_level level, int errnum,
                                                           const char *fmt, va_list ap)
{
    char msg[LOG_MSG_MAX + LOG_ERRSTR_MAX];
    /* ~13 KiB of stack: one thread, and logging never recurses. */
    struct linebuf line;
    struct linebuf *b = &line;
    FILE *out = s_log.out != NULL ? s_log.out : stderr;

    int n = vsnprintf(msg, LOG_MSG_MAX + 1, fmt, ap);
    if (n < 0) {
        snprintf(msg, sizeof(msg), "unformattable log message \"%.64s\"", fmt);
    } else if (n > LOG_MSG_MAX) {
        size_t cut = LOG_MSG_MAX - (sizeof(LOG_TRUNC_MARKER) - 1);
        /* Do not split a multi-byte character: it would come out as U+FFFD. */
        while (cut > 0 && ((unsigned char)msg[cut] & 0xC0) == 0x80)
            cut--;
        memcpy(msg + cut, LOG_TRUNC_MARKER, sizeof(LOG_TRUNC_MARKER));
    }
    if (errnum >= 0) {
        size_t len = strlen(msg);
        snprintf(msg + len, sizeof(msg) - len, ": %s", strerror(errnum));
    }

    b->len = 0;
    if (s_log.format == LOG_FORMAT_JSON) {
        puts_(b, "{\"ts\":\"");
        put_timestamp(b);
        puts_(b, "\",\"level\":\"");
        puts_(b, s_level_names[level]);
        puts_(b, "\",\"msg\":\"");
        put_escaped(b, msg, true);
        puts_(b, "\"}\n");
    } else {
        if (s_log.journal) {
            char prio[3] = {'<', s_level_prio[level], '>'};
            put(b, prio, 3);
        } else {
            put_timestamp(b);
            puts_(b, " ");
        }
        puts_(b, s_level_names[level]);
        puts_(b, ": ");
        put_escaped(b, msg, false);
        puts_(b, "\n");
    }
    /* Keep the newline even if a miscount filled the buffer. */
    b->buf[b->len - 1] = '\n';
    fwrite(b->buf, 1, b->len, out);
    fflush(out);
}

#define LOG_BODY(lvl, with_errno)                                                                  \
    do {                                                                                           \
        int saved = errno;                                                                         \
        va_list ap;                                                                                \
        if ((lvl) > s_log.level)                                                                   \
            return;                                                                                \
        va_start(ap, fmt);                                                                         \
        log_emit((lvl), (with_errno) ? saved : -1, fmt, ap);                                       \
        va_end(ap);                                                                                \
        errno = saved;                                                                             \
    } while (0)

void log_warn(const char *fmt, ...)
{
    LOG_BODY(LOG_LEVEL_WARN, true);
}

void log_warnx(const char *fmt, ...)
{
    LOG_BODY(LOG_LEVEL_WARN, false);
}

void log_info(const char *fmt, ...)
{
    LOG_BODY(LOG_LEVEL_INFO, false);
}

void log_debug(const char *fmt, ...)
{
    LOG_BODY(LOG_LEVEL_DEBUG, false);
}

void fatal(const char *fmt, ...)
{
    int saved = errno;
    va_list ap;

    va_start(ap, fmt);
    log_emit(LOG_LEVEL_ERROR, saved, fmt, ap);
    va_end(ap);
    exit(1);
}

void fatalx(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    log_emit(LOG_LEVEL_ERROR, -1, fmt, ap);
    va_end(ap);
    exit(1);
}
