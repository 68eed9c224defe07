/*
 * idem.h: Idempotency-Key (docs/reference/api.md, Idempotency keys). The event_id of a write
 * that carries a key is derived from the user and the key, so every retry, through any gateway,
 * publishes the same event_id: JetStream drops a repeat within its 2-minute duplicate window, and
 * the cart-store's processed_events drops any later one, in the same transaction as the change.
 *
 *   event_id = "idem-" + hex(SHA-256(user_id + "\n" + key))
 *
 * A user_id never contains "\n", so distinct (user, key) pairs never hash the same input.
 */
#ifndef GW_IDEM_H
#define GW_IDEM_H

#include <stdbool.h>
#include <stddef.h>

#include "cartshard/event.h"

#define GW_IDEM_KEY_MAX 128 /* longest Idempotency-Key */
#define GW_IDEM_PREFIX  "idem-"

/* True if key[0..len) is a valid Idempotency-Key: 1..128 visible ASCII characters (0x21..0x7e). */
bool gw_idem_key_valid(const char *key, size_t len);

/* Writes the event_id of (user_id, key[0..len)) into `out`. 0, or -1 when the key is invalid or
 * the digest failed (out is then empty). */
int gw_idem_event_id(const char *user_id, const char *key, size_t len, char out[CART_EVENT_ID_MAX + 1]);

#endif
