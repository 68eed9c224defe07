/*
 * metrics.h: a small thread-safe metrics registry rendering the Prometheus text format 0.0.4.
 *
 * A family is a metric name with its help text, type and label names. A series is a family
 * with label values. Look a series up once and keep the pointer: series live as long as the
 * registry, and updating one is a lock-free atomic operation.
 *
 *   cart_metric_family *req = cart_metrics_family(reg, "cartshard_http_requests_total",
 *       "HTTP requests by route and status.", CART_METRIC_COUNTER, "route,status", NULL);
 *   const char *lv[] = {"get_cart", "200"};
 *   cart_counter_inc(cart_metrics_series(req, lv));
 */
#ifndef CARTSHARD_METRICS_H
#define CARTSHARD_METRICS_H

#include <stddef.h>
#include <stdint.h>

typedef enum cart_metric_type {
    CART_METRIC_COUNTER = 1, /* only goes up */
    CART_METRIC_GAUGE,       /* set to any value */
    CART_METRIC_HISTOGRAM    /* observations in cumulative buckets, with _sum and _count */
} cart_metric_type;

typedef struct cart_metrics cart_metrics;
typedef struct cart_metric_family cart_metric_family;
typedef struct cart_metric cart_metric;

/* A new empty registry, or NULL when out of memory. Free with cart_metrics_free. */
cart_metrics *cart_metrics_new(void);

/* Frees the registry and every family and series in it. NULL is a no-op. */
void cart_metrics_free(cart_metrics *reg);

/*
 * Registers (or returns the already registered) family `name`. `label_names` is a
 * comma-separated list ("route,status") or NULL/"" for none. `buckets` (histograms only) is an
 * ascending list of upper bounds of `nbuckets` entries; NULL gives the default latency buckets
 * in seconds (0.0005 .. 10). Returns NULL for an invalid name, a clash of type or labels with
 * an existing family, or no memory. The registry owns the family.
 */
cart_metric_family *cart_metrics_family(cart_metrics *reg, const char *name, const char *help, cart_metric_type type,
                                        const char *label_names, const double *buckets, size_t nbuckets);

/* The series of `fam` with these label values (as many as the family has label names; NULL
 * when it has none), created on first use. Values are escaped when rendered. NULL only when out
 * of memory. Thread-safe; the family owns the series. */
cart_metric *cart_metrics_series(cart_metric_family *fam, const char *const *label_values);

/*
 * The series of cartshard_dependency_errors_total{dependency=`dep`} ("postgresql", "redis",
 * "nats"): failed connects, lost connections, timeouts and failed commands, which every service
 * counts the same way. NULL only when out of memory.
 */
cart_metric *cart_metrics_dependency_errors(cart_metrics *reg, const char *dep);

/* Counter and gauge updates; all atomic. Passing NULL is a no-op, so a failed lookup is harmless. */
void cart_counter_inc(cart_metric *m);
void cart_counter_add(cart_metric *m, double v);
void cart_gauge_set(cart_metric *m, double v);
void cart_gauge_add(cart_metric *m, double v);
/* Records one observation in a histogram series. */
void cart_histogram_observe(cart_metric *m, double v);

/* The current value of a counter or gauge (for tests and readiness logic). */
double cart_metric_value(const cart_metric *m);

/*
 * Renders every family as Prometheus text (HELP, TYPE, then series in creation order).
 * Returns a malloc'd NUL-terminated string the caller frees (length in *len if non-NULL), or
 * NULL when out of memory.
 */
char *cart_metrics_render(cart_metrics *reg, size_t *len);

#endif
