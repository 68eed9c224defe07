/*
 * gateway.h: the cart-gateway's threads.
 *
 * Each thread runs its own libuv loop with its own h2o context and listening socket
 * (SO_REUSEPORT spreads connections), its own JetStream context, reply subscription
 * (CART_REPLY_PREFIX.<gateway-id>.<thread>) and shard read connections. Nothing on a loop thread
 * blocks: JetStream acks and worker replies arrive on nats.c's threads and are handed to the loop
 * through a mutex-protected inbox and a uv_async_t.
 *
 * main.c sees this header only; the thread's files (server.c, front.c, writes.c...) share
 * internal.h, which says which file owns what.
 */
#ifndef GW_GATEWAY_H
#define GW_GATEWAY_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <nats/nats.h>
#include <uv.h>

#include "cartshard/config.h"
#include "cartshard/event.h"
#include "cartshard/http.h"
#include "cartshard/metrics.h"
#include "keyring.h"
#include "pgread.h"
#include "ratelimit.h"
#include "redis.h"

typedef struct gw_write gw_write;
typedef struct gw_note gw_note;

/* What the whole process shares. */
typedef struct gw_app {
    const cart_config *cfg;
    natsConnection *nc; /* thread-safe; owned by main */
    /* The writes that wait for their commit go out on this one, each at once
     * (CART_BUS_SEND_AT_ONCE): a millisecond less on each of them; their replies come back on it
     * too (the threads' reply subscriptions). Owned by main. */
    natsConnection *nc_sync;
    cart_metrics *metrics; /* owned by main */
    SSL_CTX *tls;          /* GATEWAY_TLS_CERT/KEY loaded, or NULL for plain HTTP; owned by main */
    gw_keyring *keyring;   /* AUTH_JWKS_FILE's keys, or NULL when it is unset; owned by main */
    cart_metric_family *m_requests, *m_latency;
    cart_metric *m_publish_errors;
    cart_metric *m_publish_unsure; /* "duplicate, sequence 0" answers, published again */
    cart_metric *m_cache_hits, *m_cache_misses, *m_cache_corrupt, *m_cache_errors, *m_cache_fill_errors;
    cart_metric *m_rate_limited, *m_rate_local, *m_auth_failures;
    cart_metric *m_redis_errors, *m_nats_errors, *m_pg_errors; /* dependency_errors by dependency */
    atomic_bool redis_ok;                                      /* kept up to date by main's health thread */
    atomic_bool stopping;
} gw_app;

#define GW_WRITE_BUCKETS 4096

/* The writes in flight on one thread (waiting for JetStream's ack and the worker's reply), by
 * event_id. Loop thread only. */
typedef struct gw_write_table {
    gw_write *buckets[GW_WRITE_BUCKETS]; /* hash chains through gw_write.next */
    int count;                           /* writes in the table */
} gw_write_table;

/* Slots of gw_thread.observed: routes times the statuses each answers with, and then some. */
#define GW_OBSERVED_SLOTS 64

/* One loop thread. Set up and torn down by main's thread (gw_thread_start, gw_thread_stop);
 * between the two, only the loop thread touches it, but for the inbox (inbox.c). */
typedef struct gw_thread {
    gw_app *app;                          /* what the process shares; main sets it */
    int index;                            /* 0..GATEWAY_THREADS-1; main sets it */
    pthread_t thread;                     /* the loop thread */
    uv_loop_t loop;                       /* its libuv loop */
    cart_http_server http;                /* its listener and h2o context */
    jsCtx *js;                            /* on app->nc */
    jsCtx *js_sync;                       /* on app->nc_sync */
    natsSubscription *reply_sub;          /* the workers' replies, on app->nc_sync */
    char reply_subject[CART_ID_MAX + 64]; /* CART_REPLY_PREFIX.<gateway-id>.<index> */
    gw_pg **shards;                       /* one read connection per shard */
    gw_redis *redis;                      /* the cache and the shared rate limit */
    gw_local_limiter *limiter;            /* when Redis cannot answer */
    gw_jwks *jwks;                        /* the JWKS this thread verifies with: its own reference,
                                           * taken by gw_keyring_current; NULL before the first */
    uint64_t jwks_gen;                    /* the keyring's generation of jwks */
    pthread_mutex_t inbox_mu;             /* guards inbox: nats.c's threads push, the loop takes */
    gw_note *inbox;                       /* notes from nats.c's threads, newest first */
    uv_async_t wake;                      /* wakes the loop for the inbox, and for the drain */
    gw_write_table writes;                /* the writes in flight */
    uint64_t publishes;                   /* writes published so far: the last Cart-Publish-Id */
    uv_timer_t drain_timer;               /* ticks while draining */
    bool draining;                        /* the drain has begun */
    int64_t drain_started_ms;             /* when it began (monotonic) */
    int64_t drain_deadline_ms;            /* when the loop stops at the latest (monotonic) */
    bool started;                         /* the thread runs (gw_thread_start succeeded) */
    /* The request metrics' series by route and status, as last looked up (loop thread only). */
    struct gw_observed {
        const char *route;               /* the route's name (a string constant), or NULL: empty */
        int status;                      /* the HTTP status */
        cart_metric *requests, *latency; /* its series in the two families */
    } observed[GW_OBSERVED_SLOTS];
} gw_thread;

/* Starts thread `t` (already zeroed with app and index set). 0 or -1 (logged). */
int gw_thread_start(gw_thread *t);

/* Asks the thread to stop accepting, finish its requests in flight (at most the sync timeout
 * plus a second) and exit; then joins it. */
void gw_thread_stop(gw_thread *t);

#endif
