#define _POSIX_C_SOURCE 200809L
#include "cartshard/bus.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cartshard/log.h"

#define NS_PER_MS 1000000LL

/* The process's listener (one NATS connection per process). */
static cart_bus_listener listener_fn;
static void *listener_ud;

void cart_bus_set_listener(cart_bus_listener fn, void *ud)
{
    listener_fn = fn;
    listener_ud = ud;
}

static void on_disconnected(natsConnection *nc, void *closure)
{
    cart_log(CART_LOG_WARN, "nats disconnected", CART_LS("client", closure), NULL);
}

static void log_reconnected(natsConnection *nc, void *closure)
{
    char url[256] = "";

    natsConnection_GetConnectedUrl(nc, url, sizeof url);
    cart_log(CART_LOG_INFO, "nats reconnected", CART_LS("client", closure), CART_LS("url", url), NULL);
}

static void log_connected(natsConnection *nc, void *closure)
{
    char url[256] = "";

    natsConnection_GetConnectedUrl(nc, url, sizeof url);
    cart_log(CART_LOG_INFO, "nats connected", CART_LS("client", closure), CART_LS("url", url), NULL);
}

static void on_reconnected(natsConnection *nc, void *closure)
{
    log_reconnected(nc, closure);
    if (listener_fn)
        listener_fn(CART_BUS_RECONNECTED, NATS_OK, listener_ud);
}

static void log_async_error(natsConnection *nc, natsSubscription *sub, natsStatus err, void *closure)
{
    cart_log(CART_LOG_WARN, "nats asynchronous error", CART_LS("client", closure),
             CART_LS("error", natsStatus_GetText(err)), NULL);
}

static void on_async_error(natsConnection *nc, natsSubscription *sub, natsStatus err, void *closure)
{
    log_async_error(nc, sub, err, closure);
    if (listener_fn)
        listener_fn(CART_BUS_ASYNC_ERROR, err, listener_ud);
}

/*
 * Gives nats.c every server of NATS_URL ("url1,url2,..."). natsOptions_SetURL takes one URL only:
 * handed the whole list it parses garbage (the port of the first entry runs into the comma) and,
 * with retry-on-failed-connect, never connects, so a clustered NATS_URL has to be split here into
 * natsOptions_SetServers. Blanks around an entry are dropped; the config loader checked the rest.
 */
static natsStatus set_servers(natsOptions *opts, const char *list)
{
    char *copy = strdup(list), *save = NULL;
    const char **urls = NULL;
    int n = 0, cap = 1;
    natsStatus s = NATS_NO_MEMORY;

    for (const char *c = list; *c; c++)
        cap += *c == ',';
    urls = calloc((size_t)cap, sizeof *urls);
    if (copy == NULL || urls == NULL)
        goto out;
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *end = tok + strlen(tok);
        while (*tok == ' ' || *tok == '\t')
            tok++;
        while (end > tok && (end[-1] == ' ' || end[-1] == '\t'))
            *--end = '\0';
        if (*tok != '\0' && n < cap)
            urls[n++] = tok;
    }
    s = n == 1 ? natsOptions_SetURL(opts, urls[0]) : natsOptions_SetServers(opts, urls, n);
out:
    free(urls);
    free(copy);
    return s;
}

void cart_bus_close(natsConnection *nc, int64_t flush_ms)
{
    if (nc == NULL)
        return;
    if (flush_ms > 0 && natsConnection_Status(nc) == NATS_CONN_STATUS_CONNECTED)
        natsConnection_FlushTimeout(nc, flush_ms);
    natsConnection_Destroy(nc);
}

cart_status cart_bus_connect(const cart_config *cfg, const char *client_name, unsigned flags, natsConnection **nc,
                             char *err, size_t errlen)
{
    bool at_once = (flags & CART_BUS_SEND_AT_ONCE) != 0;
    natsOptions *opts = NULL;
    natsConnection *conn = NULL;
    natsStatus s;
    cart_status st = CART_ERR_UNAVAILABLE;

    s = natsOptions_Create(&opts);
    if (s == NATS_OK)
        s = set_servers(opts, cfg->nats_url);
    if (s == NATS_OK)
        s = natsOptions_SetName(opts, client_name);
    if (s == NATS_OK)
        s = natsOptions_SetMaxReconnect(opts, -1);
    if (s == NATS_OK)
        s = natsOptions_SetReconnectWait(opts, 250);
    if (s == NATS_OK)
        s = natsOptions_SetReconnectJitter(opts, 100, 1000);
    if (s == NATS_OK)
        s = natsOptions_SetTimeout(opts, 2000);
    if (s == NATS_OK)
        s = natsOptions_SetPingInterval(opts, 5000);
    if (s == NATS_OK)
        s = natsOptions_SetMaxPingsOut(opts, 3);
    if (s == NATS_OK)
        s = natsOptions_SetRetryOnFailedConnect(opts, true, (flags & CART_BUS_IN_BACKGROUND) ? log_connected : NULL,
                                                (void *)client_name);
    if (s == NATS_OK)
        s = natsOptions_SetDisconnectedCB(opts, on_disconnected, (void *)client_name);
    if (s == NATS_OK)
        s = natsOptions_SetReconnectedCB(opts, at_once ? log_reconnected : on_reconnected, (void *)client_name);
    if (s == NATS_OK)
        s = natsOptions_SetErrorHandler(opts, at_once ? log_async_error : on_async_error, (void *)client_name);
    if (s == NATS_OK && at_once)
        s = natsOptions_SetSendAsap(opts, true);
    if (s != NATS_OK) {
        snprintf(err, errlen, "NATS_URL: %s", natsStatus_GetText(s));
        goto out;
    }
    /* Without a connected callback nats.c retries in this call until a server answers; with one,
     * NATS_NOT_YET_CONNECTED means "connecting in the background". */
    s = natsConnection_Connect(&conn, opts);
    if (s != NATS_OK && s != NATS_NOT_YET_CONNECTED) {
        snprintf(err, errlen, "NATS_URL: cannot connect: %s", natsStatus_GetText(s));
        goto out;
    }
    *nc = conn;
    conn = NULL;
    st = CART_OK;
out:
    natsConnection_Destroy(conn);
    natsOptions_Destroy(opts);
    return st;
}

/* Creates or updates one stream; `subject` is "<prefix>.*". */
static cart_status ensure_stream(jsCtx *js, const char *name, const char *subject, int replicas, int64_t dup_ms,
                                 char *err, size_t errlen)
{
    jsStreamConfig sc;
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    const char *subjects[1] = {subject};
    natsStatus s;

    jsStreamConfig_Init(&sc);
    sc.Name = name;
    sc.Subjects = subjects;
    sc.SubjectsLen = 1;
    sc.Storage = js_FileStorage;
    sc.Retention = js_LimitsPolicy;
    sc.Replicas = replicas;
    sc.Duplicates = dup_ms * NS_PER_MS;
    sc.MaxAge = 7LL * 24 * 3600 * 1000 * NS_PER_MS;
    s = js_AddStream(&si, js, &sc, NULL, &jerr);
    if (s != NATS_OK && jerr == JSStreamNameExistErr) {
        /* It exists: bring the settings we own up to date (replicas cannot change in 2.9). */
        jsStreamInfo *cur = NULL;
        s = js_GetStreamInfo(&cur, js, name, NULL, &jerr);
        if (s == NATS_OK) {
            sc.Replicas = cur->Config->Replicas;
            jsStreamInfo_Destroy(cur);
            s = js_UpdateStream(&si, js, &sc, NULL, &jerr);
        }
    }
    jsStreamInfo_Destroy(si);
    if (s != NATS_OK) {
        snprintf(err, errlen, "stream %s: %s (JetStream error %d)", name, natsStatus_GetText(s), (int)jerr);
        return CART_ERR_UNAVAILABLE;
    }
    return CART_OK;
}

cart_status cart_bus_ensure_streams(jsCtx *js, const cart_config *cfg, char *err, size_t errlen)
{
    cart_status st;

    st = ensure_stream(js, CART_STREAM_EVENTS, CART_SUBJ_EVENTS ".*", cfg->stream_replicas, 2 * 60 * 1000, err, errlen);
    if (st == CART_OK)
        st = ensure_stream(js, CART_STREAM_DLQ, CART_SUBJ_DLQ ".*", cfg->stream_replicas, 2 * 60 * 1000, err, errlen);
    if (st == CART_OK)
        st = ensure_stream(js, CART_STREAM_CHANGES, CART_SUBJ_CHANGES ".*", cfg->stream_replicas, 2 * 60 * 1000, err,
                           errlen);
    return st;
}

const char *cart_bus_subject(char buf[CART_SUBJECT_MAX], const char *prefix, uint32_t partition)
{
    snprintf(buf, CART_SUBJECT_MAX, "%s.%u", prefix, partition);
    return buf;
}

cart_status cart_bus_subject_partition(const char *subject, const char *prefix, uint32_t partitions,
                                       uint32_t *partition)
{
    size_t plen = strlen(prefix);
    const char *p;
    uint64_t v = 0;

    if (strncmp(subject, prefix, plen) != 0 || subject[plen] != '.')
        return CART_ERR_INVALID;
    p = subject + plen + 1;
    if (*p == '\0' || (*p == '0' && p[1] != '\0'))
        return CART_ERR_INVALID;
    for (; *p; p++) {
        if (*p < '0' || *p > '9')
            return CART_ERR_INVALID;
        v = v * 10 + (uint64_t)(*p - '0');
        if (v >= partitions)
            return CART_ERR_INVALID;
    }
    *partition = (uint32_t)v;
    return CART_OK;
}

natsStatus cart_bus_reply_new(natsMsg **msg, const char *subject, const cart_bus_reply *r, const char *cart_json)
{
    natsMsg *m = NULL;
    char text[16], ver[24];
    natsStatus s;

    snprintf(text, sizeof text, "%d", r->status);
    s = natsMsg_Create(&m, subject, NULL, cart_json ? cart_json : "", cart_json ? (int)strlen(cart_json) : 0);
    if (s == NATS_OK)
        s = natsMsgHeader_Set(m, CART_HDR_EVENT_ID, r->event_id);
    if (s == NATS_OK)
        s = natsMsgHeader_Set(m, CART_HDR_STATUS, text);
    if (s == NATS_OK && r->detail[0])
        s = natsMsgHeader_Set(m, CART_HDR_DETAIL, r->detail);
    if (s == NATS_OK && cart_json && r->version > 0) {
        snprintf(ver, sizeof ver, "%lld", (long long)r->version);
        s = natsMsgHeader_Set(m, CART_HDR_VERSION, ver);
    }
    if (s == NATS_OK && r->replayed)
        s = natsMsgHeader_Set(m, CART_HDR_REPLAYED, "true");
    if (s == NATS_OK && r->fingerprint[0])
        s = natsMsgHeader_Set(m, CART_HDR_FINGERPRINT, r->fingerprint);
    if (s == NATS_OK && r->key_reused)
        s = natsMsgHeader_Set(m, CART_HDR_PROBLEM, CART_PROBLEM_KEY_REUSED);
    if (s != NATS_OK) {
        natsMsg_Destroy(m);
        return s;
    }
    *msg = m;
    return NATS_OK;
}

/* The value of header `name`, or NULL. */
static const char *header_of(natsMsg *msg, const char *name)
{
    const char *v = NULL;

    return natsMsgHeader_Get(msg, name, &v) == NATS_OK ? v : NULL;
}

cart_status cart_bus_reply_read(natsMsg *msg, cart_bus_reply *r)
{
    const char *id = header_of(msg, CART_HDR_EVENT_ID), *status = header_of(msg, CART_HDR_STATUS);
    const char *detail = header_of(msg, CART_HDR_DETAIL), *version = header_of(msg, CART_HDR_VERSION);
    const char *replayed = header_of(msg, CART_HDR_REPLAYED), *fingerprint = header_of(msg, CART_HDR_FINGERPRINT);
    const char *problem = header_of(msg, CART_HDR_PROBLEM);

    if (id == NULL || status == NULL)
        return CART_ERR_INVALID;
    snprintf(r->event_id, sizeof r->event_id, "%s", id);
    r->status = atoi(status);
    snprintf(r->detail, sizeof r->detail, "%s", detail ? detail : "");
    r->version = version ? strtoll(version, NULL, 10) : 0;
    if (r->version < 0)
        r->version = 0;
    r->replayed = replayed && strcmp(replayed, "true") == 0;
    r->key_reused = problem && strcmp(problem, CART_PROBLEM_KEY_REUSED) == 0;
    /* A cut fingerprint would compare unequal to its whole self: one too long is none. */
    r->fingerprint[0] = '\0';
    if (fingerprint && strlen(fingerprint) < sizeof r->fingerprint)
        memcpy(r->fingerprint, fingerprint, strlen(fingerprint) + 1);
    return r->status >= 200 && r->status <= 599 ? CART_OK : CART_ERR_INVALID;
}
