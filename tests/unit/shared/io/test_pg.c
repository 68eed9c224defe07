/*
 * The shared reading of a user's latest cart from a shard's rows, on results built in memory
 * (PQmakeEmptyPGresult); no PostgreSQL runs. Also the DSN redaction.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "cartshard/pg.h"

/* Two leading columns (http_status, detail), then CART_PG_CART_COLUMNS. */
#define NCOLS (2 + CART_PG_CART_NCOLUMNS)

/* A result of `nrows` rows of NCOLS columns; `cells` holds nrows * NCOLS values, NULL for SQL NULL. */
static PGresult *rows(int nrows, const char *const *cells)
{
    static const char *names[NCOLS] = {"http_status", "detail",     "cart_id",   "status",   "version",
                                       "created_at",  "updated_at", "sku",       "quantity", "name",
                                       "unit_price",  "currency",   "attributes"};
    PGresAttDesc attrs[NCOLS];
    PGresult *res = PQmakeEmptyPGresult(NULL, PGRES_TUPLES_OK);

    ck_assert_ptr_nonnull(res);
    memset(attrs, 0, sizeof attrs);
    for (int i = 0; i < NCOLS; i++) {
        attrs[i].name = (char *)names[i];
        attrs[i].format = 0;
        attrs[i].typlen = -1;
        attrs[i].atttypmod = -1;
    }
    ck_assert_int_eq(PQsetResultAttrs(res, NCOLS, attrs), 1);
    for (int r = 0; r < nrows; r++)
        for (int col = 0; col < NCOLS; col++) {
            const char *v = cells[r * NCOLS + col];
            ck_assert_int_eq(PQsetvalue(res, r, col, (char *)v, v ? (int)strlen(v) : -1), 1);
        }
    return res;
}

/* The four snapshot columns of a line without one. */
#define NO_SNAP NULL, NULL, NULL, NULL

START_TEST(test_cart_with_lines)
{
    static const char *const cells[] = {
        "200", "", "c-1", "active", "7", "1700000000000", "1700000005000", "sku-b", "2", NO_SNAP,
        "200", "", "c-1", "active", "7", "1700000000000", "1700000005000", "sku-a", "5", NO_SNAP,
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
    static const char *const none[] = {"201", "", NULL, NULL, NULL, NULL, NULL, NULL, NULL, NO_SNAP};
    static const char *const empty[] = {"200", "", "c-2", "checked_out", "3", "1", "2", NULL, NULL, NO_SNAP};
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
    static const char *const cells[] = {"200", "", "c-3", "lost", "4", "1", "2", "sku-a", "1", NO_SNAP};
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

START_TEST(test_snapshots)
{
    static const char *const cells[] = {
        "200", "", "c-4", "active", "2", "1", "2", "A", "3", "Mug \"x\"", "1999", "EUR", "{\"color\":\"red\"}",
        "200", "", "c-4", "active", "2", "1", "2", "B", "1", "",          NULL,   NULL,  NULL,
        "200", "", "c-4", "active", "2", "1", "2", "C", "2", NULL,        "0",    "USD", NULL,
    };
    PGresult *res = rows(3, cells);
    const cart_item *it;
    cart c;

    cart_init(&c, "u1");
    ck_assert_int_eq(cart_pg_read_cart(res, 2, &c), CART_OK);
    ck_assert_uint_eq(c.nitems, 3);
    it = cart_find_line(&c, "A");
    ck_assert(it->snap.has_name && it->snap.has_price && it->snap.has_attributes);
    ck_assert_str_eq(it->snap.name, "Mug \"x\"");
    ck_assert_int_eq(it->snap.unit_price, 1999);
    ck_assert_str_eq(it->snap.currency, "EUR");
    ck_assert_str_eq(it->snap.attributes, "{\"color\":\"red\"}");
    /* An empty name is a name; NULLs are members the line lacks. */
    it = cart_find_line(&c, "B");
    ck_assert(it->snap.has_name && !it->snap.has_price && !it->snap.has_attributes);
    ck_assert_str_eq(it->snap.name, "");
    it = cart_find_line(&c, "C");
    ck_assert(!it->snap.has_name && it->snap.has_price && !it->snap.has_attributes);
    ck_assert_int_eq(it->snap.unit_price, 0);
    ck_assert_int_eq(cart_subtotal(&c), 3 * 1999);
    cart_cleanup(&c);
    PQclear(res);
}
END_TEST

START_TEST(test_snapshot_out_of_domain)
{
    char name[CART_NAME_MAX + 2];
    const char *cells[NCOLS] = {"200", "", "c-5", "active", "2", "1", "2", "A", "1", name, NULL, NULL, NULL};
    PGresult *res;
    cart c;

    /* The schema's CHECKs allow none of these; the reader refuses them rather than cut them. */
    memset(name, 'n', sizeof name - 1);
    name[sizeof name - 1] = '\0';
    res = rows(1, cells);
    cart_init(&c, "u1");
    ck_assert_int_eq(cart_pg_read_cart(res, 2, &c), CART_ERR_INVALID);
    ck_assert_uint_eq(c.nitems, 0);
    PQclear(res);
    cells[9] = NULL;
    cells[10] = "100000000001";
    cells[11] = "EUR";
    res = rows(1, cells);
    ck_assert_int_eq(cart_pg_read_cart(res, 2, &c), CART_ERR_INVALID);
    PQclear(res);
    cells[10] = "5";
    cells[11] = "eur";
    res = rows(1, cells);
    ck_assert_int_eq(cart_pg_read_cart(res, 2, &c), CART_ERR_INVALID);
    PQclear(res);
    ck_assert_uint_eq(c.nitems, 0);
    cart_cleanup(&c);
}
END_TEST

START_TEST(test_sql_text)
{
    /* The columns in the order the readers expect them, and the latest cart by version. */
    ck_assert_str_eq(CART_PG_CART_COLUMNS, "c.cart_id::text, c.status, c.version, (extract(epoch FROM c.created_at) "
                                           "* 1000)::bigint, (extract(epoch FROM c.updated_at) * 1000)::bigint, "
                                           "i.sku, i.quantity, i.name, i.unit_price, i.currency, i.attributes");
    ck_assert_str_eq(CART_PG_LINE_COLUMNS, "sku, quantity, name, unit_price, currency, attributes");
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
    tcase_add_test(tc, test_snapshots);
    tcase_add_test(tc, test_snapshot_out_of_domain);
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
