/*
 * event_build.c: a write request's event, and every refusal on the way (event_build.h). Pure;
 * called on the gateway's loop threads.
 */
#define _POSIX_C_SOURCE 200809L
#include "event_build.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "idem.h"
#include "jwt.h"
#include "request.h"

void gw_refuse(gw_refusal *why, int status, const char *slug, const char *detail)
{
    why->status = status;
    why->slug = slug;
    snprintf(why->detail, sizeof why->detail, "%s", detail);
}

/* jansson's reason for refusing a body, in words that name no option of its API. */
static const char *parse_error(const json_error_t *jerr)
{
    if (strstr(jerr->text, "\\u0000") != NULL)
        return "a string holds \\u0000 (NUL), which is not accepted";
    return jerr->text;
}

/* The body as a JSON object; NULL after refusing it. */
static json_t *read_body(const gw_event_input *in, gw_refusal *why)
{
    gw_text ct = in->content_type;
    json_error_t jerr;
    json_t *doc;
    char detail[200];

    if (ct.text == NULL || ct.len < 16 || strncasecmp(ct.text, "application/json", 16) != 0 ||
        (ct.len > 16 && ct.text[16] != ';' && ct.text[16] != ' ')) {
        gw_refuse(why, 415, "unsupported-media-type", "the body must be application/json");
        return NULL;
    }
    if (gw_json_too_deep(in->body.text, in->body.len, GW_JSON_MAX_DEPTH)) {
        gw_refuse(why, 400, "malformed-json", "malformed JSON: nested too deeply");
        return NULL;
    }
    doc = json_loadb(in->body.text ? in->body.text : "", in->body.len, JSON_REJECT_DUPLICATES, &jerr);
    if (doc == NULL || !json_is_object(doc)) {
        snprintf(detail, sizeof detail, "malformed JSON: %s", doc ? "expected an object" : parse_error(&jerr));
        json_decref(doc);
        gw_refuse(why, 400, "malformed-json", detail);
        return NULL;
    }
    return doc;
}

/* Reads an integer field; 0, or -1 after refusing it. */
static int int_field(json_t *doc, const char *name, int64_t *out, gw_refusal *why)
{
    json_t *v = json_object_get(doc, name);
    char detail[96];

    if (!json_is_integer(v)) {
        snprintf(detail, sizeof detail, "%s: expected an integer", name);
        gw_refuse(why, 400, "invalid-field", detail);
        return -1;
    }
    *out = json_integer_value(v);
    return 0;
}

/* Reads a string id field; 0, or -1 after refusing it. */
static int id_field(json_t *doc, const char *name, char out[CART_ID_MAX + 1], gw_refusal *why)
{
    json_t *v = json_object_get(doc, name);
    char detail[96];

    if (!json_is_string(v) || !cart_valid_id(json_string_value(v), json_string_length(v))) {
        snprintf(detail, sizeof detail, "%s: expected 1-64 characters of [A-Za-z0-9._:-]", name);
        gw_refuse(why, 400, "invalid-field", detail);
        return -1;
    }
    memcpy(out, json_string_value(v), json_string_length(v) + 1);
    return 0;
}

/* The merge's body (event_build.h): the guest's id, the strategy and, with auth on, the guest's
 * token. 0, or -1 after refusing it. */
static int merge_fields(json_t *doc, const gw_route *r, const gw_event_input *in, cart_event *ev, gw_refusal *why)
{
    json_t *strategy = json_object_get(doc, "strategy"), *token = json_object_get(doc, "from_token");
    char sub[CART_ID_MAX + 1];
    gw_jwt_result res;

    ev->type = CART_EV_MERGE_REQUESTED;
    snprintf(ev->merge.peer, sizeof ev->merge.peer, "%s", r->user_id);
    if (id_field(doc, "from", ev->user_id, why) != 0)
        return -1;
    if (strategy != NULL && !json_is_null(strategy) &&
        (!json_is_string(strategy) ||
         cart_merge_strategy_parse(json_string_value(strategy), json_string_length(strategy), &ev->merge.strategy) !=
             0)) {
        gw_refuse(why, 400, "invalid-field", "strategy: expected \"sum\", \"max\", \"replace\" or \"keep\"");
        return -1;
    }
    if (strcmp(ev->user_id, r->user_id) == 0) {
        gw_refuse(why, 400, "invalid-field", "from: a cart cannot be merged into itself");
        return -1;
    }
    if (in->jwt_keys == NULL)
        return 0;
    res = json_is_string(token) ? gw_jwt_verify(json_string_value(token), json_string_length(token), in->jwt_keys,
                                                in->now_ms / 1000, sub, NULL)
                                : GW_JWT_MALFORMED;
    if (res == GW_JWT_INTERNAL) {
        gw_refuse(why, 503, "unavailable", "from_token: the token could not be checked");
        return -1;
    }
    if (res != GW_JWT_OK || strcmp(sub, ev->user_id) != 0) {
        gw_refuse(why, 403, "forbidden", "from_token: expected a valid token of the guest (its sub is from)");
        return -1;
    }
    return 0;
}

/* The request's fingerprint (idem.h). A merge's leaves out from_token: the guest's token is a
 * credential, like the Authorization header, not what the request asks for, so a retry with a
 * token minted again for the same guest is still the same request. */
static int fingerprint(const gw_route *r, const char *method, const char *path, json_t *doc, cart_event *ev)
{
    json_t *body = doc;
    int rc;

    if (r->id == GW_R_MERGE && doc != NULL && json_object_get(doc, "from_token") != NULL) {
        if ((body = json_copy(doc)) == NULL || json_object_del(body, "from_token") != 0) {
            json_decref(body);
            return -1;
        }
    }
    rc = gw_idem_fingerprint(method, path, body, ev->request_fingerprint);
    if (body != doc)
        json_decref(body);
    return rc;
}

/* Reads the line snapshot's members (cart_snapshot_read); 0, or -1 after refusing one. */
static int snapshot_fields(json_t *doc, cart_event *ev, gw_refusal *why)
{
    char detail[200];

    switch (cart_snapshot_read(doc, "", &ev->snap, detail, sizeof detail)) {
    case CART_OK:
        return 0;
    case CART_ERR_NOMEM:
        gw_refuse(why, 503, "unavailable", "out of memory");
        return -1;
    default:
        gw_refuse(why, 400, "invalid-field", detail);
        return -1;
    }
}

int gw_event_build(const gw_route *r, const gw_event_input *in, cart_event *ev, gw_refusal *why)
{
    json_t *doc = NULL;
    int rc = -1;

    memset(ev, 0, sizeof *ev);
    snprintf(ev->user_id, sizeof ev->user_id, "%s", r->user_id);
    ev->occurred_at_ms = in->now_ms;
    snprintf(ev->event_id, sizeof ev->event_id, "%s", in->fresh_id);
    snprintf(ev->trace, sizeof ev->trace, "%s", r->request_id);
    switch (r->id) {
    case GW_R_CREATE_CART:
        ev->type = CART_EV_CREATED;
        if ((doc = read_body(in, why)) == NULL || id_field(doc, "user_id", ev->user_id, why) != 0)
            goto out;
        if (r->subject[0] && strcmp(r->subject, ev->user_id) != 0) {
            gw_refuse(why, 403, "forbidden", "the token's subject is not this user");
            goto out;
        }
        break;
    case GW_R_ADD_ITEM:
    case GW_R_SET_ITEM: {
        int64_t lo = r->id == GW_R_ADD_ITEM ? 1 : 0;
        ev->type = r->id == GW_R_ADD_ITEM ? CART_EV_ITEM_ADDED : CART_EV_ITEM_QUANTITY_SET;
        if ((doc = read_body(in, why)) == NULL)
            goto out;
        if (r->id == GW_R_ADD_ITEM) {
            if (id_field(doc, "sku", ev->sku, why) != 0)
                goto out;
        } else {
            snprintf(ev->sku, sizeof ev->sku, "%s", r->sku);
        }
        if (int_field(doc, "quantity", &ev->quantity, why) != 0 || snapshot_fields(doc, ev, why) != 0)
            goto out;
        /* A currency alone was refused above: it needs unit_price. */
        if (ev->snap.has_price && !r->may_price) {
            gw_refuse(why, 403, "forbidden", "unit_price and currency need a token with the cart:price scope");
            goto out;
        }
        if (ev->quantity < lo || ev->quantity > in->max_quantity) {
            char detail[96];
            snprintf(detail, sizeof detail, "quantity: must be from %lld to %d", (long long)lo, (int)in->max_quantity);
            gw_refuse(why, 422, "limit-exceeded", detail);
            goto out;
        }
        break;
    }
    case GW_R_REMOVE_ITEM:
        ev->type = CART_EV_ITEM_REMOVED;
        snprintf(ev->sku, sizeof ev->sku, "%s", r->sku);
        break;
    case GW_R_DELETE_CART:
        ev->type = CART_EV_DELETED;
        break;
    case GW_R_CHECKOUT:
        ev->type = CART_EV_CHECKED_OUT;
        break;
    case GW_R_MERGE:
        if ((doc = read_body(in, why)) == NULL || merge_fields(doc, r, in, ev, why) != 0)
            goto out;
        break;
    default:
        gw_refuse(why, 404, "not-found", "no such resource");
        goto out;
    }
    if (in->idempotency_key.text) {
        const char *method;
        char path[GW_ROUTE_PATH_MAX];
        /* A merge's key is the user's, like its path (its event is the guest's). */
        if (gw_idem_event_id(r->id == GW_R_MERGE ? r->user_id : ev->user_id, in->idempotency_key.text,
                             in->idempotency_key.len, ev->event_id) != 0) {
            gw_refuse(why, 400, "invalid-header", "Idempotency-Key: expected 1-128 visible ASCII characters");
            goto out;
        }
        /* The key names this request: the worker keeps its fingerprint with the first outcome. */
        if (gw_route_write_target(r, &method, path) != 0 || fingerprint(r, method, path, doc, ev) != 0) {
            gw_refuse(why, 503, "unavailable", "out of memory");
            goto out;
        }
    }
    if (in->if_match.text && r->id != GW_R_MERGE) {
        gw_etags tags = {0};
        if (gw_etags_parse(in->if_match.text, in->if_match.len, true, &tags) != 0) {
            gw_refuse(why, 400, "invalid-header",
                      "If-Match: expected \"*\" or a list of at most 16 entity tags such as \"3\"");
            goto out;
        }
        if (!tags.any && tags.n == 0) {
            /* Weak or foreign tags only: no cart's ETag can ever match them. */
            gw_refuse(why, 412, "precondition-failed", "If-Match: no tag can match a cart's ETag (\"<version>\")");
            goto out;
        }
        ev->expected_active = tags.any;
        if (tags.n == 1) {
            ev->has_expected_version = true;
            ev->expected_version = tags.versions[0];
        } else if (tags.n > 1) {
            ev->n_expected_versions = tags.n;
            memcpy(ev->expected_versions, tags.versions, sizeof tags.versions[0] * (size_t)tags.n);
        }
    }
    rc = 0;
out:
    json_decref(doc);
    return rc;
}
