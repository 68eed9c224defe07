#include <check.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cartshard/fmt.h"

/* Every value gives what printf gives, and nothing past its length is written. */
static void check_value(int64_t v)
{
    char buf[CART_INT_BUFSZ + 1], want[32];
    size_t n;

    memset(buf, '#', sizeof buf);
    n = cart_int_format(v, buf);
    snprintf(want, sizeof want, "%" PRId64, v);
    ck_assert_uint_eq(n, strlen(want));
    ck_assert(memcmp(buf, want, n) == 0);
    ck_assert_int_eq(buf[CART_INT_BUFSZ], '#');
    if (n < CART_INT_BUFSZ)
        ck_assert_int_eq(buf[n], '#');
}

START_TEST(test_edges)
{
    static const int64_t values[] = {
        0,    1,         -1,         9,         10,        -10,       99,        100,           999,
        1000, 123456789, -987654321, INT32_MAX, INT32_MIN, INT64_MAX, INT64_MIN, INT64_MAX - 1, INT64_MIN + 1};
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++)
        check_value(values[i]);
}
END_TEST

START_TEST(test_powers_of_ten)
{
    int64_t p = 1;
    for (int i = 0; i <= 18; i++) {
        check_value(p);
        check_value(p - 1);
        check_value(-p);
        check_value(1 - p);
        if (i < 18)
            p *= 10; /* 10^18 is the largest power of ten an int64_t holds */
    }
}
END_TEST

START_TEST(test_grow)
{
    int64_t *arr = NULL;
    size_t n = 0, cap = 0;

    for (int i = 0; i < 1000; i++) {
        ck_assert_int_eq(CART_GROW(arr, n, cap, 16), 0);
        ck_assert_uint_gt(cap, n);
        arr[n++] = i;
    }
    ck_assert_uint_eq(cap, 1024); /* 16 doubled six times */
    for (int i = 0; i < 1000; i++)
        ck_assert_int_eq(arr[i], i);
    /* Room left: nothing moves. */
    n = 10;
    ck_assert_int_eq(CART_GROW(arr, n, cap, 16), 0);
    ck_assert_uint_eq(cap, 1024);
    free(arr);
}
END_TEST

START_TEST(test_buf_reserve)
{
    cart_buf b = {0};

    /* Nothing to make room for: nothing allocated. The first byte allocates 256; a reserve that
     * fits keeps the buffer. */
    ck_assert(cart_buf_reserve(&b, 0));
    ck_assert_ptr_null(b.buf);
    ck_assert(cart_buf_reserve(&b, 1));
    ck_assert_uint_eq(b.cap, 256);
    ck_assert(cart_buf_reserve(&b, 256));
    ck_assert_uint_eq(b.cap, 256);
    memset(b.buf, 'x', 200);
    b.len = 200;
    /* 200 + 57 > 256: doubled, the text kept. */
    ck_assert(cart_buf_reserve(&b, 57));
    ck_assert_uint_eq(b.cap, 512);
    ck_assert_int_eq(b.buf[199], 'x');
    /* Doubled as often as needed in one reserve. */
    ck_assert(cart_buf_reserve(&b, 5000));
    ck_assert_uint_eq(b.cap, 8192);
    ck_assert(!b.oom);
    /* After a failed allocation every reserve fails, even one that would fit. */
    b.oom = true;
    ck_assert(!cart_buf_reserve(&b, 1));
    free(b.buf);
}
END_TEST

static Suite *fmt_suite(void)
{
    Suite *s = suite_create("fmt");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_edges);
    tcase_add_test(tc, test_powers_of_ten);
    tcase_add_test(tc, test_buf_reserve);
    tcase_add_test(tc, test_grow);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(fmt_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
