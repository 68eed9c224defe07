/*
 * The Redis handshake, over a socket pair: what it sends, and how it takes each answer. The other
 * end is a thread that answers each command with a canned reply; no Redis runs.
 */
#define _POSIX_C_SOURCE 200809L
#include <check.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "cartshard/redis.h"

/* The server end: answers each command (every one here has two arguments, so five CRLFs) with the
 * next of `answers`, one by one, and records what it received until the client hangs up. */
typedef struct peer {
    redisContext *ctx;
    int server;
    pthread_t thread;
    const char *answers[4];
    bool hang_up; /* close at once instead of answering */
    char got[512];
} peer;

static void *serve(void *arg)
{
    peer *p = arg;
    size_t len = 0, crlf = 0, answered = 0;
    ssize_t n;

    if (p->hang_up)
        shutdown(p->server, SHUT_WR);
    while ((n = read(p->server, p->got + len, sizeof p->got - 1 - len)) > 0) {
        for (ssize_t i = 0; i < n; i++)
            crlf += p->got[len + (size_t)i] == '\n';
        len += (size_t)n;
        while (!p->hang_up && crlf >= 5 * (answered + 1) && answered < 4 && p->answers[answered]) {
            const char *a = p->answers[answered++];
            if (write(p->server, a, strlen(a)) != (ssize_t)strlen(a))
                break;
        }
    }
    p->got[len] = '\0';
    return NULL;
}

/* A context on one end of a socket pair, the server on the other. */
static void peer_open(peer *p)
{
    int fds[2];

    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
    p->ctx = redisConnectFd(fds[0]);
    ck_assert_ptr_nonnull(p->ctx);
    p->server = fds[1];
    ck_assert_int_eq(pthread_create(&p->thread, NULL, serve, p), 0);
}

/* Checks what the handshake sent (hanging up first, so the server's read ends). */
static void peer_close(peer *p, const char *want_sent)
{
    redisFree(p->ctx);
    pthread_join(p->thread, NULL);
    close(p->server);
    ck_assert_str_eq(p->got, want_sent);
}

static cart_config config(char *password, int db)
{
    cart_config cfg;

    memset(&cfg, 0, sizeof cfg);
    cfg.redis_password = password;
    cfg.redis_db = db;
    return cfg;
}

START_TEST(test_nothing_to_do)
{
    cart_config cfg = config(NULL, 0);
    peer p = {0};
    const char *step = NULL;
    char err[64];

    peer_open(&p);

    ck_assert_int_eq(cart_redis_handshake(p.ctx, &cfg, &step, err, sizeof err), CART_REDIS_HANDSHAKE_OK);
    ck_assert_ptr_null(step);
    peer_close(&p, "");
}
END_TEST

START_TEST(test_auth_then_select)
{
    char pw[] = "s3cret";
    cart_config cfg = config(pw, 3);
    peer p = {.answers = {"+OK\r\n", "+OK\r\n"}};
    const char *step = NULL;
    char err[64];

    peer_open(&p);

    ck_assert_int_eq(cart_redis_handshake(p.ctx, &cfg, &step, err, sizeof err), CART_REDIS_HANDSHAKE_OK);
    peer_close(&p, "*2\r\n$4\r\nAUTH\r\n$6\r\ns3cret\r\n*2\r\n$6\r\nSELECT\r\n$1\r\n3\r\n");
}
END_TEST

START_TEST(test_select_alone)
{
    cart_config cfg = config(NULL, 12);
    peer p = {.answers = {"+OK\r\n"}};
    const char *step = NULL;
    char err[64];

    peer_open(&p);

    ck_assert_int_eq(cart_redis_handshake(p.ctx, &cfg, &step, err, sizeof err), CART_REDIS_HANDSHAKE_OK);
    ck_assert_str_eq(step, "SELECT");
    peer_close(&p, "*2\r\n$6\r\nSELECT\r\n$2\r\n12\r\n");
}
END_TEST

START_TEST(test_auth_refused)
{
    char pw[] = "wrong";
    cart_config cfg = config(pw, 3);
    peer p = {.answers = {"-WRONGPASS invalid username-password pair\r\n"}};
    const char *step = NULL;
    char err[64];

    peer_open(&p);

    ck_assert_int_eq(cart_redis_handshake(p.ctx, &cfg, &step, err, sizeof err), CART_REDIS_HANDSHAKE_REFUSED);
    ck_assert_str_eq(step, "AUTH");
    ck_assert_str_eq(err, "WRONGPASS invalid username-password pair");
    /* No SELECT after a refused AUTH. */
    peer_close(&p, "*2\r\n$4\r\nAUTH\r\n$5\r\nwrong\r\n");
}
END_TEST

START_TEST(test_unexpected_reply)
{
    cart_config cfg = config(NULL, 1);
    peer p = {.answers = {":1\r\n"}};
    const char *step = NULL;
    char err[64];

    peer_open(&p);

    ck_assert_int_eq(cart_redis_handshake(p.ctx, &cfg, &step, err, sizeof err), CART_REDIS_HANDSHAKE_REFUSED);
    ck_assert_str_eq(err, "unexpected reply type");
    peer_close(&p, "*2\r\n$6\r\nSELECT\r\n$1\r\n1\r\n");
}
END_TEST

START_TEST(test_connection_closed)
{
    char pw[] = "pw";
    cart_config cfg = config(pw, 0);
    peer p = {.hang_up = true}; /* the server hangs up without answering */
    const char *step = NULL;
    char err[64];

    peer_open(&p);
    ck_assert_int_eq(cart_redis_handshake(p.ctx, &cfg, &step, err, sizeof err), CART_REDIS_HANDSHAKE_FAILED);
    ck_assert_str_eq(step, "AUTH");
    ck_assert_str_ne(err, "");
    peer_close(&p, "*2\r\n$4\r\nAUTH\r\n$2\r\npw\r\n");
}
END_TEST

static Suite *redis_suite(void)
{
    Suite *s = suite_create("redis");
    TCase *tc = tcase_create("handshake");
    tcase_add_test(tc, test_nothing_to_do);
    tcase_add_test(tc, test_auth_then_select);
    tcase_add_test(tc, test_select_alone);
    tcase_add_test(tc, test_auth_refused);
    tcase_add_test(tc, test_unexpected_reply);
    tcase_add_test(tc, test_connection_closed);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(redis_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
