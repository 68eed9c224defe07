#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "cartshard/clock.h"

/* Parses a NUL-terminated string; the helper keeps the tests short. */
static cart_status parse(const char *s, int64_t *ms)
{
    return cart_time_parse(s, strlen(s), ms);
}

static void assert_parses(const char *s, int64_t want)
{
    int64_t ms = -12345;
    if (parse(s, &ms) != CART_OK)
        ck_abort_msg("\"%s\" was rejected", s);
    if (ms != want)
        ck_abort_msg("\"%s\" parsed as %lld, expected %lld", s, (long long)ms, (long long)want);
}

static void assert_rejected(const char *s)
{
    int64_t ms = 777;
    if (parse(s, &ms) != CART_ERR_INVALID)
        ck_abort_msg("\"%s\" was accepted as %lld", s, (long long)ms);
    ck_assert_int_eq(ms, 777); /* untouched */
}

static void assert_formats(int64_t ms, const char *want)
{
    char buf[CART_TIME_BUFSZ];
    cart_time_format(ms, buf);
    ck_assert_str_eq(buf, want);
}

START_TEST(test_format)
{
    assert_formats(0, "1970-01-01T00:00:00Z");
    assert_formats(1795341600000LL, "2026-11-22T10:00:00Z");
    assert_formats(1795341600123LL, "2026-11-22T10:00:00.123Z");
    assert_formats(1795341600001LL, "2026-11-22T10:00:00.001Z");
    assert_formats(1795341662000LL, "2026-11-22T10:01:02Z");
    assert_formats(1709164800000LL, "2024-02-29T00:00:00Z");
    assert_formats(1735689599999LL, "2024-12-31T23:59:59.999Z");
    assert_formats(1735689600000LL, "2025-01-01T00:00:00Z");
    assert_formats(-1, "1969-12-31T23:59:59.999Z");
    assert_formats(-1000, "1969-12-31T23:59:59Z");
    assert_formats(-2203891200000LL, "1900-03-01T00:00:00Z");
    assert_formats(253402300799999LL, "9999-12-31T23:59:59.999Z");
}
END_TEST

START_TEST(test_parse_basic)
{
    assert_parses("1970-01-01T00:00:00Z", 0);
    assert_parses("2026-11-22T10:00:00Z", 1795341600000LL);
    assert_parses("2026-11-22t10:00:00z", 1795341600000LL);
    assert_parses("1969-12-31T23:59:59Z", -1000);
    assert_parses("9999-12-31T23:59:59Z", 253402300799000LL);
    /* A leap second is read as the second before it. */
    assert_parses("2016-12-31T23:59:60Z", 1483228799000LL);
}
END_TEST

START_TEST(test_parse_fractions)
{
    assert_parses("2026-11-22T10:00:00.123Z", 1795341600123LL);
    assert_parses("2026-11-22T10:00:00.1Z", 1795341600100LL);
    assert_parses("2026-11-22T10:00:00.12Z", 1795341600120LL);
    assert_parses("2026-11-22T10:00:00.000Z", 1795341600000LL);
    /* Digits past the millisecond are dropped, not rounded. */
    assert_parses("2026-11-22T10:00:00.123999Z", 1795341600123LL);
    assert_parses("2026-11-22T10:00:00.999999999Z", 1795341600999LL);
    assert_parses("2026-11-22T10:00:00.000000001Z", 1795341600000LL);
    assert_parses("2026-11-22T10:00:00.12345678901234567890Z", 1795341600123LL);
    assert_parses("1969-12-31T23:59:59.5Z", -500);
}
END_TEST

START_TEST(test_parse_offsets)
{
    assert_parses("2026-11-22T12:00:00+02:00", 1795341600000LL);
    assert_parses("2026-11-22T04:30:00-05:30", 1795341600000LL);
    assert_parses("2026-11-22T10:00:00+00:00", 1795341600000LL);
    assert_parses("2026-11-22T10:00:00-00:00", 1795341600000LL);
    assert_parses("2026-11-23T09:59:00+23:59", 1795341600000LL);
    assert_parses("2026-11-22T12:00:00.250+02:00", 1795341600250LL);
    /* An offset can move the date across a year boundary. */
    assert_parses("2024-12-31T23:00:00-01:00", 1735689600000LL);
}
END_TEST

START_TEST(test_leap_years)
{
    assert_parses("2024-02-29T00:00:00Z", 1709164800000LL);
    assert_parses("2000-02-29T12:34:56Z", 951827696000LL);
    assert_rejected("2023-02-29T00:00:00Z");
    assert_rejected("1900-02-29T00:00:00Z");
    assert_rejected("2100-02-29T00:00:00Z");
    assert_rejected("2024-02-30T00:00:00Z");
    /* The day after Feb 28 in a common year is Mar 1, and Feb 29 in a leap year. */
    int64_t a, b;
    ck_assert_int_eq(parse("2023-02-28T00:00:00Z", &a), CART_OK);
    ck_assert_int_eq(parse("2023-03-01T00:00:00Z", &b), CART_OK);
    ck_assert_int_eq(b - a, 86400000);
    ck_assert_int_eq(parse("2024-02-28T00:00:00Z", &a), CART_OK);
    ck_assert_int_eq(parse("2024-03-01T00:00:00Z", &b), CART_OK);
    ck_assert_int_eq(b - a, 2 * 86400000);
}
END_TEST

START_TEST(test_rejects_garbage)
{
    static const char *const bad[] = {
        "",
        "2026-02-30T00:00:00Z",
        "2026-04-31T00:00:00Z",
        "2026-11-22 10:00:00Z",
        "2026-11-22T10:00:00Zjunk",
        "2026-11-22T10:00:00Z ",
        " 2026-11-22T10:00:00Z",
        "2026-11-22T10:00:00",
        "2026-11-22T10:00:00.Z",
        "2026-11-22T10:00:00.12.3Z",
        "2026-11-22T10:00:00+02",
        "2026-11-22T10:00:00+0200",
        "2026-11-22T10:00:00+24:00",
        "2026-11-22T10:00:00+02:60",
        "2026-11-22T10:00:00+02:00x",
        "2026-11-22T24:00:00Z",
        "2026-11-22T10:60:00Z",
        "2026-11-22T10:00:61Z",
        "2026-13-01T00:00:00Z",
        "2026-00-10T00:00:00Z",
        "2026-11-00T00:00:00Z",
        "2026-11-32T00:00:00Z",
        "2026-11-22",
        "2026-11-22T10:00Z",
        "26-11-22T10:00:00Z",
        "2026-1-22T10:00:00Z",
        "2026/11/22T10:00:00Z",
        "2026-11-22T1:00:00Z",
        "-2026-11-22T10:00:00Z",
        "+2026-11-22T10:00:00Z",
        "2026-11-22T10:00:00ZZ",
        "abcd-ef-ghTij:kl:mnZ",
        "1795341600000",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_rejected(bad[i]);
}
END_TEST

START_TEST(test_length_is_respected)
{
    const char *s = "2026-11-22T10:00:00Zgarbage";
    int64_t ms = 5;
    /* Only the first len bytes count: the junk after them is not read, a cut inside is invalid. */
    ck_assert_int_eq(cart_time_parse(s, 20, &ms), CART_OK);
    ck_assert_int_eq(ms, 1795341600000LL);
    ck_assert_int_eq(cart_time_parse(s, 19, &ms), CART_ERR_INVALID);
    ck_assert_int_eq(cart_time_parse(s, 0, &ms), CART_ERR_INVALID);
    ck_assert_int_eq(cart_time_parse(s, 21, &ms), CART_ERR_INVALID);
    /* A NUL inside the length is junk too. */
    ck_assert_int_eq(cart_time_parse("2026-11-22T10:00:00Z\0", 21, &ms), CART_ERR_INVALID);
    ck_assert_int_eq(ms, 1795341600000LL);
}
END_TEST

START_TEST(test_round_trip)
{
    char buf[CART_TIME_BUFSZ];
    /* A spread of instants from 1900 to 2200, with and without milliseconds. */
    int64_t ms = -2208988800000LL; /* 1900-01-01 */
    uint64_t x = 88172645463325252ULL;
    while (ms < 7258118400000LL) { /* 2200-01-01 */
        int64_t back = 0;
        cart_time_format(ms, buf);
        ck_assert_uint_le(strlen(buf), CART_TIME_BUFSZ - 1);
        if (cart_time_parse(buf, strlen(buf), &back) != CART_OK)
            ck_abort_msg("format gave unparsable \"%s\" for %lld", buf, (long long)ms);
        ck_assert_int_eq(back, ms);
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        ms += (int64_t)(x % (3LL * 86400000)) + 1;
    }
    /* Every day boundary of a leap year and its neighbours. */
    for (int64_t d = 0; d < 3 * 366; d++) {
        int64_t t = 1672531200000LL + d * 86400000; /* from 2023-01-01 */
        int64_t back = 0;
        for (int64_t delta = -1; delta <= 1; delta++) {
            cart_time_format(t + delta, buf);
            ck_assert_int_eq(cart_time_parse(buf, strlen(buf), &back), CART_OK);
            ck_assert_int_eq(back, t + delta);
        }
    }
}
END_TEST

START_TEST(test_clocks)
{
    int64_t now = cart_now_ms();
    ck_assert_int_gt(now, 1735689600000LL); /* after 2025-01-01 */
    ck_assert_int_lt(now, 7258118400000LL); /* before 2200 */
    int64_t m1 = cart_mono_ms();
    int64_t m2 = cart_mono_ms();
    ck_assert_int_ge(m2, m1);
    ck_assert_int_ge(m1, 0);
}
END_TEST

static Suite *clock_suite(void)
{
    Suite *s = suite_create("clock");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_format);
    tcase_add_test(tc, test_parse_basic);
    tcase_add_test(tc, test_parse_fractions);
    tcase_add_test(tc, test_parse_offsets);
    tcase_add_test(tc, test_leap_years);
    tcase_add_test(tc, test_rejects_garbage);
    tcase_add_test(tc, test_length_is_respected);
    tcase_add_test(tc, test_round_trip);
    tcase_add_test(tc, test_clocks);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(clock_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
