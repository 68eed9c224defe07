#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "route.h"

static gw_route match(const char *method, const char *path)
{
    gw_route r;

    gw_route_match(method, strlen(method), path, strlen(path), &r);
    return r;
}

START_TEST(test_api_routes)
{
    gw_route r = match("POST", "/v1/carts");
    ck_assert_int_eq(r.id, GW_R_CREATE_CART);

    r = match("GET", "/v1/carts/u1");
    ck_assert_int_eq(r.id, GW_R_GET_CART);
    ck_assert_str_eq(r.user_id, "u1");
    ck_assert_int_eq(match("HEAD", "/v1/carts/u1").id, GW_R_GET_CART);
    ck_assert_int_eq(match("DELETE", "/v1/carts/u1").id, GW_R_DELETE_CART);
    ck_assert_int_eq(match("POST", "/v1/carts/u1/items").id, GW_R_ADD_ITEM);
    ck_assert_int_eq(match("POST", "/v1/carts/u1/checkout").id, GW_R_CHECKOUT);

    r = match("PUT", "/v1/carts/u.1:x-y_z/items/SKU-9");
    ck_assert_int_eq(r.id, GW_R_SET_ITEM);
    ck_assert_str_eq(r.user_id, "u.1:x-y_z");
    ck_assert_str_eq(r.sku, "SKU-9");
    ck_assert_int_eq(match("DELETE", "/v1/carts/u1/items/A").id, GW_R_REMOVE_ITEM);
    /* A query string is ignored; ".." is a valid id, not a path step. */
    ck_assert_int_eq(match("GET", "/v1/carts/u1?x=1").id, GW_R_GET_CART);
    /* The absolute form: the path after the authority. */
    r = match("GET", "http://cart.example:8080/v1/carts/u2?x");
    ck_assert_int_eq(r.id, GW_R_GET_CART);
    ck_assert_str_eq(r.user_id, "u2");
    ck_assert_int_eq(match("DELETE", "HTTPS://a/v1/carts/u1/items/A").id, GW_R_REMOVE_ITEM);
    ck_assert_int_eq(match("GET", "https://a").id, GW_R_NOT_FOUND);
    ck_assert_int_eq(match("GET", "https:///v1/carts/u1").id, GW_R_GET_CART);
    ck_assert_int_eq(match("GET", "ftp://a/v1/carts/u1").id, GW_R_NOT_FOUND);
    r = match("GET", "/v1/carts/..");
    ck_assert_int_eq(r.id, GW_R_GET_CART);
    ck_assert_str_eq(r.user_id, "..");
}
END_TEST

START_TEST(test_ops_routes)
{
    ck_assert_int_eq(match("GET", "/healthz").id, GW_R_HEALTHZ);
    ck_assert_int_eq(match("GET", "/readyz").id, GW_R_READYZ);
    ck_assert_int_eq(match("GET", "/metrics").id, GW_R_METRICS);
    ck_assert_int_eq(match("POST", "/metrics").id, GW_R_BAD_METHOD);
}
END_TEST

START_TEST(test_methods_and_allow)
{
    gw_route r = match("PATCH", "/v1/carts/u1");
    ck_assert_int_eq(r.id, GW_R_BAD_METHOD);
    ck_assert_str_eq(r.allow, "GET, HEAD, DELETE, OPTIONS");
    r = match("GET", "/v1/carts");
    ck_assert_int_eq(r.id, GW_R_BAD_METHOD);
    ck_assert_str_eq(r.allow, "POST, OPTIONS");
    ck_assert_str_eq(match("GET", "/v1/carts/u1/items").allow, "POST, OPTIONS");
    ck_assert_str_eq(match("POST", "/v1/carts/u1/items/A").allow, "PUT, DELETE, OPTIONS");
    /* OPTIONS on an API path says what it serves; the probes serve GET only. */
    r = match("OPTIONS", "/v1/carts/u1/items/A");
    ck_assert_int_eq(r.id, GW_R_OPTIONS);
    ck_assert_str_eq(r.allow, "PUT, DELETE, OPTIONS");
    ck_assert_str_eq(r.name, "options");
    ck_assert_str_eq(match("OPTIONS", "/v1/carts").allow, "POST, OPTIONS");
    ck_assert_int_eq(match("OPTIONS", "/v1/carts/u1/checkout").id, GW_R_OPTIONS);
    r = match("OPTIONS", "/v1/carts/u1/merge");
    ck_assert_int_eq(r.id, GW_R_OPTIONS);
    ck_assert_str_eq(r.allow, "POST, OPTIONS");
    ck_assert_int_eq(match("OPTIONS", "/v1/carts/bad$id").id, GW_R_OPTIONS); /* ids are the real request's business */
    ck_assert_int_eq(match("OPTIONS", "/healthz").id, GW_R_BAD_METHOD);
    ck_assert_int_eq(match("OPTIONS", "/v1/other").id, GW_R_NOT_FOUND);
}
END_TEST

START_TEST(test_not_found_and_bad_ids)
{
    const char *missing[] = {"/",
                             "",
                             "/v2/carts/u1",
                             "/v1",
                             "/v1/carts/u1/other",
                             "/v1/carts/u1/items/a/b",
                             "/v1//carts",
                             "/v1/carts/u1/",
                             "/v1/carts//items",
                             "x/v1/carts",
                             "/v1/carts/u1/checkout/x"};
    for (size_t i = 0; i < sizeof missing / sizeof missing[0]; i++)
        ck_assert_msg(match("GET", missing[i]).id == GW_R_NOT_FOUND || match("POST", missing[i]).id == GW_R_NOT_FOUND,
                      "%s", missing[i]);

    gw_route r = match("GET", "/v1/carts/u%201");
    ck_assert_int_eq(r.id, GW_R_BAD_ID);
    ck_assert_ptr_nonnull(strstr(r.detail, "user_id"));
    char long_id[80];
    memset(long_id, 'a', 65);
    long_id[65] = '\0';
    char path[128] = "/v1/carts/";
    strcat(path, long_id);
    ck_assert_int_eq(match("GET", path).id, GW_R_BAD_ID);
    r = match("PUT", "/v1/carts/u1/items/bad$sku");
    ck_assert_int_eq(r.id, GW_R_BAD_ID);
    ck_assert_ptr_nonnull(strstr(r.detail, "sku"));
}
END_TEST

START_TEST(test_percent_decoding)
{
    gw_route r = match("GET", "/v1/carts/anon%3A42");
    ck_assert_int_eq(r.id, GW_R_GET_CART);
    ck_assert_str_eq(r.user_id, "anon:42");
    r = match("PUT", "/%76%31/carts/a%2eb/items/SKU%2d1%5F2");
    ck_assert_int_eq(r.id, GW_R_SET_ITEM);
    ck_assert_str_eq(r.user_id, "a.b");
    ck_assert_str_eq(r.sku, "SKU-1_2");
    /* Outside the alphabet once decoded, a '/' among them: 400, not another path. */
    static const char *const outside[] = {"/v1/carts/a%2Fb", "/v1/carts/a%2fb/items",     "/v1/carts/a%20b",
                                          "/v1/carts/%00",   "/v1/carts/u1/items/%C3%A9", "/v1/carts/%25"};
    for (size_t i = 0; i < sizeof outside / sizeof outside[0]; i++) {
        r = match(i == 4 ? "DELETE" : "GET", outside[i]);
        ck_assert_msg(r.id == GW_R_BAD_ID || (i == 1 && r.id == GW_R_BAD_METHOD), "%s: %d", outside[i], r.id);
    }
    r = match("GET", "/v1/carts/a%2Fb");
    ck_assert_ptr_nonnull(strstr(r.detail, "user_id"));
    /* A malformed escape anywhere. */
    static const char *const malformed[] = {"/v1/carts/a%", "/v1/carts/a%4", "/v1/carts/a%zz", "/v1/carts/%4g/items",
                                            "/v%1/carts"};
    for (size_t i = 0; i < sizeof malformed / sizeof malformed[0]; i++) {
        r = match("GET", malformed[i]);
        ck_assert_msg(r.id == GW_R_BAD_ID, "%s: %d", malformed[i], r.id);
        ck_assert_str_eq(r.detail, "path: '%' must be followed by two hexadecimal digits");
    }
    /* 64 characters once decoded is the most an id has, however it is spelled. */
    char path[512] = "/v1/carts/";
    for (int i = 0; i < 64; i++)
        strcat(path, "%61");
    r = match("GET", path);
    ck_assert_int_eq(r.id, GW_R_GET_CART);
    ck_assert_uint_eq(strlen(r.user_id), 64);
    strcat(path, "a");
    ck_assert_int_eq(match("GET", path).id, GW_R_BAD_ID);
}
END_TEST

/* Every prefix of a valid path routes without reading past it (run under ASan). */
START_TEST(test_prefixes)
{
    const char *p = "/v1/carts/user-1/items/SKU-1?a=b";
    for (size_t n = 0; n <= strlen(p); n++) {
        char *copy = malloc(n ? n : 1);
        memcpy(copy, p, n);
        gw_route r;
        gw_route_match("PUT", 3, copy, n, &r);
        ck_assert_ptr_nonnull(r.name);
        free(copy);
    }
}
END_TEST

START_TEST(test_write_targets)
{
    static const char *const writes[][3] = {
        /* request method, request target, the route's method and path */
        {"POST", "/v1/carts", "/v1/carts"},
        {"DELETE", "/v1/carts/u%3A1", "/v1/carts/u:1"},
        {"POST", "/v1/carts/u1/items?x=%41", "/v1/carts/u1/items"},
        {"PUT", "https://h:8443/v1/carts/u1/items/%41-1", "/v1/carts/u1/items/A-1"},
        {"DELETE", "/v1/carts/u1/items/A1", "/v1/carts/u1/items/A1"},
        {"POST", "/v1/carts/u1/checkout", "/v1/carts/u1/checkout"},
        {"POST", "/v1/carts/u%3A1/merge?x=1", "/v1/carts/u:1/merge"},
    };
    static const char *const others[][2] = {
        {"GET", "/v1/carts/u1"}, {"OPTIONS", "/v1/carts"},          {"PATCH", "/v1/carts/u1"}, {"GET", "/healthz"},
        {"GET", "/x"},           {"OPTIONS", "/v1/carts/u1/merge"},
    };
    char path[GW_ROUTE_PATH_MAX], longest[GW_ROUTE_PATH_MAX + 8];
    const char *method = NULL;
    gw_route r;

    for (size_t i = 0; i < sizeof writes / sizeof writes[0]; i++) {
        r = match(writes[i][0], writes[i][1]);
        ck_assert_int_eq(gw_route_write_target(&r, &method, path), 0);
        ck_assert_str_eq(method, writes[i][0]);
        ck_assert_str_eq(path, writes[i][2]);
    }
    for (size_t i = 0; i < sizeof others / sizeof others[0]; i++) {
        r = match(others[i][0], others[i][1]);
        method = NULL;
        strcpy(path, "untouched");
        ck_assert_int_eq(gw_route_write_target(&r, &method, path), -1);
        ck_assert_ptr_null(method);
        ck_assert_str_eq(path, "untouched");
    }
    /* The longest ids fit. */
    snprintf(longest, sizeof longest, "/v1/carts/%064d/items/%064d", 1, 2);
    r = match("PUT", longest);
    ck_assert_int_eq(gw_route_write_target(&r, &method, path), 0);
    ck_assert_str_eq(path, longest);
}
END_TEST

static Suite *route_suite(void)
{
    Suite *s = suite_create("route");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_api_routes);
    tcase_add_test(tc, test_ops_routes);
    tcase_add_test(tc, test_methods_and_allow);
    tcase_add_test(tc, test_not_found_and_bad_ids);
    tcase_add_test(tc, test_percent_decoding);
    tcase_add_test(tc, test_prefixes);
    tcase_add_test(tc, test_write_targets);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(route_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
