#include <check.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "cartshard/partition.h"

/* Reference values of FNV-1a 32 (from the FNV specification's test vectors). */
START_TEST(test_fnv_vectors)
{
    ck_assert_uint_eq(cart_fnv1a32("", 0), 2166136261u);
    ck_assert_uint_eq(cart_fnv1a32("a", 1), 0xe40c292cu);
    ck_assert_uint_eq(cart_fnv1a32("foobar", 6), 0xbf9cf968u);
}
END_TEST

START_TEST(test_partition_in_range)
{
    char id[16];
    for (int i = 0; i < 10000; i++) {
        int n = snprintf(id, sizeof id, "user-%d", i);
        uint32_t p = cart_partition_of(id, (size_t)n, 32);
        ck_assert_uint_lt(p, 32);
        ck_assert_uint_eq(p, cart_fnv1a32(id, (size_t)n) % 32);
    }
    ck_assert_uint_eq(cart_partition_of("u1", 2, 1), 0);
}
END_TEST

START_TEST(test_shard_map_contiguous)
{
    /* Every shard gets a contiguous, equal-as-possible range; the inverse matches. */
    for (uint32_t parts = 1; parts <= 64; parts++) {
        for (uint32_t shards = 1; shards <= parts; shards++) {
            uint32_t prev = 0, count = 0;
            for (uint32_t p = 0; p < parts; p++) {
                uint32_t s = cart_shard_of(p, parts, shards);
                ck_assert_uint_lt(s, shards);
                ck_assert(s == prev || s == prev + 1);
                prev = s;
                uint32_t first, last;
                cart_shard_partitions(s, parts, shards, &first, &last);
                ck_assert_uint_le(first, p);
                ck_assert_uint_ge(last, p);
                count++;
            }
            ck_assert_uint_eq(prev, shards - 1);
            ck_assert_uint_eq(count, parts);
        }
    }
    /* docs/reference/partitioning.md's example: 32 partitions on 2 shards split 0-15 / 16-31. */
    ck_assert_uint_eq(cart_shard_of(15, 32, 2), 0);
    ck_assert_uint_eq(cart_shard_of(16, 32, 2), 1);
    /* No overflow with large values. */
    ck_assert_uint_eq(cart_shard_of(65535, 65536, 64), 63);
}
END_TEST

START_TEST(test_worker_share)
{
    /* Every partition has exactly one worker; each worker's run is contiguous and within one of
     * the even share; and a shard is written by as few workers as the counts allow. */
    for (uint32_t parts = 1; parts <= 64; parts++) {
        for (uint32_t workers = 1; workers <= parts + 3; workers++) {
            uint32_t count[80] = {0}, prev = 0;
            for (uint32_t p = 0; p < parts; p++) {
                uint32_t w = cart_worker_of(p, parts, workers);
                ck_assert_uint_lt(w, workers);
                ck_assert(w >= prev);
                prev = w;
                count[w]++;
            }
            for (uint32_t w = 0; w < workers; w++) {
                ck_assert_uint_le(count[w], (parts + workers - 1) / workers);
                ck_assert_uint_ge(count[w], parts / workers);
            }
            /* When one count divides the other, the shards and the workers nest: a shard has one
             * writer (fewer workers), or a worker writes to one shard (more workers). */
            for (uint32_t shards = 1; shards <= parts; shards++) {
                if (shards % workers != 0 && workers % shards != 0)
                    continue;
                for (uint32_t p = 0; p < parts; p++) {
                    uint32_t s = cart_shard_of(p, parts, shards), w = cart_worker_of(p, parts, workers);
                    if (shards % workers == 0)
                        ck_assert_uint_eq(w, s / (shards / workers));
                    if (workers % shards == 0)
                        ck_assert_uint_eq(s, w / (workers / shards));
                }
            }
        }
    }
    /* The deployments' counts: 32 partitions, 2 shards. Two workers take a shard each. */
    ck_assert_uint_eq(cart_worker_of(15, 32, 2), 0);
    ck_assert_uint_eq(cart_worker_of(16, 32, 2), 1);
    /* Four take half a shard each; three take 11, 11 and 10 (the second one on both shards). */
    ck_assert_uint_eq(cart_worker_of(7, 32, 4), 0);
    ck_assert_uint_eq(cart_worker_of(8, 32, 4), 1);
    ck_assert_uint_eq(cart_worker_of(10, 32, 3), 0);
    ck_assert_uint_eq(cart_worker_of(11, 32, 3), 1);
    ck_assert_uint_eq(cart_worker_of(21, 32, 3), 1);
    ck_assert_uint_eq(cart_worker_of(22, 32, 3), 2);
    /* More workers than partitions: some have none. */
    ck_assert_uint_eq(cart_worker_of(0, 2, 5), 0);
    ck_assert_uint_eq(cart_worker_of(1, 2, 5), 2);
}
END_TEST

static Suite *partition_suite(void)
{
    Suite *s = suite_create("partition");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_fnv_vectors);
    tcase_add_test(tc, test_partition_in_range);
    tcase_add_test(tc, test_shard_map_contiguous);
    tcase_add_test(tc, test_worker_share);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(partition_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
