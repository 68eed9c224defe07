/*
 * cache.c: the names of the Redis cache. The script's text lives in shared/lua/cache_put.lua and
 * is compiled in from a generated file (cmake/embed_text.cmake).
 */
#include "cartshard/cache.h"

#include <string.h>

char *cart_cache_key(const char *user_id, char *buf, size_t size)
{
    static const char prefix[] = CART_CACHE_KEY_PREFIX;
    size_t plen = sizeof prefix - 1;
    size_t n;

    if (user_id == NULL || buf == NULL)
        return NULL;
    n = strlen(user_id);
    /* Only valid user ids: a '{' or '}' in the id would move the hash tag. */
    if (!cart_valid_id(user_id, n) || size < plen + n + 2)
        return NULL;
    memcpy(buf, prefix, plen);
    memcpy(buf + plen, user_id, n);
    buf[plen + n] = '}';
    buf[plen + n + 1] = '\0';
    return buf;
}
