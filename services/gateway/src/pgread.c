#define _POSIX_C_SOURCE 200809L
#include "pgread.h"

#include <stdlib.h>
#include <string.h>

#include "cartshard/log.h"
#include "cartshard/pg.h"

#define MAX_QUEUE      4096
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 3000

typedef struct gw_pg_q {
    char *sql;
    int nparams;
    char **params;
    gw_pg_cb cb;
    void *arg;
    struct gw_pg_q *next;
} gw_pg_q;

typedef enum { PG_IDLE, PG_CONNECTING, PG_READY, PG_BUSY } pg_state;

struct gw_pg {
    uv_loop_t *loop;
    char *dsn;
    char *app;
    PGconn *conn;
    uv_poll_t poll;
    bool poll_open;
    uv_timer_t retry;
    pg_state state;
    gw_pg_q *head, *tail; /* head is in flight when state == PG_BUSY */
    int queued;
    int64_t backoff;
    bool closing;
    int open_handles;
    cart_metric *errors; /* counts every reset (a failed connect or a lost connection) */
};

static void q_free(gw_pg_q *q)
{
    for (int i = 0; i < q->nparams; i++)
        free(q->params[i]);
    free(q->params);
    free(q->sql);
    free(q);
}

static gw_pg_q *q_pop(gw_pg *pg)
{
    gw_pg_q *q = pg->head;

    if (q) {
        pg->head = q->next;
        if (pg->head == NULL)
            pg->tail = NULL;
        pg->queued--;
    }
    return q;
}

static void fail_all(gw_pg *pg, const char *why)
{
    gw_pg_q *q;

    while ((q = q_pop(pg)) != NULL) {
        q->cb(q->arg, NULL, why);
        q_free(q);
    }
}

static void start_connect(gw_pg *pg);
static void on_poll(uv_poll_t *h, int status, int events);

static void on_poll_closed(uv_handle_t *h)
{
    gw_pg *pg = h->data;

    PQfinish(pg->conn);
    pg->conn = NULL;
    pg->open_handles--;
    if (pg->closing && pg->open_handles == 0) {
        free(pg->dsn);
        free(pg->app);
        free(pg);
    }
}

static void on_retry(uv_timer_t *t)
{
    start_connect(t->data);
}

/* Drops the connection; queued queries fail fast so callers answer 503 rather than wait. */
static void reset(gw_pg *pg, const char *why)
{
    if (pg->state == PG_READY || pg->state == PG_BUSY)
        cart_log(CART_LOG_WARN, "shard read connection lost", CART_LS("error", why), NULL);
    cart_counter_inc(pg->errors);
    pg->state = PG_IDLE;
    fail_all(pg, why);
    if (pg->poll_open) {
        pg->poll_open = false;
        uv_poll_stop(&pg->poll);
        uv_close((uv_handle_t *)&pg->poll, on_poll_closed);
    } else {
        PQfinish(pg->conn);
        pg->conn = NULL;
        pg->open_handles--;
    }
    if (!pg->closing) {
        uv_timer_start(&pg->retry, on_retry, (uint64_t)pg->backoff, 0);
        pg->backoff = pg->backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : pg->backoff * 2;
    }
}

static void send_next(gw_pg *pg)
{
    gw_pg_q *q = pg->head;

    if (pg->state != PG_READY || q == NULL)
        return;
    if (!PQsendQueryParams(pg->conn, q->sql, q->nparams, NULL, (const char *const *)q->params, NULL, NULL, 0)) {
        reset(pg, PQerrorMessage(pg->conn));
        return;
    }
    pg->state = PG_BUSY;
    PQflush(pg->conn);
    uv_poll_start(&pg->poll, UV_READABLE | UV_WRITABLE, on_poll);
}

static void on_result_ready(gw_pg *pg)
{
    PGresult *res, *last = NULL;
    gw_pg_q *q;

    while ((res = PQgetResult(pg->conn)) != NULL) {
        PQclear(last);
        last = res;
    }
    q = q_pop(pg);
    pg->state = PG_READY;
    if (q) {
        if (last && PQresultStatus(last) == PGRES_TUPLES_OK) {
            q->cb(q->arg, last, NULL);
        } else {
            cart_counter_inc(pg->errors);
            q->cb(q->arg, NULL, last ? PQresultErrorMessage(last) : PQerrorMessage(pg->conn));
        }
        q_free(q);
    }
    PQclear(last);
    send_next(pg);
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    gw_pg *pg = h->data;

    if (status < 0) {
        reset(pg, uv_strerror(status));
        return;
    }
    if (pg->state == PG_CONNECTING) {
        switch (PQconnectPoll(pg->conn)) {
        case PGRES_POLLING_READING:
            uv_poll_start(&pg->poll, UV_READABLE, on_poll);
            return;
        case PGRES_POLLING_WRITING:
            uv_poll_start(&pg->poll, UV_WRITABLE, on_poll);
            return;
        case PGRES_POLLING_OK:
            pg->state = PG_READY;
            pg->backoff = BACKOFF_MIN_MS;
            PQsetnonblocking(pg->conn, 1);
            uv_poll_start(&pg->poll, UV_READABLE, on_poll);
            send_next(pg);
            return;
        default:
            reset(pg, PQerrorMessage(pg->conn));
            return;
        }
    }
    if (pg->state != PG_BUSY) {
        /* Idle and readable: a notice or the server closing the connection. */
        if ((events & UV_READABLE) && (!PQconsumeInput(pg->conn) || PQstatus(pg->conn) == CONNECTION_BAD))
            reset(pg, PQerrorMessage(pg->conn));
        return;
    }
    if (events & UV_WRITABLE) {
        int f = PQflush(pg->conn);
        if (f < 0) {
            reset(pg, PQerrorMessage(pg->conn));
            return;
        }
        if (f == 0)
            uv_poll_start(&pg->poll, UV_READABLE, on_poll);
    }
    if (events & UV_READABLE) {
        if (!PQconsumeInput(pg->conn)) {
            reset(pg, PQerrorMessage(pg->conn));
            return;
        }
        if (!PQisBusy(pg->conn))
            on_result_ready(pg);
    }
}

static void start_connect(gw_pg *pg)
{
    if (pg->closing)
        return;
    pg->conn = cart_pg_open(pg->dsn, pg->app, 3, true);
    pg->open_handles++;
    if (pg->conn == NULL || PQstatus(pg->conn) == CONNECTION_BAD) {
        pg->poll_open = false;
        reset(pg, pg->conn ? PQerrorMessage(pg->conn) : "out of memory");
        return;
    }
    if (uv_poll_init(pg->loop, &pg->poll, PQsocket(pg->conn)) != 0) {
        pg->poll_open = false;
        reset(pg, "uv_poll_init failed");
        return;
    }
    pg->poll.data = pg;
    pg->poll_open = true;
    pg->state = PG_CONNECTING;
    uv_poll_start(&pg->poll, UV_WRITABLE, on_poll);
}

gw_pg *gw_pg_new(uv_loop_t *loop, const char *dsn, const char *app, cart_metric *errors)
{
    gw_pg *pg = calloc(1, sizeof *pg);

    if (pg == NULL)
        return NULL;
    pg->loop = loop;
    pg->errors = errors;
    pg->dsn = strdup(dsn);
    pg->app = strdup(app);
    pg->backoff = BACKOFF_MIN_MS;
    if (pg->dsn == NULL || pg->app == NULL) {
        free(pg->dsn);
        free(pg->app);
        free(pg);
        return NULL;
    }
    uv_timer_init(loop, &pg->retry);
    pg->retry.data = pg;
    pg->open_handles = 1; /* the retry timer */
    start_connect(pg);
    return pg;
}

int gw_pg_query(gw_pg *pg, const char *sql, int nparams, const char *const *params, gw_pg_cb cb, void *arg)
{
    gw_pg_q *q;

    if (pg == NULL || pg->closing)
        return -1;
    if (pg->queued >= MAX_QUEUE || pg->state == PG_IDLE) {
        cart_counter_inc(pg->errors); /* the shard is away (between connects) or not keeping up */
        return -1;
    }
    q = calloc(1, sizeof *q);
    if (q == NULL)
        return -1;
    q->sql = strdup(sql);
    q->params = calloc((size_t)nparams + 1, sizeof *q->params);
    q->nparams = nparams;
    if (q->sql == NULL || q->params == NULL)
        goto fail;
    for (int i = 0; i < nparams; i++)
        if ((q->params[i] = strdup(params[i])) == NULL)
            goto fail;
    q->cb = cb;
    q->arg = arg;
    if (pg->tail)
        pg->tail->next = q;
    else
        pg->head = q;
    pg->tail = q;
    pg->queued++;
    if (pg->state == PG_READY)
        send_next(pg);
    return 0;
fail:
    q_free(q);
    return -1;
}

bool gw_pg_connected(const gw_pg *pg)
{
    return pg->state == PG_READY || pg->state == PG_BUSY;
}

static void on_timer_closed(uv_handle_t *h)
{
    gw_pg *pg = h->data;

    if (--pg->open_handles == 0) {
        free(pg->dsn);
        free(pg->app);
        free(pg);
    }
}

void gw_pg_free(gw_pg *pg)
{
    if (pg == NULL)
        return;
    pg->closing = true;
    fail_all(pg, "shutting down");
    uv_timer_stop(&pg->retry);
    if (pg->poll_open) {
        pg->poll_open = false;
        uv_poll_stop(&pg->poll);
        uv_close((uv_handle_t *)&pg->poll, on_poll_closed);
    } else if (pg->conn) {
        PQfinish(pg->conn);
        pg->conn = NULL;
        pg->open_handles--;
    }
    uv_close((uv_handle_t *)&pg->retry, on_timer_closed);
}
