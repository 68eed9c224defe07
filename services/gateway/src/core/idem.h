/*
 * idem.h: Idempotency-Key (docs/reference/api.md, Idempotency keys). The event_id of a write
 * that carries a key is derived from the user and the key, so every retry, through any gateway,
 * publishes the same event_id: JetStream drops a repeat within its 2-minute duplicate window, and
 * the cart-store's processed_events drops any later one, in the same transaction as the change.
 *
 *   event_id = "idem-" + hex(SHA-256(user_id + "\n" + key))
 *
 * A user_id never contains "\n", so distinct (user, key) pairs never hash the same input.
 *
 * A key names one request: the event also carries the request's fingerprint, which the worker
 * keeps with the first outcome (processed_events.request_fingerprint), and a repeat with another
 * fingerprint is refused (422 idempotency-key-reused) instead of answered as the first:
 *
 *   request_fingerprint = hex(SHA-256(method + " " + path + "\n" + canonical body))
 *
 * method and path as routed (gw_route_write_target: ids percent-decoded, no query string); the
 * canonical body is "" for a route without one (whatever was sent), else the body's JSON object
 * written back by jansson with its members sorted by name (bytewise, UTF-8), no whitespace, every
 * string as its value (so "\u0041" and "A" are one), and every number as its value: an integer as
 * such, and a real that holds an integer in the int64 range as that integer (1.0, 1e0 and 10E-1 are
 * 1; -0.0 is 0), any other real as jansson writes a double ("%.17g" plus ".0" if it would read as
 * an integer). Two bodies with the same JSON content have one fingerprint; the fingerprint is
 * hex, so it never holds "\n" or a space.
 */
#ifndef GW_IDEM_H
#define GW_IDEM_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "cartshard/event.h"

#define GW_IDEM_KEY_MAX 128 /* longest Idempotency-Key */
#define GW_IDEM_PREFIX  "idem-"

/* The length of a request fingerprint: 64 hex digits. */
#define GW_IDEM_FINGERPRINT_LEN 64

/* The detail of the answer to a key reused for another request (422 idempotency-key-reused). */
#define GW_IDEM_REUSED_DETAIL                                                                                          \
    "Idempotency-Key: already used for another request (another method, path or body); use a new key"

/* True if key[0..len) is a valid Idempotency-Key: 1..128 visible ASCII characters (0x21..0x7e). */
bool gw_idem_key_valid(const char *key, size_t len);

/* Writes the event_id of (user_id, key[0..len)) into `out`. 0, or -1 when the key is invalid or
 * the digest failed (out is then empty). */
int gw_idem_event_id(const char *user_id, const char *key, size_t len, char out[CART_EVENT_ID_MAX + 1]);

/* Writes the fingerprint of the request `method` `path` with body `body` (NULL for a route without
 * one) into `out`, as defined above. `body` is borrowed and left as it was. 0, or -1 when out of
 * memory or the digest failed (out is then empty). */
int gw_idem_fingerprint(const char *method, const char *path, const json_t *body,
                        char out[GW_IDEM_FINGERPRINT_LEN + 1]);

#endif
