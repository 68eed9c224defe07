/*
 * clock.h: wall-clock time as milliseconds since the Unix epoch, and its RFC 3339 text form.
 */
#ifndef CARTSHARD_CLOCK_H
#define CARTSHARD_CLOCK_H

#include <stddef.h>
#include <stdint.h>

#include "cartshard/status.h"

/* Size of a buffer that holds any timestamp cart_time_format writes, with its NUL. */
#define CART_TIME_BUFSZ 32

/* Milliseconds since the epoch, from CLOCK_REALTIME. */
int64_t cart_now_ms(void);

/* Milliseconds from CLOCK_MONOTONIC, for durations and timeouts only. */
int64_t cart_mono_ms(void);

/* Writes `ms` as UTC RFC 3339: "2026-11-22T10:00:00Z" when whole seconds, else with
 * milliseconds ("2026-11-22T10:00:00.123Z"). `buf` must hold CART_TIME_BUFSZ bytes. */
void cart_time_format(int64_t ms, char buf[CART_TIME_BUFSZ]);

/* Parses an RFC 3339 timestamp (any fraction digits, "Z" or a "+hh:mm"/"-hh:mm" offset) into
 * *ms. CART_ERR_INVALID if it is not one; *ms is untouched then. */
cart_status cart_time_parse(const char *s, size_t len, int64_t *ms);

#endif
