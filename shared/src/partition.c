#include "cartshard/partition.h"

#define FNV32_OFFSET_BASIS 2166136261u
#define FNV32_PRIME        16777619u

uint32_t cart_fnv1a32(const void *data, size_t len)
{
    const unsigned char *p = data;
    uint32_t h = FNV32_OFFSET_BASIS;

    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= FNV32_PRIME;
    }
    return h;
}

uint32_t cart_partition_of(const char *user_id, size_t len, uint32_t partitions)
{
    return cart_fnv1a32(user_id, len) % partitions;
}

uint32_t cart_shard_of(uint32_t partition, uint32_t partitions, uint32_t shards)
{
    return (uint32_t)((uint64_t)partition * shards / partitions);
}

uint32_t cart_worker_of(uint32_t partition, uint32_t partitions, uint32_t workers)
{
    return (uint32_t)((uint64_t)partition * workers / partitions);
}

void cart_shard_partitions(uint32_t shard, uint32_t partitions, uint32_t shards, uint32_t *first, uint32_t *last)
{
    /* The smallest p with p * shards / partitions >= shard is ceil(shard * partitions / shards). */
    uint64_t lo = ((uint64_t)shard * partitions + shards - 1) / shards;
    uint64_t hi = ((uint64_t)(shard + 1) * partitions + shards - 1) / shards;

    *first = (uint32_t)lo;
    *last = (uint32_t)(hi - 1);
}
