/*
 * jose_fixture.h: keys, JWKs and signed tokens for test_jwt and test_jwks, made with OpenSSL when
 * the test runs: no key, private or public, is in the repository. Every function aborts the test
 * (ck_assert) when OpenSSL fails; every char * returned is malloc'd, the caller's to free.
 */
#ifndef GW_JOSE_FIXTURE_H
#define GW_JOSE_FIXTURE_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/evp.h>

#define FX_SIG_MAX 1024 /* room for any signature made here (RSA up to 8192 bits) */

/* A new RSA key pair of `bits` bits (public exponent 65537). Free with EVP_PKEY_free. */
EVP_PKEY *fx_rsa_key(unsigned int bits);

/* A new EC key pair on P-256. Free with EVP_PKEY_free. */
EVP_PKEY *fx_ec_key(void);

/* The public half of `key` as JWK members without braces, for a test to complete:
 * "\"kty\":\"RSA\",\"n\":\"...\",\"e\":\"AQAB\"" or "\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":...,\"y\":...". */
char *fx_jwk_members(EVP_PKEY *key);

/* in[0..len) as base64url without padding, NUL-terminated, in out (room for len * 4 / 3 + 4);
 * returns the length written. */
size_t fx_b64url(const void *in, size_t len, char *out);

/* base64url(header) "." base64url(payload), with room to append "." and a signature of up to
 * FX_SIG_MAX bytes (fx_append_sig). */
char *fx_signing_input(const char *header, const char *payload);

/* Appends "." and base64url(sig[0..len)) to a fx_signing_input result. */
void fx_append_sig(char *token, const unsigned char *sig, size_t len);

/* Signs input[0..len) with SHA-256 and `key` into sig, returns the signature's length: RSA
 * PKCS#1 v1.5 (RS256), or ECDSA as r || s (ES256; `der` keeps OpenSSL's DER encoding instead). */
size_t fx_sign(EVP_PKEY *key, const char *input, size_t len, unsigned char sig[FX_SIG_MAX], bool der);

/* A token of header . payload signed with `key` as RS256 or ES256 (whatever the header says). */
char *fx_token(const char *header, const char *payload, EVP_PKEY *key);

/* A token of header . payload signed with HMAC-SHA256 under secret[0..len). */
char *fx_hs256_token(const char *header, const char *payload, const void *secret, size_t len);

#endif
