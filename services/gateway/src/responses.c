/*
 * responses.c: how a gateway thread answers: problem+json documents, empty answers, cart
 * documents and their ETag, and the request metrics every answer is counted in (the thread's
 * cache of series, gw_thread.observed). Loop thread only, each on its own gw_thread.
 */
#define _POSIX_C_SOURCE 200809L
#include <string.h>

#include <jansson.h>

#include "cartshard/clock.h"
#include "cartshard/fmt.h"
#include "internal.h"

#define RETRY_AFTER_S "1"

void gw_observe(gw_thread *t, const char *route, int status, int64_t started_ms)
{
    /* The series of a (route, status) are looked up once per thread and slot: a lookup takes the
     * family's lock, which the threads share. Route names are string constants, so a pointer
     * identifies one (two copies of a name just take two slots). */
    size_t slot = (((uintptr_t)route >> 3) * 31u + (unsigned)status) % GW_OBSERVED_SLOTS;
    struct gw_observed *o = &t->observed[slot];

    if (o->route != route || o->status != status) {
        char code[CART_INT_BUFSZ + 1];
        const char *lv[2] = {route, code};
        code[cart_int_format(status, code)] = '\0';
        o->requests = cart_metrics_series(t->app->m_requests, lv);
        o->latency = cart_metrics_series(t->app->m_latency, lv);
        /* Out of memory, a series may be missing: then it is looked up again next time. */
        o->route = o->requests && o->latency ? route : NULL;
        o->status = status;
    }
    cart_counter_inc(o->requests);
    cart_histogram_observe(o->latency, (double)(cart_mono_ms() - started_ms) / 1000.0);
}

void gw_send_problem(gw_thread *t, h2o_req_t *req, const char *route, int64_t started, int status, const char *slug,
                     const char *detail)
{
    if (status == 503 || status == 429)
        cart_http_header(req, "Retry-After", RETRY_AFTER_S);
    cart_http_problem(req, status, slug, detail);
    gw_observe(t, route, status, started);
}

void gw_send_empty(gw_thread *t, h2o_req_t *req, const char *route, int64_t started, int status, const char *reason)
{
    req->res.status = status;
    req->res.reason = reason;
    h2o_send_inline(req, NULL, 0);
    gw_observe(t, route, status, started);
}

const char *gw_slug_for(int status, const char *detail)
{
    switch (status) {
    case 400:
        return "invalid-request";
    case 404:
        return "not-found";
    case 409:
        return "conflict";
    case 412:
        return "precondition-failed";
    case 422:
        /* The cart model's one 422 of another kind says so at the start of its detail. */
        if (detail != NULL && strncmp(detail, CART_CURRENCY_MISMATCH, sizeof CART_CURRENCY_MISMATCH - 1) == 0)
            return "currency-mismatch";
        return "limit-exceeded";
    case 503:
        return "unavailable";
    default:
        return NULL;
    }
}

void gw_etag(int64_t version, char out[GW_ETAG_MAX])
{
    out[0] = '"';
    memcpy(out + 1 + cart_int_format(version, out + 1), "\"", 2);
}

void gw_send_cart(gw_thread *t, h2o_req_t *req, const char *route, int64_t started, int status, const char *body,
                  size_t len, int64_t version)
{
    char etag[GW_ETAG_MAX];

    if (version <= 0) {
        json_t *doc = json_loadb(body, len, 0, NULL);
        json_t *v = doc ? json_object_get(doc, "version") : NULL;
        version = json_is_integer(v) ? json_integer_value(v) : 0;
        json_decref(doc);
    }
    if (version > 0) {
        gw_etag(version, etag);
        cart_http_header(req, "ETag", etag);
    }
    cart_http_send(req, status, "application/json", body, len);
    gw_observe(t, route, status, started);
}
