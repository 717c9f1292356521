-- wrk script for bench/ingest_bench.py: POSTs a body template with unique audit_event_ids, optional pacing.
-- Environment: BENCH_TEMPLATE (file with "@ID@" placeholders), BENCH_DELAY_MS (per-connection pause, may be fractional), BENCH_OUT,
-- BENCH_SPREAD=1 (pauses drawn from an exponential distribution with that mean, so connections do not move in step),
-- BENCH_RATE (requests per second for each wrk thread: a fixed schedule on the monotonic clock instead of a pause).
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } auditlake_timespec;
int clock_gettime(int clock, auditlake_timespec *now);
]]
local CLOCK_MONOTONIC = 1
local clock_now = ffi.new("auditlake_timespec")
local threads = {}
local counter = 0

local function now_ms()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, clock_now)
  return tonumber(clock_now.tv_sec) * 1000 + tonumber(clock_now.tv_nsec) / 1e6
end

function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  local file = assert(io.open(os.getenv("BENCH_TEMPLATE"), "rb"))
  local text = file:read("*a")
  file:close()
  pieces = {}
  local start = 1
  while true do
    local s, e = string.find(text, "@ID@", start, true)
    if not s then break end
    table.insert(pieces, string.sub(text, start, s - 1))
    start = e + 1
  end
  tail = string.sub(text, start)
  pause = tonumber(os.getenv("BENCH_DELAY_MS") or "0")
  spread = os.getenv("BENCH_SPREAD") == "1"
  rate = tonumber(os.getenv("BENCH_RATE") or "0")
  slot_ms = nil  -- with a rate: when this thread's next request is due (requests claim slots in turn)
  math.randomseed(os.time() * 1000 + tid)
  started = os.time()  -- in every id: a later run (the measured one after the warm-up) repeats no id
  -- Each id is "<started>-<event index>" (fixed per thread, made once here) followed by "-4<thread>-8000-<request
  -- counter>" (one string.format per request, not one per event: the generator shares the cores it measures).
  id_heads = {}
  for i = 1, #pieces do
    id_heads[i] = string.format("%08x-%04x", started, i)
  end
  statuses = {}
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  counter = counter + 1
  local id_tail = string.format("-4%03x-8000-%012x", tid, counter)
  local parts = {}
  local n = 0
  for i = 1, #pieces do
    parts[n + 1] = pieces[i]
    parts[n + 2] = id_heads[i]
    parts[n + 3] = id_tail
    n = n + 3
  end
  parts[n + 1] = tail
  return wrk.format(nil, nil, nil, table.concat(parts))
end

function delay()
  if rate > 0 then
    -- A schedule, not a pause: the thread's requests are due 1000 / rate ms apart whatever the answers take,
    -- and one that is late goes at once, so the rate offered is the rate asked for as long as the sixteen
    -- connections can carry it (the answers' time no longer lowers it, as it does a closed loop's).
    local now = now_ms()
    slot_ms = (slot_ms or now) + 1000 / rate
    return math.max(0, math.floor(slot_ms - now + 0.5))
  end
  if spread then
    return math.floor(-pause * math.log(1 - math.random()) + 0.5)
  end
  -- wrk waits whole milliseconds: a fractional pause is one of its two neighbours, the upper one as often
  -- as the fraction says (so 2.3 ms averages 2.3 ms; a whole pause is always itself).
  local whole = math.floor(pause)
  if math.random() < pause - whole then
    return whole + 1
  end
  return whole
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local counts = {}
  for _, thread in ipairs(threads) do
    local seen = thread:get("statuses")
    for status, count in pairs(seen) do
      counts[status] = (counts[status] or 0) + count
    end
  end
  local out = assert(io.open(os.getenv("BENCH_OUT"), "w"))
  out:write("{\"requests\":", summary.requests, ",\"duration_us\":", summary.duration,
            ",\"errors\":", summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
            ",\"p50_us\":", latency:percentile(50), ",\"p90_us\":", latency:percentile(90),
            ",\"p99_us\":", latency:percentile(99), ",\"max_us\":", latency.max, ",\"statuses\":{")
  local first = true
  for status, count in pairs(counts) do
    if not first then out:write(",") end
    out:write("\"", status, "\":", count)
    first = false
  end
  out:write("}}\n")
  out:close()
end
