/*
 * cache.h: the Redis cache of carts (docs/reference/storage.md, Redis), the parts both services
 * share.
 *
 * Key `cart:{<user_id>}` holds the cart's JSON (cart_to_json), which carries its "version". The
 * braces make the user id a Redis Cluster hash tag: every key of one user lands in one slot, so
 * a script may touch several of them.
 *
 * Every write goes through the script cart_cache_put_lua, so that a write never replaces a newer
 * version with an older one, whichever writers race:
 *
 *   EVALSHA <sha1 of the script> 1 cart:{u1} <version> <cart JSON> <TTL seconds>
 *     -> 1 written (SET ... EX ttl), 0 kept (the stored entry has a greater version)
 *
 * A stored entry that is not a JSON object with a numeric "version" counts as absent and is
 * overwritten; an equal version is rewritten (and its TTL renewed). Bad arguments are an error
 * reply ("ERR cache_put: ...").
 */
#ifndef CARTSHARD_CACHE_H
#define CARTSHARD_CACHE_H

#include <stddef.h>

#include "cartshard/event.h"

/* Size of a buffer that holds any cache key with its NUL: "cart:{" + user_id + "}". */
#define CART_CACHE_KEY_MAX (sizeof "cart:{}" + CART_ID_MAX)

/* The prefix of every cache key, and a SCAN MATCH pattern for all of them (and nothing else). */
#define CART_CACHE_KEY_PREFIX  "cart:{"
#define CART_CACHE_KEY_PATTERN "cart:{*}"

/* The text of shared/lua/cache_put.lua, embedded at build time; NUL-terminated, static. */
extern const char cart_cache_put_lua[];

/*
 * Writes the cache key of `user_id` ("cart:{u1}") into `buf` of `size` bytes and returns `buf`.
 * Returns NULL, and writes nothing, when user_id is NULL or not a valid user_id (1 to 64
 * characters of [A-Za-z0-9._:-]) or when the key and its NUL do not fit; a buffer of
 * CART_CACHE_KEY_MAX bytes always fits.
 */
char *cart_cache_key(const char *user_id, char *buf, size_t size);

#endif
