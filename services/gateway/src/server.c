/*
 * server.c: the life of a gateway loop thread: gw_thread_start makes its loop, listener (h2o),
 * JetStream contexts, reply subscription, shard and Redis clients and starts it; the thread runs
 * its loop until the process stops; then the drain (gw_begin_drain, woken through inbox.c) stops
 * accepting, waits for the requests in flight, answers what is left and closes everything;
 * gw_thread_stop joins the thread and frees what it started with.
 *
 * Threads: gw_thread_start and gw_thread_stop run on main's thread (before the loop thread
 * starts, and after it is joined); everything else on the loop thread.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>

#include "cartshard/bus.h"
#include "cartshard/clock.h"
#include "cartshard/log.h"
#include "internal.h"

/* A Redis that does not answer this fast counts as down (reads go to the shard, limits local). */
#define REDIS_TIMEOUT_MS 250
/* Clients each thread's local rate limiter remembers while Redis is away. */
#define LOCAL_LIMITER_CLIENTS 65536
/* How long a stopping thread waits for h2o to close the connections it cut. */
#define CLOSE_WAIT_MS 2000
/* A drain cuts idle keep-alive connections this long after it began (see on_drain_tick). */
#define DRAIN_IDLE_GRACE_MS 300

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

void gw_begin_drain(gw_thread *t)
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
    gw_write_table_abort_all(t);
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
    gw_inbox_init(t);
    uv_timer_init(&t->loop, &t->drain_timer);
    t->drain_timer.data = t;
    if (cart_http_server_init(&t->http, &t->loop, cfg->gateway_host, cfg->gateway_port, true, t->app->tls,
                              gw_front_on_req, sizeof(gw_handler), cfg->max_body_bytes, err, sizeof err) != 0) {
        cart_log(CART_LOG_ERROR, "http listener failed", CART_LS("error", err), NULL);
        return -1;
    }
    ((gw_handler *)t->http.handler)->t = t;
    cart_http_server_on_own_answers(&t->http, gw_front_on_own_answer, t);
    jsOptions_Init(&jo);
    jo.PublishAsync.MaxPending = 65536;
    jo.PublishAsync.AckHandler = gw_inbox_on_pub_ack;
    jo.PublishAsync.AckHandlerClosure = t;
    if (natsConnection_JetStream(&t->js, t->app->nc, &jo) != NATS_OK ||
        natsConnection_JetStream(&t->js_sync, t->app->nc_sync, &jo) != NATS_OK) {
        cart_log(CART_LOG_ERROR, "jetstream context failed", NULL);
        return -1;
    }
    snprintf(t->reply_subject, sizeof t->reply_subject, "%s.%s.%d", CART_REPLY_PREFIX, cfg->gateway_id, t->index);
    if (natsConnection_Subscribe(&t->reply_sub, t->app->nc_sync, t->reply_subject, gw_inbox_on_reply, t) != NATS_OK ||
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
    /* The inbox's wake sees app->stopping and starts draining. */
    uv_async_send(&t->wake);
    pthread_join(t->thread, NULL);
    t->started = false;
    natsSubscription_Destroy(t->reply_sub);
    jsCtx_Destroy(t->js);
    jsCtx_Destroy(t->js_sync);
    free(t->shards);
    gw_local_limiter_free(t->limiter);
    gw_jwks_unref(t->jwks);
    t->jwks = NULL;
    gw_inbox_cleanup(t);
    uv_loop_close(&t->loop);
}
