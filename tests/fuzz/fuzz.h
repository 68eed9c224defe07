/*
 * fuzz.h: what every fuzz target shares: libFuzzer's entry point and an oracle check that aborts
 * (libFuzzer then saves the input as a crash).
 */
#ifndef CARTSHARD_FUZZ_H
#define CARTSHARD_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Called by libFuzzer once per input; data[0..size) is all it may read. Always returns 0. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Aborts with the failed condition when an oracle does not hold. */
#define FUZZ_CHECK(cond)                                                                                               \
    do {                                                                                                               \
        if (!(cond)) {                                                                                                 \
            fprintf(stderr, "%s:%d: oracle failed: %s\n", __FILE__, __LINE__, #cond);                                  \
            abort();                                                                                                   \
        }                                                                                                              \
    } while (0)

/* A cursor over the input that hands out fields separated by one byte. */
typedef struct fuzz_input {
    const uint8_t *at;
    size_t left;
} fuzz_input;

/* The next field up to `sep` (not included) or to the end of the input; *len its length. Returns
 * NULL once the input is used up. The field points into the input: it is not NUL-terminated. */
static inline const char *fuzz_field(fuzz_input *in, uint8_t sep, size_t *len)
{
    const uint8_t *start = in->at, *end;

    if (in->at == NULL)
        return NULL;
    end = memchr(start, sep, in->left);
    if (end == NULL) {
        *len = in->left;
        in->at = NULL;
        in->left = 0;
    } else {
        *len = (size_t)(end - start);
        in->left -= *len + 1;
        in->at = end + 1;
    }
    return (const char *)start;
}

/* A malloc'd NUL-terminated copy of s[0..len) (which may hold NULs of its own); aborts when out of
 * memory, which libFuzzer's -rss_limit_mb reports anyway. */
static inline char *fuzz_strndup(const char *s, size_t len)
{
    char *copy = malloc(len + 1);

    if (copy == NULL)
        abort();
    if (len > 0)
        memcpy(copy, s, len);
    copy[len] = '\0';
    return copy;
}

#endif
