#define _POSIX_C_SOURCE 200809L
#include "cartshard/pg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

PGconn *cart_pg_open(const char *dsn, const char *app, int connect_timeout_s, bool nonblocking)
{
    char timeout[16];
    /* The dsn is expanded first; the later keywords override what it says about keepalives. */
    const char *keys[] = {"dbname",          "application_name",    "connect_timeout",  "keepalives",
                          "keepalives_idle", "keepalives_interval", "keepalives_count", NULL};
    const char *vals[] = {dsn, app, timeout, "1", "5", "2", "3", NULL};

    snprintf(timeout, sizeof timeout, "%d", connect_timeout_s);
    if (nonblocking)
        return PQconnectStartParams(keys, vals, 1);
    return PQconnectdbParams(keys, vals, 1);
}

const char *cart_pg_redact(const char *dsn, char *buf, size_t cap)
{
    const char *scheme = strstr(dsn, "://");
    const char *at, *colon, *pw;

    snprintf(buf, cap, "%s", dsn);
    if (scheme) {
        /* postgresql://user:password@host/db */
        at = strchr(scheme + 3, '@');
        colon = strchr(scheme + 3, ':');
        if (at && colon && colon < at)
            snprintf(buf, cap, "%.*s:***%s", (int)(colon - dsn), dsn, at);
        return buf;
    }
    /* key=value form: hide the value of password=... */
    pw = strstr(dsn, "password=");
    if (pw) {
        const char *end = strchr(pw, ' ');
        snprintf(buf, cap, "%.*spassword=***%s", (int)(pw - dsn), dsn, end ? end : "");
    }
    return buf;
}

bool cart_pg_error_is_transient(const PGconn *conn, const PGresult *res)
{
    const char *state;

    if (conn == NULL || PQstatus(conn) != CONNECTION_OK)
        return true;
    if (res == NULL)
        return true;
    state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    if (state == NULL)
        return true; /* no SQLSTATE: the client lost the server */
    if (strncmp(state, "08", 2) == 0 || strncmp(state, "57P0", 4) == 0 || strcmp(state, "40001") == 0 ||
        strcmp(state, "40P01") == 0 || strncmp(state, "53", 2) == 0)
        return true;
    return false;
}

cart_status cart_pg_cart_header(const PGresult *res, int row, int col, cart *c)
{
    const char *status;
    cart_state state;

    if (PQgetisnull(res, row, col))
        return CART_ERR_NOT_FOUND;
    status = PQgetvalue(res, row, col + 1);
    snprintf(c->cart_id, sizeof c->cart_id, "%s", PQgetvalue(res, row, col));
    c->version = strtoll(PQgetvalue(res, row, col + 2), NULL, 10);
    c->created_at_ms = strtoll(PQgetvalue(res, row, col + 3), NULL, 10);
    c->updated_at_ms = strtoll(PQgetvalue(res, row, col + 4), NULL, 10);
    if (cart_state_parse(status, strlen(status), &state) != CART_OK)
        return CART_ERR_INVALID;
    c->state = state;
    return CART_OK;
}

/* Copies the text of column `col` into dst[size]: false when it is longer. */
static bool copy_text(const PGresult *res, int row, int col, char *dst, size_t size)
{
    size_t len = (size_t)PQgetlength(res, row, col);

    if (len >= size)
        return false;
    memcpy(dst, PQgetvalue(res, row, col), len);
    return true;
}

/* The snapshot of a line's row, whose columns from `col` on are name, unit_price, currency and
 * attributes. CART_OK or CART_ERR_INVALID. */
static cart_status read_snapshot(const PGresult *res, int row, int col, cart_snapshot *snap)
{
    memset(snap, 0, sizeof *snap);
    if (!PQgetisnull(res, row, col)) {
        if (!copy_text(res, row, col, snap->name, sizeof snap->name))
            return CART_ERR_INVALID;
        snap->has_name = true;
    }
    if (!PQgetisnull(res, row, col + 1) && !PQgetisnull(res, row, col + 2)) {
        snap->unit_price = strtoll(PQgetvalue(res, row, col + 1), NULL, 10);
        if (!copy_text(res, row, col + 2, snap->currency, sizeof snap->currency))
            return CART_ERR_INVALID;
        snap->has_price = true;
    }
    if (!PQgetisnull(res, row, col + 3)) {
        if (!copy_text(res, row, col + 3, snap->attributes, sizeof snap->attributes))
            return CART_ERR_INVALID;
        snap->has_attributes = true;
    }
    return CART_OK;
}

cart_status cart_pg_cart_line(const PGresult *res, int row, int col, cart *c)
{
    const char *sku = PQgetvalue(res, row, col + 5);
    cart_snapshot snap;
    cart_status st;

    if (PQgetisnull(res, row, col + 5))
        return CART_OK;
    if (read_snapshot(res, row, col + 7, &snap) != CART_OK || !cart_snapshot_valid(&snap))
        return CART_ERR_INVALID;
    if ((st = cart_put_line(c, sku, (int32_t)strtol(PQgetvalue(res, row, col + 6), NULL, 10))) != CART_OK)
        return st;
    /* A line without a snapshot (every row before migration 0005) has nothing to put. */
    if (!snap.has_name && !snap.has_price && !snap.has_attributes)
        return CART_OK;
    return cart_put_snapshot(c, sku, &snap);
}

cart_status cart_pg_read_cart(const PGresult *res, int col, cart *c)
{
    cart_status st;

    if (PQntuples(res) == 0)
        return CART_ERR_NOT_FOUND;
    st = cart_pg_cart_header(res, 0, col, c);
    for (int i = 0; i < PQntuples(res) && st == CART_OK; i++)
        st = cart_pg_cart_line(res, i, col, c);
    return st;
}
