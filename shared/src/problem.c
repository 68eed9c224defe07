/*
 * problem.c: RFC 9457 problem documents, written into a caller's buffer without allocation so an
 * error answer can still be produced when memory is short.
 */
#include "cartshard/problem.h"
#include "utf8.h"

#include <stdio.h>
#include <string.h>

#define PROBLEM_URN_PREFIX "urn:cartshard:problem:"
/* UTF-8 of U+2026 HORIZONTAL ELLIPSIS, the mark of a shortened detail. */
#define ELLIPSIS     "\xe2\x80\xa6"
#define ELLIPSIS_LEN 3

const char *cart_http_reason(int status)
{
    /* RFC 9110 section 15 names. */
    switch (status) {
    case 100:
        return "Continue";
    case 101:
        return "Switching Protocols";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 203:
        return "Non-Authoritative Information";
    case 204:
        return "No Content";
    case 205:
        return "Reset Content";
    case 206:
        return "Partial Content";
    case 300:
        return "Multiple Choices";
    case 301:
        return "Moved Permanently";
    case 302:
        return "Found";
    case 303:
        return "See Other";
    case 304:
        return "Not Modified";
    case 307:
        return "Temporary Redirect";
    case 308:
        return "Permanent Redirect";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 402:
        return "Payment Required";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 406:
        return "Not Acceptable";
    case 407:
        return "Proxy Authentication Required";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 410:
        return "Gone";
    case 411:
        return "Length Required";
    case 412:
        return "Precondition Failed";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 415:
        return "Unsupported Media Type";
    case 416:
        return "Range Not Satisfiable";
    case 417:
        return "Expectation Failed";
    case 421:
        return "Misdirected Request";
    case 422:
        return "Unprocessable Content";
    case 425:
        return "Too Early";
    case 426:
        return "Upgrade Required";
    case 428:
        return "Precondition Required";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 505:
        return "HTTP Version Not Supported";
    }
    return "Error";
}

/* The output buffer; `limit` is the last usable offset (room for the NUL is kept apart). */
typedef struct out {
    char *buf;
    size_t len;
    size_t limit;
} out;

static int put(out *o, const char *s, size_t n)
{
    if (n > o->limit - o->len)
        return -1;
    memcpy(o->buf + o->len, s, n);
    o->len += n;
    return 0;
}

static int put_str(out *o, const char *s)
{
    return put(o, s, strlen(s));
}

/*
 * Appends the JSON-escaped body of s (no quotes). Stops before the first character that does not
 * fit, never inside one, and returns -1 then; 0 when all of s was written. Invalid UTF-8 bytes
 * become U+FFFD so the document is always valid JSON.
 */
static int put_escaped(out *o, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s);
    char esc[8];

    for (size_t i = 0; i < n;) {
        const char *unit;
        size_t ulen, adv = cart_json_escape_unit(p + i, n - i, esc, &unit, &ulen);

        if (put(o, unit, ulen) != 0)
            return -1;
        i += adv;
    }
    return 0;
}

int cart_problem_render(char *buf, size_t cap, int status, const char *type_slug, const char *detail)
{
    out o = {buf, 0, 0};
    char num[16];

    if (!buf || cap == 0)
        return -1;
    o.limit = cap - 1;

    if (put_str(&o, "{\"type\":\"") != 0)
        goto toosmall;
    if (type_slug) {
        if (put_str(&o, PROBLEM_URN_PREFIX) != 0 || put_escaped(&o, type_slug) != 0)
            goto toosmall;
    } else if (put_str(&o, "about:blank") != 0) {
        goto toosmall;
    }
    snprintf(num, sizeof num, "%d", status);
    if (put_str(&o, "\",\"title\":\"") != 0 || put_str(&o, cart_http_reason(status)) != 0 ||
        put_str(&o, "\",\"status\":") != 0 || put_str(&o, num) != 0)
        goto toosmall;

    /* Room for the closing `"}` stays free while the detail is written. */
    if (detail && o.limit - o.len >= 2) {
        static const char open[] = ",\"detail\":\"";
        size_t mark = o.len;
        size_t full_limit = o.limit;

        o.limit -= 2;
        if (put_str(&o, open) != 0 || put_escaped(&o, detail) != 0) {
            /* Too long: write what fits with an ellipsis, or leave the detail out altogether. */
            o.len = mark;
            if (o.limit - o.len >= sizeof open - 1 + ELLIPSIS_LEN) {
                o.limit -= ELLIPSIS_LEN;
                put_str(&o, open);
                put_escaped(&o, detail);
                o.limit += ELLIPSIS_LEN;
                put(&o, ELLIPSIS, ELLIPSIS_LEN);
            }
        }
        o.limit = full_limit;
        if (o.len > mark)
            put(&o, "\"", 1);
    }
    if (put(&o, "}", 1) != 0)
        goto toosmall;
    buf[o.len] = '\0';
    return (int)o.len;

toosmall:
    buf[0] = '\0';
    return -1;
}
