-- count.lua: counts one change notice into its minute's live buckets, once per event_id
-- (docs/internals/stats.md). Atomic: the dedup check and every increment happen together or not
-- at all.
--
-- KEYS[1] stats:ready       the marker: absent means Redis lost the figures (or a rebuild runs)
-- KEYS[2] stats:c:<minute>  hash: the counters, and v:<currency> the checkout value
-- KEYS[3] stats:h:<minute>  HyperLogLog of the cart ids
-- KEYS[4] stats:s:<minute>  sorted set: sku -> units added
-- KEYS[5] stats:e:<minute>  set: the event ids counted
-- ARGV: event_id, expire_at (unix seconds), cart_id, sku ("" for none), units, value field
--       ("" for none), value, then counter name and increment pairs.
-- Returns -1 (no marker: nothing done), 0 (a duplicate: nothing done) or 1 (counted).
if redis.call('EXISTS', KEYS[1]) == 0 then
  return -1
end
if redis.call('SADD', KEYS[5], ARGV[1]) == 0 then
  return 0
end
local at = tonumber(ARGV[2])
redis.call('EXPIREAT', KEYS[5], at)
redis.call('HINCRBY', KEYS[2], 'notices', 1)
for i = 8, #ARGV, 2 do
  redis.call('HINCRBY', KEYS[2], ARGV[i], ARGV[i + 1])
end
if ARGV[6] ~= '' then
  redis.call('HINCRBY', KEYS[2], ARGV[6], ARGV[7])
end
redis.call('EXPIREAT', KEYS[2], at)
redis.call('PFADD', KEYS[3], ARGV[3])
redis.call('EXPIREAT', KEYS[3], at)
if ARGV[4] ~= '' then
  redis.call('ZINCRBY', KEYS[4], ARGV[5], ARGV[4])
  redis.call('EXPIREAT', KEYS[4], at)
end
return 1
