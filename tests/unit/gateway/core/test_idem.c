#include <check.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "idem.h"

/* The fingerprint of `method` `path` with the JSON text `body` (NULL: no body). */
static void fingerprint_of(const char *method, const char *path, const char *body,
                           char out[GW_IDEM_FINGERPRINT_LEN + 1])
{
    json_error_t jerr;
    json_t *doc = NULL;

    if (body) {
        doc = json_loads(body, JSON_REJECT_DUPLICATES, &jerr);
        ck_assert_msg(doc != NULL, "bad test body %s: %s", body, jerr.text);
    }
    ck_assert_int_eq(gw_idem_fingerprint(method, path, doc, out), 0);
    ck_assert_uint_eq(strlen(out), GW_IDEM_FINGERPRINT_LEN);
    json_decref(doc);
}

START_TEST(test_known_digests)
{
    char id[CART_EVENT_ID_MAX + 1];

    ck_assert_int_eq(gw_idem_event_id("u1", "key-1", 5, id), 0);
    ck_assert_str_eq(id, "idem-3713f1c7d92b60af054fd998c1f21b165cd50ed6290007624e2f4c0384d02ba6");
    ck_assert(cart_valid_event_id(id, strlen(id)));

    /* The same key for another user is another event. */
    ck_assert_int_eq(gw_idem_event_id("u2", "key-1", 5, id), 0);
    ck_assert_str_eq(id, "idem-dc4a5405eff5c6bb615ac979f378f672250a30b5d4202e3a57e92ddbfe535335");

    /* Only `len` bytes of the key count. */
    ck_assert_int_eq(gw_idem_event_id("u1", "key-1xyz", 5, id), 0);
    ck_assert_str_eq(id, "idem-3713f1c7d92b60af054fd998c1f21b165cd50ed6290007624e2f4c0384d02ba6");
}
END_TEST

START_TEST(test_longest_key)
{
    char key[GW_IDEM_KEY_MAX + 1], id[CART_EVENT_ID_MAX + 1];

    memset(key, '~', sizeof key);
    ck_assert_int_eq(gw_idem_event_id("u1", key, GW_IDEM_KEY_MAX, id), 0);
    ck_assert_str_eq(id, "idem-558a46a318c299c19d072dd110f0b2e2dcc840e1dc18eced28bc32373e411dcd");
    ck_assert_int_eq(gw_idem_event_id("u1", key, GW_IDEM_KEY_MAX + 1, id), -1);
    ck_assert_str_eq(id, "");
}
END_TEST

START_TEST(test_invalid_keys)
{
    char id[CART_EVENT_ID_MAX + 1];

    ck_assert(gw_idem_key_valid("a", 1));
    ck_assert(gw_idem_key_valid("!~{}\"", 5));
    ck_assert(!gw_idem_key_valid("", 0));
    ck_assert(!gw_idem_key_valid("a b", 3));         /* space is not visible */
    ck_assert(!gw_idem_key_valid("a\tb", 3));        /* nor is a tab */
    ck_assert(!gw_idem_key_valid("caf\xc3\xa9", 5)); /* nor anything outside ASCII */
    ck_assert(!gw_idem_key_valid("a\0b", 3));
    ck_assert_int_eq(gw_idem_event_id("u1", "a b", 3, id), -1);
    ck_assert_str_eq(id, "");
}
END_TEST

/* The documented definition, checked against sha256sum:
 * printf 'POST /v1/carts/u1/items\n{"quantity":2,"sku":"A1"}' | sha256sum, and so on. */
START_TEST(test_fingerprint_definition)
{
    char f[GW_IDEM_FINGERPRINT_LEN + 1];

    fingerprint_of("POST", "/v1/carts/u1/items", "{\"sku\": \"A1\", \"quantity\": 2}", f);
    ck_assert_str_eq(f, "67e9a8614860254efed4afd0472859c85909b1c2a5faac5ca92cde8a9f9398a1");
    /* A route without a body: method, path and the newline. */
    fingerprint_of("POST", "/v1/carts/u1/checkout", NULL, f);
    ck_assert_str_eq(f, "2714d1cc4ee14ec367a925ea80bd1dddbf6ee9ca42ca7dbb9bd96a065816d7ec");
    /* Nested values, a real and non-ASCII text (written as UTF-8, not escaped). */
    fingerprint_of("POST", "/v1/carts", "{\"user_id\":\"u1\",\"note\":[1,2.50,{\"a\":\"\\u00e9\"}]}", f);
    ck_assert_str_eq(f, "7bc3066390ec8c5d5c598ef4c5ff0fdb8ad4fcde97a079bac4544127a4bd758e");
}
END_TEST

/* Two bodies of one request, and whether they have the same JSON content (one fingerprint). */
static const struct {
    const char *a, *b;
    bool same;
} bodies[] = {
    /* Member order and whitespace do not count. */
    {"{\"sku\":\"A1\",\"quantity\":2}", "{\"quantity\":2,\"sku\":\"A1\"}", true},
    {"{\"sku\":\"A1\",\"quantity\":2}", " {\n\t\"quantity\" :2 ,\r\n \"sku\": \"A1\"\n} ", true},
    /* Nested objects are sorted too; arrays keep their order. */
    {"{\"x\":{\"b\":1,\"a\":[1,2]}}", "{\"x\":{\"a\":[1,2],\"b\":1}}", true},
    {"{\"x\":[1,2]}", "{\"x\":[2,1]}", false},
    /* Names are compared bytewise: "B" < "a" < "b" < "é". */
    {"{\"b\":1,\"a\":2,\"B\":3,\"\\u00e9\":4}", "{\"\xc3\xa9\":4,\"B\":3,\"a\":2,\"b\":1}", true},
    /* One string value, written with different escapes. */
    {"{\"sku\":\"A1\"}", "{\"sku\":\"\\u0041\\u0031\"}", true},
    {"{\"n\":\"a/b\"}", "{\"n\":\"a\\/b\"}", true},
    {"{\"n\":\"\xc3\xa9\"}", "{\"n\":\"\\u00e9\"}", true},
    {"{\"n\":\"\xf0\x9f\x9b\x92\"}", "{\"n\":\"\\ud83d\\uded2\"}", true}, /* a supplementary character */
    {"{\"n\":\"\\t\"}", "{\"n\":\"\\u0009\"}", true},
    {"{\"sku\":\"A1\"}", "{\"\\u0073ku\":\"A1\"}", true}, /* a name with an escape is the same name */
    {"{\"sku\":\"A1\"}", "{\"sku\":\"a1\"}", false},
    {"{\"sku\":\"A1\"}", "{\"sku\":\"A1 \"}", false},
    /* A number is its value: a real that holds an integer is that integer. */
    {"{\"quantity\":1}", "{\"quantity\":1.0}", true},
    {"{\"quantity\":1}", "{\"quantity\":1e0}", true},
    {"{\"quantity\":1}", "{\"quantity\":10E-1}", true},
    {"{\"quantity\":100}", "{\"quantity\":1E2}", true},
    {"{\"quantity\":0}", "{\"quantity\":-0.0}", true},
    {"{\"quantity\":0}", "{\"quantity\":-0}", true},
    {"{\"a\":[{\"b\":2}]}", "{\"a\":[{\"b\":2.000}]}", true},
    {"{\"a\":[2]}", "{\"a\":[20e-1]}", true},
    /* The int64 range: -2^63 as a real is that integer; 2^63 as a real is beyond it, a real. */
    {"{\"q\":-9223372036854775808}", "{\"q\":-9.223372036854775808e18}", true},
    {"{\"q\":9.223372036854775808e18}", "{\"q\":9223372036854775808.0}", true},
    {"{\"q\":9223372036854775807}", "{\"q\":9.223372036854775808e18}", false},
    /* Reals that are not integers are compared as doubles. */
    {"{\"q\":0.5}", "{\"q\":5e-1}", true},
    {"{\"q\":0.5}", "{\"q\":0.25}", false},
    /* Other values, other types. */
    {"{\"q\":1}", "{\"q\":2}", false},
    {"{\"q\":1}", "{\"q\":\"1\"}", false},
    {"{\"q\":true}", "{\"q\":1}", false},
    {"{\"q\":null}", "{}", false},
};

START_TEST(test_fingerprint_bodies)
{
    char fa[GW_IDEM_FINGERPRINT_LEN + 1], fb[GW_IDEM_FINGERPRINT_LEN + 1];

    fingerprint_of("POST", "/v1/carts/u1/items", bodies[_i].a, fa);
    fingerprint_of("POST", "/v1/carts/u1/items", bodies[_i].b, fb);
    ck_assert_msg((strcmp(fa, fb) == 0) == bodies[_i].same, "%s and %s: %s, %s", bodies[_i].a, bodies[_i].b, fa, fb);
}
END_TEST

START_TEST(test_fingerprint_request_line)
{
    char a[GW_IDEM_FINGERPRINT_LEN + 1], b[GW_IDEM_FINGERPRINT_LEN + 1];

    /* Bodiless writes differ by method and path. */
    fingerprint_of("DELETE", "/v1/carts/u1/items/A1", NULL, a);
    fingerprint_of("DELETE", "/v1/carts/u1/items/A2", NULL, b);
    ck_assert_str_ne(a, b);
    fingerprint_of("DELETE", "/v1/carts/u1", NULL, a);
    fingerprint_of("POST", "/v1/carts/u1/checkout", NULL, b);
    ck_assert_str_ne(a, b);
    /* One body on another path or with another method is another request. */
    fingerprint_of("PUT", "/v1/carts/u1/items/A1", "{\"quantity\":2}", a);
    fingerprint_of("PUT", "/v1/carts/u1/items/A2", "{\"quantity\":2}", b);
    ck_assert_str_ne(a, b);
    fingerprint_of("POST", "/v1/carts/u1/items/A1", "{\"quantity\":2}", b);
    ck_assert_str_ne(a, b);
    /* An empty object is a body, unlike none. */
    fingerprint_of("POST", "/v1/carts/u1/checkout", "{}", a);
    fingerprint_of("POST", "/v1/carts/u1/checkout", NULL, b);
    ck_assert_str_ne(a, b);
}
END_TEST

START_TEST(test_fingerprint_leaves_the_body)
{
    char f[GW_IDEM_FINGERPRINT_LEN + 1];
    json_t *doc = json_loads("{\"b\":1.0,\"a\":[2.0,{\"c\":3.0}]}", 0, NULL);
    char *before, *after;

    ck_assert_ptr_nonnull(doc);
    before = json_dumps(doc, JSON_COMPACT);
    ck_assert_int_eq(gw_idem_fingerprint("POST", "/v1/carts", doc, f), 0);
    after = json_dumps(doc, JSON_COMPACT);
    ck_assert_str_eq(before, after);
    ck_assert_str_eq(after, "{\"b\":1.0,\"a\":[2.0,{\"c\":3.0}]}");
    free(before);
    free(after);
    json_decref(doc);
}
END_TEST

static Suite *idem_suite(void)
{
    Suite *s = suite_create("idem");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_known_digests);
    tcase_add_test(tc, test_longest_key);
    tcase_add_test(tc, test_invalid_keys);
    tcase_add_test(tc, test_fingerprint_definition);
    tcase_add_loop_test(tc, test_fingerprint_bodies, 0, sizeof bodies / sizeof bodies[0]);
    tcase_add_test(tc, test_fingerprint_request_line);
    tcase_add_test(tc, test_fingerprint_leaves_the_body);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(idem_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
