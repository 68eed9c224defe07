#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "cartshard/cache.h"

START_TEST(test_key_shape)
{
    char buf[CART_CACHE_KEY_MAX];

    ck_assert_ptr_eq(cart_cache_key("u1", buf, sizeof buf), buf);
    ck_assert_str_eq(buf, "cart:{u1}");
    /* Every character a valid user_id may hold is kept as is. */
    ck_assert_ptr_nonnull(cart_cache_key("A.b_c:d-9", buf, sizeof buf));
    ck_assert_str_eq(buf, "cart:{A.b_c:d-9}");
}
END_TEST

START_TEST(test_key_longest_id_fits)
{
    char id[CART_ID_MAX + 1];
    char buf[CART_CACHE_KEY_MAX];
    char want[CART_CACHE_KEY_MAX + 8];

    memset(id, 'x', CART_ID_MAX);
    id[CART_ID_MAX] = '\0';
    ck_assert_ptr_eq(cart_cache_key(id, buf, sizeof buf), buf);
    ck_assert_uint_eq(strlen(buf), CART_CACHE_KEY_MAX - 1);
    strcpy(want, "cart:{");
    strcat(want, id);
    strcat(want, "}");
    ck_assert_str_eq(buf, want);
}
END_TEST

START_TEST(test_key_buffer_bounds)
{
    char buf[16];

    /* "cart:{u1}" is 9 bytes and its NUL the 10th. */
    memset(buf, '#', sizeof buf);
    ck_assert_ptr_null(cart_cache_key("u1", buf, 9));
    ck_assert_int_eq(buf[0], '#'); /* nothing written on failure */
    ck_assert_ptr_eq(cart_cache_key("u1", buf, 10), buf);
    ck_assert_str_eq(buf, "cart:{u1}");
    ck_assert_int_eq(buf[10], '#'); /* nothing written past the size */
    ck_assert_ptr_null(cart_cache_key("u1", buf, 0));
    ck_assert_ptr_null(cart_cache_key("u1", NULL, 16));
}
END_TEST

START_TEST(test_key_rejects_non_ids)
{
    static const char *const bad[] = {"", "a b", "u{1}", "u}", "{u", "a/b", "caf\xc3\xa9", "u1\n", "*"};
    char id[CART_ID_MAX + 2];
    char buf[CART_CACHE_KEY_MAX + 8];

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        memset(buf, '#', sizeof buf);
        ck_assert_msg(cart_cache_key(bad[i], buf, sizeof buf) == NULL, "accepted \"%s\"", bad[i]);
        ck_assert_int_eq(buf[0], '#');
    }
    ck_assert_ptr_null(cart_cache_key(NULL, buf, sizeof buf));
    /* One character over the limit of 64. */
    memset(id, 'x', CART_ID_MAX + 1);
    id[CART_ID_MAX + 1] = '\0';
    ck_assert_ptr_null(cart_cache_key(id, buf, sizeof buf));
}
END_TEST

START_TEST(test_key_matches_pattern)
{
    char buf[CART_CACHE_KEY_MAX];

    /* The SCAN pattern and prefix describe exactly the keys cart_cache_key makes. */
    ck_assert_str_eq(CART_CACHE_KEY_PATTERN, "cart:{*}");
    ck_assert_ptr_nonnull(cart_cache_key("u-42", buf, sizeof buf));
    ck_assert_int_eq(strncmp(buf, CART_CACHE_KEY_PREFIX, strlen(CART_CACHE_KEY_PREFIX)), 0);
    ck_assert_int_eq(buf[strlen(buf) - 1], '}');
}
END_TEST

START_TEST(test_script_embedded)
{
    /* The generated file carries shared/lua/cache_put.lua byte for byte. */
    ck_assert_uint_gt(strlen(cart_cache_put_lua), 100);
    ck_assert_int_eq(strncmp(cart_cache_put_lua, "-- cache_put.lua", 16), 0);
    ck_assert_ptr_nonnull(strstr(cart_cache_put_lua, "cjson.decode"));
    ck_assert_ptr_nonnull(strstr(cart_cache_put_lua, "'EX'"));
    ck_assert_int_eq(cart_cache_put_lua[strlen(cart_cache_put_lua) - 1], '\n');
}
END_TEST

static Suite *cache_suite(void)
{
    Suite *s = suite_create("cache");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_key_shape);
    tcase_add_test(tc, test_key_longest_id_fits);
    tcase_add_test(tc, test_key_buffer_bounds);
    tcase_add_test(tc, test_key_rejects_non_ids);
    tcase_add_test(tc, test_key_matches_pattern);
    tcase_add_test(tc, test_script_embedded);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(cache_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
