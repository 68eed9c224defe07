#include "jose_fixture.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/hmac.h>

EVP_PKEY *fx_rsa_key(unsigned int bits)
{
    EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)bits);

    ck_assert_ptr_nonnull(key);
    return key;
}

EVP_PKEY *fx_ec_key(void)
{
    EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");

    ck_assert_ptr_nonnull(key);
    return key;
}

size_t fx_b64url(const void *in, size_t len, char *out)
{
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const unsigned char *p = in;
    unsigned int acc = 0, bits = 0;
    size_t n = 0;

    for (size_t i = 0; i < len; i++) {
        acc = (acc << 8 | p[i]) & 0xffff;
        bits += 8;
        while (bits >= 6) {
            bits -= 6;
            out[n++] = abc[(acc >> bits) & 63];
        }
    }
    if (bits > 0)
        out[n++] = abc[(acc << (6 - bits)) & 63];
    out[n] = '\0';
    return n;
}

/* The big-endian bytes of key's BIGNUM parameter `name`, left-padded to `pad` bytes (0: none),
 * as base64url. */
static char *bn_param(EVP_PKEY *key, const char *name, int pad)
{
    BIGNUM *bn = NULL;
    unsigned char bytes[FX_SIG_MAX];
    char *out = malloc(sizeof bytes * 2);
    int n;

    ck_assert_ptr_nonnull(out);
    ck_assert_int_eq(EVP_PKEY_get_bn_param(key, name, &bn), 1);
    n = pad > 0 ? BN_bn2binpad(bn, bytes, pad) : BN_bn2bin(bn, bytes);
    ck_assert_int_gt(n, 0);
    fx_b64url(bytes, (size_t)n, out);
    BN_free(bn);
    return out;
}

char *fx_jwk_members(EVP_PKEY *key)
{
    char *out = malloc(4 * FX_SIG_MAX), *a, *b;
    bool rsa = EVP_PKEY_is_a(key, "RSA");

    ck_assert_ptr_nonnull(out);
    a = bn_param(key, rsa ? OSSL_PKEY_PARAM_RSA_N : OSSL_PKEY_PARAM_EC_PUB_X, rsa ? 0 : 32);
    b = bn_param(key, rsa ? OSSL_PKEY_PARAM_RSA_E : OSSL_PKEY_PARAM_EC_PUB_Y, rsa ? 0 : 32);
    if (rsa)
        snprintf(out, 4 * FX_SIG_MAX, "\"kty\":\"RSA\",\"n\":\"%s\",\"e\":\"%s\"", a, b);
    else
        snprintf(out, 4 * FX_SIG_MAX, "\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"%s\",\"y\":\"%s\"", a, b);
    free(a);
    free(b);
    return out;
}

char *fx_signing_input(const char *header, const char *payload)
{
    size_t hl = strlen(header), pl = strlen(payload);
    char *t = malloc((hl + pl) * 4 / 3 + FX_SIG_MAX * 4 / 3 + 16);
    size_t n;

    ck_assert_ptr_nonnull(t);
    n = fx_b64url(header, hl, t);
    t[n++] = '.';
    fx_b64url(payload, pl, t + n);
    return t;
}

void fx_append_sig(char *token, const unsigned char *sig, size_t len)
{
    size_t n = strlen(token);

    token[n++] = '.';
    fx_b64url(sig, len, token + n);
}

size_t fx_sign(EVP_PKEY *key, const char *input, size_t len, unsigned char sig[FX_SIG_MAX], bool der)
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned char buf[FX_SIG_MAX];
    size_t n = sizeof buf;
    const unsigned char *p = buf;
    const BIGNUM *r, *s;
    ECDSA_SIG *es;

    ck_assert_ptr_nonnull(md);
    ck_assert_int_eq(EVP_DigestSignInit_ex(md, NULL, "SHA256", NULL, NULL, key, NULL), 1);
    ck_assert_int_eq(EVP_DigestSign(md, buf, &n, (const unsigned char *)input, len), 1);
    EVP_MD_CTX_free(md);
    if (EVP_PKEY_is_a(key, "RSA") || der) {
        memcpy(sig, buf, n);
        return n;
    }
    /* RFC 7518 section 3.4: ES256 is r || s, 32 bytes each, not OpenSSL's DER. */
    es = d2i_ECDSA_SIG(NULL, &p, (long)n);
    ck_assert_ptr_nonnull(es);
    ECDSA_SIG_get0(es, &r, &s);
    ck_assert_int_eq(BN_bn2binpad(r, sig, 32), 32);
    ck_assert_int_eq(BN_bn2binpad(s, sig + 32, 32), 32);
    ECDSA_SIG_free(es);
    return 64;
}

char *fx_token(const char *header, const char *payload, EVP_PKEY *key)
{
    char *t = fx_signing_input(header, payload);
    unsigned char sig[FX_SIG_MAX];

    fx_append_sig(t, sig, fx_sign(key, t, strlen(t), sig, false));
    return t;
}

char *fx_hs256_token(const char *header, const char *payload, const void *secret, size_t len)
{
    char *t = fx_signing_input(header, payload);
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len = 0;

    ck_assert_ptr_nonnull(HMAC(EVP_sha256(), secret, (int)len, (unsigned char *)t, strlen(t), mac, &mac_len));
    fx_append_sig(t, mac, mac_len);
    return t;
}
