/*
 * fuzz_config: cart_config_load for both roles, with the environment read from the input as
 * NAME=VALUE lines (the first line of a name wins; a line without '=' is skipped). Must never
 * crash or leak; on success the configuration holds together, on failure there is one line of
 * error, nothing to release, and no secret in it: with other values of the same shape for
 * AUTH_JWT_SECRET and the password of REDIS_URL, the error reads the same.
 */
#define _POSIX_C_SOURCE 200809L
#include "cartshard/config.h"
#include "fuzz.h"

#define MAX_VARS 64

typedef struct env {
    char *name[MAX_VARS];
    char *value[MAX_VARS];
    size_t n;
} env;

static const char *lookup(const char *name, void *ud)
{
    const env *e = ud;

    for (size_t i = 0; i < e->n; i++) {
        if (strcmp(e->name[i], name) == 0)
            return e->value[i];
    }
    return NULL;
}

/* Another character of the same kind for a secret's stand-in: a hex digit for a hex digit, a
 * letter for a letter, '0' and anything else kept, so that %-escapes (and %00) parse alike. */
static char other(char c)
{
    if ((c >= '1' && c <= '8') || (c >= 'a' && c <= 'e') || (c >= 'A' && c <= 'E') || (c >= 'g' && c <= 'y') ||
        (c >= 'G' && c <= 'Y'))
        return (char)(c + 1);
    return c == '9' ? '1' : c == 'f' ? 'a' : c == 'F' ? 'A' : c == 'z' ? 'g' : c == 'Z' ? 'G' : c;
}

/* Changes the secrets of `e` in place: the value of AUTH_JWT_SECRET (only its length counts) and
 * the password of REDIS_URL (redis://:password@..., up to the last '@' before the first '/'). */
static void change_secrets(env *e)
{
    char *jwt = (char *)lookup("AUTH_JWT_SECRET", e), *url = (char *)lookup("REDIS_URL", e);

    for (char *p = jwt; p && *p; p++)
        *p = *p == 'Q' ? 'R' : 'Q';
    if (url != NULL && strncmp(url, "redis://:", 9) == 0) {
        char *end = url + 9 + strcspn(url + 9, "/"), *at = NULL;
        for (char *p = url + 9; p < end; p++) {
            if (*p == '@')
                at = p;
        }
        for (char *p = url + 9; at && p < at; p++)
            *p = other(*p);
    }
}

static void check_loaded(const cart_config *c, cart_config_role role, const env *e)
{
    const char *secret = lookup("AUTH_JWT_SECRET", (void *)e);

    FUZZ_CHECK(c->nats_url && c->redis_url && c->redis_host);
    FUZZ_CHECK(c->redis_port >= 1 && c->redis_port <= 65535);
    FUZZ_CHECK(c->redis_db >= 0 && c->redis_db <= 65535);
    FUZZ_CHECK(c->nshards >= 1 && c->nshards <= CART_CONFIG_MAX_SHARDS);
    FUZZ_CHECK(c->nshards <= c->partitions && c->partitions <= 65536);
    for (uint32_t i = 0; i < CART_CONFIG_MAX_SHARDS; i++)
        FUZZ_CHECK((c->shard_dsns[i] != NULL) == (i < c->nshards));
    FUZZ_CHECK(c->max_quantity >= 1 && c->max_lines >= 1);
    if (role == CART_ROLE_GATEWAY) {
        FUZZ_CHECK(c->gateway_host && c->gateway_id && !c->store_id && !c->store_admin_host);
        FUZZ_CHECK(c->gateway_threads >= 1 && c->gateway_threads <= 256);
        FUZZ_CHECK((c->gateway_tls_cert == NULL) == (c->gateway_tls_key == NULL));
        FUZZ_CHECK((c->auth_jwt_secret != NULL) == (secret != NULL && *secret));
        FUZZ_CHECK(c->auth_jwt_secret == NULL || strlen(c->auth_jwt_secret) >= 32);
    } else {
        FUZZ_CHECK(c->store_id && c->store_admin_host && !c->gateway_id && !c->gateway_host);
        FUZZ_CHECK(c->idle_ttl_ms >= 60000 && c->idle_ttl_ms <= 3650LL * 86400 * 1000);
    }
}

static void load(cart_config_role role, env *e)
{
    static const cart_config zero;
    cart_config c;
    char err[256], again[256];
    cart_status st;

    memset(&c, 0xa5, sizeof c);
    st = cart_config_load(&c, role, lookup, e, err, sizeof err);
    if (st == CART_OK) {
        check_loaded(&c, role, e);
        cart_config_cleanup(&c);
        cart_config_cleanup(&c);
        return;
    }
    FUZZ_CHECK(st == CART_ERR_INVALID);
    FUZZ_CHECK(memcmp(&c, &zero, sizeof c) == 0);
    FUZZ_CHECK(err[0] != '\0' && strchr(err, '\n') == NULL);
    /* No secret is echoed: with other secrets of the same shape, the error reads the same. */
    change_secrets(e);
    FUZZ_CHECK(cart_config_load(&c, role, lookup, e, again, sizeof again) == st);
    if (strcmp(err, again) != 0)
        fprintf(stderr, "fuzz_config: the error depends on a secret:\n  %s\n  %s\n", err, again);
    FUZZ_CHECK(strcmp(err, again) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_input in = {data, size};
    env e = {{NULL}, {NULL}, 0};
    const char *line;
    size_t len;

    while (e.n < MAX_VARS && (line = fuzz_field(&in, '\n', &len)) != NULL) {
        const char *eq = memchr(line, '=', len);
        if (eq == NULL)
            continue;
        /* A NUL inside cuts the name or value short, as in a real environment. */
        e.name[e.n] = fuzz_strndup(line, (size_t)(eq - line));
        e.value[e.n] = fuzz_strndup(eq + 1, len - (size_t)(eq + 1 - line));
        e.n++;
    }
    load(CART_ROLE_GATEWAY, &e);
    load(CART_ROLE_STORE, &e);
    for (size_t i = 0; i < e.n; i++) {
        free(e.name[i]);
        free(e.value[i]);
    }
    return 0;
}
