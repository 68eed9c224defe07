#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cartshard/bus.h"

/* A reply to send: event `id`, `status`, `detail`, `version`; the rest zero. */
static cart_bus_reply reply_of(const char *id, int status, const char *detail, int64_t version)
{
    cart_bus_reply r;

    memset(&r, 0, sizeof r);
    snprintf(r.event_id, sizeof r.event_id, "%s", id);
    r.status = status;
    snprintf(r.detail, sizeof r.detail, "%s", detail);
    r.version = version;
    return r;
}

START_TEST(test_reply_roundtrip)
{
    natsMsg *m = NULL;
    cart_bus_reply r, out = reply_of("ev-1", 201, "", 3);
    const char *v = NULL;

    ck_assert_int_eq(cart_bus_reply_new(&m, "_CARTSHARD.reply.g1.0", &out, "{\"version\":3}"), NATS_OK);
    ck_assert_str_eq(natsMsg_GetSubject(m), "_CARTSHARD.reply.g1.0");
    ck_assert_int_eq(natsMsg_GetDataLength(m), 13);
    ck_assert_int_eq(memcmp(natsMsg_GetData(m), "{\"version\":3}", 13), 0);
    /* The wire names, which a gateway of another build reads too. */
    ck_assert_int_eq(natsMsgHeader_Get(m, "Cart-Event-Id", &v), NATS_OK);
    ck_assert_str_eq(v, "ev-1");
    ck_assert_int_eq(natsMsgHeader_Get(m, "Cart-Status", &v), NATS_OK);
    ck_assert_str_eq(v, "201");
    ck_assert_int_eq(natsMsgHeader_Get(m, "Cart-Version", &v), NATS_OK);
    ck_assert_str_eq(v, "3");
    /* An empty detail is no header at all. */
    ck_assert_int_eq(natsMsgHeader_Get(m, "Cart-Detail", &v), NATS_NOT_FOUND);
    ck_assert_int_eq(cart_bus_reply_read(m, &r), CART_OK);
    ck_assert_str_eq(r.event_id, "ev-1");
    ck_assert_int_eq(r.status, 201);
    ck_assert_str_eq(r.detail, "");
    ck_assert_int_eq(r.version, 3);
    /* A first answer without a fingerprint: no replay, no fingerprint, no problem headers. */
    ck_assert(!r.replayed);
    ck_assert(!r.key_reused);
    ck_assert_str_eq(r.fingerprint, "");
    ck_assert_int_eq(natsMsgHeader_Get(m, "Cart-Replayed", &v), NATS_NOT_FOUND);
    ck_assert_int_eq(natsMsgHeader_Get(m, "Cart-Fingerprint", &v), NATS_NOT_FOUND);
    ck_assert_int_eq(natsMsgHeader_Get(m, "Cart-Problem", &v), NATS_NOT_FOUND);
    natsMsg_Destroy(m);

    m = NULL;
    out = reply_of("ev-2", 409, "cart is checked out", 5);
    ck_assert_int_eq(cart_bus_reply_new(&m, "s", &out, NULL), NATS_OK);
    ck_assert_int_eq(natsMsg_GetDataLength(m), 0);
    ck_assert_int_eq(cart_bus_reply_read(m, &r), CART_OK);
    ck_assert_int_eq(r.status, 409);
    ck_assert_str_eq(r.detail, "cart is checked out");
    /* No cart, no version. */
    ck_assert_int_eq(natsMsgHeader_Get(m, "Cart-Version", &v), NATS_NOT_FOUND);
    ck_assert_int_eq(r.version, 0);
    natsMsg_Destroy(m);
}
END_TEST

/* Creates a message with the given headers (NULL: left out). */
static natsMsg *with_headers(const char *id, const char *status, const char *detail)
{
    natsMsg *m = NULL;

    ck_assert_int_eq(natsMsg_Create(&m, "s", NULL, "", 0), NATS_OK);
    if (id)
        ck_assert_int_eq(natsMsgHeader_Set(m, "Cart-Event-Id", id), NATS_OK);
    if (status)
        ck_assert_int_eq(natsMsgHeader_Set(m, "Cart-Status", status), NATS_OK);
    if (detail)
        ck_assert_int_eq(natsMsgHeader_Set(m, "Cart-Detail", detail), NATS_OK);
    return m;
}

START_TEST(test_reply_repeats)
{
    natsMsg *m = NULL;
    cart_bus_reply r, out = reply_of("idem-1", 200, "", 4);
    const char *v = NULL;

    /* A replay carries the first outcome's fingerprint. */
    out.replayed = true;
    memset(out.fingerprint, 'a', CART_FINGERPRINT_MAX);
    ck_assert_int_eq(cart_bus_reply_new(&m, "s", &out, "{\"version\":4}"), NATS_OK);
    ck_assert_int_eq(natsMsgHeader_Get(m, "Cart-Replayed", &v), NATS_OK);
    ck_assert_str_eq(v, "true");
    ck_assert_int_eq(natsMsgHeader_Get(m, "Cart-Fingerprint", &v), NATS_OK);
    ck_assert_uint_eq(strlen(v), CART_FINGERPRINT_MAX);
    ck_assert_int_eq(cart_bus_reply_read(m, &r), CART_OK);
    ck_assert(r.replayed);
    ck_assert(!r.key_reused);
    ck_assert_str_eq(r.fingerprint, out.fingerprint);
    natsMsg_Destroy(m);

    /* A refused reuse names its problem type. */
    m = NULL;
    out = reply_of("idem-1", 422, "reused", 0);
    out.key_reused = true;
    strcpy(out.fingerprint, "f1");
    ck_assert_int_eq(cart_bus_reply_new(&m, "s", &out, NULL), NATS_OK);
    ck_assert_int_eq(natsMsgHeader_Get(m, "Cart-Problem", &v), NATS_OK);
    ck_assert_str_eq(v, "idempotency-key-reused");
    ck_assert_int_eq(natsMsgHeader_Get(m, "Cart-Replayed", &v), NATS_NOT_FOUND);
    ck_assert_int_eq(cart_bus_reply_read(m, &r), CART_OK);
    ck_assert(r.key_reused);
    ck_assert(!r.replayed);
    ck_assert_str_eq(r.fingerprint, "f1");
    natsMsg_Destroy(m);

    /* Values other than the ones sent read as their defaults; an overlong fingerprint as none. */
    m = NULL;
    ck_assert_int_eq(natsMsg_Create(&m, "s", NULL, "", 0), NATS_OK);
    ck_assert_int_eq(natsMsgHeader_Set(m, "Cart-Event-Id", "e"), NATS_OK);
    ck_assert_int_eq(natsMsgHeader_Set(m, "Cart-Status", "200"), NATS_OK);
    ck_assert_int_eq(natsMsgHeader_Set(m, "Cart-Replayed", "yes"), NATS_OK);
    ck_assert_int_eq(natsMsgHeader_Set(m, "Cart-Problem", "limit-exceeded"), NATS_OK);
    ck_assert_int_eq(
        natsMsgHeader_Set(m, "Cart-Fingerprint", "0123456789012345678901234567890123456789012345678901234567890123x"),
        NATS_OK);
    ck_assert_int_eq(cart_bus_reply_read(m, &r), CART_OK);
    ck_assert(!r.replayed);
    ck_assert(!r.key_reused);
    ck_assert_str_eq(r.fingerprint, "");
    natsMsg_Destroy(m);
}
END_TEST

START_TEST(test_reply_refused)
{
    static const struct {
        const char *id, *status;
    } bad[] = {{NULL, "200"}, {"ev", NULL}, {"ev", "abc"}, {"ev", "199"}, {"ev", "600"}, {"ev", "0"}};
    cart_bus_reply r;

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        natsMsg *m = with_headers(bad[i].id, bad[i].status, NULL);
        ck_assert_msg(cart_bus_reply_read(m, &r) == CART_ERR_INVALID, "case %zu accepted", i);
        natsMsg_Destroy(m);
    }
}
END_TEST

START_TEST(test_reply_of_an_earlier_worker)
{
    natsMsg *m = with_headers("ev", "200", NULL);
    cart_bus_reply r;

    /* Without Cart-Version the gateway reads the version from the cart. */
    ck_assert_int_eq(cart_bus_reply_read(m, &r), CART_OK);
    ck_assert_int_eq(r.version, 0);
    ck_assert(!r.replayed);
    ck_assert_str_eq(r.fingerprint, "");
    natsMsg_Destroy(m);
}
END_TEST

START_TEST(test_reply_truncates)
{
    char detail[300];
    natsMsg *m;
    cart_bus_reply r;

    memset(detail, 'd', sizeof detail - 1);
    detail[sizeof detail - 1] = '\0';
    m = with_headers("ev", "422", detail);
    ck_assert_int_eq(cart_bus_reply_read(m, &r), CART_OK);
    ck_assert_uint_eq(strlen(r.detail), CART_REPLY_DETAIL_MAX);
    natsMsg_Destroy(m);
}
END_TEST

START_TEST(test_subjects)
{
    char buf[CART_SUBJECT_MAX];
    uint32_t p = 0;

    ck_assert_str_eq(cart_bus_subject(buf, CART_SUBJ_CHANGES, 7), "carts.changes.7");
    ck_assert_int_eq(cart_bus_subject_partition("carts.events.12", CART_SUBJ_EVENTS, 16, &p), CART_OK);
    ck_assert_uint_eq(p, 12);
    ck_assert_int_eq(cart_bus_subject_partition("carts.events.16", CART_SUBJ_EVENTS, 16, &p), CART_ERR_INVALID);
    ck_assert_int_eq(cart_bus_subject_partition("carts.dlq.1", CART_SUBJ_EVENTS, 16, &p), CART_ERR_INVALID);
}
END_TEST

static Suite *bus_suite(void)
{
    Suite *s = suite_create("bus");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_reply_roundtrip);
    tcase_add_test(tc, test_reply_repeats);
    tcase_add_test(tc, test_reply_refused);
    tcase_add_test(tc, test_reply_of_an_earlier_worker);
    tcase_add_test(tc, test_reply_truncates);
    tcase_add_test(tc, test_subjects);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    /* nats.c's messages need the library (its memory handling), even without a connection. */
    if (nats_Open(-1) != NATS_OK)
        return EXIT_FAILURE;
    SRunner *sr = srunner_create(bus_suite());
    /* nats.c starts its threads with the first message; a test forked from a process with threads
     * makes LeakSanitizer report "thread not suspended" in every child: no fork. */
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    nats_Close();
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
