/*
 * repeats.c: the first answer of a repeated write. When JetStream says it had the event_id
 * already (a retry with the same Idempotency-Key), no worker answers the publish: the answer is
 * read from the owning shard's processed_events (and the user's cart as it is now), and looked
 * for again every DUP_POLL_MS while the first attempt is still being applied, up to the write's
 * sync deadline. The first answer's request fingerprint is compared with the repeat's: another
 * request under the same key is answered 422, never with the first's outcome. A write with
 * respond-async looks once, for that comparison only: it is answered 202 otherwise. Loop thread
 * only, each on its own gw_thread and shard connections.
 *
 * An event_id names one request of one user wherever it was recorded: a merge's (derived from the
 * user and the key) is recorded on the guest's shard under the guest, so a write on the user's own
 * cart under the merge's key, or a merge under a key of a write, has its first answer on another
 * shard or under another user_id. So when the write's own shard has no row for it, every shard is
 * asked for the event_id alone: a row there with another fingerprint is 422, as on the home shard.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cartshard/cart_merge.h"
#include "cartshard/log.h"
#include "cartshard/partition.h"
#include "cartshard/pg.h"
#include "internal.h"

/* How often a repeated write looks for its first answer while the first is still being applied. */
#define DUP_POLL_MS 20

/* The columns before the cart's (CART_PG_CART_COLUMNS). */
#define FIRST_CART_COLUMN 3

/* The fingerprint compared is the row's own, but for a merge begun (202) whose settlement ($3)
 * carries the fingerprint of the key's first request (the user's side refused it for the key's
 * reuse; docs/internals/merge.md). */
static const char *const sql_first_answer =
    "SELECT p.http_status, coalesce(p.detail, ''), coalesce(CASE WHEN p.http_status = 202 THEN"
    " (SELECT s.request_fingerprint FROM processed_events s WHERE s.event_id = $3) END,"
    " p.request_fingerprint, ''), " CART_PG_CART_COLUMNS " FROM processed_events p"
    " LEFT JOIN LATERAL " CART_PG_LATEST_CART("p.user_id") " c ON true"
                                                           " LEFT JOIN cart_items i ON i.cart_id = c.cart_id"
                                                           " WHERE p.event_id = $1 AND p.user_id = $2";

/* The event_id's row under any user, on any shard: its fingerprint is all that is compared. */
static const char *const sql_elsewhere =
    "SELECT coalesce(request_fingerprint, '') FROM processed_events WHERE event_id = $1 AND user_id <> $2";

static int start_query(gw_write *w, uint32_t shard, bool elsewhere);

/* Takes the first answer of the write's key from its processed_events row: its status and detail,
 * and for a cart the user's cart as it is now. */
static void take_first_answer(gw_write *w, const PGresult *res)
{
    cart c;
    int status = atoi(PQgetvalue(res, 0, 0));

    w->replied = true;
    w->reply_status = status;
    snprintf(w->reply_detail, sizeof w->reply_detail, "%s", PQgetvalue(res, 0, 1));
    if (status == 200 || status == 201) {
        cart_init(&c, w->user_id);
        cart_pg_read_cart(res, FIRST_CART_COLUMN, &c);
        w->reply_body = cart_to_json(&c, &w->reply_len); /* NULL when the user has no cart */
        w->reply_version = c.version;
        cart_cleanup(&c);
    }
}

/* No first answer yet (or the shard is away): a respond-async write is settled, a sync one looks
 * again soon, until the sync wait runs out (then 202: the event is stored and will be applied). */
static void not_found(gw_write *w)
{
    if (w->async) {
        /* Not committed yet, or the shard is away: nothing to compare, and the event is stored. */
        w->dup_wait = false;
        gw_write_settle(w);
        return;
    }
    gw_write_rearm(w, DUP_POLL_MS);
}

/* Asks the shards from `from` on for the event_id under another user (sql_elsewhere); none left
 * (or none could be asked): not_found. */
static void look_elsewhere(gw_write *w, uint32_t from)
{
    for (uint32_t s = from; s < w->t->app->cfg->nshards; s++)
        if (start_query(w, s, true) == 0)
            return;
    not_found(w);
}

static void on_first_answer(void *arg, const PGresult *res, const char *err)
{
    gw_repeat_query *lk = arg;
    gw_write *w = lk->w;
    uint32_t shard = lk->shard;
    bool elsewhere = lk->elsewhere;

    free(lk);
    if (w == NULL)
        return;
    w->lookup = NULL;
    if (w->replied)
        return; /* the worker's own reply came first */
    if (res && PQntuples(res) > 0) {
        if (elsewhere) {
            /* The same request recorded under another user cannot be: only a clash answers. */
            if (!cart_fingerprints_clash(PQgetvalue(res, 0, 0), w->fingerprint)) {
                look_elsewhere(w, shard + 1);
                return;
            }
            w->dup_wait = false;
            w->key_reused = true;
            w->replied = true;
            gw_write_settle(w);
            return;
        }
        w->dup_wait = false;
        if (cart_fingerprints_clash(PQgetvalue(res, 0, 2), w->fingerprint)) {
            w->key_reused = true;
            w->replied = true;
        } else if (!w->async) {
            take_first_answer(w, res);
        }
        gw_write_settle(w);
        return;
    }
    if (res == NULL)
        cart_log(CART_LOG_DEBUG, "first answer lookup failed", CART_LS("event_id", w->event_id), CART_LS("error", err),
                 NULL);
    look_elsewhere(w, elsewhere ? shard + 1 : 0);
}

/* Queues the lookup of the write's first answer on `shard`: its own row (sql_first_answer) or, with
 * `elsewhere`, the event_id's under another user. 0, or -1 when it could not be queued. */
static int start_query(gw_write *w, uint32_t shard, bool elsewhere)
{
    char settled[CART_MERGE_ID_MAX + 1];
    const char *params[3] = {w->event_id, w->user_id,
                             cart_merge_derived_id(settled, CART_MERGE_SETTLED_PREFIX, w->event_id)};
    gw_repeat_query *lk = malloc(sizeof *lk);

    if (lk == NULL)
        return -1;
    lk->w = w;
    lk->shard = shard;
    lk->elsewhere = elsewhere;
    if (gw_pg_query(w->t->shards[shard], elsewhere ? sql_elsewhere : sql_first_answer, elsewhere ? 2 : 3, params,
                    on_first_answer, lk) != 0) {
        free(lk);
        return -1;
    }
    w->lookup = lk;
    /* Whatever the shard does, the client is answered by the deadline. */
    gw_write_rearm(w, INT64_MAX);
    return 0;
}

void gw_repeat_lookup(gw_write *w)
{
    const cart_config *cfg = w->t->app->cfg;
    uint32_t home = cart_shard_of(cart_partition_of(w->user_id, strlen(w->user_id), cfg->partitions), cfg->partitions,
                                  cfg->nshards);

    if (w->lookup || w->replied)
        return;
    if (start_query(w, home, false) != 0)
        gw_write_rearm(w, DUP_POLL_MS); /* could not even queue the query: try again soon */
}
