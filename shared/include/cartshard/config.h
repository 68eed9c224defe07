/*
 * config.h: settings from environment variables, every one validated.
 *
 * A bad value stops start-up with a message that names the variable and says what was expected,
 * e.g. "CART_PARTITIONS: expected an integer from 1 to 65536, got \"abc\"". Unset variables take
 * their documented defaults (README "Configuration"). The environment is read through a lookup
 * function so that tests can feed any set of variables.
 */
#ifndef CARTSHARD_CONFIG_H
#define CARTSHARD_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cartshard/log.h"
#include "cartshard/status.h"

/* Which process is loading: decides which variables are read and checked. */
typedef enum cart_config_role {
    CART_ROLE_GATEWAY = 1, /* cart-gateway */
    CART_ROLE_STORE,       /* cart-store (worker, migrate) */
    CART_ROLE_STATS,       /* cart-stats (service, rebuild) */
} cart_config_role;

#define CART_CONFIG_MAX_SHARDS  64
#define CART_CONFIG_MAX_ORIGINS 64 /* most origins in CORS_ALLOWED_ORIGINS */

/* Looks a variable up; returns NULL when unset. The result must stay valid until
 * cart_config_load returns (getenv's does). */
typedef const char *(*cart_env_fn)(const char *name, void *ud);

typedef struct cart_config {
    /* --- read by both roles --- */
    /** NATS_URL, default "nats://127.0.0.1:4222"; comma-separated URLs allowed (a cluster). */
    char *nats_url;
    /** REDIS_URL, default "redis://127.0.0.1:6380"; form redis://[:password@]host[:port][/db]. */
    char *redis_url;
    /** Parsed from redis_url. */
    char *redis_host;
    int redis_port;
    char *redis_password; /* NULL when none; from REDIS_URL or REDIS_PASSWORD_FILE (never both) */
    int redis_db;
    /** SHARD_DSNS: comma-separated libpq connection strings (URI or key=value), in shard order. */
    char *shard_dsns[CART_CONFIG_MAX_SHARDS];
    uint32_t nshards;
    /** CART_PARTITIONS, default 32, 1..65536, and >= the number of shards. */
    uint32_t partitions;
    /** LOG_LEVEL: debug|info|warn|error, default info. */
    cart_log_level log_level;
    /** CART_MAX_QUANTITY, default 999, 1..1000000: the largest quantity of one line. */
    int32_t max_quantity;
    /** CART_MAX_LINES, default 100, 1..10000: the most distinct lines in one cart. */
    uint32_t max_lines;
    /** CART_STREAM_REPLICAS, default 1, 1..5: replicas of the CARTS streams when created. */
    int stream_replicas;
    /** CART_CACHE_TTL, default 3600, 1..2592000 (30 days): seconds a Redis cache entry lives after
     * its last write. Read by both roles, so a gateway that fills the cache agrees with the stores. */
    int cache_ttl_s;

    /* --- gateway --- */
    /** GATEWAY_HOST, default "0.0.0.0": the address to listen on. */
    char *gateway_host;
    /** GATEWAY_PORT, default 8080, 1..65535. */
    int gateway_port;
    /** GATEWAY_THREADS, default the number of online CPUs, 1..256. */
    int gateway_threads;
    /** CART_SYNC_TIMEOUT_MS, default 2000, 0..60000: how long a write waits for the commit. */
    int sync_timeout_ms;
    /** CART_MAX_BODY_BYTES, default 16384, 256..1048576. */
    size_t max_body_bytes;
    /** RATE_LIMIT_RPS, default 100, 0..1000000 (0 turns rate limiting off). */
    int rate_limit_rps;
    /** RATE_LIMIT_BURST, default 200, 1..10000000. */
    int rate_limit_burst;
    /** AUTH_JWT_SECRET: the HS256 key, at least 32 bytes; NULL when unset or empty. Auth is on
     * when this or auth_jwks_file is set. */
    char *auth_jwt_secret;
    /** AUTH_JWKS_FILE: the path of a JWKS whose keys verify RS256 and ES256 tokens; NULL when
     * unset or empty. Only named here: the gateway reads it at start-up and when it changes. */
    char *auth_jwks_file;
    /** AUTH_ISSUER, AUTH_AUDIENCE: what a token's "iss" must be and its "aud" must be or hold;
     * NULL when unset or empty (not checked). Up to 1024 bytes, no control characters; only with
     * auth on. */
    char *auth_issuer;
    char *auth_audience;
    /** GATEWAY_ID, default "<hostname>-<pid>": names this gateway's reply subject. */
    char *gateway_id;
    /** GATEWAY_TLS_CERT and GATEWAY_TLS_KEY: PEM files (certificate chain, private key). Both
     * set: the gateway speaks TLS only, with HTTP/2 by ALPN; both unset: plain HTTP (HTTP/1.1,
     * and HTTP/2 with prior knowledge). One without the other is an error. */
    char *gateway_tls_cert;
    char *gateway_tls_key;
    /** GATEWAY_MAX_HEADER_BYTES, default 8192, 1024..65536: the longest request header field
     * (name and value); all the fields of a request together may have four times as many bytes.
     * Over either: 431. */
    size_t max_header_bytes;
    /** CORS_ALLOWED_ORIGINS: comma-separated exact origins (scheme://host[:port], http or https;
     * scheme and host stored in lower case) that browsers may call the API from; none (unset or
     * empty) turns CORS off. */
    char *cors_origins[CART_CONFIG_MAX_ORIGINS];
    uint32_t ncors_origins;

    /* --- cart-store --- */
    /** CART_STORE_ADMIN_HOST, default "0.0.0.0". */
    char *store_admin_host;
    /** CART_STORE_ADMIN_PORT, default 9101, 1..65535: /healthz, /readyz, /metrics. */
    int store_admin_port;
    /** CART_STORE_BATCH, default 256, 1..10000: most events applied in one transaction. */
    int store_batch;
    /** CART_STORE_LINGER_US, default 1000, 0..100000 (0: never): how long a busy runner waits for
     * more events before applying a batch of fewer than CS_LINGER_BELOW. */
    int store_linger_us;
    /** CART_STORE_ACK_EVERY, default 64, 1..256: a partition's committed events are acknowledged
     * (one AckAll for the run) once this many wait for their ack... */
    int store_ack_every;
    /** CART_STORE_ACK_DELAY_MS, default 100, 0..5000 (0: after every batch): ...or once the oldest
     * of them committed this long ago, or when the partition is given up. */
    int64_t store_ack_delay_ms;
    /** CART_STORE_ID, default "<hostname>-<pid>": names the worker in logs and locks. */
    char *store_id;
    /** CART_IDLE_TTL, default "30d": carts untouched this long expire. Accepts a number of
     * seconds or a number with s, m, h or d; at least 60 s. */
    int64_t idle_ttl_ms;
    /** CART_EXPIRY_INTERVAL_MS, default 60000, 100..86400000: how often a worker looks for idle
     * carts to expire (and prunes old dedup rows). */
    int64_t expiry_interval_ms;
    /** CART_STORE_STALL_MS, default 10000, 1000..3600000: an owned partition whose subject holds
     * events beyond its committed offset, and whose offset has not moved for this long, is
     * stalled: the worker logs it, counts it and restarts it from its committed offset. */
    int64_t store_stall_ms;
    /** MIGRATE_LOCK_TIMEOUT_MS, default 5000, 1..600000: `cart-store migrate` gives up on a lock
     * it waited this long for (lock_timeout), rather than stall the shard's traffic queued
     * behind its request; the migration then changes nothing and can be run again. */
    int migrate_lock_timeout_ms;
    /** MIGRATE_STATEMENT_TIMEOUT_MS, default 300000, 0..86400000 (0: no limit): `cart-store
     * migrate` cancels a statement that runs this long (statement_timeout). */
    int migrate_statement_timeout_ms;

    /* --- cart-stats --- */
    /** CART_STATS_HOST, default "0.0.0.0". */
    char *stats_host;
    /** CART_STATS_PORT, default 9201, 1..65535: /v1/stats, /dashboard, /healthz, /readyz, /metrics. */
    int stats_port;
    /** STATS_DSN: the libpq connection string of the minute rows; default the first of SHARD_DSNS. */
    char *stats_dsn;
    /** CART_STATS_ID, default "<hostname>-<pid>": names the replica in logs. */
    char *stats_id;
    /** CART_STATS_BATCH, default 256, 1..10000: most notices counted in one transaction. */
    int stats_batch;
    /** CART_STATS_LINGER_MS, default 100, 0..5000: how long a fetch waits for a full batch
     * (0: it takes what is there and waits only when nothing is). */
    int stats_linger_ms;
} cart_config;

/*
 * Fills *cfg for `role` from the variables that `env` returns (pass cart_env_getenv for the
 * process environment). On success the caller owns *cfg and releases it with
 * cart_config_cleanup. On CART_ERR_INVALID, `err` (of `errlen` bytes) holds one line naming the
 * variable and what was expected, and *cfg holds nothing to release. CART_ERR_NOMEM when out of
 * memory.
 */
cart_status cart_config_load(cart_config *cfg, cart_config_role role, cart_env_fn env, void *ud, char *err,
                             size_t errlen);

/* Releases what cart_config_load allocated; safe on a zeroed struct and twice. */
void cart_config_cleanup(cart_config *cfg);

/* A cart_env_fn over the process environment (getenv); `ud` is unused. */
const char *cart_env_getenv(const char *name, void *ud);

#endif
