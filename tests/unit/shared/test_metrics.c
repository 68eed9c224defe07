#include <check.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cartshard/metrics.h"

static char *render(cart_metrics *reg)
{
    size_t len = 0;
    char *text = cart_metrics_render(reg, &len);
    ck_assert_ptr_nonnull(text);
    ck_assert_uint_eq(strlen(text), len);
    return text;
}

START_TEST(test_empty_registry)
{
    cart_metrics *reg = cart_metrics_new();
    ck_assert_ptr_nonnull(reg);
    char *text = render(reg);
    ck_assert_str_eq(text, "");
    free(text);
    cart_metrics_free(reg);
    cart_metrics_free(NULL);
}
END_TEST

START_TEST(test_render_exact)
{
    cart_metrics *reg = cart_metrics_new();
    cart_metric_family *req =
        cart_metrics_family(reg, "cartshard_http_requests_total", "HTTP requests by route and status.",
                            CART_METRIC_COUNTER, "route,status", NULL, 0);
    cart_metric_family *inflight =
        cart_metrics_family(reg, "cartshard_inflight", "Requests in flight.", CART_METRIC_GAUGE, NULL, NULL, 0);
    static const double b[] = {0.5, 1, 2.5};
    cart_metric_family *lat = cart_metrics_family(reg, "cartshard_latency_seconds", "Latency.\nIn \\seconds\\.",
                                                  CART_METRIC_HISTOGRAM, "route", b, 3);
    cart_metric_family *quiet = cart_metrics_family(reg, "quiet", NULL, CART_METRIC_COUNTER, "", NULL, 0);
    ck_assert_ptr_nonnull(req);
    ck_assert_ptr_nonnull(inflight);
    ck_assert_ptr_nonnull(lat);
    ck_assert_ptr_nonnull(quiet);

    const char *lv1[] = {"get_cart", "200"};
    const char *lv2[] = {"add \"item\"\\\n", "503"};
    cart_metric *get200 = cart_metrics_series(req, lv1);
    cart_metric *odd = cart_metrics_series(req, lv2);
    cart_counter_inc(get200);
    cart_counter_inc(get200);
    cart_counter_add(get200, 3);
    cart_counter_add(odd, 0.25);
    cart_metric *g = cart_metrics_series(inflight, NULL);
    cart_gauge_set(g, 7);
    cart_gauge_add(g, -2.5);
    const char *lr[] = {"checkout"};
    cart_metric *h = cart_metrics_series(lat, lr);
    cart_histogram_observe(h, 0.25);
    cart_histogram_observe(h, 0.5); /* a bound itself falls in its bucket ("less or equal") */
    cart_histogram_observe(h, 2);
    cart_histogram_observe(h, 100);

    char *text = render(reg);
    ck_assert_str_eq(text, "# HELP cartshard_http_requests_total HTTP requests by route and status.\n"
                           "# TYPE cartshard_http_requests_total counter\n"
                           "cartshard_http_requests_total{route=\"get_cart\",status=\"200\"} 5\n"
                           "cartshard_http_requests_total{route=\"add \\\"item\\\"\\\\\\n\",status=\"503\"} 0.25\n"
                           "# HELP cartshard_inflight Requests in flight.\n"
                           "# TYPE cartshard_inflight gauge\n"
                           "cartshard_inflight 4.5\n"
                           "# HELP cartshard_latency_seconds Latency.\\nIn \\\\seconds\\\\.\n"
                           "# TYPE cartshard_latency_seconds histogram\n"
                           "cartshard_latency_seconds_bucket{route=\"checkout\",le=\"0.5\"} 2\n"
                           "cartshard_latency_seconds_bucket{route=\"checkout\",le=\"1\"} 2\n"
                           "cartshard_latency_seconds_bucket{route=\"checkout\",le=\"2.5\"} 3\n"
                           "cartshard_latency_seconds_bucket{route=\"checkout\",le=\"+Inf\"} 4\n"
                           "cartshard_latency_seconds_sum{route=\"checkout\"} 102.75\n"
                           "cartshard_latency_seconds_count{route=\"checkout\"} 4\n"
                           "# TYPE quiet counter\n"
                           "quiet 0\n");
    free(text);
    ck_assert(cart_metric_value(get200) == 5);
    ck_assert(cart_metric_value(g) == 4.5);
    ck_assert(cart_metric_value(h) == 4);
    cart_metrics_free(reg);
}
END_TEST

START_TEST(test_default_buckets_and_unlabelled_histogram)
{
    cart_metrics *reg = cart_metrics_new();
    cart_metric_family *f = cart_metrics_family(reg, "h", "H.", CART_METRIC_HISTOGRAM, NULL, NULL, 0);
    ck_assert_ptr_nonnull(f);
    cart_histogram_observe(cart_metrics_series(f, NULL), 0.003);
    cart_histogram_observe(cart_metrics_series(f, NULL), NAN); /* ignored */
    char *text = render(reg);
    ck_assert_str_eq(text, "# HELP h H.\n"
                           "# TYPE h histogram\n"
                           "h_bucket{le=\"0.0005\"} 0\n"
                           "h_bucket{le=\"0.001\"} 0\n"
                           "h_bucket{le=\"0.0025\"} 0\n"
                           "h_bucket{le=\"0.005\"} 1\n"
                           "h_bucket{le=\"0.01\"} 1\n"
                           "h_bucket{le=\"0.025\"} 1\n"
                           "h_bucket{le=\"0.05\"} 1\n"
                           "h_bucket{le=\"0.1\"} 1\n"
                           "h_bucket{le=\"0.25\"} 1\n"
                           "h_bucket{le=\"0.5\"} 1\n"
                           "h_bucket{le=\"1\"} 1\n"
                           "h_bucket{le=\"2.5\"} 1\n"
                           "h_bucket{le=\"5\"} 1\n"
                           "h_bucket{le=\"10\"} 1\n"
                           "h_bucket{le=\"+Inf\"} 1\n"
                           "h_sum 0.003\n"
                           "h_count 1\n");
    free(text);
    cart_metrics_free(reg);
}
END_TEST

START_TEST(test_special_values)
{
    cart_metrics *reg = cart_metrics_new();
    cart_metric_family *f = cart_metrics_family(reg, "g", "", CART_METRIC_GAUGE, "k", NULL, 0);
    const char *a[] = {"a"}, *b[] = {"b"}, *c[] = {"c"}, *d[] = {"d"};
    cart_gauge_set(cart_metrics_series(f, a), INFINITY);
    cart_gauge_set(cart_metrics_series(f, b), -INFINITY);
    cart_gauge_set(cart_metrics_series(f, c), NAN);
    cart_gauge_set(cart_metrics_series(f, d), 1e21);
    char *text = render(reg);
    ck_assert_str_eq(text, "# TYPE g gauge\n"
                           "g{k=\"a\"} +Inf\n"
                           "g{k=\"b\"} -Inf\n"
                           "g{k=\"c\"} NaN\n"
                           "g{k=\"d\"} 1e+21\n");
    free(text);
    cart_metrics_free(reg);
}
END_TEST

START_TEST(test_series_identity)
{
    cart_metrics *reg = cart_metrics_new();
    cart_metric_family *f = cart_metrics_family(reg, "c_total", "C.", CART_METRIC_COUNTER, "a,b", NULL, 0);
    const char *v1[] = {"x", "y"}, *v1b[] = {"x", "y"}, *v2[] = {"xy", ""}, *v3[] = {"x", NULL}, *v4[] = {"x", ""};
    cart_metric *m1 = cart_metrics_series(f, v1);
    ck_assert_ptr_nonnull(m1);
    ck_assert_ptr_eq(cart_metrics_series(f, v1b), m1);
    cart_metric *m2 = cart_metrics_series(f, v2);
    ck_assert_ptr_nonnull(m2);
    ck_assert_ptr_ne(m2, m1);
    /* A NULL value is the empty string. */
    ck_assert_ptr_eq(cart_metrics_series(f, v3), cart_metrics_series(f, v4));
    /* A labelled family needs values; NULL family is harmless. */
    ck_assert_ptr_null(cart_metrics_series(f, NULL));
    ck_assert_ptr_null(cart_metrics_series(NULL, v1));
    /* Updates through NULL do nothing. */
    cart_counter_inc(NULL);
    cart_counter_add(NULL, 1);
    cart_gauge_set(NULL, 1);
    cart_gauge_add(NULL, 1);
    cart_histogram_observe(NULL, 1);
    ck_assert(cart_metric_value(NULL) == 0);
    cart_metrics_free(reg);
}
END_TEST

START_TEST(test_type_rules)
{
    cart_metrics *reg = cart_metrics_new();
    cart_metric *c = cart_metrics_series(cart_metrics_family(reg, "c", "", CART_METRIC_COUNTER, NULL, NULL, 0), NULL);
    cart_metric *g = cart_metrics_series(cart_metrics_family(reg, "g", "", CART_METRIC_GAUGE, NULL, NULL, 0), NULL);
    cart_metric *h = cart_metrics_series(cart_metrics_family(reg, "h", "", CART_METRIC_HISTOGRAM, NULL, NULL, 0), NULL);
    ck_assert_ptr_nonnull(c);
    ck_assert_ptr_nonnull(g);
    ck_assert_ptr_nonnull(h);

    /* A counter never goes down or becomes NaN, and cannot be set. */
    cart_counter_add(c, 2);
    cart_counter_add(c, -1);
    cart_counter_add(c, NAN);
    cart_gauge_set(c, 0);
    cart_gauge_add(c, -1);
    cart_histogram_observe(c, 1);
    ck_assert(cart_metric_value(c) == 2);

    /* A gauge can be counted up (requests in flight) and set. */
    cart_counter_inc(g);
    cart_gauge_add(g, -3);
    ck_assert(cart_metric_value(g) == -2);
    cart_histogram_observe(g, 5);
    ck_assert(cart_metric_value(g) == -2);

    /* A histogram only takes observations. */
    cart_counter_inc(h);
    cart_gauge_set(h, 9);
    ck_assert(cart_metric_value(h) == 0);
    cart_histogram_observe(h, 1);
    ck_assert(cart_metric_value(h) == 1);
    cart_metrics_free(reg);
}
END_TEST

START_TEST(test_invalid_and_clashes)
{
    cart_metrics *reg = cart_metrics_new();
    static const double good[] = {1, 2}, unsorted[] = {2, 1}, dup[] = {1, 1}, with_nan[] = {1, NAN},
                        with_inf[] = {1, 2, INFINITY}, neg_inf[] = {-INFINITY, 1};

    /* Invalid names. */
    ck_assert_ptr_null(cart_metrics_family(reg, "", "", CART_METRIC_COUNTER, NULL, NULL, 0));
    ck_assert_ptr_null(cart_metrics_family(reg, NULL, "", CART_METRIC_COUNTER, NULL, NULL, 0));
    ck_assert_ptr_null(cart_metrics_family(reg, "9lives", "", CART_METRIC_COUNTER, NULL, NULL, 0));
    ck_assert_ptr_null(cart_metrics_family(reg, "has-dash", "", CART_METRIC_COUNTER, NULL, NULL, 0));
    ck_assert_ptr_null(cart_metrics_family(reg, "has space", "", CART_METRIC_COUNTER, NULL, NULL, 0));
    ck_assert_ptr_null(cart_metrics_family(reg, "x", "", (cart_metric_type)0, NULL, NULL, 0));
    ck_assert_ptr_null(cart_metrics_family(NULL, "x", "", CART_METRIC_COUNTER, NULL, NULL, 0));
    ck_assert_ptr_nonnull(cart_metrics_family(reg, "ns:sub_name_1", "", CART_METRIC_COUNTER, NULL, NULL, 0));
    ck_assert_ptr_nonnull(cart_metrics_family(reg, "_under", "", CART_METRIC_COUNTER, NULL, NULL, 0));

    /* Invalid label lists. */
    ck_assert_ptr_null(cart_metrics_family(reg, "l1", "", CART_METRIC_COUNTER, "a,,b", NULL, 0));
    ck_assert_ptr_null(cart_metrics_family(reg, "l2", "", CART_METRIC_COUNTER, "a,", NULL, 0));
    ck_assert_ptr_null(cart_metrics_family(reg, "l3", "", CART_METRIC_COUNTER, "a,a", NULL, 0));
    ck_assert_ptr_null(cart_metrics_family(reg, "l4", "", CART_METRIC_COUNTER, "__name__", NULL, 0));
    ck_assert_ptr_null(cart_metrics_family(reg, "l5", "", CART_METRIC_COUNTER, "a:b", NULL, 0));
    ck_assert_ptr_null(cart_metrics_family(reg, "l6", "", CART_METRIC_COUNTER, "1a", NULL, 0));
    ck_assert_ptr_null(cart_metrics_family(reg, "l7", "", CART_METRIC_COUNTER, "a, b", NULL, 0));
    ck_assert_ptr_null(cart_metrics_family(reg, "l8", "", CART_METRIC_HISTOGRAM, "le", NULL, 0));
    ck_assert_ptr_nonnull(cart_metrics_family(reg, "l9", "", CART_METRIC_COUNTER, "le", NULL, 0));

    /* Invalid buckets. */
    ck_assert_ptr_null(cart_metrics_family(reg, "b1", "", CART_METRIC_HISTOGRAM, NULL, unsorted, 2));
    ck_assert_ptr_null(cart_metrics_family(reg, "b2", "", CART_METRIC_HISTOGRAM, NULL, dup, 2));
    ck_assert_ptr_null(cart_metrics_family(reg, "b3", "", CART_METRIC_HISTOGRAM, NULL, with_nan, 2));
    ck_assert_ptr_null(cart_metrics_family(reg, "b4", "", CART_METRIC_HISTOGRAM, NULL, good, 0));
    ck_assert_ptr_null(cart_metrics_family(reg, "b5", "", CART_METRIC_HISTOGRAM, NULL, neg_inf, 2));
    /* A trailing +Inf is the implied one. */
    cart_metric_family *b6 = cart_metrics_family(reg, "b6", "", CART_METRIC_HISTOGRAM, NULL, with_inf, 3);
    ck_assert_ptr_nonnull(b6);
    ck_assert_ptr_eq(cart_metrics_family(reg, "b6", "", CART_METRIC_HISTOGRAM, NULL, good, 2), b6);

    /* Registering again returns the same family; any difference of shape is a clash. */
    cart_metric_family *f = cart_metrics_family(reg, "req_total", "R.", CART_METRIC_COUNTER, "a,b", NULL, 0);
    ck_assert_ptr_nonnull(f);
    ck_assert_ptr_eq(cart_metrics_family(reg, "req_total", "other help", CART_METRIC_COUNTER, "a,b", NULL, 0), f);
    ck_assert_ptr_null(cart_metrics_family(reg, "req_total", "R.", CART_METRIC_GAUGE, "a,b", NULL, 0));
    ck_assert_ptr_null(cart_metrics_family(reg, "req_total", "R.", CART_METRIC_COUNTER, "b,a", NULL, 0));
    ck_assert_ptr_null(cart_metrics_family(reg, "req_total", "R.", CART_METRIC_COUNTER, "a", NULL, 0));
    ck_assert_ptr_null(cart_metrics_family(reg, "req_total", "R.", CART_METRIC_COUNTER, NULL, NULL, 0));
    cart_metric_family *h = cart_metrics_family(reg, "lat", "L.", CART_METRIC_HISTOGRAM, NULL, good, 2);
    ck_assert_ptr_nonnull(h);
    ck_assert_ptr_null(cart_metrics_family(reg, "lat", "L.", CART_METRIC_HISTOGRAM, NULL, NULL, 0));
    ck_assert_ptr_eq(cart_metrics_family(reg, "lat", "L.", CART_METRIC_HISTOGRAM, NULL, with_inf, 3), h);

    /* A histogram's _bucket/_sum/_count lines must not collide with another family. */
    ck_assert_ptr_null(cart_metrics_family(reg, "lat_sum", "", CART_METRIC_GAUGE, NULL, NULL, 0));
    ck_assert_ptr_null(cart_metrics_family(reg, "lat_count", "", CART_METRIC_COUNTER, NULL, NULL, 0));
    ck_assert_ptr_null(cart_metrics_family(reg, "lat_bucket", "", CART_METRIC_COUNTER, NULL, NULL, 0));
    ck_assert_ptr_nonnull(cart_metrics_family(reg, "lat_other", "", CART_METRIC_COUNTER, NULL, NULL, 0));
    ck_assert_ptr_nonnull(cart_metrics_family(reg, "q_count", "", CART_METRIC_COUNTER, NULL, NULL, 0));
    ck_assert_ptr_null(cart_metrics_family(reg, "q", "", CART_METRIC_HISTOGRAM, NULL, NULL, 0));
    cart_metrics_free(reg);
}
END_TEST

#define THREADS    4
#define INCREMENTS 100000

typedef struct worker_arg {
    cart_metric_family *fam;
    cart_metric *shared;
    cart_metric *hist;
    cart_metric *gauge;
} worker_arg;

static void *worker(void *p)
{
    worker_arg *a = p;
    const char *lv[] = {"shared"};
    for (int i = 0; i < INCREMENTS; i++) {
        cart_counter_inc(a->shared);
        cart_histogram_observe(a->hist, (i % 4) * 0.5);
        cart_gauge_add(a->gauge, 1);
        cart_gauge_add(a->gauge, -1);
        if (i % 1000 == 0) /* concurrent lookups of one series find the same one */
            ck_assert_ptr_eq(cart_metrics_series(a->fam, lv), a->shared);
    }
    return NULL;
}

START_TEST(test_concurrent_updates)
{
    cart_metrics *reg = cart_metrics_new();
    static const double b[] = {0.5, 1};
    cart_metric_family *f = cart_metrics_family(reg, "ops_total", "Ops.", CART_METRIC_COUNTER, "k", NULL, 0);
    cart_metric_family *hf = cart_metrics_family(reg, "sizes", "", CART_METRIC_HISTOGRAM, NULL, b, 2);
    cart_metric_family *gf = cart_metrics_family(reg, "level", "", CART_METRIC_GAUGE, NULL, NULL, 0);
    const char *lv[] = {"shared"};
    worker_arg arg = {f, cart_metrics_series(f, lv), cart_metrics_series(hf, NULL), cart_metrics_series(gf, NULL)};
    pthread_t th[THREADS];

    for (int t = 0; t < THREADS; t++)
        ck_assert_int_eq(pthread_create(&th[t], NULL, worker, &arg), 0);
    /* Rendering while others update must be safe. */
    for (int i = 0; i < 20; i++)
        free(render(reg));
    for (int t = 0; t < THREADS; t++)
        pthread_join(th[t], NULL);

    ck_assert(cart_metric_value(arg.shared) == (double)THREADS * INCREMENTS);
    ck_assert(cart_metric_value(arg.hist) == (double)THREADS * INCREMENTS);
    ck_assert(cart_metric_value(arg.gauge) == 0);
    char *text = render(reg);
    ck_assert_ptr_nonnull(strstr(text, "ops_total{k=\"shared\"} 400000\n"));
    /* Observations 0, 0.5, 1, 1.5 in turn: half are <= 0.5, three quarters <= 1. */
    ck_assert_ptr_nonnull(strstr(text, "sizes_bucket{le=\"0.5\"} 200000\n"));
    ck_assert_ptr_nonnull(strstr(text, "sizes_bucket{le=\"1\"} 300000\n"));
    ck_assert_ptr_nonnull(strstr(text, "sizes_bucket{le=\"+Inf\"} 400000\n"));
    ck_assert_ptr_nonnull(strstr(text, "sizes_sum 300000\n"));
    ck_assert_ptr_nonnull(strstr(text, "sizes_count 400000\n"));
    free(text);
    cart_metrics_free(reg);
}
END_TEST

typedef struct lookup_arg {
    cart_metric_family *fam;
    int id;
} lookup_arg;

static void *lookup_worker(void *p)
{
    lookup_arg *a = p;
    char v[16];
    for (int i = 0; i < 200; i++) {
        /* Every thread creates the same 200 series in a different order. */
        int k = (i * 7 + a->id * 31) % 200;
        snprintf(v, sizeof v, "s%d", k);
        const char *lv[] = {v};
        cart_counter_inc(cart_metrics_series(a->fam, lv));
    }
    return NULL;
}

START_TEST(test_concurrent_series_creation)
{
    cart_metrics *reg = cart_metrics_new();
    cart_metric_family *f = cart_metrics_family(reg, "made_total", "", CART_METRIC_COUNTER, "s", NULL, 0);
    pthread_t th[THREADS];
    lookup_arg args[THREADS];

    for (int t = 0; t < THREADS; t++) {
        args[t] = (lookup_arg){f, t};
        ck_assert_int_eq(pthread_create(&th[t], NULL, lookup_worker, &args[t]), 0);
    }
    for (int t = 0; t < THREADS; t++)
        pthread_join(th[t], NULL);
    char *text = render(reg);
    int lines = 0;
    for (const char *p = text; (p = strchr(p, '\n')) != NULL; p++)
        lines++;
    ck_assert_int_eq(lines, 1 + 200); /* TYPE plus one line per distinct series */
    for (int k = 0; k < 200; k++) {
        char v[16];
        snprintf(v, sizeof v, "s%d", k);
        const char *lv[] = {v};
        ck_assert(cart_metric_value(cart_metrics_series(f, lv)) == THREADS);
    }
    free(text);
    cart_metrics_free(reg);
}
END_TEST

static Suite *metrics_suite(void)
{
    Suite *s = suite_create("metrics");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_empty_registry);
    tcase_add_test(tc, test_render_exact);
    tcase_add_test(tc, test_default_buckets_and_unlabelled_histogram);
    tcase_add_test(tc, test_special_values);
    tcase_add_test(tc, test_series_identity);
    tcase_add_test(tc, test_type_rules);
    tcase_add_test(tc, test_invalid_and_clashes);
    tcase_add_test(tc, test_concurrent_updates);
    tcase_add_test(tc, test_concurrent_series_creation);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(metrics_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
