/*
 * redis_writer.h: the cart-store's writer of the Redis cart cache (docs/reference/storage.md, Redis).
 *
 * After a batch commits, its runner hands cs_redis_writer_put the committed JSON of every cart the batch
 * changed, and cs_redis_writer_put writes them to `cart:{<user_id>}` in one pipelined round trip. What
 * it guarantees:
 *
 *  - Never older over newer. Every write is the cache_put script (cartshard/cache.h), which
 *    compares versions inside Redis, atomically; whichever writers race (two runners during a
 *    partition hand-over, a replayed batch), the entry only ever moves to a greater version.
 *
 *  - A failed write leaves no stale entry behind for long. A write that failed, or whose outcome
 *    is unknown because the connection broke, may have left an older version in Redis. The user
 *    id is remembered (up to CS_REDIS_WRITER_STALE_MAX distinct ids) and its key deleted (DEL) at the
 *    start of the next call that reaches Redis, before anything is written. When more ids fail
 *    than the set holds, it falls back to deleting every `cart:{*}` key (SCAN + UNLINK, a bounded
 *    number of steps per call, restarting from the beginning if the set overflows again), and says
 *    so in a warning. Deleting an entry is always safe: the next read is a miss.
 *
 *  - A dead Redis costs the runner almost nothing. The connection is opened lazily; connecting
 *    waits at most 500 ms and every later read or write at most 1 s (socket timeouts), TCP
 *    keepalive is on. After any failure the context is freed and no new connection is attempted
 *    for 1 s: in between, cs_redis_writer_put only records its entries as failed and returns at once.
 *
 *  - It never crashes on what Redis answers: an unexpected reply counts as a failed write.
 *
 * What it does not guarantee: that the cache holds anything (it is a cache), and that entries
 * remembered as failed survive the process. If the process stops while some are remembered,
 * those keys may hold an older cart until their TTL runs out or the user's next write
 * (cs_redis_writer_free logs how many).
 *
 * Metrics: cartshard_cache_writes_total{result="written|kept_newer|error"} (one per entry) and
 * cartshard_cache_invalidations_total (keys deleted because a write may have failed). Logs: one
 * warning per incident (a lost connection, or a run of failing writes), not one per batch; an
 * info line when the connection comes back.
 *
 * Threads: a cs_redis_writer belongs to one thread (it holds a blocking hiredis context); give every
 * runner its own. Different instances may share the cart_config and the cart_metrics. hiredis
 * writes with write(2), so the process must ignore SIGPIPE (main does) or a Redis that closes the
 * connection kills it.
 */
#ifndef CS_REDIS_WRITER_H
#define CS_REDIS_WRITER_H

#include <stddef.h>
#include <stdint.h>

#include "cartshard/config.h"
#include "cartshard/metrics.h"

/* The most user ids remembered for deletion; beyond, every cart:{*} key is deleted instead. */
#define CS_REDIS_WRITER_STALE_MAX 65536

typedef struct cs_redis_writer cs_redis_writer;

/* One cart to cache. All pointers are borrowed for the duration of the call. */
typedef struct cs_redis_writer_entry {
    /** The cart's user: a valid user_id (1..64 of [A-Za-z0-9._:-]); other ids count as errors. */
    const char *user_id;
    /** The cart as cart_to_json wrote it: the value stored, with its own "version". */
    const char *json;
    /** The cart's version, the one in `json`: what the script compares. */
    int64_t version;
} cs_redis_writer_entry;

/*
 * A cache writer for the Redis of cfg->redis_* (password and database when set), writing entries
 * with a TTL of cfg->cache_ttl_s. Does not connect yet. `cfg` is borrowed and must outlive the
 * writer. `metrics` (may be NULL) gets the cache families registered, or finds them registered
 * by another writer; it must outlive the writer. `name` (copied; NULL for "cache") names the
 * writer in logs, e.g. the runner's shard name. Returns NULL when out of memory.
 */
cs_redis_writer *cs_redis_writer_new(const cart_config *cfg, cart_metrics *metrics, const char *name);

/* Closes the connection and frees the writer. Logs a warning if remembered failures are left
 * (their keys may stay stale until their TTL). NULL is a no-op. */
void cs_redis_writer_free(cs_redis_writer *c);

/*
 * Writes `n` entries, all in one pipelined round trip of EVALSHA cache_put (loading the script
 * again and retrying those entries once on a NOSCRIPT reply). First, when connected, it deletes
 * the keys of earlier failed writes and takes a few steps of a pending full wipe. Every entry ends
 * as written, kept_newer or error (metric); an error's key is remembered for deletion.
 *
 * Returns nothing: a cache failure must never fail the batch. Blocks at most the connect timeout
 * plus the command timeout per reply awaited (much less when Redis is healthy); returns at once
 * while a reconnect is not due. `n` may be 0 (entries NULL): then it only does the pending
 * deletions, if any, so a runner may call it when idle to finish them sooner. The entries are
 * borrowed. NULL `c` is a no-op.
 */
void cs_redis_writer_put(cs_redis_writer *c, const cs_redis_writer_entry *entries, size_t n);

#endif
