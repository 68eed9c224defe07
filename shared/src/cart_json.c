/*
 * cart_json.c: the cart's JSON form (docs/reference/api.md, The cart), written for responses and
 * the cache, and read back from the cache.
 *
 * The reader is the writer's strict inverse: exactly the keys cart_to_json writes, each with its
 * type and range, lines sorted and unique, item_count consistent. Whatever else is in a cache
 * entry (corruption, an older or newer format) makes it CART_ERR_INVALID, which callers treat as
 * a cache miss.
 */
#include "cartshard/cart.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cartshard/clock.h"
#include "cartshard/fmt.h"
#include "utf8.h"

#define UUID_LEN 36

const char *cart_state_name(cart_state s)
{
    switch (s) {
    case CART_ACTIVE:
        return "active";
    case CART_CHECKED_OUT:
        return "checked_out";
    case CART_DELETED:
        return "deleted";
    case CART_EXPIRED:
        return "expired";
    case CART_MERGING:
        return "merging";
    case CART_MERGED:
        return "merged";
    case CART_NONE:
        break;
    }
    return NULL;
}

/* Length of the NUL-terminated string in a fixed array, or `size` when it is not terminated. */
static size_t field_len(const char *s, size_t size)
{
    const char *nul = memchr(s, '\0', size);
    return nul ? (size_t)(nul - s) : size;
}

/* The writer builds the text directly: the worker renders a cart several times per event (the
 * reply, the change notice, the cache entry), and a jansson tree plus json_dumps cost about ten
 * times as much. The output is what json_dumps(JSON_COMPACT | JSON_PRESERVE_ORDER) would give. */

/* The output: a growing buffer, `oom` once an allocation failed. */
typedef cart_buf jout;

/* Room for `more` bytes and the closing NUL. */
static bool out_reserve(jout *o, size_t more)
{
    return cart_buf_reserve(o, more + 1);
}

static void out_raw(jout *o, const char *s, size_t n)
{
    if (!out_reserve(o, n))
        return;
    memcpy(o->buf + o->len, s, n);
    o->len += n;
}

#define OUT_LIT(o, lit) out_raw((o), (lit), sizeof(lit) - 1)

/* A JSON string, escaped as jansson escapes it. */
static void out_str(jout *o, const char *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";

    if (!out_reserve(o, n * 6 + 2))
        return;
    o->buf[o->len++] = '"';
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        char *p = o->buf + o->len;
        switch (ch) {
        case '"':
        case '\\':
            p[0] = '\\';
            p[1] = (char)ch;
            o->len += 2;
            continue;
        case '\b':
            memcpy(p, "\\b", 2);
            o->len += 2;
            continue;
        case '\f':
            memcpy(p, "\\f", 2);
            o->len += 2;
            continue;
        case '\n':
            memcpy(p, "\\n", 2);
            o->len += 2;
            continue;
        case '\r':
            memcpy(p, "\\r", 2);
            o->len += 2;
            continue;
        case '\t':
            memcpy(p, "\\t", 2);
            o->len += 2;
            continue;
        default:
            break;
        }
        if (ch < 0x20) {
            memcpy(p, "\\u00", 4);
            p[4] = hex[ch >> 4];
            p[5] = hex[ch & 15];
            o->len += 6;
        } else {
            o->buf[o->len++] = (char)ch;
        }
    }
    o->buf[o->len++] = '"';
}

/* A string held in a fixed array. */
static void out_field(jout *o, const char *s, size_t size)
{
    out_str(o, s, field_len(s, size));
}

static void out_int(jout *o, int64_t v)
{
    char buf[CART_INT_BUFSZ];

    out_raw(o, buf, cart_int_format(v, buf));
}

static void out_time(jout *o, int64_t ms)
{
    char buf[CART_TIME_BUFSZ];

    cart_time_format(ms, buf);
    out_str(o, buf, strlen(buf));
}

/* A line: sku, quantity, then the snapshot's members the line has, a priced one's line_total
 * after its currency. */
static void out_line(jout *o, const cart_item *it)
{
    const cart_snapshot *snap = &it->snap;

    OUT_LIT(o, "{\"sku\":");
    out_field(o, it->sku, sizeof it->sku);
    OUT_LIT(o, ",\"quantity\":");
    out_int(o, it->quantity);
    if (snap->has_name) {
        OUT_LIT(o, ",\"name\":");
        out_field(o, snap->name, sizeof snap->name);
    }
    if (snap->has_price) {
        OUT_LIT(o, ",\"unit_price\":");
        out_int(o, snap->unit_price);
        OUT_LIT(o, ",\"currency\":");
        out_field(o, snap->currency, sizeof snap->currency);
        OUT_LIT(o, ",\"line_total\":");
        out_int(o, cart_line_total(it));
    }
    if (snap->has_attributes) {
        /* Compact JSON already (cart_snapshot_read wrote it). */
        OUT_LIT(o, ",\"attributes\":");
        out_raw(o, snap->attributes, field_len(snap->attributes, sizeof snap->attributes));
    }
    OUT_LIT(o, "}");
}

/* The lines, item_count, currency and subtotal. */
static void out_items(jout *o, const cart *c)
{
    const char *currency = cart_currency(c);

    OUT_LIT(o, ",\"items\":[");
    for (size_t i = 0; i < c->nitems; i++) {
        if (i > 0)
            OUT_LIT(o, ",");
        out_line(o, &c->items[i]);
    }
    OUT_LIT(o, "],\"item_count\":");
    out_int(o, cart_item_count(c));
    OUT_LIT(o, ",\"currency\":");
    if (currency != NULL)
        out_str(o, currency, strlen(currency));
    else
        OUT_LIT(o, "null");
    OUT_LIT(o, ",\"subtotal\":");
    out_int(o, cart_subtotal(c));
}

/* Ends the text: returns it (length in *len) or NULL after an allocation failure. */
static char *out_finish(jout *o, size_t *len)
{
    if (!out_reserve(o, 0)) {
        free(o->buf);
        return NULL;
    }
    o->buf[o->len] = '\0';
    if (len != NULL)
        *len = o->len;
    return o->buf;
}

char *cart_to_json(const cart *c, size_t *len)
{
    const char *status = cart_state_name(c->state);
    jout o = {0};

    if (status == NULL)
        return NULL;
    OUT_LIT(&o, "{\"user_id\":");
    out_field(&o, c->user_id, sizeof c->user_id);
    OUT_LIT(&o, ",\"cart_id\":");
    out_field(&o, c->cart_id, sizeof c->cart_id);
    OUT_LIT(&o, ",\"status\":");
    out_str(&o, status, strlen(status));
    OUT_LIT(&o, ",\"version\":");
    out_int(&o, c->version);
    out_items(&o, c);
    OUT_LIT(&o, ",\"created_at\":");
    out_time(&o, c->created_at_ms);
    OUT_LIT(&o, ",\"updated_at\":");
    out_time(&o, c->updated_at_ms);
    OUT_LIT(&o, "}");
    return out_finish(&o, len);
}

char *cart_change_to_json(const cart *c, const char *event_id, const char *type, uint32_t partition,
                          int64_t applied_at_ms, const cart_change_what *what, size_t *len)
{
    const char *status = cart_state_name(c->state);
    jout o = {0};

    if (status == NULL)
        return NULL;
    OUT_LIT(&o, "{\"event_id\":");
    out_str(&o, event_id, strlen(event_id));
    OUT_LIT(&o, ",\"type\":");
    out_str(&o, type, strlen(type));
    OUT_LIT(&o, ",\"user_id\":");
    out_field(&o, c->user_id, sizeof c->user_id);
    OUT_LIT(&o, ",\"cart_id\":");
    out_field(&o, c->cart_id, sizeof c->cart_id);
    OUT_LIT(&o, ",\"version\":");
    out_int(&o, c->version);
    OUT_LIT(&o, ",\"status\":");
    out_str(&o, status, strlen(status));
    if (c->merged_into[0] != '\0') {
        OUT_LIT(&o, ",\"merged_into\":");
        out_field(&o, c->merged_into, sizeof c->merged_into);
    }
    OUT_LIT(&o, ",\"partition\":");
    out_int(&o, partition);
    out_items(&o, c);
    OUT_LIT(&o, ",\"applied_at\":");
    out_time(&o, applied_at_ms);
    if (what != NULL) {
        if (what->created)
            OUT_LIT(&o, ",\"cart_created\":true");
        else
            OUT_LIT(&o, ",\"cart_created\":false");
        if (what->has_line) {
            OUT_LIT(&o, ",\"line\":{\"sku\":");
            out_field(&o, what->sku, sizeof what->sku);
            OUT_LIT(&o, ",\"quantity_before\":");
            out_int(&o, what->quantity_before);
            OUT_LIT(&o, ",\"quantity_after\":");
            out_int(&o, what->quantity_after);
            OUT_LIT(&o, "}");
        }
    }
    OUT_LIT(&o, "}");
    return out_finish(&o, len);
}

static bool is_hex(char ch)
{
    return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F');
}

/* 8-4-4-4-12 hex digits, any version. */
static bool valid_uuid(const char *s, size_t len)
{
    if (len != UUID_LEN)
        return false;
    for (size_t i = 0; i < len; i++) {
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? s[i] != '-' : !is_hex(s[i]))
            return false;
    }
    return true;
}

/* A time cart_time_format writes back as it is: an offset can take an RFC 3339 text outside
 * years 0000..9999 ("0000-01-01T00:00:00+01:00"), which would come back clamped. */
static bool get_time(json_t *obj, const char *key, int64_t *ms)
{
    json_t *v = json_object_get(obj, key);
    int64_t t;

    if (!json_is_string(v) || cart_time_parse(json_string_value(v), json_string_length(v), &t) != CART_OK ||
        t < CART_TIME_MIN_MS || t > CART_TIME_MAX_MS)
        return false;
    *ms = t;
    return true;
}

cart_status cart_state_parse(const char *name, size_t len, cart_state *out)
{
    for (cart_state s = CART_ACTIVE; s <= CART_MERGED; s++) {
        const char *n = cart_state_name(s);
        if (len == strlen(n) && memcmp(name, n, len) == 0) {
            *out = s;
            return CART_OK;
        }
    }
    return CART_ERR_INVALID;
}

static bool get_state(json_t *obj, cart_state *st)
{
    json_t *v = json_object_get(obj, "status");

    return json_is_string(v) && cart_state_parse(json_string_value(v), json_string_length(v), st) == CART_OK;
}

/* True when every member of `obj` is named in `keys` (n of them), and it has the first `required`. */
static bool known_keys(json_t *obj, const char *const *keys, size_t n, size_t required)
{
    for (size_t i = 0; i < required; i++)
        if (json_object_get(obj, keys[i]) == NULL)
            return false;
    for (void *it = json_object_iter(obj); it != NULL; it = json_object_iter_next(obj, it)) {
        const char *key = json_object_iter_key(it);
        size_t i = 0;
        while (i < n && strcmp(keys[i], key) != 0)
            i++;
        if (i == n)
            return false;
    }
    return true;
}

/* True when the money of the lines is what the cart model keeps: every priced line in one
 * currency, each total and their sum at most CART_MONEY_MAX; and `currency` (currency_len bytes;
 * NULL for null) and `subtotal` are what follows from them. */
static bool totals_ok(const cart_item *items, size_t n, const char *currency, size_t currency_len, int64_t subtotal)
{
    const char *cur = NULL;
    int64_t sum = 0;

    for (size_t i = 0; i < n; i++) {
        const cart_item *it = &items[i];
        int64_t total = cart_line_total(it);
        if (!it->snap.has_price)
            continue;
        if ((cur != NULL && strcmp(cur, it->snap.currency) != 0) || total > CART_MONEY_MAX ||
            sum > CART_MONEY_MAX - total)
            return false;
        cur = it->snap.currency;
        sum += total;
    }
    if (cur == NULL)
        return currency == NULL && subtotal == 0;
    return currency != NULL && currency_len == CART_CURRENCY_LEN && memcmp(currency, cur, currency_len) == 0 &&
           subtotal == sum;
}

/* Reads the items into a new array *out of *n lines (NULL when there are none). */
static cart_status get_items(json_t *arr, cart_item **out, size_t *n, int64_t *count)
{
    static const char *const line_keys[] = {"sku",      "quantity",   "name",      "unit_price",
                                            "currency", "line_total", "attributes"};
    size_t len = json_array_size(arr);
    cart_item *items = NULL;
    int64_t sum = 0;
    cart_status st = CART_ERR_INVALID;

    if (len > 0 && (items = calloc(len, sizeof *items)) == NULL) {
        st = CART_ERR_NOMEM;
        goto out;
    }
    for (size_t i = 0; i < len; i++) {
        json_t *line = json_array_get(arr, i);
        if (!json_is_object(line) || !known_keys(line, line_keys, sizeof line_keys / sizeof line_keys[0], 2))
            goto out;
        json_t *sku = json_object_get(line, "sku");
        json_t *q = json_object_get(line, "quantity");
        if (!json_is_string(sku) || !cart_valid_id(json_string_value(sku), json_string_length(sku)))
            goto out;
        if (!json_is_integer(q) || json_integer_value(q) < 1 || json_integer_value(q) > INT32_MAX)
            goto out;
        memcpy(items[i].sku, json_string_value(sku), json_string_length(sku) + 1);
        items[i].quantity = (int32_t)json_integer_value(q);
        /* Strictly increasing: sorted, and no sku twice. */
        if (i > 0 && strcmp(items[i - 1].sku, items[i].sku) >= 0)
            goto out;
        if ((st = cart_snapshot_read(line, "", &items[i].snap, NULL, 0)) != CART_OK) {
            if (st != CART_ERR_NOMEM)
                st = CART_ERR_INVALID;
            goto out;
        }
        st = CART_ERR_INVALID;
        json_t *total = json_object_get(line, "line_total");
        if (items[i].snap.has_price ? !json_is_integer(total) || json_integer_value(total) != cart_line_total(&items[i])
                                    : total != NULL)
            goto out;
        sum += items[i].quantity;
    }
    *out = items;
    items = NULL;
    *n = len;
    *count = sum;
    st = CART_OK;
out:
    free(items);
    return st;
}

/* --- the fast reader: exactly the layout cart_to_json writes ---
 *
 * The gateway reads a cache entry on every cache hit, and jansson's tree cost about a quarter of
 * its CPU there. Entries are written by cart_to_json, so they are almost always in its exact
 * layout: no whitespace, keys in its order, strings without escapes. This reader accepts only
 * that layout and applies the same checks as the general reader below; anything else (or any
 * check failing) goes to the general reader, which has the last word. */

typedef struct scan {
    const char *p, *end;
} scan;

/* Consumes the literal `lit` (n bytes). */
static bool scan_lit(scan *s, const char *lit, size_t n)
{
    if ((size_t)(s->end - s->p) < n || memcmp(s->p, lit, n) != 0)
        return false;
    s->p += n;
    return true;
}

#define SCAN_LIT(s, lit) scan_lit((s), (lit), sizeof(lit) - 1)

/* A string without escapes or control characters: its bytes in [*v, *v + *n). */
static bool scan_str(scan *s, const char **v, size_t *n)
{
    const char *q;

    if (s->p >= s->end || *s->p != '"')
        return false;
    for (q = s->p + 1; q < s->end && *q != '"'; q++)
        if (*q == '\\' || (unsigned char)*q < 0x20)
            return false;
    if (q >= s->end)
        return false;
    *v = s->p + 1;
    *n = (size_t)(q - s->p - 1);
    s->p = q + 1;
    return true;
}

/* A JSON integer as cart_to_json writes it (no leading zeros) that fits int64. */
static bool scan_int(scan *s, int64_t *out)
{
    bool neg = s->p < s->end && *s->p == '-';
    const char *q = s->p + neg, *start = q;
    uint64_t v = 0, limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;

    while (q < s->end && *q >= '0' && *q <= '9') {
        unsigned d = (unsigned)(*q - '0');
        if (v > (limit - d) / 10)
            return false;
        v = v * 10 + d;
        q++;
    }
    if (q == start || (*start == '0' && q - start > 1))
        return false;
    *out = neg ? (int64_t)(0 - v) : (int64_t)v;
    s->p = q;
    return true;
}

static bool scan_time(scan *s, int64_t *ms)
{
    const char *v;
    size_t n;

    return scan_str(s, &v, &n) && cart_time_parse(v, n, ms) == CART_OK && *ms >= CART_TIME_MIN_MS &&
           *ms <= CART_TIME_MAX_MS;
}

/* Keys of 1..64 id characters, in strcmp's order: a < b. */
static bool key_less(const char *a, size_t an, const char *b, size_t bn)
{
    int cmp = memcmp(a, b, an < bn ? an : bn);

    return cmp < 0 || (cmp == 0 && an < bn);
}

/* An attributes object as cart_snapshot_read writes it, with values without escapes: its text
 * goes to out. */
static bool scan_attrs(scan *s, char out[CART_ATTRS_MAX + 1])
{
    const char *start = s->p, *k, *v, *prev = NULL;
    size_t kn, vn, prevn = 0, count = 0, len;

    if (!SCAN_LIT(s, "{"))
        return false;
    while (!SCAN_LIT(s, "}")) {
        if ((count > 0 && !SCAN_LIT(s, ",")) || !scan_str(s, &k, &kn) || !cart_valid_id(k, kn) || !SCAN_LIT(s, ":") ||
            !scan_str(s, &v, &vn) || vn > CART_ATTR_VALUE_MAX || !cart_utf8_text(v, vn))
            return false;
        if ((prev != NULL && !key_less(prev, prevn, k, kn)) || ++count > CART_ATTRS_COUNT)
            return false;
        prev = k;
        prevn = kn;
    }
    len = (size_t)(s->p - start);
    if (len > CART_ATTRS_MAX)
        return false;
    memcpy(out, start, len);
    out[len] = '\0';
    return true;
}

/* The members of a line after its quantity, into it->snap (zeroed by the caller). */
static bool scan_snapshot(scan *s, cart_item *it)
{
    cart_snapshot *snap = &it->snap;
    const char *v;
    size_t n;
    int64_t x;

    if (SCAN_LIT(s, ",\"name\":")) {
        if (!scan_str(s, &v, &n) || n > CART_NAME_MAX || !cart_utf8_text(v, n))
            return false;
        memcpy(snap->name, v, n);
        snap->has_name = true;
    }
    if (SCAN_LIT(s, ",\"unit_price\":")) {
        if (!scan_int(s, &x) || x < 0 || x > CART_PRICE_MAX || !SCAN_LIT(s, ",\"currency\":") || !scan_str(s, &v, &n) ||
            !cart_valid_currency(v, n))
            return false;
        snap->unit_price = x;
        memcpy(snap->currency, v, n);
        snap->has_price = true;
        if (!SCAN_LIT(s, ",\"line_total\":") || !scan_int(s, &x) || x != cart_line_total(it))
            return false;
    }
    if (SCAN_LIT(s, ",\"attributes\":")) {
        if (!scan_attrs(s, snap->attributes))
            return false;
        snap->has_attributes = true;
    }
    return true;
}

/* Fills *next and its lines (*items, *nitems) from the canonical layout; false for anything else. */
static bool read_canonical(const char *json, size_t len, cart *next, cart_item **items, size_t *nitems)
{
    scan s = {json, json + len};
    const char *v;
    size_t n, cap = 0;
    int64_t x, count = 0, sum = 0;

    *items = NULL;
    *nitems = 0;
    memset(next, 0, sizeof *next);
    if (!SCAN_LIT(&s, "{\"user_id\":") || !scan_str(&s, &v, &n) || !cart_valid_id(v, n))
        return false;
    memcpy(next->user_id, v, n);
    if (!SCAN_LIT(&s, ",\"cart_id\":") || !scan_str(&s, &v, &n) || !valid_uuid(v, n))
        return false;
    memcpy(next->cart_id, v, n);
    if (!SCAN_LIT(&s, ",\"status\":") || !scan_str(&s, &v, &n) || cart_state_parse(v, n, &next->state) != CART_OK)
        return false;
    if (!SCAN_LIT(&s, ",\"version\":") || !scan_int(&s, &next->version) || next->version < 1)
        return false;
    if (!SCAN_LIT(&s, ",\"items\":["))
        return false;
    while (!SCAN_LIT(&s, "]")) {
        cart_item *it;
        if ((*nitems > 0 && !SCAN_LIT(&s, ",")) || !SCAN_LIT(&s, "{\"sku\":") || !scan_str(&s, &v, &n) ||
            !cart_valid_id(v, n))
            return false;
        if (*nitems == cap) {
            size_t ncap = cap ? cap * 2 : 8;
            cart_item *ni = realloc(*items, ncap * sizeof *ni);
            if (ni == NULL)
                return false; /* the general reader reports the lack of memory */
            *items = ni;
            cap = ncap;
        }
        it = &(*items)[*nitems];
        memset(it, 0, sizeof *it);
        memcpy(it->sku, v, n);
        if (!SCAN_LIT(&s, ",\"quantity\":") || !scan_int(&s, &x) || x < 1 || x > INT32_MAX)
            return false;
        it->quantity = (int32_t)x;
        if (!scan_snapshot(&s, it) || !SCAN_LIT(&s, "}"))
            return false;
        if (*nitems > 0 && strcmp((*items)[*nitems - 1].sku, it->sku) >= 0)
            return false;
        sum += it->quantity;
        (*nitems)++;
    }
    if (next->state == CART_DELETED && *nitems > 0)
        return false;
    if (!SCAN_LIT(&s, ",\"item_count\":") || !scan_int(&s, &count) || count != sum)
        return false;
    v = NULL;
    n = 0;
    if (!SCAN_LIT(&s, ",\"currency\":") || (!SCAN_LIT(&s, "null") && !scan_str(&s, &v, &n)))
        return false;
    if (!SCAN_LIT(&s, ",\"subtotal\":") || !scan_int(&s, &x) || !totals_ok(*items, *nitems, v, n, x))
        return false;
    if (!SCAN_LIT(&s, ",\"created_at\":") || !scan_time(&s, &next->created_at_ms) ||
        !SCAN_LIT(&s, ",\"updated_at\":") || !scan_time(&s, &next->updated_at_ms) || !SCAN_LIT(&s, "}"))
        return false;
    return s.p == s.end;
}

cart_status cart_from_json(cart *c, const char *json, size_t len)
{
    static const char *const keys[] = {"user_id",    "cart_id",  "status",   "version",    "items",
                                       "item_count", "currency", "subtotal", "created_at", "updated_at"};
    json_error_t jerr;
    json_t *root = NULL;
    cart_item *items = NULL;
    size_t nitems = 0;
    int64_t count = 0;
    cart next;
    cart_status st = CART_ERR_INVALID;

    if (json == NULL)
        goto out;
    if (read_canonical(json, len, &next, &items, &nitems)) {
        /* A cache entry of another user is corrupt, not a hit. */
        if (c->user_id[0] != '\0' && strcmp(c->user_id, next.user_id) != 0)
            goto out;
        goto accept;
    }
    free(items);
    items = NULL;
    nitems = 0;
    root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        if (json_error_code(&jerr) == json_error_out_of_memory)
            st = CART_ERR_NOMEM;
        goto out;
    }
    if (!json_is_object(root) || !known_keys(root, keys, sizeof keys / sizeof keys[0], sizeof keys / sizeof keys[0]))
        goto out;

    memset(&next, 0, sizeof next);
    json_t *v = json_object_get(root, "user_id");
    if (!json_is_string(v) || !cart_valid_id(json_string_value(v), json_string_length(v)))
        goto out;
    memcpy(next.user_id, json_string_value(v), json_string_length(v) + 1);
    /* A cache entry of another user is corrupt, not a hit. */
    if (c->user_id[0] != '\0' && strcmp(c->user_id, next.user_id) != 0)
        goto out;

    v = json_object_get(root, "cart_id");
    if (!json_is_string(v) || !valid_uuid(json_string_value(v), json_string_length(v)))
        goto out;
    memcpy(next.cart_id, json_string_value(v), UUID_LEN + 1);

    v = json_object_get(root, "version");
    if (!get_state(root, &next.state) || !json_is_integer(v) || json_integer_value(v) < 1)
        goto out;
    next.version = (int64_t)json_integer_value(v);

    if (!get_time(root, "created_at", &next.created_at_ms) || !get_time(root, "updated_at", &next.updated_at_ms))
        goto out;

    v = json_object_get(root, "items");
    if (!json_is_array(v))
        goto out;
    if ((st = get_items(v, &items, &nitems, &count)) != CART_OK)
        goto out;
    st = CART_ERR_INVALID;
    /* A deleted cart has no lines. */
    if (next.state == CART_DELETED && nitems > 0)
        goto out;
    v = json_object_get(root, "item_count");
    if (!json_is_integer(v) || json_integer_value(v) != count)
        goto out;
    v = json_object_get(root, "currency");
    json_t *subtotal = json_object_get(root, "subtotal");
    if ((!json_is_null(v) && !json_is_string(v)) || !json_is_integer(subtotal) ||
        !totals_ok(items, nitems, json_is_string(v) ? json_string_value(v) : NULL,
                   json_is_string(v) ? json_string_length(v) : 0, (int64_t)json_integer_value(subtotal)))
        goto out;

accept:
    free(c->items);
    *c = next;
    c->items = items;
    c->nitems = nitems;
    c->cap = nitems;
    items = NULL;
    st = CART_OK;
out:
    free(items);
    json_decref(root);
    return st;
}

char *cart_change_msg_id(char buf[CART_CHANGE_MSG_ID_MAX + 1], const char *event_id)
{
    snprintf(buf, CART_CHANGE_MSG_ID_MAX + 1, "chg-%s", event_id);
    return buf;
}
