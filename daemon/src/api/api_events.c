/* api_events.c - GET /api/events: the event stream, as server-sent events (domain/events.h). */
#include "api.h"
#include "events.h"
#include "vend/err.h"
#include "vendd.h"

void api_events(void *ctx, const struct http_request *req, struct http_response *res)
{
    struct vendd *v = ctx;
    /* The header is what an EventSource sends when it reconnects; the query argument is for a
     * client that starts afresh from an id it kept (a reloaded page). An empty id is none. */
    const char *id = http_header(req, "Last-Event-ID");
    const char *name = "Last-Event-ID";
    int64_t last = -1;
    int rc;

    if (id == NULL || id[0] == '\0') {
        id = http_query(req, "last_event_id");
        name = "last_event_id";
    }
    if (id != NULL && id[0] != '\0' && !api_parse_decimal(id, 0, INT64_MAX, &last)) {
        http_reply_error(res, 422, "INVALID_FIELD",
                         "'%s' must be an event id: decimal digits, 0 to 9223372036854775807",
                         name);
        return;
    }
    rc = events_attach(v, req, last);
    if (rc == VEND_ELIMIT)
        http_reply_error(res, 503, "TOO_MANY_STREAMS",
                         "%d event streams are open already: try again later", EVENTS_CLIENTS_MAX);
    else if (rc < 0)
        api_reply_err(res, rc, "cannot read the events");
}
