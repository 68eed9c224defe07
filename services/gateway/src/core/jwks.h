/*
 * jwks.h: the public keys that RS256 and ES256 tokens are verified with (jwt.h), read from a JSON
 * Web Key Set (RFC 7517 section 5) as identity providers publish it: Keycloak's
 * .../protocol/openid-connect/certs, Auth0's and Cognito's .well-known/jwks.json, Entra's
 * discovery/v2.0/keys. Pure: parses a document already in memory; reading the file, and reading
 * it again when it changes, is keyring.h's business.
 *
 * The document is an object whose "keys" array holds at most GW_JWKS_MAX_KEYS keys. Key by key
 * ("key N" in the messages counts from 1, in the file's order):
 *   - "use": "enc" marks an encryption key (Keycloak publishes one beside its signing keys): it is
 *     skipped, as it never verifies a signature. "use" absent or "sig": a signing key, which must
 *     be one of the two below, or the whole document is refused;
 *   - "kty": "RSA", "n" and "e" (base64url, a modulus of GW_JWK_RSA_MIN_BITS to
 *     GW_JWK_RSA_MAX_BITS bits): verifies RS256;
 *   - "kty": "EC", "crv": "P-256", "x" and "y" (base64url, 32 bytes each, a point on the curve):
 *     verifies ES256;
 *   - "kid": 1..GW_JWK_KID_MAX bytes, unique among the signing keys: a token names its key by it;
 *   - "alg", if present, the algorithm above: "RS256" on an RSA key, "ES256" on an EC key;
 *   - no private part ("d").
 * Other members (x5c, x5t, key_ops, issuer...) are ignored. A signing key of another kind (kty
 * "oct" or "OKP", another curve or alg) is refused rather than skipped, with a message that names
 * it: a key the operator meant to use fails at start-up, not token by token later.
 *
 * A set never changes once made, and is counted by reference: loop threads share one while the
 * main thread swaps in a newer one. Each holder takes its reference with gw_jwks_ref and drops it
 * with gw_jwks_unref, on any thread; the OpenSSL keys inside are only read.
 */
#ifndef GW_JWKS_H
#define GW_JWKS_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/evp.h>

#define GW_JWKS_MAX_KEYS    64      /* most keys in one document */
#define GW_JWKS_MAX_BYTES   1048576 /* longest document accepted */
#define GW_JWK_KID_MAX      256     /* longest kid, in bytes */
#define GW_JWK_RSA_MIN_BITS 2048    /* RFC 7518 section 3.3: 2048 bits or larger */
#define GW_JWK_RSA_MAX_BITS 8192    /* beyond this a signature check costs too much per request */

/* The algorithm a key verifies; a token's "alg" must be the same. */
typedef enum gw_jwk_alg {
    GW_JWK_RS256 = 1, /* RSASSA-PKCS1-v1_5 with SHA-256: an RSA key */
    GW_JWK_ES256      /* ECDSA on P-256 with SHA-256: an EC key */
} gw_jwk_alg;

typedef struct gw_jwks gw_jwks;
typedef struct gw_jwk gw_jwk;

/*
 * Parses doc[0..len) (need not be NUL-terminated). Returns a new set holding one reference, the
 * caller's, or NULL with `err` (of `errlen` bytes) set to one line saying what is wrong, such as
 * "key 2: unsupported kty \"oct\"", "no signing keys" or "out of memory". A message quotes names
 * and values of the document (shortened), never key material.
 */
gw_jwks *gw_jwks_parse(const char *doc, size_t len, char *err, size_t errlen);

/* Takes one more reference to `set` (not NULL) and returns it. Any thread. */
gw_jwks *gw_jwks_ref(gw_jwks *set);

/* Drops one reference; the last one frees the set. NULL is a no-op. Any thread. */
void gw_jwks_unref(gw_jwks *set);

/* The signing keys in the set (skipped encryption keys not counted). */
size_t gw_jwks_count(const gw_jwks *set);

/* The key whose kid is kid[0..kid_len), or NULL. Borrowed: valid while the caller holds `set`. */
const gw_jwk *gw_jwks_find(const gw_jwks *set, const char *kid, size_t kid_len);

/* The algorithm `key` verifies. */
gw_jwk_alg gw_jwk_alg_of(const gw_jwk *key);

/* The key as OpenSSL's public key. Borrowed like the key; read only (EVP_DigestVerify*). */
EVP_PKEY *gw_jwk_pkey(const gw_jwk *key);

#endif
