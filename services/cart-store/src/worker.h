/*
 * worker.h: the cart-store worker process: one shard runner thread per PostgreSQL shard.
 *
 * Partition ownership: a runner owns a partition while its shard session holds the advisory
 * lock (CS_LOCK_NS_PARTITION, partition). Changes are applied on that same session, so a runner
 * that lost its session (and with it the lock) can no longer commit anything: fencing comes with
 * the lock. Each owned partition has its own JetStream push consumer that starts right after the
 * partition's committed offset (table partition_offsets, written in the same transaction as the
 * changes), so a new owner replays exactly what its predecessor did not commit, in order.
 * The live workers (the sessions holding a shard's group lock) share the partitions out in
 * contiguous runs by rank, so that a shard has as few writers as the counts allow
 * (cs_ownership_rebalance).
 */
#ifndef CS_WORKER_H
#define CS_WORKER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <libpq-fe.h>
#include <nats/nats.h>

#include "cartshard/bus.h"
#include "cartshard/cart.h"
#include "cartshard/config.h"
#include "cartshard/metrics.h"

#define CS_LOCK_NS_PARTITION 0x43415254 /* 'CART': one lock per partition */
#define CS_LOCK_NS_GROUP     0x47525550 /* 'GRUP': shared by every live worker of the shard */

/* Batches of fewer events than this wait CART_STORE_LINGER_US for more when the runner is busy. */
#define CS_LINGER_BELOW 8

typedef struct cs_shard cs_shard;

/* The process-wide state every runner shares. */
typedef struct cs_worker {
    /** Settings; owned by main. */
    const cart_config *cfg;
    /** The NATS connection (thread-safe); owned by main. */
    natsConnection *nc;
    /** The replies to waiting gateways go out on this one, each at once (CART_BUS_SEND_AT_ONCE):
     * a millisecond less for every write that waits for its commit. Owned by main. */
    natsConnection *nc_replies;
    /** One runner per shard; owned here. */
    cs_shard *shards;
    uint32_t nshards;
    /** Set once to ask every runner to finish its batch and stop. */
    atomic_bool stopping;
    /** Bumped when the bus may have lost deliveries (a reconnect, a sequence mismatch, missed
     * heartbeats): every runner then restarts its partitions from their committed offsets. */
    atomic_uint resync;
    /** Lets the bus listener wake the runners (for a resync) while `wakeable`: set once they run,
     * cleared before they stop. wake_mu is initialised by main, before the listener is set. */
    pthread_mutex_t wake_mu;
    bool wakeable;
    /** Metrics; owned by main. */
    cart_metrics *metrics;
    cart_metric *m_applied, *m_duplicates, *m_dlq, *m_rejected, *m_batches, *m_batch_seconds, *m_sessions;
    cart_metric *m_key_reused;
    cart_metric *m_owned, *m_expired, *m_resyncs, *m_stalls, *m_redone;
    cart_metric *m_acks;                      /* acks sent for committed events (one AckAll covers a run) */
    cart_metric *m_pg_errors, *m_nats_errors; /* cartshard_dependency_errors_total by dependency */
    cart_metric_family *m_lag;                /* by partition */
} cs_worker;

/* Starts a runner thread for every shard. 0, or -1 (logged). */
int cs_worker_start(cs_worker *w);

/* Asks the runners to stop, wakes them and joins them: each finishes its batch, commits,
 * acknowledges, releases its partitions and closes its session. */
void cs_worker_stop(cs_worker *w);

/* The bus listener (cart_bus_set_listener, `ud` the worker): asks for a resync when deliveries
 * may have been lost. */
void cs_worker_on_bus_event(cart_bus_event ev, natsStatus err, void *ud);

/* True once every runner has opened a shard session at least once: the worker has started, and
 * its configuration reaches every shard. It stays true when a session is lost later (for
 * /readyz, which a shared dependency going down does not make 503). */
bool cs_worker_started(cs_worker *w);

/* True while runner `shard` (0..nshards-1) has a working shard session (for /readyz's report). */
bool cs_worker_shard_ok(cs_worker *w, uint32_t shard);

#endif
