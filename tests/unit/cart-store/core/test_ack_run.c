#include <check.h>
#include <stdint.h>
#include <stdlib.h>

#include "ack_run.h"

START_TEST(test_empty_never_due)
{
    cs_ack_run r = {0};

    ck_assert(!cs_ack_run_due(&r, 1000, 64, 100));
    ck_assert(!cs_ack_run_due(&r, 1000, 1, 0)); /* nothing to ack, even acking every batch */
    ck_assert(cs_ack_run_deadline(&r, 100) == INT64_MAX);
    cs_ack_run_add(&r, 0, 500); /* adding nothing starts no clock */
    ck_assert_uint_eq(r.events, 0);
    ck_assert(cs_ack_run_deadline(&r, 100) == INT64_MAX);
}
END_TEST

START_TEST(test_due_by_count)
{
    cs_ack_run r = {0};

    cs_ack_run_add(&r, 3, 1000);
    ck_assert(!cs_ack_run_due(&r, 1000, 4, 100));
    cs_ack_run_add(&r, 1, 1001);
    ck_assert_uint_eq(r.events, 4);
    ck_assert(cs_ack_run_due(&r, 1001, 4, 100));
    /* A batch larger than the run's length is due at once. */
    cs_ack_run_clear(&r);
    cs_ack_run_add(&r, 200, 2000);
    ck_assert(cs_ack_run_due(&r, 2000, 64, 5000));
}
END_TEST

START_TEST(test_due_by_age_of_the_oldest)
{
    cs_ack_run r = {0};

    cs_ack_run_add(&r, 1, 1000);
    cs_ack_run_add(&r, 1, 1080); /* a later batch does not restart the clock */
    ck_assert_int_eq(r.since_ms, 1000);
    ck_assert_int_eq(cs_ack_run_deadline(&r, 100), 1100);
    ck_assert(!cs_ack_run_due(&r, 1099, 64, 100));
    ck_assert(cs_ack_run_due(&r, 1100, 64, 100));
    ck_assert(cs_ack_run_due(&r, 5000, 64, 100));
    /* Cleared, the next run starts its own clock. */
    cs_ack_run_clear(&r);
    ck_assert(!cs_ack_run_due(&r, 5000, 64, 100));
    cs_ack_run_add(&r, 2, 5000);
    ck_assert_int_eq(cs_ack_run_deadline(&r, 100), 5100);
    ck_assert(!cs_ack_run_due(&r, 5050, 64, 100));
}
END_TEST

START_TEST(test_delay_zero_acks_every_batch)
{
    cs_ack_run r = {0};

    cs_ack_run_add(&r, 1, 7000);
    ck_assert(cs_ack_run_due(&r, 7000, 64, 0));
    ck_assert_int_eq(cs_ack_run_deadline(&r, 0), 7000);
    /* Every 1 does the same whatever the delay. */
    ck_assert(cs_ack_run_due(&r, 7000, 1, 5000));
}
END_TEST

static Suite *ack_run_suite(void)
{
    Suite *s = suite_create("ack_run");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_empty_never_due);
    tcase_add_test(tc, test_due_by_count);
    tcase_add_test(tc, test_due_by_age_of_the_oldest);
    tcase_add_test(tc, test_delay_zero_acks_every_batch);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(ack_run_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
