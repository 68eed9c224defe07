/*
 * cart_json.c: the cart's JSON form (contract section 3), written for responses and the cache,
 * and read back from the cache.
 *
 * The reader is the writer's strict inverse: exactly the keys cart_to_json writes, each with its
 * type and range, lines sorted and unique, item_count consistent. Whatever else is in a cache
 * entry (corruption, an older or newer format) makes it CART_ERR_INVALID, which callers treat as
 * a cache miss.
 */
#include "cartshard/cart.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "cartshard/clock.h"

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

/* Adds a member; false when out of memory (json_object_set_new releases `v` then too). */
static bool put(json_t *obj, const char *key, json_t *v)
{
    return json_object_set_new(obj, key, v) == 0;
}

static bool put_time(json_t *obj, const char *key, int64_t ms)
{
    char buf[CART_TIME_BUFSZ];

    cart_time_format(ms, buf);
    return put(obj, key, json_string(buf));
}

/* The items array; NULL when out of memory. */
static json_t *items_to_json(const cart *c)
{
    json_t *items = json_array();

    if (items == NULL)
        return NULL;
    for (size_t i = 0; i < c->nitems; i++) {
        const cart_item *it = &c->items[i];
        json_t *line = json_object();
        if (line == NULL || !put(line, "sku", json_stringn(it->sku, field_len(it->sku, sizeof it->sku))) ||
            !put(line, "quantity", json_integer(it->quantity)) || json_array_append_new(items, line) != 0) {
            json_decref(line);
            json_decref(items);
            return NULL;
        }
    }
    return items;
}

char *cart_to_json(const cart *c, size_t *len)
{
    const char *status = cart_state_name(c->state);
    json_t *root = NULL;
    char *text = NULL;

    if (status == NULL)
        goto out;
    if ((root = json_object()) == NULL)
        goto out;
    if (!put(root, "user_id", json_stringn(c->user_id, field_len(c->user_id, sizeof c->user_id))) ||
        !put(root, "cart_id", json_stringn(c->cart_id, field_len(c->cart_id, sizeof c->cart_id))) ||
        !put(root, "status", json_string(status)) || !put(root, "version", json_integer(c->version)) ||
        !put(root, "items", items_to_json(c)) || !put(root, "item_count", json_integer(cart_item_count(c))) ||
        !put_time(root, "created_at", c->created_at_ms) || !put_time(root, "updated_at", c->updated_at_ms))
        goto out;
    text = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (text != NULL && len != NULL)
        *len = strlen(text);
out:
    json_decref(root);
    return text;
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

/* True when every member of `obj` is named in `keys` and there are `n` of them: then all the
 * keys are present too, as object keys are unique. */
static bool only_keys(json_t *obj, const char *const *keys, size_t n)
{
    if (json_object_size(obj) != n)
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
    for (cart_state s = CART_ACTIVE; s <= CART_EXPIRED; s++) {
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

/* Reads the items into a new array *out of *n lines (NULL when there are none). */
static cart_status get_items(json_t *arr, cart_item **out, size_t *n, int64_t *count)
{
    static const char *const line_keys[] = {"sku", "quantity"};
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
        if (!json_is_object(line) || !only_keys(line, line_keys, 2))
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

cart_status cart_from_json(cart *c, const char *json, size_t len)
{
    static const char *const keys[] = {"user_id", "cart_id",    "status",     "version",
                                       "items",   "item_count", "created_at", "updated_at"};
    json_error_t jerr;
    json_t *root = NULL;
    cart_item *items = NULL;
    size_t nitems = 0;
    int64_t count = 0;
    cart next;
    cart_status st = CART_ERR_INVALID;

    if (json == NULL)
        goto out;
    root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        if (json_error_code(&jerr) == json_error_out_of_memory)
            st = CART_ERR_NOMEM;
        goto out;
    }
    if (!json_is_object(root) || !only_keys(root, keys, sizeof keys / sizeof keys[0]))
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
