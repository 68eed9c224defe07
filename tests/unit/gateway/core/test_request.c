#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "request.h"

static bool too_deep(const char *s)
{
    return gw_json_too_deep(s, strlen(s), GW_JSON_MAX_DEPTH);
}

START_TEST(test_json_depth)
{
    char deep[2 * GW_JSON_MAX_DEPTH + 4];

    ck_assert(!too_deep(""));
    ck_assert(!too_deep("{\"sku\":\"A1\",\"quantity\":[[[1]]]}"));
    /* Exactly the limit, then one more. */
    memset(deep, '[', GW_JSON_MAX_DEPTH);
    memset(deep + GW_JSON_MAX_DEPTH, ']', GW_JSON_MAX_DEPTH);
    deep[2 * GW_JSON_MAX_DEPTH] = '\0';
    ck_assert(!too_deep(deep));
    memset(deep, '{', GW_JSON_MAX_DEPTH + 1);
    deep[GW_JSON_MAX_DEPTH + 1] = '\0';
    ck_assert(too_deep(deep));
    /* Brackets inside strings, escaped quotes included, do not count. */
    ck_assert(!too_deep("{\"a\":\"[[[[[[[[[[[[[[[[[[[[[[\\\"[[[[[[[[[[[[[[[[[\"}"));
    ck_assert(too_deep("[\"\\\\\",[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]"));
}
END_TEST

START_TEST(test_traceparent)
{
    static const char ok[] = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    static const char *const bad[] = {
        "",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-011",
        "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
        "00-00000000000000000000000000000000-b7ad6b7169203331-01",
        "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
        "00_0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0g",
    };

    ck_assert(gw_traceparent_valid(ok, strlen(ok)));
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_msg(!gw_traceparent_valid(bad[i], strlen(bad[i])), "accepted %s", bad[i]);
}
END_TEST

static bool if_match(const char *v, int64_t *version)
{
    *version = -7;
    return gw_if_match_parse(v, strlen(v), version);
}

START_TEST(test_if_match)
{
    static const char *const bad[] = {
        "", "\"", "\"\"", "5", "\"5", "W/\"5\"", "\"5\", \"6\"", "*",
        /* strtoll took these: a sign after a blank, blanks, and out of range (as INT64_MAX). */
        "\" -1\"", "\" 5\"", "\"\t5\"", "\"+5\"", "\"-0\"", "\"9223372036854775808\"", "\"99999999999999999999\"",
        "\"0x10\"", "\"1e3\"", "\"5 \"", "\"000000000000000000000000000001\"", /* 32 bytes */
    };
    int64_t v;

    ck_assert(if_match("\"0\"", &v) && v == 0);
    ck_assert(if_match("\"3\"", &v) && v == 3);
    ck_assert(if_match("\"0042\"", &v) && v == 42);
    ck_assert(if_match("\"9223372036854775807\"", &v) && v == INT64_MAX);
    ck_assert(if_match("\"00000000000000000000000000001\"", &v) && v == 1); /* 31 bytes */
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ck_assert_msg(!if_match(bad[i], &v), "accepted %s", bad[i]);
        ck_assert_int_eq(v, -7);
    }
}
END_TEST

START_TEST(test_prefer)
{
    static const char *const yes[] = {"respond-async", "RESPOND-ASYNC", "respond-async, wait=10",
                                      "wait=5, Respond-Async"};
    static const char *const no[] = {"", "wait=10", "respond-asyn", "return=minimal"};

    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++)
        ck_assert_msg(gw_prefers_async(yes[i], strlen(yes[i])), "refused %s", yes[i]);
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++)
        ck_assert_msg(!gw_prefers_async(no[i], strlen(no[i])), "accepted %s", no[i]);
    /* Only len bytes count; no header at all is no preference. */
    ck_assert(!gw_prefers_async("respond-async", 12));
    ck_assert(!gw_prefers_async(NULL, 0));
}
END_TEST

static Suite *request_suite(void)
{
    Suite *s = suite_create("request");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_json_depth);
    tcase_add_test(tc, test_traceparent);
    tcase_add_test(tc, test_if_match);
    tcase_add_test(tc, test_prefer);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(request_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
