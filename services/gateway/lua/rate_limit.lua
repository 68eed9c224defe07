-- rate_limit.lua: one request against a client's limit, shared by every gateway (GCRA, the
-- generic cell rate algorithm: a token bucket kept as one timestamp).
--
--   EVALSHA <sha> 1 rl:{<client>} <rate per second> <burst>
--
-- The key holds the client's "theoretical arrival time" (TAT, in microseconds of Redis's clock)
-- and expires when the bucket is full again. A request is allowed when, after it, the TAT is at
-- most `burst` emission intervals ahead of now. Returns {allowed (1 or 0), remaining,
-- retry_after_ms, reset_ms}: remaining is how many more requests would be allowed right now,
-- retry_after_ms when the next one will be (0 if allowed), reset_ms when the bucket is full again.
-- services/gateway/src/core/ratelimit.c is the same algorithm, for when Redis cannot be reached.

local key = KEYS[1]
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
if key == nil or rate == nil or burst == nil or rate <= 0 or burst < 1 then
  return redis.error_reply('ERR rate_limit: expected 1 key, a positive rate and a burst >= 1')
end

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = 1000000 / rate
local window = interval * burst

local tat = tonumber(redis.call('GET', key))
if tat == nil or tat < now then
  tat = now
end
local new_tat = tat + interval
local allow_at = new_tat - window

if now < allow_at then
  local reset = tat - now
  return {0, 0, math.ceil((allow_at - now) / 1000), math.ceil(reset / 1000)}
end

local reset = new_tat - now
redis.call('SET', key, string.format('%.0f', new_tat), 'PX', math.max(1, math.ceil(reset / 1000)))
return {1, math.floor((window - reset) / interval), 0, math.ceil(reset / 1000)}
