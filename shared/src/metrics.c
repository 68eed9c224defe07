/*
 * metrics.c: a registry of counters, gauges and histograms rendered as Prometheus text 0.0.4.
 *
 * Design: the registry and each family have a mutex that guards only their lists (lookup,
 * creation, rendering). A series' numbers are atomics: a double is kept as its IEEE-754 bit
 * pattern in an _Atomic uint64_t and updated with a compare-and-swap loop, so the hot path
 * (an update through a kept pointer) never takes a lock. Series are never removed, so a pointer
 * stays valid for the registry's life.
 *
 * A histogram series keeps one non-cumulative count per bucket (the last one is +Inf) and the
 * sum; _count is rendered as the total of the buckets read, so it always equals the +Inf bucket
 * even while observations are being recorded.
 */
#include "cartshard/metrics.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Histogram bucket bounds are kept finite; more than this is surely a mistake. */
#define MAX_BUCKETS 128

static const double default_buckets[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                         0.1,    0.25,  0.5,    1,     2.5,  5,     10};

struct cart_metric {
    /** The family this series belongs to (for its type and bucket bounds). */
    cart_metric_family *fam;
    /** Next series of the family, in creation order. */
    cart_metric *next;
    /** FNV-1a of the label values, to skip most string compares in lookups. */
    uint32_t hash;
    /** One malloc'd string per label name of the family; NULL when it has none. */
    char **label_values;
    /** Bits of a double: the value of a counter or gauge, the sum of a histogram. */
    _Atomic uint64_t value;
    /** Histograms only: per-bucket (not cumulative) counts, nbounds + 1 of them, +Inf last. */
    _Atomic uint64_t buckets[];
};

struct cart_metric_family {
    /** Next family of the registry, in registration order. */
    cart_metric_family *next;
    /** The metric name, its help text (never NULL) and type. */
    char *name;
    char *help;
    cart_metric_type type;
    /** Label names, nlabels of them. */
    char **label_names;
    size_t nlabels;
    /** Histograms only: the finite upper bounds, ascending; +Inf is implied. */
    double *bounds;
    size_t nbounds;
    /** Guards the series list (not the series' values, which are atomic). */
    pthread_mutex_t lock;
    cart_metric *first;
    cart_metric *last;
};

struct cart_metrics {
    /** Guards the family list. */
    pthread_mutex_t lock;
    cart_metric_family *first;
    cart_metric_family *last;
};

static uint64_t dbl_bits(double d)
{
    uint64_t u;
    memcpy(&u, &d, sizeof u);
    return u;
}

static double bits_dbl(uint64_t u)
{
    double d;
    memcpy(&d, &u, sizeof d);
    return d;
}

static void atomic_add_dbl(_Atomic uint64_t *p, double v)
{
    uint64_t old = atomic_load_explicit(p, memory_order_relaxed);
    uint64_t upd;

    do {
        upd = dbl_bits(bits_dbl(old) + v);
    } while (!atomic_compare_exchange_weak_explicit(p, &old, upd, memory_order_relaxed, memory_order_relaxed));
}

static char *dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (p)
        memcpy(p, s, n);
    return p;
}

static void free_strv(char **v, size_t n)
{
    if (!v)
        return;
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

static bool valid_metric_name(const char *s)
{
    if (!s || !*s || (s[0] >= '0' && s[0] <= '9'))
        return false;
    for (; *s; s++) {
        char c = *s;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == ':'))
            return false;
    }
    return true;
}

/* A label name: [a-zA-Z_][a-zA-Z0-9_]*, and not "__..." which Prometheus reserves. */
static bool valid_label_name(const char *s, size_t n)
{
    if (n == 0 || (s[0] >= '0' && s[0] <= '9') || (n >= 2 && s[0] == '_' && s[1] == '_'))
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_'))
            return false;
    }
    return true;
}

/*
 * Splits "a,b,c" into *out (malloc'd strings). Returns 0, -1 for an invalid list (bad or
 * repeated name, "le" on a histogram), -2 when out of memory. Nothing is left allocated on error.
 */
static int parse_label_names(const char *list, cart_metric_type type, char ***out, size_t *n)
{
    char **names = NULL;
    size_t count = 0, cap = 0;
    int rc = -1;

    *out = NULL;
    *n = 0;
    if (!list || !*list)
        return 0;
    for (const char *p = list;;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);

        if (!valid_label_name(p, len) || (type == CART_METRIC_HISTOGRAM && len == 2 && memcmp(p, "le", 2) == 0))
            goto out;
        for (size_t i = 0; i < count; i++) {
            if (strlen(names[i]) == len && memcmp(names[i], p, len) == 0)
                goto out;
        }
        if (count == cap) {
            size_t ncap = cap ? cap * 2 : 4;
            char **grown = realloc(names, ncap * sizeof *grown);
            if (!grown) {
                rc = -2;
                goto out;
            }
            names = grown;
            cap = ncap;
        }
        if (!(names[count] = malloc(len + 1))) {
            rc = -2;
            goto out;
        }
        memcpy(names[count], p, len);
        names[count++][len] = '\0';
        if (!end)
            break;
        p = end + 1;
    }
    *out = names;
    *n = count;
    names = NULL;
    count = 0;
    rc = 0;
out:
    free_strv(names, count);
    return rc;
}

/* Checks the bucket bounds: ascending, finite except a last +Inf (which is dropped). Returns
 * how many finite bounds to keep, or -1 when they are invalid. */
static long check_bounds(const double *b, size_t n)
{
    if (n == 0)
        return -1;
    if (isinf(b[n - 1]) && b[n - 1] > 0)
        n--;
    if (n > MAX_BUCKETS)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(b[i]) || (i > 0 && !(b[i] > b[i - 1])))
            return -1;
    }
    return (long)n;
}

/* True when two families would write samples of the same name (a histogram writes _bucket,
 * _sum and _count lines). */
static bool names_clash(const char *a, cart_metric_type ta, const char *b, cart_metric_type tb)
{
    static const char *const suffixes[] = {"_bucket", "_sum", "_count"};

    if (tb == CART_METRIC_HISTOGRAM) {
        const char *t = a;
        a = b, b = t;
        ta = tb;
    }
    /* Now `a` is the histogram if either is one. */
    if (ta != CART_METRIC_HISTOGRAM)
        return false;
    size_t la = strlen(a);
    if (strncmp(a, b, la) != 0)
        return false;
    for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++) {
        if (strcmp(b + la, suffixes[i]) == 0)
            return true;
    }
    return false;
}

static bool same_shape(const cart_metric_family *f, cart_metric_type type, char **labels, size_t nlabels,
                       const double *bounds, size_t nbounds)
{
    if (f->type != type || f->nlabels != nlabels)
        return false;
    for (size_t i = 0; i < nlabels; i++) {
        if (strcmp(f->label_names[i], labels[i]) != 0)
            return false;
    }
    if (type == CART_METRIC_HISTOGRAM) {
        if (f->nbounds != nbounds)
            return false;
        for (size_t i = 0; i < nbounds; i++) {
            if (f->bounds[i] != bounds[i])
                return false;
        }
    }
    return true;
}

static void series_free(cart_metric *m)
{
    if (!m)
        return;
    free_strv(m->label_values, m->fam->nlabels);
    free(m);
}

static void family_free(cart_metric_family *f)
{
    if (!f)
        return;
    for (cart_metric *m = f->first, *next; m; m = next) {
        next = m->next;
        series_free(m);
    }
    pthread_mutex_destroy(&f->lock);
    free(f->name);
    free(f->help);
    free_strv(f->label_names, f->nlabels);
    free(f->bounds);
    free(f);
}

cart_metrics *cart_metrics_new(void)
{
    cart_metrics *reg = calloc(1, sizeof *reg);

    if (!reg)
        return NULL;
    if (pthread_mutex_init(&reg->lock, NULL) != 0) {
        free(reg);
        return NULL;
    }
    return reg;
}

void cart_metrics_free(cart_metrics *reg)
{
    if (!reg)
        return;
    for (cart_metric_family *f = reg->first, *next; f; f = next) {
        next = f->next;
        family_free(f);
    }
    pthread_mutex_destroy(&reg->lock);
    free(reg);
}

static uint32_t hash_values(const char *const *values, size_t n)
{
    uint32_t h = 2166136261u;

    for (size_t i = 0; i < n; i++) {
        for (const unsigned char *p = (const unsigned char *)(values[i] ? values[i] : ""); *p; p++) {
            h ^= *p;
            h *= 16777619u;
        }
        h ^= 0xffu; /* a separator no label value contains in this position */
        h *= 16777619u;
    }
    return h;
}

/* Allocates a zeroed series of `f` with copies of the label values; NULL when out of memory. */
static cart_metric *series_new(cart_metric_family *f, const char *const *values, uint32_t hash)
{
    size_t nb = f->type == CART_METRIC_HISTOGRAM ? f->nbounds + 1 : 0;
    cart_metric *m = calloc(1, sizeof *m + nb * sizeof m->buckets[0]);

    if (!m)
        return NULL;
    m->fam = f;
    m->hash = hash;
    atomic_init(&m->value, dbl_bits(0.0));
    for (size_t i = 0; i < nb; i++)
        atomic_init(&m->buckets[i], 0);
    if (f->nlabels > 0) {
        if (!(m->label_values = calloc(f->nlabels, sizeof *m->label_values)))
            goto fail;
        for (size_t i = 0; i < f->nlabels; i++) {
            if (!(m->label_values[i] = dup_str(values[i] ? values[i] : "")))
                goto fail;
        }
    }
    return m;

fail:
    series_free(m);
    return NULL;
}

cart_metric_family *cart_metrics_family(cart_metrics *reg, const char *name, const char *help, cart_metric_type type,
                                        const char *label_names, const double *buckets, size_t nbuckets)
{
    cart_metric_family *fam = NULL, *result = NULL;
    char **labels = NULL;
    size_t nlabels = 0;
    const double *bounds = NULL;
    size_t nbounds = 0;
    bool locked = false;

    if (!reg || !valid_metric_name(name) ||
        (type != CART_METRIC_COUNTER && type != CART_METRIC_GAUGE && type != CART_METRIC_HISTOGRAM))
        goto out;
    if (parse_label_names(label_names, type, &labels, &nlabels) != 0)
        goto out;
    if (type == CART_METRIC_HISTOGRAM) {
        long kept;
        bounds = buckets ? buckets : default_buckets;
        kept = check_bounds(bounds, buckets ? nbuckets : sizeof default_buckets / sizeof default_buckets[0]);
        if (kept < 0)
            goto out;
        nbounds = (size_t)kept;
    }

    pthread_mutex_lock(&reg->lock);
    locked = true;
    for (cart_metric_family *f = reg->first; f; f = f->next) {
        if (strcmp(f->name, name) == 0) {
            if (same_shape(f, type, labels, nlabels, bounds, nbounds))
                result = f;
            goto out;
        }
        if (names_clash(f->name, f->type, name, type))
            goto out;
    }

    if (!(fam = calloc(1, sizeof *fam)))
        goto out;
    fam->type = type;
    fam->label_names = labels;
    fam->nlabels = nlabels;
    labels = NULL;
    if (pthread_mutex_init(&fam->lock, NULL) != 0) {
        free_strv(fam->label_names, fam->nlabels);
        free(fam);
        fam = NULL;
        goto out;
    }
    if (!(fam->name = dup_str(name)) || !(fam->help = dup_str(help ? help : "")))
        goto out;
    if (nbounds > 0) {
        if (!(fam->bounds = malloc(nbounds * sizeof *fam->bounds)))
            goto out;
        memcpy(fam->bounds, bounds, nbounds * sizeof *fam->bounds);
    }
    fam->nbounds = nbounds;
    /* A family without labels has exactly one series: create it now so it renders as 0. */
    if (nlabels == 0 && !(fam->first = fam->last = series_new(fam, NULL, hash_values(NULL, 0))))
        goto out;

    if (reg->last)
        reg->last->next = fam;
    else
        reg->first = fam;
    reg->last = fam;
    result = fam;
    fam = NULL;

out:
    if (locked)
        pthread_mutex_unlock(&reg->lock);
    family_free(fam);
    free_strv(labels, nlabels);
    return result;
}

cart_metric *cart_metrics_series(cart_metric_family *fam, const char *const *label_values)
{
    cart_metric *m;
    uint32_t h;

    if (!fam || (fam->nlabels > 0 && !label_values))
        return NULL;
    h = hash_values(label_values, fam->nlabels);
    pthread_mutex_lock(&fam->lock);
    for (m = fam->first; m; m = m->next) {
        size_t i = 0;
        if (m->hash != h)
            continue;
        while (i < fam->nlabels && strcmp(m->label_values[i], label_values[i] ? label_values[i] : "") == 0)
            i++;
        if (i == fam->nlabels)
            goto out;
    }
    if ((m = series_new(fam, label_values, h)) != NULL) {
        if (fam->last)
            fam->last->next = m;
        else
            fam->first = m;
        fam->last = m;
    }
out:
    pthread_mutex_unlock(&fam->lock);
    return m;
}

void cart_counter_inc(cart_metric *m)
{
    cart_counter_add(m, 1.0);
}

void cart_counter_add(cart_metric *m, double v)
{
    /* A counter only goes up; a gauge may be counted up as well (requests in flight). */
    if (!m || m->fam->type == CART_METRIC_HISTOGRAM || isnan(v) || (m->fam->type == CART_METRIC_COUNTER && v < 0))
        return;
    atomic_add_dbl(&m->value, v);
}

void cart_gauge_set(cart_metric *m, double v)
{
    if (!m || m->fam->type != CART_METRIC_GAUGE)
        return;
    atomic_store_explicit(&m->value, dbl_bits(v), memory_order_relaxed);
}

void cart_gauge_add(cart_metric *m, double v)
{
    if (!m || m->fam->type != CART_METRIC_GAUGE)
        return;
    atomic_add_dbl(&m->value, v);
}

void cart_histogram_observe(cart_metric *m, double v)
{
    const cart_metric_family *f;
    size_t lo = 0, hi;

    if (!m || m->fam->type != CART_METRIC_HISTOGRAM || isnan(v))
        return;
    f = m->fam;
    /* The first bound >= v (buckets are "less than or equal"); nbounds means +Inf. */
    hi = f->nbounds;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (f->bounds[mid] < v)
            lo = mid + 1;
        else
            hi = mid;
    }
    atomic_fetch_add_explicit(&m->buckets[lo], 1, memory_order_relaxed);
    atomic_add_dbl(&m->value, v);
}

double cart_metric_value(const cart_metric *m)
{
    if (!m)
        return 0.0;
    if (m->fam->type == CART_METRIC_HISTOGRAM) {
        uint64_t count = 0;
        for (size_t i = 0; i <= m->fam->nbounds; i++)
            count += atomic_load_explicit(&m->buckets[i], memory_order_relaxed);
        return (double)count;
    }
    return bits_dbl(atomic_load_explicit(&m->value, memory_order_relaxed));
}

/* A growing output buffer; `oom` sticks once an allocation failed. */
typedef struct sbuf {
    char *p;
    size_t len;
    size_t cap;
    bool oom;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t ncap = b->cap ? b->cap : 4096;
        while (b->len + n + 1 > ncap)
            ncap *= 2;
        char *grown = realloc(b->p, ncap);
        if (!grown) {
            b->oom = true;
            return;
        }
        b->p = grown;
        b->cap = ncap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_str(sbuf *b, const char *s)
{
    sb_put(b, s, strlen(s));
}

/* Appends s with backslash and newline escaped, and the double quote too when `quote` is set
 * (label values need it, HELP text does not). */
static void sb_escaped(sbuf *b, const char *s, bool quote)
{
    const char *run = s;

    for (; *s; s++) {
        const char *esc = NULL;
        if (*s == '\\')
            esc = "\\\\";
        else if (*s == '\n')
            esc = "\\n";
        else if (*s == '"' && quote)
            esc = "\\\"";
        if (esc) {
            sb_put(b, run, (size_t)(s - run));
            sb_str(b, esc);
            run = s + 1;
        }
    }
    sb_put(b, run, (size_t)(s - run));
}

/* Writes a sample value the way Prometheus parses it: shortest round-trip text, +Inf, -Inf, NaN. */
static void sb_double(sbuf *b, double v)
{
    char num[40];

    if (isnan(v))
        snprintf(num, sizeof num, "NaN");
    else if (isinf(v))
        snprintf(num, sizeof num, "%s", v > 0 ? "+Inf" : "-Inf");
    else {
        snprintf(num, sizeof num, "%.15g", v);
        if (strtod(num, NULL) != v)
            snprintf(num, sizeof num, "%.17g", v);
    }
    sb_str(b, num);
}

static void sb_u64(sbuf *b, uint64_t v)
{
    char num[24];
    snprintf(num, sizeof num, "%llu", (unsigned long long)v);
    sb_str(b, num);
}

/* Writes name+suffix{labels[,le="..."]} and a space. */
static void sb_sample_name(sbuf *b, const cart_metric_family *f, const char *suffix, const cart_metric *m,
                           const char *le)
{
    sb_str(b, f->name);
    sb_str(b, suffix);
    if (f->nlabels == 0 && !le) {
        sb_str(b, " ");
        return;
    }
    sb_str(b, "{");
    for (size_t i = 0; i < f->nlabels; i++) {
        if (i > 0)
            sb_str(b, ",");
        sb_str(b, f->label_names[i]);
        sb_str(b, "=\"");
        sb_escaped(b, m->label_values[i], true);
        sb_str(b, "\"");
    }
    if (le) {
        sb_str(b, f->nlabels > 0 ? ",le=\"" : "le=\"");
        sb_str(b, le);
        sb_str(b, "\"");
    }
    sb_str(b, "} ");
}

static void render_family(sbuf *b, cart_metric_family *f)
{
    static const char *const type_names[] = {"", "counter", "gauge", "histogram"};

    if (f->help[0]) {
        sb_str(b, "# HELP ");
        sb_str(b, f->name);
        sb_str(b, " ");
        sb_escaped(b, f->help, false);
        sb_str(b, "\n");
    }
    sb_str(b, "# TYPE ");
    sb_str(b, f->name);
    sb_str(b, " ");
    sb_str(b, type_names[f->type]);
    sb_str(b, "\n");

    pthread_mutex_lock(&f->lock);
    for (const cart_metric *m = f->first; m; m = m->next) {
        if (f->type != CART_METRIC_HISTOGRAM) {
            sb_sample_name(b, f, "", m, NULL);
            sb_double(b, bits_dbl(atomic_load_explicit(&m->value, memory_order_relaxed)));
            sb_str(b, "\n");
            continue;
        }
        uint64_t cum = 0;
        for (size_t i = 0; i <= f->nbounds; i++) {
            char le[40];
            if (i < f->nbounds) {
                snprintf(le, sizeof le, "%.15g", f->bounds[i]);
                if (strtod(le, NULL) != f->bounds[i])
                    snprintf(le, sizeof le, "%.17g", f->bounds[i]);
            } else {
                snprintf(le, sizeof le, "+Inf");
            }
            cum += atomic_load_explicit(&m->buckets[i], memory_order_relaxed);
            sb_sample_name(b, f, "_bucket", m, le);
            sb_u64(b, cum);
            sb_str(b, "\n");
        }
        sb_sample_name(b, f, "_sum", m, NULL);
        sb_double(b, bits_dbl(atomic_load_explicit(&m->value, memory_order_relaxed)));
        sb_str(b, "\n");
        sb_sample_name(b, f, "_count", m, NULL);
        sb_u64(b, cum);
        sb_str(b, "\n");
    }
    pthread_mutex_unlock(&f->lock);
}

char *cart_metrics_render(cart_metrics *reg, size_t *len)
{
    sbuf b = {NULL, 0, 0, false};

    if (!reg)
        return NULL;
    sb_put(&b, "", 0); /* an empty registry still gives "" rather than NULL */
    pthread_mutex_lock(&reg->lock);
    for (cart_metric_family *f = reg->first; f; f = f->next)
        render_family(&b, f);
    pthread_mutex_unlock(&reg->lock);
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    if (len)
        *len = b.len;
    return b.p;
}

cart_metric *cart_metrics_dependency_errors(cart_metrics *reg, const char *dep)
{
    const char *lv[] = {dep};

    return cart_metrics_series(cart_metrics_family(reg, "cartshard_dependency_errors_total",
                                                   "Failed connects, lost connections, timeouts and failed commands, "
                                                   "by dependency.",
                                                   CART_METRIC_COUNTER, "dependency", NULL, 0),
                               lv);
}
