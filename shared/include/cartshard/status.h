/*
 * status.h: the one status enum of the cartshard shared library.
 *
 * Every fallible function of libcartshard returns a cart_status. CART_OK is 0, so
 * `if (st != CART_OK)` and `if (st)` both read as "failed". Out-parameters are written only
 * when CART_OK is returned.
 */
#ifndef CARTSHARD_STATUS_H
#define CARTSHARD_STATUS_H

typedef enum cart_status {
    CART_OK = 0,           /* success */
    CART_ERR_NOMEM,        /* an allocation failed */
    CART_ERR_INVALID,      /* input is malformed: bad JSON, a missing or invalid field, a bad setting */
    CART_ERR_NOT_FOUND,    /* the user has no active cart (HTTP 404) */
    CART_ERR_CONFLICT,     /* the change conflicts with the cart's state, e.g. checkout of an empty cart (409) */
    CART_ERR_PRECONDITION, /* the expected version (If-Match) differs from the cart's version (412) */
    CART_ERR_LIMIT,        /* a quantity, line-count or money limit would be exceeded; nothing changed (422) */
    CART_ERR_CURRENCY,     /* a priced line's currency is not the cart's; nothing changed (422) */
    CART_ERR_OVERFLOW,     /* an output buffer was too small */
    CART_ERR_UNAVAILABLE,  /* a dependency (NATS, Redis, PostgreSQL) is unreachable; retry later (503) */
    CART_ERR_IO            /* an operating-system call failed; errno says why */
} cart_status;

/* Returns a short constant English name of `st` ("ok", "invalid", ...); never NULL. */
const char *cart_status_str(cart_status st);

/* Returns the HTTP status that `st` maps to when it is the outcome of a request
 * (CART_OK 200, INVALID 400, NOT_FOUND 404, CONFLICT 409, PRECONDITION 412, LIMIT and CURRENCY
 * 422, UNAVAILABLE 503, anything else 500). */
int cart_status_http(cart_status st);

#endif
