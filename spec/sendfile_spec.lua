-- loop:sendfile (asyncio's loop.sendfile): a file over a TCP connection
-- (the kernel's sendfile) and over TLS (read and written), checked byte
-- for byte at the peer; the file's position after; what the transport's
-- protocol may do meanwhile; cancelling; bad arguments.
local helper = require "spec.helper"
local tapio = helper.tapio

local testing = require "tapio.testing"
local run, fails = helper.run, helper.fails

local SIZE = 3 * 1024 * 1024 + 11

-- A file of SIZE bytes that differ with their position, and its content.
local function data_file()
  local f, content, path = helper.data_file(SIZE)
  os.remove(path)
  return f, content
end

-- A server collecting what each connection sends until its EOF; the
-- future of the bytes of the first.
local function collector(loop, opts)
  local got = loop:create_future()
  local server = loop:create_server(function()
    local parts = {}
    return {
      data_received = function(_, d) parts[#parts + 1] = d end,
      eof_received = function() end,
      connection_lost = function()
        if not got:done() then got:set_result(table.concat(parts)) end
      end,
    }
  end, "127.0.0.1", 0, opts)
  return server, got
end

describe("loop:sendfile", function()
  it("sends a file after what was written, and leaves it at offset + sent",
     function()
    run(function(loop)
      local server, got = collector(loop)
      local t = loop:create_connection(function() return {} end,
        "127.0.0.1", helper.port(server))
      local f, content = data_file()
      t:write("head:")
      assert.equal(SIZE - 100, loop:sendfile(t, f, 100))
      assert.equal(SIZE, f:seek())
      assert.equal(1000, loop:sendfile(t, f, 7, 1000))
      assert.equal(1007, f:seek())
      t:write(":tail")
      t:close()
      assert.equal("head:" .. content:sub(101) .. content:sub(8, 1007)
        .. ":tail", got:await())
      f:close()
      server:close()
    end)
  end)

  it("sends a StreamWriter's writes first, batched ones too", function()
    run(function(loop)
      local f, content = data_file()
      local server = tapio.start_server(function(reader, writer)
        reader:readline() -- a second line waits: the writes are batched
        writer:write("head:")
        loop:sendfile(writer.transport, f, 0, 1000)
        writer:write(":tail")
        writer:close()
      end, "127.0.0.1", 0)
      local reader, writer = tapio.open_connection("127.0.0.1",
        helper.port(server))
      writer:write("GET 1\nGET 2\n")
      assert.equal("head:" .. content:sub(1, 1000) .. ":tail", reader:read())
      f:close()
      writer:close()
      server:close()
    end)
  end)

  it("goes through TLS, paced by its flow control (the fallback)",
     function()
    run(function(loop)
      local server, got = collector(loop, { ssl = helper.server_ctx() })
      local paused = 0
      local t = loop:create_connection(function()
        return { pause_writing = function() paused = paused + 1 end }
      end, "127.0.0.1", helper.port(server),
        { ssl = helper.client_ctx(), server_hostname = "localhost" })
      local f, content = data_file()
      local err = fails(loop.sendfile, loop, t, f, 0, nil,
        { fallback = false })
      assert.equal("ENOTSUP", err.name)
      assert.matches("no native sendfile", err.message)
      assert.equal(SIZE, loop:sendfile(t, f))
      assert.equal(0, paused) -- the protocol heard none of the pacing
      -- a count that ends inside a read: not a byte more (the fallback
      -- sent the whole last chunk: cpython bpo-37279)
      assert.equal(300001, loop:sendfile(t, f, 7, 300001))
      assert.equal(300008, f:seek())
      t:close()
      assert.equal(content .. content:sub(8, 300008), got:await())
      f:close()
      server:close()
    end)
  end)

  it("refuses the protocol's writes meanwhile and reads after",
     testing.run(function(clock, loop)
    local received = {}
    local ta, tb = testing.pipe_pair({ data_received = function(_, d)
      received[#received + 1] = d
    end }, testing.recorder(nil, { merge = true }))
    local rec = tb:get_protocol()
    tb:pause_reading() -- the file waits for it
    local f, content = data_file()
    local sending = loop:create_task(function()
      return loop:sendfile(ta, f, 0, 400000)
    end)
    clock:run_until_idle()
    local err = fails(ta.write, ta, "x")
    assert.matches("sendfile is in progress", tostring(err))
    assert.is_false(ta:is_reading())
    tb:write("meanwhile")
    clock:run_until_idle()
    assert.same({}, received)
    tb:resume_reading()
    assert.equal(400000, sending:await())
    clock:run_until_idle()
    assert.same({ "meanwhile" }, received)
    ta:write("y")
    clock:run_until_idle()
    assert.same({ "connection_made", "data_received:"
      .. content:sub(1, 400000) .. "y" }, rec.events)
    ta:abort()
    tb:abort()
    f:close()
  end))

  it("stops when its task is cancelled, gives the transport back, and "
     .. "leaves the file at offset + sent", testing.run(function(clock, loop)
    -- a memory pair whose far end reads nothing: 64 KiB fit, then it waits
    local received = {}
    local ta, tb = testing.pipe_pair({}, { data_received = function(_, d)
      received[#received + 1] = d
    end })
    tb:pause_reading()
    local f, content = data_file()
    assert.equal(content:sub(1, 3), f:read(3)) -- the Lua file buffers
    local sending = loop:create_task(function()
      return loop:sendfile(ta, f, 5)
    end)
    clock:run_until_idle()
    assert.is_false(sending:done())
    assert.is_true(ta:get_write_buffer_size() < 1024 * 1024)
    sending:cancel()
    clock:run_until_idle()
    assert.is_true(sending:cancelled())
    local at = f:seek() -- offset + sent (asyncio's): what the peer gets
    assert.is_true(at > 5 and at < SIZE, at)
    assert.equal(content:sub(at + 1, at + 10), f:read(10))
    ta:write("after") -- the transport is the protocol's again
    assert.is_true(ta:is_reading())
    tb:resume_reading()
    clock:run_until_idle()
    local got = table.concat(received) -- compared so: 3 MiB in a diff
    assert.equal(at - 5 + 5, #got)
    assert.is_true(got == content:sub(6, at) .. "after")
    ta:abort()
    tb:abort()
    f:close()
  end))

  it("cancelled while the bytes written before it wait, gives the "
     .. "transport back reading and unchanged (cpython gh-157025)",
     testing.run(function(clock, loop)
    local events = {}
    local function note(name)
      return function() events[#events + 1] = name end
    end
    local received = {}
    local ta, tb = testing.pipe_pair({ pause_writing = note("pause"),
      resume_writing = note("resume") }, { data_received = function(_, d)
      received[#received + 1] = d
    end })
    tb:pause_reading()
    ta:write(("w"):rep(200000)) -- 64 KiB go, the rest waits: paused
    clock:run_until_idle()
    assert.same({ "pause" }, events)
    local f = data_file()
    local sending = loop:create_task(function()
      return loop:sendfile(ta, f)
    end)
    clock:run_until_idle()
    assert.is_false(ta:is_reading()) -- the operation's meanwhile
    sending:cancel() -- before a byte of the file went
    clock:run_until_idle()
    assert.is_true(sending:cancelled())
    assert.is_true(ta:is_reading())
    ta:write("after") -- the protocol's again, still paused as it knows
    assert.same({ "pause" }, events)
    tb:resume_reading()
    clock:run_until_idle()
    assert.equal(("w"):rep(200000) .. "after", table.concat(received))
    assert.same({ "pause", "resume" }, events)
    ta:abort()
    tb:abort()
    f:close()
  end))

  it("sends the whole file before a write_eof asked meanwhile (the "
     .. "kernel's sendfile)", function()
    run(function(loop)
      local peer = loop:create_future()
      local parts, eof = {}, loop:create_future()
      local path = os.tmpname() -- a Unix socket: its buffers hold little
      os.remove(path)
      local server = loop:create_unix_server(function()
        return {
          connection_made = function(_, tr)
            tr:pause_reading() -- the file waits for it
            peer:set_result(tr)
          end,
          data_received = function(_, d) parts[#parts + 1] = d end,
          eof_received = function() eof:set_result(true) end,
        }
      end, path)
      local t = loop:create_unix_connection(function() return {} end, path)
      local f, content = data_file()
      local sending = loop:create_task(function()
        return loop:sendfile(t, f)
      end)
      local tr = peer:await()
      while t:is_reading() and not sending:done() do -- the operation's
        tapio.sleep(0)
      end
      assert.is_false(sending:done())
      t:write_eof()
      tr:resume_reading()
      assert.equal(SIZE, sending:await())
      eof:await()
      assert.is_true(table.concat(parts) == content)
      assert.is_false(t:is_closing())
      t:close()
      f:close()
      server:close()
    end)
  end)

  it("sends the whole file before a write_eof asked meanwhile (the "
     .. "fallback)", testing.run(function(clock, loop)
    local received, eofs = {}, 0
    local ta, tb = testing.pipe_pair({}, {
      data_received = function(_, d) received[#received + 1] = d end,
      eof_received = function() eofs = eofs + 1 return true end,
    })
    tb:pause_reading()
    local f, content = data_file()
    local sending = loop:create_task(function()
      return loop:sendfile(ta, f)
    end)
    clock:run_until_idle()
    assert.is_false(sending:done())
    ta:write_eof()
    tb:resume_reading()
    assert.equal(SIZE, sending:await())
    clock:run_until_idle()
    assert.is_true(table.concat(received) == content)
    assert.equal(1, eofs)
    assert.is_false(ta:is_closing())
    ta:abort()
    tb:abort()
    f:close()
  end))

  it("outside a task leaves its error to whoever has the future: " ..
     "dropped, it is reported as never retrieved", function()
    local heard = helper.unretrieved(function(loop)
      local server = collector(loop)
      local t = loop:create_connection(function() return {} end,
        "127.0.0.1", helper.port(server))
      local path = os.tmpname()
      local f = assert(io.open(path, "wb")) -- write-only: EBADF
      os.remove(path)
      loop:call_soon(function()
        loop:sendfile(t, f) -- a future (the file's position kept on it)
      end)
      tapio.sleep(0)
      tapio.sleep(0)
      f:close()
      t:close()
      server:close()
    end)
    assert.equal(1, #heard)
    assert.equal("future exception was never retrieved", heard[1].message)
    assert.equal("EBADF", heard[1].exception.name)
  end)

  it("fails on a file it cannot read, leaving the connection as it was "
     .. "(asyncio raises the file's error)", function()
    run(function(loop)
      local server, got = collector(loop)
      local t = loop:create_connection(function() return {} end,
        "127.0.0.1", helper.port(server))
      local path = os.tmpname()
      local wf = assert(io.open(path, "a")) -- open for writing only
      local err = fails(loop.sendfile, loop, t, wf)
      assert.equal("EBADF", err.name)
      assert.equal(0, err.count)
      assert.is_false(t:is_closing())
      assert.is_true(t:is_reading())
      t:write("still")
      t:write_eof()
      assert.equal("still", got:await())
      wf:close()
      os.remove(path)
      t:close()
      server:close()
    end)
  end)

  it("says what is wrong with its arguments", function()
    run(function(loop)
      local server = collector(loop)
      local t = loop:create_connection(function() return {} end,
        "127.0.0.1", helper.port(server))
      local f = data_file()
      assert.matches("bad argument #1 'transport'",
        fails(loop.sendfile, loop, "t", f))
      assert.matches("bad argument #2 'file' %(file or integer expected",
        fails(loop.sendfile, loop, t, "f"))
      assert.matches("bad argument #3 'offset'",
        fails(loop.sendfile, loop, t, f, -1))
      assert.matches("bad argument #4 'count'",
        fails(loop.sendfile, loop, t, f, 0, 0))
      assert.matches("unknown option 'bogus'",
        fails(loop.sendfile, loop, t, f, 0, nil, { bogus = 1 }))
      assert.equal("EBADF", fails(loop.sendfile, loop, t, 9999).name)
      local other = tapio.new_loop() -- t is open, but not other's
      assert.matches("loop:sendfile: the transport belongs to another loop",
        fails(other.sendfile, other, t, f))
      other:close()
      -- self is checked before the Lua file's position is read
      assert.matches("loop:sendfile: bad self %(tapio.loop expected, got "
        .. "table%)", fails(loop.sendfile, {}, t, f))
      assert.matches("loop:sock_sendfile: bad self %(tapio.loop expected, "
        .. "got number%)", fails(loop.sock_sendfile, 5, 1, f))
      f:close()
      assert.matches("bad argument #2 'file' %(closed file",
        fails(loop.sendfile, loop, t, f))
      t:close()
      assert.matches("transport is closing",
        tostring(fails(loop.sendfile, loop, t, 0)))
      server:close()
    end)
  end)
end)
