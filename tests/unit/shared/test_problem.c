#include <check.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cartshard/problem.h"

#define ELLIPSIS "\xe2\x80\xa6"

/* Parses a rendered document and checks the fields every problem has. */
static json_t *parse_problem(const char *buf, int n, int status)
{
    json_error_t jerr;
    ck_assert_int_gt(n, 0);
    ck_assert_uint_eq(strlen(buf), (size_t)n);
    json_t *j = json_loadb(buf, (size_t)n, 0, &jerr);
    if (!j)
        ck_abort_msg("not JSON (%s): %s", jerr.text, buf);
    ck_assert_int_eq(json_integer_value(json_object_get(j, "status")), status);
    ck_assert_str_eq(json_string_value(json_object_get(j, "title")), cart_http_reason(status));
    ck_assert_ptr_nonnull(json_string_value(json_object_get(j, "type")));
    return j;
}

START_TEST(test_exact_document)
{
    char buf[512];
    int n = cart_problem_render(buf, sizeof buf, 400, "invalid-field", "quantity: expected an integer");
    ck_assert_str_eq(buf, "{\"type\":\"urn:cartshard:problem:invalid-field\",\"title\":\"Bad Request\",\"status\":400,"
                          "\"detail\":\"quantity: expected an integer\"}");
    ck_assert_int_eq(n, (int)strlen(buf));

    n = cart_problem_render(buf, sizeof buf, 404, "not-found", NULL);
    ck_assert_str_eq(buf, "{\"type\":\"urn:cartshard:problem:not-found\",\"title\":\"Not Found\",\"status\":404}");
    ck_assert_int_eq(n, (int)strlen(buf));

    n = cart_problem_render(buf, sizeof buf, 503, NULL, "NATS is unreachable");
    ck_assert_str_eq(buf, "{\"type\":\"about:blank\",\"title\":\"Service Unavailable\",\"status\":503,"
                          "\"detail\":\"NATS is unreachable\"}");

    n = cart_problem_render(buf, sizeof buf, 418, NULL, "");
    ck_assert_str_eq(buf, "{\"type\":\"about:blank\",\"title\":\"Error\",\"status\":418,\"detail\":\"\"}");
    ck_assert_str_eq(CART_PROBLEM_MEDIA_TYPE, "application/problem+json");
}
END_TEST

START_TEST(test_reasons)
{
    ck_assert_str_eq(cart_http_reason(200), "OK");
    ck_assert_str_eq(cart_http_reason(201), "Created");
    ck_assert_str_eq(cart_http_reason(202), "Accepted");
    ck_assert_str_eq(cart_http_reason(204), "No Content");
    ck_assert_str_eq(cart_http_reason(304), "Not Modified");
    ck_assert_str_eq(cart_http_reason(401), "Unauthorized");
    ck_assert_str_eq(cart_http_reason(403), "Forbidden");
    ck_assert_str_eq(cart_http_reason(405), "Method Not Allowed");
    ck_assert_str_eq(cart_http_reason(409), "Conflict");
    ck_assert_str_eq(cart_http_reason(412), "Precondition Failed");
    ck_assert_str_eq(cart_http_reason(413), "Content Too Large");
    ck_assert_str_eq(cart_http_reason(415), "Unsupported Media Type");
    ck_assert_str_eq(cart_http_reason(422), "Unprocessable Content");
    ck_assert_str_eq(cart_http_reason(429), "Too Many Requests");
    ck_assert_str_eq(cart_http_reason(500), "Internal Server Error");
    ck_assert_str_eq(cart_http_reason(503), "Service Unavailable");
    ck_assert_str_eq(cart_http_reason(0), "Error");
    ck_assert_str_eq(cart_http_reason(299), "Error");
    ck_assert_str_eq(cart_http_reason(-1), "Error");
}
END_TEST

START_TEST(test_escaping)
{
    const char *detail = "sku \"A\\1\"\nline2\ttab\x01 caf\xc3\xa9 \xf0\x9f\x9b\x92";
    char buf[512];
    int n = cart_problem_render(buf, sizeof buf, 422, "limit", detail);
    json_t *j = parse_problem(buf, n, 422);
    ck_assert_str_eq(json_string_value(json_object_get(j, "detail")), detail);
    ck_assert_ptr_nonnull(strstr(buf, "\"detail\":\"sku \\\"A\\\\1\\\"\\nline2\\ttab\\u0001 caf\xc3\xa9 "));
    json_decref(j);

    /* Invalid UTF-8 (a user's bytes echoed back) still gives valid JSON. */
    n = cart_problem_render(buf, sizeof buf, 400, "invalid-field", "bad \xff\xfe id \xc3");
    j = parse_problem(buf, n, 400);
    ck_assert_str_eq(json_string_value(json_object_get(j, "detail")), "bad \xef\xbf\xbd\xef\xbf\xbd id \xef\xbf\xbd");
    json_decref(j);

    /* The slug is escaped as well. */
    n = cart_problem_render(buf, sizeof buf, 400, "we\"ird", NULL);
    j = parse_problem(buf, n, 400);
    ck_assert_str_eq(json_string_value(json_object_get(j, "type")), "urn:cartshard:problem:we\"ird");
    json_decref(j);
}
END_TEST

START_TEST(test_long_detail_truncated)
{
    char detail[6000];
    /* Two-byte characters and quotes, so cuts fall next to multi-byte units. */
    for (size_t i = 0; i + 3 <= sizeof detail - 1; i += 3)
        memcpy(detail + i, "\xc3\xa9\"", 3);
    detail[sizeof detail - 1 - (sizeof detail - 1) % 3] = '\0';

    char buf[256];
    int n = cart_problem_render(buf, sizeof buf, 400, "invalid-field", detail);
    ck_assert_int_le(n, 255);
    ck_assert_int_gt(n, 240); /* the room is used, not given up */
    json_t *j = parse_problem(buf, n, 400);
    const char *d = json_string_value(json_object_get(j, "detail"));
    size_t dl = strlen(d);
    ck_assert_uint_gt(dl, 3);
    ck_assert_str_eq(d + dl - 3, ELLIPSIS);
    ck_assert_int_eq(strncmp(d, detail, dl - 3), 0);
    json_decref(j);
}
END_TEST

START_TEST(test_every_cap)
{
    const char *detail = "quantity: expected an integer from 1 to 999, got \"\xe2\x82\xac\xe2\x82\xac\"";
    char full[512];
    char bare[512];
    int full_n = cart_problem_render(full, sizeof full, 422, "limit-exceeded", detail);
    int bare_n = cart_problem_render(bare, sizeof bare, 422, "limit-exceeded", NULL);
    ck_assert_int_gt(full_n, bare_n);

    for (size_t cap = 0; cap <= (size_t)full_n + 2; cap++) {
        char *buf = malloc(cap ? cap : 1);
        ck_assert_ptr_nonnull(buf);
        int n = cart_problem_render(buf, cap, 422, "limit-exceeded", detail);
        if (cap <= (size_t)bare_n) {
            /* Not even the document without detail fits. */
            ck_assert_int_eq(n, -1);
            if (cap > 0)
                ck_assert_str_eq(buf, "");
        } else if (cap > (size_t)full_n) {
            ck_assert_int_eq(n, full_n);
            ck_assert_str_eq(buf, full);
        } else {
            ck_assert_int_lt(n, (int)cap);
            json_t *j = parse_problem(buf, n, 422);
            const char *d = json_string_value(json_object_get(j, "detail"));
            if (d) {
                size_t dl = strlen(d);
                ck_assert_uint_ge(dl, 3);
                ck_assert_str_eq(d + dl - 3, ELLIPSIS);
                ck_assert_int_eq(strncmp(d, detail, dl - 3), 0);
            } else {
                ck_assert_str_eq(buf, bare);
            }
            json_decref(j);
        }
        free(buf);
    }
}
END_TEST

START_TEST(test_small_cap)
{
    char buf[256];
    ck_assert_int_eq(cart_problem_render(buf, 0, 400, "x", "y"), -1);
    ck_assert_int_eq(cart_problem_render(NULL, 100, 400, "x", "y"), -1);
    ck_assert_int_eq(cart_problem_render(buf, 10, 400, "invalid-field", "y"), -1);
    ck_assert_str_eq(buf, "");

    /* 256 bytes always hold the document for a 64-character slug and the longest reason. */
    char slug[65];
    memset(slug, 'z', 64);
    slug[64] = '\0';
    char detail[1024];
    memset(detail, 'd', sizeof detail - 1);
    detail[sizeof detail - 1] = '\0';
    int n = cart_problem_render(buf, sizeof buf, 431, slug, detail);
    json_t *j = parse_problem(buf, n, 431);
    ck_assert_ptr_nonnull(json_object_get(j, "detail"));
    json_decref(j);
}
END_TEST

static Suite *problem_suite(void)
{
    Suite *s = suite_create("problem");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_exact_document);
    tcase_add_test(tc, test_reasons);
    tcase_add_test(tc, test_escaping);
    tcase_add_test(tc, test_long_detail_truncated);
    tcase_add_test(tc, test_every_cap);
    tcase_add_test(tc, test_small_cap);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(problem_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
