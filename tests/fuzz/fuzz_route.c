/*
 * fuzz_route: what the gateway does with a request before any I/O, through its pure modules:
 * gw_route_match (method, raw target), the Idempotency-Key (gw_idem_*), the Authorization
 * header's scheme (gw_jwt_bearer) and its token's scope (gw_jwt_has_scope: with no Authorization
 * the request may set a price, as with auth off), traceparent (request.h), the JSON body's depth
 * check against jansson, and gw_event_build with all of them (body and its line snapshot,
 * Idempotency-Key, If-Match).
 *
 * Input: '\n'-separated fields: method, request target, Idempotency-Key, Authorization, If-Match,
 * traceparent, then the body (the rest of the input); a missing field is an absent header.
 *
 * Oracles: the route's documented shape (ids valid and taken from the path, Allow and detail set
 * when they should be), a query string and HEAD change nothing, an accepted Idempotency-Key gives
 * a valid, repeatable event_id, the depth check is exact for valid JSON, an accepted request's
 * event expects exactly the versions its If-Match names, carries a price only when it may, holds
 * the snapshot members its body has, and encodes and decodes back (otherwise the gateway would
 * fail on a valid request), and a refusal is a 4xx with a detail that names no library option.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <inttypes.h>
#include <strings.h>

#include <jansson.h>

#include "event_build.h"
#include "fuzz.h"
#include "idem.h"
#include "jwt.h"
#include "request.h"
#include "route.h"

static void check_same(const gw_route *a, const gw_route *b)
{
    FUZZ_CHECK(a->id == b->id);
    FUZZ_CHECK(strcmp(a->user_id, b->user_id) == 0 && strcmp(a->sku, b->sku) == 0);
    FUZZ_CHECK(a->allow == b->allow && a->detail == b->detail && a->name == b->name);
}

/* True if the n-th segment of path[0..len) (0 is the one after the first slash), percent-decoded,
 * is `id`. */
static int segment_is(const char *path, size_t len, int n, const char *id)
{
    size_t i = 1, out = 0, idlen = strlen(id);
    unsigned int byte;
    char hex[3] = {0};

    for (int seg = 0; seg < n; seg++) {
        while (i < len && path[i] != '/')
            i++;
        i++;
    }
    for (; i < len && path[i] != '/' && path[i] != '?'; i++, out++) {
        byte = (unsigned char)path[i];
        if (path[i] == '%') {
            if (i + 2 >= len || !isxdigit((unsigned char)path[i + 1]) || !isxdigit((unsigned char)path[i + 2]))
                return 0;
            memcpy(hex, path + i + 1, 2);
            if (sscanf(hex, "%2x", &byte) != 1)
                return 0;
            i += 2;
        }
        if (out >= idlen || (unsigned char)id[out] != byte)
            return 0;
    }
    return out == idlen;
}

static void route(const char *method, size_t mlen, const char *target, size_t tlen, gw_route *r)
{
    const char *q = memchr(target, '?', tlen);
    const char *path = target;
    size_t plen = tlen;
    gw_route plain;

    /* The absolute form routes as its path: what follows the authority. */
    if (tlen > 8 && (strncasecmp(target, "http://", 7) == 0 || strncasecmp(target, "https://", 8) == 0)) {
        size_t from = target[4] == ':' ? 7 : 8;
        const char *slash = memchr(target + from, '/', tlen - from);
        path = slash ? slash : target + tlen;
        plen = tlen - (size_t)(path - target);
    }
    gw_route_match(method, mlen, target, tlen, r);
    FUZZ_CHECK(r->name != NULL);
    FUZZ_CHECK(r->id >= GW_R_NOT_FOUND && r->id <= GW_R_BAD_ID);
    FUZZ_CHECK((r->id == GW_R_BAD_METHOD || r->id == GW_R_OPTIONS) == (r->allow != NULL));
    FUZZ_CHECK((r->id == GW_R_BAD_ID) == (r->detail != NULL));
    FUZZ_CHECK(r->subject[0] == '\0' && r->request_id[0] == '\0');
    switch (r->id) {
    case GW_R_SET_ITEM:
    case GW_R_REMOVE_ITEM:
        FUZZ_CHECK(cart_valid_id(r->sku, strlen(r->sku)) && segment_is(path, plen, 4, r->sku));
        /* fall through */
    case GW_R_GET_CART:
    case GW_R_DELETE_CART:
    case GW_R_ADD_ITEM:
    case GW_R_CHECKOUT:
        FUZZ_CHECK(cart_valid_id(r->user_id, strlen(r->user_id)) && segment_is(path, plen, 2, r->user_id));
        FUZZ_CHECK(segment_is(path, plen, 0, "v1") && segment_is(path, plen, 1, "carts"));
        break;
    default:
        FUZZ_CHECK(r->sku[0] == '\0');
        break;
    }
    if (r->id != GW_R_SET_ITEM && r->id != GW_R_REMOVE_ITEM)
        FUZZ_CHECK(r->sku[0] == '\0');

    /* The query string is ignored. */
    if (q != NULL) {
        gw_route_match(method, mlen, target, (size_t)(q - target), &plain);
        check_same(r, &plain);
    }
    /* HEAD is routed like GET. */
    if (mlen == 4 && memcmp(method, "HEAD", 4) == 0) {
        gw_route_match("GET", 3, target, tlen, &plain);
        check_same(r, &plain);
    }
}

static void idempotency_key(const char *user_id, const char *key, size_t len)
{
    char a[CART_EVENT_ID_MAX + 1], b[CART_EVENT_ID_MAX + 1];
    int rc = gw_idem_event_id(user_id, key, len, a);

    FUZZ_CHECK((rc == 0) == gw_idem_key_valid(key, len));
    if (rc != 0) {
        FUZZ_CHECK(a[0] == '\0');
        return;
    }
    FUZZ_CHECK(strlen(a) == 5 + 64 && strncmp(a, GW_IDEM_PREFIX, 5) == 0);
    FUZZ_CHECK(cart_valid_event_id(a, strlen(a)));
    FUZZ_CHECK(gw_idem_event_id(user_id, key, len, b) == 0 && strcmp(a, b) == 0);
}

/* The Authorization header: its scheme, and whether its token's scope holds cart:price (the
 * fuzzer's tokens are unsigned: the scope reader never verifies anything itself). */
static bool authorization(const char *value, size_t len)
{
    const char *token = NULL;
    size_t token_len = 0;

    if (!gw_jwt_bearer(value, len, &token, &token_len)) {
        FUZZ_CHECK(token == NULL && token_len == 0);
        return false;
    }
    FUZZ_CHECK(token_len >= 1 && token > value && token + token_len <= value + len);
    FUZZ_CHECK(memchr(token, ' ', token_len) == NULL && memchr(token, '\t', token_len) == NULL);
    FUZZ_CHECK(strncasecmp(value, "bearer ", 7) == 0);
    return gw_jwt_has_scope(token, token_len, "cart:price");
}

static int depth_of(const json_t *v)
{
    int deepest = 0;

    if (json_is_object(v)) {
        const char *key;
        json_t *m;
        json_object_foreach((json_t *)v, key, m)
        {
            int d = depth_of(m);
            deepest = d > deepest ? d : deepest;
        }
        return deepest + 1;
    }
    if (json_is_array(v)) {
        for (size_t i = 0; i < json_array_size(v); i++) {
            int d = depth_of(json_array_get(v, i));
            deepest = d > deepest ? d : deepest;
        }
        return deepest + 1;
    }
    return 0;
}

/* The body as read_body reads it: NULL unless a JSON object of acceptable depth. */
static json_t *body_object(const char *body, size_t len)
{
    bool deep = gw_json_too_deep(body, len, GW_JSON_MAX_DEPTH);
    json_error_t jerr;
    json_t *doc = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);

    if (doc != NULL)
        FUZZ_CHECK(deep == (depth_of(doc) > GW_JSON_MAX_DEPTH));
    if (deep || !json_is_object(doc)) {
        json_decref(doc);
        return NULL;
    }
    return doc;
}

static void check_publishable(const cart_event *ev)
{
    cart_event back;
    char *text = NULL;
    size_t len = 0;
    char err[128];

    FUZZ_CHECK(cart_event_encode(ev, &text, &len) == CART_OK);
    FUZZ_CHECK(cart_event_decode(text, len, &back, err, sizeof err) == CART_OK);
    FUZZ_CHECK(strcmp(back.user_id, ev->user_id) == 0 && strcmp(back.sku, ev->sku) == 0);
    FUZZ_CHECK(back.type == ev->type && back.quantity == ev->quantity);
    FUZZ_CHECK(back.has_expected_version == ev->has_expected_version && back.expected_version == ev->expected_version);
    FUZZ_CHECK(back.expected_active == ev->expected_active && back.n_expected_versions == ev->n_expected_versions);
    for (int i = 0; i < ev->n_expected_versions; i++)
        FUZZ_CHECK(back.expected_versions[i] == ev->expected_versions[i]);
    FUZZ_CHECK(strcmp(back.trace, ev->trace) == 0 && strcmp(back.event_id, ev->event_id) == 0);
    FUZZ_CHECK(memcmp(&back.snap, &ev->snap, sizeof back.snap) == 0);
    free(text);
}

/* The snapshot oracle: the event has exactly the members the body has, and a price only when the
 * request may set one. */
static void check_snapshot(const json_t *doc, const gw_route *r, const cart_event *ev)
{
    if (r->id != GW_R_ADD_ITEM && r->id != GW_R_SET_ITEM) {
        FUZZ_CHECK(!ev->snap.has_name && !ev->snap.has_price && !ev->snap.has_attributes);
        return;
    }
    FUZZ_CHECK(ev->snap.has_name == (json_object_get(doc, "name") != NULL));
    FUZZ_CHECK(ev->snap.has_price == (json_object_get(doc, "unit_price") != NULL));
    FUZZ_CHECK(ev->snap.has_price == (json_object_get(doc, "currency") != NULL));
    FUZZ_CHECK(ev->snap.has_attributes == (json_object_get(doc, "attributes") != NULL));
    FUZZ_CHECK(!ev->snap.has_price || r->may_price);
    FUZZ_CHECK(cart_snapshot_valid(&ev->snap));
}

/* A refusal's detail names no option of jansson's API (one did: JSON_ALLOW_NUL), unless it
 * quotes the request, which may hold anything. */
static void check_no_option(const char *detail, const uint8_t *data, size_t size)
{
    static const char *const options[] = {"JSON_ALLOW_NUL", "JSON_REJECT_DUPLICATES", "JSON_DECODE_ANY",
                                          "JSON_DISABLE_EOF_CHECK", "JSON_DECODE_INT_AS_REAL"};

    for (size_t i = 0; i < sizeof options / sizeof options[0]; i++)
        if (strstr(detail, options[i]) != NULL)
            FUZZ_CHECK(memmem(data, size, options[i], strlen(options[i])) != NULL);
}

/* The If-Match oracle: what the event expects is what the tags name. */
static void check_if_match(const char *v, size_t len, const cart_event *ev)
{
    gw_etags tags = {0};

    FUZZ_CHECK(gw_etags_parse(v, len, true, &tags) == 0);
    FUZZ_CHECK(tags.any || tags.n > 0);
    FUZZ_CHECK(ev->expected_active == tags.any);
    FUZZ_CHECK(ev->has_expected_version == (tags.n == 1));
    if (tags.n == 1)
        FUZZ_CHECK(ev->expected_version == tags.versions[0]);
    FUZZ_CHECK(ev->n_expected_versions == (tags.n > 1 ? tags.n : 0));
    for (int i = 0; i < tags.n && tags.n > 1; i++)
        FUZZ_CHECK(ev->expected_versions[i] == tags.versions[i] && tags.versions[i] >= 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_input in = {data, size};
    const char *method, *target, *key, *auth, *match, *trace;
    size_t mlen, tlen, klen = 0, alen, match_len = 0, trace_len = 0;
    json_t *doc = NULL;
    gw_event_input ei = {.content_type = {"application/json", 16},
                         .now_ms = 1795341600000LL,
                         .fresh_id = "0af76519-16cd-43dd-8448-eb211c80319c",
                         .max_quantity = 1000000};
    gw_refusal why = {0};
    cart_event ev;
    gw_route r;

    if ((method = fuzz_field(&in, '\n', &mlen)) == NULL || (target = fuzz_field(&in, '\n', &tlen)) == NULL)
        return 0;
    route(method, mlen, target, tlen, &r);
    if ((key = fuzz_field(&in, '\n', &klen)) != NULL) {
        idempotency_key(r.user_id[0] ? r.user_id : "u1", key, klen);
        ei.idempotency_key = (gw_text){key, klen};
    }
    /* No Authorization: auth off, anyone may set a price. */
    r.may_price = true;
    if ((auth = fuzz_field(&in, '\n', &alen)) != NULL)
        r.may_price = authorization(auth, alen);
    if ((match = fuzz_field(&in, '\n', &match_len)) != NULL)
        ei.if_match = (gw_text){match, match_len};
    if ((trace = fuzz_field(&in, '\n', &trace_len)) != NULL && gw_traceparent_valid(trace, trace_len)) {
        FUZZ_CHECK(trace_len < sizeof r.request_id);
        memcpy(r.request_id, trace, trace_len);
    }
    if (in.at != NULL) {
        doc = body_object((const char *)in.at, in.left);
        ei.body = (gw_text){(const char *)in.at, in.left};
    }
    if (gw_event_build(&r, &ei, &ev, &why) == 0) {
        /* Accepted: every part was valid, and the event is publishable. */
        FUZZ_CHECK(why.status == 0);
        FUZZ_CHECK(key == NULL || gw_idem_key_valid(key, klen));
        if ((r.id == GW_R_CREATE_CART || r.id == GW_R_ADD_ITEM || r.id == GW_R_SET_ITEM))
            FUZZ_CHECK(doc != NULL);
        if (match != NULL)
            check_if_match(match, match_len, &ev);
        check_snapshot(doc, &r, &ev);
        check_publishable(&ev);
    } else {
        FUZZ_CHECK(why.status >= 400 && why.status <= 422 && why.slug != NULL && why.detail[0] != '\0');
        check_no_option(why.detail, data, size);
    }
    json_decref(doc);
    return 0;
}
