/*
 * request.h: the parsers of what a request carries besides its line (route.h): header values and
 * the shape of a JSON body. Pure: no I/O, no allocation; front.c and writes.c apply them to h2o's
 * request.
 */
#ifndef GW_REQUEST_H
#define GW_REQUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cartshard/event.h"

#define GW_JSON_MAX_DEPTH 16 /* deepest nesting of arrays and objects accepted in a request body */

/* True if the JSON text s[0..len) nests arrays and objects deeper than `max` (brackets inside
 * strings do not count). Checked before parsing, so that no body makes the parser recurse deeply;
 * exact for valid JSON, and for invalid JSON up to its first error, which is as far as a parser
 * reads. */
bool gw_json_too_deep(const char *s, size_t len, int max);

#define GW_ETAGS_MAX CART_EXPECTED_MAX /* most cart versions one If-Match or If-None-Match names */

/* The entity tags of an If-Match or If-None-Match field that can match a cart's ETag (RFC 9110
 * section 13.1): a cart's ETag is the strong tag "<version>", so only tags holding a decimal
 * number can. */
typedef struct gw_etags {
    bool any;                       /* the field is "*" */
    int n;                          /* versions[0..n): distinct, in the order given */
    int64_t versions[GW_ETAGS_MAX]; /* the versions the tags hold */
} gw_etags;

/* Parses one field line v[0..len) of If-Match (strong = true) or If-None-Match (strong = false)
 * and adds what it names to *set; call it once per field line on a zeroed set. The grammar is
 * RFC 9110's: "*", or a comma-separated list of entity tags ("3", W/"3", any opaque tag) with
 * optional blanks and empty elements. A weak tag can never match under If-Match's strong
 * comparison and is left out; under If-None-Match's weak comparison W/"3" counts as "3". A tag
 * that holds no cart version (not digits, or over INT64_MAX) is valid but left out. Returns 0, or
 * -1 for a malformed value, "*" together with tags, or more than GW_ETAGS_MAX versions. */
int gw_etags_parse(const char *v, size_t len, bool strong, gw_etags *set);

/* True if `version`'s ETag matches *set: "*" or one of its versions. */
bool gw_etags_match(const gw_etags *set, int64_t version);

/* True if v[0..len) is a W3C traceparent: <2 hex>-<32 hex>-<16 hex>-<2 hex> in lower case, a
 * version without an 'f' digit (ff is invalid), trace id and parent id not all zero. */
bool gw_traceparent_valid(const char *v, size_t len);

/* True if a Prefer value v[0..len) (RFC 7240) asks for respond-async: the token anywhere in it, in
 * any case. v may be NULL (no header): false. */
bool gw_prefers_async(const char *v, size_t len);

#endif
