#define _POSIX_C_SOURCE 200809L
#include <check.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jose_fixture.h"
#include "jwks.h"

/* Keys made when the suite starts, and their public JWK members (jose_fixture.c). */
static EVP_PKEY *rsa_key, *rsa_small, *ec_key;
static char *rsa, *small, *ec;

static void make_keys(void)
{
    rsa_key = fx_rsa_key(2048);
    rsa_small = fx_rsa_key(1024);
    ec_key = fx_ec_key();
    rsa = fx_jwk_members(rsa_key);
    small = fx_jwk_members(rsa_small);
    ec = fx_jwk_members(ec_key);
}

static void free_keys(void)
{
    free(rsa);
    free(small);
    free(ec);
    EVP_PKEY_free(rsa_key);
    EVP_PKEY_free(rsa_small);
    EVP_PKEY_free(ec_key);
}

static char doc[65536], err[256];

/* Formats the document into `doc`. */
static const char *jwks_doc(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static const char *jwks_doc(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    ck_assert_int_lt(vsnprintf(doc, sizeof doc, fmt, ap), (int)sizeof doc);
    va_end(ap);
    return doc;
}

/* The message for a document that must be refused. */
static const char *refused(const char *d)
{
    gw_jwks *set = gw_jwks_parse(d, strlen(d), err, sizeof err);

    if (set != NULL) {
        gw_jwks_unref(set);
        ck_abort_msg("accepted: %s", d);
    }
    ck_assert_ptr_null(strchr(err, '\n'));
    return err;
}

static gw_jwks *accepted(const char *d)
{
    gw_jwks *set = gw_jwks_parse(d, strlen(d), err, sizeof err);

    ck_assert_msg(set != NULL, "refused: %s", err);
    return set;
}

START_TEST(test_valid_set)
{
    /* Keycloak's shape: a signing key and an encryption key ("use": "enc", skipped), with x5c. */
    gw_jwks *set = accepted(jwks_doc("{\"keys\":["
                                     "{\"kid\":\"rsa-1\",\"use\":\"sig\",\"alg\":\"RS256\",\"x5c\":[\"MIIC\"],%s},"
                                     "{\"kid\":\"enc-1\",\"use\":\"enc\",\"alg\":\"RSA-OAEP\",%s},"
                                     "{\"kid\":\"ec-1\",\"alg\":\"ES256\",%s},"
                                     "{\"kid\":\"ec-2\",\"use\":\"sig\",\"key_ops\":[\"verify\"],%s}]}",
                                     rsa, rsa, ec, ec));
    const gw_jwk *k;

    ck_assert_uint_eq(gw_jwks_count(set), 3);
    k = gw_jwks_find(set, "rsa-1", 5);
    ck_assert_ptr_nonnull(k);
    ck_assert_int_eq(gw_jwk_alg_of(k), GW_JWK_RS256);
    ck_assert(EVP_PKEY_eq(gw_jwk_pkey(k), rsa_key) == 1);
    k = gw_jwks_find(set, "ec-2", 4);
    ck_assert_ptr_nonnull(k);
    ck_assert_int_eq(gw_jwk_alg_of(k), GW_JWK_ES256);
    ck_assert(EVP_PKEY_eq(gw_jwk_pkey(k), ec_key) == 1);
    ck_assert_ptr_null(gw_jwks_find(set, "enc-1", 5));
    ck_assert_ptr_null(gw_jwks_find(set, "rsa-", 4));
    ck_assert_ptr_null(gw_jwks_find(set, "rsa-12", 6));

    /* References: the set lives until the last one is dropped. */
    ck_assert_ptr_eq(gw_jwks_ref(set), set);
    gw_jwks_unref(set);
    ck_assert_uint_eq(gw_jwks_count(set), 3);
    gw_jwks_unref(set);
    gw_jwks_unref(NULL);

    /* Entra's shape: no alg, no use, extra members. */
    set =
        accepted(jwks_doc("{\"keys\":[{\"kty\":\"RSA\",\"kid\":\"e1\",\"x5t\":\"x\",\"issuer\":\"i\",%s}]}", rsa + 12));
    gw_jwks_unref(set);
}
END_TEST

START_TEST(test_document)
{
    ck_assert_str_eq(refused(""), "not JSON: '[' or '{' expected near end of file (line 1, column 0)");
    ck_assert_int_eq(strncmp(refused("{\"keys\":[]"), "not JSON: ", 10), 0);
    ck_assert_str_eq(refused("[]"), "expected a JSON object with a \"keys\" array");
    ck_assert_str_eq(refused("{\"keys\":{}}"), "expected a JSON object with a \"keys\" array");
    ck_assert_str_eq(refused("{\"key\":[]}"), "expected a JSON object with a \"keys\" array");
    ck_assert_int_eq(strncmp(refused("{\"keys\":[],\"keys\":[]}"), "not JSON: ", 10), 0); /* a repeated member */
    ck_assert_str_eq(refused("{\"keys\":[]}"), "no signing keys (RSA, or EC on P-256)");
    ck_assert_str_eq(refused(jwks_doc("{\"keys\":[{\"kid\":\"e\",\"use\":\"enc\",%s}]}", rsa)),
                     "no signing keys (RSA, or EC on P-256)");
    ck_assert_str_eq(refused("{\"keys\":[1]}"), "key 1: not a JSON object");

    /* At most GW_JWKS_MAX_KEYS keys, and GW_JWKS_MAX_BYTES bytes. */
    size_t n = (size_t)snprintf(doc, sizeof doc, "{\"keys\":[");
    for (int i = 0; i <= GW_JWKS_MAX_KEYS; i++)
        n += (size_t)snprintf(doc + n, sizeof doc - n, "%s{\"kid\":\"k%d\",%s}", i ? "," : "", i, ec);
    snprintf(doc + n, sizeof doc - n, "]}");
    ck_assert_str_eq(refused(doc), "65 keys, at most 64 accepted");
    char *big = calloc(1, GW_JWKS_MAX_BYTES + 2);
    ck_assert_ptr_nonnull(big);
    memset(big, ' ', GW_JWKS_MAX_BYTES + 1);
    ck_assert_ptr_null(gw_jwks_parse(big, GW_JWKS_MAX_BYTES + 1, err, sizeof err));
    ck_assert_str_eq(err, "over 1048576 bytes");
    free(big);
    /* No room for a message is fine too. */
    ck_assert_ptr_null(gw_jwks_parse("[]", 2, NULL, 0));
}
END_TEST

START_TEST(test_unsupported_keys)
{
    /* Each names the key, counted from 1. */
    ck_assert_str_eq(
        refused(jwks_doc("{\"keys\":[{\"kid\":\"a\",%s},{\"kty\":\"oct\",\"kid\":\"h\",\"k\":\"c2VjcmV0\"}]}", ec)),
        "key 2: unsupported kty \"oct\"");
    ck_assert_str_eq(refused("{\"keys\":[{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"kid\":\"o\",\"x\":\"AAAA\"}]}"),
                     "key 1: unsupported kty \"OKP\"");
    ck_assert_str_eq(refused("{\"keys\":[{\"kty\":\"rsa\",\"kid\":\"r\"}]}"), "key 1: unsupported kty \"rsa\"");
    ck_assert_str_eq(refused("{\"keys\":[{\"kty\":\"a\\\"b\\nc0123456789012345678901234567890123456789\"}]}"),
                     "key 1: unsupported kty \"a?b?c0123456789012345678901234567\"...");
    /* A key's alg, when present, is the one its kty verifies. */
    static const struct {
        const char *alg;
        bool rsa;
        const char *message;
    } algs[] = {{"RS384", true, "key 1: unsupported alg \"RS384\" for kty RSA (RS256 only)"},
                {"ES256", true, "key 1: unsupported alg \"ES256\" for kty RSA (RS256 only)"},
                {"RS256", false, "key 1: unsupported alg \"RS256\" for kty EC (ES256 only)"},
                {"HS256", false, "key 1: unsupported alg \"HS256\" for kty EC (ES256 only)"}};
    for (size_t i = 0; i < sizeof algs / sizeof algs[0]; i++)
        ck_assert_str_eq(
            refused(jwks_doc("{\"keys\":[{\"kid\":\"a\",\"alg\":\"%s\",%s}]}", algs[i].alg, algs[i].rsa ? rsa : ec)),
            algs[i].message);
    ck_assert_str_eq(refused(jwks_doc("{\"keys\":[{\"kid\":\"a\",\"use\":\"verify\",%s}]}", ec)),
                     "key 1: unsupported use \"verify\"");
    ck_assert_str_eq(refused("{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-384\",\"kid\":\"a\",\"x\":\"AA\",\"y\":\"AA\"}]}"),
                     "key 1: unsupported crv \"P-384\"");
    ck_assert_str_eq(refused(jwks_doc("{\"keys\":[{\"kid\":\"a\",%s}]}", small)),
                     "key 1: an RSA modulus of 1024 bits (2048 to 8192 accepted)");
    ck_assert_str_eq(refused(jwks_doc("{\"keys\":[{\"kid\":\"a\",\"d\":\"AQAB\",%s}]}", ec)),
                     "key 1: holds a private key (\"d\"): the file must hold public keys only");
}
END_TEST

START_TEST(test_malformed_keys)
{
    char kid[GW_JWK_KID_MAX + 2];

    ck_assert_str_eq(refused("{\"keys\":[{\"kid\":\"a\"}]}"), "key 1: kty missing");
    ck_assert_str_eq(refused("{\"keys\":[{\"kty\":1}]}"), "key 1: kty is not a string");
    ck_assert_str_eq(refused("{\"keys\":[{\"kty\":\"EC\",\"use\":1}]}"), "key 1: use is not a string");
    ck_assert_str_eq(refused(jwks_doc("{\"keys\":[{%s}]}", ec)), "key 1: kid missing");
    ck_assert_str_eq(refused(jwks_doc("{\"keys\":[{\"kid\":7,%s}]}", ec)), "key 1: kid is not a string");
    ck_assert_str_eq(refused(jwks_doc("{\"keys\":[{\"kid\":\"\",%s}]}", ec)), "key 1: kid must be 1 to 256 bytes");
    memset(kid, 'k', sizeof kid - 1);
    kid[sizeof kid - 1] = '\0';
    ck_assert_str_eq(refused(jwks_doc("{\"keys\":[{\"kid\":\"%s\",%s}]}", kid, ec)),
                     "key 1: kid must be 1 to 256 bytes");
    kid[sizeof kid - 2] = '\0'; /* 256 bytes: the longest accepted */
    gw_jwks_unref(accepted(jwks_doc("{\"keys\":[{\"kid\":\"%s\",%s}]}", kid, ec)));
    ck_assert_str_eq(
        refused(jwks_doc("{\"keys\":[{\"kid\":\"a\",%s},{\"kid\":\"b\",%s},{\"kid\":\"a\",%s}]}", ec, rsa, rsa)),
        "key 3: kid \"a\" repeats key 1");
    /* An encryption key does not count as a repeat: it is skipped. */
    gw_jwks_unref(accepted(jwks_doc("{\"keys\":[{\"kid\":\"a\",\"use\":\"enc\",%s},{\"kid\":\"a\",%s}]}", rsa, rsa)));
    ck_assert_str_eq(refused(jwks_doc("{\"keys\":[{\"kid\":\"a\",\"alg\":1,%s}]}", rsa)), "key 1: alg is not a string");

    /* RSA: n and e, base64url. */
    ck_assert_str_eq(refused("{\"keys\":[{\"kty\":\"RSA\",\"kid\":\"a\",\"e\":\"AQAB\"}]}"), "key 1: n missing");
    ck_assert_str_eq(refused("{\"keys\":[{\"kty\":\"RSA\",\"kid\":\"a\",\"n\":\"a+b/\",\"e\":\"AQAB\"}]}"),
                     "key 1: n is not base64url of 1 to 1025 bytes");
    ck_assert_str_eq(refused("{\"keys\":[{\"kty\":\"RSA\",\"kid\":\"a\",\"n\":\"\",\"e\":\"AQAB\"}]}"),
                     "key 1: n is not base64url of 1 to 1025 bytes");
    /* "e" replaced: rsa holds ..."e":"AQAB" at its end. */
    char *no_e = strdup(rsa);
    ck_assert_ptr_nonnull(no_e);
    *strstr(no_e, ",\"e\":") = '\0';
    ck_assert_str_eq(refused(jwks_doc("{\"keys\":[{\"kid\":\"a\",%s}]}", no_e)), "key 1: e missing");
    ck_assert_str_eq(refused(jwks_doc("{\"keys\":[{\"kid\":\"a\",%s,\"e\":\"AQAB=\"}]}", no_e)),
                     "key 1: e is not base64url of 1 to 32 bytes");
    /* An even exponent is no RSA key. */
    ck_assert_str_eq(refused(jwks_doc("{\"keys\":[{\"kid\":\"a\",%s,\"e\":\"AQAA\"}]}", no_e)),
                     "key 1: OpenSSL refuses n and e as an RSA public key");
    free(no_e);

    /* EC: crv, then x and y, 32 bytes each, a point on the curve. */
    ck_assert_str_eq(refused("{\"keys\":[{\"kty\":\"EC\",\"kid\":\"a\",\"x\":\"AA\",\"y\":\"AA\"}]}"),
                     "key 1: crv missing");
    char *moved = strdup(ec);
    ck_assert_ptr_nonnull(moved);
    char *y = strstr(moved, "\"y\":\"") + 5;
    *y = *y == 'A' ? 'B' : 'A';
    ck_assert_str_eq(refused(jwks_doc("{\"keys\":[{\"kid\":\"a\",%s}]}", moved)),
                     "key 1: x and y are not a point on P-256");
    free(moved);
    ck_assert_str_eq(
        refused("{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"kid\":\"a\",\"x\":\"AAAA\",\"y\":\"AAAA\"}]}"),
        "key 1: x and y must be 32 bytes each on P-256");
    ck_assert_str_eq(refused("{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"kid\":\"a\",\"x\":"
                             "\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\",\"y\":\"AA\"}]}"),
                     "key 1: x is not base64url of 1 to 32 bytes");
    ck_assert_str_eq(refused("{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"kid\":\"a\",\"x\":\"AA\"}]}"),
                     "key 1: y missing");
}
END_TEST

static Suite *jwks_suite(void)
{
    Suite *s = suite_create("jwks");
    TCase *tc = tcase_create("core");
    tcase_add_unchecked_fixture(tc, make_keys, free_keys);
    tcase_add_test(tc, test_valid_set);
    tcase_add_test(tc, test_document);
    tcase_add_test(tc, test_unsupported_keys);
    tcase_add_test(tc, test_malformed_keys);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(jwks_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
