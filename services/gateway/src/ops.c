/*
 * ops.c: the operations endpoints of a gateway thread: GET /healthz (the process answers),
 * /readyz (started and not draining; the body reports NATS, Redis and this thread's shard
 * connections) and /metrics (the process's Prometheus registry). Loop thread only; reads what the
 * process shares (gw_app) atomically.
 *
 * Why a dependency does not decide readiness: NATS, Redis and the shards are shared by every
 * replica, so when one is down it is down for all of them. Each request already copes (reads fall
 * back to PostgreSQL, a write answers 503 itself while the bus is away), whereas a 503 here would
 * take every replica out of the load balancer and turn a partial outage into a total one.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>

#include "internal.h"

/* The body of /readyz: 64 shards at "false," each, and the rest, fit with room to spare. */
#define READY_BODY_MAX (128 + 6 * CART_CONFIG_MAX_SHARDS)

/*
 * Answers /readyz: 200 from the moment the thread serves until the process begins to drain, then
 * 503. The body reports each dependency as this thread sees it; none of them changes the status.
 */
static void send_readiness(gw_thread *t, h2o_req_t *req, const gw_route *r, int64_t started)
{
    gw_app *app = t->app;
    bool draining = atomic_load(&app->stopping);
    bool nats_ok = natsConnection_Status(app->nc) == NATS_CONN_STATUS_CONNECTED &&
                   natsConnection_Status(app->nc_sync) == NATS_CONN_STATUS_CONNECTED;
    bool redis_ok = atomic_load(&app->redis_ok);
    int status = draining ? 503 : 200;
    char body[READY_BODY_MAX];
    size_t used;
    int n;

    n = snprintf(body, sizeof body, "{\"ready\":%s,\"draining\":%s,\"nats\":%s,\"redis\":%s,\"shards\":[",
                 draining ? "false" : "true", draining ? "true" : "false", nats_ok ? "true" : "false",
                 redis_ok ? "true" : "false");
    used = (size_t)n;
    for (uint32_t s = 0; s < app->cfg->nshards; s++) {
        n = snprintf(body + used, sizeof body - used, "%s%s", s ? "," : "",
                     gw_pg_connected(t->shards[s]) ? "true" : "false");
        used += (size_t)n;
    }
    n = snprintf(body + used, sizeof body - used, "]}\n");
    used += (size_t)n;
    cart_http_send(req, status, "application/json", body, used);
    gw_observe(t, r->name, status, started);
}

void gw_handle_ops(gw_thread *t, h2o_req_t *req, const gw_route *r, int64_t started)
{
    gw_app *app = t->app;

    if (r->id == GW_R_HEALTHZ) {
        cart_http_send(req, 200, "text/plain; charset=utf-8", "ok\n", 3);
        gw_observe(t, r->name, 200, started);
    } else if (r->id == GW_R_READYZ) {
        send_readiness(t, req, r, started);
    } else {
        size_t len = 0;
        char *text = cart_metrics_render(app->metrics, &len);
        if (text == NULL) {
            gw_send_problem(t, req, r->name, started, 503, "unavailable", "out of memory");
            return;
        }
        cart_http_send(req, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
        free(text);
        gw_observe(t, r->name, 200, started);
    }
}
