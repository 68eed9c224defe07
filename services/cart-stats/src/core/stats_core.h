/*
 * stats_core.h: the pure logic of cart-stats (docs/internals/stats.md), no I/O: what a change
 * notice counts for, the windows and their bounds, the queries of the API, the figures derived
 * from minute counters and their JSON.
 *
 * Counting (docs/reference/api.md, Statistics): a notice is counted in the UTC minute of its
 * applied_at. What it counts for is read from its type and from the members "cart_created" and
 * "line" (docs/reference/events.md, What the change did); a notice of a worker older than those
 * members counts what can be known without them (st_notice_decode).
 */
#ifndef ST_STATS_CORE_H
#define ST_STATS_CORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cartshard/event.h"
#include "cartshard/status.h"

/* The counters of a minute, in the order of st_counter_names (and of the table stats_minutes). */
typedef enum st_counter {
    ST_CARTS_CREATED = 0, /* new carts: cart.created, a first add, a merge that made the user's cart */
    ST_LINES_ADDED,       /* cart.item_added changes */
    ST_UNITS_ADDED,       /* their quantities */
    ST_LINES_REMOVED,     /* lines removed by cart.item_removed or a set to 0 */
    ST_CHECKOUTS,         /* cart.checked_out */
    ST_CARTS_EXPIRED,     /* cart.expired */
    ST_CARTS_DELETED,     /* cart.deleted */
    ST_MERGES,            /* cart.merged */
    ST_NCOUNTERS
} st_counter;

/* The JSON (and column, and Redis field) name of each counter. */
extern const char *const st_counter_names[ST_NCOUNTERS];

/* The longest cart_id a notice may carry (a UUID has 36 characters). */
#define ST_CART_ID_MAX 64

/* What one change notice counts for. Plain value type. */
typedef struct st_notice {
    /** The change's event_id (1..128 visible ASCII): what makes a second copy count nothing. */
    char event_id[CART_EVENT_ID_MAX + 1];
    /** The UTC minute of applied_at, in minutes since the epoch: where it is counted. */
    int64_t minute;
    /** The cart it changed: counted among the minute's distinct carts (active_carts). */
    char cart_id[ST_CART_ID_MAX + 1];
    /** What it adds to each counter (0 or 1, units_added any quantity >= 0). */
    int64_t add[ST_NCOUNTERS];
    /** The sku whose units it added (units_added > 0), for the top skus; "" for none. */
    char sku[CART_ID_MAX + 1];
    /** A checkout of a priced cart: its currency and subtotal (minor units); "" for none. */
    char currency[CART_CURRENCY_LEN + 1];
    int64_t value;
} st_notice;

/*
 * Reads the change notice `json` (`len` bytes, need not be NUL-terminated) into *n. Needs
 * "event_id", "type", "cart_id" and "applied_at" (RFC 3339); "cart_created", "line",
 * "currency" and "subtotal" are read when present and must then be well-formed. Counting:
 *   - carts_created: "cart_created": true; without the member (an older worker), a
 *     cart.created notice;
 *   - lines_added: every cart.item_added; units_added: its line's quantity_after −
 *     quantity_before (without "line": 0, unknown);
 *   - lines_removed: cart.item_removed; a cart.item_quantity_set whose line went from > 0 to 0
 *     (without "line": not counted, unknown);
 *   - checkouts (and the value of a priced cart), carts_expired, carts_deleted, merges: the types
 *     cart.checked_out, cart.expired, cart.deleted, cart.merged;
 *   - any other type (those of the merge's other steps, or a type this code does not know) only
 *     counts its cart among the distinct carts.
 * CART_OK; CART_ERR_INVALID with a reason in `err` (errlen bytes, may be 0) naming the member at
 * fault; CART_ERR_NOMEM. *n is written only on CART_OK.
 */
cart_status st_notice_decode(const char *json, size_t len, st_notice *n, char *err, size_t errlen);

/* The windows of the API, as the number of whole minutes they span. */
#define ST_WINDOW_MAX_MINUTES 1440

/* Parses a window name ("5m", "1h", "24h") of `len` bytes into its minutes. CART_OK, or
 * CART_ERR_INVALID for any other text. */
cart_status st_window_parse(const char *s, size_t len, int *minutes);

/* The name of a window of `minutes` minutes ("5m", "1h", "24h"), or NULL for any other. */
const char *st_window_name(int minutes);

/* The minutes of a window of `minutes` at time now_ms: the current UTC minute and the
 * minutes − 1 before it, *first to *last (minutes since the epoch, inclusive). */
void st_window_bounds(int64_t now_ms, int minutes, int64_t *first, int64_t *last);

/* A query of /v1/stats or /v1/stats/top-skus. */
typedef struct st_query {
    /** window: minutes (default 60, "1h"). */
    int minutes;
    /** limit: 1..100, default 10 (top-skus only). */
    int limit;
} st_query;

#define ST_LIMIT_MAX     100
#define ST_LIMIT_DEFAULT 10

/*
 * Parses the query string `q` (`len` bytes, without the '?'; NULL or empty for none) of /v1/stats
 * (with_limit false) or /v1/stats/top-skus (with_limit true). Parameters other than window (and
 * limit) are ignored; a known one given twice, empty, or outside its domain is CART_ERR_INVALID
 * with a reason naming it in `err` (errlen bytes). *out is written only on CART_OK.
 */
cart_status st_query_parse(const char *q, size_t len, bool with_limit, st_query *out, char *err, size_t errlen);

/* The most currencies a window's checkout_value shows: more than ISO 4217's active codes (about
 * 180); beyond it, the currencies read first from the window's minutes are the ones shown. */
#define ST_CURRENCIES_MAX 256

/* A window's sums, as read from the live minute buckets. */
typedef struct st_figures {
    /** The window (minutes) and its first and last minute (st_window_bounds). */
    int minutes;
    int64_t first_minute;
    int64_t last_minute;
    /** Each counter summed over the window. */
    int64_t sum[ST_NCOUNTERS];
    /** checkout_value: currency → minor units, ncurrencies entries, any order. */
    int ncurrencies;
    char currency[ST_CURRENCIES_MAX][CART_CURRENCY_LEN + 1];
    int64_t value[ST_CURRENCIES_MAX];
    /** The approximate count of distinct carts changed in the window (HyperLogLog). */
    int64_t active_carts;
    /** Per minute, first to last: units_added and checkouts (`minutes` entries each). */
    int64_t series_units[ST_WINDOW_MAX_MINUTES];
    int64_t series_checkouts[ST_WINDOW_MAX_MINUTES];
} st_figures;

/*
 * Renders the answer of /v1/stats for *f (docs/reference/api.md, Statistics): window, from, to
 * (the start of the first minute, and the end of the last), the counters, checkout_value (its
 * currencies sorted), active_carts, conversion (checkouts ÷ carts_created, null when none were
 * created), abandonment (expired ÷ (expired + checkouts), null when both are 0) and series. A
 * malloc'd NUL-terminated string the caller frees (length in *len if non-NULL), or NULL when out
 * of memory.
 */
char *st_figures_to_json(const st_figures *f, size_t *len);

/* One sku of the top-skus answer. */
typedef struct st_sku_units {
    char sku[CART_ID_MAX + 1];
    int64_t units;
} st_sku_units;

/* Sorts `v` (n entries) by units descending, ties by sku ascending (bytewise): the order of
 * /v1/stats/top-skus. */
void st_top_sort(st_sku_units *v, size_t n);

/* Renders the first min(n, limit) entries of a sorted `v` as [{"sku","units"}...]. A malloc'd
 * string (length in *len if non-NULL), or NULL when out of memory. */
char *st_top_to_json(const st_sku_units *v, size_t n, int limit, size_t *len);

#endif
