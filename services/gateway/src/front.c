/*
 * front.c: every request's way into a gateway thread: h2o's handler routes it, gives it its
 * request id and its CORS grant, checks its head (framing, Host, header sizes: core/head.h) and
 * its body's size, answers OPTIONS, checks the bearer token (AUTH_JWT_SECRET, AUTH_JWKS_FILE) and
 * the client's rate limit (the shared one in Redis, or the thread's local table when Redis cannot
 * answer), then hands it to ops.c, reads.c or writes.c. Also what every handler uses to read a
 * request's headers and to outlive it (gw_req_link). Loop thread only, each on its own gw_thread.
 */
#define _POSIX_C_SOURCE 200809L
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cartshard/clock.h"
#include "cartshard/event.h"
#include "internal.h"
#include "head.h"
#include "jwt.h"
#include "ratelimit.h"
#include "redis.h"
#include "request.h"

/* --- the request: its headers, and the link that outlives it --- */

static void on_link_dispose(void *arg)
{
    gw_req_link **slot = arg;

    if (*slot) {
        (*slot)->req = NULL;
        (*slot)->slot = NULL;
    }
}

void gw_link_request(gw_req_link *l, h2o_req_t *req)
{
    l->req = req;
    l->slot = h2o_mem_alloc_shared(&req->pool, sizeof *l->slot, on_link_dispose);
    *l->slot = l;
}

void gw_unlink_request(gw_req_link *l)
{
    if (l->slot)
        *l->slot = NULL;
    l->slot = NULL;
}

h2o_iovec_t gw_header(h2o_req_t *req, const h2o_token_t *token)
{
    ssize_t i = h2o_find_header(&req->headers, token, -1);

    return i >= 0 ? req->headers.entries[i].value : h2o_iovec_init(NULL, 0);
}

h2o_iovec_t gw_header_list(h2o_req_t *req, const h2o_token_t *token)
{
    ssize_t i = h2o_find_header(&req->headers, token, -1);
    h2o_iovec_t all, more;
    size_t len;

    if (i < 0)
        return h2o_iovec_init(NULL, 0);
    all = req->headers.entries[i].value;
    while ((i = h2o_find_header(&req->headers, token, i)) >= 0) {
        more = req->headers.entries[i].value;
        len = all.len + 2 + more.len;
        char *joined = h2o_mem_alloc_pool(&req->pool, len);
        memcpy(joined, all.base, all.len);
        memcpy(joined + all.len, ", ", 2);
        memcpy(joined + all.len + 2, more.base, more.len);
        all = h2o_iovec_init(joined, len);
    }
    return all;
}

h2o_iovec_t gw_header_by_name(h2o_req_t *req, const char *name)
{
    ssize_t i = h2o_find_header_by_str(&req->headers, name, strlen(name), -1);

    return i >= 0 ? req->headers.entries[i].value : h2o_iovec_init(NULL, 0);
}

/* --- dispatch --- */

/* Runs an API request that passed the guards. */
static void dispatch(gw_thread *t, h2o_req_t *req, const gw_route *r, int64_t started)
{
    switch (r->id) {
    case GW_R_GET_CART:
        gw_handle_get(t, req, r, started);
        break;
    case GW_R_CREATE_CART:
    case GW_R_DELETE_CART:
    case GW_R_ADD_ITEM:
    case GW_R_SET_ITEM:
    case GW_R_REMOVE_ITEM:
    case GW_R_CHECKOUT:
    case GW_R_MERGE:
        if (atomic_load(&t->app->stopping)) {
            gw_send_problem(t, req, r->name, started, 503, "unavailable", "the gateway is shutting down");
            break;
        }
        gw_handle_write(t, req, r, started);
        break;
    default:
        gw_send_problem(t, req, r->name, started, 404, "not-found", "no such resource");
        break;
    }
}

/* --- rate limiting --- */

#define CLIENT_MAX 96

/* An API request waiting for the shared limiter's verdict. */
typedef struct guard {
    gw_req_link link;        /* link.req is NULL once the client has gone */
    gw_thread *t;            /* the thread it runs on */
    gw_route route;          /* the request's route, subject and request id */
    int64_t started;         /* when the request came in (monotonic ms) */
    char client[CLIENT_MAX]; /* who the limit applies to, for the local fallback */
} guard;

/* Who the limit applies to: the peer's address (the JWT subject when auth is on). */
static void client_of(h2o_req_t *req, char out[CLIENT_MAX])
{
    struct sockaddr_storage ss;
    char host[NI_MAXHOST];
    socklen_t len = req->conn->callbacks->get_peername(req->conn, (struct sockaddr *)&ss);
    size_t n = len ? h2o_socket_getnumerichost((struct sockaddr *)&ss, len, host) : SIZE_MAX;

    if (n == SIZE_MAX)
        snprintf(out, CLIENT_MAX, "ip:unknown");
    else
        snprintf(out, CLIENT_MAX, "ip:%.*s", (int)n, host);
}

/* Adds the RateLimit-* headers and lets the request through, or answers 429. */
static void apply_verdict(gw_thread *t, h2o_req_t *req, const gw_route *r, int64_t started, const gw_rate_verdict *v)
{
    char buf[24];

    snprintf(buf, sizeof buf, "%d", t->app->cfg->rate_limit_burst);
    cart_http_header(req, "RateLimit-Limit", buf);
    snprintf(buf, sizeof buf, "%" PRId64, v->remaining < 0 ? 0 : v->remaining);
    cart_http_header(req, "RateLimit-Remaining", buf);
    snprintf(buf, sizeof buf, "%" PRId64, (v->reset_ms + 999) / 1000);
    cart_http_header(req, "RateLimit-Reset", buf);
    if (v->allowed) {
        dispatch(t, req, r, started);
        return;
    }
    cart_counter_inc(t->app->m_rate_limited);
    snprintf(buf, sizeof buf, "%" PRId64, v->retry_after_ms < 1000 ? 1 : (v->retry_after_ms + 999) / 1000);
    cart_http_header(req, "Retry-After", buf);
    cart_http_problem(req, 429, "rate-limited", "too many requests: slow down and retry after Retry-After seconds");
    gw_observe(t, r->name, 429, started);
}

static gw_rate_verdict local_verdict(gw_thread *t, const char *client)
{
    const cart_config *cfg = t->app->cfg;
    /* Each thread allows its share, so the process stays near the limit without Redis. */
    double rate = (double)cfg->rate_limit_rps / (double)(cfg->gateway_threads > 0 ? cfg->gateway_threads : 1);
    int64_t burst = cfg->rate_limit_burst / (cfg->gateway_threads > 0 ? cfg->gateway_threads : 1);

    cart_counter_inc(t->app->m_rate_local);
    return gw_local_limit(t->limiter, client, cart_mono_ms() * 1000, rate, burst < 1 ? 1 : burst);
}

/* Reads the script's {allowed, remaining, retry_after_ms, reset_ms}; false if it is not that. */
static bool parse_verdict(const redisReply *reply, gw_rate_verdict *v)
{
    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements != 4)
        return false;
    for (size_t i = 0; i < 4; i++)
        if (reply->element[i]->type != REDIS_REPLY_INTEGER)
            return false;
    v->allowed = reply->element[0]->integer == 1;
    v->remaining = reply->element[1]->integer;
    v->retry_after_ms = reply->element[2]->integer;
    v->reset_ms = reply->element[3]->integer;
    return true;
}

static void on_rate_verdict(void *arg, const redisReply *reply)
{
    guard *g = arg;
    gw_rate_verdict v;

    if (g->link.req) {
        if (!parse_verdict(reply, &v))
            v = local_verdict(g->t, g->client);
        apply_verdict(g->t, g->link.req, &g->route, g->started, &v);
    }
    gw_unlink_request(&g->link);
    free(g);
}

/* --- request id and authentication --- */

/* The request's trace id: the client's traceparent, else its X-Request-Id (1-127 visible ASCII),
 * else a new UUID. */
static void request_id(h2o_req_t *req, char out[CART_TRACE_MAX + 1])
{
    h2o_iovec_t tp = gw_header_by_name(req, "traceparent");
    h2o_iovec_t rid = gw_header_by_name(req, "x-request-id");

    if (tp.base && gw_traceparent_valid(tp.base, tp.len)) {
        memcpy(out, tp.base, tp.len);
        out[tp.len] = '\0';
    } else if (rid.base && rid.len <= CART_TRACE_MAX && cart_valid_event_id(rid.base, rid.len)) {
        memcpy(out, rid.base, rid.len);
        out[rid.len] = '\0';
    } else {
        cart_uuid_v4(out);
    }
}

bool gw_auth_keys(gw_thread *t, gw_jwt_keys *keys)
{
    const cart_config *cfg = t->app->cfg;

    *keys = (gw_jwt_keys){.issuer = cfg->auth_issuer, .audience = cfg->auth_audience};
    if (cfg->auth_jwt_secret == NULL && t->app->keyring == NULL)
        return false;
    if (cfg->auth_jwt_secret) {
        keys->secret = (const unsigned char *)cfg->auth_jwt_secret;
        keys->secret_len = strlen(cfg->auth_jwt_secret);
    }
    if (t->app->keyring)
        keys->jwks = gw_keyring_current(t->app->keyring, &t->jwks, &t->jwks_gen);
    return true;
}

/* The scope a token needs to set a line's price (docs/reference/api.md, Authentication). */
#define GW_SCOPE_PRICE "cart:price"

/* With auth on (AUTH_JWT_SECRET or AUTH_JWKS_FILE set): checks the bearer token and records its
 * subject in r, and whether it may set a price. With auth off anyone may. Returns 0, or -1 after
 * answering 401, 403 or 503. */
static int authenticate(gw_thread *t, h2o_req_t *req, gw_route *r, int64_t started)
{
    gw_jwt_keys keys;
    h2o_iovec_t auth = gw_header(req, H2O_TOKEN_AUTHORIZATION);
    const char *token = NULL, *why = NULL;
    size_t token_len = 0;
    gw_jwt_result res;
    char challenge[192];

    if (!gw_auth_keys(t, &keys)) {
        r->may_price = true; /* a trusted network: docs/reference/api.md, Authentication */
        return 0;
    }
    if (auth.base == NULL || !gw_jwt_bearer(auth.base, auth.len, &token, &token_len)) {
        cart_http_header(req, "WWW-Authenticate", "Bearer realm=\"cartshard\"");
        gw_send_problem(t, req, r->name, started, 401, "unauthorized", "missing bearer token");
        return -1;
    }
    res = gw_jwt_verify(token, token_len, &keys, cart_now_ms() / 1000, r->subject, &why);
    if (res == GW_JWT_INTERNAL) {
        gw_send_problem(t, req, r->name, started, 503, "unavailable", "the token could not be checked");
        return -1;
    }
    if (res != GW_JWT_OK) {
        cart_counter_inc(t->app->m_auth_failures);
        snprintf(challenge, sizeof challenge,
                 "Bearer realm=\"cartshard\", error=\"invalid_token\", error_description=\"%s\"",
                 why ? why : gw_jwt_result_name(res));
        cart_http_header(req, "WWW-Authenticate", challenge);
        gw_send_problem(t, req, r->name, started, 401, "unauthorized", why ? why : gw_jwt_result_name(res));
        return -1;
    }
    /* POST /v1/carts names its user in the body: gw_event_build checks that one. */
    if (r->user_id[0] && r->id != GW_R_CREATE_CART && strcmp(r->subject, r->user_id) != 0) {
        gw_send_problem(t, req, r->name, started, 403, "forbidden", "the token's subject is not this user");
        return -1;
    }
    /* Only the routes whose body may carry a price read the token a second time. */
    if (r->id == GW_R_ADD_ITEM || r->id == GW_R_SET_ITEM)
        r->may_price = gw_jwt_has_scope(token, token_len, GW_SCOPE_PRICE);
    return 0;
}

/* --- the head: framing, Host and sizes --- */

/* The sizes of the fields h2o parsed (HTTP/2 has no raw head to read): name, ": ", value. */
static gw_head_verdict field_sizes(h2o_req_t *req, size_t field_max, size_t total_max)
{
    size_t total = req->input.authority.len + 6; /* ":authority" as "host: " */

    if (total > field_max)
        return GW_HEAD_FIELD_TOO_LARGE;
    for (size_t i = 0; i < req->headers.size; i++) {
        size_t n = req->headers.entries[i].name->len + 2 + req->headers.entries[i].value.len;
        if (n > field_max)
            return GW_HEAD_FIELD_TOO_LARGE;
        total += n;
    }
    return total > total_max ? GW_HEAD_FIELDS_TOO_LARGE : GW_HEAD_OK;
}

/* RFC 9112's framing and Host rules and GATEWAY_MAX_HEADER_BYTES (for the target too). An HTTP/1.x request's head is
 * still at the start of its connection's input buffer while its handler runs (h2o consumes it
 * once the response is sent), and is read from there: h2o's parsed request keeps one Host and
 * one of Content-Length and Transfer-Encoding. 0, or -1 after answering 400, 414 or 431. */
static int check_head(gw_thread *t, h2o_req_t *req, const gw_route *r, int64_t started)
{
    size_t field_max = t->app->cfg->max_header_bytes;
    h2o_socket_t *sock = NULL;
    gw_head_verdict v;

    if (req->path.len > field_max) {
        gw_send_problem(t, req, r->name, started, 414, "uri-too-long",
                        "the request target is over the limit (GATEWAY_MAX_HEADER_BYTES)");
        return -1;
    }
    if (req->version < 0x200 && req->conn->callbacks->get_socket)
        sock = req->conn->callbacks->get_socket(req->conn);
    if (sock != NULL && sock->input != NULL)
        v = gw_head_check(sock->input->bytes, sock->input->size, field_max, 4 * field_max);
    else
        v = field_sizes(req, field_max, 4 * field_max);
    switch (v) {
    case GW_HEAD_OK:
        return 0;
    case GW_HEAD_TWO_FRAMINGS:
        /* Whatever follows on this connection may be another request smuggled in the body. */
        req->http1_is_persistent = 0;
        gw_send_problem(t, req, r->name, started, 400, "invalid-header", gw_head_verdict_detail(v));
        return -1;
    case GW_HEAD_NO_HOST:
    case GW_HEAD_HOSTS:
        gw_send_problem(t, req, r->name, started, 400, "invalid-header", gw_head_verdict_detail(v));
        return -1;
    case GW_HEAD_FIELD_TOO_LARGE:
    case GW_HEAD_FIELDS_TOO_LARGE:
        gw_send_problem(t, req, r->name, started, 431, "header-too-large", gw_head_verdict_detail(v));
        return -1;
    }
    return 0;
}

/* --- CORS --- */

#define CORS_ALLOW_HEADERS                                                                                             \
    "Content-Type, Authorization, If-Match, If-None-Match, Idempotency-Key, Prefer, X-Request-Id, "                    \
    "traceparent"
#define CORS_EXPOSE_HEADERS                                                                                            \
    "ETag, Location, RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset, Retry-After, X-Request-Id, "               \
    "Idempotent-Replayed"
/* How long a browser may keep a preflight's answer (seconds). */
#define CORS_MAX_AGE "600"

/* With CORS_ALLOWED_ORIGINS set: a request from a listed origin gets its grant; any other gets
 * none, and never a wider one. Every API answer varies with Origin then. True if granted. */
static bool cors_grant(gw_thread *t, h2o_req_t *req)
{
    const cart_config *cfg = t->app->cfg;
    h2o_iovec_t origin = gw_header_by_name(req, "origin");
    char *copy;

    if (cfg->ncors_origins == 0)
        return false;
    cart_http_header(req, "Vary", "Origin");
    if (origin.base == NULL)
        return false;
    for (uint32_t i = 0; i < cfg->ncors_origins; i++) {
        if (strlen(cfg->cors_origins[i]) == origin.len && memcmp(cfg->cors_origins[i], origin.base, origin.len) == 0) {
            copy = h2o_mem_alloc_pool(&req->pool, origin.len + 1);
            memcpy(copy, origin.base, origin.len);
            copy[origin.len] = '\0';
            cart_http_header(req, "Access-Control-Allow-Origin", copy);
            cart_http_header(req, "Access-Control-Expose-Headers", CORS_EXPOSE_HEADERS);
            return true;
        }
    }
    return false;
}

/* OPTIONS on an API path: 204 with the methods it serves; for a granted origin, the preflight's
 * answer too. Neither authenticated nor counted: a browser sends no credentials with it. */
static void answer_options(gw_thread *t, h2o_req_t *req, const gw_route *r, int64_t started, bool granted)
{
    cart_http_header(req, "Allow", r->allow);
    if (granted) {
        cart_http_header(req, "Access-Control-Allow-Methods", r->allow);
        cart_http_header(req, "Access-Control-Allow-Headers", CORS_ALLOW_HEADERS);
        cart_http_header(req, "Access-Control-Max-Age", CORS_MAX_AGE);
    }
    gw_send_empty(t, req, r->name, started, 204, "No Content");
}

/* --- the handler --- */

/* Authenticates the request and counts it against its client's limit, then runs it (or answers
 * 401, 403 or 429). */
static void guard_request(gw_thread *t, h2o_req_t *req, gw_route *r, int64_t started)
{
    const cart_config *cfg = t->app->cfg;
    char client[CLIENT_MAX], key[CLIENT_MAX + 8], rate[24], burst[24];
    const char *argv[3] = {key, rate, burst};
    size_t lens[3];
    gw_rate_verdict v;
    guard *g;

    r->subject[0] = '\0';
    if (authenticate(t, req, r, started) != 0)
        return;
    if (cfg->rate_limit_rps <= 0) {
        dispatch(t, req, r, started);
        return;
    }
    if (r->subject[0])
        snprintf(client, sizeof client, "sub:%s", r->subject);
    else
        client_of(req, client);
    snprintf(key, sizeof key, "rl:{%s}", client);
    snprintf(rate, sizeof rate, "%d", cfg->rate_limit_rps);
    snprintf(burst, sizeof burst, "%d", cfg->rate_limit_burst);
    for (int i = 0; i < 3; i++)
        lens[i] = strlen(argv[i]);
    g = calloc(1, sizeof *g);
    if (g != NULL) {
        g->t = t;
        g->route = *r;
        g->started = started;
        memcpy(g->client, client, sizeof client);
        gw_link_request(&g->link, req);
        if (gw_redis_script(t->redis, GW_SCRIPT_RATE_LIMIT, on_rate_verdict, g, 1, 2, argv, lens) == 0)
            return;
        gw_unlink_request(&g->link);
        free(g);
    }
    v = local_verdict(t, client);
    apply_verdict(t, req, r, started, &v);
}

void gw_front_on_own_answer(void *arg, h2o_req_t *req)
{
    gw_thread *t = arg;
    char id[CART_TRACE_MAX + 1];

    request_id(req, id);
    cart_http_header(req, "X-Request-Id", id);
    cors_grant(t, req);
}

int gw_front_on_req(h2o_handler_t *self, h2o_req_t *req)
{
    gw_thread *t = ((gw_handler *)self)->t;
    int64_t started = cart_mono_ms();
    gw_route r;

    bool granted = false;

    gw_route_match(req->method.base, req->method.len, req->path.base, req->path.len, &r);
    /* Every answer but the probes' and the metrics' names its request id, and may be read by a
     * browser. */
    if (r.id != GW_R_HEALTHZ && r.id != GW_R_READYZ && r.id != GW_R_METRICS) {
        request_id(req, r.request_id);
        cart_http_header(req, "X-Request-Id", r.request_id);
        granted = cors_grant(t, req);
    }
    if (check_head(t, req, &r, started) != 0)
        return 0;
    if (req->entity.len > t->app->cfg->max_body_bytes) {
        char detail[96];
        snprintf(detail, sizeof detail, "the body is over %zu bytes", t->app->cfg->max_body_bytes);
        gw_send_problem(t, req, r.name, started, 413, "payload-too-large", detail);
        return 0;
    }
    switch (r.id) {
    case GW_R_HEALTHZ:
    case GW_R_READYZ:
    case GW_R_METRICS:
        gw_handle_ops(t, req, &r, started);
        break;
    case GW_R_GET_CART:
    case GW_R_CREATE_CART:
    case GW_R_DELETE_CART:
    case GW_R_ADD_ITEM:
    case GW_R_SET_ITEM:
    case GW_R_REMOVE_ITEM:
    case GW_R_CHECKOUT:
    case GW_R_MERGE:
        guard_request(t, req, &r, started);
        break;
    case GW_R_OPTIONS:
        answer_options(t, req, &r, started, granted);
        break;
    case GW_R_BAD_METHOD:
        cart_http_header(req, "Allow", r.allow);
        gw_send_problem(t, req, r.name, started, 405, "method-not-allowed", "this method is not allowed here");
        break;
    case GW_R_BAD_ID:
        gw_send_problem(t, req, r.name, started, 400, "invalid-field", r.detail);
        break;
    case GW_R_NOT_FOUND:
    default:
        gw_send_problem(t, req, r.name, started, 404, "not-found", "no such resource");
        break;
    }
    return 0;
}
