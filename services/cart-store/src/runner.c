/*
 * runner.c: a shard runner's thread and the worker's lifecycle. The runner thread loops: keep a
 * session (ownership.c), restart lost partitions and rebalance, sweep the outbox, update the lag,
 * watch the partitions, expire and prune (maintenance.c), then take a batch from the queues
 * (intake.c), apply it (apply.c) and delete what was published (relay.c). cs_worker_start and
 * cs_worker_stop start and join one runner per shard. See worker.h for the ownership and ordering
 * design, runner_internal.h for the files.
 *
 * Threads: runner_main on each runner thread; cs_worker_start/stop/started/shard_ok on main's;
 * cs_worker_on_bus_event on nats.c's (it only bumps the resync count and wakes the runners).
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "cartshard/bus.h"
#include "cartshard/clock.h"
#include "cartshard/log.h"
#include "cartshard/partition.h"
#include "runner_internal.h"

#define REBALANCE_MS    1000
#define OUTBOX_SWEEP_MS 5000
#define LAG_MS          5000
/* How often the partitions whose offset did not move are compared with the stream (see
 * cs_maint_watch_partitions). */
#define WATCH_MS 2000
/* A runner that applied a batch less than this long ago is busy: see CART_STORE_LINGER_US. */
#define LINGER_BUSY_MS 20
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000

static cs_partition *part_of(cs_shard *sh, uint32_t id)
{
    return &sh->parts[id - sh->first];
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
            if (cs_session_open(sh) != 0) {
                struct timespec ts = {backoff / 1000, (backoff % 1000) * 1000000};
                nanosleep(&ts, NULL);
                backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
                continue;
            }
            backoff = BACKOFF_MIN_MS;
            next_rebalance = 0;
        }
        if (cs_ownership_restart_lost(sh, &resync_seen))
            next_rebalance = 0;
        if (now >= next_rebalance) {
            cs_ownership_rebalance(sh);
            next_rebalance = now + REBALANCE_MS;
        }
        if (sh->pg && now >= next_sweep) {
            cs_relay_sweep_outbox(sh);
            next_sweep = now + OUTBOX_SWEEP_MS;
        }
        if (now >= next_lag) {
            cs_maint_update_lag(sh);
            next_lag = now + LAG_MS;
        }
        if (sh->pg && now >= next_watch) {
            if (cs_maint_watch_partitions(sh, now))
                next_rebalance = 0; /* take them again at once */
            next_watch = now + WATCH_MS;
        }
        /* Keys whose write failed are deleted once Redis is back even if no batch comes to do it
         * (a Redis restarted from its append-only file would serve them stale until their TTL). */
        cs_redis_writer_put(sh->redis_writer, NULL, 0);
        if (sh->pg && now >= next_maint) {
            /* Not right after taking partitions over: their backlog goes first. */
            if (next_maint != 0 && cs_maint_expire_idle(sh, &ws) == 0)
                cs_maint_prune_processed(sh);
            next_maint = now + w->cfg->expiry_interval_ms;
        }
        cs_relay_send_acks(sh, false);
        pthread_mutex_lock(&sh->mu);
        n = cs_intake_take(sh, items, max);
        if (n == 0 && !atomic_load(&w->stopping)) {
            struct timespec until;
            /* Woken by the oldest held ack too, so that an idle partition is acknowledged in time. */
            int64_t wait_ms = (sh->ack_due_ms < next_rebalance ? sh->ack_due_ms : next_rebalance) - cart_mono_ms();
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
            n = cs_intake_take(sh, items, max);
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
            n += cs_intake_take(sh, items + n, max - n);
        }
        pthread_mutex_unlock(&sh->mu);
        if (n > 0 && sh->pg) {
            cs_apply_batch(sh, items, n, &ws);
            last_end = cart_mono_ms();
        }
        cs_apply_free_items(items, n);
        cs_relay_delete_published(sh, false);
    }
    /* What was committed is acknowledged (the releases would, later); the notices still in flight
     * are waited for and what was stored deleted, so the next owner does not send them again. */
    cs_relay_send_acks(sh, true);
    sh->acks_settled = cs_relay_wait_acks(sh);
    cs_relay_delete_published(sh, true);
    cs_session_drop(sh, "shutting down");
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
        jo.PublishAsync.AckHandler = cs_relay_on_change_ack;
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
        /* A notice still unanswered could still call cs_relay_on_change_ack with this shard: then its
         * state is left to the process's exit (its row stays in the outbox for the next owner). */
        if (sh->started && !sh->acks_settled) {
            leak = true;
            continue;
        }
        pthread_mutex_destroy(&sh->acks_mu);
        free(sh->unacked);
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

bool cs_worker_started(cs_worker *w)
{
    for (uint32_t s = 0; s < w->nshards; s++)
        if (!atomic_load(&w->shards[s].session_once))
            return false;
    return w->nshards > 0;
}

bool cs_worker_shard_ok(cs_worker *w, uint32_t shard)
{
    return shard < w->nshards && atomic_load(&w->shards[shard].session_ok);
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
