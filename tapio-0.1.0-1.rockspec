-- `luarocks make` in a checkout builds tapio's Lua module (tapio.core, the
-- C binding with tapio's core compiled in, and the pure-Lua layer) against
-- the system's libev, c-ares and OpenSSL 3 (Debian: libev-dev,
-- libc-ares-dev, libssl-dev), for Lua 5.4 or LuaJIT:
--   luarocks --lua-version 5.4 make
--   luarocks --lua-version 5.1 make LUA_INCDIR=/usr/include/luajit-2.1
-- spec/embed/test_rockspec.sh installs both into a temporary tree and
-- requires "tapio" from it; it also checks that every C source of src/
-- and of the binding is listed below.
rockspec_format = "3.0"
package = "tapio"
version = "0.1.0-1"
source = {
  url = "git+file://.",
}
description = {
  summary = "asyncio's Transports and Protocols for Lua, on libev",
  detailed = [[
tapio rebuilds the Transports and Protocols of Python's asyncio in C on
libev: a protocol is a plain Lua table whose methods receive the callbacks
(connection_made, data_received, eof_received, connection_lost, ...);
futures, tasks on coroutines, servers and connections complete the API.]],
  license = "MIT",
}
dependencies = {
  "lua >= 5.1, < 5.5",
}
external_dependencies = {
  LIBEV = { header = "ev.h", library = "ev" },
  CARES = { header = "ares.h", library = "cares" },
  OPENSSL = { header = "openssl/ssl.h", library = "ssl" },
}
build = {
  type = "builtin",
  modules = {
    ["tapio.core"] = {
      sources = {
        "src/alloc.c", "src/backend.c", "src/connect.c", "src/datagram.c",
        "src/dgram_queue.c",
        "src/endpoint.c", "src/error.c", "src/eyeballs.c", "src/listen.c",
        "src/lookup.c", "src/loop.c", "src/options.c", "src/pipe.c",
        "src/process.c", "src/request.c", "src/resolve.c", "src/sched.c",
        "src/sendfile.c",
        "src/server.c", "src/signal.c", "src/sock.c", "src/sockaddr.c",
        "src/spawn.c", "src/spawn_fork.c",
        "src/stream.c", "src/tls.c", "src/tls_context.c", "src/tls_error.c",
        "src/tls_info.c", "src/tls_session.c", "src/tls_start.c",
        "src/transport.c", "src/version.c", "src/watch.c", "src/work.c",
        "src/wqueue.c",
        "src/clock.c", "src/memory.c", "src/memory_link.c",
        "src/memory_wake.c", "src/memory_ends.c", "src/vnet.c", "src/vdgram.c",
        "src/flight.c",
        "src/vchild.c",
        "src/fault.c", "src/recorder.c",
        "lua/loop.c", "lua/callback.c", "lua/context.c", "lua/call.c",
        "lua/protocol.c",
        "lua/transport.c", "lua/server.c", "lua/pipe.c", "lua/process.c",
        "lua/datagram.c", "lua/resolve.c", "lua/sendfile.c", "lua/sock.c",
        "lua/address.c",
        "lua/tls.c", "lua/util.c",
        "lua/embed.c", "lua/watch.c", "lua/work.c", "lua/testing.c",
      },
      incdirs = { "capi", "src", "lua", "$(LIBEV_INCDIR)",
                  "$(CARES_INCDIR)", "$(OPENSSL_INCDIR)" },
      libdirs = { "$(LIBEV_LIBDIR)", "$(CARES_LIBDIR)", "$(OPENSSL_LIBDIR)" },
      libraries = { "ev", "cares", "ssl", "crypto", "pthread", "m" },
      defines = { "_GNU_SOURCE" },
    },
    ["tapio"] = "lua/tapio/init.lua",
    ["tapio.future"] = "lua/tapio/future.lua",
    ["tapio.loop"] = "lua/tapio/loop.lua",
    ["tapio.task"] = "lua/tapio/task.lua",
    ["tapio.runner"] = "lua/tapio/runner.lua",
    ["tapio.util"] = "lua/tapio/util.lua",
    ["tapio.reader"] = "lua/tapio/reader.lua",
    ["tapio.streams"] = "lua/tapio/streams.lua",
    ["tapio.subprocess"] = "lua/tapio/subprocess.lua",
    ["tapio.wait"] = "lua/tapio/wait.lua",
    ["tapio.group"] = "lua/tapio/group.lua",
    ["tapio.sync"] = "lua/tapio/sync.lua",
    ["tapio.queue"] = "lua/tapio/queue.lua",
    ["tapio.testing"] = "lua/tapio/testing.lua",
    ["tapio.fake"] = "lua/tapio/fake.lua",
    -- the Lua language server's definitions; never required at run time
    ["tapio._meta"] = "lua/tapio/_meta.lua",
    ["tapio._meta_testing"] = "lua/tapio/_meta_testing.lua",
  },
  copy_directories = {},
}
