#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "head.h"

#define FIELD_MAX 64
#define TOTAL_MAX 256

static gw_head_verdict check(const char *head)
{
    return gw_head_check(head, strlen(head), FIELD_MAX, TOTAL_MAX);
}

START_TEST(test_ordinary_heads)
{
    ck_assert_int_eq(check("GET /v1/carts/u1 HTTP/1.1\r\nHost: a\r\n\r\n"), GW_HEAD_OK);
    ck_assert_int_eq(check("GET /v1/carts/u1 HTTP/1.1\nhost:a\n\n"), GW_HEAD_OK); /* bare LF, no blank */
    ck_assert_int_eq(check("POST /v1/carts HTTP/1.1\r\nHOST: a\r\nContent-Length: 2\r\n\r\n{}"), GW_HEAD_OK);
    ck_assert_int_eq(check("POST /v1/carts HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}"),
                     GW_HEAD_OK);
    /* The same length twice is one framing. */
    ck_assert_int_eq(check("POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nContent-Length:  2 \r\n\r\n{}"),
                     GW_HEAD_OK);
    /* HTTP/1.0 needs no Host. */
    ck_assert_int_eq(check("GET /healthz HTTP/1.0\r\n\r\n"), GW_HEAD_OK);
    /* What follows the head is not read: a next request's Host does not count. */
    ck_assert_int_eq(check("GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: b\r\n\r\n"), GW_HEAD_OK);
    /* No end of head in sight: not judged. */
    ck_assert_int_eq(check("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n"), GW_HEAD_OK);
    ck_assert_int_eq(check(""), GW_HEAD_OK);
    /* Names are matched whole: these are other fields. */
    ck_assert_int_eq(check("GET / HTTP/1.1\r\nHost: a\r\nX-Host: b\r\nHosts: c\r\nContent-Length-X: 1\r\n"
                           "Content-Length: 0\r\n\r\n"),
                     GW_HEAD_OK);
}
END_TEST

START_TEST(test_framing)
{
    ck_assert_int_eq(check("POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"),
                     GW_HEAD_TWO_FRAMINGS);
    ck_assert_int_eq(check("POST /x HTTP/1.1\r\nHost: a\r\ntransfer-encoding: chunked\r\ncontent-length: 3\r\n\r\n"),
                     GW_HEAD_TWO_FRAMINGS);
    ck_assert_int_eq(check("POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n"),
                     GW_HEAD_TWO_FRAMINGS);
    /* It comes first: a request framed two ways is refused whatever else is wrong with it. */
    ck_assert_int_eq(check("POST /x HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"),
                     GW_HEAD_TWO_FRAMINGS);
    ck_assert_str_eq(gw_head_verdict_detail(GW_HEAD_TWO_FRAMINGS),
                     "the request is framed two ways (Content-Length with Transfer-Encoding, or Content-Lengths that "
                     "differ)");
}
END_TEST

START_TEST(test_host)
{
    ck_assert_int_eq(check("GET / HTTP/1.1\r\n\r\n"), GW_HEAD_NO_HOST);
    ck_assert_int_eq(check("GET / HTTP/1.1\r\nX-Host: a\r\n\r\n"), GW_HEAD_NO_HOST);
    ck_assert_int_eq(check("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), GW_HEAD_HOSTS);
    ck_assert_int_eq(check("GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n"), GW_HEAD_HOSTS);
    ck_assert_int_eq(check("GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n"), GW_HEAD_HOSTS);
    ck_assert_str_eq(gw_head_verdict_detail(GW_HEAD_NO_HOST), "an HTTP/1.1 request needs a Host header");
}
END_TEST

START_TEST(test_sizes)
{
    char head[2048], value[FIELD_MAX + 2];

    /* "X: " and a value: the field line is exactly FIELD_MAX bytes, then one more. */
    memset(value, 'v', sizeof value);
    value[FIELD_MAX - 3] = '\0';
    snprintf(head, sizeof head, "GET / HTTP/1.1\r\nHost: a\r\nX: %s\r\n\r\n", value);
    ck_assert_int_eq(check(head), GW_HEAD_OK);
    value[FIELD_MAX - 3] = 'v';
    value[FIELD_MAX - 2] = '\0';
    snprintf(head, sizeof head, "GET / HTTP/1.1\r\nHost: a\r\nX: %s\r\n\r\n", value);
    ck_assert_int_eq(check(head), GW_HEAD_FIELD_TOO_LARGE);
    /* The last field too, and a folded one counts its continuation lines. */
    snprintf(head, sizeof head, "GET / HTTP/1.1\r\nX: %s\r\nHost: a\r\n\r\n", value);
    ck_assert_int_eq(check(head), GW_HEAD_FIELD_TOO_LARGE);
    value[FIELD_MAX - 20] = '\0';
    snprintf(head, sizeof head, "GET / HTTP/1.1\r\nHost: a\r\nX: %s\r\n %s\r\n\r\n", value, value);
    ck_assert_int_eq(check(head), GW_HEAD_FIELD_TOO_LARGE);
    /* Many fields each within the limit, over the total: 5 x 60 bytes > 256. */
    memset(value, 'v', sizeof value);
    value[FIELD_MAX - 7] = '\0';
    snprintf(head, sizeof head, "GET / HTTP/1.1\r\nHost: a\r\nA: %s\r\nB: %s\r\nC: %s\r\nD: %s\r\nE: %s\r\n\r\n", value,
             value, value, value, value);
    ck_assert_int_eq(check(head), GW_HEAD_FIELDS_TOO_LARGE);
    snprintf(head, sizeof head, "GET / HTTP/1.1\r\nHost: a\r\nA: %s\r\nB: %s\r\nC: %s\r\n\r\n", value, value, value);
    ck_assert_int_eq(check(head), GW_HEAD_OK);
    /* The request line is no field. */
    snprintf(head, sizeof head, "GET /%s%s HTTP/1.1\r\nHost: a\r\n\r\n", value, value);
    ck_assert_int_eq(check(head), GW_HEAD_OK);
    ck_assert_str_eq(gw_head_verdict_detail(GW_HEAD_OK), "");
    ck_assert_ptr_nonnull(strstr(gw_head_verdict_detail(GW_HEAD_FIELD_TOO_LARGE), "GATEWAY_MAX_HEADER_BYTES"));
}
END_TEST

static Suite *head_suite(void)
{
    Suite *s = suite_create("head");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_ordinary_heads);
    tcase_add_test(tc, test_framing);
    tcase_add_test(tc, test_host);
    tcase_add_test(tc, test_sizes);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(head_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
