/*
 * internal.h: what the files of a gateway loop thread share; main.c sees only gateway.h.
 *
 * A thread's work, file by file:
 *   server.c     the thread's life: start, run, drain, stop
 *   front.c      every request's way in: route, request id, auth, rate limit, dispatch; the
 *                request's headers and the link that outlives it
 *   writes.c     the write path: event, publish, the write table, the answer a write has earned
 *   repeats.c    repeated writes: the first answer, read from the owning shard
 *   inbox.c      notes from nats.c's threads (acks, worker replies), handed to the loop
 *   reads.c      the read path: the cache, then the owning shard
 *   ops.c        /healthz, /readyz, /metrics
 *   responses.c  answers: problem+json, carts and their ETag, the request metrics
 *
 * Everything here runs on a loop thread, on that thread's own gw_thread, unless it says otherwise;
 * nothing in it blocks.
 */
#ifndef GW_INTERNAL_H
#define GW_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>
#include <nats/nats.h>

#include "cartshard/bus.h"
#include "cartshard/cart.h"
#include "cartshard/event.h"
#include "cartshard/http.h"
#include "gateway.h"
#include "jwt.h"
#include "route.h"

/* --- front.c: the request --- */

/* The h2o handler of a thread's listener: h2o allocates it, server.c sets `t`. */
typedef struct gw_handler {
    h2o_handler_t super; /* h2o's part; first, so h2o's pointer is ours */
    gw_thread *t;        /* the thread whose listener this is */
} gw_handler;

/* Ties a context that outlives its request (a query or a Redis reply in flight) to the request:
 * `req` becomes NULL when h2o disposes of the request (the client went away). The slot lives in
 * the request's pool; unlink before freeing the context. */
typedef struct gw_req_link {
    h2o_req_t *req;            /* the request, or NULL once h2o disposed of it */
    struct gw_req_link **slot; /* in req's pool: points back here while linked; NULL when not */
} gw_req_link;

/* Links `l` to `req` (allocates the slot in req's pool). */
void gw_link_request(gw_req_link *l, h2o_req_t *req);

/* Unlinks `l`, so that disposing of the request no longer touches it. Idempotent. */
void gw_unlink_request(gw_req_link *l);

/* The value of the request's header `token`, or a zero iovec; points into the request. */
h2o_iovec_t gw_header(h2o_req_t *req, const h2o_token_t *token);

/* All the field lines of the list header `token` (If-Match, If-None-Match), joined with ", " in
 * the request's pool when there are several (RFC 9110 section 5.3), or a zero iovec. */
h2o_iovec_t gw_header_list(h2o_req_t *req, const h2o_token_t *token);

/* The value of the request's header `name` (lower case), or a zero iovec; points into the request. */
h2o_iovec_t gw_header_by_name(h2o_req_t *req, const char *name);

/* h2o's callback for every request on the thread's listener (gw_handler). Always 0. */
int gw_front_on_req(h2o_handler_t *self, h2o_req_t *req);

/* Adds the request id and the CORS grant to an answer h2o made on its own (a body over the limit):
 * cart_http_own_fn, with the gw_thread as arg. */
void gw_front_on_own_answer(void *arg, h2o_req_t *req);

/* Fills *keys with the keys bearer tokens are checked with (AUTH_JWT_SECRET, the thread's current
 * AUTH_JWKS_FILE keys, AUTH_ISSUER, AUTH_AUDIENCE); they stay valid until the thread's next call.
 * False when auth is off. The bearer token and a merge's from_token are checked alike. */
bool gw_auth_keys(gw_thread *t, gw_jwt_keys *keys);

/* --- responses.c: answers --- */

#define GW_ETAG_MAX 32 /* room for an ETag: a cart version in quotes, NUL-terminated */

/* Counts an answer in the request metrics, by route (a string constant) and status, with its
 * latency since `started_ms` (cart_mono_ms). */
void gw_observe(gw_thread *t, const char *route, int status, int64_t started_ms);

/* Answers with a problem+json document (and Retry-After on 503 and 429), and counts it. `slug` and
 * `detail` may be NULL. */
void gw_send_problem(gw_thread *t, h2o_req_t *req, const char *route, int64_t started, int status, const char *slug,
                     const char *detail);

/* Answers with a status and no body, and counts it. `reason` must outlive the request. */
void gw_send_empty(gw_thread *t, h2o_req_t *req, const char *route, int64_t started, int status, const char *reason);

/* Answers with a cart document body[0..len) (copied) and its ETag, and counts it. The ETag is made
 * from `version` when it is positive, else from the document's "version" (parsed). */
void gw_send_cart(gw_thread *t, h2o_req_t *req, const char *route, int64_t started, int status, const char *body,
                  size_t len, int64_t version);

/* The problem type of a refusal the worker decided, by status and its detail (a 422's type:
 * currency-mismatch when the detail starts with CART_CURRENCY_MISMATCH, else limit-exceeded);
 * NULL for a status it never uses. `detail` may be NULL. */
const char *gw_slug_for(int status, const char *detail);

/* Writes the ETag of cart version `version` ("\"<version>\"") into `out`, NUL-terminated. */
void gw_etag(int64_t version, char out[GW_ETAG_MAX]);

/* --- writes.c and repeats.c: writes in flight --- */

/* The header that tells the acks of a thread's publishes apart: several writes with one
 * Idempotency-Key publish one event_id (Nats-Msg-Id), and each must learn what JetStream said to
 * its own publish. The decimal gw_write.publish_id; stored with the event, read by nobody else. */
#define GW_HDR_PUBLISH_ID "Cart-Publish-Id"

typedef struct gw_repeat_query gw_repeat_query;

/* A write in flight: waiting for its ack and reply, in the thread's write table. Owned by the
 * table from writes.c's handle_write until gw_write_finish; freed once its timer is closed. */
struct gw_write {
    gw_thread *t;                         /* the thread whose table holds it */
    char event_id[CART_EVENT_ID_MAX + 1]; /* the event's id: the table's key */
    char user_id[CART_ID_MAX + 1];        /* whose cart the event is for (a merge's: the guest's) */
    char answer_user[CART_ID_MAX + 1];    /* whose cart the answer is (a merge's: the user's) */
    char request_id[CART_TRACE_MAX + 1];  /* the request's trace id, for the logs */
    gw_req_link link;                     /* link.req is NULL once the client has gone */
    const char *route;                    /* the route's name, for the metrics */
    int64_t started_ms;                   /* when the request came in (monotonic) */
    bool async;                           /* Prefer: respond-async */
    bool acked;                           /* JetStream stored the event */
    bool timed_out;                       /* the sync wait ran out */
    bool replied;                         /* the reply_* fields (or key_reused) hold the answer */
    bool dup_wait;                        /* a repeat: looking up the first answer in processed_events */
    bool dup_acked;                       /* JetStream had the event_id: another request's event holds it */
    bool replayed;                        /* the worker answered with an earlier message's first outcome */
    bool key_reused;                      /* the key's first request had another fingerprint: 422 */
    bool republish_due;                   /* the timer publishes the event again (an unsure ack) */
    int64_t deadline_ms;                  /* when the sync wait runs out (monotonic) */
    int64_t republish_until;              /* after this, an unsure ack is a failed publish (monotonic) */
    char subject[CART_SUBJECT_MAX];       /* where the event goes: carts.events.<partition> */
    char *payload;                        /* the encoded event (owned), kept to publish it again */
    size_t payload_len;                   /* the length of payload */
    gw_repeat_query *lookup;              /* in flight; NULL when none */
    int reply_status;                     /* the HTTP status of the answer */
    char reply_detail[128];               /* its problem detail, or empty */
    char *reply_body;                     /* its cart JSON (owned), or NULL */
    size_t reply_len;                     /* the length of reply_body */
    int64_t reply_version;                /* reply_body's cart version; 0 when unknown */
    uv_timer_t timer;                     /* the sync wait, the repeat's polls, a publish again */
    gw_write *next;                       /* hash chain in the write table */
    /* The request's fingerprint (its event's request_fingerprint); "" without an Idempotency-Key. */
    char fingerprint[CART_FINGERPRINT_MAX + 1];
    /* Its publishes' Cart-Publish-Id: unique on its thread (gw_thread.publishes). */
    uint64_t publish_id;
};

/* A processed_events query of a repeated write (repeats.c); outlives the write if need be. */
struct gw_repeat_query {
    gw_write *w;    /* NULL once the write is gone */
    uint32_t shard; /* the shard asked (an index of gw_thread's shards) */
    bool elsewhere; /* asked for the event_id under another user (repeats.c) */
};

/* Runs a write request that passed the front: builds its event and publishes it, then waits in
 * the write table; or answers at once (4xx, 503). */
void gw_handle_write(gw_thread *t, h2o_req_t *req, const gw_route *r, int64_t started);

/* Sends the answer a write has earned, if it has earned one yet (and then finishes it). */
void gw_write_settle(gw_write *w);

/* Runs the write's timer in `ms`, or at its deadline if that is sooner. */
void gw_write_rearm(gw_write *w, int64_t ms);

/* Hands a note from the inbox to the writes in the table with its event_id: an ack to the one
 * whose publish it answers, a worker's reply to every one. */
void gw_write_table_note(gw_thread *t, const gw_note *n);

/* When the drain ends with writes still waiting (its deadline passed): answers each, 202 when
 * JetStream stored it (it will be applied), else 503 (it may or may not have been stored). */
void gw_write_table_abort_all(gw_thread *t);

/* A repeated write (JetStream had its event_id already): looks its first answer up in the
 * shard's processed_events, again every few ms until it is there or the sync wait runs out (a
 * write with respond-async looks once), and compares the fingerprints: another request's key is
 * answered 422. Nothing when a lookup is in flight or the answer is known. */
void gw_repeat_lookup(gw_write *w);

/* --- inbox.c: notes from nats.c's threads --- */

typedef enum gw_note_kind {
    GW_NOTE_ACK,  /* JetStream's answer to a publish */
    GW_NOTE_REPLY /* a worker's reply, after its commit */
} gw_note_kind;

/* Something nats.c's threads tell the loop. Allocated on a nats.c thread, owned by the inbox
 * until the loop takes it, freed by the loop. */
struct gw_note {
    gw_note_kind kind;                    /* which of the two */
    char event_id[CART_EVENT_ID_MAX + 1]; /* the event it is about */
    bool ok;                              /* GW_NOTE_ACK: stored by JetStream */
    bool dup;         /* GW_NOTE_ACK: JetStream already had this event_id (a repeated Idempotency-Key) */
    bool unsure;      /* GW_NOTE_ACK: "duplicate, sequence 0": a copy is still being replicated */
    uint64_t seq;     /* GW_NOTE_ACK: the stream sequence JetStream stored it at */
    int status;       /* GW_NOTE_REPLY: the HTTP status the worker decided */
    char detail[128]; /* GW_NOTE_REPLY: the problem detail, or empty */
    char *body;       /* GW_NOTE_REPLY: the cart JSON (owned), or NULL */
    size_t body_len;  /* the length of body */
    int64_t version;  /* GW_NOTE_REPLY: the cart's version (Cart-Version); 0 when unknown */
    bool replayed;    /* GW_NOTE_REPLY: the first outcome again (Cart-Replayed) */
    bool key_reused;  /* GW_NOTE_REPLY: a copy with another fingerprint, refused (Cart-Problem) */
    char error[128];  /* GW_NOTE_ACK: why JetStream refused, or empty */
    gw_note *next;    /* the inbox's list */
    /* GW_NOTE_REPLY: the fingerprint of the event_id's first outcome (Cart-Fingerprint), or "". */
    char fingerprint[CART_FINGERPRINT_MAX + 1];
    /* GW_NOTE_ACK: the Cart-Publish-Id of the publish it answers: for that write only. */
    uint64_t publish_id;
};

/* Makes the thread's inbox and its wake handle (on t->loop). */
void gw_inbox_init(gw_thread *t);

/* Destroys the inbox's lock; after the loop has closed the wake handle. */
void gw_inbox_cleanup(gw_thread *t);

/* JetStream's ack handler (jsOptions.PublishAsync.AckHandler; closure: the gw_thread). Runs on
 * a nats.c thread; takes `msg`. */
void gw_inbox_on_pub_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure);

/* The handler of the thread's reply subscription (closure: the gw_thread). Runs on a nats.c
 * thread; takes `msg`. */
void gw_inbox_on_reply(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure);

/* --- reads.c: the read path --- */

/* Runs a GET of a cart that passed the front: the cache, then on a miss the owning shard. */
void gw_handle_get(gw_thread *t, h2o_req_t *req, const gw_route *r, int64_t started);

/* The read connection to the shard that holds `user_id`'s carts; NULL once the thread stopped
 * (gw_pg_query then refuses). */
gw_pg *gw_shard_of(gw_thread *t, const char *user_id);

/* --- ops.c --- */

/* Answers GET /healthz, /readyz or /metrics. */
void gw_handle_ops(gw_thread *t, h2o_req_t *req, const gw_route *r, int64_t started);

/* --- server.c --- */

/* Starts the thread's drain, once: stop accepting, finish the requests in flight, then stop the
 * loop (on its deadline at the latest). Runs on the thread's loop when the process is stopping. */
void gw_begin_drain(gw_thread *t);

#endif
