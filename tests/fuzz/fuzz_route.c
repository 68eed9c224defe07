/*
 * fuzz_route: what the gateway does with a request line and headers before any I/O, through its
 * pure modules: gw_route_match (method, raw target), the Idempotency-Key (gw_idem_*) and the
 * Authorization header's scheme (gw_jwt_bearer).
 *
 * Input: '\n'-separated fields: method, request target, Idempotency-Key, Authorization; a field
 * that is missing is an absent header. Oracles: the route's documented shape (ids valid and taken
 * from the path, Allow and detail set when they should be), a query string and HEAD change
 * nothing, and an accepted Idempotency-Key always gives a valid, repeatable event_id.
 */
#define _POSIX_C_SOURCE 200809L
#include <strings.h>

#include "fuzz.h"
#include "idem.h"
#include "jwt.h"
#include "route.h"

static void check_same(const gw_route *a, const gw_route *b)
{
    FUZZ_CHECK(a->id == b->id);
    FUZZ_CHECK(strcmp(a->user_id, b->user_id) == 0 && strcmp(a->sku, b->sku) == 0);
    FUZZ_CHECK(a->allow == b->allow && a->detail == b->detail && a->name == b->name);
}

/* True if `id` is one whole segment of path[0..len) (between slashes). */
static int is_segment(const char *path, size_t len, const char *id)
{
    size_t n = strlen(id);

    for (size_t i = 1; i + n <= len; i++) {
        if (path[i - 1] == '/' && memcmp(path + i, id, n) == 0 &&
            (i + n == len || path[i + n] == '/' || path[i + n] == '?'))
            return 1;
    }
    return 0;
}

static void route(const char *method, size_t mlen, const char *target, size_t tlen, gw_route *r)
{
    const char *q = memchr(target, '?', tlen);
    gw_route plain;

    gw_route_match(method, mlen, target, tlen, r);
    FUZZ_CHECK(r->name != NULL);
    FUZZ_CHECK(r->id >= GW_R_NOT_FOUND && r->id <= GW_R_BAD_ID);
    FUZZ_CHECK((r->id == GW_R_BAD_METHOD) == (r->allow != NULL));
    FUZZ_CHECK((r->id == GW_R_BAD_ID) == (r->detail != NULL));
    FUZZ_CHECK(r->subject[0] == '\0' && r->request_id[0] == '\0');
    switch (r->id) {
    case GW_R_SET_ITEM:
    case GW_R_REMOVE_ITEM:
        FUZZ_CHECK(cart_valid_id(r->sku, strlen(r->sku)) && is_segment(target, tlen, r->sku));
        /* fall through */
    case GW_R_GET_CART:
    case GW_R_DELETE_CART:
    case GW_R_ADD_ITEM:
    case GW_R_CHECKOUT:
        FUZZ_CHECK(cart_valid_id(r->user_id, strlen(r->user_id)) && is_segment(target, tlen, r->user_id));
        FUZZ_CHECK(tlen > 10 && memcmp(target, "/v1/carts/", 10) == 0);
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

static void authorization(const char *value, size_t len)
{
    const char *token = NULL;
    size_t token_len = 0;

    if (!gw_jwt_bearer(value, len, &token, &token_len)) {
        FUZZ_CHECK(token == NULL && token_len == 0);
        return;
    }
    FUZZ_CHECK(token_len >= 1 && token > value && token + token_len <= value + len);
    FUZZ_CHECK(memchr(token, ' ', token_len) == NULL && memchr(token, '\t', token_len) == NULL);
    FUZZ_CHECK(strncasecmp(value, "bearer ", 7) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_input in = {data, size};
    const char *method, *target, *key, *auth;
    size_t mlen, tlen, klen, alen;
    gw_route r;

    if ((method = fuzz_field(&in, '\n', &mlen)) == NULL || (target = fuzz_field(&in, '\n', &tlen)) == NULL)
        return 0;
    route(method, mlen, target, tlen, &r);
    if ((key = fuzz_field(&in, '\n', &klen)) != NULL)
        idempotency_key(r.user_id[0] ? r.user_id : "u1", key, klen);
    if ((auth = fuzz_field(&in, '\n', &alen)) != NULL)
        authorization(auth, alen);
    return 0;
}
