#include "jwt.h"

#include <limits.h>
#include <math.h>
#include <string.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#define HS256_LEN 32 /* bytes of an HMAC-SHA256 */

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
    case GW_JWT_INTERNAL:
        return "internal";
    }
    return "unknown";
}

static int b64url_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

/* Decodes unpadded base64url in[0..len) into out (room for `cap` bytes). Only the canonical
 * encoding is accepted: no '=', nothing outside the alphabet, no length of 4n+1, and the bits left
 * over after the last whole byte are zero, so every byte string has exactly one accepted form. */
static bool b64url_decode(const char *in, size_t len, unsigned char *out, size_t cap, size_t *outlen)
{
    unsigned int acc = 0, bits = 0;
    size_t n = 0;

    if (len % 4 == 1)
        return false;
    for (size_t i = 0; i < len; i++) {
        int v = b64url_value((unsigned char)in[i]);
        if (v < 0)
            return false;
        acc = (acc << 6) | (unsigned int)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (n == cap)
                return false;
            out[n++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    if (acc != 0)
        return false;
    *outlen = n;
    return true;
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

/* The header: a JSON object with "alg": "HS256", "typ" JWT if present, no "crit". */
static gw_jwt_result check_header(const unsigned char *s, size_t len, const char **why)
{
    json_t *hdr = NULL, *v;
    gw_jwt_result r;

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
    if (!json_is_string(v) || json_string_length(v) != 5 || memcmp(json_string_value(v), "HS256", 5) != 0) {
        r = GW_JWT_BAD_ALG;
        *why = "alg must be HS256";
        goto out;
    }
out:
    json_decref(hdr);
    return r;
}

/* The payload, once signed: sub, exp, nbf and iat, then the time window. */
static gw_jwt_result check_claims(const unsigned char *s, size_t len, int64_t now_s, char sub[CART_ID_MAX + 1],
                                  const char **why)
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

gw_jwt_result gw_jwt_verify(const char *token, size_t len, const unsigned char *secret, size_t secret_len,
                            int64_t now_s, char sub[CART_ID_MAX + 1], const char **why)
{
    /* Decoded header, payload and signature, side by side: together at most 3/4 of the token. */
    unsigned char buf[GW_JWT_MAX_LEN / 4 * 3 + 3];
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len = 0;
    const unsigned char *hdr, *pay, *sig;
    size_t hdr_len, pay_len, sig_len, dot1, dot2;
    const char *first_dot, *second_dot, *reason = "";
    gw_jwt_result r;

    sub[0] = '\0';
    if (secret == NULL || secret_len < GW_JWT_SECRET_MIN || secret_len > INT_MAX) {
        r = GW_JWT_INTERNAL;
        reason = "server secret unusable";
        goto out;
    }
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
    if (!b64url_decode(token, dot1, buf, sizeof buf, &hdr_len))
        goto bad_base64;
    pay = hdr + hdr_len;
    if (!b64url_decode(token + dot1 + 1, dot2 - dot1 - 1, buf + hdr_len, sizeof buf - hdr_len, &pay_len))
        goto bad_base64;
    sig = pay + pay_len;
    if (!b64url_decode(token + dot2 + 1, len - dot2 - 1, buf + hdr_len + pay_len, sizeof buf - hdr_len - pay_len,
                       &sig_len))
        goto bad_base64;

    /* 2. Header, so that we know how the token claims to be signed. */
    r = check_header(hdr, hdr_len, &reason);
    if (r != GW_JWT_OK)
        goto out;

    /* 3. Signature over the ASCII of header_b64 "." payload_b64, before any claim is looked at. */
    r = GW_JWT_BAD_SIGNATURE;
    if (sig_len == 0) {
        reason = "signature missing";
        goto out;
    }
    if (sig_len != HS256_LEN) {
        reason = "signature has the wrong length";
        goto out;
    }
    if (HMAC(EVP_sha256(), secret, (int)secret_len, (const unsigned char *)token, dot2, mac, &mac_len) == NULL ||
        mac_len != HS256_LEN) {
        r = GW_JWT_INTERNAL;
        reason = "HMAC failed";
        goto out;
    }
    if (CRYPTO_memcmp(mac, sig, HS256_LEN) != 0) {
        reason = "signature does not match";
        goto out;
    }

    /* 4 and 5. Claims and time. */
    r = check_claims(pay, pay_len, now_s, sub, &reason);
    goto out;

bad_base64:
    r = GW_JWT_MALFORMED;
    reason = "invalid base64url";
out:
    OPENSSL_cleanse(mac, sizeof mac);
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
