/*
 * The shared reading of a user's latest cart from a shard's rows, on results built in memory
 * (PQmakeEmptyPGresult); no PostgreSQL runs. Also the DSN redaction.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "cartshard/pg.h"

/* A result of `nrows` rows of two leading columns (http_status, detail) then
 * CART_PG_CART_COLUMNS; `cells` holds nrows * 9 values, NULL for SQL NULL. */
static PGresult *rows(int nrows, const char *const *cells)
{
    static const char *names[9] = {"http_status", "detail",     "cart_id", "status",  "version",
                                   "created_at",  "updated_at", "sku",     "quantity"};
    PGresAttDesc attrs[9];
    PGresult *res = PQmakeEmptyPGresult(NULL, PGRES_TUPLES_OK);

    ck_assert_ptr_nonnull(res);
    memset(attrs, 0, sizeof attrs);
    for (int i = 0; i < 9; i++) {
        attrs[i].name = (char *)names[i];
        attrs[i].format = 0;
        attrs[i].typlen = -1;
        attrs[i].atttypmod = -1;
    }
    ck_assert_int_eq(PQsetResultAttrs(res, 9, attrs), 1);
    for (int r = 0; r < nrows; r++)
        for (int col = 0; col < 9; col++) {
            const char *v = cells[r * 9 + col];
            ck_assert_int_eq(PQsetvalue(res, r, col, (char *)v, v ? (int)strlen(v) : -1), 1);
        }
    return res;
}

START_TEST(test_cart_with_lines)
{
    static const char *const cells[] = {
        "200", "", "c-1", "active", "7", "1700000000000", "1700000005000", "sku-b", "2",
        "200", "", "c-1", "active", "7", "1700000000000", "1700000005000", "sku-a", "5",
    };
    PGresult *res = rows(2, cells);
    cart c;

    cart_init(&c, "u1");
    ck_assert_int_eq(cart_pg_read_cart(res, 2, &c), CART_OK);
    ck_assert_str_eq(c.cart_id, "c-1");
    ck_assert_int_eq(c.state, CART_ACTIVE);
    ck_assert_int_eq(c.version, 7);
    ck_assert_int_eq(c.created_at_ms, 1700000000000LL);
    ck_assert_int_eq(c.updated_at_ms, 1700000005000LL);
    ck_assert_uint_eq(c.nitems, 2);
    cart_cleanup(&c);
    PQclear(res);
}
END_TEST

START_TEST(test_no_cart_and_no_lines)
{
    static const char *const none[] = {"201", "", NULL, NULL, NULL, NULL, NULL, NULL, NULL};
    static const char *const empty[] = {"200", "", "c-2", "checked_out", "3", "1", "2", NULL, NULL};
    PGresult *res = rows(1, none);
    cart c;

    cart_init(&c, "u1");
    ck_assert_int_eq(cart_pg_read_cart(res, 2, &c), CART_ERR_NOT_FOUND);
    ck_assert_int_eq(c.state, CART_NONE);
    ck_assert_str_eq(c.cart_id, "");
    PQclear(res);

    res = rows(0, NULL);
    ck_assert_int_eq(cart_pg_read_cart(res, 2, &c), CART_ERR_NOT_FOUND);
    PQclear(res);

    res = rows(1, empty);
    ck_assert_int_eq(cart_pg_read_cart(res, 2, &c), CART_OK);
    ck_assert_int_eq(c.state, CART_CHECKED_OUT);
    ck_assert_int_eq(c.version, 3);
    ck_assert_uint_eq(c.nitems, 0);
    cart_cleanup(&c);
    PQclear(res);
}
END_TEST

START_TEST(test_unknown_status)
{
    static const char *const cells[] = {"200", "", "c-3", "lost", "4", "1", "2", "sku-a", "1"};
    PGresult *res = rows(1, cells);
    cart c;

    cart_init(&c, "u1");
    ck_assert_int_eq(cart_pg_cart_header(res, 0, 2, &c), CART_ERR_INVALID);
    ck_assert_int_eq(c.state, CART_NONE);
    ck_assert_int_eq(c.version, 4);
    ck_assert_int_eq(cart_pg_read_cart(res, 2, &c), CART_ERR_INVALID);
    ck_assert_uint_eq(c.nitems, 0); /* no lines for a cart it cannot name */
    cart_cleanup(&c);
    PQclear(res);
}
END_TEST

START_TEST(test_sql_text)
{
    /* The columns in the order the readers expect them, and the latest cart by version. */
    ck_assert_str_eq(CART_PG_CART_COLUMNS, "c.cart_id::text, c.status, c.version, (extract(epoch FROM c.created_at) "
                                           "* 1000)::bigint, (extract(epoch FROM c.updated_at) * 1000)::bigint, "
                                           "i.sku, i.quantity");
    ck_assert_str_eq(CART_PG_LATEST_CART("$1"),
                     "(SELECT * FROM carts WHERE user_id = $1 ORDER BY version DESC LIMIT 1)");
}
END_TEST

START_TEST(test_redact)
{
    char buf[128];

    ck_assert_str_eq(cart_pg_redact("postgres://app:s3cret@db:5432/cartshard", buf, sizeof buf),
                     "postgres://app:***@db:5432/cartshard");
}
END_TEST

static Suite *pg_suite(void)
{
    Suite *s = suite_create("pg");
    TCase *tc = tcase_create("rows");
    tcase_add_test(tc, test_cart_with_lines);
    tcase_add_test(tc, test_no_cart_and_no_lines);
    tcase_add_test(tc, test_unknown_status);
    tcase_add_test(tc, test_sql_text);
    tcase_add_test(tc, test_redact);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(pg_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
