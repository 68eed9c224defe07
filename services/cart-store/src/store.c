#define _POSIX_C_SOURCE 200809L
#include "store.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cartshard/pg.h"
#include "batch.h"

/* The latest cart of each user of load_carts' list (u). */
#define LATEST_CART_OF_U CART_PG_LATEST_CART("u.user_id")

/* The session's prepared statements: name, SQL, number of parameters. */
static const struct stmt {
    const char *name;
    const char *sql;
    int nparams;
} stmts[] = {
    {"load_carts",
     /* The latest cart of each user, with its lines (none for a deleted cart), grouped by user.
      * Written as index probes per user (LATERAL ... LIMIT 1): the generic plan of a join with
      * `user_id = ANY($1)` guesses hundreds of rows and hashes a sequential scan of cart_items,
      * once per batch. */
     "SELECT c.user_id, " CART_PG_CART_COLUMNS
     " FROM unnest($1::text[]) AS u(user_id) CROSS JOIN LATERAL " LATEST_CART_OF_U
     " c LEFT JOIN LATERAL (SELECT " CART_PG_LINE_COLUMNS " FROM cart_items"
     " WHERE cart_items.cart_id = c.cart_id AND c.status <> 'deleted') i ON true",
     1},
    {"processed",
     "SELECT event_id, http_status, coalesce(detail, ''), coalesce(stream_seq, 0), coalesce(request_fingerprint, '')"
     " FROM processed_events WHERE event_id = ANY($1::text[])",
     1},
    {"idle_users",
     /* idle_hour (migration 0004) is indexed where updated_at may not be. */
     "SELECT user_id FROM carts WHERE status = 'active' AND partition = ANY($1::int[])"
     " AND idle_hour <= date_trunc('hour', to_timestamp($2::double precision / 1000) AT TIME ZONE 'UTC')"
     " AND updated_at <= to_timestamp($2::double precision / 1000) ORDER BY idle_hour, updated_at LIMIT $3",
     3},
    {"prune",
     "DELETE FROM processed_events WHERE event_id IN (SELECT event_id FROM processed_events"
     " WHERE partition = ANY($1::int[]) AND processed_at < to_timestamp($2::double precision / 1000) LIMIT $3)",
     3},
    {"outbox_del", "DELETE FROM outbox WHERE id = ANY($1::bigint[])", 1},
    {"get_off", "SELECT stream_seq FROM partition_offsets WHERE partition = $1", 1},
    {"try_lock", "SELECT pg_try_advisory_lock($1::int, $2::int)", 2},
    {"unlock", "SELECT pg_advisory_unlock($1::int, $2::int)", 2},
    /* Key 0 marks a live worker; key 1 one that shares the partitions out by rank
     * (cs_ownership_rebalance): a group with a worker that holds only key 0 (an older version,
     * during a rolling upgrade) shares them out as that version does. */
    {"join", "SELECT pg_advisory_lock_shared($1::int, 0), pg_advisory_lock_shared($1::int, 1)", 1},
    {"outbox_list",
     "SELECT id, subject, msg_id, payload FROM outbox WHERE partition = ANY($1::int[]) ORDER BY id LIMIT 500", 1},
    {"members",
     /* The live workers of this shard's group (the sessions holding one of its shared locks);
      * how many of them sort before this session by (application_name, pid), where
      * application_name is "cart-store <CART_STORE_ID>", so that every shard orders the same
      * workers the same way; whether this session is among them; and how many hold key 1. pg_locks
      * lists the locks of every database of the server: only this database's members count
      * (another deployment on the same server has a group of its own). */
     "WITH l AS (SELECT pid, objid FROM pg_locks WHERE locktype = 'advisory' AND classid = $1::int::oid"
     " AND objsubid = 2 AND granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())),"
     " m AS (SELECT pid, bool_or(objid = 1) AS ranked FROM l GROUP BY pid),"
     " n AS (SELECT m.pid, m.ranked, coalesce(a.application_name, '') COLLATE \"C\" AS app"
     " FROM m LEFT JOIN pg_stat_activity a ON a.pid = m.pid)"
     " SELECT count(*), count(*) FILTER (WHERE (app, pid) < (current_setting('application_name') COLLATE \"C\","
     " pg_backend_pid())), count(*) FILTER (WHERE pid = pg_backend_pid()), count(*) FILTER (WHERE ranked) FROM n",
     1},
};

/* The batch writes (batch.h), one statement per table, each taking array literals. Indexed by
 * cs_batch_stmt, and run in that order: carts before the lines that refer to them, updated carts
 * before inserted ones (a checked-out cart leaves the one-active-cart index before its successor
 * enters it). */
static const char *const batch_sql[CS_BATCH_NSTMTS] = {
    [CS_BATCH_UPDATE_CARTS] = "UPDATE carts c SET status = t.s, version = t.v,"
                              " updated_at = to_timestamp(t.u::double precision / 1000),"
                              " merged_into = CASE WHEN t.s IN ('merging', 'merged')"
                              " THEN coalesce(nullif(t.m, ''), c.merged_into) END"
                              " FROM unnest($1::uuid[], $2::text[], $3::bigint[], $4::bigint[], $5::text[])"
                              " AS t(id, s, v, u, m)"
                              " WHERE c.cart_id = t.id",
    [CS_BATCH_INSERT_CARTS] =
        "INSERT INTO carts (cart_id, user_id, partition, status, version, created_at, updated_at)"
        " SELECT id, u, p, s, v, to_timestamp(ca::double precision / 1000), to_timestamp(ua::double precision / 1000)"
        " FROM unnest($1::uuid[], $2::text[], $3::int[], $4::text[], $5::bigint[], $6::bigint[], $7::bigint[])"
        " AS t(id, u, p, s, v, ca, ua)",
    [CS_BATCH_CLEAR_LINES] = "DELETE FROM cart_items WHERE cart_id = ANY($1::uuid[])",
    [CS_BATCH_DELETE_LINES] = "DELETE FROM cart_items i USING unnest($1::uuid[], $2::text[]) AS t(id, sku)"
                              " WHERE i.cart_id = t.id AND i.sku = t.sku",
    [CS_BATCH_PUT_LINES] = "INSERT INTO cart_items (cart_id, sku, quantity, name, unit_price, currency, attributes)"
                           " SELECT * FROM unnest($1::uuid[], $2::text[], $3::int[], $4::text[], $5::bigint[],"
                           " $6::text[], $7::text[])"
                           " ON CONFLICT (cart_id, sku) DO UPDATE SET quantity = EXCLUDED.quantity,"
                           " name = EXCLUDED.name, unit_price = EXCLUDED.unit_price, currency = EXCLUDED.currency,"
                           " attributes = EXCLUDED.attributes",
    /* Rows go in in the order given, so their ids (and the relay's order) follow the events. */
    [CS_BATCH_OUTBOX] = "INSERT INTO outbox (partition, subject, msg_id, payload)"
                        " SELECT p, s, m, d FROM unnest($1::int[], $2::text[], $3::text[], $4::text[])"
                        " WITH ORDINALITY AS t(p, s, m, d, o) ORDER BY o RETURNING id, msg_id",
    [CS_BATCH_OFFSETS] = "INSERT INTO partition_offsets (partition, stream_seq)"
                         " SELECT * FROM unnest($1::int[], $2::bigint[])"
                         " ON CONFLICT (partition) DO UPDATE SET stream_seq = GREATEST(partition_offsets.stream_seq,"
                         " EXCLUDED.stream_seq), updated_at = now()",
    [CS_BATCH_MARKS] = "INSERT INTO processed_events"
                       " (event_id, user_id, partition, stream_seq, http_status, cart_version, detail,"
                       " request_fingerprint)"
                       " SELECT e, u, p, NULLIF(s, 0), h, NULLIF(v, 0), NULLIF(d, ''), NULLIF(f, '')"
                       " FROM unnest($1::text[], $2::text[], $3::int[], $4::bigint[], $5::smallint[], $6::bigint[],"
                       " $7::text[], $8::text[]) AS t(e, u, p, s, h, v, d, f)",
};

/* The prepared names of the batch statements. */
static const char *const batch_names[CS_BATCH_NSTMTS] = {
    [CS_BATCH_UPDATE_CARTS] = "b_upd_carts",  [CS_BATCH_INSERT_CARTS] = "b_ins_carts",
    [CS_BATCH_CLEAR_LINES] = "b_clear_lines", [CS_BATCH_DELETE_LINES] = "b_del_lines",
    [CS_BATCH_PUT_LINES] = "b_put_lines",     [CS_BATCH_OUTBOX] = "b_outbox",
    [CS_BATCH_OFFSETS] = "b_offsets",         [CS_BATCH_MARKS] = "b_marks",
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

/* Runs `name` planned for its values: a generic plan of a range condition with a LIMIT guesses
 * that many rows match and scans the whole table, where the statistics know that almost none do. */
static cart_status run_custom(PGconn *pg, const char *name, int n, const char *const *vals, ExecStatusType want,
                              PGresult **out, cs_store_err *e)
{
    cart_status st = cs_store_exec(pg, "SET plan_cache_mode = force_custom_plan", e);

    cs_store_err ignored;

    if (st == CART_OK)
        st = run(pg, name, n, vals, want, out, e);
    /* A session that cannot take this back is broken, and its next statement says so. */
    cs_store_exec(pg, "SET plan_cache_mode = force_generic_plan", &ignored);
    return st;
}

cart_status cs_store_prepare(PGconn *pg, cs_store_err *e)
{
    PGresult *res;

    for (size_t i = 0; i < sizeof stmts / sizeof stmts[0] + CS_BATCH_NSTMTS; i++) {
        bool batch = i >= sizeof stmts / sizeof stmts[0];
        size_t k = batch ? i - sizeof stmts / sizeof stmts[0] : i;
        res = batch ? PQprepare(pg, batch_names[k], batch_sql[k], cs_batch_nparams((cs_batch_stmt)k), NULL)
                    : PQprepare(pg, stmts[k].name, stmts[k].sql, stmts[k].nparams, NULL);
        if (PQresultStatus(res) != PGRES_COMMAND_OK) {
            set_err(e, pg, res);
            PQclear(res);
            return CART_ERR_UNAVAILABLE;
        }
        PQclear(res);
    }
    return cs_store_exec(pg,
                         "SET tcp_keepalives_idle = 5; SET tcp_keepalives_interval = 2;"
                         " SET tcp_keepalives_count = 3; SET statement_timeout = '30s';"
                         /* The statements take arrays, and their generic plans use the indexes
                          * (checked with EXPLAIN): planning each execution anew cost about a fifth
                          * of the shard's CPU in small batches. The maintenance queries, whose
                          * good plan depends on their values, ask for custom plans (run_custom). */
                         " SET plan_cache_mode = force_generic_plan;"
                         /* A generic plan is made once per session, often on the empty tables of
                          * a new shard, and kept until autovacuum's next ANALYZE: there the
                          * planner hashes a sequential scan of carts for a batch's few keys, and
                          * keeps doing so as the table grows. Every statement of this session
                          * reaches its rows through an index, so the alternatives are ruled out. */
                         " SET enable_seqscan = off; SET enable_hashjoin = off; SET enable_mergejoin = off",
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

cart_status cs_store_out_of_memory(cs_store_err *e)
{
    e->transient = true;
    snprintf(e->msg, sizeof e->msg, "out of memory");
    return CART_ERR_NOMEM;
}

/* --- pipelines: statements sent together and their results read in order, one round trip ---
 *
 * Blocking libpq in pipeline mode can deadlock only if both sides' socket buffers fill: the client
 * still sending while the server cannot send its results. Here every statement is sent before any
 * result is read, and either the statements are small (the reads of a batch) or the results are
 * (the writes: command tags and the outbox ids), so one side always drains. */

typedef struct pipeline {
    PGconn *pg;
    cs_store_err *e;
    int queued; /* statements sent whose results are not read yet */
    bool ok;    /* no statement failed so far (e has the first failure) */
} pipeline;

static void pipe_start(pipeline *p, PGconn *pg, cs_store_err *e)
{
    p->pg = pg;
    p->e = e;
    p->queued = 0;
    p->ok = PQenterPipelineMode(pg) == 1;
    if (!p->ok)
        set_err(e, pg, NULL);
}

/* Queues prepared statement `name`, or the parameterless SQL `sql` when name is NULL. */
static void pipe_send(pipeline *p, const char *name, const char *sql, int n, const char *const *vals)
{
    int sent;

    if (!p->ok)
        return;
    sent = name ? PQsendQueryPrepared(p->pg, name, n, vals, NULL, NULL, 0)
                : PQsendQueryParams(p->pg, sql, 0, NULL, NULL, NULL, NULL, 0);
    if (sent != 1) {
        set_err(p->e, p->pg, NULL);
        p->ok = false;
        return;
    }
    p->queued++;
}

/* Sends everything queued, with a sync point after it. */
static void pipe_sync(pipeline *p)
{
    if (p->ok && PQpipelineSync(p->pg) != 1) {
        set_err(p->e, p->pg, NULL);
        p->ok = false;
    }
}

/* Reads the next statement's result, which must have status `want`: into *out (the caller
 * PQclears it) when out is non-NULL. After a failure, what follows is only drained. */
static cart_status pipe_result(pipeline *p, ExecStatusType want, PGresult **out)
{
    PGresult *res, *end;

    if (!p->ok || p->queued == 0)
        return CART_ERR_UNAVAILABLE;
    p->queued--;
    res = PQgetResult(p->pg);
    if (res == NULL || PQresultStatus(res) != want) {
        set_err(p->e, p->pg, res);
        PQclear(res);
        p->ok = false;
        return CART_ERR_UNAVAILABLE;
    }
    end = PQgetResult(p->pg); /* the NULL that closes the statement's results */
    PQclear(end);
    if (out)
        *out = res;
    else
        PQclear(res);
    return CART_OK;
}

/* Drains whatever is left up to the sync point and leaves pipeline mode; CART_OK only if every
 * statement succeeded. A session that cannot leave pipeline mode is reported broken. */
static cart_status pipe_finish(pipeline *p)
{
    bool synced = false;

    /* Each unread statement gives a result and a NULL; the sync gives its own result. */
    for (int guard = 2 * p->queued + 4; guard > 0 && !synced && PQstatus(p->pg) == CONNECTION_OK; guard--) {
        PGresult *res = PQgetResult(p->pg);
        synced = res && PQresultStatus(res) == PGRES_PIPELINE_SYNC;
        PQclear(res);
    }
    if (!synced || PQexitPipelineMode(p->pg) != 1) {
        if (p->ok)
            set_err(p->e, p->pg, NULL);
        p->e->transient = true;
        p->ok = false;
    }
    return p->ok ? CART_OK : CART_ERR_UNAVAILABLE;
}

/* Fills `carts` from the rows of load_carts (grouped by user: a cart's header with its first
 * line, then one row per line). */
static cart_status fill_carts(PGresult *res, cart *const *carts, size_t n, cs_store_err *e)
{
    cart *c = NULL;
    cart_status st = CART_OK;

    for (int r = 0; r < PQntuples(res) && st == CART_OK; r++) {
        const char *user = PQgetvalue(res, r, 0);
        if (c == NULL || strcmp(c->user_id, user) != 0) {
            c = NULL;
            for (size_t i = 0; i < n && c == NULL; i++)
                if (strcmp(carts[i]->user_id, user) == 0)
                    c = carts[i];
            if (c == NULL)
                continue; /* not asked for (cannot happen) */
            if (cart_pg_cart_header(res, r, 1, c) == CART_ERR_INVALID)
                c->state = CART_DELETED; /* the schema's CHECK allows nothing else */
        }
        st = cart_pg_cart_line(res, r, 1, c);
    }
    if (st != CART_OK) {
        e->transient = st == CART_ERR_NOMEM;
        snprintf(e->msg, sizeof e->msg, "loading cart lines: %s", cart_status_str(st));
        return CART_ERR_UNAVAILABLE;
    }
    return CART_OK;
}

cart_status cs_store_begin_batch(PGconn *pg, const cs_store_reads *r, cs_store_err *e)
{
    cs_pgarr ids, users;
    const char *vals[1];
    const char *ids_arr = NULL, *users_arr = NULL;
    PGresult *res = NULL;
    pipeline p;
    cart_status st = CART_OK;

    cs_pgarr_init(&ids);
    cs_pgarr_init(&users);
    for (size_t i = 0; i < r->nevents; i++)
        cs_pgarr_text(&ids, r->event_ids[i]);
    for (size_t i = 0; i < r->ncarts; i++)
        cs_pgarr_text(&users, r->carts[i]->user_id);
    if ((r->nevents && (ids_arr = cs_pgarr_finish(&ids)) == NULL) ||
        (r->ncarts && (users_arr = cs_pgarr_finish(&users)) == NULL)) {
        st = cs_store_out_of_memory(e);
        goto out;
    }
    pipe_start(&p, pg, e);
    pipe_send(&p, NULL, "BEGIN", 0, NULL);
    vals[0] = ids_arr;
    if (ids_arr)
        pipe_send(&p, "processed", NULL, 1, vals);
    vals[0] = users_arr;
    if (users_arr)
        pipe_send(&p, "load_carts", NULL, 1, vals);
    pipe_sync(&p);
    pipe_result(&p, PGRES_COMMAND_OK, NULL);
    if (ids_arr && pipe_result(&p, PGRES_TUPLES_OK, &res) == CART_OK) {
        for (int i = 0; i < PQntuples(res); i++) {
            cs_working_answer a;
            snprintf(a.event_id, sizeof a.event_id, "%s", PQgetvalue(res, i, 0));
            a.http_status = atoi(PQgetvalue(res, i, 1));
            snprintf(a.detail, sizeof a.detail, "%s", PQgetvalue(res, i, 2));
            a.stream_seq = strtoull(PQgetvalue(res, i, 3), NULL, 10);
            snprintf(a.fingerprint, sizeof a.fingerprint, "%s", PQgetvalue(res, i, 4));
            r->on_processed(r->ud, &a);
        }
        PQclear(res);
        res = NULL;
    }
    if (users_arr && pipe_result(&p, PGRES_TUPLES_OK, &res) == CART_OK) {
        cs_store_err fill = {0};
        if (fill_carts(res, r->carts, r->ncarts, &fill) != CART_OK && p.ok) {
            *e = fill;
            p.ok = false;
        }
        PQclear(res);
        res = NULL;
    }
    st = pipe_finish(&p);
out:
    cs_pgarr_cleanup(&ids);
    cs_pgarr_cleanup(&users);
    return st;
}

cart_status cs_store_write(PGconn *pg, cs_batch *b, cs_batch_sql *sql, bool commit, cs_store_err *e)
{
    PGresult *res = NULL;
    pipeline p;

    if (cs_batch_render(b, sql) != 0)
        return cs_store_out_of_memory(e);
    pipe_start(&p, pg, e);
    for (int k = 0; k < CS_BATCH_NSTMTS; k++)
        if (sql->rows[k] > 0)
            pipe_send(&p, batch_names[k], NULL, cs_batch_nparams((cs_batch_stmt)k), sql->params[k]);
    /* Skipped by the server (PGRES_PIPELINE_ABORTED) when a write failed before it. */
    if (commit)
        pipe_send(&p, NULL, "COMMIT", 0, NULL);
    pipe_sync(&p);
    for (int k = 0; k < CS_BATCH_NSTMTS; k++) {
        bool returns = k == CS_BATCH_OUTBOX;
        if (sql->rows[k] == 0)
            continue;
        if (pipe_result(&p, returns ? PGRES_TUPLES_OK : PGRES_COMMAND_OK, returns ? &res : NULL) != CART_OK || !returns)
            continue;
        /* Each new id goes to its row, found by msg_id (unique in a batch; normally in order). */
        for (int r = 0; r < PQntuples(res); r++) {
            const char *msg_id = PQgetvalue(res, r, 1);
            size_t at = (size_t)r;
            if (at >= b->noutbox || strcmp(b->outbox[at].msg_id, msg_id) != 0)
                for (at = 0; at < b->noutbox && strcmp(b->outbox[at].msg_id, msg_id) != 0; at++)
                    ;
            if (at < b->noutbox)
                b->outbox[at].id = strtoll(PQgetvalue(res, r, 0), NULL, 10);
        }
        PQclear(res);
        res = NULL;
    }
    if (commit)
        pipe_result(&p, PGRES_COMMAND_OK, NULL);
    return pipe_finish(&p);
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
    /* Planned for its values: a generic plan compares every row with every id of the array, a
     * constant array is hashed. */
    st = run_custom(pg, "outbox_del", 1, vals, PGRES_COMMAND_OK, NULL, e);
    free(arr);
    return st;
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

cart_status cs_store_members(PGconn *pg, int32_t ns, int *count, int *rank, bool *ranked, cs_store_err *e)
{
    char a[16];
    const char *vals[1] = {a};
    PGresult *res = NULL;
    cart_status st;

    snprintf(a, sizeof a, "%d", (int)ns);
    st = run(pg, "members", 1, vals, PGRES_TUPLES_OK, &res, e);
    if (st != CART_OK)
        return st;
    *count = atoi(PQgetvalue(res, 0, 0));
    *rank = atoi(PQgetvalue(res, 0, 1));
    *ranked = atoi(PQgetvalue(res, 0, 3)) == *count;
    /* Not listed itself (it always is, having joined): it counts all the same, after the others. */
    if (atoi(PQgetvalue(res, 0, 2)) == 0)
        *count += 1;
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
    return run_custom(pg, "idle_users", 3, vals, PGRES_TUPLES_OK, rows, e);
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
    st = run_custom(pg, "prune", 3, vals, PGRES_COMMAND_OK, &res, e);
    if (st != CART_OK)
        return st;
    *deleted = strtol(PQcmdTuples(res), NULL, 10);
    PQclear(res);
    return CART_OK;
}
