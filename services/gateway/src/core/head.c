/*
 * head.c: the raw request head's checks (head.h). Pure; called on the gateway's loop threads.
 */
#define _POSIX_C_SOURCE 200809L
#include "head.h"

#include <stdbool.h>
#include <string.h>
#include <strings.h>

/* A line of the head: line[0..len) without its line ending; next is where the next one starts. */
typedef struct line {
    const char *text;
    size_t len;
    size_t next;
} line;

/* The line starting at head[at]; false if it has no LF within len. */
static bool line_at(const char *head, size_t len, size_t at, line *l)
{
    const char *lf = at < len ? memchr(head + at, '\n', len - at) : NULL;

    if (lf == NULL)
        return false;
    l->text = head + at;
    l->len = (size_t)(lf - l->text);
    l->next = (size_t)(lf - head) + 1;
    if (l->len > 0 && l->text[l->len - 1] == '\r')
        l->len--;
    return true;
}

static bool is_blank(char ch)
{
    return ch == ' ' || ch == '\t';
}

/* The value of field line f[0..len) if its name is `name` (any case), trimmed; else NULL. */
static const char *value_of(const char *f, size_t len, const char *name, size_t *vlen)
{
    size_t n = strlen(name), b, e;

    if (len <= n || f[n] != ':' || strncasecmp(f, name, n) != 0)
        return NULL;
    for (b = n + 1; b < len && is_blank(f[b]); b++)
        ;
    for (e = len; e > b && is_blank(f[e - 1]); e--)
        ;
    *vlen = e - b;
    return f + b;
}

gw_head_verdict gw_head_check(const char *head, size_t len, size_t field_max, size_t total_max)
{
    const char *length = NULL, *v;
    size_t length_len = 0, vlen, total = 0, field = 0;
    int hosts = 0;
    bool http10, chunked = false, two_lengths = false, too_long = false;
    line l;

    if (!line_at(head, len, 0, &l))
        return GW_HEAD_OK;
    http10 = l.len >= 8 && memcmp(l.text + l.len - 8, "HTTP/1.0", 8) == 0;
    for (;;) {
        if (!line_at(head, len, l.next, &l))
            return GW_HEAD_OK; /* no end of head: not ours to judge */
        if (l.len > 0 && is_blank(l.text[0])) {
            field += l.len; /* a continuation of the field before */
        } else {
            if (field > field_max)
                too_long = true;
            field = l.len;
        }
        total += l.len;
        if (l.len == 0)
            break;
        if (value_of(l.text, l.len, "host", &vlen))
            hosts++;
        else if (value_of(l.text, l.len, "transfer-encoding", &vlen))
            chunked = true;
        else if ((v = value_of(l.text, l.len, "content-length", &vlen)) != NULL) {
            if (length && (vlen != length_len || memcmp(v, length, vlen) != 0))
                two_lengths = true;
            length = v;
            length_len = vlen;
        }
    }
    if ((length && chunked) || two_lengths)
        return GW_HEAD_TWO_FRAMINGS;
    if (hosts == 0 && !http10)
        return GW_HEAD_NO_HOST;
    if (hosts > 1)
        return GW_HEAD_HOSTS;
    if (too_long)
        return GW_HEAD_FIELD_TOO_LARGE;
    if (total > total_max)
        return GW_HEAD_FIELDS_TOO_LARGE;
    return GW_HEAD_OK;
}

const char *gw_head_verdict_detail(gw_head_verdict v)
{
    switch (v) {
    case GW_HEAD_OK:
        return "";
    case GW_HEAD_TWO_FRAMINGS:
        return "the request is framed two ways (Content-Length with Transfer-Encoding, or Content-Lengths that "
               "differ)";
    case GW_HEAD_NO_HOST:
        return "an HTTP/1.1 request needs a Host header";
    case GW_HEAD_HOSTS:
        return "the request has more than one Host header";
    case GW_HEAD_FIELD_TOO_LARGE:
        return "a header field is over the limit (GATEWAY_MAX_HEADER_BYTES)";
    case GW_HEAD_FIELDS_TOO_LARGE:
        return "the header fields together are over the limit (4 x GATEWAY_MAX_HEADER_BYTES)";
    }
    return "";
}
