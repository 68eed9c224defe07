#define _POSIX_C_SOURCE 200809L
#include "batch.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cartshard/fmt.h"

/* --- array literals --- */

void cs_pgarr_init(cs_pgarr *a)
{
    memset(a, 0, sizeof *a);
}

void cs_pgarr_cleanup(cs_pgarr *a)
{
    free(a->text.buf);
    memset(a, 0, sizeof *a);
}

void cs_pgarr_reset(cs_pgarr *a)
{
    a->text.len = 0;
    a->n = 0;
    a->text.oom = false;
}

/* Makes room for `more` bytes plus the closing "}" and NUL. */
static bool pgarr_reserve(cs_pgarr *a, size_t more)
{
    return cart_buf_reserve(&a->text, more + 2);
}

/* Opens the literal or separates the next element. */
static void pgarr_sep(cs_pgarr *a)
{
    a->text.buf[a->text.len++] = a->n == 0 ? '{' : ',';
    a->n++;
}

void cs_pgarr_text(cs_pgarr *a, const char *s)
{
    size_t escapes = 0, slen = strlen(s);
    const char *p = s, *end = s + slen;

    for (const char *q = strpbrk(s, "\"\\"); q != NULL; q = strpbrk(q + 1, "\"\\"))
        escapes++;
    if (!pgarr_reserve(a, slen + escapes + 3))
        return;
    pgarr_sep(a);
    a->text.buf[a->text.len++] = '"';
    /* Copies the runs between characters to escape in one piece each (a JSON payload has many). */
    while (p < end) {
        size_t run = strcspn(p, "\"\\");
        memcpy(a->text.buf + a->text.len, p, run);
        a->text.len += run;
        p += run;
        if (p < end) {
            a->text.buf[a->text.len++] = '\\';
            a->text.buf[a->text.len++] = *p++;
        }
    }
    a->text.buf[a->text.len++] = '"';
}

void cs_pgarr_int(cs_pgarr *a, long long v)
{
    char buf[CART_INT_BUFSZ];
    size_t n = cart_int_format((int64_t)v, buf);

    if (!pgarr_reserve(a, n + 1))
        return;
    pgarr_sep(a);
    memcpy(a->text.buf + a->text.len, buf, n);
    a->text.len += n;
}

void cs_pgarr_null(cs_pgarr *a)
{
    if (!pgarr_reserve(a, 5))
        return;
    pgarr_sep(a);
    memcpy(a->text.buf + a->text.len, "NULL", 4);
    a->text.len += 4;
}

const char *cs_pgarr_finish(cs_pgarr *a)
{
    if (!pgarr_reserve(a, 1))
        return NULL;
    /* Written past len, so that elements appended later still open or separate correctly. */
    if (a->n == 0) {
        memcpy(a->text.buf + a->text.len, "{}", 3);
        return a->text.buf + a->text.len;
    }
    a->text.buf[a->text.len] = '}';
    a->text.buf[a->text.len + 1] = '\0';
    return a->text.buf;
}

/* --- records --- */

/* Copies the string `src` into dst[size], truncating (the fields hold validated, bounded values). */
static void copy_str(char *dst, size_t size, const char *src)
{
    size_t n = strnlen(src, size - 1);

    memcpy(dst, src, n);
    dst[n] = '\0';
}

void cs_batch_init(cs_batch *b)
{
    memset(b, 0, sizeof *b);
}

void cs_batch_cleanup(cs_batch *b)
{
    free(b->carts);
    free(b->lines);
    free(b->cleared);
    free(b->marks);
    free(b->outbox);
    free(b->offsets);
    memset(b, 0, sizeof *b);
}

void cs_batch_reset(cs_batch *b)
{
    b->ncarts = b->nlines = b->ncleared = b->nmarks = b->noutbox = b->noffsets = 0;
}

bool cs_batch_empty(const cs_batch *b)
{
    return b->ncarts == 0 && b->nlines == 0 && b->ncleared == 0 && b->nmarks == 0 && b->noutbox == 0 &&
           b->noffsets == 0;
}

#define GROW(b, field, count, capf) CART_GROW((b)->field, (b)->count, (b)->capf, 64)

static cs_batch_cart *find_cart(cs_batch *b, const char *cart_id)
{
    for (size_t i = b->ncarts; i-- > 0;)
        if (strcmp(b->carts[i].cart_id, cart_id) == 0)
            return &b->carts[i];
    return NULL;
}

/* Records a line's final state: its quantity, and its snapshot (`line`: NULL once removed). */
static int record_line(cs_batch *b, const char *cart_id, const char *sku, int32_t quantity, const cart_item *line)
{
    cs_batch_line *l = NULL;

    for (size_t i = b->nlines; i-- > 0 && l == NULL;)
        if (strcmp(b->lines[i].sku, sku) == 0 && strcmp(b->lines[i].cart_id, cart_id) == 0)
            l = &b->lines[i];
    if (l == NULL) {
        if (GROW(b, lines, nlines, lines_cap) != 0)
            return -1;
        l = &b->lines[b->nlines++];
        copy_str(l->cart_id, sizeof l->cart_id, cart_id);
        copy_str(l->sku, sizeof l->sku, sku);
    }
    l->quantity = quantity;
    if (line != NULL)
        l->snap = line->snap;
    else
        memset(&l->snap, 0, sizeof l->snap);
    return 0;
}

static int record_cleared(cs_batch *b, const char *cart_id)
{
    for (size_t i = 0; i < b->ncleared; i++)
        if (strcmp(b->cleared[i], cart_id) == 0)
            return 0;
    if (GROW(b, cleared, ncleared, cleared_cap) != 0)
        return -1;
    copy_str(b->cleared[b->ncleared++], sizeof b->cleared[0], cart_id);
    return 0;
}

int cs_batch_change(cs_batch *b, const cart *c, const cart_outcome *o, uint32_t partition)
{
    cs_batch_cart *r = find_cart(b, c->cart_id);

    if (r == NULL) {
        if (GROW(b, carts, ncarts, carts_cap) != 0)
            return -1;
        r = &b->carts[b->ncarts++];
        copy_str(r->cart_id, sizeof r->cart_id, c->cart_id);
        copy_str(r->user_id, sizeof r->user_id, c->user_id);
        r->partition = partition;
        r->created_at_ms = c->created_at_ms;
        r->insert = o->created;
    }
    r->state = c->state;
    copy_str(r->merged_into, sizeof r->merged_into, c->merged_into);
    r->version = c->version;
    r->updated_at_ms = c->updated_at_ms;
    if (c->state == CART_DELETED)
        return record_cleared(b, c->cart_id);
    if (o->line_changed)
        return record_line(b, c->cart_id, o->sku, o->line_quantity,
                           o->line_quantity > 0 ? cart_find_line(c, o->sku) : NULL);
    return 0;
}

int cs_batch_put_line(cs_batch *b, const char *cart_id, const char *sku, int32_t quantity, const cart_item *line)
{
    return record_line(b, cart_id, sku, quantity, quantity > 0 ? line : NULL);
}

int cs_batch_mark_processed(cs_batch *b, const cart_event *ev, uint32_t partition, uint64_t stream_seq, int http_status,
                            int64_t version, const char *detail)
{
    cs_batch_mark *m;

    if (GROW(b, marks, nmarks, marks_cap) != 0)
        return -1;
    m = &b->marks[b->nmarks++];
    copy_str(m->event_id, sizeof m->event_id, ev->event_id);
    copy_str(m->user_id, sizeof m->user_id, ev->user_id);
    m->partition = partition;
    m->stream_seq = stream_seq;
    m->http_status = http_status;
    m->version = version;
    copy_str(m->detail, sizeof m->detail, detail ? detail : "");
    copy_str(m->fingerprint, sizeof m->fingerprint, ev->request_fingerprint);
    return 0;
}

int cs_batch_outbox_add(cs_batch *b, uint32_t partition, const char *subject, const char *msg_id, const char *payload,
                        size_t *index)
{
    cs_batch_outbox *r;

    if (GROW(b, outbox, noutbox, outbox_cap) != 0)
        return -1;
    r = &b->outbox[b->noutbox];
    r->partition = partition;
    copy_str(r->subject, sizeof r->subject, subject);
    copy_str(r->msg_id, sizeof r->msg_id, msg_id);
    r->payload = payload;
    r->id = 0;
    *index = b->noutbox++;
    return 0;
}

int cs_batch_offset_set(cs_batch *b, uint32_t partition, uint64_t stream_seq)
{
    for (size_t i = 0; i < b->noffsets; i++) {
        if (b->offsets[i].partition == partition) {
            if (stream_seq > b->offsets[i].stream_seq)
                b->offsets[i].stream_seq = stream_seq;
            return 0;
        }
    }
    if (GROW(b, offsets, noffsets, offsets_cap) != 0)
        return -1;
    b->offsets[b->noffsets].partition = partition;
    b->offsets[b->noffsets].stream_seq = stream_seq;
    b->noffsets++;
    return 0;
}

/* --- rendering --- */

static const int nparams[CS_BATCH_NSTMTS] = {
    [CS_BATCH_UPDATE_CARTS] = 5, [CS_BATCH_INSERT_CARTS] = 7, [CS_BATCH_CLEAR_LINES] = 1, [CS_BATCH_DELETE_LINES] = 2,
    [CS_BATCH_PUT_LINES] = 7,    [CS_BATCH_OUTBOX] = 4,       [CS_BATCH_OFFSETS] = 2,     [CS_BATCH_MARKS] = 8,
};

int cs_batch_nparams(cs_batch_stmt st)
{
    return st < CS_BATCH_NSTMTS ? nparams[st] : 0;
}

void cs_batch_sql_init(cs_batch_sql *s)
{
    memset(s, 0, sizeof *s);
    for (int st = 0; st < CS_BATCH_NSTMTS; st++)
        for (int p = 0; p < CS_BATCH_MAX_PARAMS; p++)
            cs_pgarr_init(&s->arr[st][p]);
}

void cs_batch_sql_cleanup(cs_batch_sql *s)
{
    for (int st = 0; st < CS_BATCH_NSTMTS; st++)
        for (int p = 0; p < CS_BATCH_MAX_PARAMS; p++)
            cs_pgarr_cleanup(&s->arr[st][p]);
}

static bool is_cleared(const cs_batch *b, const char *cart_id)
{
    for (size_t i = 0; i < b->ncleared; i++)
        if (strcmp(b->cleared[i], cart_id) == 0)
            return true;
    return false;
}

/* A line's name, unit_price, currency and attributes into p[0..3], NULL for what it lacks. */
static void render_snapshot(cs_pgarr *p, const cart_snapshot *snap)
{
    if (snap->has_name)
        cs_pgarr_text(&p[0], snap->name);
    else
        cs_pgarr_null(&p[0]);
    if (snap->has_price) {
        cs_pgarr_int(&p[1], snap->unit_price);
        cs_pgarr_text(&p[2], snap->currency);
    } else {
        cs_pgarr_null(&p[1]);
        cs_pgarr_null(&p[2]);
    }
    if (snap->has_attributes)
        cs_pgarr_text(&p[3], snap->attributes);
    else
        cs_pgarr_null(&p[3]);
}

int cs_batch_render(const cs_batch *b, cs_batch_sql *s)
{
    cs_pgarr(*a)[CS_BATCH_MAX_PARAMS] = s->arr;

    for (int st = 0; st < CS_BATCH_NSTMTS; st++) {
        s->rows[st] = 0;
        for (int p = 0; p < CS_BATCH_MAX_PARAMS; p++)
            cs_pgarr_reset(&a[st][p]);
    }
    for (size_t i = 0; i < b->ncarts; i++) {
        const cs_batch_cart *r = &b->carts[i];
        const char *state = cart_state_name(r->state);
        if (r->insert) {
            cs_pgarr *p = a[CS_BATCH_INSERT_CARTS];
            cs_pgarr_text(&p[0], r->cart_id);
            cs_pgarr_text(&p[1], r->user_id);
            cs_pgarr_int(&p[2], r->partition);
            cs_pgarr_text(&p[3], state ? state : "");
            cs_pgarr_int(&p[4], r->version);
            cs_pgarr_int(&p[5], r->created_at_ms);
            cs_pgarr_int(&p[6], r->updated_at_ms);
            s->rows[CS_BATCH_INSERT_CARTS]++;
        } else {
            cs_pgarr *p = a[CS_BATCH_UPDATE_CARTS];
            cs_pgarr_text(&p[0], r->cart_id);
            cs_pgarr_text(&p[1], state ? state : "");
            cs_pgarr_int(&p[2], r->version);
            cs_pgarr_int(&p[3], r->updated_at_ms);
            cs_pgarr_text(&p[4], r->merged_into);
            s->rows[CS_BATCH_UPDATE_CARTS]++;
        }
    }
    for (size_t i = 0; i < b->ncleared; i++) {
        cs_pgarr_text(&a[CS_BATCH_CLEAR_LINES][0], b->cleared[i]);
        s->rows[CS_BATCH_CLEAR_LINES]++;
    }
    for (size_t i = 0; i < b->nlines; i++) {
        const cs_batch_line *l = &b->lines[i];
        if (is_cleared(b, l->cart_id))
            continue;
        if (l->quantity > 0) {
            cs_pgarr *p = a[CS_BATCH_PUT_LINES];
            cs_pgarr_text(&p[0], l->cart_id);
            cs_pgarr_text(&p[1], l->sku);
            cs_pgarr_int(&p[2], l->quantity);
            render_snapshot(&p[3], &l->snap);
            s->rows[CS_BATCH_PUT_LINES]++;
        } else {
            cs_pgarr *p = a[CS_BATCH_DELETE_LINES];
            cs_pgarr_text(&p[0], l->cart_id);
            cs_pgarr_text(&p[1], l->sku);
            s->rows[CS_BATCH_DELETE_LINES]++;
        }
    }
    for (size_t i = 0; i < b->noutbox; i++) {
        const cs_batch_outbox *r = &b->outbox[i];
        cs_pgarr *p = a[CS_BATCH_OUTBOX];
        cs_pgarr_int(&p[0], r->partition);
        cs_pgarr_text(&p[1], r->subject);
        cs_pgarr_text(&p[2], r->msg_id);
        cs_pgarr_text(&p[3], r->payload);
        s->rows[CS_BATCH_OUTBOX]++;
    }
    for (size_t i = 0; i < b->noffsets; i++) {
        cs_pgarr *p = a[CS_BATCH_OFFSETS];
        cs_pgarr_int(&p[0], b->offsets[i].partition);
        cs_pgarr_int(&p[1], (long long)b->offsets[i].stream_seq);
        s->rows[CS_BATCH_OFFSETS]++;
    }
    for (size_t i = 0; i < b->nmarks; i++) {
        const cs_batch_mark *m = &b->marks[i];
        cs_pgarr *p = a[CS_BATCH_MARKS];
        cs_pgarr_text(&p[0], m->event_id);
        cs_pgarr_text(&p[1], m->user_id);
        cs_pgarr_int(&p[2], m->partition);
        cs_pgarr_int(&p[3], (long long)m->stream_seq);
        cs_pgarr_int(&p[4], m->http_status);
        cs_pgarr_int(&p[5], m->version);
        cs_pgarr_text(&p[6], m->detail);
        cs_pgarr_text(&p[7], m->fingerprint);
        s->rows[CS_BATCH_MARKS]++;
    }
    for (int st = 0; st < CS_BATCH_NSTMTS; st++) {
        for (int p = 0; p < nparams[st]; p++) {
            s->params[st][p] = cs_pgarr_finish(&a[st][p]);
            if (s->params[st][p] == NULL)
                return -1;
        }
    }
    return 0;
}
