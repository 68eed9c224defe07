#define _POSIX_C_SOURCE 200809L
#include <check.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cartshard/config.h"

/* A fake environment: a small table of variables, and a record of every name looked up. */
#define MAX_VARS    16
#define MAX_LOOKUPS 64

typedef struct fake_env {
    const char *names[MAX_VARS];
    const char *values[MAX_VARS];
    int n;
    const char *looked_up[MAX_LOOKUPS];
    int nlooked;
} fake_env;

static const char *fake_lookup(const char *name, void *ud)
{
    fake_env *e = ud;
    if (e->nlooked < MAX_LOOKUPS)
        e->looked_up[e->nlooked++] = name;
    for (int i = 0; i < e->n; i++) {
        if (strcmp(e->names[i], name) == 0)
            return e->values[i];
    }
    return NULL;
}

static int was_looked_up(const fake_env *e, const char *name)
{
    for (int i = 0; i < e->nlooked; i++) {
        if (strcmp(e->looked_up[i], name) == 0)
            return 1;
    }
    return 0;
}

/* Fills e from NAME, VALUE pairs ended by NULL. */
static void env_set(fake_env *e, va_list ap)
{
    const char *name;
    memset(e, 0, sizeof *e);
    while ((name = va_arg(ap, const char *)) != NULL) {
        ck_assert_int_lt(e->n, MAX_VARS);
        e->names[e->n] = name;
        e->values[e->n++] = va_arg(ap, const char *);
    }
}

static char err[512];

/* Loads with the given NAME, VALUE pairs and expects success. */
static void load_ok(cart_config *cfg, cart_config_role role, ...)
{
    fake_env e;
    va_list ap;
    va_start(ap, role);
    env_set(&e, ap);
    va_end(ap);
    cart_status st = cart_config_load(cfg, role, fake_lookup, &e, err, sizeof err);
    if (st != CART_OK)
        ck_abort_msg("expected success, got %d: %s", st, err);
    ck_assert_str_eq(err, "");
}

/* Loads with the given pairs and expects CART_ERR_INVALID with an error that starts with
 * `prefix`; returns the message (in the static buffer). */
static const char *load_bad(cart_config_role role, const char *prefix, ...)
{
    fake_env e;
    cart_config cfg;
    va_list ap;
    va_start(ap, prefix);
    env_set(&e, ap);
    va_end(ap);
    memset(&cfg, 0xa5, sizeof cfg);
    cart_status st = cart_config_load(&cfg, role, fake_lookup, &e, err, sizeof err);
    if (st != CART_ERR_INVALID)
        ck_abort_msg("expected CART_ERR_INVALID for %s=\"%s\", got %d", e.n ? e.names[0] : "-", e.n ? e.values[0] : "-",
                     st);
    if (strncmp(err, prefix, strlen(prefix)) != 0)
        ck_abort_msg("error \"%s\" does not start with \"%s\"", err, prefix);
    ck_assert_ptr_null(strchr(err, '\n'));
    /* Nothing is left to release. */
    ck_assert_ptr_null(cfg.nats_url);
    ck_assert_ptr_null(cfg.shard_dsns[0]);
    ck_assert_uint_eq(cfg.nshards, 0);
    return err;
}

START_TEST(test_gateway_defaults)
{
    cart_config c;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    load_ok(&c, CART_ROLE_GATEWAY, NULL);
    ck_assert_str_eq(c.nats_url, "nats://127.0.0.1:4222");
    ck_assert_str_eq(c.redis_url, "redis://127.0.0.1:6380");
    ck_assert_str_eq(c.redis_host, "127.0.0.1");
    ck_assert_int_eq(c.redis_port, 6380);
    ck_assert_ptr_null(c.redis_password);
    ck_assert_int_eq(c.redis_db, 0);
    ck_assert_uint_eq(c.nshards, 2);
    ck_assert_str_eq(c.shard_dsns[0], "postgresql://postgres@127.0.0.1:5433/cartshard");
    ck_assert_str_eq(c.shard_dsns[1], "postgresql://postgres@127.0.0.1:5434/cartshard");
    ck_assert_ptr_null(c.shard_dsns[2]);
    ck_assert_uint_eq(c.partitions, 32);
    ck_assert_int_eq(c.log_level, CART_LOG_INFO);
    ck_assert_int_eq(c.max_quantity, 999);
    ck_assert_uint_eq(c.max_lines, 100);
    ck_assert_int_eq(c.stream_replicas, 1);
    ck_assert_int_eq(c.cache_ttl_s, 3600);
    ck_assert_str_eq(c.gateway_host, "0.0.0.0");
    ck_assert_int_eq(c.gateway_port, 8080);
    ck_assert_int_eq(c.gateway_threads, ncpu < 1 ? 1 : ncpu > 256 ? 256 : (int)ncpu);
    ck_assert_int_eq(c.sync_timeout_ms, 2000);
    ck_assert_uint_eq(c.max_body_bytes, 16384);
    ck_assert_uint_eq(c.max_header_bytes, 8192);
    ck_assert_uint_eq(c.ncors_origins, 0);
    ck_assert_int_eq(c.rate_limit_rps, 100);
    ck_assert_int_eq(c.rate_limit_burst, 200);
    ck_assert_ptr_null(c.auth_jwt_secret);
    ck_assert_ptr_null(c.auth_jwks_file);
    ck_assert_ptr_null(c.auth_issuer);
    ck_assert_ptr_null(c.auth_audience);
    ck_assert_ptr_nonnull(c.gateway_id);
    /* Store settings are not read for the gateway. */
    ck_assert_ptr_null(c.store_admin_host);
    ck_assert_ptr_null(c.store_id);
    ck_assert_int_eq(c.store_admin_port, 0);
    ck_assert_int_eq(c.idle_ttl_ms, 0);
    ck_assert_int_eq(c.expiry_interval_ms, 0);
    ck_assert_int_eq(c.store_stall_ms, 0);
    ck_assert_int_eq(c.store_ack_every, 0);
    ck_assert_int_eq(c.store_ack_delay_ms, 0);
    cart_config_cleanup(&c);
    cart_config_cleanup(&c); /* twice is harmless */
}
END_TEST

START_TEST(test_store_defaults)
{
    cart_config c;
    load_ok(&c, CART_ROLE_STORE, NULL);
    ck_assert_str_eq(c.nats_url, "nats://127.0.0.1:4222");
    ck_assert_uint_eq(c.nshards, 2);
    ck_assert_str_eq(c.store_admin_host, "0.0.0.0");
    ck_assert_int_eq(c.store_admin_port, 9101);
    ck_assert_int_eq(c.store_batch, 256);
    ck_assert_int_eq(c.store_linger_us, 1000);
    ck_assert_int_eq(c.store_ack_every, 64);
    ck_assert_int_eq(c.store_ack_delay_ms, 100);
    ck_assert_ptr_nonnull(c.store_id);
    ck_assert_int_eq(c.idle_ttl_ms, 30LL * 86400 * 1000);
    ck_assert_int_eq(c.expiry_interval_ms, 60000);
    ck_assert_int_eq(c.store_stall_ms, 10000);
    ck_assert_int_eq(c.cache_ttl_s, 3600);
    ck_assert_ptr_null(c.gateway_host);
    ck_assert_ptr_null(c.gateway_id);
    ck_assert_int_eq(c.gateway_port, 0);
    ck_assert_int_eq(c.gateway_threads, 0);
    cart_config_cleanup(&c);
}
END_TEST

START_TEST(test_stats_settings)
{
    cart_config c;

    load_ok(&c, CART_ROLE_STATS, NULL);
    ck_assert_str_eq(c.stats_host, "0.0.0.0");
    ck_assert_int_eq(c.stats_port, 9201);
    ck_assert_int_eq(c.stats_batch, 256);
    ck_assert_int_eq(c.stats_linger_ms, 100);
    ck_assert_ptr_nonnull(c.stats_id);
    /* STATS_DSN defaults to the first shard. */
    ck_assert_str_eq(c.stats_dsn, c.shard_dsns[0]);
    ck_assert_ptr_null(c.store_admin_host);
    cart_config_cleanup(&c);
    load_ok(&c, CART_ROLE_STATS, "STATS_DSN", "postgresql://stats@db/stats", "CART_STATS_PORT", "19201",
            "CART_STATS_ID", "stats-1", "CART_STATS_LINGER_MS", "0", NULL);
    ck_assert_str_eq(c.stats_dsn, "postgresql://stats@db/stats");
    ck_assert_int_eq(c.stats_linger_ms, 0);
    ck_assert_int_eq(c.stats_port, 19201);
    ck_assert_str_eq(c.stats_id, "stats-1");
    cart_config_cleanup(&c);
    load_bad(CART_ROLE_STATS, "CART_STATS_PORT:", "CART_STATS_PORT", "0", NULL);
    load_bad(CART_ROLE_STATS, "CART_STATS_BATCH:", "CART_STATS_BATCH", "10001", NULL);
    load_bad(CART_ROLE_STATS, "CART_STATS_LINGER_MS:", "CART_STATS_LINGER_MS", "5001", NULL);
    load_bad(CART_ROLE_STATS, "CART_STATS_LINGER_MS:", "CART_STATS_LINGER_MS", "-1", NULL);
    load_bad(CART_ROLE_STATS, "CART_STATS_HOST:", "CART_STATS_HOST", "not a host!", NULL);
    load_bad(CART_ROLE_STATS, "CART_STATS_ID:", "CART_STATS_ID", "a b", NULL);
    load_bad(CART_ROLE_STATS, "STATS_DSN: not a libpq connection string", "STATS_DSN", "mysql://x", NULL);
    /* The other roles do not read them. */
    load_ok(&c, CART_ROLE_STORE, "CART_STATS_PORT", "0", NULL);
    ck_assert_ptr_null(c.stats_dsn);
    cart_config_cleanup(&c);
}
END_TEST

START_TEST(test_default_ids)
{
    cart_config c;
    char suffix[32];
    snprintf(suffix, sizeof suffix, "-%ld", (long)getpid());
    load_ok(&c, CART_ROLE_GATEWAY, NULL);
    size_t n = strlen(c.gateway_id), sl = strlen(suffix);
    ck_assert_uint_gt(n, sl);
    ck_assert_uint_le(n, 64);
    ck_assert_str_eq(c.gateway_id + n - sl, suffix);
    for (size_t i = 0; i < n; i++)
        ck_assert_ptr_nonnull(
            strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_", c.gateway_id[i]));
    cart_config_cleanup(&c);
    load_ok(&c, CART_ROLE_STORE, NULL);
    ck_assert_str_eq(c.store_id + strlen(c.store_id) - sl, suffix);
    cart_config_cleanup(&c);
}
END_TEST

START_TEST(test_role_specific_reading)
{
    fake_env e = {.names = {"CART_STORE_BATCH", "CART_IDLE_TTL", "CART_STORE_ID", "CART_STORE_ADMIN_PORT"},
                  .values = {"nope", "nope", "bad id", "0"},
                  .n = 4};
    cart_config c;
    /* Bad store settings do not stop a gateway, which never looks at them. */
    ck_assert_int_eq(cart_config_load(&c, CART_ROLE_GATEWAY, fake_lookup, &e, err, sizeof err), CART_OK);
    ck_assert(was_looked_up(&e, "GATEWAY_PORT"));
    ck_assert(was_looked_up(&e, "CART_PARTITIONS"));
    ck_assert(!was_looked_up(&e, "CART_STORE_BATCH"));
    ck_assert(!was_looked_up(&e, "CART_IDLE_TTL"));
    ck_assert(!was_looked_up(&e, "CART_STORE_ID"));
    ck_assert(!was_looked_up(&e, "CART_STORE_ADMIN_HOST"));
    cart_config_cleanup(&c);

    fake_env g = {.names = {"GATEWAY_PORT", "RATE_LIMIT_RPS", "AUTH_JWT_SECRET", "GATEWAY_ID"},
                  .values = {"x", "x", "short", "bad id"},
                  .n = 4};
    ck_assert_int_eq(cart_config_load(&c, CART_ROLE_STORE, fake_lookup, &g, err, sizeof err), CART_OK);
    ck_assert(was_looked_up(&g, "CART_STORE_BATCH"));
    ck_assert(was_looked_up(&g, "SHARD_DSNS"));
    ck_assert(!was_looked_up(&g, "GATEWAY_PORT"));
    ck_assert(!was_looked_up(&g, "GATEWAY_THREADS"));
    ck_assert(!was_looked_up(&g, "RATE_LIMIT_RPS"));
    ck_assert(!was_looked_up(&g, "AUTH_JWT_SECRET"));
    ck_assert(!was_looked_up(&g, "GATEWAY_ID"));
    cart_config_cleanup(&c);
}
END_TEST

START_TEST(test_exact_message)
{
    load_bad(CART_ROLE_GATEWAY, "CART_PARTITIONS: expected an integer from 1 to 65536, got \"abc\"", "CART_PARTITIONS",
             "abc", NULL);
    ck_assert_str_eq(err, "CART_PARTITIONS: expected an integer from 1 to 65536, got \"abc\"");
    /* Unprintable bytes are shown escaped, long values shortened. */
    load_bad(CART_ROLE_GATEWAY, "GATEWAY_PORT", "GATEWAY_PORT", "8\n0\"\x01", NULL);
    ck_assert_str_eq(err, "GATEWAY_PORT: expected an integer from 1 to 65535, got \"8\\x0a0\\\"\\x01\"");
    load_bad(CART_ROLE_GATEWAY, "GATEWAY_PORT", "GATEWAY_PORT",
             "1111111111222222222233333333334444444444555555555566666666667777777777", NULL);
    ck_assert_ptr_nonnull(strstr(err, "\"..."));
    ck_assert_uint_lt(strlen(err), 160);
}
END_TEST

START_TEST(test_cache_ttl)
{
    cart_config c;
    load_ok(&c, CART_ROLE_STORE, "CART_CACHE_TTL", "86400", NULL);
    ck_assert_int_eq(c.cache_ttl_s, 86400);
    cart_config_cleanup(&c);
    load_ok(&c, CART_ROLE_GATEWAY, "CART_CACHE_TTL", "60", NULL);
    ck_assert_int_eq(c.cache_ttl_s, 60);
    cart_config_cleanup(&c);
    /* Plain seconds only: the units CART_IDLE_TTL accepts are a natural mistake here. */
    load_bad(CART_ROLE_STORE, "CART_CACHE_TTL", "CART_CACHE_TTL", "1h", NULL);
    ck_assert_str_eq(err, "CART_CACHE_TTL: expected an integer from 1 to 2592000, got \"1h\"");
    load_bad(CART_ROLE_GATEWAY, "CART_CACHE_TTL", "CART_CACHE_TTL", "0", NULL);
    ck_assert_str_eq(err, "CART_CACHE_TTL: expected an integer from 1 to 2592000, got \"0\"");
}
END_TEST

/* Every integer variable: its role, range and default. */
static const struct int_var {
    const char *name;
    cart_config_role role;
    long long min, max;
} int_vars[] = {
    {"CART_PARTITIONS", CART_ROLE_GATEWAY, 1, 65536},
    {"CART_MAX_QUANTITY", CART_ROLE_STORE, 1, 1000000},
    {"CART_MAX_LINES", CART_ROLE_GATEWAY, 1, 10000},
    {"CART_STREAM_REPLICAS", CART_ROLE_STORE, 1, 5},
    {"GATEWAY_PORT", CART_ROLE_GATEWAY, 1, 65535},
    {"GATEWAY_THREADS", CART_ROLE_GATEWAY, 1, 256},
    {"CART_SYNC_TIMEOUT_MS", CART_ROLE_GATEWAY, 0, 60000},
    {"CART_MAX_BODY_BYTES", CART_ROLE_GATEWAY, 256, 1048576},
    {"GATEWAY_MAX_HEADER_BYTES", CART_ROLE_GATEWAY, 1024, 65536},
    {"RATE_LIMIT_RPS", CART_ROLE_GATEWAY, 0, 1000000},
    {"RATE_LIMIT_BURST", CART_ROLE_GATEWAY, 1, 10000000},
    {"CART_STORE_ADMIN_PORT", CART_ROLE_STORE, 1, 65535},
    {"CART_STORE_BATCH", CART_ROLE_STORE, 1, 10000},
    {"CART_STORE_LINGER_US", CART_ROLE_STORE, 0, 100000},
    {"CART_STORE_ACK_EVERY", CART_ROLE_STORE, 1, 256},
    {"CART_STORE_ACK_DELAY_MS", CART_ROLE_STORE, 0, 5000},
    {"CART_CACHE_TTL", CART_ROLE_STORE, 1, 2592000},
    {"CART_CACHE_TTL", CART_ROLE_GATEWAY, 1, 2592000},
    {"CART_EXPIRY_INTERVAL_MS", CART_ROLE_STORE, 100, 86400000},
    {"CART_STORE_STALL_MS", CART_ROLE_STORE, 1000, 3600000},
};

/* The value an integer variable ended up as. */
static long long int_field(const cart_config *c, const char *name)
{
    if (!strcmp(name, "CART_PARTITIONS"))
        return c->partitions;
    if (!strcmp(name, "CART_STORE_LINGER_US"))
        return c->store_linger_us;
    if (!strcmp(name, "CART_STORE_ACK_EVERY"))
        return c->store_ack_every;
    if (!strcmp(name, "CART_STORE_ACK_DELAY_MS"))
        return c->store_ack_delay_ms;
    if (!strcmp(name, "CART_MAX_QUANTITY"))
        return c->max_quantity;
    if (!strcmp(name, "CART_MAX_LINES"))
        return c->max_lines;
    if (!strcmp(name, "CART_STREAM_REPLICAS"))
        return c->stream_replicas;
    if (!strcmp(name, "GATEWAY_PORT"))
        return c->gateway_port;
    if (!strcmp(name, "GATEWAY_THREADS"))
        return c->gateway_threads;
    if (!strcmp(name, "CART_SYNC_TIMEOUT_MS"))
        return c->sync_timeout_ms;
    if (!strcmp(name, "CART_MAX_BODY_BYTES"))
        return (long long)c->max_body_bytes;
    if (!strcmp(name, "GATEWAY_MAX_HEADER_BYTES"))
        return (long long)c->max_header_bytes;
    if (!strcmp(name, "RATE_LIMIT_RPS"))
        return c->rate_limit_rps;
    if (!strcmp(name, "RATE_LIMIT_BURST"))
        return c->rate_limit_burst;
    if (!strcmp(name, "CART_STORE_ADMIN_PORT"))
        return c->store_admin_port;
    if (!strcmp(name, "CART_STORE_BATCH"))
        return c->store_batch;
    if (!strcmp(name, "CART_CACHE_TTL"))
        return c->cache_ttl_s;
    if (!strcmp(name, "CART_EXPIRY_INTERVAL_MS"))
        return c->expiry_interval_ms;
    if (!strcmp(name, "CART_STORE_STALL_MS"))
        return c->store_stall_ms;
    ck_abort_msg("unknown variable %s", name);
    return -1;
}

START_TEST(test_integers)
{
    static const char *const garbage[] = {"",
                                          "abc",
                                          " 5",
                                          "5 ",
                                          "5x",
                                          "0x10",
                                          "1.5",
                                          "1e3",
                                          "--1",
                                          "+-1",
                                          "\t7",
                                          "7\n",
                                          "١٢",
                                          "99999999999999999999",
                                          "-99999999999999999999"};
    const struct int_var *v = &int_vars[_i];
    char val[32], prefix[128];
    cart_config c;

    /* One shard, so that CART_PARTITIONS=1 is valid. */
    snprintf(prefix, sizeof prefix, "%s: expected an integer from %lld to %lld, got ", v->name, v->min, v->max);
    for (size_t g = 0; g < sizeof garbage / sizeof garbage[0]; g++)
        load_bad(v->role, prefix, v->name, garbage[g], "SHARD_DSNS", "host=a", NULL);
    snprintf(val, sizeof val, "%lld", v->min - 1);
    load_bad(v->role, prefix, v->name, val, "SHARD_DSNS", "host=a", NULL);
    snprintf(val, sizeof val, "%lld", v->max + 1);
    load_bad(v->role, prefix, v->name, val, "SHARD_DSNS", "host=a", NULL);

    /* The bounds themselves are accepted, and so is a leading plus sign. */
    snprintf(val, sizeof val, "%lld", v->min);
    load_ok(&c, v->role, v->name, val, "SHARD_DSNS", "host=a", NULL);
    ck_assert_int_eq(int_field(&c, v->name), v->min);
    cart_config_cleanup(&c);
    snprintf(val, sizeof val, "%lld", v->max);
    load_ok(&c, v->role, v->name, val, "SHARD_DSNS", "host=a", NULL);
    ck_assert_int_eq(int_field(&c, v->name), v->max);
    cart_config_cleanup(&c);
    snprintf(val, sizeof val, "+%lld", v->max);
    load_ok(&c, v->role, v->name, val, "SHARD_DSNS", "host=a", NULL);
    ck_assert_int_eq(int_field(&c, v->name), v->max);
    cart_config_cleanup(&c);
}
END_TEST

START_TEST(test_shard_dsns)
{
    cart_config c;
    load_ok(&c, CART_ROLE_STORE, "SHARD_DSNS", "host=a dbname=x", NULL);
    ck_assert_uint_eq(c.nshards, 1);
    ck_assert_str_eq(c.shard_dsns[0], "host=a dbname=x");
    cart_config_cleanup(&c);

    load_ok(&c, CART_ROLE_STORE, "SHARD_DSNS", " postgres://a/db , host=b ,postgresql:///c", NULL);
    ck_assert_uint_eq(c.nshards, 3);
    ck_assert_str_eq(c.shard_dsns[0], "postgres://a/db");
    ck_assert_str_eq(c.shard_dsns[1], "host=b");
    ck_assert_str_eq(c.shard_dsns[2], "postgresql:///c");
    cart_config_cleanup(&c);

    /* As many shards as partitions is fine; more is not, and both variables are named. */
    load_ok(&c, CART_ROLE_STORE, "SHARD_DSNS", "host=a,host=b,host=c", "CART_PARTITIONS", "3", NULL);
    ck_assert_uint_eq(c.nshards, 3);
    ck_assert_uint_eq(c.partitions, 3);
    cart_config_cleanup(&c);
    load_bad(CART_ROLE_STORE, "SHARD_DSNS: 3 shards need CART_PARTITIONS to be at least 3, but it is 2", "SHARD_DSNS",
             "host=a,host=b,host=c", "CART_PARTITIONS", "2", NULL);
    load_bad(CART_ROLE_GATEWAY, "SHARD_DSNS: 2 shards need CART_PARTITIONS", "CART_PARTITIONS", "1", NULL);

    load_bad(CART_ROLE_STORE, "SHARD_DSNS: expected comma-separated libpq connection strings, but entry 1 is empty",
             "SHARD_DSNS", "", NULL);
    load_bad(CART_ROLE_STORE, "SHARD_DSNS: expected comma-separated libpq connection strings, but entry 2 is empty",
             "SHARD_DSNS", "host=a,,host=b", NULL);
    load_bad(CART_ROLE_STORE, "SHARD_DSNS: expected comma-separated libpq connection strings, but entry 2 is empty",
             "SHARD_DSNS", "host=a, ", NULL);
    load_bad(CART_ROLE_STORE, "SHARD_DSNS: entry 1 is not a libpq connection string", "SHARD_DSNS", "justtext", NULL);
    load_bad(CART_ROLE_STORE, "SHARD_DSNS: entry 2 is not a libpq connection string", "SHARD_DSNS",
             "host=a,mysql://u:pw@h/db?x=1", NULL);
    /* A password in a DSN is never echoed. */
    load_bad(CART_ROLE_STORE, "SHARD_DSNS", "SHARD_DSNS", "postgresql://u:s3cret@h/db,,host=b", NULL);
    ck_assert_ptr_null(strstr(err, "s3cret"));

    /* At most 64 shards. */
    char many[65 * 8 + 1] = "";
    for (int i = 0; i < 64; i++)
        strcat(many, i ? ",host=h" : "host=h");
    load_ok(&c, CART_ROLE_STORE, "SHARD_DSNS", many, "CART_PARTITIONS", "64", NULL);
    ck_assert_uint_eq(c.nshards, 64);
    ck_assert_str_eq(c.shard_dsns[63], "host=h");
    cart_config_cleanup(&c);
    strcat(many, ",host=h");
    load_bad(CART_ROLE_STORE, "SHARD_DSNS: expected at most 64 comma-separated connection strings, got 65",
             "SHARD_DSNS", many, "CART_PARTITIONS", "100", NULL);
}
END_TEST

START_TEST(test_redis_url)
{
    cart_config c;
    load_ok(&c, CART_ROLE_GATEWAY, "REDIS_URL", "redis://:p%40ss%2Fw@cache.local:1234/5", NULL);
    ck_assert_str_eq(c.redis_url, "redis://:p%40ss%2Fw@cache.local:1234/5");
    ck_assert_str_eq(c.redis_host, "cache.local");
    ck_assert_int_eq(c.redis_port, 1234);
    ck_assert_str_eq(c.redis_password, "p@ss/w");
    ck_assert_int_eq(c.redis_db, 5);
    cart_config_cleanup(&c);

    load_ok(&c, CART_ROLE_GATEWAY, "REDIS_URL", "redis://localhost", NULL);
    ck_assert_str_eq(c.redis_host, "localhost");
    ck_assert_int_eq(c.redis_port, 6379);
    ck_assert_ptr_null(c.redis_password);
    ck_assert_int_eq(c.redis_db, 0);
    cart_config_cleanup(&c);

    load_ok(&c, CART_ROLE_GATEWAY, "REDIS_URL", "redis://:@[::1]:6380/", NULL);
    ck_assert_str_eq(c.redis_host, "::1");
    ck_assert_int_eq(c.redis_port, 6380);
    ck_assert_ptr_null(c.redis_password);
    ck_assert_int_eq(c.redis_db, 0);
    cart_config_cleanup(&c);

    load_ok(&c, CART_ROLE_STORE, "REDIS_URL", "redis://h:65535/65535", NULL);
    ck_assert_int_eq(c.redis_port, 65535);
    ck_assert_int_eq(c.redis_db, 65535);
    cart_config_cleanup(&c);

    static const char *const bad[] = {"",
                                      "rediss://h",
                                      "http://h:6379",
                                      "h:6379",
                                      "redis://",
                                      "redis://:6379",
                                      "redis://h:0",
                                      "redis://h:65536",
                                      "redis://h:abc",
                                      "redis://h:",
                                      "redis://h:-1",
                                      "redis://user:pw@h",
                                      "redis://h/x",
                                      "redis://h/65536",
                                      "redis://h/1/2",
                                      "redis://h?db=1",
                                      "redis://h#x",
                                      "redis://:p%zz@h",
                                      "redis://:p%4@h",
                                      "redis://:p%00@h",
                                      "redis://[::1",
                                      "redis://[::1]x",
                                      "redis://h h",
                                      "redis://h\n"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        load_bad(CART_ROLE_GATEWAY, "REDIS_URL: ", "REDIS_URL", bad[i], NULL);
    load_bad(CART_ROLE_GATEWAY, "REDIS_URL: expected redis://[:password@]host[:port][/db], got the scheme \"rediss\"",
             "REDIS_URL", "rediss://:hunter2@h", NULL);
    load_bad(CART_ROLE_STORE, "REDIS_URL", "REDIS_URL", "redis://:hunter2@h:99999", NULL);
    ck_assert_ptr_null(strstr(err, "hunter2"));
}
END_TEST

START_TEST(test_nats_url)
{
    cart_config c;
    static const char *const good[] = {
        "nats://a:4222,nats://b:4223", "tls://u:p@h:4222", "localhost:4222", "nats://h:4222/",
        "nats://[::1]:4222",           "nats://token@h"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        load_ok(&c, CART_ROLE_GATEWAY, "NATS_URL", good[i], NULL);
        ck_assert_str_eq(c.nats_url, good[i]);
        cart_config_cleanup(&c);
    }
    static const char *const bad[] = {"",          "nats://a,,nats://b", "nats://a,",  "http://h",
                                      "nats://",   "nats://h:99999",     "nats://h:x", "nats://h h",
                                      "nats://h/x"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        load_bad(CART_ROLE_STORE, "NATS_URL: expected nats://host[:port] URLs separated by commas", "NATS_URL", bad[i],
                 NULL);
    load_bad(CART_ROLE_STORE, "NATS_URL", "NATS_URL", "nats://u:topsecret@h:0", NULL);
    ck_assert_ptr_null(strstr(err, "topsecret"));
}
END_TEST

START_TEST(test_log_level)
{
    cart_config c;
    load_ok(&c, CART_ROLE_GATEWAY, "LOG_LEVEL", "DEBUG", NULL);
    ck_assert_int_eq(c.log_level, CART_LOG_DEBUG);
    cart_config_cleanup(&c);
    load_ok(&c, CART_ROLE_STORE, "LOG_LEVEL", "error", NULL);
    ck_assert_int_eq(c.log_level, CART_LOG_ERROR);
    cart_config_cleanup(&c);
    load_bad(CART_ROLE_GATEWAY, "LOG_LEVEL: expected one of debug, info, warn, error, got \"verbose\"", "LOG_LEVEL",
             "verbose", NULL);
    load_bad(CART_ROLE_GATEWAY, "LOG_LEVEL: expected one of", "LOG_LEVEL", "", NULL);
}
END_TEST

START_TEST(test_idle_ttl)
{
    static const struct {
        const char *text;
        long long ms;
    } good[] = {{"30d", 30LL * 86400000},
                {"12h", 12LL * 3600000},
                {"90m", 90LL * 60000},
                {"3600s", 3600000},
                {"3600", 3600000},
                {"60", 60000},
                {"1m", 60000},
                {"1H", 3600000},
                {"3650d", 3650LL * 86400000},
                {"0060s", 60000}};
    cart_config c;
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        load_ok(&c, CART_ROLE_STORE, "CART_IDLE_TTL", good[i].text, NULL);
        ck_assert_int_eq(c.idle_ttl_ms, good[i].ms);
        cart_config_cleanup(&c);
    }
    static const char *const bad[] = {
        "59",     "59s", "0", "", "30x", "30dd", "d", "-5m", "3651d", "1.5h", " 30d", "30d ", "99999999999999999999",
        "87601h", "+60"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        load_bad(CART_ROLE_STORE, "CART_IDLE_TTL: expected a duration from 60s to 3650d", "CART_IDLE_TTL", bad[i],
                 NULL);
}
END_TEST

START_TEST(test_jwt_secret)
{
    cart_config c;
    const char *s32 = "0123456789abcdef0123456789abcdef";
    load_ok(&c, CART_ROLE_GATEWAY, "AUTH_JWT_SECRET", "", NULL);
    ck_assert_ptr_null(c.auth_jwt_secret);
    cart_config_cleanup(&c);
    load_ok(&c, CART_ROLE_GATEWAY, "AUTH_JWT_SECRET", s32, NULL);
    ck_assert_str_eq(c.auth_jwt_secret, s32);
    cart_config_cleanup(&c);
    load_bad(CART_ROLE_GATEWAY,
             "AUTH_JWT_SECRET: expected at least 32 bytes (or unset it to turn auth off), got 31 bytes",
             "AUTH_JWT_SECRET", s32 + 1, NULL);
    ck_assert_ptr_null(strstr(err, s32 + 1)); /* the secret is not echoed */
}
END_TEST

START_TEST(test_auth_settings)
{
    cart_config c;
    const char *s32 = "0123456789abcdef0123456789abcdef";
    char long_value[1026];

    /* Off unless AUTH_JWT_SECRET or AUTH_JWKS_FILE is set; empty is unset. */
    load_ok(&c, CART_ROLE_GATEWAY, "AUTH_JWKS_FILE", "", "AUTH_ISSUER", "", "AUTH_AUDIENCE", "", NULL);
    ck_assert_ptr_null(c.auth_jwks_file);
    ck_assert_ptr_null(c.auth_issuer);
    ck_assert_ptr_null(c.auth_audience);
    cart_config_cleanup(&c);
    /* The file is only named here; the gateway reads it (it need not exist yet). */
    load_ok(&c, CART_ROLE_GATEWAY, "AUTH_JWKS_FILE", "/nonexistent/jwks.json", NULL);
    ck_assert_str_eq(c.auth_jwks_file, "/nonexistent/jwks.json");
    ck_assert_ptr_null(c.auth_jwt_secret);
    cart_config_cleanup(&c);
    load_ok(&c, CART_ROLE_GATEWAY, "AUTH_JWT_SECRET", s32, "AUTH_JWKS_FILE", "keys.json", "AUTH_ISSUER",
            "https://idp.example/realms/shop", "AUTH_AUDIENCE", "cart api", NULL);
    ck_assert_str_eq(c.auth_jwt_secret, s32);
    ck_assert_str_eq(c.auth_jwks_file, "keys.json");
    ck_assert_str_eq(c.auth_issuer, "https://idp.example/realms/shop");
    ck_assert_str_eq(c.auth_audience, "cart api");
    cart_config_cleanup(&c);
    load_ok(&c, CART_ROLE_GATEWAY, "AUTH_JWT_SECRET", s32, "AUTH_AUDIENCE", "cart", NULL);
    ck_assert_ptr_null(c.auth_issuer);
    ck_assert_str_eq(c.auth_audience, "cart");
    cart_config_cleanup(&c);

    /* An issuer or audience without auth: whoever set it expects tokens to be checked. */
    load_bad(CART_ROLE_GATEWAY,
             "AUTH_ISSUER: set, but auth is off (set AUTH_JWT_SECRET or AUTH_JWKS_FILE too, or unset AUTH_ISSUER)",
             "AUTH_ISSUER", "https://idp", "AUTH_AUDIENCE", "cart", NULL);
    load_bad(CART_ROLE_GATEWAY,
             "AUTH_AUDIENCE: set, but auth is off (set AUTH_JWT_SECRET or AUTH_JWKS_FILE too, or unset AUTH_AUDIENCE)",
             "AUTH_AUDIENCE", "cart", "AUTH_JWKS_FILE", "", NULL);
    load_bad(CART_ROLE_GATEWAY,
             "AUTH_AUDIENCE: expected up to 1024 characters without control characters, got \"a\\x0ab\"",
             "AUTH_JWKS_FILE", "k.json", "AUTH_AUDIENCE", "a\nb", NULL);
    memset(long_value, 'i', sizeof long_value - 1);
    long_value[sizeof long_value - 1] = '\0';
    load_bad(CART_ROLE_GATEWAY, "AUTH_ISSUER: expected up to 1024 characters", "AUTH_JWKS_FILE", "k.json",
             "AUTH_ISSUER", long_value, NULL);
    long_value[sizeof long_value - 2] = '\0'; /* 1024: the longest */
    load_ok(&c, CART_ROLE_GATEWAY, "AUTH_JWKS_FILE", "k.json", "AUTH_ISSUER", long_value, NULL);
    cart_config_cleanup(&c);

    /* The store reads none of them. */
    fake_env st = {.names = {"AUTH_JWKS_FILE", "AUTH_ISSUER"}, .values = {"k.json", "x\n"}, .n = 2};
    ck_assert_int_eq(cart_config_load(&c, CART_ROLE_STORE, fake_lookup, &st, err, sizeof err), CART_OK);
    ck_assert(!was_looked_up(&st, "AUTH_JWKS_FILE"));
    ck_assert(!was_looked_up(&st, "AUTH_ISSUER"));
    ck_assert(!was_looked_up(&st, "AUTH_AUDIENCE"));
    ck_assert_ptr_null(c.auth_jwks_file);
    cart_config_cleanup(&c);
}
END_TEST

START_TEST(test_tls_files)
{
    cart_config c;
    load_ok(&c, CART_ROLE_GATEWAY, NULL);
    ck_assert_ptr_null(c.gateway_tls_cert);
    ck_assert_ptr_null(c.gateway_tls_key);
    cart_config_cleanup(&c);
    load_ok(&c, CART_ROLE_GATEWAY, "GATEWAY_TLS_CERT", "", "GATEWAY_TLS_KEY", "", NULL);
    ck_assert_ptr_null(c.gateway_tls_cert);
    cart_config_cleanup(&c);
    load_ok(&c, CART_ROLE_GATEWAY, "GATEWAY_TLS_CERT", "/etc/tls/tls.crt", "GATEWAY_TLS_KEY", "/etc/tls/tls.key", NULL);
    ck_assert_str_eq(c.gateway_tls_cert, "/etc/tls/tls.crt");
    ck_assert_str_eq(c.gateway_tls_key, "/etc/tls/tls.key");
    cart_config_cleanup(&c);
    load_bad(CART_ROLE_GATEWAY,
             "GATEWAY_TLS_KEY: expected the path of a PEM private key, since GATEWAY_TLS_CERT is set (set both for "
             "TLS, or neither)",
             "GATEWAY_TLS_CERT", "/etc/tls/tls.crt", NULL);
    load_bad(CART_ROLE_GATEWAY, "GATEWAY_TLS_CERT: expected the path of a PEM certificate", "GATEWAY_TLS_KEY",
             "/etc/tls/tls.key", NULL);
}
END_TEST

/* Writes `contents` (len bytes) to a new temporary file; returns its path (static buffer). */
static const char *temp_file(const char *contents, size_t len)
{
    static char path[64];
    int fd;

    snprintf(path, sizeof path, "/tmp/cartshard-test-config-XXXXXX");
    fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, contents, len), (ssize_t)len);
    close(fd);
    return path;
}

START_TEST(test_redis_password_file)
{
    cart_config c;
    char long_pw[600];
    const char *p;

    /* Unset or empty: no password but the URL's. */
    load_ok(&c, CART_ROLE_STORE, "REDIS_PASSWORD_FILE", "", NULL);
    ck_assert_ptr_null(c.redis_password);
    cart_config_cleanup(&c);
    /* One line, its newline (or CRLF) dropped. */
    p = temp_file("s3cret-Pa55\n", 12);
    load_ok(&c, CART_ROLE_GATEWAY, "REDIS_PASSWORD_FILE", p, NULL);
    ck_assert_str_eq(c.redis_password, "s3cret-Pa55");
    ck_assert_str_eq(c.redis_host, "127.0.0.1");
    cart_config_cleanup(&c);
    unlink(p);
    p = temp_file("pw\r\n", 4);
    load_ok(&c, CART_ROLE_STORE, "REDIS_URL", "redis://cache:6379/2", "REDIS_PASSWORD_FILE", p, NULL);
    ck_assert_str_eq(c.redis_password, "pw");
    ck_assert_int_eq(c.redis_db, 2);
    cart_config_cleanup(&c);
    /* Never two passwords. */
    load_bad(CART_ROLE_STORE, "REDIS_PASSWORD_FILE: set, but REDIS_URL holds a password too", "REDIS_URL",
             "redis://:other@cache:6379", "REDIS_PASSWORD_FILE", p, NULL);
    unlink(p);
    /* Missing, empty, two lines, blanks, too long: named, and the contents never echoed. */
    load_bad(CART_ROLE_STORE, "REDIS_PASSWORD_FILE: cannot read /nonexistent/redis-password", "REDIS_PASSWORD_FILE",
             "/nonexistent/redis-password", NULL);
    p = temp_file("\n", 1);
    load_bad(CART_ROLE_STORE, "REDIS_PASSWORD_FILE: ", "REDIS_PASSWORD_FILE", p, NULL);
    ck_assert_ptr_nonnull(strstr(err, "is empty"));
    unlink(p);
    p = temp_file("alpha\nbravo\n", 12);
    load_bad(CART_ROLE_STORE, "REDIS_PASSWORD_FILE: ", "REDIS_PASSWORD_FILE", p, NULL);
    ck_assert_ptr_nonnull(strstr(err, "second line"));
    ck_assert_ptr_null(strstr(err, "alpha"));
    ck_assert_ptr_null(strstr(err, "bravo"));
    unlink(p);
    p = temp_file("pass word", 9);
    load_bad(CART_ROLE_STORE, "REDIS_PASSWORD_FILE: ", "REDIS_PASSWORD_FILE", p, NULL);
    ck_assert_ptr_null(strstr(err, "pass word"));
    unlink(p);
    memset(long_pw, 'x', sizeof long_pw);
    p = temp_file(long_pw, sizeof long_pw);
    load_bad(CART_ROLE_STORE, "REDIS_PASSWORD_FILE: ", "REDIS_PASSWORD_FILE", p, NULL);
    ck_assert_ptr_nonnull(strstr(err, "more than 512 bytes"));
    unlink(p);
}
END_TEST

START_TEST(test_migrate_timeouts)
{
    cart_config c;

    load_ok(&c, CART_ROLE_STORE, NULL);
    ck_assert_int_eq(c.migrate_lock_timeout_ms, 5000);
    ck_assert_int_eq(c.migrate_statement_timeout_ms, 300000);
    cart_config_cleanup(&c);
    load_ok(&c, CART_ROLE_STORE, "MIGRATE_LOCK_TIMEOUT_MS", "250", "MIGRATE_STATEMENT_TIMEOUT_MS", "0", NULL);
    ck_assert_int_eq(c.migrate_lock_timeout_ms, 250);
    ck_assert_int_eq(c.migrate_statement_timeout_ms, 0);
    cart_config_cleanup(&c);
    /* A lock wait without a bound is what the setting exists to prevent: 0 is refused. */
    load_bad(CART_ROLE_STORE, "MIGRATE_LOCK_TIMEOUT_MS: expected an integer from 1 to 600000, got \"0\"",
             "MIGRATE_LOCK_TIMEOUT_MS", "0", NULL);
    load_bad(CART_ROLE_STORE, "MIGRATE_LOCK_TIMEOUT_MS: expected an integer", "MIGRATE_LOCK_TIMEOUT_MS", "5s", NULL);
    load_bad(CART_ROLE_STORE, "MIGRATE_STATEMENT_TIMEOUT_MS: expected an integer from 0 to 86400000",
             "MIGRATE_STATEMENT_TIMEOUT_MS", "-1", NULL);
}
END_TEST

START_TEST(test_cors_origins)
{
    static const char *const bad[] = {
        "shop.example",
        "ftp://shop.example",
        "https://",
        "https://shop.example/",
        "https://shop.example/x",
        "https://u@shop.example",
        "https://a b",
        "https://shop.example:0",
        "https://shop.example:65536",
        "https://shop.example:",
        "https://[]",
        "https://[::1",
        "null",
        "https://shop.example:123456",
        "https://shop_example",
    };
    const char *prefix = "CORS_ALLOWED_ORIGINS: expected origins such as https://shop.example or "
                         "http://127.0.0.1:3000 (no path, no trailing slash), got \"";
    char many[64 * 24 + 32];
    size_t n = 0;
    cart_config c;

    load_ok(&c, CART_ROLE_GATEWAY, "CORS_ALLOWED_ORIGINS", " \t", NULL);
    ck_assert_uint_eq(c.ncors_origins, 0);
    cart_config_cleanup(&c);
    load_ok(&c, CART_ROLE_GATEWAY, "CORS_ALLOWED_ORIGINS",
            " https://Shop.Example , HTTP://127.0.0.1:3000,https://[::1]:8443,https://a-b.example:443", NULL);
    ck_assert_uint_eq(c.ncors_origins, 4);
    ck_assert_str_eq(c.cors_origins[0], "https://shop.example");
    ck_assert_str_eq(c.cors_origins[1], "http://127.0.0.1:3000");
    ck_assert_str_eq(c.cors_origins[2], "https://[::1]:8443");
    ck_assert_str_eq(c.cors_origins[3], "https://a-b.example:443");
    cart_config_cleanup(&c);
    /* Store settings do not read it. */
    load_ok(&c, CART_ROLE_STORE, "CORS_ALLOWED_ORIGINS", "*", NULL);
    ck_assert_uint_eq(c.ncors_origins, 0);
    cart_config_cleanup(&c);

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        load_bad(CART_ROLE_GATEWAY, prefix, "CORS_ALLOWED_ORIGINS", bad[i], NULL);
    load_bad(CART_ROLE_GATEWAY, "CORS_ALLOWED_ORIGINS: expected exact origins; \"*\" (any origin) is not accepted",
             "CORS_ALLOWED_ORIGINS", "https://a.example, *", NULL);
    load_bad(CART_ROLE_GATEWAY, "CORS_ALLOWED_ORIGINS: expected comma-separated origins, but entry 2 is empty",
             "CORS_ALLOWED_ORIGINS", "https://a.example,,https://b.example", NULL);
    load_bad(CART_ROLE_GATEWAY, "CORS_ALLOWED_ORIGINS: expected comma-separated origins, but entry 2 is empty",
             "CORS_ALLOWED_ORIGINS", "https://a.example, ", NULL);
    for (int i = 0; i < CART_CONFIG_MAX_ORIGINS; i++)
        n += (size_t)snprintf(many + n, sizeof many - n, "%shttps://s%d.example", i ? "," : "", i);
    load_ok(&c, CART_ROLE_GATEWAY, "CORS_ALLOWED_ORIGINS", many, NULL);
    ck_assert_uint_eq(c.ncors_origins, CART_CONFIG_MAX_ORIGINS);
    cart_config_cleanup(&c);
    snprintf(many + n, sizeof many - n, ",https://one.more");
    load_bad(CART_ROLE_GATEWAY, "CORS_ALLOWED_ORIGINS: expected at most 64 origins", "CORS_ALLOWED_ORIGINS", many,
             NULL);
}
END_TEST

START_TEST(test_ids)
{
    static const char *const names[] = {"GATEWAY_ID", "CART_STORE_ID"};
    static const cart_config_role roles[] = {CART_ROLE_GATEWAY, CART_ROLE_STORE};
    char id64[65], id65[66];
    memset(id64, 'a', 64);
    id64[64] = '\0';
    memset(id65, 'b', 65);
    id65[65] = '\0';

    for (int k = 0; k < 2; k++) {
        cart_config c;
        char prefix[128];
        load_ok(&c, roles[k], names[k], "gw-1_A", NULL);
        ck_assert_str_eq(k ? c.store_id : c.gateway_id, "gw-1_A");
        cart_config_cleanup(&c);
        load_ok(&c, roles[k], names[k], id64, NULL);
        ck_assert_str_eq(k ? c.store_id : c.gateway_id, id64);
        cart_config_cleanup(&c);
        load_ok(&c, roles[k], names[k], "x", NULL);
        cart_config_cleanup(&c);

        snprintf(prefix, sizeof prefix, "%s: expected 1 to 64 characters of A-Z, a-z, 0-9, '-' and '_', got ",
                 names[k]);
        static const char *const bad[] = {"", "a.b", "a b", "a*", "a>", "é"};
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
            load_bad(roles[k], prefix, names[k], bad[i], NULL);
        load_bad(roles[k], prefix, names[k], id65, NULL);
    }
}
END_TEST

START_TEST(test_hosts)
{
    static const char *const names[] = {"GATEWAY_HOST", "CART_STORE_ADMIN_HOST"};
    static const cart_config_role roles[] = {CART_ROLE_GATEWAY, CART_ROLE_STORE};
    for (int k = 0; k < 2; k++) {
        cart_config c;
        static const char *const good[] = {"::", "localhost", "10.0.0.1", "my-host.example_1"};
        for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
            load_ok(&c, roles[k], names[k], good[i], NULL);
            ck_assert_str_eq(k ? c.store_admin_host : c.gateway_host, good[i]);
            cart_config_cleanup(&c);
        }
        static const char *const bad[] = {"", "a b", "[::1]", "h/x", "h:80\n"};
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
            load_bad(roles[k], names[k], names[k], bad[i], NULL);
    }
}
END_TEST

START_TEST(test_failure_releases_everything)
{
    /* Fail at the last variable read, after every string was allocated (checked by ASan/valgrind). */
    load_bad(CART_ROLE_STORE, "CART_IDLE_TTL", "REDIS_URL", "redis://:pw@h:1/2", "SHARD_DSNS", "host=a,host=b",
             "CART_IDLE_TTL", "1s", NULL);
    load_bad(CART_ROLE_GATEWAY, "GATEWAY_ID", "REDIS_URL", "redis://:pw@h:1/2", "AUTH_JWT_SECRET",
             "0123456789abcdef0123456789abcdef", "GATEWAY_ID", "no good", NULL);
    /* The first bad variable in reading order is the one reported. */
    load_bad(CART_ROLE_GATEWAY, "NATS_URL", "GATEWAY_PORT", "x", "NATS_URL", "", NULL);
}
END_TEST

START_TEST(test_api_edges)
{
    cart_config c;
    fake_env e = {.n = 0};
    char small[16];

    /* A short error buffer gets a truncated, terminated line; no buffer at all is fine too. */
    fake_env bad = {.names = {"CART_PARTITIONS"}, .values = {"abc"}, .n = 1};
    ck_assert_int_eq(cart_config_load(&c, CART_ROLE_GATEWAY, fake_lookup, &bad, small, sizeof small), CART_ERR_INVALID);
    ck_assert_str_eq(small, "CART_PARTITIONS");
    ck_assert_int_eq(cart_config_load(&c, CART_ROLE_GATEWAY, fake_lookup, &bad, NULL, 0), CART_ERR_INVALID);

    ck_assert_int_eq(cart_config_load(&c, (cart_config_role)0, fake_lookup, &e, err, sizeof err), CART_ERR_INVALID);
    ck_assert_int_eq(cart_config_load(&c, CART_ROLE_GATEWAY, NULL, &e, err, sizeof err), CART_ERR_INVALID);
    ck_assert_int_eq(cart_config_load(NULL, CART_ROLE_GATEWAY, fake_lookup, &e, err, sizeof err), CART_ERR_INVALID);

    memset(&c, 0, sizeof c);
    cart_config_cleanup(&c);
    cart_config_cleanup(NULL);

    /* The real-environment lookup: only a read of a variable nobody sets. */
    ck_assert_ptr_null(cart_env_getenv("CARTSHARD_TEST_SURELY_UNSET_1c9f", NULL));
}
END_TEST

static Suite *config_suite(void)
{
    Suite *s = suite_create("config");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_gateway_defaults);
    tcase_add_test(tc, test_store_defaults);
    tcase_add_test(tc, test_stats_settings);
    tcase_add_test(tc, test_default_ids);
    tcase_add_test(tc, test_role_specific_reading);
    tcase_add_test(tc, test_exact_message);
    tcase_add_test(tc, test_cache_ttl);
    tcase_add_loop_test(tc, test_integers, 0, (int)(sizeof int_vars / sizeof int_vars[0]));
    tcase_add_test(tc, test_shard_dsns);
    tcase_add_test(tc, test_redis_url);
    tcase_add_test(tc, test_nats_url);
    tcase_add_test(tc, test_log_level);
    tcase_add_test(tc, test_idle_ttl);
    tcase_add_test(tc, test_jwt_secret);
    tcase_add_test(tc, test_auth_settings);
    tcase_add_test(tc, test_tls_files);
    tcase_add_test(tc, test_redis_password_file);
    tcase_add_test(tc, test_migrate_timeouts);
    tcase_add_test(tc, test_cors_origins);
    tcase_add_test(tc, test_ids);
    tcase_add_test(tc, test_hosts);
    tcase_add_test(tc, test_failure_releases_everything);
    tcase_add_test(tc, test_api_edges);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(config_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
