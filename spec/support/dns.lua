-- The specs' side of the tests' own DNS server (dns_server.py here):
-- started as a child whose stdin this process holds (closing it ends the
-- server), its port read from the file it writes; with log, the queries
-- it gets are read back from its output.
local tapio = require "tapio"

local M = {}

local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."

local function read_file(path)
  local f = io.open(path)
  if not f then
    return nil
  end
  local s = f:read("*a")
  f:close()
  return s
end

-- Waits (bounded, on a loop of its own, no sleep) until the file exists.
local function wait_for_file(path)
  local loop = tapio.new_loop()
  local content
  local deadline = loop:time() + 10
  local tick
  tick = function()
    content = read_file(path)
    if content or loop:time() > deadline then
      loop:stop()
    else
      loop:call_later(0.01, tick)
    end
  end
  loop:call_soon(tick)
  loop:run_forever()
  loop:close()
  return content
end

--- dns.start({log = true}) -> server: server.port, server.servers
-- ("127.0.0.1:port", for loop:set_resolver), server:queries() (the log so
-- far, with log), server:stop().
function M.start(opts)
  opts = opts or {}
  local port_file = os.tmpname()
  local log_file = os.tmpname()
  os.remove(port_file)
  local cmd = ("exec python3 '%s/dns_server.py' --port-file '%s'%s >'%s'")
    :format(here, port_file, opts.log and " --log" or "", log_file)
  local proc = assert(io.popen(cmd, "w"))
  local content = wait_for_file(port_file)
  os.remove(port_file)
  local port = tonumber(content and content:match("%d+"))
  if not port then
    proc:close()
    os.remove(log_file)
    error("the tests' DNS server did not start", 2)
  end
  local server = { port = port, servers = "127.0.0.1:" .. port }
  function server.queries()
    return (read_file(log_file) or ""):gsub("PORT %d+\n", "")
  end
  function server.stop()
    proc:close()
    os.remove(log_file)
  end
  return server
end

--- A loop's resolver pointed at server, with a short timeout.
function M.use(loop, server, timeout)
  loop:set_resolver { servers = server.servers, timeout = timeout or 2,
                      tries = 1 }
end

return M
