-- The ABI as LuaJIT's FFI sees it: the generated declarations parse as
-- they are, and a server and a client made only of FFI callbacks talk.
-- Usage: luajit abi_luajit.lua <tapio_cdef.h> <libtapio.so>
local ffi = require "ffi"
local cdef, lib = arg[1], arg[2]
ffi.cdef(assert(io.open(cdef)):read("*a"))
local C = ffi.load(lib)

local function check(cond, msg)
  if not cond then error(msg, 2) end
end

check(C.tapio_version() == 0x000100, "version")
check(ffi.string(C.tapio_errname(C.TAPIO_ECONNREFUSED)) == "ECONNREFUSED",
      "errname")

local lp = ffi.new("tapio_loop*[1]")
check(C.tapio_loop_new(lp) == 0, "loop_new")
local loop = lp[0]
local log, keep = {}, {}
local function cb(ctype, fn)
  local f = ffi.cast(ctype, fn)
  keep[#keep + 1] = f
  return f
end

-- Server side: echo, then close.
local server_proto = ffi.new("tapio_protocol")
server_proto.size = ffi.sizeof("tapio_protocol")
server_proto.data_received = cb(
  "void (*)(void *, tapio_transport *, const char *, size_t)",
  function(_, t, data, len)
    C.tapio_transport_write(t, data, len)
    C.tapio_transport_close(t)
  end)
local factory = cb(
  "tapio_protocol_factory",
  function(_, _, proto, ud)
    proto[0] = server_proto
    ud[0] = nil
    return 0
  end)

-- Client side: send, record the echo and the close.
local client_proto = ffi.new("tapio_protocol")
client_proto.size = ffi.sizeof("tapio_protocol")
client_proto.connection_made = cb(
  "void (*)(void *, tapio_transport *)",
  function(_, t) C.tapio_transport_write(t, "ping", 4) end)
client_proto.data_received = cb(
  "void (*)(void *, tapio_transport *, const char *, size_t)",
  function(_, _, data, len) log[#log + 1] = ffi.string(data, len) end)
client_proto.connection_lost = cb(
  "void (*)(void *, tapio_transport *, int, const char *)",
  function(_, _, code)
    log[#log + 1] = "lost:" .. code
    C.tapio_loop_stop(loop)
  end)

local server
local connected = cb("tapio_connect_fn", function(_, status)
  check(status == 0, "connect status " .. status)
end)
local listening = cb("tapio_server_fn", function(_, status, s)
  check(status == 0, "listen status " .. status)
  server = s
  local host, port = ffi.new("char[64]"), ffi.new("int[1]")
  check(C.tapio_server_get_address(s, 0, host, 64, port, nil) == 0, "addr")
  check(C.tapio_create_connection(loop, host, port[0], client_proto, nil,
                                  nil, connected, nil) == 0, "connect")
end)
local hosts = ffi.new("const char *[1]", {"127.0.0.1"})
check(C.tapio_create_server(loop, hosts, 1, 0, factory, nil, nil, listening,
                            nil) == 0, "create_server")
-- Bound the run: a timer stops the loop if the exchange never ends.
local timeout = cb("tapio_call_fn", function()
  log[#log + 1] = "timeout"
  C.tapio_loop_stop(loop)
end)
local h = ffi.new("tapio_handle*[1]")
C.tapio_call_later(loop, 10, timeout, nil, h)
check(C.tapio_loop_run(loop) == 0, "run")
C.tapio_handle_cancel(h[0])
C.tapio_handle_release(h[0])
C.tapio_server_release(server)
check(C.tapio_loop_free(loop) == 0, "loop_free")
for _, f in ipairs(keep) do f:free() end
local got = table.concat(log, " ")
check(got == "ping lost:0", "sequence: " .. got)

-- Every function the declarations hold, called with NULL for each pointer
-- and 0 for each number: the header's rule that a NULL handle is never a
-- crash, checked for functions added later too. A function whose first
-- argument is a handle answers 0 (a query) or TAPIO_EINVAL.
local decls = assert(io.open(cdef)):read("*a"):gsub("/%*.-%*/", "")
local handles = { tapio_loop = true, tapio_transport = true,
                  tapio_server = true, tapio_handle = true,
                  tapio_options = true }
local called = 0
local decl = "\n([%w_ ]-%**)%s*(tapio_[%w_]+)%s*(%b())%s*;"
for ret, name, params in decls:gmatch(decl) do
  local args, first = {}, nil
  -- split at top-level commas (function pointer types have their own)
  local depth, cur = 0, ""
  for c in params:sub(2, -2):gmatch(".") do
    if c == "(" then
      depth = depth + 1
    elseif c == ")" then
      depth = depth - 1
    end
    if c == "," and depth == 0 then
      args[#args + 1] = cur
      cur = ""
    else
      cur = cur .. c
    end
  end
  if cur:match("%S") and not cur:match("^%s*void%s*$") then
    args[#args + 1] = cur
  end
  local values = {}
  for i, a in ipairs(args) do
    local pointer = a:find("*", 1, true) or a:match("_fn%s")
      or a:match("_factory%s")
    if not pointer then
      values[i] = 0
    end
    if i == 1 then first = a:match("(tapio_[%w_]+)%s*%*") end
  end
  local r = C[name](unpack(values, 1, #args))
  if first and handles[first] and ret:match("^%s*int%s*$") then
    check(r == 0 or r == C.TAPIO_EINVAL,
          name .. "(NULL) returned " .. tostring(r))
  end
  called = called + 1
end
check(called > 60, "only " .. called .. " functions found")
print(called .. " functions called with NULL")
print("2 passed, 0 failed")
