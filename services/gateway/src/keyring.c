#define _POSIX_C_SOURCE 200809L
#include "keyring.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cartshard/log.h"

struct gw_keyring {
    char *path;           /* AUTH_JWKS_FILE (owned) */
    pthread_mutex_t mu;   /* guards `set` against the loop threads' gw_keyring_current */
    gw_jwks *set;         /* the keys in force: the keyring's own reference; written by main only */
    _Atomic uint64_t gen; /* 1 at first, one more with every new set (bumped under mu) */
    struct stat seen;     /* main only: the file as it was when last looked at */
    int stat_errno;       /* main only: why the last stat failed, or 0 */
};

/* Whether st is the file last looked at, unchanged: its inode (a file renamed over it), its size,
 * and its mtime and ctime (a rewrite in place). */
static bool same_file(const struct stat *a, const struct stat *b)
{
    return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
           a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
           a->st_ctim.tv_sec == b->st_ctim.tv_sec && a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

/* Reads and parses the file: a new set, or NULL with the message in err. */
static gw_jwks *load(const char *path, char *err, size_t errlen)
{
    char why[256];
    char *doc = NULL;
    gw_jwks *set = NULL;
    struct stat st;
    size_t len = 0;
    ssize_t n;
    /* O_NONBLOCK: a FIFO named by mistake must not hang start-up; a regular file ignores it. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);

    if (fd < 0 || fstat(fd, &st) != 0) {
        snprintf(err, errlen, "AUTH_JWKS_FILE: %s: %s", path, strerror(errno));
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "AUTH_JWKS_FILE: %s: not a regular file", path);
        goto out;
    }
    /* One byte more than accepted, so that a file over the limit is seen to be. */
    doc = malloc(GW_JWKS_MAX_BYTES + 1);
    if (doc == NULL) {
        snprintf(err, errlen, "AUTH_JWKS_FILE: out of memory");
        goto out;
    }
    while (len <= GW_JWKS_MAX_BYTES && (n = read(fd, doc + len, GW_JWKS_MAX_BYTES + 1 - len)) != 0) {
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            snprintf(err, errlen, "AUTH_JWKS_FILE: %s: %s", path, strerror(errno));
            goto out;
        }
        len += (size_t)n;
    }
    set = gw_jwks_parse(doc, len, why, sizeof why);
    if (set == NULL)
        snprintf(err, errlen, "AUTH_JWKS_FILE: %s", why);
out:
    free(doc);
    if (fd >= 0)
        close(fd);
    return set;
}

gw_keyring *gw_keyring_new(const char *path, char *err, size_t errlen)
{
    gw_keyring *kr = calloc(1, sizeof *kr);

    if (kr == NULL || (kr->path = strdup(path)) == NULL) {
        snprintf(err, errlen, "AUTH_JWKS_FILE: out of memory");
        goto fail;
    }
    pthread_mutex_init(&kr->mu, NULL);
    atomic_init(&kr->gen, 1);
    /* Looked at before it is read: a change in between is read again at the first poll. */
    if (stat(path, &kr->seen) != 0) {
        snprintf(err, errlen, "AUTH_JWKS_FILE: %s: %s", path, strerror(errno));
        goto fail;
    }
    kr->set = load(path, err, errlen);
    if (kr->set == NULL)
        goto fail;
    cart_log(CART_LOG_INFO, "AUTH_JWKS_FILE loaded", CART_LS("path", path), CART_LI("keys", gw_jwks_count(kr->set)),
             NULL);
    return kr;

fail:
    gw_keyring_free(kr);
    return NULL;
}

void gw_keyring_free(gw_keyring *kr)
{
    if (kr == NULL)
        return;
    if (kr->path != NULL)
        pthread_mutex_destroy(&kr->mu);
    gw_jwks_unref(kr->set);
    free(kr->path);
    free(kr);
}

void gw_keyring_poll(gw_keyring *kr)
{
    struct stat st;
    char err[512];
    gw_jwks *next, *old;

    if (stat(kr->path, &st) != 0) {
        int e = errno;
        if (e != kr->stat_errno) {
            snprintf(err, sizeof err, "AUTH_JWKS_FILE: %s: %s", kr->path, strerror(e));
            cart_log(CART_LOG_WARN, "AUTH_JWKS_FILE unreadable: the keys in force are kept", CART_LS("error", err),
                     CART_LI("keys", gw_jwks_count(kr->set)), NULL);
            kr->stat_errno = e;
        }
        return;
    }
    if (kr->stat_errno == 0 && same_file(&st, &kr->seen))
        return;
    /* Recorded before the read: a file still being written is read again once it changes again,
     * and one that stays broken is reported once. */
    kr->seen = st;
    kr->stat_errno = 0;
    next = load(kr->path, err, sizeof err);
    if (next == NULL) {
        cart_log(CART_LOG_WARN, "AUTH_JWKS_FILE changed but cannot be used: the keys in force are kept",
                 CART_LS("error", err), CART_LI("keys", gw_jwks_count(kr->set)), NULL);
        return;
    }
    pthread_mutex_lock(&kr->mu);
    old = kr->set;
    kr->set = next;
    atomic_fetch_add(&kr->gen, 1);
    pthread_mutex_unlock(&kr->mu);
    gw_jwks_unref(old);
    cart_log(CART_LOG_INFO, "AUTH_JWKS_FILE reloaded", CART_LS("path", kr->path), CART_LI("keys", gw_jwks_count(next)),
             NULL);
}

const gw_jwks *gw_keyring_current(gw_keyring *kr, gw_jwks **held, uint64_t *held_gen)
{
    gw_jwks *old = *held;

    if (old != NULL && atomic_load(&kr->gen) == *held_gen)
        return old;
    pthread_mutex_lock(&kr->mu);
    *held = gw_jwks_ref(kr->set);
    *held_gen = atomic_load(&kr->gen);
    pthread_mutex_unlock(&kr->mu);
    gw_jwks_unref(old);
    return *held;
}
