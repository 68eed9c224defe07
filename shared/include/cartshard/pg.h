/*
 * pg.h: libpq helpers shared by both services, and the one place that says how a user's latest
 * cart is read from a shard (the gateway's reads and repeated writes, the worker's batches).
 */
#ifndef CARTSHARD_PG_H
#define CARTSHARD_PG_H

#include <stdbool.h>
#include <stddef.h>

#include <libpq-fe.h>

#include "cartshard/cart.h"
#include "cartshard/status.h"

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

/* The latest cart of the user that the SQL expression `user` names (a parameter or a column), as a
 * subquery of one row or none: a user's carts are numbered by version across carts, so the
 * greatest version is the current cart, whatever its state. Alias it `c`. */
#define CART_PG_LATEST_CART(user) "(SELECT * FROM carts WHERE user_id = " user " ORDER BY version DESC LIMIT 1)"

/* The columns of a line that CART_PG_CART_COLUMNS selects from `i`, in its order: what a subquery
 * standing for cart_items must select. */
#define CART_PG_LINE_COLUMNS "sku, quantity, name, unit_price, currency, attributes"

/* The select list that cart_pg_cart_header and cart_pg_cart_line read, from the latest cart `c`
 * joined with its lines `i` (cart_items, LEFT JOIN: one row per line, NULL sku for none). */
#define CART_PG_CART_COLUMNS                                                                                           \
    "c.cart_id::text, c.status, c.version, (extract(epoch FROM c.created_at) * 1000)::bigint,"                         \
    " (extract(epoch FROM c.updated_at) * 1000)::bigint, i.sku, i.quantity, i.name, i.unit_price, i.currency,"         \
    " i.attributes"
/* How many columns CART_PG_CART_COLUMNS selects. */
#define CART_PG_CART_NCOLUMNS 11

/*
 * Reads the cart of row `row` of `res` (borrowed), whose columns from `col` on are
 * CART_PG_CART_COLUMNS, into `c` (initialised for its user): cart_id, state, version, created_at,
 * updated_at; not the lines. CART_OK; CART_ERR_NOT_FOUND when the row has no cart (a NULL cart_id:
 * `c` untouched); CART_ERR_INVALID when the status is none of cart_state_name's (everything but
 * c->state is filled in; the schema's CHECK allows nothing else).
 */
cart_status cart_pg_cart_header(const PGresult *res, int row, int col, cart *c);

/* Adds row `row`'s line (sku, quantity and its snapshot, after the header's columns) to `c`, when
 * it has one. A NULL name, price or attributes is a member the line lacks; the attributes' text is
 * taken as it is stored (cart_snapshot_read wrote it). CART_OK, cart_put_line's error
 * (CART_ERR_NOMEM), or CART_ERR_INVALID for a snapshot outside its domain (the schema's CHECKs
 * allow none; the line is then not added). */
cart_status cart_pg_cart_line(const PGresult *res, int row, int col, cart *c);

/* Reads a result whose rows are all one user's latest cart (one per line) into `c`: the header of
 * the first row, then every row's line. CART_OK, CART_ERR_NOT_FOUND (no rows, or no cart: `c`
 * untouched), CART_ERR_INVALID (unknown status: no lines read) or CART_ERR_NOMEM. */
cart_status cart_pg_read_cart(const PGresult *res, int col, cart *c);

#endif
