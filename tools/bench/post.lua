-- wrk script for the benchmark: POST a unique JSON body per request, count the answers by
-- class, and print one machine-readable line at the end.
--
-- Configured from the environment, so one script serves every target:
--   BENCH_PATH     request path (default /route)
--   BENCH_BODY     "router" ({"sender_id", "payload"}) or "openai" (a chat completion request)
--   BENCH_HEADERS  extra headers, one "Name: value" per line
--   BENCH_RUN      a token that makes bodies unique across runs
--
-- Every body differs (thread id and sequence number), so the router derives a distinct log_id
-- for each request and writes one row per 2xx answer.

local path = os.getenv("BENCH_PATH") or "/route"
local body_kind = os.getenv("BENCH_BODY") or "router"
local header_spec = os.getenv("BENCH_HEADERS") or ""
local run_token = os.getenv("BENCH_RUN") or "run"

local threads = {}
local next_id = 1

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

function init(args)
  -- Globals, so that done() can read them per thread with thread:get().
  sent, ok, non2xx, duplicates = 0, 0, 0, 0
  headers = { ["Content-Type"] = "application/json" }
  for line in string.gmatch(header_spec, "[^\n]+") do
    local name, value = string.match(line, "^([^:]+):%s*(.-)%s*$")
    if name then headers[name] = value end
  end
end

function request()
  sent = sent + 1
  local body
  if body_kind == "openai" then
    body = string.format(
      '{"model":"bench","messages":[{"role":"user","content":"benchmark %s %d %d"}]}',
      run_token, id, sent)
  else
    body = string.format(
      '{"sender_id":"bench-%s-%d-%d","payload":{"message":"benchmark signal","seq":%d}}',
      run_token, id, sent, sent)
  end
  return wrk.format("POST", path, headers, body)
end

function response(status, hdrs, body)
  if status >= 200 and status < 300 then
    ok = ok + 1
    if body and string.find(body, '"duplicate":true', 1, true) then
      duplicates = duplicates + 1
    end
  else
    non2xx = non2xx + 1
  end
end

function done(summary, latency, requests)
  local t_sent, t_ok, t_non2xx, t_dup = 0, 0, 0, 0
  for _, thread in ipairs(threads) do
    t_sent = t_sent + thread:get("sent")
    t_ok = t_ok + thread:get("ok")
    t_non2xx = t_non2xx + thread:get("non2xx")
    t_dup = t_dup + thread:get("duplicates")
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%.0f,"bytes":%.0f,' ..
    '"p50_us":%.0f,"p90_us":%.0f,"p99_us":%.0f,"mean_us":%.1f,"max_us":%.0f,' ..
    '"connect_errors":%d,"read_errors":%d,"write_errors":%d,"status_errors":%d,' ..
    '"timeouts":%d,"sent":%d,"ok":%d,"non2xx":%d,"duplicates":%d}\n',
    summary.requests, summary.duration, summary.bytes,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.mean, latency.max,
    e.connect, e.read, e.write, e.status, e.timeout,
    t_sent, t_ok, t_non2xx, t_dup))
end
