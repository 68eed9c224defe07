#define _POSIX_C_SOURCE 200809L
#include "store.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cartshard/pg.h"

/* The session's prepared statements: name, SQL, number of parameters. */
static const struct stmt {
    const char *name;
    const char *sql;
    int nparams;
} stmts[] = {
    {"load_cart",
     "SELECT cart_id::text, status, version, (extract(epoch FROM created_at) * 1000)::bigint,"
     " (extract(epoch FROM updated_at) * 1000)::bigint FROM carts WHERE user_id = $1"
     " ORDER BY version DESC LIMIT 1",
     1},
    {"load_items", "SELECT sku, quantity FROM cart_items WHERE cart_id = $1::uuid", 1},
    {"processed", "SELECT http_status, coalesce(detail, '') FROM processed_events WHERE event_id = $1", 1},
    {"mark",
     "INSERT INTO processed_events (event_id, user_id, partition, stream_seq, http_status, cart_version, detail)"
     " VALUES ($1, $2, $3, NULLIF($4::bigint, 0), $5, NULLIF($6::bigint, 0), NULLIF($7, ''))",
     7},
    {"idle_users",
     "SELECT user_id FROM carts WHERE status = 'active' AND partition = ANY($1::int[])"
     " AND updated_at <= to_timestamp($2::double precision / 1000) ORDER BY updated_at LIMIT $3",
     3},
    {"prune",
     "DELETE FROM processed_events WHERE event_id IN (SELECT event_id FROM processed_events"
     " WHERE partition = ANY($1::int[]) AND processed_at < to_timestamp($2::double precision / 1000) LIMIT $3)",
     3},
    {"ins_cart",
     "INSERT INTO carts (cart_id, user_id, partition, status, version, created_at, updated_at)"
     " VALUES ($1::uuid, $2, $3, $4, $5, to_timestamp($6::double precision / 1000),"
     " to_timestamp($7::double precision / 1000))",
     7},
    {"upd_cart",
     "UPDATE carts SET status = $2, version = $3, updated_at = to_timestamp($4::double precision / 1000)"
     " WHERE cart_id = $1::uuid",
     4},
    {"upsert_line",
     "INSERT INTO cart_items (cart_id, sku, quantity) VALUES ($1::uuid, $2, $3)"
     " ON CONFLICT (cart_id, sku) DO UPDATE SET quantity = EXCLUDED.quantity",
     3},
    {"del_line", "DELETE FROM cart_items WHERE cart_id = $1::uuid AND sku = $2", 2},
    {"del_lines", "DELETE FROM cart_items WHERE cart_id = $1::uuid", 1},
    {"outbox_add", "INSERT INTO outbox (partition, subject, msg_id, payload) VALUES ($1, $2, $3, $4) RETURNING id", 4},
    {"outbox_del", "DELETE FROM outbox WHERE id = ANY($1::bigint[])", 1},
    {"set_off",
     "INSERT INTO partition_offsets (partition, stream_seq) VALUES ($1, $2)"
     " ON CONFLICT (partition) DO UPDATE SET stream_seq = GREATEST(partition_offsets.stream_seq,"
     " EXCLUDED.stream_seq), updated_at = now()",
     2},
    {"get_off", "SELECT stream_seq FROM partition_offsets WHERE partition = $1", 1},
    {"try_lock", "SELECT pg_try_advisory_lock($1::int, $2::int)", 2},
    {"unlock", "SELECT pg_advisory_unlock($1::int, $2::int)", 2},
    {"join", "SELECT pg_advisory_lock_shared($1::int, 0)", 1},
    {"outbox_list",
     "SELECT id, subject, msg_id, payload FROM outbox WHERE partition = ANY($1::int[]) ORDER BY id LIMIT 500", 1},
    {"count_locks",
     /* pg_locks lists the locks of every database of the server: only this database's members
      * count (another deployment on the same server has a group of its own). */
     "SELECT count(DISTINCT pid) FROM pg_locks WHERE locktype = 'advisory' AND classid = $1::int::oid"
     " AND objsubid = 2 AND granted"
     " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
     1},
};

static void set_err(cs_store_err *e, PGconn *pg, PGresult *res)
{
    const char *msg = res ? PQresultErrorMessage(res) : PQerrorMessage(pg);
    size_t n;

    e->transient = cart_pg_error_is_transient(pg, res);
    snprintf(e->msg, sizeof e->msg, "%s", msg && *msg ? msg : "connection lost");
    n = strlen(e->msg);
    while (n > 0 && (e->msg[n - 1] == '\n' || e->msg[n - 1] == ' '))
        e->msg[--n] = '\0';
    for (char *p = e->msg; *p; p++)
        if (*p == '\n')
            *p = ' ';
}

/* Runs prepared statement `name`; on success *out is the result (PQclear it). */
static cart_status run(PGconn *pg, const char *name, int n, const char *const *vals, ExecStatusType want,
                       PGresult **out, cs_store_err *e)
{
    PGresult *res = PQexecPrepared(pg, name, n, vals, NULL, NULL, 0);

    if (res == NULL || PQresultStatus(res) != want) {
        set_err(e, pg, res);
        PQclear(res);
        return CART_ERR_UNAVAILABLE;
    }
    if (out)
        *out = res;
    else
        PQclear(res);
    return CART_OK;
}

cart_status cs_store_prepare(PGconn *pg, cs_store_err *e)
{
    PGresult *res;

    for (size_t i = 0; i < sizeof stmts / sizeof stmts[0]; i++) {
        res = PQprepare(pg, stmts[i].name, stmts[i].sql, stmts[i].nparams, NULL);
        if (PQresultStatus(res) != PGRES_COMMAND_OK) {
            set_err(e, pg, res);
            PQclear(res);
            return CART_ERR_UNAVAILABLE;
        }
        PQclear(res);
    }
    return cs_store_exec(pg,
                         "SET tcp_keepalives_idle = 5; SET tcp_keepalives_interval = 2;"
                         " SET tcp_keepalives_count = 3; SET statement_timeout = '30s'",
                         e);
}

cart_status cs_store_exec(PGconn *pg, const char *sql, cs_store_err *e)
{
    PGresult *res = PQexec(pg, sql);

    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        set_err(e, pg, res);
        PQclear(res);
        return CART_ERR_UNAVAILABLE;
    }
    PQclear(res);
    return CART_OK;
}

cart_status cs_store_load_cart(PGconn *pg, const char *user_id, cart *c, cs_store_err *e)
{
    PGresult *res = NULL;
    const char *vals[1] = {user_id};
    cart_status st;

    st = run(pg, "load_cart", 1, vals, PGRES_TUPLES_OK, &res, e);
    if (st != CART_OK)
        return st;
    if (PQntuples(res) == 1) {
        snprintf(c->cart_id, sizeof c->cart_id, "%s", PQgetvalue(res, 0, 0));
        if (cart_state_parse(PQgetvalue(res, 0, 1), strlen(PQgetvalue(res, 0, 1)), &c->state) != CART_OK)
            c->state = CART_DELETED; /* the schema's CHECK allows nothing else */
        c->version = strtoll(PQgetvalue(res, 0, 2), NULL, 10);
        c->created_at_ms = strtoll(PQgetvalue(res, 0, 3), NULL, 10);
        c->updated_at_ms = strtoll(PQgetvalue(res, 0, 4), NULL, 10);
    }
    PQclear(res);
    res = NULL;
    /* A deleted cart has no lines; a checked-out or expired one keeps them (a repeated checkout is
     * answered with the cart it checked out). */
    if (c->state == CART_NONE || c->state == CART_DELETED)
        return CART_OK;
    vals[0] = c->cart_id;
    st = run(pg, "load_items", 1, vals, PGRES_TUPLES_OK, &res, e);
    if (st != CART_OK)
        return st;
    for (int i = 0; i < PQntuples(res) && st == CART_OK; i++)
        st = cart_put_line(c, PQgetvalue(res, i, 0), (int32_t)strtol(PQgetvalue(res, i, 1), NULL, 10));
    PQclear(res);
    if (st != CART_OK) {
        e->transient = false;
        snprintf(e->msg, sizeof e->msg, "loading cart lines: %s", cart_status_str(st));
    }
    return st == CART_OK ? CART_OK : CART_ERR_UNAVAILABLE;
}

cart_status cs_store_processed(PGconn *pg, const char *event_id, bool *found, int *http_status, char *detail,
                               size_t detail_size, cs_store_err *e)
{
    PGresult *res = NULL;
    const char *vals[1] = {event_id};
    cart_status st = run(pg, "processed", 1, vals, PGRES_TUPLES_OK, &res, e);

    if (st != CART_OK)
        return st;
    *found = PQntuples(res) > 0;
    *http_status = *found ? atoi(PQgetvalue(res, 0, 0)) : 0;
    if (detail_size > 0)
        snprintf(detail, detail_size, "%s", *found ? PQgetvalue(res, 0, 1) : "");
    PQclear(res);
    return CART_OK;
}

cart_status cs_store_mark_processed(PGconn *pg, const cart_event *ev, uint32_t partition, uint64_t stream_seq,
                                    int http_status, int64_t version, const char *detail, cs_store_err *e)
{
    char part[16], seq[24], status[8], ver[24];
    const char *vals[7] = {ev->event_id, ev->user_id, part, seq, status, ver, detail ? detail : ""};

    snprintf(part, sizeof part, "%u", partition);
    snprintf(seq, sizeof seq, "%" PRIu64, stream_seq);
    snprintf(status, sizeof status, "%d", http_status);
    snprintf(ver, sizeof ver, "%" PRId64, version);
    return run(pg, "mark", 7, vals, PGRES_COMMAND_OK, NULL, e);
}

cart_status cs_store_save(PGconn *pg, const cart *c, const cart_outcome *o, uint32_t partition, cs_store_err *e)
{
    char part[16], ver[24], created[24], updated[24], qty[16];
    cart_status st;

    snprintf(part, sizeof part, "%u", partition);
    snprintf(ver, sizeof ver, "%" PRId64, c->version);
    snprintf(created, sizeof created, "%" PRId64, c->created_at_ms);
    snprintf(updated, sizeof updated, "%" PRId64, c->updated_at_ms);
    if (o->created) {
        const char *vals[7] = {c->cart_id, c->user_id, part, cart_state_name(c->state), ver, created, updated};
        st = run(pg, "ins_cart", 7, vals, PGRES_COMMAND_OK, NULL, e);
    } else {
        const char *vals[4] = {c->cart_id, cart_state_name(c->state), ver, updated};
        st = run(pg, "upd_cart", 4, vals, PGRES_COMMAND_OK, NULL, e);
    }
    if (st != CART_OK)
        return st;
    if (c->state == CART_DELETED) {
        const char *vals[1] = {c->cart_id};
        return run(pg, "del_lines", 1, vals, PGRES_COMMAND_OK, NULL, e);
    }
    if (!o->line_changed)
        return CART_OK;
    if (o->line_quantity > 0) {
        snprintf(qty, sizeof qty, "%d", (int)o->line_quantity);
        const char *vals[3] = {c->cart_id, o->sku, qty};
        return run(pg, "upsert_line", 3, vals, PGRES_COMMAND_OK, NULL, e);
    }
    const char *vals[2] = {c->cart_id, o->sku};
    return run(pg, "del_line", 2, vals, PGRES_COMMAND_OK, NULL, e);
}

cart_status cs_store_outbox_add(PGconn *pg, uint32_t partition, const char *subject, const char *msg_id,
                                const char *payload, int64_t *id, cs_store_err *e)
{
    char part[16];
    const char *vals[4] = {part, subject, msg_id, payload};
    PGresult *res = NULL;
    cart_status st;

    snprintf(part, sizeof part, "%u", partition);
    st = run(pg, "outbox_add", 4, vals, PGRES_TUPLES_OK, &res, e);
    if (st != CART_OK)
        return st;
    *id = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    PQclear(res);
    return CART_OK;
}

cart_status cs_store_outbox_delete(PGconn *pg, const int64_t *ids, size_t n, cs_store_err *e)
{
    char *arr;
    size_t cap = 3 + n * 21, len = 0;
    cart_status st;

    if (n == 0)
        return CART_OK;
    arr = malloc(cap);
    if (arr == NULL) {
        e->transient = true;
        snprintf(e->msg, sizeof e->msg, "out of memory");
        return CART_ERR_NOMEM;
    }
    arr[len++] = '{';
    for (size_t i = 0; i < n; i++)
        len += (size_t)snprintf(arr + len, cap - len, "%s%" PRId64, i ? "," : "", ids[i]);
    snprintf(arr + len, cap - len, "}");
    const char *vals[1] = {arr};
    st = run(pg, "outbox_del", 1, vals, PGRES_COMMAND_OK, NULL, e);
    free(arr);
    return st;
}

cart_status cs_store_set_offset(PGconn *pg, uint32_t partition, uint64_t stream_seq, cs_store_err *e)
{
    char part[16], seq[24];
    const char *vals[2] = {part, seq};

    snprintf(part, sizeof part, "%u", partition);
    snprintf(seq, sizeof seq, "%" PRIu64, stream_seq);
    return run(pg, "set_off", 2, vals, PGRES_COMMAND_OK, NULL, e);
}

cart_status cs_store_get_offset(PGconn *pg, uint32_t partition, uint64_t *stream_seq, cs_store_err *e)
{
    char part[16];
    const char *vals[1] = {part};
    PGresult *res = NULL;
    cart_status st;

    snprintf(part, sizeof part, "%u", partition);
    st = run(pg, "get_off", 1, vals, PGRES_TUPLES_OK, &res, e);
    if (st != CART_OK)
        return st;
    *stream_seq = PQntuples(res) ? strtoull(PQgetvalue(res, 0, 0), NULL, 10) : 0;
    PQclear(res);
    return CART_OK;
}

static cart_status lock_call(PGconn *pg, const char *name, int32_t ns, int32_t key, bool *result, cs_store_err *e)
{
    char a[16], b[16];
    const char *vals[2] = {a, b};
    PGresult *res = NULL;
    cart_status st;

    snprintf(a, sizeof a, "%d", (int)ns);
    snprintf(b, sizeof b, "%d", (int)key);
    st = run(pg, name, 2, vals, PGRES_TUPLES_OK, &res, e);
    if (st != CART_OK)
        return st;
    if (result)
        *result = PQgetvalue(res, 0, 0)[0] == 't';
    PQclear(res);
    return CART_OK;
}

cart_status cs_store_try_lock(PGconn *pg, int32_t ns, int32_t key, bool *got, cs_store_err *e)
{
    return lock_call(pg, "try_lock", ns, key, got, e);
}

cart_status cs_store_unlock(PGconn *pg, int32_t ns, int32_t key, cs_store_err *e)
{
    return lock_call(pg, "unlock", ns, key, NULL, e);
}

cart_status cs_store_count_locks(PGconn *pg, int32_t ns, int *count, cs_store_err *e)
{
    char a[16];
    const char *vals[1] = {a};
    PGresult *res = NULL;
    cart_status st;

    snprintf(a, sizeof a, "%d", (int)ns);
    st = run(pg, "count_locks", 1, vals, PGRES_TUPLES_OK, &res, e);
    if (st != CART_OK)
        return st;
    *count = atoi(PQgetvalue(res, 0, 0));
    PQclear(res);
    return CART_OK;
}

cart_status cs_store_join(PGconn *pg, int32_t ns, cs_store_err *e)
{
    char a[16];
    const char *vals[1] = {a};

    snprintf(a, sizeof a, "%d", (int)ns);
    return run(pg, "join", 1, vals, PGRES_TUPLES_OK, NULL, e);
}

cart_status cs_store_outbox_list(PGconn *pg, const char *partitions, PGresult **rows, cs_store_err *e)
{
    const char *vals[1] = {partitions};

    return run(pg, "outbox_list", 1, vals, PGRES_TUPLES_OK, rows, e);
}

cart_status cs_store_idle_users(PGconn *pg, const char *partitions, int64_t idle_before_ms, int limit, PGresult **rows,
                                cs_store_err *e)
{
    char before[24], lim[16];
    const char *vals[3] = {partitions, before, lim};

    snprintf(before, sizeof before, "%" PRId64, idle_before_ms);
    snprintf(lim, sizeof lim, "%d", limit);
    return run(pg, "idle_users", 3, vals, PGRES_TUPLES_OK, rows, e);
}

cart_status cs_store_prune_processed(PGconn *pg, const char *partitions, int64_t older_than_ms, int limit,
                                     long *deleted, cs_store_err *e)
{
    char before[24], lim[16];
    const char *vals[3] = {partitions, before, lim};
    PGresult *res = NULL;
    cart_status st;

    snprintf(before, sizeof before, "%" PRId64, older_than_ms);
    snprintf(lim, sizeof lim, "%d", limit);
    st = run(pg, "prune", 3, vals, PGRES_COMMAND_OK, &res, e);
    if (st != CART_OK)
        return st;
    *deleted = strtol(PQcmdTuples(res), NULL, 10);
    PQclear(res);
    return CART_OK;
}
