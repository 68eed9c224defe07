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

/* One handshake: the settings, what the server answers, and what must come of it. */
static const struct handshake_case {
    const char *name;
    const char *password; /* NULL: none */
    int db;
    const char *answers[4];
    bool hang_up;
    cart_redis_handshake_result want;
    const char *want_step; /* NULL: not set */
    const char *want_err;  /* NULL: not checked; "": any non-empty text */
    const char *want_sent;
} cases[] = {
    {"nothing to do", NULL, 0, {NULL}, false, CART_REDIS_HANDSHAKE_OK, NULL, NULL, ""},
    {"AUTH then SELECT",
     "s3cret",
     3,
     {"+OK\r\n", "+OK\r\n"},
     false,
     CART_REDIS_HANDSHAKE_OK,
     "SELECT",
     NULL,
     "*2\r\n$4\r\nAUTH\r\n$6\r\ns3cret\r\n*2\r\n$6\r\nSELECT\r\n$1\r\n3\r\n"},
    {"SELECT alone",
     NULL,
     12,
     {"+OK\r\n"},
     false,
     CART_REDIS_HANDSHAKE_OK,
     "SELECT",
     NULL,
     "*2\r\n$6\r\nSELECT\r\n$2\r\n12\r\n"},
    /* No SELECT after a refused AUTH. */
    {"AUTH refused",
     "wrong",
     3,
     {"-WRONGPASS invalid username-password pair\r\n"},
     false,
     CART_REDIS_HANDSHAKE_REFUSED,
     "AUTH",
     "WRONGPASS invalid username-password pair",
     "*2\r\n$4\r\nAUTH\r\n$5\r\nwrong\r\n"},
    {"unexpected reply",
     NULL,
     1,
     {":1\r\n"},
     false,
     CART_REDIS_HANDSHAKE_REFUSED,
     "SELECT",
     "unexpected reply type",
     "*2\r\n$6\r\nSELECT\r\n$1\r\n1\r\n"},
    /* The server hangs up without answering. */
    {"connection closed",
     "pw",
     0,
     {NULL},
     true,
     CART_REDIS_HANDSHAKE_FAILED,
     "AUTH",
     "",
     "*2\r\n$4\r\nAUTH\r\n$2\r\npw\r\n"},
};

START_TEST(test_handshake)
{
    const struct handshake_case *tc = &cases[_i];
    cart_config cfg;
    peer p;
    const char *step = NULL;
    char err[64] = "";

    memset(&cfg, 0, sizeof cfg);
    cfg.redis_password = (char *)tc->password;
    cfg.redis_db = tc->db;
    memset(&p, 0, sizeof p);
    memcpy(p.answers, tc->answers, sizeof p.answers);
    p.hang_up = tc->hang_up;
    peer_open(&p);
    ck_assert_msg(cart_redis_handshake(p.ctx, &cfg, &step, err, sizeof err) == tc->want, "%s: result", tc->name);
    if (tc->want_step)
        ck_assert_msg(step && strcmp(step, tc->want_step) == 0, "%s: step %s", tc->name, step ? step : "(none)");
    else
        ck_assert_msg(step == NULL, "%s: step %s", tc->name, step);
    if (tc->want_err)
        ck_assert_msg(tc->want_err[0] ? strcmp(err, tc->want_err) == 0 : err[0] != '\0', "%s: error \"%s\"", tc->name,
                      err);
    peer_close(&p, tc->want_sent);
}
END_TEST

static Suite *redis_suite(void)
{
    Suite *s = suite_create("redis");
    TCase *tc = tcase_create("handshake");
    tcase_add_loop_test(tc, test_handshake, 0, (int)(sizeof cases / sizeof cases[0]));
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
