#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cartshard/cart.h"

#define ID1 "11111111-1111-4111-8111-111111111111"
#define ID2 "22222222-2222-4222-8222-222222222222"
#define ID3 "33333333-3333-4333-8333-333333333333"

static const cart_limits LIM = {999, 100};

enum { T0 = 1000000, T1 = 2000000, T2 = 3000000 };

static cart_event ev_of(cart_event_type t, const char *sku, int64_t q)
{
    cart_event ev;
    memset(&ev, 0, sizeof ev);
    strcpy(ev.event_id, "e");
    ev.type = t;
    strcpy(ev.user_id, "u1");
    if (sku != NULL)
        strcpy(ev.sku, sku);
    ev.quantity = q;
    return ev;
}

/* Applies and checks cart_apply itself did not fail. */
static cart_outcome apply_lim(cart *c, cart_event ev, const cart_limits *lim, int64_t now, const char *id)
{
    cart_outcome out;
    memset(&out, 0x5a, sizeof out);
    ck_assert_int_eq(cart_apply(c, &ev, lim, now, id, &out), CART_OK);
    return out;
}

static cart_outcome apply(cart *c, cart_event ev, int64_t now, const char *id)
{
    return apply_lim(c, ev, &LIM, now, id);
}

/* Copy of everything meaningful in a cart, to check that a refusal changed nothing. */
typedef struct snapshot {
    cart c;
    cart_item items[256];
} snapshot;

static void snap(snapshot *s, const cart *c)
{
    ck_assert_uint_le(c->nitems, 256);
    s->c = *c;
    if (c->nitems)
        memcpy(s->items, c->items, c->nitems * sizeof(cart_item));
}

static void assert_same(const snapshot *s, const cart *c)
{
    ck_assert_str_eq(c->user_id, s->c.user_id);
    ck_assert_str_eq(c->cart_id, s->c.cart_id);
    ck_assert_int_eq(c->state, s->c.state);
    ck_assert_int_eq(c->version, s->c.version);
    ck_assert_int_eq(c->created_at_ms, s->c.created_at_ms);
    ck_assert_int_eq(c->updated_at_ms, s->c.updated_at_ms);
    ck_assert_uint_eq(c->nitems, s->c.nitems);
    if (c->nitems)
        ck_assert_mem_eq(c->items, s->items, c->nitems * sizeof(cart_item));
}

static void assert_sorted(const cart *c)
{
    for (size_t i = 0; i < c->nitems; i++) {
        ck_assert_int_ge(c->items[i].quantity, 1);
        if (i > 0)
            ck_assert_int_lt(strcmp(c->items[i - 1].sku, c->items[i].sku), 0);
    }
}

/* The states a cart can be in, built through cart_apply. */
enum start { S_NONE, S_EMPTY, S_LINES, S_CHECKED_OUT, S_DELETED, S_COUNT };

static const char *const start_names[] = {"none", "active-empty", "active-lines", "checked_out", "deleted"};

static void build(cart *c, enum start s)
{
    cart_init(c, "u1");
    if (s == S_NONE)
        return;
    apply(c, ev_of(CART_EV_CREATED, NULL, 0), T0, ID1);
    if (s == S_LINES || s == S_CHECKED_OUT) {
        apply(c, ev_of(CART_EV_ITEM_ADDED, "A1", 2), T0, ID1);
        apply(c, ev_of(CART_EV_ITEM_ADDED, "B2", 1), T0, ID1);
    }
    if (s == S_CHECKED_OUT)
        ck_assert_int_eq(apply(c, ev_of(CART_EV_CHECKED_OUT, NULL, 0), T0, ID1).status, CART_OK);
    if (s == S_DELETED)
        ck_assert_int_eq(apply(c, ev_of(CART_EV_DELETED, NULL, 0), T0, ID1).status, CART_OK);
}

/* The events of the matrix. */
enum action { A_CREATE, A_ADD, A_SET, A_SET0, A_REMOVE, A_REMOVE_ABSENT, A_DELETE, A_CHECKOUT, A_COUNT };

static const char *const action_names[] = {"created",   "add A1 1",  "set A1 3", "set A1 0",
                                           "remove A1", "remove Z9", "deleted",  "checked_out"};

static cart_event action_event(enum action a)
{
    switch (a) {
    case A_CREATE:
        return ev_of(CART_EV_CREATED, NULL, 0);
    case A_ADD:
        return ev_of(CART_EV_ITEM_ADDED, "A1", 1);
    case A_SET:
        return ev_of(CART_EV_ITEM_QUANTITY_SET, "A1", 3);
    case A_SET0:
        return ev_of(CART_EV_ITEM_QUANTITY_SET, "A1", 0);
    case A_REMOVE:
        return ev_of(CART_EV_ITEM_REMOVED, "A1", 0);
    case A_REMOVE_ABSENT:
        return ev_of(CART_EV_ITEM_REMOVED, "Z9", 0);
    case A_DELETE:
        return ev_of(CART_EV_DELETED, NULL, 0);
    case A_CHECKOUT:
    case A_COUNT:
        break;
    }
    return ev_of(CART_EV_CHECKED_OUT, NULL, 0);
}

/* What each event does to each state. */
typedef struct expect {
    cart_status status;
    int http;
    bool changed, created, line_changed;
    int32_t line_quantity;
    cart_state after;
    size_t nitems;
    int32_t a1; /* quantity of A1 afterwards, 0 if absent */
} expect;

/* Cells that change nothing give only the answer: the cart must then stay as it was. */
static const expect matrix[S_COUNT][A_COUNT] =
    {
        [S_NONE] =
            {
                [A_CREATE] = {CART_OK, 201, true, true, false, 0, CART_ACTIVE, 0, 0},
                [A_ADD] = {CART_OK, 200, true, true, true, 1, CART_ACTIVE, 1, 1},
                [A_SET] = {CART_OK, 200, true, true, true, 3, CART_ACTIVE, 1, 3},
                [A_SET0] = {.status = CART_ERR_NOT_FOUND, .http = 404},
                [A_REMOVE] = {.status = CART_ERR_NOT_FOUND, .http = 404},
                [A_REMOVE_ABSENT] = {.status = CART_ERR_NOT_FOUND, .http = 404},
                [A_DELETE] = {.status = CART_OK, .http = 204},
                [A_CHECKOUT] = {.status = CART_ERR_CONFLICT, .http = 409},
            },
        [S_EMPTY] =
            {
                [A_CREATE] = {.status = CART_OK, .http = 200},
                [A_ADD] = {CART_OK, 200, true, false, true, 1, CART_ACTIVE, 1, 1},
                [A_SET] = {CART_OK, 200, true, false, true, 3, CART_ACTIVE, 1, 3},
                [A_SET0] = {.status = CART_OK, .http = 200},
                [A_REMOVE] = {.status = CART_OK, .http = 200},
                [A_REMOVE_ABSENT] = {.status = CART_OK, .http = 200},
                [A_DELETE] = {CART_OK, 204, true, false, false, 0, CART_DELETED, 0, 0},
                [A_CHECKOUT] = {.status = CART_ERR_CONFLICT, .http = 409},
            },
        [S_LINES] =
            {
                [A_CREATE] = {.status = CART_OK, .http = 200},
                [A_ADD] = {CART_OK, 200, true, false, true, 3, CART_ACTIVE, 2, 3},
                [A_SET] = {CART_OK, 200, true, false, true, 3, CART_ACTIVE, 2, 3},
                [A_SET0] = {CART_OK, 200, true, false, true, 0, CART_ACTIVE, 1, 0},
                [A_REMOVE] = {CART_OK, 200, true, false, true, 0, CART_ACTIVE, 1, 0},
                [A_REMOVE_ABSENT] = {.status = CART_OK, .http = 200},
                [A_DELETE] = {CART_OK, 204, true, false, false, 0, CART_DELETED, 0, 0},
                [A_CHECKOUT] = {CART_OK, 200, true, false, false, 0, CART_CHECKED_OUT, 2, 2},
            },
        [S_CHECKED_OUT] =
            {
                [A_CREATE] = {CART_OK, 201, true, true, false, 0, CART_ACTIVE, 0, 0},
                [A_ADD] = {CART_OK, 200, true, true, true, 1, CART_ACTIVE, 1, 1},
                [A_SET] = {CART_OK, 200, true, true, true, 3, CART_ACTIVE, 1, 3},
                [A_SET0] = {.status = CART_ERR_NOT_FOUND, .http = 404},
                [A_REMOVE] = {.status = CART_ERR_NOT_FOUND, .http = 404},
                [A_REMOVE_ABSENT] = {.status = CART_ERR_NOT_FOUND, .http = 404},
                [A_DELETE] = {.status = CART_OK, .http = 204},
                [A_CHECKOUT] = {.status = CART_ERR_CONFLICT, .http = 409},
            },
        [S_DELETED] =
            {
                [A_CREATE] = {CART_OK, 201, true, true, false, 0, CART_ACTIVE, 0, 0},
                [A_ADD] = {CART_OK, 200, true, true, true, 1, CART_ACTIVE, 1, 1},
                [A_SET] = {CART_OK, 200, true, true, true, 3, CART_ACTIVE, 1, 3},
                [A_SET0] = {.status = CART_ERR_NOT_FOUND, .http = 404},
                [A_REMOVE] = {.status = CART_ERR_NOT_FOUND, .http = 404},
                [A_REMOVE_ABSENT] = {.status = CART_ERR_NOT_FOUND, .http = 404},
                [A_DELETE] = {.status = CART_OK, .http = 204},
                [A_CHECKOUT] = {.status = CART_ERR_CONFLICT, .http = 409},
            },
};

/* Checks one cell of the matrix, with expected_version: 0 none, 1 matching, 2 mismatching. */
static void check_cell(enum start s, enum action a, int ifmatch)
{
    const expect *x = &matrix[s][a];
    cart c;
    snapshot before;
    cart_event ev = action_event(a);
    char where[96];

    snprintf(where, sizeof where, "%s / %s / if-match %d", start_names[s], action_names[a], ifmatch);
    build(&c, s);
    snap(&before, &c);
    if (ifmatch) {
        ev.has_expected_version = true;
        ev.expected_version = ifmatch == 1 ? c.version : c.version + 1;
    }
    cart_outcome out = apply(&c, ev, T1, ID2);

    /* Without an active cart, or with another version, If-Match always fails. */
    if (ifmatch == 2 || (ifmatch == 1 && s != S_EMPTY && s != S_LINES)) {
        ck_assert_msg(out.status == CART_ERR_PRECONDITION, "%s: status %d", where, out.status);
        ck_assert_int_eq(out.http_status, 412);
        ck_assert(!out.changed && !out.created && !out.line_changed);
        ck_assert_str_ne(out.detail, "");
        assert_same(&before, &c);
        cart_cleanup(&c);
        return;
    }

    ck_assert_msg(out.status == x->status, "%s: status %d, want %d", where, out.status, x->status);
    ck_assert_msg(out.http_status == x->http, "%s: http %d, want %d", where, out.http_status, x->http);
    ck_assert_msg(out.changed == x->changed, "%s: changed", where);
    ck_assert_msg(out.created == x->created, "%s: created", where);
    ck_assert_msg(out.line_changed == x->line_changed, "%s: line_changed", where);
    if (x->line_changed) {
        ck_assert_str_eq(out.sku, "A1");
        ck_assert_int_eq(out.line_quantity, x->line_quantity);
    } else {
        ck_assert_str_eq(out.sku, "");
        ck_assert_int_eq(out.line_quantity, 0);
    }
    if (x->status != CART_OK)
        ck_assert_msg(out.detail[0] != '\0', "%s: no detail", where);
    else
        ck_assert_str_eq(out.detail, "");

    if (!x->changed) {
        assert_same(&before, &c);
        cart_cleanup(&c);
        return;
    }
    ck_assert_int_eq(c.state, x->after);
    ck_assert_int_eq(c.version, before.c.version + 1);
    ck_assert_int_eq(c.updated_at_ms, T1);
    ck_assert_str_eq(c.user_id, "u1");
    if (x->created) {
        ck_assert_str_eq(c.cart_id, ID2);
        ck_assert_int_eq(c.created_at_ms, T1);
    } else {
        ck_assert_str_eq(c.cart_id, before.c.cart_id);
        ck_assert_int_eq(c.created_at_ms, before.c.created_at_ms);
    }
    ck_assert_msg(c.nitems == x->nitems, "%s: %zu lines", where, c.nitems);
    const cart_item *a1 = cart_find_line(&c, "A1");
    ck_assert_int_eq(a1 ? a1->quantity : 0, x->a1);
    assert_sorted(&c);
    cart_cleanup(&c);
}

START_TEST(test_matrix)
{
    for (int s = 0; s < S_COUNT; s++)
        for (int a = 0; a < A_COUNT; a++)
            check_cell((enum start)s, (enum action)a, 0);
}
END_TEST

START_TEST(test_matrix_if_match)
{
    for (int s = 0; s < S_COUNT; s++) {
        for (int a = 0; a < A_COUNT; a++) {
            check_cell((enum start)s, (enum action)a, 1);
            check_cell((enum start)s, (enum action)a, 2);
        }
    }
}
END_TEST

START_TEST(test_if_match_details)
{
    cart c;
    cart_init(&c, "u1");

    /* CART_NONE has version 0, and expected_version 0 still fails: there is no cart. */
    cart_event ev = ev_of(CART_EV_ITEM_ADDED, "A1", 1);
    ev.has_expected_version = true;
    ev.expected_version = 0;
    cart_outcome out = apply(&c, ev, T1, ID1);
    ck_assert_int_eq(out.status, CART_ERR_PRECONDITION);
    ck_assert_int_eq(out.http_status, 412);
    ck_assert_int_eq(c.state, CART_NONE);

    apply(&c, ev_of(CART_EV_CREATED, NULL, 0), T1, ID1);
    ev.expected_version = 1;
    out = apply(&c, ev, T1, ID1);
    ck_assert_int_eq(out.status, CART_OK);
    ck_assert_int_eq(c.version, 2);
    out = apply(&c, ev, T1, ID1); /* the same If-Match again is stale now */
    ck_assert_int_eq(out.status, CART_ERR_PRECONDITION);
    ck_assert_str_eq(out.detail, "the cart's version is 2, not 1");
    ck_assert_int_eq(cart_find_line(&c, "A1")->quantity, 1);

    /* A precondition is checked before limits... */
    ev.expected_version = 1;
    ev.quantity = 999;
    out = apply(&c, ev, T1, ID1);
    ck_assert_int_eq(out.status, CART_ERR_PRECONDITION);
    /* ...but after the event's own domain: a malformed event is refused as such (400). */
    ev.quantity = 5000;
    out = apply(&c, ev, T1, ID1);
    ck_assert_int_eq(out.status, CART_ERR_INVALID);
    cart_cleanup(&c);
}
END_TEST

START_TEST(test_if_match_lists_and_any)
{
    cart c;
    cart_init(&c, "u1");
    cart_event ev = ev_of(CART_EV_ITEM_ADDED, "A1", 1);
    cart_outcome out;

    /* If-Match: * wants an active cart, whatever its version. */
    ev.expected_active = true;
    out = apply(&c, ev, T1, ID1);
    ck_assert_int_eq(out.status, CART_ERR_PRECONDITION);
    ck_assert_str_eq(out.detail, "no active cart");
    ck_assert_int_eq(c.state, CART_NONE);
    apply(&c, ev_of(CART_EV_CREATED, NULL, 0), T1, ID1); /* version 1 */
    out = apply(&c, ev, T1, ID1);
    ck_assert_int_eq(out.status, CART_OK);
    ck_assert_int_eq(c.version, 2);

    /* Several tags: one of their versions. */
    ev.expected_active = false;
    ev.n_expected_versions = 3;
    ev.expected_versions[0] = 7;
    ev.expected_versions[1] = 2;
    ev.expected_versions[2] = 1;
    out = apply(&c, ev, T1, ID1);
    ck_assert_int_eq(out.status, CART_OK);
    ck_assert_int_eq(c.version, 3);
    out = apply(&c, ev, T1, ID1);
    ck_assert_int_eq(out.status, CART_ERR_PRECONDITION);
    ck_assert_int_eq(out.http_status, 412);
    ck_assert_str_eq(out.detail, "the cart's version is 3, none of the 3 expected");
    ck_assert_int_eq(cart_find_line(&c, "A1")->quantity, 2);

    /* No active cart fails a list too, even one holding version 0. */
    apply(&c, ev_of(CART_EV_DELETED, NULL, 0), T1, ID1);
    ev.expected_versions[0] = 0;
    out = apply(&c, ev, T1, ID1);
    ck_assert_int_eq(out.status, CART_ERR_PRECONDITION);
    ck_assert_str_eq(out.detail, "no active cart");
    cart_cleanup(&c);
}
END_TEST

START_TEST(test_add_limits)
{
    cart c;
    snapshot before;
    cart_outcome out;
    static const int64_t bad[] = {0, -1, 1000, INT32_MAX, (int64_t)INT32_MAX + 1, INT64_MAX, INT64_MIN, -999};

    /* A quantity outside 1..max is outside the event's domain: a worker dead-letters such an event
     * (cart_event_check_quantity) and the model refuses it as malformed. */
    cart_init(&c, "u1");
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        out = apply(&c, ev_of(CART_EV_ITEM_ADDED, "A1", bad[i]), T1, ID1);
        ck_assert_int_eq(out.status, CART_ERR_INVALID);
        ck_assert_int_eq(out.http_status, 400);
        ck_assert(!out.changed && !out.created);
        ck_assert_int_eq(c.state, CART_NONE); /* no cart was created */
    }
    out = apply(&c, ev_of(CART_EV_ITEM_ADDED, "A1", 1000), T1, ID1);
    ck_assert_str_eq(out.detail, "data.quantity: expected an integer from 1 to 999");

    out = apply(&c, ev_of(CART_EV_ITEM_ADDED, "A1", 999), T1, ID1);
    ck_assert_int_eq(out.status, CART_OK);
    ck_assert_int_eq(cart_find_line(&c, "A1")->quantity, 999);

    /* The line's total counts. */
    snap(&before, &c);
    out = apply(&c, ev_of(CART_EV_ITEM_ADDED, "A1", 1), T2, ID1);
    ck_assert_int_eq(out.status, CART_ERR_LIMIT);
    ck_assert_str_eq(out.detail, "quantity 1000 is over the limit 999");
    assert_same(&before, &c);

    apply(&c, ev_of(CART_EV_ITEM_QUANTITY_SET, "A1", 500), T1, ID1);
    ck_assert_int_eq(apply(&c, ev_of(CART_EV_ITEM_ADDED, "A1", 499), T1, ID1).status, CART_OK);
    ck_assert_int_eq(cart_find_line(&c, "A1")->quantity, 999);
    apply(&c, ev_of(CART_EV_ITEM_QUANTITY_SET, "A1", 500), T1, ID1);
    snap(&before, &c);
    ck_assert_int_eq(apply(&c, ev_of(CART_EV_ITEM_ADDED, "A1", 500), T1, ID1).status, CART_ERR_LIMIT);
    assert_same(&before, &c);
    /* Near the top of int64: no overflow. */
    ck_assert_int_eq(apply(&c, ev_of(CART_EV_ITEM_ADDED, "A1", INT64_MAX - 100), T1, ID1).status, CART_ERR_INVALID);
    assert_same(&before, &c);
    cart_cleanup(&c);
}
END_TEST

START_TEST(test_set_limits)
{
    cart c;
    snapshot before;
    cart_outcome out;

    cart_init(&c, "u1");
    static const int64_t bad[] = {-1, 1000, INT64_MAX, INT64_MIN, (int64_t)INT32_MAX + 1};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        out = apply(&c, ev_of(CART_EV_ITEM_QUANTITY_SET, "A1", bad[i]), T1, ID1);
        ck_assert_int_eq(out.status, CART_ERR_INVALID);
        ck_assert_int_eq(out.http_status, 400);
        ck_assert_int_eq(c.state, CART_NONE);
    }
    out = apply(&c, ev_of(CART_EV_ITEM_QUANTITY_SET, "A1", -1), T1, ID1);
    ck_assert_str_eq(out.detail, "data.quantity: expected an integer from 0 to 999");

    ck_assert_int_eq(apply(&c, ev_of(CART_EV_ITEM_QUANTITY_SET, "A1", 999), T1, ID1).status, CART_OK);
    ck_assert_int_eq(cart_find_line(&c, "A1")->quantity, 999);
    snap(&before, &c);
    ck_assert_int_eq(apply(&c, ev_of(CART_EV_ITEM_QUANTITY_SET, "A1", 1000), T2, ID1).status, CART_ERR_INVALID);
    assert_same(&before, &c);

    /* Setting what the line has is a no-op: no version bump. */
    out = apply(&c, ev_of(CART_EV_ITEM_QUANTITY_SET, "A1", 999), T2, ID1);
    ck_assert_int_eq(out.status, CART_OK);
    ck_assert_int_eq(out.http_status, 200);
    ck_assert(!out.changed && !out.line_changed);
    assert_same(&before, &c);

    out = apply(&c, ev_of(CART_EV_ITEM_QUANTITY_SET, "A1", 1), T2, ID1);
    ck_assert(out.changed && out.line_changed);
    ck_assert_int_eq(out.line_quantity, 1);
    ck_assert_int_eq(c.version, before.c.version + 1);
    cart_cleanup(&c);
}
END_TEST

START_TEST(test_custom_limits)
{
    cart c;
    cart_limits lim = {5, 2};
    cart_outcome out;

    cart_init(&c, "u1");
    ck_assert_int_eq(apply_lim(&c, ev_of(CART_EV_ITEM_ADDED, "A", 6), &lim, T1, ID1).status, CART_ERR_INVALID);
    ck_assert_int_eq(apply_lim(&c, ev_of(CART_EV_ITEM_ADDED, "A", 5), &lim, T1, ID1).status, CART_OK);
    ck_assert_int_eq(apply_lim(&c, ev_of(CART_EV_ITEM_ADDED, "B", 1), &lim, T1, ID1).status, CART_OK);
    out = apply_lim(&c, ev_of(CART_EV_ITEM_ADDED, "C", 1), &lim, T1, ID1);
    ck_assert_int_eq(out.status, CART_ERR_LIMIT);
    ck_assert_str_eq(out.detail, "the cart has 2 lines, the limit");
    cart_cleanup(&c);

    /* With no lines allowed at all, an item event creates no cart either. */
    lim.max_lines = 0;
    cart_init(&c, "u1");
    out = apply_lim(&c, ev_of(CART_EV_ITEM_ADDED, "A", 1), &lim, T1, ID1);
    ck_assert_int_eq(out.status, CART_ERR_LIMIT);
    ck_assert_int_eq(c.state, CART_NONE);
    out = apply_lim(&c, ev_of(CART_EV_ITEM_QUANTITY_SET, "A", 1), &lim, T1, ID1);
    ck_assert_int_eq(out.status, CART_ERR_LIMIT);
    ck_assert_int_eq(c.state, CART_NONE);
    ck_assert_int_eq(c.version, 0);
    cart_cleanup(&c);
}
END_TEST

START_TEST(test_max_lines)
{
    cart c;
    snapshot before;
    char sku[16];

    cart_init(&c, "u1");
    for (int i = 0; i < 100; i++) {
        snprintf(sku, sizeof sku, "S%03d", 99 - i);
        cart_event_type t = i % 2 ? CART_EV_ITEM_ADDED : CART_EV_ITEM_QUANTITY_SET;
        ck_assert_int_eq(apply(&c, ev_of(t, sku, 1), T1, ID1).status, CART_OK);
    }
    ck_assert_uint_eq(c.nitems, 100);
    ck_assert_int_eq(c.version, 100);
    assert_sorted(&c);

    /* The 101st distinct line is refused, by add and by set. */
    snap(&before, &c);
    cart_outcome out = apply(&c, ev_of(CART_EV_ITEM_ADDED, "S100", 1), T2, ID1);
    ck_assert_int_eq(out.status, CART_ERR_LIMIT);
    ck_assert_int_eq(out.http_status, 422);
    ck_assert_str_eq(out.detail, "the cart has 100 lines, the limit");
    assert_same(&before, &c);
    ck_assert_int_eq(apply(&c, ev_of(CART_EV_ITEM_QUANTITY_SET, "S100", 1), T2, ID1).status, CART_ERR_LIMIT);
    assert_same(&before, &c);

    /* Existing lines can still change; setting an absent line to 0 is fine. */
    ck_assert_int_eq(apply(&c, ev_of(CART_EV_ITEM_ADDED, "S050", 3), T2, ID1).status, CART_OK);
    ck_assert_int_eq(apply(&c, ev_of(CART_EV_ITEM_QUANTITY_SET, "S051", 7), T2, ID1).status, CART_OK);
    out = apply(&c, ev_of(CART_EV_ITEM_QUANTITY_SET, "S100", 0), T2, ID1);
    ck_assert_int_eq(out.status, CART_OK);
    ck_assert(!out.changed);

    /* After a removal there is room again. */
    ck_assert_int_eq(apply(&c, ev_of(CART_EV_ITEM_REMOVED, "S000", 0), T2, ID1).status, CART_OK);
    ck_assert_int_eq(apply(&c, ev_of(CART_EV_ITEM_ADDED, "S100", 1), T2, ID1).status, CART_OK);
    ck_assert_uint_eq(c.nitems, 100);
    ck_assert_int_eq(cart_item_count(&c), 100 + 3 + 6);
    assert_sorted(&c);
    cart_cleanup(&c);
}
END_TEST

static uint32_t xorshift(uint32_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 17;
    *x ^= *x << 5;
    return *x;
}

START_TEST(test_random_against_model)
{
    enum { NSKU = 400 };
    cart_limits lim = {999, 1000};
    int32_t model[NSKU] = {0};
    char sku[16];
    uint32_t x = 88172645u;
    cart c;

    cart_init(&c, "u1");
    apply_lim(&c, ev_of(CART_EV_CREATED, NULL, 0), &lim, T0, ID1);
    /* First 200 random distinct-ish insertions, then a random mix of operations. */
    for (int step = 0; step < 5000; step++) {
        int k = (int)(xorshift(&x) % NSKU);
        int op = step < 200 ? 0 : (int)(xorshift(&x) % 3);
        int32_t q = (int32_t)(xorshift(&x) % 10) + (op == 1 ? 0 : 1);
        /* Names that sort differently from their numbers, and differ in case and punctuation. */
        snprintf(sku, sizeof sku, "%c%d%s", "aZb.9-_:"[k % 8], k * 7919 % 1000, k % 3 ? "x" : "");
        cart_event ev = ev_of(op == 0   ? CART_EV_ITEM_ADDED
                              : op == 1 ? CART_EV_ITEM_QUANTITY_SET
                                        : CART_EV_ITEM_REMOVED,
                              sku, q);
        int64_t v = c.version;
        cart_outcome out = apply_lim(&c, ev, &lim, T1 + step, ID1);

        int32_t want = model[k];
        if (op == 0)
            want = model[k] + q > 999 ? model[k] : model[k] + q;
        else if (op == 1)
            want = q;
        else
            want = 0;
        ck_assert_int_eq(out.status, (op == 0 && model[k] + q > 999) ? CART_ERR_LIMIT : CART_OK);
        ck_assert_int_eq(out.changed, want != model[k]);
        ck_assert_int_eq(c.version, v + (want != model[k]));
        model[k] = want;

        const cart_item *line = cart_find_line(&c, sku);
        ck_assert_int_eq(line ? line->quantity : 0, want);
        if (step % 97 == 0 || step == 199) {
            assert_sorted(&c);
            size_t n = 0;
            int64_t total = 0;
            for (int i = 0; i < NSKU; i++) {
                n += model[i] > 0;
                total += model[i];
            }
            ck_assert_uint_eq(c.nitems, n);
            ck_assert_int_eq(cart_item_count(&c), total);
        }
    }
    assert_sorted(&c);
    cart_cleanup(&c);
}
END_TEST

START_TEST(test_version_across_carts)
{
    cart c;
    cart_outcome out;

    cart_init(&c, "u1");
    ck_assert_int_eq(c.version, 0);
    ck_assert_str_eq(c.cart_id, "");

    out = apply(&c, ev_of(CART_EV_ITEM_ADDED, "A1", 2), T0, ID1); /* creates the cart */
    ck_assert(out.created && out.changed);
    ck_assert_int_eq(out.http_status, 200);
    ck_assert_int_eq(c.version, 1);
    ck_assert_str_eq(c.cart_id, ID1);
    apply(&c, ev_of(CART_EV_ITEM_ADDED, "B1", 1), T1, ID2);
    ck_assert_int_eq(c.version, 2);
    ck_assert_str_eq(c.cart_id, ID1); /* new_cart_id is only for a new cart */

    out = apply(&c, ev_of(CART_EV_CHECKED_OUT, NULL, 0), T1, ID2);
    ck_assert_int_eq(out.status, CART_OK);
    ck_assert_int_eq(c.version, 3);
    ck_assert_int_eq(c.state, CART_CHECKED_OUT);
    ck_assert_uint_eq(c.nitems, 2); /* the final items stay */
    ck_assert_int_eq(cart_item_count(&c), 3);
    ck_assert_int_eq(c.created_at_ms, T0);
    ck_assert_int_eq(c.updated_at_ms, T1);

    /* A second checkout finds no cart. */
    out = apply(&c, ev_of(CART_EV_CHECKED_OUT, NULL, 0), T1, ID2);
    ck_assert_int_eq(out.status, CART_ERR_CONFLICT);
    ck_assert_str_eq(out.detail, "no active cart");

    out = apply(&c, ev_of(CART_EV_ITEM_ADDED, "C1", 1), T2, ID2);
    ck_assert(out.created);
    ck_assert_int_eq(c.version, 4);
    ck_assert_str_eq(c.cart_id, ID2);
    ck_assert_uint_eq(c.nitems, 1); /* the old cart's lines are gone */
    ck_assert_ptr_null(cart_find_line(&c, "A1"));
    ck_assert_int_eq(c.created_at_ms, T2);

    out = apply(&c, ev_of(CART_EV_DELETED, NULL, 0), T2, ID3);
    ck_assert_int_eq(out.http_status, 204);
    ck_assert_int_eq(c.version, 5);
    ck_assert_int_eq(c.state, CART_DELETED);
    ck_assert_uint_eq(c.nitems, 0);
    ck_assert_str_eq(c.cart_id, ID2);

    out = apply(&c, ev_of(CART_EV_CREATED, NULL, 0), T2 + 1, ID3);
    ck_assert_int_eq(out.http_status, 201);
    ck_assert_int_eq(c.version, 6);
    ck_assert_str_eq(c.cart_id, ID3);
    ck_assert_int_eq(c.created_at_ms, T2 + 1);
    ck_assert_int_eq(c.updated_at_ms, T2 + 1);
    cart_cleanup(&c);
}
END_TEST

START_TEST(test_checkout_empty)
{
    cart c;
    cart_init(&c, "u1");
    apply(&c, ev_of(CART_EV_CREATED, NULL, 0), T0, ID1);
    cart_outcome out = apply(&c, ev_of(CART_EV_CHECKED_OUT, NULL, 0), T1, ID2);
    ck_assert_int_eq(out.status, CART_ERR_CONFLICT);
    ck_assert_int_eq(out.http_status, 409);
    ck_assert_str_eq(out.detail, "cart is empty");
    ck_assert_int_eq(c.state, CART_ACTIVE);
    ck_assert_int_eq(c.version, 1);

    /* Emptied by removals counts as empty too. */
    apply(&c, ev_of(CART_EV_ITEM_ADDED, "A", 1), T1, ID2);
    apply(&c, ev_of(CART_EV_ITEM_REMOVED, "A", 0), T1, ID2);
    ck_assert_int_eq(apply(&c, ev_of(CART_EV_CHECKED_OUT, NULL, 0), T1, ID2).status, CART_ERR_CONFLICT);
    cart_cleanup(&c);
}
END_TEST

START_TEST(test_expire)
{
    const int64_t ttl = 1000;
    cart c;
    cart_outcome out;
    snapshot before;

    cart_init(&c, "u1");
    cart_expire(&c, T2, ttl, &out);
    ck_assert_int_eq(out.status, CART_ERR_NOT_FOUND);
    ck_assert(!out.changed);

    apply(&c, ev_of(CART_EV_ITEM_ADDED, "A1", 2), T0, ID1);
    snap(&before, &c);
    /* Touched too recently: one millisecond short of the TTL. */
    cart_expire(&c, T0 + ttl - 1, ttl, &out);
    ck_assert_int_eq(out.status, CART_ERR_CONFLICT);
    ck_assert(!out.changed);
    assert_same(&before, &c);
    /* A clock that went backwards never expires anything. */
    cart_expire(&c, T0 - 5, 0, &out);
    ck_assert_int_eq(out.status, CART_ERR_CONFLICT);
    assert_same(&before, &c);

    cart_expire(&c, T0 + ttl, ttl, &out);
    ck_assert_int_eq(out.status, CART_OK);
    ck_assert_int_eq(out.http_status, 200);
    ck_assert(out.changed);
    ck_assert(!out.created);
    ck_assert_int_eq(c.state, CART_EXPIRED);
    ck_assert_int_eq(c.version, 2);
    ck_assert_int_eq(c.updated_at_ms, T0 + ttl);
    ck_assert_uint_eq(c.nitems, 1); /* the abandoned lines stay for the announcement */

    /* Expired is not active: a second expiry finds nothing, checkout is 409, If-Match 412, and
     * the next add starts a new cart with a higher version. */
    cart_expire(&c, T2, ttl, &out);
    ck_assert_int_eq(out.status, CART_ERR_NOT_FOUND);
    ck_assert_int_eq(apply(&c, ev_of(CART_EV_CHECKED_OUT, NULL, 0), T2, ID2).http_status, 409);
    cart_event ev = ev_of(CART_EV_ITEM_ADDED, "B1", 1);
    ev.has_expected_version = true;
    ev.expected_version = 2;
    ck_assert_int_eq(apply(&c, ev, T2, ID2).http_status, 412);
    out = apply(&c, ev_of(CART_EV_ITEM_ADDED, "B1", 1), T2, ID2);
    ck_assert(out.created);
    ck_assert_int_eq(c.state, CART_ACTIVE);
    ck_assert_str_eq(c.cart_id, ID2);
    ck_assert_int_eq(c.version, 3);
    ck_assert_uint_eq(c.nitems, 1);
    ck_assert_ptr_null(cart_find_line(&c, "A1"));

    c.version = INT64_MAX;
    cart_expire(&c, T2 + ttl, ttl, &out);
    ck_assert_int_eq(out.status, CART_ERR_CONFLICT);
    ck_assert_int_eq(c.state, CART_ACTIVE);
    cart_cleanup(&c);
}
END_TEST

START_TEST(test_invalid_events)
{
    cart c;
    snapshot before;
    cart_event ev;

    build(&c, S_LINES);
    snap(&before, &c);
    ev = ev_of((cart_event_type)0, NULL, 0);
    cart_outcome out = apply(&c, ev, T1, ID2);
    ck_assert_int_eq(out.status, CART_ERR_INVALID);
    ck_assert_int_eq(out.http_status, 400);
    ev = ev_of((cart_event_type)42, NULL, 0);
    ck_assert_int_eq(apply(&c, ev, T1, ID2).status, CART_ERR_INVALID);
    ev = ev_of(CART_EV_ITEM_ADDED, "", 1);
    ck_assert_int_eq(apply(&c, ev, T1, ID2).status, CART_ERR_INVALID);
    ev = ev_of(CART_EV_ITEM_REMOVED, "bad sku", 0);
    ck_assert_int_eq(apply(&c, ev, T1, ID2).status, CART_ERR_INVALID);
    memset(ev.sku, 'a', sizeof ev.sku); /* not terminated */
    ck_assert_int_eq(apply(&c, ev, T1, ID2).status, CART_ERR_INVALID);
    assert_same(&before, &c);
    cart_cleanup(&c);
}
END_TEST

START_TEST(test_version_overflow)
{
    cart c;
    snapshot before;

    build(&c, S_LINES);
    c.version = INT64_MAX;
    snap(&before, &c);
    ck_assert_int_eq(apply(&c, ev_of(CART_EV_ITEM_ADDED, "A1", 1), T1, ID2).status, CART_ERR_CONFLICT);
    ck_assert_int_eq(apply(&c, ev_of(CART_EV_ITEM_REMOVED, "A1", 0), T1, ID2).status, CART_ERR_CONFLICT);
    ck_assert_int_eq(apply(&c, ev_of(CART_EV_CHECKED_OUT, NULL, 0), T1, ID2).status, CART_ERR_CONFLICT);
    ck_assert_int_eq(apply(&c, ev_of(CART_EV_DELETED, NULL, 0), T1, ID2).status, CART_ERR_CONFLICT);
    assert_same(&before, &c);
    /* No-ops still answer normally. */
    ck_assert_int_eq(apply(&c, ev_of(CART_EV_CREATED, NULL, 0), T1, ID2).status, CART_OK);
    cart_cleanup(&c);
}
END_TEST

START_TEST(test_put_line)
{
    cart c;
    char long_sku[80];

    cart_init(&c, "u1");
    ck_assert_ptr_null(cart_find_line(&c, "A"));
    ck_assert_int_eq(cart_item_count(&c), 0);
    ck_assert_int_eq(cart_put_line(&c, "b", 2), CART_OK);
    ck_assert_int_eq(cart_put_line(&c, "B", 3), CART_OK);
    ck_assert_int_eq(cart_put_line(&c, "a", 4), CART_OK);
    ck_assert_int_eq(cart_put_line(&c, "A-", 5), CART_OK);
    ck_assert_int_eq(cart_put_line(&c, "b", 7), CART_OK); /* update */
    ck_assert_uint_eq(c.nitems, 4);
    ck_assert_str_eq(c.items[0].sku, "A-");
    ck_assert_str_eq(c.items[1].sku, "B");
    ck_assert_str_eq(c.items[2].sku, "a");
    ck_assert_str_eq(c.items[3].sku, "b");
    ck_assert_int_eq(cart_find_line(&c, "b")->quantity, 7);
    ck_assert_int_eq(cart_item_count(&c), 19);
    /* No limits here: the storage layer loads what it has. */
    ck_assert_int_eq(cart_put_line(&c, "big", INT32_MAX), CART_OK);
    ck_assert_int_eq(cart_item_count(&c), 19 + (int64_t)INT32_MAX);
    ck_assert_int_eq(cart_put_line(&c, "big", 0), CART_OK);
    ck_assert_int_eq(cart_put_line(&c, "absent", 0), CART_OK);
    ck_assert_uint_eq(c.nitems, 4);
    ck_assert_int_eq(cart_put_line(&c, "A-", 0), CART_OK);
    ck_assert_int_eq(cart_put_line(&c, "b", 0), CART_OK);
    ck_assert_uint_eq(c.nitems, 2);
    ck_assert_str_eq(c.items[0].sku, "B");
    ck_assert_str_eq(c.items[1].sku, "a");
    ck_assert_ptr_null(cart_find_line(&c, "b"));
    ck_assert_ptr_null(cart_find_line(&c, NULL));

    /* What the struct cannot hold is refused. */
    ck_assert_int_eq(cart_put_line(&c, NULL, 1), CART_ERR_INVALID);
    ck_assert_int_eq(cart_put_line(&c, "", 1), CART_ERR_INVALID);
    ck_assert_int_eq(cart_put_line(&c, "x", -1), CART_ERR_INVALID);
    memset(long_sku, 'k', sizeof long_sku);
    long_sku[65] = '\0';
    ck_assert_int_eq(cart_put_line(&c, long_sku, 1), CART_ERR_INVALID);
    long_sku[64] = '\0';
    ck_assert_int_eq(cart_put_line(&c, long_sku, 1), CART_OK);
    ck_assert_uint_eq(c.nitems, 3);

    /* Many lines: the array grows and stays sorted. */
    char sku[16];
    for (int i = 0; i < 1000; i++) {
        snprintf(sku, sizeof sku, "n%d", (i * 613) % 1000);
        ck_assert_int_eq(cart_put_line(&c, sku, i + 1), CART_OK);
    }
    ck_assert_uint_eq(c.nitems, 1003);
    assert_sorted(&c);
    cart_cleanup(&c);
    cart_cleanup(&c); /* safe twice */
    ck_assert_ptr_null(c.items);
    ck_assert_uint_eq(c.nitems, 0);
}
END_TEST

START_TEST(test_init)
{
    cart c;
    char long_id[100];

    memset(&c, 0x77, sizeof c);
    cart_init(&c, "u1");
    ck_assert_str_eq(c.user_id, "u1");
    ck_assert_str_eq(c.cart_id, "");
    ck_assert_int_eq(c.state, CART_NONE);
    ck_assert_int_eq(c.version, 0);
    ck_assert_ptr_null(c.items);
    ck_assert_uint_eq(c.nitems, 0);
    ck_assert_uint_eq(c.cap, 0);
    cart_cleanup(&c);

    memset(long_id, 'u', sizeof long_id - 1);
    long_id[sizeof long_id - 1] = '\0';
    cart_init(&c, long_id);
    ck_assert_uint_eq(strlen(c.user_id), 64);
    cart_cleanup(&c);
    cart_init(&c, NULL);
    ck_assert_str_eq(c.user_id, "");
    cart_cleanup(&c);
}
END_TEST

/* --- line snapshots and money --- */

/* ev with a price of `price` minor units of `currency`. */
static cart_event priced(cart_event ev, int64_t price, const char *currency)
{
    ev.snap.has_price = true;
    ev.snap.unit_price = price;
    snprintf(ev.snap.currency, sizeof ev.snap.currency, "%s", currency);
    return ev;
}

static cart_event named(cart_event ev, const char *name)
{
    ev.snap.has_name = true;
    snprintf(ev.snap.name, sizeof ev.snap.name, "%s", name);
    return ev;
}

static cart_event with_attributes(cart_event ev, const char *json)
{
    ev.snap.has_attributes = true;
    snprintf(ev.snap.attributes, sizeof ev.snap.attributes, "%s", json);
    return ev;
}

START_TEST(test_snapshot_replacement)
{
    cart c;
    cart_outcome out;
    const cart_item *a1;

    cart_init(&c, "u1");
    out =
        apply(&c, with_attributes(named(priced(ev_of(CART_EV_ITEM_ADDED, "A1", 1), 100, "EUR"), "n1"), "{\"a\":\"1\"}"),
              T1, ID1);
    ck_assert_int_eq(out.status, CART_OK);
    a1 = cart_find_line(&c, "A1");
    ck_assert(a1->snap.has_name && a1->snap.has_price && a1->snap.has_attributes);
    ck_assert_str_eq(a1->snap.name, "n1");

    /* A member given replaces the line's; one left out is kept. */
    out = apply(&c, named(ev_of(CART_EV_ITEM_ADDED, "A1", 1), "n2"), T1, ID1);
    ck_assert(out.changed && out.line_changed);
    ck_assert_int_eq(out.line_quantity, 2);
    a1 = cart_find_line(&c, "A1");
    ck_assert_str_eq(a1->snap.name, "n2");
    ck_assert_int_eq(a1->snap.unit_price, 100);
    ck_assert_str_eq(a1->snap.currency, "EUR");
    ck_assert_str_eq(a1->snap.attributes, "{\"a\":\"1\"}");
    ck_assert_int_eq(c.version, 2);

    /* Setting the quantity and the snapshot the line has changes nothing. */
    out = apply(&c, named(ev_of(CART_EV_ITEM_QUANTITY_SET, "A1", 2), "n2"), T2, ID1);
    ck_assert_int_eq(out.status, CART_OK);
    ck_assert(!out.changed && !out.line_changed);
    out = apply(&c, priced(ev_of(CART_EV_ITEM_QUANTITY_SET, "A1", 2), 100, "EUR"), T2, ID1);
    ck_assert(!out.changed);
    ck_assert_int_eq(c.version, 2);

    /* The same quantity with another snapshot is a change; attributes go as a whole object. */
    out = apply(&c, with_attributes(ev_of(CART_EV_ITEM_QUANTITY_SET, "A1", 2), "{\"b\":\"2\"}"), T2, ID1);
    ck_assert(out.changed && out.line_changed);
    ck_assert_int_eq(out.line_quantity, 2);
    ck_assert_str_eq(cart_find_line(&c, "A1")->snap.attributes, "{\"b\":\"2\"}");
    ck_assert_int_eq(c.version, 3);
    ck_assert_int_eq(c.updated_at_ms, T2);
    out = apply(&c, named(ev_of(CART_EV_ITEM_QUANTITY_SET, "A1", 2), ""), T2, ID1);
    ck_assert(out.changed);
    ck_assert(cart_find_line(&c, "A1")->snap.has_name);
    ck_assert_str_eq(cart_find_line(&c, "A1")->snap.name, "");

    /* A set to 0 removes the line, whatever snapshot it carries; a new line starts bare. */
    out = apply(&c, named(ev_of(CART_EV_ITEM_QUANTITY_SET, "A1", 0), "gone"), T2, ID1);
    ck_assert(out.changed && out.line_changed);
    ck_assert_int_eq(out.line_quantity, 0);
    ck_assert_ptr_null(cart_find_line(&c, "A1"));
    ck_assert_ptr_null(cart_currency(&c));
    apply(&c, ev_of(CART_EV_ITEM_ADDED, "A1", 1), T2, ID1);
    a1 = cart_find_line(&c, "A1");
    ck_assert(!a1->snap.has_name && !a1->snap.has_price && !a1->snap.has_attributes);
    cart_cleanup(&c);
}
END_TEST

START_TEST(test_totals)
{
    cart c;
    cart_outcome out;

    cart_init(&c, "u1");
    ck_assert_ptr_null(cart_currency(&c));
    ck_assert_int_eq(cart_subtotal(&c), 0);
    apply(&c, priced(ev_of(CART_EV_ITEM_ADDED, "A1", 3), 1999, "EUR"), T1, ID1);
    apply(&c, ev_of(CART_EV_ITEM_ADDED, "B2", 4), T1, ID1);
    /* A price of 0 is a price: the line is priced, in the cart's currency. */
    out = apply(&c, priced(ev_of(CART_EV_ITEM_ADDED, "C3", 2), 0, "EUR"), T1, ID1);
    ck_assert_int_eq(out.status, CART_OK);
    ck_assert_int_eq(cart_line_total(cart_find_line(&c, "A1")), 5997);
    ck_assert_int_eq(cart_line_total(cart_find_line(&c, "B2")), 0);
    ck_assert_int_eq(cart_line_total(cart_find_line(&c, "C3")), 0);
    ck_assert_int_eq(cart_subtotal(&c), 5997);
    ck_assert_str_eq(cart_currency(&c), "EUR");
    /* A later add without a price keeps it, and the totals follow the quantity. */
    apply(&c, ev_of(CART_EV_ITEM_ADDED, "A1", 2), T1, ID1);
    ck_assert_int_eq(cart_subtotal(&c), 5 * 1999);
    /* Checkout keeps the lines and so the totals. */
    out = apply(&c, ev_of(CART_EV_CHECKED_OUT, NULL, 0), T2, ID1);
    ck_assert_int_eq(out.status, CART_OK);
    ck_assert_int_eq(cart_subtotal(&c), 5 * 1999);
    ck_assert_str_eq(cart_currency(&c), "EUR");
    /* The next cart starts without a currency. */
    out = apply(&c, priced(ev_of(CART_EV_ITEM_ADDED, "A1", 1), 700, "USD"), T2, ID2);
    ck_assert_int_eq(out.status, CART_OK);
    ck_assert(out.created);
    ck_assert_str_eq(cart_currency(&c), "USD");
    ck_assert_int_eq(cart_subtotal(&c), 700);
    cart_cleanup(&c);
}
END_TEST

START_TEST(test_currency_rules)
{
    cart c;
    snapshot before;
    cart_outcome out;

    cart_init(&c, "u1");
    apply(&c, priced(ev_of(CART_EV_ITEM_ADDED, "A1", 1), 100, "EUR"), T1, ID1);
    apply(&c, ev_of(CART_EV_ITEM_ADDED, "B2", 1), T1, ID1);

    /* The cart's only priced line may move to another currency: the cart's follows. */
    out = apply(&c, priced(ev_of(CART_EV_ITEM_QUANTITY_SET, "A1", 1), 90, "GBP"), T1, ID1);
    ck_assert_int_eq(out.status, CART_OK);
    ck_assert_str_eq(cart_currency(&c), "GBP");

    /* Another line in another currency is refused, new or kept, and nothing changes. */
    snap(&before, &c);
    out = apply(&c, priced(ev_of(CART_EV_ITEM_ADDED, "C3", 1), 100, "EUR"), T2, ID1);
    ck_assert_int_eq(out.status, CART_ERR_CURRENCY);
    ck_assert_int_eq(out.http_status, 422);
    ck_assert_str_eq(out.detail, CART_CURRENCY_MISMATCH ": the cart's currency is GBP, not EUR");
    ck_assert(!out.changed && !out.line_changed);
    assert_same(&before, &c);
    out = apply(&c, priced(ev_of(CART_EV_ITEM_QUANTITY_SET, "B2", 5), 100, "EUR"), T2, ID1);
    ck_assert_int_eq(out.status, CART_ERR_CURRENCY);
    assert_same(&before, &c);
    ck_assert_int_eq(apply(&c, priced(ev_of(CART_EV_ITEM_ADDED, "B2", 1), 100, "GBP"), T2, ID1).status, CART_OK);

    /* With two priced lines, neither may leave the currency. */
    snap(&before, &c);
    ck_assert_int_eq(apply(&c, priced(ev_of(CART_EV_ITEM_QUANTITY_SET, "A1", 1), 90, "EUR"), T2, ID1).status,
                     CART_ERR_CURRENCY);
    assert_same(&before, &c);
    /* Once no line is priced any more, the cart has no currency and takes any. */
    apply(&c, ev_of(CART_EV_ITEM_REMOVED, "A1", 0), T2, ID1);
    apply(&c, ev_of(CART_EV_ITEM_QUANTITY_SET, "B2", 0), T2, ID1);
    ck_assert_ptr_null(cart_currency(&c));
    ck_assert_int_eq(apply(&c, priced(ev_of(CART_EV_ITEM_ADDED, "C3", 1), 100, "EUR"), T2, ID1).status, CART_OK);
    ck_assert_str_eq(cart_currency(&c), "EUR");
    cart_cleanup(&c);
}
END_TEST

START_TEST(test_money_limits)
{
    const cart_limits big = {1000000, 100};
    cart c;
    snapshot before;
    cart_outcome out;
    char sku[8];

    /* A line total: 10^11 x 10000 is 10^15, the limit; one more unit is over. */
    cart_init(&c, "u1");
    out = apply_lim(&c, priced(ev_of(CART_EV_ITEM_ADDED, "A", 10001), CART_PRICE_MAX, "EUR"), &big, T1, ID1);
    ck_assert_int_eq(out.status, CART_ERR_LIMIT);
    ck_assert_int_eq(out.http_status, 422);
    ck_assert_str_eq(out.detail, "a line total over the limit of 10^15 minor units: A");
    ck_assert_int_eq(c.state, CART_NONE);
    out = apply_lim(&c, priced(ev_of(CART_EV_ITEM_ADDED, "A", 10000), CART_PRICE_MAX, "EUR"), &big, T1, ID1);
    ck_assert_int_eq(out.status, CART_OK);
    ck_assert(cart_subtotal(&c) == CART_MONEY_MAX);
    /* A quantity that would take a priced line over, without any price in the event. */
    snap(&before, &c);
    ck_assert_int_eq(apply_lim(&c, ev_of(CART_EV_ITEM_ADDED, "A", 1), &big, T2, ID1).status, CART_ERR_LIMIT);
    ck_assert_int_eq(apply_lim(&c, ev_of(CART_EV_ITEM_QUANTITY_SET, "A", 1000000), &big, T2, ID1).status,
                     CART_ERR_LIMIT);
    assert_same(&before, &c);
    /* Any priced line now takes the subtotal over, even one of price 1; a price of 0 does not. */
    out = apply_lim(&c, priced(ev_of(CART_EV_ITEM_ADDED, "B", 1), 1, "EUR"), &big, T2, ID1);
    ck_assert_int_eq(out.status, CART_ERR_LIMIT);
    ck_assert_str_eq(out.detail, "a subtotal over the limit of 10^15 minor units");
    assert_same(&before, &c);
    ck_assert_int_eq(apply_lim(&c, priced(ev_of(CART_EV_ITEM_ADDED, "B", 1), 0, "EUR"), &big, T2, ID1).status, CART_OK);
    ck_assert_int_eq(apply_lim(&c, ev_of(CART_EV_ITEM_ADDED, "U", 1000000), &big, T2, ID1).status, CART_OK);
    /* Lowering it is always fine. */
    ck_assert_int_eq(apply_lim(&c, ev_of(CART_EV_ITEM_QUANTITY_SET, "A", 1), &big, T2, ID1).status, CART_OK);
    cart_cleanup(&c);

    /* With the default limits one line is at most 999 x 10^11; the eleventh such line is over. */
    cart_init(&c, "u1");
    for (int i = 0; i < 10; i++) {
        snprintf(sku, sizeof sku, "S%d", i);
        ck_assert_int_eq(apply(&c, priced(ev_of(CART_EV_ITEM_ADDED, sku, 999), CART_PRICE_MAX, "JPY"), T1, ID1).status,
                         CART_OK);
    }
    ck_assert(cart_subtotal(&c) == 10 * 999 * CART_PRICE_MAX);
    snap(&before, &c);
    out = apply(&c, priced(ev_of(CART_EV_ITEM_ADDED, "S10", 999), CART_PRICE_MAX, "JPY"), T1, ID1);
    ck_assert_int_eq(out.status, CART_ERR_LIMIT);
    ck_assert_str_eq(out.detail, "a subtotal over the limit of 10^15 minor units");
    assert_same(&before, &c);
    /* Re-pricing a line counts its new total against the others'. */
    ck_assert_int_eq(apply(&c, priced(ev_of(CART_EV_ITEM_ADDED, "S10", 1), 1, "JPY"), T1, ID1).status, CART_OK);
    ck_assert_int_eq(apply(&c, priced(ev_of(CART_EV_ITEM_QUANTITY_SET, "S10", 999), 1001001002, "JPY"), T1, ID1).status,
                     CART_ERR_LIMIT);
    ck_assert_int_eq(apply(&c, priced(ev_of(CART_EV_ITEM_QUANTITY_SET, "S10", 999), 1001001001, "JPY"), T1, ID1).status,
                     CART_OK);
    ck_assert(cart_subtotal(&c) <= CART_MONEY_MAX);
    cart_cleanup(&c);

    /* At the largest quantity a setting allows, nothing overflows: refused, not wrapped. */
    cart_limits huge = {INT32_MAX, 100};
    cart_init(&c, "u1");
    out = apply_lim(&c, priced(ev_of(CART_EV_ITEM_ADDED, "A", INT32_MAX), CART_PRICE_MAX, "EUR"), &huge, T1, ID1);
    ck_assert_int_eq(out.status, CART_ERR_LIMIT);
    cart_cleanup(&c);
}
END_TEST

START_TEST(test_loaded_lines_and_totals)
{
    cart c;
    cart_snapshot s;
    cart_item line;

    memset(&s, 0, sizeof s);
    s.has_price = true;
    s.unit_price = CART_PRICE_MAX;
    strcpy(s.currency, "EUR");
    cart_init(&c, "u1");
    ck_assert_int_eq(cart_put_snapshot(&c, "A", &s), CART_ERR_NOT_FOUND);
    ck_assert_int_eq(cart_put_line(&c, "A", INT32_MAX), CART_OK);
    ck_assert_int_eq(cart_put_snapshot(&c, "B", &s), CART_ERR_NOT_FOUND);
    ck_assert_int_eq(cart_put_snapshot(&c, "A", &s), CART_OK);
    /* A line no limit checked: the totals stop at INT64_MAX instead of wrapping. */
    ck_assert(cart_line_total(cart_find_line(&c, "A")) == INT64_MAX);
    ck_assert_int_eq(cart_put_line(&c, "B", 5), CART_OK);
    ck_assert_int_eq(cart_put_snapshot(&c, "B", &s), CART_OK);
    ck_assert(cart_subtotal(&c) == INT64_MAX);
    /* A quantity update keeps the snapshot; a snapshot out of its domain is refused. */
    ck_assert_int_eq(cart_put_line(&c, "B", 6), CART_OK);
    ck_assert(cart_line_total(cart_find_line(&c, "B")) == 6 * CART_PRICE_MAX);
    strcpy(s.currency, "eur");
    ck_assert_int_eq(cart_put_snapshot(&c, "B", &s), CART_ERR_INVALID);
    ck_assert_str_eq(cart_find_line(&c, "B")->snap.currency, "EUR");
    cart_cleanup(&c);

    memset(&line, 0, sizeof line);
    line.quantity = 3;
    line.snap.unit_price = 5; /* without has_price it is no price */
    ck_assert_int_eq(cart_line_total(&line), 0);
}
END_TEST

START_TEST(test_snapshot_outside_domain)
{
    cart c;
    snapshot before;
    cart_outcome out;

    cart_init(&c, "u1");
    apply(&c, ev_of(CART_EV_ITEM_ADDED, "A1", 1), T1, ID1);
    snap(&before, &c);
    out = apply(&c, priced(ev_of(CART_EV_ITEM_ADDED, "A1", 1), 100, "eur"), T2, ID1);
    ck_assert_int_eq(out.status, CART_ERR_INVALID);
    ck_assert_int_eq(out.http_status, 400);
    ck_assert_str_eq(out.detail, "invalid line snapshot");
    out = apply(&c, priced(ev_of(CART_EV_ITEM_ADDED, "A1", 1), CART_PRICE_MAX + 1, "EUR"), T2, ID1);
    ck_assert_int_eq(out.status, CART_ERR_INVALID);
    out = apply(&c, named(ev_of(CART_EV_ITEM_ADDED, "A1", 1), "\xff"), T2, ID1);
    ck_assert_int_eq(out.status, CART_ERR_INVALID);
    assert_same(&before, &c);
    cart_cleanup(&c);
}
END_TEST

static Suite *cart_suite(void)
{
    Suite *s = suite_create("cart");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_init);
    tcase_add_test(tc, test_put_line);
    tcase_add_test(tc, test_matrix);
    tcase_add_test(tc, test_matrix_if_match);
    tcase_add_test(tc, test_if_match_details);
    tcase_add_test(tc, test_if_match_lists_and_any);
    tcase_add_test(tc, test_add_limits);
    tcase_add_test(tc, test_set_limits);
    tcase_add_test(tc, test_custom_limits);
    tcase_add_test(tc, test_max_lines);
    tcase_add_test(tc, test_random_against_model);
    tcase_add_test(tc, test_version_across_carts);
    tcase_add_test(tc, test_checkout_empty);
    tcase_add_test(tc, test_invalid_events);
    tcase_add_test(tc, test_expire);
    tcase_add_test(tc, test_version_overflow);
    tcase_add_test(tc, test_snapshot_replacement);
    tcase_add_test(tc, test_totals);
    tcase_add_test(tc, test_currency_rules);
    tcase_add_test(tc, test_money_limits);
    tcase_add_test(tc, test_loaded_lines_and_totals);
    tcase_add_test(tc, test_snapshot_outside_domain);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(cart_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
