/*
 * inbox.c: a gateway thread's inbox. JetStream's acks and the workers' replies arrive on nats.c's
 * threads; each becomes a gw_note, pushed onto gw_thread.inbox under inbox_mu, and the loop is
 * woken (gw_thread.wake, a uv_async_t) to take them all, in arrival order, to the write table.
 * The wake also tells the loop that the process is stopping (server.c's drain).
 *
 * Threads: gw_inbox_on_pub_ack and gw_inbox_on_reply run on nats.c's threads and touch only the
 * inbox (under its lock) and the wake handle (uv_async_send is thread-safe); everything else runs
 * on the thread's loop.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cartshard/bus.h"
#include "internal.h"

static void post_note(gw_thread *t, gw_note *n)
{
    pthread_mutex_lock(&t->inbox_mu);
    n->next = t->inbox;
    t->inbox = n;
    pthread_mutex_unlock(&t->inbox_mu);
    uv_async_send(&t->wake);
}

void gw_inbox_on_pub_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure)
{
    gw_thread *t = closure;
    const char *id = NULL, *publish_id = NULL;
    gw_note *n = calloc(1, sizeof *n);

    if (n && natsMsgHeader_Get(msg, CART_HDR_MSG_ID, &id) == NATS_OK && id) {
        n->kind = GW_NOTE_ACK;
        snprintf(n->event_id, sizeof n->event_id, "%s", id);
        if (natsMsgHeader_Get(msg, GW_HDR_PUBLISH_ID, &publish_id) == NATS_OK && publish_id)
            n->publish_id = strtoull(publish_id, NULL, 10);
        n->ok = pa != NULL;
        n->dup = pa != NULL && pa->Duplicate;
        n->seq = pa != NULL ? pa->Sequence : 0;
        n->unsure = n->dup && n->seq == 0;
        if (pae)
            snprintf(n->error, sizeof n->error, "%s", pae->ErrText ? pae->ErrText : natsStatus_GetText(pae->Err));
        post_note(t, n);
        n = NULL;
    }
    free(n);
    natsMsg_Destroy(msg);
}

void gw_inbox_on_reply(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    gw_thread *t = closure;
    cart_bus_reply r;
    gw_note *n = calloc(1, sizeof *n);
    int len = natsMsg_GetDataLength(msg);

    if (n == NULL || cart_bus_reply_read(msg, &r) != CART_OK)
        goto out;
    n->kind = GW_NOTE_REPLY;
    snprintf(n->event_id, sizeof n->event_id, "%s", r.event_id);
    n->status = r.status;
    snprintf(n->detail, sizeof n->detail, "%s", r.detail);
    n->version = r.version;
    n->replayed = r.replayed;
    n->key_reused = r.key_reused;
    memcpy(n->fingerprint, r.fingerprint, sizeof n->fingerprint);
    if (len > 0) {
        n->body = malloc((size_t)len);
        if (n->body == NULL)
            goto out;
        memcpy(n->body, natsMsg_GetData(msg), (size_t)len);
        n->body_len = (size_t)len;
    }
    post_note(t, n);
    n = NULL;
out:
    if (n)
        free(n->body);
    free(n);
    natsMsg_Destroy(msg);
}

static void on_wake(uv_async_t *h)
{
    gw_thread *t = h->data;
    gw_note *list, *rev = NULL;

    if (atomic_load(&t->app->stopping))
        gw_begin_drain(t);

    pthread_mutex_lock(&t->inbox_mu);
    list = t->inbox;
    t->inbox = NULL;
    pthread_mutex_unlock(&t->inbox_mu);
    while (list) { /* restore arrival order */
        gw_note *next = list->next;
        list->next = rev;
        rev = list;
        list = next;
    }
    while (rev) {
        gw_note *n = rev;
        rev = n->next;
        gw_write_table_note(t, n);
        free(n->body);
        free(n);
    }
}

void gw_inbox_init(gw_thread *t)
{
    pthread_mutex_init(&t->inbox_mu, NULL);
    uv_async_init(&t->loop, &t->wake, on_wake);
    t->wake.data = t;
}

void gw_inbox_cleanup(gw_thread *t)
{
    pthread_mutex_destroy(&t->inbox_mu);
}
