#include <check.h>
#include <pthread.h>
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cartshard/event.h"

#define BASE_ITEM                                                                                                      \
    "{\"event_id\":\"e-1\",\"type\":\"cart.item_added\",\"user_id\":\"u1\","                                           \
    "\"occurred_at\":\"2026-11-22T10:00:00Z\",\"data\":{\"sku\":\"A1\",\"quantity\":2}}"

/* Decodes from an exactly sized heap copy, so that ASan catches any read past `len`. */
static cart_status decode_n(const char *json, size_t len, cart_event *ev, char *err, size_t errlen)
{
    char *copy = malloc(len ? len : 1);
    ck_assert_ptr_nonnull(copy);
    memcpy(copy, json, len);
    cart_status st = cart_event_decode(copy, len, ev, err, errlen);
    free(copy);
    return st;
}

static cart_status decode(const char *json, cart_event *ev, char *err, size_t errlen)
{
    return decode_n(json, strlen(json), ev, err, errlen);
}

/* Decodes `json`, expecting a refusal whose reason is exactly `reason`. */
static void expect_invalid(const char *json, const char *reason)
{
    cart_event ev;
    char err[256];

    memset(&ev, 0xab, sizeof ev);
    cart_event before = ev;
    ck_assert_msg(decode(json, &ev, err, sizeof err) == CART_ERR_INVALID, "accepted: %s", json);
    if (reason != NULL)
        ck_assert_str_eq(err, reason);
    ck_assert_msg(err[0] != '\0', "no reason for %s", json);
    /* *ev is written only on success. */
    ck_assert_mem_eq(&ev, &before, sizeof ev);
}

/* BASE_ITEM with `key` set to the JSON value `value` (NULL deletes it); `in_data` edits data. */
static char *variant(const char *key, const char *value, int in_data)
{
    json_error_t jerr;
    json_t *root = json_loads(BASE_ITEM, 0, &jerr);
    ck_assert_ptr_nonnull(root);
    json_t *target = in_data ? json_object_get(root, "data") : root;
    if (value == NULL) {
        json_object_del(target, key);
    } else {
        json_t *v = json_loads(value, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
        ck_assert_msg(v != NULL, "bad test value %s", value);
        json_object_set_new(target, key, v);
    }
    char *s = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(root);
    ck_assert_ptr_nonnull(s);
    return s;
}

static void expect_variant_invalid(const char *key, const char *value, int in_data, const char *reason)
{
    char *s = variant(key, value, in_data);
    expect_invalid(s, reason);
    free(s);
}

static void expect_variant_ok(const char *key, const char *value, int in_data, cart_event *ev)
{
    char err[256] = "";
    char *s = variant(key, value, in_data);
    ck_assert_msg(decode(s, ev, err, sizeof err) == CART_OK, "refused %s: %s", s, err);
    free(s);
}

static cart_event sample(cart_event_type t)
{
    cart_event ev;
    memset(&ev, 0, sizeof ev);
    strcpy(ev.event_id, "0b5c2f6e-9d1a-4c4e-8f00-123456789abc");
    ev.type = t;
    strcpy(ev.user_id, "user:42");
    ev.occurred_at_ms = 1795341600123LL;
    if (t == CART_EV_ITEM_ADDED || t == CART_EV_ITEM_QUANTITY_SET || t == CART_EV_ITEM_REMOVED)
        strcpy(ev.sku, "SKU-1.b_c");
    if (t == CART_EV_ITEM_ADDED || t == CART_EV_ITEM_QUANTITY_SET)
        ev.quantity = 7;
    return ev;
}

static void assert_event_eq(const cart_event *a, const cart_event *b)
{
    ck_assert_str_eq(a->event_id, b->event_id);
    ck_assert_int_eq(a->type, b->type);
    ck_assert_str_eq(a->user_id, b->user_id);
    ck_assert_int_eq(a->occurred_at_ms, b->occurred_at_ms);
    ck_assert_str_eq(a->sku, b->sku);
    ck_assert_int_eq(a->quantity, b->quantity);
    ck_assert_int_eq(a->has_expected_version, b->has_expected_version);
    ck_assert_int_eq(a->expected_version, b->expected_version);
    ck_assert_str_eq(a->trace, b->trace);
    ck_assert_str_eq(a->request_fingerprint, b->request_fingerprint);
    ck_assert_mem_eq(&a->snap, &b->snap, sizeof a->snap);
}

/* A snapshot with every member, for the item events of `ev`. */
static void full_snapshot(cart_event *ev)
{
    ev->snap.has_name = true;
    strcpy(ev->snap.name, "Mug \"Blue\" \xe2\x98\x95");
    ev->snap.has_price = true;
    ev->snap.unit_price = 1999;
    strcpy(ev->snap.currency, "EUR");
    ev->snap.has_attributes = true;
    strcpy(ev->snap.attributes, "{\"color\":\"blue\",\"size\":\"L\"}");
}

START_TEST(test_type_names)
{
    static const char *const names[] = {"cart.created",         "cart.item_added",   "cart.item_quantity_set",
                                        "cart.item_removed",    "cart.deleted",      "cart.checked_out",
                                        "cart.merge_requested", "cart.lines_merged", "cart.merge_settled"};
    for (int i = 0; i < 9; i++) {
        cart_event_type t = (cart_event_type)(CART_EV_CREATED + i);
        cart_event_type back = 0;
        ck_assert_str_eq(cart_event_type_name(t), names[i]);
        ck_assert_int_eq(cart_event_type_parse(names[i], &back), CART_OK);
        ck_assert_int_eq(back, t);
    }
    ck_assert_ptr_null(cart_event_type_name((cart_event_type)0));
    ck_assert_ptr_null(cart_event_type_name((cart_event_type)10));
    ck_assert_ptr_null(cart_event_type_name((cart_event_type)-1));

    cart_event_type t = CART_EV_DELETED;
    ck_assert_int_eq(cart_event_type_parse("cart.foo", &t), CART_ERR_INVALID);
    ck_assert_int_eq(cart_event_type_parse("", &t), CART_ERR_INVALID);
    ck_assert_int_eq(cart_event_type_parse("CART.CREATED", &t), CART_ERR_INVALID);
    ck_assert_int_eq(cart_event_type_parse("cart.created ", &t), CART_ERR_INVALID);
    ck_assert_int_eq(cart_event_type_parse(NULL, &t), CART_ERR_INVALID);
    ck_assert_int_eq(t, CART_EV_DELETED);
}
END_TEST

START_TEST(test_valid_id)
{
    char buf[80];

    ck_assert(cart_valid_id("u1", 2));
    ck_assert(cart_valid_id("AZaz09._:-", 10));
    ck_assert(!cart_valid_id("", 0));
    ck_assert(!cart_valid_id(NULL, 0));
    ck_assert(!cart_valid_id(NULL, 3));
    memset(buf, 'a', sizeof buf);
    ck_assert(cart_valid_id(buf, 64));
    ck_assert(!cart_valid_id(buf, 65));
    /* Only the first len bytes count. */
    ck_assert(cart_valid_id("u1 junk", 2));
    ck_assert(!cart_valid_id("u\0"
                             "1",
                             3));

    /* Every byte outside the set is refused. */
    for (int ch = 0; ch < 256; ch++) {
        int ok = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '.' ||
                 ch == '_' || ch == ':' || ch == '-';
        buf[0] = 'x';
        buf[1] = (char)ch;
        buf[2] = 'y';
        ck_assert_msg(cart_valid_id(buf, 3) == ok, "byte 0x%02x", ch);
    }
}
END_TEST

START_TEST(test_valid_event_id)
{
    char buf[140];

    ck_assert(cart_valid_event_id("e", 1));
    ck_assert(cart_valid_event_id("!~\"{}", 5));
    ck_assert(!cart_valid_event_id("", 0));
    ck_assert(!cart_valid_event_id(NULL, 1));
    memset(buf, 'k', sizeof buf);
    ck_assert(cart_valid_event_id(buf, 128));
    ck_assert(!cart_valid_event_id(buf, 129));
    for (int ch = 0; ch < 256; ch++) {
        buf[0] = (char)ch;
        ck_assert_msg(cart_valid_event_id(buf, 1) == (ch >= 0x21 && ch <= 0x7e), "byte 0x%02x", ch);
    }
}
END_TEST

START_TEST(test_decode_full)
{
    cart_event ev;
    char err[128] = "x";
    const char *json = "{\"event_id\":\"e-1\",\"type\":\"cart.item_added\",\"user_id\":\"u1\","
                       "\"occurred_at\":\"2026-11-22T10:00:00.250Z\",\"data\":{\"sku\":\"A1\",\"quantity\":2},"
                       "\"expected_version\":3,\"trace\":\"00-abc-def-01\"}";

    ck_assert_int_eq(decode(json, &ev, err, sizeof err), CART_OK);
    ck_assert_str_eq(err, "");
    ck_assert_str_eq(ev.event_id, "e-1");
    ck_assert_int_eq(ev.type, CART_EV_ITEM_ADDED);
    ck_assert_str_eq(ev.user_id, "u1");
    ck_assert_int_eq(ev.occurred_at_ms, 1795341600250LL);
    ck_assert_str_eq(ev.sku, "A1");
    ck_assert_int_eq(ev.quantity, 2);
    ck_assert(ev.has_expected_version);
    ck_assert_int_eq(ev.expected_version, 3);
    ck_assert_str_eq(ev.trace, "00-abc-def-01");
}
END_TEST

START_TEST(test_decode_each_type)
{
    cart_event ev;
    char err[128];

    ck_assert_int_eq(decode("{\"event_id\":\"e\",\"type\":\"cart.created\",\"user_id\":\"u\","
                            "\"occurred_at\":\"2026-01-01T00:00:00Z\"}",
                            &ev, err, sizeof err),
                     CART_OK);
    ck_assert_int_eq(ev.type, CART_EV_CREATED);
    ck_assert_str_eq(ev.sku, "");
    ck_assert_int_eq(ev.quantity, 0);
    ck_assert(!ev.has_expected_version);
    ck_assert_str_eq(ev.trace, "");

    ck_assert_int_eq(decode("{\"event_id\":\"e\",\"type\":\"cart.item_quantity_set\",\"user_id\":\"u\","
                            "\"occurred_at\":\"2026-01-01T00:00:00+02:00\",\"data\":{\"sku\":\"S\",\"quantity\":0}}",
                            &ev, err, sizeof err),
                     CART_OK);
    ck_assert_int_eq(ev.type, CART_EV_ITEM_QUANTITY_SET);
    ck_assert_str_eq(ev.sku, "S");
    ck_assert_int_eq(ev.quantity, 0);
    ck_assert_int_eq(ev.occurred_at_ms, 1767225600000LL - 7200000LL);

    /* item_removed needs no quantity and ignores one. */
    ck_assert_int_eq(decode("{\"event_id\":\"e\",\"type\":\"cart.item_removed\",\"user_id\":\"u\","
                            "\"occurred_at\":\"2026-01-01T00:00:00Z\",\"data\":{\"sku\":\"S\",\"quantity\":\"x\"}}",
                            &ev, err, sizeof err),
                     CART_OK);
    ck_assert_int_eq(ev.type, CART_EV_ITEM_REMOVED);
    ck_assert_str_eq(ev.sku, "S");
    ck_assert_int_eq(ev.quantity, 0);

    ck_assert_int_eq(decode("{\"event_id\":\"e\",\"type\":\"cart.deleted\",\"user_id\":\"u\","
                            "\"occurred_at\":\"2026-01-01T00:00:00Z\"}",
                            &ev, err, sizeof err),
                     CART_OK);
    ck_assert_int_eq(ev.type, CART_EV_DELETED);

    /* data on a non-item event is ignored, whatever it is. */
    ck_assert_int_eq(decode("{\"event_id\":\"e\",\"type\":\"cart.checked_out\",\"user_id\":\"u\","
                            "\"occurred_at\":\"2026-01-01T00:00:00Z\",\"data\":5}",
                            &ev, err, sizeof err),
                     CART_OK);
    ck_assert_int_eq(ev.type, CART_EV_CHECKED_OUT);
    ck_assert_str_eq(ev.sku, "");
}
END_TEST

START_TEST(test_decode_unknown_fields_ignored)
{
    cart_event ev;
    char err[128];
    const char *json = "{\"zzz\":[1,{\"a\":null}],\"event_id\":\"e\",\"type\":\"cart.item_added\",\"user_id\":\"u\","
                       "\"occurred_at\":\"2026-01-01T00:00:00Z\",\"data\":{\"sku\":\"S\",\"quantity\":1,\"x\":true},"
                       "\"schema\":2,\"source\":\"other-client\"}  \n";

    ck_assert_int_eq(decode(json, &ev, err, sizeof err), CART_OK);
    ck_assert_str_eq(ev.sku, "S");
    ck_assert_int_eq(ev.quantity, 1);
}
END_TEST

START_TEST(test_decode_missing_fields)
{
    expect_variant_invalid("event_id", NULL, 0, "event_id: missing");
    expect_variant_invalid("type", NULL, 0, "type: missing");
    expect_variant_invalid("user_id", NULL, 0, "user_id: missing");
    expect_variant_invalid("occurred_at", NULL, 0, "occurred_at: missing");
    expect_variant_invalid("data", NULL, 0, "data: missing");
    expect_variant_invalid("sku", NULL, 1, "data.sku: missing");
    expect_variant_invalid("quantity", NULL, 1, "data.quantity: missing");
    expect_invalid("{}", "event_id: missing");
}
END_TEST

START_TEST(test_decode_wrong_types)
{
    static const char *const non_strings[] = {"1", "1.5", "true", "null", "[]", "{}", "[\"u1\"]"};
    for (size_t i = 0; i < sizeof non_strings / sizeof non_strings[0]; i++) {
        expect_variant_invalid("event_id", non_strings[i], 0, "event_id: expected a string");
        expect_variant_invalid("type", non_strings[i], 0, "type: expected a string");
        expect_variant_invalid("user_id", non_strings[i], 0, "user_id: expected a string");
        expect_variant_invalid("occurred_at", non_strings[i], 0, "occurred_at: expected a string");
        expect_variant_invalid("sku", non_strings[i], 1, "data.sku: expected a string");
    }
    expect_variant_invalid("data", "[]", 0, "data: expected an object");
    expect_variant_invalid("data", "null", 0, "data: expected an object");
    expect_variant_invalid("data", "\"A1\"", 0, "data: expected an object");
    expect_variant_invalid("type", "\"cart.foo\"", 0, "type: unknown event type \"cart.foo\"");
    expect_variant_invalid("type", "\"\"", 0, "type: unknown event type \"\"");
}
END_TEST

START_TEST(test_decode_bad_ids)
{
    const char *idmsg = "user_id: expected 1-64 characters of [A-Za-z0-9._:-]";
    const char *skumsg = "data.sku: expected 1-64 characters of [A-Za-z0-9._:-]";
    const char *evmsg = "event_id: expected 1-128 visible ASCII characters";
    char big[200];

    expect_variant_invalid("user_id", "\"\"", 0, idmsg);
    expect_variant_invalid("user_id", "\"u 1\"", 0, idmsg);
    expect_variant_invalid("user_id", "\"u/1\"", 0, idmsg);
    expect_variant_invalid("user_id", "\"\\u00e9\"", 0, idmsg);
    expect_variant_invalid("user_id", "\"u\\u00001\"", 0, idmsg);
    expect_variant_invalid("sku", "\"\"", 1, skumsg);
    expect_variant_invalid("sku", "\"A\\u00001\"", 1, skumsg);
    expect_variant_invalid("sku", "\"A\\n\"", 1, skumsg);
    expect_variant_invalid("event_id", "\"\"", 0, evmsg);
    expect_variant_invalid("event_id", "\"e 1\"", 0, evmsg);
    expect_variant_invalid("event_id", "\"e\\u0000\"", 0, evmsg);
    expect_variant_invalid("event_id", "\"e\\u007f\"", 0, evmsg);
    /* A NUL cannot smuggle a known type name through. */
    expect_variant_invalid("type", "\"cart.created\\u0000x\"", 0, "type: unknown event type \"cart.created?x\"");

    /* Length boundaries: 64 / 65 and 128 / 129. */
    cart_event ev;
    big[0] = '"';
    memset(big + 1, 'a', 64);
    strcpy(big + 65, "\"");
    expect_variant_ok("user_id", big, 0, &ev);
    ck_assert_uint_eq(strlen(ev.user_id), 64);
    expect_variant_ok("sku", big, 1, &ev);
    ck_assert_uint_eq(strlen(ev.sku), 64);
    memset(big + 1, 'a', 65);
    strcpy(big + 66, "\"");
    expect_variant_invalid("user_id", big, 0, idmsg);
    expect_variant_invalid("sku", big, 1, skumsg);
    memset(big + 1, '~', 128);
    strcpy(big + 129, "\"");
    expect_variant_ok("event_id", big, 0, &ev);
    ck_assert_uint_eq(strlen(ev.event_id), 128);
    memset(big + 1, '~', 129);
    strcpy(big + 130, "\"");
    expect_variant_invalid("event_id", big, 0, evmsg);
}
END_TEST

START_TEST(test_decode_quantity)
{
    const char *msg = "data.quantity: expected an integer";
    cart_event ev;

    expect_variant_invalid("quantity", "2.0", 1, msg);
    expect_variant_invalid("quantity", "2.5", 1, msg);
    expect_variant_invalid("quantity", "2e0", 1, msg);
    expect_variant_invalid("quantity", "\"2\"", 1, msg);
    expect_variant_invalid("quantity", "true", 1, msg);
    expect_variant_invalid("quantity", "null", 1, msg);
    expect_variant_invalid("quantity", "[2]", 1, msg);
    expect_variant_invalid("quantity", "{}", 1, msg);

    /* The range depends on a setting (cart_event_check_quantity): anything that fits int64 decodes. */
    expect_variant_ok("quantity", "0", 1, &ev);
    ck_assert_int_eq(ev.quantity, 0);
    expect_variant_ok("quantity", "-5", 1, &ev);
    ck_assert_int_eq(ev.quantity, -5);
    expect_variant_ok("quantity", "9223372036854775807", 1, &ev);
    ck_assert(ev.quantity == INT64_MAX);
    expect_variant_ok("quantity", "-9223372036854775808", 1, &ev);
    ck_assert(ev.quantity == INT64_MIN);

    /* Beyond int64 the JSON itself is refused, never wrapped around. */
    expect_invalid("{\"event_id\":\"e\",\"type\":\"cart.item_added\",\"user_id\":\"u\",\"occurred_at\":"
                   "\"2026-01-01T00:00:00Z\",\"data\":{\"sku\":\"S\",\"quantity\":9223372036854775808}}",
                   NULL);
    expect_invalid("{\"event_id\":\"e\",\"type\":\"cart.item_added\",\"user_id\":\"u\",\"occurred_at\":"
                   "\"2026-01-01T00:00:00Z\",\"data\":{\"sku\":\"S\",\"quantity\":-99999999999999999999999}}",
                   NULL);
    expect_invalid("{\"event_id\":\"e\",\"type\":\"cart.item_added\",\"user_id\":\"u\",\"occurred_at\":"
                   "\"2026-01-01T00:00:00Z\",\"data\":{\"sku\":\"S\",\"quantity\":1e400}}",
                   NULL);
}
END_TEST

START_TEST(test_decode_expected_version)
{
    const char *msg = "expected_version: expected an integer >= 0";
    cart_event ev;

    expect_variant_ok("expected_version", "null", 0, &ev);
    ck_assert(!ev.has_expected_version);
    expect_variant_ok("expected_version", "0", 0, &ev);
    ck_assert(ev.has_expected_version);
    ck_assert_int_eq(ev.expected_version, 0);
    expect_variant_ok("expected_version", "9223372036854775807", 0, &ev);
    ck_assert(ev.expected_version == INT64_MAX);
    expect_variant_invalid("expected_version", "-1", 0, msg);
    expect_variant_invalid("expected_version", "1.0", 0, msg);
    expect_variant_invalid("expected_version", "\"3\"", 0, msg);
    expect_variant_invalid("expected_version", "false", 0, msg);
    expect_variant_invalid("expected_version", "[]", 0, msg);
}
END_TEST

START_TEST(test_decode_expected_versions_and_active)
{
    const char *msg = "expected_versions: expected an array of 1 to 16 integers >= 0";
    cart_event ev;

    expect_variant_ok("expected_versions", "null", 0, &ev);
    ck_assert_int_eq(ev.n_expected_versions, 0);
    expect_variant_ok("expected_versions", "[7]", 0, &ev);
    ck_assert(ev.n_expected_versions == 1 && ev.expected_versions[0] == 7);
    expect_variant_ok("expected_versions", "[3,0,9223372036854775807,3]", 0, &ev);
    ck_assert(ev.n_expected_versions == 4 && ev.expected_versions[2] == INT64_MAX);
    expect_variant_ok("expected_versions", "[0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15]", 0, &ev);
    ck_assert_int_eq(ev.n_expected_versions, 16);
    expect_variant_invalid("expected_versions", "[0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16]", 0, msg);
    expect_variant_invalid("expected_versions", "[]", 0, msg);
    expect_variant_invalid("expected_versions", "3", 0, msg);
    expect_variant_invalid("expected_versions", "[-1]", 0, msg);
    expect_variant_invalid("expected_versions", "[1.0]", 0, msg);
    expect_variant_invalid("expected_versions", "[\"3\"]", 0, msg);
    expect_variant_invalid("expected_versions", "[null]", 0, msg);

    expect_variant_ok("expected_active", "null", 0, &ev);
    ck_assert(!ev.expected_active);
    expect_variant_ok("expected_active", "false", 0, &ev);
    ck_assert(!ev.expected_active);
    expect_variant_ok("expected_active", "true", 0, &ev);
    ck_assert(ev.expected_active);
    expect_variant_invalid("expected_active", "1", 0, "expected_active: expected true or false");
    expect_variant_invalid("expected_active", "\"true\"", 0, "expected_active: expected true or false");
}
END_TEST

START_TEST(test_encode_preconditions)
{
    cart_event ev = sample(CART_EV_DELETED), back;
    char *out = NULL, err[128];
    size_t len = 0;

    strcpy(ev.event_id, "e1");
    strcpy(ev.user_id, "u1");
    ev.occurred_at_ms = 1795341600000LL;
    ev.n_expected_versions = 2;
    ev.expected_versions[0] = 3;
    ev.expected_versions[1] = 5;
    ev.expected_active = true;
    ck_assert_int_eq(cart_event_encode(&ev, &out, &len), CART_OK);
    ck_assert_str_eq(out, "{\"event_id\":\"e1\",\"type\":\"cart.deleted\",\"user_id\":\"u1\","
                          "\"occurred_at\":\"2026-11-22T10:00:00Z\",\"expected_versions\":[3,5],"
                          "\"expected_active\":true}");
    ck_assert_int_eq(cart_event_decode(out, len, &back, err, sizeof err), CART_OK);
    ck_assert(back.n_expected_versions == 2 && back.expected_versions[1] == 5 && back.expected_active);
    free(out);
    ev.expected_versions[1] = -1;
    ck_assert_int_eq(cart_event_encode(&ev, &out, &len), CART_ERR_INVALID);
    ev.expected_versions[1] = 5;
    ev.n_expected_versions = CART_EXPECTED_MAX + 1;
    ck_assert_int_eq(cart_event_encode(&ev, &out, &len), CART_ERR_INVALID);
}
END_TEST

/* An optional text member `key` of at most `max` visible ASCII characters, decoded into the field
 * at `offset` of a cart_event: null and "" are empty, `max` characters fit, one more or any
 * character outside 0x21..0x7e is refused with `msg`, and a non-string says so. */
static void check_optional_text(const char *key, size_t offset, size_t max, const char *msg)
{
    static const char *const invisible[] = {"\"a\\nb\"", "\"a\\r\\nX-Evil: 1\"", "\"a\\u0000b\"", "\"a b\"",
                                            "\"\\u00e9\""};
    char big[CART_TRACE_MAX + 8], not_string[96];
    cart_event ev;
    const char *field = (const char *)&ev + offset;

    ck_assert_uint_lt(max + 3, sizeof big);
    expect_variant_ok(key, "null", 0, &ev);
    ck_assert_str_eq(field, "");
    expect_variant_ok(key, "\"\"", 0, &ev);
    ck_assert_str_eq(field, "");
    big[0] = '"';
    memset(big + 1, 't', max);
    strcpy(big + 1 + max, "\"");
    expect_variant_ok(key, big, 0, &ev);
    ck_assert_uint_eq(strlen(field), max);
    memset(big + 1, 't', max + 1);
    strcpy(big + 2 + max, "\"");
    expect_variant_invalid(key, big, 0, msg);
    for (size_t i = 0; i < sizeof invisible / sizeof invisible[0]; i++)
        expect_variant_invalid(key, invisible[i], 0, msg);
    snprintf(not_string, sizeof not_string, "%s: expected a string", key);
    expect_variant_invalid(key, "7", 0, not_string);
}

START_TEST(test_decode_optional_texts)
{
    cart_event ev;

    check_optional_text("trace", offsetof(cart_event, trace), CART_TRACE_MAX,
                        "trace: expected at most 127 visible ASCII characters");
    check_optional_text("request_fingerprint", offsetof(cart_event, request_fingerprint), CART_FINGERPRINT_MAX,
                        "request_fingerprint: expected at most 64 visible ASCII characters");
    expect_variant_ok("trace", "\"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\"", 0, &ev);
    ck_assert_str_eq(ev.trace, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
    /* Any client's fingerprint: the worker compares it, byte for byte, and nothing else. */
    expect_variant_ok("request_fingerprint", "\"v2:abc\"", 0, &ev);
    ck_assert_str_eq(ev.request_fingerprint, "v2:abc");
}
END_TEST

START_TEST(test_fingerprints_clash)
{
    ck_assert(cart_fingerprints_clash("aa", "bb"));
    ck_assert(!cart_fingerprints_clash("aa", "aa"));
    /* Nothing to compare: a first outcome without a fingerprint (an older gateway, another
     * client), or a repeat without one, is taken as a repeat, as before fingerprints. */
    ck_assert(!cart_fingerprints_clash("", "bb"));
    ck_assert(!cart_fingerprints_clash("aa", ""));
    ck_assert(!cart_fingerprints_clash("", ""));
    ck_assert(!cart_fingerprints_clash(NULL, "bb"));
    ck_assert(!cart_fingerprints_clash("aa", NULL));
    /* Byte for byte: no case folding. */
    ck_assert(cart_fingerprints_clash("AA", "aa"));
}
END_TEST

START_TEST(test_decode_occurred_at)
{
    const char *msg = "occurred_at: expected an RFC 3339 timestamp";
    cart_event ev;

    expect_variant_invalid("occurred_at", "\"\"", 0, msg);
    expect_variant_invalid("occurred_at", "\"yesterday\"", 0, msg);
    expect_variant_invalid("occurred_at", "\"2026-11-22 10:00:00\"", 0, msg);
    expect_variant_invalid("occurred_at", "\"2026-02-30T10:00:00Z\"", 0, msg);
    expect_variant_invalid("occurred_at", "\"2026-11-22T10:00:00Z\\u0000\"", 0, msg);
    expect_variant_invalid("occurred_at", "\"2026-11-22T10:00:00Zjunk\"", 0, msg);
    /* Times that would not format back with a four-digit year. */
    expect_variant_invalid("occurred_at", "\"0000-01-01T00:00:00+01:00\"", 0, msg);
    expect_variant_invalid("occurred_at", "\"9999-12-31T23:59:59-01:00\"", 0, msg);
    expect_variant_ok("occurred_at", "\"9999-12-31T23:59:59.999Z\"", 0, &ev);
    ck_assert_int_eq(ev.occurred_at_ms, 253402300799999LL);
    expect_variant_ok("occurred_at", "\"0000-01-01T00:00:00Z\"", 0, &ev);
    ck_assert_int_eq(ev.occurred_at_ms, -62167219200000LL);
    expect_variant_ok("occurred_at", "\"1970-01-01T00:00:00Z\"", 0, &ev);
    ck_assert_int_eq(ev.occurred_at_ms, 0);
}
END_TEST

START_TEST(test_decode_malformed)
{
    static const char *const bad[] = {
        "",
        " ",
        "null",
        "true",
        "1",
        "\"cart.created\"",
        "[]",
        "[{}]",
        "{",
        "}",
        "{\"event_id\":}",
        "{\"event_id\" \"e\"}",
        "{'event_id':'e'}",
        "{\"event_id\":\"e\",}",
        "\xef\xbb\xbf{}",
        "{\"event_id\":\"\xff\"}",
        "{\"event_id\":\"\xc3\"}",
        "{\"event_id\":\"\\ud800\"}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        expect_invalid(bad[i], NULL);

    expect_invalid("[]", "event: expected a JSON object");
    expect_invalid("{}", "event_id: missing");
}
END_TEST

START_TEST(test_decode_duplicates_and_trailing)
{
    /* A duplicated key is ambiguous: which one would another consumer read? */
    expect_invalid("{\"event_id\":\"e\",\"event_id\":\"f\",\"type\":\"cart.created\",\"user_id\":\"u\","
                   "\"occurred_at\":\"2026-01-01T00:00:00Z\"}",
                   NULL);
    expect_invalid("{\"event_id\":\"e\",\"type\":\"cart.item_added\",\"user_id\":\"u\",\"occurred_at\":"
                   "\"2026-01-01T00:00:00Z\",\"data\":{\"sku\":\"S\",\"quantity\":1,\"quantity\":1000}}",
                   NULL);
    expect_invalid("{\"x\":1,\"x\":2,\"event_id\":\"e\",\"type\":\"cart.created\",\"user_id\":\"u\","
                   "\"occurred_at\":\"2026-01-01T00:00:00Z\"}",
                   NULL);

    const char *created = "{\"event_id\":\"e\",\"type\":\"cart.created\",\"user_id\":\"u\","
                          "\"occurred_at\":\"2026-01-01T00:00:00Z\"}";
    char buf[256];
    snprintf(buf, sizeof buf, "%s x", created);
    expect_invalid(buf, NULL);
    snprintf(buf, sizeof buf, "%s{}", created);
    expect_invalid(buf, NULL);
    snprintf(buf, sizeof buf, "%s,", created);
    expect_invalid(buf, NULL);

    /* A NUL byte after the object is trailing garbage too. */
    cart_event ev;
    char err[128];
    size_t n = strlen(created);
    memcpy(buf, created, n);
    buf[n] = '\0';
    ck_assert_int_eq(decode_n(buf, n + 1, &ev, err, sizeof err), CART_ERR_INVALID);
    /* ... and one inside it. */
    memcpy(buf, created, n);
    buf[10] = '\0';
    ck_assert_int_eq(decode_n(buf, n, &ev, err, sizeof err), CART_ERR_INVALID);
    ck_assert_int_eq(decode_n(created, n, &ev, err, sizeof err), CART_OK);
}
END_TEST

START_TEST(test_decode_deep_nesting)
{
    size_t depth = 100000;
    char *buf = malloc(2 * depth + 64);
    cart_event ev;
    char err[128];

    ck_assert_ptr_nonnull(buf);
    memset(buf, '[', depth);
    memset(buf + depth, ']', depth);
    ck_assert_int_eq(decode_n(buf, 2 * depth, &ev, err, sizeof err), CART_ERR_INVALID);
    for (size_t i = 0; i < depth; i++)
        buf[i] = (i % 2) ? '[' : '{';
    ck_assert_int_eq(decode_n(buf, depth, &ev, err, sizeof err), CART_ERR_INVALID);

    /* Nesting inside an unknown field, moderately deep, is still just ignored. */
    size_t d = 500, n = 0;
    n += (size_t)sprintf(buf + n, "{\"deep\":");
    memset(buf + n, '[', d);
    n += d;
    memset(buf + n, ']', d);
    n += d;
    n += (size_t)sprintf(buf + n, ",\"event_id\":\"e\",\"type\":\"cart.created\",\"user_id\":\"u\","
                                  "\"occurred_at\":\"2026-01-01T00:00:00Z\"}");
    ck_assert_int_eq(decode_n(buf, n, &ev, err, sizeof err), CART_OK);
    free(buf);
}
END_TEST

START_TEST(test_decode_error_buffer)
{
    cart_event ev;
    char err[16];

    /* No buffer, or a zero-sized one, is fine. */
    ck_assert_int_eq(cart_event_decode("{}", 2, &ev, NULL, 0), CART_ERR_INVALID);
    err[0] = 'z';
    ck_assert_int_eq(cart_event_decode("{}", 2, &ev, err, 0), CART_ERR_INVALID);
    ck_assert_int_eq(err[0], 'z');
    /* A small one is truncated and terminated. */
    ck_assert_int_eq(cart_event_decode("{}", 2, &ev, err, sizeof err), CART_ERR_INVALID);
    ck_assert_str_eq(err, "event_id: missi");
    /* NULL input. */
    ck_assert_int_eq(cart_event_decode(NULL, 0, &ev, err, sizeof err), CART_ERR_INVALID);
    ck_assert_int_eq(cart_event_decode(NULL, 5, &ev, err, sizeof err), CART_ERR_INVALID);
}
END_TEST

START_TEST(test_decode_error_is_printable)
{
    cart_event ev;
    char err[256];

    /* The reason goes into a NATS header: never a control byte, however odd the input. */
    const char *inputs[] = {
        "{\"event_id\":\"e\",\"type\":\"a\\r\\nb\\u0000c\\u00e9\",\"user_id\":\"u\",\"occurred_at\":\"x\"}",
        "{\"a\":\n\n\x01}",
        "\x01\x02\r\n",
        "{\"event_id\":\"e\",\"type\":\"cart.created\",\"user_id\":\"u\",\"occurred_at\":\"2026-01-01T00:00:00Z\"}"
        "\r\n\x7f\xff",
    };
    for (size_t i = 0; i < sizeof inputs / sizeof inputs[0]; i++) {
        ck_assert_int_eq(decode(inputs[i], &ev, err, sizeof err), CART_ERR_INVALID);
        ck_assert(err[0] != '\0');
        for (const char *p = err; *p; p++)
            ck_assert_msg(*p >= 0x20 && *p <= 0x7e, "byte 0x%02x in \"%s\"", (unsigned char)*p, err);
    }

    /* A long unknown type is quoted only in part. */
    char *s =
        variant("type",
                "\"cart.xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"",
                0);
    ck_assert_int_eq(decode(s, &ev, err, sizeof err), CART_ERR_INVALID);
    free(s);
    ck_assert_str_eq(err, "type: unknown event type "
                          "\"cart.xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx...\"");
}
END_TEST

START_TEST(test_encode_exact)
{
    cart_event ev = sample(CART_EV_ITEM_ADDED);
    char *out = NULL;
    size_t len = 0;

    strcpy(ev.event_id, "e1");
    strcpy(ev.user_id, "u1");
    strcpy(ev.sku, "A1");
    ev.quantity = 2;
    ev.occurred_at_ms = 1795341600000LL;
    ev.has_expected_version = true;
    ev.expected_version = 3;
    strcpy(ev.trace, "t-1");
    strcpy(ev.request_fingerprint, "f00d");
    ck_assert_int_eq(cart_event_encode(&ev, &out, &len), CART_OK);
    ck_assert_str_eq(out, "{\"event_id\":\"e1\",\"type\":\"cart.item_added\",\"user_id\":\"u1\","
                          "\"occurred_at\":\"2026-11-22T10:00:00Z\",\"data\":{\"sku\":\"A1\",\"quantity\":2},"
                          "\"expected_version\":3,\"trace\":\"t-1\",\"request_fingerprint\":\"f00d\"}");
    ck_assert_uint_eq(len, strlen(out));
    free(out);

    ev = sample(CART_EV_ITEM_REMOVED);
    ck_assert_int_eq(cart_event_encode(&ev, &out, NULL), CART_OK);
    ck_assert_str_eq(out, "{\"event_id\":\"0b5c2f6e-9d1a-4c4e-8f00-123456789abc\",\"type\":\"cart.item_removed\","
                          "\"user_id\":\"user:42\",\"occurred_at\":\"2026-11-22T10:00:00.123Z\","
                          "\"data\":{\"sku\":\"SKU-1.b_c\"}}");
    free(out);

    /* Non-item events carry no data, even if the struct has leftovers. */
    ev = sample(CART_EV_CHECKED_OUT);
    strcpy(ev.sku, "ignored");
    ev.quantity = 9;
    ev.has_expected_version = true;
    ev.expected_version = 0;
    ck_assert_int_eq(cart_event_encode(&ev, &out, &len), CART_OK);
    ck_assert_str_eq(out, "{\"event_id\":\"0b5c2f6e-9d1a-4c4e-8f00-123456789abc\",\"type\":\"cart.checked_out\","
                          "\"user_id\":\"user:42\",\"occurred_at\":\"2026-11-22T10:00:00.123Z\","
                          "\"expected_version\":0}");
    free(out);
}
END_TEST

START_TEST(test_encode_roundtrip)
{
    for (int t = CART_EV_CREATED; t <= CART_EV_CHECKED_OUT; t++) {
        for (int variant_no = 0; variant_no < 4; variant_no++) {
            cart_event ev = sample((cart_event_type)t), back;
            char *out = NULL;
            size_t len = 0;
            char err[128];

            if (variant_no & 1) {
                ev.has_expected_version = true;
                ev.expected_version = 41 + variant_no;
            }
            if (variant_no & 2) {
                strcpy(ev.trace, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
                memset(ev.request_fingerprint, 'c', CART_FINGERPRINT_MAX);
                ev.occurred_at_ms = 1000;
                if (ev.quantity) {
                    ev.quantity = INT64_MIN;
                    full_snapshot(&ev);
                }
            }
            ck_assert_int_eq(cart_event_encode(&ev, &out, &len), CART_OK);
            ck_assert_int_eq(cart_event_decode(out, len, &back, err, sizeof err), CART_OK);
            assert_event_eq(&ev, &back);
            free(out);
        }
    }
}
END_TEST

START_TEST(test_encode_invalid)
{
    cart_event ev;
    char sentinel[] = "untouched";
    char *out = sentinel;

    ev = sample(CART_EV_CREATED);
    ev.type = (cart_event_type)0;
    ck_assert_int_eq(cart_event_encode(&ev, &out, NULL), CART_ERR_INVALID);
    ev.type = (cart_event_type)99;
    ck_assert_int_eq(cart_event_encode(&ev, &out, NULL), CART_ERR_INVALID);

    ev = sample(CART_EV_CREATED);
    ev.event_id[0] = '\0';
    ck_assert_int_eq(cart_event_encode(&ev, &out, NULL), CART_ERR_INVALID);
    memset(ev.event_id, 'a', sizeof ev.event_id); /* not terminated */
    ck_assert_int_eq(cart_event_encode(&ev, &out, NULL), CART_ERR_INVALID);

    ev = sample(CART_EV_CREATED);
    strcpy(ev.user_id, "bad id");
    ck_assert_int_eq(cart_event_encode(&ev, &out, NULL), CART_ERR_INVALID);
    memset(ev.user_id, 'a', sizeof ev.user_id);
    ck_assert_int_eq(cart_event_encode(&ev, &out, NULL), CART_ERR_INVALID);

    ev = sample(CART_EV_ITEM_QUANTITY_SET);
    ev.sku[0] = '\0';
    ck_assert_int_eq(cart_event_encode(&ev, &out, NULL), CART_ERR_INVALID);

    ev = sample(CART_EV_CREATED);
    ev.has_expected_version = true;
    ev.expected_version = -1;
    ck_assert_int_eq(cart_event_encode(&ev, &out, NULL), CART_ERR_INVALID);

    ev = sample(CART_EV_CREATED);
    strcpy(ev.trace, "a\nb");
    ck_assert_int_eq(cart_event_encode(&ev, &out, NULL), CART_ERR_INVALID);
    memset(ev.trace, 't', sizeof ev.trace);
    ck_assert_int_eq(cart_event_encode(&ev, &out, NULL), CART_ERR_INVALID);

    ev = sample(CART_EV_CREATED);
    strcpy(ev.request_fingerprint, "a b");
    ck_assert_int_eq(cart_event_encode(&ev, &out, NULL), CART_ERR_INVALID);
    memset(ev.request_fingerprint, 'f', sizeof ev.request_fingerprint);
    ck_assert_int_eq(cart_event_encode(&ev, &out, NULL), CART_ERR_INVALID);

    ev = sample(CART_EV_CREATED);
    ev.occurred_at_ms = INT64_MAX;
    ck_assert_int_eq(cart_event_encode(&ev, &out, NULL), CART_ERR_INVALID);
    ev.occurred_at_ms = INT64_MIN;
    ck_assert_int_eq(cart_event_encode(&ev, &out, NULL), CART_ERR_INVALID);
    ev.occurred_at_ms = 253402300800000LL;
    ck_assert_int_eq(cart_event_encode(&ev, &out, NULL), CART_ERR_INVALID);

    ck_assert_ptr_eq(out, sentinel);
}
END_TEST

static int cmp_str(const void *a, const void *b)
{
    return strcmp((const char *)a, (const char *)b);
}

/* Ids drawn on two threads at once (each thread draws from its own pool of random bytes). */
static void *draw_ids(void *arg)
{
    char(*ids)[37] = arg;
    for (int i = 0; i < 1000; i++)
        cart_uuid_v4(ids[i]);
    return NULL;
}

START_TEST(test_uuid_v4_threads)
{
    char(*ids)[37] = calloc(2000, sizeof *ids);
    pthread_t th[2];

    ck_assert_ptr_nonnull(ids);
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(pthread_create(&th[i], NULL, draw_ids, ids + 1000 * i), 0);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    qsort(ids, 2000, sizeof *ids, cmp_str);
    for (int i = 1; i < 2000; i++)
        ck_assert_str_ne(ids[i - 1], ids[i]);
    free(ids);
}
END_TEST

START_TEST(test_uuid_v4)
{
    enum { N = 2000 };
    char(*ids)[37] = calloc(N, sizeof *ids);
    ck_assert_ptr_nonnull(ids);

    for (int i = 0; i < N; i++) {
        char *u = ids[i];
        cart_uuid_v4(u);
        ck_assert_uint_eq(strlen(u), 36);
        for (int k = 0; k < 36; k++) {
            if (k == 8 || k == 13 || k == 18 || k == 23)
                ck_assert_int_eq(u[k], '-');
            else
                ck_assert_msg((u[k] >= '0' && u[k] <= '9') || (u[k] >= 'a' && u[k] <= 'f'), "%s", u);
        }
        ck_assert_int_eq(u[14], '4');
        ck_assert_ptr_nonnull(strchr("89ab", u[19]));
        ck_assert(cart_valid_event_id(u, 36));
    }
    qsort(ids, N, sizeof *ids, cmp_str);
    for (int i = 1; i < N; i++)
        ck_assert_str_ne(ids[i - 1], ids[i]);
    free(ids);

    cart_event ev = sample(CART_EV_CREATED), other = ev;
    cart_event_new_id(&ev);
    cart_event_new_id(&other);
    ck_assert_uint_eq(strlen(ev.event_id), 36);
    ck_assert_str_ne(ev.event_id, other.event_id);
    ck_assert_str_eq(ev.user_id, "user:42");
}
END_TEST

/* Mutations of a valid event: never a crash or an overread; whatever decodes re-encodes. */
static void check_mutant(const char *buf, size_t len)
{
    cart_event ev, back;
    char err[128];
    char *out = NULL;
    size_t outlen = 0;

    if (decode_n(buf, len, &ev, err, sizeof err) != CART_OK) {
        ck_assert(err[0] != '\0');
        return;
    }
    ck_assert_int_eq(cart_event_encode(&ev, &out, &outlen), CART_OK);
    ck_assert_int_eq(cart_event_decode(out, outlen, &back, err, sizeof err), CART_OK);
    assert_event_eq(&ev, &back);
    free(out);
}

START_TEST(test_decode_mutations)
{
    const char *orig = "{\"event_id\":\"e-1\",\"type\":\"cart.item_quantity_set\",\"user_id\":\"u1\","
                       "\"occurred_at\":\"2026-11-22T10:00:00.5+01:00\",\"data\":{\"sku\":\"A1\",\"quantity\":12},"
                       "\"expected_version\":3,\"trace\":\"abc\"}";
    static const char subst[] = {'\0', '"', '\\', '{', '}', '[', ']',    ':',    ',',   '0',
                                 '9',  '-', 'e',  '.', ' ', 'x', '\x7f', '\x80', '\xff'};
    size_t n = strlen(orig);
    char *buf = malloc(n);
    ck_assert_ptr_nonnull(buf);

    for (size_t cut = 0; cut <= n; cut++)
        check_mutant(orig, cut);
    for (size_t i = 0; i < n; i++) {
        for (size_t k = 0; k < sizeof subst; k++) {
            memcpy(buf, orig, n);
            buf[i] = subst[k];
            check_mutant(buf, n);
        }
        memcpy(buf, orig, n);
        buf[i] = (char)(buf[i] ^ 0x20);
        check_mutant(buf, n);
    }
    uint32_t x = 2463534242u;
    for (int round = 0; round < 20000; round++) {
        memcpy(buf, orig, n);
        for (int m = 0; m < 3; m++) {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            buf[x % n] = (char)(x >> 24);
        }
        check_mutant(buf, n - (x >> 8) % 4);
    }
    free(buf);
}
END_TEST

/* BASE_ITEM whose data also has the members of the JSON object `members` ("{...}"). */
static char *with_data(const char *members)
{
    json_error_t jerr;
    json_t *root = json_loads(BASE_ITEM, 0, &jerr);
    json_t *more = json_loads(members, JSON_ALLOW_NUL, &jerr);
    ck_assert_ptr_nonnull(root);
    ck_assert_msg(more != NULL, "bad test members %s", members);
    ck_assert_int_eq(json_object_update(json_object_get(root, "data"), more), 0);
    json_decref(more);
    char *s = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(root);
    ck_assert_ptr_nonnull(s);
    return s;
}

static void expect_data_invalid(const char *members, const char *reason)
{
    char *s = with_data(members);
    expect_invalid(s, reason);
    free(s);
}

static void expect_data_ok(const char *members, cart_event *ev)
{
    char err[256] = "";
    char *s = with_data(members);
    ck_assert_msg(decode(s, ev, err, sizeof err) == CART_OK, "refused %s: %s", s, err);
    free(s);
}

/* A JSON string literal of `n` copies of `unit` (a string of one character, maybe multibyte). */
static char *repeated(const char *unit, size_t n)
{
    size_t u = strlen(unit);
    char *s = malloc(n * u + 3);
    ck_assert_ptr_nonnull(s);
    s[0] = '"';
    for (size_t i = 0; i < n; i++)
        memcpy(s + 1 + i * u, unit, u);
    memcpy(s + 1 + n * u, "\"", 2);
    return s;
}

START_TEST(test_decode_snapshot)
{
    cart_event ev;

    /* Left out: every member absent, as in any event older than snapshots. */
    ck_assert_int_eq(decode(BASE_ITEM, &ev, NULL, 0), CART_OK);
    ck_assert(!ev.snap.has_name && !ev.snap.has_price && !ev.snap.has_attributes);
    ck_assert_str_eq(ev.snap.name, "");
    ck_assert_str_eq(ev.snap.currency, "");

    /* All of them; the attributes come out compact, their keys sorted. */
    expect_data_ok("{\"name\":\"Mug \\\"Blue\\\" \u2615\",\"unit_price\":1999,\"currency\":\"EUR\","
                   "\"attributes\":{\"size\":\"L\",\"color\":\"blue\"}}",
                   &ev);
    ck_assert(ev.snap.has_name && ev.snap.has_price && ev.snap.has_attributes);
    ck_assert_str_eq(ev.snap.name, "Mug \"Blue\" \xe2\x98\x95");
    ck_assert_int_eq(ev.snap.unit_price, 1999);
    ck_assert_str_eq(ev.snap.currency, "EUR");
    ck_assert_str_eq(ev.snap.attributes, "{\"color\":\"blue\",\"size\":\"L\"}");

    /* An empty name and empty attributes are given, not absent; a price of 0 is a price. */
    expect_data_ok("{\"name\":\"\",\"attributes\":{},\"unit_price\":0,\"currency\":\"JPY\"}", &ev);
    ck_assert(ev.snap.has_name && ev.snap.has_price && ev.snap.has_attributes);
    ck_assert_str_eq(ev.snap.attributes, "{}");
    ck_assert_int_eq(ev.snap.unit_price, 0);

    /* A removal never reads them (nor do the types without data); a set does, also to 0. */
    ck_assert_int_eq(decode("{\"event_id\":\"e\",\"type\":\"cart.item_removed\",\"user_id\":\"u\","
                            "\"occurred_at\":\"2026-01-01T00:00:00Z\",\"data\":{\"sku\":\"S\",\"name\":5,"
                            "\"currency\":\"x\"}}",
                            &ev, NULL, 0),
                     CART_OK);
    ck_assert(!ev.snap.has_name && !ev.snap.has_price);
    ck_assert_int_eq(decode("{\"event_id\":\"e\",\"type\":\"cart.item_quantity_set\",\"user_id\":\"u\","
                            "\"occurred_at\":\"2026-01-01T00:00:00Z\",\"data\":{\"sku\":\"S\",\"quantity\":0,"
                            "\"unit_price\":5,\"currency\":\"USD\"}}",
                            &ev, NULL, 0),
                     CART_OK);
    ck_assert(ev.snap.has_price && ev.snap.unit_price == 5);
}
END_TEST

START_TEST(test_decode_snapshot_name)
{
    const char *msg = "data.name: expected a string of at most 200 bytes of UTF-8";
    char members[1024];
    cart_event ev;
    char *name;

    /* 200 bytes, also when they are 66 three-byte characters and two more bytes. */
    name = repeated("n", 200);
    snprintf(members, sizeof members, "{\"name\":%s}", name);
    expect_data_ok(members, &ev);
    ck_assert_uint_eq(strlen(ev.snap.name), 200);
    free(name);
    name = repeated("\xe2\x98\x95", 66);
    snprintf(members, sizeof members, "{\"name\":\"ab%s}", name + 1);
    expect_data_ok(members, &ev);
    ck_assert_uint_eq(strlen(ev.snap.name), 200);
    snprintf(members, sizeof members, "{\"name\":\"abc%s}", name + 1);
    expect_data_invalid(members, msg);
    free(name);
    name = repeated("n", 201);
    snprintf(members, sizeof members, "{\"name\":%s}", name);
    expect_data_invalid(members, msg);
    free(name);
    /* Not text: other types, null, a NUL (which neither C strings nor PostgreSQL's text hold). */
    expect_data_invalid("{\"name\":5}", msg);
    expect_data_invalid("{\"name\":null}", msg);
    expect_data_invalid("{\"name\":[\"n\"]}", msg);
    expect_data_invalid("{\"name\":\"a\\u0000b\"}", msg);
}
END_TEST

START_TEST(test_decode_snapshot_price)
{
    const char *price = "data.unit_price: expected an integer from 0 to 100000000000";
    const char *code = "data.currency: expected an ISO 4217 code (three upper-case letters)";
    static const char *const bad_prices[] = {"-1",   "100000000001", "9223372036854775807", "2.0", "1e3", "\"5\"",
                                             "null", "true"};
    static const char *const bad_codes[] = {"\"eur\"", "\"EURO\"",      "\"EU\"", "\"\"", "\"E1R\"",
                                            "\"E R\"", "\"\\u00c9UR\"", "3",      "null", "[\"EUR\"]"};
    char members[256];
    cart_event ev;

    expect_data_ok("{\"unit_price\":100000000000,\"currency\":\"CHF\"}", &ev);
    ck_assert(ev.snap.unit_price == 100000000000LL);
    for (size_t i = 0; i < sizeof bad_prices / sizeof bad_prices[0]; i++) {
        snprintf(members, sizeof members, "{\"unit_price\":%s,\"currency\":\"EUR\"}", bad_prices[i]);
        expect_data_invalid(members, price);
    }
    for (size_t i = 0; i < sizeof bad_codes / sizeof bad_codes[0]; i++) {
        snprintf(members, sizeof members, "{\"unit_price\":1,\"currency\":%s}", bad_codes[i]);
        expect_data_invalid(members, code);
    }
    /* They come together. */
    expect_data_invalid("{\"currency\":\"EUR\"}", "data.currency: needs unit_price");
    expect_data_invalid("{\"unit_price\":5}", "data.currency: required with unit_price");
    /* The same reader with no prefix, as the gateway uses it on a request body. */
    json_t *body = json_loads("{\"quantity\":1,\"currency\":\"EUR\"}", 0, NULL);
    char err[128];
    cart_snapshot snap;
    memset(&snap, 0x5a, sizeof snap);
    cart_snapshot before = snap;
    ck_assert_int_eq(cart_snapshot_read(body, "", &snap, err, sizeof err), CART_ERR_INVALID);
    ck_assert_str_eq(err, "currency: needs unit_price");
    ck_assert_mem_eq(&snap, &before, sizeof snap);
    json_decref(body);
}
END_TEST

START_TEST(test_decode_snapshot_attributes)
{
    const char *shape = "data.attributes: expected an object of at most 16 members";
    const char *keys = "data.attributes: expected keys of 1-64 characters of [A-Za-z0-9._:-]";
    char members[4096], *value;
    size_t at;
    cart_event ev;

    expect_data_invalid("{\"attributes\":[]}", shape);
    expect_data_invalid("{\"attributes\":\"a=b\"}", shape);
    expect_data_invalid("{\"attributes\":null}", shape);
    /* 16 members, not 17. */
    at = (size_t)snprintf(members, sizeof members, "{\"attributes\":{");
    for (int i = 0; i < 16; i++)
        at += (size_t)snprintf(members + at, sizeof members - at, "%s\"k%02d\":\"v\"", i ? "," : "", i);
    snprintf(members + at, sizeof members - at, "}}");
    expect_data_ok(members, &ev);
    snprintf(members + at, sizeof members - at, ",\"k16\":\"v\"}}");
    expect_data_invalid(members, shape);
    /* Keys: 1..64 id characters. */
    expect_data_invalid("{\"attributes\":{\"\":\"v\"}}", keys);
    expect_data_invalid("{\"attributes\":{\"a b\":\"v\"}}", keys);
    /* jansson refuses a NUL in a key even where it allows one in a value: bad JSON. */
    expect_invalid(
        "{\"event_id\":\"e\",\"type\":\"cart.item_added\",\"user_id\":\"u\",\"occurred_at\":"
        "\"2026-01-01T00:00:00Z\",\"data\":{\"sku\":\"S\",\"quantity\":1,\"attributes\":{\"a\\u0000b\":\"v\"}}}",
        NULL);
    snprintf(members, sizeof members, "{\"attributes\":{\"%065d\":\"v\"}}", 0);
    expect_data_invalid(members, keys);
    snprintf(members, sizeof members, "{\"attributes\":{\"%064d\":\"v\"}}", 0);
    expect_data_ok(members, &ev);
    /* Values: strings of at most 256 bytes, named by their key. */
    expect_data_invalid("{\"attributes\":{\"size\":1}}",
                        "data.attributes.size: expected a string of at most 256 bytes of UTF-8");
    expect_data_invalid("{\"attributes\":{\"size\":\"L\\u0000\"}}",
                        "data.attributes.size: expected a string of at most 256 bytes of UTF-8");
    value = repeated("v", 257);
    snprintf(members, sizeof members, "{\"attributes\":{\"a\":%s}}", value);
    expect_data_invalid(members, "data.attributes.a: expected a string of at most 256 bytes of UTF-8");
    free(value);
    value = repeated("v", 256);
    snprintf(members, sizeof members, "{\"attributes\":{\"a\":%s}}", value);
    expect_data_ok(members, &ev);
    free(value);
    /* At most 2048 bytes as compact JSON: {"a0":"..."...} is 65 bytes and the values. */
    for (int total = 2048; total <= 2049; total++) {
        at = (size_t)snprintf(members, sizeof members, "{\"attributes\":{");
        for (int i = 0; i < 8; i++) {
            value = repeated("v", i < 7 ? 256 : (size_t)(total - 65 - 7 * 256));
            at += (size_t)snprintf(members + at, sizeof members - at, "%s\"a%d\":%s", i ? "," : "", i, value);
            free(value);
        }
        snprintf(members + at, sizeof members - at, "}}");
        if (total == 2048) {
            expect_data_ok(members, &ev);
            ck_assert_uint_eq(strlen(ev.snap.attributes), 2048);
        } else {
            expect_data_invalid(members, "data.attributes: expected at most 2048 bytes of compact JSON");
        }
    }
    /* Escapes stay escaped, other text stays as it is: the stored form is valid JSON. */
    expect_data_ok("{\"attributes\":{\"q\":\"a\\\"b\\\\c\\n\",\"e\":\"\u00e9\"}}", &ev);
    ck_assert_str_eq(ev.snap.attributes, "{\"e\":\"\xc3\xa9\",\"q\":\"a\\\"b\\\\c\\n\"}");
}
END_TEST

START_TEST(test_check_quantity)
{
    cart_event ev = sample(CART_EV_ITEM_ADDED);
    char err[128];

    ev.quantity = 1;
    ck_assert_int_eq(cart_event_check_quantity(&ev, 999, err, sizeof err), CART_OK);
    ev.quantity = 999;
    ck_assert_int_eq(cart_event_check_quantity(&ev, 999, err, sizeof err), CART_OK);
    ev.quantity = 1000;
    ck_assert_int_eq(cart_event_check_quantity(&ev, 999, err, sizeof err), CART_ERR_INVALID);
    ck_assert_str_eq(err, "data.quantity: expected an integer from 1 to 999");
    ev.quantity = 0;
    ck_assert_int_eq(cart_event_check_quantity(&ev, 999, NULL, 0), CART_ERR_INVALID);
    ev.quantity = INT64_MIN;
    ck_assert_int_eq(cart_event_check_quantity(&ev, 999, err, sizeof err), CART_ERR_INVALID);
    /* A set may be 0; the bound is the setting. */
    ev = sample(CART_EV_ITEM_QUANTITY_SET);
    ev.quantity = 0;
    ck_assert_int_eq(cart_event_check_quantity(&ev, 5, err, sizeof err), CART_OK);
    ev.quantity = 6;
    ck_assert_int_eq(cart_event_check_quantity(&ev, 5, err, sizeof err), CART_ERR_INVALID);
    ck_assert_str_eq(err, "data.quantity: expected an integer from 0 to 5");
    ev.quantity = -1;
    ck_assert_int_eq(cart_event_check_quantity(&ev, 5, err, sizeof err), CART_ERR_INVALID);
    /* Other types have no quantity. */
    ev = sample(CART_EV_ITEM_REMOVED);
    ev.quantity = -7;
    ck_assert_int_eq(cart_event_check_quantity(&ev, 5, err, sizeof err), CART_OK);
    ev = sample(CART_EV_CHECKED_OUT);
    ck_assert_int_eq(cart_event_check_quantity(&ev, 5, err, sizeof err), CART_OK);
}
END_TEST

START_TEST(test_snapshot_valid)
{
    cart_event ev = sample(CART_EV_ITEM_ADDED);
    cart_snapshot s;

    memset(&s, 0, sizeof s);
    ck_assert(cart_snapshot_valid(&s));
    full_snapshot(&ev);
    ck_assert(cart_snapshot_valid(&ev.snap));
    s = ev.snap;
    strcpy(s.name, "bad \xff");
    ck_assert(!cart_snapshot_valid(&s));
    s = ev.snap;
    s.has_name = false; /* a name without its flag */
    ck_assert(!cart_snapshot_valid(&s));
    s = ev.snap;
    memset(s.name, 'n', sizeof s.name); /* not terminated */
    ck_assert(!cart_snapshot_valid(&s));
    s = ev.snap;
    s.unit_price = CART_PRICE_MAX + 1;
    ck_assert(!cart_snapshot_valid(&s));
    s.unit_price = -1;
    ck_assert(!cart_snapshot_valid(&s));
    s = ev.snap;
    strcpy(s.currency, "Eur");
    ck_assert(!cart_snapshot_valid(&s));
    s = ev.snap;
    s.has_price = false; /* a currency left without a price */
    s.unit_price = 0;
    ck_assert(!cart_snapshot_valid(&s));
    s = ev.snap;
    strcpy(s.attributes, "[1]");
    ck_assert(!cart_snapshot_valid(&s));
    strcpy(s.attributes, "");
    ck_assert(!cart_snapshot_valid(&s));
    s.has_attributes = false;
    ck_assert(cart_snapshot_valid(&s));
}
END_TEST

START_TEST(test_encode_snapshot)
{
    cart_event ev = sample(CART_EV_ITEM_QUANTITY_SET), back;
    char *out = NULL;
    size_t len = 0;
    char err[128];

    full_snapshot(&ev);
    ck_assert_int_eq(cart_event_encode(&ev, &out, &len), CART_OK);
    ck_assert_str_eq(out,
                     "{\"event_id\":\"0b5c2f6e-9d1a-4c4e-8f00-123456789abc\",\"type\":\"cart.item_quantity_set\","
                     "\"user_id\":\"user:42\",\"occurred_at\":\"2026-11-22T10:00:00.123Z\","
                     "\"data\":{\"sku\":\"SKU-1.b_c\",\"quantity\":7,\"name\":\"Mug \\\"Blue\\\" \xe2\x98\x95\","
                     "\"unit_price\":1999,\"currency\":\"EUR\",\"attributes\":{\"color\":\"blue\",\"size\":\"L\"}}}");
    ck_assert_int_eq(cart_event_decode(out, len, &back, err, sizeof err), CART_OK);
    assert_event_eq(&ev, &back);
    free(out);

    /* Only what the event has: a name alone. */
    memset(&ev.snap, 0, sizeof ev.snap);
    ev.snap.has_name = true;
    ck_assert_int_eq(cart_event_encode(&ev, &out, &len), CART_OK);
    ck_assert_ptr_nonnull(strstr(out, "\"quantity\":7,\"name\":\"\"}"));
    free(out);

    /* What the decoder would refuse is never encoded. */
    char sentinel[] = "untouched";
    out = sentinel;
    full_snapshot(&ev);
    strcpy(ev.snap.attributes, "{\"a\":}");
    ck_assert_int_eq(cart_event_encode(&ev, &out, NULL), CART_ERR_INVALID);
    strcpy(ev.snap.attributes, "{\"a\":\"b\"}");
    strcpy(ev.snap.currency, "usd");
    ck_assert_int_eq(cart_event_encode(&ev, &out, NULL), CART_ERR_INVALID);
    strcpy(ev.snap.currency, "USD");
    strcpy(ev.snap.name, "\xc3");
    ck_assert_int_eq(cart_event_encode(&ev, &out, NULL), CART_ERR_INVALID);
    ck_assert_ptr_eq(out, sentinel);
}
END_TEST

static Suite *event_suite(void)
{
    Suite *s = suite_create("event");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_type_names);
    tcase_add_test(tc, test_valid_id);
    tcase_add_test(tc, test_valid_event_id);
    tcase_add_test(tc, test_decode_full);
    tcase_add_test(tc, test_decode_each_type);
    tcase_add_test(tc, test_decode_unknown_fields_ignored);
    tcase_add_test(tc, test_decode_missing_fields);
    tcase_add_test(tc, test_decode_wrong_types);
    tcase_add_test(tc, test_decode_bad_ids);
    tcase_add_test(tc, test_decode_quantity);
    tcase_add_test(tc, test_decode_expected_version);
    tcase_add_test(tc, test_decode_expected_versions_and_active);
    tcase_add_test(tc, test_decode_optional_texts);
    tcase_add_test(tc, test_fingerprints_clash);
    tcase_add_test(tc, test_decode_occurred_at);
    tcase_add_test(tc, test_decode_malformed);
    tcase_add_test(tc, test_decode_duplicates_and_trailing);
    tcase_add_test(tc, test_decode_deep_nesting);
    tcase_add_test(tc, test_decode_error_buffer);
    tcase_add_test(tc, test_decode_error_is_printable);
    tcase_add_test(tc, test_encode_exact);
    tcase_add_test(tc, test_encode_preconditions);
    tcase_add_test(tc, test_encode_roundtrip);
    tcase_add_test(tc, test_encode_invalid);
    tcase_add_test(tc, test_uuid_v4);
    tcase_add_test(tc, test_uuid_v4_threads);
    tcase_add_test(tc, test_decode_mutations);
    tcase_add_test(tc, test_decode_snapshot);
    tcase_add_test(tc, test_decode_snapshot_name);
    tcase_add_test(tc, test_decode_snapshot_price);
    tcase_add_test(tc, test_decode_snapshot_attributes);
    tcase_add_test(tc, test_check_quantity);
    tcase_add_test(tc, test_snapshot_valid);
    tcase_add_test(tc, test_encode_snapshot);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(event_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
