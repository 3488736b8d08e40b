-- Options are checked against the call by the core's one table: a name
-- the call does not take, a wrong type or a value out of range raises,
-- with what the core says the option accepts; the binding has no table of
-- its own.
local helper = require "spec.helper"

local run = helper.run
local unpack = table.unpack or unpack

describe("options", function()
  it("are refused by a call that does not take them", function()
    run(function(loop)
      local f = function() return {} end
      local cases = {
        { "create_connection", { f, "127.0.0.1", 1, { backlog = 1 } },
          "backlog" },
        { "create_connection", { f, "127.0.0.1", 1, { start_serving = 1 } },
          "start_serving" },
        { "create_connection", { f, "127.0.0.1", 1,
          { cleanup_socket = true } }, "cleanup_socket" },
        { "create_server", { f, nil, 0, { local_host = "x" } },
          "local_host" },
        { "create_unix_server", { f, "/nonexistent/s", { reuse_port = 1 } },
          "reuse_port" },
        { "create_unix_server", { f, "/nonexistent/s", { family = 4 } },
          "family" },
        { "create_unix_connection", { f, "/nonexistent", { family = 4 } },
          "family" },
        { "connect_accepted_socket", { f, 99999, { backlog = 1 } },
          "backlog" },
      }
      for _, c in ipairs(cases) do
        local method, args, name = c[1], c[2], c[3]
        assert.has_error(function()
          loop[method](loop, unpack(args, 1, 4))
        end, ("tapio: loop:%s: unknown option '%s'"):format(method, name))
      end
    end)
  end)

  it("say what the core says an option accepts", function()
    run(function(loop)
      local f = function() return {} end
      local function check(opts, msg)
        assert.has_error(function()
          loop:create_connection(f, "127.0.0.1", 1, opts)
        end, "tapio: loop:create_connection: bad option " .. msg)
      end
      check({ local_port = 70000 }, "'local_port' (integer 0..65535 expected)")
      check({ local_port = "80" }, "'local_port' (integer 0..65535 expected)")
      check({ family = 5 }, "'family' (0, 4 or 6 expected)")
      check({ nodelay = 2 }, "'nodelay' (boolean expected)")
      check({ nodelay = "yes" }, "'nodelay' (boolean expected)")
      check({ local_host = true }, "'local_host' (string expected)")
      assert.has_error(function() -- sock alone: with a host it conflicts
        loop:create_connection(f, { sock = -1 })
      end, "tapio: loop:create_connection: bad option 'sock' (integer "
        .. "0..2147483647 expected)")
    end)
  end)

  it("that are lists refuse a table that is no list (a map, a list with "
     .. "a hole), naming the key; env's map form stays", function()
    run(function(loop)
      local f = function() return {} end
      local function check(opts, msg)
        assert.has_error(function()
          loop:subprocess_exec(f, "true", {}, opts)
        end, "tapio: loop:subprocess_exec: bad option " .. msg)
      end
      check({ pass_fds = { a = 1 } }, "'pass_fds' (list of descriptors "
        .. "expected, got a table with key 'a')")
      -- a hole: which side of it the length ends on is the Lua's choice
      local ok, err = pcall(loop.subprocess_exec, loop, f, "true", {},
                            { pass_fds = { 3, nil, 5 } })
      assert.is_false(ok)
      assert.is_truthy(err:find("'pass_fds' (list of descriptors expected, "
        .. "got a list with a hole at 2)", 1, true) or
        err:find("'pass_fds' (list of descriptors expected, got a table "
          .. "with key 3)", 1, true), err)
      check({ extra_groups = { 0, [5] = 0 } }, "'extra_groups' (list of "
        .. "group names or gids expected, got a table with key 5)")
      check({ extra_groups = { [true] = 0 } }, "'extra_groups' (list of "
        .. "group names or gids expected, got a table with key true)")
      check({ env = { "A=1", B = "2" } }, "'env' (a map or a list of "
        .. "strings expected, got a table that has both names and a list)")
      assert.has_error(function()
        loop:subprocess_exec(f, "true", { a = "x" })
      end, "tapio: loop:subprocess_exec: bad argument #3 'args' (list of "
        .. "strings expected, got a table with key 'a')")
      assert.has_error(function() -- not every interface, as {} would be
        loop:create_server(f, { a = "127.0.0.1" }, 0)
      end, "tapio: loop:create_server: bad argument #2 'host' (list of "
        .. "strings expected, got a table with key 'a')")
      assert.has_error(function()
        helper.tapio.tls_context({ alpn = { h2 = true } })
      end, "tapio: tls_context: option 'alpn' must be a list of at most 64 "
        .. "strings")
      local mem = loop:memory()
      for _ = 1, 50 do
        pcall(loop.subprocess_exec, loop, f, "true", {},
              { cwd = "/", pass_fds = { x = 3 } })
      end
      assert.are.equal(mem, loop:memory())
      local exited = loop:create_future()
      local t = loop:subprocess_exec(function()
        return { process_exited = function() exited:set_result(true) end }
      end, "/bin/sh", { "-c", 'test "$A" = 1' },
        { env = { A = "1" }, pass_fds = {} })
      exited:await()
      assert.are.equal(0, t:get_returncode())
      t:close()
    end)
  end)

  it("leave nothing behind when they raise", function()
    run(function(loop)
      local f = function() return {} end
      local mem, refs = loop:memory(), loop:_debug().refs
      for _ = 1, 100 do
        pcall(loop.create_server, loop, f, nil, 0,
              { backlog = 10, reuse_port = true, family = 5 })
      end
      assert.are.equal(mem, loop:memory())
      assert.are.equal(refs, loop:_debug().refs)
    end)
  end)
end)
