#include "idem.h"

#include <string.h>

#include <openssl/evp.h>

bool gw_idem_key_valid(const char *key, size_t len)
{
    return len <= GW_IDEM_KEY_MAX && cart_valid_event_id(key, len);
}

int gw_idem_event_id(const char *user_id, const char *key, size_t len, char out[CART_EVENT_ID_MAX + 1])
{
    static const char hex[] = "0123456789abcdef";
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
    for (unsigned int i = 0; i < dlen; i++) {
        out[at++] = hex[digest[i] >> 4];
        out[at++] = hex[digest[i] & 15];
    }
    out[at] = '\0';
    return 0;
}
