/*
 * api.c: the HTTP side of cart-stats (docs/reference/api.md, Statistics): /v1/stats,
 * /v1/stats/top-skus, /dashboard, /healthz, /readyz and /metrics.
 *
 * The handler runs on the loop thread. A request for figures reads Redis on libuv's thread pool
 * (uv_queue_work) through one connection under a mutex, and is answered back on the loop, unless
 * the client went away meanwhile (the request's link, in its pool, says so).
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cartshard/clock.h"
#include "cartshard/http.h"
#include "cartshard/log.h"
#include "stats.h"

/* The handler h2o calls; its extra space holds the service. */
typedef struct st_handler {
    h2o_handler_t super; /* h2o's part; first, so h2o's pointer is ours */
    st_service *s;       /* the service; borrowed */
} st_handler;

/* A read of figures in flight. */
typedef struct st_job {
    uv_work_t work;       /* libuv's work request; first */
    h2o_req_t *req;       /* the request, or NULL once h2o disposed of it */
    struct st_job **slot; /* in req's pool: points back here while linked */
    st_query q;           /* what was asked */
    bool top;             /* /v1/stats/top-skus rather than /v1/stats */
    st_live_result res;   /* how the read ended */
    char *body;           /* the answer's JSON (malloc'd), on ST_LIVE_OK */
    size_t len;           /* its length */
    const char *route;    /* the route's name, for the metrics (a string constant) */
    int64_t started_ms;   /* when the request came (cart_mono_ms) */
} st_job;

static st_service *service;
static pthread_mutex_t reader_mu = PTHREAD_MUTEX_INITIALIZER;
static st_live reader; /* under reader_mu */

void st_api_init(st_service *s)
{
    service = s;
    reader.cfg = s->cfg;
}

void st_api_cleanup(void)
{
    pthread_mutex_lock(&reader_mu);
    st_live_close(&reader);
    pthread_mutex_unlock(&reader_mu);
}

/* Counts an answer in the request metrics. */
static void observe(const char *route, int status, int64_t started_ms)
{
    char code[16];
    const char *lv[2] = {route, code};

    snprintf(code, sizeof code, "%d", status);
    cart_counter_inc(cart_metrics_series(service->m_requests, lv));
    cart_histogram_observe(cart_metrics_series(service->m_latency, lv), (double)(cart_mono_ms() - started_ms) / 1000.0);
}

static void on_job_dispose(void *arg)
{
    st_job **slot = arg;

    if (*slot != NULL) {
        (*slot)->req = NULL;
        (*slot)->slot = NULL;
    }
}

/* On the thread pool: reads Redis and renders the answer. */
static void run_job(uv_work_t *w)
{
    st_job *j = (st_job *)w;
    int64_t now = cart_now_ms();

    pthread_mutex_lock(&reader_mu);
    if (j->top) {
        st_sku_units *v = NULL;
        size_t n = 0;
        j->res = st_live_top(&reader, now, j->q.minutes, &v, &n);
        if (j->res == ST_LIVE_OK) {
            st_top_sort(v, n);
            j->body = st_top_to_json(v, n, j->q.limit, &j->len);
        }
        free(v);
    } else {
        st_figures *f = malloc(sizeof *f);
        j->res = f != NULL ? st_live_figures(&reader, now, j->q.minutes, f) : ST_LIVE_DOWN;
        if (j->res == ST_LIVE_OK)
            j->body = st_figures_to_json(f, &j->len);
        free(f);
    }
    pthread_mutex_unlock(&reader_mu);
    if (j->res == ST_LIVE_OK && j->body == NULL)
        j->res = ST_LIVE_DOWN; /* out of memory */
}

/* Back on the loop: answers, unless the client went away. */
static void after_job(uv_work_t *w, int status)
{
    st_job *j = (st_job *)w;
    h2o_req_t *req = j->req;

    if (j->slot != NULL)
        *j->slot = NULL;
    if (req != NULL) {
        if (status == 0 && j->res == ST_LIVE_OK) {
            cart_http_header(req, "Cache-Control", "no-cache");
            cart_http_send(req, 200, "application/json", j->body, j->len);
            observe(j->route, 200, j->started_ms);
        } else {
            cart_http_header(req, "Retry-After", "1");
            cart_http_problem(req, 503, "unavailable",
                              j->res == ST_LIVE_LOST ? "the live figures are being rebuilt from PostgreSQL"
                                                     : "Redis cannot be read now");
            observe(j->route, 503, j->started_ms);
        }
    }
    free(j->body);
    free(j);
}

static bool path_is(h2o_req_t *req, const char *p)
{
    return h2o_memis(req->path_normalized.base, req->path_normalized.len, p, strlen(p));
}

/* Answers a figures request: at once when the query is bad, else from the thread pool (true). */
static bool serve_stats(st_service *s, h2o_req_t *req, bool top, int64_t started_ms)
{
    const char *q = NULL;
    size_t qlen = 0;
    char err[160];
    st_query query;
    st_job *j;

    (void)s;
    if (req->query_at != SIZE_MAX) {
        q = req->path.base + req->query_at + 1;
        qlen = req->path.len - req->query_at - 1;
    }
    if (st_query_parse(q, qlen, top, &query, err, sizeof err) != CART_OK) {
        cart_http_problem(req, 400, "invalid-query", err);
        return false;
    }
    j = calloc(1, sizeof *j);
    if (j == NULL) {
        cart_http_problem(req, 503, "unavailable", "out of memory");
        return false;
    }
    j->q = query;
    j->top = top;
    j->route = top ? "/v1/stats/top-skus" : "/v1/stats";
    j->started_ms = started_ms;
    j->req = req;
    j->slot = h2o_mem_alloc_shared(&req->pool, sizeof *j->slot, on_job_dispose);
    *j->slot = j;
    if (uv_queue_work(req->conn->ctx->loop, &j->work, run_job, after_job) != 0) {
        *j->slot = NULL;
        free(j);
        cart_http_problem(req, 503, "unavailable", "the thread pool refused the work");
        return false;
    }
    return true;
}

static void serve_readyz(st_service *s, h2o_req_t *req)
{
    bool ready = !atomic_load(&s->draining);
    bool nats_ok = natsConnection_Status(s->nc) == NATS_CONN_STATUS_CONNECTED;
    char body[160];
    int n;

    n = snprintf(body, sizeof body, "{\"ready\":%s,\"nats\":%s,\"redis\":%s,\"postgresql\":%s}\n",
                 ready ? "true" : "false", nats_ok ? "true" : "false", atomic_load(&s->redis_ok) ? "true" : "false",
                 atomic_load(&s->pg_ok) ? "true" : "false");
    cart_http_header(req, "Cache-Control", "no-cache");
    cart_http_send(req, ready ? 200 : 503, "application/json", body, (size_t)n);
}

static void serve_metrics(st_service *s, h2o_req_t *req)
{
    size_t len = 0;
    char *text;

    cart_gauge_set(s->m_flush_age, (double)(cart_now_ms() - atomic_load(&s->flushed_at_ms)) / 1000.0);
    text = cart_metrics_render(s->metrics, &len);
    if (text == NULL) {
        cart_http_problem(req, 503, "unavailable", "out of memory");
        return;
    }
    cart_http_send(req, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
    free(text);
}

static void serve_dashboard(h2o_req_t *req)
{
    cart_http_header(req, "Content-Security-Policy",
                     "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
                     "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
                     "frame-ancestors 'none'");
    cart_http_header(req, "Cache-Control", "no-cache");
    cart_http_header(req, "X-Content-Type-Options", "nosniff");
    cart_http_send(req, 200, "text/html; charset=utf-8", st_dashboard_html, strlen(st_dashboard_html));
}

/* The routes, as the metrics name them. */
static const char *const routes[] = {"/v1/stats", "/v1/stats/top-skus", "/dashboard", "/healthz", "/readyz",
                                     "/metrics"};

int st_api_on_req(h2o_handler_t *self, h2o_req_t *req)
{
    st_service *s = ((st_handler *)self)->s;
    int64_t started = cart_mono_ms();
    bool get = h2o_memis(req->method.base, req->method.len, H2O_STRLIT("GET")) ||
               h2o_memis(req->method.base, req->method.len, H2O_STRLIT("HEAD"));
    const char *route = "other";

    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++)
        if (path_is(req, routes[i]))
            route = routes[i];
    if (strcmp(route, "other") == 0) {
        cart_http_problem(req, 404, "not-found",
                          "cart-stats serves /v1/stats, /v1/stats/top-skus, /dashboard, /healthz, /readyz and "
                          "/metrics");
    } else if (!get) {
        cart_http_header(req, "Allow", "GET, HEAD");
        cart_http_problem(req, 405, "method-not-allowed", "this path only serves GET and HEAD");
    } else if (route == routes[0] || route == routes[1]) {
        if (serve_stats(s, req, route == routes[1], started))
            return 0; /* answered and observed from the thread pool */
    } else if (route == routes[2]) {
        serve_dashboard(req);
    } else if (route == routes[3]) {
        cart_http_send(req, 200, "text/plain; charset=utf-8", "ok\n", 3);
    } else if (route == routes[4]) {
        serve_readyz(s, req);
    } else {
        serve_metrics(s, req);
    }
    observe(route, req->res.status, started);
    return 0;
}

size_t st_api_handler_size(void)
{
    return sizeof(st_handler);
}

void st_api_bind(h2o_handler_t *handler, st_service *s)
{
    ((st_handler *)handler)->s = s;
}
