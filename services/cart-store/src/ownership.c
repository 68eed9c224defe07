/*
 * ownership.c: which partitions a runner owns, and the shard session that holds their locks.
 * The session joins the shard's group lock; a partition is owned while the session holds its lock
 * (worker.h), so losing the session (cs_session_drop) releases everything. A runner takes its share
 * of the shard's partitions (cs_ownership_rebalance), consumes each from its
 * committed offset (acquire), and gives up those whose deliveries may have gaps so that they are
 * taken again from their committed offsets (cs_ownership_restart_lost).
 *
 * Threads: the runner thread only; the partitions' queue fields are touched under cs_shard.mu.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>

#include "cartshard/bus.h"
#include "cartshard/log.h"
#include "cartshard/partition.h"
#include "cartshard/pg.h"
#include "runner_internal.h"

#define MAX_ACK_PENDING 1024
#define ACK_WAIT_MS     30000

/* Stops consuming `p` and forgets what was queued (never acknowledged: the next owner replays it
 * from the committed offset). Runner thread only. */
void cs_ownership_release(cs_shard *sh, cs_partition *p, bool unlock)
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
    cs_intake_free_queue(q);
    /* What was committed is acknowledged while the subscription the message points at exists. */
    cs_relay_ack_held(sh, p);
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
    p->binding = NULL; /* freed by cs_intake_on_sub_complete */
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
    s = js_Subscribe(&p->sub, sh->js, subject, cs_intake_on_event, b, NULL, &so, &jerr);
    if (s == NATS_OK)
        s = natsSubscription_SetPendingLimits(p->sub, -1, -1);
    if (s == NATS_OK)
        s = natsSubscription_SetOnCompleteCB(p->sub, cs_intake_on_sub_complete, b);
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

/* Whether partition `p` is this runner's to apply. With W live workers, the worker ranked r among
 * them applies the partitions p with p * W / CART_PARTITIONS = r (cart_worker_of): one
 * contiguous run each, which keeps a shard's writers as few as the counts allow (with two workers
 * and two shards, one each), so its events come in larger batches, each paying its round trips
 * and its commit once. Every shard ranks the same workers the same way (by CART_STORE_ID). In a
 * group with an older worker, which does not rank (a rolling upgrade), each runner takes instead
 * any partitions up to ceil(partitions of the shard / W), as that version does. */
static bool wanted(const cs_partition *p, uint32_t partitions, int members, int rank, bool ranked, uint32_t *room)
{
    if (ranked)
        return cart_worker_of(p->id, partitions, (uint32_t)members) == (uint32_t)rank;
    if (*room == 0)
        return false;
    (*room)--;
    return true;
}

/* Takes or gives partitions so that this runner holds its share (`wanted`). The partition locks
 * keep a partition to one owner while the workers' views differ for a moment (one joining or
 * leaving): a partition wanted by a new owner is taken once the old one gave it back, at its next
 * rebalance (about a second). */
void cs_ownership_rebalance(cs_shard *sh)
{
    uint32_t n = sh->last - sh->first + 1, partitions = sh->w->cfg->partitions, room;
    int members = 1, rank = 0;
    bool ranked = true;
    cs_store_err e;

    if (cs_store_members(sh->pg, CS_LOCK_NS_GROUP, &members, &rank, &ranked, &e) != CART_OK) {
        /* The shard is away. A runner that applies none of its partitions learns it only here:
         * it reports the shard down (readiness, metrics) and reconnects, as one whose batch
         * failed does. */
        cart_counter_inc(sh->w->m_pg_errors);
        if (e.transient || PQstatus(sh->pg) != CONNECTION_OK) {
            cs_session_drop(sh, e.msg[0] ? e.msg : "counting the workers failed");
            return;
        }
        /* Refused for another reason: as if alone; the partition locks still keep each to one
         * owner. */
        cart_log(CART_LOG_WARN, "counting the workers failed", CART_LS("shard", sh->name), CART_LS("error", e.msg),
                 NULL);
        members = 0;
    }
    if (members < 1 || rank < 0 || rank >= members) {
        members = 1;
        rank = 0;
        ranked = true;
    }
    sh->bus_unanswered = false;
    /* The unranked share, the lowest partitions held first: the highest are given back. */
    room = (n + (uint32_t)members - 1) / (uint32_t)members;
    for (uint32_t i = 0; i < n; i++) {
        cs_partition *p = &sh->parts[i];
        if (p->owned && !wanted(p, partitions, members, rank, ranked, &room))
            cs_ownership_release(sh, p, true);
    }
    for (uint32_t i = 0; i < n && sh->pg; i++) {
        cs_partition *p = &sh->parts[i];
        bool got = false;
        if (p->owned || !wanted(p, partitions, members, rank, ranked, &room))
            continue;
        if (cs_store_try_lock(sh->pg, CS_LOCK_NS_PARTITION, (int32_t)p->id, &got, &e) != CART_OK)
            return;
        if (!got) {
            room += !ranked; /* not taken: the room stays for another */
            continue;
        }
        if (acquire_partition(sh, p) != 0) {
            cs_store_unlock(sh->pg, CS_LOCK_NS_PARTITION, (int32_t)p->id, &e);
            room += !ranked;
        }
    }
}

/* Gives up the partitions whose deliveries may have gaps (all of them after a bus resync), so
 * that the next rebalance takes them again from their committed offsets. Nothing uncommitted
 * was acknowledged, so nothing is lost. True if it released any, or a resync was asked for: then
 * the rebalance is due at once. */
bool cs_ownership_restart_lost(cs_shard *sh, unsigned *resync_seen)
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
        cs_ownership_release(sh, p, true);
        cart_counter_inc(sh->w->m_resyncs);
        any = true;
    }
    return any || all;
}

/* The owned partitions as a PostgreSQL array literal ("{3,4,9}"), only those with nothing queued
 * when `idle_only`; NULL when there are none (or no memory). The caller frees it. */
char *cs_ownership_owned_array(cs_shard *sh, bool idle_only)
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

void cs_session_drop(cs_shard *sh, const char *why)
{
    uint32_t n = sh->last - sh->first + 1;

    sh->bus_unanswered = false;
    for (uint32_t i = 0; i < n; i++)
        cs_ownership_release(sh, &sh->parts[i], false);
    if (sh->pg) {
        cart_log(CART_LOG_WARN, "shard session lost", CART_LS("shard", sh->name), CART_LS("error", why), NULL);
        PQfinish(sh->pg);
        cart_gauge_add(sh->w->m_sessions, -1);
    }
    sh->pg = NULL;
    sh->noutbox_done = 0; /* the sweep will find those rows and publish them again (deduplicated) */
    atomic_store(&sh->session_ok, false);
}

int cs_session_open(cs_shard *sh)
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
    atomic_store(&sh->session_once, true);
    cart_gauge_add(sh->w->m_sessions, 1);
    cart_log(CART_LOG_INFO, "shard session open", CART_LS("shard", sh->name),
             CART_LS("dsn", cart_pg_redact(dsn, redacted, sizeof redacted)), NULL);
    return 0;
}
