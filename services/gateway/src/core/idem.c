#include "idem.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

static const char hex[] = "0123456789abcdef";

/* Writes digest[0..len) as lowercase hex at out, NUL-terminated. */
static void to_hex(const unsigned char *digest, unsigned int len, char *out)
{
    for (unsigned int i = 0; i < len; i++) {
        *out++ = hex[digest[i] >> 4];
        *out++ = hex[digest[i] & 15];
    }
    *out = '\0';
}

bool gw_idem_key_valid(const char *key, size_t len)
{
    return len <= GW_IDEM_KEY_MAX && cart_valid_event_id(key, len);
}

int gw_idem_event_id(const char *user_id, const char *key, size_t len, char out[CART_EVENT_ID_MAX + 1])
{
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int dlen = 0;
    EVP_MD_CTX *ctx;
    size_t at;
    int ok;

    out[0] = '\0';
    if (!gw_idem_key_valid(key, len))
        return -1;
    ctx = EVP_MD_CTX_new();
    ok = ctx != NULL && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 &&
         EVP_DigestUpdate(ctx, user_id, strlen(user_id)) == 1 && EVP_DigestUpdate(ctx, "\n", 1) == 1 &&
         EVP_DigestUpdate(ctx, key, len) == 1 && EVP_DigestFinal_ex(ctx, digest, &dlen) == 1 && dlen == 32;
    EVP_MD_CTX_free(ctx);
    if (!ok)
        return -1;
    at = strlen(GW_IDEM_PREFIX);
    memcpy(out, GW_IDEM_PREFIX, at);
    to_hex(digest, dlen, out + at);
    return 0;
}

/* True, with *out, when `v` is a real that holds an integer of the int64 range: integral and in
 * [-2^63, 2^63), where the conversion is exact. */
static bool real_as_integer(const json_t *v, json_int_t *out)
{
    double d;

    if (!json_is_real(v))
        return false;
    d = json_real_value(v);
    if (d != floor(d) || d < -9223372036854775808.0 || d >= 9223372036854775808.0)
        return false;
    *out = (json_int_t)d;
    return true;
}

/* Rewrites `v` (a copy the caller owns) so that each number in it is written by its value: a real
 * that holds an integer becomes that integer. 0, or -1 when out of memory. */
static int numbers_by_value(json_t *v)
{
    json_int_t n;

    if (json_is_object(v)) {
        for (void *it = json_object_iter(v); it != NULL; it = json_object_iter_next(v, it)) {
            json_t *m = json_object_iter_value(it);
            if (real_as_integer(m, &n) ? json_object_iter_set_new(v, it, json_integer(n)) != 0
                                       : numbers_by_value(m) != 0)
                return -1;
        }
    } else if (json_is_array(v)) {
        for (size_t i = 0; i < json_array_size(v); i++) {
            json_t *m = json_array_get(v, i);
            if (real_as_integer(m, &n) ? json_array_set_new(v, i, json_integer(n)) != 0 : numbers_by_value(m) != 0)
                return -1;
        }
    }
    return 0;
}

int gw_idem_fingerprint(const char *method, const char *path, const json_t *body, char out[GW_IDEM_FINGERPRINT_LEN + 1])
{
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int dlen = 0;
    EVP_MD_CTX *ctx = NULL;
    json_t *copy = NULL;
    char *canonical = NULL;
    int rc = -1;

    out[0] = '\0';
    if (body != NULL) {
        /* JSON_SORT_KEYS orders members by strcmp of their UTF-8 names; strings are written from
         * their values, so escapes in the request do not count. */
        copy = json_deep_copy(body);
        if (copy == NULL || numbers_by_value(copy) != 0 ||
            (canonical = json_dumps(copy, JSON_COMPACT | JSON_SORT_KEYS)) == NULL)
            goto out;
    }
    ctx = EVP_MD_CTX_new();
    if (ctx == NULL || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1 ||
        EVP_DigestUpdate(ctx, method, strlen(method)) != 1 || EVP_DigestUpdate(ctx, " ", 1) != 1 ||
        EVP_DigestUpdate(ctx, path, strlen(path)) != 1 || EVP_DigestUpdate(ctx, "\n", 1) != 1 ||
        (canonical && EVP_DigestUpdate(ctx, canonical, strlen(canonical)) != 1) ||
        EVP_DigestFinal_ex(ctx, digest, &dlen) != 1 || dlen * 2 != GW_IDEM_FINGERPRINT_LEN)
        goto out;
    to_hex(digest, dlen, out);
    rc = 0;
out:
    EVP_MD_CTX_free(ctx);
    free(canonical);
    json_decref(copy);
    return rc;
}
