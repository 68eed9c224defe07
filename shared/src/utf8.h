/*
 * utf8.h: UTF-8 validation shared inside libcartshard (not a public header).
 */
#ifndef CARTSHARD_UTF8_H
#define CARTSHARD_UTF8_H

#include <stdbool.h>
#include <stddef.h>

/* Length (1..4) of the valid UTF-8 sequence at s, of which `avail` bytes may be read, or 0 if
 * the bytes there are not one (overlong forms, surrogates and code points above U+10FFFF are
 * invalid). `avail` must be at least 1. */
size_t cart_utf8_seq(const unsigned char *s, size_t avail);

/* True if s[0..len) is valid UTF-8 without NUL: text that a C string and PostgreSQL's text can hold
 * (jansson checks the UTF-8 of what it parsed, but lets "\u0000" through when asked to). */
bool cart_utf8_text(const char *s, size_t len);

/* The JSON string form of the character at s (`avail` >= 1 bytes readable): sets *unit and
 * *ulen to what to write (pointing into s for valid UTF-8, into `esc` for an escape, or to a
 * static "\ufffd" for an invalid byte) and returns how many bytes of s it stands for (>= 1).
 * Quotes, backslashes and control characters are escaped; nothing else is. */
size_t cart_json_escape_unit(const unsigned char *s, size_t avail, char esc[8], const char **unit, size_t *ulen);

#endif
