#define _POSIX_C_SOURCE 200809L
#include "ratelimit.h"

#include <stdlib.h>
#include <string.h>

#include "cartshard/partition.h"

#define CLIENT_MAX 127

static int64_t ceil_div(int64_t a, int64_t b)
{
    return a <= 0 ? 0 : (a + b - 1) / b;
}

gw_rate_verdict gw_gcra(int64_t *tat_us, int64_t now_us, double rate, int64_t burst)
{
    gw_rate_verdict v = {0};
    double interval = 1e6 / rate;
    double window = interval * (double)burst;
    double tat = *tat_us < now_us ? (double)now_us : (double)*tat_us;
    double new_tat = tat + interval;
    double allow_at = new_tat - window;

    if ((double)now_us < allow_at) {
        v.retry_after_ms = ceil_div((int64_t)(allow_at - (double)now_us + 0.5), 1000);
        v.reset_ms = ceil_div((int64_t)(tat - (double)now_us + 0.5), 1000);
        return v;
    }
    *tat_us = (int64_t)(new_tat + 0.5);
    v.allowed = true;
    v.remaining = (int64_t)((window - (new_tat - (double)now_us)) / interval);
    v.reset_ms = ceil_div((int64_t)(new_tat - (double)now_us + 0.5), 1000);
    return v;
}

typedef struct slot {
    char client[CLIENT_MAX + 1]; /* empty: free */
    int64_t tat_us;
    int64_t seen_us;
} slot;

struct gw_local_limiter {
    slot *slots;
    size_t mask;
};

gw_local_limiter *gw_local_limiter_new(size_t capacity)
{
    gw_local_limiter *l = calloc(1, sizeof *l);
    size_t n = 16;

    while (n < capacity)
        n *= 2;
    if (l == NULL || (l->slots = calloc(n, sizeof *l->slots)) == NULL) {
        free(l);
        return NULL;
    }
    l->mask = n - 1;
    return l;
}

void gw_local_limiter_free(gw_local_limiter *l)
{
    if (l == NULL)
        return;
    free(l->slots);
    free(l);
}

/* Open addressing over a short probe window: the client's slot, a free one, or the stalest. */
#define PROBES 8

gw_rate_verdict gw_local_limit(gw_local_limiter *l, const char *client, int64_t now_us, double rate, int64_t burst)
{
    size_t len = strnlen(client, CLIENT_MAX);
    size_t at = cart_fnv1a32(client, len) & l->mask;
    slot *victim = NULL;

    for (size_t i = 0; i < PROBES; i++) {
        slot *s = &l->slots[(at + i) & l->mask];
        if (s->client[0] != '\0' && strncmp(s->client, client, len) == 0 && s->client[len] == '\0') {
            s->seen_us = now_us;
            return gw_gcra(&s->tat_us, now_us, rate, burst);
        }
        if (victim == NULL || s->client[0] == '\0' || (victim->client[0] != '\0' && s->seen_us < victim->seen_us))
            victim = s;
    }
    memcpy(victim->client, client, len);
    victim->client[len] = '\0';
    victim->tat_us = 0;
    victim->seen_us = now_us;
    return gw_gcra(&victim->tat_us, now_us, rate, burst);
}
