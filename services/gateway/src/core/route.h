/*
 * route.h: maps a request line to an API route. Pure: no I/O, no allocation.
 */
#ifndef GW_ROUTE_H
#define GW_ROUTE_H

#include <stdbool.h>
#include <stddef.h>

#include "cartshard/event.h"

/* Room for the path of a write route as routed: "/v1/carts/<user_id>/items/<sku>" and its NUL. */
#define GW_ROUTE_PATH_MAX (sizeof "/v1/carts//items/" + 2 * CART_ID_MAX)

typedef enum gw_route_id {
    GW_R_NOT_FOUND = 0, /* no such resource (404) */
    GW_R_HEALTHZ,       /* GET /healthz */
    GW_R_READYZ,        /* GET /readyz */
    GW_R_METRICS,       /* GET /metrics */
    GW_R_CREATE_CART,   /* POST /v1/carts */
    GW_R_GET_CART,      /* GET /v1/carts/{user_id} */
    GW_R_DELETE_CART,   /* DELETE /v1/carts/{user_id} */
    GW_R_ADD_ITEM,      /* POST /v1/carts/{user_id}/items */
    GW_R_SET_ITEM,      /* PUT /v1/carts/{user_id}/items/{sku} */
    GW_R_REMOVE_ITEM,   /* DELETE /v1/carts/{user_id}/items/{sku} */
    GW_R_CHECKOUT,      /* POST /v1/carts/{user_id}/checkout */
    GW_R_MERGE,         /* POST /v1/carts/{user_id}/merge (a guest's cart into this user's) */
    GW_R_OPTIONS,       /* OPTIONS on an API path: its methods, and a browser's preflight (see allow) */
    GW_R_BAD_METHOD,    /* the path exists, the method does not (405; see allow) */
    GW_R_BAD_ID         /* the path's shape is right but an id is invalid (400; see detail) */
} gw_route_id;

typedef struct gw_route {
    gw_route_id id;
    /** For routes under /v1/carts/{user_id}: the user id, NUL-terminated. */
    char user_id[CART_ID_MAX + 1];
    /** For item routes: the sku. */
    char sku[CART_ID_MAX + 1];
    /** For GW_R_BAD_METHOD and GW_R_OPTIONS: the Allow header value. */
    const char *allow;
    /** For GW_R_BAD_ID: what is wrong. */
    const char *detail;
    /** A stable low-cardinality name for metrics and logs ("get_cart", ...). */
    const char *name;
    /** Not set by routing: the verified JWT subject when auth is on, else empty. */
    char subject[CART_ID_MAX + 1];
    /** Not set by routing (false): the request may set a line's price (unit_price, currency),
     * since auth is off or its token's scope holds cart:price. */
    bool may_price;
    /** Not set by routing: the request's trace id (the client's traceparent or X-Request-Id, or a
     * new UUID), echoed as X-Request-Id and carried by the event to the worker. */
    char request_id[CART_TRACE_MAX + 1];
} gw_route;

/* Routes `method` and `path` (the raw request target; a query string is ignored). HEAD is
 * routed like GET. Each path segment is percent-decoded before it is matched or checked, so
 * /v1/carts/anon%3A42 is anon:42's cart; a malformed escape is GW_R_BAD_ID, and so is an id that
 * decodes to a character outside its alphabet (a '/' among them). Always fills *r. */
void gw_route_match(const char *method, size_t method_len, const char *path, size_t path_len, gw_route *r);

/* The method ("POST"...; static storage) and the path of write route `r` as it was routed: the
 * route's own form with r->user_id and r->sku, so percent-escapes are decoded, a query string or
 * an absolute-form target's scheme and authority are gone. 0, or -1 (nothing written) when `r` is
 * not a write route. */
int gw_route_write_target(const gw_route *r, const char **method, char path[GW_ROUTE_PATH_MAX]);

#endif
