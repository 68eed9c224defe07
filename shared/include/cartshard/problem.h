/*
 * problem.h: RFC 9457 problem details, the body of every error answer.
 *
 *   {"type":"urn:cartshard:problem:invalid-field","title":"Bad Request","status":400,
 *    "detail":"quantity: expected an integer"}
 *
 * Media type: application/problem+json.
 */
#ifndef CARTSHARD_PROBLEM_H
#define CARTSHARD_PROBLEM_H

#include <stddef.h>

#include "cartshard/status.h"

#define CART_PROBLEM_MEDIA_TYPE "application/problem+json"

/* The reason phrase of an HTTP status ("Not Found"); "Error" for one it does not know. */
const char *cart_http_reason(int status);

/*
 * Writes the problem document into buf (cap bytes, NUL-terminated) and returns its length.
 * `type_slug` names the problem ("invalid-field", "not-found", "rate-limited"...) and becomes
 * "urn:cartshard:problem:<slug>"; NULL gives "about:blank" as RFC 9457 allows. `detail` may be
 * NULL (then omitted) and is JSON-escaped (invalid UTF-8 becomes U+FFFD). If the document does
 * not fit, detail is shortened and ends with U+2026 "…" (or is left out when not even that fits);
 * returns -1 (and writes "") only if the document without detail does not fit, which cannot
 * happen with cap >= 256 and a slug of at most 64 plain characters.
 */
int cart_problem_render(char *buf, size_t cap, int status, const char *type_slug, const char *detail);

#endif
