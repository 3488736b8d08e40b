--- tapio: asyncio's Transports and Protocols for Lua.
--
-- This is the pure-Lua layer over the C module tapio.core, one module per
-- concern: tapio.future (futures and the async rule), tapio.task (tasks,
-- sleep, run_until_complete), tapio.runner (tapio.run, tapio.Runner),
-- tapio.loop (the loop and server
-- methods that complete later), tapio.reader (StreamReader), tapio.streams
-- (StreamWriter, open_connection, start_server), tapio.subprocess
-- (create_subprocess_exec and _shell), tapio.wait (wait_for, timeout,
-- gather, shield, wait, as_completed), tapio.group (TaskGroup),
-- tapio.sync (Event, Lock, Semaphore, Condition, Barrier), tapio.queue
-- (Queue, PriorityQueue, LifoQueue), tapio.context (ContextVar,
-- copy_context: asyncio's contextvars); this file
-- gathers them into the `tapio` table. Every operation that completes
-- later follows the async rule (see tapio/future.lua and lua/README.md):
-- inside a task it suspends the task, anywhere else it returns a future.
--
-- Works on Lua 5.4 and on LuaJIT (Lua 5.1 API).
local core = require "tapio.core"
local U = require "tapio.util"
local F = require "tapio.future"
local T = require "tapio.task"
local LP = require "tapio.loop"
local R = require "tapio.reader"
local S = require "tapio.streams"
local P = require "tapio.subprocess"
local W = require "tapio.wait"
local G = require "tapio.group"
local Y = require "tapio.sync"
local Q = require "tapio.queue"
local CX = require "tapio.context"
local RN = require "tapio.runner"

local tapio = {}

tapio.version = core.version
tapio.new_loop = core.new_loop
tapio.error = core.error
tapio.strerror = core.strerror
tapio.errors = core.errors
tapio.buffer = core.buffer
tapio.socketpair = core.socketpair
tapio.send = core.send
tapio.recv = core.recv
tapio.close_fd = core.close_fd
tapio.socket = core.socket
tapio.bind = core.bind
tapio.listen = core.listen
tapio.getsockname = core.getsockname
tapio.tls_context = core.tls_context
tapio.pipe = core.pipe
tapio.openpty = core.openpty
tapio.signals = core.signals
tapio.signal_name = core.signal_name
tapio.killpg = core.killpg
tapio.address = core.address
for _, name in ipairs { "PIPE", "STDOUT", "DEVNULL", "INHERIT",
                        "AF_UNSPEC", "AF_INET", "AF_INET6", "AF_UNIX",
                        "SOCK_STREAM", "SOCK_DGRAM", "SOCK_RAW",
                        "IPPROTO_ICMP", "IPPROTO_ICMPV6", "IPPROTO_TCP",
                        "IPPROTO_UDP", "AI_PASSIVE",
                        "AI_CANONNAME", "AI_NUMERICHOST", "AI_V4MAPPED",
                        "AI_ALL", "AI_ADDRCONFIG", "AI_NUMERICSERV",
                        "NI_NUMERICHOST",
                        "NI_NUMERICSERV", "NI_NAMEREQD", "NI_DGRAM",
                        "NI_NOFQDN" } do
  tapio[name] = core[name]
end
for name, code in pairs(core.errors) do
  tapio[name] = code -- tapio.ECONNREFUSED, ...
end

tapio.Future = F.Future
tapio.Task = T.Task
tapio.Context = CX.Context
tapio.Token = CX.Token

-- tapio.run's and a Runner's settings, read at each run:
--- Seconds tapio.run gives the transports it closes at exit to flush what
-- they hold; those still open then are aborted with the loop.
tapio.shutdown_timeout = 5
--- When true, tapio.run turns SIGINT into cancelling its main task (as
-- asyncio.run does with KeyboardInterrupt): main's cleanup runs, and run
-- raises an interrupted error (tapio._interrupted(err) says so). The
-- first SIGINT gives SIGINT its disposition back, so a second one ends
-- the program at once. The tapio program sets it; a host or script may.
tapio.handle_sigint = false
RN.settings = tapio
tapio.StreamReader = R.StreamReader
tapio.StreamWriter = S.StreamWriter
tapio.Process = P.Process
for _, module in ipairs({ U, F, T, LP, R, S, P, W, G, Y, Q, CX, RN }) do
  for name, fn in pairs(module.api) do
    tapio[name] = fn -- cancelled_error, current_task, run, sleep, ...
  end
end

-- ---- Printing like Python ------------------------------------------------

--- tapio.repr(s): a string as Python's repr() prints it ('...' quoted,
-- escaped), so examples print what the reference's Python versions print.
-- Valid UTF-8 passes as it is, as Python prints the decoded str; any
-- other byte from 128 up is escaped (\x80), as in a bytes' repr.
function tapio.repr(v)
  if type(v) ~= "string" then
    return tostring(v)
  end
  local q = "'"
  if v:find("'", 1, true) and not v:find('"', 1, true) then
    q = '"'
  end
  local escapes = { ["\\"] = "\\\\", ["\n"] = "\\n", ["\r"] = "\\r",
                    ["\t"] = "\\t", [q] = "\\" .. q }
  local out, i = {}, 1
  while i <= #v do
    local j = v:find("[%z\1-\31\\'\"\127-\255]", i)
    if not j then
      out[#out + 1] = v:sub(i)
      break
    end
    out[#out + 1] = v:sub(i, j - 1)
    local c = v:sub(j, j)
    local n = c:byte() >= 0x80 and U.utf8_at(v, j)
    if n then
      out[#out + 1] = v:sub(j, j + n - 1)
    elseif escapes[c] or c == "'" or c == '"' then
      out[#out + 1] = escapes[c] or c
    else
      out[#out + 1] = ("\\x%02x"):format(c:byte())
    end
    i = j + (n or 1)
  end
  return q .. table.concat(out) .. q
end

return tapio
