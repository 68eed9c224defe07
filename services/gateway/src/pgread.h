/*
 * pgread.h: an asynchronous PostgreSQL client on a libuv loop (one connection to one shard,
 * owned by one loop thread). Queries queue up and run one at a time; the connection is made
 * and remade in the background with backoff.
 *
 * Contract: gw_pg_query either returns 0 and later calls `cb` exactly once (with the result, or
 * with NULL and an error text when the query could not run), or returns -1 and never calls it.
 */
#ifndef GW_PGREAD_H
#define GW_PGREAD_H

#include <stdbool.h>

#include <libpq-fe.h>
#include <uv.h>

#include "cartshard/metrics.h"

typedef struct gw_pg gw_pg;

/* `res` is NULL on failure (then `err` says why); the callee does not keep `res` (it is cleared
 * after the callback returns). */
typedef void (*gw_pg_cb)(void *arg, const PGresult *res, const char *err);

/* A new client for `dsn` on `loop`; connects in the background. NULL when out of memory.
 * `errors` (may be NULL) counts failed connects, lost connections, failed queries and queries
 * refused while the shard is away. */
gw_pg *gw_pg_new(uv_loop_t *loop, const char *dsn, const char *app, cart_metric *errors);

/* Queues a query with text parameters (copied). -1 when `pg` is NULL (freed), closing or its queue is
 * full (then the caller answers 503 at once). */
int gw_pg_query(gw_pg *pg, const char *sql, int nparams, const char *const *params, gw_pg_cb cb, void *arg);

/* True while the connection is up. */
bool gw_pg_connected(const gw_pg *pg);

/* Fails the queued queries, closes the connection and frees the client once libuv has closed its
 * handles. NULL is a no-op. */
void gw_pg_free(gw_pg *pg);

#endif
