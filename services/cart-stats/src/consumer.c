/*
 * consumer.c: the consumer of carts.changes.> (stats.h; docs/internals/stats.md).
 *
 * One loop on a thread of its own: fetch a batch from the durable pull consumer every replica
 * shares, decode it, count it in PostgreSQL (the record), then in Redis (the live figures), and
 * only then acknowledge it. A crash anywhere before the acknowledgement redelivers the batch, and
 * the event ids make the second count a no-op in both places.
 */
#define _POSIX_C_SOURCE 200809L
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cartshard/bus.h"
#include "cartshard/clock.h"
#include "cartshard/log.h"
#include "cartshard/pg.h"
#include "stats.h"

/* How long a fetch waits for the first notice, and JetStream for an acknowledgement. */
#define FETCH_WAIT_MS   500
#define ACK_WAIT_MS     30000
#define MAX_ACK_PENDING 20000
/* Pauses after a failure, growing to the last. */
#define RETRY_MIN_MS 100
#define RETRY_MAX_MS 2000
/* How often the figures' gauges and the pending gauge are refreshed, and old rows pruned. */
#define GAUGES_EVERY_MS 2000
#define PRUNE_EVERY_MS  60000

/* The consumer's state; on its thread only. */
typedef struct consumer {
    st_service *s;
    jsCtx *js;                   /* JetStream context */
    natsSubscription *sub;       /* the pull subscription; NULL until made */
    PGconn *pg;                  /* STATS_DSN; NULL until connected */
    st_live live;                /* Redis */
    int64_t gauges_at, prune_at; /* when the gauges and the pruning last ran */
} consumer;

static void pause_ms(consumer *c, int ms)
{
    for (int waited = 0; waited < ms && !atomic_load(&c->s->stopping); waited += 50)
        nats_Sleep(50);
}

static int backoff(int ms)
{
    return ms * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : ms * 2;
}

/* Connects to STATS_DSN if not connected. */
static bool pg_connect(consumer *c)
{
    char err[256], redacted[256];

    if (c->pg != NULL && PQstatus(c->pg) == CONNECTION_OK)
        return true;
    if (c->pg != NULL)
        PQfinish(c->pg);
    c->pg = cart_pg_open(c->s->cfg->stats_dsn, "cart-stats", 5, false);
    if (c->pg == NULL || PQstatus(c->pg) != CONNECTION_OK) {
        cart_log(CART_LOG_WARN, "postgresql connection failed",
                 CART_LS("dsn", cart_pg_redact(c->s->cfg->stats_dsn, redacted, sizeof redacted)),
                 CART_LS("error", c->pg != NULL ? PQerrorMessage(c->pg) : "out of memory"), NULL);
        goto failed;
    }
    if (st_pg_prepare(c->pg, err, sizeof err) != 0) {
        cart_log(CART_LOG_WARN, "postgresql session setup failed", CART_LS("error", err), NULL);
        goto failed;
    }
    atomic_store(&c->s->pg_ok, true);
    return true;

failed:
    cart_counter_inc(c->s->m_pg_errors);
    if (c->pg != NULL)
        PQfinish(c->pg);
    c->pg = NULL;
    atomic_store(&c->s->pg_ok, false);
    return false;
}

/* Fetches the next batch. With CART_STATS_LINGER_MS, the pull waits that long for a full batch:
 * a plain fetch returns what is there at once, which under a steady stream of changes is a few
 * notices, each batch then paying its statement and commit (measured at 2,000 changes/s: 6
 * notices a batch and about 100 µs of shard 0's CPU per change). The counts are at most that much
 * later. Without it, it takes what is there, and waits FETCH_WAIT_MS only when nothing is. */
static natsStatus fetch(consumer *c, natsMsgList *list, jsErrCode *jerr)
{
    jsFetchRequest fr;

    if (c->s->cfg->stats_linger_ms == 0)
        return natsSubscription_Fetch(list, c->sub, c->s->cfg->stats_batch, FETCH_WAIT_MS, jerr);
    jsFetchRequest_Init(&fr);
    fr.Batch = c->s->cfg->stats_batch;
    fr.Expires = (int64_t)c->s->cfg->stats_linger_ms * 1000000;
    *jerr = 0;
    return natsSubscription_FetchRequest(list, c->sub, &fr);
}

/* Makes the pull subscription on the shared durable consumer. */
static bool subscribe(consumer *c)
{
    jsSubOptions so;
    jsConsumerConfig cc;
    jsConsumerInfo *ci = NULL;
    jsErrCode jerr = 0;
    natsStatus st;

    if (c->sub != NULL)
        return true;
    if (c->js == NULL && natsConnection_JetStream(&c->js, c->s->nc, NULL) != NATS_OK)
        return false;
    /* The consumer is made here, not by the subscribe call: nats.c deletes a consumer its own
     * subscribe made when that subscription ends, and every replica shares this one. */
    jsConsumerConfig_Init(&cc);
    cc.Durable = ST_CONSUMER;
    cc.Description = "cart-stats: counts every change notice once";
    cc.FilterSubject = CART_SUBJ_CHANGES ".>";
    cc.AckPolicy = js_AckExplicit;
    cc.AckWait = (int64_t)ACK_WAIT_MS * 1000000;
    cc.MaxAckPending = MAX_ACK_PENDING;
    cc.DeliverPolicy = js_DeliverAll;
    st = js_AddConsumer(&ci, c->js, CART_STREAM_CHANGES, &cc, NULL, &jerr);
    jsConsumerInfo_Destroy(ci);
    if (st != NATS_OK) /* it may exist with other settings: binding to it below says whether it is there */
        cart_log(CART_LOG_WARN, "creating the stats consumer failed", CART_LS("error", natsStatus_GetText(st)),
                 CART_LI("js_error", jerr), NULL);
    jerr = 0;
    jsSubOptions_Init(&so);
    so.Stream = CART_STREAM_CHANGES;
    so.Consumer = ST_CONSUMER;
    so.ManualAck = true;
    st = js_PullSubscribe(&c->sub, c->js, CART_SUBJ_CHANGES ".>", ST_CONSUMER, NULL, &so, &jerr);
    if (st != NATS_OK) {
        cart_counter_inc(c->s->m_nats_errors);
        cart_log(CART_LOG_WARN, "subscribing to the change notices failed", CART_LS("error", natsStatus_GetText(st)),
                 CART_LI("js_error", jerr), NULL);
        c->sub = NULL;
        return false;
    }
    cart_log(CART_LOG_INFO, "consuming change notices", CART_LS("stream", CART_STREAM_CHANGES),
             CART_LS("consumer", ST_CONSUMER), NULL);
    return true;
}

/* Rebuilds Redis from PostgreSQL (the marker was missing), retrying until done or stopping. */
static bool rebuild(consumer *c)
{
    int wait = RETRY_MIN_MS;
    char err[256];

    while (!atomic_load(&c->s->stopping)) {
        err[0] = '\0';
        if (pg_connect(c) && st_rebuild(c->pg, &c->live, cart_now_ms(), false, err, sizeof err) == 0) {
            cart_counter_inc(c->s->m_rebuilds);
            cart_log(CART_LOG_INFO, "redis figures rebuilt from postgresql (the marker was missing)", NULL);
            return true;
        }
        cart_log(CART_LOG_WARN, "rebuilding the redis figures failed", CART_LS("error", err), NULL);
        pause_ms(c, wait);
        wait = backoff(wait);
    }
    return false;
}

/* Counts the notices in PostgreSQL, retrying until done or stopping. */
static bool count_pg(consumer *c, const st_notice *const *v, size_t n, bool *fresh, int64_t *minute)
{
    int wait = RETRY_MIN_MS;
    char err[512];

    while (!atomic_load(&c->s->stopping)) {
        if (pg_connect(c)) {
            if (st_pg_count(c->pg, v, n, fresh, minute, err, sizeof err) == 0)
                return true;
            cart_counter_inc(c->s->m_pg_errors);
            cart_log(CART_LOG_WARN, "counting in postgresql failed", CART_LS("error", err), NULL);
            if (PQstatus(c->pg) != CONNECTION_OK)
                atomic_store(&c->s->pg_ok, false);
        }
        pause_ms(c, wait);
        wait = backoff(wait);
    }
    return false;
}

/* Counts the notices in Redis (rebuilding it first when it lost the figures), retrying until done
 * or stopping; outcome[i] is then 1 (counted) or 0 (a duplicate). */
static bool count_live(consumer *c, const st_notice *const *v, size_t n, int *outcome)
{
    int wait = RETRY_MIN_MS;

    while (!atomic_load(&c->s->stopping)) {
        st_live_result r = st_live_count(&c->live, v, n, outcome);
        if (r == ST_LIVE_OK) {
            atomic_store(&c->s->redis_ok, true);
            return true;
        }
        if (r == ST_LIVE_LOST) {
            atomic_store(&c->s->redis_ok, true);
            if (!rebuild(c))
                return false;
            continue;
        }
        atomic_store(&c->s->redis_ok, false);
        cart_counter_inc(c->s->m_redis_errors);
        cart_log(CART_LOG_WARN, "counting in redis failed", NULL);
        pause_ms(c, wait);
        wait = backoff(wait);
    }
    return false;
}

static int win_index(int minutes)
{
    return minutes == 5 ? 0 : minutes == 60 ? 1 : 2;
}

/* Refreshes the pending gauge (from the consumer's info) and the figures' gauges. */
static void refresh_gauges(consumer *c, int64_t now)
{
    static const int wins[3] = {5, 60, 1440};
    jsConsumerInfo *ci = NULL;
    jsErrCode jerr = 0;

    c->gauges_at = now;
    if (c->sub != NULL && natsSubscription_GetConsumerInfo(&ci, c->sub, NULL, &jerr) == NATS_OK && ci != NULL) {
        cart_gauge_set(c->s->m_pending, (double)(ci->NumPending + (uint64_t)ci->NumAckPending));
        jsConsumerInfo_Destroy(ci);
    }
    for (int w = 0; w < 3; w++) {
        st_figures *f = malloc(sizeof *f);
        if (f == NULL)
            return;
        if (st_live_figures(&c->live, now, wins[w], f) == ST_LIVE_OK) {
            for (int i = 0; i < ST_NCOUNTERS; i++)
                cart_gauge_set(c->s->m_figure[win_index(wins[w])][i], (double)f->sum[i]);
            cart_gauge_set(c->s->m_figure[win_index(wins[w])][ST_NCOUNTERS], (double)f->active_carts);
        }
        free(f);
    }
}

/* Handles one fetched batch: decode, count, acknowledge. */
static void handle_batch(consumer *c, natsMsgList *list)
{
    int n = list->Count;
    st_notice *notices = calloc((size_t)n, sizeof *notices);
    st_notice **todo = calloc((size_t)n, sizeof *todo);
    int *outcome = calloc((size_t)n, sizeof *outcome);
    int *of = calloc((size_t)n, sizeof *of); /* the index in todo of each message, or -1 */
    bool *fresh = calloc((size_t)n, sizeof *fresh);
    int64_t *minute = calloc((size_t)n, sizeof *minute);
    size_t ntodo = 0;
    int64_t now_min = cart_now_ms() / 60000;

    if (notices == NULL || todo == NULL || outcome == NULL || of == NULL || fresh == NULL || minute == NULL) {
        cart_log(CART_LOG_ERROR, "out of memory: the batch is left to be redelivered", NULL);
        goto out;
    }
    for (int i = 0; i < n; i++) {
        natsMsg *m = list->Msgs[i];
        char err[160];
        of[i] = -1;
        if (st_notice_decode(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), &notices[i], err, sizeof err) !=
            CART_OK) {
            cart_counter_inc(c->s->m_malformed);
            cart_log(CART_LOG_WARN, "malformed change notice: acknowledged, not counted",
                     CART_LS("subject", natsMsg_GetSubject(m)), CART_LS("error", err), NULL);
            continue;
        }
        if (notices[i].minute < now_min - ST_STALE_MINUTES) {
            cart_counter_inc(c->s->m_stale);
            continue;
        }
        /* A second copy in the same batch: counted as a duplicate, acknowledged with the batch. */
        for (size_t j = 0; j < ntodo && of[i] < 0; j++)
            if (strcmp(todo[j]->event_id, notices[i].event_id) == 0)
                of[i] = -2;
        if (of[i] == -2) {
            cart_counter_inc(c->s->m_duplicate);
            continue;
        }
        of[i] = (int)ntodo;
        todo[ntodo++] = &notices[i];
    }
    if (ntodo > 0) {
        if (!count_pg(c, (const st_notice *const *)todo, ntodo, fresh, minute))
            goto out; /* stopping: the batch is redelivered */
        /* A copy is looked for in Redis where its first count went. */
        for (size_t j = 0; j < ntodo; j++)
            todo[j]->minute = minute[j];
        atomic_store(&c->s->flushed_at_ms, cart_now_ms());
        if (!count_live(c, (const st_notice *const *)todo, ntodo, outcome))
            goto out;
        cart_counter_inc(c->s->m_batches);
        /* PostgreSQL's answer is the outcome: Redis may have been refilled from it meanwhile. */
        for (size_t j = 0; j < ntodo; j++)
            cart_counter_inc(fresh[j] ? c->s->m_counted : c->s->m_duplicate);
    }
    for (int i = 0; i < n; i++)
        natsMsg_Ack(list->Msgs[i], NULL);
out:
    free(notices);
    free(todo);
    free(outcome);
    free(of);
    free(fresh);
    free(minute);
}

static void *consumer_main(void *arg)
{
    consumer c;
    int wait = RETRY_MIN_MS;

    memset(&c, 0, sizeof c);
    c.s = arg;
    c.live.cfg = c.s->cfg;
    while (!atomic_load(&c.s->stopping)) {
        natsMsgList list = {0};
        jsErrCode jerr = 0;
        natsStatus st;
        int64_t now = cart_now_ms();

        if (now - c.gauges_at >= GAUGES_EVERY_MS) {
            /* A Redis without the marker (a first start, or it lost everything while nothing
             * was counted) is refilled now, so that the figures are there to read. */
            if (st_live_has_marker(&c.live) == 0)
                rebuild(&c);
            refresh_gauges(&c, now);
        }
        if (now - c.prune_at >= PRUNE_EVERY_MS && pg_connect(&c)) {
            char err[256];
            c.prune_at = now;
            if (st_pg_prune(c.pg, now / 60000 - ST_RETAIN_MINUTES, err, sizeof err) != 0)
                cart_log(CART_LOG_WARN, "pruning old minute rows failed", CART_LS("error", err), NULL);
        }
        if (!subscribe(&c)) {
            pause_ms(&c, wait);
            wait = backoff(wait);
            continue;
        }
        st = fetch(&c, &list, &jerr);
        if (st == NATS_TIMEOUT || (st == NATS_OK && list.Count == 0)) {
            /* Nothing waits: everything counted so far is durable. */
            atomic_store(&c.s->flushed_at_ms, cart_now_ms());
            natsMsgList_Destroy(&list);
            wait = RETRY_MIN_MS;
            continue;
        }
        if (st != NATS_OK) {
            cart_counter_inc(c.s->m_nats_errors);
            cart_log(CART_LOG_WARN, "fetching change notices failed", CART_LS("error", natsStatus_GetText(st)),
                     CART_LI("js_error", jerr), NULL);
            natsMsgList_Destroy(&list);
            if (st == NATS_NOT_FOUND || jerr != 0) {
                /* The consumer or the stream went away: make them again. */
                natsSubscription_Destroy(c.sub);
                c.sub = NULL;
            }
            pause_ms(&c, wait);
            wait = backoff(wait);
            continue;
        }
        wait = RETRY_MIN_MS;
        handle_batch(&c, &list);
        natsMsgList_Destroy(&list);
    }
    /* Leaves the durable consumer in place (the other replicas, or the next start, go on). */
    natsSubscription_Destroy(c.sub);
    jsCtx_Destroy(c.js);
    st_live_close(&c.live);
    if (c.pg != NULL)
        PQfinish(c.pg);
    return NULL;
}

int st_consumer_start(st_service *s)
{
    if (pthread_create(&s->thread, NULL, consumer_main, s) != 0)
        return -1;
    s->thread_started = true;
    return 0;
}

void st_consumer_stop(st_service *s)
{
    atomic_store(&s->stopping, true);
    if (s->thread_started)
        pthread_join(s->thread, NULL);
    s->thread_started = false;
}
