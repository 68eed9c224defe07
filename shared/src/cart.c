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

/* Sets a line when there is room for it (the caller reserved it); 0 removes. */
static void set_line(cart *c, const char *sku, int32_t quantity)
{
    bool found;
    size_t i = find_index(c, sku, &found);

    if (found) {
        if (quantity > 0) {
            c->items[i].quantity = quantity;
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
    set_line(c, sku, quantity);
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

/* Applies a line change, creating the cart first when `create` is set (the caller reserved the
 * room). Records the change in *out. */
static void change_line(cart *c, const char *sku, int32_t quantity, bool create, int64_t now_ms,
                        const char *new_cart_id, cart_outcome *out)
{
    if (create) {
        snprintf(c->cart_id, sizeof c->cart_id, "%s", new_cart_id != NULL ? new_cart_id : "");
        c->state = CART_ACTIVE;
        c->nitems = 0;
        c->created_at_ms = now_ms;
        out->created = true;
    }
    set_line(c, sku, quantity);
    c->version++;
    c->updated_at_ms = now_ms;
    out->changed = true;
    out->line_changed = true;
    snprintf(out->sku, sizeof out->sku, "%s", sku);
    out->line_quantity = quantity;
}

/* item_added and item_quantity_set: the resulting line quantity is `target`. */
static cart_status apply_line(cart *c, const cart_event *ev, const cart_limits *lim, int64_t now_ms,
                              const char *new_cart_id, cart_outcome *out)
{
    bool active = c->state == CART_ACTIVE;
    const cart_item *line = active ? cart_find_line(c, ev->sku) : NULL;
    int32_t have = line ? line->quantity : 0;
    int64_t target;
    char msg[sizeof out->detail];

    if (ev->type == CART_EV_ITEM_ADDED) {
        if (ev->quantity < 1 || ev->quantity > lim->max_quantity) {
            snprintf(msg, sizeof msg, "quantity %lld is not in 1..%d", (long long)ev->quantity, (int)lim->max_quantity);
            return refuse(out, CART_ERR_LIMIT, msg);
        }
        /* Both terms are at most INT32_MAX: no overflow in 64 bits. */
        target = have + ev->quantity;
        if (target > lim->max_quantity) {
            snprintf(msg, sizeof msg, "quantity %lld is over the limit %d", (long long)target, (int)lim->max_quantity);
            return refuse(out, CART_ERR_LIMIT, msg);
        }
    } else {
        if (ev->quantity < 0 || ev->quantity > lim->max_quantity) {
            snprintf(msg, sizeof msg, "quantity %lld is not in 0..%d", (long long)ev->quantity, (int)lim->max_quantity);
            return refuse(out, CART_ERR_LIMIT, msg);
        }
        target = ev->quantity;
        if (!active && target == 0)
            return refuse(out, CART_ERR_NOT_FOUND, "no active cart");
        if (target == have) {
            out->http_status = 200;
            return CART_OK;
        }
    }

    /* From here the line changes: a new line needs room under max_lines. */
    size_t lines = active ? c->nitems : 0;
    if (line == NULL && lines >= lim->max_lines) {
        snprintf(msg, sizeof msg, "the cart has %zu lines, the limit", lines);
        return refuse(out, CART_ERR_LIMIT, msg);
    }
    if (c->version == INT64_MAX)
        return refuse(out, CART_ERR_CONFLICT, "version limit reached");
    if (line == NULL && reserve(c, lines + 1) != CART_OK)
        return CART_ERR_NOMEM;
    change_line(c, ev->sku, (int32_t)target, !active, now_ms, new_cart_id, out);
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

    if (ev->type < CART_EV_CREATED || ev->type > CART_EV_CHECKED_OUT)
        return refuse(out, CART_ERR_INVALID, "unknown event type");
    if (is_item_event(ev->type) && !cart_valid_id(ev->sku, bounded_len(ev->sku, sizeof ev->sku)))
        return refuse(out, CART_ERR_INVALID, "invalid sku");

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

    switch (ev->type) {
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
        change_line(c, ev->sku, 0, false, now_ms, new_cart_id, out);
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
