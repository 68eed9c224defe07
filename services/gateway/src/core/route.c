#include "route.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

static int is(const char *s, size_t len, const char *lit)
{
    return len == strlen(lit) && memcmp(s, lit, len) == 0;
}

/* Splits the path into at most `max` segments after a leading "/"; returns the count, or -1 for
 * an empty segment (a double or trailing slash) or too many segments. */
static int split(const char *path, size_t len, const char **seg, size_t *seglen, int max)
{
    int n = 0;
    size_t i = 0;

    if (len == 0 || path[0] != '/')
        return -1;
    i = 1;
    if (len == 1)
        return 0;
    while (i <= len) {
        size_t start = i;
        while (i < len && path[i] != '/')
            i++;
        if (i == start || n == max)
            return -1;
        seg[n] = path + start;
        seglen[n] = i - start;
        n++;
        i++;
    }
    return n;
}

/* A path segment, percent-decoded (RFC 3986 section 2.1). */
typedef struct segment {
    char text[CART_ID_MAX + 2]; /* NUL-terminated; longer segments are cut at CART_ID_MAX + 1 bytes, */
    size_t len;                 /* so that len > CART_ID_MAX says "too long" */
} segment;

static int hex_value(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* Decodes s[0..len) into *out; -1 for a '%' not followed by two hex digits. */
static int decode(const char *s, size_t len, segment *out)
{
    out->len = 0;
    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        if (ch == '%') {
            if (len - i < 3 || hex_value(s[i + 1]) < 0 || hex_value(s[i + 2]) < 0)
                return -1;
            ch = (char)(hex_value(s[i + 1]) * 16 + hex_value(s[i + 2]));
            i += 2;
        }
        if (out->len <= CART_ID_MAX)
            out->text[out->len++] = ch;
    }
    out->text[out->len] = '\0';
    return 0;
}

static void set(gw_route *r, gw_route_id id, const char *name)
{
    r->id = id;
    r->name = name;
}

/* The path exists but serves no such method: OPTIONS is answered with what it serves, anything
 * else is 405. */
static void other_method(gw_route *r, int options, const char *allow)
{
    r->id = options ? GW_R_OPTIONS : GW_R_BAD_METHOD;
    r->allow = allow;
    if (options)
        r->name = "options";
}

void gw_route_match(const char *method, size_t mlen, const char *path, size_t plen, gw_route *r)
{
    const char *raw[5], *seg[5];
    size_t rawlen[5], seglen[5];
    segment dec[5];
    const char *q = memchr(path, '?', plen);
    int get, post, put, del, options, n;

    memset(r, 0, sizeof *r);
    r->name = "other";
    if (q)
        plen = (size_t)(q - path);
    /* The absolute form (RFC 9112 section 3.2.2), which a server must accept: the path after the
     * authority. */
    if (plen > 8 && path[0] != '/' && (strncasecmp(path, "http://", 7) == 0 || strncasecmp(path, "https://", 8) == 0)) {
        const char *authority = path + (path[4] == ':' ? 7 : 8);
        const char *start = memchr(authority, '/', plen - (size_t)(authority - path));
        if (start == NULL) {
            set(r, GW_R_NOT_FOUND, "other");
            return;
        }
        plen -= (size_t)(start - path);
        path = start;
    }
    get = is(method, mlen, "GET") || is(method, mlen, "HEAD");
    post = is(method, mlen, "POST");
    put = is(method, mlen, "PUT");
    del = is(method, mlen, "DELETE");
    options = is(method, mlen, "OPTIONS");
    n = split(path, plen, raw, rawlen, 5);
    if (n < 1) {
        set(r, GW_R_NOT_FOUND, "other");
        return;
    }
    for (int i = 0; i < n; i++) {
        if (decode(raw[i], rawlen[i], &dec[i]) != 0) {
            r->id = GW_R_BAD_ID;
            r->detail = "path: '%' must be followed by two hexadecimal digits";
            return;
        }
        seg[i] = dec[i].text;
        seglen[i] = dec[i].len;
    }
    if (n == 1 &&
        (is(seg[0], seglen[0], "healthz") || is(seg[0], seglen[0], "readyz") || is(seg[0], seglen[0], "metrics"))) {
        r->name = seg[0][0] == 'h' ? "healthz" : seg[0][0] == 'r' ? "readyz" : "metrics";
        if (!get)
            other_method(r, 0, "GET, HEAD");
        else
            r->id = seg[0][0] == 'h' ? GW_R_HEALTHZ : seg[0][0] == 'r' ? GW_R_READYZ : GW_R_METRICS;
        return;
    }
    if (n < 2 || !is(seg[0], seglen[0], "v1") || !is(seg[1], seglen[1], "carts")) {
        set(r, GW_R_NOT_FOUND, "other");
        return;
    }
    if (n == 2) {
        r->name = "create_cart";
        if (post)
            r->id = GW_R_CREATE_CART;
        else
            other_method(r, options, "POST, OPTIONS");
        return;
    }
    /* /v1/carts/{user_id}[/...] */
    if (n >= 4 &&
        !(n == 4 &&
          (is(seg[3], seglen[3], "items") || is(seg[3], seglen[3], "checkout") || is(seg[3], seglen[3], "merge"))) &&
        !(n == 5 && is(seg[3], seglen[3], "items"))) {
        set(r, GW_R_NOT_FOUND, "other");
        return;
    }
    if (n == 3) {
        r->name = "cart";
        if (get)
            set(r, GW_R_GET_CART, "get_cart");
        else if (del)
            set(r, GW_R_DELETE_CART, "delete_cart");
        else
            other_method(r, options, "GET, HEAD, DELETE, OPTIONS");
    } else if (n == 4 && is(seg[3], seglen[3], "items")) {
        r->name = "add_item";
        if (post)
            r->id = GW_R_ADD_ITEM;
        else
            other_method(r, options, "POST, OPTIONS");
    } else if (n == 4 && is(seg[3], seglen[3], "merge")) {
        r->name = "merge";
        if (post)
            r->id = GW_R_MERGE;
        else
            other_method(r, options, "POST, OPTIONS");
    } else if (n == 4) {
        r->name = "checkout";
        if (post)
            r->id = GW_R_CHECKOUT;
        else
            other_method(r, options, "POST, OPTIONS");
    } else {
        r->name = "item";
        if (put)
            set(r, GW_R_SET_ITEM, "set_item");
        else if (del)
            set(r, GW_R_REMOVE_ITEM, "remove_item");
        else
            other_method(r, options, "PUT, DELETE, OPTIONS");
    }
    if (r->id == GW_R_BAD_METHOD || r->id == GW_R_OPTIONS)
        return;
    if (!cart_valid_id(seg[2], seglen[2])) {
        r->id = GW_R_BAD_ID;
        r->detail = "user_id: expected 1-64 characters of [A-Za-z0-9._:-]";
        return;
    }
    memcpy(r->user_id, seg[2], seglen[2]);
    if (n == 5) {
        if (!cart_valid_id(seg[4], seglen[4])) {
            r->id = GW_R_BAD_ID;
            r->detail = "sku: expected 1-64 characters of [A-Za-z0-9._:-]";
            return;
        }
        memcpy(r->sku, seg[4], seglen[4]);
    }
}

int gw_route_write_target(const gw_route *r, const char **method, char path[GW_ROUTE_PATH_MAX])
{
    switch (r->id) {
    case GW_R_CREATE_CART:
        *method = "POST";
        snprintf(path, GW_ROUTE_PATH_MAX, "/v1/carts");
        return 0;
    case GW_R_DELETE_CART:
        *method = "DELETE";
        snprintf(path, GW_ROUTE_PATH_MAX, "/v1/carts/%s", r->user_id);
        return 0;
    case GW_R_ADD_ITEM:
    case GW_R_CHECKOUT:
    case GW_R_MERGE:
        *method = "POST";
        snprintf(path, GW_ROUTE_PATH_MAX, "/v1/carts/%s/%s", r->user_id,
                 r->id == GW_R_ADD_ITEM   ? "items"
                 : r->id == GW_R_CHECKOUT ? "checkout"
                                          : "merge");
        return 0;
    case GW_R_SET_ITEM:
    case GW_R_REMOVE_ITEM:
        *method = r->id == GW_R_SET_ITEM ? "PUT" : "DELETE";
        snprintf(path, GW_ROUTE_PATH_MAX, "/v1/carts/%s/items/%s", r->user_id, r->sku);
        return 0;
    default:
        return -1;
    }
}
