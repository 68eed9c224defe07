#define _POSIX_C_SOURCE 200809L
#include "redis.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/adapters/libuv.h>
#include <hiredis/async.h>
#include <openssl/sha.h>

#include "cartshard/cache.h"
#include "cartshard/clock.h"
#include "cartshard/log.h"
#include "cartshard/redis.h"
#include "ratelimit.h"

#define WATCH_MS 20
/* hiredis 0.14's libuv adapter ignores poll errors, so a refused connect can hang forever:
 * a connect that has not finished by then is abandoned and retried. */
#define CONNECT_TIMEOUT_MS 1000
#define BACKOFF_MIN_MS     100
#define BACKOFF_MAX_MS     2000

/* A command waiting for its reply, in send order. */
typedef struct pend {
    gw_redis *r;
    gw_redis_cb cb;
    void *arg;
    int64_t sent_ms;
    struct pend *prev, *next;
} pend;

struct gw_redis {
    uv_loop_t *loop;
    const cart_config *cfg;
    int timeout_ms;
    cart_metric *errors;
    redisAsyncContext *ac; /* NULL while disconnected */
    bool connected;
    bool closing;
    bool warned; /* one warning per outage */
    int64_t connect_started_ms;
    int64_t backoff_ms;
    uv_timer_t watch;     /* timeouts, every WATCH_MS */
    uv_timer_t reconnect; /* the next connect attempt */
    int open_handles;
    pend *head, *tail;
    char sha[GW_SCRIPT_COUNT][2 * SHA_DIGEST_LENGTH + 1];
};

static const char *script_text(gw_script s)
{
    return s == GW_SCRIPT_CACHE_PUT ? cart_cache_put_lua : gw_rate_limit_lua;
}

static void unlink_pend(gw_redis *r, pend *p)
{
    if (p->prev)
        p->prev->next = p->next;
    else
        r->head = p->next;
    if (p->next)
        p->next->prev = p->prev;
    else
        r->tail = p->prev;
}

static void on_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    pend *p = privdata;
    gw_redis *r = p->r;
    const redisReply *rep = reply;

    unlink_pend(r, p);
    if (rep && rep->type == REDIS_REPLY_ERROR && strncmp(rep->str, "NOSCRIPT", 8) == 0 && r->ac == ac) {
        /* The scripts are gone (SCRIPT FLUSH, a failover): load them again for the next calls. */
        for (int s = 0; s < GW_SCRIPT_COUNT; s++)
            redisAsyncCommand(ac, NULL, NULL, "SCRIPT LOAD %s", script_text((gw_script)s));
    }
    if (p->cb)
        p->cb(p->arg, rep);
    free(p);
}

static void schedule_reconnect(gw_redis *r);

/* Drops the connection: every waiting command gets NULL. */
static void drop(gw_redis *r, const char *why)
{
    redisAsyncContext *ac = r->ac;

    if (ac == NULL)
        return;
    r->ac = NULL;
    r->connected = false;
    cart_counter_inc(r->errors);
    if (!r->warned && !r->closing) {
        cart_log(CART_LOG_WARN, "redis unavailable", CART_LS("error", why), NULL);
        r->warned = true;
    }
    redisAsyncFree(ac); /* runs the callbacks with NULL; deferred if we are inside one */
    schedule_reconnect(r);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    gw_redis *r = ac->data;

    if (r == NULL || r->ac != ac)
        return;
    if (status != REDIS_OK) {
        /* hiredis frees the context after this callback. */
        r->ac = NULL;
        cart_counter_inc(r->errors);
        if (!r->warned && !r->closing) {
            cart_log(CART_LOG_WARN, "redis unavailable", CART_LS("error", ac->errstr), NULL);
            r->warned = true;
        }
        schedule_reconnect(r);
        return;
    }
    r->connected = true;
    r->backoff_ms = BACKOFF_MIN_MS;
    if (r->warned)
        cart_log(CART_LOG_INFO, "redis reachable again", NULL);
    r->warned = false;
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    gw_redis *r = ac->data;

    if (r == NULL || r->ac != ac)
        return; /* we dropped it ourselves */
    r->ac = NULL;
    r->connected = false;
    cart_counter_inc(r->errors);
    if (!r->warned && !r->closing) {
        cart_log(CART_LOG_WARN, "redis connection lost", CART_LS("error", status == REDIS_OK ? "closed" : ac->errstr),
                 NULL);
        r->warned = true;
    }
    schedule_reconnect(r);
}

static void connect_now(gw_redis *r)
{
    const cart_config *cfg = r->cfg;
    redisAsyncContext *ac;

    if (r->closing || r->ac)
        return;
    ac = redisAsyncConnect(cfg->redis_host, cfg->redis_port);
    if (ac == NULL || ac->err || redisLibuvAttach(ac, r->loop) != REDIS_OK) {
        if (!r->warned && ac) {
            cart_log(CART_LOG_WARN, "redis unavailable", CART_LS("error", ac->errstr), NULL);
            r->warned = true;
        }
        cart_counter_inc(r->errors);
        if (ac)
            redisAsyncFree(ac);
        schedule_reconnect(r);
        return;
    }
    ac->data = r;
    r->ac = ac;
    r->connect_started_ms = cart_mono_ms();
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    /* Queued now, sent first: before any command of ours can run. */
    cart_redis_handshake_async(ac, cfg);
    for (int s = 0; s < GW_SCRIPT_COUNT; s++)
        redisAsyncCommand(ac, NULL, NULL, "SCRIPT LOAD %s", script_text((gw_script)s));
}

static void on_reconnect_timer(uv_timer_t *t)
{
    connect_now(t->data);
}

static void schedule_reconnect(gw_redis *r)
{
    if (r->closing || uv_is_active((uv_handle_t *)&r->reconnect))
        return;
    uv_timer_start(&r->reconnect, on_reconnect_timer, (uint64_t)r->backoff_ms, 0);
    r->backoff_ms = r->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : r->backoff_ms * 2;
}

static void on_watch(uv_timer_t *t)
{
    gw_redis *r = t->data;
    int64_t now = cart_mono_ms();

    if (r->ac && !r->connected && now - r->connect_started_ms > CONNECT_TIMEOUT_MS) {
        redisAsyncContext *ac = r->ac;
        r->ac = NULL;
        cart_counter_inc(r->errors);
        if (!r->warned) {
            cart_log(CART_LOG_WARN, "redis unavailable", CART_LS("error", "connect timed out"), NULL);
            r->warned = true;
        }
        redisAsyncFree(ac);
        schedule_reconnect(r);
        return;
    }
    if (r->head && now - r->head->sent_ms > r->timeout_ms)
        drop(r, "a command timed out");
}

gw_redis *gw_redis_new(uv_loop_t *loop, const cart_config *cfg, int timeout_ms, cart_metric *errors)
{
    gw_redis *r = calloc(1, sizeof *r);

    if (r == NULL)
        return NULL;
    r->loop = loop;
    r->cfg = cfg;
    r->timeout_ms = timeout_ms;
    r->errors = errors;
    r->backoff_ms = BACKOFF_MIN_MS;
    for (int s = 0; s < GW_SCRIPT_COUNT; s++) {
        const char *text = script_text((gw_script)s);
        unsigned char d[SHA_DIGEST_LENGTH];
        SHA1((const unsigned char *)text, strlen(text), d);
        for (int i = 0; i < SHA_DIGEST_LENGTH; i++)
            snprintf(&r->sha[s][2 * i], 3, "%02x", d[i]);
    }
    uv_timer_init(loop, &r->watch);
    uv_timer_init(loop, &r->reconnect);
    r->watch.data = r->reconnect.data = r;
    r->open_handles = 2;
    uv_timer_start(&r->watch, on_watch, WATCH_MS, WATCH_MS);
    connect_now(r);
    return r;
}

int gw_redis_cmd(gw_redis *r, gw_redis_cb cb, void *arg, int argc, const char **argv, const size_t *argvlen)
{
    pend *p;

    if (r == NULL || r->ac == NULL || !r->connected)
        return -1;
    p = calloc(1, sizeof *p);
    if (p == NULL)
        return -1;
    p->r = r;
    p->cb = cb;
    p->arg = arg;
    p->sent_ms = cart_mono_ms();
    if (redisAsyncCommandArgv(r->ac, on_reply, p, argc, argv, argvlen) != REDIS_OK) {
        free(p);
        return -1;
    }
    p->prev = r->tail;
    if (r->tail)
        r->tail->next = p;
    else
        r->head = p;
    r->tail = p;
    return 0;
}

int gw_redis_script(gw_redis *r, gw_script script, gw_redis_cb cb, void *arg, int nkeys, int nargs, const char **argv,
                    const size_t *argvlen)
{
    const char *av[16];
    size_t lv[16];
    char nk[12];
    int n = 0;

    if (2 + nkeys + nargs > 16 || script < 0 || script >= GW_SCRIPT_COUNT)
        return -1;
    snprintf(nk, sizeof nk, "%d", nkeys);
    av[n] = "EVALSHA";
    lv[n++] = 7;
    av[n] = r ? r->sha[script] : "";
    lv[n++] = 2 * SHA_DIGEST_LENGTH;
    av[n] = nk;
    lv[n++] = strlen(nk);
    for (int i = 0; i < nkeys + nargs; i++) {
        av[n] = argv[i];
        lv[n++] = argvlen[i];
    }
    return gw_redis_cmd(r, cb, arg, n, av, lv);
}

bool gw_redis_up(const gw_redis *r)
{
    return r != NULL && r->connected;
}

static void on_handle_closed(uv_handle_t *h)
{
    gw_redis *r = h->data;

    if (--r->open_handles == 0)
        free(r);
}

void gw_redis_free(gw_redis *r)
{
    redisAsyncContext *ac;

    if (r == NULL)
        return;
    r->closing = true;
    ac = r->ac;
    r->ac = NULL;
    r->connected = false;
    if (ac)
        redisAsyncFree(ac); /* fails what is waiting; our callbacks still see r */
    uv_close((uv_handle_t *)&r->watch, on_handle_closed);
    uv_close((uv_handle_t *)&r->reconnect, on_handle_closed);
}
