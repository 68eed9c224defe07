/*
 * fuzz_jwt: the gateway's JWT verifier under a fixed secret. A fuzzer cannot forge an HMAC, so
 * bit 0 of the first input byte picks what the rest is:
 *   even: an Authorization header value, through gw_jwt_bearer and then gw_jwt_verify as is;
 *   odd:  a header JSON and a payload JSON separated by '\n', which the harness encodes and signs
 *         with the secret, so the claims checks behind the signature get fuzzed too.
 * Bit 1 of it adds an issuer and an audience to check ("fuzz-issuer", "fuzz-audience"). The next 8
 * bytes are `now` (seconds, big-endian). Oracles: the documented result set, `sub`
 * valid on OK and empty otherwise, always a reason; and for a token the harness signed, never
 * BAD_SIGNATURE, and never MALFORMED for its shape or base64.
 */
#define _POSIX_C_SOURCE 200809L
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "fuzz.h"
#include "jwt.h"

static const unsigned char SECRET[] = "cartshard-fuzz-secret-of-32-byte";
#define SECRET_LEN (sizeof SECRET - 1)
static const gw_jwt_keys SECRET_ONLY = {.secret = SECRET, .secret_len = SECRET_LEN};
static const gw_jwt_keys WITH_CLAIMS = {
    .secret = SECRET, .secret_len = SECRET_LEN, .issuer = "fuzz-issuer", .audience = "fuzz-audience"};
static const gw_jwt_keys *keys = &SECRET_ONLY; /* this input's */

/* Appends base64url without padding of in[0..len) at out; returns the length written. */
static size_t b64url(const unsigned char *in, size_t len, char *out)
{
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0, i = 0;

    for (; i + 3 <= len; i += 3) {
        unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8 | in[i + 2];
        out[o++] = abc[v >> 18 & 63];
        out[o++] = abc[v >> 12 & 63];
        out[o++] = abc[v >> 6 & 63];
        out[o++] = abc[v & 63];
    }
    if (len - i == 1) {
        unsigned v = (unsigned)in[i] << 16;
        out[o++] = abc[v >> 18 & 63];
        out[o++] = abc[v >> 12 & 63];
    } else if (len - i == 2) {
        unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8;
        out[o++] = abc[v >> 18 & 63];
        out[o++] = abc[v >> 12 & 63];
        out[o++] = abc[v >> 6 & 63];
    }
    return o;
}

static gw_jwt_result verify(const char *token, size_t len, int64_t now)
{
    char sub[CART_ID_MAX + 1];
    const char *why = NULL;
    gw_jwt_result r;

    memset(sub, 'x', sizeof sub);
    r = gw_jwt_verify(token, len, keys, now, sub, &why);
    FUZZ_CHECK(r >= GW_JWT_OK && r < GW_JWT_INTERNAL);
    FUZZ_CHECK(strcmp(gw_jwt_result_name(r), "unknown") != 0);
    FUZZ_CHECK(why != NULL && why[0] != '\0');
    if (r == GW_JWT_OK)
        FUZZ_CHECK(cart_valid_id(sub, strnlen(sub, sizeof sub)) && strlen(sub) < sizeof sub);
    else
        FUZZ_CHECK(sub[0] == '\0');
    return r;
}

static void raw(const uint8_t *data, size_t size, int64_t now)
{
    const char *token;
    size_t len;

    verify((const char *)data, size, now);
    if (gw_jwt_bearer((const char *)data, size, &token, &len)) {
        FUZZ_CHECK(len >= 1 && token >= (const char *)data && token + len <= (const char *)data + size);
        FUZZ_CHECK(memchr(token, ' ', len) == NULL && memchr(token, '\t', len) == NULL);
        verify(token, len, now);
    }
}

static void signed_token(const uint8_t *data, size_t size, int64_t now)
{
    fuzz_input in = {data, size};
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len = 0;
    const char *hdr, *pay;
    size_t hdr_len, pay_len, o;
    char *token;
    gw_jwt_result r;

    hdr = fuzz_field(&in, '\n', &hdr_len);
    pay = fuzz_field(&in, '\n', &pay_len);
    if (hdr == NULL || pay == NULL)
        return;
    token = malloc((hdr_len + pay_len + 2) / 3 * 4 + 8 + 48);
    FUZZ_CHECK(token != NULL);
    o = b64url((const unsigned char *)hdr, hdr_len, token);
    token[o++] = '.';
    o += b64url((const unsigned char *)pay, pay_len, token + o);
    FUZZ_CHECK(HMAC(EVP_sha256(), SECRET, (int)SECRET_LEN, (const unsigned char *)token, o, mac, &mac_len) != NULL);
    token[o++] = '.';
    o += b64url(mac, mac_len, token + o);
    r = verify(token, o, now);
    FUZZ_CHECK(r != GW_JWT_BAD_SIGNATURE);
    if (r == GW_JWT_MALFORMED && hdr_len > 0 && pay_len > 0 && o <= GW_JWT_MAX_LEN) {
        char sub[CART_ID_MAX + 1];
        const char *why;
        gw_jwt_verify(token, o, keys, now, sub, &why);
        FUZZ_CHECK(strcmp(why, "invalid base64url") != 0 && strcmp(why, "not three dot-separated parts") != 0);
    }
    free(token);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint64_t now = 0;

    if (size < 9)
        return 0;
    for (int i = 1; i <= 8; i++)
        now = now << 8 | data[i];
    keys = data[0] & 2 ? &WITH_CLAIMS : &SECRET_ONLY;
    if (data[0] & 1)
        signed_token(data + 9, size - 9, (int64_t)now);
    else
        raw(data + 9, size - 9, (int64_t)now);
    return 0;
}
