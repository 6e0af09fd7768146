-- wrk script for bench/callbacks_http.py: POSTs prepared STK callbacks, each to its own
-- payment's URL, rotating through a file of "<path>\t<body>" lines. Thread k of n sends lines
-- k, k+n, k+2n, ... so threads never send the same callback at once.
--
--   wrk -t1 -c32 -d15s -s bench/wrk_callbacks.lua http://127.0.0.1:8000 -- requests.tsv 1
--
-- Prints one line "BENCH_JSON {...}" with the counts and latency percentiles (microseconds).

local thread_counter = 0

function setup(thread)
   thread:set("thread_index", thread_counter)
   thread_counter = thread_counter + 1
end

local requests = {}
local position = 0

function init(args)
   local path = args[1]
   local thread_count = tonumber(args[2] or "1")
   -- X-Forwarded-Proto as a TLS-terminating proxy in front of gunicorn sets it.
   local headers = {
      ["Content-Type"] = "application/json",
      ["User-Agent"] = "bench-wrk",
      ["X-Forwarded-Proto"] = "https",
   }
   local line_number = 0
   for line in io.lines(path) do
      if line_number % thread_count == thread_index then
         local tab = string.find(line, "\t", 1, true)
         local request_path = string.sub(line, 1, tab - 1)
         local body = string.sub(line, tab + 1)
         requests[#requests + 1] = wrk.format("POST", request_path, headers, body)
      end
      line_number = line_number + 1
   end
   if #requests == 0 then
      error("no requests for thread " .. thread_index .. " in " .. path)
   end
end

function request()
   position = position % #requests + 1
   return requests[position]
end

function done(summary, latency, requests_stats)
   local errors = summary.errors
   io.write(string.format(
      'BENCH_JSON {"requests": %d, "duration_us": %d, "bytes": %d, '
         .. '"errors_connect": %d, "errors_read": %d, "errors_write": %d, '
         .. '"errors_status": %d, "errors_timeout": %d, '
         .. '"latency_us": {"min": %d, "mean": %.1f, "stdev": %.1f, "p50": %d, "p90": %d, '
         .. '"p99": %d, "p99_9": %d, "max": %d}}\n',
      summary.requests, summary.duration, summary.bytes,
      errors.connect, errors.read, errors.write, errors.status, errors.timeout,
      latency.min, latency.mean, latency.stdev,
      latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency:percentile(99.9), latency.max))
end
