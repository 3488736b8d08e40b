-- The pipe benchmark's tapio Lua reader: a SubprocessProtocol table whose
-- pipe_data_received counts the bytes, run by the tapio host program.
-- Usage: tapio pipe_tapio.lua SOURCE BYTES
-- Prints bytes, seconds, MB/s and this process's CPU (os.clock) per MB.
local tapio = require "tapio"
local source, bytes = arg[1], assert(tonumber(arg[2]),
  "usage: pipe_tapio.lua SOURCE BYTES")

local Counter = {}
Counter.__index = Counter
function Counter:pipe_data_received(fd, data)
  self.received = self.received + #data
end
function Counter:connection_lost() self.done:set_result(self.received) end

tapio.run(function()
  local loop = tapio.get_running_loop()
  local start, cpu0 = loop:time(), os.clock()
  local done = loop:create_future()
  loop:subprocess_exec(function()
    return setmetatable({ received = 0, done = done }, Counter)
  end, source, { tostring(bytes) }, { stdin = "devnull", stderr = "inherit" })
  local received = done:await()
  local secs, cpu = loop:time() - start, os.clock() - cpu0
  local mb = received / 1e6
  print(("bytes=%d seconds=%.4f MBps=%.1f cpu_us_per_MB=%.1f")
    :format(received, secs, mb / secs, cpu * 1e6 / mb))
  if received ~= bytes then
    os.exit(1)
  end
end)
