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

bool gw_if_match_parse(const char *v, size_t len, int64_t *version)
{
    int64_t n = 0;

    /* strtoll would also take blanks, a sign and an out-of-range number (as INT64_MAX). */
    if (len < 3 || len > 31 || v[0] != '"' || v[len - 1] != '"')
        return false;
    for (size_t i = 1; i < len - 1; i++) {
        if (v[i] < '0' || v[i] > '9')
            return false;
        if (n > (INT64_MAX - (v[i] - '0')) / 10)
            return false;
        n = n * 10 + (v[i] - '0');
    }
    *version = n;
    return true;
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
