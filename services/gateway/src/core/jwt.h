/*
 * jwt.h: verifies the bearer tokens of docs/reference/api.md, Authentication. Pure: no I/O, no
 * clock (the caller passes `now`), no allocation that outlives a call.
 *
 * Accepted: a JWS in compact serialization (RFC 7515 section 7.1), three base64url parts without
 * padding, whose payload is a JWT claims set (RFC 7519), signed with one of
 *   - HS256 (HMAC-SHA256) under the shared secret (AUTH_JWT_SECRET), and nothing else;
 *   - RS256 or ES256 under the key of the JWKS (AUTH_JWKS_FILE, jwks.h) that the header's "kid"
 *     names, whose algorithm must be the token's. A token without "kid" is refused: the four
 *     identity providers the gateway is made for always send one, and trying every key of an
 *     algorithm would make a token's fate depend on how many keys a rotation has in flight.
 * No key ever serves two algorithms: the secret is never an RSA or EC key, a JWKS key is never an
 * HMAC key, and "none" is no algorithm. The claims:
 *   - "sub": the user_id (1..64 characters of [A-Za-z0-9._:-]), required;
 *   - "exp": a NumericDate, required;
 *   - "nbf", "iat": NumericDates, optional;
 *   - "iss": when an issuer is configured (AUTH_ISSUER), required and equal to it;
 *   - "aud": when an audience is configured (AUTH_AUDIENCE), required, and equal to it or an array
 *     of strings that holds it.
 * Other claims (jti, scope, custom ones) are ignored, and so are iss and aud when not configured.
 * NumericDates may be integers or reals; a real counts as the next whole second up.
 *
 * Order of checks, so that nothing from the payload is believed before the signature holds:
 *   1. shape: length, three parts, base64url                               -> MALFORMED
 *   2. header: a JSON object, "typ" JWT if present, no "crit"              -> MALFORMED
 *              "alg" HS256, RS256 or ES256, and a key configured for it    -> BAD_ALG
 *              RS256, ES256: "kid" a string                                -> MALFORMED
 *                            naming a key of the set                       -> UNKNOWN_KEY
 *                            whose algorithm is the token's                -> BAD_ALG
 *   3. signature: HMAC-SHA256 compared in constant time, or the key's       -> BAD_SIGNATURE
 *   4. payload: a JSON object                                              -> MALFORMED
 *              sub, exp, nbf, iat, iss, aud present and typed as above     -> BAD_CLAIMS
 *              iss and aud as configured                                   -> BAD_CLAIMS
 *   5. time: exp and nbf against now, with GW_JWT_LEEWAY_S of clock skew   -> EXPIRED, NOT_YET_VALID
 */
#ifndef GW_JWT_H
#define GW_JWT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cartshard/event.h"
#include "jwks.h"

#define GW_JWT_MAX_LEN    8192 /* longest token accepted, in bytes; longer is MALFORMED */
#define GW_JWT_MAX_DEPTH  16   /* deepest nesting of objects and arrays in header or payload */
#define GW_JWT_SECRET_MIN 32   /* shortest HMAC key accepted (RFC 7518 section 3.2: >= hash size) */
/* Clock skew tolerated between the token's issuer and the gateway, in seconds: a token is
 * EXPIRED once now >= exp + 30, NOT_YET_VALID while now < nbf - 30. */
#define GW_JWT_LEEWAY_S 30

typedef enum gw_jwt_result {
    GW_JWT_OK = 0,        /* valid; sub holds the subject */
    GW_JWT_MALFORMED,     /* not a compact JWS: empty, too long, not three parts, bad base64url
                           * (padding, other characters, non-zero trailing bits), header or payload
                           * not a JSON object (or nested too deep, or with a duplicate key), "typ"
                           * other than JWT, a "crit" header */
    GW_JWT_BAD_ALG,       /* "alg" missing, anything but HS256, RS256 or ES256 ("none", "HS512",
                           * "hs256"...), one no key is configured for, or not the algorithm of the
                           * key its kid names */
    GW_JWT_BAD_SIGNATURE, /* the signature is missing, of the wrong length, or does not match */
    GW_JWT_EXPIRED,       /* now >= exp + GW_JWT_LEEWAY_S */
    GW_JWT_NOT_YET_VALID, /* now < nbf - GW_JWT_LEEWAY_S */
    GW_JWT_BAD_CLAIMS,    /* signed, but "sub" is missing, not a string or not a valid user_id, "exp"
                           * is missing or not a number, "nbf" / "iat" is not a number, or "iss" /
                           * "aud" is not the configured issuer / audience */
    GW_JWT_UNKNOWN_KEY,   /* RS256 or ES256 without a "kid", or with one the key set does not hold
                           * (a key rotated out, a token of another issuer) */
    GW_JWT_INTERNAL       /* the server's fault, not the token's: secret shorter than
                           * GW_JWT_SECRET_MIN, out of memory, HMAC or OpenSSL failure */
} gw_jwt_result;

/* A stable low-cardinality name of `r` for metrics and logs ("ok", "malformed", "bad_alg",
 * "bad_signature", "expired", "not_yet_valid", "bad_claims", "unknown_key", "internal"); "unknown"
 * outside the enum. Static storage. */
const char *gw_jwt_result_name(gw_jwt_result r);

/* What tokens are verified with. Every pointer is borrowed for the call; any may be NULL. */
typedef struct gw_jwt_keys {
    const unsigned char *secret; /* the HS256 key (AUTH_JWT_SECRET); NULL: HS256 is refused */
    size_t secret_len;           /* its length: GW_JWT_SECRET_MIN or more, else every HS256
                                  * token is GW_JWT_INTERNAL */
    const gw_jwks *jwks;         /* the RS256 and ES256 keys (AUTH_JWKS_FILE); NULL: both refused */
    const char *issuer;          /* "iss" must be this (AUTH_ISSUER); NULL: iss is not checked */
    const char *audience;        /* "aud" must be or hold this (AUTH_AUDIENCE); NULL: not checked */
} gw_jwt_keys;

/*
 * Verifies token[0..len) (need not be NUL-terminated; NULL only with len 0) with `keys` at time
 * now_s (seconds since the epoch).
 *
 * On GW_JWT_OK `sub` holds the NUL-terminated subject, already checked with cart_valid_id; on any
 * other result it is the empty string. If `why` is not NULL, *why is set to a short reason in
 * static storage ("token expired", "unknown kid"...), fit for a 401 detail: it never quotes the
 * token or any part of it. Allocates only inside the call (jansson, OpenSSL) and frees it before
 * return; leaves nothing on the thread's OpenSSL error queue.
 */
gw_jwt_result gw_jwt_verify(const char *token, size_t len, const gw_jwt_keys *keys, int64_t now_s,
                            char sub[CART_ID_MAX + 1], const char **why);

/*
 * Finds the token in an Authorization header value: the scheme "Bearer" (any case, RFC 9110
 * section 11.1), one or more spaces, then the credentials up to trailing spaces or tabs. True, with
 * *token pointing into `value` and *token_len its length (at least 1), or false (another scheme,
 * no credentials, a space inside them) and the out-parameters untouched. The token itself is not
 * checked: that is gw_jwt_verify's business.
 */
bool gw_jwt_bearer(const char *value, size_t len, const char **token, size_t *token_len);

/*
 * The "scope" claim, which gw_jwt_verify does not look at: true if the payload of token[0..len) has
 * a "scope" that is a string of space-separated scopes (RFC 8693 section 4.2) one of which is
 * exactly `scope` (NUL-terminated); false for any other scope claim, none, or a payload that does
 * not parse. It verifies nothing: call it only for a token gw_jwt_verify accepted. Allocates only
 * inside the call.
 */
bool gw_jwt_has_scope(const char *token, size_t len, const char *scope);

#endif
