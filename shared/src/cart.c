/*
 * cart.c: the cart model and the business rules of applying an event (see cart.h).
 *
 * cart_apply decides everything before it touches the cart: it checks the preconditions and
 * limits, reserves the memory a new line needs, and only then mutates. So a refusal or an
 * allocation failure leaves the cart exactly as it was.
 */
#include "cartshard/cart.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cartshard/cart_merge.h"

#define INITIAL_CAP 8

/* strlen that looks at no more than `max` bytes. */
static size_t bounded_len(const char *s, size_t max)
{
    size_t n = 0;

    while (n < max && s[n] != '\0')
        n++;
    return n;
}

void cart_init(cart *c, const char *user_id)
{
    memset(c, 0, sizeof *c);
    if (user_id != NULL) {
        size_t len = bounded_len(user_id, CART_ID_MAX);
        memcpy(c->user_id, user_id, len);
        c->user_id[len] = '\0';
    }
    c->state = CART_NONE;
}

void cart_cleanup(cart *c)
{
    free(c->items);
    c->items = NULL;
    c->nitems = 0;
    c->cap = 0;
}

/* Binary search: the index of `sku`, or where it would be inserted (with *found false). */
static size_t find_index(const cart *c, const char *sku, bool *found)
{
    size_t lo = 0, hi = c->nitems;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int cmp = strcmp(c->items[mid].sku, sku);
        if (cmp == 0) {
            *found = true;
            return mid;
        }
        if (cmp < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = false;
    return lo;
}

/* Makes room for `want` lines. The lines themselves do not change, so a failure is harmless. */
static cart_status reserve(cart *c, size_t want)
{
    if (want <= c->cap)
        return CART_OK;
    size_t cap = c->cap ? c->cap : INITIAL_CAP;
    while (cap < want) {
        if (cap > SIZE_MAX / 2 / sizeof(cart_item))
            return CART_ERR_NOMEM;
        cap *= 2;
    }
    cart_item *items = realloc(c->items, cap * sizeof(cart_item));
    if (items == NULL)
        return CART_ERR_NOMEM;
    c->items = items;
    c->cap = cap;
    return CART_OK;
}

/* Sets a line when there is room for it (the caller reserved it); 0 removes. The line's snapshot
 * becomes *snap, or stays (none for a new line) when snap is NULL. */
static void set_line(cart *c, const char *sku, int32_t quantity, const cart_snapshot *snap)
{
    bool found;
    size_t i = find_index(c, sku, &found);

    if (found) {
        if (quantity > 0) {
            c->items[i].quantity = quantity;
            if (snap != NULL)
                c->items[i].snap = *snap;
        } else {
            memmove(&c->items[i], &c->items[i + 1], (c->nitems - i - 1) * sizeof(cart_item));
            c->nitems--;
        }
        return;
    }
    if (quantity <= 0)
        return;
    memmove(&c->items[i + 1], &c->items[i], (c->nitems - i) * sizeof(cart_item));
    memset(&c->items[i], 0, sizeof(cart_item));
    strcpy(c->items[i].sku, sku);
    c->items[i].quantity = quantity;
    if (snap != NULL)
        c->items[i].snap = *snap;
    c->nitems++;
}

cart_status cart_put_line(cart *c, const char *sku, int32_t quantity)
{
    if (sku == NULL || sku[0] == '\0' || bounded_len(sku, CART_ID_MAX + 1) > CART_ID_MAX || quantity < 0)
        return CART_ERR_INVALID;
    if (quantity > 0 && cart_find_line(c, sku) == NULL) {
        if (c->nitems == SIZE_MAX || reserve(c, c->nitems + 1) != CART_OK)
            return CART_ERR_NOMEM;
    }
    set_line(c, sku, quantity, NULL);
    return CART_OK;
}

cart_status cart_put_snapshot(cart *c, const char *sku, const cart_snapshot *snap)
{
    bool found;
    size_t i;

    if (sku == NULL || c->nitems == 0)
        return CART_ERR_NOT_FOUND;
    i = find_index(c, sku, &found);
    if (!found)
        return CART_ERR_NOT_FOUND;
    if (!cart_snapshot_valid(snap))
        return CART_ERR_INVALID;
    c->items[i].snap = *snap;
    return CART_OK;
}

const cart_item *cart_find_line(const cart *c, const char *sku)
{
    bool found;
    size_t i;

    if (sku == NULL || c->nitems == 0)
        return NULL;
    i = find_index(c, sku, &found);
    return found ? &c->items[i] : NULL;
}

int64_t cart_item_count(const cart *c)
{
    int64_t n = 0;

    for (size_t i = 0; i < c->nitems; i++)
        n += c->items[i].quantity;
    return n;
}

int64_t cart_line_total(const cart_item *line)
{
    int64_t price = line->snap.has_price ? line->snap.unit_price : 0;

    if (price <= 0 || line->quantity <= 0)
        return 0;
    return price > INT64_MAX / line->quantity ? INT64_MAX : price * line->quantity;
}

/* a + b for a, b >= 0, INT64_MAX when that would overflow. */
static int64_t add_capped(int64_t a, int64_t b)
{
    return a > INT64_MAX - b ? INT64_MAX : a + b;
}

int64_t cart_subtotal(const cart *c)
{
    int64_t sum = 0;

    for (size_t i = 0; i < c->nitems; i++)
        sum = add_capped(sum, cart_line_total(&c->items[i]));
    return sum;
}

const char *cart_currency(const cart *c)
{
    for (size_t i = 0; i < c->nitems; i++)
        if (c->items[i].snap.has_price)
            return c->items[i].snap.currency;
    return NULL;
}

void cart_snapshot_merge(cart_snapshot *line, const cart_snapshot *given)
{
    if (given->has_name) {
        line->has_name = true;
        memcpy(line->name, given->name, sizeof line->name);
    }
    if (given->has_price) {
        line->has_price = true;
        line->unit_price = given->unit_price;
        memcpy(line->currency, given->currency, sizeof line->currency);
    }
    if (given->has_attributes) {
        line->has_attributes = true;
        memcpy(line->attributes, given->attributes, sizeof line->attributes);
    }
}

/* True when two snapshots hold the same members with the same values. */
static bool same_snapshot(const cart_snapshot *a, const cart_snapshot *b)
{
    return a->has_name == b->has_name && strcmp(a->name, b->name) == 0 && a->has_price == b->has_price &&
           a->unit_price == b->unit_price && strcmp(a->currency, b->currency) == 0 &&
           a->has_attributes == b->has_attributes && strcmp(a->attributes, b->attributes) == 0;
}

static bool is_item_event(cart_event_type t)
{
    return t == CART_EV_ITEM_ADDED || t == CART_EV_ITEM_QUANTITY_SET || t == CART_EV_ITEM_REMOVED;
}

/* Fills a refusal into *out and returns CART_OK, the value cart_apply returns for it. */
static cart_status refuse(cart_outcome *out, cart_status st, const char *detail)
{
    out->status = st;
    out->http_status = cart_status_http(st);
    out->changed = false;
    out->created = false;
    out->sku[0] = '\0';
    out->line_quantity = 0;
    out->line_changed = false;
    snprintf(out->detail, sizeof out->detail, "%s", detail);
    return CART_OK;
}

/* Applies a line change (its snapshot becomes *snap unless snap is NULL), creating the cart first
 * when `create` is set (the caller reserved the room). Records the change in *out. */
static void change_line(cart *c, const char *sku, int32_t quantity, const cart_snapshot *snap, bool create,
                        int64_t now_ms, const char *new_cart_id, cart_outcome *out)
{
    if (create) {
        snprintf(c->cart_id, sizeof c->cart_id, "%s", new_cart_id != NULL ? new_cart_id : "");
        c->state = CART_ACTIVE;
        c->nitems = 0;
        c->created_at_ms = now_ms;
        out->created = true;
    }
    set_line(c, sku, quantity, snap);
    c->version++;
    c->updated_at_ms = now_ms;
    out->changed = true;
    out->line_changed = true;
    snprintf(out->sku, sizeof out->sku, "%s", sku);
    out->line_quantity = quantity;
}

/*
 * The money rules for the line of `sku` about to hold `quantity` with snapshot *snap, among the
 * active cart's other lines (none for a cart about to start): a priced line's currency is that of
 * the other priced lines, and neither its total nor the subtotal goes over CART_MONEY_MAX. CART_OK,
 * or the refusal's status with its reason in msg.
 */
static cart_status check_money(const cart *c, bool active, const char *sku, int64_t quantity, const cart_snapshot *snap,
                               char *msg, size_t msglen)
{
    int64_t total, others = 0;

    if (!snap->has_price)
        return CART_OK; /* the line adds nothing, and the others were within the limits */
    for (size_t i = 0; active && i < c->nitems; i++) {
        const cart_item *it = &c->items[i];
        if (!it->snap.has_price || strcmp(it->sku, sku) == 0)
            continue;
        if (strcmp(it->snap.currency, snap->currency) != 0) {
            snprintf(msg, msglen, CART_CURRENCY_MISMATCH ": the cart's currency is %s, not %s", it->snap.currency,
                     snap->currency);
            return CART_ERR_CURRENCY;
        }
        others = add_capped(others, cart_line_total(it));
    }
    /* unit_price <= 10^11 and quantity <= INT32_MAX: tested by division, never multiplied over. */
    if (quantity > 0 && snap->unit_price > CART_MONEY_MAX / quantity) {
        snprintf(msg, msglen, "a line total over the limit of 10^15 minor units: %s", sku);
        return CART_ERR_LIMIT;
    }
    total = snap->unit_price * quantity;
    if (others > CART_MONEY_MAX - total) {
        snprintf(msg, msglen, "a subtotal over the limit of 10^15 minor units");
        return CART_ERR_LIMIT;
    }
    return CART_OK;
}

/* item_added and item_quantity_set: the resulting line quantity is `target`, and the snapshot
 * members the event has replace the line's. */
static cart_status apply_line(cart *c, const cart_event *ev, const cart_limits *lim, int64_t now_ms,
                              const char *new_cart_id, cart_outcome *out)
{
    bool active = c->state == CART_ACTIVE;
    const cart_item *line = active ? cart_find_line(c, ev->sku) : NULL;
    int32_t have = line ? line->quantity : 0;
    int64_t target;
    cart_snapshot snap;
    cart_status st;
    char msg[sizeof out->detail];

    if (ev->type == CART_EV_ITEM_ADDED) {
        /* Both terms are at most INT32_MAX (the quantity was checked): no overflow in 64 bits. */
        target = have + ev->quantity;
        if (target > lim->max_quantity) {
            snprintf(msg, sizeof msg, "quantity %lld is over the limit %d", (long long)target, (int)lim->max_quantity);
            return refuse(out, CART_ERR_LIMIT, msg);
        }
    } else {
        target = ev->quantity;
        if (!active && target == 0)
            return refuse(out, CART_ERR_NOT_FOUND, "no active cart");
    }
    if (line != NULL) {
        snap = line->snap;
    } else {
        memset(&snap, 0, sizeof snap);
    }
    cart_snapshot_merge(&snap, &ev->snap);
    if (target == have && (target == 0 || same_snapshot(&snap, &line->snap))) {
        out->http_status = 200;
        return CART_OK;
    }

    /* From here the line changes: a new line needs room under max_lines, a kept one the money rules. */
    size_t lines = active ? c->nitems : 0;
    if (line == NULL && lines >= lim->max_lines) {
        snprintf(msg, sizeof msg, "the cart has %zu lines, the limit", lines);
        return refuse(out, CART_ERR_LIMIT, msg);
    }
    if (target > 0 && (st = check_money(c, active, ev->sku, target, &snap, msg, sizeof msg)) != CART_OK)
        return refuse(out, st, msg);
    if (c->version == INT64_MAX)
        return refuse(out, CART_ERR_CONFLICT, "version limit reached");
    if (line == NULL && reserve(c, lines + 1) != CART_OK)
        return CART_ERR_NOMEM;
    change_line(c, ev->sku, (int32_t)target, &snap, !active, now_ms, new_cart_id, out);
    out->http_status = 200;
    return CART_OK;
}

/* True if `version` is one of the event's expected_versions. */
static bool version_expected(const cart_event *ev, int64_t version)
{
    for (int i = 0; i < ev->n_expected_versions; i++)
        if (ev->expected_versions[i] == version)
            return true;
    return false;
}

cart_status cart_apply(cart *c, const cart_event *ev, const cart_limits *lim, int64_t now_ms, const char *new_cart_id,
                       cart_outcome *out)
{
    bool active = c->state == CART_ACTIVE;
    char msg[sizeof out->detail];

    memset(out, 0, sizeof *out);
    out->status = CART_OK;

    if (ev->type < CART_EV_CREATED || ev->type > CART_EV_MERGE_SETTLED)
        return refuse(out, CART_ERR_INVALID, "unknown event type");
    if (is_item_event(ev->type) && !cart_valid_id(ev->sku, bounded_len(ev->sku, sizeof ev->sku)))
        return refuse(out, CART_ERR_INVALID, "invalid sku");
    if (cart_event_check_quantity(ev, lim->max_quantity, msg, sizeof msg) != CART_OK)
        return refuse(out, CART_ERR_INVALID, msg);
    if (!cart_snapshot_valid(&ev->snap))
        return refuse(out, CART_ERR_INVALID, "invalid line snapshot");

    if (ev->has_expected_version || ev->n_expected_versions > 0 || ev->expected_active) {
        if (!active)
            return refuse(out, CART_ERR_PRECONDITION, "no active cart");
        if (ev->has_expected_version && ev->expected_version != c->version) {
            snprintf(msg, sizeof msg, "the cart's version is %lld, not %lld", (long long)c->version,
                     (long long)ev->expected_version);
            return refuse(out, CART_ERR_PRECONDITION, msg);
        }
        if (ev->n_expected_versions > 0 && !version_expected(ev, c->version)) {
            snprintf(msg, sizeof msg, "the cart's version is %lld, none of the %d expected", (long long)c->version,
                     ev->n_expected_versions);
            return refuse(out, CART_ERR_PRECONDITION, msg);
        }
    }

    if (c->state == CART_MERGING &&
        (ev->type == CART_EV_CREATED || ev->type == CART_EV_ITEM_ADDED || ev->type == CART_EV_ITEM_QUANTITY_SET)) {
        snprintf(msg, sizeof msg, "the cart is being merged into %.64s; retry once it is settled",
                 c->merged_into[0] ? c->merged_into : "another user's cart");
        return refuse(out, CART_ERR_CONFLICT, msg);
    }

    switch (ev->type) {
    case CART_EV_MERGE_REQUESTED:
        cart_merge_close(c, ev, now_ms, out);
        return CART_OK;
    case CART_EV_MERGE_SETTLED:
        cart_merge_settle(c, ev, now_ms, out);
        return CART_OK;
    case CART_EV_LINES_MERGED:
        return refuse(out, CART_ERR_INVALID, "cart.lines_merged is applied with its lines (cart_merge_lines)");
    case CART_EV_CREATED:
        if (active) {
            out->http_status = 200;
            return CART_OK;
        }
        if (c->version == INT64_MAX)
            return refuse(out, CART_ERR_CONFLICT, "version limit reached");
        snprintf(c->cart_id, sizeof c->cart_id, "%s", new_cart_id != NULL ? new_cart_id : "");
        c->state = CART_ACTIVE;
        c->nitems = 0;
        c->version++;
        c->created_at_ms = now_ms;
        c->updated_at_ms = now_ms;
        out->changed = true;
        out->created = true;
        out->http_status = 201;
        return CART_OK;

    case CART_EV_ITEM_ADDED:
    case CART_EV_ITEM_QUANTITY_SET:
        return apply_line(c, ev, lim, now_ms, new_cart_id, out);

    case CART_EV_ITEM_REMOVED:
        if (!active)
            return refuse(out, CART_ERR_NOT_FOUND, "no active cart");
        out->http_status = 200;
        if (cart_find_line(c, ev->sku) == NULL)
            return CART_OK;
        if (c->version == INT64_MAX)
            return refuse(out, CART_ERR_CONFLICT, "version limit reached");
        change_line(c, ev->sku, 0, NULL, false, now_ms, new_cart_id, out);
        return CART_OK;

    case CART_EV_DELETED:
        out->http_status = 204;
        if (!active)
            return CART_OK;
        if (c->version == INT64_MAX)
            return refuse(out, CART_ERR_CONFLICT, "version limit reached");
        c->state = CART_DELETED;
        c->nitems = 0;
        c->version++;
        c->updated_at_ms = now_ms;
        out->changed = true;
        return CART_OK;

    case CART_EV_CHECKED_OUT:
        if (!active)
            return refuse(out, CART_ERR_CONFLICT, "no active cart");
        if (c->nitems == 0)
            return refuse(out, CART_ERR_CONFLICT, "cart is empty");
        if (c->version == INT64_MAX)
            return refuse(out, CART_ERR_CONFLICT, "version limit reached");
        /* The lines stay: the change announces the final items. */
        c->state = CART_CHECKED_OUT;
        c->version++;
        c->updated_at_ms = now_ms;
        out->changed = true;
        out->http_status = 200;
        return CART_OK;
    }
    return refuse(out, CART_ERR_INVALID, "unknown event type");
}

void cart_expire(cart *c, int64_t now_ms, int64_t idle_ttl_ms, cart_outcome *out)
{
    memset(out, 0, sizeof *out);
    out->status = CART_OK;
    if (c->state != CART_ACTIVE) {
        refuse(out, CART_ERR_NOT_FOUND, "no active cart");
        return;
    }
    /* now_ms - idle_ttl_ms could overflow for absurd inputs; compare without subtracting. */
    if (idle_ttl_ms < 0 || c->updated_at_ms > now_ms || now_ms - c->updated_at_ms < idle_ttl_ms) {
        refuse(out, CART_ERR_CONFLICT, "the cart is not idle long enough");
        return;
    }
    if (c->version == INT64_MAX) {
        refuse(out, CART_ERR_CONFLICT, "version limit reached");
        return;
    }
    c->state = CART_EXPIRED;
    c->version++;
    c->updated_at_ms = now_ms;
    out->changed = true;
    out->http_status = 200;
}
