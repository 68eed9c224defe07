#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "working_set.h"

/* An answer to record: event `id` answered `status` with `detail`, message `seq`, `fingerprint`. */
static cs_working_answer answer(const char *id, int status, const char *detail, uint64_t seq, const char *fingerprint)
{
    cs_working_answer a;

    memset(&a, 0, sizeof a);
    snprintf(a.event_id, sizeof a.event_id, "%s", id);
    a.http_status = status;
    snprintf(a.detail, sizeof a.detail, "%.*s", (int)sizeof a.detail - 1, detail); /* cut to fit */
    a.stream_seq = seq;
    snprintf(a.fingerprint, sizeof a.fingerprint, "%s", fingerprint);
    return a;
}

/* Records it; the test fails when it cannot. */
static void answered(cs_working_set *ws, const char *id, int status, const char *detail, uint64_t seq,
                     const char *fingerprint)
{
    cs_working_answer a = answer(id, status, detail, seq, fingerprint);

    ck_assert_int_eq(cs_working_set_answered(ws, &a), 0);
}

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
    answered(&ws, "ev-1", 201, "", 1, "");
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
    answered(&ws, "ev-1", 201, "", 7, "fp-1");
    answered(&ws, "ev-2", 409, "cart is checked out", 8, "");
    /* A copy of ev-1 later in the batch: the first answer stays. */
    answered(&ws, "ev-1", 200, "later", 9, "fp-other");
    a = cs_working_set_answer_of(&ws, "ev-1");
    ck_assert_ptr_nonnull(a);
    ck_assert_int_eq(a->http_status, 201);
    ck_assert_str_eq(a->detail, "");
    ck_assert_uint_eq(a->stream_seq, 7);
    ck_assert_str_eq(a->fingerprint, "fp-1");
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
    cs_working_answer big;

    memset(id, 'e', CART_EVENT_ID_MAX);
    id[CART_EVENT_ID_MAX] = '\0';
    memset(detail, 'd', sizeof detail - 1);
    detail[sizeof detail - 1] = '\0';
    cs_working_set_init(&ws);
    for (int i = 0; i < 200; i++) {
        char other[16];
        snprintf(other, sizeof other, "ev-%d", i);
        answered(&ws, other, 200 + i % 3, "", (uint64_t)i + 1, "");
    }
    big = answer(id, 422, detail, 500, "");
    /* Arrays that fill their room without a NUL are recorded terminated. */
    memset(big.fingerprint, 'f', sizeof big.fingerprint);
    ck_assert_int_eq(cs_working_set_answered(&ws, &big), 0);
    a = cs_working_set_answer_of(&ws, id);
    ck_assert_ptr_nonnull(a);
    ck_assert_str_eq(a->event_id, id);
    ck_assert_int_eq(a->http_status, 422);
    ck_assert_uint_eq(strlen(a->detail), CS_WORKING_DETAIL_MAX - 1);
    ck_assert_uint_eq(strlen(a->fingerprint), CART_FINGERPRINT_MAX);
    ck_assert_int_eq(cs_working_set_answer_of(&ws, "ev-199")->http_status, 201);
    cs_working_set_cleanup(&ws);
}
END_TEST

START_TEST(test_judge)
{
    cs_working_set ws;
    const cs_working_answer *first = NULL;

    cs_working_set_init(&ws);
    /* Nothing recorded: a new event, applied. */
    ck_assert_int_eq(cs_working_set_judge(&ws, "ev-1", "fp-a", 10, &first), CS_WORKING_NEW);
    ck_assert_ptr_null(first);

    answered(&ws, "ev-1", 200, "", 10, "fp-a");
    /* Another message with the same request: the first answer, replayed. */
    ck_assert_int_eq(cs_working_set_judge(&ws, "ev-1", "fp-a", 11, &first), CS_WORKING_REPLAY);
    ck_assert_ptr_nonnull(first);
    ck_assert_int_eq(first->http_status, 200);
    /* Another request under the same event id: refused, whatever the first answer was. */
    ck_assert_int_eq(cs_working_set_judge(&ws, "ev-1", "fp-b", 12, &first), CS_WORKING_KEY_REUSED);
    ck_assert_str_eq(first->fingerprint, "fp-a");
    /* The very message that was answered (a redelivery): its own answer, not a replay. */
    ck_assert_int_eq(cs_working_set_judge(&ws, "ev-1", "fp-a", 10, &first), CS_WORKING_SAME);
    /* A repeat without a fingerprint (another client): a repeat, as before fingerprints. */
    ck_assert_int_eq(cs_working_set_judge(&ws, "ev-1", "", 13, &first), CS_WORKING_REPLAY);
    /* A refusal is judged the same way. */
    answered(&ws, "ev-2", 412, "version 3, not 1", 20, "fp-c");
    ck_assert_int_eq(cs_working_set_judge(&ws, "ev-2", "fp-c", 21, &first), CS_WORKING_REPLAY);
    ck_assert_str_eq(first->detail, "version 3, not 1");
    ck_assert_int_eq(cs_working_set_judge(&ws, "ev-2", "fp-d", 21, &first), CS_WORKING_KEY_REUSED);
    /* A first answer without a fingerprint (an earlier gateway): every repeat is a replay. */
    answered(&ws, "ev-3", 201, "", 0, "");
    ck_assert_int_eq(cs_working_set_judge(&ws, "ev-3", "fp-e", 30, &first), CS_WORKING_REPLAY);
    /* A stream sequence of 0 (unknown) is never the same message. */
    ck_assert_int_eq(cs_working_set_judge(&ws, "ev-3", "", 0, &first), CS_WORKING_REPLAY);
    /* Judging records nothing: after a refused reuse the first answer stays for every later copy. */
    ck_assert_uint_eq(ws.nanswers, 3);
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
    tcase_add_test(tc, test_judge);
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
