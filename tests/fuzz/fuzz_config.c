/*
 * fuzz_config: cart_config_load for both roles, with the environment read from the input as
 * NAME=VALUE lines (the first line of a name wins; a line without '=' is skipped). Must never
 * crash or leak; on success the configuration holds together, on failure there is one line of
 * error, nothing to release, and no secret (AUTH_JWT_SECRET, the password of REDIS_URL) in it.
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

/* The password of a redis://:password@host URL as written (still %-encoded), or NULL. */
static char *redis_password(const char *url)
{
    const char *auth, *at, *slash;

    if (url == NULL || strncmp(url, "redis://:", 9) != 0)
        return NULL;
    auth = url + 9;
    slash = strchr(auth, '/');
    at = NULL;
    for (const char *p = auth; *p && (slash == NULL || p < slash); p++) {
        if (*p == '@')
            at = p;
    }
    return at ? fuzz_strndup(auth, (size_t)(at - auth)) : NULL;
}

/* The secret from variable `owner` is not echoed. Short secrets could match by chance, and one that
 * is also part of another variable's value may be quoted as that value: neither is checked. */
static void check_not_echoed(const char *err, const char *secret, const env *e, const char *owner)
{
    if (secret == NULL || strlen(secret) < 8)
        return;
    for (size_t i = 0; i < e->n; i++) {
        if (strcmp(e->name[i], owner) != 0 && strstr(e->value[i], secret) != NULL)
            return;
    }
    FUZZ_CHECK(strstr(err, secret) == NULL);
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
    char err[256];
    char *password;
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
    check_not_echoed(err, lookup("AUTH_JWT_SECRET", e), e, "AUTH_JWT_SECRET");
    password = redis_password(lookup("REDIS_URL", e));
    check_not_echoed(err, password, e, "REDIS_URL");
    free(password);
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
