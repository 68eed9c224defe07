/*
 * working_set.h: the working set of one batch: the carts its events touch, so that a user's
 * events in one batch build on each other, and the first answers of the batch's event ids (read
 * from processed_events, or given earlier in the batch), so that a copy of an event gets the first
 * answer instead of being applied twice, and a reuse of an event id for another request (another
 * request_fingerprint) is refused. Pure: no I/O. One runner thread uses a set; nothing in it is
 * thread-safe.
 *
 * Not to be confused with the Redis cache (cartshard/cache.h for its keys, redis_writer.h for the
 * worker's writes to it): the working set lives for one batch and is never shared.
 */
#ifndef CS_WORKING_SET_H
#define CS_WORKING_SET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cartshard/cart.h"
#include "cartshard/event.h"

/* The longest detail remembered with an answer (as long as a cart_outcome's, with its NUL). */
#define CS_WORKING_DETAIL_MAX 128

/* One cart of the batch. */
typedef struct cs_working_cart {
    /** The cart as the batch's events left it so far (CART_NONE until read from the shard);
     * owned by the set, freed by cs_working_set_clear. */
    cart c;
    /** Changed by this batch: its cache entry is rewritten after the commit. */
    bool changed;
} cs_working_cart;

/* The detail of the refusal of an event id reused for another request (cs_working_set_judge). */
#define CS_WORKING_REUSED_DETAIL "event_id: already used for another request (another request_fingerprint)"

/* The first answer of one event id of the batch. */
typedef struct cs_working_answer {
    /** The event id. */
    char event_id[CART_EVENT_ID_MAX + 1];
    /** The HTTP status the event was answered with. */
    int http_status;
    /** Its detail ("" for none). */
    char detail[CS_WORKING_DETAIL_MAX];
    /** The stream sequence of the message that was answered; 0 when unknown. */
    uint64_t stream_seq;
    /** The request_fingerprint of the event that was answered; "" for none. */
    char fingerprint[CART_FINGERPRINT_MAX + 1];
} cs_working_answer;

/* What a message whose event id has a first answer is (cs_working_set_judge). */
typedef enum cs_working_repeat {
    /** No answer yet: the event is applied. */
    CS_WORKING_NEW = 0,
    /** The very message that was answered (its stream sequence), delivered again: its own answer. */
    CS_WORKING_SAME,
    /** Another copy of the same request: the first answer, replayed. */
    CS_WORKING_REPLAY,
    /** The first answer was for another request_fingerprint: refused with 422, and nothing
     * recorded, so the first answer stays. */
    CS_WORKING_KEY_REUSED
} cs_working_repeat;

/* Caller-owned: cs_working_set_init / cs_working_set_cleanup. */
typedef struct cs_working_set {
    /** The carts, in the order they were added; carts[0..ncarts). */
    cs_working_cart *carts;
    /** Number of carts, and room for them. */
    size_t ncarts, carts_cap;
    /** The answers recorded so far, in the order they were given; answers[0..nanswers). */
    cs_working_answer *answers;
    /** Number of answers, and room for them. */
    size_t nanswers, answers_cap;
} cs_working_set;

/* An empty set; allocates nothing. */
void cs_working_set_init(cs_working_set *ws);

/* Frees everything; the set may be initialised again. Safe twice. */
void cs_working_set_cleanup(cs_working_set *ws);

/* Empties the set for the next batch (or the next try of one), keeping its memory. Every cart is
 * cart_cleanup'ed: pointers to them are invalid afterwards. */
void cs_working_set_clear(cs_working_set *ws);

/* The cart of `user_id`, or NULL when the set has none. The pointer is owned by the set and valid
 * until the next cs_working_set_add or cs_working_set_clear. */
cs_working_cart *cs_working_set_find(cs_working_set *ws, const char *user_id);

/* The cart of `user_id` (copied), added empty (CART_NONE, not changed) when missing; NULL when
 * out of memory (the set is unchanged). Ownership as cs_working_set_find. */
cs_working_cart *cs_working_set_add(cs_working_set *ws, const char *user_id);

/* The first answer recorded for `event_id`, or NULL when none was. Owned by the set, valid until
 * the next cs_working_set_answered or cs_working_set_clear. */
const cs_working_answer *cs_working_set_answer_of(const cs_working_set *ws, const char *event_id);

/* Records a copy of `a` as the first answer of a->event_id. An id already answered keeps its
 * first answer. 0, or -1 when out of memory (nothing recorded). */
int cs_working_set_answered(cs_working_set *ws, const cs_working_answer *a);

/* What the message at stream sequence `seq` carrying `event_id` with request_fingerprint
 * `fingerprint` ("" for none) is, given the answers recorded so far; *first is the event id's
 * first answer (owned by the set, as cs_working_set_answer_of), or NULL for CS_WORKING_NEW. The
 * fingerprints clash only when both exist and differ (cart_fingerprints_clash): an event or a
 * first answer without one is a repeat, as before fingerprints. */
cs_working_repeat cs_working_set_judge(const cs_working_set *ws, const char *event_id, const char *fingerprint,
                                       uint64_t seq, const cs_working_answer **first);

#endif
