/*
 * ack_run.h: when a partition's committed events are acknowledged. The worker does not ack every
 * batch: it holds the last committed message of each partition (its consumer is AckAll, so one ack
 * covers every earlier delivery) and acks it once the run it covers is long enough
 * (CART_STORE_ACK_EVERY events) or old enough (CART_STORE_ACK_DELAY_MS since the oldest of them
 * committed). The offset in PostgreSQL is what a new owner starts from, so a held ack loses and
 * doubles nothing; acks only free the consumer's MaxAckPending and move its ack floor. This is the
 * bookkeeping of one run, apart from the message itself (runner_internal.h's cs_partition). Pure:
 * no I/O, no clock of its own; one runner thread uses a run.
 */
#ifndef CS_ACK_RUN_H
#define CS_ACK_RUN_H

#include <stdbool.h>
#include <stdint.h>

/* The committed events of one partition not acknowledged yet. Caller-owned; all zero is empty. */
typedef struct cs_ack_run {
    /** Committed events the held ack covers (0: nothing held). */
    uint64_t events;
    /** When (monotonic ms) the oldest of them committed; meaningless while events is 0. */
    int64_t since_ms;
} cs_ack_run;

/* Adds `events` committed at `now_ms` to the run (the first ones start its clock). */
void cs_ack_run_add(cs_ack_run *r, uint64_t events, int64_t now_ms);

/* True when the run is to be acknowledged at `now_ms`: it holds at least `every` events, or its
 * oldest committed `delay_ms` or more ago (a delay of 0: at once). False for an empty run. */
bool cs_ack_run_due(const cs_ack_run *r, int64_t now_ms, uint64_t every, int64_t delay_ms);

/* When (monotonic ms) the run falls due by age; INT64_MAX for an empty run. */
int64_t cs_ack_run_deadline(const cs_ack_run *r, int64_t delay_ms);

/* Empties the run (its ack was sent, or its message given up). */
void cs_ack_run_clear(cs_ack_run *r);

#endif
