/*
 * pg.h: libpq helpers shared by both services.
 */
#ifndef CARTSHARD_PG_H
#define CARTSHARD_PG_H

#include <stdbool.h>
#include <stddef.h>

#include <libpq-fe.h>

/*
 * Starts a connection to `dsn` (a URI or key=value string) with TCP keepalives tight enough that
 * a dead peer is noticed in about 15 s, a connect timeout of `connect_timeout_s`, and
 * application_name `app`. Blocking when `nonblocking` is false; otherwise returns a connection
 * still being set up (PQconnectStartParams: drive it with PQconnectPoll). Returns NULL only when
 * out of memory; a failed connection is returned with PQstatus CONNECTION_BAD, and the caller
 * PQfinish-es it either way.
 */
PGconn *cart_pg_open(const char *dsn, const char *app, int connect_timeout_s, bool nonblocking);

/* Copies `dsn` into buf with any password replaced by "***", for logs. Returns buf. */
const char *cart_pg_redact(const char *dsn, char *buf, size_t cap);

/* True if the error in `res` (or the connection's state) means the connection is unusable or the
 * server is going away (class 08, 57P01..57P03, or a bad connection), so the work should be
 * retried on a new connection rather than be blamed on the data. */
bool cart_pg_error_is_transient(const PGconn *conn, const PGresult *res);

#endif
