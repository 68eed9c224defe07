/*
 * ops.c: the operations endpoints of a gateway thread: GET /healthz (the process answers),
 * /readyz (both NATS connections up, Redis answering, not stopping) and /metrics (the process's
 * Prometheus registry). Loop thread only; reads what the process shares (gw_app) atomically.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>

#include "internal.h"

void gw_handle_ops(gw_thread *t, h2o_req_t *req, const gw_route *r, int64_t started)
{
    gw_app *app = t->app;

    if (r->id == GW_R_HEALTHZ) {
        cart_http_send(req, 200, "text/plain; charset=utf-8", "ok\n", 3);
        gw_observe(t, r->name, 200, started);
    } else if (r->id == GW_R_READYZ) {
        bool nats_ok = natsConnection_Status(app->nc) == NATS_CONN_STATUS_CONNECTED &&
                       natsConnection_Status(app->nc_sync) == NATS_CONN_STATUS_CONNECTED;
        bool redis_ok = atomic_load(&app->redis_ok);
        bool ready = nats_ok && redis_ok && !atomic_load(&app->stopping);
        char body[128];
        int n = snprintf(body, sizeof body, "{\"ready\":%s,\"nats\":%s,\"redis\":%s}\n", ready ? "true" : "false",
                         nats_ok ? "true" : "false", redis_ok ? "true" : "false");
        cart_http_send(req, ready ? 200 : 503, "application/json", body, (size_t)n);
        gw_observe(t, r->name, ready ? 200 : 503, started);
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
