-- Ended handles through LuaJIT's FFI, as a program in another language
-- meets them: a transport retained past connection_lost (a closed shell),
-- a closed server, a call that ran and one cancelled; every function that
-- takes such a handle is called on it and answers as a closed one does.
-- Usage: luajit ended_luajit.lua <tapio_cdef.h> <libtapio.so>
local ffi = require "ffi"
ffi.cdef(assert(io.open(arg[1])):read("*a"))
local C = ffi.load(arg[2])
local checks, keep = 0, {}

local function check(cond, msg)
  checks = checks + 1
  if not cond then error(msg, 2) end
end
local function cb(ctype, fn)
  local f = ffi.cast(ctype, fn)
  keep[#keep + 1] = f
  return f
end

local lp = ffi.new("tapio_loop *[1]")
check(C.tapio_loop_new(lp) == 0, "loop_new")
local loop = lp[0]
local client, server, lost, port = nil, nil, 0, nil

-- The server closes each connection once it has data.
local sproto = ffi.new("tapio_protocol")
sproto.size = ffi.sizeof("tapio_protocol")
sproto.data_received = cb(
  "void (*)(void *, tapio_transport *, const char *, size_t)",
  function(_, t) C.tapio_transport_close(t) end)
local factory = cb("tapio_protocol_factory", function(_, _, p, ud)
  p[0] = sproto
  ud[0] = nil
  return 0
end)
-- The client keeps its transport: retained in connection_made.
local cproto = ffi.new("tapio_protocol")
cproto.size = ffi.sizeof("tapio_protocol")
cproto.connection_made = cb("void (*)(void *, tapio_transport *)",
  function(_, t)
    check(C.tapio_transport_retain(t) == 0, "retain")
    client = t
    C.tapio_transport_write(t, "ping", 4)
  end)
cproto.connection_lost = cb(
  "void (*)(void *, tapio_transport *, int, const char *)",
  function() lost = lost + 1; C.tapio_loop_stop(loop) end)

local connected = cb("tapio_connect_fn", function(_, status)
  check(status == 0, "connect " .. status)
end)
local listening = cb("tapio_server_fn", function(_, status, s)
  check(status == 0, "listen " .. status)
  server = s
  local host, p = ffi.new("char[64]"), ffi.new("int[1]")
  C.tapio_server_get_address(s, 0, host, 64, p, nil)
  port = p[0]
  check(C.tapio_create_connection(loop, host, port, cproto, nil, nil,
                                  connected, nil) == 0, "connect")
end)
local hosts = ffi.new("const char *[1]", { "127.0.0.1" })
check(C.tapio_create_server(loop, hosts, 1, 0, factory, nil, nil, listening,
                            nil) == 0, "create_server")
local stop = cb("tapio_call_fn", function() C.tapio_loop_stop(loop) end)
local deadline = ffi.new("tapio_handle *[1]")
C.tapio_call_later(loop, 10, stop, nil, deadline)
check(C.tapio_loop_run(loop) == 0 and lost == 1, "connection lost")

-- The shell.
local t = client
local host, p, fam = ffi.new("char[64]"), ffi.new("int[1]"), ffi.new("int[1]")
local bufs = ffi.new("const void *[1]", { ffi.cast("const void *", "x") })
local lens = ffi.new("size_t[1]", { 1 })
check(C.tapio_transport_write(t, "x", 1) == C.TAPIO_ECLOSED, "write")
check(C.tapio_transport_writelines(t, bufs, lens, 1) == C.TAPIO_ECLOSED,
      "writelines")
check(C.tapio_transport_get_fd(t) == C.TAPIO_ECLOSED, "get_fd")
check(C.tapio_transport_get_sockname(t, host, 64, p, fam) == C.TAPIO_ECLOSED,
      "get_sockname")
check(C.tapio_transport_get_peername(t, host, 64, p, fam) == 0 and
      p[0] == port and ffi.string(host) == "127.0.0.1", "get_peername")
for _, f in ipairs { "tapio_transport_close", "tapio_transport_abort",
                     "tapio_transport_write_eof",
                     "tapio_transport_pause_reading",
                     "tapio_transport_resume_reading" } do
  check(C[f](t) == 0, f)
end
check(C.tapio_transport_fail(t, C.TAPIO_EIO, "late") == 0, "fail")
check(C.tapio_transport_is_closing(t) == 1, "is_closing")
check(C.tapio_transport_is_reading(t) == 0, "is_reading")
check(C.tapio_transport_get_stat(t, C.TAPIO_STAT_BYTES_SENT) == 4, "stat")
check(C.tapio_transport_get_loop(t) == loop, "get_loop")
check(C.tapio_transport_set_write_buffer_limits(t, -1, -1) == 0, "limits")
check(C.tapio_transport_get_kind(t) == C.TAPIO_TRANSPORT_STREAM, "kind")
C.tapio_transport_release(t)

-- The closed server, the calls that ran or were cancelled.
check(C.tapio_server_close(server) == 0, "server close")
check(C.tapio_server_start_serving(server) == C.TAPIO_ECLOSED, "serving")
check(C.tapio_server_is_serving(server) == 0, "is_serving")
check(C.tapio_server_socket_count(server) == 0, "socket_count")
check(C.tapio_server_get_fd(server, 0) == C.TAPIO_EINVAL, "server fd")
check(C.tapio_server_close_clients(server) == 0, "close_clients")
check(C.tapio_server_set_handshake_failed(server, nil, nil) == 0,
      "set_handshake_failed")
C.tapio_handle_cancel(deadline[0])
check(C.tapio_handle_cancelled(deadline[0]) == 1, "cancelled")
check(C.tapio_handle_when(deadline[0]) > 0, "when")
local ran, h = 0, ffi.new("tapio_handle *[1]")
C.tapio_call_soon(loop, cb("tapio_call_fn", function()
  ran = ran + 1
  C.tapio_loop_stop(loop)
end), nil, h)
C.tapio_loop_run(loop)
check(ran == 1 and C.tapio_handle_cancelled(h[0]) == 0, "ran")
C.tapio_handle_cancel(h[0])
C.tapio_handle_release(h[0])
C.tapio_handle_release(deadline[0])
C.tapio_server_release(server)
check(C.tapio_loop_free(loop) == 0, "loop_free")
for _, f in ipairs(keep) do f:free() end
print(checks .. " checks on ended handles")
print("1 passed, 0 failed")
