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

#define GW_JSON_MAX_DEPTH 16 /* deepest nesting of arrays and objects accepted in a request body */

/* True if the JSON text s[0..len) nests arrays and objects deeper than `max` (brackets inside
 * strings do not count). Checked before parsing, so that no body makes the parser recurse deeply;
 * exact for valid JSON, and for invalid JSON up to its first error, which is as far as a parser
 * reads. */
bool gw_json_too_deep(const char *s, size_t len, int max);

/* Parses an If-Match value v[0..len): one strong entity tag holding a cart version (what a cart's
 * ETag is): '"', decimal digits, '"', at most 31 bytes in all, a number up to INT64_MAX (leading
 * zeros allowed). True and *version, or false (a sign, a blank, a weak or a list of tags, a number
 * too big) and *version untouched. */
bool gw_if_match_parse(const char *v, size_t len, int64_t *version);

/* True if v[0..len) is a W3C traceparent: <2 hex>-<32 hex>-<16 hex>-<2 hex> in lower case, a
 * version without an 'f' digit (ff is invalid), trace id and parent id not all zero. */
bool gw_traceparent_valid(const char *v, size_t len);

/* True if a Prefer value v[0..len) (RFC 7240) asks for respond-async: the token anywhere in it, in
 * any case. v may be NULL (no header): false. */
bool gw_prefers_async(const char *v, size_t len);

#endif
