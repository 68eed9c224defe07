#include <check.h>
#include <stdint.h>
#include <stdio.h>
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

static int etags(const char *v, bool strong, gw_etags *set)
{
    memset(set, 0, sizeof *set);
    return gw_etags_parse(v, strlen(v), strong, set);
}

/* The set holds exactly the versions given, in order. */
static void expect_versions(const gw_etags *set, int n, const int64_t *versions)
{
    ck_assert(!set->any);
    ck_assert_int_eq(set->n, n);
    for (int i = 0; i < n; i++)
        ck_assert(set->versions[i] == versions[i]);
}

START_TEST(test_etags_grammar)
{
    static const char *const bad[] = {
        "",
        " ",
        ",",
        " , ,",
        "5",
        "\"5",
        "5\"",
        "w/\"5\"",
        "W/5",
        "W/ \"5\"",
        "\"5\" \"6\"",
        "\"5\";\"6\"",
        "*, \"5\"",
        "\"5\", *",
        "**",
        "* *",
        "\"a\"b\"",
        "\"5\"\x01",
        "\"with space\"",
        "\"\x7f\"",
    };
    static const int64_t three[] = {3}, list[] = {3, 5, 0}, big[] = {INT64_MAX, 42};
    gw_etags set;

    ck_assert_int_eq(etags("*", true, &set), 0);
    ck_assert(set.any && set.n == 0);
    ck_assert_int_eq(etags(" \t* ", false, &set), 0);
    ck_assert(set.any);
    ck_assert_int_eq(etags("\"3\"", true, &set), 0);
    expect_versions(&set, 1, three);
    ck_assert_int_eq(etags(" \"3\" ,\t\"5\",, \"0\", \"3\" ,", true, &set), 0); /* empty elements, a repeat */
    expect_versions(&set, 3, list);
    ck_assert_int_eq(etags("\"9223372036854775807\", \"0042\"", true, &set), 0);
    expect_versions(&set, 2, big);
    /* Valid tags that hold no version: parsed, left out. */
    ck_assert_int_eq(etags("\"\", \"abc\", \"-1\", \"+1\", \"1e3\", \"9223372036854775808\", \"\xc3\xa9\"", true, &set),
                     0);
    expect_versions(&set, 0, NULL);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_msg(etags(bad[i], true, &set) == -1, "accepted '%s'", bad[i]);
}
END_TEST

START_TEST(test_etags_weak_and_strong)
{
    static const int64_t three[] = {3}, both[] = {3, 4};
    gw_etags set;

    /* If-Match compares strongly: a weak tag never matches. */
    ck_assert_int_eq(etags("W/\"3\"", true, &set), 0);
    expect_versions(&set, 0, NULL);
    ck_assert(!gw_etags_match(&set, 3));
    ck_assert_int_eq(etags("W/\"4\", \"3\"", true, &set), 0);
    expect_versions(&set, 1, three);
    /* If-None-Match compares weakly: W/"3" is "3". */
    ck_assert_int_eq(etags("W/\"3\", \"4\"", false, &set), 0);
    expect_versions(&set, 2, both);
    ck_assert(gw_etags_match(&set, 3) && gw_etags_match(&set, 4) && !gw_etags_match(&set, 5));
    ck_assert_int_eq(etags("*", false, &set), 0);
    ck_assert(gw_etags_match(&set, 0) && gw_etags_match(&set, INT64_MAX));
}
END_TEST

START_TEST(test_etags_lines_and_limits)
{
    gw_etags set;
    char list[512];
    size_t n = 0;

    /* Field lines add up; "*" and tags in different lines still conflict. */
    ck_assert_int_eq(etags("\"1\"", true, &set), 0);
    ck_assert_int_eq(gw_etags_parse("\"2\"", 3, true, &set), 0);
    ck_assert_int_eq(set.n, 2);
    ck_assert_int_eq(gw_etags_parse("*", 1, true, &set), -1);
    ck_assert_int_eq(etags("*", true, &set), 0);
    ck_assert_int_eq(gw_etags_parse("\"2\"", 3, true, &set), -1);
    /* GW_ETAGS_MAX versions, not one more. */
    for (int i = 0; i < GW_ETAGS_MAX; i++)
        n += (size_t)snprintf(list + n, sizeof list - n, "%s\"%d\"", i ? ", " : "", i);
    ck_assert_int_eq(etags(list, true, &set), 0);
    ck_assert_int_eq(set.n, GW_ETAGS_MAX);
    snprintf(list + n, sizeof list - n, ", \"%d\"", GW_ETAGS_MAX);
    ck_assert_int_eq(etags(list, true, &set), -1);
    /* A weak one more is left out under If-Match, so it is no extra version. */
    snprintf(list + n, sizeof list - n, ", W/\"%d\"", GW_ETAGS_MAX);
    ck_assert_int_eq(etags(list, true, &set), 0);
    ck_assert_int_eq(etags(list, false, &set), -1);
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
    tcase_add_test(tc, test_etags_grammar);
    tcase_add_test(tc, test_etags_weak_and_strong);
    tcase_add_test(tc, test_etags_lines_and_limits);
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
