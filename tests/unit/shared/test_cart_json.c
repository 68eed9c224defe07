#include <check.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cartshard/cart.h"

#define CID "6f1c2a9e-0d3b-4c51-9a77-0e2f3d4c5b6a"

/* The example cart of docs/reference/api.md (The cart). */
static const char EXAMPLE[] =
    "{\"user_id\":\"u1\",\"cart_id\":\"" CID "\",\"status\":\"active\",\"version\":3,"
    "\"items\":[{\"sku\":\"A1\",\"quantity\":2},{\"sku\":\"B7\",\"quantity\":1}],"
    "\"item_count\":3,\"currency\":null,\"subtotal\":0,\"created_at\":\"2026-11-22T10:00:00Z\","
    "\"updated_at\":\"2026-11-22T10:01:02Z\"}";

static void example_cart(cart *c)
{
    cart_init(c, "u1");
    strcpy(c->cart_id, CID);
    c->state = CART_ACTIVE;
    c->version = 3;
    ck_assert_int_eq(cart_put_line(c, "B7", 1), CART_OK);
    ck_assert_int_eq(cart_put_line(c, "A1", 2), CART_OK);
    c->created_at_ms = 1795341600000LL;
    c->updated_at_ms = 1795341662000LL;
}

/* A cart with snapshots: a priced line with attributes, a named one, one priced at 0. */
static const char PRICED[] =
    "{\"user_id\":\"u1\",\"cart_id\":\"" CID "\",\"status\":\"active\",\"version\":3,\"items\":["
    "{\"sku\":\"A1\",\"quantity\":2,\"name\":\"Mug\",\"unit_price\":1999,\"currency\":\"EUR\",\"line_total\":3998,"
    "\"attributes\":{\"color\":\"blue\",\"size\":\"L\"}},"
    "{\"sku\":\"B7\",\"quantity\":1,\"name\":\"Caf\xc3\xa9 Noir\"},"
    "{\"sku\":\"C3\",\"quantity\":3,\"unit_price\":0,\"currency\":\"EUR\",\"line_total\":0}],"
    "\"item_count\":6,\"currency\":\"EUR\",\"subtotal\":3998,\"created_at\":\"2026-11-22T10:00:00Z\","
    "\"updated_at\":\"2026-11-22T10:01:02Z\"}";

static void priced_cart(cart *c)
{
    cart_snapshot s;

    cart_init(c, "u1");
    strcpy(c->cart_id, CID);
    c->state = CART_ACTIVE;
    c->version = 3;
    ck_assert_int_eq(cart_put_line(c, "C3", 3), CART_OK);
    ck_assert_int_eq(cart_put_line(c, "B7", 1), CART_OK);
    ck_assert_int_eq(cart_put_line(c, "A1", 2), CART_OK);
    memset(&s, 0, sizeof s);
    s.has_name = true;
    strcpy(s.name, "Mug");
    s.has_price = true;
    s.unit_price = 1999;
    strcpy(s.currency, "EUR");
    s.has_attributes = true;
    strcpy(s.attributes, "{\"color\":\"blue\",\"size\":\"L\"}");
    ck_assert_int_eq(cart_put_snapshot(c, "A1", &s), CART_OK);
    memset(&s, 0, sizeof s);
    s.has_name = true;
    strcpy(s.name, "Caf\xc3\xa9 Noir");
    ck_assert_int_eq(cart_put_snapshot(c, "B7", &s), CART_OK);
    memset(&s, 0, sizeof s);
    s.has_price = true;
    strcpy(s.currency, "EUR");
    ck_assert_int_eq(cart_put_snapshot(c, "C3", &s), CART_OK);
    c->created_at_ms = 1795341600000LL;
    c->updated_at_ms = 1795341662000LL;
}

static void assert_cart_eq(const cart *a, const cart *b)
{
    ck_assert_str_eq(a->user_id, b->user_id);
    ck_assert_str_eq(a->cart_id, b->cart_id);
    ck_assert_int_eq(a->state, b->state);
    ck_assert_int_eq(a->version, b->version);
    ck_assert_int_eq(a->created_at_ms, b->created_at_ms);
    ck_assert_int_eq(a->updated_at_ms, b->updated_at_ms);
    ck_assert_uint_eq(a->nitems, b->nitems);
    for (size_t i = 0; i < a->nitems; i++) {
        ck_assert_str_eq(a->items[i].sku, b->items[i].sku);
        ck_assert_int_eq(a->items[i].quantity, b->items[i].quantity);
        ck_assert_mem_eq(&a->items[i].snap, &b->items[i].snap, sizeof a->items[i].snap);
    }
}

/* Parses from an exactly sized heap copy, so that ASan catches any read past `len`. */
static cart_status from_json_n(cart *c, const char *json, size_t len)
{
    char *copy = malloc(len ? len : 1);
    ck_assert_ptr_nonnull(copy);
    memcpy(copy, json, len);
    cart_status st = cart_from_json(c, copy, len);
    free(copy);
    return st;
}

static cart_status from_json(cart *c, const char *json)
{
    return from_json_n(c, json, strlen(json));
}

/* Expects `json` to be refused, leaving a loaded cart exactly as it was. */
static void expect_invalid(const char *json)
{
    cart c, before;

    example_cart(&c);
    strcpy(c.user_id, "");
    example_cart(&before);
    strcpy(before.user_id, "");
    ck_assert_msg(from_json(&c, json) == CART_ERR_INVALID, "accepted: %s", json);
    assert_cart_eq(&c, &before);
    cart_cleanup(&c);
    cart_cleanup(&before);
}

/* `base` with `key` set to the JSON value `value`, or deleted when value is NULL. `item` >= 0
 * edits that line instead. */
static char *variant_of(const char *base, int item, const char *key, const char *value)
{
    json_error_t jerr;
    json_t *root = json_loads(base, 0, &jerr);
    ck_assert_ptr_nonnull(root);
    json_t *target = item >= 0 ? json_array_get(json_object_get(root, "items"), (size_t)item) : root;
    if (value == NULL) {
        json_object_del(target, key);
    } else {
        json_t *v = json_loads(value, JSON_DECODE_ANY, &jerr);
        ck_assert_msg(v != NULL, "bad test value %s", value);
        json_object_set_new(target, key, v);
    }
    char *s = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(root);
    ck_assert_ptr_nonnull(s);
    return s;
}

/* EXAMPLE with `key` set to `value` (see variant_of). */
static char *variant_at(int item, const char *key, const char *value)
{
    return variant_of(EXAMPLE, item, key, value);
}

static void expect_variant_invalid(int item, const char *key, const char *value)
{
    char *s = variant_at(item, key, value);
    expect_invalid(s);
    free(s);
}

static void expect_priced_invalid(int item, const char *key, const char *value)
{
    char *s = variant_of(PRICED, item, key, value);
    expect_invalid(s);
    free(s);
}

START_TEST(test_to_json_example)
{
    cart c;
    size_t len = 0;

    example_cart(&c);
    char *s = cart_to_json(&c, &len);
    ck_assert_ptr_nonnull(s);
    ck_assert_str_eq(s, EXAMPLE);
    ck_assert_uint_eq(len, strlen(EXAMPLE));
    free(s);

    /* len may be NULL. */
    s = cart_to_json(&c, NULL);
    ck_assert_str_eq(s, EXAMPLE);
    free(s);
    cart_cleanup(&c);
}
END_TEST

START_TEST(test_change_to_json)
{
    cart c;
    size_t len = 0;
    char *s;
    json_t *doc, *ref;
    char *cart_txt;

    example_cart(&c);
    s = cart_change_to_json(&c, "idem-\"q\"\\1", "cart.item_added", 17, 1795341662345LL, NULL, &len);
    ck_assert_ptr_nonnull(s);
    ck_assert_str_eq(s,
                     "{\"event_id\":\"idem-\\\"q\\\"\\\\1\",\"type\":\"cart.item_added\",\"user_id\":\"u1\","
                     "\"cart_id\":\"" CID "\",\"version\":3,\"status\":\"active\",\"partition\":17,"
                     "\"items\":[{\"sku\":\"A1\",\"quantity\":2},{\"sku\":\"B7\",\"quantity\":1}],"
                     "\"item_count\":3,\"currency\":null,\"subtotal\":0,\"applied_at\":\"2026-11-22T10:01:02.345Z\"}");
    ck_assert_uint_eq(len, strlen(s));
    /* The same members as the cart's own JSON, as jansson reads both. */
    doc = json_loads(s, 0, NULL);
    cart_txt = cart_to_json(&c, NULL);
    ref = json_loads(cart_txt, 0, NULL);
    ck_assert_ptr_nonnull(doc);
    ck_assert_ptr_nonnull(ref);
    ck_assert_str_eq(json_string_value(json_object_get(doc, "event_id")), "idem-\"q\"\\1");
    ck_assert(json_equal(json_object_get(doc, "items"), json_object_get(ref, "items")));
    ck_assert(json_equal(json_object_get(doc, "cart_id"), json_object_get(ref, "cart_id")));
    ck_assert(json_equal(json_object_get(doc, "version"), json_object_get(ref, "version")));
    json_decref(doc);
    json_decref(ref);
    free(cart_txt);
    free(s);

    /* Control characters are escaped as jansson escapes them; no cart, no notice. */
    s = cart_change_to_json(&c, "a\tb\x01", "t", 0, 0, NULL, NULL);
    ck_assert_ptr_nonnull(strstr(s, "\"event_id\":\"a\\tb\\u0001\""));
    ck_assert_ptr_nonnull(strstr(s, "\"applied_at\":\"1970-01-01T00:00:00Z\""));
    free(s);
    /* What the change did follows the cart: a new cart, and the line it touched. */
    {
        cart_change_what what = {.created = true, .has_line = true, .quantity_before = 0, .quantity_after = 2};
        snprintf(what.sku, sizeof what.sku, "A1");
        s = cart_change_to_json(&c, "e", "cart.item_added", 0, 0, &what, NULL);
        ck_assert_ptr_nonnull(strstr(s, "\"applied_at\":\"1970-01-01T00:00:00Z\",\"cart_created\":true,"
                                        "\"line\":{\"sku\":\"A1\",\"quantity_before\":0,\"quantity_after\":2}}"));
        free(s);
        what.created = false;
        what.has_line = false;
        s = cart_change_to_json(&c, "e", "cart.checked_out", 0, 0, &what, NULL);
        ck_assert_ptr_nonnull(strstr(s, "\"cart_created\":false}"));
        ck_assert_ptr_null(strstr(s, "\"line\""));
        free(s);
    }
    c.state = CART_NONE;
    ck_assert_ptr_null(cart_change_to_json(&c, "e", "t", 0, 0, NULL, NULL));
    cart_cleanup(&c);
}
END_TEST

/* The reader has a fast path for cart_to_json's exact layout and a general one for any other JSON.
 * Every one-byte change of the example (each position, several replacements) must get the same
 * answer and the same cart from both: a trailing newline sends the same text to the general one. */
START_TEST(test_change_msg_id)
{
    char buf[CART_CHANGE_MSG_ID_MAX + 1], id[CART_EVENT_ID_MAX + 1];

    ck_assert_ptr_eq(cart_change_msg_id(buf, "e1"), buf);
    ck_assert_str_eq(buf, "chg-e1");
    ck_assert_str_eq(cart_change_msg_id(buf, "exp-9b2f"), "chg-exp-9b2f");
    /* The longest event id fits whole. */
    memset(id, 'x', CART_EVENT_ID_MAX);
    id[CART_EVENT_ID_MAX] = '\0';
    cart_change_msg_id(buf, id);
    ck_assert_uint_eq(strlen(buf), CART_CHANGE_MSG_ID_MAX);
    ck_assert_int_eq(strncmp(buf, "chg-xxx", 7), 0);
}
END_TEST

START_TEST(test_fast_and_general_readers_agree)
{
    static const char repl[] = "\"\\ ,:{}[]0191-.aZ_\t";
    const char *base = _i == 0 ? EXAMPLE : PRICED;
    size_t n = strlen(base);
    char *buf = malloc(n + 2);
    int fast_ok = 0;

    ck_assert_ptr_nonnull(buf);
    for (size_t i = 0; i < n; i++) {
        for (const char *r = repl; *r; r++) {
            cart a, b;
            cart_status sa, sb;
            memcpy(buf, base, n);
            buf[i] = *r;
            buf[n] = '\n';
            buf[n + 1] = '\0';
            cart_init(&a, "");
            cart_init(&b, "");
            sa = from_json_n(&a, buf, n);
            sb = from_json_n(&b, buf, n + 1);
            ck_assert_msg(sa == sb, "position %zu, '%c': %d against %d", i, *r, (int)sa, (int)sb);
            if (sa == CART_OK) {
                assert_cart_eq(&a, &b);
                fast_ok++;
            }
            cart_cleanup(&a);
            cart_cleanup(&b);
        }
    }
    ck_assert_int_gt(fast_ok, 0); /* some changes keep it valid (a digit of the version, a sku letter) */
    free(buf);
}
END_TEST

START_TEST(test_priced_to_and_from_json)
{
    cart c, back;
    char *s, *notice;
    json_t *doc;

    priced_cart(&c);
    s = cart_to_json(&c, NULL);
    ck_assert_str_eq(s, PRICED);
    cart_init(&back, "u1");
    ck_assert_int_eq(from_json(&back, s), CART_OK);
    assert_cart_eq(&back, &c);
    free(s);
    cart_cleanup(&back);

    /* The general reader takes the attributes' keys in any order, as the canonical text. */
    s = variant_of(PRICED, 0, "attributes", "{\"size\": \"L\", \"color\": \"blue\"}");
    cart_init(&back, "u1");
    ck_assert_int_eq(from_json(&back, s), CART_OK);
    assert_cart_eq(&back, &c);
    free(s);
    cart_cleanup(&back);

    /* The change notice carries the same lines, currency and subtotal. */
    c.state = CART_CHECKED_OUT;
    notice = cart_change_to_json(&c, "e1", "cart.checked_out", 3, 1795341662000LL, NULL, NULL);
    doc = json_loads(notice, 0, NULL);
    ck_assert_ptr_nonnull(doc);
    ck_assert_str_eq(json_string_value(json_object_get(doc, "currency")), "EUR");
    ck_assert_int_eq(json_integer_value(json_object_get(doc, "subtotal")), 3998);
    ck_assert_int_eq(
        json_integer_value(json_object_get(json_array_get(json_object_get(doc, "items"), 0), "line_total")), 3998);
    ck_assert_ptr_nonnull(strstr(notice,
                                 "\"items\":[{\"sku\":\"A1\",\"quantity\":2,\"name\":\"Mug\",\"unit_price\":1999,"
                                 "\"currency\":\"EUR\",\"line_total\":3998,"));
    json_decref(doc);
    free(notice);
    cart_cleanup(&c);
}
END_TEST

START_TEST(test_from_json_priced_values)
{
    char name[CART_NAME_MAX + 4];

    /* Totals that do not follow from the lines. */
    expect_priced_invalid(0, "line_total", "3997");
    expect_priced_invalid(0, "line_total", NULL);
    expect_priced_invalid(0, "line_total", "\"3998\"");
    expect_priced_invalid(1, "line_total", "0");
    expect_priced_invalid(-1, "subtotal", "3997");
    expect_priced_invalid(-1, "subtotal", "0");
    expect_priced_invalid(-1, "subtotal", NULL);
    expect_priced_invalid(-1, "currency", "\"USD\"");
    expect_priced_invalid(-1, "currency", "null");
    expect_priced_invalid(-1, "currency", NULL);
    expect_variant_invalid(-1, "currency", "\"EUR\"");
    expect_variant_invalid(-1, "subtotal", "1");
    /* Two currencies in one cart. */
    expect_priced_invalid(2, "currency", "\"USD\"");
    /* Members out of their domains. */
    expect_priced_invalid(0, "unit_price", "-1");
    expect_priced_invalid(0, "unit_price", "100000000001");
    expect_priced_invalid(0, "currency", "\"eur\"");
    expect_priced_invalid(0, "currency", NULL);
    expect_priced_invalid(0, "attributes", "{\"a\":1}");
    expect_priced_invalid(0, "attributes", "[]");
    expect_priced_invalid(1, "name", "null");
    memset(name, 'n', sizeof name);
    name[0] = '"';
    name[CART_NAME_MAX + 2] = '"';
    name[CART_NAME_MAX + 3] = '\0';
    expect_priced_invalid(1, "name", name);
    expect_priced_invalid(1, "extra", "1");
    /* A line total past the limit, however consistent: 10^11 x 10001 > 10^15. */
    char *a = variant_of(PRICED, 0, "unit_price", "100000000000");
    char *b = variant_of(a, 0, "quantity", "10001");
    char *c = variant_of(b, 0, "line_total", "1000100000000000");
    char *d = variant_of(c, -1, "item_count", "10005");
    char *e = variant_of(d, -1, "subtotal", "1000100000000000");
    expect_invalid(e);
    /* ...and one just at it reads. */
    char *f = variant_of(e, 0, "quantity", "10000");
    char *g = variant_of(f, 0, "line_total", "1000000000000000");
    char *h = variant_of(g, -1, "item_count", "10004");
    char *k = variant_of(h, -1, "subtotal", "1000000000000000");
    cart ok;
    cart_init(&ok, "u1");
    ck_assert_int_eq(from_json(&ok, k), CART_OK);
    ck_assert(cart_subtotal(&ok) == CART_MONEY_MAX);
    cart_cleanup(&ok);
    free(a);
    free(b);
    free(c);
    free(d);
    free(e);
    free(f);
    free(g);
    free(h);
    free(k);
}
END_TEST

START_TEST(test_state_names)
{
    cart_state st = CART_NONE;

    ck_assert_str_eq(cart_state_name(CART_ACTIVE), "active");
    ck_assert_str_eq(cart_state_name(CART_EXPIRED), "expired");
    ck_assert_ptr_null(cart_state_name(CART_NONE));
    ck_assert_ptr_null(cart_state_name((cart_state)99));
    ck_assert_int_eq(cart_state_parse("checked_out", 11, &st), CART_OK);
    ck_assert_int_eq(st, CART_CHECKED_OUT);
    ck_assert_int_eq(cart_state_parse("expiredX", 7, &st), CART_OK); /* only len bytes count */
    ck_assert_int_eq(st, CART_EXPIRED);
    ck_assert_int_eq(cart_state_parse("none", 4, &st), CART_ERR_INVALID);
    ck_assert_int_eq(cart_state_parse("activ", 5, &st), CART_ERR_INVALID);
    ck_assert_int_eq(cart_state_parse("", 0, &st), CART_ERR_INVALID);
    ck_assert_int_eq(st, CART_EXPIRED);
}
END_TEST

START_TEST(test_to_json_states)
{
    cart c;
    char *s;

    cart_init(&c, "u1");
    ck_assert_ptr_null(cart_to_json(&c, NULL)); /* CART_NONE has no JSON form */
    c.state = (cart_state)17;
    ck_assert_ptr_null(cart_to_json(&c, NULL));
    cart_cleanup(&c);

    example_cart(&c);
    c.state = CART_CHECKED_OUT;
    c.updated_at_ms = 1795341662345LL;
    s = cart_to_json(&c, NULL);
    ck_assert_str_eq(s, "{\"user_id\":\"u1\",\"cart_id\":\"" CID "\",\"status\":\"checked_out\",\"version\":3,"
                        "\"items\":[{\"sku\":\"A1\",\"quantity\":2},{\"sku\":\"B7\",\"quantity\":1}],"
                        "\"item_count\":3,\"currency\":null,\"subtotal\":0,\"created_at\":\"2026-11-22T10:00:00Z\","
                        "\"updated_at\":\"2026-11-22T10:01:02.345Z\"}");
    free(s);

    cart_cleanup(&c);
    example_cart(&c);
    c.nitems = 0;
    c.state = CART_DELETED;
    c.version = 9;
    s = cart_to_json(&c, NULL);
    ck_assert_str_eq(
        s, "{\"user_id\":\"u1\",\"cart_id\":\"" CID "\",\"status\":\"deleted\",\"version\":9,"
           "\"items\":[],\"item_count\":0,\"currency\":null,\"subtotal\":0,\"created_at\":\"2026-11-22T10:00:00Z\","
           "\"updated_at\":\"2026-11-22T10:01:02Z\"}");
    free(s);
    cart_cleanup(&c);

    /* An expired cart keeps its lines, and reads back. */
    example_cart(&c);
    c.state = CART_EXPIRED;
    c.version = 4;
    s = cart_to_json(&c, NULL);
    ck_assert_str_eq(s, "{\"user_id\":\"u1\",\"cart_id\":\"" CID "\",\"status\":\"expired\",\"version\":4,"
                        "\"items\":[{\"sku\":\"A1\",\"quantity\":2},{\"sku\":\"B7\",\"quantity\":1}],"
                        "\"item_count\":3,\"currency\":null,\"subtotal\":0,\"created_at\":\"2026-11-22T10:00:00Z\","
                        "\"updated_at\":\"2026-11-22T10:01:02Z\"}");
    cart back;
    cart_init(&back, "u1");
    ck_assert_int_eq(cart_from_json(&back, s, strlen(s)), CART_OK);
    ck_assert_int_eq(back.state, CART_EXPIRED);
    ck_assert_uint_eq(back.nitems, 2);
    cart_cleanup(&back);
    free(s);
    cart_cleanup(&c);
}
END_TEST

START_TEST(test_from_json_example)
{
    cart c, want;

    example_cart(&want);
    cart_init(&c, "u1");
    ck_assert_int_eq(from_json(&c, EXAMPLE), CART_OK);
    assert_cart_eq(&c, &want);
    ck_assert_int_eq(cart_item_count(&c), 3);
    ck_assert_int_eq(cart_find_line(&c, "B7")->quantity, 1);

    /* Old lines are replaced, not merged. */
    ck_assert_int_eq(cart_put_line(&c, "ZZ", 5), CART_OK);
    ck_assert_int_eq(from_json(&c, EXAMPLE), CART_OK);
    assert_cart_eq(&c, &want);
    ck_assert_ptr_null(cart_find_line(&c, "ZZ"));
    /* The loaded cart stays usable: lines can be added. */
    ck_assert_int_eq(cart_put_line(&c, "C", 1), CART_OK);
    ck_assert_uint_eq(c.nitems, 3);
    cart_cleanup(&c);

    /* Whitespace is fine; offsets and fractions are read as what they mean. */
    cart_init(&c, "");
    ck_assert_int_eq(from_json(&c, " {\"user_id\" : \"u1\", \"cart_id\":\"" CID "\",\"status\":\"active\","
                                   "\"version\":3,\"items\":[ {\"quantity\":2,\"sku\":\"A1\"},{\"sku\":\"B7\","
                                   "\"quantity\":1}],\"item_count\":3,\"currency\":null,\"subtotal\":0,\"created_at\":"
                                   "\"2026-11-22T11:00:00+01:00\","
                                   "\"updated_at\":\"2026-11-22T10:01:02.000Z\"}\n"),
                     CART_OK);
    assert_cart_eq(&c, &want);
    cart_cleanup(&c);
    cart_cleanup(&want);
}
END_TEST

START_TEST(test_roundtrip)
{
    static const cart_state states[] = {CART_ACTIVE, CART_CHECKED_OUT, CART_DELETED};
    char sku[16];

    for (size_t k = 0; k < 3; k++) {
        for (int n = 0; n < 150; n += 37) {
            cart c, back;
            cart_init(&c, "user.name:with-all_chars.09");
            cart_uuid_v4(c.cart_id);
            c.state = states[k];
            c.version = k == 2 ? INT64_MAX : 1 + n;
            c.created_at_ms = -62167219200000LL + n;
            c.updated_at_ms = 253402300799999LL - n;
            for (int i = 0; c.state != CART_DELETED && i < n; i++) {
                snprintf(sku, sizeof sku, "%c-%d", "aZ0._:-"[i % 7], i * 31 % 97);
                ck_assert_int_eq(cart_put_line(&c, sku, i == 0 ? INT32_MAX : i), CART_OK);
            }
            size_t len;
            char *s = cart_to_json(&c, &len);
            ck_assert_ptr_nonnull(s);
            cart_init(&back, "user.name:with-all_chars.09");
            ck_assert_msg(cart_from_json(&back, s, len) == CART_OK, "refused its own output: %s", s);
            assert_cart_eq(&back, &c);
            char *again = cart_to_json(&back, NULL);
            ck_assert_str_eq(again, s);
            free(again);
            free(s);
            cart_cleanup(&back);
            cart_cleanup(&c);
        }
    }
}
END_TEST

START_TEST(test_from_json_missing_and_extra)
{
    static const char *const keys[] = {"user_id",    "cart_id",  "status",   "version",    "items",
                                       "item_count", "currency", "subtotal", "created_at", "updated_at"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        expect_variant_invalid(-1, keys[i], NULL);
    expect_variant_invalid(0, "sku", NULL);
    expect_variant_invalid(0, "quantity", NULL);
    expect_variant_invalid(-1, "extra", "1");
    expect_variant_invalid(1, "extra", "1");
}
END_TEST

START_TEST(test_from_json_wrong_types)
{
    static const char *const anything[] = {"null", "true", "1", "1.5", "\"x\"", "[]", "{}"};
    static const char *const keys[] = {"user_id",    "cart_id",  "status",   "version",    "items",
                                       "item_count", "currency", "subtotal", "created_at", "updated_at"};
    for (size_t i = 0; i < sizeof anything / sizeof anything[0]; i++) {
        for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
            /* 1 is a fine version, "x" a fine user_id, null the currency of a cart without prices.
             * ([] is a valid items array, but then
             * item_count 3 is wrong; a first sku "x" sorts after "B7".) */
            if ((strcmp(keys[k], "version") == 0 && strcmp(anything[i], "1") == 0) ||
                (strcmp(keys[k], "user_id") == 0 && strcmp(anything[i], "\"x\"") == 0) ||
                (strcmp(keys[k], "currency") == 0 && strcmp(anything[i], "null") == 0))
                continue;
            expect_variant_invalid(-1, keys[k], anything[i]);
        }
        expect_variant_invalid(0, "sku", anything[i]);
        expect_variant_invalid(0, "quantity", anything[i]);
    }
    expect_variant_invalid(-1, "items", "[1]");
    expect_variant_invalid(-1, "items", "[null]");
    expect_variant_invalid(-1, "items", "[[\"A1\",2]]");
}
END_TEST

START_TEST(test_from_json_values)
{
    /* Ids. */
    expect_variant_invalid(-1, "user_id", "\"\"");
    expect_variant_invalid(-1, "user_id", "\"u 1\"");
    expect_variant_invalid(-1, "user_id", "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"");
    expect_variant_invalid(0, "sku", "\"\"");
    expect_variant_invalid(0, "sku", "\"A/1\"");
    expect_variant_invalid(-1, "cart_id", "\"\"");
    expect_variant_invalid(-1, "cart_id", "\"6f1c2a9e0d3b4c519a770e2f3d4c5b6a\"");
    expect_variant_invalid(-1, "cart_id", "\"6f1c2a9e-0d3b-4c51-9a77-0e2f3d4c5b6\"");
    expect_variant_invalid(-1, "cart_id", "\"6f1c2a9e-0d3b-4c51-9a77-0e2f3d4c5b6ab\"");
    expect_variant_invalid(-1, "cart_id", "\"6f1c2a9e-0d3b-4c51-9a77-0e2f3d4c5b6g\"");
    expect_variant_invalid(-1, "cart_id", "\"6f1c2a9e-0d3b-4c51-9a77+0e2f3d4c5b6a\"");
    /* Status and version. */
    expect_variant_invalid(-1, "status", "\"Active\"");
    expect_variant_invalid(-1, "status", "\"none\"");
    expect_variant_invalid(-1, "status", "\"\"");
    expect_variant_invalid(-1, "version", "0");
    expect_variant_invalid(-1, "version", "-1");
    expect_variant_invalid(-1, "version", "3.0");
    /* Quantities: 1..2^31-1, integers. */
    expect_variant_invalid(0, "quantity", "0");
    expect_variant_invalid(0, "quantity", "-2");
    expect_variant_invalid(0, "quantity", "2.0");
    expect_variant_invalid(0, "quantity", "2147483648");
    expect_variant_invalid(0, "quantity", "9223372036854775807");
    /* item_count must be the sum. */
    expect_variant_invalid(-1, "item_count", "2");
    expect_variant_invalid(-1, "item_count", "4");
    expect_variant_invalid(-1, "item_count", "-3");
    /* Times. */
    expect_variant_invalid(-1, "created_at", "\"\"");
    expect_variant_invalid(-1, "created_at", "\"2026-11-22\"");
    expect_variant_invalid(-1, "updated_at", "\"2026-11-22T25:00:00Z\"");
    expect_variant_invalid(-1, "updated_at", "\"2026-11-22T10:00:00\"");
    expect_variant_invalid(-1, "updated_at", "\"2026-11-22T10:00:00Z \"");
}
END_TEST

/* Found by fuzz_cache_entry: an offset took a time outside years 0000..9999, which cart_to_json
 * wrote back clamped, so the entry did not read back as the same cart. */
START_TEST(test_from_json_time_range)
{
    static const char *const ok[] = {"\"0000-01-01T00:00:00Z\"", "\"0000-01-01T00:00:00-01:00\"",
                                     "\"9999-12-31T23:59:59.999Z\"", "\"9999-12-31T23:59:59.999+00:01\""};
    cart c;

    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        char *json = variant_at(-1, "created_at", ok[i]);
        cart_init(&c, "u1");
        ck_assert_msg(from_json(&c, json) == CART_OK, "refused: %s", json);
        ck_assert_int_ge(c.created_at_ms, -62167219200000LL);
        ck_assert_int_le(c.created_at_ms, 253402300799999LL);
        cart_cleanup(&c);
        free(json);
    }
    expect_variant_invalid(-1, "created_at", "\"0000-01-01T00:00:00+01:00\"");
    expect_variant_invalid(-1, "created_at", "\"0000-01-01T00:00:00.5+00:01\"");
    expect_variant_invalid(-1, "updated_at", "\"9999-12-31T23:59:59.999-00:01\"");
    expect_variant_invalid(-1, "updated_at", "\"9999-12-31T23:59:60-23:59\"");
}
END_TEST

START_TEST(test_from_json_items_order)
{
    const char *head = "{\"user_id\":\"u1\",\"cart_id\":\"" CID "\",\"status\":\"active\",\"version\":3,\"items\":";
    const char *tail = ",\"currency\":null,\"subtotal\":0,\"created_at\":\"2026-11-22T10:00:00Z\","
                       "\"updated_at\":\"2026-11-22T10:01:02Z\"}";
    char buf[512];
    cart c;

    snprintf(buf, sizeof buf, "%s[{\"sku\":\"B7\",\"quantity\":1},{\"sku\":\"A1\",\"quantity\":2}],\"item_count\":3%s",
             head, tail);
    expect_invalid(buf);
    snprintf(buf, sizeof buf, "%s[{\"sku\":\"A1\",\"quantity\":1},{\"sku\":\"A1\",\"quantity\":2}],\"item_count\":3%s",
             head, tail);
    expect_invalid(buf);
    /* strcmp order: upper case before lower case, '-' before digits. */
    snprintf(buf, sizeof buf,
             "%s[{\"sku\":\"-\",\"quantity\":1},{\"sku\":\"0\",\"quantity\":1},{\"sku\":\"Z\",\"quantity\":1},"
             "{\"sku\":\"a\",\"quantity\":1}],\"item_count\":4%s",
             head, tail);
    cart_init(&c, "u1");
    ck_assert_int_eq(from_json(&c, buf), CART_OK);
    ck_assert_uint_eq(c.nitems, 4);
    cart_cleanup(&c);
    snprintf(buf, sizeof buf, "%s[{\"sku\":\"a\",\"quantity\":1},{\"sku\":\"Z\",\"quantity\":1}],\"item_count\":2%s",
             head, tail);
    expect_invalid(buf);
    /* An empty cart has an empty array; a deleted one must have no lines. */
    snprintf(buf, sizeof buf, "%s[],\"item_count\":0%s", head, tail);
    cart_init(&c, "u1");
    ck_assert_int_eq(from_json(&c, buf), CART_OK);
    ck_assert_uint_eq(c.nitems, 0);
    ck_assert_ptr_null(c.items);
    cart_cleanup(&c);
    char *s = variant_at(-1, "status", "\"deleted\"");
    expect_invalid(s);
    free(s);
    /* The two largest quantities add up beyond int32 but not int64. */
    snprintf(buf, sizeof buf,
             "%s[{\"sku\":\"A\",\"quantity\":2147483647},{\"sku\":\"B\",\"quantity\":2147483647}],"
             "\"item_count\":4294967294%s",
             head, tail);
    cart_init(&c, "u1");
    ck_assert_int_eq(from_json(&c, buf), CART_OK);
    ck_assert_int_eq(cart_item_count(&c), 4294967294LL);
    cart_cleanup(&c);
}
END_TEST

START_TEST(test_from_json_malformed)
{
    static const char *const bad[] = {
        "", " ", "null", "[]", "1", "\"x\"", "{", "{}", "{\"user_id\":\"u1\"}",
    };
    char buf[1024];

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        expect_invalid(bad[i]);
    /* Trailing garbage, a second document, a duplicate key. */
    snprintf(buf, sizeof buf, "%s x", EXAMPLE);
    expect_invalid(buf);
    snprintf(buf, sizeof buf, "%s{}", EXAMPLE);
    expect_invalid(buf);
    snprintf(buf, sizeof buf, "{\"version\":3,%s", EXAMPLE + 1);
    expect_invalid(buf);
    snprintf(buf, sizeof buf, "{\"user_id\":\"u1\",%s", EXAMPLE + 1);
    expect_invalid(buf);
    /* A NUL after or inside it. */
    cart c;
    cart_init(&c, "u1");
    size_t n = strlen(EXAMPLE);
    memcpy(buf, EXAMPLE, n + 1);
    ck_assert_int_eq(from_json_n(&c, buf, n + 1), CART_ERR_INVALID);
    ck_assert_int_eq(cart_from_json(&c, NULL, 0), CART_ERR_INVALID);
    ck_assert_int_eq(cart_from_json(&c, NULL, 10), CART_ERR_INVALID);
    ck_assert_int_eq(c.state, CART_NONE);
    cart_cleanup(&c);
    expect_invalid("{\"user_id\":\"u\\u00001\"}");

    /* Deep nesting. */
    size_t depth = 50000;
    char *deep = malloc(2 * depth);
    ck_assert_ptr_nonnull(deep);
    memset(deep, '[', depth);
    memset(deep + depth, ']', depth);
    cart_init(&c, "u1");
    ck_assert_int_eq(from_json_n(&c, deep, 2 * depth), CART_ERR_INVALID);
    cart_cleanup(&c);
    free(deep);
}
END_TEST

START_TEST(test_from_json_other_user)
{
    cart c;

    /* A cache entry under the wrong key is corrupt, not someone else's cart to show. */
    cart_init(&c, "u2");
    ck_assert_int_eq(from_json(&c, EXAMPLE), CART_ERR_INVALID);
    ck_assert_str_eq(c.user_id, "u2");
    ck_assert_int_eq(c.state, CART_NONE);
    cart_cleanup(&c);
    /* With no user set, any user is taken. */
    cart_init(&c, NULL);
    ck_assert_int_eq(from_json(&c, EXAMPLE), CART_OK);
    ck_assert_str_eq(c.user_id, "u1");
    cart_cleanup(&c);
}
END_TEST

/* Whatever a mutant parses to must be a well-formed cart that writes back to the same thing. */
static void check_mutant(const char *buf, size_t len)
{
    cart c;

    cart_init(&c, "u1");
    if (from_json_n(&c, buf, len) == CART_OK) {
        ck_assert_int_ne(c.state, CART_NONE);
        ck_assert_int_ge(c.version, 1);
        for (size_t i = 0; i < c.nitems; i++) {
            ck_assert_int_ge(c.items[i].quantity, 1);
            ck_assert(cart_valid_id(c.items[i].sku, strlen(c.items[i].sku)));
            if (i > 0)
                ck_assert_int_lt(strcmp(c.items[i - 1].sku, c.items[i].sku), 0);
        }
        size_t outlen;
        char *s = cart_to_json(&c, &outlen);
        ck_assert_ptr_nonnull(s);
        cart back;
        cart_init(&back, "u1");
        ck_assert_int_eq(cart_from_json(&back, s, outlen), CART_OK);
        assert_cart_eq(&back, &c);
        cart_cleanup(&back);
        free(s);
    } else {
        ck_assert_int_eq(c.state, CART_NONE);
        ck_assert_uint_eq(c.nitems, 0);
    }
    cart_cleanup(&c);
}

START_TEST(test_mutations)
{
    static const char subst[] = {'\0', '"', '\\', '{', '}', '[', ']', ':', ',', '0',    '1',    '9',
                                 '-',  'e', '.',  ' ', 'x', 'A', 'Z', 'a', 'z', '\x7f', '\x80', '\xff'};
    size_t n = strlen(EXAMPLE);
    char *buf = malloc(n + 8);
    ck_assert_ptr_nonnull(buf);

    for (size_t cut = 0; cut <= n; cut++)
        check_mutant(EXAMPLE, cut);
    for (size_t i = 0; i < n; i++) {
        for (size_t k = 0; k < sizeof subst; k++) {
            memcpy(buf, EXAMPLE, n);
            buf[i] = subst[k];
            check_mutant(buf, n);
        }
        /* Delete one byte; duplicate one byte. */
        memcpy(buf, EXAMPLE, i);
        memcpy(buf + i, EXAMPLE + i + 1, n - i - 1);
        check_mutant(buf, n - 1);
        memcpy(buf, EXAMPLE, i + 1);
        memcpy(buf + i + 1, EXAMPLE + i, n - i);
        check_mutant(buf, n + 1);
    }
    uint32_t x = 123456789u;
    for (int round = 0; round < 20000; round++) {
        memcpy(buf, EXAMPLE, n);
        for (int m = 0; m < 4; m++) {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            buf[x % n] = (char)(x >> 24);
        }
        check_mutant(buf, n - (x >> 8) % 3);
    }
    free(buf);
}
END_TEST

static Suite *cart_json_suite(void)
{
    Suite *s = suite_create("cart_json");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_to_json_example);
    tcase_add_test(tc, test_state_names);
    tcase_add_test(tc, test_to_json_states);
    tcase_add_test(tc, test_from_json_example);
    tcase_add_test(tc, test_roundtrip);
    tcase_add_test(tc, test_from_json_missing_and_extra);
    tcase_add_test(tc, test_from_json_wrong_types);
    tcase_add_test(tc, test_from_json_values);
    tcase_add_test(tc, test_from_json_time_range);
    tcase_add_test(tc, test_from_json_items_order);
    tcase_add_test(tc, test_from_json_malformed);
    tcase_add_test(tc, test_from_json_other_user);
    tcase_add_test(tc, test_mutations);
    tcase_add_test(tc, test_change_to_json);
    tcase_add_loop_test(tc, test_fast_and_general_readers_agree, 0, 2);
    tcase_add_test(tc, test_priced_to_and_from_json);
    tcase_add_test(tc, test_from_json_priced_values);
    tcase_add_test(tc, test_change_msg_id);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(cart_json_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
