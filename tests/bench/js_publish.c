/*
 * js_publish: the bus's own intake limit, the `js_publish` baseline of `scripts/dev bench`
 * (docs/performance.md). Publishes cart.item_added events, encoded by libcartshard exactly as the
 * gateway encodes a respond-async add, to JetStream with nats.c's asynchronous publish and at
 * most --inflight unacknowledged at a time (the gateway's concurrency under wrk -c64), for
 * --seconds, then waits for every acknowledgement and prints one line of JSON on stdout:
 *
 *   {"published":N,"acked":N,"errors":0,"duplicates":0,"seconds":S,"rate":R,"inflight":64,
 *    "event_bytes":B,"latency_ms":{"p50":..,"p90":..,"p99":..,"p99_9":..,"max":..}}
 *
 * "rate" is acknowledged events per second, from the first publish to the last acknowledgement.
 * The latency is from the publish call to its acknowledgement's arrival. Each message carries
 * Nats-Msg-Id = event_id (so JetStream's dedup window looks up and records every one, as for
 * the gateway's) and one more header of the gateway's size (the gateway's Cart-Publish-Id; here
 * the send time). Exit status 0 when every event was acknowledged without error, 1 otherwise
 * (then the JSON still says what happened), 2 for a bad argument (named on stderr).
 *
 * A bench tool: built with the tests, never installed, no part of the services.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <nats/nats.h>

#include "cartshard/bus.h"
#include "cartshard/clock.h"
#include "cartshard/event.h"
#include "cartshard/partition.h"

#define JP_HDR_SENT "Bench-Sent-Ns"

/* The run's settings, from the command line. */
typedef struct jp_args {
    /** --url: the NATS server. */
    const char *url;
    /** --subject-prefix: events go to "<prefix>.<partition>" (a stream must take them). */
    const char *subject_prefix;
    /** --user-prefix: user n is "<prefix><n, six digits>", as the bench names its users. */
    const char *user_prefix;
    /** --seconds: how long to publish. */
    double seconds;
    /** --inflight: the most unacknowledged publishes at a time. */
    int inflight;
    /** --users: how many users the events spread over, round robin. */
    int users;
    /** --partitions: CART_PARTITIONS of the stack. */
    int partitions;
} jp_args;

/* What the acknowledgement handler (nats.c's thread) records; guarded by mu. */
typedef struct jp_acks {
    pthread_mutex_t mu;
    int64_t acked;
    int64_t errors;
    int64_t duplicates;
    char first_error[160];
    /** Acknowledgement latencies in ns, one per acknowledged event, grown as needed. */
    int64_t *lat;
    size_t nlat, caplat;
} jp_acks;

static int64_t mono_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Copies `src` into dst[0..cap) with anything that would need escaping in a JSON string as '?'. */
static void json_safe_copy(char *dst, size_t cap, const char *src)
{
    size_t i = 0;

    for (; src[i] != '\0' && i + 1 < cap; i++)
        dst[i] = src[i] == '"' || src[i] == '\\' || (unsigned char)src[i] < 0x20 ? '?' : src[i];
    dst[i] = '\0';
}

static void on_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure)
{
    jp_acks *a = closure;
    const char *sent = NULL;
    int64_t now = mono_ns();

    pthread_mutex_lock(&a->mu);
    if (pa != NULL && !pa->Duplicate) {
        a->acked++;
        if (natsMsgHeader_Get(msg, JP_HDR_SENT, &sent) == NATS_OK && sent != NULL) {
            if (a->nlat == a->caplat) {
                size_t cap = a->caplat ? 2 * a->caplat : 65536;
                int64_t *grown = realloc(a->lat, cap * sizeof *grown);
                if (grown != NULL) {
                    a->lat = grown;
                    a->caplat = cap;
                }
            }
            if (a->nlat < a->caplat)
                a->lat[a->nlat++] = now - strtoll(sent, NULL, 10);
        }
    } else {
        if (pa != NULL)
            a->duplicates++;
        else
            a->errors++;
        if (a->first_error[0] == '\0')
            json_safe_copy(a->first_error, sizeof a->first_error,
                           pa != NULL                            ? "duplicate (an event_id stored twice)"
                           : pae != NULL && pae->ErrText != NULL ? pae->ErrText
                           : pae != NULL                         ? natsStatus_GetText(pae->Err)
                                                                 : "no acknowledgement");
    }
    pthread_mutex_unlock(&a->mu);
    natsMsg_Destroy(msg);
}

static int cmp_i64(const void *x, const void *y)
{
    int64_t a = *(const int64_t *)x, b = *(const int64_t *)y;
    return (a > b) - (a < b);
}

/* The q-quantile (0..1) of n sorted values, in ms; 0 when there are none. */
static double quantile_ms(const int64_t *v, size_t n, double q)
{
    size_t i;

    if (n == 0)
        return 0;
    i = (size_t)(q * (double)(n - 1) + 0.5);
    return (double)v[i] / 1e6;
}

static bool parse_int(const char *s, int lo, int hi, int *out)
{
    char *end = NULL;
    long v;

    errno = 0;
    v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi)
        return false;
    *out = (int)v;
    return true;
}

static bool parse_seconds(const char *s, double *out)
{
    char *end = NULL;
    double v;

    errno = 0;
    v = strtod(s, &end);
    if (errno != 0 || end == s || *end != '\0' || !(v > 0 && v <= 3600))
        return false;
    *out = v;
    return true;
}

/* Reads "--name value" pairs into *a. 0, or -1 with the reason on stderr. */
static int parse_args(int argc, char **argv, jp_args *a)
{
    char user[CART_ID_MAX + 16];

    *a = (jp_args){.url = NULL,
                   .subject_prefix = CART_SUBJ_EVENTS,
                   .user_prefix = "jsp-",
                   .seconds = 8,
                   .inflight = 64,
                   .users = 10000,
                   .partitions = 32};
    for (int i = 1; i < argc; i += 2) {
        const char *name = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        const char *why = NULL;

        if (strcmp(name, "--url") != 0 && strcmp(name, "--subject-prefix") != 0 && strcmp(name, "--user-prefix") != 0 &&
            strcmp(name, "--seconds") != 0 && strcmp(name, "--inflight") != 0 && strcmp(name, "--users") != 0 &&
            strcmp(name, "--partitions") != 0)
            why = "unknown option (there are --url, --subject-prefix, --user-prefix, --seconds, --inflight, "
                  "--users, --partitions)";
        else if (val == NULL)
            why = "needs a value";
        else if (strcmp(name, "--url") == 0)
            a->url = val;
        else if (strcmp(name, "--subject-prefix") == 0)
            a->subject_prefix = val;
        else if (strcmp(name, "--user-prefix") == 0)
            a->user_prefix = val;
        else if (strcmp(name, "--seconds") == 0 && !parse_seconds(val, &a->seconds))
            why = "expected a number of seconds above 0, at most 3600";
        else if (strcmp(name, "--inflight") == 0 && !parse_int(val, 1, 65536, &a->inflight))
            why = "expected an integer from 1 to 65536";
        else if (strcmp(name, "--users") == 0 && !parse_int(val, 1, 999999, &a->users))
            why = "expected an integer from 1 to 999999";
        else if (strcmp(name, "--partitions") == 0 && !parse_int(val, 1, 4096, &a->partitions))
            why = "expected an integer from 1 to 4096";
        if (why != NULL) {
            fprintf(stderr, "js_publish: %s: %s\n", name, why);
            return -1;
        }
    }
    if (a->url == NULL) {
        fprintf(stderr, "js_publish: --url: the NATS server is required\n");
        return -1;
    }
    snprintf(user, sizeof user, "%s%06d", a->user_prefix, a->users - 1);
    if (strlen(a->user_prefix) + 6 > CART_ID_MAX || !cart_valid_id(user, strlen(user))) {
        fprintf(stderr, "js_publish: --user-prefix: a user id is 1-64 characters of [A-Za-z0-9._:-], "
                        "the prefix and six digits\n");
        return -1;
    }
    if (strlen(a->subject_prefix) + 8 > CART_SUBJECT_MAX) {
        fprintf(stderr, "js_publish: --subject-prefix: too long\n");
        return -1;
    }
    return 0;
}

/* Publishes event number n (user n mod users); 0, or -1 with *s set. */
static int publish_one(jsCtx *js, const jp_args *a, int64_t n, size_t *bytes, natsStatus *s)
{
    cart_event ev;
    char subject[CART_SUBJECT_MAX + 16], sent[24];
    char *payload = NULL;
    size_t len = 0;
    natsMsg *msg = NULL;
    int rc = -1;

    memset(&ev, 0, sizeof ev);
    ev.type = CART_EV_ITEM_ADDED;
    snprintf(ev.user_id, sizeof ev.user_id, "%s%06d", a->user_prefix, (int)(n % a->users));
    snprintf(ev.sku, sizeof ev.sku, "A1");
    ev.quantity = 1;
    ev.occurred_at_ms = cart_now_ms();
    cart_event_new_id(&ev);
    cart_uuid_v4(ev.trace); /* the gateway's trace id when the request brings none */
    if (cart_event_encode(&ev, &payload, &len) != CART_OK) {
        *s = NATS_NO_MEMORY;
        goto out;
    }
    snprintf(subject, sizeof subject, "%s.%" PRIu32, a->subject_prefix,
             cart_partition_of(ev.user_id, strlen(ev.user_id), (uint32_t)a->partitions));
    snprintf(sent, sizeof sent, "%" PRId64, mono_ns());
    if ((*s = natsMsg_Create(&msg, subject, NULL, payload, (int)len)) != NATS_OK ||
        (*s = natsMsgHeader_Set(msg, CART_HDR_MSG_ID, ev.event_id)) != NATS_OK ||
        (*s = natsMsgHeader_Set(msg, JP_HDR_SENT, sent)) != NATS_OK)
        goto out;
    /* Blocks while --inflight publishes wait for their acknowledgement (MaxPending). */
    if ((*s = js_PublishMsgAsync(js, &msg, NULL)) != NATS_OK)
        goto out;
    *bytes = len;
    rc = 0;
out:
    natsMsg_Destroy(msg); /* NULL once JetStream took it */
    free(payload);
    return rc;
}

int main(int argc, char **argv)
{
    jp_args a;
    jp_acks acks = {.first_error = ""};
    natsConnection *nc = NULL;
    natsOptions *opts = NULL;
    jsCtx *js = NULL;
    jsOptions jo;
    jsPubOptions po;
    natsStatus s = NATS_OK, s2;
    int64_t published = 0, t0, t1, deadline;
    size_t event_bytes = 0;
    const char *failed = NULL;
    int rc = 1;

    if (parse_args(argc, argv, &a) != 0)
        return 2;
    pthread_mutex_init(&acks.mu, NULL);
    if ((s = natsOptions_Create(&opts)) != NATS_OK || (s = natsOptions_SetURL(opts, a.url)) != NATS_OK ||
        (s = natsConnection_Connect(&nc, opts)) != NATS_OK) {
        failed = "connect";
        goto out;
    }
    jsOptions_Init(&jo);
    jo.PublishAsync.MaxPending = a.inflight;
    jo.PublishAsync.StallWait = 10000; /* a stall this long is a failure, not a wait */
    jo.PublishAsync.AckHandler = on_ack;
    jo.PublishAsync.AckHandlerClosure = &acks;
    if ((s = natsConnection_JetStream(&js, nc, &jo)) != NATS_OK) {
        failed = "jetstream context";
        goto out;
    }
    t0 = mono_ns();
    deadline = t0 + (int64_t)(a.seconds * 1e9);
    while (mono_ns() < deadline) {
        if (publish_one(js, &a, published, &event_bytes, &s) != 0) {
            failed = "publish";
            break;
        }
        published++;
    }
    /* Even after a failed publish: every acknowledgement in flight arrives before the end. */
    jsPubOptions_Init(&po);
    po.MaxWait = 30000;
    if ((s2 = js_PublishAsyncComplete(js, &po)) != NATS_OK && failed == NULL) {
        failed = "waiting for the acknowledgements";
        s = s2;
    }
    t1 = mono_ns();

    pthread_mutex_lock(&acks.mu);
    qsort(acks.lat, acks.nlat, sizeof *acks.lat, cmp_i64);
    printf("{\"published\":%" PRId64 ",\"acked\":%" PRId64 ",\"errors\":%" PRId64 ",\"duplicates\":%" PRId64
           ",\"seconds\":%.3f,\"rate\":%.1f,\"inflight\":%d,\"users\":%d,\"event_bytes\":%zu,"
           "\"latency_ms\":{\"p50\":%.3f,\"p90\":%.3f,\"p99\":%.3f,\"p99_9\":%.3f,\"max\":%.3f}",
           published, acks.acked, acks.errors, acks.duplicates, (double)(t1 - t0) / 1e9,
           (double)acks.acked / ((double)(t1 - t0) / 1e9), a.inflight, a.users, event_bytes,
           quantile_ms(acks.lat, acks.nlat, 0.5), quantile_ms(acks.lat, acks.nlat, 0.9),
           quantile_ms(acks.lat, acks.nlat, 0.99), quantile_ms(acks.lat, acks.nlat, 0.999),
           quantile_ms(acks.lat, acks.nlat, 1.0));
    if (failed != NULL)
        printf(",\"failed\":\"%s: %s\"", failed, natsStatus_GetText(s));
    else if (acks.first_error[0] != '\0')
        printf(",\"failed\":\"%s\"", acks.first_error);
    printf("}\n");
    rc = failed == NULL && acks.errors == 0 && acks.duplicates == 0 && acks.acked == published ? 0 : 1;
    pthread_mutex_unlock(&acks.mu);
    goto done;
out:
    fprintf(stderr, "js_publish: %s: %s\n", failed, natsStatus_GetText(s));
done:
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    natsOptions_Destroy(opts);
    nats_Close();
    free(acks.lat);
    pthread_mutex_destroy(&acks.mu);
    return rc;
}
