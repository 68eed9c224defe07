/*
 * ack_run.c: the bookkeeping of a partition's held acknowledgement (ack_run.h).
 */
#include "ack_run.h"

void cs_ack_run_add(cs_ack_run *r, uint64_t events, int64_t now_ms)
{
    if (events == 0)
        return;
    if (r->events == 0)
        r->since_ms = now_ms;
    r->events += events;
}

bool cs_ack_run_due(const cs_ack_run *r, int64_t now_ms, uint64_t every, int64_t delay_ms)
{
    if (r->events == 0)
        return false;
    return r->events >= every || now_ms - r->since_ms >= delay_ms;
}

int64_t cs_ack_run_deadline(const cs_ack_run *r, int64_t delay_ms)
{
    return r->events == 0 ? INT64_MAX : r->since_ms + delay_ms;
}

void cs_ack_run_clear(cs_ack_run *r)
{
    r->events = 0;
    r->since_ms = 0;
}
