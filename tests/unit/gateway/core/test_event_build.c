#include <check.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "event_build.h"
#include "request.h"

#define FRESH_ID "0af76519-16cd-43dd-8448-eb211c80319c"
#define NOW_MS   1795341600000LL
#define IFM_BAD  "If-Match: expected \"*\" or a list of at most 16 entity tags such as \"3\""
#define IFM_NONE "If-Match: no tag can match a cart's ETag (\"<version>\")"
/* printf 'POST /v1/carts/u1/merge\n{"from":"g1"}' | sha256sum */
#define MERGE_FINGERPRINT "95951809bcc4dbf8db8eda64f534d49ca4f18ffb993beffc8d7064ffb5ad3e29"

static gw_text text(const char *s)
{
    return (gw_text){s, s ? strlen(s) : 0};
}

/* A request routed as `method path`, with a JSON body (or none) and no other header. */
static void request(const char *method, const char *path, const char *body, gw_route *r, gw_event_input *in)
{
    gw_route_match(method, strlen(method), path, strlen(path), r);
    strcpy(r->request_id, "req-1");
    memset(in, 0, sizeof *in);
    if (body) {
        in->content_type = text("application/json");
        in->body = text(body);
    }
    in->now_ms = NOW_MS;
    in->fresh_id = FRESH_ID;
    in->max_quantity = 99;
}

/* Builds the event and expects a refusal with exactly this status, slug and detail. */
static void refused(const gw_route *r, const gw_event_input *in, int status, const char *slug, const char *detail)
{
    cart_event ev;
    gw_refusal why;

    ck_assert_int_eq(gw_event_build(r, in, &ev, &why), -1);
    ck_assert_int_eq(why.status, status);
    ck_assert_str_eq(why.slug, slug);
    ck_assert_str_eq(why.detail, detail);
}

START_TEST(test_bodiless_writes)
{
    gw_event_input in;
    cart_event ev;
    gw_refusal why;
    gw_route r;

    request("DELETE", "/v1/carts/u1/items/SKU-9", NULL, &r, &in);
    ck_assert_int_eq(gw_event_build(&r, &in, &ev, &why), 0);
    ck_assert_int_eq(ev.type, CART_EV_ITEM_REMOVED);
    ck_assert_str_eq(ev.user_id, "u1");
    ck_assert_str_eq(ev.sku, "SKU-9");
    ck_assert_str_eq(ev.event_id, FRESH_ID);
    ck_assert_str_eq(ev.trace, "req-1");
    ck_assert_int_eq(ev.occurred_at_ms, NOW_MS);
    ck_assert(!ev.has_expected_version);

    request("DELETE", "/v1/carts/u1", NULL, &r, &in);
    ck_assert_int_eq(gw_event_build(&r, &in, &ev, &why), 0);
    ck_assert_int_eq(ev.type, CART_EV_DELETED);
    ck_assert_str_eq(ev.sku, "");

    /* A body where none is read changes nothing. */
    request("POST", "/v1/carts/u1/checkout", "not json", &r, &in);
    ck_assert_int_eq(gw_event_build(&r, &in, &ev, &why), 0);
    ck_assert_int_eq(ev.type, CART_EV_CHECKED_OUT);
    ck_assert_str_eq(ev.user_id, "u1");
}
END_TEST

START_TEST(test_body_writes)
{
    gw_event_input in;
    cart_event ev;
    gw_refusal why;
    gw_route r;

    request("POST", "/v1/carts", "{\"user_id\":\"u2\"}", &r, &in);
    ck_assert_int_eq(gw_event_build(&r, &in, &ev, &why), 0);
    ck_assert_int_eq(ev.type, CART_EV_CREATED);
    ck_assert_str_eq(ev.user_id, "u2");

    request("POST", "/v1/carts/u1/items", "{\"sku\":\"A1\",\"quantity\":3,\"note\":[1]}", &r, &in);
    ck_assert_int_eq(gw_event_build(&r, &in, &ev, &why), 0);
    ck_assert_int_eq(ev.type, CART_EV_ITEM_ADDED);
    ck_assert_str_eq(ev.sku, "A1");
    ck_assert_int_eq(ev.quantity, 3);

    /* PUT takes its sku from the path, not the body. */
    request("PUT", "/v1/carts/u1/items/B2", "{\"sku\":\"A1\",\"quantity\":0}", &r, &in);
    ck_assert_int_eq(gw_event_build(&r, &in, &ev, &why), 0);
    ck_assert_int_eq(ev.type, CART_EV_ITEM_QUANTITY_SET);
    ck_assert_str_eq(ev.sku, "B2");
    ck_assert_int_eq(ev.quantity, 0);
}
END_TEST

START_TEST(test_content_type)
{
    static const char *const ok[] = {"application/json", "Application/JSON", "application/json; charset=utf-8",
                                     "application/json ;charset=utf-8"};
    static const char *const bad[] = {"text/plain", "application/jso", "application/jsonx", "application/json+x",
                                      "application/json\t"};
    gw_event_input in;
    cart_event ev;
    gw_refusal why;
    gw_route r;

    request("POST", "/v1/carts", "{\"user_id\":\"u2\"}", &r, &in);
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        in.content_type = text(ok[i]);
        ck_assert_msg(gw_event_build(&r, &in, &ev, &why) == 0, "refused %s", ok[i]);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        in.content_type = text(bad[i]);
        refused(&r, &in, 415, "unsupported-media-type", "the body must be application/json");
    }
    in.content_type = text(NULL);
    refused(&r, &in, 415, "unsupported-media-type", "the body must be application/json");
}
END_TEST

/* A request the gateway refuses, and exactly how. */
static const struct refusal_case {
    const char *method, *path, *body; /* body NULL: none, and no Content-Type */
    const char *key, *if_match;       /* Idempotency-Key and If-Match, NULL when absent */
    const char *subject;              /* the token's subject, NULL without auth */
    int status;
    const char *slug, *detail;
} refusals[] = {
    /* The body. */
    {"POST", "/v1/carts/u1/items", "[1]", NULL, NULL, NULL, 400, "malformed-json",
     "malformed JSON: expected an object"},
    {"POST", "/v1/carts/u1/items", "[[[[[[[[[[[[[[[[[", NULL, NULL, NULL, 400, "malformed-json",
     "malformed JSON: nested too deeply"},
    {"POST", "/v1/carts", "{\"user_id\":\"a b\"}", NULL, NULL, NULL, 400, "invalid-field",
     "user_id: expected 1-64 characters of [A-Za-z0-9._:-]"},
    {"POST", "/v1/carts/u1/items", "{\"quantity\":1}", NULL, NULL, NULL, 400, "invalid-field",
     "sku: expected 1-64 characters of [A-Za-z0-9._:-]"},
    {"POST", "/v1/carts/u1/items", "{\"sku\":\"A1\",\"quantity\":\"1\"}", NULL, NULL, NULL, 400, "invalid-field",
     "quantity: expected an integer"},
    {"PUT", "/v1/carts/u1/items/A1", "{\"quantity\":1.5}", NULL, NULL, NULL, 400, "invalid-field",
     "quantity: expected an integer"},
    /* The limits: from 1 to add, from 0 to set, up to max_quantity (99 here). */
    {"POST", "/v1/carts/u1/items", "{\"sku\":\"A1\",\"quantity\":0}", NULL, NULL, NULL, 422, "limit-exceeded",
     "quantity: must be from 1 to 99"},
    {"POST", "/v1/carts/u1/items", "{\"sku\":\"A1\",\"quantity\":100}", NULL, NULL, NULL, 422, "limit-exceeded",
     "quantity: must be from 1 to 99"},
    {"PUT", "/v1/carts/u1/items/A1", "{\"quantity\":-1}", NULL, NULL, NULL, 422, "limit-exceeded",
     "quantity: must be from 0 to 99"},
    /* The token's subject, for the user the body names. */
    {"POST", "/v1/carts", "{\"user_id\":\"u2\"}", NULL, NULL, "u1", 403, "forbidden",
     "the token's subject is not this user"},
    /* The headers. */
    {"DELETE", "/v1/carts/u1", NULL, "a b", NULL, NULL, 400, "invalid-header",
     "Idempotency-Key: expected 1-128 visible ASCII characters"},
    {"DELETE", "/v1/carts/u1", NULL, NULL, "3", NULL, 400, "invalid-header", IFM_BAD},
    {"DELETE", "/v1/carts/u1", NULL, NULL, "\"3\" \"4\"", NULL, 400, "invalid-header", IFM_BAD},
    {"DELETE", "/v1/carts/u1", NULL, NULL, "*, \"4\"", NULL, 400, "invalid-header", IFM_BAD},
    /* Weak or foreign tags only: no cart can match, so no event either. */
    {"DELETE", "/v1/carts/u1", NULL, NULL, "W/\"3\"", NULL, 412, "precondition-failed", IFM_NONE},
    {"DELETE", "/v1/carts/u1", NULL, NULL, "\"v3\", W/\"4\"", NULL, 412, "precondition-failed", IFM_NONE},
    /* The first refusal wins: the body, then the subject, then Idempotency-Key, then If-Match. */
    {"POST", "/v1/carts/u1/items", "{\"sku\":\"A1\",\"quantity\":0}", "a b", "*", NULL, 422, "limit-exceeded",
     "quantity: must be from 1 to 99"},
    {"POST", "/v1/carts", "{\"user_id\":\"u2\"}", "a b", "*", "u1", 403, "forbidden",
     "the token's subject is not this user"},
    {"POST", "/v1/carts/u1/items", "{\"sku\":\"A1\",\"quantity\":1}", "a b", "*", NULL, 400, "invalid-header",
     "Idempotency-Key: expected 1-128 visible ASCII characters"},
    {"POST", "/v1/carts/u1/items", "{\"sku\":\"A1\",\"quantity\":1}", "k", "3", NULL, 400, "invalid-header", IFM_BAD},
    /* Not a write at all. */
    {"GET", "/v1/carts/u1", NULL, NULL, NULL, NULL, 404, "not-found", "no such resource"},
};

START_TEST(test_refusals)
{
    const struct refusal_case *c = &refusals[_i];
    gw_event_input in;
    gw_route r;

    request(c->method, c->path, c->body, &r, &in);
    in.idempotency_key = text(c->key);
    in.if_match = text(c->if_match);
    if (c->subject)
        strcpy(r.subject, c->subject);
    refused(&r, &in, c->status, c->slug, c->detail);
}
END_TEST

START_TEST(test_malformed_body)
{
    gw_event_input in;
    cart_event ev;
    gw_refusal why;
    gw_route r;

    /* The table's deep body is one level too deep. */
    ck_assert_uint_eq(strlen(refusals[1].body), GW_JSON_MAX_DEPTH + 1);
    /* jansson's own words follow "malformed JSON: "; no body at all reads as an empty one. */
    request("POST", "/v1/carts/u1/items", "", &r, &in);
    ck_assert_int_eq(gw_event_build(&r, &in, &ev, &why), -1);
    ck_assert_int_eq(why.status, 400);
    ck_assert_str_eq(why.slug, "malformed-json");
    ck_assert(strncmp(why.detail, "malformed JSON: ", 16) == 0 && strlen(why.detail) > 16);
    in.body = (gw_text){NULL, 0};
    ck_assert_int_eq(gw_event_build(&r, &in, &ev, &why), -1);
    ck_assert_str_eq(why.slug, "malformed-json");
    in.body = text("{\"sku\":\"A1\",\"sku\":\"A2\",\"quantity\":1}");
    ck_assert_int_eq(gw_event_build(&r, &in, &ev, &why), -1);
    ck_assert_str_eq(why.slug, "malformed-json");
    /* A NUL in a string: said in our words, not in jansson's (which name an option of its API). */
    in.body = text("{\"sku\":\"A\\u0000B\",\"quantity\":1}");
    ck_assert_int_eq(gw_event_build(&r, &in, &ev, &why), -1);
    ck_assert_str_eq(why.detail, "malformed JSON: a string holds \\u0000 (NUL), which is not accepted");
}
END_TEST

START_TEST(test_allowed)
{
    gw_event_input in;
    cart_event ev;
    gw_refusal why;
    gw_route r;

    /* The limits themselves, and the subject that is the user. */
    request("POST", "/v1/carts/u1/items", "{\"sku\":\"A1\",\"quantity\":99}", &r, &in);
    ck_assert_int_eq(gw_event_build(&r, &in, &ev, &why), 0);
    request("POST", "/v1/carts", "{\"user_id\":\"u2\"}", &r, &in);
    strcpy(r.subject, "u2");
    ck_assert_int_eq(gw_event_build(&r, &in, &ev, &why), 0);

    /* The key is hashed with the user the event is for: POST /v1/carts names it in the body. */
    request("POST", "/v1/carts", "{\"user_id\":\"u1\"}", &r, &in);
    in.idempotency_key = (gw_text){"key-1 and more", 5};
    in.if_match = text("\"0042\"");
    ck_assert_int_eq(gw_event_build(&r, &in, &ev, &why), 0);
    ck_assert_str_eq(ev.event_id, "idem-3713f1c7d92b60af054fd998c1f21b165cd50ed6290007624e2f4c0384d02ba6");
    /* printf 'POST /v1/carts\n{"user_id":"u1"}' | sha256sum */
    ck_assert_str_eq(ev.request_fingerprint, "4059c8410bc36c2542db9275ae43397a914b7a14c1311341a685131371f0b7cc");
    ck_assert(ev.has_expected_version);
    ck_assert_int_eq(ev.expected_version, 42);
    ck_assert(!ev.expected_active && ev.n_expected_versions == 0);

    /* If-Match: "*" wants an active cart; several tags, one of their versions. */
    request("DELETE", "/v1/carts/u1", NULL, &r, &in);
    in.if_match = text(" * ");
    ck_assert_int_eq(gw_event_build(&r, &in, &ev, &why), 0);
    ck_assert(ev.expected_active && !ev.has_expected_version && ev.n_expected_versions == 0);
    in.if_match = text("\"3\", W/\"9\", \"x\", \"5\"");
    ck_assert_int_eq(gw_event_build(&r, &in, &ev, &why), 0);
    ck_assert(!ev.expected_active && !ev.has_expected_version);
    ck_assert_int_eq(ev.n_expected_versions, 2);
    ck_assert(ev.expected_versions[0] == 3 && ev.expected_versions[1] == 5);
    in.if_match = text("W/\"9\", \"7\"");
    ck_assert_int_eq(gw_event_build(&r, &in, &ev, &why), 0);
    ck_assert(ev.has_expected_version && ev.expected_version == 7 && ev.n_expected_versions == 0);
}
END_TEST

/* The event's request fingerprint, as `method path` with `body` and Idempotency-Key `key` (NULL:
 * none) make it. */
static void fingerprint_of(const char *method, const char *path, const char *body, const char *key,
                           char out[CART_FINGERPRINT_MAX + 1])
{
    gw_event_input in;
    cart_event ev;
    gw_refusal why;
    gw_route r;

    request(method, path, body, &r, &in);
    in.idempotency_key = text(key);
    ck_assert_msg(gw_event_build(&r, &in, &ev, &why) == 0, "%s %s: %d %s", method, path, why.status, why.detail);
    memcpy(out, ev.request_fingerprint, sizeof ev.request_fingerprint);
}

START_TEST(test_request_fingerprint)
{
    /* Two requests, and whether they are one (test_idem has the rest of the definition). */
    static const struct {
        const char *method, *path, *body, *method2, *path2, *body2;
        bool same;
    } pairs[] = {
        /* The body's content counts, not its text (quantity 2.0 is refused, but not everywhere). */
        {"POST", "/v1/carts/u1/items", "{\"sku\":\"A1\",\"quantity\":2,\"n\":1}", "POST", "/v1/carts/u1/items",
         " { \"n\": 1.0, \"quantity\" : 2 , \"sku\" : \"\\u0041\\u0031\" } ", true},
        {"POST", "/v1/carts/u1/items", "{\"sku\":\"A1\",\"quantity\":2}", "POST", "/v1/carts/u1/items",
         "{\"sku\":\"A1\",\"quantity\":3}", false},
        /* Members the gateway does not read count too: they are part of the request. */
        {"POST", "/v1/carts/u1/items", "{\"sku\":\"A1\",\"quantity\":2}", "POST", "/v1/carts/u1/items",
         "{\"sku\":\"A1\",\"quantity\":2,\"note\":\"gift\"}", false},
        /* The path as routed: escapes decoded, the query string and an absolute form's authority gone. */
        {"DELETE", "/v1/carts/anon:42/items/A1", NULL, "DELETE", "/v1/carts/anon%3A42/items/%41%31?x=1", NULL, true},
        {"DELETE", "/v1/carts/anon:42/items/A1", NULL, "DELETE", "http://cart.example/v1/carts/anon:42/items/A1", NULL,
         true},
        /* A body on a route that reads none is not part of the request. */
        {"DELETE", "/v1/carts/anon:42/items/A1", NULL, "DELETE", "/v1/carts/anon:42/items/A1", "{\"sku\":\"B2\"}",
         true},
        {"DELETE", "/v1/carts/anon:42/items/A1", NULL, "DELETE", "/v1/carts/anon:42", NULL, false},
        /* A merge: the user's path; from_token is a credential, not part of the request. */
        {"POST", "/v1/carts/u1/merge", "{\"from\":\"g1\",\"from_token\":\"t1\"}", "POST", "/v1/carts/u%31/merge",
         "{\"from_token\":\"t2\",\"from\":\"g1\"}", true},
        {"POST", "/v1/carts/u1/merge", "{\"from\":\"g1\"}", "POST", "/v1/carts/u1/merge",
         "{\"from\":\"g1\",\"from_token\":\"t2\"}", true},
        {"POST", "/v1/carts/u1/merge", "{\"from\":\"g1\"}", "POST", "/v1/carts/u1/merge", "{\"from\":\"g2\"}", false},
        {"POST", "/v1/carts/u1/merge", "{\"from\":\"g1\"}", "POST", "/v1/carts/u1/merge",
         "{\"from\":\"g1\",\"strategy\":\"max\"}", false},
    };
    char a[CART_FINGERPRINT_MAX + 1], b[CART_FINGERPRINT_MAX + 1];

    /* Without a key there is nothing to repeat, and no fingerprint. */
    fingerprint_of("POST", "/v1/carts/u1/items", "{\"sku\":\"A1\",\"quantity\":2}", NULL, a);
    ck_assert_str_eq(a, "");
    /* printf 'DELETE /v1/carts/anon:42/items/A1\n' | sha256sum */
    fingerprint_of("DELETE", "/v1/carts/anon:42/items/A1", NULL, "k", a);
    ck_assert_str_eq(a, "a8ab56248d84566a441f2e260158b48e9b7ed86d04ee1b31be1ef2ca46273567");
    fingerprint_of("POST", "/v1/carts/u1/merge", "{\"from_token\":\"t\",\"from\":\"g1\"}", "k", a);
    ck_assert_str_eq(a, MERGE_FINGERPRINT);
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
        fingerprint_of(pairs[i].method, pairs[i].path, pairs[i].body, "k", a);
        fingerprint_of(pairs[i].method2, pairs[i].path2, pairs[i].body2, "k", b);
        ck_assert_uint_eq(strlen(a), 64);
        ck_assert_msg((strcmp(a, b) == 0) == pairs[i].same, "pair %zu: %s and %s", i, a, b);
    }
}
END_TEST

START_TEST(test_refuse)
{
    char long_detail[300];
    gw_refusal why;

    memset(long_detail, 'x', sizeof long_detail - 1);
    long_detail[sizeof long_detail - 1] = '\0';
    gw_refuse(&why, 503, "unavailable", long_detail);
    ck_assert_int_eq(why.status, 503);
    ck_assert_str_eq(why.slug, "unavailable");
    ck_assert_uint_eq(strlen(why.detail), sizeof why.detail - 1);
}
END_TEST

/* The line snapshot's members: read as the event decoder reads them, named in a refusal; a
 * price only with may_price. */
START_TEST(test_snapshot_members)
{
    gw_event_input in;
    cart_event ev;
    gw_refusal why;
    gw_route r;

    request("POST", "/v1/carts/u1/items",
            "{\"sku\":\"A1\",\"quantity\":2,\"name\":\"Mug\",\"unit_price\":1999,\"currency\":\"EUR\","
            "\"attributes\":{\"size\":\"L\",\"color\":\"blue\"}}",
            &r, &in);
    r.may_price = true;
    ck_assert_int_eq(gw_event_build(&r, &in, &ev, &why), 0);
    ck_assert(ev.snap.has_name && ev.snap.has_price && ev.snap.has_attributes);
    ck_assert_str_eq(ev.snap.name, "Mug");
    ck_assert_int_eq(ev.snap.unit_price, 1999);
    ck_assert_str_eq(ev.snap.currency, "EUR");
    ck_assert_str_eq(ev.snap.attributes, "{\"color\":\"blue\",\"size\":\"L\"}");
    /* The same request without the scope. */
    r.may_price = false;
    refused(&r, &in, 403, "forbidden", "unit_price and currency need a token with the cart:price scope");

    /* A name or attributes need no scope; nothing left out is carried. */
    request("PUT", "/v1/carts/u1/items/A1", "{\"quantity\":1,\"name\":\"\"}", &r, &in);
    ck_assert_int_eq(gw_event_build(&r, &in, &ev, &why), 0);
    ck_assert(ev.snap.has_name && !ev.snap.has_price && !ev.snap.has_attributes);

    /* Out of a domain: 400 naming the member, before the scope and the quantity. */
    request("POST", "/v1/carts/u1/items", "{\"sku\":\"A1\",\"quantity\":0,\"name\":5}", &r, &in);
    refused(&r, &in, 400, "invalid-field", "name: expected a string of at most 200 bytes of UTF-8");
    request("PUT", "/v1/carts/u1/items/A1", "{\"quantity\":1,\"currency\":\"EUR\"}", &r, &in);
    refused(&r, &in, 400, "invalid-field", "currency: needs unit_price");
    request("PUT", "/v1/carts/u1/items/A1", "{\"quantity\":1,\"unit_price\":10}", &r, &in);
    r.may_price = true;
    refused(&r, &in, 400, "invalid-field", "currency: required with unit_price");
    request("PUT", "/v1/carts/u1/items/A1", "{\"quantity\":1,\"unit_price\":-1,\"currency\":\"EUR\"}", &r, &in);
    refused(&r, &in, 400, "invalid-field", "unit_price: expected an integer from 0 to 100000000000");
    request("PUT", "/v1/carts/u1/items/A1", "{\"quantity\":1,\"unit_price\":1,\"currency\":\"eur\"}", &r, &in);
    refused(&r, &in, 400, "invalid-field", "currency: expected an ISO 4217 code (three upper-case letters)");
    request("PUT", "/v1/carts/u1/items/A1", "{\"quantity\":1,\"attributes\":{\"k\":[]}}", &r, &in);
    refused(&r, &in, 400, "invalid-field", "attributes.k: expected a string of at most 256 bytes of UTF-8");
    /* The scope before the quantity's range. */
    request("POST", "/v1/carts/u1/items", "{\"sku\":\"A1\",\"quantity\":0,\"unit_price\":1,\"currency\":\"EUR\"}", &r,
            &in);
    refused(&r, &in, 403, "forbidden", "unit_price and currency need a token with the cart:price scope");
    r.may_price = true;
    refused(&r, &in, 422, "limit-exceeded", "quantity: must be from 1 to 99");
}
END_TEST

static Suite *event_build_suite(void)
{
    Suite *s = suite_create("event_build");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_bodiless_writes);
    tcase_add_test(tc, test_body_writes);
    tcase_add_test(tc, test_content_type);
    tcase_add_loop_test(tc, test_refusals, 0, sizeof refusals / sizeof refusals[0]);
    tcase_add_test(tc, test_malformed_body);
    tcase_add_test(tc, test_allowed);
    tcase_add_test(tc, test_request_fingerprint);
    tcase_add_test(tc, test_refuse);
    tcase_add_test(tc, test_snapshot_members);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(event_build_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
