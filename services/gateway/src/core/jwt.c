#include "jwt.h"

#include <limits.h>
#include <math.h>
#include <string.h>

#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "b64url.h"

#define HS256_LEN     32 /* bytes of an HMAC-SHA256 */
#define ES256_LEN     64 /* bytes of an ES256 signature: r || s, 32 bytes each (RFC 7518 3.4) */
#define ES256_DER_MAX 72 /* the longest DER ECDSA-Sig-Value of two 256-bit integers */

/* The algorithms a token may name; the secret verifies the first, a JWKS key the others. */
typedef enum token_alg { ALG_HS256, ALG_RS256, ALG_ES256, ALG_COUNT } token_alg;

static const char *const ALG_NAME[ALG_COUNT] = {"HS256", "RS256", "ES256"};
/* Why a token is refused when no key is configured for its algorithm. */
static const char *const ALG_REFUSED[ALG_COUNT] = {"alg HS256 not accepted here", "alg RS256 not accepted here",
                                                   "alg ES256 not accepted here"};

const char *gw_jwt_result_name(gw_jwt_result r)
{
    switch (r) {
    case GW_JWT_OK:
        return "ok";
    case GW_JWT_MALFORMED:
        return "malformed";
    case GW_JWT_BAD_ALG:
        return "bad_alg";
    case GW_JWT_BAD_SIGNATURE:
        return "bad_signature";
    case GW_JWT_EXPIRED:
        return "expired";
    case GW_JWT_NOT_YET_VALID:
        return "not_yet_valid";
    case GW_JWT_BAD_CLAIMS:
        return "bad_claims";
    case GW_JWT_UNKNOWN_KEY:
        return "unknown_key";
    case GW_JWT_INTERNAL:
        return "internal";
    }
    return "unknown";
}

/* False if s[0..len) nests objects and arrays deeper than `max`. Exact for valid JSON; for
 * invalid JSON it is exact up to the first error, which is as far as jansson reads, so jansson's
 * recursion is bounded by `max` either way. */
static bool json_depth_ok(const unsigned char *s, size_t len, int max)
{
    bool in_string = false, escaped = false;
    int depth = 0;

    for (size_t i = 0; i < len; i++) {
        unsigned char c = s[i];
        if (in_string) {
            if (escaped)
                escaped = false;
            else if (c == '\\')
                escaped = true;
            else if (c == '"')
                in_string = false;
        } else if (c == '"') {
            in_string = true;
        } else if (c == '{' || c == '[') {
            if (++depth > max)
                return false;
        } else if (c == '}' || c == ']') {
            depth--;
        }
    }
    return true;
}

/* Parses s[0..len) as a JSON object, rejecting duplicate keys. GW_JWT_OK with *out (the caller's
 * to json_decref), GW_JWT_MALFORMED, or GW_JWT_INTERNAL when jansson ran out of memory. */
static gw_jwt_result load_object(const unsigned char *s, size_t len, json_t **out)
{
    json_error_t jerr;
    json_t *v;

    if (!json_depth_ok(s, len, GW_JWT_MAX_DEPTH))
        return GW_JWT_MALFORMED;
    v = json_loadb((const char *)s, len, JSON_REJECT_DUPLICATES, &jerr);
    if (v == NULL)
        return json_error_code(&jerr) == json_error_out_of_memory ? GW_JWT_INTERNAL : GW_JWT_MALFORMED;
    if (!json_is_object(v)) {
        json_decref(v);
        return GW_JWT_MALFORMED;
    }
    *out = v;
    return GW_JWT_OK;
}

static bool is_jwt_typ(const char *s, size_t len)
{
    static const char want[] = "JWT";

    if (len != sizeof want - 1)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c >= 'a' && c <= 'z')
            c = (char)(c - 'a' + 'A');
        if (c != want[i])
            return false;
    }
    return true;
}

/* A NumericDate as whole seconds: an integer as is, a real rounded up (for a whole `now`,
 * now >= x exactly when now >= ceil(x)), clamped to the int64 range. False if v is not a number. */
static bool numeric_date(const json_t *v, int64_t *out)
{
    double x;

    if (json_is_integer(v)) {
        *out = (int64_t)json_integer_value(v);
        return true;
    }
    if (!json_is_real(v))
        return false;
    x = json_real_value(v);
    if (x >= 9223372036854775807.0) /* 2^63 */
        *out = INT64_MAX;
    else if (x < -9223372036854775807.0)
        *out = INT64_MIN;
    else
        *out = (int64_t)ceil(x);
    return true;
}

/* The key the header's "kid" names, for a token signed with `alg` (RS256 or ES256). */
static gw_jwt_result find_key(json_t *hdr, const gw_jwks *jwks, token_alg alg, const gw_jwk **key, const char **why)
{
    json_t *v = json_object_get(hdr, "kid");
    const gw_jwk *k;

    if (v == NULL) {
        *why = "kid missing";
        return GW_JWT_UNKNOWN_KEY;
    }
    if (!json_is_string(v)) {
        *why = "kid is not a string";
        return GW_JWT_MALFORMED;
    }
    k = gw_jwks_find(jwks, json_string_value(v), json_string_length(v));
    if (k == NULL) {
        *why = "unknown kid";
        return GW_JWT_UNKNOWN_KEY;
    }
    if (gw_jwk_alg_of(k) != (alg == ALG_RS256 ? GW_JWK_RS256 : GW_JWK_ES256)) {
        *why = "alg does not match the key's";
        return GW_JWT_BAD_ALG;
    }
    *key = k;
    return GW_JWT_OK;
}

/* The header: a JSON object with "typ" JWT if present, no "crit", and an "alg" that `keys` can
 * verify: *alg, and for RS256 and ES256 the *key its "kid" names. */
static gw_jwt_result check_header(const unsigned char *s, size_t len, const gw_jwt_keys *keys, token_alg *alg,
                                  const gw_jwk **key, const char **why)
{
    json_t *hdr = NULL, *v;
    gw_jwt_result r;
    int a;

    r = load_object(s, len, &hdr);
    if (r != GW_JWT_OK) {
        *why = r == GW_JWT_INTERNAL ? "out of memory" : "header is not a JSON object";
        goto out;
    }
    v = json_object_get(hdr, "typ");
    if (v != NULL && !(json_is_string(v) && is_jwt_typ(json_string_value(v), json_string_length(v)))) {
        r = GW_JWT_MALFORMED;
        *why = "typ must be JWT";
        goto out;
    }
    /* RFC 7515 section 4.1.11: an extension we would have to understand; we understand none. */
    if (json_object_get(hdr, "crit") != NULL) {
        r = GW_JWT_MALFORMED;
        *why = "crit header not supported";
        goto out;
    }
    v = json_object_get(hdr, "alg");
    for (a = 0; a < ALG_COUNT; a++)
        if (json_is_string(v) && json_string_length(v) == 5 && memcmp(json_string_value(v), ALG_NAME[a], 5) == 0)
            break;
    r = GW_JWT_BAD_ALG;
    if (a == ALG_COUNT) {
        *why = "alg must be HS256, RS256 or ES256";
        goto out;
    }
    /* Each algorithm has its own keys, and a token is only ever checked with those. */
    if (a == ALG_HS256 ? keys->secret == NULL : keys->jwks == NULL) {
        *why = ALG_REFUSED[a];
        goto out;
    }
    *alg = (token_alg)a;
    r = a == ALG_HS256 ? GW_JWT_OK : find_key(hdr, keys->jwks, *alg, key, why);
out:
    json_decref(hdr);
    return r;
}

/* HS256: HMAC-SHA256 of input[0..len) under the secret, compared in constant time with sig. */
static gw_jwt_result check_hmac(const gw_jwt_keys *keys, const unsigned char *input, size_t len,
                                const unsigned char *sig, size_t sig_len, const char **why)
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len = 0;
    gw_jwt_result r = GW_JWT_BAD_SIGNATURE;

    if (keys->secret_len < GW_JWT_SECRET_MIN || keys->secret_len > INT_MAX) {
        *why = "server secret unusable";
        return GW_JWT_INTERNAL;
    }
    if (sig_len != HS256_LEN) {
        *why = "signature has the wrong length";
        return r;
    }
    if (HMAC(EVP_sha256(), keys->secret, (int)keys->secret_len, input, len, mac, &mac_len) == NULL ||
        mac_len != HS256_LEN) {
        ERR_clear_error();
        r = GW_JWT_INTERNAL;
        *why = "HMAC failed";
    } else if (CRYPTO_memcmp(mac, sig, HS256_LEN) != 0) {
        *why = "signature does not match";
    } else {
        r = GW_JWT_OK;
    }
    OPENSSL_cleanse(mac, sizeof mac);
    return r;
}

/* An ES256 signature r || s (RFC 7518 section 3.4) as the DER ECDSA-Sig-Value that OpenSSL
 * verifies, in der[0..*der_len). False if OpenSSL could not encode it (out of memory). */
static bool es256_to_der(const unsigned char raw[ES256_LEN], unsigned char der[ES256_DER_MAX], size_t *der_len)
{
    ECDSA_SIG *es = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(raw, ES256_LEN / 2, NULL), *s = BN_bin2bn(raw + ES256_LEN / 2, ES256_LEN / 2, NULL);
    unsigned char *p = der;
    int n = -1;

    if (es != NULL && r != NULL && s != NULL && ECDSA_SIG_set0(es, r, s) == 1) {
        r = s = NULL; /* es has them now */
        if (i2d_ECDSA_SIG(es, NULL) <= ES256_DER_MAX)
            n = i2d_ECDSA_SIG(es, &p);
    }
    BN_free(r);
    BN_free(s);
    ECDSA_SIG_free(es);
    if (n <= 0)
        return false;
    *der_len = (size_t)n;
    return true;
}

/* RS256 or ES256: the signature over input[0..len) under `key`. */
static gw_jwt_result check_signature(const gw_jwk *key, const unsigned char *input, size_t len,
                                     const unsigned char *sig, size_t sig_len, const char **why)
{
    EVP_PKEY *pkey = gw_jwk_pkey(key);
    EVP_MD_CTX *md = NULL;
    unsigned char der[ES256_DER_MAX];
    gw_jwt_result r = GW_JWT_BAD_SIGNATURE;
    size_t want = gw_jwk_alg_of(key) == GW_JWK_ES256 ? ES256_LEN : (size_t)EVP_PKEY_get_size(pkey);

    /* RS256: exactly the modulus's length (RFC 8017 section 8.2.2); ES256: r || s, never DER. */
    if (sig_len != want) {
        *why = "signature has the wrong length";
        return r;
    }
    if (gw_jwk_alg_of(key) == GW_JWK_ES256) {
        if (!es256_to_der(sig, der, &sig_len)) {
            r = GW_JWT_INTERNAL;
            *why = "signature check failed";
            goto out;
        }
        sig = der;
    }
    md = EVP_MD_CTX_new();
    if (md == NULL || EVP_DigestVerifyInit_ex(md, NULL, "SHA256", NULL, NULL, pkey, NULL) != 1) {
        r = GW_JWT_INTERNAL;
        *why = "signature check failed";
        goto out;
    }
    if (EVP_DigestVerify(md, sig, sig_len, input, len) == 1) {
        r = GW_JWT_OK;
        goto out;
    }
    *why = "signature does not match";
out:
    EVP_MD_CTX_free(md);
    /* A refused signature leaves OpenSSL's reasons on the thread's queue, where the thread's TLS
     * connections would later find them. */
    ERR_clear_error();
    return r;
}

static bool is_string(const json_t *v, const char *want)
{
    return json_is_string(v) && json_string_length(v) == strlen(want) &&
           memcmp(json_string_value(v), want, json_string_length(v)) == 0;
}

/* "iss" against the configured issuer, when there is one. */
static bool issuer_ok(const json_t *iss, const char *want, const char **why)
{
    if (want == NULL)
        return true;
    if (iss == NULL)
        *why = "iss missing";
    else if (!json_is_string(iss))
        *why = "iss is not a string";
    else if (!is_string(iss, want))
        *why = "wrong issuer";
    else
        return true;
    return false;
}

/* "aud" against the configured audience, when there is one: RFC 7519 section 4.1.3 allows one
 * string or an array of them, and the token is meant for us if any is ours. */
static bool audience_ok(const json_t *aud, const char *want, const char **why)
{
    bool found = false;

    if (want == NULL)
        return true;
    if (aud == NULL) {
        *why = "aud missing";
        return false;
    }
    if (json_is_string(aud)) {
        found = is_string(aud, want);
    } else if (json_is_array(aud)) {
        for (size_t i = 0; i < json_array_size(aud); i++) {
            const json_t *v = json_array_get(aud, i);
            if (!json_is_string(v)) {
                *why = "aud is not a string or an array of strings";
                return false;
            }
            found = found || is_string(v, want);
        }
    } else {
        *why = "aud is not a string or an array of strings";
        return false;
    }
    if (!found)
        *why = "wrong audience";
    return found;
}

/* The payload, once signed: sub, exp, nbf, iat, iss and aud, then the time window. */
static gw_jwt_result check_claims(const unsigned char *s, size_t len, const gw_jwt_keys *keys, int64_t now_s,
                                  char sub[CART_ID_MAX + 1], const char **why)
{
    json_t *claims = NULL, *v;
    int64_t exp = 0, nbf = 0, iat = 0;
    bool has_nbf = false;
    const char *sub_value;
    gw_jwt_result r;
    size_t sub_len;

    r = load_object(s, len, &claims);
    if (r != GW_JWT_OK) {
        *why = r == GW_JWT_INTERNAL ? "out of memory" : "payload is not a JSON object";
        goto out;
    }
    r = GW_JWT_BAD_CLAIMS;
    v = json_object_get(claims, "sub");
    if (v == NULL) {
        *why = "sub missing";
        goto out;
    }
    if (!json_is_string(v)) {
        *why = "sub is not a string";
        goto out;
    }
    sub_value = json_string_value(v);
    sub_len = json_string_length(v);
    if (!cart_valid_id(sub_value, sub_len)) {
        *why = "sub is not a valid user_id";
        goto out;
    }
    v = json_object_get(claims, "exp");
    if (v == NULL) {
        *why = "exp missing";
        goto out;
    }
    if (!numeric_date(v, &exp)) {
        *why = "exp is not a number";
        goto out;
    }
    v = json_object_get(claims, "nbf");
    if (v != NULL) {
        if (!numeric_date(v, &nbf)) {
            *why = "nbf is not a number";
            goto out;
        }
        has_nbf = true;
    }
    /* iat is informational: typed, but any value is accepted. */
    v = json_object_get(claims, "iat");
    if (v != NULL && !numeric_date(v, &iat)) {
        *why = "iat is not a number";
        goto out;
    }
    if (!issuer_ok(json_object_get(claims, "iss"), keys->issuer, why) ||
        !audience_ok(json_object_get(claims, "aud"), keys->audience, why))
        goto out;
    /* The differences are taken in uint64_t, where a - b for a >= b never overflows. */
    if (now_s >= exp && (uint64_t)now_s - (uint64_t)exp >= GW_JWT_LEEWAY_S) {
        r = GW_JWT_EXPIRED;
        *why = "token expired";
        goto out;
    }
    if (has_nbf && nbf > now_s && (uint64_t)nbf - (uint64_t)now_s > GW_JWT_LEEWAY_S) {
        r = GW_JWT_NOT_YET_VALID;
        *why = "token not yet valid";
        goto out;
    }
    memcpy(sub, sub_value, sub_len);
    sub[sub_len] = '\0';
    r = GW_JWT_OK;
    *why = "ok";
out:
    json_decref(claims);
    return r;
}

gw_jwt_result gw_jwt_verify(const char *token, size_t len, const gw_jwt_keys *keys, int64_t now_s,
                            char sub[CART_ID_MAX + 1], const char **why)
{
    /* Decoded header, payload and signature, side by side: together at most 3/4 of the token. */
    unsigned char buf[GW_JWT_MAX_LEN / 4 * 3 + 3];
    const unsigned char *hdr, *pay, *sig;
    size_t hdr_len, pay_len, sig_len, dot1, dot2;
    const char *first_dot, *second_dot, *reason = "";
    const gw_jwk *key = NULL;
    token_alg alg = ALG_HS256;
    gw_jwt_result r;

    sub[0] = '\0';
    r = GW_JWT_MALFORMED;
    if (token == NULL || len == 0) {
        reason = "missing token";
        goto out;
    }
    if (len > GW_JWT_MAX_LEN) {
        reason = "token too long";
        goto out;
    }

    /* 1. Shape: header "." payload "." signature, each canonical base64url. */
    first_dot = memchr(token, '.', len);
    second_dot = first_dot ? memchr(first_dot + 1, '.', len - (size_t)(first_dot + 1 - token)) : NULL;
    if (second_dot == NULL || memchr(second_dot + 1, '.', len - (size_t)(second_dot + 1 - token)) != NULL) {
        reason = "not three dot-separated parts";
        goto out;
    }
    dot1 = (size_t)(first_dot - token);
    dot2 = (size_t)(second_dot - token);
    if (dot1 == 0 || dot2 == dot1 + 1) {
        reason = "empty header or payload";
        goto out;
    }
    hdr = buf;
    if (!gw_b64url_decode(token, dot1, buf, sizeof buf, &hdr_len))
        goto bad_base64;
    pay = hdr + hdr_len;
    if (!gw_b64url_decode(token + dot1 + 1, dot2 - dot1 - 1, buf + hdr_len, sizeof buf - hdr_len, &pay_len))
        goto bad_base64;
    sig = pay + pay_len;
    if (!gw_b64url_decode(token + dot2 + 1, len - dot2 - 1, buf + hdr_len + pay_len, sizeof buf - hdr_len - pay_len,
                          &sig_len))
        goto bad_base64;

    /* 2. Header, so that we know how the token claims to be signed. */
    r = check_header(hdr, hdr_len, keys, &alg, &key, &reason);
    if (r != GW_JWT_OK)
        goto out;

    /* 3. Signature over the ASCII of header_b64 "." payload_b64, before any claim is looked at. */
    r = GW_JWT_BAD_SIGNATURE;
    if (sig_len == 0) {
        reason = "signature missing";
        goto out;
    }
    r = alg == ALG_HS256 ? check_hmac(keys, (const unsigned char *)token, dot2, sig, sig_len, &reason)
                         : check_signature(key, (const unsigned char *)token, dot2, sig, sig_len, &reason);
    if (r != GW_JWT_OK)
        goto out;

    /* 4 and 5. Claims and time. */
    r = check_claims(pay, pay_len, keys, now_s, sub, &reason);
    goto out;

bad_base64:
    r = GW_JWT_MALFORMED;
    reason = "invalid base64url";
out:
    if (r != GW_JWT_OK)
        sub[0] = '\0';
    if (why != NULL)
        *why = reason;
    return r;
}

bool gw_jwt_bearer(const char *value, size_t len, const char **token, size_t *token_len)
{
    static const char scheme[] = "bearer";
    size_t n = sizeof scheme - 1, at, end;

    if (value == NULL || len <= n)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = value[i];
        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        if (c != scheme[i])
            return false;
    }
    at = n;
    if (value[at] != ' ')
        return false;
    while (at < len && value[at] == ' ')
        at++;
    end = len;
    while (end > at && (value[end - 1] == ' ' || value[end - 1] == '\t'))
        end--;
    if (end == at)
        return false;
    for (size_t i = at; i < end; i++)
        if (value[i] == ' ' || value[i] == '\t')
            return false;
    *token = value + at;
    *token_len = end - at;
    return true;
}

bool gw_jwt_has_scope(const char *token, size_t len, const char *scope)
{
    unsigned char buf[GW_JWT_MAX_LEN / 4 * 3 + 3];
    const char *dot1, *dot2, *p, *end;
    size_t pay_len, want = strlen(scope);
    json_t *claims = NULL, *v;
    bool found = false;

    if (token == NULL || len > GW_JWT_MAX_LEN || (dot1 = memchr(token, '.', len)) == NULL ||
        (dot2 = memchr(dot1 + 1, '.', len - (size_t)(dot1 + 1 - token))) == NULL ||
        !gw_b64url_decode(dot1 + 1, (size_t)(dot2 - dot1 - 1), buf, sizeof buf, &pay_len) ||
        load_object(buf, pay_len, &claims) != GW_JWT_OK)
        return false;
    v = json_object_get(claims, "scope");
    if (json_is_string(v)) {
        for (p = json_string_value(v), end = p + json_string_length(v); p < end && !found;) {
            const char *space = memchr(p, ' ', (size_t)(end - p)), *stop = space ? space : end;
            found = (size_t)(stop - p) == want && memcmp(p, scope, want) == 0;
            p = stop + 1;
        }
    }
    json_decref(claims);
    return found;
}
