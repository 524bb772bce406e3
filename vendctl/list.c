/*
 * list.c - the lists of the API walked page by page (docs/HTTP-API.md "Lists"), and the two
 * ways to print what vendd answered: its JSON, or a table for people (vendctl.h).
 */
#include <stdlib.h>
#include <string.h>

#include "vendctl.h"

int ctl_call(struct ctl *ctl, const char *method, const char *path, const json_t *body,
             struct reply *r)
{
    return client_call(&ctl->client, method, path, body, r, ctl->json ? CALL_JSON_ERRORS : 0);
}

bool ctl_print_raw(const struct ctl *ctl, const struct reply *r)
{
    if (!ctl->json)
        return false;
    /* Byte for byte what vendd sent, so a script sees exactly the API. */
    fwrite(r->body, 1, r->len, stdout);
    if (r->len == 0 || r->body[r->len - 1] != '\n')
        fputc('\n', stdout);
    return true;
}

int ctl_print_list(struct ctl *ctl, json_t *doc, const char *array, const struct out_col *cols,
                   size_t ncols)
{
    if (ctl->json)
        out_json(stdout, doc);
    else
        out_table(&ctl->out, json_object_get(doc, array), cols, ncols);
    return CTL_EOK;
}

/* The first page's members in their order, the array and next_cursor filled in later. */
static json_t *doc_from(const json_t *page, const char *array, json_t *items)
{
    json_t *doc = json_object();
    const char *key;
    json_t *val;

    if (doc == NULL)
        return NULL;
    json_object_foreach((json_t *)page, key, val)
    {
        if (strcmp(key, array) == 0)
            json_object_set(doc, key, items);
        else if (strcmp(key, "next_cursor") == 0)
            json_object_set_new(doc, key, json_null());
        else
            json_object_set(doc, key, val);
    }
    return doc;
}

int ctl_list(struct ctl *ctl, const char *path, const char *array, json_t **doc)
{
    long long limit = CTL_ITEMS_MAX, page = CTL_PAGE_MAX;
    json_t *items = json_array();
    char *cursor = NULL, url[2048];
    const char *sep = strchr(path, '?') != NULL ? "&" : "?";
    int status;

    *doc = NULL;
    status = ctl_opt_int(ctl, CTL_OPT_LIMIT, 1, CTL_ITEMS_MAX, &limit);
    if (status == CTL_EOK)
        status = ctl_opt_int(ctl, CTL_OPT_PAGE_SIZE, 1, CTL_PAGE_MAX, &page);
    if (status != CTL_EOK)
        goto out;
    if (items == NULL) {
        status = ctl_fail(CTL_ELOCAL, "out of memory");
        goto out;
    }
    if (ctl->opt[CTL_OPT_CURSOR] != NULL) {
        cursor = strdup(ctl->opt[CTL_OPT_CURSOR]);
        if (cursor == NULL) {
            status = ctl_fail(CTL_ELOCAL, "out of memory");
            goto out;
        }
    }
    for (;;) {
        size_t have = json_array_size(items);
        long long want = limit - (long long)have < page ? limit - (long long)have : page;
        char *esc = cursor != NULL ? client_escape(&ctl->client, cursor) : NULL;
        const json_t *got, *next;
        struct reply r;
        bool more;
        int n;

        if (cursor != NULL && esc == NULL) {
            status = ctl_fail(CTL_ELOCAL, "out of memory");
            goto out;
        }
        n = snprintf(url, sizeof(url), "%s%slimit=%lld%s%s", path, sep, want,
                     esc != NULL ? "&cursor=" : "", esc != NULL ? esc : "");
        free(esc);
        if (n < 0 || (size_t)n >= sizeof(url)) {
            status = ctl_usage(ctl, "the cursor is too long");
            goto out;
        }
        status = client_call(&ctl->client, "GET", url, NULL, &r, ctl->json ? CALL_JSON_ERRORS : 0);
        if (status != CTL_EOK) {
            reply_release(&r);
            goto out;
        }
        got = json_object_get(r.json, array);
        next = json_object_get(r.json, "next_cursor");
        /* What a broken or foreign server could send must not loop or grow without end. */
        if (!json_is_array(got) || !(json_is_null(next) || json_is_string(next)) ||
            json_array_size(got) > (size_t)want ||
            (json_is_string(next) && json_array_size(got) == 0)) {
            status = ctl_fail(CTL_ESERVER,
                              "%s: not a page of the API: no '%s' array of at most %lld items "
                              "with a next_cursor",
                              r.what, array, want);
            reply_release(&r);
            goto out;
        }
        if (*doc == NULL)
            *doc = doc_from(r.json, array, items);
        json_array_extend(items, (json_t *)got);
        more = json_is_string(next);
        free(cursor);
        cursor = more ? strdup(json_string_value(next)) : NULL;
        reply_release(&r);
        if (*doc == NULL || (more && cursor == NULL)) {
            status = ctl_fail(CTL_ELOCAL, "out of memory");
            goto out;
        }
        if (cursor == NULL || (long long)json_array_size(items) >= limit)
            break;
    }
    json_object_set_new(*doc, "next_cursor", cursor != NULL ? json_string(cursor) : json_null());
    if (cursor != NULL && ctl->opt[CTL_OPT_LIMIT] == NULL) {
        char esc[1024];

        out_escape(esc, sizeof(esc), cursor);
        fprintf(stderr, "vendctl: stopped after %d items; go on with --cursor '%s'\n",
                CTL_ITEMS_MAX, esc);
    }
out:
    if (status != CTL_EOK) {
        json_decref(*doc);
        *doc = NULL;
    }
    json_decref(items);
    free(cursor);
    return status;
}
