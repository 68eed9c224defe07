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

/* Where an error came from, filled by every call that can fail. */
typedef struct cs_store_err {
    bool transient; /* the connection or server failed; not the data's fault */
    char msg[256];  /* PostgreSQL's message, one line */
} cs_store_err;

/* Prepares the session's statements and settings. Call once per new connection. */
cart_status cs_store_prepare(PGconn *pg, cs_store_err *e);

/* Runs a statement with no parameters and no rows (BEGIN, COMMIT, ROLLBACK). */
cart_status cs_store_exec(PGconn *pg, const char *sql, cs_store_err *e);

/* Loads `user_id`'s latest cart (active or not) into `c`, which the caller initialised with
 * cart_init for that user. A user without carts leaves c in state CART_NONE. */
cart_status cs_store_load_cart(PGconn *pg, const char *user_id, cart *c, cs_store_err *e);

/* Looks up a processed event: *found, its recorded HTTP status in *http_status and the reason of
 * a refusal in `detail` (empty when none). */
cart_status cs_store_processed(PGconn *pg, const char *event_id, bool *found, int *http_status, char *detail,
                               size_t detail_size, cs_store_err *e);

/* Records `ev` as processed with its outcome (`detail`: the reason of a refusal, or NULL/"");
 * `stream_seq` 0 means unknown. */
cart_status cs_store_mark_processed(PGconn *pg, const cart_event *ev, uint32_t partition, uint64_t stream_seq,
                                    int http_status, int64_t version, const char *detail, cs_store_err *e);

/* Persists what cart_apply did to `c` (o->changed must be true). */
cart_status cs_store_save(PGconn *pg, const cart *c, const cart_outcome *o, uint32_t partition, cs_store_err *e);

/* Adds a change to the outbox; *id is its row id. */
cart_status cs_store_outbox_add(PGconn *pg, uint32_t partition, const char *subject, const char *msg_id,
                                const char *payload, int64_t *id, cs_store_err *e);

/* Deletes outbox rows by id (the relay published them). */
cart_status cs_store_outbox_delete(PGconn *pg, const int64_t *ids, size_t n, cs_store_err *e);

/* Moves partition's offset up to `stream_seq` (never down). */
cart_status cs_store_set_offset(PGconn *pg, uint32_t partition, uint64_t stream_seq, cs_store_err *e);

/* Reads the partition's committed offset (0 when it never committed). */
cart_status cs_store_get_offset(PGconn *pg, uint32_t partition, uint64_t *stream_seq, cs_store_err *e);

/* Tries the partition's ownership lock on this session: *got. */
cart_status cs_store_try_lock(PGconn *pg, int32_t ns, int32_t key, bool *got, cs_store_err *e);

/* Releases a lock taken with cs_store_try_lock. */
cart_status cs_store_unlock(PGconn *pg, int32_t ns, int32_t key, cs_store_err *e);

/* Counts the sessions holding any lock in namespace `ns` (live workers on this shard). */
cart_status cs_store_count_locks(PGconn *pg, int32_t ns, int *count, cs_store_err *e);

/* Joins the shard's worker group: a shared lock in namespace `ns` held for the session's life,
 * so that cs_store_count_locks(ns) counts the live workers. */
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
