/*
 * reads.c: the read path of a gateway thread. A GET of a cart asks the Redis cache first (a
 * strict reader: a corrupt or foreign entry is a miss), then on a miss, or when Redis is away,
 * the shard that owns the user, and puts what the shard said back into the cache (the shard's
 * rows are read by cart_pg_read_cart, cartshard/pg.h). Loop thread only, each on its own
 * gw_thread, Redis client and shard connections.
 */
#define _POSIX_C_SOURCE 200809L
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cartshard/cache.h"
#include "cartshard/log.h"
#include "cartshard/partition.h"
#include "cartshard/pg.h"
#include "internal.h"
#include "redis.h"
#include "request.h"

/* A GET in progress: first the cache, then (on a miss) the owning shard. */
typedef struct read_ctx {
    gw_req_link link;              /* link.req is NULL once the client has gone */
    gw_thread *t;                  /* the thread it runs on */
    char user_id[CART_ID_MAX + 1]; /* whose cart */
    int64_t started;               /* when the request came in (monotonic ms) */
    bool conditional;              /* the request has an If-None-Match */
    gw_etags if_none_match;        /* what it names */
} read_ctx;

static void read_done(read_ctx *rc)
{
    gw_unlink_request(&rc->link); /* the request may outlive rc */
    free(rc);
}

/* The user's latest cart, whatever its state, with its lines: what GET answers and what the
 * cache holds. */
static const char *const sql_get_cart =
    "SELECT " CART_PG_CART_COLUMNS
    " FROM " CART_PG_LATEST_CART("$1") " c LEFT JOIN cart_items i ON i.cart_id = c.cart_id";

gw_pg *gw_shard_of(gw_thread *t, const char *user_id)
{
    const cart_config *cfg = t->app->cfg;
    uint32_t part = cart_partition_of(user_id, strlen(user_id), cfg->partitions);

    return t->shards[cart_shard_of(part, cfg->partitions, cfg->nshards)];
}

/* Answers a GET with the user's latest cart: 200 (or 304) when it is active, else 404. */
static void answer_cart(read_ctx *rc, const cart *c, const char *json, size_t len)
{
    gw_thread *t = rc->t;
    h2o_req_t *req = rc->link.req;
    char *body = NULL, etag[GW_ETAG_MAX];

    if (c->state != CART_ACTIVE) {
        gw_send_problem(t, req, "get_cart", rc->started, 404, "not-found", "this user has no active cart");
        return;
    }
    gw_etag(c->version, etag);
    if (rc->conditional && gw_etags_match(&rc->if_none_match, c->version)) {
        cart_http_header(req, "ETag", etag);
        gw_send_empty(t, req, "get_cart", rc->started, 304, "Not Modified");
        return;
    }
    if (json == NULL && (json = body = cart_to_json(c, &len)) == NULL) {
        gw_send_problem(t, req, "get_cart", rc->started, 503, "unavailable", "out of memory");
        return;
    }
    cart_http_header(req, "ETag", etag);
    cart_http_send(req, 200, "application/json", json, len);
    gw_observe(t, "get_cart", 200, rc->started);
    free(body);
}

static void on_cache_filled(void *arg, const redisReply *reply)
{
    gw_thread *t = arg;

    if (reply == NULL || reply->type == REDIS_REPLY_ERROR)
        cart_counter_inc(t->app->m_cache_fill_errors);
}

/* Puts a cart read from the shard into the cache, unless the cache has a newer one. */
static void fill_cache(gw_thread *t, const cart *c)
{
    char key[CART_CACHE_KEY_MAX], ver[24], ttl[16];
    char *json = cart_to_json(c, NULL);
    const char *argv[4] = {key, ver, json, ttl};
    size_t lens[4];

    if (json == NULL || cart_cache_key(c->user_id, key, sizeof key) == NULL) {
        free(json);
        return;
    }
    snprintf(ver, sizeof ver, "%" PRId64, c->version);
    snprintf(ttl, sizeof ttl, "%d", t->app->cfg->cache_ttl_s);
    for (int i = 0; i < 4; i++)
        lens[i] = strlen(argv[i]);
    gw_redis_script(t->redis, GW_SCRIPT_CACHE_PUT, on_cache_filled, t, 1, 3, argv, lens);
    free(json);
}

static void on_cart_rows(void *arg, const PGresult *res, const char *err)
{
    read_ctx *rc = arg;
    cart c;

    if (rc->link.req == NULL)
        goto out;
    if (res == NULL) {
        cart_log(CART_LOG_WARN, "shard read failed", CART_LS("user_id", rc->user_id), CART_LS("error", err), NULL);
        gw_send_problem(rc->t, rc->link.req, "get_cart", rc->started, 503, "unavailable",
                        "the cart's shard is unreachable");
        goto out;
    }
    cart_init(&c, rc->user_id);
    cart_pg_read_cart(res, 0, &c); /* no cart, or no memory for its lines: answered as it is */
    answer_cart(rc, &c, NULL, 0);
    if (c.state != CART_NONE)
        fill_cache(rc->t, &c);
    cart_cleanup(&c);
out:
    read_done(rc);
}

static void read_shard(read_ctx *rc)
{
    const char *params[1] = {rc->user_id};

    if (gw_pg_query(gw_shard_of(rc->t, rc->user_id), sql_get_cart, 1, params, on_cart_rows, rc) != 0) {
        gw_send_problem(rc->t, rc->link.req, "get_cart", rc->started, 503, "unavailable",
                        "the cart's shard is unreachable");
        read_done(rc);
    }
}

static void on_cache_entry(void *arg, const redisReply *reply)
{
    read_ctx *rc = arg;
    gw_app *app = rc->t->app;
    cart c;

    if (rc->link.req == NULL) {
        read_done(rc);
        return;
    }
    if (reply && reply->type == REDIS_REPLY_STRING) {
        /* Strict: a corrupt, stale-format or foreign entry is a miss, never an error. */
        cart_init(&c, rc->user_id);
        if (cart_from_json(&c, reply->str, reply->len) == CART_OK) {
            cart_counter_inc(app->m_cache_hits);
            answer_cart(rc, &c, c.state == CART_ACTIVE ? reply->str : NULL, reply->len);
            cart_cleanup(&c);
            read_done(rc);
            return;
        }
        cart_cleanup(&c);
        cart_counter_inc(app->m_cache_corrupt);
    } else if (reply == NULL || reply->type != REDIS_REPLY_NIL) {
        cart_counter_inc(app->m_cache_errors);
    }
    cart_counter_inc(app->m_cache_misses);
    read_shard(rc);
}

void gw_handle_get(gw_thread *t, h2o_req_t *req, const gw_route *r, int64_t started)
{
    read_ctx *rc = calloc(1, sizeof *rc);
    h2o_iovec_t inm;
    char key[CART_CACHE_KEY_MAX];
    const char *argv[2] = {"GET", key};
    size_t lens[2] = {3, 0};

    if (rc == NULL) {
        gw_send_problem(t, req, r->name, started, 503, "unavailable", "out of memory");
        return;
    }
    rc->t = t;
    rc->started = started;
    snprintf(rc->user_id, sizeof rc->user_id, "%s", r->user_id);
    inm = gw_header_list(req, H2O_TOKEN_IF_NONE_MATCH);
    if (inm.base) {
        if (gw_etags_parse(inm.base, inm.len, false, &rc->if_none_match) != 0) {
            free(rc);
            gw_send_problem(t, req, r->name, started, 400, "invalid-header",
                            "If-None-Match: expected \"*\" or a list of at most 16 entity tags such as \"3\"");
            return;
        }
        rc->conditional = true;
    }
    gw_link_request(&rc->link, req);
    cart_cache_key(rc->user_id, key, sizeof key);
    lens[1] = strlen(key);
    if (gw_redis_cmd(t->redis, on_cache_entry, rc, 2, argv, lens) != 0) {
        cart_counter_inc(t->app->m_cache_misses); /* Redis is away: straight to the shard */
        read_shard(rc);
    }
}
