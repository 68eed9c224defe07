/*
 * pgstore.c: the minute rows in PostgreSQL, and the rebuild of Redis from them (stats.h).
 */
#define _POSIX_C_SOURCE 200809L
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>
#include <jansson.h>

#include "stats.h"

/* One statement, so one transaction: the ids not seen before decide which notices count. Rows
 * are written in key order, so that two replicas never lock the same rows in opposite orders. */
static const char COUNT_SQL[] =
    "WITH n AS (SELECT * FROM jsonb_to_recordset($1::jsonb) AS x(e text, m bigint, cart text, sku text,"
    "  units bigint, cur text, val bigint, c0 bigint, c1 bigint, c2 bigint, c3 bigint, c4 bigint, c5 bigint,"
    "  c6 bigint, c7 bigint)),"
    " fresh AS (INSERT INTO stats_seen (event_id, minute) SELECT e, m FROM n ORDER BY e"
    "  ON CONFLICT DO NOTHING RETURNING event_id),"
    " f AS (SELECT n.* FROM n JOIN fresh ON fresh.event_id = n.e),"
    " mins AS (INSERT INTO stats_minutes AS t (minute, notices, carts_created, lines_added, units_added,"
    "  lines_removed, checkouts, carts_expired, carts_deleted, merges)"
    "  SELECT m, count(*), sum(c0), sum(c1), sum(c2), sum(c3), sum(c4), sum(c5), sum(c6), sum(c7) FROM f"
    "  GROUP BY m ORDER BY m"
    "  ON CONFLICT (minute) DO UPDATE SET notices = t.notices + EXCLUDED.notices,"
    "  carts_created = t.carts_created + EXCLUDED.carts_created, lines_added = t.lines_added + EXCLUDED.lines_added,"
    "  units_added = t.units_added + EXCLUDED.units_added, lines_removed = t.lines_removed + EXCLUDED.lines_removed,"
    "  checkouts = t.checkouts + EXCLUDED.checkouts, carts_expired = t.carts_expired + EXCLUDED.carts_expired,"
    "  carts_deleted = t.carts_deleted + EXCLUDED.carts_deleted, merges = t.merges + EXCLUDED.merges RETURNING 1),"
    " vals AS (INSERT INTO stats_minute_values AS t (minute, currency, value)"
    "  SELECT m, cur, sum(val) FROM f WHERE cur <> '' GROUP BY m, cur ORDER BY m, cur"
    "  ON CONFLICT (minute, currency) DO UPDATE SET value = t.value + EXCLUDED.value RETURNING 1),"
    " skus AS (INSERT INTO stats_minute_skus AS t (minute, sku, units)"
    "  SELECT m, sku, sum(units) FROM f WHERE sku <> '' GROUP BY m, sku ORDER BY m, sku"
    "  ON CONFLICT (minute, sku) DO UPDATE SET units = t.units + EXCLUDED.units RETURNING 1),"
    " carts AS (INSERT INTO stats_minute_carts (minute, cart_id) SELECT DISTINCT m, cart FROM f ORDER BY 1, 2"
    "  ON CONFLICT DO NOTHING RETURNING 1)"
    " SELECT f.e, f.m, true FROM f, (SELECT count(*) FROM mins) a, (SELECT count(*) FROM vals) b,"
    " (SELECT count(*) FROM skus) c, (SELECT count(*) FROM carts) d"
    " UNION ALL SELECT s.event_id, s.minute, false FROM n JOIN stats_seen s ON s.event_id = n.e";

static void pg_error(PGconn *pg, const PGresult *res, char *err, size_t errlen)
{
    const char *m = res != NULL ? PQresultErrorMessage(res) : PQerrorMessage(pg);
    size_t len;

    snprintf(err, errlen, "%s", m != NULL && *m ? m : "no result");
    len = strlen(err);
    while (len > 0 && (err[len - 1] == '\n' || err[len - 1] == ' '))
        err[--len] = '\0';
}

/* The notices as the JSON array COUNT_SQL reads. NULL when out of memory. */
static char *notices_json(const st_notice *const *v, size_t n)
{
    json_t *arr = json_array();
    char *text = NULL;
    bool ok = arr != NULL;

    for (size_t i = 0; ok && i < n; i++) {
        const st_notice *x = v[i];
        json_t *o = json_pack("{s:s,s:I,s:s,s:s,s:I,s:s,s:I}", "e", x->event_id, "m", (json_int_t)x->minute, "cart",
                              x->cart_id, "sku", x->add[ST_UNITS_ADDED] > 0 ? x->sku : "", "units",
                              (json_int_t)x->add[ST_UNITS_ADDED], "cur", x->currency, "val", (json_int_t)x->value);
        for (int c = 0; o != NULL && c < ST_NCOUNTERS; c++) {
            char key[4];
            snprintf(key, sizeof key, "c%d", c);
            if (json_object_set_new(o, key, json_integer(x->add[c])) != 0) {
                json_decref(o);
                o = NULL;
            }
        }
        ok = o != NULL && json_array_append_new(arr, o) == 0;
    }
    if (ok)
        text = json_dumps(arr, JSON_COMPACT);
    json_decref(arr);
    return text;
}

int st_pg_prepare(PGconn *pg, char *err, size_t errlen)
{
    /* Planned once per session: the statement's five writes took longer to plan (about 1.4 ms)
     * than to run on a batch of a few notices. Its plan reaches every row by an index whatever
     * the batch, so the generic plan is the one to keep. */
    PGresult *res = PQexec(pg, "SET plan_cache_mode = force_generic_plan");
    int rc = -1;

    if (PQresultStatus(res) == PGRES_COMMAND_OK) {
        PQclear(res);
        res = PQprepare(pg, "count", COUNT_SQL, 1, NULL);
        if (PQresultStatus(res) == PGRES_COMMAND_OK)
            rc = 0;
    }
    if (rc != 0)
        pg_error(pg, res, err, errlen);
    PQclear(res);
    return rc;
}

int st_pg_count(PGconn *pg, const st_notice *const *v, size_t n, bool *fresh, int64_t *minute, char *err, size_t errlen)
{
    char *doc = notices_json(v, n);
    const char *params[1] = {doc};
    PGresult *res;
    int rc = -1;

    if (doc == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    res = PQexecPrepared(pg, "count", 1, params, NULL, NULL, 0);
    if (PQresultStatus(res) == PGRES_TUPLES_OK) {
        /* The ids counted now, and those counted before with the minute they were counted in (a
         * batch holds distinct ids; one whose first count committed while this statement waited
         * for it is in neither list: a duplicate in its own minute). */
        for (size_t i = 0; i < n; i++) {
            fresh[i] = false;
            minute[i] = v[i]->minute;
            for (int row = 0; row < PQntuples(res); row++) {
                if (strcmp(PQgetvalue(res, row, 0), v[i]->event_id) == 0) {
                    fresh[i] = PQgetvalue(res, row, 2)[0] == 't';
                    minute[i] = strtoll(PQgetvalue(res, row, 1), NULL, 10);
                    break;
                }
            }
        }
        rc = 0;
    } else
        pg_error(pg, res, err, errlen);
    PQclear(res);
    free(doc);
    return rc;
}

int st_pg_prune(PGconn *pg, int64_t minute, char *err, size_t errlen)
{
    static const char *const tables[] = {"stats_seen", "stats_minute_carts", "stats_minute_skus", "stats_minute_values",
                                         "stats_minutes"};
    char m[24];
    const char *params[1] = {m};

    snprintf(m, sizeof m, "%" PRId64, minute);
    for (size_t i = 0; i < sizeof tables / sizeof tables[0]; i++) {
        char sql[96];
        PGresult *res;
        snprintf(sql, sizeof sql, "DELETE FROM %s WHERE minute < $1", tables[i]);
        res = PQexecParams(pg, sql, 1, NULL, params, NULL, NULL, 0);
        if (PQresultStatus(res) != PGRES_COMMAND_OK) {
            pg_error(pg, res, err, errlen);
            PQclear(res);
            return -1;
        }
        PQclear(res);
    }
    return 0;
}

/* Runs a statement without result rows. */
static int exec_simple(PGconn *pg, const char *sql, char *err, size_t errlen)
{
    PGresult *res = PQexec(pg, sql);
    int rc = PQresultStatus(res) == PGRES_COMMAND_OK || PQresultStatus(res) == PGRES_TUPLES_OK ? 0 : -1;

    if (rc != 0)
        pg_error(pg, res, err, errlen);
    PQclear(res);
    return rc;
}

/* Reads every reply that `pending` commands sent; false when one failed. */
static bool drain_replies(redisContext *ctx, size_t *pending)
{
    bool ok = true;

    while (*pending > 0) {
        redisReply *r = NULL;
        if (redisGetReply(ctx, (void **)&r) != REDIS_OK || r == NULL)
            return false;
        if (r->type == REDIS_REPLY_ERROR)
            ok = false;
        freeReplyObject(r);
        (*pending)--;
    }
    return ok;
}

/* Sends `cmd` with argv; reads the replies every 512 commands. */
static bool send_argv(redisContext *ctx, size_t *pending, int argc, const char **argv)
{
    size_t lens[24];

    for (int i = 0; i < argc; i++)
        lens[i] = strlen(argv[i]);
    if (redisAppendCommandArgv(ctx, argc, argv, lens) != REDIS_OK)
        return false;
    (*pending)++;
    return *pending < 512 || drain_replies(ctx, pending);
}

/* Writes the rows of `sql` (first column the minute) to the bucket of kind `kind`, with the Redis
 * command `cmd` and the row's other columns as its arguments (a counter row: one HSET field per
 * column, named after it). */
static int restore(PGconn *pg, redisContext *ctx, const char *sql, const char *from, char kind, const char *cmd,
                   size_t *pending, char *err, size_t errlen)
{
    const char *params[1] = {from};
    PGresult *res = PQexecParams(pg, sql, 1, NULL, params, NULL, NULL, 0);
    int rc = -1;

    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        pg_error(pg, res, err, errlen);
        goto out;
    }
    for (int row = 0; row < PQntuples(res); row++) {
        int64_t minute = strtoll(PQgetvalue(res, row, 0), NULL, 10);
        char key[48], at[24];
        const char *argv[24];
        int argc = 0;

        snprintf(key, sizeof key, "stats:%c:%" PRId64, kind, minute);
        snprintf(at, sizeof at, "%" PRId64, (minute + ST_RETAIN_MINUTES) * 60);
        argv[argc++] = cmd;
        argv[argc++] = key;
        if (kind == 'c' && PQnfields(res) > 3) { /* the counters: field, value pairs */
            for (int c = 1; c < PQnfields(res) && argc < 23; c++) {
                argv[argc++] = PQfname(res, c);
                argv[argc++] = PQgetvalue(res, row, c);
            }
        } else if (strcmp(cmd, "ZADD") == 0) { /* minute, sku, units: score then member */
            argv[argc++] = PQgetvalue(res, row, 2);
            argv[argc++] = PQgetvalue(res, row, 1);
        } else {
            for (int c = 1; c < PQnfields(res); c++)
                argv[argc++] = PQgetvalue(res, row, c);
        }
        if (!send_argv(ctx, pending, argc, argv))
            goto redis_failed;
        argv[0] = "EXPIREAT";
        argv[2] = at;
        if (!send_argv(ctx, pending, 3, argv))
            goto redis_failed;
    }
    rc = 0;
    goto out;
redis_failed:
    snprintf(err, errlen, "redis: %s", ctx->err ? ctx->errstr : "a command was refused");
out:
    PQclear(res);
    return rc;
}

/* Deletes the marker, then every stats key. */
static int wipe(redisContext *ctx, char *err, size_t errlen)
{
    char cursor[32] = "0";
    redisReply *r = redisCommand(ctx, "DEL %s", ST_KEY_READY);

    if (r == NULL || r->type != REDIS_REPLY_INTEGER) {
        freeReplyObject(r);
        snprintf(err, errlen, "redis: DEL %s failed", ST_KEY_READY);
        return -1;
    }
    freeReplyObject(r);
    do {
        r = redisCommand(ctx, "SCAN %s MATCH %s COUNT 1000", cursor, ST_KEY_PATTERN);
        if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
            freeReplyObject(r);
            snprintf(err, errlen, "redis: SCAN failed");
            return -1;
        }
        snprintf(cursor, sizeof cursor, "%s", r->element[0]->str);
        for (size_t i = 0; i < r->element[1]->elements; i++) {
            redisReply *d = redisCommand(ctx, "UNLINK %s", r->element[1]->element[i]->str);
            freeReplyObject(d);
        }
        freeReplyObject(r);
    } while (strcmp(cursor, "0") != 0);
    return 0;
}

int st_rebuild(PGconn *pg, st_live *l, int64_t now_ms, bool force, char *err, size_t errlen)
{
    char from[24], lock[64];
    size_t pending = 0;
    int marker, rc = -1;
    bool locked = false, in_tx = false;
    redisReply *r;

    if (st_live_connect(l, err, errlen) != ST_LIVE_OK)
        return -1;
    snprintf(lock, sizeof lock, "SELECT pg_advisory_lock(%d)", ST_REBUILD_LOCK);
    if (exec_simple(pg, lock, err, errlen) != 0)
        goto out;
    locked = true;
    marker = st_live_has_marker(l);
    if (marker < 0) {
        snprintf(err, errlen, "redis: the connection failed");
        goto out;
    }
    if (marker == 1 && !force) {
        rc = 0; /* another replica rebuilt while this one waited for the lock */
        goto out;
    }
    if (wipe(l->ctx, err, errlen) != 0)
        goto out;
    /* One snapshot for every table: what a counting transaction committed is all in it or not. */
    if (exec_simple(pg, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", err, errlen) != 0)
        goto out;
    in_tx = true;
    snprintf(from, sizeof from, "%" PRId64, now_ms / 60000 - ST_RETAIN_MINUTES);
    if (restore(pg, l->ctx,
                "SELECT minute, notices, carts_created, lines_added, units_added, lines_removed, checkouts,"
                " carts_expired, carts_deleted, merges FROM stats_minutes WHERE minute >= $1",
                from, 'c', "HSET", &pending, err, errlen) != 0 ||
        restore(pg, l->ctx, "SELECT minute, 'v:' || currency, value FROM stats_minute_values WHERE minute >= $1", from,
                'c', "HSET", &pending, err, errlen) != 0 ||
        restore(pg, l->ctx, "SELECT minute, sku, units FROM stats_minute_skus WHERE minute >= $1", from, 's', "ZADD",
                &pending, err, errlen) != 0 ||
        restore(pg, l->ctx, "SELECT minute, cart_id FROM stats_minute_carts WHERE minute >= $1", from, 'h', "PFADD",
                &pending, err, errlen) != 0 ||
        restore(pg, l->ctx, "SELECT minute, event_id FROM stats_seen WHERE minute >= $1", from, 'e', "SADD", &pending,
                err, errlen) != 0)
        goto out;
    if (!drain_replies(l->ctx, &pending)) {
        snprintf(err, errlen, "redis: a restore command failed");
        goto out;
    }
    r = redisCommand(l->ctx, "SET %s %lld", ST_KEY_READY, (long long)now_ms);
    if (r == NULL || r->type != REDIS_REPLY_STATUS) {
        freeReplyObject(r);
        snprintf(err, errlen, "redis: SET %s failed", ST_KEY_READY);
        goto out;
    }
    freeReplyObject(r);
    rc = 0;
out:
    if (in_tx) {
        char ignored[64];
        exec_simple(pg, "ROLLBACK", ignored, sizeof ignored);
    }
    if (locked) {
        char ignored[64];
        snprintf(lock, sizeof lock, "SELECT pg_advisory_unlock(%d)", ST_REBUILD_LOCK);
        exec_simple(pg, lock, ignored, sizeof ignored);
    }
    if (rc != 0)
        st_live_close(l);
    return rc;
}
