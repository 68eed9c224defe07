/*
 * working_set.h: the working set of one batch: the carts its events touch, so that a user's
 * events in one batch build on each other, and the answers given so far to the batch's event ids,
 * so that a copy of an event later in the same batch gets the first answer instead of being
 * applied twice. Pure: no I/O. One runner thread uses a set; nothing in it is thread-safe.
 *
 * Not to be confused with the Redis cache (cartshard/cache.h for its keys, redis_writer.h for the
 * worker's writes to it): the working set lives for one batch and is never shared.
 */
#ifndef CS_WORKING_SET_H
#define CS_WORKING_SET_H

#include <stdbool.h>
#include <stddef.h>

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

/* The answer given to one event id of the batch. */
typedef struct cs_working_answer {
    /** The event id (copied). */
    char event_id[CART_EVENT_ID_MAX + 1];
    /** The HTTP status the event was answered with. */
    int http_status;
    /** Its detail ("" for none), truncated to CS_WORKING_DETAIL_MAX - 1 bytes. */
    char detail[CS_WORKING_DETAIL_MAX];
} cs_working_answer;

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

/* Records that `event_id` was answered `http_status` with `detail` (NULL for ""), both copied.
 * An id already answered keeps its first answer. 0, or -1 when out of memory (nothing recorded). */
int cs_working_set_answered(cs_working_set *ws, const char *event_id, int http_status, const char *detail);

#endif
