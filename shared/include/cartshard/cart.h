/*
 * cart.h: the cart model. Applying an event to a cart is a pure function: no I/O, no clock,
 * no randomness (the caller passes the time and the id a new cart would get), so the whole
 * business logic is unit-testable and the worker's storage code only persists its outcome.
 *
 * Versions are per user and only ever go up: a new cart (after a checkout or a delete) starts
 * at the previous cart's version + 1, so a cache entry of an older cart can never win over a
 * newer one by version.
 *
 * Money is integers of minor units (cents...), never floating point: a line's total is
 * unit_price x quantity, the subtotal their sum over the priced lines, each at most
 * CART_MONEY_MAX. All priced lines of a cart share one currency, the cart's.
 */
#ifndef CARTSHARD_CART_H
#define CARTSHARD_CART_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cartshard/event.h"
#include "cartshard/status.h"

typedef enum cart_state {
    CART_NONE = 0,    /* the user never had a cart */
    CART_ACTIVE,      /* the user's current cart */
    CART_CHECKED_OUT, /* the last cart was checked out; no active cart */
    CART_DELETED,     /* the last cart was deleted; no active cart */
    CART_EXPIRED,     /* the last cart was abandoned (idle longer than CART_IDLE_TTL); no active cart */
    CART_MERGING,     /* the last cart is being merged into another user's (merged_into); no active cart,
                       * and no new one until the merge is settled (docs/internals/merge.md) */
    CART_MERGED       /* the last cart was merged into another user's (merged_into); no active cart */
} cart_state;

/* The largest line total or subtotal, in minor units: 10^15. Below 2^53, so that a JSON reader
 * that keeps numbers as doubles (JavaScript's) reads every total exactly; and a line total can be
 * tested against it without overflow (unit_price <= CART_PRICE_MAX, quantity <= INT32_MAX). */
#define CART_MONEY_MAX INT64_C(1000000000000000)

/* The detail of every currency refusal (CART_ERR_CURRENCY) starts with this, so that whoever
 * reads an answer back (the gateway, from a reply or from processed_events) knows its problem type
 * (currency-mismatch) from the detail alone. */
#define CART_CURRENCY_MISMATCH "currency mismatch"

typedef struct cart_item {
    /** The line's sku: 1..64 characters of [A-Za-z0-9._:-]. */
    char sku[CART_ID_MAX + 1];
    /** Always >= 1: a line with 0 does not exist. */
    int32_t quantity;
    /** What the shopper saw: the members the line has (has_ flags). */
    cart_snapshot snap;
} cart_item;

/* A user's latest cart. Caller-owned struct: cart_init / cart_cleanup. */
typedef struct cart {
    char user_id[CART_ID_MAX + 1];
    /** UUID of the latest cart; empty when state is CART_NONE. */
    char cart_id[37];
    cart_state state;
    /** Version of the latest cart; 0 when state is CART_NONE. */
    int64_t version;
    /** Lines sorted by sku (strcmp order); owned by the cart. */
    cart_item *items;
    size_t nitems;
    size_t cap;
    int64_t created_at_ms;
    int64_t updated_at_ms;
    /** CART_MERGING and CART_MERGED: the user the lines went to, when known (the worker sets it
     * with each step of a merge; a cart read from a shard has it empty); empty otherwise. */
    char merged_into[CART_ID_MAX + 1];
} cart;

typedef struct cart_limits {
    int32_t max_quantity; /* largest quantity of one line (default 999; docs/reference/api.md) */
    uint32_t max_lines;   /* most distinct lines (default 100; docs/reference/api.md) */
} cart_limits;

/* What an applied event did; the storage layer writes exactly this. */
typedef struct cart_outcome {
    /** CART_OK when applied (even if nothing changed), else why it was refused:
     * CART_ERR_NOT_FOUND, CART_ERR_CONFLICT, CART_ERR_PRECONDITION, CART_ERR_LIMIT,
     * CART_ERR_CURRENCY; and CART_ERR_INVALID (400) for an event the worker would have
     * dead-lettered (type outside the enum, invalid sku on an item event, a quantity outside
     * cart_event_check_quantity, a snapshot outside cart_snapshot_valid). */
    cart_status status;
    /** The HTTP status the gateway answers with: 200, 201, 204, 404, 409, 412 or 422 (400 for
     * CART_ERR_INVALID). CART_ERR_LIMIT and CART_ERR_CURRENCY are both 422; the detail of the
     * latter starts with CART_CURRENCY_MISMATCH. */
    int http_status;
    /** True if the cart changed and its version went up by one. */
    bool changed;
    /** True if a new cart was started (new cart_id, created_at); the row must be inserted. */
    bool created;
    /** For item events that changed a line (its quantity or its snapshot): that sku, and its new
     * quantity (0 = line removed); the line's snapshot is in the cart. */
    char sku[CART_ID_MAX + 1];
    int32_t line_quantity;
    bool line_changed;
    /** A short reason for a refusal ("cart is empty", "quantity 1000 is over the limit 999"). */
    char detail[128];
} cart_outcome;

/* Initialises an empty cart (state CART_NONE) for `user_id` (copied, truncated to 64). */
void cart_init(cart *c, const char *user_id);

/* Frees the items; the struct may be re-initialised. Safe twice. */
void cart_cleanup(cart *c);

/* Sets the quantity of `sku` in the lines without any limit checks (0 removes), keeping them
 * sorted; a line keeps its snapshot, a new one has none. For the storage layer that loads a cart.
 * CART_ERR_NOMEM; CART_ERR_INVALID (nothing changes) for a NULL or empty sku, one longer than 64
 * characters, or a negative quantity. */
cart_status cart_put_line(cart *c, const char *sku, int32_t quantity);

/* Sets the snapshot of the line of `sku` to *snap (copied whole: members *snap lacks, the line
 * loses), without the cart's money checks. For the storage layer that loads a cart.
 * CART_ERR_NOT_FOUND without such a line; CART_ERR_INVALID (nothing changes) for a snapshot
 * outside cart_snapshot_valid. */
cart_status cart_put_snapshot(cart *c, const char *sku, const cart_snapshot *snap);

/* The line for `sku`, or NULL. */
const cart_item *cart_find_line(const cart *c, const char *sku);

/* Sum of the quantities. */
int64_t cart_item_count(const cart *c);

/* A priced line's total: unit_price x quantity (0 for a line without a price). Never more than
 * CART_MONEY_MAX for a line cart_apply made; INT64_MAX for one beyond (a loaded line no limit
 * checked), never an overflow. */
int64_t cart_line_total(const cart_item *line);

/* The sum of the priced lines' totals, in the same way at most INT64_MAX. */
int64_t cart_subtotal(const cart *c);

/* The cart's currency: that of its first priced line (cart_apply keeps them all the same), or
 * NULL when no line has a price. Points into the cart. */
const char *cart_currency(const cart *c);

/* Replaces the members of *line that *given has (has_ flags), keeping the others: what an item
 * event does to its line's snapshot. */
void cart_snapshot_merge(cart_snapshot *line, const cart_snapshot *given);

/*
 * Applies `ev` to `c` at time `now_ms`, enforcing `lim`. `new_cart_id` is the id a cart created
 * by this event gets. On return *out says what happened; `c` is changed only when
 * out->status is CART_OK and out->changed. Returns CART_ERR_NOMEM (c unchanged) or CART_OK
 * (the outcome, refusals included, is in *out).
 *
 * Rules (see README "Cart semantics"):
 *  - a precondition (expected_version, expected_versions or expected_active) and no active cart,
 *    or a version that is not the expected one (not one of them): 412, nothing changes;
 *  - created: an active cart exists -> 200 unchanged; else a new cart -> 201;
 *  - an item event outside its domain (cart_event_check_quantity, cart_snapshot_valid): 400;
 *  - item_added: the line's quantity after it <= max_quantity, else 422; a new line beyond
 *    max_lines is 422; creates the cart if there is none; -> 200;
 *  - item_quantity_set: 0 removes the line; creates the cart when there is none and quantity > 0;
 *    with no cart and quantity 0 -> 404; setting the quantity a line already has, with the
 *    snapshot it already has, is 200 unchanged;
 *  - both, for a line they keep: the snapshot members the event has replace the line's
 *    (cart_snapshot_merge); a priced line whose currency is not that of the cart's other priced
 *    lines is 422 (CART_ERR_CURRENCY), and so is a line total or a subtotal over CART_MONEY_MAX
 *    (CART_ERR_LIMIT). The cart's only priced line may change its currency;
 *  - item_removed: no active cart -> 404; absent line -> 200 unchanged;
 *  - deleted: -> 204; the active cart is gone (state CART_DELETED); none -> 204 unchanged;
 *  - checked_out: no active cart or no lines -> 409; else state CART_CHECKED_OUT -> 200;
 *  - created, item_added, item_quantity_set on a CART_MERGING cart: 409 (no new cart while the
 *    old one's lines may come back);
 *  - merge_requested and merge_settled: cart_merge_close and cart_merge_settle (cart_merge.h);
 *    lines_merged needs its lines: cart_merge_lines (here it is 400).
 * Every change bumps version by one and sets updated_at to now_ms; one event is one change, also
 * when it starts a new cart. A change that would take version past INT64_MAX is 409.
 */
cart_status cart_apply(cart *c, const cart_event *ev, const cart_limits *lim, int64_t now_ms, const char *new_cart_id,
                       cart_outcome *out);

/*
 * Expires an abandoned cart: if `c` is active and was last changed at or before
 * now_ms - idle_ttl_ms, its state becomes CART_EXPIRED (the lines stay, so the announcement
 * carries what was abandoned), the version goes up by one and updated_at becomes now_ms; *out
 * says changed with http_status 200. Otherwise nothing changes and *out says so (status
 * CART_ERR_NOT_FOUND for no active cart, CART_ERR_CONFLICT for a cart touched too recently or at
 * the version limit). Like cart_apply, pure.
 */
void cart_expire(cart *c, int64_t now_ms, int64_t idle_ttl_ms, cart_outcome *out);

/* The documented name of a state ("active", "checked_out", "deleted", "expired"), or NULL for
 * CART_NONE and values outside the enum. */
const char *cart_state_name(cart_state s);

/* Parses name[0..len) as a state name (not "none"). CART_OK and *out, or CART_ERR_INVALID. */
cart_status cart_state_parse(const char *name, size_t len, cart_state *out);

/*
 * Renders the cart as the API's JSON (docs/reference/api.md, The cart): items sorted by sku, each
 * with its snapshot's members and, when priced, its line_total; item_count, currency (null when
 * no line is priced), subtotal, RFC 3339 times, "status": "active" | "checked_out" | "deleted" |
 * "expired". Returns
 * a malloc'd NUL-terminated string (length in *len if len is non-NULL) the caller frees, or NULL
 * when out of memory or when the state is CART_NONE.
 */
char *cart_to_json(const cart *c, size_t *len);

/* What one change did, beyond the cart it left: the members "cart_created" and "line" of its
 * notice (docs/reference/events.md, What the change did), which the statistics count from. Plain
 * value type. */
typedef struct cart_change_what {
    /** The change started a new cart (cart_outcome.created). */
    bool created;
    /** The change touched one line (an add, a set or a removal that changed it): its sku, and its
     * quantity before and after (0: no line). A change of the snapshot alone has before == after. */
    bool has_line;
    char sku[CART_ID_MAX + 1];
    int32_t quantity_before;
    int32_t quantity_after;
} cart_change_what;

/*
 * Renders the change notice of carts.changes.<partition> (docs/reference/events.md, Change
 * notices): which event made the change, and the cart after it (keys event_id, type, user_id,
 * cart_id, version, status, partition, items, item_count, currency, subtotal, applied_at; the
 * items as cart_to_json writes them), then what the change did when `what` is not NULL
 * ("cart_created", and "line": {"sku", "quantity_before", "quantity_after"} when it touched one).
 * Returns a malloc'd string the caller frees (length in *len if non-NULL), or NULL when out of
 * memory or when the state is CART_NONE.
 */
char *cart_change_to_json(const cart *c, const char *event_id, const char *type, uint32_t partition,
                          int64_t applied_at_ms, const cart_change_what *what, size_t *len);

/* The longest Nats-Msg-Id of a change notice: "chg-" and an event id. */
#define CART_CHANGE_MSG_ID_MAX (sizeof "chg-" - 1 + CART_EVENT_ID_MAX)

/*
 * Writes the Nats-Msg-Id of the change notice of `event_id` into `buf` (docs/reference/events.md,
 * Message ids: "chg-<event_id>", so JetStream drops a notice sent twice) and returns `buf`. An
 * event id longer than CART_EVENT_ID_MAX is truncated.
 */
char *cart_change_msg_id(char buf[CART_CHANGE_MSG_ID_MAX + 1], const char *event_id);

/*
 * Parses what cart_to_json wrote (a cache entry) into *c (initialised by the caller; its old
 * lines are replaced). Strict: anything malformed, out of range or unsorted, a missing or an
 * unknown key, a line_total, currency or subtotal that does not follow from the lines, or (when
 * c->user_id is set) another user's cart is CART_ERR_INVALID, so that a
 * corrupt cache entry is treated as a miss. CART_ERR_NOMEM. *c changes only on CART_OK.
 */
cart_status cart_from_json(cart *c, const char *json, size_t len);

#endif
