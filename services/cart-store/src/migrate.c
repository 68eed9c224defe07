#define _POSIX_C_SOURCE 200809L
#include "migrate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>

#include "cartshard/clock.h"
#include "cartshard/log.h"

/* The key of the session advisory lock that serializes migrates on a shard: "cartmigr" in ASCII.
 * Any fixed value works, as long as nothing else in the system takes the same lock. */
#define MIGRATE_LOCK_KEY "7161130726873196402"

/* How long to keep retrying a connection while the server starts, and how often. */
#define CONNECT_DEADLINE_MS 30000
#define CONNECT_RETRY_MS    500

#define DESC_LEN 256
#define ERR_LEN  1024

static const char SQL_CREATE_TABLE[] = "CREATE TABLE IF NOT EXISTS schema_migrations ("
                                       " version integer PRIMARY KEY,"
                                       " name text NOT NULL,"
                                       " checksum text NOT NULL,"
                                       " applied_at timestamptz NOT NULL DEFAULT now())";

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) != 0) {
        /* interrupted by a signal: sleep the rest */
    }
}

/* Copies a libpq message into buf without its trailing newline(s). */
static void copy_trimmed(const char *msg, char *buf, size_t len)
{
    size_t n;

    snprintf(buf, len, "%s", msg ? msg : "");
    n = strlen(buf);
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
        buf[--n] = '\0';
}

/*
 * Writes a loggable description of `dsn` into buf: its host, port, database and user, never its
 * password (the DSN itself is not logged because it may hold one).
 */
static void dsn_describe(const char *dsn, char *buf, size_t len)
{
    static const char *const shown[] = {"host", "hostaddr", "port", "dbname", "user"};
    PQconninfoOption *opts = PQconninfoParse(dsn, NULL);
    size_t used = 0;

    buf[0] = '\0';
    if (opts == NULL) {
        /* The parser's message may quote part of the string, password included: say less. */
        snprintf(buf, len, "(not a valid libpq connection string)");
        return;
    }
    for (const PQconninfoOption *o = opts; o->keyword != NULL; o++) {
        if (o->val == NULL || o->val[0] == '\0')
            continue;
        for (size_t i = 0; i < sizeof shown / sizeof shown[0]; i++) {
            if (strcmp(o->keyword, shown[i]) != 0)
                continue;
            int n = snprintf(buf + used, len - used, "%s%s=%s", used ? " " : "", o->keyword, o->val);
            if (n < 0 || (size_t)n >= len - used) {
                PQconninfoFree(opts);
                return; /* truncated: what fits is enough to tell the shard */
            }
            used += (size_t)n;
        }
    }
    if (used == 0)
        snprintf(buf, len, "(libpq defaults)");
    PQconninfoFree(opts);
}

/* PostgreSQL's NOTICEs (e.g. "relation already exists, skipping") go to the log as debug lines
 * rather than to raw stderr, which holds only JSON lines. */
static void notice_to_log(void *arg, const char *message)
{
    char text[ERR_LEN];

    (void)arg;
    copy_trimmed(message, text, sizeof text);
    cart_log(CART_LOG_DEBUG, "postgres notice", CART_LS("notice", text), NULL);
}

/*
 * Connects to one shard, retrying for up to CONNECT_DEADLINE_MS while the server is starting or
 * refusing connections. Returns a connection the caller must PQfinish, or NULL after logging.
 */
static PGconn *shard_connect(uint32_t shard, const char *dsn, const char *desc)
{
    /* Keywords before "dbname" are defaults: whatever the DSN itself says wins over them. */
    static const char *const keys[] = {"connect_timeout", "application_name", "dbname", NULL};
    const char *const vals[] = {"5", "cart-store-migrate", dsn, NULL};
    int64_t deadline = cart_mono_ms() + CONNECT_DEADLINE_MS;
    char err[ERR_LEN];

    for (int attempt = 1;; attempt++) {
        PGconn *conn = PQconnectdbParams(keys, vals, 1);

        if (conn == NULL) {
            cart_log(CART_LOG_ERROR, "migrate: out of memory", CART_LI("shard", shard), NULL);
            return NULL;
        }
        if (PQstatus(conn) == CONNECTION_OK)
            return conn;
        copy_trimmed(PQerrorMessage(conn), err, sizeof err);
        PQfinish(conn);
        if (cart_mono_ms() >= deadline) {
            cart_log(CART_LOG_ERROR, "migrate: cannot connect to shard", CART_LI("shard", shard), CART_LS("dsn", desc),
                     CART_LI("attempts", attempt), CART_LS("error", err), NULL);
            return NULL;
        }
        if (attempt == 1)
            cart_log(CART_LOG_WARN, "migrate: shard not reachable yet, retrying", CART_LI("shard", shard),
                     CART_LS("dsn", desc), CART_LS("error", err), NULL);
        sleep_ms(CONNECT_RETRY_MS);
    }
}

/* True when a result is a success of a command or a query (or an empty query string). */
static int result_ok(const PGresult *res)
{
    ExecStatusType st = PQresultStatus(res);

    return st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK || st == PGRES_EMPTY_QUERY;
}

/* Runs `sql`, which may hold several statements and returns no rows we need. Returns 0, or -1
 * with the server's message in err. Clears its own result. */
static int run_sql(PGconn *conn, const char *sql, char *err, size_t errlen)
{
    PGresult *res = PQexec(conn, sql);
    int rc = -1;

    if (res == NULL) {
        copy_trimmed(PQerrorMessage(conn), err, errlen);
        goto out;
    }
    if (!result_ok(res)) {
        copy_trimmed(PQresultErrorMessage(res), err, errlen);
        goto out;
    }
    rc = 0;
out:
    PQclear(res);
    return rc;
}

/*
 * Applies migration `m` and records it, in one transaction. Returns 0, or -1 with the reason in
 * err; the transaction is rolled back then, so the shard holds none of it.
 */
static int apply_migration(PGconn *conn, const cs_migration *m, char *err, size_t errlen)
{
    char version[16];
    const char *params[3];
    PGresult *res = NULL;
    int in_tx = 0;
    int rc = -1;

    if (run_sql(conn, "BEGIN", err, errlen) != 0)
        goto out;
    in_tx = 1;
    if (run_sql(conn, m->sql, err, errlen) != 0)
        goto out;

    snprintf(version, sizeof version, "%d", m->version);
    params[0] = version;
    params[1] = m->name;
    params[2] = m->checksum;
    res = PQexecParams(conn, "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)", 3, NULL,
                       params, NULL, NULL, 0);
    if (res == NULL || !result_ok(res)) {
        copy_trimmed(res ? PQresultErrorMessage(res) : PQerrorMessage(conn), err, errlen);
        goto out;
    }
    if (run_sql(conn, "COMMIT", err, errlen) != 0)
        goto out;
    in_tx = 0;
    rc = 0;
out:
    PQclear(res);
    if (in_tx) {
        char ignored[ERR_LEN];
        /* If even ROLLBACK fails the connection is gone, and with it the transaction. */
        (void)run_sql(conn, "ROLLBACK", ignored, sizeof ignored);
    }
    return rc;
}

/* The row of `version` in a "SELECT version, name, checksum" result, or -1. */
static int find_recorded(const PGresult *rows, int version)
{
    for (int i = 0; i < PQntuples(rows); i++) {
        if (atoi(PQgetvalue(rows, i, 0)) == version)
            return i;
    }
    return -1;
}

/* True when the embedded migrations include `version`. */
static int is_embedded(int version)
{
    for (size_t i = 0; i < cs_migrations_count; i++) {
        if (cs_migrations[i].version == version)
            return 1;
    }
    return 0;
}

/* Brings one shard up to date, its statements bounded by the two timeouts (ms; 0: none). Returns 0,
 * or -1 after logging why. */
static int migrate_shard(uint32_t shard, const char *dsn, int lock_timeout_ms, int statement_timeout_ms)
{
    char limits[96];
    char desc[DESC_LEN];
    char err[ERR_LEN];
    PGconn *conn = NULL;
    PGresult *rows = NULL;
    const char *step = NULL; /* what failed, for the log line */
    const char *file = NULL; /* the migration file involved, if any */
    int applied = 0;
    int rc = -1;

    err[0] = '\0';
    dsn_describe(dsn, desc, sizeof desc);
    conn = shard_connect(shard, dsn, desc);
    if (conn == NULL)
        return -1; /* logged */
    PQsetNoticeProcessor(conn, notice_to_log, NULL);

    /* Session-level: released when the connection closes, however this function leaves. */
    step = "taking the migration lock";
    if (run_sql(conn, "SELECT pg_advisory_lock(" MIGRATE_LOCK_KEY ")", err, sizeof err) != 0)
        goto out;
    /* Set after the advisory lock, which may rightly wait for another migrate for a long time.
     * A file may still lower them for itself with SET LOCAL. */
    step = "setting lock_timeout and statement_timeout";
    snprintf(limits, sizeof limits, "SET lock_timeout = %d; SET statement_timeout = %d", lock_timeout_ms,
             statement_timeout_ms);
    if (run_sql(conn, limits, err, sizeof err) != 0)
        goto out;
    step = "creating schema_migrations";
    if (run_sql(conn, SQL_CREATE_TABLE, err, sizeof err) != 0)
        goto out;

    step = "reading schema_migrations";
    rows = PQexec(conn, "SELECT version, name, checksum FROM schema_migrations ORDER BY version");
    if (rows == NULL || PQresultStatus(rows) != PGRES_TUPLES_OK) {
        copy_trimmed(rows ? PQresultErrorMessage(rows) : PQerrorMessage(conn), err, sizeof err);
        goto out;
    }
    for (int i = 0; i < PQntuples(rows); i++) {
        /* A newer binary migrated this shard: harmless while the schema stays compatible. */
        if (!is_embedded(atoi(PQgetvalue(rows, i, 0))))
            cart_log(CART_LOG_WARN, "migrate: shard has a migration this binary does not know", CART_LI("shard", shard),
                     CART_LS("dsn", desc), CART_LS("file", PQgetvalue(rows, i, 1)), NULL);
    }

    for (size_t i = 0; i < cs_migrations_count; i++) {
        const cs_migration *m = &cs_migrations[i];
        int row = find_recorded(rows, m->version);

        file = m->name;
        if (row >= 0) {
            if (strcmp(PQgetvalue(rows, row, 2), m->checksum) != 0) {
                step = "checking an applied migration";
                snprintf(err, sizeof err,
                         "migrations/%s was changed after it was applied (recorded %s, file %s); "
                         "write a new migration instead of editing an applied one",
                         m->name, PQgetvalue(rows, row, 2), m->checksum);
                goto out;
            }
            continue;
        }
        step = "applying a migration";
        if (apply_migration(conn, m, err, sizeof err) != 0)
            goto out;
        applied++;
        cart_log(CART_LOG_INFO, "migrate: applied", CART_LI("shard", shard), CART_LS("dsn", desc),
                 CART_LS("file", m->name), NULL);
    }
    file = NULL;
    rc = 0;
    cart_log(CART_LOG_INFO, "migrate: shard up to date", CART_LI("shard", shard), CART_LS("dsn", desc),
             CART_LI("applied", applied),
             CART_LI("version", cs_migrations_count ? cs_migrations[cs_migrations_count - 1].version : 0), NULL);
out:
    if (rc != 0)
        cart_log(CART_LOG_ERROR, "migrate: shard failed", CART_LI("shard", shard), CART_LS("dsn", desc),
                 CART_LS("step", step), CART_LS("file", file), CART_LS("error", err), NULL);
    PQclear(rows);
    PQfinish(conn);
    return rc;
}

int cs_migrate_shards(const cart_config *cfg)
{
    if (cfg->nshards == 0) {
        cart_log(CART_LOG_ERROR, "migrate: no shards configured (SHARD_DSNS is empty)", NULL);
        return -1;
    }
    for (uint32_t i = 0; i < cfg->nshards; i++) {
        if (migrate_shard(i, cfg->shard_dsns[i], cfg->migrate_lock_timeout_ms, cfg->migrate_statement_timeout_ms) != 0)
            return -1;
    }
    return 0;
}
