-- What a child inherits from the tapio host while its loop holds one of
-- each kind of descriptor tapio makes (a server and a connection to it, a
-- TLS server and connection whose context writes a key log, a datagram
-- endpoint, a Unix server, a signal handler, the polling host's
-- descriptor, a subprocess's pipes, tapio.pipe, tapio.socketpair,
-- tapio.socket, tapio.openpty): os.execute and io.popen start children
-- with the descriptors the host was given and nothing of tapio's, and
-- tapio's own children get 0, 1 and 2 only (close_fds), or with
-- close_fds = false what the host was given. Each child lists its shell's
-- descriptors (ls's own would show the directory it reads).
local helper = require "spec.helper"

describe("a child of the tapio host", function()
  it("inherits none of tapio's descriptors, however started", function()
    local keylog = os.tmpname()
    local unix_path = os.tmpname()
    os.remove(unix_path)
    local out, status = helper.run_script(([[
      local tapio = require "tapio"
      local LIST = "ls /proc/$$/fd; :"
      local function listed(text)
        local fds = {}
        for n in text:gmatch("%%d+") do fds[#fds + 1] = tonumber(n) end
        table.sort(fds)
        return table.concat(fds, " ")
      end
      local function by_popen()
        local f = assert(io.popen(LIST))
        local text = f:read("a")
        f:close()
        return listed(text)
      end
      -- its output between two marks on the host's stdout
      local function by_execute()
        io.stdout:write("<"):flush()
        assert(os.execute(LIST))
        io.stdout:write(">\n"):flush()
      end
      local function by_tapio(opts)
        opts.stdout = tapio.PIPE
        local p = tapio.create_subprocess_shell(LIST, opts)
        local text = p:communicate()
        assert(p:wait() == 0)
        return listed(text)
      end
      local given = by_popen() -- before anything of tapio's
      local proto = {}
      local function factory() return proto end
      tapio.run(function()
        local loop = tapio.get_running_loop()
        local server = loop:create_server(factory, "127.0.0.1", 0)
        local port = server:addresses()[1].port
        local t1 = loop:create_connection(factory, "127.0.0.1", port)
        local sctx = tapio.tls_context({ side = "server",
          cert_file = %q, key_file = %q, keylog_file = %q })
        local tls_server = loop:create_server(factory, "127.0.0.1", 0,
          { ssl = sctx })
        local tls_port = tls_server:addresses()[1].port
        local t2 = loop:create_connection(factory, "127.0.0.1", tls_port,
          { ssl = tapio.tls_context({ cafile = %q }),
            server_hostname = "localhost" })
        local t3 = loop:create_datagram_endpoint(factory,
          { local_addr = { "127.0.0.1", 0 } })
        local unix_server = loop:create_unix_server(factory, %q)
        loop:add_signal_handler("SIGUSR1", function() end)
        assert(loop:backend_fd())
        local cat = tapio.create_subprocess_exec("cat", {},
          { stdin = tapio.PIPE, stdout = tapio.PIPE, stderr = tapio.PIPE })
        local r, w = tapio.pipe()
        local a, b = tapio.socketpair()
        local s = tapio.socket(tapio.AF_INET, tapio.SOCK_DGRAM)
        local m, sl = tapio.openpty()
        print("given", given)
        print("popen", by_popen())
        by_execute()
        print("tapio", by_tapio({}))
        print("tapio close_fds=false", by_tapio({ close_fds = false }))
        for _, fd in ipairs({ r, w, a, b, s, m, sl }) do tapio.close_fd(fd) end
        cat:kill()
        cat:wait()
        t1:close()
        t2:close()
        t3:close()
        for _, sv in ipairs({ unix_server, tls_server, server }) do
          sv:close()
          sv:close_clients()
        end
      end)
    ]]):format(helper.cert("server.pem"), helper.cert("server.key"), keylog,
               helper.cert("ca.pem"), unix_path))
    os.remove(keylog)
    os.remove(unix_path)
    assert.are.equal(0, status, out)
    local given = out:match("given\t([%d ]*)\n")
    assert.is_string(given, out)
    local executed = out:match("<([^>]*)>")
    assert.is_string(executed, out)
    local fds = {}
    for n in executed:gmatch("%d+") do fds[#fds + 1] = tonumber(n) end
    table.sort(fds)
    assert.are.equal("given\t" .. given .. "\n"
      .. "popen\t" .. given .. "\n"
      .. "<" .. executed .. ">\n"
      .. "tapio\t0 1 2\n"
      .. "tapio close_fds=false\t" .. given .. "\n", out)
    assert.are.equal(given, table.concat(fds, " "))
  end)
end)
