/*
 * store.h: the cart-store's SQL, on one shard's connection (blocking libpq; call only from the
 * shard runner's own thread).
 *
 * Every function returns CART_OK, or CART_ERR_UNAVAILABLE with the PostgreSQL message in `err`
 * and, through *transient, whether the connection is at fault (retry on a new session) or the
 * data is (the statement will fail again: the event is poison).
 */
#ifndef CS_STORE_H
#define CS_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "cartshard/cart.h"
#include "cartshard/event.h"
#include "cartshard/status.h"
#include "batch.h"
#include "working_set.h"

/* Where an error came from, filled by every call that can fail. */
typedef struct cs_store_err {
    bool transient; /* the connection or server failed; not the data's fault */
    char msg[256];  /* PostgreSQL's message, one line */
} cs_store_err;

/* Fills `e` for an allocation that failed (transient: the batch is retried) and returns
 * CART_ERR_NOMEM. */
cart_status cs_store_out_of_memory(cs_store_err *e);

/* Prepares the session's statements and settings. Call once per new connection. */
cart_status cs_store_prepare(PGconn *pg, cs_store_err *e);

/* Runs a statement with no parameters and no rows (BEGIN, COMMIT, ROLLBACK). */
cart_status cs_store_exec(PGconn *pg, const char *sql, cs_store_err *e);

/* Called for each event found processed, with its first answer as recorded (status, the reason
 * of a refusal, the message's stream sequence, the request_fingerprint; "" or 0 when none); *a
 * lives until the call returns. */
typedef void (*cs_store_processed_fn)(void *ud, const cs_working_answer *a);

/* What a batch reads before it applies anything. */
typedef struct cs_store_reads {
    /** Events to look up in processed_events: on_processed(ud, ...) for each one found. */
    const char *const *event_ids;
    size_t nevents;
    cs_store_processed_fn on_processed;
    void *ud;
    /** Carts to load, each initialised by the caller with cart_init for its user: the user's
     * latest cart (active or not) with its lines; a user without carts stays CART_NONE. */
    cart *const *carts;
    size_t ncarts;
} cs_store_reads;

/* Opens a batch's transaction and does its reads, in one round trip (a libpq pipeline): BEGIN,
 * the dedup lookup and the carts. On failure the transaction, if open, must
 * be rolled back. */
cart_status cs_store_begin_batch(PGconn *pg, const cs_store_reads *r, cs_store_err *e);

/* Writes what `b` recorded, one statement per table (batch.h) sent in one round trip, rendering
 * the parameters into `sql` (scratch space kept between calls), and with `commit` the COMMIT in
 * the same round trip; on CART_OK the outbox records have their ids (and the transaction is
 * committed when asked). A data error (transient false) says only that some record of the batch
 * was refused, not which; after any failure the transaction is still open (aborted) and must be
 * rolled back. */
cart_status cs_store_write(PGconn *pg, cs_batch *b, cs_batch_sql *sql, bool commit, cs_store_err *e);

/* Deletes outbox rows by id (the relay published them). */
cart_status cs_store_outbox_delete(PGconn *pg, const int64_t *ids, size_t n, cs_store_err *e);

/* Reads the partition's committed offset (0 when it never committed). */
cart_status cs_store_get_offset(PGconn *pg, uint32_t partition, uint64_t *stream_seq, cs_store_err *e);

/* Tries the partition's ownership lock on this session: *got. */
cart_status cs_store_try_lock(PGconn *pg, int32_t ns, int32_t key, bool *got, cs_store_err *e);

/* Releases a lock taken with cs_store_try_lock. */
cart_status cs_store_unlock(PGconn *pg, int32_t ns, int32_t key, cs_store_err *e);

/* The live workers on this shard (the sessions holding a lock in namespace `ns`, this one
 * included) in *count; this session's place among them (0 .. *count - 1, ordered by application
 * name, then pid) in *rank; and in *ranked whether all of them joined with key 1 (share the
 * partitions out by rank; see cs_ownership_rebalance). */
cart_status cs_store_members(PGconn *pg, int32_t ns, int *count, int *rank, bool *ranked, cs_store_err *e);

/* Joins the shard's worker group: shared locks (ns, 0) and (ns, 1) held for the session's life,
 * so that cs_store_members(ns) counts the live workers. */
cart_status cs_store_join(PGconn *pg, int32_t ns, cs_store_err *e);

/* Lists up to 500 outbox rows of the partitions in `partitions` (an array literal "{1,2}"),
 * oldest first: columns id, subject, msg_id, payload. On CART_OK the caller owns *rows. */
cart_status cs_store_outbox_list(PGconn *pg, const char *partitions, PGresult **rows, cs_store_err *e);

/* Lists up to `limit` users of `partitions` (an array literal "{1,2}") whose active cart was last
 * changed at or before `idle_before_ms`, oldest first: one column, user_id. The caller owns *rows. */
cart_status cs_store_idle_users(PGconn *pg, const char *partitions, int64_t idle_before_ms, int limit, PGresult **rows,
                                cs_store_err *e);

/* Deletes up to `limit` dedup rows of `partitions` processed before `older_than_ms`; *deleted. */
cart_status cs_store_prune_processed(PGconn *pg, const char *partitions, int64_t older_than_ms, int limit,
                                     long *deleted, cs_store_err *e);

#endif
