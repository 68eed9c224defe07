/*
 * apply.c: a batch of events applied in one transaction. The events are decoded (an undecodable
 * one, one outside its domain, or one for another partition, goes to the DLQ), the batch reads
 * what it builds on (prior answers, the latest carts, into the working set), applies every event
 * in memory and writes the net effect (core/batch.c), the offsets and the COMMIT. A write the shard refuses redoes the
 * batch event by event to find the event at fault, which is dead-lettered. After the commit, relay.c sends what goes
 * out.
 *
 * Threads: the runner thread only (offsets under cs_shard.mu).
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cartshard/bus.h"
#include "cartshard/cart_merge.h"
#include "cartshard/clock.h"
#include "cartshard/log.h"
#include "cartshard/partition.h"
#include "runner_internal.h"

/* Decodes every item; an undecodable one, one outside its domain (its quantity: the decoder checks
 * the rest) or one for another partition is marked for the DLQ. */
static void decode_items(cs_shard *sh, cs_item *items, size_t n)
{
    uint32_t parts = sh->w->cfg->partitions;
    int32_t max_quantity = sh->w->cfg->max_quantity;

    for (size_t i = 0; i < n; i++) {
        cs_item *it = &items[i];
        const char *data = natsMsg_GetData(it->msg);
        int len = natsMsg_GetDataLength(it->msg);
        const char *reply_to = NULL;
        char err[200] = "";

        if (cart_event_decode(data ? data : "", (size_t)len, &it->ev, err, sizeof err) != CART_OK ||
            cart_event_check_quantity(&it->ev, max_quantity, err, sizeof err) != CART_OK) {
            snprintf(it->dlq_reason, sizeof it->dlq_reason, "invalid event: %s", err);
            continue;
        }
        if (cart_partition_of(it->ev.user_id, strlen(it->ev.user_id), parts) != it->part->id) {
            snprintf(it->dlq_reason, sizeof it->dlq_reason, "wrong partition: user %s belongs to partition %u, not %u",
                     it->ev.user_id, cart_partition_of(it->ev.user_id, strlen(it->ev.user_id), parts), it->part->id);
            continue;
        }
        it->decoded = true;
        it->wants_reply =
            natsMsgHeader_Get(it->msg, CART_HDR_REPLY_TO, &reply_to) == NATS_OK && reply_to && *reply_to != '\0';
        /* A merge's later steps carry the waiting gateway's subject in their data. */
        if (it->ev.type == CART_EV_LINES_MERGED || it->ev.type == CART_EV_MERGE_SETTLED)
            it->wants_reply = it->ev.merge.reply_to[0] != '\0';
    }
}

static void item_reset(cs_item *it)
{
    free(it->cart_json);
    free(it->change_json);
    free(it->saga_json);
    it->saga_json = NULL;
    it->saga_outbox_id = 0;
    it->cart_json = NULL;
    it->cart_version = 0;
    it->change_json = NULL;
    it->changed = false;
    it->http_status = 0;
    it->detail[0] = '\0';
    it->outbox_at = 0;
    it->outbox_id = 0;
    it->duplicate = false;
    it->replayed = false;
    it->key_reused = false;
    it->first_fingerprint[0] = '\0';
}

/* cs_store_processed_fn: an answer found in processed_events becomes its event_id's first answer
 * in the working set (`ud`). */
typedef struct prior_ctx {
    cs_working_set *ws;
    bool out_of_memory; /* an answer could not be recorded */
} prior_ctx;

static void on_prior(void *ud, const cs_working_answer *a)
{
    prior_ctx *ctx = ud;

    if (cs_working_set_answered(ctx->ws, a) != 0)
        ctx->out_of_memory = true;
}

/* Records the answer just given to `it` as its event_id's first answer. 0, or -1 out of memory. */
static int record_answer(cs_working_set *ws, const cs_item *it)
{
    cs_working_answer a;

    snprintf(a.event_id, sizeof a.event_id, "%s", it->ev.event_id);
    a.http_status = it->http_status;
    snprintf(a.detail, sizeof a.detail, "%s", it->detail);
    a.stream_seq = it->seq;
    snprintf(a.fingerprint, sizeof a.fingerprint, "%s", it->ev.request_fingerprint);
    return cs_working_set_answered(ws, &a);
}

/* Opens the batch's transaction and reads what it builds on, in one round trip: the first answers
 * of its events processed before (into `ws`), and the latest cart of each of its users (for
 * expiry: of the users already in `ws`). */
cart_status cs_apply_begin(cs_shard *sh, cs_working_set *ws, cs_item *items, size_t n, cs_store_err *e)
{
    /* Each event's own id; a lines_merged's merge id too (the merge's key under the user), and a
     * merge_requested's settlement id (how a merge begun here ended: merge_repeat). */
    const char **ids = malloc((2 * n + 1) * sizeof *ids);
    char(*settled)[CART_MERGE_ID_MAX + 1] = malloc((n ? n : 1) * sizeof *settled);
    prior_ctx ctx = {ws, false};
    cs_store_reads r = {0};
    cart **carts = NULL;
    cart_status st = CART_OK;

    if (ids == NULL || settled == NULL) {
        free(ids);
        free(settled);
        return cs_store_out_of_memory(e);
    }
    for (size_t i = 0; i < n && st == CART_OK; i++) {
        if (!items[i].decoded || items[i].dlq_reason[0])
            continue;
        ids[r.nevents++] = items[i].ev.event_id;
        if (items[i].ev.type == CART_EV_LINES_MERGED)
            ids[r.nevents++] = items[i].ev.merge.merge_id;
        if (items[i].ev.type == CART_EV_MERGE_REQUESTED)
            ids[r.nevents++] = cart_merge_derived_id(settled[i], CART_MERGE_SETTLED_PREFIX, items[i].ev.event_id);
        if (cs_working_set_add(ws, items[i].ev.user_id) == NULL)
            st = cs_store_out_of_memory(e);
    }
    carts = malloc((ws->ncarts ? ws->ncarts : 1) * sizeof *carts);
    if (st == CART_OK && carts == NULL)
        st = cs_store_out_of_memory(e);
    if (st == CART_OK) {
        for (size_t i = 0; i < ws->ncarts; i++)
            carts[i] = &ws->carts[i].c;
        r.event_ids = ids;
        r.on_processed = on_prior;
        r.ud = &ctx;
        r.carts = carts;
        r.ncarts = ws->ncarts;
        st = cs_store_begin_batch(sh->pg, &r, e);
        if (st == CART_OK && ctx.out_of_memory)
            st = cs_store_out_of_memory(e);
    }
    free(carts);
    free(settled);
    free(ids);
    return st;
}

/* Records a merge's next step for the outbox: `json` (taken) goes as event `event_id` to the
 * partition of `user`. 0, or -1 when out of memory. */
static int add_saga_step(cs_shard *sh, cs_item *it, char *json, const char *prefix, const char *merge_id,
                         const char *user)
{
    uint32_t part = cart_partition_of(user, strlen(user), sh->w->cfg->partitions);

    it->saga_json = json;
    cart_merge_derived_id(it->saga_msg_id, prefix, merge_id);
    cart_bus_subject(it->saga_subject, CART_SUBJ_EVENTS, part);
    return cs_batch_outbox_add(&sh->batch, it->part->id, it->saga_subject, it->saga_msg_id, json, &it->saga_outbox_at);
}

/* A refusal of a merge step as its outcome: nothing changed. */
static void refused(cart_outcome *o, cart_status st, int http_status, const char *detail)
{
    memset(o, 0, sizeof *o);
    o->status = st;
    o->http_status = http_status;
    snprintf(o->detail, sizeof o->detail, "%s", detail);
}

/* cart.lines_merged: the guest's lines joined to the user's cart `c`, and the lines that changed
 * recorded in the batch (cs_batch_change records the row). A body whose lines cannot be read is
 * refused 400, so that the guest still hears back. CART_OK or CART_ERR_NOMEM. */
static cart_status apply_lines_merged(cs_shard *sh, cs_item *it, cart *c, const cart_limits *lim, int64_t now,
                                      const char *new_id, cart_outcome *o)
{
    const char *data = natsMsg_GetData(it->msg);
    cart guest, before;
    char err[160] = "";
    cart_status st;

    cart_init(&guest, it->ev.merge.peer);
    cart_init(&before, c->user_id);
    st = cart_merge_lines_decode(data ? data : "", (size_t)natsMsg_GetDataLength(it->msg), &guest, err, sizeof err);
    if (st == CART_ERR_INVALID) {
        refused(o, CART_ERR_INVALID, 400, err);
        st = CART_OK;
        goto out;
    }
    for (size_t i = 0; st == CART_OK && c->state == CART_ACTIVE && i < c->nitems; i++)
        st = cart_put_line(&before, c->items[i].sku, c->items[i].quantity);
    if (st != CART_OK || (st = cart_merge_lines(c, &guest, it->ev.merge.strategy, lim, now, new_id, o)) != CART_OK ||
        !o->changed)
        goto out;
    if (cs_batch_change(&sh->batch, c, o, it->part->id) != 0) {
        st = CART_ERR_NOMEM;
        goto out;
    }
    /* A new cart starts without the lines of the one before it. */
    for (size_t i = 0; !o->created && i < before.nitems && st == CART_OK; i++)
        if (cart_find_line(c, before.items[i].sku) == NULL &&
            cs_batch_put_line(&sh->batch, c->cart_id, before.items[i].sku, 0, NULL) != 0)
            st = CART_ERR_NOMEM;
    for (size_t i = 0; i < c->nitems && st == CART_OK; i++)
        if (cs_batch_put_line(&sh->batch, c->cart_id, c->items[i].sku, c->items[i].quantity, &c->items[i]) != 0)
            st = CART_ERR_NOMEM;
out:
    cart_cleanup(&guest);
    cart_cleanup(&before);
    return st;
}

/* A merge the guest's side refused (`status`, `detail`) still goes to the user's side, as a
 * lines_merged without lines: the user's worker records the merge's key under the user, or finds
 * the key used there for another request, and answers (docs/internals/merge.md, Idempotency
 * keys). A merge of a cart into itself stays here: the user's side is this side. 0, or -1 when out
 * of memory. */
static int forward_refusal(cs_shard *sh, cs_item *it, const cart *guest, int status, const char *detail, int64_t now)
{
    const char *reply_to = NULL;
    char *json = NULL;

    if (strcmp(it->ev.merge.peer, it->ev.user_id) == 0 || status < 400)
        return 0;
    if (natsMsgHeader_Get(it->msg, CART_HDR_REPLY_TO, &reply_to) != NATS_OK)
        reply_to = NULL;
    if (cart_merge_refused_event(&it->ev, guest, status, detail, reply_to, now, &json, NULL) != CART_OK)
        return -1;
    return add_saga_step(sh, it, json, CART_MERGE_LINES_PREFIX, it->ev.event_id, it->ev.merge.peer);
}

/* The next step of a merge whose step `it` was just applied to `c` with outcome `o`: the guest's
 * lines to the user, or the user's answer back to the guest. 0, or -1 when out of memory. */
static int merge_next_step(cs_shard *sh, cs_item *it, const cart *c, const cart_outcome *o, int64_t now)
{
    const char *reply_to = NULL;
    char *json = NULL;

    if (it->ev.type == CART_EV_MERGE_REQUESTED && o->changed) {
        if (natsMsgHeader_Get(it->msg, CART_HDR_REPLY_TO, &reply_to) != NATS_OK)
            reply_to = NULL;
        if (cart_merge_lines_event(&it->ev, c, reply_to, now, &json, NULL) != CART_OK)
            return -1;
        return add_saga_step(sh, it, json, CART_MERGE_LINES_PREFIX, it->ev.event_id, it->ev.merge.peer);
    }
    if (it->ev.type == CART_EV_MERGE_REQUESTED && o->status != CART_OK)
        return forward_refusal(sh, it, c, o->http_status, o->detail, now);
    /* A lines_merged that carried the guest's refusal has nothing to settle. */
    if (it->ev.type == CART_EV_LINES_MERGED && it->ev.merge.status == 0) {
        if (cart_merge_settled_event(&it->ev, o->status == CART_OK ? 200 : o->http_status, o->detail,
                                     it->key_reused ? it->first_fingerprint : NULL, now, &json, NULL) != CART_OK)
            return -1;
        return add_saga_step(sh, it, json, CART_MERGE_SETTLED_PREFIX, it->ev.merge.merge_id, it->ev.merge.peer);
    }
    return 0;
}

/* cart.lines_merged at the user's side. The merge's event id is the one every write of the user
 * under the merge's Idempotency-Key has, so it is first judged against what this shard holds
 * under it: another request's (another fingerprint) makes the merge a 422 key-reused refusal,
 * settled back to the guest. Otherwise the lines are joined (apply_lines_merged), or the guest's
 * side's refusal that the event carries is taken as the outcome, and *record_key says that the
 * merge's key is to be recorded here, under the user, with the outcome (record_merge_key).
 * CART_OK or CART_ERR_NOMEM. */
static cart_status apply_lines_step(cs_shard *sh, cs_working_set *ws, cs_item *it, cart *c, const cart_limits *lim,
                                    int64_t now, const char *new_id, cart_outcome *o, bool *record_key)
{
    const cs_working_answer *key = cs_working_set_answer_of(ws, it->ev.merge.merge_id);

    /* A lines_merged from before merges carried their fingerprint has nothing to compare. */
    *record_key = key == NULL && it->ev.request_fingerprint[0] != '\0';
    if (key != NULL && cart_fingerprints_clash(key->fingerprint, it->ev.request_fingerprint)) {
        refused(o, CART_ERR_CONFLICT, 422, CS_WORKING_REUSED_DETAIL);
        /* The answer carries the key's first request's fingerprint, which tells the gateway (and,
         * through the settlement, the guest's side) that the key was reused. */
        it->key_reused = true;
        snprintf(it->first_fingerprint, sizeof it->first_fingerprint, "%s", key->fingerprint);
        cart_counter_inc(sh->w->m_key_reused);
        return CART_OK;
    }
    if (it->ev.merge.status != 0) {
        refused(o, CART_ERR_CONFLICT, it->ev.merge.status, it->ev.merge.detail);
        return CART_OK;
    }
    return apply_lines_merged(sh, it, c, lim, now, new_id, o);
}

/* Records the merge's key (its event id) under the user, on the user's shard, with the merge's
 * outcome here and its fingerprint: a later write of the user under that key is then judged
 * against it like any repeat. 0, or -1 when out of memory. */
static int record_merge_key(cs_shard *sh, cs_working_set *ws, const cs_item *it, int64_t version)
{
    cart_event key = it->ev;
    cs_working_answer a;

    snprintf(key.event_id, sizeof key.event_id, "%s", it->ev.merge.merge_id);
    snprintf(a.event_id, sizeof a.event_id, "%s", key.event_id);
    a.http_status = it->http_status;
    snprintf(a.detail, sizeof a.detail, "%s", it->detail);
    a.stream_seq = 0;
    snprintf(a.fingerprint, sizeof a.fingerprint, "%s", key.request_fingerprint);
    return cs_batch_mark_processed(&sh->batch, &key, it->part->id, 0, it->http_status, version, it->detail) == 0 &&
                   cs_working_set_answered(ws, &a) == 0
               ? 0
               : -1;
}

/* A merge request met again with its own fingerprint (`rep`, a replay of `*first`). A merge begun
 * here (202) whose lines the user's side refused because the key's first request was another
 * write of the user has a settlement carrying that request's fingerprint: the repeat is judged
 * against it, so that it is 422 like the merge was, not 202. */
static cs_working_repeat merge_repeat(const cs_working_set *ws, const cs_item *it, cs_working_repeat rep,
                                      const cs_working_answer **first)
{
    char id[CART_MERGE_ID_MAX + 1];
    const cs_working_answer *settled;

    if ((*first)->http_status != 202)
        return rep;
    settled = cs_working_set_answer_of(ws, cart_merge_derived_id(id, CART_MERGE_SETTLED_PREFIX, it->ev.event_id));
    if (settled == NULL || !cart_fingerprints_clash(settled->fingerprint, it->ev.request_fingerprint))
        return rep;
    *first = settled;
    return CS_WORKING_KEY_REUSED;
}

/* Answers an item whose event_id has a first answer (`first`, judged `rep`) without applying it:
 * the first answer again with the cart as it is now, or 422 when the event_id was used for another
 * request. Nothing is recorded either way, so the first answer stays. 0, or -1 when out of
 * memory. */
static int answer_repeat(cs_shard *sh, cs_item *it, const cart *c, cs_working_repeat rep,
                         const cs_working_answer *first)
{
    it->duplicate = true;
    snprintf(it->first_fingerprint, sizeof it->first_fingerprint, "%s", first->fingerprint);
    if (rep == CS_WORKING_KEY_REUSED) {
        it->key_reused = true;
        it->http_status = 422;
        snprintf(it->detail, sizeof it->detail, "%s", CS_WORKING_REUSED_DETAIL);
        cart_counter_inc(sh->w->m_key_reused);
        if (cart_log_enabled(CART_LOG_DEBUG))
            cart_log(CART_LOG_DEBUG, "event_id reused for another request", CART_LS("event_id", it->ev.event_id),
                     CART_LS("trace", it->ev.trace), CART_LS("fingerprint", it->ev.request_fingerprint),
                     CART_LS("first_fingerprint", first->fingerprint), NULL);
        return 0;
    }
    it->replayed = rep == CS_WORKING_REPLAY;
    it->http_status = first->http_status;
    snprintf(it->detail, sizeof it->detail, "%s", first->detail);
    it->cart_json =
        it->wants_reply && (first->http_status == 200 || first->http_status == 201) ? cart_to_json(c, NULL) : NULL;
    it->cart_version = c->version;
    cart_counter_inc(sh->w->m_duplicates);
    /* A merge the guest's side refused was answered by the user's side, which may have found its
     * key used for another request: the repeat goes there again (under the same id), to get the
     * same answer. */
    if (it->ev.type == CART_EV_MERGE_REQUESTED && first->http_status >= 400 &&
        forward_refusal(sh, it, c, first->http_status, first->detail, cart_now_ms()) != 0)
        return -1;
    return 0;
}

/* The quantity of the line an item event names in the user's active cart before the event (0
 * when there is none, or for other events). */
static int32_t item_line_quantity(const cart *c, const cart_event *ev)
{
    const cart_item *line;

    if (c->state != CART_ACTIVE || ev->sku[0] == '\0')
        return 0;
    line = cart_find_line(c, ev->sku);
    return line != NULL ? line->quantity : 0;
}

/* What an applied change did, for its notice: whether it started a cart, and the line it touched
 * (an item event's sku, from `before` to the outcome's quantity; a new cart had no line). */
static void describe_change(cart_change_what *what, const cart_outcome *o, int32_t before)
{
    memset(what, 0, sizeof *what);
    what->created = o->created;
    if (!o->line_changed || o->sku[0] == '\0')
        return;
    what->has_line = true;
    snprintf(what->sku, sizeof what->sku, "%s", o->sku);
    what->quantity_before = o->created ? 0 : before;
    what->quantity_after = o->line_quantity;
}

/* Applies one decoded item to the batch's carts (cs_apply_begin read them) and records what it
 * writes in the shard's batch; an item whose event_id was answered before is answered again
 * instead. CART_OK, or CART_ERR_NOMEM. */
static cart_status apply_item(cs_shard *sh, cs_working_set *ws, cs_item *items, size_t idx, cs_store_err *e)
{
    cs_item *it = &items[idx];
    const cart_config *cfg = sh->w->cfg;
    cart_limits lim = {cfg->max_quantity, cfg->max_lines};
    cart_outcome o;
    char new_id[37];
    int64_t now = cart_now_ms();
    cs_working_cart *wc = cs_working_set_find(ws, it->ev.user_id);
    const cs_working_answer *first = NULL;
    cs_working_repeat rep = cs_working_set_judge(ws, it->ev.event_id, it->ev.request_fingerprint, it->seq, &first);
    bool record_key = false;
    cart_change_what what;
    int32_t line_before;
    cart *c;

    if (wc == NULL)
        return cs_store_out_of_memory(e); /* cs_apply_begin added every user, or ran out of memory doing it */
    c = &wc->c;
    if (rep == CS_WORKING_REPLAY && it->ev.type == CART_EV_MERGE_REQUESTED)
        rep = merge_repeat(ws, it, rep, &first);
    if (rep != CS_WORKING_NEW)
        return answer_repeat(sh, it, c, rep, first) == 0 ? CART_OK : cs_store_out_of_memory(e);
    cart_uuid_v4(new_id);
    line_before = item_line_quantity(c, &it->ev);
    if (it->ev.type == CART_EV_LINES_MERGED) {
        if (apply_lines_step(sh, ws, it, c, &lim, now, new_id, &o, &record_key) != CART_OK)
            return cs_store_out_of_memory(e);
    } else if (cart_apply(c, &it->ev, &lim, now, new_id, &o) != CART_OK) {
        return cs_store_out_of_memory(e);
    }
    it->http_status = o.http_status;
    snprintf(it->detail, sizeof it->detail, "%s", o.detail);
    if (merge_next_step(sh, it, c, &o, now) != 0)
        return cs_store_out_of_memory(e);
    if (o.status == CART_OK && o.changed) {
        if (it->ev.type != CART_EV_LINES_MERGED && cs_batch_change(&sh->batch, c, &o, it->part->id) != 0)
            return cs_store_out_of_memory(e);
        it->changed = true;
        wc->changed = true;
        describe_change(&what, &o, line_before);
        it->change_json =
            cart_change_to_json(c, it->ev.event_id, cart_merge_notice_type(&it->ev, c), it->part->id, now, &what, NULL);
        if (it->change_json == NULL ||
            cs_relay_outbox_add(sh, it->part->id, it->ev.event_id, it->change_json, &it->outbox_at) != 0)
            return cs_store_out_of_memory(e);
    }
    if (o.status != CART_OK) {
        cart_counter_inc(sh->w->m_rejected);
        if (cart_log_enabled(CART_LOG_DEBUG))
            cart_log(CART_LOG_DEBUG, "event refused", CART_LS("event_id", it->ev.event_id),
                     CART_LS("trace", it->ev.trace), CART_LI("status", it->http_status), CART_LS("detail", o.detail),
                     NULL);
    }
    /* A merge refused for its key's reuse is recorded with the key's first fingerprint: a copy of
     * its step met later is judged a reuse again. */
    if (it->key_reused)
        snprintf(it->ev.request_fingerprint, sizeof it->ev.request_fingerprint, "%s", it->first_fingerprint);
    if (cs_batch_mark_processed(&sh->batch, &it->ev, it->part->id, it->seq, it->http_status, c->version, it->detail) !=
            0 ||
        record_answer(ws, it) != 0 || (record_key && record_merge_key(sh, ws, it, c->version) != 0))
        return cs_store_out_of_memory(e);
    snprintf(it->first_fingerprint, sizeof it->first_fingerprint, "%s", it->ev.request_fingerprint);
    /* The reply carries the cart as this event left it (none after a delete or a refusal on no cart). */
    it->cart_json =
        it->wants_reply && (c->state == CART_ACTIVE || (o.status == CART_OK && c->state == CART_CHECKED_OUT))
            ? cart_to_json(c, NULL)
            : NULL;
    it->cart_version = c->version;
    return CART_OK;
}

/* Writes what the shard's batch recorded for items[from, to) (and commits, with `commit`) and
 * gives the changed ones their outbox ids; the batch is then empty. */
static cart_status write_batch(cs_shard *sh, cs_item *items, size_t from, size_t to, bool commit, cs_store_err *e)
{
    if (cs_store_write(sh->pg, &sh->batch, &sh->sql, commit, e) != CART_OK)
        return CART_ERR_UNAVAILABLE;
    for (size_t i = from; i < to; i++) {
        if (items[i].changed)
            items[i].outbox_id = sh->batch.outbox[items[i].outbox_at].id;
        if (items[i].saga_json)
            items[i].saga_outbox_id = sh->batch.outbox[items[i].saga_outbox_at].id;
    }
    cs_batch_reset(&sh->batch);
    return CART_OK;
}

/* How one try at a batch's transaction ended. */
typedef enum try_result {
    TRY_COMMITTED = 0, /* written and committed */
    TRY_FAILED,        /* a statement (or the COMMIT) failed: `e` says why, `failed_at` at which event */
    TRY_LOST           /* a dead letter could not be stored: nothing of the batch may be skipped */
} try_result;

/* One try at a batch: reads what it builds on, dead-letters what must go, applies the rest and
 * writes it all (each event on its own with `one_by_one`), then commits. On TRY_FAILED,
 * `failed_at` is the event whose own write failed (n when no one event is at fault); the
 * transaction is left for the caller to roll back in every case but TRY_COMMITTED. */
static try_result try_batch(cs_shard *sh, cs_item *items, size_t n, cs_working_set *ws, bool one_by_one,
                            size_t *failed_at, cs_store_err *e)
{
    size_t written = 0;

    cs_working_set_clear(ws);
    cs_batch_reset(&sh->batch);
    for (size_t i = 0; i < n; i++)
        item_reset(&items[i]);
    cs_relay_take_acked(sh);
    if (cs_apply_begin(sh, ws, items, n, e) != CART_OK)
        return TRY_FAILED;
    for (size_t i = 0; i < n; i++) {
        cs_item *it = &items[i];
        if (it->dlq_reason[0]) {
            if (cs_relay_dead_letter(sh, it) != 0) {
                snprintf(e->msg, sizeof e->msg, "dead letter could not be stored");
                return TRY_LOST;
            }
            /* The writer is told, now and on every retry of its event_id, that its change
             * was refused: it is recorded as answered 400, never left as a silent 202. */
            if (it->refused) {
                it->http_status = 400;
                snprintf(it->detail, sizeof it->detail, "the shard refused the change; it is kept in CARTS_DLQ");
                if (cs_batch_mark_processed(&sh->batch, &it->ev, it->part->id, it->seq, it->http_status, 0,
                                            it->detail) != 0 ||
                    record_answer(ws, it) != 0) {
                    cs_store_out_of_memory(e);
                    return TRY_FAILED;
                }
                snprintf(it->first_fingerprint, sizeof it->first_fingerprint, "%s", it->ev.request_fingerprint);
            }
        } else if (apply_item(sh, ws, items, i, e) != CART_OK) {
            return TRY_FAILED;
        }
        if (one_by_one) {
            if (write_batch(sh, items, written, i + 1, false, e) != CART_OK) {
                *failed_at = i;
                return TRY_FAILED;
            }
            written = i + 1;
        }
    }
    /* Offsets: the last sequence of every partition in the batch. */
    for (size_t i = 0; i < n; i++) {
        if (cs_batch_offset_set(&sh->batch, items[i].part->id, items[i].seq) != 0) {
            cs_store_out_of_memory(e);
            return TRY_FAILED;
        }
    }
    /* The rest of the writes and the COMMIT, in one round trip. A COMMIT that fails is taken
     * like a refused write: rolled back, and the batch is redone event by event. */
    if (write_batch(sh, items, written, n, true, e) != CART_OK)
        return TRY_FAILED;
    return TRY_COMMITTED;
}

/* Applies a batch in one transaction; returns 0 when it committed (or when nothing needed to),
 * -1 when the session failed (the batch is dropped and will be replayed).
 *
 * The batch's writes go as one statement per table (batch.h). When the shard refuses one of them
 * for its data (a constraint, a trigger), the transaction is redone writing each event on its
 * own, which finds the event at fault; that one is dead-lettered and the rest redone. */
int cs_apply_batch(cs_shard *sh, cs_item *items, size_t n, cs_working_set *ws)
{
    cs_store_err e = {0};
    int64_t t0 = cart_mono_ms();
    size_t applied = 0;
    bool one_by_one = false;

    decode_items(sh, items, n);
    for (int attempt = 0;; attempt++) {
        size_t failed_at = n;
        try_result r = try_batch(sh, items, n, ws, one_by_one, &failed_at, &e);

        if (r == TRY_COMMITTED)
            break;
        cs_store_exec(sh->pg, "ROLLBACK", &e);
        /* The session is given up (the batch is replayed from the committed offsets) when a dead
         * letter was not stored, PostgreSQL is away, the redoing does not end, or a batch written
         * event by event still fails with no one event at fault. */
        if (r == TRY_LOST || e.transient || attempt > (int)n || (failed_at == n && one_by_one)) {
            if (e.transient)
                cart_counter_inc(sh->w->m_pg_errors);
            cs_session_drop(sh, e.msg[0] ? e.msg : "transaction failed");
            return -1;
        }
        if (failed_at == n) {
            one_by_one = true;
            cart_counter_inc(sh->w->m_redone);
            continue;
        }
        /* The data is at fault: this one event cannot be stored. Dead-letter it, redo the rest. */
        items[failed_at].refused = items[failed_at].decoded;
        snprintf(items[failed_at].dlq_reason, sizeof items[failed_at].dlq_reason, "rejected by the shard: %s", e.msg);
    }

    /* Committed: the partitions' offsets move, then the cache, the acks, the replies and the
     * change notices go out (relay.c). */
    pthread_mutex_lock(&sh->mu);
    for (size_t i = 0; i < n; i++)
        if (items[i].seq > items[i].part->committed && items[i].part->owned)
            items[i].part->committed = items[i].seq;
    pthread_mutex_unlock(&sh->mu);
    cs_relay_committed(sh, items, n, ws);
    for (size_t i = 0; i < n; i++) {
        cs_item *it = &items[i];
        if (it->decoded && !it->dlq_reason[0] && !it->duplicate) {
            applied++;
            if (cart_log_enabled(CART_LOG_DEBUG))
                cart_log(CART_LOG_DEBUG, "event applied", CART_LS("event_id", it->ev.event_id),
                         CART_LS("trace", it->ev.trace), CART_LS("type", cart_event_type_name(it->ev.type)),
                         CART_LI("partition", it->part->id), CART_LI("seq", (long long)it->seq),
                         CART_LI("status", it->http_status), NULL);
        }
    }
    cart_counter_add(sh->w->m_applied, (double)applied);
    cart_counter_inc(sh->w->m_batches);
    cart_histogram_observe(sh->w->m_batch_seconds, (double)(cart_mono_ms() - t0) / 1000.0);
    if (cart_log_enabled(CART_LOG_DEBUG))
        cart_log(CART_LOG_DEBUG, "batch committed", CART_LS("shard", sh->name), CART_LI("events", n),
                 CART_LI("ms", cart_mono_ms() - t0), NULL);
    return 0;
}

void cs_apply_free_items(cs_item *items, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        item_reset(&items[i]);
        natsMsg_Destroy(items[i].msg);
        items[i].msg = NULL;
    }
}
