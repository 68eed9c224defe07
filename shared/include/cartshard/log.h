/*
 * log.h: structured logs, one JSON object per line on stderr.
 *
 *   {"ts":"2026-11-22T10:00:00.123Z","level":"info","service":"cart-store","msg":"batch applied",
 *    "partition":7,"events":120}
 *
 * Fields are typed key/value pairs, ended by NULL:
 *
 *   cart_log(CART_LOG_INFO, "batch applied", CART_LI("partition", p), CART_LI("events", n), NULL);
 *
 * Each line is written with a single write(2), so lines from several threads never interleave.
 * Strings are JSON-escaped (invalid UTF-8 becomes U+FFFD). A line is at most 8 KiB: the string
 * value that would overflow it is shortened, the fields after it are dropped, and the line ends
 * with "truncated":true.
 */
#ifndef CARTSHARD_LOG_H
#define CARTSHARD_LOG_H

#include <stddef.h>

typedef enum cart_log_level {
    CART_LOG_DEBUG = 0, /* chatty detail for developers */
    CART_LOG_INFO,      /* normal operation: start, stop, state changes */
    CART_LOG_WARN,      /* something failed and will be retried, or input was rejected */
    CART_LOG_ERROR      /* something failed that needs an operator */
} cart_log_level;

/* Field types of the varargs list (use the macros below). */
enum { CART_LOG_T_STR = 1, CART_LOG_T_INT, CART_LOG_T_DBL, CART_LOG_T_BOOL };

#define CART_LS(k, v) (k), CART_LOG_T_STR, (const char *)(v)
#define CART_LI(k, v) (k), CART_LOG_T_INT, (long long)(v)
#define CART_LD(k, v) (k), CART_LOG_T_DBL, (double)(v)
#define CART_LB(k, v) (k), CART_LOG_T_BOOL, (int)(v)

/* Sets the service name and lowest level written. Call once before threads start. */
void cart_log_init(const char *service, cart_log_level min_level);

/* Redirects output to file descriptor `fd` (default 2). For tests. */
void cart_log_set_fd(int fd);

/* True when `level` would be written. */
int cart_log_enabled(cart_log_level level);

/* Writes one line. `msg` and string values may be NULL (written as null). */
void cart_log(cart_log_level level, const char *msg, ...);

/* Parses "debug", "info", "warn" or "error" (case-insensitive). Returns 0 and sets *out, or -1. */
int cart_log_level_parse(const char *s, cart_log_level *out);

#endif
