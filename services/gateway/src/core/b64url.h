/*
 * b64url.h: base64url without padding (RFC 4648 section 5, RFC 7515 section 2), the encoding of
 * every part of a JWS and of a JWK's numbers. Pure.
 */
#ifndef GW_B64URL_H
#define GW_B64URL_H

#include <stdbool.h>
#include <stddef.h>

/*
 * Decodes in[0..len) into out (room for `cap` bytes) and sets *outlen. Only the canonical
 * encoding is accepted: no '=', nothing outside the alphabet, no length of 4n+1, and the bits left
 * over after the last whole byte are zero, so every byte string has exactly one accepted form.
 * False when the input is not that or does not fit in `cap`; out may then hold a partial result
 * and *outlen is untouched.
 */
bool gw_b64url_decode(const char *in, size_t len, unsigned char *out, size_t cap, size_t *outlen);

#endif
