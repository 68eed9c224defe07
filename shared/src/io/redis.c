/*
 * redis.c: the handshake of a Redis connection. See cartshard/redis.h.
 */
#include "cartshard/redis.h"

#include <stdio.h>

#include <hiredis/async.h>
#include <hiredis/hiredis.h>

/* One step: the reply to a command that must answer a status or a string. Frees `r`. */
static cart_redis_handshake_result check_step(redisContext *ctx, redisReply *r, char *err, size_t errlen)
{
    cart_redis_handshake_result res = CART_REDIS_HANDSHAKE_OK;

    if (r == NULL) {
        snprintf(err, errlen, "%s", ctx->errstr[0] ? ctx->errstr : "no reply");
        return CART_REDIS_HANDSHAKE_FAILED;
    }
    if (r->type != REDIS_REPLY_STATUS && r->type != REDIS_REPLY_STRING) {
        snprintf(err, errlen, "%s", r->type == REDIS_REPLY_ERROR && r->str ? r->str : "unexpected reply type");
        res = CART_REDIS_HANDSHAKE_REFUSED;
    }
    freeReplyObject(r);
    return res;
}

cart_redis_handshake_result cart_redis_handshake(struct redisContext *ctx, const cart_config *cfg, const char **step,
                                                 char *err, size_t errlen)
{
    cart_redis_handshake_result res = CART_REDIS_HANDSHAKE_OK;

    if (cfg->redis_password) {
        *step = "AUTH";
        res = check_step(ctx, redisCommand(ctx, "AUTH %s", cfg->redis_password), err, errlen);
    }
    if (res == CART_REDIS_HANDSHAKE_OK && cfg->redis_db != 0) {
        *step = "SELECT";
        res = check_step(ctx, redisCommand(ctx, "SELECT %d", cfg->redis_db), err, errlen);
    }
    return res;
}

void cart_redis_handshake_async(struct redisAsyncContext *ac, const cart_config *cfg)
{
    if (cfg->redis_password)
        redisAsyncCommand(ac, NULL, NULL, "AUTH %s", cfg->redis_password);
    if (cfg->redis_db != 0)
        redisAsyncCommand(ac, NULL, NULL, "SELECT %d", cfg->redis_db);
}
