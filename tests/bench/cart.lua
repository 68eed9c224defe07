-- cart.lua: the requests of `scripts/dev bench` for wrk (LuaJIT), and its results as JSON.
--
--   wrk -t2 -c64 -d10s -s cart.lua http://127.0.0.1:38080 -- key=value ...
--
-- Options (after --):
--   path=/v1/carts/%s   the request path; %s is the user id (the static baseline passes
--                       /cart.json?u=%s, so both sides format and send the same way)
--   prefix=bh- users=1000 width=6
--                       the users: prefix .. the number 0..users-1, zero-padded to width digits
--   threads=2           wrk's -t (required)
--   method=GET          or POST (with body=)
--   body=...            a request body (JSON), sent with Content-Type: application/json
--   async=1             adds Prefer: respond-async
--   mix=1               the mixed load: per 13 requests 10 GET cart, 2 add item, 1 checkout
--   rate=2000           paces the whole run at this many requests per second (all threads)
--
-- Every request is generated in init(), so request() is a table lookup: the client's cost per
-- request is the same for every scenario and its baseline. Thread t of T takes the users whose
-- number is t mod T, one after another, so no two threads send the same user and a run
-- longer than the user list starts over from the first. No response() hook: wrk then skips
-- parsing headers and bodies (status codes come from the gateway's own metrics). done() prints
-- one line, "BENCH_RESULT <json>", which the bench parses.

local ffi = require("ffi")
ffi.cdef([[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clock_id, bench_timespec *tp);
]])
local CLOCK_MONOTONIC = 1
local ts = ffi.new("bench_timespec")

local function now_ms()
    ffi.C.clock_gettime(CLOCK_MONOTONIC, ts)
    return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end

-- setup() and done() run in wrk's main Lua state; the rest runs once per thread. wrk calls a
-- thread's setup() and then its init() before it creates the next thread, so init() learns its
-- index here and the number of threads from the threads= option.
local threads = {}

function setup(thread)
    thread:set("thread_index", #threads)
    table.insert(threads, thread)
end

local requests = {}
local next_request = 1
local pace_interval_ms = nil
local pace_start_ms = nil
local pace_slot = 0
late = 0 -- requests sent after their slot (global: done() reads it through thread:get)

local function options(args)
    local o = { path = "/v1/carts/%s", prefix = "u", users = "1", width = "6", method = "GET" }
    for _, a in ipairs(args) do
        if a ~= "--" then
            local k, v = a:match("^([%w_]+)=(.*)$")
            if k == nil then
                error("cart.lua: expected key=value, got " .. a)
            end
            o[k] = v
        end
    end
    return o
end

local function user_id(o, n)
    return o.prefix .. string.format("%0" .. o.width .. "d", n)
end

function init(args)
    local o = options(args)
    local users = tonumber(o.users)
    local thread_count = tonumber(o.threads)
    local headers = {}
    if o.body ~= nil then
        headers["Content-Type"] = "application/json"
    end
    if o.async == "1" then
        headers["Prefer"] = "respond-async"
    end
    local mine = {}
    for n = thread_index, users - 1, thread_count do
        table.insert(mine, user_id(o, n))
    end
    if #mine == 0 then
        error("cart.lua: fewer users than threads")
    end
    if o.mix == "1" then
        -- GET x5, add, GET x5, add, checkout; request i goes to user i mod #mine with step i mod 13
        -- of the pattern, so over 13 * #mine requests (#mine not a multiple of 13) every user
        -- gets every step, and a user's add and checkout are far apart in time.
        if #mine % 13 == 0 then
            table.remove(mine)
        end
        local add_headers = { ["Content-Type"] = "application/json" }
        local add_body = o.body or '{"sku":"A1","quantity":1}'
        for i = 0, 13 * #mine - 1 do
            local u = mine[i % #mine + 1]
            local step = i % 13
            local r
            if step == 5 or step == 11 then
                r = wrk.format("POST", "/v1/carts/" .. u .. "/items", add_headers, add_body)
            elseif step == 12 then
                r = wrk.format("POST", "/v1/carts/" .. u .. "/checkout", {}, nil)
            else
                r = wrk.format("GET", "/v1/carts/" .. u, {}, nil)
            end
            table.insert(requests, r)
        end
    else
        for _, u in ipairs(mine) do
            table.insert(requests, wrk.format(o.method, string.format(o.path, u), headers, o.body))
        end
    end
    if o.rate ~= nil then
        -- This thread's share of the rate, as a schedule of send slots: every request (on
        -- whichever of the thread's connections is free) takes the next slot and waits for it.
        pace_interval_ms = 1000 * thread_count / tonumber(o.rate)
    else
        delay = nil
    end
end

-- Called before every request when defined; init() removes it unless the run is paced, since
-- wrk looks for it only after init() and an unpaced run then skips the timer per request.
function delay()
    local now = now_ms()
    if pace_start_ms == nil then
        pace_start_ms = now
    end
    local slot = pace_start_ms + pace_slot * pace_interval_ms
    pace_slot = pace_slot + 1
    if slot > now then
        return slot - now
    end
    if now - slot >= 1 then
        late = late + 1
    end
    return 0
end

function request()
    local r = requests[next_request]
    next_request = next_request % #requests + 1
    return r
end

function done(summary, latency, _)
    local late_total = 0
    for _, t in ipairs(threads) do
        late_total = late_total + (t:get("late") or 0)
    end
    local e = summary.errors
    io.write(string.format(
        'BENCH_RESULT {"duration_us":%d,"requests":%d,"bytes":%d,'
            .. '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},'
            .. '"latency_us":{"mean":%.1f,"stdev":%.1f,"max":%d,"p50":%d,"p90":%d,"p99":%d,"p99_9":%d},'
            .. '"late":%d}\n',
        summary.duration, summary.requests, summary.bytes,
        e.connect, e.read, e.write, e.status, e.timeout,
        latency.mean, latency.stdev, latency.max,
        latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9),
        late_total))
end
