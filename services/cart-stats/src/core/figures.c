/*
 * figures.c: windows, queries, and the JSON of the figures (stats_core.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cartshard/clock.h"
#include "stats_core.h"

static const struct {
    const char *name;
    int minutes;
} windows[] = {{"5m", 5}, {"1h", 60}, {"24h", 1440}};

cart_status st_window_parse(const char *s, size_t len, int *minutes)
{
    for (size_t i = 0; i < sizeof windows / sizeof windows[0]; i++) {
        if (strlen(windows[i].name) == len && memcmp(windows[i].name, s, len) == 0) {
            *minutes = windows[i].minutes;
            return CART_OK;
        }
    }
    return CART_ERR_INVALID;
}

const char *st_window_name(int minutes)
{
    for (size_t i = 0; i < sizeof windows / sizeof windows[0]; i++)
        if (windows[i].minutes == minutes)
            return windows[i].name;
    return NULL;
}

void st_window_bounds(int64_t now_ms, int minutes, int64_t *first, int64_t *last)
{
    int64_t cur = now_ms >= 0 ? now_ms / 60000 : -((-now_ms + 59999) / 60000);

    *last = cur;
    *first = cur - (minutes - 1);
}

/* The value of a query parameter, for an error message: printable ASCII, at most 32 bytes. */
static void quote_value(const char *v, size_t len, char out[40])
{
    size_t j = 0;

    for (size_t i = 0; i < len && j < 32; i++)
        out[j++] = v[i] >= 0x20 && v[i] < 0x7f && v[i] != '"' ? v[i] : '?';
    out[j] = '\0';
}

/* A decimal number of 1..3 digits in 1..ST_LIMIT_MAX. */
static bool parse_limit(const char *v, size_t len, int *out)
{
    int n = 0;

    if (len == 0 || len > 3)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (v[i] < '0' || v[i] > '9')
            return false;
        n = n * 10 + (v[i] - '0');
    }
    if (n < 1 || n > ST_LIMIT_MAX)
        return false;
    *out = n;
    return true;
}

cart_status st_query_parse(const char *q, size_t len, bool with_limit, st_query *out, char *err, size_t errlen)
{
    st_query r = {60, ST_LIMIT_DEFAULT};
    bool seen_window = false, seen_limit = false;
    size_t i = 0;
    char shown[40];

    while (q != NULL && i < len) {
        size_t end = i, eq;
        const char *v;
        size_t klen, vlen;

        while (end < len && q[end] != '&')
            end++;
        for (eq = i; eq < end && q[eq] != '='; eq++)
            ;
        klen = eq - i;
        v = eq < end ? q + eq + 1 : q + end;
        vlen = eq < end ? end - eq - 1 : 0;
        if (klen == 6 && memcmp(q + i, "window", 6) == 0) {
            if (seen_window) {
                snprintf(err, errlen, "window: given more than once");
                return CART_ERR_INVALID;
            }
            seen_window = true;
            if (st_window_parse(v, vlen, &r.minutes) != CART_OK) {
                quote_value(v, vlen, shown);
                snprintf(err, errlen, "window: expected 5m, 1h or 24h, got \"%s\"", shown);
                return CART_ERR_INVALID;
            }
        } else if (with_limit && klen == 5 && memcmp(q + i, "limit", 5) == 0) {
            if (seen_limit) {
                snprintf(err, errlen, "limit: given more than once");
                return CART_ERR_INVALID;
            }
            seen_limit = true;
            if (!parse_limit(v, vlen, &r.limit)) {
                quote_value(v, vlen, shown);
                snprintf(err, errlen, "limit: expected an integer from 1 to %d, got \"%s\"", ST_LIMIT_MAX, shown);
                return CART_ERR_INVALID;
            }
        }
        i = end + 1;
    }
    *out = r;
    return CART_OK;
}

/* a ÷ b as a JSON real, or null when b is 0. */
static json_t *ratio(int64_t a, int64_t b)
{
    return b == 0 ? json_null() : json_real((double)a / (double)b);
}

char *st_figures_to_json(const st_figures *f, size_t *len)
{
    char from[CART_TIME_BUFSZ], to[CART_TIME_BUFSZ];
    json_t *doc = json_object(), *values = json_object(), *series = json_array();
    int order[ST_CURRENCIES_MAX];
    const char *name = st_window_name(f->minutes);
    char *text = NULL;
    bool ok = doc != NULL && values != NULL && series != NULL;
    int n = f->ncurrencies < ST_CURRENCIES_MAX ? f->ncurrencies : ST_CURRENCIES_MAX;

    cart_time_format(f->first_minute * 60000, from);
    cart_time_format((f->last_minute + 1) * 60000, to);
    ok = ok && json_object_set_new(doc, "window", json_string(name != NULL ? name : "")) == 0 &&
         json_object_set_new(doc, "from", json_string(from)) == 0 &&
         json_object_set_new(doc, "to", json_string(to)) == 0;
    /* The contract's order: the line counters, checkouts and their value, then the ends of carts. */
    for (int i = 0; ok && i <= ST_CHECKOUTS; i++)
        ok = json_object_set_new(doc, st_counter_names[i], json_integer(f->sum[i])) == 0;
    /* Currencies in code order (insertion sort of at most ST_CURRENCIES_MAX indices). */
    for (int i = 0; i < n; i++) {
        int j = i;
        for (; j > 0 && strcmp(f->currency[order[j - 1]], f->currency[i]) > 0; j--)
            order[j] = order[j - 1];
        order[j] = i;
    }
    for (int i = 0; ok && i < n; i++)
        ok = json_object_set_new(values, f->currency[order[i]], json_integer(f->value[order[i]])) == 0;
    ok = ok && json_object_set(doc, "checkout_value", values) == 0;
    for (int i = ST_CHECKOUTS + 1; ok && i < ST_NCOUNTERS; i++)
        ok = json_object_set_new(doc, st_counter_names[i], json_integer(f->sum[i])) == 0;
    ok = ok && json_object_set_new(doc, "active_carts", json_integer(f->active_carts)) == 0 &&
         json_object_set_new(doc, "conversion", ratio(f->sum[ST_CHECKOUTS], f->sum[ST_CARTS_CREATED])) == 0 &&
         json_object_set_new(doc, "abandonment",
                             ratio(f->sum[ST_CARTS_EXPIRED], f->sum[ST_CARTS_EXPIRED] + f->sum[ST_CHECKOUTS])) == 0;
    for (int i = 0; ok && i < f->minutes && i < ST_WINDOW_MAX_MINUTES; i++) {
        char minute[CART_TIME_BUFSZ];
        cart_time_format((f->first_minute + i) * 60000, minute);
        ok = json_array_append_new(series, json_pack("{s:s,s:I,s:I}", "minute", minute, "units_added",
                                                     (json_int_t)f->series_units[i], "checkouts",
                                                     (json_int_t)f->series_checkouts[i])) == 0;
    }
    ok = ok && json_object_set(doc, "series", series) == 0;
    if (ok)
        text = json_dumps(doc, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (text != NULL && len != NULL)
        *len = strlen(text);
    json_decref(values);
    json_decref(series);
    json_decref(doc);
    return text;
}

static int cmp_top(const void *a, const void *b)
{
    const st_sku_units *x = a, *y = b;

    if (x->units != y->units)
        return x->units > y->units ? -1 : 1;
    return strcmp(x->sku, y->sku);
}

void st_top_sort(st_sku_units *v, size_t n)
{
    if (n > 1)
        qsort(v, n, sizeof v[0], cmp_top);
}

char *st_top_to_json(const st_sku_units *v, size_t n, int limit, size_t *len)
{
    json_t *arr = json_array();
    char *text = NULL;
    bool ok = arr != NULL;

    for (size_t i = 0; ok && i < n && i < (size_t)limit; i++)
        ok = json_array_append_new(arr, json_pack("{s:s,s:I}", "sku", v[i].sku, "units", (json_int_t)v[i].units)) == 0;
    if (ok)
        text = json_dumps(arr, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (text != NULL && len != NULL)
        *len = strlen(text);
    json_decref(arr);
    return text;
}
