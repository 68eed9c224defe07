#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "cartshard/status.h"

static const cart_status all[] = {CART_OK,           CART_ERR_NOMEM,        CART_ERR_INVALID, CART_ERR_NOT_FOUND,
                                  CART_ERR_CONFLICT, CART_ERR_PRECONDITION, CART_ERR_LIMIT,   CART_ERR_CURRENCY,
                                  CART_ERR_OVERFLOW, CART_ERR_UNAVAILABLE,  CART_ERR_IO};
#define NALL (sizeof all / sizeof all[0])

START_TEST(test_ok_is_zero)
{
    /* `if (st)` reads as "failed" only if OK is 0 and every error is not. */
    ck_assert_int_eq(CART_OK, 0);
    for (size_t i = 1; i < NALL; i++)
        ck_assert_int_ne(all[i], 0);
}
END_TEST

START_TEST(test_names)
{
    ck_assert_str_eq(cart_status_str(CART_OK), "ok");
    ck_assert_str_eq(cart_status_str(CART_ERR_INVALID), "invalid");
    ck_assert_str_eq(cart_status_str(CART_ERR_NOT_FOUND), "not found");
    ck_assert_str_eq(cart_status_str(CART_ERR_NOMEM), "out of memory");
    /* Every value has its own non-empty name. */
    for (size_t i = 0; i < NALL; i++) {
        const char *s = cart_status_str(all[i]);
        ck_assert_ptr_nonnull(s);
        ck_assert_uint_gt(strlen(s), 0);
        ck_assert_str_ne(s, "unknown status");
        for (size_t j = 0; j < i; j++)
            ck_assert_str_ne(s, cart_status_str(all[j]));
    }
    /* Out-of-range values still give a string, never NULL. */
    ck_assert_str_eq(cart_status_str((cart_status)999), "unknown status");
    ck_assert_str_eq(cart_status_str((cart_status)-1), "unknown status");
}
END_TEST

START_TEST(test_http_mapping)
{
    ck_assert_int_eq(cart_status_http(CART_OK), 200);
    ck_assert_int_eq(cart_status_http(CART_ERR_INVALID), 400);
    ck_assert_int_eq(cart_status_http(CART_ERR_NOT_FOUND), 404);
    ck_assert_int_eq(cart_status_http(CART_ERR_CONFLICT), 409);
    ck_assert_int_eq(cart_status_http(CART_ERR_PRECONDITION), 412);
    ck_assert_int_eq(cart_status_http(CART_ERR_LIMIT), 422);
    ck_assert_int_eq(cart_status_http(CART_ERR_CURRENCY), 422);
    ck_assert_int_eq(cart_status_http(CART_ERR_UNAVAILABLE), 503);
    ck_assert_int_eq(cart_status_http(CART_ERR_NOMEM), 500);
    ck_assert_int_eq(cart_status_http(CART_ERR_OVERFLOW), 500);
    ck_assert_int_eq(cart_status_http(CART_ERR_IO), 500);
    ck_assert_int_eq(cart_status_http((cart_status)999), 500);
}
END_TEST

static Suite *status_suite(void)
{
    Suite *s = suite_create("status");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_ok_is_zero);
    tcase_add_test(tc, test_names);
    tcase_add_test(tc, test_http_mapping);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(status_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
