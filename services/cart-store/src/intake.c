/*
 * intake.c: a runner's message intake. nats.c delivers each partition's messages on its own
 * threads (cs_intake_on_event); they are only queued, in stream order, under the runner's mutex,
 * and the runner is signalled. A gap in a consumer's delivery sequence marks the partition broken
 * (ownership.c restarts it from its committed offset). The runner thread takes the queued
 * messages into batches (cs_intake_take).
 *
 * Threads: cs_intake_on_event and cs_intake_on_sub_complete on nats.c's threads; the rest on the
 * runner thread. Everything shared is guarded by cs_shard.mu.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdlib.h>
#include <string.h>

#include "runner_internal.h"

void cs_intake_free_queue(cs_qmsg *q)
{
    while (q) {
        cs_qmsg *next = q->next;
        natsMsg_Destroy(q->msg);
        free(q);
        q = next;
    }
}

void cs_intake_on_event(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    cs_binding *b = closure;
    cs_partition *p = b->part;
    cs_shard *sh = p->shard;
    jsMsgMetaData *meta = NULL;
    cs_qmsg *q = NULL;
    uint64_t seq, delivery;

    if (natsMsg_GetMetaData(&meta, msg) != NATS_OK) {
        /* Not a JetStream message (a flow-control or heartbeat is handled by nats.c itself). */
        natsMsg_Destroy(msg);
        return;
    }
    seq = meta->Sequence.Stream;
    delivery = meta->Sequence.Consumer;
    jsMsgMetaData_Destroy(meta);
    q = malloc(sizeof *q);
    pthread_mutex_lock(&sh->mu);
    /* The consumer numbers its deliveries 1, 2, 3...: a jump means messages were lost on the way
     * (a connection reset). Queuing what follows would commit past them, and the AckAll of the
     * later ones would acknowledge them unseen, so the partition starts over from its committed
     * offset instead. */
    if (b->active && !p->broken && p->last_delivery != 0 && delivery > p->last_delivery + 1) {
        p->broken = true;
        pthread_cond_signal(&sh->cv);
    }
    if (b->active && !p->broken && delivery > p->last_delivery)
        p->last_delivery = delivery;
    if (p->broken) {
        pthread_mutex_unlock(&sh->mu);
        natsMsg_Destroy(msg);
        free(q);
        return;
    }
    /* A redelivery of something already queued (or committed) is dropped: the queue is the
     * partition's stream order, and the consumer restarts from the committed offset anyway. One
     * already committed is acknowledged again, since its ack was lost or is still held past the
     * consumer's AckWait (a runner stuck in a batch): it covers only committed events either way. */
    if (q == NULL || !b->active || seq <= p->max_seen) {
        bool reack = b->active && seq <= p->committed;
        pthread_mutex_unlock(&sh->mu);
        if (reack && natsMsg_Ack(msg, NULL) == NATS_OK)
            cart_counter_inc(sh->w->m_acks);
        natsMsg_Destroy(msg);
        free(q);
        return;
    }
    q->msg = msg;
    q->seq = seq;
    q->next = NULL;
    if (p->tail)
        p->tail->next = q;
    else
        p->head = q;
    p->tail = q;
    p->len++;
    p->max_seen = seq;
    pthread_cond_signal(&sh->cv);
    pthread_mutex_unlock(&sh->mu);
}

void cs_intake_on_sub_complete(void *closure)
{
    free(closure);
}

/* Takes up to `max` queued messages, partition by partition (each in stream order). */
size_t cs_intake_take(cs_shard *sh, cs_item *items, size_t max)
{
    uint32_t n = sh->last - sh->first + 1;
    size_t k = 0;

    for (uint32_t i = 0; i < n && k < max; i++) {
        cs_partition *p = &sh->parts[i];
        while (p->head && k < max) {
            cs_qmsg *q = p->head;
            p->head = q->next;
            if (p->head == NULL)
                p->tail = NULL;
            p->len--;
            memset(&items[k], 0, sizeof items[k]);
            items[k].msg = q->msg;
            items[k].seq = q->seq;
            items[k].part = p;
            k++;
            free(q);
        }
    }
    return k;
}
