#include "jwks.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/param_build.h>

#include "b64url.h"

#define EC_COORD_LEN 32 /* bytes of a P-256 coordinate */
#define RSA_E_MAX    32 /* longest public exponent accepted, in bytes (OpenSSL's own bound is 2^256) */
#define QUOTE_MAX    48 /* room for a value quoted in a message */

#ifdef __GNUC__
#define PRINTF_LIKE(f, a) __attribute__((format(printf, f, a)))
#else
#define PRINTF_LIKE(f, a)
#endif

struct gw_jwk {
    char kid[GW_JWK_KID_MAX + 1]; /* NUL-terminated; kid_len bytes */
    size_t kid_len;               /* length of kid */
    size_t position;              /* where the key is in the document, from 1, for messages */
    gw_jwk_alg alg;               /* what it verifies */
    EVP_PKEY *pkey;               /* the public key (owned) */
};

struct gw_jwks {
    atomic_int refs; /* holders; the last gw_jwks_unref frees */
    size_t count;    /* signing keys in keys[] */
    gw_jwk keys[];   /* room for every key of the document; the first `count` are used */
};

/* Where a message goes: the caller's buffer, and the key being read (0: the document). */
typedef struct parse_err {
    char *buf;
    size_t len;
    size_t key;
} parse_err;

static bool fail(parse_err *e, const char *fmt, ...) PRINTF_LIKE(2, 3);

/* Writes "key N: " (when reading a key) and the message; returns false, for `return fail(...)`. */
static bool fail(parse_err *e, const char *fmt, ...)
{
    va_list ap;
    int n = 0;

    if (e->buf == NULL || e->len == 0)
        return false;
    if (e->key > 0)
        n = snprintf(e->buf, e->len, "key %zu: ", e->key);
    if (n >= 0 && (size_t)n < e->len) {
        va_start(ap, fmt);
        vsnprintf(e->buf + n, e->len - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return false;
}

/* A value of the document quoted for a message: at most about 32 bytes, non-printable bytes as
 * '?', so that a message stays one short line whatever the file holds. */
static const char *quote(const char *s, size_t len, char out[QUOTE_MAX])
{
    size_t o = 0;

    out[o++] = '"';
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (o >= 34) {
            memcpy(out + o, "\"...", 5);
            return out;
        }
        out[o++] = c >= 0x20 && c < 0x7f && c != '"' && c != '\\' ? (char)c : '?';
    }
    out[o++] = '"';
    out[o] = '\0';
    return out;
}

static bool is(const char *s, size_t len, const char *want)
{
    return len == strlen(want) && memcmp(s, want, len) == 0;
}

/* The string member `name` of `jwk`: true with *s and *len (*s NULL when absent and !required),
 * or false with the message. */
static bool get_string(json_t *jwk, const char *name, bool required, const char **s, size_t *len, parse_err *e)
{
    json_t *v = json_object_get(jwk, name);

    *s = NULL;
    *len = 0;
    if (v == NULL)
        return required ? fail(e, "%s missing", name) : true;
    if (!json_is_string(v))
        return fail(e, "%s is not a string", name);
    *s = json_string_value(v);
    *len = json_string_length(v);
    return true;
}

/* The base64url member `name` of `jwk`, decoded into out (room for `cap` bytes). */
static bool get_bytes(json_t *jwk, const char *name, unsigned char *out, size_t cap, size_t *out_len, parse_err *e)
{
    const char *s;
    size_t len;

    if (!get_string(jwk, name, true, &s, &len, e))
        return false;
    if (!gw_b64url_decode(s, len, out, cap, out_len) || *out_len == 0)
        return fail(e, "%s is not base64url of 1 to %zu bytes", name, cap);
    return true;
}

/* A public key of OpenSSL type `type` ("RSA", "EC") from `params`, checked (for EC: the point is
 * on the curve); NULL if OpenSSL refuses it. */
static EVP_PKEY *key_from_params(const char *type, OSSL_PARAM *params)
{
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL), *check = NULL;
    EVP_PKEY *pkey = NULL;

    if (ctx == NULL || EVP_PKEY_fromdata_init(ctx) != 1 ||
        EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1)
        goto out;
    check = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
    if (check == NULL || EVP_PKEY_public_check(check) != 1) {
        EVP_PKEY_free(pkey);
        pkey = NULL;
    }
out:
    EVP_PKEY_CTX_free(check);
    EVP_PKEY_CTX_free(ctx);
    /* What OpenSSL queued about a refused key is in the message now; the queue is the thread's. */
    ERR_clear_error();
    return pkey;
}

/* "n" and "e" of an RSA key. */
static bool rsa_key(json_t *jwk, gw_jwk *k, parse_err *e)
{
    unsigned char n_bytes[GW_JWK_RSA_MAX_BITS / 8 + 1], e_bytes[RSA_E_MAX];
    size_t n_len, e_len;
    BIGNUM *n = NULL, *pub_e = NULL;
    OSSL_PARAM_BLD *bld = NULL;
    OSSL_PARAM *params = NULL;
    bool ok = false;
    int bits;

    if (!get_bytes(jwk, "n", n_bytes, sizeof n_bytes, &n_len, e) ||
        !get_bytes(jwk, "e", e_bytes, sizeof e_bytes, &e_len, e))
        return false;
    n = BN_bin2bn(n_bytes, (int)n_len, NULL);
    pub_e = BN_bin2bn(e_bytes, (int)e_len, NULL);
    bld = OSSL_PARAM_BLD_new();
    if (n == NULL || pub_e == NULL || bld == NULL) {
        fail(e, "out of memory");
        goto out;
    }
    bits = BN_num_bits(n);
    if (bits < GW_JWK_RSA_MIN_BITS || bits > GW_JWK_RSA_MAX_BITS) {
        fail(e, "an RSA modulus of %d bits (%d to %d accepted)", bits, GW_JWK_RSA_MIN_BITS, GW_JWK_RSA_MAX_BITS);
        goto out;
    }
    if (OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) != 1 ||
        OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, pub_e) != 1 ||
        (params = OSSL_PARAM_BLD_to_param(bld)) == NULL) {
        fail(e, "out of memory");
        goto out;
    }
    k->pkey = key_from_params("RSA", params);
    if (k->pkey == NULL) {
        fail(e, "OpenSSL refuses n and e as an RSA public key");
        goto out;
    }
    k->alg = GW_JWK_RS256;
    ok = true;
out:
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    BN_free(n);
    BN_free(pub_e);
    return ok;
}

/* "crv", "x" and "y" of an EC key. */
static bool ec_key(json_t *jwk, gw_jwk *k, parse_err *e)
{
    /* SEC 1 section 2.3.3: an uncompressed point is 0x04 || x || y. */
    unsigned char point[1 + 2 * EC_COORD_LEN] = {0x04};
    char group[] = "prime256v1", q[QUOTE_MAX];
    OSSL_PARAM params[] = {OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group - 1),
                           OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_PUB_KEY, point, sizeof point), OSSL_PARAM_END};
    const char *crv;
    size_t crv_len, x_len, y_len;

    if (!get_string(jwk, "crv", true, &crv, &crv_len, e))
        return false;
    if (!is(crv, crv_len, "P-256"))
        return fail(e, "unsupported crv %s", quote(crv, crv_len, q));
    if (!get_bytes(jwk, "x", point + 1, EC_COORD_LEN, &x_len, e) ||
        !get_bytes(jwk, "y", point + 1 + EC_COORD_LEN, EC_COORD_LEN, &y_len, e))
        return false;
    if (x_len != EC_COORD_LEN || y_len != EC_COORD_LEN)
        return fail(e, "x and y must be %d bytes each on P-256", EC_COORD_LEN);
    k->pkey = key_from_params("EC", params);
    if (k->pkey == NULL)
        return fail(e, "x and y are not a point on P-256");
    k->alg = GW_JWK_ES256;
    return true;
}

/* Reads one key into k; sets *skip for an encryption key (k untouched then). */
static bool parse_key(json_t *jwk, gw_jwk *k, bool *skip, parse_err *e)
{
    const char *use, *kty, *kid, *alg;
    size_t use_len, kty_len, kid_len, alg_len;
    bool rsa;
    char q[QUOTE_MAX];

    *skip = false;
    if (!json_is_object(jwk))
        return fail(e, "not a JSON object");
    if (!get_string(jwk, "use", false, &use, &use_len, e))
        return false;
    if (use && is(use, use_len, "enc")) {
        *skip = true;
        return true;
    }
    if (use && !is(use, use_len, "sig"))
        return fail(e, "unsupported use %s", quote(use, use_len, q));
    if (!get_string(jwk, "kty", true, &kty, &kty_len, e))
        return false;
    rsa = is(kty, kty_len, "RSA");
    if (!rsa && !is(kty, kty_len, "EC"))
        return fail(e, "unsupported kty %s", quote(kty, kty_len, q));
    if (!get_string(jwk, "kid", true, &kid, &kid_len, e))
        return false;
    if (kid_len == 0 || kid_len > GW_JWK_KID_MAX)
        return fail(e, "kid must be 1 to %d bytes", GW_JWK_KID_MAX);
    if (json_object_get(jwk, "d") != NULL)
        return fail(e, "holds a private key (\"d\"): the file must hold public keys only");
    if (!get_string(jwk, "alg", false, &alg, &alg_len, e))
        return false;
    if (alg && !is(alg, alg_len, rsa ? "RS256" : "ES256"))
        return fail(e, "unsupported alg %s for kty %s (%s only)", quote(alg, alg_len, q), rsa ? "RSA" : "EC",
                    rsa ? "RS256" : "ES256");
    if (!(rsa ? rsa_key(jwk, k, e) : ec_key(jwk, k, e)))
        return false;
    memcpy(k->kid, kid, kid_len);
    k->kid[kid_len] = '\0';
    k->kid_len = kid_len;
    k->position = e->key;
    return true;
}

gw_jwks *gw_jwks_parse(const char *doc, size_t len, char *err, size_t errlen)
{
    parse_err e = {err, errlen, 0};
    json_error_t jerr;
    json_t *root = NULL, *keys;
    gw_jwks *set = NULL;
    size_t nkeys;
    char q[QUOTE_MAX];

    if (err && errlen > 0)
        err[0] = '\0';
    if (len > GW_JWKS_MAX_BYTES) {
        fail(&e, "over %d bytes", GW_JWKS_MAX_BYTES);
        goto fail;
    }
    root = json_loadb(doc, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        fail(&e, "not JSON: %s (line %d, column %d)", jerr.text, jerr.line, jerr.column);
        goto fail;
    }
    keys = json_object_get(root, "keys");
    if (!json_is_array(keys)) {
        fail(&e, "expected a JSON object with a \"keys\" array");
        goto fail;
    }
    nkeys = json_array_size(keys);
    if (nkeys > GW_JWKS_MAX_KEYS) {
        fail(&e, "%zu keys, at most %d accepted", nkeys, GW_JWKS_MAX_KEYS);
        goto fail;
    }
    set = calloc(1, sizeof *set + nkeys * sizeof set->keys[0]);
    if (set == NULL) {
        fail(&e, "out of memory");
        goto fail;
    }
    atomic_init(&set->refs, 1);
    for (size_t i = 0; i < nkeys; i++) {
        gw_jwk *k = &set->keys[set->count];
        bool skip;

        e.key = i + 1;
        if (!parse_key(json_array_get(keys, i), k, &skip, &e))
            goto fail;
        if (skip)
            continue;
        set->count++;
        for (size_t j = 0; j + 1 < set->count; j++) {
            if (set->keys[j].kid_len == k->kid_len && memcmp(set->keys[j].kid, k->kid, k->kid_len) == 0) {
                fail(&e, "kid %s repeats key %zu", quote(k->kid, k->kid_len, q), set->keys[j].position);
                goto fail;
            }
        }
    }
    e.key = 0;
    if (set->count == 0) {
        fail(&e, "no signing keys (RSA, or EC on P-256)");
        goto fail;
    }
    json_decref(root);
    return set;

fail:
    json_decref(root);
    gw_jwks_unref(set);
    return NULL;
}

gw_jwks *gw_jwks_ref(gw_jwks *set)
{
    atomic_fetch_add_explicit(&set->refs, 1, memory_order_relaxed);
    return set;
}

void gw_jwks_unref(gw_jwks *set)
{
    if (set == NULL)
        return;
    /* acq_rel: whatever a holder did with the set happens before the free below. */
    if (atomic_fetch_sub_explicit(&set->refs, 1, memory_order_acq_rel) != 1)
        return;
    for (size_t i = 0; i < set->count; i++)
        EVP_PKEY_free(set->keys[i].pkey);
    free(set);
}

size_t gw_jwks_count(const gw_jwks *set)
{
    return set->count;
}

const gw_jwk *gw_jwks_find(const gw_jwks *set, const char *kid, size_t kid_len)
{
    for (size_t i = 0; i < set->count; i++)
        if (set->keys[i].kid_len == kid_len && memcmp(set->keys[i].kid, kid, kid_len) == 0)
            return &set->keys[i];
    return NULL;
}

gw_jwk_alg gw_jwk_alg_of(const gw_jwk *key)
{
    return key->alg;
}

EVP_PKEY *gw_jwk_pkey(const gw_jwk *key)
{
    return key->pkey;
}
