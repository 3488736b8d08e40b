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
print("1 passed, 0 failed")
