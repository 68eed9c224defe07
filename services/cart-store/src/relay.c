/*
 * relay.c: what a runner sends out. After a commit: the carts to the Redis cache, the replies to
 * waiting gateways, the change notices, and the acks of the committed events, held per partition
 * and sent in runs (ack_run.h). Dead letters (stored before the offset moves). The change notices
 * awaiting JetStream's ack (the unacked notices), whose acks come on nats.c's thread, and the
 * outbox rows they free; the outbox sweep that sends again what was never acknowledged.
 *
 * Threads: cs_relay_on_change_ack on nats.c's threads; the rest on the runner thread. The unacked
 * notices and the acked ids are guarded by cs_shard.acks_mu.
 */
#define _POSIX_C_SOURCE 200809L
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cartshard/bus.h"
#include "cartshard/clock.h"
#include "cartshard/fmt.h"
#include "cartshard/log.h"
#include "runner_internal.h"

#define PUBLISH_WAIT_MS 5000
/* Published outbox rows are deleted once this many are waiting (or by the sweep), between batches:
 * a DELETE reads every page of the outbox, since its few live rows make the planner prefer a
 * sequential scan over the index, and a table that churns this much is mostly dead pages between
 * vacuums. */
#define OUTBOX_DELETE_MIN 4096

/* Sends a dead letter and waits for JetStream's ack: it must be stored before the offset moves. */
int cs_relay_dead_letter(cs_shard *sh, cs_item *it)
{
    natsMsg *m = NULL;
    jsPubOptions po;
    jsPubAck *ack = NULL;
    jsErrCode jerr = 0;
    char subject[CART_SUBJECT_MAX], msg_id[48];
    const char *data = natsMsg_GetData(it->msg);
    natsStatus s;

    cart_bus_subject(subject, CART_SUBJ_DLQ, it->part->id);
    snprintf(msg_id, sizeof msg_id, "dlq-%" PRIu64, it->seq);
    s = natsMsg_Create(&m, subject, NULL, data ? data : "", natsMsg_GetDataLength(it->msg));
    if (s == NATS_OK)
        s = natsMsgHeader_Set(m, CART_HDR_ERROR, it->dlq_reason);
    if (s == NATS_OK)
        s = natsMsgHeader_Set(m, CART_HDR_MSG_ID, msg_id);
    if (s == NATS_OK) {
        jsPubOptions_Init(&po);
        po.MaxWait = PUBLISH_WAIT_MS;
        s = js_PublishMsg(&ack, sh->js, m, &po, &jerr);
    }
    jsPubAck_Destroy(ack);
    natsMsg_Destroy(m);
    if (s != NATS_OK) {
        cart_counter_inc(sh->w->m_nats_errors);
        cart_log(CART_LOG_WARN, "dead letter publish failed", CART_LS("shard", sh->name),
                 CART_LI("partition", it->part->id), CART_LS("error", natsStatus_GetText(s)), NULL);
        return -1;
    }
    cart_counter_inc(sh->w->m_dlq);
    cart_log(CART_LOG_WARN, "event dead-lettered", CART_LS("shard", sh->name), CART_LI("partition", it->part->id),
             CART_LI("seq", (long long)it->seq), CART_LS("reason", it->dlq_reason),
             CART_LS("event_id", it->decoded ? it->ev.event_id : ""), CART_LS("trace", it->decoded ? it->ev.trace : ""),
             NULL);
    return 0;
}

/* Where the answer to `it` goes, and under which event id: its Cart-Reply-To. A merge is answered
 * once, at its end (docs/internals/merge.md): by the user's side when it applied the lines, or by
 * the guest's side once a refusal restored the guest cart; each under the merge's own event id.
 * False when `it` gets no answer. */
static bool reply_target(const cs_item *it, const char **subject, const char **event_id)
{
    *event_id = it->ev.event_id;
    switch (it->ev.type) {
    case CART_EV_MERGE_REQUESTED:
        if (it->http_status == 202 || it->saga_json != NULL)
            return false; /* accepted, or a refusal sent on to the user's side: the answer comes from there */
        break;
    case CART_EV_LINES_MERGED:
        *subject = it->ev.merge.reply_to;
        *event_id = it->ev.merge.merge_id;
        /* The lines applied, or the guest's side refused (nothing to settle): answered here. */
        return it->http_status == 200 || it->http_status == 201 || it->ev.merge.status != 0;
    case CART_EV_MERGE_SETTLED:
        *subject = it->ev.merge.reply_to;
        *event_id = it->ev.merge.merge_id;
        return it->ev.merge.status != 200 && it->http_status == it->ev.merge.status;
    default:
        break;
    }
    return natsMsgHeader_Get(it->msg, CART_HDR_REPLY_TO, subject) == NATS_OK && *subject != NULL;
}

/* Tells a waiting gateway how its event ended. */
static void send_reply(cs_shard *sh, cs_item *it)
{
    const char *reply_to = NULL, *event_id = NULL;
    natsMsg *m = NULL;
    cart_bus_reply r;

    if (!it->decoded || (it->dlq_reason[0] && !it->refused) || !reply_target(it, &reply_to, &event_id) ||
        reply_to == NULL || *reply_to == '\0')
        return;
    snprintf(r.event_id, sizeof r.event_id, "%s", event_id);
    r.status = it->http_status;
    snprintf(r.detail, sizeof r.detail, "%s", it->detail);
    r.version = it->cart_version;
    r.replayed = it->replayed;
    /* A key found reused at the user's side of a merge comes back to the guest's in a settlement,
     * and as a repeat's recorded answer: by its detail. */
    r.key_reused = it->key_reused || (it->http_status == 422 && strcmp(it->detail, CS_WORKING_REUSED_DETAIL) == 0);
    snprintf(r.fingerprint, sizeof r.fingerprint, "%s", it->first_fingerprint);
    if (cart_bus_reply_new(&m, reply_to, &r, it->cart_json) != NATS_OK)
        return;
    /* On the connection that sends at once, unless it is down. */
    natsConnection_PublishMsg(
        natsConnection_Status(sh->w->nc_replies) == NATS_CONN_STATUS_CONNECTED ? sh->w->nc_replies : sh->w->nc, m);
    natsMsg_Destroy(m);
}

static int outbox_done_push(cs_shard *sh, int64_t id)
{
    if (CART_GROW(sh->outbox_done, sh->noutbox_done, sh->outbox_cap, 256) != 0)
        return -1;
    sh->outbox_done[sh->noutbox_done++] = id;
    return 0;
}

/* Remembers a notice about to be sent (acks_mu held). 0, or -1 when out of memory. */
static int unacked_add(cs_shard *sh, const char *msg_id, int64_t id)
{
    cs_unacked_notice *pd;

    if (sh->unacked_head == sh->nunacked)
        sh->unacked_head = sh->nunacked = 0;
    if (CART_GROW(sh->unacked, sh->nunacked, sh->unacked_cap, 256) != 0)
        return -1;
    pd = &sh->unacked[sh->nunacked++];
    snprintf(pd->msg_id, sizeof pd->msg_id, "%s", msg_id);
    pd->id = id;
    pd->done = false;
    return 0;
}

/* Marks the notice `msg_id` answered (acks_mu held); its outbox id when JetStream stored it. */
static void unacked_done(cs_shard *sh, const char *msg_id, bool stored)
{
    for (size_t i = sh->unacked_head; i < sh->nunacked; i++) {
        cs_unacked_notice *pd = &sh->unacked[i];
        if (pd->done || strcmp(pd->msg_id, msg_id) != 0)
            continue;
        pd->done = true;
        /* Without memory the id is not deleted now: the sweep sends the row again (deduplicated). */
        if (stored && CART_GROW(sh->acked, sh->nacked, sh->acked_cap, 256) == 0)
            sh->acked[sh->nacked++] = pd->id;
        break;
    }
    while (sh->unacked_head < sh->nunacked && sh->unacked[sh->unacked_head].done)
        sh->unacked_head++;
}

/* nats.c's thread: JetStream answered a change notice (stored, or failed or timed out). */
void cs_relay_on_change_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure)
{
    cs_shard *sh = closure;
    const char *msg_id = NULL;

    (void)js;
    if (natsMsgHeader_Get(msg, CART_HDR_MSG_ID, &msg_id) == NATS_OK && msg_id) {
        pthread_mutex_lock(&sh->acks_mu);
        unacked_done(sh, msg_id, pa != NULL && pae == NULL);
        pthread_mutex_unlock(&sh->acks_mu);
    }
    if (pae)
        cart_counter_inc(sh->w->m_nats_errors); /* the outbox sweep publishes it again */
    natsMsg_Destroy(msg);
}

/* Moves the outbox ids JetStream stored into the list the next transaction deletes. */
void cs_relay_take_acked(cs_shard *sh)
{
    pthread_mutex_lock(&sh->acks_mu);
    for (size_t i = 0; i < sh->nacked; i++)
        if (outbox_done_push(sh, sh->acked[i]) != 0)
            break; /* the rest is sent again by the sweep (deduplicated) */
    sh->nacked = 0;
    pthread_mutex_unlock(&sh->acks_mu);
}

/* Deletes the outbox rows JetStream stored, once enough are waiting (`all`: whatever there is). */
void cs_relay_delete_published(cs_shard *sh, bool all)
{
    cs_store_err e;

    cs_relay_take_acked(sh);
    if (sh->pg == NULL || sh->noutbox_done == 0 || (!all && sh->noutbox_done < OUTBOX_DELETE_MIN))
        return;
    if (cs_store_outbox_delete(sh->pg, sh->outbox_done, sh->noutbox_done, &e) == CART_OK)
        sh->noutbox_done = 0;
}

/* Waits (bounded) until JetStream answered every notice sent; true when none is left unacked.
 * Without a connection it does not wait: no answer can come before each notice's own timeout. */
bool cs_relay_wait_acks(cs_shard *sh)
{
    jsPubOptions po;
    bool settled;

    jsPubOptions_Init(&po);
    po.MaxWait = PUBLISH_WAIT_MS;
    if (natsConnection_Status(sh->w->nc) == NATS_CONN_STATUS_CONNECTED)
        js_PublishAsyncComplete(sh->js, &po);
    pthread_mutex_lock(&sh->acks_mu);
    settled = sh->unacked_head == sh->nunacked;
    pthread_mutex_unlock(&sh->acks_mu);
    return settled;
}

/* Sends change notices (subject, msg id, payload of each row) without waiting: JetStream's acks
 * arrive on nats.c's thread (cs_relay_on_change_ack), and the ids of what it stored are deleted from the
 * outbox by a later transaction. The next batch need not wait for them; a notice that is never
 * acknowledged stays in the outbox, and the sweep sends it again. */
void cs_relay_publish_changes(cs_shard *sh, const cs_batch_outbox *rows, size_t n)
{
    jsPubOptions po;

    jsPubOptions_Init(&po);
    po.MaxWait = PUBLISH_WAIT_MS;
    for (size_t i = 0; i < n; i++) {
        natsMsg *m = NULL;
        int added;
        if (natsMsg_Create(&m, rows[i].subject, NULL, rows[i].payload, (int)strlen(rows[i].payload)) != NATS_OK ||
            natsMsgHeader_Set(m, CART_HDR_MSG_ID, rows[i].msg_id) != NATS_OK) {
            natsMsg_Destroy(m);
            break;
        }
        pthread_mutex_lock(&sh->acks_mu);
        added = unacked_add(sh, rows[i].msg_id, rows[i].id);
        pthread_mutex_unlock(&sh->acks_mu);
        if (added != 0 || js_PublishMsgAsync(sh->js, &m, &po) != NATS_OK) {
            if (added == 0) {
                pthread_mutex_lock(&sh->acks_mu);
                unacked_done(sh, rows[i].msg_id, false);
                pthread_mutex_unlock(&sh->acks_mu);
            }
            natsMsg_Destroy(m);
            cart_counter_inc(sh->w->m_nats_errors); /* the outbox sweep publishes the rest again */
            break;
        }
    }
}

/* Writes the committed state of every cart the batch changed to the Redis cache (one round trip). */
void cs_relay_write_cache(cs_shard *sh, cs_working_set *ws)
{
    cs_redis_writer_entry *entries;
    size_t k = 0;

    if (sh->redis_writer == NULL || ws->ncarts == 0)
        return;
    entries = calloc(ws->ncarts, sizeof *entries);
    if (entries == NULL)
        return;
    for (size_t i = 0; i < ws->ncarts; i++) {
        cs_working_cart *wc = &ws->carts[i];
        if (!wc->changed)
            continue;
        entries[k].user_id = wc->c.user_id;
        entries[k].json = cart_to_json(&wc->c, NULL); /* NULL (no memory): the entry is dropped */
        entries[k].version = wc->c.version;
        k++;
    }
    cs_redis_writer_put(sh->redis_writer, entries, k);
    for (size_t i = 0; i < k; i++)
        free((char *)entries[i].json);
    free(entries);
}

int cs_relay_outbox_add(cs_shard *sh, uint32_t partition, const char *event_id, const char *payload, size_t *at)
{
    char msg_id[CART_CHANGE_MSG_ID_MAX + 1], subject[CART_SUBJECT_MAX];

    return cs_batch_outbox_add(&sh->batch, partition, cart_bus_subject(subject, CART_SUBJ_CHANGES, partition),
                               cart_change_msg_id(msg_id, event_id), payload, at);
}

void cs_relay_ack_held(cs_shard *sh, cs_partition *p)
{
    if (p->held_ack == NULL)
        return;
    if (natsMsg_Ack(p->held_ack, NULL) == NATS_OK)
        cart_counter_inc(sh->w->m_acks);
    else
        cart_counter_inc(sh->w->m_nats_errors); /* redelivered after AckWait, acked again (intake.c) */
    natsMsg_Destroy(p->held_ack);
    p->held_ack = NULL;
    cs_ack_run_clear(&p->ack_run);
}

void cs_relay_send_acks(cs_shard *sh, bool all)
{
    const cart_config *cfg = sh->w->cfg;
    uint32_t n = sh->last - sh->first + 1;
    int64_t now = cart_mono_ms(), next = INT64_MAX;

    if (!all && now < sh->ack_due_ms)
        return;
    for (uint32_t i = 0; i < n; i++) {
        cs_partition *p = &sh->parts[i];
        if (p->held_ack == NULL)
            continue;
        if (all || cs_ack_run_due(&p->ack_run, now, (uint64_t)cfg->store_ack_every, cfg->store_ack_delay_ms))
            cs_relay_ack_held(sh, p);
        else if (cs_ack_run_deadline(&p->ack_run, cfg->store_ack_delay_ms) < next)
            next = cs_ack_run_deadline(&p->ack_run, cfg->store_ack_delay_ms);
    }
    sh->ack_due_ms = next;
}

/* Holds `it`, the last of `events` committed messages of its partition in a batch, for the
 * partition's ack (AckAll: it covers the rest, and the message it replaces), or acknowledges it at
 * once when the run is due. Takes the message from the item. */
static void hold_ack(cs_shard *sh, cs_item *it, uint64_t events, int64_t now)
{
    const cart_config *cfg = sh->w->cfg;
    cs_partition *p = it->part;
    int64_t due;

    if (!p->owned || p->sub == NULL)
        return; /* nothing to acknowledge through: its next owner starts from the offset */
    natsMsg_Destroy(p->held_ack);
    p->held_ack = it->msg;
    it->msg = NULL;
    cs_ack_run_add(&p->ack_run, events, now);
    if (cs_ack_run_due(&p->ack_run, now, (uint64_t)cfg->store_ack_every, cfg->store_ack_delay_ms)) {
        cs_relay_ack_held(sh, p);
        return;
    }
    due = cs_ack_run_deadline(&p->ack_run, cfg->store_ack_delay_ms);
    if (due < sh->ack_due_ms)
        sh->ack_due_ms = due;
}

/* After a batch committed: refreshes the cache (before answering, so a client reads its own
 * write), answers the gateways, relays the changes, and holds each partition's last message for
 * its ack (or acknowledges it when its run is due). */
void cs_relay_committed(cs_shard *sh, cs_item *items, size_t n, cs_working_set *ws)
{
    int64_t now = cart_mono_ms();
    size_t run = 0;

    cs_relay_write_cache(sh, ws);
    for (size_t i = 0; i < n; i++) {
        cs_item *it = &items[i];
        send_reply(sh, it);
        if (it->changed && it->change_json) {
            size_t at;
            /* The batch was written: its outbox records are free to carry what to publish. */
            if (cs_relay_outbox_add(sh, it->part->id, it->ev.event_id, it->change_json, &at) == 0)
                sh->batch.outbox[at].id = it->outbox_id;
        }
        if (it->saga_json) {
            size_t at;
            if (cs_batch_outbox_add(&sh->batch, it->part->id, it->saga_subject, it->saga_msg_id, it->saga_json, &at) ==
                0)
                sh->batch.outbox[at].id = it->saga_outbox_id;
        }
    }
    cs_relay_publish_changes(sh, sh->batch.outbox, sh->batch.noutbox);
    cs_batch_reset(&sh->batch);
    /* A batch holds each partition's messages in stream order, in one run or (taken again after
     * lingering) two: the last of a run covers the run. */
    for (size_t i = 0; i < n; i++) {
        run++;
        if (i + 1 == n || items[i + 1].part != items[i].part) {
            hold_ack(sh, &items[i], run, now);
            run = 0;
        }
    }
}

static int cmp_id(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* The outbox ids of the notices sent and not yet answered, sorted (NULL and 0 when none). */
static int64_t *unanswered_ids(cs_shard *sh, size_t *n)
{
    int64_t *ids = NULL;

    *n = 0;
    pthread_mutex_lock(&sh->acks_mu);
    if (sh->nunacked > sh->unacked_head)
        ids = malloc((sh->nunacked - sh->unacked_head) * sizeof *ids);
    for (size_t i = sh->unacked_head; ids && i < sh->nunacked; i++)
        if (!sh->unacked[i].done)
            ids[(*n)++] = sh->unacked[i].id;
    pthread_mutex_unlock(&sh->acks_mu);
    if (*n > 1)
        qsort(ids, *n, sizeof *ids, cmp_id);
    return ids;
}

/* Publishes what the outbox still holds for the owned partitions (after a crash between commit
 * and publish, or a failed publish). It never waits for JetStream: a notice still unanswered is
 * left to its ack (or its timeout, after which the next sweep sends it), so a lost ack cannot
 * hold the runner for PUBLISH_WAIT_MS while events wait. */
void cs_relay_sweep_outbox(cs_shard *sh)
{
    char *arr = cs_ownership_owned_array(sh, false);
    PGresult *rows = NULL;
    cs_store_err e;
    int64_t *skip = NULL;
    size_t nskip = 0;
    int count, sent = 0;

    if (arr == NULL)
        return;
    /* First forget what the last batches already published, so it is not sent twice. */
    cs_relay_delete_published(sh, true);
    if (cs_store_outbox_list(sh->pg, arr, &rows, &e) != CART_OK)
        goto out;
    count = PQntuples(rows);
    if (count > 0) {
        skip = unanswered_ids(sh, &nskip);
        cs_batch_reset(&sh->batch);
        for (int i = 0; i < count; i++) {
            int64_t id = strtoll(PQgetvalue(rows, i, 0), NULL, 10);
            size_t at;
            if (nskip > 0 && bsearch(&id, skip, nskip, sizeof *skip, cmp_id) != NULL)
                continue;
            if (cs_batch_outbox_add(&sh->batch, 0, PQgetvalue(rows, i, 1), PQgetvalue(rows, i, 2),
                                    PQgetvalue(rows, i, 3), &at) != 0)
                break;
            sh->batch.outbox[at].id = id;
            sent++;
        }
        cs_relay_publish_changes(sh, sh->batch.outbox, sh->batch.noutbox);
        cs_batch_reset(&sh->batch);
        if (sent > 0)
            cart_log(CART_LOG_INFO, "outbox relayed", CART_LS("shard", sh->name), CART_LI("changes", sent), NULL);
    }
out:
    free(skip);
    PQclear(rows);
    free(arr);
}
