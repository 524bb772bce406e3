/*
 * sse.c - the server-sent events parser of `vendctl watch` (sse.h).
 */
#include "sse.h"

#include <stdlib.h>
#include <string.h>

#include "vend/err.h"

int sse_init(struct sse *p, const char *last_id, sse_event_fn *fn, void *arg)
{
    memset(p, 0, sizeof(*p));
    p->line = malloc(SSE_LINE_MAX + 1);
    p->data = malloc(SSE_DATA_MAX + 1);
    if (p->line == NULL || p->data == NULL) {
        sse_release(p);
        return VEND_ENOMEM;
    }
    p->retry_ms = -1;
    p->fn = fn;
    p->arg = arg;
    if (last_id != NULL && strlen(last_id) <= SSE_NAME_MAX)
        memcpy(p->last_id, last_id, strlen(last_id) + 1);
    memcpy(p->id, p->last_id, sizeof(p->id));
    return 0;
}

void sse_release(struct sse *p)
{
    free(p->line);
    free(p->data);
    p->line = NULL;
    p->data = NULL;
}

static int dispatch(struct sse *p)
{
    struct sse_event ev;
    int rc;

    /* The last event id moves even for an event without data (the standard's order). */
    memcpy(p->last_id, p->id, sizeof(p->last_id));
    if (!p->has_data) {
        p->type[0] = '\0';
        return 0;
    }
    /* The data buffer's final LF is not part of the data. */
    if (p->data_len > 0 && p->data[p->data_len - 1] == '\n')
        p->data_len--;
    p->data[p->data_len] = '\0';
    ev.id = p->last_id;
    ev.type = p->type[0] != '\0' ? p->type : "message";
    ev.data = p->data;
    ev.len = p->data_len;
    rc = p->fn(&ev, p->arg);
    p->data_len = 0;
    p->has_data = false;
    p->type[0] = '\0';
    return rc;
}

static int set_name(char *dst, const char *val, size_t n)
{
    if (n > SSE_NAME_MAX)
        return VEND_ETOOBIG;
    memcpy(dst, val, n);
    dst[n] = '\0';
    return 0;
}

/* One complete line (without its end), NUL-terminated at line[n]. */
static int line(struct sse *p, char *s, size_t n)
{
    const char *colon, *val;
    size_t name_len, val_len;

    if (n == 0)
        return dispatch(p);
    if (s[0] == ':')
        return 0;
    colon = memchr(s, ':', n);
    name_len = colon != NULL ? (size_t)(colon - s) : n;
    val = colon != NULL ? colon + 1 : s + n;
    if (colon != NULL && *val == ' ')
        val++;
    val_len = n - (size_t)(val - s);
    if (name_len == 4 && memcmp(s, "data", 4) == 0) {
        if (p->data_len + val_len + 1 > SSE_DATA_MAX)
            return VEND_ETOOBIG;
        memcpy(p->data + p->data_len, val, val_len);
        p->data_len += val_len;
        p->data[p->data_len++] = '\n';
        p->has_data = true;
    } else if (name_len == 5 && memcmp(s, "event", 5) == 0) {
        return set_name(p->type, val, val_len);
    } else if (name_len == 2 && memcmp(s, "id", 2) == 0) {
        if (memchr(val, '\0', val_len) == NULL)
            return set_name(p->id, val, val_len);
    } else if (name_len == 5 && memcmp(s, "retry", 5) == 0) {
        long ms = 0;
        size_t i;

        for (i = 0; i < val_len && val[i] >= '0' && val[i] <= '9' && ms < 100000000; i++)
            ms = ms * 10 + (val[i] - '0');
        if (i == val_len && val_len > 0)
            p->retry_ms = ms;
    }
    return 0;
}

int sse_feed(struct sse *p, const char *buf, size_t len)
{
    static const char bom[] = "\xef\xbb\xbf";
    int rc;

    for (size_t i = 0; i < len; i++) {
        char ch = buf[i];

        if (!p->started) {
            /* The BOM's bytes are held in line[] until they are seen whole, or are not. */
            if (p->line_len < 3 && ch == bom[p->line_len]) {
                p->line[p->line_len++] = ch;
                if (p->line_len == 3) {
                    p->line_len = 0;
                    p->started = true;
                }
                continue;
            }
            p->started = true;
        }
        if (ch == '\n' && p->after_cr) {
            p->after_cr = false;
            continue;
        }
        p->after_cr = ch == '\r';
        if (ch == '\n' || ch == '\r') {
            p->line[p->line_len] = '\0';
            rc = line(p, p->line, p->line_len);
            p->line_len = 0;
            if (rc != 0)
                return rc;
            continue;
        }
        if (p->line_len == SSE_LINE_MAX)
            return VEND_ETOOBIG;
        p->line[p->line_len++] = ch;
    }
    return 0;
}
