/*
 * event.h: the event envelope (docs/reference/events.md, The event envelope), encoded with jansson.
 *
 *   {"event_id": "...", "type": "cart.item_added", "user_id": "u1",
 *    "occurred_at": "2026-11-22T10:00:00Z", "data": {"sku": "A1", "quantity": 2},
 *    "expected_version": 3}
 *
 * If-Match with several entity tags becomes "expected_versions": [3, 5] instead, and If-Match: *
 * becomes "expected_active": true (docs/reference/events.md). An event made from an
 * Idempotency-Key also carries "request_fingerprint": "<hex>", the request it was made from
 * (docs/reference/api.md, Idempotency keys): a repeat of its event_id with another fingerprint is
 * refused, never answered as the first.
 *
 * An item_added or item_quantity_set event's data may also carry a line snapshot (cart_snapshot):
 * "name", "unit_price" with "currency", "attributes" (docs/reference/api.md, Line snapshots and
 * totals).
 *
 * Unknown fields are ignored. The decoder is strict about the fields it knows: a missing or
 * mistyped field, or one outside its domain (an id or a name too long, a bad currency, a price out
 * of range, bad attributes), is CART_ERR_INVALID with a reason that ends up in the DLQ's Cart-Error
 * header. The one domain the decoder cannot know is the quantity's, whose upper bound is a setting
 * (CART_MAX_QUANTITY): cart_event_check_quantity checks it, and the worker dead-letters an event
 * that fails it like an undecodable one.
 */
#ifndef CARTSHARD_EVENT_H
#define CARTSHARD_EVENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cartshard/status.h"

struct json_t; /* jansson's json_t */

#define CART_ID_MAX       64  /* longest user_id or sku */
#define CART_EVENT_ID_MAX 128 /* longest event_id */
#define CART_TRACE_MAX    127 /* longest trace context string carried in an event */
#define CART_EXPECTED_MAX 16  /* most versions in expected_versions */
#define CART_REPLY_TO_MAX 127 /* longest reply subject a merge event carries (data.reply_to) */

/* The longest request_fingerprint (the gateway's is 64 hex digits: SHA-256). */
#define CART_FINGERPRINT_MAX 64

/* The domains of a line snapshot (docs/reference/api.md, Line snapshots and totals). */
#define CART_NAME_MAX       200  /* longest name, in bytes of UTF-8 */
#define CART_CURRENCY_LEN   3    /* an ISO 4217 code: three upper-case letters */
#define CART_ATTRS_MAX      2048 /* longest attributes object, in bytes of its compact JSON */
#define CART_ATTRS_COUNT    16   /* most attributes */
#define CART_ATTR_VALUE_MAX 256  /* longest attribute value, in bytes of UTF-8 */
/* The largest unit_price, in minor units (cents...). */
#define CART_PRICE_MAX INT64_C(100000000000)

typedef enum cart_event_type {
    CART_EV_CREATED = 1,       /* cart.created */
    CART_EV_ITEM_ADDED,        /* cart.item_added        data: {sku, quantity} */
    CART_EV_ITEM_QUANTITY_SET, /* cart.item_quantity_set data: {sku, quantity} */
    CART_EV_ITEM_REMOVED,      /* cart.item_removed      data: {sku} */
    CART_EV_DELETED,           /* cart.deleted */
    CART_EV_CHECKED_OUT,       /* cart.checked_out */
    CART_EV_MERGE_REQUESTED,   /* cart.merge_requested   data: {into, strategy}; on the guest's partition */
    CART_EV_LINES_MERGED,      /* cart.lines_merged      data: {from, strategy, merge_id, cart_id, reply_to?,
                                * items} or, when the guest's side refused, {from, strategy, merge_id,
                                * cart_id?, reply_to?, status, detail?}; on the user's partition, written
                                * by the guest's worker */
    CART_EV_MERGE_SETTLED      /* cart.merge_settled     data: {into, merge_id, cart_id, status, detail?,
                                * reply_to?}; on the guest's partition, written by the user's worker */
} cart_event_type;

/* How a guest's lines join a user's (docs/reference/api.md, Merging a guest cart). */
typedef enum cart_merge_strategy {
    CART_MERGE_SUM = 0, /* "sum": quantities of a sku in both carts are added */
    CART_MERGE_MAX,     /* "max": the larger quantity wins */
    CART_MERGE_REPLACE, /* "replace": the user's lines become the guest's */
    CART_MERGE_KEEP     /* "keep": the user's lines stay; only skus the user lacks are added */
} cart_merge_strategy;

/* The data of the three merge events (docs/internals/merge.md); all empty or 0 for other types. */
typedef struct cart_merge_data {
    /** merge_requested and merge_settled: "into", the user; lines_merged: "from", the guest. */
    char peer[CART_ID_MAX + 1];
    /** merge_requested and lines_merged: the strategy. */
    cart_merge_strategy strategy;
    /** lines_merged and merge_settled: the event_id of the merge_requested they follow from. */
    char merge_id[CART_EVENT_ID_MAX + 1];
    /** lines_merged and merge_settled: the guest cart's cart_id; empty on a lines_merged that
     * carries the guest's side's refusal when the guest had no cart. */
    char cart_id[37];
    /** lines_merged and merge_settled: the subject the waiting gateway listens on; empty for none. */
    char reply_to[CART_REPLY_TO_MAX + 1];
    /** merge_settled: the user's side's answer, 200 (applied) or a refusal's status.
     * lines_merged: 0 when the guest cart was closed and its lines come along, or the guest's
     * side's refusal (400..599), which the user's side records under the user and answers. */
    int status;
    /** merge_settled and lines_merged: a refusal's reason; empty otherwise. */
    char detail[128];
} cart_merge_data;

/*
 * What the shopper saw when a line was added: the optional members of an item event's data, and
 * what a line keeps of them. In an event a has_ flag says the member was given (and replaces the
 * line's); in a line it says the line has it. Plain value type: no heap memory, copy freely.
 */
typedef struct cart_snapshot {
    /** "name": 0..CART_NAME_MAX bytes of UTF-8 without NUL; empty when !has_name. */
    bool has_name;
    char name[CART_NAME_MAX + 1];
    /** "unit_price" and "currency", which come together: 0..CART_PRICE_MAX minor units of an ISO
     * 4217 code (three upper-case ASCII letters); 0 and "" when !has_price. */
    bool has_price;
    int64_t unit_price;
    char currency[CART_CURRENCY_LEN + 1];
    /** "attributes": the object as compact JSON with its keys sorted (bytewise), at most
     * CART_ATTRS_COUNT string values of at most CART_ATTR_VALUE_MAX bytes under keys of 1..64
     * characters of [A-Za-z0-9._:-], CART_ATTRS_MAX bytes in all; "" when !has_attributes. */
    bool has_attributes;
    char attributes[CART_ATTRS_MAX + 1];
} cart_snapshot;

/* A decoded event. Plain value type: no heap memory, copy freely. */
typedef struct cart_event {
    /** 1..128 visible ASCII characters (0x21..0x7e). */
    char event_id[CART_EVENT_ID_MAX + 1];
    cart_event_type type;
    /** 1..64 characters of [A-Za-z0-9._:-]. */
    char user_id[CART_ID_MAX + 1];
    /** occurred_at in ms since the epoch; within years 0000..9999 UTC, so it encodes back. */
    int64_t occurred_at_ms;
    /** data.sku, for item events; empty otherwise. */
    char sku[CART_ID_MAX + 1];
    /** data.quantity, for added and set events; 0 otherwise. Any value that fits int64 decodes:
     * cart_event_check_quantity checks its range. */
    int64_t quantity;
    /** data's snapshot members, for added and set events; all absent otherwise. */
    cart_snapshot snap;
    /** expected_version, when present (If-Match): >= 0. JSON null counts as absent. */
    bool has_expected_version;
    int64_t expected_version;
    /** expected_versions, when present (If-Match with several tags): 1..CART_EXPECTED_MAX versions
     * >= 0, the cart's version must be one of them; n_expected_versions is 0 when absent (or null). */
    int n_expected_versions;
    int64_t expected_versions[CART_EXPECTED_MAX];
    /** expected_active (If-Match: *): the user must have an active cart. false when absent. */
    bool expected_active;
    /** Optional "trace" field: W3C traceparent or request id, at most 127 characters
     * 0x21..0x7e; empty when absent (or null). */
    char trace[CART_TRACE_MAX + 1];
    /** The merge events' data. The lines of a lines_merged event are not here (an event stays a
     * plain value): cart_merge_lines_decode reads them from the same JSON. */
    cart_merge_data merge;
    /** Optional "request_fingerprint": what the request that made the event was, compared byte
     * for byte with the fingerprint recorded with the event_id's first outcome; at most 64
     * characters 0x21..0x7e; empty when absent (or null). */
    char request_fingerprint[CART_FINGERPRINT_MAX + 1];
} cart_event;

/* The documented name of `s` ("sum", "max", "replace", "keep"), or NULL outside the enum. */
const char *cart_merge_strategy_name(cart_merge_strategy s);

/* Parses a strategy name of `len` bytes. CART_OK and *out, or CART_ERR_INVALID. */
cart_status cart_merge_strategy_parse(const char *name, size_t len, cart_merge_strategy *out);

/* The documented name of `t` ("cart.item_added"...), or NULL for a value outside the enum. */
const char *cart_event_type_name(cart_event_type t);

/* Parses a type name. CART_OK and *out set, or CART_ERR_INVALID for an unknown name. */
cart_status cart_event_type_parse(const char *name, cart_event_type *out);

/* True if s[0..len) is a valid user_id or sku: 1..64 characters of [A-Za-z0-9._:-]. */
bool cart_valid_id(const char *s, size_t len);

/* True if s[0..len) is a valid event_id or Idempotency-Key: 1..128 characters 0x21..0x7e. */
bool cart_valid_event_id(const char *s, size_t len);

/* True when `first` and `repeat`, the request fingerprints of an event_id's first outcome and of
 * a repeat of it, both exist ("" is none) and differ: the event_id was reused for another request.
 * Without a fingerprint on either side nothing can be compared, and the repeat is a repeat. */
bool cart_fingerprints_clash(const char *first, const char *repeat);

/* True if s[0..len) is an ISO 4217 code as the API takes it: three upper-case ASCII letters. */
bool cart_valid_currency(const char *s, size_t len);

/*
 * Reads the snapshot members ("name", "unit_price", "currency", "attributes") of `obj` (a jansson
 * object, borrowed) into *snap, every member absent when left out. Each must be in its domain
 * (cart_snapshot), and unit_price and currency come together. CART_OK; CART_ERR_INVALID with
 * `err` (errlen bytes, may be 0) holding a reason that names the member, after `prefix` ("" or
 * "data."), such as "currency: needs unit_price"; CART_ERR_NOMEM. *snap is written only on
 * CART_OK. Members of other names are ignored. The event decoder, the gateway's request reader and
 * the cache entry reader use it, so that all three take the same values.
 */
cart_status cart_snapshot_read(const struct json_t *obj, const char *prefix, cart_snapshot *snap, char *err,
                               size_t errlen);

/* True if *snap is one cart_snapshot_read could have produced: every member in its domain, the
 * name valid UTF-8, the attributes' text checked for its length and shape ('{' ... '}') but not
 * parsed (cart_event_encode parses it). */
bool cart_snapshot_valid(const cart_snapshot *snap);

/* Adds the members *snap has to the JSON object `obj` (an item event's data, or a line of
 * data.items), as cart_snapshot_read reads them back. CART_OK, CART_ERR_NOMEM, or
 * CART_ERR_INVALID when the attributes are not a JSON object. */
cart_status cart_snapshot_write(struct json_t *obj, const cart_snapshot *snap);

/*
 * Checks the quantity of an item_added (1..max_quantity) or item_quantity_set (0..max_quantity)
 * event; any other type passes. CART_OK, or CART_ERR_INVALID with a reason naming data.quantity
 * in `err` (errlen bytes, may be 0). The worker calls it after decoding: an event outside it is
 * malformed, a dead letter.
 */
cart_status cart_event_check_quantity(const cart_event *ev, int32_t max_quantity, char *err, size_t errlen);

/*
 * Decodes an event from JSON text `json` of `len` bytes (need not be NUL-terminated) into *ev.
 * CART_ERR_INVALID for bad JSON, a non-object, an unknown type, or a missing or invalid field;
 * then `err` (of `errlen` bytes, may be 0) holds a reason such as "data.sku: missing". *ev is
 * written only on CART_OK.
 */
cart_status cart_event_decode(const char *json, size_t len, cart_event *ev, char *err, size_t errlen);

/*
 * Encodes *ev as compact JSON with the fields in the order shown above. On CART_OK *out is a
 * malloc'd NUL-terminated string the caller frees, and *outlen its length. CART_ERR_INVALID if
 * the event could not be decoded back (bad type, invalid ids), CART_ERR_NOMEM.
 */
cart_status cart_event_encode(const cart_event *ev, char **out, size_t *outlen);

/* Fills ev->event_id with a new random UUID v4 (lowercase, 36 characters). */
void cart_event_new_id(cart_event *ev);

/* Writes a random UUID v4 into `buf` (37 bytes with the NUL), from getrandom(2) (drawn 512 bytes at
 * a time per thread; a process that forks must not share the pool). */
void cart_uuid_v4(char buf[37]);

#endif
