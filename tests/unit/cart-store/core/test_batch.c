#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batch.h"

static const cart_limits lim = {999, 100};

/* Applies an event of `type` (sku, quantity) to c at `now`, records it in b, returns the outcome. */
static cart_outcome apply(cs_batch *b, cart *c, cart_event_type type, const char *sku, int64_t qty, int64_t now,
                          const char *new_id)
{
    cart_event ev;
    cart_outcome o;

    memset(&ev, 0, sizeof ev);
    snprintf(ev.event_id, sizeof ev.event_id, "ev-%lld", (long long)now);
    snprintf(ev.user_id, sizeof ev.user_id, "%s", c->user_id);
    ev.type = type;
    snprintf(ev.sku, sizeof ev.sku, "%s", sku);
    ev.quantity = qty;
    ck_assert_int_eq(cart_apply(c, &ev, &lim, now, new_id, &o), CART_OK);
    ck_assert_int_eq(o.status, CART_OK);
    if (o.changed)
        ck_assert_int_eq(cs_batch_change(b, c, &o, 7), 0);
    return o;
}

START_TEST(test_array_literals)
{
    cs_pgarr a;

    cs_pgarr_init(&a);
    ck_assert_str_eq(cs_pgarr_finish(&a), "{}");
    cs_pgarr_text(&a, "plain");
    cs_pgarr_text(&a, "");
    cs_pgarr_text(&a, "q\"u{o}te, back\\slash");
    cs_pgarr_int(&a, -42);
    cs_pgarr_text(&a, "NULL");
    ck_assert_str_eq(cs_pgarr_finish(&a), "{\"plain\",\"\",\"q\\\"u{o}te, back\\\\slash\",-42,\"NULL\"}");
    ck_assert_uint_eq(a.n, 5);
    /* A NULL element is unquoted (the quoted word above is a string). */
    cs_pgarr_null(&a);
    ck_assert_str_eq(cs_pgarr_finish(&a), "{\"plain\",\"\",\"q\\\"u{o}te, back\\\\slash\",-42,\"NULL\",NULL}");
    cs_pgarr_reset(&a);
    cs_pgarr_null(&a);
    ck_assert_str_eq(cs_pgarr_finish(&a), "{NULL}");
    cs_pgarr_reset(&a);
    cs_pgarr_text(&a, "plain");
    cs_pgarr_text(&a, "");
    cs_pgarr_text(&a, "q\"u{o}te, back\\slash");
    cs_pgarr_int(&a, -42);
    cs_pgarr_text(&a, "NULL");
    /* Finishing twice changes nothing; a reset starts over with the same memory. */
    ck_assert_str_eq(cs_pgarr_finish(&a), "{\"plain\",\"\",\"q\\\"u{o}te, back\\\\slash\",-42,\"NULL\"}");
    cs_pgarr_reset(&a);
    cs_pgarr_int(&a, 9223372036854775807LL);
    ck_assert_str_eq(cs_pgarr_finish(&a), "{9223372036854775807}");
    cs_pgarr_cleanup(&a);
}
END_TEST

START_TEST(test_array_grows)
{
    cs_pgarr a;
    const char *s;
    size_t commas = 0;

    cs_pgarr_init(&a);
    for (int i = 0; i < 5000; i++)
        cs_pgarr_text(&a, "a\"b");
    s = cs_pgarr_finish(&a);
    ck_assert_ptr_nonnull(s);
    ck_assert_uint_eq(strlen(s), 2 + 5000 * 6 + 4999);
    for (const char *p = s; *p; p++)
        commas += *p == ',';
    ck_assert_uint_eq(commas, 4999);
    cs_pgarr_cleanup(&a);
    cs_pgarr_cleanup(&a); /* safe twice */
}
END_TEST

/* A cart started in the batch and changed again is one INSERT in its final state; a line set
 * twice is one upsert, a line added and removed one delete. */
START_TEST(test_new_cart_collapses)
{
    cs_batch b;
    cs_batch_sql s;
    cart c;

    cs_batch_init(&b);
    cs_batch_sql_init(&s);
    cart_init(&c, "u1");
    apply(&b, &c, CART_EV_ITEM_ADDED, "A", 1, 1000, "11111111-1111-4111-8111-111111111111");
    apply(&b, &c, CART_EV_ITEM_QUANTITY_SET, "A", 3, 2000, "x");
    apply(&b, &c, CART_EV_ITEM_ADDED, "B", 2, 3000, "x");
    apply(&b, &c, CART_EV_ITEM_REMOVED, "B", 0, 4000, "x");
    ck_assert_uint_eq(b.ncarts, 1);
    ck_assert(b.carts[0].insert);
    ck_assert_int_eq(b.carts[0].version, 4);
    ck_assert_int_eq(cs_batch_render(&b, &s), 0);
    ck_assert_uint_eq(s.rows[CS_BATCH_INSERT_CARTS], 1);
    ck_assert_uint_eq(s.rows[CS_BATCH_UPDATE_CARTS], 0);
    ck_assert_str_eq(s.params[CS_BATCH_INSERT_CARTS][0], "{\"11111111-1111-4111-8111-111111111111\"}");
    ck_assert_str_eq(s.params[CS_BATCH_INSERT_CARTS][1], "{\"u1\"}");
    ck_assert_str_eq(s.params[CS_BATCH_INSERT_CARTS][2], "{7}");
    ck_assert_str_eq(s.params[CS_BATCH_INSERT_CARTS][3], "{\"active\"}");
    ck_assert_str_eq(s.params[CS_BATCH_INSERT_CARTS][4], "{4}");
    ck_assert_str_eq(s.params[CS_BATCH_INSERT_CARTS][5], "{1000}");
    ck_assert_str_eq(s.params[CS_BATCH_INSERT_CARTS][6], "{4000}");
    ck_assert_uint_eq(s.rows[CS_BATCH_PUT_LINES], 1);
    ck_assert_str_eq(s.params[CS_BATCH_PUT_LINES][1], "{\"A\"}");
    ck_assert_str_eq(s.params[CS_BATCH_PUT_LINES][2], "{3}");
    ck_assert_uint_eq(s.rows[CS_BATCH_DELETE_LINES], 1);
    ck_assert_str_eq(s.params[CS_BATCH_DELETE_LINES][1], "{\"B\"}");
    ck_assert_uint_eq(s.rows[CS_BATCH_CLEAR_LINES], 0);
    cart_cleanup(&c);
    cs_batch_sql_cleanup(&s);
    cs_batch_cleanup(&b);
}
END_TEST

/* A checkout then a new cart: the old row is updated, the new one inserted, and the update runs
 * first (the statements' order is the enum's). */
START_TEST(test_checkout_then_new_cart)
{
    cs_batch b;
    cs_batch_sql s;
    cart c;

    cs_batch_init(&b);
    cs_batch_sql_init(&s);
    cart_init(&c, "u2");
    /* As loaded from the shard: an active cart at version 5 with one line. */
    snprintf(c.cart_id, sizeof c.cart_id, "%s", "22222222-2222-4222-8222-222222222222");
    c.state = CART_ACTIVE;
    c.version = 5;
    c.created_at_ms = c.updated_at_ms = 500;
    ck_assert_int_eq(cart_put_line(&c, "A", 1), CART_OK);
    apply(&b, &c, CART_EV_CHECKED_OUT, "", 0, 1000, "x");
    apply(&b, &c, CART_EV_ITEM_ADDED, "C", 1, 2000, "33333333-3333-4333-8333-333333333333");
    ck_assert_int_eq(cs_batch_render(&b, &s), 0);
    ck_assert_uint_eq(s.rows[CS_BATCH_UPDATE_CARTS], 1);
    ck_assert_str_eq(s.params[CS_BATCH_UPDATE_CARTS][0], "{\"22222222-2222-4222-8222-222222222222\"}");
    ck_assert_str_eq(s.params[CS_BATCH_UPDATE_CARTS][1], "{\"checked_out\"}");
    ck_assert_str_eq(s.params[CS_BATCH_UPDATE_CARTS][2], "{6}");
    ck_assert_str_eq(s.params[CS_BATCH_UPDATE_CARTS][3], "{1000}");
    ck_assert_str_eq(s.params[CS_BATCH_UPDATE_CARTS][4], "{\"\"}");
    ck_assert_uint_eq(s.rows[CS_BATCH_INSERT_CARTS], 1);
    ck_assert_str_eq(s.params[CS_BATCH_INSERT_CARTS][0], "{\"33333333-3333-4333-8333-333333333333\"}");
    ck_assert_str_eq(s.params[CS_BATCH_INSERT_CARTS][4], "{7}");
    ck_assert_uint_eq(s.rows[CS_BATCH_PUT_LINES], 1);
    ck_assert_str_eq(s.params[CS_BATCH_PUT_LINES][0], "{\"33333333-3333-4333-8333-333333333333\"}");
    ck_assert_int_lt(CS_BATCH_UPDATE_CARTS, CS_BATCH_INSERT_CARTS);
    ck_assert_int_lt(CS_BATCH_INSERT_CARTS, CS_BATCH_PUT_LINES);
    cart_cleanup(&c);
    cs_batch_sql_cleanup(&s);
    cs_batch_cleanup(&b);
}
END_TEST

/* A deleted cart loses all its lines, and the lines recorded for it before are not written. */
START_TEST(test_deleted_cart_clears_lines)
{
    cs_batch b;
    cs_batch_sql s;
    cart c;

    cs_batch_init(&b);
    cs_batch_sql_init(&s);
    cart_init(&c, "u3");
    apply(&b, &c, CART_EV_ITEM_ADDED, "A", 2, 1000, "44444444-4444-4444-8444-444444444444");
    apply(&b, &c, CART_EV_DELETED, "", 0, 2000, "x");
    apply(&b, &c, CART_EV_DELETED, "", 0, 3000, "x"); /* nothing to delete: no record */
    ck_assert_int_eq(cs_batch_render(&b, &s), 0);
    ck_assert_uint_eq(s.rows[CS_BATCH_INSERT_CARTS], 1);
    ck_assert_str_eq(s.params[CS_BATCH_INSERT_CARTS][3], "{\"deleted\"}");
    ck_assert_uint_eq(s.rows[CS_BATCH_CLEAR_LINES], 1);
    ck_assert_str_eq(s.params[CS_BATCH_CLEAR_LINES][0], "{\"44444444-4444-4444-8444-444444444444\"}");
    ck_assert_uint_eq(s.rows[CS_BATCH_PUT_LINES], 0);
    ck_assert_uint_eq(s.rows[CS_BATCH_DELETE_LINES], 0);
    cart_cleanup(&c);
    cs_batch_sql_cleanup(&s);
    cs_batch_cleanup(&b);
}
END_TEST

START_TEST(test_marks_outbox_offsets)
{
    cs_batch b;
    cs_batch_sql s;
    cart_event ev;
    size_t at = 99;

    cs_batch_init(&b);
    cs_batch_sql_init(&s);
    ck_assert(cs_batch_empty(&b));
    memset(&ev, 0, sizeof ev);
    snprintf(ev.event_id, sizeof ev.event_id, "%s", "idem-\"1\"");
    snprintf(ev.user_id, sizeof ev.user_id, "%s", "u4");
    ck_assert_int_eq(cs_batch_mark_processed(&b, &ev, 3, 0, 422, 0, "quantity 1000 is over the limit 999"), 0);
    snprintf(ev.request_fingerprint, sizeof ev.request_fingerprint, "%s", "9f86d081");
    ck_assert_int_eq(cs_batch_mark_processed(&b, &ev, 3, 18, 200, 9, NULL), 0);
    ck_assert_int_eq(cs_batch_outbox_add(&b, 3, "carts.changes.3", "chg-e1", "{\"a\":1}", &at), 0);
    ck_assert_uint_eq(at, 0);
    ck_assert_int_eq(cs_batch_outbox_add(&b, 3, "carts.changes.3", "chg-e2", "{}", &at), 0);
    ck_assert_uint_eq(at, 1);
    ck_assert_int_eq(cs_batch_offset_set(&b, 3, 18), 0);
    ck_assert_int_eq(cs_batch_offset_set(&b, 4, 30), 0);
    ck_assert_int_eq(cs_batch_offset_set(&b, 3, 12), 0); /* never backwards */
    ck_assert(!cs_batch_empty(&b));
    ck_assert_int_eq(cs_batch_render(&b, &s), 0);
    ck_assert_uint_eq(s.rows[CS_BATCH_MARKS], 2);
    ck_assert_str_eq(s.params[CS_BATCH_MARKS][0], "{\"idem-\\\"1\\\"\",\"idem-\\\"1\\\"\"}");
    ck_assert_str_eq(s.params[CS_BATCH_MARKS][3], "{0,18}");
    ck_assert_str_eq(s.params[CS_BATCH_MARKS][4], "{422,200}");
    ck_assert_str_eq(s.params[CS_BATCH_MARKS][5], "{0,9}");
    ck_assert_str_eq(s.params[CS_BATCH_MARKS][6], "{\"quantity 1000 is over the limit 999\",\"\"}");
    /* No fingerprint is "" (stored as NULL by the statement). */
    ck_assert_str_eq(s.params[CS_BATCH_MARKS][7], "{\"\",\"9f86d081\"}");
    ck_assert_str_eq(s.params[CS_BATCH_OUTBOX][2], "{\"chg-e1\",\"chg-e2\"}");
    ck_assert_str_eq(s.params[CS_BATCH_OUTBOX][3], "{\"{\\\"a\\\":1}\",\"{}\"}");
    ck_assert_str_eq(s.params[CS_BATCH_OFFSETS][0], "{3,4}");
    ck_assert_str_eq(s.params[CS_BATCH_OFFSETS][1], "{18,30}");
    /* Statements with no rows render empty arrays and are skipped by the writer. */
    ck_assert_uint_eq(s.rows[CS_BATCH_UPDATE_CARTS], 0);
    ck_assert_str_eq(s.params[CS_BATCH_UPDATE_CARTS][0], "{}");
    cs_batch_reset(&b);
    ck_assert(cs_batch_empty(&b));
    ck_assert_int_eq(cs_batch_render(&b, &s), 0);
    ck_assert_uint_eq(s.rows[CS_BATCH_MARKS], 0);
    ck_assert_int_eq(cs_batch_nparams(CS_BATCH_MARKS), 8);
    ck_assert_int_eq(cs_batch_nparams(CS_BATCH_NSTMTS), 0);
    cs_batch_sql_cleanup(&s);
    cs_batch_cleanup(&b);
}
END_TEST

/* After a reset (a flush of one event's writes), a cart started earlier is updated, not inserted. */
START_TEST(test_reset_between_events)
{
    cs_batch b;
    cart c;

    cs_batch_init(&b);
    cart_init(&c, "u5");
    apply(&b, &c, CART_EV_ITEM_ADDED, "A", 1, 1000, "55555555-5555-4555-8555-555555555555");
    ck_assert(b.carts[0].insert);
    cs_batch_reset(&b);
    apply(&b, &c, CART_EV_ITEM_ADDED, "A", 1, 2000, "x");
    ck_assert_uint_eq(b.ncarts, 1);
    ck_assert(!b.carts[0].insert);
    ck_assert_int_eq(b.lines[0].quantity, 2);
    cart_cleanup(&c);
    cs_batch_cleanup(&b);
}
END_TEST

/* A line's snapshot goes with it, members it lacks as NULL; a later event's snapshot replaces it. */
START_TEST(test_line_snapshots)
{
    cs_batch b;
    cs_batch_sql s;
    cart c;
    cart_event ev;
    cart_outcome o;

    cs_batch_init(&b);
    cs_batch_sql_init(&s);
    cart_init(&c, "u5");
    memset(&ev, 0, sizeof ev);
    strcpy(ev.event_id, "e1");
    strcpy(ev.user_id, "u5");
    ev.type = CART_EV_ITEM_ADDED;
    strcpy(ev.sku, "A");
    ev.quantity = 2;
    ev.snap.has_name = true;
    strcpy(ev.snap.name, "Mug \"1\"");
    ev.snap.has_price = true;
    ev.snap.unit_price = 1999;
    strcpy(ev.snap.currency, "EUR");
    ev.snap.has_attributes = true;
    strcpy(ev.snap.attributes, "{\"a\":\"b\\\"c\"}");
    ck_assert_int_eq(cart_apply(&c, &ev, &lim, 1000, "55555555-5555-4555-8555-555555555555", &o), CART_OK);
    ck_assert_int_eq(cs_batch_change(&b, &c, &o, 7), 0);
    apply(&b, &c, CART_EV_ITEM_ADDED, "B", 1, 1001, "x");
    ck_assert_int_eq(cs_batch_render(&b, &s), 0);
    ck_assert_int_eq(cs_batch_nparams(CS_BATCH_PUT_LINES), 7);
    ck_assert_uint_eq(s.rows[CS_BATCH_PUT_LINES], 2);
    ck_assert_str_eq(s.params[CS_BATCH_PUT_LINES][1], "{\"A\",\"B\"}");
    ck_assert_str_eq(s.params[CS_BATCH_PUT_LINES][3], "{\"Mug \\\"1\\\"\",NULL}");
    ck_assert_str_eq(s.params[CS_BATCH_PUT_LINES][4], "{1999,NULL}");
    ck_assert_str_eq(s.params[CS_BATCH_PUT_LINES][5], "{\"EUR\",NULL}");
    ck_assert_str_eq(s.params[CS_BATCH_PUT_LINES][6], "{\"{\\\"a\\\":\\\"b\\\\\\\"c\\\"}\",NULL}");

    /* Written once, in its final state: the second event's name, the first one's price. */
    cs_batch_reset(&b);
    memset(&ev.snap, 0, sizeof ev.snap);
    ev.snap.has_name = true;
    strcpy(ev.snap.name, "n2");
    ck_assert_int_eq(cart_apply(&c, &ev, &lim, 1002, "x", &o), CART_OK);
    ck_assert_int_eq(cs_batch_change(&b, &c, &o, 7), 0);
    ev.type = CART_EV_ITEM_QUANTITY_SET;
    ev.quantity = 1;
    memset(&ev.snap, 0, sizeof ev.snap);
    ck_assert_int_eq(cart_apply(&c, &ev, &lim, 1003, "x", &o), CART_OK);
    ck_assert_int_eq(cs_batch_change(&b, &c, &o, 7), 0);
    ck_assert_int_eq(cs_batch_render(&b, &s), 0);
    ck_assert_uint_eq(s.rows[CS_BATCH_PUT_LINES], 1);
    ck_assert_str_eq(s.params[CS_BATCH_PUT_LINES][2], "{1}");
    ck_assert_str_eq(s.params[CS_BATCH_PUT_LINES][3], "{\"n2\"}");
    ck_assert_str_eq(s.params[CS_BATCH_PUT_LINES][4], "{1999}");
    cart_cleanup(&c);
    cs_batch_sql_cleanup(&s);
    cs_batch_cleanup(&b);
}
END_TEST

static Suite *batch_suite(void)
{
    Suite *s = suite_create("batch");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_array_literals);
    tcase_add_test(tc, test_array_grows);
    tcase_add_test(tc, test_new_cart_collapses);
    tcase_add_test(tc, test_checkout_then_new_cart);
    tcase_add_test(tc, test_deleted_cart_clears_lines);
    tcase_add_test(tc, test_marks_outbox_offsets);
    tcase_add_test(tc, test_reset_between_events);
    tcase_add_test(tc, test_line_snapshots);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(batch_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
