-- wrk script for bench/ingest_bench.py: POSTs a body template with unique audit_event_ids, optional pacing.
-- Environment: BENCH_TEMPLATE (file with "@ID@" placeholders), BENCH_DELAY_MS (per-connection pause, may be fractional), BENCH_OUT,
-- BENCH_SPREAD=1 (pauses drawn from an exponential distribution with that mean, so connections do not move in step).
local threads = {}
local counter = 0

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
