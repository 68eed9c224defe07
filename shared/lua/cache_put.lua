-- cache_put.lua: writes a cart's cache entry unless Redis already holds a newer version of it.
--
--   EVALSHA <sha> 1 cart:{<user_id>} <version> <cart JSON> <TTL seconds>
--
-- Returns 1 when the entry was written (SET ... EX ttl) and 0 when the stored entry has a greater
-- version and was kept. Whatever else the key holds (nothing, corrupt bytes, JSON without a
-- numeric "version", another data type) is overwritten: a cache entry is only ever a copy, and
-- the one thing a write must not do is put an older cart over a newer one
-- (docs/reference/storage.md, Redis).
-- Versions are compared as Lua numbers (doubles): exact up to 2^53.

local key, version, json, ttl = KEYS[1], ARGV[1], ARGV[2], ARGV[3]

if key == nil or json == nil then
  return redis.error_reply('ERR cache_put: expected 1 key and 3 arguments')
end
if version == nil or not string.match(version, '^%-?%d+$') then
  return redis.error_reply('ERR cache_put: the version must be an integer')
end
if ttl == nil or not string.match(ttl, '^%d+$') or tonumber(ttl) < 1 then
  return redis.error_reply('ERR cache_put: the TTL must be a positive integer of seconds')
end

-- pcall: GET fails on a key of another type, which is then simply overwritten.
local ok, current = pcall(redis.call, 'GET', key)
if ok and type(current) == 'string' then
  local decoded, doc = pcall(cjson.decode, current)
  if decoded and type(doc) == 'table' then
    local stored = doc['version']
    -- stored == stored rules out NaN; infinities are not versions either.
    if type(stored) == 'number' and stored == stored and stored ~= math.huge and stored ~= -math.huge
        and stored > tonumber(version) then
      return 0
    end
  end
end

redis.call('SET', key, json, 'EX', ttl)
return 1
