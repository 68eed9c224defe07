/*
 * cart-stats: counts every change notice of carts.changes.> once into live figures (Redis) and
 * minute rows (PostgreSQL), and serves them (docs/reference/api.md, Statistics).
 *
 *   cart-stats [run]    the service (HTTP on CART_STATS_PORT)
 *   cart-stats rebuild  refills Redis from the minute rows in PostgreSQL, and exits
 *
 * The main thread runs a libuv loop for HTTP and the signals; the consumer runs on a thread of its
 * own (consumer.c).
 */
#define _POSIX_C_SOURCE 200809L
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "cartshard/bus.h"
#include "cartshard/command.h"
#include "cartshard/clock.h"
#include "cartshard/config.h"
#include "cartshard/http.h"
#include "cartshard/log.h"
#include "cartshard/metrics.h"
#include "cartshard/pg.h"
#include "stats.h"

#define ST_VERSION "0.1.0"
/* How long open connections get to close at exit. */
#define CLOSE_WAIT_MS 2000

static cart_metric *plain_metric(cart_metrics *r, const char *name, const char *help, cart_metric_type type)
{
    return cart_metrics_series(cart_metrics_family(r, name, help, type, NULL, NULL, 0), NULL);
}

static void register_metrics(st_service *s)
{
    static const char *const windows[3] = {"5m", "1h", "24h"};
    cart_metrics *r = s->metrics;
    cart_metric_family *changes, *figures;

    changes = cart_metrics_family(r, "cartshard_stats_changes_total",
                                  "Change notices handled by the stats consumer, by outcome.", CART_METRIC_COUNTER,
                                  "outcome", NULL, 0);
    {
        const char *v[1];
        v[0] = "counted";
        s->m_counted = cart_metrics_series(changes, v);
        v[0] = "duplicate";
        s->m_duplicate = cart_metrics_series(changes, v);
        v[0] = "malformed";
        s->m_malformed = cart_metrics_series(changes, v);
        v[0] = "stale";
        s->m_stale = cart_metrics_series(changes, v);
    }
    s->m_pending =
        plain_metric(r, "cartshard_stats_consumer_pending",
                     "Change notices on the stream not yet acknowledged by the stats consumer.", CART_METRIC_GAUGE);
    s->m_flush_age = plain_metric(r, "cartshard_stats_flush_age_seconds",
                                  "Seconds since everything the consumer counted was last durable in PostgreSQL.",
                                  CART_METRIC_GAUGE);
    s->m_rebuilds = plain_metric(r, "cartshard_stats_rebuilds_total",
                                 "Times this replica refilled Redis from PostgreSQL because the figures were lost.",
                                 CART_METRIC_COUNTER);
    s->m_batches = plain_metric(r, "cartshard_stats_batches_total",
                                "Batches of notices counted (one PostgreSQL statement each).", CART_METRIC_COUNTER);
    figures = cart_metrics_family(r, "cartshard_stats_figure", "The live figures of each window.", CART_METRIC_GAUGE,
                                  "window,figure", NULL, 0);
    for (int w = 0; w < 3; w++) {
        for (int i = 0; i <= ST_NCOUNTERS; i++) {
            const char *v[2] = {windows[w], i < ST_NCOUNTERS ? st_counter_names[i] : "active_carts"};
            s->m_figure[w][i] = cart_metrics_series(figures, v);
        }
    }
    s->m_requests = cart_metrics_family(r, "cartshard_http_requests_total", "HTTP requests by route and status.",
                                        CART_METRIC_COUNTER, "route,status", NULL, 0);
    s->m_latency =
        cart_metrics_family(r, "cartshard_http_request_duration_seconds", "HTTP request latency by route and status.",
                            CART_METRIC_HISTOGRAM, "route,status", NULL, 0);
    s->m_pg_errors = cart_metrics_dependency_errors(r, "postgresql");
    s->m_redis_errors = cart_metrics_dependency_errors(r, "redis");
    s->m_nats_errors = cart_metrics_dependency_errors(r, "nats");
}

static uv_signal_t sig_term, sig_int;
static cart_http_server *http_srv;
static st_service *the_service;

static void on_signal(uv_signal_t *h, int signum)
{
    cart_log(CART_LOG_INFO, "stopping", CART_LS("signal", signum == SIGTERM ? "SIGTERM" : "SIGINT"), NULL);
    uv_signal_stop(&sig_term);
    uv_signal_stop(&sig_int);
    atomic_store(&the_service->draining, true);
    cart_http_server_stop_accepting(http_srv);
    uv_stop(h->loop);
}

static void close_walk(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

static int cmd_run(const cart_config *cfg)
{
    uv_loop_t loop;
    cart_http_server srv;
    st_service s;
    char err[256];
    int rc = 1;
    bool loop_ready = false, signals_ready = false;

    memset(&s, 0, sizeof s);
    memset(&srv, 0, sizeof srv);
    s.cfg = cfg;
    the_service = &s;
    atomic_store(&s.flushed_at_ms, cart_now_ms());
    s.metrics = cart_metrics_new();
    if (s.metrics == NULL)
        goto out;
    register_metrics(&s);
    if (cart_bus_connect(cfg, cfg->stats_id, CART_BUS_IN_BACKGROUND, &s.nc, err, sizeof err) != CART_OK) {
        cart_log(CART_LOG_ERROR, "nats connection failed", CART_LS("error", err), NULL);
        goto out;
    }
    st_api_init(&s);
    uv_loop_init(&loop);
    loop_ready = true;
    if (cart_http_server_init(&srv, &loop, cfg->stats_host, cfg->stats_port, false, NULL, st_api_on_req,
                              st_api_handler_size(), 1024, err, sizeof err) != 0) {
        cart_log(CART_LOG_ERROR, "http server failed", CART_LS("error", err), NULL);
        goto out;
    }
    st_api_bind(srv.handler, &s);
    http_srv = &srv;
    if (st_consumer_start(&s) != 0) {
        cart_log(CART_LOG_ERROR, "starting the consumer failed", NULL);
        goto out;
    }
    uv_signal_init(&loop, &sig_term);
    uv_signal_init(&loop, &sig_int);
    uv_signal_start(&sig_term, on_signal, SIGTERM);
    uv_signal_start(&sig_int, on_signal, SIGINT);
    signals_ready = true;
    cart_log(CART_LOG_INFO, "cart-stats started", CART_LS("id", cfg->stats_id), CART_LI("port", cfg->stats_port), NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    rc = 0;
out:
    /* The batch in flight is counted and acknowledged (or left unacknowledged, to be redelivered). */
    st_consumer_stop(&s);
    if (loop_ready) {
        if (signals_ready) {
            uv_close((uv_handle_t *)&sig_term, NULL);
            uv_close((uv_handle_t *)&sig_int, NULL);
        }
        cart_http_server_close_wait(&srv, CLOSE_WAIT_MS);
        cart_http_server_cleanup(&srv);
        uv_walk(&loop, close_walk, NULL);
        uv_run(&loop, UV_RUN_DEFAULT);
        if (uv_loop_close(&loop) != 0)
            cart_log(CART_LOG_WARN, "the loop still had handles at exit", NULL);
    }
    st_api_cleanup();
    cart_bus_close(s.nc, 2000);
    cart_metrics_free(s.metrics);
    if (rc == 0)
        cart_log(CART_LOG_INFO, "cart-stats stopped", NULL);
    return rc;
}

/* `cart-stats rebuild`: Redis from PostgreSQL, whatever Redis holds. */
static int cmd_rebuild(const cart_config *cfg)
{
    st_live live = {.cfg = cfg};
    PGconn *pg = cart_pg_open(cfg->stats_dsn, "cart-stats rebuild", 10, false);
    char err[512] = "", redacted[256];
    int rc = 1;

    if (pg == NULL || PQstatus(pg) != CONNECTION_OK) {
        cart_log(CART_LOG_ERROR, "postgresql connection failed",
                 CART_LS("dsn", cart_pg_redact(cfg->stats_dsn, redacted, sizeof redacted)),
                 CART_LS("error", pg != NULL ? PQerrorMessage(pg) : "out of memory"), NULL);
        goto out;
    }
    if (st_rebuild(pg, &live, cart_now_ms(), true, err, sizeof err) != 0) {
        cart_log(CART_LOG_ERROR, "rebuild failed", CART_LS("error", err), NULL);
        fprintf(stderr, "cart-stats: rebuild failed: %s\n", err);
        goto out;
    }
    cart_log(CART_LOG_INFO, "redis figures rebuilt from postgresql", NULL);
    rc = 0;
out:
    st_live_close(&live);
    if (pg != NULL)
        PQfinish(pg);
    return rc;
}

static const cart_command commands[] = {{"run", cmd_run}, {"rebuild", cmd_rebuild}};

static const cart_service service = {
    "cart-stats",
    ST_VERSION,
    CART_ROLE_STATS,
    "usage: cart-stats [run | rebuild | version | help]\n"
    "  run      count the change notices and serve the figures (default)\n"
    "  rebuild  refill Redis from the minute rows in PostgreSQL (STATS_DSN)\n"
    "Settings come from environment variables; see docs/reference/commands.md.\n",
    commands,
    sizeof commands / sizeof commands[0],
};

int main(int argc, char **argv)
{
    return cart_command_main(&service, argc, argv);
}
