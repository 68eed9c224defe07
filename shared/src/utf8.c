#include "utf8.h"

#include <stdio.h>

size_t cart_utf8_seq(const unsigned char *s, size_t avail)
{
    unsigned char c = s[0];
    size_t n;
    unsigned min;
    unsigned cp;

    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        n = 2, cp = c & 0x1fu, min = 0x80;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3, cp = c & 0x0fu, min = 0x800;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4, cp = c & 0x07u, min = 0x10000;
    } else {
        return 0;
    }
    if (avail < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3fu);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

bool cart_utf8_text(const char *s, size_t len)
{
    for (size_t i = 0, n; i < len; i += n)
        if (s[i] == '\0' || (n = cart_utf8_seq((const unsigned char *)s + i, len - i)) == 0)
            return false;
    return true;
}

size_t cart_json_escape_unit(const unsigned char *s, size_t avail, char esc[8], const char **unit, size_t *ulen)
{
    unsigned char c = s[0];
    size_t adv;

    *unit = esc;
    *ulen = 2;
    esc[0] = '\\';
    if (c == '"' || c == '\\') {
        esc[1] = (char)c;
    } else if (c == '\n') {
        esc[1] = 'n';
    } else if (c == '\r') {
        esc[1] = 'r';
    } else if (c == '\t') {
        esc[1] = 't';
    } else if (c < 0x20 || c == 0x7f) {
        snprintf(esc, 8, "\\u%04x", c);
        *ulen = 6;
    } else if ((adv = cart_utf8_seq(s, avail)) > 0) {
        *unit = (const char *)s;
        *ulen = adv;
        return adv;
    } else {
        *unit = "\\ufffd";
        *ulen = 6;
    }
    return 1;
}
