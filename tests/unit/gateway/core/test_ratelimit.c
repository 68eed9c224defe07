#include <check.h>
#include <stdio.h>
#include <stdlib.h>

#include "ratelimit.h"

#define S 1000000LL /* one second in microseconds */

START_TEST(test_burst_then_rate)
{
    int64_t tat = 0, now = 50 * S;
    gw_rate_verdict v;

    /* rate 100/s, burst 200: 200 at once, the 201st is refused. */
    for (int i = 0; i < 200; i++) {
        v = gw_gcra(&tat, now, 100, 200);
        ck_assert_msg(v.allowed, "request %d", i);
        ck_assert_int_eq(v.remaining, 199 - i);
        ck_assert_int_eq(v.retry_after_ms, 0);
    }
    ck_assert_int_eq(v.reset_ms, 2000); /* a full bucket after 200 intervals of 10 ms */
    v = gw_gcra(&tat, now, 100, 200);
    ck_assert(!v.allowed);
    ck_assert_int_eq(v.remaining, 0);
    ck_assert_int_eq(v.retry_after_ms, 10);
    ck_assert_int_eq(v.reset_ms, 2000);

    /* A refusal does not use up anything: 10 ms later exactly one more is allowed. */
    v = gw_gcra(&tat, now + 10000, 100, 200);
    ck_assert(v.allowed);
    ck_assert_int_eq(v.remaining, 0);
    ck_assert(!gw_gcra(&tat, now + 10000, 100, 200).allowed);

    /* After a quiet second, 100 more. */
    int allowed = 0;
    for (int i = 0; i < 300; i++)
        allowed += gw_gcra(&tat, now + 10000 + S, 100, 200).allowed;
    ck_assert_int_eq(allowed, 100);
}
END_TEST

START_TEST(test_steady_rate)
{
    int64_t tat = 0;
    int allowed = 0;

    /* 1000 requests spread evenly over 10 s at 5/s with burst 1: exactly 50 pass. */
    for (int i = 0; i < 1000; i++)
        allowed += gw_gcra(&tat, 1000 * S + i * (10 * S / 1000), 5, 1).allowed;
    ck_assert_int_eq(allowed, 50);
}
END_TEST

START_TEST(test_fractional_rate)
{
    int64_t tat = 0;
    gw_rate_verdict v = gw_gcra(&tat, 10 * S, 0.5, 1);

    ck_assert(v.allowed);
    v = gw_gcra(&tat, 10 * S + 1, 0.5, 1);
    ck_assert(!v.allowed);
    ck_assert_int_eq(v.retry_after_ms, 2000); /* 1999.999 ms, rounded up */
}
END_TEST

START_TEST(test_local_table)
{
    gw_local_limiter *l = gw_local_limiter_new(4); /* 16 slots */
    char name[32];

    ck_assert_ptr_nonnull(l);
    ck_assert(gw_local_limit(l, "10.0.0.1", S, 1, 2).allowed);
    ck_assert(gw_local_limit(l, "10.0.0.1", S, 1, 2).allowed);
    ck_assert(!gw_local_limit(l, "10.0.0.1", S, 1, 2).allowed);
    ck_assert(gw_local_limit(l, "10.0.0.2", S, 1, 2).allowed); /* another client, its own bucket */
    /* A name that is a prefix of another is another client. */
    ck_assert(gw_local_limit(l, "10.0.0.", S, 1, 2).allowed);

    /* Many more clients than slots: the stalest are forgotten, nothing breaks, and a client seen
     * just now keeps its state. */
    for (int i = 0; i < 1000; i++) {
        snprintf(name, sizeof name, "c%d", i);
        ck_assert(gw_local_limit(l, name, 2 * S + i, 1, 2).allowed);
        ck_assert(gw_local_limit(l, name, 2 * S + i, 1, 2).allowed);
        ck_assert(!gw_local_limit(l, name, 2 * S + i, 1, 2).allowed);
    }
    gw_local_limiter_free(l);
    gw_local_limiter_free(NULL);
}
END_TEST

static Suite *ratelimit_suite(void)
{
    Suite *s = suite_create("ratelimit");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_burst_then_rate);
    tcase_add_test(tc, test_steady_rate);
    tcase_add_test(tc, test_fractional_rate);
    tcase_add_test(tc, test_local_table);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(ratelimit_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
