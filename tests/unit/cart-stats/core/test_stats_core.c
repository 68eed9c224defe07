/* The pure logic of cart-stats: notices, windows, queries, figures and their JSON. */
#include <check.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stats_core.h"

static cart_status decode(const char *json, st_notice *n, char *err)
{
    return st_notice_decode(json, strlen(json), n, err, 160);
}

#define HEAD "\"event_id\":\"e1\",\"user_id\":\"u1\",\"cart_id\":\"c1\",\"applied_at\":\"2026-12-07T10:05:59.999Z\""

START_TEST(test_notice_counts)
{
    st_notice n;
    char err[160];
    int64_t minute = 1796637959999LL / 60000;

    /* A first add: a new cart, a line, its units, counted in applied_at's minute. */
    ck_assert_int_eq(decode("{" HEAD ",\"type\":\"cart.item_added\",\"cart_created\":true,"
                            "\"line\":{\"sku\":\"A1\",\"quantity_before\":0,\"quantity_after\":3}}",
                            &n, err),
                     CART_OK);
    ck_assert_str_eq(n.event_id, "e1");
    ck_assert_str_eq(n.cart_id, "c1");
    ck_assert_int_eq(n.minute, minute);
    ck_assert_int_eq(n.add[ST_CARTS_CREATED], 1);
    ck_assert_int_eq(n.add[ST_LINES_ADDED], 1);
    ck_assert_int_eq(n.add[ST_UNITS_ADDED], 3);
    ck_assert_str_eq(n.sku, "A1");
    ck_assert_int_eq(n.add[ST_LINES_REMOVED], 0);

    /* An add to an existing line: its delta only. */
    ck_assert_int_eq(decode("{" HEAD ",\"type\":\"cart.item_added\",\"cart_created\":false,"
                            "\"line\":{\"sku\":\"A1\",\"quantity_before\":3,\"quantity_after\":5}}",
                            &n, err),
                     CART_OK);
    ck_assert_int_eq(n.add[ST_CARTS_CREATED], 0);
    ck_assert_int_eq(n.add[ST_UNITS_ADDED], 2);

    /* A set to 0 removes a line; a set to more adds no units (only adds count them). */
    ck_assert_int_eq(decode("{" HEAD ",\"type\":\"cart.item_quantity_set\",\"cart_created\":false,"
                            "\"line\":{\"sku\":\"A1\",\"quantity_before\":5,\"quantity_after\":0}}",
                            &n, err),
                     CART_OK);
    ck_assert_int_eq(n.add[ST_LINES_REMOVED], 1);
    ck_assert_int_eq(n.add[ST_LINES_ADDED], 0);
    ck_assert_int_eq(decode("{" HEAD ",\"type\":\"cart.item_quantity_set\",\"cart_created\":false,"
                            "\"line\":{\"sku\":\"A1\",\"quantity_before\":1,\"quantity_after\":9}}",
                            &n, err),
                     CART_OK);
    ck_assert_int_eq(n.add[ST_UNITS_ADDED], 0);
    ck_assert_int_eq(n.add[ST_LINES_REMOVED], 0);
    ck_assert_str_eq(n.sku, "");

    /* A removal, the ends of a cart, a merge. */
    ck_assert_int_eq(decode("{" HEAD ",\"type\":\"cart.item_removed\"}", &n, err), CART_OK);
    ck_assert_int_eq(n.add[ST_LINES_REMOVED], 1);
    ck_assert_int_eq(decode("{" HEAD ",\"type\":\"cart.expired\"}", &n, err), CART_OK);
    ck_assert_int_eq(n.add[ST_CARTS_EXPIRED], 1);
    ck_assert_int_eq(decode("{" HEAD ",\"type\":\"cart.deleted\"}", &n, err), CART_OK);
    ck_assert_int_eq(n.add[ST_CARTS_DELETED], 1);
    ck_assert_int_eq(decode("{" HEAD ",\"type\":\"cart.merged\",\"cart_created\":false}", &n, err), CART_OK);
    ck_assert_int_eq(n.add[ST_MERGES], 1);
    ck_assert_int_eq(n.add[ST_CARTS_CREATED], 0);
    ck_assert_int_eq(decode("{" HEAD ",\"type\":\"cart.lines_merged\",\"cart_created\":true}", &n, err), CART_OK);
    ck_assert_int_eq(n.add[ST_CARTS_CREATED], 1);
    ck_assert_int_eq(n.add[ST_MERGES], 0);

    /* A checkout: its value in its currency; an unpriced cart has none. */
    ck_assert_int_eq(decode("{" HEAD ",\"type\":\"cart.checked_out\",\"currency\":\"EUR\",\"subtotal\":3998}", &n, err),
                     CART_OK);
    ck_assert_int_eq(n.add[ST_CHECKOUTS], 1);
    ck_assert_str_eq(n.currency, "EUR");
    ck_assert_int_eq(n.value, 3998);
    ck_assert_int_eq(decode("{" HEAD ",\"type\":\"cart.checked_out\",\"currency\":null,\"subtotal\":0}", &n, err),
                     CART_OK);
    ck_assert_str_eq(n.currency, "");
    ck_assert_int_eq(n.value, 0);

    /* A type this code does not know counts its cart only. */
    ck_assert_int_eq(decode("{" HEAD ",\"type\":\"cart.something_new\"}", &n, err), CART_OK);
    for (int i = 0; i < ST_NCOUNTERS; i++)
        ck_assert_int_eq(n.add[i], 0);
}
END_TEST

START_TEST(test_older_notices)
{
    st_notice n;
    char err[160];

    /* Without cart_created: only cart.created is known to be new. */
    ck_assert_int_eq(decode("{" HEAD ",\"type\":\"cart.created\"}", &n, err), CART_OK);
    ck_assert_int_eq(n.add[ST_CARTS_CREATED], 1);
    /* Without line: the add is a line added, its units unknown (0); a set to 0 is not known. */
    ck_assert_int_eq(decode("{" HEAD ",\"type\":\"cart.item_added\"}", &n, err), CART_OK);
    ck_assert_int_eq(n.add[ST_CARTS_CREATED], 0);
    ck_assert_int_eq(n.add[ST_LINES_ADDED], 1);
    ck_assert_int_eq(n.add[ST_UNITS_ADDED], 0);
    ck_assert_str_eq(n.sku, "");
    ck_assert_int_eq(decode("{" HEAD ",\"type\":\"cart.item_quantity_set\"}", &n, err), CART_OK);
    ck_assert_int_eq(n.add[ST_LINES_REMOVED], 0);
    /* cart_created: false on a cart.created is believed. */
    ck_assert_int_eq(decode("{" HEAD ",\"type\":\"cart.created\",\"cart_created\":false}", &n, err), CART_OK);
    ck_assert_int_eq(n.add[ST_CARTS_CREATED], 0);
}
END_TEST

START_TEST(test_malformed_notices)
{
    static const struct {
        const char *json;
        const char *err;
    } cases[] = {
        {"not json", "not JSON"},
        {"[1]", "not a JSON object"},
        {"{\"type\":\"cart.created\",\"cart_id\":\"c\",\"applied_at\":\"2026-12-07T10:00:00Z\"}", "event_id:"},
        {"{\"event_id\":\"e\",\"cart_id\":\"c\",\"applied_at\":\"2026-12-07T10:00:00Z\"}", "type:"},
        {"{\"event_id\":\"e\",\"type\":\"cart.created\",\"applied_at\":\"2026-12-07T10:00:00Z\"}", "cart_id:"},
        {"{\"event_id\":\"e\",\"type\":\"cart.created\",\"cart_id\":\"c\",\"applied_at\":\"yesterday\"}",
         "applied_at:"},
        {"{" HEAD ",\"type\":\"cart.created\",\"cart_created\":1}", "cart_created:"},
        {"{" HEAD ",\"type\":\"cart.item_added\",\"line\":[]}", "line:"},
        {"{" HEAD ",\"type\":\"cart.item_added\",\"line\":{\"sku\":\"a b\",\"quantity_before\":0,"
         "\"quantity_after\":1}}",
         "line.sku:"},
        {"{" HEAD ",\"type\":\"cart.item_added\",\"line\":{\"sku\":\"A\",\"quantity_before\":-1,"
         "\"quantity_after\":1}}",
         "line.quantity_before:"},
        {"{" HEAD ",\"type\":\"cart.item_added\",\"line\":{\"sku\":\"A\",\"quantity_before\":0}}",
         "line.quantity_after:"},
        {"{" HEAD ",\"type\":\"cart.checked_out\",\"currency\":\"eur\",\"subtotal\":1}", "currency:"},
        {"{" HEAD ",\"type\":\"cart.checked_out\",\"currency\":\"EUR\",\"subtotal\":-1}", "subtotal:"},
        {"{" HEAD ",\"type\":\"cart.created\",\"type\":\"cart.deleted\"}", "not JSON"},
    };
    st_notice n;
    char err[160];

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        memset(&n, 0x5a, sizeof n);
        ck_assert_msg(decode(cases[i].json, &n, err) == CART_ERR_INVALID, "case %zu decoded", i);
        ck_assert_msg(strncmp(err, cases[i].err, strlen(cases[i].err)) == 0, "case %zu: %s", i, err);
        ck_assert_int_eq(((unsigned char *)&n)[0], 0x5a); /* untouched */
    }
}
END_TEST

START_TEST(test_windows)
{
    int64_t first, last;
    int m;

    ck_assert_int_eq(st_window_parse("5m", 2, &m), CART_OK);
    ck_assert_int_eq(m, 5);
    ck_assert_int_eq(st_window_parse("1h", 2, &m), CART_OK);
    ck_assert_int_eq(m, 60);
    ck_assert_int_eq(st_window_parse("24h", 3, &m), CART_OK);
    ck_assert_int_eq(m, 1440);
    ck_assert_int_eq(st_window_parse("5", 1, &m), CART_ERR_INVALID);
    ck_assert_int_eq(st_window_parse("5m ", 3, &m), CART_ERR_INVALID);
    ck_assert_int_eq(st_window_parse("", 0, &m), CART_ERR_INVALID);
    ck_assert_str_eq(st_window_name(60), "1h");
    ck_assert_ptr_null(st_window_name(7));
    /* 10:05:59.999: the current minute is 10:05; 5m is 10:01 to 10:05. */
    st_window_bounds(1796637959999LL, 5, &first, &last);
    ck_assert_int_eq(last, 1796637959999LL / 60000);
    ck_assert_int_eq(first, last - 4);
    /* On the minute itself, that minute is the current one. */
    st_window_bounds(1796637900000LL, 1440, &first, &last);
    ck_assert_int_eq(last, 1796637900000LL / 60000);
    ck_assert_int_eq(last - first + 1, 1440);
}
END_TEST

START_TEST(test_queries)
{
    st_query q;
    char err[160];

    ck_assert_int_eq(st_query_parse(NULL, 0, false, &q, err, sizeof err), CART_OK);
    ck_assert_int_eq(q.minutes, 60);
    ck_assert_int_eq(q.limit, 10);
    ck_assert_int_eq(st_query_parse("window=24h&x=1", 14, false, &q, err, sizeof err), CART_OK);
    ck_assert_int_eq(q.minutes, 1440);
    ck_assert_int_eq(st_query_parse("limit=100&window=5m", 19, true, &q, err, sizeof err), CART_OK);
    ck_assert_int_eq(q.limit, 100);
    ck_assert_int_eq(q.minutes, 5);
    /* limit is only top-skus's: elsewhere it is an unknown parameter, ignored. */
    ck_assert_int_eq(st_query_parse("limit=abc", 9, false, &q, err, sizeof err), CART_OK);

    ck_assert_int_eq(st_query_parse("window=1d", 9, false, &q, err, sizeof err), CART_ERR_INVALID);
    ck_assert_str_eq(err, "window: expected 5m, 1h or 24h, got \"1d\"");
    ck_assert_int_eq(st_query_parse("window=", 7, false, &q, err, sizeof err), CART_ERR_INVALID);
    ck_assert_int_eq(st_query_parse("window", 6, false, &q, err, sizeof err), CART_ERR_INVALID);
    ck_assert_int_eq(st_query_parse("window=5m&window=1h", 19, false, &q, err, sizeof err), CART_ERR_INVALID);
    ck_assert_str_eq(err, "window: given more than once");
    ck_assert_int_eq(st_query_parse("limit=0", 7, true, &q, err, sizeof err), CART_ERR_INVALID);
    ck_assert_str_eq(err, "limit: expected an integer from 1 to 100, got \"0\"");
    ck_assert_int_eq(st_query_parse("limit=101", 9, true, &q, err, sizeof err), CART_ERR_INVALID);
    ck_assert_int_eq(st_query_parse("limit=-1", 8, true, &q, err, sizeof err), CART_ERR_INVALID);
    ck_assert_int_eq(st_query_parse("limit=1e2", 9, true, &q, err, sizeof err), CART_ERR_INVALID);
    ck_assert_int_eq(st_query_parse("limit=0010", 10, true, &q, err, sizeof err), CART_ERR_INVALID);
    ck_assert_int_eq(st_query_parse("limit=5&limit=6", 15, true, &q, err, sizeof err), CART_ERR_INVALID);
    /* A value that is not printable is not echoed as it is. */
    ck_assert_int_eq(st_query_parse("window=\x01\"", 9, false, &q, err, sizeof err), CART_ERR_INVALID);
    ck_assert_str_eq(err, "window: expected 5m, 1h or 24h, got \"??\"");
}
END_TEST

START_TEST(test_figures_json)
{
    st_figures *f = calloc(1, sizeof *f);
    json_t *doc, *series;
    char *s;
    size_t len = 0;

    f->minutes = 5;
    st_window_bounds(1796637959999LL, 5, &f->first_minute, &f->last_minute);
    for (int i = 0; i < ST_NCOUNTERS; i++)
        f->sum[i] = i + 1;
    f->sum[ST_CHECKOUTS] = 3;
    f->sum[ST_CARTS_CREATED] = 4;
    f->sum[ST_CARTS_EXPIRED] = 1;
    f->ncurrencies = 2;
    snprintf(f->currency[0], sizeof f->currency[0], "USD");
    f->value[0] = 500;
    snprintf(f->currency[1], sizeof f->currency[1], "EUR");
    f->value[1] = 1999;
    f->active_carts = 7;
    f->series_units[4] = 9;
    f->series_checkouts[4] = 3;
    s = st_figures_to_json(f, &len);
    ck_assert_ptr_nonnull(s);
    ck_assert_uint_eq(len, strlen(s));
    /* The members in the documented order, the currencies sorted. */
    ck_assert_ptr_nonnull(strstr(s,
                                 "{\"window\":\"5m\",\"from\":\"2026-12-07T10:01:00Z\",\"to\":\"2026-12-07T10:06:00Z\","
                                 "\"carts_created\":4,\"lines_added\":2,\"units_added\":3,\"lines_removed\":4,"
                                 "\"checkouts\":3,\"checkout_value\":{\"EUR\":1999,\"USD\":500},"
                                 "\"carts_expired\":1,\"carts_deleted\":7,\"merges\":8,\"active_carts\":7,"));
    doc = json_loads(s, 0, NULL);
    ck_assert_ptr_nonnull(doc);
    ck_assert(json_real_value(json_object_get(doc, "conversion")) == 0.75);
    ck_assert(json_real_value(json_object_get(doc, "abandonment")) == 0.25);
    series = json_object_get(doc, "series");
    ck_assert_uint_eq(json_array_size(series), 5);
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(series, 0), "minute")), "2026-12-07T10:01:00Z");
    ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(series, 4), "units_added")), 9);
    ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(series, 4), "checkouts")), 3);
    json_decref(doc);
    free(s);

    /* Nothing created, nothing ended: both ratios are null. */
    memset(f->sum, 0, sizeof f->sum);
    f->ncurrencies = 0;
    s = st_figures_to_json(f, NULL);
    doc = json_loads(s, 0, NULL);
    ck_assert(json_is_null(json_object_get(doc, "conversion")));
    ck_assert(json_is_null(json_object_get(doc, "abandonment")));
    ck_assert_int_eq(json_object_size(json_object_get(doc, "checkout_value")), 0);
    json_decref(doc);
    free(s);
    /* More checkouts than carts created: conversion above 1. */
    f->sum[ST_CHECKOUTS] = 3;
    f->sum[ST_CARTS_CREATED] = 2;
    s = st_figures_to_json(f, NULL);
    doc = json_loads(s, 0, NULL);
    ck_assert(json_real_value(json_object_get(doc, "conversion")) == 1.5);
    ck_assert(json_real_value(json_object_get(doc, "abandonment")) == 0.0);
    json_decref(doc);
    free(s);
    free(f);
}
END_TEST

START_TEST(test_top_skus)
{
    st_sku_units v[] = {{"B", 5}, {"A", 5}, {"C", 9}, {"a", 5}, {"D", 1}};
    char *s;

    st_top_sort(v, 5);
    ck_assert_str_eq(v[0].sku, "C");
    ck_assert_str_eq(v[1].sku, "A"); /* ties by sku ascending, bytewise */
    ck_assert_str_eq(v[2].sku, "B");
    ck_assert_str_eq(v[3].sku, "a");
    ck_assert_str_eq(v[4].sku, "D");
    s = st_top_to_json(v, 5, 2, NULL);
    ck_assert_str_eq(s, "[{\"sku\":\"C\",\"units\":9},{\"sku\":\"A\",\"units\":5}]");
    free(s);
    s = st_top_to_json(v, 0, 10, NULL);
    ck_assert_str_eq(s, "[]");
    free(s);
}
END_TEST

static Suite *stats_core_suite(void)
{
    Suite *s = suite_create("stats_core");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_notice_counts);
    tcase_add_test(tc, test_older_notices);
    tcase_add_test(tc, test_malformed_notices);
    tcase_add_test(tc, test_windows);
    tcase_add_test(tc, test_queries);
    tcase_add_test(tc, test_figures_json);
    tcase_add_test(tc, test_top_skus);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(stats_core_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
