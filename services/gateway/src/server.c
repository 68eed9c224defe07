/*
 * server.c: a gateway loop thread: HTTP requests in, events to JetStream, answers out.
 *
 * A write becomes one event, published asynchronously with its event_id as Nats-Msg-Id. The
 * request waits (gw_write) for two things, in either order: JetStream's ack (via the ack
 * handler) and, unless the client asked for respond-async, the worker's reply after commit (on
 * this thread's reply subject). No 2xx goes out before the ack; a failed or timed-out ack is a 503.
 */
#define _POSIX_C_SOURCE 200809L
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cartshard/bus.h"
#include "cartshard/cache.h"
#include "cartshard/cart.h"
#include "cartshard/clock.h"
#include "cartshard/event.h"
#include "cartshard/fmt.h"
#include "cartshard/log.h"
#include "cartshard/partition.h"
#include "cartshard/problem.h"
#include "event_build.h"
#include "gateway.h"
#include "idem.h"
#include "jwt.h"
#include "ratelimit.h"
#include "redis.h"
#include "request.h"
#include "route.h"

#define RETRY_AFTER_S "1"
/* How often a repeated write looks for its first answer while the first is still being applied. */
#define DUP_POLL_MS 20
/* A Redis that does not answer this fast counts as down (reads go to the shard, limits local). */
#define REDIS_TIMEOUT_MS 250
/* Clients each thread's local rate limiter remembers while Redis is away. */
#define LOCAL_LIMITER_CLIENTS 65536
/* How long a stopping thread waits for h2o to close the connections it cut. */
#define CLOSE_WAIT_MS 2000
/* A drain cuts idle keep-alive connections this long after it began (see on_drain_tick). */
#define DRAIN_IDLE_GRACE_MS 300

typedef enum { NOTE_ACK, NOTE_REPLY } note_kind;

/* Something nats.c's threads tell the loop. */
struct gw_note {
    note_kind kind;
    char event_id[CART_EVENT_ID_MAX + 1];
    bool ok;      /* NOTE_ACK: stored by JetStream */
    bool dup;     /* NOTE_ACK: JetStream already had this event_id (a repeated Idempotency-Key) */
    uint64_t seq; /* NOTE_ACK: the stream sequence JetStream stored it at */
    int status;   /* NOTE_REPLY: the HTTP status the worker decided */
    char detail[128];
    char *body; /* NOTE_REPLY: the cart JSON, or NULL */
    size_t body_len;
    char error[128];
    gw_note *next;
};

/* --- requests that wait for something --- */

/* Ties a context that outlives its request (a query or a Redis reply in flight) to the request:
 * `req` becomes NULL when h2o disposes of the request (the client went away). The slot lives in
 * the request's pool; unlink before freeing the context. */
typedef struct req_link {
    h2o_req_t *req;
    struct req_link **slot;
} req_link;

static void on_link_dispose(void *arg)
{
    req_link **slot = arg;

    if (*slot) {
        (*slot)->req = NULL;
        (*slot)->slot = NULL;
    }
}

static void link_request(req_link *l, h2o_req_t *req)
{
    l->req = req;
    l->slot = h2o_mem_alloc_shared(&req->pool, sizeof *l->slot, on_link_dispose);
    *l->slot = l;
}

static void unlink_request(req_link *l)
{
    if (l->slot)
        *l->slot = NULL;
    l->slot = NULL;
}

/* A write in flight: waiting for its ack and reply, in the thread's write table. */
struct gw_write {
    gw_thread *t;
    char event_id[CART_EVENT_ID_MAX + 1];
    char user_id[CART_ID_MAX + 1];
    char request_id[CART_TRACE_MAX + 1];
    req_link link; /* link.req is NULL once the client has gone */
    const char *route;
    int64_t started_ms;
    bool async;     /* Prefer: respond-async */
    bool acked;     /* JetStream stored the event */
    bool timed_out; /* the sync wait ran out */
    bool replied;
    bool dup_wait;             /* a repeat: looking up the first answer in processed_events */
    int64_t deadline_ms;       /* when the sync wait runs out (monotonic) */
    struct dup_lookup *lookup; /* in flight; NULL when none */
    int reply_status;
    char reply_detail[128];
    char *reply_body;
    size_t reply_len;
    uv_timer_t timer;
    gw_write *next; /* hash chain */
};

/* A processed_events query of a repeated write; outlives the write if need be. */
typedef struct dup_lookup {
    gw_write *w; /* NULL once the write is gone */
} dup_lookup;

typedef struct gw_handler {
    h2o_handler_t super;
    gw_thread *t;
} gw_handler;

/* --- metrics and responses --- */

static void observe(gw_thread *t, const char *route, int status, int64_t started_ms)
{
    /* The series of a (route, status) are looked up once per thread and slot: a lookup takes the
     * family's lock, which the threads share. Route names are string constants, so a pointer
     * identifies one (two copies of a name just take two slots). */
    size_t slot = (((uintptr_t)route >> 3) * 31u + (unsigned)status) % GW_OBSERVED_SLOTS;
    struct gw_observed *o = &t->observed[slot];

    if (o->route != route || o->status != status) {
        char code[CART_INT_BUFSZ + 1];
        const char *lv[2] = {route, code};
        code[cart_int_format(status, code)] = '\0';
        o->requests = cart_metrics_series(t->app->m_requests, lv);
        o->latency = cart_metrics_series(t->app->m_latency, lv);
        /* Out of memory, a series may be missing: then it is looked up again next time. */
        o->route = o->requests && o->latency ? route : NULL;
        o->status = status;
    }
    cart_counter_inc(o->requests);
    cart_histogram_observe(o->latency, (double)(cart_mono_ms() - started_ms) / 1000.0);
}

static void send_problem(gw_thread *t, h2o_req_t *req, const char *route, int64_t started, int status, const char *slug,
                         const char *detail)
{
    if (status == 503 || status == 429)
        cart_http_header(req, "Retry-After", RETRY_AFTER_S);
    cart_http_problem(req, status, slug, detail);
    observe(t, route, status, started);
}

static const char *slug_for(int status)
{
    switch (status) {
    case 400:
        return "invalid-request";
    case 404:
        return "not-found";
    case 409:
        return "conflict";
    case 412:
        return "precondition-failed";
    case 422:
        return "limit-exceeded";
    case 503:
        return "unavailable";
    default:
        return NULL;
    }
}

/* Answers with a cart document and its ETag. */
static void send_cart(gw_thread *t, h2o_req_t *req, const char *route, int64_t started, int status, const char *body,
                      size_t len)
{
    json_t *doc = json_loadb(body, len, 0, NULL);
    json_t *v = doc ? json_object_get(doc, "version") : NULL;
    char etag[32];

    if (json_is_integer(v)) {
        snprintf(etag, sizeof etag, "\"%" JSON_INTEGER_FORMAT "\"", json_integer_value(v));
        cart_http_header(req, "ETag", etag);
    }
    json_decref(doc);
    cart_http_send(req, status, "application/json", body, len);
    observe(t, route, status, started);
}

/* --- writes in flight: the write table --- */

static size_t bucket_of(const char *event_id)
{
    return cart_fnv1a32(event_id, strlen(event_id)) % GW_WRITE_BUCKETS;
}

/* The next write in the table after `from` (NULL: the first) with this event_id. Several writes with
 * one Idempotency-Key can wait on one thread at once: every note about the event is for all of
 * them. */
static gw_write *write_table_next(gw_thread *t, gw_write *from, const char *event_id)
{
    for (gw_write *w = from ? from->next : t->writes.buckets[bucket_of(event_id)]; w; w = w->next)
        if (strcmp(w->event_id, event_id) == 0)
            return w;
    return NULL;
}

static void write_table_remove(gw_thread *t, gw_write *w)
{
    gw_write **at = &t->writes.buckets[bucket_of(w->event_id)];

    while (*at && *at != w)
        at = &(*at)->next;
    if (*at)
        *at = w->next;
    t->writes.count--;
}

static void on_write_timer_closed(uv_handle_t *h)
{
    gw_write *w = h->data;

    free(w->reply_body);
    free(w);
}

/* Ends a write in flight: takes it out of the table and frees it once its timer is closed. */
static void write_finish(gw_write *w)
{
    write_table_remove(w->t, w);
    unlink_request(&w->link); /* the request may outlive us */
    if (w->lookup)
        w->lookup->w = NULL; /* so does a lookup in flight */
    uv_timer_stop(&w->timer);
    uv_close((uv_handle_t *)&w->timer, on_write_timer_closed);
}

/* Sends the answer a write has earned, if it has earned one yet. */
static void write_settle(gw_write *w)
{
    gw_thread *t = w->t;
    h2o_req_t *req = w->link.req;
    char location[CART_ID_MAX + 16], body[CART_EVENT_ID_MAX + 48];

    if (!w->acked)
        return;
    if (w->replied && !w->async) {
        if (req) {
            if (w->reply_status == 204) {
                req->res.status = 204;
                req->res.reason = "No Content";
                h2o_send_inline(req, NULL, 0);
                observe(t, w->route, 204, w->started_ms);
            } else if (w->reply_status >= 400) {
                send_problem(t, req, w->route, w->started_ms, w->reply_status, slug_for(w->reply_status),
                             w->reply_detail[0] ? w->reply_detail : NULL);
            } else if (w->reply_body && w->reply_len) {
                send_cart(t, req, w->route, w->started_ms, w->reply_status, w->reply_body, w->reply_len);
            } else {
                req->res.status = w->reply_status;
                req->res.reason = cart_http_reason(w->reply_status);
                h2o_send_inline(req, NULL, 0);
                observe(t, w->route, w->reply_status, w->started_ms);
            }
        }
        write_finish(w);
        return;
    }
    if (w->async || w->timed_out) {
        if (req) {
            /* Accepted: stored durably, applied later (or not yet known). */
            snprintf(location, sizeof location, "/v1/carts/%s", w->user_id);
            if (w->async)
                cart_http_header(req, "Preference-Applied", "respond-async");
            cart_http_header(req, "Location", location);
            int n = snprintf(body, sizeof body, "{\"event_id\":\"%s\",\"status\":\"accepted\"}", w->event_id);
            cart_http_send(req, 202, "application/json", body, (size_t)n);
            observe(t, w->route, 202, w->started_ms);
        }
        write_finish(w);
    }
}

static void start_lookup(gw_write *w);

static void on_write_timeout(uv_timer_t *timer)
{
    gw_write *w = timer->data;

    if (w->dup_wait && cart_mono_ms() < w->deadline_ms) {
        start_lookup(w);
        return;
    }
    w->timed_out = true;
    write_settle(w);
}

/* --- repeated writes: the first answer, from the owning shard --- */

static const char *const sql_first_answer =
    "SELECT p.http_status, coalesce(p.detail, ''), c.cart_id::text, c.status, c.version,"
    " (extract(epoch FROM c.created_at) * 1000)::bigint, (extract(epoch FROM c.updated_at) * 1000)::bigint,"
    " i.sku, i.quantity"
    " FROM processed_events p"
    " LEFT JOIN LATERAL (SELECT * FROM carts WHERE user_id = p.user_id ORDER BY version DESC LIMIT 1) c ON true"
    " LEFT JOIN cart_items i ON i.cart_id = c.cart_id"
    " WHERE p.event_id = $1 AND p.user_id = $2";

/* Fills `c` (initialised for its user) from rows whose columns from `col` on are cart_id, status,
 * version, created_at and updated_at in ms, sku and quantity (one row per line; a NULL cart_id
 * means no cart, a NULL sku no lines). */
static void cart_from_rows(const PGresult *res, int col, cart *c)
{
    const char *status;

    if (PQntuples(res) == 0 || PQgetisnull(res, 0, col))
        return;
    status = PQgetvalue(res, 0, col + 1);
    if (cart_state_parse(status, strlen(status), &c->state) != CART_OK)
        return;
    snprintf(c->cart_id, sizeof c->cart_id, "%s", PQgetvalue(res, 0, col));
    c->version = strtoll(PQgetvalue(res, 0, col + 2), NULL, 10);
    c->created_at_ms = strtoll(PQgetvalue(res, 0, col + 3), NULL, 10);
    c->updated_at_ms = strtoll(PQgetvalue(res, 0, col + 4), NULL, 10);
    for (int i = 0; i < PQntuples(res); i++)
        if (!PQgetisnull(res, i, col + 5))
            cart_put_line(c, PQgetvalue(res, i, col + 5), (int32_t)strtol(PQgetvalue(res, i, col + 6), NULL, 10));
}

/* Runs the write's timer in `ms`, or at its deadline if that is sooner. */
static void write_rearm(gw_write *w, int64_t ms)
{
    int64_t left = w->deadline_ms - cart_mono_ms();

    if (left < 0)
        left = 0;
    uv_timer_start(&w->timer, on_write_timeout, (uint64_t)(ms < left ? ms : left), 0);
}

static void on_first_answer(void *arg, const PGresult *res, const char *err)
{
    dup_lookup *lk = arg;
    gw_write *w = lk->w;

    free(lk);
    if (w == NULL)
        return;
    w->lookup = NULL;
    if (w->replied)
        return; /* the worker's own reply came first */
    if (res && PQntuples(res) > 0) {
        cart c;
        int status = atoi(PQgetvalue(res, 0, 0));
        w->replied = true;
        w->dup_wait = false;
        w->reply_status = status;
        snprintf(w->reply_detail, sizeof w->reply_detail, "%s", PQgetvalue(res, 0, 1));
        if (status == 200 || status == 201) {
            cart_init(&c, w->user_id);
            cart_from_rows(res, 2, &c);
            w->reply_body = cart_to_json(&c, &w->reply_len); /* NULL when the user has no cart */
            cart_cleanup(&c);
        }
        write_settle(w);
        return;
    }
    if (res == NULL)
        cart_log(CART_LOG_DEBUG, "first answer lookup failed", CART_LS("event_id", w->event_id), CART_LS("error", err),
                 NULL);
    /* Not applied yet (the first attempt is still on its way), or the shard is away: look again
     * soon, until the sync wait runs out (then 202: the event is stored and will be applied). */
    write_rearm(w, DUP_POLL_MS);
}

static void start_lookup(gw_write *w)
{
    const cart_config *cfg = w->t->app->cfg;
    uint32_t part = cart_partition_of(w->user_id, strlen(w->user_id), cfg->partitions);
    uint32_t shard = cart_shard_of(part, cfg->partitions, cfg->nshards);
    const char *params[2] = {w->event_id, w->user_id};
    dup_lookup *lk;

    if (w->lookup || w->replied)
        return;
    lk = malloc(sizeof *lk);
    if (lk && gw_pg_query(w->t->shards[shard], sql_first_answer, 2, params, on_first_answer, lk) == 0) {
        lk->w = w;
        w->lookup = lk;
        /* Whatever the shard does, the client is answered by the deadline. */
        write_rearm(w, INT64_MAX);
        return;
    }
    free(lk);
    write_rearm(w, DUP_POLL_MS); /* could not even queue the query: try again soon */
}

/* --- notes from nats.c threads --- */

static void post_note(gw_thread *t, gw_note *n)
{
    pthread_mutex_lock(&t->inbox_mu);
    n->next = t->inbox;
    t->inbox = n;
    pthread_mutex_unlock(&t->inbox_mu);
    uv_async_send(&t->wake);
}

static void on_pub_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure)
{
    gw_thread *t = closure;
    const char *id = NULL;
    gw_note *n = calloc(1, sizeof *n);

    if (n && natsMsgHeader_Get(msg, CART_HDR_MSG_ID, &id) == NATS_OK && id) {
        n->kind = NOTE_ACK;
        snprintf(n->event_id, sizeof n->event_id, "%s", id);
        n->ok = pa != NULL;
        n->dup = pa != NULL && pa->Duplicate;
        n->seq = pa != NULL ? pa->Sequence : 0;
        if (pae)
            snprintf(n->error, sizeof n->error, "%s", pae->ErrText ? pae->ErrText : natsStatus_GetText(pae->Err));
        post_note(t, n);
        n = NULL;
    }
    free(n);
    natsMsg_Destroy(msg);
}

static void on_reply(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    gw_thread *t = closure;
    const char *id = NULL, *status = NULL, *detail = NULL;
    gw_note *n = calloc(1, sizeof *n);
    int len = natsMsg_GetDataLength(msg);

    if (n == NULL || natsMsgHeader_Get(msg, "Cart-Event-Id", &id) != NATS_OK ||
        natsMsgHeader_Get(msg, "Cart-Status", &status) != NATS_OK)
        goto out;
    n->kind = NOTE_REPLY;
    snprintf(n->event_id, sizeof n->event_id, "%s", id);
    n->status = atoi(status);
    if (natsMsgHeader_Get(msg, "Cart-Detail", &detail) == NATS_OK && detail)
        snprintf(n->detail, sizeof n->detail, "%s", detail);
    if (len > 0) {
        n->body = malloc((size_t)len);
        if (n->body == NULL)
            goto out;
        memcpy(n->body, natsMsg_GetData(msg), (size_t)len);
        n->body_len = (size_t)len;
    }
    if (n->status < 200 || n->status > 599)
        goto out;
    post_note(t, n);
    n = NULL;
out:
    if (n)
        free(n->body);
    free(n);
    natsMsg_Destroy(msg);
}

static void begin_drain(gw_thread *t);

static void on_ack_note(gw_thread *t, gw_write *w, const gw_note *n)
{
    if (w->acked)
        return; /* an earlier write with the same event_id got this far already */
    if (n->ok) {
        w->acked = true;
        /* Which stream sequence holds the change: what an operator needs to trace it through
         * CARTS and the partition's committed offset. */
        if (cart_log_enabled(CART_LOG_DEBUG))
            cart_log(CART_LOG_DEBUG, "event stored", CART_LS("event_id", w->event_id),
                     CART_LS("request_id", w->request_id), CART_LI("seq", (long long)n->seq),
                     CART_LB("duplicate", n->dup), NULL);
        if (n->dup && !w->replied && !w->async) {
            /* JetStream had the event already, so no worker will answer this publish: read the
             * first answer from the shard, waiting for it if the first attempt is still in flight. */
            w->dup_wait = true;
            start_lookup(w);
            return;
        }
        write_settle(w);
    } else if (!w->replied) {
        cart_counter_inc(t->app->m_publish_errors);
        cart_counter_inc(t->app->m_nats_errors);
        cart_log(CART_LOG_WARN, "event publish failed", CART_LS("event_id", w->event_id),
                 CART_LS("request_id", w->request_id), CART_LS("error", n->error), NULL);
        if (w->link.req)
            send_problem(t, w->link.req, w->route, w->started_ms, 503, "unavailable",
                         "the event bus did not acknowledge the change; retry with the same Idempotency-Key");
        write_finish(w);
    } else {
        /* The worker applied it: the store happened even if the ack got lost. */
        w->acked = true;
        write_settle(w);
    }
}

static void on_reply_note(gw_write *w, const gw_note *n)
{
    if (w->replied)
        return;
    w->replied = true;
    w->dup_wait = false;
    w->reply_status = n->status;
    snprintf(w->reply_detail, sizeof w->reply_detail, "%s", n->detail);
    if (n->body_len > 0 && (w->reply_body = malloc(n->body_len)) != NULL) {
        memcpy(w->reply_body, n->body, n->body_len);
        w->reply_len = n->body_len;
    }
    write_settle(w);
}

static void on_wake(uv_async_t *h)
{
    gw_thread *t = h->data;
    gw_note *list, *rev = NULL;

    if (atomic_load(&t->app->stopping))
        begin_drain(t);

    pthread_mutex_lock(&t->inbox_mu);
    list = t->inbox;
    t->inbox = NULL;
    pthread_mutex_unlock(&t->inbox_mu);
    while (list) { /* restore arrival order */
        gw_note *next = list->next;
        list->next = rev;
        rev = list;
        list = next;
    }
    while (rev) {
        gw_note *n = rev;
        rev = n->next;
        /* write_finish unlinks but frees later, so `next` stays valid. */
        for (gw_write *w = write_table_next(t, NULL, n->event_id), *next; w; w = next) {
            next = write_table_next(t, w, n->event_id);
            if (n->kind == NOTE_ACK)
                on_ack_note(t, w, n);
            else
                on_reply_note(w, n);
        }
        free(n->body);
        free(n);
    }
}

/* --- the write path --- */

/* Looks a header up; returns its value or a zero iovec. */
static h2o_iovec_t header(h2o_req_t *req, const h2o_token_t *token)
{
    ssize_t i = h2o_find_header(&req->headers, token, -1);

    return i >= 0 ? req->headers.entries[i].value : h2o_iovec_init(NULL, 0);
}

static h2o_iovec_t header_by_name(h2o_req_t *req, const char *name)
{
    ssize_t i = h2o_find_header_by_str(&req->headers, name, strlen(name), -1);

    return i >= 0 ? req->headers.entries[i].value : h2o_iovec_init(NULL, 0);
}

static bool prefers_async(h2o_req_t *req)
{
    h2o_iovec_t v = header_by_name(req, "prefer");

    return gw_prefers_async(v.base, v.len);
}

static gw_text text_of(h2o_iovec_t v)
{
    return (gw_text){v.base, v.len};
}

/* Builds the event of a write request. Returns 0, or -1 after answering. */
static int build_event(gw_thread *t, h2o_req_t *req, const gw_route *r, int64_t started, cart_event *ev)
{
    char fresh_id[CART_EVENT_ID_MAX + 1];
    gw_event_input in;
    gw_refusal why;

    cart_uuid_v4(fresh_id);
    in.content_type = text_of(header(req, H2O_TOKEN_CONTENT_TYPE));
    in.body = text_of(req->entity);
    in.idempotency_key = text_of(header_by_name(req, "idempotency-key"));
    in.if_match = text_of(header(req, H2O_TOKEN_IF_MATCH));
    in.now_ms = cart_now_ms();
    in.fresh_id = fresh_id;
    in.max_quantity = t->app->cfg->max_quantity;
    if (gw_event_build(r, &in, ev, &why) != 0) {
        send_problem(t, req, r->name, started, why.status, why.slug, why.detail);
        return -1;
    }
    return 0;
}

static void handle_write(gw_thread *t, h2o_req_t *req, const gw_route *r, int64_t started)
{
    const cart_config *cfg = t->app->cfg;
    cart_event ev;
    char *payload = NULL, subject[CART_SUBJECT_MAX];
    size_t len = 0;
    natsMsg *msg = NULL;
    jsPubOptions po;
    gw_write *w = NULL;
    uint32_t part;

    bool async = prefers_async(req);
    /* A write that waits for its commit goes out, and gets its reply, on the connection that
     * sends at once: its reply subscription is then known to the server before the event is
     * (a connection sends its subscriptions again first when it comes back). */
    jsCtx *js = async ? t->js : t->js_sync;

    if (build_event(t, req, r, started, &ev) != 0)
        return;
    if (natsConnection_Status(async ? t->app->nc : t->app->nc_sync) != NATS_CONN_STATUS_CONNECTED) {
        send_problem(t, req, r->name, started, 503, "unavailable", "the event bus is unreachable");
        return;
    }
    if (cart_event_encode(&ev, &payload, &len) != CART_OK) {
        send_problem(t, req, r->name, started, 400, "invalid-request", "the change could not be encoded");
        return;
    }
    part = cart_partition_of(ev.user_id, strlen(ev.user_id), cfg->partitions);
    w = calloc(1, sizeof *w);
    if (w == NULL ||
        natsMsg_Create(&msg, cart_bus_subject(subject, CART_SUBJ_EVENTS, part), NULL, payload, (int)len) != NATS_OK ||
        natsMsgHeader_Set(msg, CART_HDR_MSG_ID, ev.event_id) != NATS_OK ||
        (!async && natsMsgHeader_Set(msg, CART_HDR_REPLY_TO, t->reply_subject) != NATS_OK)) {
        free(w);
        natsMsg_Destroy(msg);
        free(payload);
        send_problem(t, req, r->name, started, 503, "unavailable", "out of memory");
        return;
    }
    free(payload);
    w->t = t;
    snprintf(w->event_id, sizeof w->event_id, "%s", ev.event_id);
    snprintf(w->user_id, sizeof w->user_id, "%s", ev.user_id);
    snprintf(w->request_id, sizeof w->request_id, "%s", r->request_id);
    w->route = r->name;
    w->started_ms = started;
    w->async = async;
    uv_timer_init(&t->loop, &w->timer);
    w->timer.data = w;
    link_request(&w->link, req);
    w->next = t->writes.buckets[bucket_of(w->event_id)];
    t->writes.buckets[bucket_of(w->event_id)] = w;
    t->writes.count++;

    jsPubOptions_Init(&po);
    po.MaxWait = cfg->sync_timeout_ms > 0 && cfg->sync_timeout_ms < 5000 ? 5000 : cfg->sync_timeout_ms + 1000;
    if (js_PublishMsgAsync(js, &msg, &po) != NATS_OK) {
        natsMsg_Destroy(msg);
        write_finish(w);
        cart_counter_inc(t->app->m_publish_errors);
        cart_counter_inc(t->app->m_nats_errors);
        send_problem(t, req, r->name, started, 503, "unavailable", "the event bus refused the change");
        return;
    }
    w->deadline_ms = started + cfg->sync_timeout_ms;
    if (!w->async)
        write_rearm(w, INT64_MAX);
}

/* --- the read path --- */

/* A GET in progress: first the cache, then (on a miss) the owning shard. */
typedef struct read_ctx {
    req_link link; /* link.req is NULL once the client has gone */
    gw_thread *t;
    char user_id[CART_ID_MAX + 1];
    int64_t started;
    char if_none_match[40];
} read_ctx;

static void read_done(read_ctx *rc)
{
    unlink_request(&rc->link); /* the request may outlive rc */
    free(rc);
}

/* The user's latest cart, whatever its state, with its lines: what GET answers and what the
 * cache holds. */
static const char *const sql_get_cart =
    "SELECT c.cart_id::text, c.status, c.version, (extract(epoch FROM c.created_at) * 1000)::bigint,"
    " (extract(epoch FROM c.updated_at) * 1000)::bigint, i.sku, i.quantity"
    " FROM (SELECT * FROM carts WHERE user_id = $1 ORDER BY version DESC LIMIT 1) c"
    " LEFT JOIN cart_items i ON i.cart_id = c.cart_id";

/* Answers a GET with the user's latest cart: 200 (or 304) when it is active, else 404. */
static void answer_cart(read_ctx *rc, const cart *c, const char *json, size_t len)
{
    gw_thread *t = rc->t;
    h2o_req_t *req = rc->link.req;
    char *body = NULL, etag[32];

    if (c->state != CART_ACTIVE) {
        send_problem(t, req, "get_cart", rc->started, 404, "not-found", "this user has no active cart");
        return;
    }
    etag[0] = '"';
    memcpy(etag + 1 + cart_int_format(c->version, etag + 1), "\"", 2);
    if (rc->if_none_match[0] && strcmp(rc->if_none_match, etag) == 0) {
        cart_http_header(req, "ETag", etag);
        req->res.status = 304;
        req->res.reason = "Not Modified";
        h2o_send_inline(req, NULL, 0);
        observe(t, "get_cart", 304, rc->started);
        return;
    }
    if (json == NULL && (json = body = cart_to_json(c, &len)) == NULL) {
        send_problem(t, req, "get_cart", rc->started, 503, "unavailable", "out of memory");
        return;
    }
    cart_http_header(req, "ETag", etag);
    cart_http_send(req, 200, "application/json", json, len);
    observe(t, "get_cart", 200, rc->started);
    free(body);
}

static void on_cache_filled(void *arg, const redisReply *reply)
{
    gw_thread *t = arg;

    if (reply == NULL || reply->type == REDIS_REPLY_ERROR)
        cart_counter_inc(t->app->m_cache_fill_errors);
}

/* Puts a cart read from the shard into the cache, unless the cache has a newer one. */
static void fill_cache(gw_thread *t, const cart *c)
{
    char key[CART_CACHE_KEY_MAX], ver[24], ttl[16];
    char *json = cart_to_json(c, NULL);
    const char *argv[4] = {key, ver, json, ttl};
    size_t lens[4];

    if (json == NULL || cart_cache_key(c->user_id, key, sizeof key) == NULL) {
        free(json);
        return;
    }
    snprintf(ver, sizeof ver, "%" PRId64, c->version);
    snprintf(ttl, sizeof ttl, "%d", t->app->cfg->cache_ttl_s);
    for (int i = 0; i < 4; i++)
        lens[i] = strlen(argv[i]);
    gw_redis_script(t->redis, GW_SCRIPT_CACHE_PUT, on_cache_filled, t, 1, 3, argv, lens);
    free(json);
}

static void on_cart_rows(void *arg, const PGresult *res, const char *err)
{
    read_ctx *rc = arg;
    cart c;

    if (rc->link.req == NULL)
        goto out;
    if (res == NULL) {
        cart_log(CART_LOG_WARN, "shard read failed", CART_LS("user_id", rc->user_id), CART_LS("error", err), NULL);
        send_problem(rc->t, rc->link.req, "get_cart", rc->started, 503, "unavailable",
                     "the cart's shard is unreachable");
        goto out;
    }
    cart_init(&c, rc->user_id);
    cart_from_rows(res, 0, &c);
    answer_cart(rc, &c, NULL, 0);
    if (c.state != CART_NONE)
        fill_cache(rc->t, &c);
    cart_cleanup(&c);
out:
    read_done(rc);
}

static void read_shard(read_ctx *rc)
{
    const cart_config *cfg = rc->t->app->cfg;
    uint32_t part = cart_partition_of(rc->user_id, strlen(rc->user_id), cfg->partitions);
    uint32_t shard = cart_shard_of(part, cfg->partitions, cfg->nshards);
    const char *params[1] = {rc->user_id};

    if (gw_pg_query(rc->t->shards[shard], sql_get_cart, 1, params, on_cart_rows, rc) != 0) {
        send_problem(rc->t, rc->link.req, "get_cart", rc->started, 503, "unavailable",
                     "the cart's shard is unreachable");
        read_done(rc);
    }
}

static void on_cache_entry(void *arg, const redisReply *reply)
{
    read_ctx *rc = arg;
    gw_app *app = rc->t->app;
    cart c;

    if (rc->link.req == NULL) {
        read_done(rc);
        return;
    }
    if (reply && reply->type == REDIS_REPLY_STRING) {
        /* Strict: a corrupt, stale-format or foreign entry is a miss, never an error. */
        cart_init(&c, rc->user_id);
        if (cart_from_json(&c, reply->str, reply->len) == CART_OK) {
            cart_counter_inc(app->m_cache_hits);
            answer_cart(rc, &c, c.state == CART_ACTIVE ? reply->str : NULL, reply->len);
            cart_cleanup(&c);
            read_done(rc);
            return;
        }
        cart_cleanup(&c);
        cart_counter_inc(app->m_cache_corrupt);
    } else if (reply == NULL || reply->type != REDIS_REPLY_NIL) {
        cart_counter_inc(app->m_cache_errors);
    }
    cart_counter_inc(app->m_cache_misses);
    read_shard(rc);
}

static void handle_get(gw_thread *t, h2o_req_t *req, const gw_route *r, int64_t started)
{
    read_ctx *rc = calloc(1, sizeof *rc);
    h2o_iovec_t inm;
    char key[CART_CACHE_KEY_MAX];
    const char *argv[2] = {"GET", key};
    size_t lens[2] = {3, 0};

    if (rc == NULL) {
        send_problem(t, req, r->name, started, 503, "unavailable", "out of memory");
        return;
    }
    rc->t = t;
    rc->started = started;
    snprintf(rc->user_id, sizeof rc->user_id, "%s", r->user_id);
    inm = header(req, H2O_TOKEN_IF_NONE_MATCH);
    if (inm.base && inm.len < sizeof rc->if_none_match) {
        memcpy(rc->if_none_match, inm.base, inm.len);
        rc->if_none_match[inm.len] = '\0';
    }
    link_request(&rc->link, req);
    cart_cache_key(rc->user_id, key, sizeof key);
    lens[1] = strlen(key);
    if (gw_redis_cmd(t->redis, on_cache_entry, rc, 2, argv, lens) != 0) {
        cart_counter_inc(t->app->m_cache_misses); /* Redis is away: straight to the shard */
        read_shard(rc);
    }
}

/* --- operations endpoints --- */

static void handle_ops(gw_thread *t, h2o_req_t *req, const gw_route *r, int64_t started)
{
    gw_app *app = t->app;

    if (r->id == GW_R_HEALTHZ) {
        cart_http_send(req, 200, "text/plain; charset=utf-8", "ok\n", 3);
        observe(t, r->name, 200, started);
    } else if (r->id == GW_R_READYZ) {
        bool nats_ok = natsConnection_Status(app->nc) == NATS_CONN_STATUS_CONNECTED &&
                       natsConnection_Status(app->nc_sync) == NATS_CONN_STATUS_CONNECTED;
        bool redis_ok = atomic_load(&app->redis_ok);
        bool ready = nats_ok && redis_ok && !atomic_load(&app->stopping);
        char body[128];
        int n = snprintf(body, sizeof body, "{\"ready\":%s,\"nats\":%s,\"redis\":%s}\n", ready ? "true" : "false",
                         nats_ok ? "true" : "false", redis_ok ? "true" : "false");
        cart_http_send(req, ready ? 200 : 503, "application/json", body, (size_t)n);
        observe(t, r->name, ready ? 200 : 503, started);
    } else {
        size_t len = 0;
        char *text = cart_metrics_render(app->metrics, &len);
        if (text == NULL) {
            send_problem(t, req, r->name, started, 503, "unavailable", "out of memory");
            return;
        }
        cart_http_send(req, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
        free(text);
        observe(t, r->name, 200, started);
    }
}

/* Runs an API request that passed the guards. */
static void dispatch(gw_thread *t, h2o_req_t *req, const gw_route *r, int64_t started)
{
    switch (r->id) {
    case GW_R_GET_CART:
        handle_get(t, req, r, started);
        break;
    case GW_R_CREATE_CART:
    case GW_R_DELETE_CART:
    case GW_R_ADD_ITEM:
    case GW_R_SET_ITEM:
    case GW_R_REMOVE_ITEM:
    case GW_R_CHECKOUT:
        if (atomic_load(&t->app->stopping)) {
            send_problem(t, req, r->name, started, 503, "unavailable", "the gateway is shutting down");
            break;
        }
        handle_write(t, req, r, started);
        break;
    default:
        send_problem(t, req, r->name, started, 404, "not-found", "no such resource");
        break;
    }
}

/* --- rate limiting --- */

#define CLIENT_MAX 96

/* An API request waiting for the shared limiter's verdict. */
typedef struct guard {
    req_link link; /* link.req is NULL once the client has gone */
    gw_thread *t;
    gw_route route;
    int64_t started;
    char client[CLIENT_MAX];
} guard;

/* Who the limit applies to: the peer's address (the JWT subject when auth is on). */
static void client_of(h2o_req_t *req, char out[CLIENT_MAX])
{
    struct sockaddr_storage ss;
    char host[NI_MAXHOST];
    socklen_t len = req->conn->callbacks->get_peername(req->conn, (struct sockaddr *)&ss);
    size_t n = len ? h2o_socket_getnumerichost((struct sockaddr *)&ss, len, host) : SIZE_MAX;

    if (n == SIZE_MAX)
        snprintf(out, CLIENT_MAX, "ip:unknown");
    else
        snprintf(out, CLIENT_MAX, "ip:%.*s", (int)n, host);
}

/* Adds the RateLimit-* headers and lets the request through, or answers 429. */
static void apply_verdict(gw_thread *t, h2o_req_t *req, const gw_route *r, int64_t started, const gw_rate_verdict *v)
{
    char buf[24];

    snprintf(buf, sizeof buf, "%d", t->app->cfg->rate_limit_burst);
    cart_http_header(req, "RateLimit-Limit", buf);
    snprintf(buf, sizeof buf, "%" PRId64, v->remaining < 0 ? 0 : v->remaining);
    cart_http_header(req, "RateLimit-Remaining", buf);
    snprintf(buf, sizeof buf, "%" PRId64, (v->reset_ms + 999) / 1000);
    cart_http_header(req, "RateLimit-Reset", buf);
    if (v->allowed) {
        dispatch(t, req, r, started);
        return;
    }
    cart_counter_inc(t->app->m_rate_limited);
    snprintf(buf, sizeof buf, "%" PRId64, v->retry_after_ms < 1000 ? 1 : (v->retry_after_ms + 999) / 1000);
    cart_http_header(req, "Retry-After", buf);
    cart_http_problem(req, 429, "rate-limited", "too many requests: slow down and retry after Retry-After seconds");
    observe(t, r->name, 429, started);
}

static gw_rate_verdict local_verdict(gw_thread *t, const char *client)
{
    const cart_config *cfg = t->app->cfg;
    /* Each thread allows its share, so the process stays near the limit without Redis. */
    double rate = (double)cfg->rate_limit_rps / (double)(cfg->gateway_threads > 0 ? cfg->gateway_threads : 1);
    int64_t burst = cfg->rate_limit_burst / (cfg->gateway_threads > 0 ? cfg->gateway_threads : 1);

    cart_counter_inc(t->app->m_rate_local);
    return gw_local_limit(t->limiter, client, cart_mono_ms() * 1000, rate, burst < 1 ? 1 : burst);
}

/* Reads the script's {allowed, remaining, retry_after_ms, reset_ms}; false if it is not that. */
static bool parse_verdict(const redisReply *reply, gw_rate_verdict *v)
{
    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements != 4)
        return false;
    for (size_t i = 0; i < 4; i++)
        if (reply->element[i]->type != REDIS_REPLY_INTEGER)
            return false;
    v->allowed = reply->element[0]->integer == 1;
    v->remaining = reply->element[1]->integer;
    v->retry_after_ms = reply->element[2]->integer;
    v->reset_ms = reply->element[3]->integer;
    return true;
}

static void on_rate_verdict(void *arg, const redisReply *reply)
{
    guard *g = arg;
    gw_rate_verdict v;

    if (g->link.req) {
        if (!parse_verdict(reply, &v))
            v = local_verdict(g->t, g->client);
        apply_verdict(g->t, g->link.req, &g->route, g->started, &v);
    }
    unlink_request(&g->link);
    free(g);
}

/* The request's trace id: the client's traceparent, else its X-Request-Id (1-127 visible ASCII),
 * else a new UUID. */
static void request_id(h2o_req_t *req, char out[CART_TRACE_MAX + 1])
{
    h2o_iovec_t tp = header_by_name(req, "traceparent");
    h2o_iovec_t rid = header_by_name(req, "x-request-id");

    if (tp.base && gw_traceparent_valid(tp.base, tp.len)) {
        memcpy(out, tp.base, tp.len);
        out[tp.len] = '\0';
    } else if (rid.base && rid.len <= CART_TRACE_MAX && cart_valid_event_id(rid.base, rid.len)) {
        memcpy(out, rid.base, rid.len);
        out[rid.len] = '\0';
    } else {
        cart_uuid_v4(out);
    }
}

/* With AUTH_JWT_SECRET set: checks the bearer token and records its subject in r. Returns 0, or
 * -1 after answering 401 or 403. */
static int authenticate(gw_thread *t, h2o_req_t *req, gw_route *r, int64_t started)
{
    const char *secret = t->app->cfg->auth_jwt_secret;
    h2o_iovec_t auth = header(req, H2O_TOKEN_AUTHORIZATION);
    const char *token = NULL, *why = NULL;
    size_t token_len = 0;
    gw_jwt_result res;
    char challenge[192];

    if (secret == NULL || secret[0] == '\0')
        return 0;
    if (auth.base == NULL || !gw_jwt_bearer(auth.base, auth.len, &token, &token_len)) {
        cart_http_header(req, "WWW-Authenticate", "Bearer realm=\"cartshard\"");
        send_problem(t, req, r->name, started, 401, "unauthorized", "missing bearer token");
        return -1;
    }
    res = gw_jwt_verify(token, token_len, (const unsigned char *)secret, strlen(secret), cart_now_ms() / 1000,
                        r->subject, &why);
    if (res == GW_JWT_INTERNAL) {
        send_problem(t, req, r->name, started, 503, "unavailable", "the token could not be checked");
        return -1;
    }
    if (res != GW_JWT_OK) {
        cart_counter_inc(t->app->m_auth_failures);
        snprintf(challenge, sizeof challenge,
                 "Bearer realm=\"cartshard\", error=\"invalid_token\", error_description=\"%s\"",
                 why ? why : gw_jwt_result_name(res));
        cart_http_header(req, "WWW-Authenticate", challenge);
        send_problem(t, req, r->name, started, 401, "unauthorized", why ? why : gw_jwt_result_name(res));
        return -1;
    }
    /* POST /v1/carts names its user in the body: build_event checks that one. */
    if (r->user_id[0] && r->id != GW_R_CREATE_CART && strcmp(r->subject, r->user_id) != 0) {
        send_problem(t, req, r->name, started, 403, "forbidden", "the token's subject is not this user");
        return -1;
    }
    return 0;
}

/* Authenticates the request and counts it against its client's limit, then runs it (or answers
 * 401, 403 or 429). */
static void guard_request(gw_thread *t, h2o_req_t *req, gw_route *r, int64_t started)
{
    const cart_config *cfg = t->app->cfg;
    char client[CLIENT_MAX], key[CLIENT_MAX + 8], rate[24], burst[24];
    const char *argv[3] = {key, rate, burst};
    size_t lens[3];
    gw_rate_verdict v;
    guard *g;

    r->subject[0] = '\0';
    if (authenticate(t, req, r, started) != 0)
        return;
    if (cfg->rate_limit_rps <= 0) {
        dispatch(t, req, r, started);
        return;
    }
    if (r->subject[0])
        snprintf(client, sizeof client, "sub:%s", r->subject);
    else
        client_of(req, client);
    snprintf(key, sizeof key, "rl:{%s}", client);
    snprintf(rate, sizeof rate, "%d", cfg->rate_limit_rps);
    snprintf(burst, sizeof burst, "%d", cfg->rate_limit_burst);
    for (int i = 0; i < 3; i++)
        lens[i] = strlen(argv[i]);
    g = calloc(1, sizeof *g);
    if (g != NULL) {
        g->t = t;
        g->route = *r;
        g->started = started;
        memcpy(g->client, client, sizeof client);
        link_request(&g->link, req);
        if (gw_redis_script(t->redis, GW_SCRIPT_RATE_LIMIT, on_rate_verdict, g, 1, 2, argv, lens) == 0)
            return;
        unlink_request(&g->link);
        free(g);
    }
    v = local_verdict(t, client);
    apply_verdict(t, req, r, started, &v);
}

static int on_req(h2o_handler_t *self, h2o_req_t *req)
{
    gw_thread *t = ((gw_handler *)self)->t;
    int64_t started = cart_mono_ms();
    gw_route r;

    gw_route_match(req->method.base, req->method.len, req->path.base, req->path.len, &r);
    /* Every answer but the probes' and the metrics' names its request id. */
    if (r.id != GW_R_HEALTHZ && r.id != GW_R_READYZ && r.id != GW_R_METRICS) {
        request_id(req, r.request_id);
        cart_http_header(req, "X-Request-Id", r.request_id);
    }
    if (req->entity.len > t->app->cfg->max_body_bytes) {
        char detail[96];
        snprintf(detail, sizeof detail, "the body is over %zu bytes", t->app->cfg->max_body_bytes);
        send_problem(t, req, r.name, started, 413, "payload-too-large", detail);
        return 0;
    }
    switch (r.id) {
    case GW_R_HEALTHZ:
    case GW_R_READYZ:
    case GW_R_METRICS:
        handle_ops(t, req, &r, started);
        break;
    case GW_R_GET_CART:
    case GW_R_CREATE_CART:
    case GW_R_DELETE_CART:
    case GW_R_ADD_ITEM:
    case GW_R_SET_ITEM:
    case GW_R_REMOVE_ITEM:
    case GW_R_CHECKOUT:
        guard_request(t, req, &r, started);
        break;
    case GW_R_BAD_METHOD:
        cart_http_header(req, "Allow", r.allow);
        send_problem(t, req, r.name, started, 405, "method-not-allowed", "this method is not allowed here");
        break;
    case GW_R_BAD_ID:
        send_problem(t, req, r.name, started, 400, "invalid-field", r.detail);
        break;
    case GW_R_NOT_FOUND:
    default:
        send_problem(t, req, r.name, started, 404, "not-found", "no such resource");
        break;
    }
    return 0;
}

/* --- thread lifecycle --- */

static void close_walk(uv_handle_t *h, void *arg)
{
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

static void on_drain_tick(uv_timer_t *timer)
{
    gw_thread *t = timer->data;

    /* Keep-alive connections that have had their answer are not waited for, once a client that
     * keeps sending has had the time to send one more request: it is answered and its connection
     * closed after it. Cut at once, a request sent just then would be lost on the wire. */
    if (cart_mono_ms() - t->drain_started_ms >= DRAIN_IDLE_GRACE_MS)
        cart_http_server_close_idle(&t->http);
    /* Stop once the writes in flight are answered; they are bounded by the sync timeout and the
     * ack wait, and the deadline is a last resort. */
    if ((t->writes.count == 0 && cart_http_server_idle(&t->http)) || cart_mono_ms() > t->drain_deadline_ms)
        uv_stop(&t->loop);
}

/* When the drain ends with writes still waiting (its deadline passed): answers each, 202 when
 * JetStream stored it (it will be applied), else 503 (it may or may not have been stored). */
static void write_table_abort_all(gw_thread *t)
{
    for (size_t b = 0; b < GW_WRITE_BUCKETS; b++) {
        while (t->writes.buckets[b]) {
            gw_write *w = t->writes.buckets[b];
            if (w->acked) {
                w->timed_out = true;
                write_settle(w); /* its answer, or 202 */
                continue;
            }
            if (w->link.req)
                send_problem(t, w->link.req, w->route, w->started_ms, 503, "unavailable",
                             "the gateway is shutting down; retry with the same Idempotency-Key");
            write_finish(w);
        }
    }
}

/* Runs on the thread's loop when the process is stopping. */
static void begin_drain(gw_thread *t)
{
    if (t->draining)
        return;
    t->draining = true;
    t->drain_started_ms = cart_mono_ms();
    t->drain_deadline_ms = t->drain_started_ms + t->app->cfg->sync_timeout_ms + 6000;
    cart_http_server_shutdown(&t->http);
    uv_timer_start(&t->drain_timer, on_drain_tick, 0, 20);
}

static void *thread_main(void *arg)
{
    gw_thread *t = arg;

    uv_run(&t->loop, UV_RUN_DEFAULT);
    uv_timer_stop(&t->drain_timer);
    /* Whatever still waits is answered now, so that no request holds its connection open: the
     * writes here, the reads and rate checks as their clients below fail them (503). */
    write_table_abort_all(t);
    natsSubscription_Unsubscribe(t->reply_sub);
    for (uint32_t s = 0; s < t->app->cfg->nshards; s++) {
        gw_pg_free(t->shards[s]);
        t->shards[s] = NULL; /* a request read from here on gets 503 */
    }
    gw_redis_free(t->redis);
    t->redis = NULL;
    /* Then the connections are closed: h2o cannot release its context under live ones. */
    /* A second round for connections still closing when the first ran out (a TLS socket closes
     * in several steps, slowly under a sanitizer). */
    if (!cart_http_server_close_wait(&t->http, CLOSE_WAIT_MS) &&
        !cart_http_server_close_wait(&t->http, CLOSE_WAIT_MS)) {
        char open[768];
        cart_http_server_describe_open(&t->http, open, sizeof open);
        cart_log(CART_LOG_WARN, "connections still open at exit", CART_LI("thread", t->index), CART_LS("open", open),
                 NULL);
    }
    /* h2o closes its own handles: before the walk below closes whatever is left. */
    cart_http_server_cleanup(&t->http);
    uv_walk(&t->loop, close_walk, NULL);
    uv_run(&t->loop, UV_RUN_DEFAULT);
    return NULL;
}

int gw_thread_start(gw_thread *t)
{
    const cart_config *cfg = t->app->cfg;
    jsOptions jo;
    char err[256], app_name[96];

    uv_loop_init(&t->loop);
    pthread_mutex_init(&t->inbox_mu, NULL);
    uv_async_init(&t->loop, &t->wake, on_wake);
    t->wake.data = t;
    uv_timer_init(&t->loop, &t->drain_timer);
    t->drain_timer.data = t;
    if (cart_http_server_init(&t->http, &t->loop, cfg->gateway_host, cfg->gateway_port, true, t->app->tls, on_req,
                              sizeof(gw_handler), cfg->max_body_bytes, err, sizeof err) != 0) {
        cart_log(CART_LOG_ERROR, "http listener failed", CART_LS("error", err), NULL);
        return -1;
    }
    ((gw_handler *)t->http.handler)->t = t;
    jsOptions_Init(&jo);
    jo.PublishAsync.MaxPending = 65536;
    jo.PublishAsync.AckHandler = on_pub_ack;
    jo.PublishAsync.AckHandlerClosure = t;
    if (natsConnection_JetStream(&t->js, t->app->nc, &jo) != NATS_OK ||
        natsConnection_JetStream(&t->js_sync, t->app->nc_sync, &jo) != NATS_OK) {
        cart_log(CART_LOG_ERROR, "jetstream context failed", NULL);
        return -1;
    }
    snprintf(t->reply_subject, sizeof t->reply_subject, "%s.%s.%d", CART_REPLY_PREFIX, cfg->gateway_id, t->index);
    if (natsConnection_Subscribe(&t->reply_sub, t->app->nc_sync, t->reply_subject, on_reply, t) != NATS_OK ||
        natsSubscription_SetPendingLimits(t->reply_sub, -1, -1) != NATS_OK) {
        cart_log(CART_LOG_ERROR, "reply subscription failed", CART_LS("subject", t->reply_subject), NULL);
        return -1;
    }
    t->shards = calloc(cfg->nshards, sizeof *t->shards);
    if (t->shards == NULL)
        return -1;
    snprintf(app_name, sizeof app_name, "cart-gateway %s/%d", cfg->gateway_id, t->index);
    for (uint32_t s = 0; s < cfg->nshards; s++)
        if ((t->shards[s] = gw_pg_new(&t->loop, cfg->shard_dsns[s], app_name, t->app->m_pg_errors)) == NULL)
            return -1;
    t->redis = gw_redis_new(&t->loop, cfg, REDIS_TIMEOUT_MS, t->app->m_redis_errors);
    t->limiter = gw_local_limiter_new(LOCAL_LIMITER_CLIENTS);
    if (t->redis == NULL || t->limiter == NULL)
        return -1;
    if (pthread_create(&t->thread, NULL, thread_main, t) != 0)
        return -1;
    t->started = true;
    return 0;
}

void gw_thread_stop(gw_thread *t)
{
    if (!t->started)
        return;
    /* on_wake sees app->stopping and starts draining. */
    uv_async_send(&t->wake);
    pthread_join(t->thread, NULL);
    t->started = false;
    natsSubscription_Destroy(t->reply_sub);
    jsCtx_Destroy(t->js);
    jsCtx_Destroy(t->js_sync);
    free(t->shards);
    gw_local_limiter_free(t->limiter);
    pthread_mutex_destroy(&t->inbox_mu);
    uv_loop_close(&t->loop);
}
