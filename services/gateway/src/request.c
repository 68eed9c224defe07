#include "request.h"

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
