/*
 * fmt.h: number formatting for the hot paths (the cart's JSON, the worker's array literals),
 * without snprintf's format parsing.
 */
#ifndef CARTSHARD_FMT_H
#define CARTSHARD_FMT_H

#include <stddef.h>
#include <stdint.h>

/* Room for any int64_t in decimal: 19 digits and a sign. */
#define CART_INT_BUFSZ 20

/* Writes `v` in decimal into buf (not NUL-terminated); returns the number of characters. */
size_t cart_int_format(int64_t v, char buf[CART_INT_BUFSZ]);

#endif
