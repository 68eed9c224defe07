/*
 * event.c: the event envelope codec (docs/reference/events.md, The event envelope).
 *
 * The decoder reads into a local cart_event and copies it out only when every field checked out,
 * so *ev is never half-written. Every reason it gives starts with the name of the field at fault
 * and holds printable ASCII only: it travels in the Cart-Error header of a dead letter.
 */
#include "cartshard/event.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "cartshard/clock.h"
#include "utf8.h"

/* How much of an offending value an error message quotes. */
#define QUOTE_MAX 64

static const char *const type_names[] = {
    [CART_EV_CREATED] = "cart.created",
    [CART_EV_ITEM_ADDED] = "cart.item_added",
    [CART_EV_ITEM_QUANTITY_SET] = "cart.item_quantity_set",
    [CART_EV_ITEM_REMOVED] = "cart.item_removed",
    [CART_EV_DELETED] = "cart.deleted",
    [CART_EV_CHECKED_OUT] = "cart.checked_out",
    [CART_EV_MERGE_REQUESTED] = "cart.merge_requested",
    [CART_EV_LINES_MERGED] = "cart.lines_merged",
    [CART_EV_MERGE_SETTLED] = "cart.merge_settled",
};

static const char *const strategy_names[] = {
    [CART_MERGE_SUM] = "sum",
    [CART_MERGE_MAX] = "max",
    [CART_MERGE_REPLACE] = "replace",
    [CART_MERGE_KEEP] = "keep",
};

#define NSTRATEGIES (sizeof strategy_names / sizeof strategy_names[0])

#define NTYPES (sizeof type_names / sizeof type_names[0])

static const char ID_CHARS_MSG[] = "expected 1-64 characters of [A-Za-z0-9._:-]";
static const char EVENT_ID_MSG[] = "expected 1-128 visible ASCII characters";
static const char TRACE_MSG[] = "expected at most 127 visible ASCII characters";
static const char FINGERPRINT_MSG[] = "expected at most 64 visible ASCII characters";
static const char EXPECTED_VERSIONS_MSG[] = "expected an array of 1 to 16 integers >= 0";
static const char NAME_MSG[] = "expected a string of at most 200 bytes of UTF-8";
static const char PRICE_MSG[] = "expected an integer from 0 to 100000000000";
static const char CURRENCY_MSG[] = "expected an ISO 4217 code (three upper-case letters)";
static const char ATTRS_MSG[] = "expected an object of at most 16 members";
static const char ATTR_KEY_MSG[] = "expected keys of 1-64 characters of [A-Za-z0-9._:-]";
static const char ATTR_VALUE_MSG[] = "expected a string of at most 256 bytes of UTF-8";

const char *cart_event_type_name(cart_event_type t)
{
    if ((unsigned)t >= NTYPES)
        return NULL;
    return type_names[t];
}

cart_status cart_event_type_parse(const char *name, cart_event_type *out)
{
    if (name == NULL)
        return CART_ERR_INVALID;
    for (size_t i = 0; i < NTYPES; i++) {
        if (type_names[i] != NULL && strcmp(type_names[i], name) == 0) {
            *out = (cart_event_type)i;
            return CART_OK;
        }
    }
    return CART_ERR_INVALID;
}

const char *cart_merge_strategy_name(cart_merge_strategy s)
{
    return (unsigned)s < NSTRATEGIES ? strategy_names[s] : NULL;
}

cart_status cart_merge_strategy_parse(const char *name, size_t len, cart_merge_strategy *out)
{
    for (size_t i = 0; name != NULL && i < NSTRATEGIES; i++) {
        if (strlen(strategy_names[i]) == len && memcmp(strategy_names[i], name, len) == 0) {
            *out = (cart_merge_strategy)i;
            return CART_OK;
        }
    }
    return CART_ERR_INVALID;
}

static bool is_id_char(unsigned char ch)
{
    return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' ||
           ch == ':' || ch == '-';
}

static bool is_visible(unsigned char ch)
{
    return ch >= 0x21 && ch <= 0x7e;
}

bool cart_valid_id(const char *s, size_t len)
{
    if (s == NULL || len < 1 || len > CART_ID_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (!is_id_char((unsigned char)s[i]))
            return false;
    }
    return true;
}

bool cart_valid_event_id(const char *s, size_t len)
{
    if (s == NULL || len < 1 || len > CART_EVENT_ID_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (!is_visible((unsigned char)s[i]))
            return false;
    }
    return true;
}

/* 0..max visible ASCII characters, and spaces with `spaces` (an optional field: empty is fine). */
static bool valid_text(const char *s, size_t len, size_t max, bool spaces)
{
    if (len > max)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (!is_visible((unsigned char)s[i]) && !(spaces && s[i] == ' '))
            return false;
    }
    return true;
}

/* A trace or a fingerprint is optional: empty is fine. */
static bool valid_optional(const char *s, size_t len, size_t max)
{
    return valid_text(s, len, max, false);
}

/* Length of the NUL-terminated string in a fixed array, or `size` when it is not terminated. */
static size_t field_len(const char *s, size_t size)
{
    const char *nul = memchr(s, '\0', size);
    return nul ? (size_t)(nul - s) : size;
}

/* Makes an error message safe for a header or a log line: printable ASCII only. */
static void sanitize(char *s)
{
    for (; *s; s++) {
        if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
            *s = '?';
    }
}

/* Writes "field: msg" into err (if there is room for anything). Returns CART_ERR_INVALID. */
static cart_status fail(char *err, size_t errlen, const char *field, const char *msg)
{
    if (err != NULL && errlen > 0) {
        snprintf(err, errlen, "%s: %s", field, msg);
        sanitize(err);
    }
    return CART_ERR_INVALID;
}

/* Reports an unknown type, quoting at most QUOTE_MAX bytes of it. */
static cart_status fail_type(char *err, size_t errlen, const char *name, size_t len)
{
    char quoted[QUOTE_MAX + 4];

    if (err == NULL || errlen == 0)
        return CART_ERR_INVALID;
    if (len > QUOTE_MAX) {
        memcpy(quoted, name, QUOTE_MAX);
        memcpy(quoted + QUOTE_MAX, "...", 4);
    } else {
        memcpy(quoted, name, len);
        quoted[len] = '\0';
    }
    /* A NUL inside the name would cut the quote short; show it as '?' like other control bytes. */
    for (size_t i = 0; i < (len > QUOTE_MAX ? QUOTE_MAX : len); i++) {
        if (quoted[i] == '\0')
            quoted[i] = '?';
    }
    snprintf(err, errlen, "type: unknown event type \"%s\"", quoted);
    sanitize(err);
    return CART_ERR_INVALID;
}

/* Fetches a required string member. NULL (and err set) when it is missing or not a string. */
static json_t *get_string(json_t *obj, const char *key, const char *field, char *err, size_t errlen)
{
    json_t *v = json_object_get(obj, key);

    if (v == NULL) {
        fail(err, errlen, field, "missing");
        return NULL;
    }
    if (!json_is_string(v)) {
        fail(err, errlen, field, "expected a string");
        return NULL;
    }
    return v;
}

/* Reads a required id member (user_id, data.sku) into dst (CART_ID_MAX + 1 bytes). */
static cart_status get_id(json_t *obj, const char *key, const char *field, char *dst, char *err, size_t errlen)
{
    json_t *v = get_string(obj, key, field, err, errlen);

    if (v == NULL)
        return CART_ERR_INVALID;
    size_t len = json_string_length(v);
    if (!cart_valid_id(json_string_value(v), len))
        return fail(err, errlen, field, ID_CHARS_MSG);
    memcpy(dst, json_string_value(v), len);
    dst[len] = '\0';
    return CART_OK;
}

/* Reads an optional member of at most `max` visible ASCII characters (trace, request_fingerprint)
 * into dst (max + 1 bytes); absent or null leaves dst empty. */
static cart_status get_optional_text(json_t *obj, const char *key, size_t max, const char *msg, char *dst, char *err,
                                     size_t errlen)
{
    json_t *v = json_object_get(obj, key);
    size_t len;

    if (v == NULL || json_is_null(v))
        return CART_OK;
    if (!json_is_string(v))
        return fail(err, errlen, key, "expected a string");
    len = json_string_length(v);
    if (!valid_optional(json_string_value(v), len, max))
        return fail(err, errlen, key, msg);
    memcpy(dst, json_string_value(v), len);
    dst[len] = '\0';
    return CART_OK;
}

bool cart_valid_currency(const char *s, size_t len)
{
    if (s == NULL || len != CART_CURRENCY_LEN)
        return false;
    for (size_t i = 0; i < len; i++)
        if (s[i] < 'A' || s[i] > 'Z')
            return false;
    return true;
}

/* Writes "<prefix><member>: msg" into err. Returns CART_ERR_INVALID. */
static cart_status fail_member(char *err, size_t errlen, const char *prefix, const char *member, const char *msg)
{
    char field[sizeof "data.attributes." + CART_ID_MAX];

    snprintf(field, sizeof field, "%s%s", prefix, member);
    return fail(err, errlen, field, msg);
}

/* "attributes": each value checked, the object rendered compact with its keys sorted. */
static cart_status read_attributes(const json_t *v, const char *prefix, char out[CART_ATTRS_MAX + 1], char *err,
                                   size_t errlen)
{
    char member[sizeof "attributes." + CART_ID_MAX];
    char *text;
    size_t len;

    if (!json_is_object(v) || json_object_size(v) > CART_ATTRS_COUNT)
        return fail_member(err, errlen, prefix, "attributes", ATTRS_MSG);
    for (void *it = json_object_iter((json_t *)v); it != NULL; it = json_object_iter_next((json_t *)v, it)) {
        const char *key = json_object_iter_key(it);
        json_t *value = json_object_iter_value(it);
        /* The length, not strlen: a key may hold "\u0000" when the decoder allows it. */
        if (!cart_valid_id(key, json_object_iter_key_len(it)))
            return fail_member(err, errlen, prefix, "attributes", ATTR_KEY_MSG);
        snprintf(member, sizeof member, "attributes.%s", key);
        if (!json_is_string(value) || json_string_length(value) > CART_ATTR_VALUE_MAX ||
            !cart_utf8_text(json_string_value(value), json_string_length(value)))
            return fail_member(err, errlen, prefix, member, ATTR_VALUE_MSG);
    }
    if ((text = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS)) == NULL)
        return CART_ERR_NOMEM;
    len = strlen(text);
    if (len > CART_ATTRS_MAX) {
        free(text);
        return fail_member(err, errlen, prefix, "attributes", "expected at most 2048 bytes of compact JSON");
    }
    memcpy(out, text, len + 1);
    free(text);
    return CART_OK;
}

cart_status cart_snapshot_read(const json_t *obj, const char *prefix, cart_snapshot *snap, char *err, size_t errlen)
{
    cart_snapshot tmp;
    const json_t *v;
    cart_status st;

    memset(&tmp, 0, sizeof tmp);
    if ((v = json_object_get(obj, "name")) != NULL) {
        size_t len = json_is_string(v) ? json_string_length(v) : 0;
        if (!json_is_string(v) || len > CART_NAME_MAX || !cart_utf8_text(json_string_value(v), len))
            return fail_member(err, errlen, prefix, "name", NAME_MSG);
        memcpy(tmp.name, json_string_value(v), len);
        tmp.has_name = true;
    }
    if ((v = json_object_get(obj, "unit_price")) != NULL) {
        /* jansson keeps 2.0 a real and refuses integers beyond int64, so this is exact. */
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > CART_PRICE_MAX)
            return fail_member(err, errlen, prefix, "unit_price", PRICE_MSG);
        tmp.unit_price = (int64_t)json_integer_value(v);
        tmp.has_price = true;
    }
    if ((v = json_object_get(obj, "currency")) != NULL) {
        if (!json_is_string(v) || !cart_valid_currency(json_string_value(v), json_string_length(v)))
            return fail_member(err, errlen, prefix, "currency", CURRENCY_MSG);
        /* An amount means nothing without its currency, and a currency alone would change what an
         * amount means: they are given together. */
        if (!tmp.has_price)
            return fail_member(err, errlen, prefix, "currency", "needs unit_price");
        memcpy(tmp.currency, json_string_value(v), CART_CURRENCY_LEN);
    } else if (tmp.has_price) {
        return fail_member(err, errlen, prefix, "currency", "required with unit_price");
    }
    if ((v = json_object_get(obj, "attributes")) != NULL) {
        if ((st = read_attributes(v, prefix, tmp.attributes, err, errlen)) != CART_OK)
            return st;
        tmp.has_attributes = true;
    }
    *snap = tmp;
    return CART_OK;
}

bool cart_snapshot_valid(const cart_snapshot *snap)
{
    size_t name_len = field_len(snap->name, sizeof snap->name);
    size_t attrs_len = field_len(snap->attributes, sizeof snap->attributes);

    if (name_len > CART_NAME_MAX || (snap->has_name ? !cart_utf8_text(snap->name, name_len) : name_len != 0))
        return false;
    if (snap->has_price ? snap->unit_price < 0 || snap->unit_price > CART_PRICE_MAX ||
                              !cart_valid_currency(snap->currency, field_len(snap->currency, sizeof snap->currency))
                        : snap->unit_price != 0 || snap->currency[0] != '\0')
        return false;
    if (attrs_len > CART_ATTRS_MAX)
        return false;
    if (snap->has_attributes)
        return attrs_len >= 2 && snap->attributes[0] == '{' && snap->attributes[attrs_len - 1] == '}';
    return attrs_len == 0;
}

cart_status cart_event_check_quantity(const cart_event *ev, int32_t max_quantity, char *err, size_t errlen)
{
    int64_t lo = ev->type == CART_EV_ITEM_ADDED ? 1 : 0;
    char msg[64];

    if (ev->type != CART_EV_ITEM_ADDED && ev->type != CART_EV_ITEM_QUANTITY_SET)
        return CART_OK;
    if (ev->quantity >= lo && ev->quantity <= max_quantity)
        return CART_OK;
    snprintf(msg, sizeof msg, "expected an integer from %lld to %d", (long long)lo, (int)max_quantity);
    return fail(err, errlen, "data.quantity", msg);
}

static cart_status decode_data(json_t *root, cart_event *ev, char *err, size_t errlen)
{
    json_t *data = json_object_get(root, "data");
    cart_status st;

    if (data == NULL)
        return fail(err, errlen, "data", "missing");
    if (!json_is_object(data))
        return fail(err, errlen, "data", "expected an object");
    if ((st = get_id(data, "sku", "data.sku", ev->sku, err, errlen)) != CART_OK)
        return st;
    if (ev->type == CART_EV_ITEM_REMOVED)
        return CART_OK;

    json_t *q = json_object_get(data, "quantity");
    if (q == NULL)
        return fail(err, errlen, "data.quantity", "missing");
    /* jansson keeps 2.0 a real and refuses integers beyond int64, so this is exact. */
    if (!json_is_integer(q))
        return fail(err, errlen, "data.quantity", "expected an integer");
    ev->quantity = (int64_t)json_integer_value(q);
    return cart_snapshot_read(data, "data.", &ev->snap, err, errlen);
}

static bool is_merge_event(cart_event_type t)
{
    return t == CART_EV_MERGE_REQUESTED || t == CART_EV_LINES_MERGED || t == CART_EV_MERGE_SETTLED;
}

/* Reads an optional string member of 0..max visible ASCII characters (and spaces, with `spaces`)
 * into dst (max + 1 bytes); absent or null leaves dst empty. */
static cart_status get_text(json_t *obj, const char *key, const char *field, size_t max, bool spaces, char *dst,
                            char *err, size_t errlen)
{
    json_t *v = json_object_get(obj, key);
    char msg[64];

    if (v == NULL || json_is_null(v))
        return CART_OK;
    snprintf(msg, sizeof msg, "expected at most %zu printable ASCII characters", max);
    if (!json_is_string(v) || !valid_text(json_string_value(v), json_string_length(v), max, spaces))
        return fail(err, errlen, field, msg);
    memcpy(dst, json_string_value(v), json_string_length(v));
    dst[json_string_length(v)] = '\0';
    return CART_OK;
}

/* The data of a merge event (event.h, cart_merge_data). */
static cart_status decode_merge(json_t *root, cart_event *ev, char *err, size_t errlen)
{
    json_t *data = json_object_get(root, "data"), *v;
    cart_merge_data *m = &ev->merge;
    cart_status st;

    if (data == NULL)
        return fail(err, errlen, "data", "missing");
    if (!json_is_object(data))
        return fail(err, errlen, "data", "expected an object");
    if (ev->type == CART_EV_LINES_MERGED)
        st = get_id(data, "from", "data.from", m->peer, err, errlen);
    else
        st = get_id(data, "into", "data.into", m->peer, err, errlen);
    if (st != CART_OK)
        return st;
    if (ev->type != CART_EV_MERGE_SETTLED) {
        v = json_object_get(data, "strategy");
        if (v != NULL && !json_is_null(v) &&
            (!json_is_string(v) ||
             cart_merge_strategy_parse(json_string_value(v), json_string_length(v), &m->strategy) != CART_OK))
            return fail(err, errlen, "data.strategy", "expected \"sum\", \"max\", \"replace\" or \"keep\"");
    }
    if (ev->type == CART_EV_MERGE_REQUESTED)
        return CART_OK;
    if ((v = get_string(data, "merge_id", "data.merge_id", err, errlen)) == NULL)
        return CART_ERR_INVALID;
    if (!cart_valid_event_id(json_string_value(v), json_string_length(v)))
        return fail(err, errlen, "data.merge_id", EVENT_ID_MSG);
    memcpy(m->merge_id, json_string_value(v), json_string_length(v) + 1);
    /* A lines_merged's status, when present, is the guest's side's refusal (a 4xx or 5xx). */
    v = json_object_get(data, "status");
    if (ev->type == CART_EV_LINES_MERGED && v != NULL && !json_is_null(v)) {
        if (!json_is_integer(v) || json_integer_value(v) < 400 || json_integer_value(v) > 599)
            return fail(err, errlen, "data.status", "expected the status of a refusal (400 to 599)");
    } else if (ev->type == CART_EV_MERGE_SETTLED) {
        if (!json_is_integer(v) || json_integer_value(v) < 200 || json_integer_value(v) > 599)
            return fail(err, errlen, "data.status", "expected an HTTP status");
    } else {
        v = NULL;
    }
    m->status = v != NULL ? (int)json_integer_value(v) : 0;
    /* A refusal may come from a guest with no cart: then it names none. */
    v = json_object_get(data, "cart_id");
    if (m->status >= 400 && ev->type == CART_EV_LINES_MERGED && (v == NULL || json_is_null(v))) {
        m->cart_id[0] = '\0';
    } else {
        if ((v = get_string(data, "cart_id", "data.cart_id", err, errlen)) == NULL)
            return CART_ERR_INVALID;
        if (json_string_length(v) != sizeof m->cart_id - 1)
            return fail(err, errlen, "data.cart_id", "expected a UUID");
        memcpy(m->cart_id, json_string_value(v), sizeof m->cart_id);
    }
    if ((st = get_text(data, "reply_to", "data.reply_to", CART_REPLY_TO_MAX, false, m->reply_to, err, errlen)) !=
        CART_OK)
        return st;
    if (ev->type == CART_EV_LINES_MERGED && m->status == 0)
        return CART_OK;
    return get_text(data, "detail", "data.detail", sizeof m->detail - 1, true, m->detail, err, errlen);
}

static cart_status decode_fields(json_t *root, cart_event *ev, char *err, size_t errlen)
{
    json_t *v;
    size_t len;
    cart_status st;

    if ((v = get_string(root, "event_id", "event_id", err, errlen)) == NULL)
        return CART_ERR_INVALID;
    len = json_string_length(v);
    if (!cart_valid_event_id(json_string_value(v), len))
        return fail(err, errlen, "event_id", EVENT_ID_MSG);
    memcpy(ev->event_id, json_string_value(v), len);
    ev->event_id[len] = '\0';

    if ((v = get_string(root, "type", "type", err, errlen)) == NULL)
        return CART_ERR_INVALID;
    len = json_string_length(v);
    /* A name with a NUL inside would match a known name by strcmp, so check the length too. */
    if (strlen(json_string_value(v)) != len || cart_event_type_parse(json_string_value(v), &ev->type) != CART_OK)
        return fail_type(err, errlen, json_string_value(v), len);

    if ((st = get_id(root, "user_id", "user_id", ev->user_id, err, errlen)) != CART_OK)
        return st;

    if ((v = get_string(root, "occurred_at", "occurred_at", err, errlen)) == NULL)
        return CART_ERR_INVALID;
    if (cart_time_parse(json_string_value(v), json_string_length(v), &ev->occurred_at_ms) != CART_OK ||
        ev->occurred_at_ms < CART_TIME_MIN_MS || ev->occurred_at_ms > CART_TIME_MAX_MS)
        return fail(err, errlen, "occurred_at", "expected an RFC 3339 timestamp");

    if (ev->type == CART_EV_ITEM_ADDED || ev->type == CART_EV_ITEM_QUANTITY_SET || ev->type == CART_EV_ITEM_REMOVED) {
        if ((st = decode_data(root, ev, err, errlen)) != CART_OK)
            return st;
    }
    if (is_merge_event(ev->type) && (st = decode_merge(root, ev, err, errlen)) != CART_OK)
        return st;

    v = json_object_get(root, "expected_version");
    if (v != NULL && !json_is_null(v)) {
        if (!json_is_integer(v) || json_integer_value(v) < 0)
            return fail(err, errlen, "expected_version", "expected an integer >= 0");
        ev->has_expected_version = true;
        ev->expected_version = (int64_t)json_integer_value(v);
    }

    v = json_object_get(root, "expected_versions");
    if (v != NULL && !json_is_null(v)) {
        size_t n = json_is_array(v) ? json_array_size(v) : 0;
        if (n == 0 || n > CART_EXPECTED_MAX)
            return fail(err, errlen, "expected_versions", EXPECTED_VERSIONS_MSG);
        for (size_t i = 0; i < n; i++) {
            json_t *e = json_array_get(v, i);
            if (!json_is_integer(e) || json_integer_value(e) < 0)
                return fail(err, errlen, "expected_versions", EXPECTED_VERSIONS_MSG);
            ev->expected_versions[i] = (int64_t)json_integer_value(e);
        }
        ev->n_expected_versions = (int)n;
    }

    v = json_object_get(root, "expected_active");
    if (v != NULL && !json_is_null(v)) {
        if (!json_is_boolean(v))
            return fail(err, errlen, "expected_active", "expected true or false");
        ev->expected_active = json_is_true(v);
    }

    if ((st = get_optional_text(root, "trace", CART_TRACE_MAX, TRACE_MSG, ev->trace, err, errlen)) != CART_OK ||
        (st = get_optional_text(root, "request_fingerprint", CART_FINGERPRINT_MAX, FINGERPRINT_MSG,
                                ev->request_fingerprint, err, errlen)) != CART_OK)
        return st;
    return CART_OK;
}

cart_status cart_event_decode(const char *json, size_t len, cart_event *ev, char *err, size_t errlen)
{
    json_error_t jerr;
    json_t *root = NULL;
    cart_event tmp;
    cart_status st = CART_ERR_INVALID;

    if (err != NULL && errlen > 0)
        err[0] = '\0';
    if (json == NULL && len > 0) {
        fail(err, errlen, "event", "no input");
        goto out;
    }
    /* JSON_ALLOW_NUL so that "u\u0000" reaches the id check and gets a reason naming the field. */
    root = json_loadb(json != NULL ? json : "", len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
    if (root == NULL) {
        if (json_error_code(&jerr) == json_error_out_of_memory) {
            st = CART_ERR_NOMEM;
            goto out;
        }
        if (err != NULL && errlen > 0) {
            snprintf(err, errlen, "invalid JSON at byte %d: %s", jerr.position, jerr.text);
            sanitize(err);
        }
        goto out;
    }
    if (!json_is_object(root)) {
        fail(err, errlen, "event", "expected a JSON object");
        goto out;
    }
    memset(&tmp, 0, sizeof tmp);
    if ((st = decode_fields(root, &tmp, err, errlen)) != CART_OK)
        goto out;
    *ev = tmp;
out:
    json_decref(root);
    return st;
}

bool cart_fingerprints_clash(const char *first, const char *repeat)
{
    return first != NULL && repeat != NULL && first[0] != '\0' && repeat[0] != '\0' && strcmp(first, repeat) != 0;
}

static bool is_item_event(cart_event_type t)
{
    return t == CART_EV_ITEM_ADDED || t == CART_EV_ITEM_QUANTITY_SET || t == CART_EV_ITEM_REMOVED;
}

/* Adds a string member; false when out of memory. */
static bool set_string(json_t *obj, const char *key, const char *s, size_t len)
{
    return json_object_set_new(obj, key, json_stringn(s, len)) == 0;
}

/* The merge data's part of encodable. */
static bool merge_encodable(const cart_event *ev)
{
    const cart_merge_data *m = &ev->merge;

    if (!cart_valid_id(m->peer, field_len(m->peer, sizeof m->peer)) || cart_merge_strategy_name(m->strategy) == NULL)
        return false;
    if (ev->type == CART_EV_MERGE_REQUESTED)
        return true;
    bool refused = ev->type == CART_EV_LINES_MERGED && m->status != 0;
    size_t cart_id_len = field_len(m->cart_id, sizeof m->cart_id);

    if (!cart_valid_event_id(m->merge_id, field_len(m->merge_id, sizeof m->merge_id)) ||
        (cart_id_len != sizeof m->cart_id - 1 && !(refused && cart_id_len == 0)) ||
        !valid_text(m->reply_to, field_len(m->reply_to, sizeof m->reply_to), CART_REPLY_TO_MAX, false))
        return false;
    if (ev->type == CART_EV_LINES_MERGED && !refused)
        return true;
    return m->status >= (refused ? 400 : 200) && m->status <= 599 &&
           valid_text(m->detail, field_len(m->detail, sizeof m->detail), sizeof m->detail - 1, true);
}

/* Checks everything the decoder would check, so that an encoded event always decodes back. */
static bool encodable(const cart_event *ev)
{
    if (cart_event_type_name(ev->type) == NULL)
        return false;
    if (!cart_valid_event_id(ev->event_id, field_len(ev->event_id, sizeof ev->event_id)))
        return false;
    if (!cart_valid_id(ev->user_id, field_len(ev->user_id, sizeof ev->user_id)))
        return false;
    if (ev->occurred_at_ms < CART_TIME_MIN_MS || ev->occurred_at_ms > CART_TIME_MAX_MS)
        return false;
    if (is_item_event(ev->type) && !cart_valid_id(ev->sku, field_len(ev->sku, sizeof ev->sku)))
        return false;
    if (!cart_snapshot_valid(&ev->snap))
        return false;
    if (ev->has_expected_version && ev->expected_version < 0)
        return false;
    if (ev->n_expected_versions < 0 || ev->n_expected_versions > CART_EXPECTED_MAX)
        return false;
    for (int i = 0; i < ev->n_expected_versions; i++)
        if (ev->expected_versions[i] < 0)
            return false;
    if (is_merge_event(ev->type) && !merge_encodable(ev))
        return false;
    return valid_optional(ev->trace, field_len(ev->trace, sizeof ev->trace), CART_TRACE_MAX) &&
           valid_optional(ev->request_fingerprint, field_len(ev->request_fingerprint, sizeof ev->request_fingerprint),
                          CART_FINGERPRINT_MAX);
}

/* Adds the data of a merge event to `data`; false when out of memory. */
static bool encode_merge(json_t *data, const cart_event *ev)
{
    const cart_merge_data *m = &ev->merge;
    const char *strategy = cart_merge_strategy_name(m->strategy);

    if (!set_string(data, ev->type == CART_EV_LINES_MERGED ? "from" : "into", m->peer, strlen(m->peer)))
        return false;
    if (ev->type != CART_EV_MERGE_SETTLED && !set_string(data, "strategy", strategy, strlen(strategy)))
        return false;
    if (ev->type == CART_EV_MERGE_REQUESTED)
        return true;
    if (!set_string(data, "merge_id", m->merge_id, strlen(m->merge_id)) ||
        (m->cart_id[0] != '\0' && !set_string(data, "cart_id", m->cart_id, strlen(m->cart_id))) ||
        (m->reply_to[0] != '\0' && !set_string(data, "reply_to", m->reply_to, strlen(m->reply_to))))
        return false;
    if (ev->type == CART_EV_LINES_MERGED && m->status == 0)
        return true;
    return json_object_set_new(data, "status", json_integer(m->status)) == 0 &&
           (m->detail[0] == '\0' || set_string(data, "detail", m->detail, strlen(m->detail)));
}

cart_status cart_snapshot_write(json_t *data, const cart_snapshot *snap)
{
    json_t *attrs;

    if (snap->has_name && !set_string(data, "name", snap->name, strlen(snap->name)))
        return CART_ERR_NOMEM;
    if (snap->has_price && (json_object_set_new(data, "unit_price", json_integer((json_int_t)snap->unit_price)) != 0 ||
                            !set_string(data, "currency", snap->currency, strlen(snap->currency))))
        return CART_ERR_NOMEM;
    if (!snap->has_attributes)
        return CART_OK;
    /* Already compact with sorted keys: kept in that order by JSON_PRESERVE_ORDER. */
    if ((attrs = json_loads(snap->attributes, JSON_REJECT_DUPLICATES, NULL)) == NULL || !json_is_object(attrs)) {
        json_decref(attrs);
        return CART_ERR_INVALID;
    }
    return json_object_set_new(data, "attributes", attrs) == 0 ? CART_OK : CART_ERR_NOMEM;
}

cart_status cart_event_encode(const cart_event *ev, char **out, size_t *outlen)
{
    json_t *root = NULL;
    json_t *data = NULL;
    char *text = NULL;
    char when[CART_TIME_BUFSZ];
    cart_status st = CART_ERR_NOMEM;

    if (!encodable(ev)) {
        st = CART_ERR_INVALID;
        goto out;
    }
    cart_time_format(ev->occurred_at_ms, when);
    if ((root = json_object()) == NULL)
        goto out;
    if (!set_string(root, "event_id", ev->event_id, strlen(ev->event_id)) ||
        !set_string(root, "type", cart_event_type_name(ev->type), strlen(cart_event_type_name(ev->type))) ||
        !set_string(root, "user_id", ev->user_id, strlen(ev->user_id)) ||
        !set_string(root, "occurred_at", when, strlen(when)))
        goto out;
    if (is_item_event(ev->type)) {
        if ((data = json_object()) == NULL || !set_string(data, "sku", ev->sku, strlen(ev->sku)))
            goto out;
        if (ev->type != CART_EV_ITEM_REMOVED) {
            if (json_object_set_new(data, "quantity", json_integer((json_int_t)ev->quantity)) != 0)
                goto out;
            cart_status snap_st = cart_snapshot_write(data, &ev->snap);
            if (snap_st != CART_OK) {
                st = snap_st;
                goto out;
            }
        }
        /* json_object_set_new takes the reference even when it fails. */
        json_t *moved = data;
        data = NULL;
        if (json_object_set_new(root, "data", moved) != 0)
            goto out;
    }
    if (is_merge_event(ev->type)) {
        json_t *moved = json_object();
        if (moved == NULL || json_object_set_new(root, "data", moved) != 0 || !encode_merge(moved, ev))
            goto out;
    }
    if (ev->has_expected_version &&
        json_object_set_new(root, "expected_version", json_integer((json_int_t)ev->expected_version)) != 0)
        goto out;
    if (ev->n_expected_versions > 0) {
        json_t *list = json_array();
        if (list == NULL || json_object_set_new(root, "expected_versions", list) != 0)
            goto out;
        for (int i = 0; i < ev->n_expected_versions; i++)
            if (json_array_append_new(list, json_integer((json_int_t)ev->expected_versions[i])) != 0)
                goto out;
    }
    if (ev->expected_active && json_object_set_new(root, "expected_active", json_true()) != 0)
        goto out;
    if (ev->trace[0] != '\0' && !set_string(root, "trace", ev->trace, strlen(ev->trace)))
        goto out;
    if (ev->request_fingerprint[0] != '\0' &&
        !set_string(root, "request_fingerprint", ev->request_fingerprint, strlen(ev->request_fingerprint)))
        goto out;
    if ((text = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER)) == NULL)
        goto out;
    *out = text;
    if (outlen != NULL)
        *outlen = strlen(text);
    st = CART_OK;
out:
    json_decref(data);
    json_decref(root);
    return st;
}

/* Random bytes for ids, drawn from the kernel 32 ids at a time: a getrandom call per request was
 * 2 % of the gateway's CPU on cache hits. Per thread, so no lock; the processes never fork. */
#define RANDOM_POOL_BYTES 512
static _Thread_local unsigned char random_pool[RANDOM_POOL_BYTES];
static _Thread_local size_t random_left;

static void random_bytes(unsigned char *out, size_t n)
{
    if (random_left < n) {
        size_t got = 0;
        while (got < sizeof random_pool) {
            ssize_t r = getrandom(random_pool + got, sizeof random_pool - got, 0);
            if (r < 0) {
                if (errno == EINTR)
                    continue;
                /* Only ENOSYS (a kernel before 3.17) gets here. A predictable id would make the
                 * dedup table drop real events, so there is no safe fallback. */
                abort();
            }
            got += (size_t)r;
        }
        random_left = sizeof random_pool;
    }
    memcpy(out, random_pool + sizeof random_pool - random_left, n);
    /* Used bytes are wiped, so that the pool never holds an id already handed out. */
    memset(random_pool + sizeof random_pool - random_left, 0, n);
    random_left -= n;
}

void cart_uuid_v4(char buf[37])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char b[16];

    random_bytes(b, sizeof b);
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40); /* version 4 */
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80); /* variant 10 */

    char *p = buf;
    for (size_t i = 0; i < sizeof b; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            *p++ = '-';
        *p++ = hex[b[i] >> 4];
        *p++ = hex[b[i] & 0x0f];
    }
    *p = '\0';
}

void cart_event_new_id(cart_event *ev)
{
    cart_uuid_v4(ev->event_id);
}
