/*
 * redis.h: the gateway's asynchronous Redis client (hiredis on the thread's libuv loop; one per
 * gateway thread, used only on that thread).
 *
 * hiredis 0.14 has no command timeouts, so the client keeps its own: replies come back in the
 * order commands were sent, and when the oldest command waits longer than the timeout the whole
 * connection is dropped (every waiting command is failed at once) and remade in the background,
 * with backoff. While there is no connection commands are refused at once, so callers fall back
 * (reads go to PostgreSQL, rate limiting goes local) without waiting.
 *
 * Scripts are called by SHA-1 (EVALSHA); the client loads them after every connect, and again
 * when Redis says NOSCRIPT (after a SCRIPT FLUSH, say).
 */
#ifndef GW_REDIS_H
#define GW_REDIS_H

#include <stdbool.h>
#include <stddef.h>

#include <hiredis/hiredis.h>
#include <uv.h>

#include "cartshard/config.h"
#include "cartshard/metrics.h"

typedef struct gw_redis gw_redis;

/* The scripts the gateway runs. */
typedef enum gw_script {
    GW_SCRIPT_CACHE_PUT = 0, /* cartshard/cache.h */
    GW_SCRIPT_RATE_LIMIT,    /* ratelimit.h */
    GW_SCRIPT_COUNT
} gw_script;

/* Called exactly once per accepted command: with the reply (which may be an error reply), or
 * with NULL when the command failed (timeout, connection lost, client closing). The reply is
 * freed when the callback returns. */
typedef void (*gw_redis_cb)(void *arg, const redisReply *reply);

/* A client for cfg's Redis on `loop`; connects in the background. `errors` (may be NULL) counts
 * failed connects, timeouts and lost connections. NULL when out of memory. */
gw_redis *gw_redis_new(uv_loop_t *loop, const cart_config *cfg, int timeout_ms, cart_metric *errors);

/* Sends a command. 0: `cb` will be called; -1: not connected (or out of memory), `cb` will not
 * be called. `cb` may be NULL for a command whose answer does not matter. */
int gw_redis_cmd(gw_redis *r, gw_redis_cb cb, void *arg, int argc, const char **argv, const size_t *argvlen);

/* EVALSHA of `script` with `nkeys` keys and `nargs` arguments (keys first), like gw_redis_cmd. */
int gw_redis_script(gw_redis *r, gw_script script, gw_redis_cb cb, void *arg, int nkeys, int nargs, const char **argv,
                    const size_t *argvlen);

/* True while connected. */
bool gw_redis_up(const gw_redis *r);

/* Fails the waiting commands, disconnects and frees the client once libuv closed its handles.
 * NULL is a no-op. */
void gw_redis_free(gw_redis *r);

#endif
