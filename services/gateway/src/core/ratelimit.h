/*
 * ratelimit.h: per-client rate limiting (docs/reference/api.md, Rate limiting), GCRA: each
 * client is one "theoretical arrival time" (TAT). With rate r per second and burst b, a request
 * is allowed when, after it, the TAT is at most b emission intervals (1/r s) ahead of now; so a
 * fresh client may send b requests at once and then r per second.
 *
 * The shared limit lives in Redis (gw_rate_limit_lua, services/gateway/lua/rate_limit.lua, the
 * same algorithm), so every gateway replica counts against one budget. When Redis cannot answer,
 * each gateway thread falls back to a local table (gw_local_limiter), which allows rate/threads
 * per client per thread: the process as a whole stays near the limit without Redis.
 */
#ifndef GW_RATELIMIT_H
#define GW_RATELIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The text of services/gateway/lua/rate_limit.lua, embedded at build time. */
extern const char gw_rate_limit_lua[];

/* The verdict on one request; what the RateLimit-* and Retry-After headers say. */
typedef struct gw_rate_verdict {
    bool allowed;
    int64_t remaining;      /* requests still allowed right now */
    int64_t retry_after_ms; /* when the next request would be allowed (0 if this one was) */
    int64_t reset_ms;       /* when the bucket is full again */
} gw_rate_verdict;

/* One GCRA step: `*tat_us` is the client's TAT (0 for a new client), updated when the request is
 * allowed. `rate` > 0 per second, `burst` >= 1. Pure. */
gw_rate_verdict gw_gcra(int64_t *tat_us, int64_t now_us, double rate, int64_t burst);

/* A bounded table of clients for the local fallback. When it is full, the least recently seen
 * client is forgotten (it gets a fresh bucket, which errs on the side of serving). */
typedef struct gw_local_limiter gw_local_limiter;

/* `capacity` clients (rounded up to a power of two). NULL when out of memory. */
gw_local_limiter *gw_local_limiter_new(size_t capacity);
void gw_local_limiter_free(gw_local_limiter *l);

/* Counts one request of `client` (NUL-terminated, at most 127 bytes used) at `now_us`. */
gw_rate_verdict gw_local_limit(gw_local_limiter *l, const char *client, int64_t now_us, double rate, int64_t burst);

#endif
