/*
 * notice.c: what a change notice counts for (stats_core.h, st_notice_decode).
 */
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "cartshard/clock.h"
#include "stats_core.h"

const char *const st_counter_names[ST_NCOUNTERS] = {
    "carts_created", "lines_added",   "units_added",   "lines_removed",
    "checkouts",     "carts_expired", "carts_deleted", "merges",
};

/* Floor division: the minute of a time before 1970 is negative too. */
static int64_t minute_of(int64_t ms)
{
    return ms >= 0 ? ms / 60000 : -((-ms + 59999) / 60000);
}

static cart_status invalid(char *err, size_t errlen, const char *what)
{
    if (err != NULL && errlen > 0)
        snprintf(err, errlen, "%s", what);
    return CART_ERR_INVALID;
}

/* A JSON integer in [min, max] under `key` of `obj`. */
static bool get_int(json_t *obj, const char *key, int64_t min, int64_t max, int64_t *out)
{
    json_t *v = json_object_get(obj, key);

    if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max)
        return false;
    *out = json_integer_value(v);
    return true;
}

/* Reads the optional "line" member: the sku and its quantities before and after. */
static cart_status read_line(json_t *doc, bool *has, char sku[CART_ID_MAX + 1], int64_t *before, int64_t *after,
                             char *err, size_t errlen)
{
    json_t *line = json_object_get(doc, "line");
    json_t *s;

    *has = false;
    if (line == NULL || json_is_null(line))
        return CART_OK;
    if (!json_is_object(line))
        return invalid(err, errlen, "line: expected an object");
    s = json_object_get(line, "sku");
    if (!json_is_string(s) || !cart_valid_id(json_string_value(s), json_string_length(s)))
        return invalid(err, errlen, "line.sku: expected 1 to 64 characters of [A-Za-z0-9._:-]");
    if (!get_int(line, "quantity_before", 0, INT32_MAX, before))
        return invalid(err, errlen, "line.quantity_before: expected an integer >= 0");
    if (!get_int(line, "quantity_after", 0, INT32_MAX, after))
        return invalid(err, errlen, "line.quantity_after: expected an integer >= 0");
    snprintf(sku, CART_ID_MAX + 1, "%s", json_string_value(s));
    *has = true;
    return CART_OK;
}

/* What the notice's type counts, into *n (the members are read and checked already). */
static void count_type(st_notice *n, const char *type, int created, bool has_line, int64_t before, int64_t after,
                       const char *line_sku)
{
    if (created > 0 || (created < 0 && strcmp(type, "cart.created") == 0))
        n->add[ST_CARTS_CREATED] = 1;
    if (strcmp(type, "cart.item_added") == 0) {
        n->add[ST_LINES_ADDED] = 1;
        if (has_line && after > before) {
            n->add[ST_UNITS_ADDED] = after - before;
            snprintf(n->sku, sizeof n->sku, "%s", line_sku);
        }
    } else if (strcmp(type, "cart.item_removed") == 0) {
        n->add[ST_LINES_REMOVED] = 1;
    } else if (strcmp(type, "cart.item_quantity_set") == 0) {
        if (has_line && before > 0 && after == 0)
            n->add[ST_LINES_REMOVED] = 1;
    } else if (strcmp(type, "cart.checked_out") == 0) {
        n->add[ST_CHECKOUTS] = 1;
    } else if (strcmp(type, "cart.expired") == 0) {
        n->add[ST_CARTS_EXPIRED] = 1;
    } else if (strcmp(type, "cart.deleted") == 0) {
        n->add[ST_CARTS_DELETED] = 1;
    } else if (strcmp(type, "cart.merged") == 0) {
        n->add[ST_MERGES] = 1;
    }
}

cart_status st_notice_decode(const char *json, size_t len, st_notice *out, char *err, size_t errlen)
{
    json_error_t jerr;
    json_t *doc = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
    json_t *v, *created_v;
    st_notice n;
    char line_sku[CART_ID_MAX + 1] = "";
    int64_t applied, before = 0, after = 0;
    int created = -1;
    bool has_line = false;
    cart_status st = CART_ERR_INVALID;
    const char *type;

    memset(&n, 0, sizeof n);
    if (doc == NULL) {
        st = invalid(err, errlen, "not JSON");
        goto out;
    }
    if (!json_is_object(doc)) {
        invalid(err, errlen, "not a JSON object");
        goto out;
    }
    v = json_object_get(doc, "event_id");
    if (!json_is_string(v) || !cart_valid_event_id(json_string_value(v), json_string_length(v))) {
        invalid(err, errlen, "event_id: expected 1 to 128 visible ASCII characters");
        goto out;
    }
    snprintf(n.event_id, sizeof n.event_id, "%s", json_string_value(v));
    v = json_object_get(doc, "type");
    if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > 64) {
        invalid(err, errlen, "type: expected a string of 1 to 64 characters");
        goto out;
    }
    type = json_string_value(v);
    v = json_object_get(doc, "cart_id");
    if (!json_is_string(v) || !cart_valid_event_id(json_string_value(v), json_string_length(v)) ||
        json_string_length(v) > ST_CART_ID_MAX) {
        invalid(err, errlen, "cart_id: expected 1 to 64 visible ASCII characters");
        goto out;
    }
    snprintf(n.cart_id, sizeof n.cart_id, "%s", json_string_value(v));
    v = json_object_get(doc, "applied_at");
    if (!json_is_string(v) || cart_time_parse(json_string_value(v), json_string_length(v), &applied) != CART_OK) {
        invalid(err, errlen, "applied_at: expected an RFC 3339 time");
        goto out;
    }
    n.minute = minute_of(applied);
    created_v = json_object_get(doc, "cart_created");
    if (created_v != NULL && !json_is_null(created_v)) {
        if (!json_is_boolean(created_v)) {
            invalid(err, errlen, "cart_created: expected true or false");
            goto out;
        }
        created = json_is_true(created_v) ? 1 : 0;
    }
    if (read_line(doc, &has_line, line_sku, &before, &after, err, errlen) != CART_OK)
        goto out;
    count_type(&n, type, created, has_line, before, after, line_sku);
    if (n.add[ST_CHECKOUTS] > 0) {
        v = json_object_get(doc, "currency");
        if (v != NULL && !json_is_null(v)) {
            if (!json_is_string(v) || !cart_valid_currency(json_string_value(v), json_string_length(v))) {
                invalid(err, errlen, "currency: expected an ISO 4217 code or null");
                goto out;
            }
            if (!get_int(doc, "subtotal", 0, INT64_MAX / 4, &n.value)) {
                invalid(err, errlen, "subtotal: expected an integer >= 0");
                goto out;
            }
            snprintf(n.currency, sizeof n.currency, "%s", json_string_value(v));
        }
    }
    *out = n;
    st = CART_OK;
out:
    json_decref(doc);
    return st;
}
