/*
 * cart-gateway: the HTTP front of cartshard. Validates requests, turns writes into events on
 * NATS JetStream and answers with the committed cart; reads carts from the owning shard.
 *
 * The main thread loads the configuration, starts GATEWAY_THREADS loop threads (server.c), keeps
 * the Redis health flag up to date, reads AUTH_JWKS_FILE again when it changes (keyring.h), and
 * waits for SIGTERM/SIGINT to drain and stop.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <hiredis.h>

#include "cartshard/bus.h"
#include "cartshard/config.h"
#include "cartshard/log.h"
#include "cartshard/metrics.h"
#include "cartshard/redis.h"
#include "gateway.h"

#define GW_VERSION "0.1.0"

/* The threads' memory when a context in it had to be left to the exit (see main); volatile, so
 * that the store is kept and the memory stays reachable. */
static gw_thread *volatile left_to_exit;

/* A counter without labels. */
static cart_metric *counter(cart_metrics *r, const char *name, const char *help)
{
    return cart_metrics_series(cart_metrics_family(r, name, help, CART_METRIC_COUNTER, NULL, NULL, 0), NULL);
}

/* The bus listener: a reconnect or an asynchronous error of the NATS connection is a NATS error. */
static void on_bus_event(cart_bus_event ev, natsStatus err, void *ud)
{
    gw_app *app = ud;

    (void)ev;
    (void)err;
    cart_counter_inc(app->m_nats_errors);
}

static void register_metrics(gw_app *app)
{
    cart_metrics *r = app->metrics;

    app->m_requests = cart_metrics_family(r, "cartshard_http_requests_total", "HTTP requests by route and status.",
                                          CART_METRIC_COUNTER, "route,status", NULL, 0);
    app->m_latency =
        cart_metrics_family(r, "cartshard_http_request_duration_seconds", "HTTP request latency by route and status.",
                            CART_METRIC_HISTOGRAM, "route,status", NULL, 0);
    app->m_publish_errors = counter(r, "cartshard_publish_errors_total", "Events JetStream did not acknowledge.");
    app->m_publish_unsure = counter(r, "cartshard_publish_unsure_total",
                                    "Events JetStream answered \"duplicate, sequence 0\" (a copy still being "
                                    "replicated), published again.");
    cart_metric_family *cache =
        cart_metrics_family(r, "cartshard_cache_reads_total", "Cart reads by how the Redis cache answered.",
                            CART_METRIC_COUNTER, "result", NULL, 0);
    app->m_cache_hits = cart_metrics_series(cache, (const char *[]){"hit"});
    app->m_cache_misses = cart_metrics_series(cache, (const char *[]){"miss"});
    app->m_cache_corrupt = counter(r, "cartshard_cache_corrupt_total",
                                   "Cache entries that were not a valid cart of their user (read as a miss).");
    app->m_cache_errors =
        counter(r, "cartshard_cache_read_errors_total", "Cache reads that failed or timed out (read as a miss).");
    app->m_cache_fill_errors =
        counter(r, "cartshard_cache_fill_errors_total", "Cache fills after a miss that Redis did not take.");
    app->m_auth_failures = counter(r, "cartshard_auth_failures_total", "Requests refused with 401.");
    app->m_rate_limited = counter(r, "cartshard_rate_limited_total", "Requests refused with 429.");
    app->m_rate_local =
        counter(r, "cartshard_rate_limit_local_total", "Requests limited locally because Redis could not answer.");
    app->m_redis_errors = cart_metrics_dependency_errors(r, "redis");
    app->m_nats_errors = cart_metrics_dependency_errors(r, "nats");
    app->m_pg_errors = cart_metrics_dependency_errors(r, "postgresql");
}

/* One Redis PING with a short timeout; keeps `ctx` between calls. */
static bool redis_ping(const cart_config *cfg, redisContext **ctx)
{
    struct timeval tv = {0, 500000};
    redisReply *reply;
    const char *step;
    char err[256];
    bool ok;

    if (*ctx == NULL || (*ctx)->err) {
        if (*ctx)
            redisFree(*ctx);
        *ctx = redisConnectWithTimeout(cfg->redis_host, cfg->redis_port, tv);
        if (*ctx == NULL || (*ctx)->err)
            return false;
        redisSetTimeout(*ctx, tv);
        if (cart_redis_handshake(*ctx, cfg, &step, err, sizeof err) != CART_REDIS_HANDSHAKE_OK)
            return false;
    }
    reply = redisCommand(*ctx, "PING");
    ok = reply && reply->type == REDIS_REPLY_STATUS;
    freeReplyObject(reply);
    return ok;
}

int main(int argc, char **argv)
{
    cart_config cfg;
    gw_app app;
    gw_thread *threads = NULL;
    redisContext *redis = NULL;
    char err[512], sync_name[CART_ID_MAX + 8];
    sigset_t sigs;
    int rc = 1, sig = 0;

    if (argc > 1 && (strcmp(argv[1], "version") == 0 || strcmp(argv[1], "--version") == 0)) {
        printf("cart-gateway %s\n", GW_VERSION);
        return 0;
    }
    if (argc > 1) {
        fprintf(stderr, "usage: cart-gateway [version]\nSettings come from environment variables; see the README.\n");
        return strcmp(argv[1], "help") == 0 || strcmp(argv[1], "--help") == 0 ? 0 : 2;
    }
    cart_log_init("cart-gateway", CART_LOG_INFO);
    if (cart_config_load(&cfg, CART_ROLE_GATEWAY, cart_env_getenv, NULL, err, sizeof err) != CART_OK) {
        cart_log(CART_LOG_ERROR, "invalid configuration", CART_LS("error", err), NULL);
        fprintf(stderr, "cart-gateway: %s\n", err);
        return 2;
    }
    cart_log_init("cart-gateway", cfg.log_level);
    /* Signals are taken by this thread with sigwait; the loop threads inherit the mask. */
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    memset(&app, 0, sizeof app);
    app.cfg = &cfg;
    app.metrics = cart_metrics_new();
    if (app.metrics == NULL)
        goto out;
    register_metrics(&app);
    /* The files the settings name, read before anything connects: a bad one stops start-up. */
    if ((cfg.gateway_tls_cert &&
         (app.tls = cart_http_tls_new(cfg.gateway_tls_cert, cfg.gateway_tls_key, err, sizeof err)) == NULL) ||
        (cfg.auth_jwks_file && (app.keyring = gw_keyring_new(cfg.auth_jwks_file, err, sizeof err)) == NULL)) {
        cart_log(CART_LOG_ERROR, "invalid configuration", CART_LS("error", err), NULL);
        fprintf(stderr, "cart-gateway: %s\n", err);
        rc = 2;
        goto out;
    }
    cart_bus_set_listener(on_bus_event, &app);
    snprintf(sync_name, sizeof sync_name, "%s-sync", cfg.gateway_id);
    /* In the background: without NATS the gateway still serves reads (writes are 503) and stops on
     * SIGTERM. */
    if (cart_bus_connect(&cfg, cfg.gateway_id, CART_BUS_IN_BACKGROUND, &app.nc, err, sizeof err) != CART_OK ||
        cart_bus_connect(&cfg, sync_name, CART_BUS_SEND_AT_ONCE | CART_BUS_IN_BACKGROUND, &app.nc_sync, err,
                         sizeof err) != CART_OK) {
        cart_log(CART_LOG_ERROR, "nats connection failed", CART_LS("error", err), NULL);
        goto out;
    }
    atomic_store(&app.redis_ok, redis_ping(&cfg, &redis));
    threads = calloc((size_t)cfg.gateway_threads, sizeof *threads);
    if (threads == NULL)
        goto out;
    for (int i = 0; i < cfg.gateway_threads; i++) {
        threads[i].app = &app;
        threads[i].index = i;
        if (gw_thread_start(&threads[i]) != 0)
            goto out;
    }
    cart_log(CART_LOG_INFO, "cart-gateway started", CART_LS("id", cfg.gateway_id), CART_LS("host", cfg.gateway_host),
             CART_LI("port", cfg.gateway_port), CART_LB("tls", app.tls != NULL),
             CART_LI("threads", cfg.gateway_threads), CART_LI("partitions", cfg.partitions),
             CART_LI("shards", cfg.nshards), NULL);
    for (;;) {
        struct timespec tick = {1, 0};
        sig = sigtimedwait(&sigs, NULL, &tick);
        if (sig == SIGTERM || sig == SIGINT)
            break;
        atomic_store(&app.redis_ok, redis_ping(&cfg, &redis));
        if (app.keyring)
            gw_keyring_poll(app.keyring);
    }
    cart_log(CART_LOG_INFO, "stopping", CART_LS("signal", sig == SIGTERM ? "SIGTERM" : "SIGINT"), NULL);
    rc = 0;
out:
    atomic_store(&app.stopping, true);
    if (threads) {
        bool left = false;
        for (int i = 0; i < cfg.gateway_threads; i++) {
            gw_thread_stop(&threads[i]);
            left |= threads[i].http.ctx_left;
        }
        /* A thread whose h2o context could not be released (a connection h2o would not close,
         * logged with what it was) keeps its memory to the exit: the connection still points
         * into it. */
        if (left)
            left_to_exit = threads;
        else
            free(threads);
    }
    cart_bus_close(app.nc, 2000);
    cart_bus_close(app.nc_sync, 0); /* it sent everything as it went */
    if (redis)
        redisFree(redis);
    cart_metrics_free(app.metrics);
    if (app.tls)
        SSL_CTX_free(app.tls);
    gw_keyring_free(app.keyring); /* the threads dropped their sets when they stopped */
    /* nats.c's threads may still report the connection's close (logging its name, which lives
     * in cfg): they are joined before cfg goes. */
    nats_CloseAndWait(2000);
    cart_config_cleanup(&cfg);
    if (rc == 0)
        cart_log(CART_LOG_INFO, "cart-gateway stopped", NULL);
    return rc;
}
