#define _POSIX_C_SOURCE 200809L
#include <check.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cartshard/clock.h"
#include "cartshard/log.h"

/* Log output goes to a temporary file that the test reads back. */
static FILE *out_file;

static void capture_start(const char *service, cart_log_level min)
{
    out_file = tmpfile();
    ck_assert_ptr_nonnull(out_file);
    cart_log_init(service, min);
    cart_log_set_fd(fileno(out_file));
}

/* Everything written since capture_start, as a malloc'd string. */
static char *capture_end(size_t *len)
{
    cart_log_set_fd(2);
    ck_assert_int_eq(fseek(out_file, 0, SEEK_END), 0);
    long size = ftell(out_file);
    ck_assert_int_ge(size, 0);
    char *buf = malloc((size_t)size + 1);
    ck_assert_ptr_nonnull(buf);
    rewind(out_file);
    size_t n = fread(buf, 1, (size_t)size, out_file);
    ck_assert_uint_eq(n, (size_t)size);
    buf[n] = '\0';
    fclose(out_file);
    out_file = NULL;
    if (len)
        *len = n;
    return buf;
}

/* Parses one line (without its newline) and fails the test if it is not a JSON object. */
static json_t *parse_line(const char *s, size_t n)
{
    json_error_t jerr;
    json_t *j = json_loadb(s, n, 0, &jerr);
    if (!j)
        ck_abort_msg("line is not JSON (%s): %.*s", jerr.text, (int)n, s);
    ck_assert(json_is_object(j));
    return j;
}

/* Captures exactly one line and returns it parsed; *raw receives the text when non-NULL. */
static json_t *single_line(char **raw)
{
    size_t len;
    char *text = capture_end(&len);
    ck_assert_uint_gt(len, 0);
    ck_assert_int_eq(text[len - 1], '\n');
    ck_assert_ptr_eq(memchr(text, '\n', len), text + len - 1);
    json_t *j = parse_line(text, len - 1);
    if (raw)
        *raw = text;
    else
        free(text);
    return j;
}

START_TEST(test_basic_line)
{
    char *raw;
    capture_start("cart-store", CART_LOG_DEBUG);
    int64_t before = cart_now_ms();
    cart_log(CART_LOG_INFO, "batch applied", CART_LI("partition", 7), CART_LI("events", 120), CART_LS("worker", "w-1"),
             CART_LD("ratio", 0.5), CART_LB("ok", 1), CART_LB("retry", 0), NULL);
    int64_t after = cart_now_ms();
    json_t *j = single_line(&raw);

    /* The fixed fields come first, in this order. */
    ck_assert_int_eq(strncmp(raw, "{\"ts\":\"", 7), 0);
    ck_assert_ptr_nonnull(strstr(raw, "Z\",\"level\":\"info\",\"service\":\"cart-store\",\"msg\":\"batch applied\","
                                      "\"partition\":7,\"events\":120,\"worker\":\"w-1\",\"ratio\":0.5,"
                                      "\"ok\":true,\"retry\":false}\n"));

    const char *ts = json_string_value(json_object_get(j, "ts"));
    ck_assert_ptr_nonnull(ts);
    ck_assert_uint_eq(strlen(ts), 24); /* always with milliseconds */
    int64_t ms;
    ck_assert_int_eq(cart_time_parse(ts, strlen(ts), &ms), CART_OK);
    ck_assert_int_ge(ms, before - 1);
    ck_assert_int_le(ms, after + 1);
    ck_assert_int_eq(json_integer_value(json_object_get(j, "partition")), 7);
    ck_assert_str_eq(json_string_value(json_object_get(j, "worker")), "w-1");
    ck_assert(json_is_true(json_object_get(j, "ok")));
    ck_assert(json_is_false(json_object_get(j, "retry")));
    ck_assert_ptr_null(json_object_get(j, "truncated"));
    json_decref(j);
    free(raw);
}
END_TEST

START_TEST(test_levels_and_filter)
{
    static const char *names[] = {"debug", "info", "warn", "error"};
    capture_start("gw", CART_LOG_WARN);
    ck_assert(!cart_log_enabled(CART_LOG_DEBUG));
    ck_assert(!cart_log_enabled(CART_LOG_INFO));
    ck_assert(cart_log_enabled(CART_LOG_WARN));
    ck_assert(cart_log_enabled(CART_LOG_ERROR));
    for (int l = CART_LOG_DEBUG; l <= CART_LOG_ERROR; l++)
        cart_log((cart_log_level)l, names[l], NULL);
    size_t len;
    char *text = capture_end(&len);
    char *save = NULL, *line = strtok_r(text, "\n", &save);
    int n = 0;
    for (; line; line = strtok_r(NULL, "\n", &save), n++) {
        json_t *j = parse_line(line, strlen(line));
        ck_assert_str_eq(json_string_value(json_object_get(j, "level")), names[n + 2]);
        ck_assert_str_eq(json_string_value(json_object_get(j, "msg")), names[n + 2]);
        ck_assert_str_eq(json_string_value(json_object_get(j, "service")), "gw");
        json_decref(j);
    }
    ck_assert_int_eq(n, 2);
    free(text);
}
END_TEST

START_TEST(test_level_parse)
{
    cart_log_level l = CART_LOG_ERROR;
    ck_assert_int_eq(cart_log_level_parse("debug", &l), 0);
    ck_assert_int_eq(l, CART_LOG_DEBUG);
    ck_assert_int_eq(cart_log_level_parse("INFO", &l), 0);
    ck_assert_int_eq(l, CART_LOG_INFO);
    ck_assert_int_eq(cart_log_level_parse("Warn", &l), 0);
    ck_assert_int_eq(l, CART_LOG_WARN);
    ck_assert_int_eq(cart_log_level_parse("error", &l), 0);
    ck_assert_int_eq(l, CART_LOG_ERROR);
    l = CART_LOG_INFO;
    ck_assert_int_eq(cart_log_level_parse("", &l), -1);
    ck_assert_int_eq(cart_log_level_parse("trace", &l), -1);
    ck_assert_int_eq(cart_log_level_parse("info ", &l), -1);
    ck_assert_int_eq(cart_log_level_parse("err", &l), -1);
    ck_assert_int_eq(cart_log_level_parse(NULL, &l), -1);
    ck_assert_int_eq(l, CART_LOG_INFO); /* untouched on failure */
}
END_TEST

START_TEST(test_escaping)
{
    const char *nasty = "q\"b\\s/n\nr\rt\tc\x01\x1f\x7f end";
    const char *utf8 = "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80";
    char *raw;

    capture_start("svc \"x\"", CART_LOG_DEBUG);
    cart_log(CART_LOG_ERROR, nasty, CART_LS("utf8", utf8),
             CART_LS("bad", "a\xff"
                            "b\xc3(\xed\xa0\x80z"),
             CART_LS("k\"ey", "v"), NULL);
    json_t *j = single_line(&raw);
    ck_assert_str_eq(json_string_value(json_object_get(j, "msg")), nasty);
    ck_assert_str_eq(json_string_value(json_object_get(j, "service")), "svc \"x\"");
    ck_assert_str_eq(json_string_value(json_object_get(j, "utf8")), utf8);
    /* Each invalid byte becomes U+FFFD; the valid bytes around them survive. */
    ck_assert_str_eq(json_string_value(json_object_get(j, "bad")),
                     "a\xef\xbf\xbd"
                     "b\xef\xbf\xbd(\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbdz");
    ck_assert_str_eq(json_string_value(json_object_get(j, "k\"ey")), "v");
    /* The exact escapes: control characters as \u00XX, valid UTF-8 kept as raw bytes. */
    ck_assert_ptr_nonnull(strstr(raw, "\"msg\":\"q\\\"b\\\\s/n\\nr\\rt\\tc\\u0001\\u001f\\u007f end\""));
    ck_assert_ptr_nonnull(strstr(raw, utf8));
    json_decref(j);
    free(raw);
}
END_TEST

START_TEST(test_nulls_and_doubles)
{
    char *raw;
    capture_start("svc", CART_LOG_DEBUG);
    cart_log(CART_LOG_WARN, NULL, CART_LS("s", NULL), CART_LD("nan", NAN), CART_LD("inf", INFINITY),
             CART_LD("ninf", -INFINITY), CART_LD("tenth", 0.1), CART_LD("third", 1.0 / 3), CART_LD("big", 1e300),
             CART_LD("whole", 3.0), CART_LI("neg", -42), CART_LI("max", 9223372036854775807LL), NULL);
    json_t *j = single_line(&raw);
    ck_assert(json_is_null(json_object_get(j, "msg")));
    ck_assert(json_is_null(json_object_get(j, "s")));
    ck_assert(json_is_null(json_object_get(j, "nan")));
    ck_assert(json_is_null(json_object_get(j, "inf")));
    ck_assert(json_is_null(json_object_get(j, "ninf")));
    ck_assert_ptr_nonnull(strstr(raw, "\"tenth\":0.1,"));
    ck_assert_ptr_nonnull(strstr(raw, "\"whole\":3,"));
    ck_assert(json_number_value(json_object_get(j, "third")) == 1.0 / 3);
    ck_assert(json_number_value(json_object_get(j, "big")) == 1e300);
    ck_assert_int_eq(json_integer_value(json_object_get(j, "neg")), -42);
    ck_assert_int_eq(json_integer_value(json_object_get(j, "max")), 9223372036854775807LL);
    json_decref(j);
    free(raw);
}
END_TEST

START_TEST(test_long_line_truncated)
{
    size_t n = 20000;
    char *big = malloc(n + 1);
    ck_assert_ptr_nonnull(big);
    /* Three-byte characters, so a cut in the middle of one would be invalid UTF-8. */
    for (size_t i = 0; i + 3 <= n; i += 3)
        memcpy(big + i, "\xe2\x82\xac", 3);
    big[n - n % 3] = '\0';

    char *raw;
    capture_start("svc", CART_LOG_DEBUG);
    cart_log(CART_LOG_INFO, "big", CART_LI("before", 1), CART_LS("body", big), CART_LI("after", 2), NULL);
    size_t len;
    raw = capture_end(&len);
    ck_assert_uint_le(len, 8192);
    ck_assert_uint_gt(len, 8000);
    ck_assert_int_eq(raw[len - 1], '\n');
    json_t *j = parse_line(raw, len - 1);
    ck_assert_int_eq(json_integer_value(json_object_get(j, "before")), 1);
    const char *body = json_string_value(json_object_get(j, "body"));
    ck_assert_ptr_nonnull(body);
    ck_assert_uint_gt(strlen(body), 7000);
    ck_assert_int_eq(strncmp(body, big, strlen(body)), 0);
    ck_assert_ptr_null(json_object_get(j, "after"));
    ck_assert(json_is_true(json_object_get(j, "truncated")));
    json_decref(j);
    free(raw);

    /* A long message is cut the same way, and the fields after it are dropped. */
    capture_start("svc", CART_LOG_DEBUG);
    cart_log(CART_LOG_INFO, big, CART_LI("after", 2), NULL);
    raw = capture_end(&len);
    ck_assert_uint_le(len, 8192);
    j = parse_line(raw, len - 1);
    ck_assert(json_is_true(json_object_get(j, "truncated")));
    ck_assert_ptr_null(json_object_get(j, "after"));
    json_decref(j);
    free(raw);

    /* Many small fields: the ones that do not fit are dropped whole. */
    capture_start("svc", CART_LOG_DEBUG);
    char *part = big + strlen(big) - 4500;
    cart_log(CART_LOG_INFO, "m", CART_LS("a", part), CART_LS("b", part), CART_LI("c", 3), NULL);
    raw = capture_end(&len);
    ck_assert_uint_le(len, 8192);
    j = parse_line(raw, len - 1);
    ck_assert_str_eq(json_string_value(json_object_get(j, "a")), part);
    const char *b = json_string_value(json_object_get(j, "b"));
    ck_assert_uint_lt(strlen(b), 4500);
    ck_assert_int_eq(strncmp(b, part, strlen(b)), 0);
    ck_assert(json_is_true(json_object_get(j, "truncated")));
    ck_assert_ptr_null(json_object_get(j, "c"));
    json_decref(j);
    free(raw);
    free(big);
}
END_TEST

START_TEST(test_errno_preserved)
{
    capture_start("svc", CART_LOG_DEBUG);
    errno = ENOENT;
    cart_log(CART_LOG_ERROR, "open failed", CART_LS("err", strerror(errno)), NULL);
    ck_assert_int_eq(errno, ENOENT);
    json_decref(single_line(NULL));
}
END_TEST

START_TEST(test_long_service_name)
{
    char name[200];
    memset(name, 's', sizeof name - 1);
    name[sizeof name - 1] = '\0';
    capture_start(name, CART_LOG_DEBUG);
    cart_log(CART_LOG_INFO, "x", NULL);
    json_t *j = single_line(NULL);
    ck_assert_uint_eq(strlen(json_string_value(json_object_get(j, "service"))), 63);
    json_decref(j);
}
END_TEST

#define THREADS          8
#define LINES_PER_THREAD 2000

static void *log_worker(void *arg)
{
    int id = (int)(intptr_t)arg;
    char pad[600];
    memset(pad, 'a' + id, sizeof pad - 1);
    pad[sizeof pad - 1] = '\0';
    for (int i = 0; i < LINES_PER_THREAD; i++)
        cart_log(CART_LOG_INFO, "tick", CART_LI("thread", id), CART_LI("i", i), CART_LS("pad", pad), NULL);
    return NULL;
}

START_TEST(test_threads_do_not_interleave)
{
    pthread_t th[THREADS];
    int seen[THREADS] = {0};

    capture_start("svc", CART_LOG_DEBUG);
    for (int t = 0; t < THREADS; t++)
        ck_assert_int_eq(pthread_create(&th[t], NULL, log_worker, (void *)(intptr_t)t), 0);
    for (int t = 0; t < THREADS; t++)
        pthread_join(th[t], NULL);
    char *text = capture_end(NULL);
    char *save = NULL;
    int n = 0;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save), n++) {
        json_t *j = parse_line(line, strlen(line));
        int t = (int)json_integer_value(json_object_get(j, "thread"));
        ck_assert_int_ge(t, 0);
        ck_assert_int_lt(t, THREADS);
        /* Each thread's lines arrive in its own order. */
        ck_assert_int_eq(json_integer_value(json_object_get(j, "i")), seen[t]);
        seen[t]++;
        const char *pad = json_string_value(json_object_get(j, "pad"));
        ck_assert_uint_eq(strlen(pad), 599);
        ck_assert_int_eq(pad[0], 'a' + t);
        ck_assert_int_eq(pad[598], 'a' + t);
        json_decref(j);
    }
    ck_assert_int_eq(n, THREADS * LINES_PER_THREAD);
    free(text);
}
END_TEST

static Suite *log_suite(void)
{
    Suite *s = suite_create("log");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_basic_line);
    tcase_add_test(tc, test_levels_and_filter);
    tcase_add_test(tc, test_level_parse);
    tcase_add_test(tc, test_escaping);
    tcase_add_test(tc, test_nulls_and_doubles);
    tcase_add_test(tc, test_long_line_truncated);
    tcase_add_test(tc, test_errno_preserved);
    tcase_add_test(tc, test_long_service_name);
    tcase_add_test(tc, test_threads_do_not_interleave);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(log_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
