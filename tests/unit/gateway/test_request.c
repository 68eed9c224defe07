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

static Suite *request_suite(void)
{
    Suite *s = suite_create("request");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_json_depth);
    tcase_add_test(tc, test_traceparent);
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
