-- luv's uv.new_work round trip, to set beside bench/to_thread.lua: empty
-- jobs one at a time (each queued from the last one's after-work
-- callback) and 64 in flight, on libuv's pool (UV_THREADPOOL_SIZE, 4).
-- Usage: lua5.4 bench/to_thread_luv.lua [jobs [inflight]]   (50000 jobs
-- by default; with inflight, that row alone; UV_THREADPOOL_SIZE=1 for one
-- thread)
local uv = require "luv"
local jobs = tonumber(arg and arg[1]) or 50000
local only_inflight = tonumber(arg and arg[2])

local function measure(inflight)
  local done, queued = 0, 0
  local work
  work = uv.new_work(function() end, function()
    done = done + 1
    if queued < jobs then
      queued = queued + 1
      work:queue()
    end
  end)
  local t0 = uv.hrtime()
  for _ = 1, inflight do
    queued = queued + 1
    work:queue()
  end
  uv.run()
  local secs = (uv.hrtime() - t0) / 1e9
  print(("luv, %2d in flight: %8.0f jobs/s  %6.2f us a job")
    :format(inflight, done / secs, secs / done * 1e6))
end

if only_inflight then
  measure(only_inflight)
else
  measure(1)
  measure(64)
end
