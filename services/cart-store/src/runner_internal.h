/*
 * runner_internal.h: what the files of a shard runner share (cart-store's private header; the
 * process-wide part is worker.h). A runner is one thread applying the events of the partitions it
 * owns on one PostgreSQL shard; its code is split by concern:
 *
 *   intake.c       messages from nats.c's threads into the per-partition queues, gap detection
 *   ownership.c    the shard session, partition locks, shares by rank, acquire/release, resyncs
 *   apply.c        a batch: decode, one transaction with its redo loop, the working set of carts
 *   relay.c        what goes out after a commit: cache, replies, dead letters, change notices
 *                  and their acks, the outbox sweep; the held acks of committed events
 *   maintenance.c  idle-cart expiry, dedup pruning, lag, the partition watchdog
 *   runner.c       the runner thread's loop, cs_worker_start/stop
 *
 * Threads: every function here runs on the runner thread, except cs_intake_on_event,
 * cs_intake_on_sub_complete and cs_relay_on_change_ack, which nats.c calls on its own threads.
 * What those touch is guarded: the queues and offsets by cs_shard.mu, the unacked notices by
 * cs_shard.acks_mu (each field below says which).
 */
#ifndef CS_RUNNER_INTERNAL_H
#define CS_RUNNER_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>
#include <nats/nats.h>

#include "cartshard/cart.h"
#include "cartshard/event.h"
#include "cartshard/metrics.h"
#include "ack_run.h"
#include "batch.h"
#include "redis_writer.h"
#include "store.h"
#include "worker.h"
#include "working_set.h"

typedef struct cs_partition cs_partition;

/* One queued message. */
typedef struct cs_qmsg {
    /** The delivery; owned by the queue until taken into a batch (cs_item.msg). */
    natsMsg *msg;
    /** Its stream sequence. */
    uint64_t seq;
    /** The next message of the partition, in stream order. */
    struct cs_qmsg *next;
} cs_qmsg;

/* The closure of one subscription; freed by nats.c's on-complete callback, so a late callback of
 * an old subscription never touches freed memory. */
typedef struct cs_binding {
    /** The partition the subscription feeds. */
    cs_partition *part;
    /** False once the partition was released: deliveries are then dropped. Guarded by the
     * runner's mutex. */
    bool active;
} cs_binding;

/* One partition of the shard, owned here or not. */
struct cs_partition {
    /** The partition's number (cart_partition_of). */
    uint32_t id;
    /** The runner it belongs to. */
    cs_shard *shard;
    /** This runner holds its lock and consumes it (runner thread only). */
    bool owned;
    /** Events of the partition not yet committed, while owned here (gauge). */
    cart_metric *lag;
    /** Its JetStream consumer while owned; NULL otherwise. */
    natsSubscription *sub;
    /** The subscription's closure; freed by cs_intake_on_sub_complete. */
    cs_binding *binding;
    /* Guarded by the runner's mutex: */
    /** The greatest stream sequence queued or committed: anything at or below is a redelivery. */
    uint64_t max_seen;
    /** The offset this owner committed. */
    uint64_t committed;
    /** The consumer's delivery sequence of the last message seen. */
    uint64_t last_delivery;
    /** A delivery went missing: restart from the committed offset. */
    bool broken;
    /** The queue, in stream order. */
    cs_qmsg *head, *tail;
    /** Messages queued. */
    size_t len;
    /* The watchdog's (runner thread only): */
    /** The committed offset at its last look. */
    uint64_t watch_committed;
    /** Since when (monotonic ms) the stream has held events beyond it without the offset moving;
     * 0: not behind. */
    int64_t behind_since;
    /* The held acknowledgement (runner thread only; see ack_run.h): */
    /** The last committed message not acknowledged yet: its ack (AckAll) covers the run. Owned by
     * the partition; acknowledged or destroyed before its subscription goes, since a message
     * points at its subscription without holding it. NULL for none. */
    natsMsg *held_ack;
    /** The committed events that ack covers, and since when. */
    cs_ack_run ack_run;
};

/* A change notice sent and not yet acknowledged by JetStream. */
typedef struct cs_unacked_notice {
    /** Its Nats-Msg-Id (cart_change_msg_id). */
    char msg_id[CART_CHANGE_MSG_ID_MAX + 1];
    /** Its outbox row. */
    int64_t id;
    /** JetStream answered it (stored or not). */
    bool done;
} cs_unacked_notice;

/* One shard runner. */
struct cs_shard {
    /** The process-wide state. */
    cs_worker *w;
    /** The shard's index in cfg->shard_dsns. */
    uint32_t index;
    /** The shard's partition range, first..last. */
    uint32_t first, last;
    /** The shard's partitions, last - first + 1 of them. */
    cs_partition *parts;
    /** The runner thread, and whether it was started. */
    pthread_t thread;
    bool started;
    /** Guards the queues and offsets of `parts` (see cs_partition); `cv` wakes the runner. */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    /** The shard session (holds the group lock and the partition locks); NULL while there is none.
     * Runner thread only. */
    PGconn *pg;
    /** The JetStream context; its async publish acks call cs_relay_on_change_ack. */
    jsCtx *js;
    /** A session is open (for /readyz; read by other threads). */
    atomic_bool session_ok;
    /** A session was open at least once: the shard's DSN, credentials and schema work (for
     * /readyz; set once by the runner, read by other threads). */
    atomic_bool session_once;
    /** Published outbox ids to delete (see OUTBOX_DELETE_MIN in relay.c); runner thread only. */
    int64_t *outbox_done;
    size_t noutbox_done, outbox_cap;
    /** Guards the unacked notices and `acked`: filled by the runner, emptied by nats.c's ack
     * handler. */
    pthread_mutex_t acks_mu;
    /** Change notices sent and not yet acknowledged by JetStream, oldest first
     * (unacked[unacked_head..nunacked)). */
    cs_unacked_notice *unacked;
    size_t unacked_head, nunacked, unacked_cap;
    /** The outbox ids of the notices JetStream stored, which the runner then deletes. */
    int64_t *acked;
    size_t nacked, acked_cap;
    /** At exit: no notice was left unacked, so no ack handler can run any more. */
    bool acks_settled;
    /** When (monotonic ms) the oldest held ack of the partitions falls due; INT64_MAX for none,
     * and it may be early (runner thread only). */
    int64_t ack_due_ms;
    /** A consumer deletion failed in this round of releases (runner thread only). */
    bool bus_unanswered;
    /** The runner's writer of the Redis cart cache. */
    cs_redis_writer *redis_writer;
    /** The writes of the batch being applied. */
    cs_batch batch;
    /** Their rendered parameters. */
    cs_batch_sql sql;
    /** "shard-<index>", for logs. */
    char name[32];
};

/* One event of a batch, with what applying it produced. */
typedef struct cs_item {
    /** The delivery; owned by the item until cs_apply_free_items. */
    natsMsg *msg;
    /** Its partition. */
    cs_partition *part;
    /** Its stream sequence. */
    uint64_t seq;
    /** The event, once decoded. */
    cart_event ev;
    bool decoded;
    /** Non-empty: goes to the DLQ, for this reason. */
    char dlq_reason[320];
    /** A decoded event the shard would not store (it goes to the DLQ too). */
    bool refused;
    /** The answer: an HTTP status, and its detail. */
    int http_status;
    char detail[128];
    /** The cart after this event, for the reply; NULL for none. Owned by the item. */
    char *cart_json;
    /** That cart's version (for the reply's Cart-Version). */
    int64_t cart_version;
    /** It carries Cart-Reply-To: only then is cart_json rendered. */
    bool wants_reply;
    /** It changed its cart. */
    bool changed;
    /** The change notice (outbox payload); owned by the item. */
    char *change_json;
    /** Its outbox record in the shard's batch, and the row's id once written. */
    size_t outbox_at;
    int64_t outbox_id;
    /** A merge's next step (docs/internals/merge.md): the event this one sends on, through the
     * outbox, to the other user's partition; NULL for none. Owned by the item. */
    char *saga_json;
    /** Its subject (carts.events.<partition>), its Nats-Msg-Id (its event_id), its outbox record
     * in the shard's batch and the row's id once written. */
    char saga_subject[CART_SUBJECT_MAX];
    char saga_msg_id[CART_EVENT_ID_MAX + 1];
    size_t saga_outbox_at;
    int64_t saga_outbox_id;
    /** Answered, not applied: its event_id had an answer already (in processed_events, or earlier
     * in this batch). */
    bool duplicate;
    /** A duplicate answered with the first outcome for another message (Cart-Replayed); false for
     * the very message that was answered, delivered again. */
    bool replayed;
    /** A duplicate whose request_fingerprint differs from the first's: refused with 422, nothing
     * recorded (Cart-Problem). */
    bool key_reused;
    /** The request_fingerprint recorded with the event_id's first outcome ("" for none), for the
     * reply's Cart-Fingerprint. */
    char first_fingerprint[CART_FINGERPRINT_MAX + 1];
} cs_item;

/* --- intake.c (on nats.c's threads, but cs_intake_take and cs_intake_free_queue) --- */

/* nats.c's message handler of a partition's subscription (`closure` its cs_binding): queues the
 * message, drops redeliveries, marks the partition broken on a gap. Takes ownership of `msg`. */
void cs_intake_on_event(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure);
/* nats.c's on-complete callback of a subscription: frees its cs_binding. */
void cs_intake_on_sub_complete(void *closure);
/* Destroys a detached queue and its messages. */
void cs_intake_free_queue(cs_qmsg *q);
/* Takes up to `max` queued messages into items (mu held); returns how many. */
size_t cs_intake_take(cs_shard *sh, cs_item *items, size_t max);

/* --- ownership.c --- */

/* Opens the shard session (prepared statements, group lock). 0, or -1 (logged). */
int cs_session_open(cs_shard *sh);
/* Releases every partition and closes the session (`why` is logged). */
void cs_session_drop(cs_shard *sh, const char *why);
/* Takes or gives partitions so that this runner holds its share (its run of partitions by rank). */
void cs_ownership_rebalance(cs_shard *sh);
/* Stops consuming `p` and forgets its queue (unlocking it with `unlock`). */
void cs_ownership_release(cs_shard *sh, cs_partition *p, bool unlock);
/* Releases the partitions that may have lost deliveries (all after a bus resync); true when the
 * rebalance is due at once. */
bool cs_ownership_restart_lost(cs_shard *sh, unsigned *resync_seen);
/* The owned partitions as a PostgreSQL array literal (malloc'ed; NULL for none). */
char *cs_ownership_owned_array(cs_shard *sh, bool idle_only);

/* --- apply.c --- */

/* Opens a batch's transaction and reads the prior answers of `items` and the carts of `ws`. */
cart_status cs_apply_begin(cs_shard *sh, cs_working_set *ws, cs_item *items, size_t n, cs_store_err *e);
/* Applies a batch in one transaction and relays it. 0, or -1 when the session was dropped. */
int cs_apply_batch(cs_shard *sh, cs_item *items, size_t n, cs_working_set *ws);
/* Frees what the items hold, messages included. */
void cs_apply_free_items(cs_item *items, size_t n);

/* --- relay.c (cs_relay_on_change_ack on nats.c's threads) --- */

/* Sends a dead letter and waits for JetStream's ack. 0, or -1 (logged, counted). */
int cs_relay_dead_letter(cs_shard *sh, cs_item *it);
/* Records in the shard's batch the outbox row of the change notice of `event_id` on `partition`
 * (subject, cart_change_msg_id, `payload` borrowed); its index in *at. 0, or -1 out of memory. */
int cs_relay_outbox_add(cs_shard *sh, uint32_t partition, const char *event_id, const char *payload, size_t *at);
/* After a commit: cache, replies, change notices, then each partition's last committed message is
 * held for its ack (taken from its item: item->msg becomes NULL), or acknowledged when due. */
void cs_relay_committed(cs_shard *sh, cs_item *items, size_t n, cs_working_set *ws);
/* Acknowledges `p`'s held message (if any) and destroys it. Before its subscription goes. */
void cs_relay_ack_held(cs_shard *sh, cs_partition *p);
/* Acknowledges the held messages that are due by age (`all`: every one) and sets ack_due_ms. */
void cs_relay_send_acks(cs_shard *sh, bool all);
/* Writes the carts `ws` changed to the Redis cache. */
void cs_relay_write_cache(cs_shard *sh, cs_working_set *ws);
/* Sends change notices without waiting for their acks. */
void cs_relay_publish_changes(cs_shard *sh, const cs_batch_outbox *rows, size_t n);
/* nats.c's publish-ack handler (`closure` the shard). */
void cs_relay_on_change_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure);
/* Moves the outbox ids JetStream stored to the list the next transaction deletes. */
void cs_relay_take_acked(cs_shard *sh);
/* Deletes the published outbox rows once enough wait (`all`: whatever there is). */
void cs_relay_delete_published(cs_shard *sh, bool all);
/* Waits (bounded) for the acks of every notice sent; true when none is left unacked. */
bool cs_relay_wait_acks(cs_shard *sh);
/* Publishes what the outbox still holds for the owned partitions. */
void cs_relay_sweep_outbox(cs_shard *sh);

/* --- maintenance.c --- */

/* Expires the idle carts of the idle owned partitions. 0, or -1 when the session was dropped. */
int cs_maint_expire_idle(cs_shard *sh, cs_working_set *ws);
/* Deletes dedup rows older than the retention. */
void cs_maint_prune_processed(cs_shard *sh);
/* Updates the lag gauges from JetStream. */
void cs_maint_update_lag(cs_shard *sh);
/* The partition watchdog: restarts stalled partitions; true if it restarted any. */
bool cs_maint_watch_partitions(cs_shard *sh, int64_t now);

#endif
