/*
 * fmt.h: text building for the hot paths (the cart's JSON, the worker's array literals): numbers
 * without snprintf's format parsing, and the growing buffer both write into; and growing arrays.
 */
#ifndef CARTSHARD_FMT_H
#define CARTSHARD_FMT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Room for any int64_t in decimal: 19 digits and a sign. */
#define CART_INT_BUFSZ 20

/* Writes `v` in decimal into buf (not NUL-terminated); returns the number of characters. */
size_t cart_int_format(int64_t v, char buf[CART_INT_BUFSZ]);

/* A growing text buffer: all zero is empty; the owner frees `buf`. */
typedef struct cart_buf {
    char *buf;
    size_t len, cap;
    /** An allocation failed: the text is incomplete, and every later reserve fails too. */
    bool oom;
} cart_buf;

/* Makes room for `more` bytes after the `len` written so far (doubling from 256 bytes). False,
 * with `oom` set, when memory runs out. */
bool cart_buf_reserve(cart_buf *b, size_t more);

/*
 * Makes room for one more element of `size` bytes in the array *arr, of which `n` are used and
 * *cap allocated: when full, it doubles (from `first` elements), moving the array. 0, or -1 when
 * memory runs out (then *arr and *cap are unchanged). CART_GROW names the fields for it.
 */
int cart_grow(void **arr, size_t n, size_t *cap, size_t size, size_t first);
#define CART_GROW(arr, n, cap, first) cart_grow((void **)&(arr), (n), &(cap), sizeof *(arr), (first))

#endif
