/*
 * cart_merge.c: a guest's cart merged into a user's (cart_merge.h, docs/internals/merge.md).
 *
 * cart_merge_lines builds the joined lines in a new array and checks the limits on it before it
 * touches the user's cart, so a refusal or an allocation failure leaves the cart as it was.
 */
#define _POSIX_C_SOURCE 200809L
#include "cartshard/cart_merge.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Fills a refusal into *out (nothing changed). */
static void refuse(cart_outcome *out, cart_status st, const char *detail)
{
    memset(out, 0, sizeof *out);
    out->status = st;
    out->http_status = cart_status_http(st);
    snprintf(out->detail, sizeof out->detail, "%s", detail);
}

/* Records a change of the cart's state (not of its lines) in *out. */
static void changed(cart *c, int64_t now_ms, int http_status, cart_outcome *out)
{
    memset(out, 0, sizeof *out);
    c->version++;
    c->updated_at_ms = now_ms;
    out->status = CART_OK;
    out->http_status = http_status;
    out->changed = true;
}

void cart_merge_close(cart *c, const cart_event *ev, int64_t now_ms, cart_outcome *out)
{
    if (strcmp(ev->merge.peer, c->user_id) == 0) {
        refuse(out, CART_ERR_INVALID, "a cart cannot be merged into itself");
        return;
    }
    if (c->state != CART_ACTIVE) {
        refuse(out, CART_ERR_NOT_FOUND, "no active cart");
        return;
    }
    if (c->version == INT64_MAX) {
        refuse(out, CART_ERR_CONFLICT, "version limit reached");
        return;
    }
    c->state = CART_MERGING;
    snprintf(c->merged_into, sizeof c->merged_into, "%s", ev->merge.peer);
    changed(c, now_ms, 202, out);
}

void cart_merge_settle(cart *c, const cart_event *ev, int64_t now_ms, cart_outcome *out)
{
    if (c->state != CART_MERGING || strcmp(c->cart_id, ev->merge.cart_id) != 0) {
        refuse(out, CART_ERR_CONFLICT, "no merge of this cart awaits settling");
        return;
    }
    if (c->version == INT64_MAX) {
        refuse(out, CART_ERR_CONFLICT, "version limit reached");
        return;
    }
    if (ev->merge.status == 200) {
        /* The worker does not read merged_into back from the shard: the settlement names the user. */
        c->state = CART_MERGED;
        snprintf(c->merged_into, sizeof c->merged_into, "%s", ev->merge.peer);
    } else {
        c->state = CART_ACTIVE;
        c->merged_into[0] = '\0';
    }
    changed(c, now_ms, ev->merge.status, out);
    snprintf(out->detail, sizeof out->detail, "%s", ev->merge.detail);
}

/* The joined line of a sku the user has (`mine`, or NULL) and the guest has (`theirs`, or NULL),
 * by the strategy; quantity 0: no line. A line taken from the guest is the guest's, whole, with
 * its snapshot; under sum and max a sku in both carts gets the snapshot members the guest's line
 * has over the user's (as a later add would); under keep the user's line stays as it was. */
static cart_item join_line(const cart_item *mine, const cart_item *theirs, cart_merge_strategy strategy)
{
    cart_item none, line;

    memset(&none, 0, sizeof none);
    if (theirs == NULL)
        return strategy == CART_MERGE_REPLACE ? none : *mine;
    if (mine == NULL || strategy == CART_MERGE_REPLACE)
        return *theirs;
    line = *mine;
    switch (strategy) {
    case CART_MERGE_SUM: {
        /* Both are at most INT32_MAX: the sum fits in 64 bits, and is capped to stay in 32. */
        int64_t q = (int64_t)mine->quantity + theirs->quantity;
        line.quantity = q > INT32_MAX ? INT32_MAX : (int32_t)q;
        cart_snapshot_merge(&line.snap, &theirs->snap);
        return line;
    }
    case CART_MERGE_MAX:
        if (theirs->quantity > line.quantity)
            line.quantity = theirs->quantity;
        cart_snapshot_merge(&line.snap, &theirs->snap);
        return line;
    case CART_MERGE_KEEP:
    case CART_MERGE_REPLACE:
        break;
    }
    return *mine;
}

/* True when two snapshots hold the same members with the same values. */
static bool same_snapshot(const cart_snapshot *a, const cart_snapshot *b)
{
    return a->has_name == b->has_name && strcmp(a->name, b->name) == 0 && a->has_price == b->has_price &&
           a->unit_price == b->unit_price && strcmp(a->currency, b->currency) == 0 &&
           a->has_attributes == b->has_attributes && strcmp(a->attributes, b->attributes) == 0;
}

/* True when the two line arrays are the same, line for line (sku, quantity and snapshot). */
static bool same_lines(const cart_item *a, size_t na, const cart_item *b, size_t nb)
{
    if (na != nb)
        return false;
    for (size_t i = 0; i < na; i++)
        if (strcmp(a[i].sku, b[i].sku) != 0 || a[i].quantity != b[i].quantity || !same_snapshot(&a[i].snap, &b[i].snap))
            return false;
    return true;
}

/* The money rules on the joined lines (cart.h): one currency for all priced lines, each line total
 * and the subtotal at most CART_MONEY_MAX. CART_OK, or CART_ERR_CURRENCY or CART_ERR_LIMIT with
 * the reason in msg (a currency refusal's starting with CART_CURRENCY_MISMATCH). */
static cart_status check_money(const cart_item *lines, size_t n, char *msg, size_t msglen)
{
    const char *currency = NULL;
    int64_t subtotal = 0;

    for (size_t i = 0; i < n; i++) {
        const cart_item *it = &lines[i];
        if (!it->snap.has_price)
            continue;
        if (currency == NULL)
            currency = it->snap.currency;
        else if (strcmp(currency, it->snap.currency) != 0) {
            snprintf(msg, msglen, CART_CURRENCY_MISMATCH ": the merged cart would mix %s and %s", currency,
                     it->snap.currency);
            return CART_ERR_CURRENCY;
        }
    }
    for (size_t i = 0; i < n; i++) {
        const cart_item *it = &lines[i];
        /* unit_price <= 10^11 and quantity <= INT32_MAX: tested by division, never multiplied over. */
        if (!it->snap.has_price || it->quantity <= 0)
            continue;
        if (it->snap.unit_price > CART_MONEY_MAX / it->quantity) {
            snprintf(msg, msglen, "a line total over the limit of 10^15 minor units: %.64s", it->sku);
            return CART_ERR_LIMIT;
        }
        if (subtotal > CART_MONEY_MAX - it->snap.unit_price * it->quantity) {
            snprintf(msg, msglen, "a subtotal over the limit of 10^15 minor units");
            return CART_ERR_LIMIT;
        }
        subtotal += it->snap.unit_price * it->quantity;
    }
    return CART_OK;
}

cart_status cart_merge_lines(cart *c, const cart *guest, cart_merge_strategy strategy, const cart_limits *lim,
                             int64_t now_ms, const char *new_cart_id, cart_outcome *out)
{
    bool active = c->state == CART_ACTIVE;
    size_t nmine = active ? c->nitems : 0, i = 0, j = 0, n = 0;
    cart_item *joined;
    cart_status money;
    char msg[sizeof out->detail];

    if (c->state == CART_MERGING) {
        snprintf(msg, sizeof msg, "the cart is being merged into %.64s",
                 c->merged_into[0] ? c->merged_into : "another user's cart");
        refuse(out, CART_ERR_CONFLICT, msg);
        return CART_OK;
    }
    if ((unsigned)strategy > CART_MERGE_KEEP) {
        refuse(out, CART_ERR_INVALID, "unknown merge strategy");
        return CART_OK;
    }
    if (c->version == INT64_MAX) {
        refuse(out, CART_ERR_CONFLICT, "version limit reached");
        return CART_OK;
    }
    joined = malloc((nmine + guest->nitems + 1) * sizeof *joined);
    if (joined == NULL)
        return CART_ERR_NOMEM;
    /* Both arrays are sorted by sku: one pass joins them in order. */
    while (i < nmine || j < guest->nitems) {
        int cmp = i == nmine ? 1 : j == guest->nitems ? -1 : strcmp(c->items[i].sku, guest->items[j].sku);
        const cart_item *mine = cmp <= 0 ? &c->items[i++] : NULL;
        const cart_item *theirs = cmp >= 0 ? &guest->items[j++] : NULL;
        cart_item line = join_line(mine, theirs, strategy);
        if (line.quantity == 0)
            continue;
        if (line.quantity > lim->max_quantity) {
            snprintf(msg, sizeof msg, "%.64s: merged quantity %d is over the limit %d", line.sku, (int)line.quantity,
                     (int)lim->max_quantity);
            goto refused;
        }
        joined[n++] = line;
    }
    if (n > lim->max_lines) {
        snprintf(msg, sizeof msg, "the merged cart would have %zu lines, over the limit %" PRIu32, n, lim->max_lines);
        goto refused;
    }
    if ((money = check_money(joined, n, msg, sizeof msg)) != CART_OK) {
        free(joined);
        refuse(out, money, msg);
        return CART_OK;
    }
    memset(out, 0, sizeof *out);
    out->status = CART_OK;
    out->http_status = 200;
    if (active && same_lines(c->items, c->nitems, joined, n)) {
        free(joined);
        return CART_OK;
    }
    if (!active) {
        snprintf(c->cart_id, sizeof c->cart_id, "%s", new_cart_id != NULL ? new_cart_id : "");
        c->state = CART_ACTIVE;
        c->created_at_ms = now_ms;
        c->merged_into[0] = '\0';
        out->created = true;
    }
    free(c->items);
    c->items = joined;
    c->nitems = n;
    c->cap = nmine + guest->nitems + 1;
    c->version++;
    c->updated_at_ms = now_ms;
    out->changed = true;
    return CART_OK;

refused:
    free(joined);
    refuse(out, CART_ERR_LIMIT, msg);
    return CART_OK;
}

/* 64-bit FNV-1a: a short, stable digest of an id too long to be copied whole. */
static uint64_t fnv1a64(const char *s)
{
    uint64_t h = UINT64_C(14695981039346656037);

    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= UINT64_C(1099511628211);
    }
    return h;
}

char *cart_merge_derived_id(char buf[CART_MERGE_ID_MAX + 1], const char *prefix, const char *merge_id)
{
    size_t plen = strnlen(prefix, 8), mlen = strnlen(merge_id, CART_EVENT_ID_MAX), at = plen;

    memcpy(buf, prefix, plen);
    if (plen + mlen > CART_MERGE_ID_MAX) {
        /* The digest tells apart long ids that share their first characters. */
        at += (size_t)snprintf(buf + at, 18, "%016" PRIx64 "-", fnv1a64(merge_id));
        mlen = CART_MERGE_ID_MAX - at;
    }
    memcpy(buf + at, merge_id, mlen);
    buf[at + mlen] = '\0';
    return buf;
}

/* Encodes `ev` and, when `lines` is not NULL, adds its lines as data.items. */
static cart_status encode_with_lines(const cart_event *ev, const cart *lines, char **out, size_t *len)
{
    char *text = NULL, *full = NULL;
    size_t tlen;
    json_t *root = NULL, *items = NULL;
    cart_status st = cart_event_encode(ev, &text, &tlen);

    if (st != CART_OK || lines == NULL)
        goto out;
    st = CART_ERR_NOMEM;
    if ((root = json_loadb(text, tlen, 0, NULL)) == NULL || (items = json_array()) == NULL)
        goto out;
    for (size_t i = 0; i < lines->nitems; i++) {
        json_t *item = json_pack("{s:s,s:i}", "sku", lines->items[i].sku, "quantity", lines->items[i].quantity);
        if (item == NULL || json_array_append_new(items, item) != 0 ||
            (st = cart_snapshot_write(item, &lines->items[i].snap)) != CART_OK)
            goto out;
        st = CART_ERR_NOMEM;
    }
    if (json_object_set_new(json_object_get(root, "data"), "items", items) != 0) {
        items = NULL; /* taken even on failure */
        goto out;
    }
    items = NULL;
    if ((full = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER)) == NULL)
        goto out;
    free(text);
    text = full;
    tlen = strlen(full);
    st = CART_OK;
out:
    json_decref(items);
    json_decref(root);
    if (st != CART_OK) {
        free(text);
        return st;
    }
    *out = text;
    if (len != NULL)
        *len = tlen;
    return CART_OK;
}

/* The lines_merged that follows `req` from the guest `guest`, without its lines or refusal. */
static void lines_event_of(cart_event *ev, const cart_event *req, const cart *guest, const char *reply_to,
                           int64_t now_ms)
{
    memset(ev, 0, sizeof *ev);
    cart_merge_derived_id(ev->event_id, CART_MERGE_LINES_PREFIX, req->event_id);
    ev->type = CART_EV_LINES_MERGED;
    snprintf(ev->user_id, sizeof ev->user_id, "%s", req->merge.peer);
    ev->occurred_at_ms = now_ms;
    snprintf(ev->trace, sizeof ev->trace, "%s", req->trace);
    snprintf(ev->request_fingerprint, sizeof ev->request_fingerprint, "%s", req->request_fingerprint);
    snprintf(ev->merge.peer, sizeof ev->merge.peer, "%s", guest->user_id);
    ev->merge.strategy = req->merge.strategy;
    snprintf(ev->merge.merge_id, sizeof ev->merge.merge_id, "%s", req->event_id);
    snprintf(ev->merge.cart_id, sizeof ev->merge.cart_id, "%s", guest->cart_id);
    snprintf(ev->merge.reply_to, sizeof ev->merge.reply_to, "%s", reply_to != NULL ? reply_to : "");
}

cart_status cart_merge_lines_event(const cart_event *req, const cart *closed, const char *reply_to, int64_t now_ms,
                                   char **out, size_t *len)
{
    cart_event ev;

    lines_event_of(&ev, req, closed, reply_to, now_ms);
    return encode_with_lines(&ev, closed, out, len);
}

cart_status cart_merge_refused_event(const cart_event *req, const cart *guest, int status, const char *detail,
                                     const char *reply_to, int64_t now_ms, char **out, size_t *len)
{
    cart_event ev;

    lines_event_of(&ev, req, guest, reply_to, now_ms);
    /* A cart_id that is not a whole UUID (no cart, or a cart never stored) is left out. */
    if (strlen(ev.merge.cart_id) != sizeof ev.merge.cart_id - 1)
        ev.merge.cart_id[0] = '\0';
    ev.merge.status = status;
    snprintf(ev.merge.detail, sizeof ev.merge.detail, "%s", detail != NULL ? detail : "");
    return encode_with_lines(&ev, NULL, out, len);
}

cart_status cart_merge_settled_event(const cart_event *lines, int status, const char *detail, const char *fingerprint,
                                     int64_t now_ms, char **out, size_t *len)
{
    cart_event ev;

    memset(&ev, 0, sizeof ev);
    cart_merge_derived_id(ev.event_id, CART_MERGE_SETTLED_PREFIX, lines->merge.merge_id);
    ev.type = CART_EV_MERGE_SETTLED;
    snprintf(ev.user_id, sizeof ev.user_id, "%s", lines->merge.peer);
    ev.occurred_at_ms = now_ms;
    snprintf(ev.trace, sizeof ev.trace, "%s", lines->trace);
    snprintf(ev.merge.peer, sizeof ev.merge.peer, "%s", lines->user_id);
    snprintf(ev.merge.merge_id, sizeof ev.merge.merge_id, "%s", lines->merge.merge_id);
    snprintf(ev.merge.cart_id, sizeof ev.merge.cart_id, "%s", lines->merge.cart_id);
    snprintf(ev.merge.reply_to, sizeof ev.merge.reply_to, "%s", lines->merge.reply_to);
    ev.merge.status = status;
    snprintf(ev.merge.detail, sizeof ev.merge.detail, "%s", detail != NULL ? detail : "");
    snprintf(ev.request_fingerprint, sizeof ev.request_fingerprint, "%s", fingerprint != NULL ? fingerprint : "");
    return encode_with_lines(&ev, NULL, out, len);
}

/* Writes "field: msg" into err. Returns CART_ERR_INVALID. */
static cart_status fail(char *err, size_t errlen, const char *msg)
{
    if (err != NULL && errlen > 0)
        snprintf(err, errlen, "data.items: %s", msg);
    return CART_ERR_INVALID;
}

cart_status cart_merge_lines_decode(const char *json, size_t len, cart *lines, char *err, size_t errlen)
{
    json_t *root = json_loadb(json != NULL ? json : "", len, JSON_REJECT_DUPLICATES, NULL);
    json_t *items = json_object_get(json_object_get(root, "data"), "items");
    cart_status st = CART_OK;

    if (!json_is_array(items)) {
        st = fail(err, errlen, "expected an array");
        goto out;
    }
    for (size_t i = 0; i < json_array_size(items) && st == CART_OK; i++) {
        json_t *item = json_array_get(items, i);
        json_t *sku = json_object_get(item, "sku");
        json_t *q = json_object_get(item, "quantity");
        cart_snapshot snap;
        char why[200];
        if (!json_is_string(sku) || !cart_valid_id(json_string_value(sku), json_string_length(sku)) ||
            !json_is_integer(q) || json_integer_value(q) < 1 || json_integer_value(q) > INT32_MAX)
            st = fail(err, errlen, "expected objects {\"sku\", \"quantity\"} with a valid sku and a quantity >= 1");
        else if (cart_find_line(lines, json_string_value(sku)) != NULL)
            st = fail(err, errlen, "a sku appears twice");
        else if ((st = cart_snapshot_read(item, "", &snap, why, sizeof why)) != CART_OK)
            st = st == CART_ERR_INVALID ? fail(err, errlen, why) : st;
        else if ((st = cart_put_line(lines, json_string_value(sku), (int32_t)json_integer_value(q))) == CART_OK)
            st = cart_put_snapshot(lines, json_string_value(sku), &snap);
    }
out:
    json_decref(root);
    return st;
}

const char *cart_merge_notice_type(const cart_event *ev, const cart *c)
{
    if (ev->type != CART_EV_MERGE_SETTLED)
        return cart_event_type_name(ev->type);
    return c->state == CART_MERGED ? "cart.merged" : "cart.merge_refused";
}
