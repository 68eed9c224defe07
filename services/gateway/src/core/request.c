#define _POSIX_C_SOURCE 200809L
#include "request.h"

#include <strings.h>

bool gw_json_too_deep(const char *s, size_t len, int max)
{
    int depth = 0;
    bool in_string = false;

    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        if (in_string) {
            if (ch == '\\')
                i++;
            else if (ch == '"')
                in_string = false;
        } else if (ch == '"') {
            in_string = true;
        } else if (ch == '{' || ch == '[') {
            if (++depth > max)
                return true;
        } else if (ch == '}' || ch == ']') {
            depth--;
        }
    }
    return false;
}

static bool blank(char ch)
{
    return ch == ' ' || ch == '\t';
}

/* etagc: %x21 / %x23-7E / obs-text */
static bool etag_char(unsigned char ch)
{
    return ch == 0x21 || (ch >= 0x23 && ch != 0x7f);
}

/* The version a tag's opaque part o[0..len) holds, or -1 when it holds none. */
static int64_t tag_version(const char *o, size_t len)
{
    int64_t n = 0;

    if (len == 0 || len > 19)
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (o[i] < '0' || o[i] > '9' || n > (INT64_MAX - (o[i] - '0')) / 10)
            return -1;
        n = n * 10 + (o[i] - '0');
    }
    return n;
}

static int add_version(gw_etags *set, int64_t version)
{
    for (int i = 0; i < set->n; i++)
        if (set->versions[i] == version)
            return 0;
    if (set->n == GW_ETAGS_MAX)
        return -1;
    set->versions[set->n++] = version;
    return 0;
}

int gw_etags_parse(const char *v, size_t len, bool strong, gw_etags *set)
{
    size_t i = 0, tags = 0;

    while (i < len && blank(v[i]))
        i++;
    if (i < len && v[i] == '*') {
        for (i++; i < len && blank(v[i]); i++)
            ;
        if (i != len || set->n > 0)
            return -1;
        set->any = true;
        return 0;
    }
    for (;;) {
        /* element: OWS [ entity-tag ] OWS, then "," or the end */
        while (i < len && blank(v[i]))
            i++;
        if (i < len && v[i] != ',') {
            bool weak = false;
            size_t open;
            if (len - i >= 2 && v[i] == 'W' && v[i + 1] == '/') {
                weak = true;
                i += 2;
            }
            if (i == len || v[i] != '"')
                return -1;
            open = ++i;
            while (i < len && etag_char((unsigned char)v[i]))
                i++;
            if (i == len || v[i] != '"')
                return -1;
            int64_t version = tag_version(v + open, i - open);
            i++;
            tags++;
            if (set->any)
                return -1;
            if (version >= 0 && !(weak && strong) && add_version(set, version) != 0)
                return -1;
            while (i < len && blank(v[i]))
                i++;
        }
        if (i == len)
            break;
        if (v[i] != ',')
            return -1;
        i++;
    }
    return tags > 0 ? 0 : -1;
}

bool gw_etags_match(const gw_etags *set, int64_t version)
{
    if (set->any)
        return true;
    for (int i = 0; i < set->n; i++)
        if (set->versions[i] == version)
            return true;
    return false;
}

bool gw_traceparent_valid(const char *v, size_t len)
{
    static const char shape[] = "xx-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx-xxxxxxxxxxxxxxxx-xx";
    bool trace_zero = true, span_zero = true;

    if (len != sizeof shape - 1 || v[0] == 'f' || v[1] == 'f')
        return false;
    for (size_t i = 0; i < len; i++) {
        char ch = v[i];
        if (shape[i] == '-') {
            if (ch != '-')
                return false;
            continue;
        }
        if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f')))
            return false;
        if (ch != '0' && i >= 3 && i < 35)
            trace_zero = false;
        if (ch != '0' && i >= 36 && i < 52)
            span_zero = false;
    }
    return !trace_zero && !span_zero;
}

bool gw_prefers_async(const char *v, size_t len)
{
    for (size_t i = 0; v && i + 13 <= len; i++)
        if (strncasecmp(v + i, "respond-async", 13) == 0)
            return true;
    return false;
}
