/*
 * event_build.h: turns a write request into the event the gateway publishes (docs/reference/api.md):
 * the route says which change and whose cart, the body (POST /v1/carts and the item routes) says
 * the rest, Idempotency-Key gives the event_id (and the request fingerprint) and If-Match the
 * expected version. Pure: no I/O, no clock, no randomness (the caller passes the time and a fresh
 * event_id); what jansson allocates is freed before return. writes.c applies it to h2o's request;
 * any thread may call it.
 *
 * The checks run in this order, and the first that fails is the answer:
 *   1. the body, for the routes that have one:
 *        Content-Type application/json (parameters allowed)           -> 415 unsupported-media-type
 *        nesting within GW_JSON_MAX_DEPTH, then a JSON object without
 *        duplicate keys                                               -> 400 malformed-json
 *        the fields: user_id or sku a valid id, quantity an integer,
 *        the line snapshot's members in their domains
 *        (cart_snapshot_read: name, unit_price with currency, attributes) -> 400 invalid-field
 *        POST /v1/carts: user_id is the token's subject, if any       -> 403 forbidden
 *        unit_price or currency only when r->may_price                -> 403 forbidden
 *        quantity from 1 (add) or 0 (set) to max_quantity             -> 422 limit-exceeded
 *   2. Idempotency-Key, if present: 1-128 visible ASCII characters    -> 400 invalid-header
 *      (it gives the event_id, and the event carries the request's
 *      fingerprint, idem.h; out of memory for it                      -> 503 unavailable)
 *   3. If-Match, if present: "*" or a list of entity tags              -> 400 invalid-header
 *      ... of which none can match a cart's ETag (weak ones only)      -> 412 precondition-failed
 *
 * The merge (POST /v1/carts/{user_id}/merge) reads, in step 1: "from" a valid id, "strategy" one
 * of sum, max, replace, keep (default sum), "from" not the user (400 invalid-field); with auth on,
 * "from_token" a valid token of the guest ("sub" = from), else 403 forbidden. Its event is
 * cart.merge_requested on the guest's partition (user_id the guest, data.into the user); If-Match
 * is not read (it would name the guest's version).
 */
#ifndef GW_EVENT_BUILD_H
#define GW_EVENT_BUILD_H

#include <stddef.h>
#include <stdint.h>

#include "cartshard/event.h"
#include "jwt.h"
#include "route.h"

/* A header value or a body: text[0..len), not NUL-terminated; text is NULL when absent. */
typedef struct gw_text {
    const char *text; /* borrowed from the request; NULL when absent */
    size_t len;       /* its length in bytes */
} gw_text;

/* What a write request carries besides its route, and what the gateway adds. */
typedef struct gw_event_input {
    gw_text content_type;        /* the Content-Type header */
    gw_text body;                /* the request body; an empty one may have text NULL */
    gw_text idempotency_key;     /* the Idempotency-Key header */
    gw_text if_match;            /* the If-Match field lines, joined with ", " */
    int64_t now_ms;              /* the event's occurred_at, in ms since the epoch */
    const char *fresh_id;        /* the event_id when there is no Idempotency-Key: a new UUID, NUL-terminated */
    int32_t max_quantity;        /* the largest quantity a line may have (CART_MAX_QUANTITY) */
    const gw_jwt_keys *jwt_keys; /* the keys of the bearer tokens when auth is on (the merge checks
                                  * from_token with them: HS256, RS256, ES256), else NULL */
} gw_event_input;

/* Why a request is refused: the problem+json answer it gets. */
typedef struct gw_refusal {
    int status;       /* the HTTP status; 0 while nothing is refused */
    const char *slug; /* the problem type's slug (cartshard/problem.h); static storage */
    char detail[200]; /* the problem's detail, NUL-terminated */
} gw_refusal;

/* Sets *why to (status, slug, detail). `slug` must outlive *why; `detail` is copied, cut to fit. */
void gw_refuse(gw_refusal *why, int status, const char *slug, const char *detail);

/* Builds the event of the write request routed as `r` (r->user_id, r->sku, r->subject and
 * r->request_id as routing and the front set them) from `in`. 0 and *ev filled; or -1 and *why
 * says the answer, in the order above, and *ev is unspecified. A route that is not a write is
 * refused as 404 not-found. Borrows everything; keeps nothing. */
int gw_event_build(const gw_route *r, const gw_event_input *in, cart_event *ev, gw_refusal *why);

#endif
