/*
 * redis.h: the handshake of a connection to the project's Redis (links hiredis), shared by the
 * gateway's clients and the worker's cache writer: AUTH when REDIS_URL names a password, SELECT
 * when it names a database other than 0, before any other command.
 */
#ifndef CARTSHARD_REDIS_H
#define CARTSHARD_REDIS_H

#include <stddef.h>

#include "cartshard/config.h"

struct redisContext;
struct redisAsyncContext;

/* How a blocking handshake ended. */
typedef enum cart_redis_handshake_result {
    CART_REDIS_HANDSHAKE_OK = 0, /* every step answered a status or a string */
    CART_REDIS_HANDSHAKE_FAILED, /* a step got no reply: the connection broke (drop it) */
    CART_REDIS_HANDSHAKE_REFUSED /* a step got an error or an unexpected reply (drop it too) */
} cart_redis_handshake_result;

/*
 * Runs the handshake for cfg's Redis on a blocking, connected `ctx` (borrowed), step by step. On
 * failure *step names the command that failed ("AUTH" or "SELECT", static) and `err` (errlen
 * bytes, errlen > 0) says why: the context's error, "no reply", Redis's error text or
 * "unexpected reply type". Nothing to do (no password, database 0) is CART_REDIS_HANDSHAKE_OK.
 */
cart_redis_handshake_result cart_redis_handshake(struct redisContext *ctx, const cart_config *cfg, const char **step,
                                                 char *err, size_t errlen);

/*
 * Queues the handshake for cfg's Redis on `ac` (borrowed), to be sent first: call it right after
 * connecting, before queuing anything else. The replies are not looked at: a refused AUTH or
 * SELECT shows in the error replies of the commands that follow.
 */
void cart_redis_handshake_async(struct redisAsyncContext *ac, const cart_config *cfg);

#endif
