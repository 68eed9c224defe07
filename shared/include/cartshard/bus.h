/*
 * bus.h: NATS and JetStream plumbing shared by both services (links nats.c).
 *
 * Names on the bus (docs/reference/events.md, Streams and subjects):
 *   stream CARTS          subjects carts.events.<partition>   the cart events
 *   stream CARTS_DLQ      subjects carts.dlq.<partition>      events that cannot be applied
 *   stream CARTS_CHANGES  subjects carts.changes.<partition>  applied changes (outbox relay)
 * Internal: a write that waits for its commit carries the header Cart-Reply-To with the subject
 * the worker answers on (CART_REPLY_PREFIX.<gateway-id>.<thread>); the answer is a cart_bus_reply.
 */
#ifndef CARTSHARD_BUS_H
#define CARTSHARD_BUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <nats/nats.h>

#include "cartshard/config.h"
#include "cartshard/event.h"
#include "cartshard/status.h"

#define CART_STREAM_EVENTS  "CARTS"
#define CART_STREAM_DLQ     "CARTS_DLQ"
#define CART_STREAM_CHANGES "CARTS_CHANGES"
#define CART_SUBJ_EVENTS    "carts.events"
#define CART_SUBJ_DLQ       "carts.dlq"
#define CART_SUBJ_CHANGES   "carts.changes"
#define CART_REPLY_PREFIX   "_CARTSHARD.reply"
#define CART_HDR_MSG_ID     "Nats-Msg-Id"
#define CART_HDR_REPLY_TO   "Cart-Reply-To"
#define CART_HDR_ERROR      "Cart-Error"
/* The headers of a worker's reply (cart_bus_reply). */
#define CART_HDR_EVENT_ID    "Cart-Event-Id"
#define CART_HDR_STATUS      "Cart-Status"
#define CART_HDR_DETAIL      "Cart-Detail"
#define CART_HDR_VERSION     "Cart-Version"
#define CART_HDR_REPLAYED    "Cart-Replayed"
#define CART_HDR_FINGERPRINT "Cart-Fingerprint"
#define CART_HDR_PROBLEM     "Cart-Problem"
/* Cart-Problem's value on the refusal of an event_id reused for another request. */
#define CART_PROBLEM_KEY_REUSED "idempotency-key-reused"
/* Longest subject this project builds (prefix, a 64-character id, numbers). */
#define CART_SUBJECT_MAX 160

/* What the connection tells its listener, on one of nats.c's threads. */
typedef enum cart_bus_event {
    CART_BUS_RECONNECTED = 1, /* back after a disconnect: subscriptions may have missed messages */
    CART_BUS_ASYNC_ERROR      /* `err` is NATS_MISMATCH, NATS_MISSED_HEARTBEAT, NATS_SLOW_CONSUMER... */
} cart_bus_event;

typedef void (*cart_bus_listener)(cart_bus_event ev, natsStatus err, void *ud);

/* Sets the listener of the process's connection (call before cart_bus_connect). It must be quick
 * and thread-safe: it runs on nats.c's threads. */
void cart_bus_set_listener(cart_bus_listener fn, void *ud);

/* Flags of cart_bus_connect. */
enum {
    /* Each message goes to the socket as it is published. By default nats.c wakes its flusher
     * thread, which waits a millisecond for more before it writes: cheaper in bursts, but a
     * millisecond on every hop of a request that waits for its answer. The connection's
     * reconnects and errors are logged, not passed to the listener: it is a second connection of
     * the process, for that latency-bound traffic only. */
    CART_BUS_SEND_AT_ONCE = 1u << 0,
    /* Return at once when no server answers yet, and connect in the background (logged when it
     * does). Without it the call waits until a server answers: a worker has nothing to do before. */
    CART_BUS_IN_BACKGROUND = 1u << 1,
};

/*
 * Connects to cfg->nats_url (comma-separated URLs allowed) as `client_name` (which must outlive
 * the connection), and reconnects forever in the background once connected. When no server
 * answers at start it keeps trying, in this call or, with CART_BUS_IN_BACKGROUND, in the
 * background. `flags`: CART_BUS_SEND_AT_ONCE, CART_BUS_IN_BACKGROUND. On CART_OK *nc is the caller's
 * (natsConnection_Destroy). CART_ERR_UNAVAILABLE with a reason in `err` if the options are
 * refused. Disconnects and reconnects are logged.
 */
cart_status cart_bus_connect(const cart_config *cfg, const char *client_name, unsigned flags, natsConnection **nc,
                             char *err, size_t errlen);

/*
 * Sends what `nc` still buffers (waiting up to flush_ms for the server to confirm it) and destroys
 * it. Without a connection at that moment nothing could be sent, so it does not wait. NULL is
 * ignored. Blocking: never on an event-loop thread.
 */
void cart_bus_close(natsConnection *nc, int64_t flush_ms);

/*
 * Creates the three streams if missing, or updates their settings (replicas excepted) if they
 * exist: file storage, cfg->stream_replicas replicas, a 2-minute duplicate window on CARTS.
 * Blocking (JetStream API requests): never call it on an event-loop thread. CART_OK, or
 * CART_ERR_UNAVAILABLE with the reason in `err`.
 */
cart_status cart_bus_ensure_streams(jsCtx *js, const cart_config *cfg, char *err, size_t errlen);

/* Writes "<prefix>.<partition>" into buf; returns buf. */
const char *cart_bus_subject(char buf[CART_SUBJECT_MAX], const char *prefix, uint32_t partition);

/* Parses the partition token at the end of `subject` (after prefix and a dot). CART_OK and
 * *partition, or CART_ERR_INVALID if the subject is not "<prefix>.<digits>" with a value below
 * `partitions`. */
cart_status cart_bus_subject_partition(const char *subject, const char *prefix, uint32_t partitions,
                                       uint32_t *partition);

/* The longest detail a reply carries. */
#define CART_REPLY_DETAIL_MAX 127

/* A worker's answer to a gateway waiting for an event's commit, sent to the event's Cart-Reply-To
 * subject: headers Cart-Event-Id, Cart-Status, Cart-Detail (when not empty), Cart-Version (with
 * a cart), Cart-Replayed: true (a repeat answered with the first outcome), Cart-Fingerprint (when
 * the first outcome has one) and Cart-Problem: idempotency-key-reused (a refused reuse); the
 * message's data is the cart as the event left it (cart_to_json), or empty for none. Cart-Version
 * is the cart's "version", so that a gateway has the ETag without parsing the cart. */
typedef struct cart_bus_reply {
    /** The event it answers. */
    char event_id[CART_EVENT_ID_MAX + 1];
    /** The HTTP status the worker decided, 200..599. */
    int status;
    /** The problem detail, or "". */
    char detail[CART_REPLY_DETAIL_MAX + 1];
    /** The version of the cart in the data; 0 when there is none, or the header is missing (a
     * worker of an earlier release). */
    int64_t version;
    /** The event_id had an outcome already, and this is it again: nothing was applied. */
    bool replayed;
    /** The event_id's first outcome was for another request_fingerprint than this event's: the
     * status is 422 and nothing was applied or recorded. */
    bool key_reused;
    /** The request_fingerprint recorded with the event_id's first outcome (this event's own when
     * it was applied now), or "" for none (the first had none, or a worker of an earlier
     * release). */
    char fingerprint[CART_FINGERPRINT_MAX + 1];
} cart_bus_reply;

/*
 * Creates the reply `r` to `subject`, carrying `cart_json` (NULL for no cart); r->version is sent
 * only with a cart. Everything is copied. On NATS_OK *msg is the caller's (natsMsg_Destroy);
 * otherwise *msg is untouched.
 */
natsStatus cart_bus_reply_new(natsMsg **msg, const char *subject, const cart_bus_reply *r, const char *cart_json);

/*
 * Reads the headers of a reply (`msg` borrowed; the cart is its data). CART_OK and *r, or
 * CART_ERR_INVALID when Cart-Event-Id or Cart-Status is missing or the status is not a number in
 * 200..599 (*r is then unspecified). Values too long for *r are truncated, but a Cart-Fingerprint
 * too long to be one is read as none. Headers a worker of an earlier release does not send read
 * as their defaults (0, false, "").
 */
cart_status cart_bus_reply_read(natsMsg *msg, cart_bus_reply *r);

#endif
