/*
 * writes.c: the write path of a gateway thread, and its write table (gw_thread.writes).
 *
 * A write becomes one event (core/event_build.c), published asynchronously with its event_id as
 * Nats-Msg-Id. The request then waits in the write table (a gw_write) for two things, in either
 * order: JetStream's ack and, unless the client asked for respond-async, the worker's reply after
 * commit (on this thread's reply subject); both arrive as notes through inbox.c. No 2xx goes out
 * before the ack; a failed or timed-out ack is a 503. A repeat that JetStream recognises gets its
 * first answer from the shard instead (repeats.c).
 *
 * Loop thread only, each on its own gw_thread: the table is never locked.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cartshard/bus.h"
#include "cartshard/clock.h"
#include "cartshard/fmt.h"
#include "cartshard/log.h"
#include "cartshard/partition.h"
#include "cartshard/problem.h"
#include "event_build.h"
#include "idem.h"
#include "internal.h"
#include "request.h"

/* How soon an event JetStream answered "duplicate, sequence 0" is published again. */
#define REPUBLISH_MS 50

/* --- the write table --- */

static size_t bucket_of(const char *event_id)
{
    return cart_fnv1a32(event_id, strlen(event_id)) % GW_WRITE_BUCKETS;
}

/* The next write in the table after `from` (NULL: the first) with this event_id. Several writes with
 * one Idempotency-Key can wait on one thread at once: a worker's reply about the event is for all
 * of them, an ack for the one whose publish it answers. */
static gw_write *write_table_next(gw_thread *t, gw_write *from, const char *event_id)
{
    for (gw_write *w = from ? from->next : t->writes.buckets[bucket_of(event_id)]; w; w = w->next)
        if (strcmp(w->event_id, event_id) == 0)
            return w;
    return NULL;
}

/* A new write in flight for the event `ev` of request `req`, in the table; NULL when out of
 * memory. */
static gw_write *write_table_add(gw_thread *t, h2o_req_t *req, const gw_route *r, int64_t started, const cart_event *ev,
                                 bool async)
{
    gw_write *w = calloc(1, sizeof *w);

    if (w == NULL)
        return NULL;
    w->t = t;
    w->publish_id = ++t->publishes;
    snprintf(w->event_id, sizeof w->event_id, "%s", ev->event_id);
    snprintf(w->user_id, sizeof w->user_id, "%s", ev->user_id);
    snprintf(w->answer_user, sizeof w->answer_user, "%s",
             ev->type == CART_EV_MERGE_REQUESTED ? ev->merge.peer : ev->user_id);
    memcpy(w->fingerprint, ev->request_fingerprint, sizeof w->fingerprint);
    snprintf(w->request_id, sizeof w->request_id, "%s", r->request_id);
    w->route = r->name;
    w->started_ms = started;
    w->async = async;
    uv_timer_init(&t->loop, &w->timer);
    w->timer.data = w;
    gw_link_request(&w->link, req);
    w->next = t->writes.buckets[bucket_of(w->event_id)];
    t->writes.buckets[bucket_of(w->event_id)] = w;
    t->writes.count++;
    return w;
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
    free(w->payload);
    free(w);
}

/* Ends a write in flight: takes it out of the table and frees it once its timer is closed. */
static void write_finish(gw_write *w)
{
    write_table_remove(w->t, w);
    gw_unlink_request(&w->link); /* the request may outlive us */
    if (w->lookup)
        w->lookup->w = NULL; /* so does a lookup in flight */
    uv_timer_stop(&w->timer);
    uv_close((uv_handle_t *)&w->timer, on_write_timer_closed);
}

/* --- the answer a write has earned --- */

/* Sends the answer the worker decided (w->replied): a cart, 204 or a problem. A repeat's answer says
 * Idempotent-Replayed; a 201 says where the cart is. */
static void send_reply(gw_write *w, h2o_req_t *req, const char *location)
{
    gw_thread *t = w->t;

    if (w->dup_acked || w->replayed)
        cart_http_header(req, "Idempotent-Replayed", "true");
    if (w->reply_status == 201)
        cart_http_header(req, "Location", location);
    if (w->reply_status == 204)
        gw_send_empty(t, req, w->route, w->started_ms, 204, "No Content");
    else if (w->reply_status >= 400)
        gw_send_problem(t, req, w->route, w->started_ms, w->reply_status, gw_slug_for(w->reply_status, w->reply_detail),
                        w->reply_detail[0] ? w->reply_detail : NULL);
    else if (w->reply_body && w->reply_len)
        gw_send_cart(t, req, w->route, w->started_ms, w->reply_status, w->reply_body, w->reply_len, w->reply_version);
    else
        gw_send_empty(t, req, w->route, w->started_ms, w->reply_status, cart_http_reason(w->reply_status));
}

void gw_write_settle(gw_write *w)
{
    gw_thread *t = w->t;
    h2o_req_t *req = w->link.req;
    char location[CART_ID_MAX + 16], body[CART_EVENT_ID_MAX + 48];

    if (!w->acked)
        return;
    /* Whose cart the answer is: a merge's event is the guest's, its answer the user's cart. */
    snprintf(location, sizeof location, "/v1/carts/%s", w->answer_user);
    if (w->key_reused) {
        /* Whenever it comes, with or without respond-async: nothing of this request was applied. */
        if (req)
            gw_send_problem(t, req, w->route, w->started_ms, 422, CART_PROBLEM_KEY_REUSED, GW_IDEM_REUSED_DETAIL);
        write_finish(w);
        return;
    }
    if (w->replied && !w->async) {
        if (req)
            send_reply(w, req, location);
        write_finish(w);
        return;
    }
    if (w->dup_wait && w->async && !w->timed_out)
        return; /* its one look at the first answer is still out */
    if (w->async || w->timed_out) {
        if (req) {
            /* Accepted: stored durably, applied later (or not yet known). */
            if (w->async)
                cart_http_header(req, "Preference-Applied", "respond-async");
            cart_http_header(req, "Location", location);
            int n = snprintf(body, sizeof body, "{\"event_id\":\"%s\",\"status\":\"accepted\"}", w->event_id);
            cart_http_send(req, 202, "application/json", body, (size_t)n);
            gw_observe(t, w->route, 202, w->started_ms);
        }
        write_finish(w);
    }
}

static int publish_write(gw_write *w);
static void fail_publish(gw_write *w, const char *why);

static void on_write_timeout(uv_timer_t *timer)
{
    gw_write *w = timer->data;

    if (w->republish_due) {
        w->republish_due = false;
        if (publish_write(w) != 0)
            fail_publish(w, "the event bus refused the change again");
        else if (!w->async)
            gw_write_rearm(w, INT64_MAX); /* the sync wait goes on */
        return;
    }
    if (w->dup_wait && cart_mono_ms() < w->deadline_ms) {
        gw_repeat_lookup(w);
        return;
    }
    w->timed_out = true;
    gw_write_settle(w);
}

void gw_write_rearm(gw_write *w, int64_t ms)
{
    int64_t left = w->deadline_ms - cart_mono_ms();

    if (left < 0)
        left = 0;
    uv_timer_start(&w->timer, on_write_timeout, (uint64_t)(ms < left ? ms : left), 0);
}

void gw_write_table_abort_all(gw_thread *t)
{
    for (size_t b = 0; b < GW_WRITE_BUCKETS; b++) {
        while (t->writes.buckets[b]) {
            gw_write *w = t->writes.buckets[b];
            if (w->acked) {
                w->timed_out = true;
                gw_write_settle(w); /* its answer, or 202 */
                continue;
            }
            if (w->link.req)
                gw_send_problem(t, w->link.req, w->route, w->started_ms, 503, "unavailable",
                                "the gateway is shutting down; retry with the same Idempotency-Key");
            write_finish(w);
        }
    }
}

/* --- notes: JetStream's ack, the worker's reply --- */

/* Answers 503 to a write whose event JetStream did not confirm (the client retries it with the
 * same Idempotency-Key, which settles whether it was stored), and ends it. */
static void fail_publish(gw_write *w, const char *why)
{
    gw_thread *t = w->t;

    cart_counter_inc(t->app->m_publish_errors);
    cart_counter_inc(t->app->m_nats_errors);
    cart_log(CART_LOG_WARN, "event publish failed", CART_LS("event_id", w->event_id),
             CART_LS("request_id", w->request_id), CART_LS("error", why), NULL);
    if (w->link.req)
        gw_send_problem(t, w->link.req, w->route, w->started_ms, 503, "unavailable",
                        "the event bus did not acknowledge the change; retry with the same Idempotency-Key");
    write_finish(w);
}

static void on_ack_note(gw_write *w, const gw_note *n)
{
    if (n->publish_id != w->publish_id || w->acked)
        return; /* the ack of another write's publish of the event_id, or one already taken */
    if (n->ok && n->unsure && !w->replied) {
        /* nats-server 2.10 answers a copy of an event whose first publish is still being
         * replicated "duplicate, sequence 0". That does not say the event is stored: the first
         * publish can still be lost with a leader change (its id then stays taken for the
         * duplicate window). So the event is published again a moment later, until JetStream
         * names the sequence that holds it (or stores this copy), or until the publish's own
         * wait is over: then the write is answered 503, never 2xx (docs/internals/failover.md). */
        if (cart_mono_ms() + REPUBLISH_MS >= w->republish_until) {
            fail_publish(w, "JetStream kept answering \"duplicate, sequence 0\" (a copy still in flight)");
            return;
        }
        cart_counter_inc(w->t->app->m_publish_unsure);
        if (cart_log_enabled(CART_LOG_DEBUG))
            cart_log(CART_LOG_DEBUG, "event copy still in flight at JetStream: publishing again",
                     CART_LS("event_id", w->event_id), CART_LS("request_id", w->request_id), NULL);
        w->republish_due = true;
        uv_timer_start(&w->timer, on_write_timeout, REPUBLISH_MS, 0);
        return;
    }
    if (n->ok) {
        w->acked = true;
        w->dup_acked = n->dup;
        /* Which stream sequence holds the change: what an operator needs to trace it through
         * CARTS and the partition's committed offset. */
        if (cart_log_enabled(CART_LOG_DEBUG))
            cart_log(CART_LOG_DEBUG, "event stored", CART_LS("event_id", w->event_id),
                     CART_LS("request_id", w->request_id), CART_LI("seq", (long long)n->seq),
                     CART_LB("duplicate", n->dup), NULL);
        if (n->dup && !w->replied) {
            /* JetStream had the event already, so no worker will answer this publish: read the
             * first answer from the shard, waiting for it if the first attempt is still in flight
             * (respond-async: one look, for a key reused for another request). */
            w->dup_wait = true;
            gw_repeat_lookup(w);
            return;
        }
        gw_write_settle(w);
    } else if (!w->replied) {
        fail_publish(w, n->error);
    } else {
        /* The worker applied it: the store happened even if the ack got lost. */
        w->acked = true;
        gw_write_settle(w);
    }
}

static void on_reply_note(gw_write *w, const gw_note *n)
{
    if (w->replied)
        return;
    if (cart_fingerprints_clash(n->fingerprint, w->fingerprint)) {
        /* The key's first request was another one: the reply is about its outcome, or about the
         * refusal of a copy of ours. */
        w->key_reused = true;
        w->replied = true;
        w->dup_wait = false;
        gw_write_settle(w);
        return;
    }
    if (n->key_reused)
        return; /* the refusal of another request with our key: our own answer comes its own way */
    w->replied = true;
    w->dup_wait = false;
    w->replayed = n->replayed;
    w->reply_status = n->status;
    snprintf(w->reply_detail, sizeof w->reply_detail, "%s", n->detail);
    if (n->body_len > 0 && (w->reply_body = malloc(n->body_len)) != NULL) {
        memcpy(w->reply_body, n->body, n->body_len);
        w->reply_len = n->body_len;
        w->reply_version = n->version;
    }
    gw_write_settle(w);
}

void gw_write_table_note(gw_thread *t, const gw_note *n)
{
    /* write_finish unlinks but frees later, so `next` stays valid. */
    for (gw_write *w = write_table_next(t, NULL, n->event_id), *next; w; w = next) {
        next = write_table_next(t, w, n->event_id);
        if (n->kind == GW_NOTE_ACK)
            on_ack_note(w, n);
        else
            on_reply_note(w, n);
    }
}

/* --- the write path --- */

static gw_text text_of(h2o_iovec_t v)
{
    return (gw_text){v.base, v.len};
}

/* Builds the event of a write request from what h2o read of it. 0, or -1 with *why set. */
static int build_event(gw_thread *t, h2o_req_t *req, const gw_route *r, cart_event *ev, gw_refusal *why)
{
    char fresh_id[CART_EVENT_ID_MAX + 1];
    gw_event_input in;
    gw_jwt_keys keys;

    cart_uuid_v4(fresh_id);
    in.content_type = text_of(gw_header(req, H2O_TOKEN_CONTENT_TYPE));
    in.body = text_of(req->entity);
    in.idempotency_key = text_of(gw_header_by_name(req, "idempotency-key"));
    in.if_match = text_of(gw_header_list(req, H2O_TOKEN_IF_MATCH));
    in.now_ms = cart_now_ms();
    in.fresh_id = fresh_id;
    in.max_quantity = t->app->cfg->max_quantity;
    in.jwt_keys = gw_auth_keys(t, &keys) ? &keys : NULL;
    return gw_event_build(r, &in, ev, why);
}

/* How long a publish waits for JetStream's answer: at least 5 s, and longer than the sync wait. */
static int64_t publish_wait_ms(const cart_config *cfg)
{
    return cfg->sync_timeout_ms > 0 && cfg->sync_timeout_ms < 5000 ? 5000 : cfg->sync_timeout_ms + 1000;
}

/* Publishes the write's event (again, after an unsure ack); the ack comes back as a note. A write
 * that waits for its commit goes out, and gets its reply, on the connection that sends at once:
 * its reply subscription is then known to the server before the event is (a connection sends its
 * subscriptions again first when it comes back). 0, or -1 when nats.c would not take it. */
static int publish_write(gw_write *w)
{
    gw_thread *t = w->t;
    jsCtx *js = w->async ? t->js : t->js_sync;
    natsMsg *msg = NULL;
    jsPubOptions po;
    char publish_id[CART_INT_BUFSZ + 1];
    int rc = -1;

    publish_id[cart_int_format((int64_t)w->publish_id, publish_id)] = '\0';
    if (natsMsg_Create(&msg, w->subject, NULL, w->payload, (int)w->payload_len) != NATS_OK ||
        natsMsgHeader_Set(msg, CART_HDR_MSG_ID, w->event_id) != NATS_OK ||
        natsMsgHeader_Set(msg, GW_HDR_PUBLISH_ID, publish_id) != NATS_OK ||
        (!w->async && natsMsgHeader_Set(msg, CART_HDR_REPLY_TO, t->reply_subject) != NATS_OK))
        goto out;
    jsPubOptions_Init(&po);
    po.MaxWait = publish_wait_ms(t->app->cfg);
    if (js_PublishMsgAsync(js, &msg, &po) == NATS_OK)
        rc = 0;
out:
    natsMsg_Destroy(msg); /* NULL once JetStream took it */
    return rc;
}

void gw_handle_write(gw_thread *t, h2o_req_t *req, const gw_route *r, int64_t started)
{
    const cart_config *cfg = t->app->cfg;
    h2o_iovec_t prefer = gw_header_by_name(req, "prefer");
    bool async = gw_prefers_async(prefer.base, prefer.len);
    cart_event ev;
    char *payload = NULL;
    size_t len = 0;
    gw_write *w = NULL;
    gw_refusal why = {0}; /* status 0: nothing refused */

    if (build_event(t, req, r, &ev, &why) != 0)
        goto out;
    if (natsConnection_Status(async ? t->app->nc : t->app->nc_sync) != NATS_CONN_STATUS_CONNECTED) {
        gw_refuse(&why, 503, "unavailable", "the event bus is unreachable");
        goto out;
    }
    if (cart_event_encode(&ev, &payload, &len) != CART_OK) {
        gw_refuse(&why, 400, "invalid-request", "the change could not be encoded");
        goto out;
    }
    if ((w = write_table_add(t, req, r, started, &ev, async)) == NULL) {
        gw_refuse(&why, 503, "unavailable", "out of memory");
        goto out;
    }
    cart_bus_subject(w->subject, CART_SUBJ_EVENTS, cart_partition_of(ev.user_id, strlen(ev.user_id), cfg->partitions));
    w->payload = payload; /* the write owns it now */
    w->payload_len = len;
    payload = NULL;
    w->deadline_ms = started + cfg->sync_timeout_ms;
    w->republish_until = started + publish_wait_ms(cfg);
    if (publish_write(w) != 0) {
        write_finish(w);
        cart_counter_inc(t->app->m_publish_errors);
        cart_counter_inc(t->app->m_nats_errors);
        gw_refuse(&why, 503, "unavailable", "the event bus refused the change");
        goto out;
    }
    if (!w->async)
        gw_write_rearm(w, INT64_MAX);
out:
    free(payload);
    if (why.status != 0)
        gw_send_problem(t, req, r->name, started, why.status, why.slug, why.detail);
}
