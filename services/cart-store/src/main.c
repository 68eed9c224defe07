/*
 * cart-store: applies cart events from NATS JetStream to the PostgreSQL shards.
 *
 *   cart-store [run]    the worker (admin HTTP on CART_STORE_ADMIN_PORT: /healthz /readyz /metrics)
 *   cart-store migrate  applies the SQL migrations to every shard and creates the JetStream streams
 *
 * The main thread runs a libuv loop for the admin port and the signals; the shard runners are
 * threads of their own (runner.c).
 */
#define _POSIX_C_SOURCE 200809L
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "cartshard/bus.h"
#include "cartshard/command.h"
#include "cartshard/config.h"
#include "cartshard/http.h"
#include "cartshard/log.h"
#include "cartshard/metrics.h"
#include "migrate.h"
#include "worker.h"

#define CS_VERSION "0.1.0"
/* How long the admin port's remaining connections get to close at exit. */
#define ADMIN_CLOSE_WAIT_MS 1000

typedef struct admin_handler {
    h2o_handler_t super;
    cs_worker *w;
} admin_handler;

/* The body of /readyz: 64 shards at "false," each, and the rest, fit with room to spare. */
#define READY_BODY_MAX (96 + 6 * CART_CONFIG_MAX_SHARDS)

/*
 * Answers /readyz. A worker takes no traffic from a load balancer: it pulls its partitions from
 * JetStream, so readiness only paces rollouts (and what a disruption budget counts). It is 200 once
 * the worker has started: connected to NATS (the admin port answers only after that) and a session
 * opened on every shard at least once, which proves a new version's settings reach them. A shared
 * dependency lost afterwards is reported in the body but does not make it 503: it is down for every
 * worker alike, and the worker resumes by itself when it is back. The admin port stops answering
 * when the worker drains.
 */
static void send_readiness(cs_worker *w, h2o_req_t *req)
{
    bool started = cs_worker_started(w);
    bool nats_ok = natsConnection_Status(w->nc) == NATS_CONN_STATUS_CONNECTED;
    char body[READY_BODY_MAX];
    size_t used;
    int n;

    n = snprintf(body, sizeof body, "{\"ready\":%s,\"nats\":%s,\"shards\":[", started ? "true" : "false",
                 nats_ok ? "true" : "false");
    used = (size_t)n;
    for (uint32_t s = 0; s < w->nshards; s++) {
        n = snprintf(body + used, sizeof body - used, "%s%s", s ? "," : "",
                     cs_worker_shard_ok(w, s) ? "true" : "false");
        used += (size_t)n;
    }
    n = snprintf(body + used, sizeof body - used, "]}\n");
    used += (size_t)n;
    cart_http_send(req, started ? 200 : 503, "application/json", body, used);
}

static int on_admin_req(h2o_handler_t *self, h2o_req_t *req)
{
    cs_worker *w = ((admin_handler *)self)->w;

    if (!h2o_memis(req->method.base, req->method.len, H2O_STRLIT("GET")) &&
        !h2o_memis(req->method.base, req->method.len, H2O_STRLIT("HEAD"))) {
        cart_http_header(req, "Allow", "GET, HEAD");
        cart_http_problem(req, 405, "method-not-allowed", "the admin port only serves GET");
        return 0;
    }
    if (h2o_memis(req->path_normalized.base, req->path_normalized.len, H2O_STRLIT("/healthz"))) {
        cart_http_send(req, 200, "text/plain; charset=utf-8", "ok\n", 3);
    } else if (h2o_memis(req->path_normalized.base, req->path_normalized.len, H2O_STRLIT("/readyz"))) {
        send_readiness(w, req);
    } else if (h2o_memis(req->path_normalized.base, req->path_normalized.len, H2O_STRLIT("/metrics"))) {
        size_t len = 0;
        char *text = cart_metrics_render(w->metrics, &len);
        if (text == NULL) {
            cart_http_problem(req, 503, "unavailable", "out of memory");
            return 0;
        }
        cart_http_send(req, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
        free(text);
    } else {
        cart_http_problem(req, 404, "not-found", "the admin port serves /healthz, /readyz and /metrics");
    }
    return 0;
}

/* The one series of a metric without labels. */
static cart_metric *plain_metric(cart_metrics *r, const char *name, const char *help, cart_metric_type type)
{
    return cart_metrics_series(cart_metrics_family(r, name, help, type, NULL, NULL, 0), NULL);
}

static void register_metrics(cs_worker *w)
{
    cart_metrics *r = w->metrics;
    static const double batch_buckets[] = {0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5};

    w->m_applied = plain_metric(r, "cartshard_events_applied_total", "Events applied to a shard (refusals included).",
                                CART_METRIC_COUNTER);
    w->m_duplicates = plain_metric(r, "cartshard_events_duplicate_total",
                                   "Events dropped because their event_id was applied.", CART_METRIC_COUNTER);
    w->m_key_reused = plain_metric(r, "cartshard_events_key_reused_total",
                                   "Events refused with 422 because their event_id was first used for another "
                                   "request (another request_fingerprint).",
                                   CART_METRIC_COUNTER);
    w->m_dlq = plain_metric(r, "cartshard_events_dead_lettered_total", "Events sent to the CARTS_DLQ stream.",
                            CART_METRIC_COUNTER);
    w->m_rejected = plain_metric(r, "cartshard_events_refused_total",
                                 "Events refused by the cart rules (404, 409, 412, 422).", CART_METRIC_COUNTER);
    w->m_expired =
        plain_metric(r, "cartshard_carts_expired_total", "Idle carts expired (CART_IDLE_TTL).", CART_METRIC_COUNTER);
    w->m_batches =
        plain_metric(r, "cartshard_batches_total", "Transactions committed by the shard runners.", CART_METRIC_COUNTER);
    w->m_batch_seconds = cart_metrics_series(
        cart_metrics_family(r, "cartshard_batch_duration_seconds", "Time to apply and commit one batch.",
                            CART_METRIC_HISTOGRAM, NULL, batch_buckets, sizeof batch_buckets / sizeof batch_buckets[0]),
        NULL);
    w->m_sessions =
        plain_metric(r, "cartshard_shard_sessions", "Open shard sessions of this worker.", CART_METRIC_GAUGE);
    w->m_resyncs = plain_metric(r, "cartshard_partition_resyncs_total",
                                "Times a runner restarted its partitions from the committed offsets because "
                                "deliveries may have been lost.",
                                CART_METRIC_COUNTER);
    w->m_stalls = plain_metric(r, "cartshard_partition_stalls_total",
                               "Times an owned partition had events in the stream beyond its committed offset "
                               "and made no progress for CART_STORE_STALL_MS, and was restarted from that offset.",
                               CART_METRIC_COUNTER);
    w->m_acks = plain_metric(r, "cartshard_acks_total",
                             "Acknowledgements sent to JetStream for committed events; each covers every earlier "
                             "event of its partition (AckAll), so acks per applied event shows how long the runs are "
                             "(CART_STORE_ACK_EVERY, CART_STORE_ACK_DELAY_MS).",
                             CART_METRIC_COUNTER);
    w->m_redone = plain_metric(
        r, "cartshard_batches_redone_total",
        "Batches whose writes the shard refused, redone event by event to find the one at fault.", CART_METRIC_COUNTER);
    w->m_lag = cart_metrics_family(r, "cartshard_partition_lag",
                                   "Events of a partition this worker owns that are not committed yet.",
                                   CART_METRIC_GAUGE, "partition", NULL, 0);
    w->m_owned =
        plain_metric(r, "cartshard_partitions_owned", "Partitions this worker currently applies.", CART_METRIC_GAUGE);
    w->m_pg_errors = cart_metrics_dependency_errors(r, "postgresql");
    w->m_nats_errors = cart_metrics_dependency_errors(r, "nats");
}

static uv_signal_t sig_term, sig_int;
static cart_http_server *admin_srv;

static void on_signal(uv_signal_t *h, int signum)
{
    cart_log(CART_LOG_INFO, "stopping", CART_LS("signal", signum == SIGTERM ? "SIGTERM" : "SIGINT"), NULL);
    uv_signal_stop(&sig_term);
    uv_signal_stop(&sig_int);
    cart_http_server_stop_accepting(admin_srv);
    uv_stop(h->loop);
}

static void close_walk(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

/* The NATS client name of the replies' connection (nats.c's threads log it until they end). */
static char replies_name[CART_ID_MAX + 16];

static int connect_bus(const cart_config *cfg, const char *name, unsigned flags, natsConnection **nc)
{
    char err[256];

    if (cart_bus_connect(cfg, name, flags, nc, err, sizeof err) != CART_OK) {
        cart_log(CART_LOG_ERROR, "nats connection failed", CART_LS("error", err), NULL);
        return -1;
    }
    return 0;
}

/* `cart-store migrate`: SQL migrations on every shard, then the streams. */
static int cmd_migrate(const cart_config *cfg)
{
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    char err[256];
    int rc = 1;

    if (cs_migrate_shards(cfg) != 0)
        goto out;
    if (connect_bus(cfg, cfg->store_id, 0, &nc) != 0)
        goto out;
    /* Wait for the first connection (the connect runs in the background). */
    for (int i = 0; i < 300 && natsConnection_Status(nc) != NATS_CONN_STATUS_CONNECTED; i++)
        nats_Sleep(100);
    if (natsConnection_JetStream(&js, nc, NULL) != NATS_OK) {
        cart_log(CART_LOG_ERROR, "jetstream context failed", NULL);
        goto out;
    }
    if (cart_bus_ensure_streams(js, cfg, err, sizeof err) != CART_OK) {
        cart_log(CART_LOG_ERROR, "creating streams failed", CART_LS("error", err), NULL);
        goto out;
    }
    cart_log(CART_LOG_INFO, "streams ready", CART_LS("streams", "CARTS CARTS_DLQ CARTS_CHANGES"), NULL);
    rc = 0;
out:
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    return rc;
}

static int cmd_run(const cart_config *cfg)
{
    uv_loop_t loop;
    cart_http_server srv;
    cs_worker w;
    char err[256];
    int rc = 1;
    bool loop_ready = false, signals_ready = false, started = false;

    memset(&w, 0, sizeof w);
    memset(&srv, 0, sizeof srv);
    w.cfg = cfg;
    w.metrics = cart_metrics_new();
    if (w.metrics == NULL)
        goto out;
    register_metrics(&w);
    pthread_mutex_init(&w.wake_mu, NULL);
    cart_bus_set_listener(cs_worker_on_bus_event, &w);
    snprintf(replies_name, sizeof replies_name, "%s-replies", cfg->store_id);
    if (connect_bus(cfg, cfg->store_id, 0, &w.nc) != 0 ||
        connect_bus(cfg, replies_name, CART_BUS_SEND_AT_ONCE, &w.nc_replies) != 0)
        goto out;
    uv_loop_init(&loop);
    loop_ready = true;
    if (cart_http_server_init(&srv, &loop, cfg->store_admin_host, cfg->store_admin_port, false, NULL, on_admin_req,
                              sizeof(admin_handler), 1024, err, sizeof err) != 0) {
        cart_log(CART_LOG_ERROR, "admin server failed", CART_LS("error", err), NULL);
        goto out;
    }
    ((admin_handler *)srv.handler)->w = &w;
    admin_srv = &srv;
    if (cs_worker_start(&w) != 0) {
        cart_log(CART_LOG_ERROR, "starting shard runners failed", NULL);
        goto out;
    }
    started = true;
    uv_signal_init(&loop, &sig_term);
    uv_signal_init(&loop, &sig_int);
    uv_signal_start(&sig_term, on_signal, SIGTERM);
    uv_signal_start(&sig_int, on_signal, SIGINT);
    signals_ready = true;
    cart_log(CART_LOG_INFO, "cart-store started", CART_LS("id", cfg->store_id), CART_LI("shards", cfg->nshards),
             CART_LI("partitions", cfg->partitions), CART_LI("admin_port", cfg->store_admin_port), NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    rc = 0;
out:
    if (started)
        cs_worker_stop(&w); /* finishes the batches in flight, releases the partitions */
    if (loop_ready) {
        if (signals_ready) {
            uv_close((uv_handle_t *)&sig_term, NULL);
            uv_close((uv_handle_t *)&sig_int, NULL);
        }
        /* A scraper's keep-alive connection would keep h2o's context alive: every admin request
         * is answered at once, so whatever is still open is idle and can be cut. */
        cart_http_server_close_wait(&srv, ADMIN_CLOSE_WAIT_MS);
        cart_http_server_cleanup(&srv);
        uv_walk(&loop, close_walk, NULL);
        uv_run(&loop, UV_RUN_DEFAULT);
        if (uv_loop_close(&loop) != 0)
            cart_log(CART_LOG_WARN, "the admin loop still had handles at exit", NULL);
    }
    cart_bus_close(w.nc, 2000);
    cart_bus_close(w.nc_replies, 0); /* it sent everything as it went */
    cart_metrics_free(w.metrics);
    if (rc == 0)
        cart_log(CART_LOG_INFO, "cart-store stopped", NULL);
    return rc;
}

static const cart_command commands[] = {{"run", cmd_run}, {"migrate", cmd_migrate}};

static const cart_service service = {
    "cart-store",
    CS_VERSION,
    CART_ROLE_STORE,
    "usage: cart-store [run | migrate | version | help]\n"
    "  run      apply cart events to the PostgreSQL shards (default)\n"
    "  migrate  apply SQL migrations to every shard and create the JetStream streams\n"
    "Settings come from environment variables; see the README's Configuration section.\n",
    commands,
    sizeof commands / sizeof commands[0],
};

int main(int argc, char **argv)
{
    return cart_command_main(&service, argc, argv);
}
