/*
 * cart_merge.h: a guest's cart merged into a user's (docs/internals/merge.md), as pure functions of
 * carts and events, like cart_apply: no I/O, no clock, no randomness.
 *
 * The merge is a saga of three events, each applied by the worker of its own partition:
 *   cart.merge_requested (guest's partition)  cart_merge_close: the guest cart is closed (MERGING)
 *   cart.lines_merged    (user's partition)   cart_merge_lines: the guest's lines join the user's
 *   cart.merge_settled   (guest's partition)  cart_merge_settle: MERGED, or ACTIVE again (refused)
 * cart_merge_lines_event (or cart_merge_refused_event) and cart_merge_settled_event build the two
 * events a worker writes to its outbox; their event ids derive from the merge's
 * (cart_merge_derived_id), and the lines_merged carries the merge's request_fingerprint.
 */
#ifndef CARTSHARD_CART_MERGE_H
#define CARTSHARD_CART_MERGE_H

#include <stddef.h>
#include <stdint.h>

#include "cartshard/cart.h"
#include "cartshard/event.h"
#include "cartshard/status.h"

/* The prefixes of the derived event ids: the lines (to the user) and the settlement (to the guest). */
#define CART_MERGE_LINES_PREFIX   "mrg-"
#define CART_MERGE_SETTLED_PREFIX "stl-"

/*
 * The guest's side, first step (cart.merge_requested on the guest `c`): an active cart other than
 * the user's is closed, state CART_MERGING with merged_into = ev->merge.peer, lines kept, version
 * up by one; *out says changed, http_status 202 (the answer comes from the user's side). Refusals
 * change nothing: no active cart 404; the guest is the user (merged into itself) 400; the version
 * at its limit 409.
 */
void cart_merge_close(cart *c, const cart_event *ev, int64_t now_ms, cart_outcome *out);

/*
 * The guest's side, last step (cart.merge_settled on the guest `c`): if `c` is the cart the merge
 * closed (CART_MERGING, cart_id = ev->merge.cart_id), it becomes CART_MERGED when the user's side
 * applied the lines (ev->merge.status 200), or CART_ACTIVE again with its lines and no merged_into
 * when it refused them; version up by one. *out's http_status is ev->merge.status. Anything else
 * (a settlement seen twice, a cart the merge did not close) is a 409 refusal that changes nothing.
 */
void cart_merge_settle(cart *c, const cart_event *ev, int64_t now_ms, cart_outcome *out);

/*
 * The user's side (cart.lines_merged): joins the lines of `guest` (only its lines are read) to the
 * user's cart `c` by `strategy`:
 *   sum      a sku in both carts gets the sum of the quantities;
 *   max      the larger quantity;
 *   replace  the user's lines become the guest's (a line only the user has is dropped);
 *   keep     the user's line stays; only skus the user lacks are added.
 * A line taken from the guest is copied whole, with its snapshot; under sum and max a sku in both
 * carts takes the snapshot members the guest's line has over the user's (cart_snapshot_merge, like
 * a later add); under keep the user's line stays as it was. A user without an active cart gets a
 * new one (`new_cart_id`, created), also for an empty guest cart. On CART_OK with out->changed,
 * `c` holds the result and its version went up by one (a merge that changes no line of an active
 * cart, quantity or snapshot, is 200 unchanged). Refusals change nothing: a line over
 * lim->max_quantity, more than lim->max_lines lines, or a line total or the subtotal over
 * CART_MONEY_MAX 422 (CART_ERR_LIMIT); priced lines in more than one currency 422
 * (CART_ERR_CURRENCY, the detail starting with CART_CURRENCY_MISMATCH); the user's cart being
 * merged itself (CART_MERGING) 409; the version at its limit 409. Returns CART_ERR_NOMEM (`c`
 * unchanged) or CART_OK (the outcome in *out).
 */
cart_status cart_merge_lines(cart *c, const cart *guest, cart_merge_strategy strategy, const cart_limits *lim,
                             int64_t now_ms, const char *new_cart_id, cart_outcome *out);

/* The longest derived event id: CART_EVENT_ID_MAX, like every event id. */
#define CART_MERGE_ID_MAX CART_EVENT_ID_MAX

/*
 * Writes the event id of a step that follows from the merge `merge_id` into `buf` and returns it:
 * `prefix` + merge_id when that fits in CART_EVENT_ID_MAX, else `prefix`, 16 hex digits of the
 * merge id's 64-bit FNV-1a and its first characters. Deterministic, so that the outbox sends the
 * same step under the same id however often it is sent.
 */
char *cart_merge_derived_id(char buf[CART_MERGE_ID_MAX + 1], const char *prefix, const char *merge_id);

/*
 * The cart.lines_merged event that the guest's worker writes when `closed` (the guest cart just
 * closed by `req`, a cart.merge_requested) goes to the user: user_id req->merge.peer, data.from
 * the guest, the strategy, merge_id req's event_id, req's request_fingerprint, the cart's cart_id,
 * `reply_to` (may be NULL or empty) and the lines as data.items [{"sku", "quantity", and the line's snapshot members
 * "name", "unit_price", "currency", "attributes" that it has}]. *out is a malloc'd JSON text the caller frees (length
 * in *len if non-NULL). CART_ERR_NOMEM, CART_ERR_INVALID (req not encodable).
 */
cart_status cart_merge_lines_event(const cart_event *req, const cart *closed, const char *reply_to, int64_t now_ms,
                                   char **out, size_t *len);

/*
 * The cart.lines_merged event that the guest's worker writes when it refused `req` (`status`, 400
 * to 599, and `detail`): it goes to the user like the lines would, without lines, with
 * data.status and data.detail, and the guest cart's cart_id when `guest` has one. The user's
 * worker records the merge's key under the user and answers the refusal (docs/internals/merge.md,
 * Idempotency keys). Like cart_merge_lines_event.
 */
cart_status cart_merge_refused_event(const cart_event *req, const cart *guest, int status, const char *detail,
                                     const char *reply_to, int64_t now_ms, char **out, size_t *len);

/*
 * The cart.merge_settled event that the user's worker writes after `lines` (a cart.lines_merged)
 * was applied (`status` 200) or refused (its status and `detail`): back to the guest, with the
 * merge's id, the guest cart's id and the reply subject. When the refusal is the reuse of the
 * merge's key, `fingerprint` is the key's first request's, carried as the settlement's
 * request_fingerprint (so the guest's answer tells the gateway); NULL otherwise. Like
 * cart_merge_lines_event.
 */
cart_status cart_merge_settled_event(const cart_event *lines, int status, const char *detail, const char *fingerprint,
                                     int64_t now_ms, char **out, size_t *len);

/*
 * Reads data.items of a cart.lines_merged event (JSON text of `len` bytes) into `lines` (initialised
 * by the caller, empty): each item a valid sku, once, with a quantity from 1 to INT32_MAX and its
 * snapshot members in their domains (cart_snapshot_read); an item without them has none.
 * CART_ERR_INVALID with a reason in err (as cart_event_decode gives), CART_ERR_NOMEM; `lines`
 * may then hold some of them.
 */
cart_status cart_merge_lines_decode(const char *json, size_t len, cart *lines, char *err, size_t errlen);

/* The type a change notice of `ev`, applied to `c`, is announced as: for a merge_settled,
 * "cart.merged" (c is CART_MERGED) or "cart.merge_refused" (active again); else the event's type. */
const char *cart_merge_notice_type(const cart_event *ev, const cart *c);

#endif
