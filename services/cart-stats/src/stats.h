/*
 * stats.h: the cart-stats service (docs/internals/stats.md): the consumer of carts.changes.>, its
 * PostgreSQL minute rows (pgstore.c), its live Redis buckets (live.c) and the HTTP API (api.c).
 *
 * Threads: the main thread runs the libuv loop (HTTP, signals); the consumer runs on a thread of
 * its own (consumer.c), and every nats.c call that blocks stays there; a request for figures
 * reads Redis on libuv's thread pool (uv_queue_work), never on the loop.
 */
#ifndef ST_STATS_H
#define ST_STATS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <h2o.h>
#include <libpq-fe.h>
#include <nats/nats.h>

#include "cartshard/config.h"
#include "cartshard/metrics.h"
#include "stats_core.h"

struct redisContext;

/* The durable consumer all replicas share on CARTS_CHANGES. */
#define ST_CONSUMER "cart-stats"
/* Minutes the live buckets, the dedup ids and the minute rows are kept: the longest window and an
 * hour more. */
#define ST_RETAIN_MINUTES 1500
/* A notice of a minute older than this many minutes before now counts in no window, and its copy
 * could outlive the dedup ids: it is acknowledged uncounted ("stale"). Less than ST_RETAIN_MINUTES,
 * so an id outlives the time a copy of its notice is counted. */
#define ST_STALE_MINUTES 1470
/* The PostgreSQL advisory lock a rebuild holds (one rebuild at a time). */
#define ST_REBUILD_LOCK 0x53544154

/* The Redis keys (docs/reference/storage.md, Statistics keys). */
#define ST_KEY_READY   "stats:ready"
#define ST_KEY_PATTERN "stats:*"

/* lua/count.lua and dashboard/index.html, embedded at build time (CMakeLists.txt). */
extern const char st_count_lua[];
extern const char st_dashboard_html[];

/* The process: what the threads share. */
typedef struct st_service {
    /** The settings; borrowed from main for the process's life. */
    const cart_config *cfg;
    /** The metrics registry and its series (registered by main). */
    cart_metrics *metrics;
    cart_metric *m_counted, *m_duplicate, *m_malformed, *m_stale;
    cart_metric *m_pending, *m_flush_age, *m_rebuilds, *m_batches;
    cart_metric *m_pg_errors, *m_redis_errors, *m_nats_errors;
    /** cartshard_http_requests_total and cartshard_http_request_duration_seconds{route,status},
     * as the gateway has them. */
    cart_metric_family *m_requests, *m_latency;
    /** cartshard_stats_figure{window, figure}: per window (5m, 1h, 24h), the counters, then
     * active_carts; refreshed by the consumer. */
    cart_metric *m_figure[3][ST_NCOUNTERS + 1];
    /** The NATS connection (the consumer's); owned by main. */
    natsConnection *nc;
    /** Set by main to stop the consumer; read by it between batches. */
    atomic_bool stopping;
    /** Draining: /readyz answers 503. */
    atomic_bool draining;
    /** The last time (ms) everything the consumer had counted was durable in PostgreSQL. */
    atomic_llong flushed_at_ms;
    /** Health of the dependencies as the consumer last saw them, for /readyz. */
    atomic_bool pg_ok, redis_ok;
    /** The consumer thread. */
    pthread_t thread;
    bool thread_started;
} st_service;

/* --- live.c: the Redis buckets --- */

/* A blocking Redis connection with the count script loaded. Caller-owned. */
typedef struct st_live {
    struct redisContext *ctx; /* NULL while not connected */
    char sha[41];             /* SHA-1 of the count script on this connection */
    const cart_config *cfg;   /* borrowed */
} st_live;

/* How a Redis operation ended. */
typedef enum st_live_result {
    ST_LIVE_OK = 0, /* done */
    ST_LIVE_LOST,   /* the marker is missing: Redis lost the figures (or a rebuild runs) */
    ST_LIVE_DOWN    /* the connection failed or Redis refused: reconnect and retry */
} st_live_result;

/* Connects (handshake, SCRIPT LOAD) if not connected. ST_LIVE_OK or ST_LIVE_DOWN with `err`. */
st_live_result st_live_connect(st_live *l, char *err, size_t errlen);

/* Drops the connection; the next call reconnects. Safe when not connected. */
void st_live_close(st_live *l);

/* Counts notices v[0..n) (pipelined count.lua). outcome[i]: 1 counted, 0 duplicate. ST_LIVE_LOST
 * when the marker is missing (nothing was counted by the calls that saw it: count again after a
 * rebuild, the script's dedup makes that safe), ST_LIVE_DOWN on a connection failure. */
st_live_result st_live_count(st_live *l, const st_notice *const *v, size_t n, int *outcome);

/* Reads a window's figures at now_ms into *f. ST_LIVE_LOST while the marker is missing. */
st_live_result st_live_figures(st_live *l, int64_t now_ms, int minutes, st_figures *f);

/* Reads a window's units per sku, summed, into a malloc'd *v of *n entries (unsorted; the caller
 * frees it). ST_LIVE_LOST while the marker is missing. */
st_live_result st_live_top(st_live *l, int64_t now_ms, int minutes, st_sku_units **v, size_t *n);

/* 1 when the marker is there, 0 when not, -1 on a connection failure. */
int st_live_has_marker(st_live *l);

/* --- pgstore.c: the minute rows --- */

/* Prepares a new session for st_pg_count (its statement, planned once). 0, or -1 with `err`. */
int st_pg_prepare(PGconn *pg, char *err, size_t errlen);

/* Counts notices v[0..n) (distinct event ids) in one statement: their ids into stats_seen, and
 * the counts of those not there before into the minute rows; fresh[i] says whether v[i] was
 * counted now (false: counted before, a duplicate), minute[i] the minute its id was first counted
 * in (a copy's applied_at may differ; the live dedup looks there). 0, or -1 with PostgreSQL's
 * error in `err` (nothing was written). */
int st_pg_count(PGconn *pg, const st_notice *const *v, size_t n, bool *fresh, int64_t *minute, char *err,
                size_t errlen);

/* Deletes rows and dedup ids of minutes before `minute`. 0 or -1 with `err`. */
int st_pg_prune(PGconn *pg, int64_t minute, char *err, size_t errlen);

/*
 * Refills Redis from the minute rows of the last ST_RETAIN_MINUTES before now_ms, under the
 * rebuild lock: removes the marker and every stats key, writes the buckets and dedup ids from one
 * snapshot, then sets the marker. `force` false: does nothing when the marker is there once the
 * lock is held (another replica rebuilt). 0, or -1 with the reason in `err`; the marker stays
 * absent after a failure, so counting waits for the next rebuild.
 */
int st_rebuild(PGconn *pg, st_live *l, int64_t now_ms, bool force, char *err, size_t errlen);

/* --- consumer.c --- */

/* Starts the consumer thread. 0, or -1. */
int st_consumer_start(st_service *s);

/* Asks the consumer to finish its batch (counted, acknowledged) and joins it. */
void st_consumer_stop(st_service *s);

/* --- api.c --- */

/* Sets the service the handler serves; `s` borrowed for the process's life. */
void st_api_init(st_service *s);

/* Releases the API's Redis connection (after the loop stopped). */
void st_api_cleanup(void);

/* The size of the handler cart_http_server_init allocates, and binding it to the service. */
size_t st_api_handler_size(void);
void st_api_bind(h2o_handler_t *handler, st_service *s);

/* The handler of every request on the stats port (cart_http_fn). */
int st_api_on_req(h2o_handler_t *self, h2o_req_t *req);

#endif
