-- wrk script for scripts/soak.sh: cycles through a mix of normal and faulty
-- functions. The expected status rides in X-Request-Id (watchdog echoes it on
-- every response, its own errors included), so each response is checked no matter
-- which connection or order it arrives on.
local mix = {
  { "GET",  "/f/cgi/hello", 200 },
  { "GET",  "/f/cgi/status", 418 },
  { "POST", "/f/cgi/echo", 200 },
  { "GET",  "/f/cgi/cookies", 200 },
  { "GET",  "/f/cgi/no-type", 200 },
  { "GET",  "/f/cgi/garbage", 502 },
  { "GET",  "/f/cgi/injection", 502 },
  { "GET",  "/f/cgi/fail-early", 502 },
  { "GET",  "/f/faults/segfault", 502 },
  { "GET",  "/f/faults/kill9-midway", 502 },
  { "POST", "/f/faults/no-stdin", 200 },
  { "GET",  "/f/faults/daemon", 200 },
  { "GET",  "/f/faults/big-header", 502 },
  { "GET",  "/f/faults/nul-header", 502 },
  { "GET",  "/f/cgi/held-stdout", 200 },
  { "GET",  "/f/cgi/after-204", 204 },
  { "GET",  "/f/nothing-here", 404 },
  { "GET",  "/f/cgi/hello", 200 },
  { "GET",  "/f/cgi/env", 200 },
  { "GET",  "/f/cgi/hello", 200 },
}
local body = string.rep("x", 4096)
local threads = {}
local thread_index = 0

function setup(thread)
  thread_index = thread_index + 1
  thread:set("id", thread_index)
  table.insert(threads, thread)
end

function init(args)
  counter = 0
  responses = 0
  unexpected = 0
  first_bad = ""
end

function request()
  counter = counter + 1
  local entry = mix[(counter % #mix) + 1]
  local headers = { ["X-Request-Id"] = string.format("exp%d-t%d-%d", entry[3], id, counter) }
  if entry[1] == "POST" then
    return wrk.format("POST", entry[2], headers, body)
  end
  return wrk.format("GET", entry[2], headers)
end

function response(status, headers, _)
  responses = responses + 1
  local rid = headers["X-Request-Id"] or headers["x-request-id"] or ""
  local expected = tonumber(string.match(rid, "^exp(%d+)-"))
  if expected ~= status then
    unexpected = unexpected + 1
    if first_bad == "" then
      first_bad = string.format("%s answered %d", rid, status)
    end
  end
end

function done(summary, latency, requests)
  local total, bad, example = 0, 0, ""
  for _, thread in ipairs(threads) do
    total = total + thread:get("responses")
    bad = bad + thread:get("unexpected")
    local fb = thread:get("first_bad")
    if example == "" and fb ~= "" then example = fb end
  end
  io.write(string.format("soak-responses %d\nsoak-unexpected %d\n", total, bad))
  if example ~= "" then io.write("soak-first-unexpected " .. example .. "\n") end
  io.write(string.format("soak-errors connect=%d read=%d write=%d timeout=%d\n",
    summary.errors.connect, summary.errors.read, summary.errors.write, summary.errors.timeout))
end
