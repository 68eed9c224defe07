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

/* The times cart_time_format writes as they are (four-digit years):
 * 0000-01-01T00:00:00.000Z .. 9999-12-31T23:59:59.999Z. Outside them it clamps the year, so a
 * reader that must get back what it parsed checks this range after cart_time_parse. */
#define CART_TIME_MIN_MS (-62167219200000LL)
#define CART_TIME_MAX_MS 253402300799999LL

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
