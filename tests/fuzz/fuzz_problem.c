/*
 * fuzz_problem: cart_problem_render, which quotes outside input (a detail often names a field of
 * the request, a slug is ours) into an RFC 9457 document in a fixed buffer, escaping JSON and
 * replacing invalid UTF-8. Input: 2 bytes of buffer size (0..2047), 2 bytes of status (signed),
 * 1 byte of flags (bit 0: no slug, bit 1: no detail), then the slug, '\n', the detail.
 *
 * Oracles: the buffer (exactly `cap` bytes on the heap) is never overrun; a rendered document is
 * valid JSON (jansson also checks its UTF-8) with the given status and title; a detail that fits
 * reads back as the input when that is valid UTF-8; a detail that does not fit reads back as a
 * prefix of the full one followed by U+2026; and -1 never comes where the header promises a fit.
 */
#include <jansson.h>

#include "cartshard/problem.h"
#include "fuzz.h"

#define ELLIPSIS "\xe2\x80\xa6"

/* Parses a rendered document; aborts unless it is a problem object for `status`. Returns the
 * detail's value (owned by *doc) or NULL when there is none. */
static const char *parse(const char *buf, int status, const char *slug, json_t **doc)
{
    json_error_t jerr;
    json_t *v;

    *doc = json_loads(buf, 0, &jerr);
    if (*doc == NULL)
        fprintf(stderr, "fuzz_problem: not JSON (%s): %s\n", jerr.text, buf);
    FUZZ_CHECK(*doc != NULL && json_is_object(*doc));
    v = json_object_get(*doc, "status");
    FUZZ_CHECK(json_is_integer(v) && json_integer_value(v) == status);
    v = json_object_get(*doc, "title");
    FUZZ_CHECK(json_is_string(v) && strcmp(json_string_value(v), cart_http_reason(status)) == 0);
    v = json_object_get(*doc, "type");
    FUZZ_CHECK(json_is_string(v));
    if (slug == NULL)
        FUZZ_CHECK(strcmp(json_string_value(v), "about:blank") == 0);
    else
        FUZZ_CHECK(strncmp(json_string_value(v), "urn:cartshard:problem:", 22) == 0);
    v = json_object_get(*doc, "detail");
    FUZZ_CHECK(v == NULL || json_is_string(v));
    return v ? json_string_value(v) : NULL;
}

/* A slug the header promises always fits with cap >= 256: at most 64 plain characters. */
static int plain_slug(const char *slug)
{
    size_t n = strlen(slug);

    if (n > 64)
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (slug[i] < 0x20 || slug[i] > 0x7e || slug[i] == '"' || slug[i] == '\\')
            return 0;
    }
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_input in;
    const char *field;
    char *slug = NULL, *detail = NULL, *buf = NULL, *full = NULL;
    const char *got, *want;
    json_t *doc = NULL, *full_doc = NULL, *probe;
    size_t cap, len, full_cap;
    int status, n, full_n;

    if (size < 5)
        return 0;
    cap = ((size_t)data[0] << 8 | data[1]) & 0x7ff;
    status = (int16_t)(data[2] << 8 | data[3]);
    in.at = data + 5;
    in.left = size - 5;
    if ((field = fuzz_field(&in, '\n', &len)) != NULL && !(data[4] & 1))
        slug = fuzz_strndup(field, len);
    if ((field = fuzz_field(&in, 0xff, &len)) != NULL && !(data[4] & 2))
        detail = fuzz_strndup(field, len);
    else if (!(data[4] & 2))
        detail = fuzz_strndup("", 0);

    /* The full document, in a buffer big enough for any escaping (6 bytes per input byte). */
    full_cap = 128 + 6 * (slug ? strlen(slug) : 0) + 6 * (detail ? strlen(detail) : 0);
    full = malloc(full_cap);
    FUZZ_CHECK(full != NULL);
    full_n = cart_problem_render(full, full_cap, status, slug, detail);
    FUZZ_CHECK(full_n > 0 && (size_t)full_n < full_cap && strlen(full) == (size_t)full_n);
    want = parse(full, status, slug, &full_doc);
    FUZZ_CHECK((want != NULL) == (detail != NULL));
    /* jansson refuses a string that is not valid UTF-8; one it takes must come back as is. */
    probe = detail ? json_string(detail) : NULL;
    FUZZ_CHECK(probe == NULL || strcmp(want, detail) == 0);
    json_decref(probe);

    /* The same in a buffer of `cap` bytes exactly, so that ASan sees any overrun. */
    buf = malloc(cap > 0 ? cap : 1);
    FUZZ_CHECK(buf != NULL);
    n = cart_problem_render(buf, cap, status, slug, detail);
    if (n < 0) {
        FUZZ_CHECK(n == -1);
        FUZZ_CHECK(cap == 0 || buf[0] == '\0');
        FUZZ_CHECK(cap < 256 || (slug != NULL && !plain_slug(slug)));
        goto out;
    }
    FUZZ_CHECK((size_t)n < cap && strlen(buf) == (size_t)n);
    got = parse(buf, status, slug, &doc);
    if (got != NULL && strcmp(got, want) != 0) {
        size_t glen = strlen(got), elen = sizeof ELLIPSIS - 1;
        FUZZ_CHECK(glen >= elen && memcmp(got + glen - elen, ELLIPSIS, elen) == 0);
        FUZZ_CHECK(strncmp(got, want, glen - elen) == 0);
    }
out:
    json_decref(doc);
    json_decref(full_doc);
    free(buf);
    free(full);
    free(slug);
    free(detail);
    return 0;
}
