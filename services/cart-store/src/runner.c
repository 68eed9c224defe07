/*
 * runner.c: a shard runner, the thread that applies the events of the partitions it owns on one
 * PostgreSQL shard. See worker.h for the ownership and ordering design.
 *
 * Threads: nats.c delivers messages on its own threads (on_event), which only queue them under
 * the runner's mutex and signal it; everything else (SQL, acks, replies, publishing) happens on
 * the runner thread, so the blocking nats.c and libpq calls never stall an event loop.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "cartshard/bus.h"
#include "cartshard/clock.h"
#include "cartshard/log.h"
#include "cartshard/partition.h"
#include "cartshard/pg.h"
#include "batch.h"
#include "redis_writer.h"
#include "store.h"
#include "working_set.h"
#include "worker.h"

#define REBALANCE_MS    1000
#define OUTBOX_SWEEP_MS 5000
/* Published outbox rows are deleted once this many are waiting (or by the sweep), between batches:
 * a DELETE reads every page of the outbox, since its few live rows make the planner prefer a
 * sequential scan over the index, and a table that churns this much is mostly dead pages between
 * vacuums. */
#define OUTBOX_DELETE_MIN 4096
#define LAG_MS            5000
/* How often the partitions whose offset did not move are compared with the stream (see
 * watch_partitions). */
#define WATCH_MS 2000
/* A runner that applied a batch less than this long ago is busy: see CART_STORE_LINGER_US. */
#define LINGER_BUSY_MS  20
#define BACKOFF_MIN_MS  100
#define BACKOFF_MAX_MS  5000
#define PUBLISH_WAIT_MS 5000
#define MAX_ACK_PENDING 1024
#define ACK_WAIT_MS     30000
#define EXPIRE_BATCH    200
#define PRUNE_BATCH     10000
/* Dedup rows outlive the stream's 7-day MaxAge and the 24 h Idempotency-Key promise. */
#define DEDUP_RETENTION_MS (8LL * 24 * 3600 * 1000)

typedef struct cs_partition cs_partition;

/* One queued message. */
typedef struct cs_qmsg {
    natsMsg *msg;
    uint64_t seq;
    struct cs_qmsg *next;
} cs_qmsg;

/* The closure of one subscription; freed by nats.c's on-complete callback, so a late callback of
 * an old subscription never touches freed memory. */
typedef struct cs_binding {
    cs_partition *part;
    bool active; /* guarded by the runner's mutex */
} cs_binding;

struct cs_partition {
    uint32_t id;
    cs_shard *shard;
    bool owned;
    cart_metric *lag; /* events of the partition not yet committed, while owned here */
    natsSubscription *sub;
    cs_binding *binding;
    /* Guarded by the runner's mutex: */
    uint64_t max_seen;
    uint64_t committed;     /* the offset this owner committed */
    uint64_t last_delivery; /* the consumer's delivery sequence of the last message seen */
    bool broken;            /* a delivery went missing: restart from the committed offset */
    cs_qmsg *head, *tail;
    size_t len;
    /* The watchdog's (runner thread only): the committed offset at its last look, and since when
     * the stream has held events beyond it without the offset moving (0: not behind). */
    uint64_t watch_committed;
    int64_t behind_since;
};

struct cs_shard {
    cs_worker *w;
    uint32_t index;
    uint32_t first, last; /* partition range */
    cs_partition *parts;  /* last - first + 1 */
    pthread_t thread;
    bool started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    PGconn *pg;
    jsCtx *js;
    atomic_bool session_ok;
    int64_t *outbox_done; /* published outbox ids to delete (see OUTBOX_DELETE_MIN) */
    size_t noutbox_done, outbox_cap;
    /* Change notices sent and not yet acknowledged by JetStream, oldest first (pending[head..n)),
     * and the outbox ids of those it stored (acked), which the runner then deletes. Filled by the
     * runner, emptied by nats.c's ack handler: guarded by acks_mu. */
    pthread_mutex_t acks_mu;
    struct cs_pending {
        char msg_id[CART_EVENT_ID_MAX + 8];
        int64_t id;
        bool done;
    } * pending;
    size_t pending_head, npending, pending_cap;
    int64_t *acked;
    size_t nacked, acked_cap;
    bool acks_settled;   /* at exit: nothing was left pending, so no ack handler can run any more */
    bool bus_unanswered; /* a consumer deletion failed in this round of releases (runner only) */
    cs_redis_writer *redis_writer;
    cs_batch batch;   /* the writes of the batch being applied */
    cs_batch_sql sql; /* their rendered parameters */
    char name[32];
};

/* One event of a batch, with what applying it produced. */
typedef struct cs_item {
    natsMsg *msg;
    cs_partition *part;
    uint64_t seq;
    cart_event ev;
    bool decoded;
    char dlq_reason[320]; /* non-empty: goes to the DLQ */
    bool refused;         /* a decoded event the shard would not store (it goes to the DLQ too) */
    int http_status;
    char detail[128];
    char *cart_json;  /* the cart after this event, for the reply; NULL for none */
    bool wants_reply; /* it carries Cart-Reply-To: only then is cart_json rendered */
    bool changed;
    char *change_json; /* outbox payload */
    size_t outbox_at;  /* its record in the shard's batch */
    int64_t outbox_id;
    bool prior;     /* processed before this batch, answered prior_status (prior_detail) */
    bool duplicate; /* answered again, not applied (prior, or earlier in this batch) */
    int prior_status;
    char prior_detail[128];
} cs_item;

/* --- message intake (nats.c threads) --- */

static void free_qmsgs(cs_qmsg *q)
{
    while (q) {
        cs_qmsg *next = q->next;
        natsMsg_Destroy(q->msg);
        free(q);
        q = next;
    }
}

static void on_event(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    cs_binding *b = closure;
    cs_partition *p = b->part;
    cs_shard *sh = p->shard;
    jsMsgMetaData *meta = NULL;
    cs_qmsg *q = NULL;
    uint64_t seq, delivery;

    if (natsMsg_GetMetaData(&meta, msg) != NATS_OK) {
        /* Not a JetStream message (a flow-control or heartbeat is handled by nats.c itself). */
        natsMsg_Destroy(msg);
        return;
    }
    seq = meta->Sequence.Stream;
    delivery = meta->Sequence.Consumer;
    jsMsgMetaData_Destroy(meta);
    q = malloc(sizeof *q);
    pthread_mutex_lock(&sh->mu);
    /* The consumer numbers its deliveries 1, 2, 3...: a jump means messages were lost on the way
     * (a connection reset). Queuing what follows would commit past them, and the AckAll of the
     * later ones would acknowledge them unseen, so the partition starts over from its committed
     * offset instead. */
    if (b->active && !p->broken && p->last_delivery != 0 && delivery > p->last_delivery + 1) {
        p->broken = true;
        pthread_cond_signal(&sh->cv);
    }
    if (b->active && !p->broken && delivery > p->last_delivery)
        p->last_delivery = delivery;
    if (p->broken) {
        pthread_mutex_unlock(&sh->mu);
        natsMsg_Destroy(msg);
        free(q);
        return;
    }
    /* A redelivery of something already queued (or committed) is dropped: the queue is the
     * partition's stream order, and the consumer restarts from the committed offset anyway. One
     * already committed is acknowledged again, since its first ack was evidently lost. */
    if (q == NULL || !b->active || seq <= p->max_seen) {
        bool reack = b->active && seq <= p->committed;
        pthread_mutex_unlock(&sh->mu);
        if (reack)
            natsMsg_Ack(msg, NULL);
        natsMsg_Destroy(msg);
        free(q);
        return;
    }
    q->msg = msg;
    q->seq = seq;
    q->next = NULL;
    if (p->tail)
        p->tail->next = q;
    else
        p->head = q;
    p->tail = q;
    p->len++;
    p->max_seen = seq;
    pthread_cond_signal(&sh->cv);
    pthread_mutex_unlock(&sh->mu);
}

static void on_sub_complete(void *closure)
{
    free(closure);
}

/* --- ownership --- */

static cs_partition *part_of(cs_shard *sh, uint32_t id)
{
    return &sh->parts[id - sh->first];
}

/* Stops consuming `p` and forgets what was queued (never acknowledged: the next owner replays it
 * from the committed offset). Runner thread only. */
static void release_partition(cs_shard *sh, cs_partition *p, bool unlock)
{
    cs_qmsg *q;
    cs_store_err e;

    if (!p->owned)
        return;
    pthread_mutex_lock(&sh->mu);
    if (p->binding)
        p->binding->active = false;
    q = p->head;
    p->head = p->tail = NULL;
    p->len = 0;
    p->max_seen = 0;
    p->committed = 0;
    p->last_delivery = 0;
    p->broken = false;
    pthread_mutex_unlock(&sh->mu);
    free_qmsgs(q);
    if (p->sub) {
        /* Unsubscribing deletes the ephemeral consumer: a JetStream request, which waits out its
         * whole timeout when no server answers (2 s a partition: a worker with 16 partitions
         * took over 30 s to stop with NATS down). Without a connection, or once a deletion
         * failed in this round, the subscription is only destroyed: the server removes an
         * ephemeral consumer by itself once its subscriber is gone, and the next owner starts
         * its own from the committed offset either way. */
        if (!sh->bus_unanswered && natsConnection_Status(sh->w->nc) == NATS_CONN_STATUS_CONNECTED &&
            natsSubscription_Unsubscribe(p->sub) != NATS_OK)
            sh->bus_unanswered = true;
        natsSubscription_Destroy(p->sub);
    }
    p->sub = NULL;
    p->binding = NULL; /* freed by on_sub_complete */
    p->owned = false;
    cart_gauge_add(sh->w->m_owned, -1);
    cart_gauge_set(p->lag, 0); /* its new owner reports it */
    if (unlock && sh->pg)
        cs_store_unlock(sh->pg, CS_LOCK_NS_PARTITION, (int32_t)p->id, &e);
    cart_log(CART_LOG_INFO, "partition released", CART_LS("shard", sh->name), CART_LI("partition", p->id), NULL);
}

/* Starts consuming `p`, whose lock this session just took, right after its committed offset. */
static int acquire_partition(cs_shard *sh, cs_partition *p)
{
    jsSubOptions so;
    jsErrCode jerr = 0;
    cs_store_err e;
    uint64_t offset = 0;
    char subject[CART_SUBJECT_MAX], desc[96];
    cs_binding *b = NULL;
    natsStatus s;

    if (cs_store_get_offset(sh->pg, p->id, &offset, &e) != CART_OK) {
        cart_counter_inc(sh->w->m_pg_errors);
        cart_log(CART_LOG_WARN, "reading partition offset failed", CART_LS("shard", sh->name),
                 CART_LI("partition", p->id), CART_LS("error", e.msg), NULL);
        return -1;
    }
    b = calloc(1, sizeof *b);
    if (b == NULL)
        return -1;
    b->part = p;
    b->active = true;
    pthread_mutex_lock(&sh->mu);
    p->max_seen = offset;
    p->committed = offset;
    p->last_delivery = 0;
    p->broken = false;
    pthread_mutex_unlock(&sh->mu);
    p->watch_committed = offset;
    p->behind_since = 0;

    jsSubOptions_Init(&so);
    so.Stream = CART_STREAM_EVENTS;
    so.ManualAck = true;
    snprintf(desc, sizeof desc, "cart-store %s shard %u", sh->w->cfg->store_id, sh->index);
    so.Config.Description = desc;
    so.Config.FilterSubject = cart_bus_subject(subject, CART_SUBJ_EVENTS, p->id);
    so.Config.DeliverPolicy = offset ? js_DeliverByStartSequence : js_DeliverAll;
    so.Config.OptStartSeq = offset ? offset + 1 : 0;
    so.Config.AckPolicy = js_AckAll;
    so.Config.AckWait = (int64_t)ACK_WAIT_MS * 1000000;
    so.Config.MaxAckPending = MAX_ACK_PENDING;
    so.Config.FlowControl = true;
    so.Config.Heartbeat = 5LL * 1000000000;
    s = js_Subscribe(&p->sub, sh->js, subject, on_event, b, NULL, &so, &jerr);
    if (s == NATS_OK)
        s = natsSubscription_SetPendingLimits(p->sub, -1, -1);
    if (s == NATS_OK)
        s = natsSubscription_SetOnCompleteCB(p->sub, on_sub_complete, b);
    if (s != NATS_OK) {
        cart_counter_inc(sh->w->m_nats_errors);
        cart_log(CART_LOG_WARN, "subscribing to partition failed", CART_LS("shard", sh->name),
                 CART_LI("partition", p->id), CART_LS("error", natsStatus_GetText(s)), CART_LI("js_error", jerr), NULL);
        if (p->sub) {
            natsSubscription_Unsubscribe(p->sub);
            natsSubscription_Destroy(p->sub); /* on-complete frees b if it was set */
            p->sub = NULL;
        } else {
            free(b);
        }
        return -1;
    }
    p->binding = b;
    p->owned = true;
    cart_gauge_add(sh->w->m_owned, 1);
    cart_log(CART_LOG_INFO, "partition acquired", CART_LS("shard", sh->name), CART_LI("partition", p->id),
             CART_LI("offset", (long long)offset), NULL);
    return 0;
}

/* Takes or gives partitions so that this runner holds its fair share. */
static void rebalance(cs_shard *sh)
{
    uint32_t n = sh->last - sh->first + 1, owned = 0, target;
    int members = 1;
    cs_store_err e;

    if (cs_store_count_locks(sh->pg, CS_LOCK_NS_GROUP, &members, &e) != CART_OK || members < 1)
        members = 1;
    sh->bus_unanswered = false;
    target = (n + (uint32_t)members - 1) / (uint32_t)members;
    for (uint32_t i = 0; i < n; i++)
        owned += sh->parts[i].owned;
    /* Give back the highest partitions first; the others pick them up on their next round. */
    for (uint32_t i = n; i-- > 0 && owned > target;) {
        if (sh->parts[i].owned) {
            release_partition(sh, &sh->parts[i], true);
            owned--;
        }
    }
    for (uint32_t i = 0; i < n && owned < target && sh->pg; i++) {
        cs_partition *p = &sh->parts[i];
        bool got = false;
        if (p->owned)
            continue;
        if (cs_store_try_lock(sh->pg, CS_LOCK_NS_PARTITION, (int32_t)p->id, &got, &e) != CART_OK)
            return;
        if (!got)
            continue;
        if (acquire_partition(sh, p) == 0)
            owned++;
        else
            cs_store_unlock(sh->pg, CS_LOCK_NS_PARTITION, (int32_t)p->id, &e);
    }
}

/* --- the session --- */

static void drop_session(cs_shard *sh, const char *why)
{
    uint32_t n = sh->last - sh->first + 1;

    sh->bus_unanswered = false;
    for (uint32_t i = 0; i < n; i++)
        release_partition(sh, &sh->parts[i], false);
    if (sh->pg) {
        cart_log(CART_LOG_WARN, "shard session lost", CART_LS("shard", sh->name), CART_LS("error", why), NULL);
        PQfinish(sh->pg);
        cart_gauge_add(sh->w->m_sessions, -1);
    }
    sh->pg = NULL;
    sh->noutbox_done = 0; /* the sweep will find those rows and publish them again (deduplicated) */
    atomic_store(&sh->session_ok, false);
}

static int open_session(cs_shard *sh)
{
    const char *dsn = sh->w->cfg->shard_dsns[sh->index];
    char app[96], redacted[512];
    cs_store_err e;
    PGconn *pg;

    snprintf(app, sizeof app, "cart-store %s", sh->w->cfg->store_id);
    pg = cart_pg_open(dsn, app, 5, false);
    if (pg == NULL || PQstatus(pg) != CONNECTION_OK) {
        cart_counter_inc(sh->w->m_pg_errors);
        cart_log(CART_LOG_WARN, "shard connect failed", CART_LS("shard", sh->name),
                 CART_LS("dsn", cart_pg_redact(dsn, redacted, sizeof redacted)),
                 CART_LS("error", pg ? PQerrorMessage(pg) : "out of memory"), NULL);
        PQfinish(pg);
        return -1;
    }
    if (cs_store_prepare(pg, &e) != CART_OK || cs_store_join(pg, CS_LOCK_NS_GROUP, &e) != CART_OK) {
        cart_counter_inc(sh->w->m_pg_errors);
        cart_log(CART_LOG_WARN, "shard session setup failed", CART_LS("shard", sh->name), CART_LS("error", e.msg),
                 NULL);
        PQfinish(pg);
        return -1;
    }
    sh->pg = pg;
    atomic_store(&sh->session_ok, true);
    cart_gauge_add(sh->w->m_sessions, 1);
    cart_log(CART_LOG_INFO, "shard session open", CART_LS("shard", sh->name),
             CART_LS("dsn", cart_pg_redact(dsn, redacted, sizeof redacted)), NULL);
    return 0;
}

/* --- applying a batch --- */

/* Takes up to `max` queued messages, partition by partition (each in stream order). */
static size_t take_batch(cs_shard *sh, cs_item *items, size_t max)
{
    uint32_t n = sh->last - sh->first + 1;
    size_t k = 0;

    for (uint32_t i = 0; i < n && k < max; i++) {
        cs_partition *p = &sh->parts[i];
        while (p->head && k < max) {
            cs_qmsg *q = p->head;
            p->head = q->next;
            if (p->head == NULL)
                p->tail = NULL;
            p->len--;
            memset(&items[k], 0, sizeof items[k]);
            items[k].msg = q->msg;
            items[k].seq = q->seq;
            items[k].part = p;
            k++;
            free(q);
        }
    }
    return k;
}

/* Decodes every item; an undecodable one or one for another partition is marked for the DLQ. */
static void decode_items(cs_shard *sh, cs_item *items, size_t n)
{
    uint32_t parts = sh->w->cfg->partitions;

    for (size_t i = 0; i < n; i++) {
        cs_item *it = &items[i];
        const char *data = natsMsg_GetData(it->msg);
        int len = natsMsg_GetDataLength(it->msg);
        const char *reply_to = NULL;
        char err[200] = "";

        if (cart_event_decode(data ? data : "", (size_t)len, &it->ev, err, sizeof err) != CART_OK) {
            snprintf(it->dlq_reason, sizeof it->dlq_reason, "invalid event: %s", err);
            continue;
        }
        if (cart_partition_of(it->ev.user_id, strlen(it->ev.user_id), parts) != it->part->id) {
            snprintf(it->dlq_reason, sizeof it->dlq_reason, "wrong partition: user %s belongs to partition %u, not %u",
                     it->ev.user_id, cart_partition_of(it->ev.user_id, strlen(it->ev.user_id), parts), it->part->id);
            continue;
        }
        it->decoded = true;
        it->wants_reply =
            natsMsgHeader_Get(it->msg, CART_HDR_REPLY_TO, &reply_to) == NATS_OK && reply_to && *reply_to != '\0';
    }
}

static void item_reset(cs_item *it)
{
    free(it->cart_json);
    free(it->change_json);
    it->cart_json = NULL;
    it->change_json = NULL;
    it->changed = false;
    it->http_status = 0;
    it->detail[0] = '\0';
    it->outbox_at = 0;
    it->outbox_id = 0;
    it->prior = false;
    it->duplicate = false;
}

typedef struct prior_ctx {
    cs_item *items;
    size_t n;
} prior_ctx;

static void on_prior(void *ud, const char *event_id, int http_status, const char *detail)
{
    prior_ctx *ctx = ud;

    for (size_t i = 0; i < ctx->n; i++) {
        cs_item *it = &ctx->items[i];
        if (it->decoded && !it->dlq_reason[0] && strcmp(it->ev.event_id, event_id) == 0) {
            it->prior = true;
            it->prior_status = http_status;
            snprintf(it->prior_detail, sizeof it->prior_detail, "%s", detail);
        }
    }
}

/* Opens the batch's transaction and reads what it builds on, in one round trip: which of its
 * events were processed before, and the latest cart of each of its users (for expiry: of the
 * users already in `ws`). */
static cart_status begin_batch(cs_shard *sh, cs_working_set *ws, cs_item *items, size_t n, cs_store_err *e)
{
    const char **ids = malloc((n ? n : 1) * sizeof *ids);
    prior_ctx ctx = {items, n};
    cs_store_reads r = {0};
    cart **carts = NULL;
    cart_status st = CART_OK;

    if (ids == NULL)
        return cs_store_out_of_memory(e);
    for (size_t i = 0; i < n && st == CART_OK; i++) {
        if (!items[i].decoded || items[i].dlq_reason[0])
            continue;
        ids[r.nevents++] = items[i].ev.event_id;
        if (cs_working_set_add(ws, items[i].ev.user_id) == NULL)
            st = cs_store_out_of_memory(e);
    }
    carts = malloc((ws->ncarts ? ws->ncarts : 1) * sizeof *carts);
    if (st == CART_OK && carts == NULL)
        st = cs_store_out_of_memory(e);
    if (st == CART_OK) {
        for (size_t i = 0; i < ws->ncarts; i++)
            carts[i] = &ws->carts[i].c;
        r.event_ids = ids;
        r.on_processed = on_prior;
        r.ud = &ctx;
        r.carts = carts;
        r.ncarts = ws->ncarts;
        st = cs_store_begin_batch(sh->pg, &r, e);
    }
    free(carts);
    free(ids);
    return st;
}

/* Applies one decoded item to the batch's carts (begin_batch read them) and records what it
 * writes in the shard's batch. CART_OK, or CART_ERR_NOMEM. */
static cart_status apply_item(cs_shard *sh, cs_working_set *ws, cs_item *items, size_t idx, cs_store_err *e)
{
    cs_item *it = &items[idx];
    const cart_config *cfg = sh->w->cfg;
    cart_limits lim = {cfg->max_quantity, cfg->max_lines};
    cart_outcome o;
    bool dup = it->prior;
    int recorded = it->prior_status;
    char new_id[37], subject[CART_SUBJECT_MAX], msg_id[CART_EVENT_ID_MAX + 8];
    int64_t now = cart_now_ms();
    cs_working_cart *wc = cs_working_set_find(ws, it->ev.user_id);
    const cs_working_answer *first = NULL;
    cart *c;

    if (wc == NULL)
        return cs_store_out_of_memory(e); /* begin_batch added every user, or ran out of memory doing it */
    c = &wc->c;
    if (dup)
        snprintf(it->detail, sizeof it->detail, "%s", it->prior_detail);
    /* A duplicate inside the batch. */
    if (!dup && (first = cs_working_set_answer_of(ws, it->ev.event_id)) != NULL) {
        dup = true;
        recorded = first->http_status;
        snprintf(it->detail, sizeof it->detail, "%s", first->detail);
    }
    if (dup) {
        /* The first answer again, with the cart as it is now. */
        it->http_status = recorded;
        it->cart_json = it->wants_reply && (recorded == 200 || recorded == 201) ? cart_to_json(c, NULL) : NULL;
        it->duplicate = true;
        cart_counter_inc(sh->w->m_duplicates);
        /* A copy later in the batch gets this answer too. */
        if (it->prior && cs_working_set_answered(ws, it->ev.event_id, it->http_status, it->detail) != 0)
            return cs_store_out_of_memory(e);
        return CART_OK;
    }
    cart_uuid_v4(new_id);
    if (cart_apply(c, &it->ev, &lim, now, new_id, &o) != CART_OK)
        return cs_store_out_of_memory(e);
    it->http_status = o.http_status;
    snprintf(it->detail, sizeof it->detail, "%s", o.detail);
    if (o.status == CART_OK && o.changed) {
        if (cs_batch_change(&sh->batch, c, &o, it->part->id) != 0)
            return cs_store_out_of_memory(e);
        it->changed = true;
        wc->changed = true;
        it->change_json =
            cart_change_to_json(c, it->ev.event_id, cart_event_type_name(it->ev.type), it->part->id, now, NULL);
        snprintf(msg_id, sizeof msg_id, "chg-%s", it->ev.event_id);
        if (it->change_json == NULL ||
            cs_batch_outbox_add(&sh->batch, it->part->id, cart_bus_subject(subject, CART_SUBJ_CHANGES, it->part->id),
                                msg_id, it->change_json, &it->outbox_at) != 0)
            return cs_store_out_of_memory(e);
    }
    if (o.status != CART_OK) {
        cart_counter_inc(sh->w->m_rejected);
        if (cart_log_enabled(CART_LOG_DEBUG))
            cart_log(CART_LOG_DEBUG, "event refused", CART_LS("event_id", it->ev.event_id),
                     CART_LS("trace", it->ev.trace), CART_LI("status", it->http_status), CART_LS("detail", o.detail),
                     NULL);
    }
    if (cs_batch_mark_processed(&sh->batch, &it->ev, it->part->id, it->seq, it->http_status, c->version, it->detail) !=
            0 ||
        cs_working_set_answered(ws, it->ev.event_id, it->http_status, it->detail) != 0)
        return cs_store_out_of_memory(e);
    /* The reply carries the cart as this event left it (none after a delete or a refusal on no cart). */
    it->cart_json =
        it->wants_reply && (c->state == CART_ACTIVE || (o.status == CART_OK && c->state == CART_CHECKED_OUT))
            ? cart_to_json(c, NULL)
            : NULL;
    return CART_OK;
}

/* Writes what the shard's batch recorded for items[from, to) (and commits, with `commit`) and
 * gives the changed ones their outbox ids; the batch is then empty. */
static cart_status write_batch(cs_shard *sh, cs_item *items, size_t from, size_t to, bool commit, cs_store_err *e)
{
    if (cs_store_write(sh->pg, &sh->batch, &sh->sql, commit, e) != CART_OK)
        return CART_ERR_UNAVAILABLE;
    for (size_t i = from; i < to; i++)
        if (items[i].changed)
            items[i].outbox_id = sh->batch.outbox[items[i].outbox_at].id;
    cs_batch_reset(&sh->batch);
    return CART_OK;
}

/* Sends a dead letter and waits for JetStream's ack: it must be stored before the offset moves. */
static int publish_dlq(cs_shard *sh, cs_item *it)
{
    natsMsg *m = NULL;
    jsPubOptions po;
    jsPubAck *ack = NULL;
    jsErrCode jerr = 0;
    char subject[CART_SUBJECT_MAX], msg_id[48];
    const char *data = natsMsg_GetData(it->msg);
    natsStatus s;

    cart_bus_subject(subject, CART_SUBJ_DLQ, it->part->id);
    snprintf(msg_id, sizeof msg_id, "dlq-%" PRIu64, it->seq);
    s = natsMsg_Create(&m, subject, NULL, data ? data : "", natsMsg_GetDataLength(it->msg));
    if (s == NATS_OK)
        s = natsMsgHeader_Set(m, CART_HDR_ERROR, it->dlq_reason);
    if (s == NATS_OK)
        s = natsMsgHeader_Set(m, CART_HDR_MSG_ID, msg_id);
    if (s == NATS_OK) {
        jsPubOptions_Init(&po);
        po.MaxWait = PUBLISH_WAIT_MS;
        s = js_PublishMsg(&ack, sh->js, m, &po, &jerr);
    }
    jsPubAck_Destroy(ack);
    natsMsg_Destroy(m);
    if (s != NATS_OK) {
        cart_counter_inc(sh->w->m_nats_errors);
        cart_log(CART_LOG_WARN, "dead letter publish failed", CART_LS("shard", sh->name),
                 CART_LI("partition", it->part->id), CART_LS("error", natsStatus_GetText(s)), NULL);
        return -1;
    }
    cart_counter_inc(sh->w->m_dlq);
    cart_log(CART_LOG_WARN, "event dead-lettered", CART_LS("shard", sh->name), CART_LI("partition", it->part->id),
             CART_LI("seq", (long long)it->seq), CART_LS("reason", it->dlq_reason),
             CART_LS("event_id", it->decoded ? it->ev.event_id : ""), CART_LS("trace", it->decoded ? it->ev.trace : ""),
             NULL);
    return 0;
}

/* Tells a waiting gateway how its event ended. */
static void send_reply(cs_shard *sh, cs_item *it)
{
    const char *reply_to = NULL;
    natsMsg *m = NULL;
    char status[8];

    if (!it->decoded || (it->dlq_reason[0] && !it->refused) ||
        natsMsgHeader_Get(it->msg, CART_HDR_REPLY_TO, &reply_to) != NATS_OK || reply_to == NULL || *reply_to == '\0')
        return;
    snprintf(status, sizeof status, "%d", it->http_status);
    if (natsMsg_Create(&m, reply_to, NULL, it->cart_json ? it->cart_json : "",
                       it->cart_json ? (int)strlen(it->cart_json) : 0) != NATS_OK)
        return;
    natsMsgHeader_Set(m, "Cart-Event-Id", it->ev.event_id);
    natsMsgHeader_Set(m, "Cart-Status", status);
    if (it->detail[0])
        natsMsgHeader_Set(m, "Cart-Detail", it->detail);
    /* On the connection that sends at once, unless it is down. */
    natsConnection_PublishMsg(
        natsConnection_Status(sh->w->nc_replies) == NATS_CONN_STATUS_CONNECTED ? sh->w->nc_replies : sh->w->nc, m);
    natsMsg_Destroy(m);
}

static int outbox_done_push(cs_shard *sh, int64_t id)
{
    if (sh->noutbox_done == sh->outbox_cap) {
        size_t cap = sh->outbox_cap ? sh->outbox_cap * 2 : 256;
        int64_t *n = realloc(sh->outbox_done, cap * sizeof *n);
        if (n == NULL)
            return -1;
        sh->outbox_done = n;
        sh->outbox_cap = cap;
    }
    sh->outbox_done[sh->noutbox_done++] = id;
    return 0;
}

/* Remembers a notice about to be sent (acks_mu held). 0, or -1 when out of memory. */
static int pending_add(cs_shard *sh, const char *msg_id, int64_t id)
{
    struct cs_pending *pd;

    if (sh->pending_head == sh->npending)
        sh->pending_head = sh->npending = 0;
    if (sh->npending == sh->pending_cap) {
        size_t cap = sh->pending_cap ? sh->pending_cap * 2 : 256;
        struct cs_pending *n = realloc(sh->pending, cap * sizeof *n);
        if (n == NULL)
            return -1;
        sh->pending = n;
        sh->pending_cap = cap;
    }
    pd = &sh->pending[sh->npending++];
    snprintf(pd->msg_id, sizeof pd->msg_id, "%s", msg_id);
    pd->id = id;
    pd->done = false;
    return 0;
}

/* Marks the notice `msg_id` answered (acks_mu held); its outbox id when JetStream stored it. */
static void pending_done(cs_shard *sh, const char *msg_id, bool stored)
{
    for (size_t i = sh->pending_head; i < sh->npending; i++) {
        struct cs_pending *pd = &sh->pending[i];
        if (pd->done || strcmp(pd->msg_id, msg_id) != 0)
            continue;
        pd->done = true;
        if (stored && sh->nacked == sh->acked_cap) {
            size_t cap = sh->acked_cap ? sh->acked_cap * 2 : 256;
            int64_t *n = realloc(sh->acked, cap * sizeof *n);
            if (n != NULL) {
                sh->acked = n;
                sh->acked_cap = cap;
            }
        }
        /* Without memory the id is not deleted now: the sweep sends the row again (deduplicated). */
        if (stored && sh->nacked < sh->acked_cap)
            sh->acked[sh->nacked++] = pd->id;
        break;
    }
    while (sh->pending_head < sh->npending && sh->pending[sh->pending_head].done)
        sh->pending_head++;
}

/* nats.c's thread: JetStream answered a change notice (stored, or failed or timed out). */
static void on_change_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure)
{
    cs_shard *sh = closure;
    const char *msg_id = NULL;

    (void)js;
    if (natsMsgHeader_Get(msg, CART_HDR_MSG_ID, &msg_id) == NATS_OK && msg_id) {
        pthread_mutex_lock(&sh->acks_mu);
        pending_done(sh, msg_id, pa != NULL && pae == NULL);
        pthread_mutex_unlock(&sh->acks_mu);
    }
    if (pae)
        cart_counter_inc(sh->w->m_nats_errors); /* the outbox sweep publishes it again */
    natsMsg_Destroy(msg);
}

/* Moves the outbox ids JetStream stored into the list the next transaction deletes. */
static void take_acked(cs_shard *sh)
{
    pthread_mutex_lock(&sh->acks_mu);
    for (size_t i = 0; i < sh->nacked; i++)
        if (outbox_done_push(sh, sh->acked[i]) != 0)
            break; /* the rest is sent again by the sweep (deduplicated) */
    sh->nacked = 0;
    pthread_mutex_unlock(&sh->acks_mu);
}

/* Deletes the outbox rows JetStream stored, once enough are waiting (`all`: whatever there is). */
static void delete_published(cs_shard *sh, bool all)
{
    cs_store_err e;

    take_acked(sh);
    if (sh->pg == NULL || sh->noutbox_done == 0 || (!all && sh->noutbox_done < OUTBOX_DELETE_MIN))
        return;
    if (cs_store_outbox_delete(sh->pg, sh->outbox_done, sh->noutbox_done, &e) == CART_OK)
        sh->noutbox_done = 0;
}

/* Waits (bounded) until JetStream answered every notice sent; true when nothing is pending.
 * Without a connection it does not wait: no answer can come before each notice's own timeout. */
static bool wait_acks(cs_shard *sh)
{
    jsPubOptions po;
    bool settled;

    jsPubOptions_Init(&po);
    po.MaxWait = PUBLISH_WAIT_MS;
    if (natsConnection_Status(sh->w->nc) == NATS_CONN_STATUS_CONNECTED)
        js_PublishAsyncComplete(sh->js, &po);
    pthread_mutex_lock(&sh->acks_mu);
    settled = sh->pending_head == sh->npending;
    pthread_mutex_unlock(&sh->acks_mu);
    return settled;
}

/* Sends change notices (subject, msg id, payload of each row) without waiting: JetStream's acks
 * arrive on nats.c's thread (on_change_ack), and the ids of what it stored are deleted from the
 * outbox by a later transaction. The next batch need not wait for them; a notice that is never
 * acknowledged stays in the outbox, and the sweep sends it again. */
static void publish_changes(cs_shard *sh, const cs_batch_outbox *rows, size_t n)
{
    jsPubOptions po;

    jsPubOptions_Init(&po);
    po.MaxWait = PUBLISH_WAIT_MS;
    for (size_t i = 0; i < n; i++) {
        natsMsg *m = NULL;
        int added;
        if (natsMsg_Create(&m, rows[i].subject, NULL, rows[i].payload, (int)strlen(rows[i].payload)) != NATS_OK ||
            natsMsgHeader_Set(m, CART_HDR_MSG_ID, rows[i].msg_id) != NATS_OK) {
            natsMsg_Destroy(m);
            break;
        }
        pthread_mutex_lock(&sh->acks_mu);
        added = pending_add(sh, rows[i].msg_id, rows[i].id);
        pthread_mutex_unlock(&sh->acks_mu);
        if (added != 0 || js_PublishMsgAsync(sh->js, &m, &po) != NATS_OK) {
            if (added == 0) {
                pthread_mutex_lock(&sh->acks_mu);
                pending_done(sh, rows[i].msg_id, false);
                pthread_mutex_unlock(&sh->acks_mu);
            }
            natsMsg_Destroy(m);
            cart_counter_inc(sh->w->m_nats_errors); /* the outbox sweep publishes the rest again */
            break;
        }
    }
}

/* Writes the committed state of every cart the batch changed to the Redis cache (one round trip). */
static void update_cache(cs_shard *sh, cs_working_set *ws)
{
    cs_redis_writer_entry *entries;
    size_t k = 0;

    if (sh->redis_writer == NULL || ws->ncarts == 0)
        return;
    entries = calloc(ws->ncarts, sizeof *entries);
    if (entries == NULL)
        return;
    for (size_t i = 0; i < ws->ncarts; i++) {
        cs_working_cart *wc = &ws->carts[i];
        if (!wc->changed)
            continue;
        entries[k].user_id = wc->c.user_id;
        entries[k].json = cart_to_json(&wc->c, NULL); /* NULL (no memory): the entry is dropped */
        entries[k].version = wc->c.version;
        k++;
    }
    cs_redis_writer_put(sh->redis_writer, entries, k);
    for (size_t i = 0; i < k; i++)
        free((char *)entries[i].json);
    free(entries);
}

/* Applies a batch in one transaction; returns 0 when it committed (or when nothing needed to),
 * -1 when the session failed (the batch is dropped and will be replayed).
 *
 * The batch's writes go as one statement per table (batch.h). When the shard refuses one of them
 * for its data (a constraint, a trigger), the transaction is redone writing each event on its
 * own, which finds the event at fault; that one is dead-lettered and the rest redone. */
static int apply_batch(cs_shard *sh, cs_item *items, size_t n, cs_working_set *ws)
{
    cs_store_err e = {0};
    int64_t t0 = cart_mono_ms();
    size_t applied = 0;
    bool one_by_one = false;

    decode_items(sh, items, n);
    for (int attempt = 0;; attempt++) {
        size_t failed_at = n, written = 0;
        cs_working_set_clear(ws);
        cs_batch_reset(&sh->batch);
        for (size_t i = 0; i < n; i++)
            item_reset(&items[i]);
        take_acked(sh);
        if (begin_batch(sh, ws, items, n, &e) != CART_OK)
            goto stmt_failed;
        for (size_t i = 0; i < n; i++) {
            cs_item *it = &items[i];
            if (it->dlq_reason[0]) {
                if (publish_dlq(sh, it) != 0) {
                    /* Nothing of this batch may be skipped: start over from the committed offsets. */
                    snprintf(e.msg, sizeof e.msg, "dead letter could not be stored");
                    cs_store_exec(sh->pg, "ROLLBACK", &e);
                    goto session_failed;
                }
                /* The writer is told, now and on every retry of its event_id, that its change
                 * was refused: it is recorded as answered 400, never left as a silent 202. */
                if (it->refused) {
                    it->http_status = 400;
                    snprintf(it->detail, sizeof it->detail, "the shard refused the change; it is kept in CARTS_DLQ");
                    if (cs_batch_mark_processed(&sh->batch, &it->ev, it->part->id, it->seq, it->http_status, 0,
                                                it->detail) != 0) {
                        cs_store_out_of_memory(&e);
                        goto stmt_failed;
                    }
                }
            } else if (apply_item(sh, ws, items, i, &e) != CART_OK) {
                goto stmt_failed;
            }
            if (one_by_one) {
                if (write_batch(sh, items, written, i + 1, false, &e) != CART_OK) {
                    failed_at = i;
                    goto stmt_failed;
                }
                written = i + 1;
            }
        }
        /* Offsets: the last sequence of every partition in the batch. */
        for (size_t i = 0; i < n; i++) {
            if (cs_batch_offset_set(&sh->batch, items[i].part->id, items[i].seq) != 0) {
                cs_store_out_of_memory(&e);
                goto stmt_failed;
            }
        }
        /* The rest of the writes and the COMMIT, in one round trip. A COMMIT that fails is taken
         * like a refused write: rolled back, and the batch is redone event by event. */
        if (write_batch(sh, items, written, n, true, &e) != CART_OK)
            goto stmt_failed;
        break;

    stmt_failed:
        cs_store_exec(sh->pg, "ROLLBACK", &e);
        if (e.transient || attempt > (int)n)
            goto session_failed;
        if (failed_at == n) {
            if (one_by_one)
                goto session_failed; /* not any one event's fault */
            one_by_one = true;
            cart_counter_inc(sh->w->m_redone);
            continue;
        }
        /* The data is at fault: this one event cannot be stored. Dead-letter it, redo the rest. */
        items[failed_at].refused = items[failed_at].decoded;
        snprintf(items[failed_at].dlq_reason, sizeof items[failed_at].dlq_reason, "rejected by the shard: %s", e.msg);
        continue;

    session_failed:
        if (e.transient)
            cart_counter_inc(sh->w->m_pg_errors);
        drop_session(sh, e.msg[0] ? e.msg : "transaction failed");
        return -1;
    }

    /* Committed: refresh the cache (before answering, so a client reads its own write), acknowledge
     * (AckAll: the last message of each partition covers the rest), answer the gateways, and relay
     * the changes. */
    pthread_mutex_lock(&sh->mu);
    for (size_t i = 0; i < n; i++)
        if (items[i].seq > items[i].part->committed && items[i].part->owned)
            items[i].part->committed = items[i].seq;
    pthread_mutex_unlock(&sh->mu);
    update_cache(sh, ws);
    for (size_t i = 0; i < n; i++) {
        cs_item *it = &items[i];
        if (i + 1 == n || items[i + 1].part != it->part)
            natsMsg_Ack(it->msg, NULL);
        send_reply(sh, it);
        if (it->changed && it->change_json) {
            char msg_id[CART_EVENT_ID_MAX + 8], subject[CART_SUBJECT_MAX];
            size_t at;
            snprintf(msg_id, sizeof msg_id, "chg-%s", it->ev.event_id);
            /* The batch was written: its outbox records are free to carry what to publish. */
            if (cs_batch_outbox_add(&sh->batch, it->part->id,
                                    cart_bus_subject(subject, CART_SUBJ_CHANGES, it->part->id), msg_id, it->change_json,
                                    &at) == 0)
                sh->batch.outbox[at].id = it->outbox_id;
        }
        if (it->decoded && !it->dlq_reason[0] && !it->duplicate) {
            applied++;
            if (cart_log_enabled(CART_LOG_DEBUG))
                cart_log(CART_LOG_DEBUG, "event applied", CART_LS("event_id", it->ev.event_id),
                         CART_LS("trace", it->ev.trace), CART_LS("type", cart_event_type_name(it->ev.type)),
                         CART_LI("partition", it->part->id), CART_LI("seq", (long long)it->seq),
                         CART_LI("status", it->http_status), NULL);
        }
    }
    publish_changes(sh, sh->batch.outbox, sh->batch.noutbox);
    cs_batch_reset(&sh->batch);
    cart_counter_add(sh->w->m_applied, (double)applied);
    cart_counter_inc(sh->w->m_batches);
    cart_histogram_observe(sh->w->m_batch_seconds, (double)(cart_mono_ms() - t0) / 1000.0);
    if (cart_log_enabled(CART_LOG_DEBUG))
        cart_log(CART_LOG_DEBUG, "batch committed", CART_LS("shard", sh->name), CART_LI("events", n),
                 CART_LI("ms", cart_mono_ms() - t0), NULL);
    return 0;
}

static void free_items(cs_item *items, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        item_reset(&items[i]);
        natsMsg_Destroy(items[i].msg);
        items[i].msg = NULL;
    }
}

/* The owned partitions as a PostgreSQL array literal ("{3,4,9}"), only those with nothing queued
 * when `idle_only`; NULL when there are none (or no memory). The caller frees it. */
static char *owned_array(cs_shard *sh, bool idle_only)
{
    uint32_t n = sh->last - sh->first + 1;
    char *arr = malloc((size_t)n * 12 + 3);
    size_t len = 0;

    if (arr == NULL)
        return NULL;
    arr[len++] = '{';
    pthread_mutex_lock(&sh->mu);
    for (uint32_t i = 0; i < n; i++)
        if (sh->parts[i].owned && (!idle_only || sh->parts[i].len == 0))
            len += (size_t)sprintf(arr + len, "%s%u", len > 1 ? "," : "", sh->parts[i].id);
    pthread_mutex_unlock(&sh->mu);
    arr[len++] = '}';
    arr[len] = '\0';
    if (len == 2) {
        free(arr);
        return NULL;
    }
    return arr;
}

static int cmp_id(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* The outbox ids of the notices sent and not yet answered, sorted (NULL and 0 when none). */
static int64_t *unanswered_ids(cs_shard *sh, size_t *n)
{
    int64_t *ids = NULL;

    *n = 0;
    pthread_mutex_lock(&sh->acks_mu);
    if (sh->npending > sh->pending_head)
        ids = malloc((sh->npending - sh->pending_head) * sizeof *ids);
    for (size_t i = sh->pending_head; ids && i < sh->npending; i++)
        if (!sh->pending[i].done)
            ids[(*n)++] = sh->pending[i].id;
    pthread_mutex_unlock(&sh->acks_mu);
    if (*n > 1)
        qsort(ids, *n, sizeof *ids, cmp_id);
    return ids;
}

/* Publishes what the outbox still holds for the owned partitions (after a crash between commit
 * and publish, or a failed publish). It never waits for JetStream: a notice still unanswered is
 * left to its ack (or its timeout, after which the next sweep sends it), so a lost ack cannot
 * hold the runner for PUBLISH_WAIT_MS while events wait. */
static void sweep_outbox(cs_shard *sh)
{
    char *arr = owned_array(sh, false);
    PGresult *rows = NULL;
    cs_store_err e;
    int64_t *skip = NULL;
    size_t nskip = 0;
    int count, sent = 0;

    if (arr == NULL)
        return;
    /* First forget what the last batches already published, so it is not sent twice. */
    delete_published(sh, true);
    if (cs_store_outbox_list(sh->pg, arr, &rows, &e) != CART_OK)
        goto out;
    count = PQntuples(rows);
    if (count > 0) {
        skip = unanswered_ids(sh, &nskip);
        cs_batch_reset(&sh->batch);
        for (int i = 0; i < count; i++) {
            int64_t id = strtoll(PQgetvalue(rows, i, 0), NULL, 10);
            size_t at;
            if (nskip > 0 && bsearch(&id, skip, nskip, sizeof *skip, cmp_id) != NULL)
                continue;
            if (cs_batch_outbox_add(&sh->batch, 0, PQgetvalue(rows, i, 1), PQgetvalue(rows, i, 2),
                                    PQgetvalue(rows, i, 3), &at) != 0)
                break;
            sh->batch.outbox[at].id = id;
            sent++;
        }
        publish_changes(sh, sh->batch.outbox, sh->batch.noutbox);
        cs_batch_reset(&sh->batch);
        if (sent > 0)
            cart_log(CART_LOG_INFO, "outbox relayed", CART_LS("shard", sh->name), CART_LI("changes", sent), NULL);
    }
out:
    free(skip);
    PQclear(rows);
    free(arr);
}

/* Expires the carts of the owned partitions that nobody touched for CART_IDLE_TTL, in one
 * transaction, and announces each as cart.expired. Only partitions with nothing queued take part,
 * so an expiry does not overtake a change already waiting for that cart. 0, or -1 when the
 * session failed. */
static int expire_idle(cs_shard *sh, cs_working_set *ws)
{
    const cart_config *cfg = sh->w->cfg;
    int64_t now = cart_now_ms();
    char *arr = owned_array(sh, true);
    PGresult *rows = NULL;
    cs_store_err e = {0};
    char **payloads = NULL;
    size_t nchg = 0;
    int rc = 0, count;

    cs_batch_reset(&sh->batch);
    if (arr == NULL || cfg->idle_ttl_ms <= 0)
        goto out;
    if (cs_store_idle_users(sh->pg, arr, now - cfg->idle_ttl_ms, EXPIRE_BATCH, &rows, &e) != CART_OK)
        goto failed;
    count = PQntuples(rows);
    if (count == 0)
        goto out;
    payloads = calloc((size_t)count, sizeof *payloads);
    if (payloads == NULL)
        goto out;
    cs_working_set_clear(ws);
    for (int i = 0; i < count; i++)
        if (cs_working_set_add(ws, PQgetvalue(rows, i, 0)) == NULL)
            goto out;
    take_acked(sh);
    if (begin_batch(sh, ws, NULL, 0, &e) != CART_OK)
        goto rollback;
    for (size_t i = 0; i < ws->ncarts; i++) {
        cs_working_cart *wc = &ws->carts[i];
        uint32_t part = cart_partition_of(wc->c.user_id, strlen(wc->c.user_id), cfg->partitions);
        char event_id[CART_EVENT_ID_MAX + 1], msg_id[CART_EVENT_ID_MAX + 8], subject[CART_SUBJECT_MAX];
        cart_outcome o;
        size_t at;

        cart_expire(&wc->c, now, cfg->idle_ttl_ms, &o);
        if (!o.changed)
            continue;
        wc->changed = true;
        /* The expiry of one cart is one change, whoever announces it. */
        snprintf(event_id, sizeof event_id, "exp-%s", wc->c.cart_id);
        snprintf(msg_id, sizeof msg_id, "chg-%s", event_id);
        payloads[nchg] = cart_change_to_json(&wc->c, event_id, "cart.expired", part, now, NULL);
        if (payloads[nchg] == NULL || cs_batch_change(&sh->batch, &wc->c, &o, part) != 0 ||
            cs_batch_outbox_add(&sh->batch, part, cart_bus_subject(subject, CART_SUBJ_CHANGES, part), msg_id,
                                payloads[nchg], &at) != 0) {
            nchg += payloads[nchg] != NULL;
            cs_store_out_of_memory(&e);
            goto rollback;
        }
        nchg++;
    }
    if (cs_store_write(sh->pg, &sh->batch, &sh->sql, true, &e) != CART_OK)
        goto rollback;
    update_cache(sh, ws);
    publish_changes(sh, sh->batch.outbox, sh->batch.noutbox);
    cart_counter_add(sh->w->m_expired, (double)nchg);
    if (nchg > 0)
        cart_log(CART_LOG_INFO, "idle carts expired", CART_LS("shard", sh->name), CART_LI("carts", nchg), NULL);
    goto out;

rollback:
    cs_store_exec(sh->pg, "ROLLBACK", &e);
    if (!e.transient) {
        cart_log(CART_LOG_WARN, "expiring idle carts failed", CART_LS("shard", sh->name), CART_LS("error", e.msg),
                 NULL);
        goto out;
    }
failed:
    cart_counter_inc(sh->w->m_pg_errors);
    drop_session(sh, e.msg[0] ? e.msg : "expiry failed");
    rc = -1;
out:
    cs_batch_reset(&sh->batch);
    cs_working_set_clear(ws);
    for (size_t i = 0; i < nchg; i++)
        free(payloads[i]);
    free(payloads);
    PQclear(rows);
    free(arr);
    return rc;
}

/* Asks JetStream how far behind each owned partition is: messages not yet delivered plus those
 * delivered and not yet acknowledged (committed), plus what waits in the local queue. */
static void update_lag(cs_shard *sh)
{
    uint32_t n = sh->last - sh->first + 1;

    /* Without a connection each request would only wait out its timeout, and events wait too. */
    if (natsConnection_Status(sh->w->nc) != NATS_CONN_STATUS_CONNECTED)
        return;

    for (uint32_t i = 0; i < n; i++) {
        cs_partition *p = &sh->parts[i];
        jsConsumerInfo *ci = NULL;
        jsErrCode jerr = 0;
        if (!p->owned || p->sub == NULL)
            continue;
        if (natsSubscription_GetConsumerInfo(&ci, p->sub, NULL, &jerr) != NATS_OK) {
            /* NATS is slow or away: try again next round rather than stall the runner more. */
            jsConsumerInfo_Destroy(ci);
            return;
        }
        cart_gauge_set(p->lag, (double)ci->NumPending + (double)ci->NumAckPending);
        jsConsumerInfo_Destroy(ci);
    }
}

/* Deletes dedup rows older than the retention, a bounded number per round. */
static void prune_processed(cs_shard *sh)
{
    char *arr = owned_array(sh, false);
    long deleted = 0;
    cs_store_err e;

    if (arr == NULL)
        return;
    if (cs_store_prune_processed(sh->pg, arr, cart_now_ms() - DEDUP_RETENTION_MS, PRUNE_BATCH, &deleted, &e) != CART_OK)
        cart_log(CART_LOG_WARN, "pruning dedup rows failed", CART_LS("shard", sh->name), CART_LS("error", e.msg), NULL);
    else if (deleted > 0)
        cart_log(CART_LOG_INFO, "dedup rows pruned", CART_LS("shard", sh->name), CART_LI("rows", deleted), NULL);
    free(arr);
}

/* Gives up the partitions whose deliveries may have gaps (all of them after a bus resync), so
 * that the next rebalance takes them again from their committed offsets. Nothing uncommitted
 * was acknowledged, so nothing is lost. True if it released any, or a resync was asked for: then
 * the rebalance is due at once. */
static bool restart_lost(cs_shard *sh, unsigned *resync_seen)
{
    uint32_t n = sh->last - sh->first + 1;
    unsigned gen = atomic_load(&sh->w->resync);
    bool all = gen != *resync_seen, any = false;

    *resync_seen = gen;
    sh->bus_unanswered = false;
    for (uint32_t i = 0; i < n; i++) {
        cs_partition *p = &sh->parts[i];
        bool broken;
        pthread_mutex_lock(&sh->mu);
        broken = p->broken;
        pthread_mutex_unlock(&sh->mu);
        if (!p->owned || !(all || broken))
            continue;
        cart_log(CART_LOG_WARN, "restarting partition from its committed offset", CART_LS("shard", sh->name),
                 CART_LI("partition", p->id), CART_LS("why", broken ? "a delivery went missing" : "bus resync"), NULL);
        release_partition(sh, p, true);
        cart_counter_inc(sh->w->m_resyncs);
        any = true;
    }
    return any || all;
}

/* The last sequence the stream holds on `p`'s subject (0: none), as the stream's leader answers
 * it; -1 when it did not answer. */
static int stream_last_seq(cs_shard *sh, const cs_partition *p, uint64_t *last)
{
    char subject[CART_SUBJECT_MAX];
    natsMsg *m = NULL;
    jsErrCode jerr = 0;
    natsStatus s;

    s = js_GetLastMsg(&m, sh->js, CART_STREAM_EVENTS, cart_bus_subject(subject, CART_SUBJ_EVENTS, p->id), NULL, &jerr);
    if (s == NATS_NOT_FOUND || jerr == JSNoMessageFoundErr) {
        *last = 0;
        return 0;
    }
    if (s != NATS_OK)
        return -1;
    *last = natsMsg_GetSequence(m);
    natsMsg_Destroy(m);
    return 0;
}

/* The partition watchdog. A partition this runner owns is stalled when the stream holds events
 * on its subject beyond its committed offset and that offset has not moved for
 * CART_STORE_STALL_MS: its consumer stopped delivering (it was lost with a NATS node, or did not
 * survive a leader change) without the connection or its heartbeats saying so. The stream's
 * leader is asked only about partitions whose offset did not move since the last look. A stalled
 * partition is logged, counted and restarted from its committed offset, with a new consumer.
 * True if it restarted any. */
static bool watch_partitions(cs_shard *sh, int64_t now)
{
    uint32_t n = sh->last - sh->first + 1;
    bool any = false;

    if (natsConnection_Status(sh->w->nc) != NATS_CONN_STATUS_CONNECTED)
        return false;
    for (uint32_t i = 0; i < n; i++) {
        cs_partition *p = &sh->parts[i];
        uint64_t committed, last = 0;
        size_t queued;

        if (!p->owned)
            continue;
        pthread_mutex_lock(&sh->mu);
        committed = p->committed;
        queued = p->len;
        pthread_mutex_unlock(&sh->mu);
        if (committed != p->watch_committed || queued > 0) {
            /* Moving, or about to: this runner applies what is queued before its next look. */
            p->watch_committed = committed;
            p->behind_since = 0;
            continue;
        }
        if (stream_last_seq(sh, p, &last) != 0)
            break; /* no leader or no answer: the next round asks again */
        if (last <= committed) {
            p->behind_since = 0;
            continue;
        }
        if (p->behind_since == 0) {
            p->behind_since = now;
            continue;
        }
        if (now - p->behind_since < sh->w->cfg->store_stall_ms)
            continue;
        cart_log(CART_LOG_WARN, "partition stalled: restarting it from its committed offset",
                 CART_LS("shard", sh->name), CART_LI("partition", p->id), CART_LI("committed", (long long)committed),
                 CART_LI("stream_last", (long long)last), CART_LI("stalled_ms", now - p->behind_since), NULL);
        cart_counter_inc(sh->w->m_stalls);
        release_partition(sh, p, true);
        any = true;
    }
    return any;
}

static void *runner_main(void *arg)
{
    cs_shard *sh = arg;
    cs_worker *w = sh->w;
    size_t max = (size_t)w->cfg->store_batch;
    cs_item *items = calloc(max, sizeof *items);
    cs_working_set ws;
    int64_t next_rebalance = 0, next_sweep = 0, next_maint = 0, next_lag = 0, next_watch = 0;
    int64_t backoff = BACKOFF_MIN_MS, last_end = 0;
    unsigned resync_seen = atomic_load(&w->resync);

    cs_working_set_init(&ws);
    sh->redis_writer = cs_redis_writer_new(w->cfg, w->metrics, sh->name);
    if (items == NULL || sh->redis_writer == NULL) {
        cart_log(CART_LOG_ERROR, "out of memory starting runner", CART_LS("shard", sh->name), NULL);
        free(items);
        return NULL;
    }
    while (!atomic_load(&w->stopping)) {
        int64_t now = cart_mono_ms();
        size_t n;

        if (sh->pg == NULL) {
            if (open_session(sh) != 0) {
                struct timespec ts = {backoff / 1000, (backoff % 1000) * 1000000};
                nanosleep(&ts, NULL);
                backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
                continue;
            }
            backoff = BACKOFF_MIN_MS;
            next_rebalance = 0;
        }
        if (restart_lost(sh, &resync_seen))
            next_rebalance = 0;
        if (now >= next_rebalance) {
            rebalance(sh);
            next_rebalance = now + REBALANCE_MS;
        }
        if (sh->pg && now >= next_sweep) {
            sweep_outbox(sh);
            next_sweep = now + OUTBOX_SWEEP_MS;
        }
        if (now >= next_lag) {
            update_lag(sh);
            next_lag = now + LAG_MS;
        }
        if (sh->pg && now >= next_watch) {
            if (watch_partitions(sh, now))
                next_rebalance = 0; /* take them again at once */
            next_watch = now + WATCH_MS;
        }
        /* Keys whose write failed are deleted once Redis is back even if no batch comes to do it
         * (a Redis restarted from its append-only file would serve them stale until their TTL). */
        cs_redis_writer_put(sh->redis_writer, NULL, 0);
        if (sh->pg && now >= next_maint) {
            /* Not right after taking partitions over: their backlog goes first. */
            if (next_maint != 0 && expire_idle(sh, &ws) == 0)
                prune_processed(sh);
            next_maint = now + w->cfg->expiry_interval_ms;
        }
        pthread_mutex_lock(&sh->mu);
        n = take_batch(sh, items, max);
        if (n == 0 && !atomic_load(&w->stopping)) {
            struct timespec until;
            int64_t wait_ms = next_rebalance - cart_mono_ms();
            if (wait_ms < 1)
                wait_ms = 1;
            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_sec += wait_ms / 1000;
            until.tv_nsec += (wait_ms % 1000) * 1000000;
            if (until.tv_nsec >= 1000000000) {
                until.tv_sec++;
                until.tv_nsec -= 1000000000;
            }
            pthread_cond_timedwait(&sh->cv, &sh->mu, &until);
            n = take_batch(sh, items, max);
        }
        /* Under load, a small batch waits a moment for company: each batch pays its round trips,
         * its commit and the wake-ups of every process on the way, so two events in one batch cost
         * much less than two batches. An idle runner (nothing applied for a while) does not wait,
         * so a lone write is not slowed down. What comes meanwhile is appended; each partition's
         * events stay in stream order. */
        if (n > 0 && n < CS_LINGER_BELOW && w->cfg->store_linger_us > 0 && cart_mono_ms() - last_end < LINGER_BUSY_MS) {
            struct timespec ts = {0, (long)w->cfg->store_linger_us * 1000L};
            ts.tv_sec = ts.tv_nsec / 1000000000L;
            ts.tv_nsec %= 1000000000L;
            pthread_mutex_unlock(&sh->mu);
            nanosleep(&ts, NULL);
            pthread_mutex_lock(&sh->mu);
            n += take_batch(sh, items + n, max - n);
        }
        pthread_mutex_unlock(&sh->mu);
        if (n > 0 && sh->pg) {
            apply_batch(sh, items, n, &ws);
            last_end = cart_mono_ms();
        }
        free_items(items, n);
        delete_published(sh, false);
    }
    /* The notices still in flight: wait for their acks and delete what was stored, so the next
     * owner does not send them again. */
    sh->acks_settled = wait_acks(sh);
    delete_published(sh, true);
    drop_session(sh, "shutting down");
    cs_redis_writer_free(sh->redis_writer);
    sh->redis_writer = NULL;
    cs_working_set_cleanup(&ws);
    free(items);
    return NULL;
}

/* The shards' memory when an ack handler may still run with it (see cs_worker_stop); volatile, so
 * that the store is kept and the memory stays reachable to the exit. */
static cs_shard *volatile left_to_exit;

int cs_worker_start(cs_worker *w)
{
    const cart_config *cfg = w->cfg;

    w->nshards = cfg->nshards;
    w->shards = calloc(cfg->nshards, sizeof *w->shards);
    if (w->shards == NULL)
        return -1;
    for (uint32_t s = 0; s < cfg->nshards; s++) {
        cs_shard *sh = &w->shards[s];
        jsOptions jo;
        sh->w = w;
        sh->index = s;
        snprintf(sh->name, sizeof sh->name, "shard-%u", s);
        cart_shard_partitions(s, cfg->partitions, cfg->nshards, &sh->first, &sh->last);
        sh->parts = calloc(sh->last - sh->first + 1, sizeof *sh->parts);
        if (sh->parts == NULL)
            return -1;
        for (uint32_t p = sh->first; p <= sh->last; p++) {
            char label[16];
            const char *lv[1] = {label};
            snprintf(label, sizeof label, "%u", p);
            part_of(sh, p)->id = p;
            part_of(sh, p)->shard = sh;
            part_of(sh, p)->lag = cart_metrics_series(w->m_lag, lv);
        }
        pthread_mutex_init(&sh->mu, NULL);
        pthread_cond_init(&sh->cv, NULL);
        pthread_mutex_init(&sh->acks_mu, NULL);
        cs_batch_init(&sh->batch);
        cs_batch_sql_init(&sh->sql);
        jsOptions_Init(&jo);
        jo.PublishAsync.AckHandler = on_change_ack;
        jo.PublishAsync.AckHandlerClosure = sh;
        jo.PublishAsync.MaxPending = 4096;
        jo.Wait = 2000; /* JetStream API calls (consumer info, subscribe): never the 5 s default */
        if (natsConnection_JetStream(&sh->js, w->nc, &jo) != NATS_OK)
            return -1;
        if (pthread_create(&sh->thread, NULL, runner_main, sh) != 0)
            return -1;
        sh->started = true;
    }
    pthread_mutex_lock(&w->wake_mu);
    w->wakeable = true;
    pthread_mutex_unlock(&w->wake_mu);
    return 0;
}

void cs_worker_stop(cs_worker *w)
{
    bool leak = false;

    pthread_mutex_lock(&w->wake_mu);
    w->wakeable = false; /* the shards are freed below */
    pthread_mutex_unlock(&w->wake_mu);
    atomic_store(&w->stopping, true);
    for (uint32_t s = 0; s < w->nshards; s++) {
        cs_shard *sh = &w->shards[s];
        if (!sh->started)
            continue;
        pthread_mutex_lock(&sh->mu);
        pthread_cond_broadcast(&sh->cv);
        pthread_mutex_unlock(&sh->mu);
    }
    for (uint32_t s = 0; s < w->nshards; s++) {
        cs_shard *sh = &w->shards[s];
        if (sh->started)
            pthread_join(sh->thread, NULL);
        jsCtx_Destroy(sh->js);
        pthread_mutex_destroy(&sh->mu);
        pthread_cond_destroy(&sh->cv);
        free(sh->parts);
        free(sh->outbox_done);
        cs_batch_cleanup(&sh->batch);
        cs_batch_sql_cleanup(&sh->sql);
        /* A notice still unanswered could still call on_change_ack with this shard: then its
         * state is left to the process's exit (its row stays in the outbox for the next owner). */
        if (sh->started && !sh->acks_settled) {
            leak = true;
            continue;
        }
        pthread_mutex_destroy(&sh->acks_mu);
        free(sh->pending);
        free(sh->acked);
    }
    if (leak) {
        cart_log(CART_LOG_WARN, "change notices still unanswered at exit; the outbox keeps them", NULL);
        left_to_exit = w->shards;
        return;
    }
    free(w->shards);
    w->shards = NULL;
    w->nshards = 0;
}

bool cs_worker_ready(cs_worker *w)
{
    for (uint32_t s = 0; s < w->nshards; s++)
        if (!atomic_load(&w->shards[s].session_ok))
            return false;
    return w->nshards > 0;
}

void cs_worker_on_bus_event(cart_bus_event ev, natsStatus err, void *ud)
{
    cs_worker *w = ud;

    cart_counter_inc(w->m_nats_errors);
    if (ev == CART_BUS_RECONNECTED || err == NATS_MISMATCH || err == NATS_MISSED_HEARTBEAT ||
        err == NATS_SLOW_CONSUMER) {
        /* Woken, the runners restart their partitions at once rather than after their wait (up
         * to the rebalance period), while a write may be waiting for its commit. */
        atomic_fetch_add(&w->resync, 1);
        pthread_mutex_lock(&w->wake_mu);
        for (uint32_t s = 0; w->wakeable && s < w->nshards; s++) {
            pthread_mutex_lock(&w->shards[s].mu);
            pthread_cond_broadcast(&w->shards[s].cv);
            pthread_mutex_unlock(&w->shards[s].mu);
        }
        pthread_mutex_unlock(&w->wake_mu);
    }
}
