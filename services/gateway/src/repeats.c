/*
 * repeats.c: the first answer of a repeated write. When JetStream says it had the event_id
 * already (a retry with the same Idempotency-Key), no worker answers the publish: the answer is
 * read from the owning shard's processed_events (and the user's cart as it is now), and looked
 * for again every DUP_POLL_MS while the first attempt is still being applied, up to the write's
 * sync deadline. The first answer's request fingerprint is compared with the repeat's: another
 * request under the same key is answered 422, never with the first's outcome. A write with
 * respond-async looks once, for that comparison only: it is answered 202 otherwise. Loop thread
 * only, each on its own gw_thread and shard connections.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>

#include "cartshard/log.h"
#include "cartshard/pg.h"
#include "internal.h"

/* How often a repeated write looks for its first answer while the first is still being applied. */
#define DUP_POLL_MS 20

/* The columns before the cart's (CART_PG_CART_COLUMNS). */
#define FIRST_CART_COLUMN 3

static const char *const sql_first_answer =
    "SELECT p.http_status, coalesce(p.detail, ''), coalesce(p.request_fingerprint, ''), " CART_PG_CART_COLUMNS
    " FROM processed_events p"
    " LEFT JOIN LATERAL " CART_PG_LATEST_CART("p.user_id") " c ON true"
                                                           " LEFT JOIN cart_items i ON i.cart_id = c.cart_id"
                                                           " WHERE p.event_id = $1 AND p.user_id = $2";

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

static void on_first_answer(void *arg, const PGresult *res, const char *err)
{
    gw_repeat_query *lk = arg;
    gw_write *w = lk->w;

    free(lk);
    if (w == NULL)
        return;
    w->lookup = NULL;
    if (w->replied)
        return; /* the worker's own reply came first */
    if (res && PQntuples(res) > 0) {
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
    if (w->async) {
        /* Not committed yet, or the shard is away: nothing to compare, and the event is stored. */
        w->dup_wait = false;
        gw_write_settle(w);
        return;
    }
    /* Not applied yet (the first attempt is still on its way), or the shard is away: look again
     * soon, until the sync wait runs out (then 202: the event is stored and will be applied). */
    gw_write_rearm(w, DUP_POLL_MS);
}

void gw_repeat_lookup(gw_write *w)
{
    const char *params[2] = {w->event_id, w->user_id};
    gw_repeat_query *lk;

    if (w->lookup || w->replied)
        return;
    lk = malloc(sizeof *lk);
    if (lk && gw_pg_query(gw_shard_of(w->t, w->user_id), sql_first_answer, 2, params, on_first_answer, lk) == 0) {
        lk->w = w;
        w->lookup = lk;
        /* Whatever the shard does, the client is answered by the deadline. */
        gw_write_rearm(w, INT64_MAX);
        return;
    }
    free(lk);
    gw_write_rearm(w, DUP_POLL_MS); /* could not even queue the query: try again soon */
}
