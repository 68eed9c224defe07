/*
 * live.c: the live minute buckets in Redis (stats.h; docs/reference/storage.md, Statistics keys).
 */
#define _POSIX_C_SOURCE 200809L
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <hiredis/hiredis.h>

#include "cartshard/redis.h"
#include "stats.h"

#define CONNECT_TIMEOUT_MS 2000
#define COMMAND_TIMEOUT_MS 5000

static struct timeval ms_tv(int ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    return tv;
}

void st_live_close(st_live *l)
{
    if (l->ctx != NULL)
        redisFree(l->ctx);
    l->ctx = NULL;
}

static bool load_script(st_live *l)
{
    redisReply *r = redisCommand(l->ctx, "SCRIPT LOAD %s", st_count_lua);
    bool ok = r != NULL && r->type == REDIS_REPLY_STRING && r->len == 40;

    if (ok)
        memcpy(l->sha, r->str, 41);
    freeReplyObject(r);
    return ok;
}

st_live_result st_live_connect(st_live *l, char *err, size_t errlen)
{
    const char *step = NULL;

    if (l->ctx != NULL)
        return ST_LIVE_OK;
    l->ctx = redisConnectWithTimeout(l->cfg->redis_host, l->cfg->redis_port, ms_tv(CONNECT_TIMEOUT_MS));
    if (l->ctx == NULL || l->ctx->err) {
        snprintf(err, errlen, "%s", l->ctx != NULL ? l->ctx->errstr : "out of memory");
        st_live_close(l);
        return ST_LIVE_DOWN;
    }
    redisSetTimeout(l->ctx, ms_tv(COMMAND_TIMEOUT_MS));
    if (cart_redis_handshake(l->ctx, l->cfg, &step, err, errlen) != CART_REDIS_HANDSHAKE_OK) {
        st_live_close(l);
        return ST_LIVE_DOWN;
    }
    if (!load_script(l)) {
        snprintf(err, errlen, "SCRIPT LOAD refused");
        st_live_close(l);
        return ST_LIVE_DOWN;
    }
    return ST_LIVE_OK;
}

/* The key of a minute's bucket of kind `kind` (c, h, s, e). */
static void bucket_key(char *buf, size_t cap, char kind, int64_t minute)
{
    snprintf(buf, cap, "stats:%c:%" PRId64, kind, minute);
}

/* Sends one EVALSHA of the count script for `n`. */
static bool append_count(st_live *l, const st_notice *n)
{
    const char *argv[5 + 7 + 2 * ST_NCOUNTERS + 1];
    size_t argvlen[sizeof argv / sizeof argv[0]];
    char keys[5][48], at[24], units[24], value[24], vfield[8], incr[ST_NCOUNTERS][24];
    int argc = 0;

    bucket_key(keys[1], sizeof keys[1], 'c', n->minute);
    bucket_key(keys[2], sizeof keys[2], 'h', n->minute);
    bucket_key(keys[3], sizeof keys[3], 's', n->minute);
    bucket_key(keys[4], sizeof keys[4], 'e', n->minute);
    snprintf(keys[0], sizeof keys[0], "%s", ST_KEY_READY);
    snprintf(at, sizeof at, "%" PRId64, (n->minute + ST_RETAIN_MINUTES) * 60);
    snprintf(units, sizeof units, "%" PRId64, n->add[ST_UNITS_ADDED]);
    snprintf(value, sizeof value, "%" PRId64, n->value);
    snprintf(vfield, sizeof vfield, n->currency[0] ? "v:%s" : "", n->currency);
    argv[argc++] = "EVALSHA";
    argv[argc++] = l->sha;
    argv[argc++] = "5";
    for (int i = 0; i < 5; i++)
        argv[argc++] = keys[i];
    argv[argc++] = n->event_id;
    argv[argc++] = at;
    argv[argc++] = n->cart_id;
    argv[argc++] = n->add[ST_UNITS_ADDED] > 0 ? n->sku : "";
    argv[argc++] = units;
    argv[argc++] = vfield;
    argv[argc++] = value;
    for (int i = 0; i < ST_NCOUNTERS; i++) {
        if (n->add[i] == 0)
            continue;
        snprintf(incr[i], sizeof incr[i], "%" PRId64, n->add[i]);
        argv[argc++] = st_counter_names[i];
        argv[argc++] = incr[i];
    }
    for (int i = 0; i < argc; i++)
        argvlen[i] = strlen(argv[i]);
    return redisAppendCommandArgv(l->ctx, argc, argv, argvlen) == REDIS_OK;
}

st_live_result st_live_count(st_live *l, const st_notice *const *v, size_t n, int *outcome)
{
    st_live_result res = ST_LIVE_OK;
    bool noscript = false;
    char err[128];

    if (st_live_connect(l, err, sizeof err) != ST_LIVE_OK)
        return ST_LIVE_DOWN;
    for (int attempt = 0; attempt < 2; attempt++) {
        size_t sent = 0;
        noscript = false;
        for (size_t i = 0; i < n; i++) {
            if (attempt > 0 && outcome[i] != -2)
                continue;
            if (!append_count(l, v[i])) {
                st_live_close(l);
                return ST_LIVE_DOWN;
            }
            sent++;
        }
        for (size_t i = 0; i < n && sent > 0; i++) {
            redisReply *r = NULL;
            if (attempt > 0 && outcome[i] != -2)
                continue;
            sent--;
            if (redisGetReply(l->ctx, (void **)&r) != REDIS_OK || r == NULL) {
                st_live_close(l);
                return ST_LIVE_DOWN;
            }
            if (r->type == REDIS_REPLY_INTEGER && r->integer >= 0) {
                outcome[i] = (int)r->integer;
            } else if (r->type == REDIS_REPLY_INTEGER) {
                outcome[i] = -1;
                res = ST_LIVE_LOST;
            } else if (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOSCRIPT", 8) == 0) {
                outcome[i] = -2;
                noscript = true;
            } else {
                outcome[i] = -1;
                if (res == ST_LIVE_OK)
                    res = ST_LIVE_DOWN;
            }
            freeReplyObject(r);
        }
        if (!noscript)
            break;
        /* Redis restarted and lost its scripts: load it again, and send what it refused. */
        if (!load_script(l)) {
            st_live_close(l);
            return ST_LIVE_DOWN;
        }
    }
    if (noscript)
        return ST_LIVE_DOWN;
    if (res == ST_LIVE_DOWN)
        st_live_close(l);
    return res;
}

int st_live_has_marker(st_live *l)
{
    char err[128];
    redisReply *r;
    int rc;

    if (st_live_connect(l, err, sizeof err) != ST_LIVE_OK)
        return -1;
    r = redisCommand(l->ctx, "EXISTS %s", ST_KEY_READY);
    if (r == NULL || r->type != REDIS_REPLY_INTEGER) {
        freeReplyObject(r);
        st_live_close(l);
        return -1;
    }
    rc = r->integer > 0;
    freeReplyObject(r);
    return rc;
}

/* Adds a hash's value for field `name` into the figures. */
static void add_field(st_figures *f, int idx, const char *name, size_t nlen, const char *val)
{
    int64_t x = strtoll(val, NULL, 10);

    for (int c = 0; c < ST_NCOUNTERS; c++) {
        if (strlen(st_counter_names[c]) == nlen && memcmp(st_counter_names[c], name, nlen) == 0) {
            f->sum[c] += x;
            if (c == ST_UNITS_ADDED)
                f->series_units[idx] += x;
            else if (c == ST_CHECKOUTS)
                f->series_checkouts[idx] += x;
            return;
        }
    }
    if (nlen == 5 && name[0] == 'v' && name[1] == ':') {
        int i;
        for (i = 0; i < f->ncurrencies; i++)
            if (memcmp(f->currency[i], name + 2, 3) == 0)
                break;
        if (i == f->ncurrencies) {
            if (i == ST_CURRENCIES_MAX)
                return;
            memcpy(f->currency[i], name + 2, 3);
            f->currency[i][3] = '\0';
            f->value[i] = 0;
            f->ncurrencies++;
        }
        f->value[i] += x;
    }
}

st_live_result st_live_figures(st_live *l, int64_t now_ms, int minutes, st_figures *f)
{
    int64_t first, last;
    const char **argv = NULL;
    size_t *argvlen = NULL;
    char(*keys)[48] = NULL;
    st_live_result res = ST_LIVE_DOWN;
    char err[128];
    int marker;

    memset(f, 0, sizeof *f);
    st_window_bounds(now_ms, minutes, &first, &last);
    f->minutes = minutes;
    f->first_minute = first;
    f->last_minute = last;
    marker = st_live_has_marker(l);
    if (marker != 1)
        return marker == 0 ? ST_LIVE_LOST : ST_LIVE_DOWN;
    if (st_live_connect(l, err, sizeof err) != ST_LIVE_OK)
        return ST_LIVE_DOWN;
    argv = malloc(sizeof *argv * (size_t)(minutes + 1));
    argvlen = malloc(sizeof *argvlen * (size_t)(minutes + 1));
    keys = malloc(sizeof *keys * (size_t)minutes);
    if (argv == NULL || argvlen == NULL || keys == NULL)
        goto out;
    for (int i = 0; i < minutes; i++) {
        char k[48];
        bucket_key(k, sizeof k, 'c', first + i);
        if (redisAppendCommand(l->ctx, "HGETALL %s", k) != REDIS_OK)
            goto fail;
    }
    argv[0] = "PFCOUNT";
    argvlen[0] = 7;
    for (int i = 0; i < minutes; i++) {
        bucket_key(keys[i], sizeof keys[i], 'h', first + i);
        argv[i + 1] = keys[i];
        argvlen[i + 1] = strlen(keys[i]);
    }
    if (redisAppendCommandArgv(l->ctx, minutes + 1, argv, argvlen) != REDIS_OK)
        goto fail;
    for (int i = 0; i <= minutes; i++) {
        redisReply *r = NULL;
        if (redisGetReply(l->ctx, (void **)&r) != REDIS_OK || r == NULL)
            goto fail;
        if (i < minutes && r->type == REDIS_REPLY_ARRAY) {
            for (size_t j = 0; j + 1 < r->elements; j += 2)
                add_field(f, i, r->element[j]->str, r->element[j]->len, r->element[j + 1]->str);
        } else if (i == minutes && r->type == REDIS_REPLY_INTEGER) {
            f->active_carts = r->integer;
        } else {
            freeReplyObject(r);
            goto fail;
        }
        freeReplyObject(r);
    }
    res = ST_LIVE_OK;
    goto out;
fail:
    st_live_close(l);
out:
    free(argv);
    free(argvlen);
    free(keys);
    return res;
}

static int cmp_sku(const void *a, const void *b)
{
    return strcmp(((const st_sku_units *)a)->sku, ((const st_sku_units *)b)->sku);
}

st_live_result st_live_top(st_live *l, int64_t now_ms, int minutes, st_sku_units **out, size_t *nout)
{
    int64_t first, last;
    st_sku_units *v = NULL;
    size_t n = 0, cap = 0, merged = 0;
    char err[128];
    int marker;

    st_window_bounds(now_ms, minutes, &first, &last);
    marker = st_live_has_marker(l);
    if (marker != 1)
        return marker == 0 ? ST_LIVE_LOST : ST_LIVE_DOWN;
    if (st_live_connect(l, err, sizeof err) != ST_LIVE_OK)
        return ST_LIVE_DOWN;
    for (int i = 0; i < minutes; i++) {
        char k[48];
        bucket_key(k, sizeof k, 's', first + i);
        if (redisAppendCommand(l->ctx, "ZRANGE %s 0 -1 WITHSCORES", k) != REDIS_OK)
            goto fail;
    }
    for (int i = 0; i < minutes; i++) {
        redisReply *r = NULL;
        if (redisGetReply(l->ctx, (void **)&r) != REDIS_OK || r == NULL || r->type != REDIS_REPLY_ARRAY) {
            freeReplyObject(r);
            goto fail;
        }
        for (size_t j = 0; j + 1 < r->elements; j += 2) {
            if (n == cap) {
                size_t ncap = cap ? cap * 2 : 64;
                st_sku_units *nv = realloc(v, ncap * sizeof *nv);
                if (nv == NULL) {
                    freeReplyObject(r);
                    goto fail;
                }
                v = nv;
                cap = ncap;
            }
            snprintf(v[n].sku, sizeof v[n].sku, "%s", r->element[j]->str);
            v[n].units = strtoll(r->element[j + 1]->str, NULL, 10);
            n++;
        }
        freeReplyObject(r);
    }
    /* One entry per sku: sort by sku, add up the runs. */
    if (n > 1)
        qsort(v, n, sizeof *v, cmp_sku);
    for (size_t i = 0; i < n; i++) {
        if (merged > 0 && strcmp(v[merged - 1].sku, v[i].sku) == 0)
            v[merged - 1].units += v[i].units;
        else
            v[merged++] = v[i];
    }
    *out = v;
    *nout = merged;
    return ST_LIVE_OK;
fail:
    free(v);
    st_live_close(l);
    return ST_LIVE_DOWN;
}
