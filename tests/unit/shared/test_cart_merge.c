#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cartshard/cart_merge.h"

#define CID_U "11111111-1111-4111-8111-111111111111"
#define CID_G "22222222-2222-4222-8222-222222222222"
#define CID_N "33333333-3333-4333-8333-333333333333"

static const cart_limits LIM = {999, 100};

/* An active cart of `user` with lines "sku=q,sku=q" (empty: no lines). */
static void make(cart *c, const char *user, const char *cart_id, const char *lines)
{
    char buf[512], *save = NULL;

    cart_init(c, user);
    strcpy(c->cart_id, cart_id);
    c->state = CART_ACTIVE;
    c->version = 5;
    c->created_at_ms = 100;
    c->updated_at_ms = 200;
    strcpy(buf, lines);
    for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(tok, '=');
        *eq = '\0';
        ck_assert_int_eq(cart_put_line(c, tok, atoi(eq + 1)), CART_OK);
    }
}

/* The lines as "sku=q,sku=q". */
static const char *lines_of(const cart *c)
{
    static char buf[2048];
    size_t n = 0;

    buf[0] = '\0';
    for (size_t i = 0; i < c->nitems; i++)
        n += (size_t)snprintf(buf + n, sizeof buf - n, "%s%s=%d", i ? "," : "", c->items[i].sku,
                              (int)c->items[i].quantity);
    return buf;
}

static cart_outcome merge_lim(cart *u, const cart *g, cart_merge_strategy s, const cart_limits *lim)
{
    cart_outcome o;

    memset(&o, 0x5a, sizeof o);
    ck_assert_int_eq(cart_merge_lines(u, g, s, lim, 900, CID_N, &o), CART_OK);
    return o;
}

/* Merges guest lines `g` into user lines `u` by `s` and checks the result `want`. */
static void check_strategy(cart_merge_strategy s, const char *u, const char *g, const char *want)
{
    cart uc, gc;
    cart_outcome o;

    make(&uc, "user", CID_U, u);
    make(&gc, "guest", CID_G, g);
    o = merge_lim(&uc, &gc, s, &LIM);
    ck_assert_int_eq(o.status, CART_OK);
    ck_assert_int_eq(o.http_status, 200);
    ck_assert_str_eq(lines_of(&uc), want);
    ck_assert_str_eq(uc.cart_id, CID_U);
    ck_assert(!o.created);
    ck_assert_int_eq(uc.version, o.changed ? 6 : 5);
    ck_assert_int_eq(uc.updated_at_ms, o.changed ? 900 : 200);
    cart_cleanup(&uc);
    cart_cleanup(&gc);
}

START_TEST(strategies)
{
    const char *u = "A=1,B=5,C=2", *g = "B=3,D=4";

    check_strategy(CART_MERGE_SUM, u, g, "A=1,B=8,C=2,D=4");
    check_strategy(CART_MERGE_MAX, u, g, "A=1,B=5,C=2,D=4");
    check_strategy(CART_MERGE_MAX, "B=2", "B=7", "B=7");
    check_strategy(CART_MERGE_REPLACE, u, g, "B=3,D=4");
    check_strategy(CART_MERGE_KEEP, u, g, "A=1,B=5,C=2,D=4");
    check_strategy(CART_MERGE_KEEP, "B=1", "B=9", "B=1");
    /* An empty guest: sum, max and keep change nothing; replace empties the cart. */
    check_strategy(CART_MERGE_SUM, u, "", u);
    check_strategy(CART_MERGE_KEEP, u, "", u);
    check_strategy(CART_MERGE_REPLACE, u, "", "");
    /* An empty user cart takes the guest's lines under every strategy. */
    for (int s = CART_MERGE_SUM; s <= CART_MERGE_KEEP; s++)
        check_strategy((cart_merge_strategy)s, "", g, g);
}
END_TEST

START_TEST(unchanged_is_not_a_change)
{
    cart uc, gc;
    cart_outcome o;

    make(&uc, "user", CID_U, "A=3,B=1");
    make(&gc, "guest", CID_G, "A=2");
    o = merge_lim(&uc, &gc, CART_MERGE_MAX, &LIM);
    ck_assert(!o.changed);
    ck_assert_int_eq(o.http_status, 200);
    ck_assert_int_eq(uc.version, 5);
    cart_cleanup(&uc);
    cart_cleanup(&gc);
}
END_TEST

START_TEST(no_active_cart_gets_a_new_one)
{
    static const cart_state states[] = {CART_NONE, CART_CHECKED_OUT, CART_DELETED, CART_EXPIRED, CART_MERGED};

    for (size_t k = 0; k < sizeof states / sizeof states[0]; k++) {
        cart uc, gc;
        cart_outcome o;
        make(&uc, "user", CID_U, "Z=1");
        uc.state = states[k];
        if (states[k] == CART_MERGED)
            strcpy(uc.merged_into, "other");
        make(&gc, "guest", CID_G, k % 2 ? "A=1" : "");
        o = merge_lim(&uc, &gc, CART_MERGE_KEEP, &LIM);
        ck_assert_int_eq(o.status, CART_OK);
        ck_assert(o.created && o.changed);
        ck_assert_int_eq(uc.state, CART_ACTIVE);
        ck_assert_str_eq(uc.cart_id, CID_N);
        ck_assert_str_eq(uc.merged_into, "");
        ck_assert_int_eq(uc.created_at_ms, 900);
        ck_assert_int_eq(uc.version, 6);
        /* The old cart's lines are not the new one's. */
        ck_assert_str_eq(lines_of(&uc), k % 2 ? "A=1" : "");
        cart_cleanup(&uc);
        cart_cleanup(&gc);
    }
}
END_TEST

/* A refusal leaves the user's cart exactly as it was. */
static void check_refused(cart *uc, const cart *gc, cart_merge_strategy s, const cart_limits *lim, cart_status want,
                          const char *detail)
{
    char before[2048];
    int64_t version = uc->version;
    cart_state state = uc->state;
    cart_outcome o;

    strcpy(before, lines_of(uc));
    o = merge_lim(uc, gc, s, lim);
    ck_assert_int_eq(o.status, want);
    ck_assert_int_eq(o.http_status, cart_status_http(want));
    ck_assert(!o.changed && !o.created);
    ck_assert_msg(strstr(o.detail, detail) != NULL, "detail: %s", o.detail);
    ck_assert_str_eq(lines_of(uc), before);
    ck_assert_int_eq(uc->version, version);
    ck_assert_int_eq(uc->state, state);
}

START_TEST(limits)
{
    cart uc, gc;
    cart_limits three = {10, 3};

    make(&uc, "user", CID_U, "A=6,B=1");
    make(&gc, "guest", CID_G, "A=5,C=1");
    check_refused(&uc, &gc, CART_MERGE_SUM, &three, CART_ERR_LIMIT, "A: merged quantity 11 is over the limit 10");
    /* max and keep stay within the quantity limit; all three give 3 lines, the limit. */
    ck_assert_int_eq(merge_lim(&uc, &gc, CART_MERGE_MAX, &three).status, CART_OK);
    ck_assert_str_eq(lines_of(&uc), "A=6,B=1,C=1");
    cart_cleanup(&gc);
    make(&gc, "guest", CID_G, "D=1");
    check_refused(&uc, &gc, CART_MERGE_KEEP, &three, CART_ERR_LIMIT, "would have 4 lines, over the limit 3");
    check_refused(&uc, &gc, CART_MERGE_SUM, &three, CART_ERR_LIMIT, "4 lines");
    /* replace drops the user's lines: within the limit. */
    ck_assert_int_eq(merge_lim(&uc, &gc, CART_MERGE_REPLACE, &three).status, CART_OK);
    ck_assert_str_eq(lines_of(&uc), "D=1");
    cart_cleanup(&uc);
    cart_cleanup(&gc);
}
END_TEST

START_TEST(sum_capped_at_int32)
{
    cart uc, gc;
    cart_limits big = {INT32_MAX, 100};
    cart_outcome o;

    make(&uc, "user", CID_U, "A=2147483000");
    make(&gc, "guest", CID_G, "A=2147483000");
    o = merge_lim(&uc, &gc, CART_MERGE_SUM, &big);
    ck_assert_int_eq(o.status, CART_OK);
    ck_assert_int_eq(uc.items[0].quantity, INT32_MAX);
    cart_cleanup(&uc);
    cart_cleanup(&gc);
}
END_TEST

START_TEST(merging_user_and_version_limit)
{
    cart uc, gc;

    make(&uc, "user", CID_U, "A=1");
    make(&gc, "guest", CID_G, "B=1");
    uc.state = CART_MERGING;
    strcpy(uc.merged_into, "third");
    check_refused(&uc, &gc, CART_MERGE_SUM, &LIM, CART_ERR_CONFLICT, "being merged into third");
    uc.state = CART_ACTIVE;
    uc.version = INT64_MAX;
    check_refused(&uc, &gc, CART_MERGE_SUM, &LIM, CART_ERR_CONFLICT, "version limit");
    cart_cleanup(&uc);
    cart_cleanup(&gc);
}
END_TEST

static cart_event merge_event(cart_event_type t, const char *user, const char *peer)
{
    cart_event ev;

    memset(&ev, 0, sizeof ev);
    strcpy(ev.event_id, "m1");
    ev.type = t;
    strcpy(ev.user_id, user);
    ev.occurred_at_ms = 1000;
    strcpy(ev.merge.peer, peer);
    strcpy(ev.merge.cart_id, CID_G);
    strcpy(ev.merge.merge_id, "m1");
    return ev;
}

START_TEST(close_and_settle)
{
    cart gc;
    cart_outcome o;
    cart_event req = merge_event(CART_EV_MERGE_REQUESTED, "guest", "user");
    cart_event ok = merge_event(CART_EV_MERGE_SETTLED, "guest", "user");
    cart_event no = ok;

    ok.merge.status = 200;
    no.merge.status = 422;
    strcpy(no.merge.detail, "the merged cart would have 101 lines");

    /* Applied: active -> merging -> merged, the lines kept, the version up at each step. */
    make(&gc, "guest", CID_G, "A=1,B=2");
    ck_assert_int_eq(cart_apply(&gc, &req, &LIM, 300, CID_N, &o), CART_OK);
    ck_assert_int_eq(o.http_status, 202);
    ck_assert(o.changed && !o.created);
    ck_assert_int_eq(gc.state, CART_MERGING);
    ck_assert_str_eq(gc.merged_into, "user");
    ck_assert_int_eq(gc.version, 6);
    ck_assert_str_eq(lines_of(&gc), "A=1,B=2");
    ck_assert_str_eq(cart_merge_notice_type(&req, &gc), "cart.merge_requested");
    /* A second merge of the same guest finds no active cart. */
    ck_assert_int_eq(cart_apply(&gc, &req, &LIM, 310, CID_N, &o), CART_OK);
    ck_assert_int_eq(o.http_status, 404);
    ck_assert_int_eq(gc.version, 6);
    ck_assert_int_eq(cart_apply(&gc, &ok, &LIM, 400, CID_N, &o), CART_OK);
    ck_assert_int_eq(o.http_status, 200);
    ck_assert_int_eq(gc.state, CART_MERGED);
    ck_assert_str_eq(gc.merged_into, "user");
    ck_assert_int_eq(gc.version, 7);
    ck_assert_str_eq(cart_merge_notice_type(&ok, &gc), "cart.merged");
    /* Settled twice: refused, unchanged. */
    ck_assert_int_eq(cart_apply(&gc, &ok, &LIM, 500, CID_N, &o), CART_OK);
    ck_assert_int_eq(o.http_status, 409);
    ck_assert_int_eq(gc.version, 7);
    cart_cleanup(&gc);

    /* Refused on the user's side: active again, with its lines, the refusal's status as the answer. */
    make(&gc, "guest", CID_G, "A=1");
    ck_assert_int_eq(cart_apply(&gc, &req, &LIM, 300, CID_N, &o), CART_OK);
    ck_assert_int_eq(cart_apply(&gc, &no, &LIM, 400, CID_N, &o), CART_OK);
    ck_assert_int_eq(o.http_status, 422);
    ck_assert(o.changed);
    ck_assert_str_eq(o.detail, "the merged cart would have 101 lines");
    ck_assert_int_eq(gc.state, CART_ACTIVE);
    ck_assert_str_eq(gc.merged_into, "");
    ck_assert_int_eq(gc.version, 7);
    ck_assert_str_eq(lines_of(&gc), "A=1");
    ck_assert_str_eq(cart_merge_notice_type(&no, &gc), "cart.merge_refused");
    cart_cleanup(&gc);
}
END_TEST

START_TEST(writes_while_merging)
{
    cart gc;
    cart_outcome o;
    cart_event req = merge_event(CART_EV_MERGE_REQUESTED, "guest", "user");
    cart_event add = merge_event(CART_EV_ITEM_ADDED, "guest", "");

    strcpy(add.sku, "Z");
    add.quantity = 1;
    make(&gc, "guest", CID_G, "A=1");
    ck_assert_int_eq(cart_apply(&gc, &req, &LIM, 300, CID_N, &o), CART_OK);
    /* No new cart while the lines may come back: created, added and set are 409. */
    ck_assert_int_eq(cart_apply(&gc, &add, &LIM, 310, CID_N, &o), CART_OK);
    ck_assert_int_eq(o.http_status, 409);
    ck_assert_msg(strstr(o.detail, "being merged into user") != NULL, "%s", o.detail);
    add.type = CART_EV_ITEM_QUANTITY_SET;
    ck_assert_int_eq(cart_apply(&gc, &add, &LIM, 310, CID_N, &o), CART_OK);
    ck_assert_int_eq(o.http_status, 409);
    add.type = CART_EV_CREATED;
    ck_assert_int_eq(cart_apply(&gc, &add, &LIM, 310, CID_N, &o), CART_OK);
    ck_assert_int_eq(o.http_status, 409);
    /* Removing, deleting and checking out find no active cart, as after a checkout. */
    add.type = CART_EV_ITEM_REMOVED;
    ck_assert_int_eq(cart_apply(&gc, &add, &LIM, 310, CID_N, &o), CART_OK);
    ck_assert_int_eq(o.http_status, 404);
    add.type = CART_EV_CHECKED_OUT;
    ck_assert_int_eq(cart_apply(&gc, &add, &LIM, 310, CID_N, &o), CART_OK);
    ck_assert_int_eq(o.http_status, 409);
    ck_assert_int_eq(gc.state, CART_MERGING);
    ck_assert_int_eq(gc.version, 6);
    /* Into itself, or with no cart: refused. */
    cart_cleanup(&gc);
    make(&gc, "guest", CID_G, "A=1");
    strcpy(req.merge.peer, "guest");
    ck_assert_int_eq(cart_apply(&gc, &req, &LIM, 300, CID_N, &o), CART_OK);
    ck_assert_int_eq(o.http_status, 400);
    ck_assert_int_eq(gc.state, CART_ACTIVE);
    cart_cleanup(&gc);
}
END_TEST

START_TEST(derived_ids)
{
    char buf[CART_MERGE_ID_MAX + 1], buf2[CART_MERGE_ID_MAX + 1], long_id[CART_EVENT_ID_MAX + 1];

    ck_assert_str_eq(cart_merge_derived_id(buf, CART_MERGE_LINES_PREFIX, "abc"), "mrg-abc");
    memset(long_id, 'x', CART_EVENT_ID_MAX);
    long_id[CART_EVENT_ID_MAX] = '\0';
    cart_merge_derived_id(buf, CART_MERGE_SETTLED_PREFIX, long_id);
    ck_assert_uint_eq(strlen(buf), CART_EVENT_ID_MAX);
    ck_assert(cart_valid_event_id(buf, strlen(buf)));
    ck_assert_int_eq(strncmp(buf, "stl-", 4), 0);
    /* Same input, same id; another long id with the same start, another id. */
    ck_assert_str_eq(cart_merge_derived_id(buf2, CART_MERGE_SETTLED_PREFIX, long_id), buf);
    long_id[CART_EVENT_ID_MAX - 1] = 'y';
    ck_assert_str_ne(cart_merge_derived_id(buf2, CART_MERGE_SETTLED_PREFIX, long_id), buf);
}
END_TEST

START_TEST(events_round_trip)
{
    cart gc, back;
    cart_event req = merge_event(CART_EV_MERGE_REQUESTED, "guest", "user"), ev, st;
    char *text = NULL, err[200];
    size_t len;

    req.merge.strategy = CART_MERGE_KEEP;
    strcpy(req.trace, "t1");
    make(&gc, "guest", CID_G, "A=1,B=2");
    ck_assert_int_eq(cart_merge_lines_event(&req, &gc, "_CARTSHARD.reply.g.1", 5000, &text, &len), CART_OK);
    ck_assert_int_eq(cart_event_decode(text, len, &ev, err, sizeof err), CART_OK);
    ck_assert_int_eq(ev.type, CART_EV_LINES_MERGED);
    ck_assert_str_eq(ev.event_id, "mrg-m1");
    ck_assert_str_eq(ev.user_id, "user");
    ck_assert_str_eq(ev.merge.peer, "guest");
    ck_assert_int_eq(ev.merge.strategy, CART_MERGE_KEEP);
    ck_assert_str_eq(ev.merge.merge_id, "m1");
    ck_assert_str_eq(ev.merge.cart_id, CID_G);
    ck_assert_str_eq(ev.merge.reply_to, "_CARTSHARD.reply.g.1");
    ck_assert_str_eq(ev.trace, "t1");
    cart_init(&back, "guest");
    ck_assert_int_eq(cart_merge_lines_decode(text, len, &back, err, sizeof err), CART_OK);
    ck_assert_str_eq(lines_of(&back), "A=1,B=2");
    cart_cleanup(&back);
    free(text);

    ck_assert_int_eq(cart_merge_settled_event(&ev, 422, "over the limit", NULL, 6000, &text, &len), CART_OK);
    ck_assert_int_eq(cart_event_decode(text, len, &st, err, sizeof err), CART_OK);
    ck_assert_int_eq(st.type, CART_EV_MERGE_SETTLED);
    ck_assert_str_eq(st.event_id, "stl-m1");
    ck_assert_str_eq(st.user_id, "guest");
    ck_assert_str_eq(st.merge.peer, "user");
    ck_assert_int_eq(st.merge.status, 422);
    ck_assert_str_eq(st.merge.detail, "over the limit");
    ck_assert_str_eq(st.merge.reply_to, "_CARTSHARD.reply.g.1");
    ck_assert_str_eq(st.request_fingerprint, "");
    free(text);
    /* A refusal for the key's reuse carries the key's first fingerprint. */
    ck_assert_int_eq(cart_merge_settled_event(&ev, 422, "reused", "fp-first", 6000, &text, &len), CART_OK);
    ck_assert_int_eq(cart_event_decode(text, len, &st, err, sizeof err), CART_OK);
    ck_assert_str_eq(st.request_fingerprint, "fp-first");
    free(text);

    /* merge_requested through the plain codec; the strategy defaults to sum. */
    ck_assert_int_eq(cart_event_encode(&req, &text, &len), CART_OK);
    ck_assert_ptr_nonnull(strstr(text, "\"data\":{\"into\":\"user\",\"strategy\":\"keep\"}"));
    free(text);
    static const char minimal[] = "{\"event_id\":\"e\",\"type\":\"cart.merge_requested\",\"user_id\":\"g\","
                                  "\"occurred_at\":\"2026-01-01T00:00:00Z\",\"data\":{\"into\":\"u\"}}";
    ck_assert_int_eq(cart_event_decode(minimal, strlen(minimal), &ev, err, sizeof err), CART_OK);
    ck_assert_int_eq(ev.merge.strategy, CART_MERGE_SUM);
    ck_assert_str_eq(ev.merge.peer, "u");
    cart_cleanup(&gc);
}
END_TEST

/* A refusal at the guest's side travels to the user's side as a lines_merged without lines, with
 * the merge's fingerprint, the status and the detail; a guest with no cart names none. */
START_TEST(refused_event_round_trip)
{
    cart none, gc;
    cart_event req = merge_event(CART_EV_MERGE_REQUESTED, "guest", "user"), ev;
    char *text = NULL, err[200];
    size_t len;

    strcpy(req.request_fingerprint, "fp-merge");
    cart_init(&none, "guest");
    ck_assert_int_eq(cart_merge_refused_event(&req, &none, 404, "no active cart", "_R.1", 5000, &text, &len), CART_OK);
    ck_assert_ptr_null(strstr(text, "cart_id"));
    ck_assert_ptr_null(strstr(text, "items"));
    ck_assert_int_eq(cart_event_decode(text, len, &ev, err, sizeof err), CART_OK);
    ck_assert_int_eq(ev.type, CART_EV_LINES_MERGED);
    ck_assert_str_eq(ev.event_id, "mrg-m1");
    ck_assert_str_eq(ev.user_id, "user");
    ck_assert_str_eq(ev.merge.peer, "guest");
    ck_assert_str_eq(ev.merge.merge_id, "m1");
    ck_assert_str_eq(ev.merge.cart_id, "");
    ck_assert_int_eq(ev.merge.status, 404);
    ck_assert_str_eq(ev.merge.detail, "no active cart");
    ck_assert_str_eq(ev.merge.reply_to, "_R.1");
    ck_assert_str_eq(ev.request_fingerprint, "fp-merge");
    free(text);

    /* A guest whose last cart has an id sends it along; the lines stay home. */
    make(&gc, "guest", CID_G, "A=1");
    ck_assert_int_eq(cart_merge_refused_event(&req, &gc, 409, "version limit reached", NULL, 5000, &text, &len),
                     CART_OK);
    ck_assert_int_eq(cart_event_decode(text, len, &ev, err, sizeof err), CART_OK);
    ck_assert_str_eq(ev.merge.cart_id, CID_G);
    ck_assert_int_eq(ev.merge.status, 409);
    ck_assert_str_eq(ev.merge.reply_to, "");
    free(text);

    /* The lines' own event carries the fingerprint too, and no status. */
    ck_assert_int_eq(cart_merge_lines_event(&req, &gc, NULL, 5000, &text, &len), CART_OK);
    ck_assert_int_eq(cart_event_decode(text, len, &ev, err, sizeof err), CART_OK);
    ck_assert_int_eq(ev.merge.status, 0);
    ck_assert_str_eq(ev.request_fingerprint, "fp-merge");
    ck_assert_ptr_null(strstr(text, "\"status\""));
    free(text);

    /* Not a refusal's status, or no cart_id where lines come: refused by the decoder. */
    static const char *const bad[][2] = {
        {"{\"from\":\"g\",\"merge_id\":\"m\",\"status\":200}", "data.status"},
        {"{\"from\":\"g\",\"merge_id\":\"m\",\"status\":\"404\"}", "data.status"},
        {"{\"from\":\"g\",\"merge_id\":\"m\"}", "data.cart_id: missing"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char t[300];
        snprintf(t, sizeof t,
                 "{\"event_id\":\"e\",\"type\":\"cart.lines_merged\",\"user_id\":\"u\","
                 "\"occurred_at\":\"2026-01-01T00:00:00Z\",\"data\":%s}",
                 bad[i][0]);
        ck_assert_int_eq(cart_event_decode(t, strlen(t), &ev, err, sizeof err), CART_ERR_INVALID);
        ck_assert_msg(strstr(err, bad[i][1]) == err, "%s: %s", bad[i][0], err);
    }
    cart_cleanup(&gc);
    cart_cleanup(&none);
}
END_TEST

START_TEST(bad_events)
{
    cart_event ev;
    cart lines;
    char err[200];
    static const char *const bad[][2] = {
        {"{\"into\":\"u\",\"strategy\":\"avg\"}", "data.strategy"},
        {"{\"into\":\"bad id\"}", "data.into"},
        {"{}", "data.into: missing"},
    };

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char text[300];
        snprintf(text, sizeof text,
                 "{\"event_id\":\"e\",\"type\":\"cart.merge_requested\",\"user_id\":\"g\","
                 "\"occurred_at\":\"2026-01-01T00:00:00Z\",\"data\":%s}",
                 bad[i][0]);
        ck_assert_int_eq(cart_event_decode(text, strlen(text), &ev, err, sizeof err), CART_ERR_INVALID);
        ck_assert_msg(strstr(err, bad[i][1]) == err, "%s", err);
    }
    static const char no_merge_id[] = "{\"event_id\":\"e\",\"type\":\"cart.lines_merged\",\"user_id\":\"u\","
                                      "\"occurred_at\":\"2026-01-01T00:00:00Z\",\"data\":{\"from\":\"g\"}}";
    ck_assert_int_eq(cart_event_decode(no_merge_id, strlen(no_merge_id), &ev, err, sizeof err), CART_ERR_INVALID);
    ck_assert_str_eq(err, "data.merge_id: missing");

    static const char *const items[] = {
        "{\"data\":{\"items\":[{\"sku\":\"A\",\"quantity\":0}]}}",
        "{\"data\":{\"items\":[{\"sku\":\"A\",\"quantity\":1},{\"sku\":\"A\",\"quantity\":2}]}}",
        "{\"data\":{\"items\":{}}}",
        "{\"data\":{\"items\":[{\"sku\":\"a b\",\"quantity\":1}]}}",
    };
    for (size_t i = 0; i < sizeof items / sizeof items[0]; i++) {
        cart_init(&lines, "g");
        ck_assert_int_eq(cart_merge_lines_decode(items[i], strlen(items[i]), &lines, err, sizeof err),
                         CART_ERR_INVALID);
        ck_assert_msg(strncmp(err, "data.items: ", 12) == 0, "%s", err);
        cart_cleanup(&lines);
    }
}
END_TEST

/* A random run against a model of the strategies: every sku of the result is as the strategy says. */
START_TEST(random_against_model)
{
    unsigned seed = 19;

    for (int round = 0; round < 2000; round++) {
        cart uc, gc;
        int mine[8] = {0}, theirs[8] = {0};
        char name[2] = "A";
        cart_merge_strategy s = (cart_merge_strategy)(rand_r(&seed) % 4);
        cart_limits lim = {(int32_t)(1 + rand_r(&seed) % 12), (uint32_t)(1 + rand_r(&seed) % 8)};
        cart_outcome o;
        int want[8] = {0}, lines = 0;
        bool over = false;

        make(&uc, "user", CID_U, "");
        make(&gc, "guest", CID_G, "");
        for (int k = 0; k < 8; k++) {
            name[0] = (char)('A' + k);
            if (rand_r(&seed) % 2 && (mine[k] = 1 + (int)(rand_r(&seed) % 6)) > 0)
                cart_put_line(&uc, name, mine[k]);
            if (rand_r(&seed) % 2 && (theirs[k] = 1 + (int)(rand_r(&seed) % 6)) > 0)
                cart_put_line(&gc, name, theirs[k]);
        }
        for (int k = 0; k < 8; k++) {
            switch (s) {
            case CART_MERGE_SUM:
                want[k] = mine[k] + theirs[k];
                break;
            case CART_MERGE_MAX:
                want[k] = mine[k] > theirs[k] ? mine[k] : theirs[k];
                break;
            case CART_MERGE_REPLACE:
                want[k] = theirs[k];
                break;
            case CART_MERGE_KEEP:
                want[k] = mine[k] ? mine[k] : theirs[k];
                break;
            }
            lines += want[k] > 0;
            over = over || want[k] > lim.max_quantity;
        }
        over = over || lines > (int)lim.max_lines;
        o = merge_lim(&uc, &gc, s, &lim);
        ck_assert_int_eq(o.status, over ? CART_ERR_LIMIT : CART_OK);
        for (int k = 0; k < 8; k++) {
            const cart_item *line;
            name[0] = (char)('A' + k);
            line = cart_find_line(&uc, name);
            ck_assert_int_eq(line ? line->quantity : 0, over ? mine[k] : want[k]);
        }
        cart_cleanup(&uc);
        cart_cleanup(&gc);
    }
}
END_TEST

/* Gives the line of `sku` in `c` a snapshot: a name, a price (0: none) in `currency`, attributes. */
static void price(cart *c, const char *sku, const char *name, int64_t unit_price, const char *currency,
                  const char *attributes)
{
    cart_snapshot snap;

    memset(&snap, 0, sizeof snap);
    if (name != NULL) {
        snap.has_name = true;
        snprintf(snap.name, sizeof snap.name, "%s", name);
    }
    if (unit_price > 0) {
        snap.has_price = true;
        snap.unit_price = unit_price;
        snprintf(snap.currency, sizeof snap.currency, "%s", currency);
    }
    if (attributes != NULL) {
        snap.has_attributes = true;
        snprintf(snap.attributes, sizeof snap.attributes, "%s", attributes);
    }
    ck_assert_int_eq(cart_put_snapshot(c, sku, &snap), CART_OK);
}

/* Under sum and max a sku in both carts takes the guest's snapshot members over the user's; a line
 * only the guest has comes with its snapshot; under keep the user's line stays as it was. */
START_TEST(snapshots_by_strategy)
{
    static const cart_merge_strategy both[] = {CART_MERGE_SUM, CART_MERGE_MAX};

    for (size_t k = 0; k < 2; k++) {
        cart uc, gc;
        const cart_item *a, *c;

        make(&uc, "user", CID_U, "A=2,B=1");
        price(&uc, "A", "Old mug", 500, "EUR", "{\"color\":\"red\"}");
        make(&gc, "guest", CID_G, "A=3,C=1");
        price(&gc, "A", NULL, 450, "EUR", NULL); /* a price only: the name and attributes stay */
        price(&gc, "C", "Tea", 200, "EUR", "{\"size\":\"L\"}");
        ck_assert_int_eq(merge_lim(&uc, &gc, both[k], &LIM).status, CART_OK);
        a = cart_find_line(&uc, "A");
        ck_assert_int_eq(a->quantity, both[k] == CART_MERGE_SUM ? 5 : 3);
        ck_assert(a->snap.has_name && strcmp(a->snap.name, "Old mug") == 0);
        ck_assert(a->snap.has_price && a->snap.unit_price == 450);
        ck_assert_str_eq(a->snap.attributes, "{\"color\":\"red\"}");
        c = cart_find_line(&uc, "C");
        ck_assert(c->snap.has_name && strcmp(c->snap.name, "Tea") == 0 && c->snap.unit_price == 200);
        ck_assert_str_eq(c->snap.attributes, "{\"size\":\"L\"}");
        ck_assert_int_eq(cart_subtotal(&uc), (both[k] == CART_MERGE_SUM ? 5 : 3) * 450 + 200);
        ck_assert_int_eq(cart_find_line(&uc, "B")->snap.has_price, false);
        cart_cleanup(&uc);
        cart_cleanup(&gc);
    }

    /* keep: the user's A as it was, with its old price; replace: the guest's A whole. */
    for (int replace = 0; replace < 2; replace++) {
        cart uc, gc;
        const cart_item *a;

        make(&uc, "user", CID_U, "A=2");
        price(&uc, "A", "Old mug", 500, "EUR", NULL);
        make(&gc, "guest", CID_G, "A=3,C=1");
        price(&gc, "A", NULL, 450, "EUR", NULL);
        ck_assert_int_eq(merge_lim(&uc, &gc, replace ? CART_MERGE_REPLACE : CART_MERGE_KEEP, &LIM).status, CART_OK);
        a = cart_find_line(&uc, "A");
        ck_assert_int_eq(a->quantity, replace ? 3 : 2);
        ck_assert_int_eq(a->snap.unit_price, replace ? 450 : 500);
        ck_assert_int_eq(a->snap.has_name, !replace);
        cart_cleanup(&uc);
        cart_cleanup(&gc);
    }
}
END_TEST

/* A merge that only changes a snapshot is a change; the same snapshot again is none. */
START_TEST(snapshot_only_change)
{
    cart uc, gc;
    cart_outcome o;

    make(&uc, "user", CID_U, "A=3");
    make(&gc, "guest", CID_G, "A=1");
    price(&gc, "A", "Mug", 0, NULL, NULL);
    o = merge_lim(&uc, &gc, CART_MERGE_MAX, &LIM);
    ck_assert(o.status == CART_OK && o.changed);
    ck_assert_int_eq(uc.version, 6);
    ck_assert_str_eq(cart_find_line(&uc, "A")->snap.name, "Mug");
    o = merge_lim(&uc, &gc, CART_MERGE_MAX, &LIM);
    ck_assert(o.status == CART_OK && !o.changed);
    ck_assert_int_eq(uc.version, 6);
    cart_cleanup(&uc);
    cart_cleanup(&gc);
}
END_TEST

/* Priced lines in two currencies, a line total or a subtotal over 10^15: 422, nothing changes. */
START_TEST(money_refusals)
{
    cart uc, gc;

    make(&uc, "user", CID_U, "A=1,B=1");
    price(&uc, "A", NULL, 500, "EUR", NULL);
    make(&gc, "guest", CID_G, "C=1");
    price(&gc, "C", NULL, 200, "USD", NULL);
    for (int s = CART_MERGE_SUM; s <= CART_MERGE_KEEP; s++) {
        if (s == CART_MERGE_REPLACE)
            continue; /* the user's EUR line goes: USD alone is fine */
        check_refused(&uc, &gc, (cart_merge_strategy)s, &LIM, CART_ERR_CURRENCY, CART_CURRENCY_MISMATCH);
        ck_assert_int_eq(cart_find_line(&uc, "A")->snap.unit_price, 500);
    }
    /* a sku in both carts: under sum the guest's USD replaces the user's EUR; B is unpriced, so fine */
    price(&gc, "C", NULL, 0, NULL, NULL);
    ck_assert_int_eq(cart_put_line(&gc, "A", 1), CART_OK);
    price(&gc, "A", NULL, 300, "USD", NULL);
    ck_assert_int_eq(merge_lim(&uc, &gc, CART_MERGE_SUM, &LIM).status, CART_OK);
    ck_assert_str_eq(cart_currency(&uc), "USD");
    ck_assert_int_eq(cart_subtotal(&uc), 600);
    cart_cleanup(&uc);
    cart_cleanup(&gc);

    /* 10^11 x 10^4 is 10^15, the limit; one more unit is over it. */
    cart_limits big = {20000, 100};
    make(&uc, "user", CID_U, "A=5000");
    price(&uc, "A", NULL, 100000000000, "EUR", NULL);
    make(&gc, "guest", CID_G, "A=5000");
    ck_assert_int_eq(merge_lim(&uc, &gc, CART_MERGE_SUM, &big).status, CART_OK);
    ck_assert_int_eq(cart_subtotal(&uc), CART_MONEY_MAX);
    gc.items[0].quantity = 1;
    check_refused(&uc, &gc, CART_MERGE_SUM, &big, CART_ERR_LIMIT, "line total over the limit");
    cart_cleanup(&gc);
    /* two lines each within it, their subtotal over it */
    make(&gc, "guest", CID_G, "B=1");
    price(&gc, "B", NULL, 1, "EUR", NULL);
    check_refused(&uc, &gc, CART_MERGE_KEEP, &big, CART_ERR_LIMIT, "subtotal over the limit");
    cart_cleanup(&uc);
    cart_cleanup(&gc);
}
END_TEST

/* cart.lines_merged carries each line's snapshot; the decoder reads it back, and refuses a member
 * outside its domain. */
START_TEST(snapshot_round_trip)
{
    cart gc, lines;
    cart_event req;
    char *text = NULL, err[200];
    size_t len;
    const cart_item *a;

    make(&gc, "guest", CID_G, "A=2,B=1");
    price(&gc, "A", "Mug \xc3\xa9", 450, "EUR", "{\"color\":\"red\",\"size\":\"L\"}");
    memset(&req, 0, sizeof req);
    strcpy(req.event_id, "m1");
    req.type = CART_EV_MERGE_REQUESTED;
    strcpy(req.user_id, "guest");
    strcpy(req.merge.peer, "user");
    ck_assert_int_eq(cart_merge_lines_event(&req, &gc, NULL, 1000, &text, &len), CART_OK);
    ck_assert_ptr_nonnull(strstr(text, "{\"sku\":\"A\",\"quantity\":2,\"name\":\"Mug \xc3\xa9\",\"unit_price\":450,"
                                       "\"currency\":\"EUR\",\"attributes\":{\"color\":\"red\",\"size\":\"L\"}}"));
    ck_assert_ptr_nonnull(strstr(text, "{\"sku\":\"B\",\"quantity\":1}"));
    cart_init(&lines, "g");
    ck_assert_int_eq(cart_merge_lines_decode(text, len, &lines, err, sizeof err), CART_OK);
    a = cart_find_line(&lines, "A");
    ck_assert_int_eq(a->quantity, 2);
    ck_assert(a->snap.has_name && a->snap.has_price && a->snap.has_attributes);
    ck_assert_str_eq(a->snap.name, "Mug \xc3\xa9");
    ck_assert_int_eq(a->snap.unit_price, 450);
    ck_assert_str_eq(a->snap.currency, "EUR");
    ck_assert_str_eq(a->snap.attributes, "{\"color\":\"red\",\"size\":\"L\"}");
    ck_assert(!cart_find_line(&lines, "B")->snap.has_name);
    cart_cleanup(&lines);
    free(text);
    cart_cleanup(&gc);

    static const char *const bad[][2] = {
        {"{\"data\":{\"items\":[{\"sku\":\"A\",\"quantity\":1,\"currency\":\"EUR\"}]}}", "data.items: currency"},
        {"{\"data\":{\"items\":[{\"sku\":\"A\",\"quantity\":1,\"unit_price\":-1,\"currency\":\"EUR\"}]}}",
         "data.items: unit_price"},
        {"{\"data\":{\"items\":[{\"sku\":\"A\",\"quantity\":1,\"name\":7}]}}", "data.items: name"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cart_init(&lines, "g");
        ck_assert_int_eq(cart_merge_lines_decode(bad[i][0], strlen(bad[i][0]), &lines, err, sizeof err),
                         CART_ERR_INVALID);
        ck_assert_msg(strstr(err, bad[i][1]) == err, "%s", err);
        cart_cleanup(&lines);
    }
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("cart_merge");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, strategies);
    tcase_add_test(tc, unchanged_is_not_a_change);
    tcase_add_test(tc, no_active_cart_gets_a_new_one);
    tcase_add_test(tc, limits);
    tcase_add_test(tc, sum_capped_at_int32);
    tcase_add_test(tc, merging_user_and_version_limit);
    tcase_add_test(tc, close_and_settle);
    tcase_add_test(tc, writes_while_merging);
    tcase_add_test(tc, derived_ids);
    tcase_add_test(tc, events_round_trip);
    tcase_add_test(tc, refused_event_round_trip);
    tcase_add_test(tc, bad_events);
    tcase_add_test(tc, random_against_model);
    tcase_add_test(tc, snapshots_by_strategy);
    tcase_add_test(tc, snapshot_only_change);
    tcase_add_test(tc, money_refusals);
    tcase_add_test(tc, snapshot_round_trip);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
