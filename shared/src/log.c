/*
 * log.c: structured JSON-lines logging.
 *
 * A line is assembled in a fixed buffer on the caller's stack (no allocation, so logging works
 * when memory is short) and handed to the kernel under a mutex, so lines of different threads
 * never interleave even when a pipe accepts only part of a long line at a time.
 */
#define _POSIX_C_SOURCE 200809L
#include "cartshard/log.h"
#include "utf8.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

/* The longest line written, newline included. */
#define LOG_LINE_MAX 8192
/* Room kept free for the ending that marks a cut line: ,"truncated":true}\n */
#define LOG_TAIL_RESERVE 24
#define LOG_SERVICE_MAX  64

static char log_service[LOG_SERVICE_MAX] = "cartshard";
static atomic_int log_min_level = CART_LOG_INFO;
static atomic_int log_fd = 2;
static pthread_mutex_t log_write_lock = PTHREAD_MUTEX_INITIALIZER;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

/* A line being built. `limit` is where field content must stop so the ending always fits. */
typedef struct line {
    char buf[LOG_LINE_MAX];
    size_t len;
    size_t limit;
    int cut; /* a value was shortened or fields were dropped */
} line;

void cart_log_init(const char *service, cart_log_level min_level)
{
    if (service) {
        size_t n = strlen(service);
        if (n >= sizeof log_service)
            n = sizeof log_service - 1;
        memcpy(log_service, service, n);
        log_service[n] = '\0';
    }
    atomic_store(&log_min_level, (int)min_level);
}

void cart_log_set_fd(int fd)
{
    atomic_store(&log_fd, fd);
}

int cart_log_enabled(cart_log_level level)
{
    return (int)level >= atomic_load(&log_min_level) && level <= CART_LOG_ERROR;
}

int cart_log_level_parse(const char *s, cart_log_level *out)
{
    if (!s)
        return -1;
    for (int i = 0; i <= CART_LOG_ERROR; i++) {
        if (strcasecmp(s, level_names[i]) == 0) {
            *out = (cart_log_level)i;
            return 0;
        }
    }
    return -1;
}

/* Appends n raw bytes if they fit below the limit; returns -1 (appending nothing) otherwise. */
static int put(line *ln, const char *s, size_t n)
{
    if (ln->len + n > ln->limit)
        return -1;
    memcpy(ln->buf + ln->len, s, n);
    ln->len += n;
    return 0;
}

static int puts_raw(line *ln, const char *s)
{
    return put(ln, s, strlen(s));
}

/*
 * Appends s as a quoted JSON string. Valid UTF-8 is kept as is, invalid bytes become U+FFFD.
 * If the whole string does not fit, as much as fits is written (never half a character), the
 * string is closed and -1 is returned with ln->cut set.
 */
static int put_json_str(line *ln, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s);
    char esc[8];

    /* The opening quote plus room for the closing one. */
    if (ln->len + 2 > ln->limit)
        return -1;
    ln->buf[ln->len++] = '"';
    ln->limit--;
    for (size_t i = 0; i < n;) {
        const char *unit;
        size_t ulen, adv = cart_json_escape_unit(p + i, n - i, esc, &unit, &ulen);

        if (put(ln, unit, ulen) != 0) {
            ln->limit++;
            ln->buf[ln->len++] = '"';
            ln->cut = 1;
            return -1;
        }
        i += adv;
    }
    ln->limit++;
    ln->buf[ln->len++] = '"';
    return 0;
}

/* Appends ,"key": and returns the length before it, so a value that does not fit can be undone. */
static int put_key(line *ln, const char *key, size_t *mark)
{
    *mark = ln->len;
    if (put(ln, ",", 1) != 0 || put_json_str(ln, key) != 0 || put(ln, ":", 1) != 0) {
        ln->len = *mark;
        ln->cut = 1;
        return -1;
    }
    return 0;
}

/* Writes a double as the shortest text that reads back to the same value; NaN and Inf as null. */
static void fmt_double(double v, char *out, size_t cap)
{
    if (!isfinite(v)) {
        snprintf(out, cap, "null");
        return;
    }
    snprintf(out, cap, "%.15g", v);
    if (strtod(out, NULL) != v)
        snprintf(out, cap, "%.17g", v);
}

static void put_timestamp(line *ln)
{
    struct timespec ts;
    struct tm tm;
    char buf[96]; /* more than a valid date needs, so the compiler can prove nothing is cut */

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    snprintf(buf, sizeof buf, "{\"ts\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03dZ\"", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ts.tv_nsec / 1000000));
    puts_raw(ln, buf);
}

/* Adds the typed fields of `ap` until the NULL key, a field that does not fit, or a bad type. */
static void put_fields(line *ln, va_list ap)
{
    const char *key;

    while ((key = va_arg(ap, const char *)) != NULL) {
        int type = va_arg(ap, int);
        char num[40];
        size_t mark;

        switch (type) {
        case CART_LOG_T_STR: {
            const char *v = va_arg(ap, const char *);
            if (put_key(ln, key, &mark) != 0)
                return;
            size_t start = ln->len;
            int rc = v ? put_json_str(ln, v) : puts_raw(ln, "null");
            if (rc != 0) {
                /* A string cut short is still useful; an empty one in its place is not. */
                if (ln->len <= start + 2)
                    ln->len = mark;
                ln->cut = 1;
                return;
            }
            continue;
        }
        case CART_LOG_T_INT:
            snprintf(num, sizeof num, "%lld", va_arg(ap, long long));
            break;
        case CART_LOG_T_DBL:
            fmt_double(va_arg(ap, double), num, sizeof num);
            break;
        case CART_LOG_T_BOOL:
            snprintf(num, sizeof num, "%s", va_arg(ap, int) ? "true" : "false");
            break;
        default:
            /* The argument's size is unknown, so nothing after it can be read safely. */
            ln->cut = 1;
            return;
        }
        if (put_key(ln, key, &mark) != 0)
            return;
        if (puts_raw(ln, num) != 0) {
            ln->len = mark;
            ln->cut = 1;
            return;
        }
    }
}

/* Writes the whole buffer; a short write (a pipe, a signal) continues where it stopped. */
static void write_all(const char *buf, size_t len)
{
    int fd = atomic_load(&log_fd);

    pthread_mutex_lock(&log_write_lock);
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            break; /* nowhere left to report it */
        }
        buf += n;
        len -= (size_t)n;
    }
    pthread_mutex_unlock(&log_write_lock);
}

void cart_log(cart_log_level level, const char *msg, ...)
{
    line ln;
    va_list ap;
    int saved_errno = errno; /* callers often log and then look at errno */

    if (!cart_log_enabled(level))
        return;
    ln.len = 0;
    ln.limit = LOG_LINE_MAX - LOG_TAIL_RESERVE;
    ln.cut = 0;

    put_timestamp(&ln);
    puts_raw(&ln, ",\"level\":\"");
    puts_raw(&ln, level_names[level]);
    puts_raw(&ln, "\",\"service\":");
    put_json_str(&ln, log_service);
    puts_raw(&ln, ",\"msg\":");
    if (!msg ? puts_raw(&ln, "null") == 0 : put_json_str(&ln, msg) == 0) {
        va_start(ap, msg);
        put_fields(&ln, ap);
        va_end(ap);
    }

    ln.limit = LOG_LINE_MAX;
    if (ln.cut)
        puts_raw(&ln, ",\"truncated\":true");
    puts_raw(&ln, "}\n");
    write_all(ln.buf, ln.len);
    errno = saved_errno;
}
