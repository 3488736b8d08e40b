-- A TCP echo server in LuaJIT through tapio's C ABI alone: the generated
-- declarations (tapio_cdef.h) given to ffi.cdef, the library loaded with
-- ffi.load, the protocol a C table of FFI callbacks. No tapio Lua module.
--
--   luajit echo_luajit.lua TAPIO_CDEF_H LIBTAPIO_SO [PORT [N]]
--
-- Listens on 127.0.0.1:PORT (0, the default: a free port) and prints
-- "listening on PORT"; after N connections (0, the default: never) have
-- ended it stops, frees everything and prints "served N".
local ffi = require "ffi"

local cdef, lib, port, limit = arg[1], arg[2], tonumber(arg[3]) or 0,
  tonumber(arg[4]) or 0
assert(cdef and lib, "usage: echo_luajit.lua TAPIO_CDEF_H LIBTAPIO_SO "
  .. "[PORT [N]]")
ffi.cdef(assert(io.open(cdef)):read("*a"))
local C = ffi.load(lib)

local function check(rc, what)
  if rc ~= 0 then
    error(what .. ": " .. ffi.string(C.tapio_strerror(rc)), 2)
  end
end

local lp = ffi.new("tapio_loop *[1]")
check(C.tapio_loop_new(lp), "tapio_loop_new")
local loop = lp[0]
local served = 0
local callbacks = {} -- every FFI callback, freed at the end

local function callback(ctype, fn)
  local cb = ffi.cast(ctype, fn)
  callbacks[#callbacks + 1] = cb
  return cb
end

-- The echo. tapio_transport_write may call pause_writing at once, a
-- callback into Lua from inside a C call made by Lua: LuaJIT allows that
-- only from interpreted code, so the function that writes is not compiled.
local function data_received(_, t, data, len)
  C.tapio_transport_write(t, data, len)
end
jit.off(data_received)

local proto = ffi.new("tapio_protocol")
proto.size = ffi.sizeof("tapio_protocol")
proto.data_received = callback(
  "void (*)(void *, tapio_transport *, const char *, size_t)", data_received)
-- asyncio's flow control: stop reading while the peer does not read
proto.pause_writing = callback("void (*)(void *, tapio_transport *)",
  function(_, t) C.tapio_transport_pause_reading(t) end)
proto.resume_writing = callback("void (*)(void *, tapio_transport *)",
  function(_, t) C.tapio_transport_resume_reading(t) end)
proto.connection_lost = callback(
  "void (*)(void *, tapio_transport *, int, const char *)",
  function(_, _, code, message)
    if code ~= 0 then
      io.stderr:write("echo_luajit: connection lost: ",
                      ffi.string(message), "\n")
    end
    served = served + 1
    if served == limit then
      C.tapio_loop_stop(loop)
    end
  end)

local factory = callback("tapio_protocol_factory",
  function(_, _, p, ud)
    p[0] = proto
    ud[0] = nil
    return 0
  end)

local server
local listening = callback("tapio_server_fn", function(_, status, s)
  check(status, "tapio_create_server")
  server = s
  local host, p = ffi.new("char[64]"), ffi.new("int[1]")
  check(C.tapio_server_get_address(s, 0, host, 64, p, nil), "address")
  io.stdout:write("listening on ", p[0], "\n")
  io.stdout:flush()
end)

local hosts = ffi.new("const char *[1]", { "127.0.0.1" })
check(C.tapio_create_server(loop, hosts, 1, port, factory, nil, nil,
                            listening, nil), "tapio_create_server")
check(C.tapio_loop_run(loop), "tapio_loop_run")
C.tapio_server_release(server)
check(C.tapio_loop_free(loop), "tapio_loop_free")
for _, cb in ipairs(callbacks) do
  cb:free()
end
print("served " .. served)
