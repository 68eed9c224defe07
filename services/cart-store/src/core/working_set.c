/*
 * working_set.c: the carts and answers of one batch. See working_set.h.
 *
 * Lookups are linear: a batch holds at most CART_STORE_BATCH events, and comparing a few hundred
 * short strings costs less than the batch's one round trip to the shard.
 */
#include "working_set.h"

#include <stdlib.h>
#include <string.h>

#include "cartshard/fmt.h"

void cs_working_set_init(cs_working_set *ws)
{
    memset(ws, 0, sizeof *ws);
}

void cs_working_set_cleanup(cs_working_set *ws)
{
    cs_working_set_clear(ws);
    free(ws->carts);
    free(ws->answers);
    cs_working_set_init(ws);
}

void cs_working_set_clear(cs_working_set *ws)
{
    for (size_t i = 0; i < ws->ncarts; i++)
        cart_cleanup(&ws->carts[i].c);
    ws->ncarts = 0;
    ws->nanswers = 0;
}

cs_working_cart *cs_working_set_find(cs_working_set *ws, const char *user_id)
{
    for (size_t i = 0; i < ws->ncarts; i++)
        if (strcmp(ws->carts[i].c.user_id, user_id) == 0)
            return &ws->carts[i];
    return NULL;
}

cs_working_cart *cs_working_set_add(cs_working_set *ws, const char *user_id)
{
    cs_working_cart *wc = cs_working_set_find(ws, user_id);

    if (wc != NULL)
        return wc;
    if (CART_GROW(ws->carts, ws->ncarts, ws->carts_cap, 64) != 0)
        return NULL;
    wc = &ws->carts[ws->ncarts++];
    wc->changed = false;
    cart_init(&wc->c, user_id);
    return wc;
}

const cs_working_answer *cs_working_set_answer_of(const cs_working_set *ws, const char *event_id)
{
    for (size_t i = 0; i < ws->nanswers; i++)
        if (strcmp(ws->answers[i].event_id, event_id) == 0)
            return &ws->answers[i];
    return NULL;
}

int cs_working_set_answered(cs_working_set *ws, const cs_working_answer *a)
{
    cs_working_answer *to;

    if (cs_working_set_answer_of(ws, a->event_id) != NULL)
        return 0;
    if (CART_GROW(ws->answers, ws->nanswers, ws->answers_cap, 64) != 0)
        return -1;
    to = &ws->answers[ws->nanswers++];
    *to = *a;
    /* The copy is terminated whatever the caller's arrays held. */
    to->event_id[sizeof to->event_id - 1] = '\0';
    to->detail[sizeof to->detail - 1] = '\0';
    to->fingerprint[sizeof to->fingerprint - 1] = '\0';
    return 0;
}

cs_working_repeat cs_working_set_judge(const cs_working_set *ws, const char *event_id, const char *fingerprint,
                                       uint64_t seq, const cs_working_answer **first)
{
    const cs_working_answer *a = cs_working_set_answer_of(ws, event_id);

    *first = a;
    if (a == NULL)
        return CS_WORKING_NEW;
    if (seq != 0 && a->stream_seq == seq)
        return CS_WORKING_SAME;
    if (cart_fingerprints_clash(a->fingerprint, fingerprint))
        return CS_WORKING_KEY_REUSED;
    return CS_WORKING_REPLAY;
}
