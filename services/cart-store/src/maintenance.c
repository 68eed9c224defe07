/*
 * maintenance.c: a runner's periodic work besides events: expiring idle carts (announced as
 * cart.expired), pruning old dedup rows, the lag gauges, and the partition watchdog, which
 * restarts a partition whose consumer stopped delivering without anyone saying so.
 *
 * Threads: the runner thread only (queue fields read under cs_shard.mu).
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cartshard/bus.h"
#include "cartshard/clock.h"
#include "cartshard/log.h"
#include "cartshard/partition.h"
#include "runner_internal.h"

#define EXPIRE_BATCH 200
#define PRUNE_BATCH  10000
/* Dedup rows outlive the stream's 7-day MaxAge and the 24 h Idempotency-Key promise. */
#define DEDUP_RETENTION_MS (8LL * 24 * 3600 * 1000)

/* Expires the carts of the owned partitions that nobody touched for CART_IDLE_TTL, in one
 * transaction, and announces each as cart.expired. Only partitions with nothing queued take part,
 * so an expiry does not overtake a change already waiting for that cart. 0, or -1 when the
 * session failed. */
int cs_maint_expire_idle(cs_shard *sh, cs_working_set *ws)
{
    const cart_config *cfg = sh->w->cfg;
    int64_t now = cart_now_ms();
    char *arr = cs_ownership_owned_array(sh, true);
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
    cs_relay_take_acked(sh);
    if (cs_apply_begin(sh, ws, NULL, 0, &e) != CART_OK)
        goto rollback;
    for (size_t i = 0; i < ws->ncarts; i++) {
        cs_working_cart *wc = &ws->carts[i];
        uint32_t part = cart_partition_of(wc->c.user_id, strlen(wc->c.user_id), cfg->partitions);
        char event_id[CART_EVENT_ID_MAX + 1];
        cart_outcome o;
        cart_change_what what = {0};
        size_t at;

        cart_expire(&wc->c, now, cfg->idle_ttl_ms, &o);
        if (!o.changed)
            continue;
        wc->changed = true;
        /* The expiry of one cart is one change, whoever announces it. */
        snprintf(event_id, sizeof event_id, "exp-%s", wc->c.cart_id);
        payloads[nchg] = cart_change_to_json(&wc->c, event_id, "cart.expired", part, now, &what, NULL);
        if (payloads[nchg] == NULL || cs_batch_change(&sh->batch, &wc->c, &o, part) != 0 ||
            cs_relay_outbox_add(sh, part, event_id, payloads[nchg], &at) != 0) {
            nchg += payloads[nchg] != NULL;
            cs_store_out_of_memory(&e);
            goto rollback;
        }
        nchg++;
    }
    if (cs_store_write(sh->pg, &sh->batch, &sh->sql, true, &e) != CART_OK)
        goto rollback;
    cs_relay_write_cache(sh, ws);
    cs_relay_publish_changes(sh, sh->batch.outbox, sh->batch.noutbox);
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
    cs_session_drop(sh, e.msg[0] ? e.msg : "expiry failed");
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
 * delivered and not yet acknowledged, less those committed whose ack is still held (ack_run.h):
 * what waits in the local queue or in the batch being applied. */
void cs_maint_update_lag(cs_shard *sh)
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
        uint64_t behind = ci->NumPending + (uint64_t)ci->NumAckPending;
        /* A redelivery acknowledged again (intake.c) may have covered part of the held run: never
         * below 0. */
        behind = behind > p->ack_run.events ? behind - p->ack_run.events : 0;
        cart_gauge_set(p->lag, (double)behind);
        jsConsumerInfo_Destroy(ci);
    }
}

/* Deletes dedup rows older than the retention, a bounded number per round. */
void cs_maint_prune_processed(cs_shard *sh)
{
    char *arr = cs_ownership_owned_array(sh, false);
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
bool cs_maint_watch_partitions(cs_shard *sh, int64_t now)
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
        cs_ownership_release(sh, p, true);
        any = true;
    }
    return any;
}
