/*
 * redis_writer.c: the cart-store's writer of the Redis cart cache. See redis_writer.h for the guarantees.
 *
 * The state of a writer is the connection (NULL while down, with the earliest time of the next
 * attempt), the script's SHA-1 as Redis reported it, and what may be stale in Redis: a set of
 * user ids whose write failed, or, once that set has overflowed, a wipe of every cart:{*} key in
 * progress (its SCAN cursor). Each call first works off that state, then writes.
 *
 * Every redisReply is owned by the function that received it and freed before it returns. After
 * any I/O error or timeout hiredis leaves the context unusable, so it is freed at once
 * (disconnect) and whatever was in flight counts as failed.
 */
#define _POSIX_C_SOURCE 200809L
#include "redis_writer.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <hiredis.h>

#include "cartshard/cache.h"
#include "cartshard/clock.h"
#include "cartshard/log.h"
#include "cartshard/partition.h"
#include "cartshard/redis.h"

#define CONNECT_TIMEOUT_MS 500
#define COMMAND_TIMEOUT_MS 1000
#define RECONNECT_MS       1000
#define DEFAULT_TTL_S      3600
/* The remembered-id set: open addressing over 2^STALE_BITS slots, at most half of them used. */
#define STALE_BITS  17
#define STALE_SLOTS (1u << STALE_BITS)
/* Keys per DEL command when deleting remembered ids (all commands pipelined). */
#define DEL_CHUNK 256
/* The wipe: SCAN steps per call and the COUNT hint of each (so about 16k keys per call). */
#define WIPE_STEPS 16
#define WIPE_COUNT "1000"
#define SHA1_HEX   40
#define CURSOR_MAX 24 /* a SCAN cursor is an unsigned 64-bit decimal */

_Static_assert(STALE_SLOTS >= 2 * CS_REDIS_WRITER_STALE_MAX, "the stale set needs room for probing");

/* What became of one entry in a pipelined pass. */
enum {
    E_PENDING = 0, /* to be sent (again) */
    E_SENT,        /* in the pipeline, reply not read yet */
    E_DONE         /* outcome counted */
};

struct cs_redis_writer {
    /** Settings (Redis address, password, database, TTL); borrowed. */
    const cart_config *cfg;
    /** Names the writer in logs; owned. */
    char *name;
    /** The connection, NULL while down; owned. */
    redisContext *ctx;
    /** SHA-1 of cart_cache_put_lua, as SCRIPT LOAD answered it on this connection. */
    char sha[SHA1_HEX + 1];
    /** Monotonic ms before which no connection is attempted. */
    int64_t next_connect_ms;
    /** A connection failure was warned about: quiet until a connection is up again. */
    bool warned_down;
    /** A refused command or a bad entry was warned about: quiet until a batch goes through
     * cleanly or a new connection is up. Separate from warned_down, so that one bad entry never
     * hides the warning of a later outage. */
    bool warned_refused;
    /** User ids whose write failed: STALE_SLOTS slots of owned strings, NULL until needed. */
    char **stale;
    size_t nstale;
    /** The set overflowed: every cart:{*} key is to be deleted, from SCAN cursor `cursor`. */
    bool wipe;
    char cursor[CURSOR_MAX];
    /** Keys the current wipe has deleted so far (for its closing log line). */
    long long wiped;
    /** Metric series (NULL without a registry: updates are then no-ops). */
    cart_metric *m_written, *m_kept, *m_error, *m_invalidated;
    cart_metric *m_dependency; /* cartshard_dependency_errors_total{dependency="redis"} */
};

static struct timeval ms_to_tv(int ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    return tv;
}

/* Logs `msg` as a warning unless the incident that *warned marks has had one. */
static void warn_once(cs_redis_writer *c, bool *warned, const char *msg, const char *error)
{
    cart_counter_inc(c->m_dependency); /* every failure counts; one warning per incident */
    if (*warned)
        return;
    *warned = true;
    cart_log(CART_LOG_WARN, msg, CART_LS("cache", c->name), CART_LS("error", error), CART_LI("stale_keys", c->nstale),
             CART_LB("wipe_pending", c->wipe), NULL);
}

/* Drops the connection; the next attempt waits RECONNECT_MS. */
static void disconnect(cs_redis_writer *c)
{
    if (c->ctx)
        redisFree(c->ctx);
    c->ctx = NULL;
    c->next_connect_ms = cart_mono_ms() + RECONNECT_MS;
}

/* Reports a broken connection (its error) and drops it. */
static void connection_failed(cs_redis_writer *c, const char *what)
{
    warn_once(c, &c->warned_down, what, c->ctx && c->ctx->errstr[0] ? c->ctx->errstr : "connection lost");
    disconnect(c);
}

/* --- the remembered ids --- */

/* Fibonacci hashing over FNV-1a: a runner's ids share FNV's low bits (its partitions). */
static size_t stale_slot(const char *id)
{
    uint32_t h = cart_fnv1a32(id, strlen(id));
    return (size_t)((h * 2654435769u) >> (32 - STALE_BITS));
}

static void stale_clear(cs_redis_writer *c)
{
    if (c->stale) {
        for (size_t i = 0; i < STALE_SLOTS; i++)
            free(c->stale[i]);
        free(c->stale);
    }
    c->stale = NULL;
    c->nstale = 0;
}

/* Gives up on single ids: forgets them and (re)starts a wipe of every cart:{*} key. Restarting
 * from cursor 0 matters: ids forgotten now may sit in the part a running wipe has passed. */
static void stale_overflow(cs_redis_writer *c, const char *why)
{
    cart_log(CART_LOG_WARN, "cache invalidation falls back to deleting every cart:{*} key", CART_LS("cache", c->name),
             CART_LS("reason", why), CART_LI("stale_keys", c->nstale), CART_LI("limit", CS_REDIS_WRITER_STALE_MAX),
             NULL);
    stale_clear(c);
    c->wipe = true;
    c->wiped = 0;
    memcpy(c->cursor, "0", 2);
}

/* Remembers that `user_id`'s entry may be stale. */
static void stale_add(cs_redis_writer *c, const char *user_id)
{
    size_t i;

    if (c->stale == NULL && (c->stale = calloc(STALE_SLOTS, sizeof *c->stale)) == NULL) {
        stale_overflow(c, "out of memory for the set of failed writes");
        return;
    }
    for (i = stale_slot(user_id); c->stale[i]; i = (i + 1) & (STALE_SLOTS - 1)) {
        if (strcmp(c->stale[i], user_id) == 0)
            return;
    }
    if (c->nstale >= CS_REDIS_WRITER_STALE_MAX) {
        stale_overflow(c, "more failed writes than the set of them holds");
        return;
    }
    if ((c->stale[i] = strdup(user_id)) == NULL) {
        stale_overflow(c, "out of memory for the set of failed writes");
        return;
    }
    c->nstale++;
}

/* Counts one entry as failed; its key is deleted once Redis answers again. */
static void entry_failed(cs_redis_writer *c, const cs_redis_writer_entry *e)
{
    char key[CART_CACHE_KEY_MAX];

    cart_counter_inc(c->m_error);
    /* An id that makes no key has no entry to be stale. */
    if (e->user_id && cart_cache_key(e->user_id, key, sizeof key))
        stale_add(c, e->user_id);
}

/* --- connection --- */

/* SCRIPT LOAD on the current connection; stores the SHA-1 Redis answers. False when refused or
 * the connection broke (then c->ctx is NULL). */
static bool load_script(cs_redis_writer *c)
{
    redisReply *r = redisCommand(c->ctx, "SCRIPT LOAD %s", cart_cache_put_lua);
    bool ok = false;

    if (r == NULL) {
        connection_failed(c, "redis cache script load failed");
        return false;
    }
    if (r->type == REDIS_REPLY_STRING && r->len == SHA1_HEX && r->str) {
        memcpy(c->sha, r->str, SHA1_HEX);
        c->sha[SHA1_HEX] = '\0';
        ok = true;
    } else {
        warn_once(c, &c->warned_refused, "redis cache script load refused",
                  r->type == REDIS_REPLY_ERROR && r->str ? r->str : "unexpected reply type");
    }
    freeReplyObject(r);
    return ok;
}

/* Connects, authenticates, selects the database and loads the script, unless connected already
 * or the next attempt is not due. True when connected. */
static bool ensure_connected(cs_redis_writer *c)
{
    const cart_config *cfg = c->cfg;
    redisContext *ctx;
    cart_redis_handshake_result hs;
    const char *step = "";
    char msg[96], err[256];
    int64_t now;

    if (c->ctx)
        return true;
    now = cart_mono_ms();
    if (now < c->next_connect_ms)
        return false;
    /* Whatever happens below, the next attempt waits: a dead Redis gets one try a second. */
    c->next_connect_ms = now + RECONNECT_MS;

    ctx = redisConnectWithTimeout(cfg->redis_host, cfg->redis_port, ms_to_tv(CONNECT_TIMEOUT_MS));
    if (ctx == NULL || ctx->err) {
        warn_once(c, &c->warned_down, "redis cache connect failed", ctx ? ctx->errstr : "out of memory");
        goto fail;
    }
    if (redisSetTimeout(ctx, ms_to_tv(COMMAND_TIMEOUT_MS)) != REDIS_OK || redisEnableKeepAlive(ctx) != REDIS_OK) {
        warn_once(c, &c->warned_down, "redis cache socket setup failed",
                  ctx->errstr[0] ? ctx->errstr : "setsockopt failed");
        goto fail;
    }
    hs = cart_redis_handshake(ctx, cfg, &step, err, sizeof err);
    if (hs != CART_REDIS_HANDSHAKE_OK) {
        snprintf(msg, sizeof msg,
                 hs == CART_REDIS_HANDSHAKE_FAILED ? "redis cache %s failed" : "redis cache %s refused", step);
        warn_once(c, &c->warned_down, msg, err);
        goto fail;
    }
    c->ctx = ctx;
    if (!load_script(c)) {
        ctx = c->ctx; /* NULL if load_script dropped it */
        c->ctx = NULL;
        goto fail;
    }
    cart_log(CART_LOG_INFO, "redis cache connected", CART_LS("cache", c->name), CART_LS("host", cfg->redis_host),
             CART_LI("port", cfg->redis_port), CART_LI("stale_keys", c->nstale), CART_LB("wipe_pending", c->wipe),
             NULL);
    c->warned_down = false;
    c->warned_refused = false;
    return true;

fail:
    if (ctx)
        redisFree(ctx);
    return false;
}

/* --- invalidation --- */

/* Deletes the keys of the remembered ids (pipelined DELs) and forgets them. False only when the
 * connection broke (dropped then); a refused DEL keeps the ids for the next call. */
static bool flush_stale(cs_redis_writer *c)
{
    const char *argv[1 + DEL_CHUNK];
    size_t argvlen[1 + DEL_CHUNK];
    char keys[DEL_CHUNK][CART_CACHE_KEY_MAX];
    size_t ncmds = 0, nkeys = 0;
    bool refused = false;
    long long deleted = 0;

    if (c->nstale == 0)
        return true;
    argv[0] = "DEL";
    argvlen[0] = 3;
    for (size_t i = 0; i <= STALE_SLOTS; i++) {
        /* One pass past the end flushes the last chunk. */
        if (i < STALE_SLOTS) {
            if (c->stale[i] == NULL || !cart_cache_key(c->stale[i], keys[nkeys], sizeof keys[nkeys]))
                continue;
            argv[1 + nkeys] = keys[nkeys];
            argvlen[1 + nkeys] = strlen(keys[nkeys]);
            nkeys++;
        }
        if (nkeys == DEL_CHUNK || (i == STALE_SLOTS && nkeys > 0)) {
            /* hiredis copies the arguments into its output buffer, so `keys` can be reused. */
            if (redisAppendCommandArgv(c->ctx, (int)(1 + nkeys), argv, argvlen) != REDIS_OK) {
                connection_failed(c, "redis cache invalidation failed");
                return false;
            }
            ncmds++;
            nkeys = 0;
        }
    }
    for (size_t i = 0; i < ncmds; i++) {
        redisReply *r = NULL;
        if (redisGetReply(c->ctx, (void **)&r) != REDIS_OK || r == NULL) {
            connection_failed(c, "redis cache invalidation failed");
            return false;
        }
        if (r->type == REDIS_REPLY_INTEGER) {
            deleted += r->integer;
        } else {
            warn_once(c, &c->warned_refused, "redis cache invalidation refused",
                      r->type == REDIS_REPLY_ERROR && r->str ? r->str : "unexpected reply type");
            refused = true;
        }
        freeReplyObject(r);
    }
    cart_counter_add(c->m_invalidated, (double)deleted);
    if (refused)
        return true;
    cart_log(CART_LOG_INFO, "deleted cache entries of failed writes", CART_LS("cache", c->name),
             CART_LI("keys", c->nstale), CART_LI("deleted", deleted), NULL);
    stale_clear(c);
    return true;
}

/* True if `r` is a SCAN reply: [cursor, [key, ...]] with a decimal cursor and string keys. */
static bool valid_scan_reply(const redisReply *r)
{
    const redisReply *cur, *keys;

    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2)
        return false;
    cur = r->element[0];
    keys = r->element[1];
    if (cur->type != REDIS_REPLY_STRING || cur->len == 0 || cur->len >= CURSOR_MAX ||
        strspn(cur->str, "0123456789") != cur->len || keys->type != REDIS_REPLY_ARRAY)
        return false;
    for (size_t i = 0; i < keys->elements; i++) {
        if (keys->element[i]->type != REDIS_REPLY_STRING)
            return false;
    }
    return true;
}

/* UNLINKs the keys of one SCAN step. False when the connection broke; *refused when Redis
 * answered anything but a count. */
static bool unlink_keys(cs_redis_writer *c, const redisReply *keys, bool *refused)
{
    const char **argv = NULL;
    size_t *argvlen = NULL;
    redisReply *r = NULL;
    bool ok = true;

    *refused = false;
    if (keys->elements == 0)
        return true;
    argv = malloc((keys->elements + 1) * sizeof *argv);
    argvlen = malloc((keys->elements + 1) * sizeof *argvlen);
    if (argv == NULL || argvlen == NULL) {
        warn_once(c, &c->warned_refused, "redis cache wipe failed", "out of memory");
        *refused = true;
        goto out;
    }
    argv[0] = "UNLINK";
    argvlen[0] = 6;
    for (size_t i = 0; i < keys->elements; i++) {
        argv[i + 1] = keys->element[i]->str;
        argvlen[i + 1] = keys->element[i]->len;
    }
    r = redisCommandArgv(c->ctx, (int)(keys->elements + 1), argv, argvlen);
    if (r == NULL) {
        connection_failed(c, "redis cache wipe failed");
        ok = false;
    } else if (r->type == REDIS_REPLY_INTEGER) {
        cart_counter_add(c->m_invalidated, (double)r->integer);
        c->wiped += r->integer;
    } else {
        warn_once(c, &c->warned_refused, "redis cache wipe refused",
                  r->type == REDIS_REPLY_ERROR && r->str ? r->str : "unexpected reply");
        *refused = true;
    }

out:
    if (r)
        freeReplyObject(r);
    free(argv);
    free(argvlen);
    return ok;
}

/* Takes up to WIPE_STEPS steps of SCAN MATCH cart:{*} + UNLINK. The cursor moves on only once a
 * step's keys are gone. False only when the connection broke. */
static bool wipe_steps(cs_redis_writer *c)
{
    for (int step = 0; step < WIPE_STEPS && c->wipe; step++) {
        redisReply *r =
            redisCommand(c->ctx, "SCAN %s MATCH %s COUNT %s", c->cursor, CART_CACHE_KEY_PATTERN, WIPE_COUNT);
        bool refused = false;

        if (r == NULL) {
            connection_failed(c, "redis cache wipe failed");
            return false;
        }
        if (!valid_scan_reply(r)) {
            warn_once(c, &c->warned_refused, "redis cache wipe refused",
                      r->type == REDIS_REPLY_ERROR && r->str ? r->str : "unexpected SCAN reply");
            freeReplyObject(r);
            return true;
        }
        if (!unlink_keys(c, r->element[1], &refused)) {
            freeReplyObject(r);
            return false;
        }
        if (refused) {
            freeReplyObject(r);
            return true;
        }
        memcpy(c->cursor, r->element[0]->str, r->element[0]->len + 1);
        freeReplyObject(r);
        if (strcmp(c->cursor, "0") == 0) {
            c->wipe = false;
            cart_log(CART_LOG_INFO, "cache wipe finished", CART_LS("cache", c->name), CART_LI("deleted", c->wiped),
                     NULL);
        }
    }
    return true;
}

/* --- writes --- */

/* Counts every entry whose outcome is not known yet (E_PENDING or E_SENT) as failed. */
static void fail_unfinished(cs_redis_writer *c, const cs_redis_writer_entry *entries, size_t n, unsigned char *state)
{
    for (size_t i = 0; i < n; i++) {
        if (state[i] != E_DONE) {
            state[i] = E_DONE;
            entry_failed(c, &entries[i]);
        }
    }
}

/* Reads and counts the replies of every E_SENT entry, in order. NOSCRIPT answers go back to
 * E_PENDING (when `retry` is allowed) and set *noscript. Failures are counted and remembered.
 * False when the connection broke (every unread entry then counts as failed). */
static bool read_replies(cs_redis_writer *c, const cs_redis_writer_entry *entries, size_t n, unsigned char *state,
                         bool retry, bool *noscript, bool *failed)
{
    for (size_t i = 0; i < n; i++) {
        redisReply *r = NULL;

        if (state[i] != E_SENT)
            continue;
        if (redisGetReply(c->ctx, (void **)&r) != REDIS_OK || r == NULL) {
            connection_failed(c, "redis cache write failed");
            /* Sent but unanswered: applied or not, the key may now be stale either way. */
            fail_unfinished(c, entries, n, state);
            *failed = true;
            return false;
        }
        state[i] = E_DONE;
        if (r->type == REDIS_REPLY_INTEGER && r->integer == 1) {
            cart_counter_inc(c->m_written);
        } else if (r->type == REDIS_REPLY_INTEGER && r->integer == 0) {
            cart_counter_inc(c->m_kept);
        } else if (retry && r->type == REDIS_REPLY_ERROR && r->str && strncmp(r->str, "NOSCRIPT", 8) == 0) {
            state[i] = E_PENDING;
            *noscript = true;
        } else {
            warn_once(c, &c->warned_refused, "redis cache write refused",
                      r->type == REDIS_REPLY_ERROR && r->str ? r->str : "unexpected reply type");
            entry_failed(c, &entries[i]);
            *failed = true;
        }
        freeReplyObject(r);
    }
    return true;
}

/* Sends EVALSHA for every E_PENDING entry, then reads the replies. False when the connection
 * broke (every entry not yet counted then counts as failed). */
static bool write_pass(cs_redis_writer *c, const cs_redis_writer_entry *entries, size_t n, unsigned char *state,
                       bool retry, bool *noscript, bool *failed)
{
    char key[CART_CACHE_KEY_MAX];
    char version[24];
    char ttl[16];
    int ttl_s = c->cfg->cache_ttl_s > 0 ? c->cfg->cache_ttl_s : DEFAULT_TTL_S;

    snprintf(ttl, sizeof ttl, "%d", ttl_s);
    for (size_t i = 0; i < n; i++) {
        const cs_redis_writer_entry *e = &entries[i];

        if (state[i] != E_PENDING)
            continue;
        if (e->json == NULL || cart_cache_key(e->user_id, key, sizeof key) == NULL) {
            warn_once(c, &c->warned_refused, "redis cache write skipped", e->json ? "invalid user id" : "no JSON");
            state[i] = E_DONE;
            entry_failed(c, e);
            *failed = true;
            continue;
        }
        snprintf(version, sizeof version, "%" PRId64, e->version);
        /* %s arguments go through as single binary-safe arguments: the JSON needs no quoting. */
        if (redisAppendCommand(c->ctx, "EVALSHA %s 1 %s %s %s %s", c->sha, key, version, e->json, ttl) != REDIS_OK) {
            /* Nothing was sent yet (only buffered): dropping the context discards it all. */
            connection_failed(c, "redis cache write failed");
            fail_unfinished(c, entries, n, state);
            *failed = true;
            return false;
        }
        state[i] = E_SENT;
    }
    return read_replies(c, entries, n, state, retry, noscript, failed);
}

/* Writes the entries over the live connection. True when every one was written or kept. */
static bool write_entries(cs_redis_writer *c, const cs_redis_writer_entry *entries, size_t n)
{
    unsigned char *state = calloc(n, 1);
    bool noscript = false, failed = false;

    if (state == NULL) {
        warn_once(c, &c->warned_refused, "redis cache write failed", "out of memory");
        for (size_t i = 0; i < n; i++)
            entry_failed(c, &entries[i]);
        return false;
    }
    if (!write_pass(c, entries, n, state, true, &noscript, &failed))
        goto out;
    if (noscript) {
        /* Redis lost its scripts (SCRIPT FLUSH, a restart or fail-over we did not notice):
         * load it again and retry those entries once. */
        if (load_script(c)) {
            noscript = false;
            write_pass(c, entries, n, state, false, &noscript, &failed);
        } else {
            fail_unfinished(c, entries, n, state);
            failed = true;
        }
    }

out:
    free(state);
    return !failed;
}

/* --- public --- */

cs_redis_writer *cs_redis_writer_new(const cart_config *cfg, cart_metrics *metrics, const char *name)
{
    static const char *const results[] = {"written", "kept_newer", "error"};
    cart_metric_family *writes, *invalidations;
    cs_redis_writer *c;

    if (cfg == NULL || (c = calloc(1, sizeof *c)) == NULL)
        return NULL;
    c->cfg = cfg;
    if ((c->name = strdup(name ? name : "cache")) == NULL) {
        free(c);
        return NULL;
    }
    writes = cart_metrics_family(metrics, "cartshard_cache_writes_total",
                                 "Cart cache writes by the cart-store: written, kept_newer (Redis held a newer "
                                 "version), error (the key is deleted later).",
                                 CART_METRIC_COUNTER, "result", NULL, 0);
    invalidations = cart_metrics_family(metrics, "cartshard_cache_invalidations_total",
                                        "Cart cache entries the cart-store deleted because a write to them may have "
                                        "failed.",
                                        CART_METRIC_COUNTER, NULL, NULL, 0);
    c->m_written = cart_metrics_series(writes, &results[0]);
    c->m_kept = cart_metrics_series(writes, &results[1]);
    c->m_error = cart_metrics_series(writes, &results[2]);
    c->m_invalidated = cart_metrics_series(invalidations, NULL);
    c->m_dependency = cart_metrics_dependency_errors(metrics, "redis");
    return c;
}

void cs_redis_writer_free(cs_redis_writer *c)
{
    if (c == NULL)
        return;
    if (c->nstale > 0 || c->wipe)
        cart_log(CART_LOG_WARN, "cache entries of failed writes were not deleted; they may be stale until their TTL",
                 CART_LS("cache", c->name), CART_LI("stale_keys", c->nstale), CART_LB("wipe_pending", c->wipe), NULL);
    if (c->ctx)
        redisFree(c->ctx);
    stale_clear(c);
    free(c->name);
    free(c);
}

static void put(cs_redis_writer *c, const cs_redis_writer_entry *entries, size_t n, bool may_retry)
{
    bool was_connected = c->ctx != NULL;

    /* Old damage first: a remembered key is deleted before this batch could write it again. */
    if (!ensure_connected(c) || !flush_stale(c) || (c->wipe && !wipe_steps(c))) {
        for (size_t i = 0; i < n; i++)
            entry_failed(c, &entries[i]);
    } else if (n > 0 && write_entries(c, entries, n)) {
        c->warned_refused = false; /* a clean batch ends the incident */
        return;
    }
    /* A connection that was fine until now broke under this batch (Redis restarted, a proxy
     * closed it while idle): one more try on a fresh connection, which first deletes the keys
     * just remembered and then writes them, rather than leaving them to the next batch. */
    if (may_retry && was_connected && c->ctx == NULL) {
        c->next_connect_ms = 0;
        put(c, entries, n, false);
    }
}

void cs_redis_writer_put(cs_redis_writer *c, const cs_redis_writer_entry *entries, size_t n)
{
    if (c == NULL || (n > 0 && entries == NULL))
        return;
    if (n == 0 && c->nstale == 0 && !c->wipe)
        return;
    put(c, entries, n, true);
}
