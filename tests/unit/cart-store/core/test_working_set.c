#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "working_set.h"

START_TEST(test_add_and_find)
{
    cs_working_set ws;
    cs_working_cart *a, *b;

    cs_working_set_init(&ws);
    ck_assert_ptr_null(cs_working_set_find(&ws, "u1"));
    a = cs_working_set_add(&ws, "u1");
    ck_assert_ptr_nonnull(a);
    ck_assert_str_eq(a->c.user_id, "u1");
    ck_assert_int_eq(a->c.state, CART_NONE);
    ck_assert(!a->changed);
    b = cs_working_set_add(&ws, "u2");
    ck_assert_ptr_nonnull(b);
    ck_assert_uint_eq(ws.ncarts, 2);
    /* Adding a user again gives the same cart, as the batch left it. */
    cs_working_set_find(&ws, "u1")->changed = true;
    a = cs_working_set_add(&ws, "u1");
    ck_assert(a->changed);
    ck_assert_uint_eq(ws.ncarts, 2);
    ck_assert_ptr_eq(cs_working_set_find(&ws, "u2"), &ws.carts[1]);
    cs_working_set_cleanup(&ws);
    cs_working_set_cleanup(&ws); /* safe twice */
}
END_TEST

START_TEST(test_grows_and_clears)
{
    cs_working_set ws;
    char id[16];

    cs_working_set_init(&ws);
    for (int i = 0; i < 1000; i++) {
        snprintf(id, sizeof id, "user-%d", i);
        ck_assert_ptr_nonnull(cs_working_set_add(&ws, id));
    }
    ck_assert_uint_eq(ws.ncarts, 1000);
    for (int i = 0; i < 1000; i += 97) {
        snprintf(id, sizeof id, "user-%d", i);
        ck_assert_str_eq(cs_working_set_find(&ws, id)->c.user_id, id);
    }
    ck_assert_int_eq(cs_working_set_answered(&ws, "ev-1", 201, NULL), 0);
    /* Cleared for the next batch: no carts, no answers, the memory kept. */
    cs_working_set_clear(&ws);
    ck_assert_uint_eq(ws.ncarts, 0);
    ck_assert_uint_eq(ws.nanswers, 0);
    ck_assert_uint_ge(ws.carts_cap, 1000);
    ck_assert_ptr_null(cs_working_set_find(&ws, "user-0"));
    ck_assert_ptr_null(cs_working_set_answer_of(&ws, "ev-1"));
    ck_assert_int_eq(cs_working_set_add(&ws, "user-0")->c.state, CART_NONE);
    cs_working_set_cleanup(&ws);
}
END_TEST

START_TEST(test_first_answer_kept)
{
    cs_working_set ws;
    const cs_working_answer *a;

    cs_working_set_init(&ws);
    ck_assert_ptr_null(cs_working_set_answer_of(&ws, "ev-1"));
    ck_assert_int_eq(cs_working_set_answered(&ws, "ev-1", 201, ""), 0);
    ck_assert_int_eq(cs_working_set_answered(&ws, "ev-2", 409, "cart is checked out"), 0);
    /* A copy of ev-1 later in the batch: the first answer stays. */
    ck_assert_int_eq(cs_working_set_answered(&ws, "ev-1", 200, "later"), 0);
    a = cs_working_set_answer_of(&ws, "ev-1");
    ck_assert_ptr_nonnull(a);
    ck_assert_int_eq(a->http_status, 201);
    ck_assert_str_eq(a->detail, "");
    a = cs_working_set_answer_of(&ws, "ev-2");
    ck_assert_int_eq(a->http_status, 409);
    ck_assert_str_eq(a->detail, "cart is checked out");
    ck_assert_uint_eq(ws.nanswers, 2);
    ck_assert_ptr_null(cs_working_set_answer_of(&ws, "ev-3"));
    cs_working_set_cleanup(&ws);
}
END_TEST

START_TEST(test_long_ids_and_details)
{
    cs_working_set ws;
    char id[CART_EVENT_ID_MAX + 1], detail[300];
    const cs_working_answer *a;

    memset(id, 'e', CART_EVENT_ID_MAX);
    id[CART_EVENT_ID_MAX] = '\0';
    memset(detail, 'd', sizeof detail - 1);
    detail[sizeof detail - 1] = '\0';
    cs_working_set_init(&ws);
    for (int i = 0; i < 200; i++) {
        char other[16];
        snprintf(other, sizeof other, "ev-%d", i);
        ck_assert_int_eq(cs_working_set_answered(&ws, other, 200 + i % 3, NULL), 0);
    }
    ck_assert_int_eq(cs_working_set_answered(&ws, id, 422, detail), 0);
    a = cs_working_set_answer_of(&ws, id);
    ck_assert_ptr_nonnull(a);
    ck_assert_str_eq(a->event_id, id);
    ck_assert_int_eq(a->http_status, 422);
    ck_assert_uint_eq(strlen(a->detail), CS_WORKING_DETAIL_MAX - 1);
    ck_assert_int_eq(cs_working_set_answer_of(&ws, "ev-199")->http_status, 201);
    cs_working_set_cleanup(&ws);
}
END_TEST

static Suite *working_set_suite(void)
{
    Suite *s = suite_create("working_set");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_add_and_find);
    tcase_add_test(tc, test_grows_and_clears);
    tcase_add_test(tc, test_first_answer_kept);
    tcase_add_test(tc, test_long_ids_and_details);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(working_set_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
