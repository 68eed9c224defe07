/*
 * config.c: settings from environment variables.
 *
 * Every variable is read through a cart_env_fn and checked before anything starts, so a typo
 * stops the process at once with one line naming the variable, instead of surfacing later as a
 * connection failure. Values that may hold secrets (passwords in URLs and DSNs, the JWT secret)
 * are never echoed back in an error.
 *
 * The whole configuration is built in a local struct and copied out only on success, so a
 * failure releases everything in one place and leaves the caller nothing to clean up.
 */
#define _POSIX_C_SOURCE 200809L
#include "cartshard/config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define DEFAULT_NATS_URL  "nats://127.0.0.1:4222"
#define DEFAULT_REDIS_URL "redis://127.0.0.1:6380"
#define DEFAULT_SHARD_DSNS                                                                                             \
    "postgresql://postgres@127.0.0.1:5433/cartshard,postgresql://postgres@127.0.0.1:5434/cartshard"
#define DEFAULT_LISTEN   "0.0.0.0"
#define DEFAULT_IDLE_TTL "30d"

#define REDIS_DEFAULT_PORT 6379
#define REDIS_MAX_DB       65535
#define ID_MAX             64
#define HOST_MAX           255
#define JWT_SECRET_MIN     32
#define CLAIM_MAX          1024 /* longest AUTH_ISSUER or AUTH_AUDIENCE */
#define IDLE_TTL_MIN_S     60LL
#define IDLE_TTL_MAX_S     (3650LL * 86400) /* ten years: anything longer is surely a typo */
#define REDIS_PASSWORD_MAX 512              /* longest password REDIS_PASSWORD_FILE may hold */

#ifdef __GNUC__
#define PRINTF_LIKE(f, a) __attribute__((format(printf, f, a)))
#else
#define PRINTF_LIKE(f, a)
#endif

/* Where the variables come from and where an error goes. */
typedef struct loader {
    cart_env_fn env;
    void *ud;
    char *err;
    size_t errlen;
} loader;

static cart_status fail(loader *ld, const char *fmt, ...) PRINTF_LIKE(2, 3);

/* Writes the one-line error message and returns CART_ERR_INVALID. */
static cart_status fail(loader *ld, const char *fmt, ...)
{
    va_list ap;

    if (ld->err && ld->errlen > 0) {
        va_start(ap, fmt);
        vsnprintf(ld->err, ld->errlen, fmt, ap);
        va_end(ap);
    }
    return CART_ERR_INVALID;
}

static cart_status nomem(loader *ld)
{
    if (ld->err && ld->errlen > 0)
        snprintf(ld->err, ld->errlen, "out of memory while reading the configuration");
    return CART_ERR_NOMEM;
}

/* Quotes a bad value for an error message: printable, escaped, at most about 60 bytes. */
#define QUOTE_MAX 80
static const char *quote(const char *v, char out[QUOTE_MAX])
{
    size_t o = 0;

    out[o++] = '"';
    for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
        if (o > 56) {
            memcpy(out + o, "\"...", 5);
            return out;
        }
        if (*p == '"' || *p == '\\') {
            out[o++] = '\\';
            out[o++] = (char)*p;
        } else if (*p < 0x20 || *p >= 0x7f) {
            snprintf(out + o, QUOTE_MAX - o, "\\x%02x", *p);
            o += 4;
        } else {
            out[o++] = (char)*p;
        }
    }
    out[o++] = '"';
    out[o] = '\0';
    return out;
}

static const char *lookup(loader *ld, const char *name)
{
    return ld->env(name, ld->ud);
}

/* Reads an integer in [min, max], strictly: decimal digits with an optional sign, nothing else. */
static cart_status get_int(loader *ld, const char *name, long long def, long long min, long long max, long long *out)
{
    const char *v = lookup(ld, name);
    char q[QUOTE_MAX];
    char *end;
    long long n;

    if (!v) {
        *out = def;
        return CART_OK;
    }
    /* strtoll would skip leading blanks; a value with any is not "an integer". */
    if (!((v[0] >= '0' && v[0] <= '9') || v[0] == '-' || v[0] == '+'))
        goto bad;
    errno = 0;
    n = strtoll(v, &end, 10);
    if (end == v || *end != '\0' || errno == ERANGE || n < min || n > max)
        goto bad;
    *out = n;
    return CART_OK;

bad:
    return fail(ld, "%s: expected an integer from %lld to %lld, got %s", name, min, max, quote(v, q));
}

static cart_status set_str(loader *ld, char **dst, const char *v)
{
    if (!(*dst = strdup(v)))
        return nomem(ld);
    return CART_OK;
}

static int is_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* A host name or IP address: letters, digits, '.', '-', '_' and ':' (IPv6). */
static int valid_host(const char *s, size_t n)
{
    if (n == 0 || n > HOST_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (!is_alnum(s[i]) && s[i] != '.' && s[i] != '-' && s[i] != '_' && s[i] != ':')
            return 0;
    }
    return 1;
}

/* Parses a port of 1..65535 from exactly n bytes of digits; -1 when it is not one. */
static int parse_port(const char *s, size_t n)
{
    long port = 0;

    if (n == 0 || n > 5)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        port = port * 10 + (s[i] - '0');
    }
    return port >= 1 && port <= 65535 ? (int)port : -1;
}

/*
 * Splits "host[:port]" or "[v6addr][:port]" of n bytes. Sets *host and *hostlen (without brackets)
 * and *port (-2 when absent). Returns 0, -1 for a bad host, -2 for a bad port.
 */
static int split_hostport(const char *s, size_t n, const char **host, size_t *hostlen, int *port)
{
    const char *colon = NULL;

    *port = -2;
    if (n > 0 && s[0] == '[') {
        const char *close = memchr(s, ']', n);
        if (!close)
            return -1;
        *host = s + 1;
        *hostlen = (size_t)(close - s - 1);
        if (close + 1 < s + n) {
            if (close[1] != ':')
                return -1;
            colon = close + 1;
        }
    } else {
        colon = memchr(s, ':', n);
        *host = s;
        *hostlen = colon ? (size_t)(colon - s) : n;
    }
    if (!valid_host(*host, *hostlen) || (s[0] != '[' && memchr(*host, ':', *hostlen)))
        return -1;
    if (colon && (*port = parse_port(colon + 1, (size_t)(s + n - colon - 1))) < 0)
        return -2;
    return 0;
}

/* The offset just after the userinfo "...@" of an authority of n bytes (0 when there is none). */
static size_t userinfo_end(const char *s, size_t n)
{
    size_t at = 0;

    for (size_t i = 0; i < n; i++) {
        if (s[i] == '@')
            at = i + 1;
    }
    return at;
}

/*
 * NATS_URL: one or more comma-separated URLs, each [nats://|tls://][user:pass@]host[:port].
 * Only the shape is checked; the client library reads the string itself.
 */
static cart_status load_nats_url(loader *ld, cart_config *c)
{
    static const char *const expected = "expected nats://host[:port] URLs separated by commas";
    const char *v = lookup(ld, "NATS_URL");
    const char *p;
    int entry = 1;

    if (!v)
        v = DEFAULT_NATS_URL;
    for (p = v;; entry++) {
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        const char *host, *sep;
        size_t hostlen, skip;
        int port;

        if (n == 0)
            return fail(ld, "NATS_URL: %s, but entry %d is empty", expected, entry);
        sep = strstr(p, "://");
        if (sep && sep < p + n) {
            size_t slen = (size_t)(sep - p);
            if (!((slen == 4 && memcmp(p, "nats", 4) == 0) || (slen == 3 && memcmp(p, "tls", 3) == 0)))
                return fail(ld, "NATS_URL: %s, but entry %d has the scheme \"%.*s\" (only nats and tls are supported)",
                            expected, entry, (int)(slen > 16 ? 16 : slen), p);
            n -= slen + 3;
            p = sep + 3;
        }
        if (n > 0 && p[n - 1] == '/')
            n--; /* "nats://host:4222/" is common and harmless */
        skip = userinfo_end(p, n);
        switch (split_hostport(p + skip, n - skip, &host, &hostlen, &port)) {
        case -1:
            return fail(ld, "NATS_URL: %s, but entry %d has no valid host", expected, entry);
        case -2:
            return fail(ld, "NATS_URL: %s, but entry %d has a port outside 1 to 65535", expected, entry);
        default:
            break;
        }
        if (!end)
            break;
        p = end + 1;
    }
    return set_str(ld, &c->nats_url, v);
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* REDIS_URL: redis://[:password@]host[:port][/db]; the password may be percent-encoded. */
static cart_status load_redis_url(loader *ld, cart_config *c)
{
    static const char *const expected = "expected redis://[:password@]host[:port][/db]";
    static const char scheme[] = "redis://";
    const char *v = lookup(ld, "REDIS_URL");
    const char *auth, *slash, *host;
    size_t authlen, skip, hostlen;
    int port;
    cart_status st;

    if (!v)
        v = DEFAULT_REDIS_URL;
    if (strncmp(v, scheme, sizeof scheme - 1) != 0) {
        const char *sep = strstr(v, "://");
        if (sep)
            return fail(ld, "REDIS_URL: %s, got the scheme \"%.*s\"", expected,
                        (int)((size_t)(sep - v) > 16 ? 16 : (size_t)(sep - v)), v);
        return fail(ld, "REDIS_URL: %s, got a value without redis://", expected);
    }
    if (strpbrk(v, "?#"))
        return fail(ld, "REDIS_URL: %s; query strings and fragments are not supported", expected);
    auth = v + sizeof scheme - 1;
    slash = strchr(auth, '/');
    authlen = slash ? (size_t)(slash - auth) : strlen(auth);
    skip = userinfo_end(auth, authlen);

    if (skip > 0) {
        /* Only a password: Redis ACL user names are not supported. */
        if (auth[0] != ':')
            return fail(ld, "REDIS_URL: %s; a user name is not supported, write the password as :password@", expected);
        if (skip > 2) {
            size_t o = 0;
            if (!(c->redis_password = malloc(skip)))
                return nomem(ld);
            for (size_t i = 1; i < skip - 1; i++) {
                if (auth[i] == '%') {
                    int hi = i + 2 < skip - 1 ? hexval(auth[i + 1]) : -1;
                    int lo = hi >= 0 ? hexval(auth[i + 2]) : -1;
                    if (lo < 0 || (hi == 0 && lo == 0))
                        return fail(ld, "REDIS_URL: the password has a bad %%-escape (expected %%XX with hex digits)");
                    c->redis_password[o++] = (char)(hi * 16 + lo);
                    i += 2;
                } else {
                    c->redis_password[o++] = auth[i];
                }
            }
            c->redis_password[o] = '\0';
        }
    }
    switch (split_hostport(auth + skip, authlen - skip, &host, &hostlen, &port)) {
    case -1:
        return fail(ld, "REDIS_URL: %s, but the host is missing or invalid", expected);
    case -2:
        return fail(ld, "REDIS_URL: %s, but the port is not a number from 1 to 65535", expected);
    default:
        break;
    }
    c->redis_port = port == -2 ? REDIS_DEFAULT_PORT : port;
    if (!(c->redis_host = strndup(host, hostlen)))
        return nomem(ld);

    c->redis_db = 0;
    if (slash && slash[1] != '\0') {
        const char *d = slash + 1;
        long db = 0;
        size_t n = strlen(d);
        for (size_t i = 0; i < n && db <= REDIS_MAX_DB; i++) {
            if (d[i] < '0' || d[i] > '9') {
                db = -1;
                break;
            }
            db = db * 10 + (d[i] - '0');
        }
        if (db < 0 || db > REDIS_MAX_DB)
            return fail(ld, "REDIS_URL: %s, but the database after / is not a number from 0 to %d", expected,
                        REDIS_MAX_DB);
        c->redis_db = (int)db;
    }
    if ((st = set_str(ld, &c->redis_url, v)) != CART_OK)
        return st;
    return CART_OK;
}

/*
 * REDIS_PASSWORD_FILE: a file holding the Redis password (a mounted secret), so that it appears
 * neither in a process's command line nor in its environment. One line: a final newline (or CRLF)
 * is dropped; anything else must be printable ASCII. The URL's own password and the file exclude
 * each other, so there is never a doubt which one is used. The file's contents are never echoed.
 */
static cart_status load_redis_password_file(loader *ld, cart_config *c)
{
    const char *path = lookup(ld, "REDIS_PASSWORD_FILE");
    char buf[REDIS_PASSWORD_MAX + 3];
    FILE *f = NULL;
    size_t n;
    cart_status st = CART_OK;

    if (!path || path[0] == '\0')
        return CART_OK; /* empty is unset, like every other file setting */
    if (c->redis_password) {
        st = fail(ld, "REDIS_PASSWORD_FILE: set, but REDIS_URL holds a password too (keep only one of them)");
        goto out;
    }
    f = fopen(path, "rb");
    if (!f) {
        st = fail(ld, "REDIS_PASSWORD_FILE: cannot read %s: %s", path, strerror(errno));
        goto out;
    }
    n = fread(buf, 1, sizeof buf, f);
    if (ferror(f)) {
        st = fail(ld, "REDIS_PASSWORD_FILE: cannot read %s", path);
        goto out;
    }
    if (n > 0 && buf[n - 1] == '\n')
        n--;
    if (n > 0 && buf[n - 1] == '\r')
        n--;
    if (n > REDIS_PASSWORD_MAX) {
        st = fail(ld, "REDIS_PASSWORD_FILE: %s holds more than %d bytes; expected one line, the password", path,
                  REDIS_PASSWORD_MAX);
        goto out;
    }
    if (n == 0) {
        st = fail(ld, "REDIS_PASSWORD_FILE: %s is empty; expected one line, the password", path);
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        if (buf[i] < 0x21 || buf[i] > 0x7e) {
            st = fail(ld,
                      "REDIS_PASSWORD_FILE: %s holds a blank, a control character or a second line; expected "
                      "one line of printable ASCII, the password",
                      path);
            goto out;
        }
    }
    if (!(c->redis_password = strndup(buf, n)))
        st = nomem(ld);
out:
    if (f)
        fclose(f);
    /* The stack copy held the secret: leave nothing of it behind. */
    memset(buf, 0, sizeof buf);
    return st;
}

static int is_blank(char ch)
{
    return ch == ' ' || ch == '\t';
}

static int is_pg_uri(const char *s, size_t n)
{
    return (n >= 13 && strncmp(s, "postgresql://", 13) == 0) || (n >= 11 && strncmp(s, "postgres://", 11) == 0);
}

/* True when s looks like "scheme://...": a URI of some other kind than PostgreSQL. */
static int has_scheme(const char *s, size_t n)
{
    size_t i = 0;

    while (i < n && (is_alnum(s[i]) || s[i] == '+' || s[i] == '-' || s[i] == '.'))
        i++;
    return i > 0 && n - i >= 3 && memcmp(s + i, "://", 3) == 0;
}

/* One entry of a comma-separated list: the entry starting at `p`, without the blanks around it, in
 * [*b, *e); returns where the next entry starts, or NULL after the last one. */
static const char *list_entry(const char *p, const char **b, const char **e)
{
    const char *end = strchr(p, ',');

    *b = p;
    *e = end ? end : p + strlen(p);
    while (*b < *e && is_blank(**b))
        (*b)++;
    while (*e > *b && is_blank((*e)[-1]))
        (*e)--;
    return end ? end + 1 : NULL;
}

/* SHARD_DSNS: libpq connection strings separated by commas, in shard order. Blanks around an
 * entry are dropped. Entries are not echoed in errors: they may hold passwords. */
static cart_status load_shard_dsns(loader *ld, cart_config *c)
{
    const char *v = lookup(ld, "SHARD_DSNS");
    const char *p;
    uint32_t n = 0;

    if (!v)
        v = DEFAULT_SHARD_DSNS;
    for (const char *next = v; next;) {
        const char *e;
        p = next;
        next = list_entry(next, &p, &e);
        if (n == CART_CONFIG_MAX_SHARDS) {
            uint32_t total = n + 1;
            for (const char *q = next; q; q = strchr(q, ',') ? strchr(q, ',') + 1 : NULL)
                total++;
            return fail(ld, "SHARD_DSNS: expected at most %d comma-separated connection strings, got %u",
                        CART_CONFIG_MAX_SHARDS, (unsigned)total);
        }
        if (p == e)
            return fail(ld, "SHARD_DSNS: expected comma-separated libpq connection strings, but entry %u is empty",
                        (unsigned)(n + 1));
        if (!(is_pg_uri(p, (size_t)(e - p)) || (!has_scheme(p, (size_t)(e - p)) && memchr(p, '=', (size_t)(e - p)))))
            return fail(ld,
                        "SHARD_DSNS: entry %u is not a libpq connection string (expected postgresql://... or "
                        "key=value ...)",
                        (unsigned)(n + 1));
        if (!(c->shard_dsns[n] = strndup(p, (size_t)(e - p))))
            return nomem(ld);
        c->nshards = ++n;
    }
    return CART_OK;
}

static cart_status load_log_level(loader *ld, cart_config *c)
{
    const char *v = lookup(ld, "LOG_LEVEL");
    char q[QUOTE_MAX];

    c->log_level = CART_LOG_INFO;
    if (v && cart_log_level_parse(v, &c->log_level) != 0)
        return fail(ld, "LOG_LEVEL: expected one of debug, info, warn, error, got %s", quote(v, q));
    return CART_OK;
}

/* A listen address: a host name or an IP address (IPv6 without brackets). */
static cart_status load_host(loader *ld, const char *name, char **dst)
{
    const char *v = lookup(ld, name);
    char q[QUOTE_MAX];

    if (!v)
        v = DEFAULT_LISTEN;
    if (!valid_host(v, strlen(v)))
        return fail(ld, "%s: expected a host name or IP address to listen on (such as 0.0.0.0), got %s", name,
                    quote(v, q));
    return set_str(ld, dst, v);
}

static int valid_id(const char *s)
{
    size_t n = strlen(s);

    if (n == 0 || n > ID_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (!is_alnum(s[i]) && s[i] != '-' && s[i] != '_')
            return 0;
    }
    return 1;
}

/* An instance name that goes into NATS subject tokens: default "<hostname>-<pid>", made valid. */
static cart_status load_id(loader *ld, const char *name, char **dst)
{
    const char *v = lookup(ld, name);
    char q[QUOTE_MAX];
    char host[256];
    char pid[24];
    char id[ID_MAX + 1];
    size_t hlen, plen;

    if (v) {
        if (!valid_id(v))
            return fail(ld, "%s: expected 1 to %d characters of A-Z, a-z, 0-9, '-' and '_', got %s", name, ID_MAX,
                        quote(v, q));
        return set_str(ld, dst, v);
    }
    if (gethostname(host, sizeof host) != 0)
        host[0] = '\0';
    host[sizeof host - 1] = '\0';
    plen = (size_t)snprintf(pid, sizeof pid, "-%ld", (long)getpid());
    hlen = strlen(host);
    if (hlen == 0) {
        memcpy(host, "host", 5);
        hlen = 4;
    }
    if (hlen > ID_MAX - plen)
        hlen = ID_MAX - plen;
    for (size_t i = 0; i < hlen; i++)
        id[i] = is_alnum(host[i]) || host[i] == '-' || host[i] == '_' ? host[i] : '-';
    memcpy(id + hlen, pid, plen + 1);
    return set_str(ld, dst, id);
}

/* CART_IDLE_TTL: seconds, or a number followed by s, m, h or d. */
static cart_status load_idle_ttl(loader *ld, cart_config *c)
{
    const char *v = lookup(ld, "CART_IDLE_TTL");
    char q[QUOTE_MAX];
    long long n = 0, unit = 1;
    size_t i = 0;

    if (!v)
        v = DEFAULT_IDLE_TTL;
    for (; v[i] >= '0' && v[i] <= '9'; i++) {
        if (n > IDLE_TTL_MAX_S)
            goto bad;
        n = n * 10 + (v[i] - '0');
    }
    if (i == 0)
        goto bad;
    switch (v[i]) {
    case '\0':
        break;
    case 's':
    case 'S':
        unit = 1;
        break;
    case 'm':
    case 'M':
        unit = 60;
        break;
    case 'h':
    case 'H':
        unit = 3600;
        break;
    case 'd':
    case 'D':
        unit = 86400;
        break;
    default:
        goto bad;
    }
    if (v[i] != '\0' && v[i + 1] != '\0')
        goto bad;
    if (n > IDLE_TTL_MAX_S / unit || n * unit < IDLE_TTL_MIN_S)
        goto bad;
    c->idle_ttl_ms = n * unit * 1000;
    return CART_OK;

bad:
    return fail(ld,
                "CART_IDLE_TTL: expected a duration from 60s to 3650d (seconds, or a number with s, m, h or d such "
                "as \"30d\"), got %s",
                quote(v, q));
}

static cart_status load_jwt_secret(loader *ld, cart_config *c)
{
    const char *v = lookup(ld, "AUTH_JWT_SECRET");

    if (!v || !*v)
        return CART_OK; /* auth off */
    if (strlen(v) < JWT_SECRET_MIN)
        return fail(ld, "AUTH_JWT_SECRET: expected at least %d bytes (or unset it to turn auth off), got %zu bytes",
                    JWT_SECRET_MIN, strlen(v));
    return set_str(ld, &c->auth_jwt_secret, v);
}

/* AUTH_ISSUER or AUTH_AUDIENCE: what the token's claim must be, byte for byte; unset or empty
 * means the claim is not checked. */
static cart_status load_claim(loader *ld, const char *name, char **dst)
{
    const char *v = lookup(ld, name);
    char q[QUOTE_MAX];

    if (!v || !*v)
        return CART_OK;
    for (const unsigned char *p = (const unsigned char *)v; *p; p++)
        if (*p < 0x20 || *p == 0x7f)
            goto bad;
    if (strlen(v) > CLAIM_MAX)
        goto bad;
    return set_str(ld, dst, v);

bad:
    return fail(ld, "%s: expected up to %d characters without control characters, got %s", name, CLAIM_MAX,
                quote(v, q));
}

/* Auth is on with AUTH_JWT_SECRET, AUTH_JWKS_FILE or both. The JWKS file is read when the gateway
 * starts, and again whenever it changes (services/gateway/src/keyring.h); here only its name. An
 * issuer or audience without auth is refused: whoever set it expects tokens to be checked. */
static cart_status load_auth(loader *ld, cart_config *c)
{
    const char *jwks = lookup(ld, "AUTH_JWKS_FILE"), *claim;
    cart_status st;

    if ((st = load_jwt_secret(ld, c)))
        return st;
    if (jwks && *jwks && (st = set_str(ld, &c->auth_jwks_file, jwks)))
        return st;
    if ((st = load_claim(ld, "AUTH_ISSUER", &c->auth_issuer)) ||
        (st = load_claim(ld, "AUTH_AUDIENCE", &c->auth_audience)))
        return st;
    if (c->auth_jwt_secret || c->auth_jwks_file || !(c->auth_issuer || c->auth_audience))
        return CART_OK;
    claim = c->auth_issuer ? "AUTH_ISSUER" : "AUTH_AUDIENCE";
    return fail(ld, "%s: set, but auth is off (set AUTH_JWT_SECRET or AUTH_JWKS_FILE too, or unset %s)", claim, claim);
}

/* One origin o[0..len) of CORS_ALLOWED_ORIGINS: http or https, "://", a host name, an IPv4 address
 * or a bracketed IPv6 one, an optional port 1..65535, and nothing else (no path, no slash, no
 * user). Returns a malloc'd copy with scheme and host in lower case, or NULL when it is not one
 * (*oom says whether memory ran out). */
static char *parse_origin(const char *o, size_t len, bool *oom)
{
    size_t i, host_at, host_end;
    char *copy;

    *oom = false;
    if (len > 7 && strncasecmp(o, "http://", 7) == 0)
        host_at = 7;
    else if (len > 8 && strncasecmp(o, "https://", 8) == 0)
        host_at = 8;
    else
        return NULL;
    i = host_at;
    if (o[i] == '[') {
        while (++i < len && (isxdigit((unsigned char)o[i]) || o[i] == ':' || o[i] == '.'))
            ;
        if (i == len || o[i] != ']' || i == host_at + 1)
            return NULL;
        i++;
    } else {
        while (i < len && (isalnum((unsigned char)o[i]) || o[i] == '.' || o[i] == '-'))
            i++;
        if (i == host_at || i - host_at > 253)
            return NULL;
    }
    host_end = i;
    if (i < len && o[i] == ':') {
        long port = 0;
        size_t digits = 0;
        while (++i < len && isdigit((unsigned char)o[i]) && digits++ < 5)
            port = port * 10 + (o[i] - '0');
        if (digits == 0 || digits > 5 || port < 1 || port > 65535)
            return NULL;
    }
    if (i != len)
        return NULL;
    if ((copy = strndup(o, len)) == NULL) {
        *oom = true;
        return NULL;
    }
    for (i = 0; i < host_end; i++)
        copy[i] = (char)tolower((unsigned char)copy[i]);
    return copy;
}

/* CORS_ALLOWED_ORIGINS: exact origins separated by commas, blanks around them dropped. */
static cart_status load_cors(loader *ld, cart_config *c)
{
    const char *v = lookup(ld, "CORS_ALLOWED_ORIGINS");
    char q[QUOTE_MAX], one[QUOTE_MAX];
    bool oom;

    if (!v || strspn(v, " \t") == strlen(v))
        return CART_OK; /* CORS off */
    for (const char *next = v; next;) {
        const char *b, *e;
        next = list_entry(next, &b, &e);
        if (b == e)
            return fail(ld, "CORS_ALLOWED_ORIGINS: expected comma-separated origins, but entry %u is empty",
                        (unsigned)(c->ncors_origins + 1));
        if (c->ncors_origins == CART_CONFIG_MAX_ORIGINS)
            return fail(ld, "CORS_ALLOWED_ORIGINS: expected at most %d origins", CART_CONFIG_MAX_ORIGINS);
        snprintf(one, sizeof one, "%.*s", (int)(e - b), b);
        if (e - b == 1 && *b == '*')
            return fail(ld, "CORS_ALLOWED_ORIGINS: expected exact origins; \"*\" (any origin) is not accepted");
        if ((c->cors_origins[c->ncors_origins] = parse_origin(b, (size_t)(e - b), &oom)) == NULL)
            return oom ? nomem(ld)
                       : fail(ld,
                              "CORS_ALLOWED_ORIGINS: expected origins such as https://shop.example or "
                              "http://127.0.0.1:3000 (no path, no trailing slash), got %s",
                              quote(one, q));
        c->ncors_origins++;
    }
    return CART_OK;
}

/* The files are read when the gateway starts; here only that both or neither are named. */
static cart_status load_tls(loader *ld, cart_config *c)
{
    const char *cert = lookup(ld, "GATEWAY_TLS_CERT"), *key = lookup(ld, "GATEWAY_TLS_KEY");
    bool has_cert = cert && *cert, has_key = key && *key;
    cart_status st;

    if (has_cert != has_key)
        return fail(ld, "%s: expected the path of a PEM %s, since %s is set (set both for TLS, or neither)",
                    has_cert ? "GATEWAY_TLS_KEY" : "GATEWAY_TLS_CERT", has_cert ? "private key" : "certificate",
                    has_cert ? "GATEWAY_TLS_CERT" : "GATEWAY_TLS_KEY");
    if (!has_cert)
        return CART_OK;
    if ((st = set_str(ld, &c->gateway_tls_cert, cert)))
        return st;
    return set_str(ld, &c->gateway_tls_key, key);
}

static cart_status load_common(loader *ld, cart_config *c)
{
    long long n;
    cart_status st;

    if ((st = load_nats_url(ld, c)) || (st = load_redis_url(ld, c)) || (st = load_redis_password_file(ld, c)) ||
        (st = load_shard_dsns(ld, c)))
        return st;
    if ((st = get_int(ld, "CART_PARTITIONS", 32, 1, 65536, &n)))
        return st;
    c->partitions = (uint32_t)n;
    if (c->nshards > c->partitions)
        return fail(ld, "SHARD_DSNS: %u shards need CART_PARTITIONS to be at least %u, but it is %u",
                    (unsigned)c->nshards, (unsigned)c->nshards, (unsigned)c->partitions);
    if ((st = load_log_level(ld, c)))
        return st;
    if ((st = get_int(ld, "CART_MAX_QUANTITY", 999, 1, 1000000, &n)))
        return st;
    c->max_quantity = (int32_t)n;
    if ((st = get_int(ld, "CART_MAX_LINES", 100, 1, 10000, &n)))
        return st;
    c->max_lines = (uint32_t)n;
    if ((st = get_int(ld, "CART_STREAM_REPLICAS", 1, 1, 5, &n)))
        return st;
    c->stream_replicas = (int)n;
    if ((st = get_int(ld, "CART_CACHE_TTL", 3600, 1, 2592000, &n)))
        return st;
    c->cache_ttl_s = (int)n;
    return CART_OK;
}

static cart_status load_gateway(loader *ld, cart_config *c)
{
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    long long n;
    cart_status st;

    if (ncpu < 1)
        ncpu = 1;
    if (ncpu > 256)
        ncpu = 256;
    if ((st = load_host(ld, "GATEWAY_HOST", &c->gateway_host)))
        return st;
    if ((st = get_int(ld, "GATEWAY_PORT", 8080, 1, 65535, &n)))
        return st;
    c->gateway_port = (int)n;
    if ((st = get_int(ld, "GATEWAY_THREADS", ncpu, 1, 256, &n)))
        return st;
    c->gateway_threads = (int)n;
    if ((st = get_int(ld, "CART_SYNC_TIMEOUT_MS", 2000, 0, 60000, &n)))
        return st;
    c->sync_timeout_ms = (int)n;
    if ((st = get_int(ld, "CART_MAX_BODY_BYTES", 16384, 256, 1048576, &n)))
        return st;
    c->max_body_bytes = (size_t)n;
    if ((st = get_int(ld, "RATE_LIMIT_RPS", 100, 0, 1000000, &n)))
        return st;
    c->rate_limit_rps = (int)n;
    if ((st = get_int(ld, "RATE_LIMIT_BURST", 200, 1, 10000000, &n)))
        return st;
    c->rate_limit_burst = (int)n;
    if ((st = get_int(ld, "GATEWAY_MAX_HEADER_BYTES", 8192, 1024, 65536, &n)))
        return st;
    c->max_header_bytes = (size_t)n;
    if ((st = load_auth(ld, c)) || (st = load_tls(ld, c)) || (st = load_cors(ld, c)))
        return st;
    return load_id(ld, "GATEWAY_ID", &c->gateway_id);
}

static cart_status load_store(loader *ld, cart_config *c)
{
    long long n;
    cart_status st;

    if ((st = load_host(ld, "CART_STORE_ADMIN_HOST", &c->store_admin_host)))
        return st;
    if ((st = get_int(ld, "CART_STORE_ADMIN_PORT", 9101, 1, 65535, &n)))
        return st;
    c->store_admin_port = (int)n;
    if ((st = get_int(ld, "CART_STORE_BATCH", 256, 1, 10000, &n)))
        return st;
    c->store_batch = (int)n;
    if ((st = get_int(ld, "CART_STORE_LINGER_US", 1000, 0, 100000, &n)))
        return st;
    c->store_linger_us = (int)n;
    /* Each held run stays well under the consumers' MaxAckPending (1024), and an ack falls due
     * long before their AckWait (30 s) could redeliver what it covers. */
    if ((st = get_int(ld, "CART_STORE_ACK_EVERY", 64, 1, 256, &n)))
        return st;
    c->store_ack_every = (int)n;
    if ((st = get_int(ld, "CART_STORE_ACK_DELAY_MS", 100, 0, 5000, &n)))
        return st;
    c->store_ack_delay_ms = n;
    if ((st = load_id(ld, "CART_STORE_ID", &c->store_id)))
        return st;
    if ((st = get_int(ld, "CART_EXPIRY_INTERVAL_MS", 60000, 100, 86400000, &n)))
        return st;
    c->expiry_interval_ms = n;
    if ((st = get_int(ld, "CART_STORE_STALL_MS", 10000, 1000, 3600000, &n)))
        return st;
    c->store_stall_ms = n;
    if ((st = get_int(ld, "MIGRATE_LOCK_TIMEOUT_MS", 5000, 1, 600000, &n)))
        return st;
    c->migrate_lock_timeout_ms = (int)n;
    if ((st = get_int(ld, "MIGRATE_STATEMENT_TIMEOUT_MS", 300000, 0, 86400000, &n)))
        return st;
    c->migrate_statement_timeout_ms = (int)n;
    return load_idle_ttl(ld, c);
}

static cart_status load_stats(loader *ld, cart_config *c)
{
    const char *v = lookup(ld, "STATS_DSN");
    long long n;
    cart_status st;

    if ((st = load_host(ld, "CART_STATS_HOST", &c->stats_host)))
        return st;
    if ((st = get_int(ld, "CART_STATS_PORT", 9201, 1, 65535, &n)))
        return st;
    c->stats_port = (int)n;
    if ((st = get_int(ld, "CART_STATS_BATCH", 256, 1, 10000, &n)))
        return st;
    c->stats_batch = (int)n;
    if ((st = get_int(ld, "CART_STATS_LINGER_MS", 100, 0, 5000, &n)))
        return st;
    c->stats_linger_ms = (int)n;
    if ((st = load_id(ld, "CART_STATS_ID", &c->stats_id)))
        return st;
    if (v == NULL || *v == '\0')
        return set_str(ld, &c->stats_dsn, c->shard_dsns[0]);
    if (!(is_pg_uri(v, strlen(v)) || (!has_scheme(v, strlen(v)) && strchr(v, '='))))
        return fail(ld, "STATS_DSN: not a libpq connection string (expected postgresql://... or key=value ...)");
    return set_str(ld, &c->stats_dsn, v);
}

cart_status cart_config_load(cart_config *cfg, cart_config_role role, cart_env_fn env, void *ud, char *err,
                             size_t errlen)
{
    loader ld = {env, ud, err, errlen};
    cart_config c;
    cart_status st;

    memset(&c, 0, sizeof c);
    if (err && errlen > 0)
        err[0] = '\0';
    if (!cfg || !env || (role != CART_ROLE_GATEWAY && role != CART_ROLE_STORE && role != CART_ROLE_STATS)) {
        st = fail(&ld, "cart_config_load: bad arguments");
        goto out;
    }
    if ((st = load_common(&ld, &c)) != CART_OK)
        goto out;
    st = role == CART_ROLE_GATEWAY ? load_gateway(&ld, &c)
         : role == CART_ROLE_STORE ? load_store(&ld, &c)
                                   : load_stats(&ld, &c);
    if (st != CART_OK)
        goto out;
    *cfg = c;
    return CART_OK;

out:
    cart_config_cleanup(&c);
    if (cfg)
        memset(cfg, 0, sizeof *cfg);
    return st;
}

void cart_config_cleanup(cart_config *cfg)
{
    if (!cfg)
        return;
    free(cfg->nats_url);
    free(cfg->redis_url);
    free(cfg->redis_host);
    free(cfg->redis_password);
    for (uint32_t i = 0; i < CART_CONFIG_MAX_SHARDS; i++)
        free(cfg->shard_dsns[i]);
    free(cfg->gateway_host);
    free(cfg->auth_jwt_secret);
    free(cfg->auth_jwks_file);
    free(cfg->auth_issuer);
    free(cfg->auth_audience);
    free(cfg->gateway_id);
    free(cfg->gateway_tls_cert);
    free(cfg->gateway_tls_key);
    for (uint32_t i = 0; i < CART_CONFIG_MAX_ORIGINS; i++)
        free(cfg->cors_origins[i]);
    free(cfg->store_admin_host);
    free(cfg->store_id);
    free(cfg->stats_host);
    free(cfg->stats_dsn);
    free(cfg->stats_id);
    memset(cfg, 0, sizeof *cfg);
}

const char *cart_env_getenv(const char *name, void *ud)
{
    (void)ud;
    return getenv(name);
}
