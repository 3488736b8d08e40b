-- tapio.to_thread's round trip: empty jobs one at a time from a task (the
-- latency: fn's bytecode and arguments copied, a pool thread's Lua state
-- loading and calling it, the results back, the task resumed) and from
-- 64 tasks at once (the throughput), with 1 and 4 threads.
-- Usage: build/tapio bench/to_thread.lua [jobs]   (50000 by default)
local tapio = require "tapio"
local jobs = tonumber(arg and arg[1]) or 50000

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

measure(1, 1)
measure(1, 4)
measure(64, 1)
measure(64, 4)
