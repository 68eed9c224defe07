#define _POSIX_C_SOURCE 200809L
#include "cartshard/clock.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

int64_t cart_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t cart_mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

/* Writes v (0 <= v < 10^n) as exactly n digits. */
static void put_digits(char *p, int v, int n)
{
    for (int i = n - 1; i >= 0; i--) {
        p[i] = (char)('0' + v % 10);
        v /= 10;
    }
}

void cart_time_format(int64_t ms, char buf[CART_TIME_BUFSZ])
{
    int64_t secs = ms >= 0 ? ms / 1000 : -((-ms + 999) / 1000);
    int frac = (int)(ms - secs * 1000);
    int64_t days = secs >= 0 ? secs / 86400 : -((-secs + 86399) / 86400);
    int rem = (int)(secs - days * 86400);
    int64_t y;
    int m, d, year;

    civil_from_days(days, &y, &m, &d);
    /* RFC 3339 has four-digit years: times outside 0000..9999 are clamped to its ends. */
    year = y < 0 ? 0 : y > 9999 ? 9999 : (int)y;
    /* By hand, not snprintf: the worker formats several of these per event. */
    put_digits(buf, year, 4);
    buf[4] = '-';
    put_digits(buf + 5, m, 2);
    buf[7] = '-';
    put_digits(buf + 8, d, 2);
    buf[10] = 'T';
    put_digits(buf + 11, rem / 3600, 2);
    buf[13] = ':';
    put_digits(buf + 14, rem / 60 % 60, 2);
    buf[16] = ':';
    put_digits(buf + 17, rem % 60, 2);
    if (frac) {
        buf[19] = '.';
        put_digits(buf + 20, frac, 3);
        memcpy(buf + 23, "Z", 2);
    } else {
        memcpy(buf + 19, "Z", 2);
    }
}

/* Reads exactly n digits at s[*i]; -1 if they are not all there. */
static int digits(const char *s, size_t len, size_t *i, int n)
{
    int v = 0;

    for (int k = 0; k < n; k++, (*i)++) {
        if (*i >= len || s[*i] < '0' || s[*i] > '9')
            return -1;
        v = v * 10 + (s[*i] - '0');
    }
    return v;
}

static int expect(const char *s, size_t len, size_t *i, char c1, char c2)
{
    if (*i >= len || (s[*i] != c1 && s[*i] != c2))
        return -1;
    (*i)++;
    return 0;
}

cart_status cart_time_parse(const char *s, size_t len, int64_t *ms)
{
    static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    size_t i = 0;
    int y, mo, d, h, mi, sec, frac_ms = 0, off_min = 0;

    if ((y = digits(s, len, &i, 4)) < 0 || expect(s, len, &i, '-', '-') || (mo = digits(s, len, &i, 2)) < 0 ||
        expect(s, len, &i, '-', '-') || (d = digits(s, len, &i, 2)) < 0 || expect(s, len, &i, 'T', 't') ||
        (h = digits(s, len, &i, 2)) < 0 || expect(s, len, &i, ':', ':') || (mi = digits(s, len, &i, 2)) < 0 ||
        expect(s, len, &i, ':', ':') || (sec = digits(s, len, &i, 2)) < 0)
        return CART_ERR_INVALID;
    if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || h > 23 || mi > 59 || sec > 60)
        return CART_ERR_INVALID;
    if (mo == 2 && d == 29 && !((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
        return CART_ERR_INVALID;
    if (i < len && s[i] == '.') {
        int scale = 100, n = 0;
        for (i++; i < len && s[i] >= '0' && s[i] <= '9'; i++, n++) {
            frac_ms += (s[i] - '0') * scale;
            scale /= 10;
        }
        if (n == 0)
            return CART_ERR_INVALID;
    }
    if (i < len && (s[i] == 'Z' || s[i] == 'z')) {
        i++;
    } else if (i < len && (s[i] == '+' || s[i] == '-')) {
        int sign = s[i] == '-' ? -1 : 1, oh, om;
        i++;
        if ((oh = digits(s, len, &i, 2)) < 0 || expect(s, len, &i, ':', ':') || (om = digits(s, len, &i, 2)) < 0 ||
            oh > 23 || om > 59)
            return CART_ERR_INVALID;
        off_min = sign * (oh * 60 + om);
    } else {
        return CART_ERR_INVALID;
    }
    if (i != len)
        return CART_ERR_INVALID;
    if (sec == 60)
        sec = 59; /* a leap second is read as the second before it */
    int64_t secs = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - (int64_t)off_min * 60;
    *ms = secs * 1000 + frac_ms;
    return CART_OK;
}
