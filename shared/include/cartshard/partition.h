/*
 * partition.h: the partition function and shard map (docs/reference/partitioning.md).
 *
 *   partition = fnv1a_32(user_id bytes) mod CART_PARTITIONS
 *   shard     = partition * SHARDS / CART_PARTITIONS        (integer arithmetic)
 *
 * fnv1a_32 is the same function as NATS's `partition(n, token)` subject mapping.
 */
#ifndef CARTSHARD_PARTITION_H
#define CARTSHARD_PARTITION_H

#include <stddef.h>
#include <stdint.h>

/* FNV-1a, 32 bits: offset basis 2166136261, prime 16777619. */
uint32_t cart_fnv1a32(const void *data, size_t len);

/* The partition of a user, in [0, partitions). `partitions` must be >= 1. */
uint32_t cart_partition_of(const char *user_id, size_t len, uint32_t partitions);

/* The shard index, in [0, shards), that owns `partition`. Requires partition < partitions,
 * 1 <= shards <= partitions. Computed in 64 bits, so it never overflows. */
uint32_t cart_shard_of(uint32_t partition, uint32_t partitions, uint32_t shards);

/* The contiguous partition range [*first, *last] owned by `shard`; the inverse of cart_shard_of.
 * A shard may own no partition only when shards > partitions, which config rejects. */
void cart_shard_partitions(uint32_t shard, uint32_t partitions, uint32_t shards, uint32_t *first, uint32_t *last);

/* The worker, by rank in [0, workers), that applies `partition` when `workers` workers are live:
 * partition * workers / partitions, the shard map's arithmetic. Each worker gets one contiguous
 * run of partitions, as equal as they can be, so that a shard has as few writers as the counts
 * allow: with as many workers as shards (or a divisor or multiple of that), every shard is
 * applied by one worker (or every worker writes to one shard). More workers than partitions
 * leave some with none. Requires partition < partitions and workers >= 1. */
uint32_t cart_worker_of(uint32_t partition, uint32_t partitions, uint32_t workers);

#endif
