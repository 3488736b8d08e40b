-- tapio.to_thread's round trip: empty jobs one at a time from a task (the
-- latency: fn's bytecode and arguments copied, a pool thread's Lua state
-- loading and calling it, the results back, the task resumed) and from
-- 64 tasks at once (the throughput), with 1 and 4 threads.
-- Usage: build/tapio bench/to_thread.lua [jobs [inflight threads]]
-- (50000 jobs by default; with inflight and threads, that one row alone:
-- bench/to_thread_count.sh counts it so)
local tapio = require "tapio"
local jobs = tonumber(arg and arg[1]) or 50000
local only_inflight, only_threads = tonumber(arg and arg[2]),
  tonumber(arg and arg[3])

local function empty() end

local function measure(inflight, threads)
  local loop = tapio.new_loop()
  loop:set_threadpool_size(threads)
  local start = loop:time()
  loop:run_until_complete(function()
    local tasks = {}
    for i = 1, inflight do
      tasks[i] = function()
        for _ = 1, math.floor(jobs / inflight) do
          tapio.to_thread(empty)
        end
      end
    end
    tapio.gather(tasks)
  end)
  local secs = loop:time() - start
  local n = math.floor(jobs / inflight) * inflight
  loop:close()
  print(("%d thread%s, %2d in flight: %8.0f jobs/s  %6.2f us a job")
    :format(threads, threads > 1 and "s" or " ", inflight, n / secs,
      secs / n * 1e6))
end

if only_inflight then
  measure(only_inflight, only_threads or 4)
else
  measure(1, 1)
  measure(1, 4)
  measure(64, 1)
  measure(64, 4)
end
