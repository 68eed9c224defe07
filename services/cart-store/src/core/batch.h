/*
 * batch.h: the writes of one batch of events, gathered in memory and rendered as PostgreSQL
 * array literals, so that store.c sends them as one statement per table instead of several
 * statements per event. Pure: no I/O.
 *
 * A cart or a line changed several times in a batch is written once, in its final state (a later
 * record replaces an earlier one), so the database does the work of the batch's net effect:
 *  - a cart's row is updated, or inserted when the batch started it (o.created);
 *  - a line with quantity 0 is deleted, any other is upserted;
 *  - a deleted cart loses all its lines, and lines recorded for it earlier are dropped.
 * Dedup rows, outbox rows and offsets are kept in the order they were recorded.
 */
#ifndef CS_BATCH_H
#define CS_BATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cartshard/cart.h"
#include "cartshard/event.h"
#include "cartshard/fmt.h"

/* A growing PostgreSQL array literal ("{\"a\",\"b\"}"). Caller-owned: cs_pgarr_init/_cleanup. */
typedef struct cs_pgarr {
    /** The text so far, NUL-terminated once cs_pgarr_finish returned it; after an allocation
     * failure (text.oom) the literal is incomplete and cs_pgarr_finish returns NULL. */
    cart_buf text;
    /** Number of elements. */
    size_t n;
} cs_pgarr;

void cs_pgarr_init(cs_pgarr *a);
void cs_pgarr_cleanup(cs_pgarr *a);
/* Empties the literal, keeping its memory. */
void cs_pgarr_reset(cs_pgarr *a);
/* Appends `s` as a quoted element (backslash before '"' and '\'). */
void cs_pgarr_text(cs_pgarr *a, const char *s);
/* Appends an integer element. */
void cs_pgarr_int(cs_pgarr *a, long long v);
/* Appends a NULL element. */
void cs_pgarr_null(cs_pgarr *a);
/* Closes the literal and returns it (owned by `a`, valid until the next call on it), or NULL
 * after an allocation failure. */
const char *cs_pgarr_finish(cs_pgarr *a);

/* A cart row in its final state. */
typedef struct cs_batch_cart {
    char cart_id[37];
    char user_id[CART_ID_MAX + 1];
    uint32_t partition;
    cart_state state;
    int64_t version, created_at_ms, updated_at_ms;
    /** merging and merged: the user it goes to, when the batch knows it (else the row keeps its
     * own); other states clear the row's. */
    char merged_into[CART_ID_MAX + 1];
    /** The batch started this cart: INSERT, not UPDATE. */
    bool insert;
} cs_batch_cart;

/* A line in its final state (quantity 0: deleted). */
typedef struct cs_batch_line {
    char cart_id[37];
    char sku[CART_ID_MAX + 1];
    int32_t quantity;
    /** The line's snapshot (members it lacks are written NULL); unused for a deleted line. */
    cart_snapshot snap;
} cs_batch_line;

/* A processed_events row. */
typedef struct cs_batch_mark {
    char event_id[CART_EVENT_ID_MAX + 1];
    char user_id[CART_ID_MAX + 1];
    uint32_t partition;
    uint64_t stream_seq; /* 0: unknown */
    int http_status;
    int64_t version; /* 0: none */
    char detail[128];
    char fingerprint[CART_FINGERPRINT_MAX + 1]; /* the event's request_fingerprint; "": none */
} cs_batch_mark;

/* An outbox row; `payload` is borrowed and must outlive the write. */
typedef struct cs_batch_outbox {
    uint32_t partition;
    char subject[160];
    char msg_id[CART_EVENT_ID_MAX + 8];
    const char *payload;
    /** Filled by the write: the row's id. */
    int64_t id;
} cs_batch_outbox;

/* A partition's new offset. */
typedef struct cs_batch_offset {
    uint32_t partition;
    uint64_t stream_seq;
} cs_batch_offset;

/* The records of one batch. Caller-owned: cs_batch_init/_cleanup; cs_batch_reset between batches
 * keeps the memory. */
typedef struct cs_batch {
    cs_batch_cart *carts;
    size_t ncarts, carts_cap;
    cs_batch_line *lines;
    size_t nlines, lines_cap;
    /** Carts whose lines all go (deleted carts). */
    char (*cleared)[37];
    size_t ncleared, cleared_cap;
    cs_batch_mark *marks;
    size_t nmarks, marks_cap;
    cs_batch_outbox *outbox;
    size_t noutbox, outbox_cap;
    cs_batch_offset *offsets;
    size_t noffsets, offsets_cap;
} cs_batch;

void cs_batch_init(cs_batch *b);
void cs_batch_cleanup(cs_batch *b);
void cs_batch_reset(cs_batch *b);
/* True when nothing was recorded. */
bool cs_batch_empty(const cs_batch *b);

/*
 * Records what cart_apply (or cart_expire) did to `c`, with its outcome `o` (o->changed must be
 * true): the cart's row, its changed line (with the line's snapshot, read from `c`), or the loss
 * of all lines when it was deleted.
 * 0, or -1 when out of memory (the batch is then unusable until reset).
 */
int cs_batch_change(cs_batch *b, const cart *c, const cart_outcome *o, uint32_t partition);

/* Records a line of `cart_id` in its final state (quantity 0: deleted) with its snapshot (`line`,
 * NULL for none), for a change of many lines at once (a merge); cs_batch_change records the cart's
 * row. 0, or -1 when out of memory. */
int cs_batch_put_line(cs_batch *b, const char *cart_id, const char *sku, int32_t quantity, const cart_item *line);

/* Records an event as processed with its answer (`detail`: a refusal's reason, or NULL) and its
 * request_fingerprint. 0 or -1. */
int cs_batch_mark_processed(cs_batch *b, const cart_event *ev, uint32_t partition, uint64_t stream_seq, int http_status,
                            int64_t version, const char *detail);

/* Records an outbox row; *index is its place in b->outbox, where the write leaves its id. 0 or -1. */
int cs_batch_outbox_add(cs_batch *b, uint32_t partition, const char *subject, const char *msg_id, const char *payload,
                        size_t *index);

/* Moves a partition's offset to `stream_seq` (the highest recorded wins). 0 or -1. */
int cs_batch_offset_set(cs_batch *b, uint32_t partition, uint64_t stream_seq);

/* The statements' parameters, as array literals (see store.c for the SQL). */
typedef enum cs_batch_stmt {
    CS_BATCH_UPDATE_CARTS, /* cart_id, status, version, updated_ms, merged_into ("" for none) */
    CS_BATCH_INSERT_CARTS, /* cart_id, user_id, partition, status, version, created_ms, updated_ms */
    CS_BATCH_CLEAR_LINES,  /* cart_id */
    CS_BATCH_DELETE_LINES, /* cart_id, sku */
    CS_BATCH_PUT_LINES,    /* cart_id, sku, quantity, name, unit_price, currency, attributes */
    CS_BATCH_OUTBOX,       /* partition, subject, msg_id, payload */
    CS_BATCH_OFFSETS,      /* partition, stream_seq */
    CS_BATCH_MARKS,        /* event_id, user_id, partition, stream_seq, http_status, version, detail, fingerprint */
    CS_BATCH_NSTMTS
} cs_batch_stmt;

#define CS_BATCH_MAX_PARAMS 8

/* The rendered parameters of every statement. Caller-owned: cs_batch_sql_init/_cleanup. */
typedef struct cs_batch_sql {
    cs_pgarr arr[CS_BATCH_NSTMTS][CS_BATCH_MAX_PARAMS];
    /** Rows of each statement (0: skip it). */
    size_t rows[CS_BATCH_NSTMTS];
    /** Parameter values of each statement, pointing into arr. */
    const char *params[CS_BATCH_NSTMTS][CS_BATCH_MAX_PARAMS];
} cs_batch_sql;

void cs_batch_sql_init(cs_batch_sql *s);
void cs_batch_sql_cleanup(cs_batch_sql *s);

/* The number of parameters of statement `st`. */
int cs_batch_nparams(cs_batch_stmt st);

/* Renders `b` into `s`, in the order the statements must run (the enum's). 0, or -1 when out of
 * memory. */
int cs_batch_render(const cs_batch *b, cs_batch_sql *s);

#endif
