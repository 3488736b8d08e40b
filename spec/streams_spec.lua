-- Streams over real connections on 127.0.0.1 (and a Unix socket):
-- open_connection and start_server, StreamWriter's methods, drain and its
-- errors, backpressure both ways, cancellation, and the errors of the
-- calls themselves.
local helper = require "spec.helper"
local tapio = helper.tapio

local run, fails, until_true = helper.run, helper.fails, helper.until_true
local started = helper.started

-- Inside a task: a stream server on 127.0.0.1 whose client_connected_cb
-- hands its reader and writer to the returned future (and runs body with
-- them, if given), and one client connected to it. Returns the server,
-- the client's reader and writer, and the server side's reader and
-- writer.
local function pair(loop, body, opts, client_opts)
  local accepted = loop:create_future()
  local server = tapio.start_server(function(reader, writer)
    accepted:set_result(reader, writer)
    if body then
      return body(reader, writer)
    end
  end, "127.0.0.1", 0, opts)
  local reader, writer = tapio.open_connection("127.0.0.1",
    helper.port(server), client_opts)
  local sr, sw = accepted:await()
  return server, reader, writer, sr, sw
end

-- The pattern's bytes from offset off (0-based), n of them.
local PATTERN = ("0123456789abcdefghijklmnopqrstuvwxyz"):rep(2000)
local function pattern_at(off, n)
  local out = {}
  while n > 0 do
    local i = off % 36
    local take = math.min(n, #PATTERN - i)
    out[#out + 1] = PATTERN:sub(i + 1, i + take)
    off, n = off + take, n - take
  end
  return table.concat(out)
end

describe("streams over TCP", function()
  it("echo a message as the reference's example does", function()
    run(function(loop)
      local server = tapio.start_server(function(reader, writer)
        local data = reader:read(100)
        writer:write(data)
        writer:drain()
        writer:close()
      end, "127.0.0.1", 0)
      assert.are.equal("tapio.server", getmetatable(server).__name)
      assert.is_true(server:is_serving())
      local reader, writer = tapio.open_connection("127.0.0.1",
        helper.port(server))
      assert.are.equal("tapio.StreamReader", getmetatable(reader).__name)
      assert.are.equal("tapio.StreamWriter", getmetatable(writer).__name)
      assert.are.equal("tapio.transport", getmetatable(writer.transport)
        .__name)
      local peer = writer:get_extra_info("peername")
      assert.are.equal(helper.port(server), peer.port)
      assert.are.equal("127.0.0.1", writer:get_extra_info("sockname").host)
      assert.are.equal("none", writer:get_extra_info("nothing", "none"))
      writer:write("Hello World!")
      writer:drain()
      assert.are.equal("Hello World!", reader:read(100))
      assert.are.equal("", reader:read(100)) -- the server closed
      assert.is_true(reader:at_eof())
      writer:close()
      assert.is_true(writer:is_closing())
      writer:wait_closed()
      -- after the end, the addresses are what they were
      assert.are.equal(helper.port(server),
        writer:get_extra_info("peername").port)
      assert.are.equal("tapio.StreamWriter (tapio.transport (closed))",
        tostring(writer))
      server:close()
      server:wait_closed()
    end)
  end)

  it("half-close: write_eof, the peer reads to the end and answers",
     function()
    run(function(loop)
      local server, reader, writer = pair(loop, function(r, w)
        local all = r:read()
        w:write("got " .. #all)
        w:close()
      end)
      assert.is_true(writer:can_write_eof())
      writer:writelines({ "abc", "def", "ghi" })
      writer:write_eof()
      assert.are.equal("got 9", reader:read())
      writer:close()
      writer:wait_closed()
      assert.is_true(writer:can_write_eof()) -- the transport's, as asyncio's
      writer:write_eof() -- harmless once it ended
      -- the addresses after the end: the closed transport's
      assert.are.equal(server:addresses()[1],
        writer:get_extra_info("peername"))
      server:close()
    end)
  end)

  it("leaves the reader at EOF after close and wait_closed (R15)",
     function()
    run(function(loop)
      local server, reader, writer = pair(loop)
      writer:close()
      writer:wait_closed()
      assert.are.equal("", reader:read())
      assert.is_true(reader:at_eof())
      server:close()
    end)
  end)

  it("raises ECONNRESET from drain after close, write dropped (R14)",
     function()
    run(function(loop)
      local server, _, writer = pair(loop)
      writer:close()
      writer:write("dropped")
      local err = fails(writer.drain, writer)
      assert.are.equal("ECONNRESET", err.name)
      assert.are.equal("connection lost", err.message)
      writer:write("dropped too") -- lost: dropped, as asyncio drops it
      assert.matches("streams_spec.lua:%d+: tapio: writer:write: bad " ..
        "argument #1 'data' %(string expected, got table%)",
        fails(function() writer:write({}) end)) -- but still checked
      assert.are.equal("ECONNRESET", fails(writer.drain, writer).name)
      server:close()
    end)
  end)

  it("raises the reset from drain, even with nothing buffered (R13)",
     function()
    run(function(loop)
      local server, reader, writer, _, sw = pair(loop)
      -- the server leaves what comes unread (on loopback it is in the
      -- server's socket once the client's write returns), then aborts:
      -- the kernel answers with a reset
      sw.transport:pause_reading()
      writer:write(("x"):rep(1000))
      sw.transport:abort()
      local err = fails(reader.read, reader)
      assert.are.equal("ECONNRESET", err.name)
      assert.is_true(writer:is_closing())
      -- drain raises the connection's error, with nothing buffered
      assert.are.equal(err, fails(writer.drain, writer))
      writer:write("more") -- dropped
      assert.are.equal(err, fails(writer.drain, writer))
      assert.are.equal(err, fails(writer.wait_closed, writer))
      assert.are.equal(err, fails(reader.readline, reader))
      server:close()
    end)
  end)

  it("raises the reader's exception from drain, set while the " ..
     "connection is open", function()
    run(function(loop)
      local server, reader, writer = pair(loop)
      writer:write("x")
      writer:drain() -- this task drains it now: drain's usual case
      local boom = tapio.error("EINVAL", "boom")
      reader:set_exception(boom)
      assert.are.equal(boom, fails(writer.drain, writer))
      assert.are.equal(boom, fails(writer.drain, writer))
      writer:close()
      server:close()
    end)
  end)

  -- After the peer has closed its socket: send(writer) then drain, up
  -- to 100,000 times, with no other wait between; drain's error.
  local function drain_after_peer_closed(send)
    local err
    run(function(loop)
      local server, reader, writer, _, sw = pair(loop)
      sw:close()
      assert.are.equal("", reader:read()) -- the server's socket is closed
      for _ = 1, 100000 do
        send(writer)
        local ok, e = pcall(writer.drain, writer)
        if not ok then
          err = e
          break
        end
      end
      server:close()
    end)
    assert.is_not_nil(err, "drain never raised")
    assert.is_true(err.name == "ECONNRESET" or err.name == "EPIPE",
      tostring(err))
  end

  -- asyncio's drain yields once when the transport is closing, so that
  -- connection_lost can come: a write-and-drain loop whose writes are
  -- dropped would otherwise run on without ever hearing of the end
  it("stops spinning in write and drain once the peer has gone (R13), "
     .. "in a loop that never yields otherwise", function()
    local chunk = ("z"):rep(4096)
    drain_after_peer_closed(function(writer) writer:write(chunk) end)
  end)

  it("hears of the end through writelines too", function()
    local lines = { ("l"):rep(2048), ("m"):rep(2048) }
    drain_after_peer_closed(function(writer) writer:writelines(lines) end)
  end)

  it("pauses reading over twice the limit, resumes as the task reads",
     function()
    run(function(loop)
      local limit, total = 16384, 1024 * 1024
      local server, reader, writer, _, sw = pair(loop, nil, nil,
        { limit = limit })
      sw:write(pattern_at(0, total))
      until_true(function()
        return not writer.transport:is_reading()
      end)
      local held = reader:get_buffer_size()
      assert.is_true(held > 2 * limit, held)
      assert.is_true(held <= 2 * limit + 256 * 1024, held)
      -- reading it out: below the limit the transport reads again
      local got = reader:readexactly(held - limit)
      assert.are.equal(pattern_at(0, #got), got)
      assert.is_true(writer.transport:is_reading())
      local rest = reader:readexactly(total - #got)
      assert.are.equal(pattern_at(#got, #rest), rest)
      sw:close()
      assert.are.equal("", reader:read())
      server:close()
    end)
  end)

  it("keeps both sides' memory bounded with a fast writer and a slow " ..
     "reader", function()
    run(function(loop)
      local limit, total, block = 32768, 8 * 1024 * 1024, 65536
      local max_write, high, pauses = 0, nil, nil
      local server, reader = pair(loop, function(_, w)
        local off = 0
        high = select(2, w.transport:get_write_buffer_limits())
        while off < total do
          w:write(pattern_at(off, block))
          off = off + block
          max_write = math.max(max_write, w.transport:get_write_buffer_size())
          w:drain()
        end
        pauses = w.transport:get_stats().write_pauses
        w:close()
      end, nil, { limit = limit })
      local got, max_held, bad = 0, 0, nil
      while true do
        max_held = math.max(max_held, reader:get_buffer_size())
        local data = reader:read(8192)
        if data == "" then
          break
        end
        if not bad and data ~= pattern_at(got, #data) then
          bad = got
        end
        got = got + #data
        tapio.sleep(0) -- a slow reader: a loop turn per 8 KiB
      end
      assert.are.equal(total, got)
      assert.is_nil(bad)
      -- the reader: at most twice its limit and one read of the socket
      assert.is_true(max_held <= 2 * limit + 256 * 1024, max_held)
      -- the writer: drain waited, and kept the buffer near the high mark
      assert.is_true(pauses > 0)
      assert.is_true(max_write <= high + block, max_write)
      server:close()
    end, { deadline = 60 })
  end)

  it("wakes every task waiting in drain (cpython#74116)", function()
    run(function(loop)
      local server, reader, writer, _, sw = pair(loop)
      writer.transport:pause_reading() -- the client reads nothing yet
      sw.transport:set_write_buffer_limits(4096)
      -- more than the kernel's buffers on both sides hold
      local big = 32 * 1024 * 1024
      sw:write(("z"):rep(big))
      local done = {}
      local tasks = {}
      for i = 1, 3 do
        tasks[i] = loop:create_task(function()
          sw:drain()
          done[#done + 1] = i
        end)
      end
      tapio.sleep(0)
      tapio.sleep(0)
      assert.are.same({}, done) -- all three wait
      writer.transport:resume_reading()
      assert.are.equal(big, #reader:readexactly(big))
      for i = 1, 3 do
        tasks[i]:await()
      end
      table.sort(done)
      assert.are.same({ 1, 2, 3 }, done)
      server:close()
    end)
  end)

  it("drains at once in a task, and returns a future outside one, " ..
     "whichever task drained before", function()
    run(function(loop)
      local server, _, writer = pair(loop)
      assert.are.equal(0, select("#", writer:drain()))
      local outside
      loop:call_soon(function() outside = writer:drain() end)
      tapio.sleep(0)
      assert.is_true(tapio.is_future(outside))
      assert.is_true(outside:done())
      local other = loop:create_task(function()
        return select("#", writer:drain()), writer:drain()
      end)
      assert.are.equal(0, other:await())
      assert.are.equal(0, select("#", writer:drain()))
      writer:close()
      assert.are.equal("ECONNRESET", fails(writer.drain, writer).name)
      server:close()
    end)
  end)

  it("leaves the writer usable after a cancelled drain", function()
    run(function(loop)
      local server, reader, writer, _, sw = pair(loop)
      writer.transport:pause_reading()
      sw.transport:set_write_buffer_limits(4096)
      local big = 32 * 1024 * 1024
      sw:write(("q"):rep(big))
      local t = started(loop, sw.drain, sw)
      assert.is_false(t:done())
      assert.is_true(t:cancel())
      assert.is_true(tapio.is_cancelled(select(2, pcall(t.await, t))))
      writer.transport:resume_reading()
      local all = loop:create_task(reader.readexactly, reader, big + 3)
      sw:write("end")
      sw:drain() -- waits again, and returns
      assert.are.equal(big + 3, #all:await())
      server:close()
    end, { deadline = 60 }) -- 32 MiB through the reader: slow under ASan
  end)

  it("leaves the connection usable after a cancelled read or readline",
     function()
    run(function(loop)
      local server, reader, writer, sr = pair(loop)
      local t = loop:create_task(function()
        return sr:readline()
      end)
      writer:write("no newline yet")
      until_true(function()
        return sr:get_buffer_size() == 14
      end)
      assert.is_true(t:cancel())
      assert.is_true(tapio.is_cancelled(select(2, pcall(t.await, t))))
      writer:write(", now\n")
      assert.are.equal("no newline yet, now\n", sr:readline())
      local r = started(loop, sr.read, sr, 10)
      r:cancel()
      pcall(r.await, r)
      writer:write("after")
      assert.are.equal("after", sr:read(10))
      server:close()
      writer:close()
      assert.are.equal("", sr:read())
      assert.are.equal("", reader:read())
    end)
  end)

  it("batches a task's writes while its reader holds input, in order",
     function()
    run(function(loop)
      local server, reader, writer, sr, sw = pair(loop)
      writer:write("a\nb\nc\nd\n")
      until_true(function()
        return sr:get_buffer_size() == 8
      end)
      local sent = function()
        return sw.transport:get_stats().bytes_sent
      end
      assert.are.equal(0, sent())
      sw:write(sr:readline())
      sw:drain()
      assert.are.equal(0, sent()) -- more input waits: the reply too
      sw:write(sr:readline())
      assert.are.equal(0, sent())
      tapio.sleep(0) -- the task waits: what it wrote goes out
      assert.are.equal(4, sent())
      sw:write(sr:readline())
      assert.are.equal(4, sent())
      sw:writelines({ sr:readline(), "e\n" }) -- the reader ran dry: now
      assert.are.equal(10, sent())
      assert.are.equal("a\nb\nc\nd\ne\n", reader:readexactly(10))
      writer:write("f\n")
      until_true(function()
        return sr:get_buffer_size() == 2
      end)
      sw:write("1")
      sw:write("2")
      sw:close() -- sends what waits first
      assert.are.equal("12", reader:read())
      server:close()
    end)
  end)

  it("sends what a task batched before the transport's own close, abort "
     .. "or write_eof", function()
    run(function(loop)
      for _, method in ipairs({ "close", "abort", "write_eof" }) do
        local server, reader, writer, sr, sw = pair(loop)
        writer:write("a\nb\n")
        until_true(function()
          return sr:get_buffer_size() == 4
        end)
        sw:write(sr:readline()) -- more input waits: batched
        sw:write("1")
        assert.are.equal(0, sw.transport:get_stats().bytes_sent)
        sw.transport[method](sw.transport)
        assert.are.equal("a\n1", reader:read(), method)
        writer:close()
        sw:close()
        server:close()
      end
    end)
  end)

  it("counts what it batched in writer:get_write_buffer_size(), and "
     .. "answers 0 once the connection is lost", function()
    run(function(loop)
      local server, reader, writer, sr, sw = pair(loop)
      writer:write("a\nb\n")
      until_true(function()
        return sr:get_buffer_size() == 4
      end)
      sw:write(sr:readline()) -- more input waits: batched
      sw:write("12345")
      assert.are.equal(0, sw.transport:get_write_buffer_size())
      assert.are.equal(7, sw:get_write_buffer_size())
      tapio.sleep(0) -- the task waits: what it wrote goes out
      assert.are.equal(0, sw:get_write_buffer_size())
      assert.are.equal("a\n12345", reader:readexactly(7))
      sw.transport:abort()
      pcall(sw.wait_closed, sw)
      sw:write("dropped")
      assert.are.equal(0, sw:get_write_buffer_size())
      assert.are.equal(0, sw.transport:get_write_buffer_size())
      writer:close()
      server:close()
    end)
  end)

  it("raises for a write after write_eof", function()
    run(function(loop)
      local server, _, writer = pair(loop)
      writer:write_eof()
      assert.matches("writer:write: cannot write after write_eof%(%)",
        fails(writer.write, writer, "x"))
      assert.matches("writer:writelines: cannot write after write_eof%(%)",
        fails(writer.writelines, writer, { "x" }))
      writer:close()
      server:close()
      -- the transport's own write_eof: the writer's calls name themselves
      -- all the same, at the caller's line
      local other
      server, _, other = pair(loop)
      other.transport:write_eof()
      assert.matches("streams_spec.lua:%d+: tapio: writer:write: cannot " ..
        "write after write_eof%(%)", fails(function() other:write("x") end))
      assert.matches("streams_spec.lua:%d+: tapio: writer:writelines: " ..
        "cannot write after write_eof%(%)",
        fails(function() other:writelines({ "x" }) end))
      other:close()
      server:close()
      -- while the reader holds input (a write then waits to be batched):
      -- raised here all the same, not later from the batch's flush
      local reader, sw
      server, reader, other, _, sw = pair(loop)
      sw:write("unread")
      until_true(function() return reader:get_buffer_size() == 6 end)
      other:write_eof()
      assert.matches("streams_spec.lua:%d+: tapio: writer:write: cannot " ..
        "write after write_eof%(%)", fails(function() other:write("x") end))
      assert.matches("streams_spec.lua:%d+: tapio: writer:writelines: " ..
        "cannot write after write_eof%(%)",
        fails(function() other:writelines({ "x" }) end))
      assert.are.equal(0, other:get_write_buffer_size())
      other:close()
      server:close()
    end)
  end)

  it("reports an error of client_connected_cb and closes that connection",
     function()
    local errors = run(function(loop, errors)
      local boom = tapio.error("EINVAL", "boom")
      local server = tapio.start_server(function(reader)
        reader:read(1)
        error(boom)
      end, "127.0.0.1", 0)
      local reader, writer = tapio.open_connection("127.0.0.1",
        helper.port(server))
      writer:write("x")
      assert.are.equal("", reader:read()) -- closed by the server
      assert.are.equal(boom, errors[1].exception)
      server:close()
      return errors
    end, { errors_ok = true })
    assert.are.equal(1, #errors)
    assert.are.equal("unhandled error in client_connected_cb",
      errors[1].message)
    assert.matches("streams_spec.lua", errors[1].traceback)
    assert.are.equal("tapio.transport", getmetatable(errors[1].transport)
      .__name)
  end)

  it("runs a callback that never waits as well (R16)", function()
    run(function()
      local server = tapio.start_server(function(_, writer)
        writer:write("hi")
        writer:close()
      end, "127.0.0.1", 0)
      local reader = tapio.open_connection("127.0.0.1", helper.port(server))
      assert.are.equal("hi", reader:read())
      server:close()
    end)
  end)

  it("closes the connection of a callback that raises before it waits, "
     .. "and wait_closed returns (cpython gh-155941, gh-110894)", function()
    local errors = run(function(_, errors)
      local server = tapio.start_server(function()
        error("boom") -- a plain callback's error (asyncio left it open)
      end, "127.0.0.1", 0)
      local reader, writer = tapio.open_connection("127.0.0.1",
        helper.port(server))
      assert.are.equal("", reader:read()) -- closed by the server
      writer:close()
      server:close()
      server:wait_closed() -- no connection left open to wait for
      return errors
    end, { errors_ok = true })
    assert.are.equal(1, #errors)
    assert.are.equal("unhandled error in client_connected_cb",
      errors[1].message)
    assert.matches("boom", tostring(errors[1].exception))
  end)

  it("takes write_eof after close while the transport closes, harmlessly "
     .. "(cpython bpo-31647)", function()
    run(function(loop)
      local server, reader, writer, sr = pair(loop)
      writer:write("last")
      writer:close()
      assert.is_true(writer:is_closing())
      writer:write_eof() -- 3.6 raised AttributeError here
      writer:wait_closed()
      assert.are.equal("last", sr:read()) -- then the end, once
      assert.are.equal("", reader:read())
      server:close()
    end)
  end)

  it("gives each connection a reader with the limit given", function()
    run(function(loop)
      local server, reader, writer, sr = pair(loop, nil, { limit = 5 },
        { limit = 6 })
      writer:write("123456\n")
      local err = fails(sr.readline, sr)
      assert.are.equal("LimitOverrunError", err.name)
      assert.are.equal(6, reader._limit)
      server:close()
    end)
  end)

  it("pauses reading over twice the limit after a read to the end was "
     .. "cancelled", function()
    run(function(loop)
      local limit, total = 16384, 1024 * 1024
      local server, reader, writer, _, sw = pair(loop, nil, nil,
        { limit = limit })
      local t = started(loop, reader.read, reader) -- (a wait_for timing out)
      t:cancel()
      assert.is_true(tapio.is_cancelled(select(2, pcall(t.await, t))))
      sw:write(pattern_at(0, total))
      until_true(function()
        return not writer.transport:is_reading()
          or reader:get_buffer_size() == total
      end)
      local held = reader:get_buffer_size()
      assert.is_true(held <= 2 * limit + 256 * 1024, held)
      assert.are.equal(pattern_at(0, total), reader:readexactly(total))
      writer:close()
      server:close()
    end)
  end)

  it("keeps reading while a readuntil waits, over twice the limit with "
     .. "no separator yet", function()
    run(function(loop)
      local server, reader, writer, _, sw = pair(loop, nil, nil,
        { limit = 4 })
      -- a separator longer than the limit: searched, the 10 bytes leave
      -- it waiting for more
      local t = started(loop, reader.readuntil, reader, "0123456789")
      sw:write("abcdefghij")
      until_true(function() return reader:get_buffer_size() == 10 end)
      assert.is_true(writer.transport:is_reading())
      sw:write("0123456789")
      local err = fails(t.await, t)
      assert.are.equal("LimitOverrunError", err.name)
      assert.are.equal(10, err.consumed)
      writer:close()
      server:close()
    end, { deadline = 2 })
  end)

  it("reads exactly more than twice the limit from a reader that paused "
     .. "its transport (python/asyncio#99)", function()
    run(function(loop)
      local big = PATTERN:rep(64) -- 4.6 MB: many reads
      local server, reader, writer = pair(loop, function(_, w)
        w:write(big)
        w:close()
      end, nil, { limit = 16 })
      assert.is_true(reader:readexactly(#big) == big)
      writer:close()
      server:close()
    end)
  end)

  it("binds the local end to local_addr = {host, port}", function()
    run(function(loop)
      local server, _, writer, _, sw = pair(loop, nil, nil,
        { local_addr = { "127.0.0.2", 0 } })
      assert.are.equal("127.0.0.2", writer:get_extra_info("sockname")[1])
      assert.are.equal("127.0.0.2", sw:get_extra_info("peername")[1])
      writer:close()
      server:close()
    end)
  end)

  it("wraps a connected socket: open_connection({sock = fd}), with limit",
     function()
    run(function(loop)
      local rsock, wsock = tapio.socketpair()
      local reader, writer = tapio.open_connection({ sock = rsock,
                                                     limit = 50 })
      assert.matches("limit=50", tostring(reader))
      loop:call_soon(tapio.send, wsock, "abc")
      assert.are.equal("abc", reader:read(100))
      writer:close()
      tapio.close_fd(wsock)
    end)
  end)

  it("serves until closed: serve_forever, close_clients, abort_clients",
     function()
    run(function(loop)
      local ended = {} -- what each server-side task read to the end
      local server = tapio.start_server(function(reader)
        local data = reader:read() -- before #ended: the other task waits too
        ended[#ended + 1] = data
      end, "127.0.0.1", 0)
      local serving = helper.started(loop, server.serve_forever, server)
      assert.is_true(server:is_serving())
      local port = helper.port(server)
      local r1, w1 = tapio.open_connection("127.0.0.1", port)
      local r2, w2 = tapio.open_connection("127.0.0.1", port)
      w1:write("one")
      w2:write("two")
      until_true(function() return server:client_count() == 2 end)
      serving:cancel() -- serve_forever's cancellation closes the server
      assert.is_true(tapio.is_cancelled(fails(serving.await, serving)))
      assert.is_false(server:is_serving())
      server:close_clients() -- each server-side reader sees the end
      assert.are.equal("", r1:read())
      assert.are.equal("", r2:read())
      until_true(function() return #ended == 2 end)
      table.sort(ended)
      assert.are.same({ "one", "two" }, ended)
      w1:close()
      w2:close()
      server:wait_closed()

      -- abort_clients drops what was not sent yet: a server-side writer
      -- with more buffered than the socket takes
      local writers = loop:create_future()
      server = tapio.start_server(function(_, writer)
        writer:write(("x"):rep(16 * 1024 * 1024))
        writers:set_result(writer)
      end, "127.0.0.1", 0)
      local r3, w3 = tapio.open_connection("127.0.0.1", helper.port(server))
      local sw = writers:await()
      assert.is_true(sw.transport:get_write_buffer_size() > 0)
      server:abort_clients()
      local ok, got = pcall(r3.read, r3)
      if ok then -- the end came before all of it, or a reset did
        assert.is_true(#got < 16 * 1024 * 1024)
      else
        assert.are.equal("ECONNRESET", got.name)
      end
      w3:close()
      server:close()
      server:wait_closed()
    end)
  end)

  it("raises the failure of open_connection: ECONNREFUSED", function()
    run(function()
      local server = tapio.start_server(function() end, "127.0.0.1", 0)
      local port = helper.port(server)
      server:close()
      server:wait_closed()
      local err = fails(tapio.open_connection, "127.0.0.1", port)
      assert.are.equal("ECONNREFUSED", err.name)
    end)
  end)

  -- asyncio's create calls close what they made when cancelled at their
  -- last wait; nobody else can: the task never returns it
  it("closes what open_connection and start_server made when cancelled "
     .. "after it was made, before the task resumed", function()
    run(function(loop)
      local ended = loop:create_future()
      local server = tapio.start_server(function(r)
        ended:set_result(r:read())
      end, "127.0.0.1", 0)
      local transport = helper.cancel_when_made(loop, tapio.open_connection,
        "127.0.0.1", helper.port(server))
      assert.is_true(transport:is_closing())
      assert.are.equal("", ended:await()) -- the server's side saw the end
      server:close()

      local made = helper.cancel_when_made(loop, tapio.start_server,
        function() end, "localhost", 0) -- looked up: done on a later turn
      assert.is_false(made:is_serving())
      made:wait_closed()
    end)
  end)

  it("follows the async rule outside a task", function()
    assert.are.equal("hello", helper.in_callback(function(_, finish)
      local sfut = tapio.start_server(function(r, w)
        w:write(r:read(5))
        w:close()
      end, "127.0.0.1", 0)
      assert.is_true(tapio.is_future(sfut))
      sfut:add_done_callback(function(f)
        local server = f:result()
        local cfut = tapio.open_connection("127.0.0.1", helper.port(server))
        cfut:add_done_callback(function(c)
          local reader, writer = c:result()
          writer:write("hello")
          assert.is_true(tapio.is_future(writer:drain()))
          reader:read():add_done_callback(function(rf)
            server:close()
            finish(rf:result())
          end)
        end)
      end)
    end))
  end)

  it("leaves nothing behind: 500 connections opened and closed", function()
    run(function()
      local server = tapio.start_server(function(r, w)
        w:write(r:read())
        w:close()
      end, "127.0.0.1", 0)
      local port = helper.port(server)
      local function one()
        local r, w = tapio.open_connection("127.0.0.1", port)
        w:write("x")
        w:write_eof()
        assert.are.equal("x", r:read())
        w:close()
        w:wait_closed()
      end
      for _ = 1, 50 do -- tables and the registry grow to their size
        one()
      end
      tapio.sleep(0)
      helper.collect()
      local refs, kb = helper.registry_count(), collectgarbage("count")
      for _ = 1, 500 do
        one()
      end
      tapio.sleep(0) -- the server's tasks end
      helper.collect()
      assert.are.equal(refs, helper.registry_count())
      -- a connection's reader, writer, protocol and task are several KiB
      local grew = collectgarbage("count") - kb
      assert.is_true(grew < 100, ("grew by %.0f KiB"):format(grew))
      server:close()
    end, { deadline = 60 })
  end)

  it("checks the arguments of the calls and methods", function()
    run(function(loop)
      assert.matches("streams_spec.lua:%d+: tapio: open_connection: " ..
        "unknown option 'backlgo'", fails(function()
          tapio.open_connection("127.0.0.1", 1, { backlgo = 1 })
        end))
      assert.matches("open_connection: bad option 'limit' %(integer > 0 " ..
        "expected, got 0%)", fails(tapio.open_connection, "127.0.0.1", 1,
                                   { limit = 0 }))
      assert.matches("open_connection: bad argument #2 'port'",
        fails(tapio.open_connection, "127.0.0.1", "x"))
      assert.matches("open_connection: bad argument #1 'host' %(host and " ..
        "port are required unless opts.sock is given%)",
        fails(tapio.open_connection))
      assert.matches("open_connection: bad argument #3 'opts' %(table or " ..
        "nil expected, got number%)",
        fails(tapio.open_connection, "127.0.0.1", 1, 5))
      assert.matches("open_connection: bad option 'local_addr' %({host, " ..
        "port} expected%)", fails(tapio.open_connection, "127.0.0.1", 1,
                                  { local_addr = "127.0.0.1" }))
      assert.matches("start_server: bad argument #1 'client_connected_cb' " ..
        "%(function expected, got nil%)", fails(tapio.start_server))
      assert.matches("start_server: bad argument #3 'port'",
        fails(tapio.start_server, print, "127.0.0.1", -1))
      assert.matches("start_unix_server: bad argument #2 'path'",
        fails(tapio.start_unix_server, print, 5))
      assert.matches("open_unix_connection: bad argument #1 'path'",
        fails(tapio.open_unix_connection, nil))
      assert.matches("start_server: unknown option 'limt'",
        fails(tapio.start_server, print, "127.0.0.1", 0, { limt = 1 }))
      local server, _, writer = pair(loop)
      assert.matches("streams_spec.lua:%d+: tapio: writer:write: bad " ..
        "argument #1 'data' %(string expected, got number%)",
        fails(function() writer:write(5) end))
      assert.matches("streams_spec.lua:%d+: tapio: writer:write: bad " ..
        "argument #1 'data' %(string expected, got tapio.StreamReader%)",
        fails(function() writer:write(tapio.StreamReader()) end))
      assert.matches("writer:writelines: bad argument #1 'data' %(table " ..
        "expected", fails(writer.writelines, writer, "x"))
      assert.matches("writer:writelines: bad argument #1 'data' %(string " ..
        "expected at index 2, got number%)",
        fails(writer.writelines, writer, { "a", 1 }))
      assert.matches("writer:writelines: bad argument #1 'data' %(list " ..
        "expected, got a table with key 'x'%)",
        fails(writer.writelines, writer, { x = "a" }))
      assert.matches("%(list expected, got a [%a ]+%d%)",
        fails(writer.writelines, writer, { "a", nil, "c" }))
      assert.matches("writer:drain: bad self %(tapio.StreamWriter " ..
        "expected, got tapio.StreamReader%)",
        fails(writer.drain, tapio.StreamReader()))
      assert.matches("writer:close: bad self", fails(writer.close))
      for _, name in ipairs({ "write", "writelines", "is_closing",
                              "can_write_eof", "write_eof", "get_extra_info",
                              "get_write_buffer_size", "wait_closed" }) do
        assert.matches("streams_spec.lua:%d+: tapio: writer:" .. name ..
          ": bad self %(tapio.StreamWriter expected, got table%)",
          fails(function() writer[name]({}, {}) end))
      end
      writer:close()
      server:close()
    end)
    -- no running loop: nothing to connect on
    assert.matches("open_connection: no running event loop",
      fails(tapio.open_connection, "127.0.0.1", 1))
  end)
end)

describe("streams over a Unix socket", function()
  it("echo through start_unix_server and open_unix_connection", function()
    local path = os.tmpname()
    os.remove(path)
    run(function()
      local server = tapio.start_unix_server(function(reader, writer)
        local line = reader:readline()
        writer:write(line:upper())
        writer:close()
      end, path)
      assert.is_true(helper.exists(path))
      local reader, writer = tapio.open_unix_connection(path)
      assert.are.equal(path, writer:get_extra_info("peername"))
      writer:write("over unix\n")
      assert.are.equal("OVER UNIX\n", reader:readline())
      assert.are.equal("", reader:read())
      writer:close()
      server:close()
      server:wait_closed()
    end)
    os.remove(path)
  end)

  it("takes Unix sockets as opts.sock, with limit: " ..
     "start_unix_server(cb, {sock = fd}), open_unix_connection({sock = fd})",
     function()
    local path = os.tmpname()
    os.remove(path)
    run(function(loop)
      local l = helper.unix_listener(path)
      local server = tapio.start_unix_server(function(reader, writer)
        writer:write(reader:read(100))
        writer:close()
      end, { sock = l, limit = 100 })
      local c = assert(tapio.socket(tapio.AF_UNIX, tapio.SOCK_STREAM))
      loop:sock_connect(c, path)
      local reader, writer = tapio.open_unix_connection({ sock = c,
        limit = 50 })
      assert.are.equal(50, reader._limit)
      writer:write("by sock")
      assert.are.equal("by sock", reader:read())
      writer:close()
      server:close()
      server:wait_closed()
    end)
    os.remove(path)
  end)
end)

describe("tapio.StreamReaderProtocol", function()
  it("makes a read pipe a stream, paused while the reader holds more " ..
     "than twice its limit", function()
    run(function(loop)
      local r, w = tapio.pipe()
      local reader = tapio.StreamReader(1024)
      local rt = loop:connect_read_pipe(function()
        return tapio.StreamReaderProtocol(reader)
      end, r)
      local wt = loop:connect_write_pipe(function() return {} end, w)
      local sent = ("0123456789abcdef"):rep(4096) -- 64 KiB
      wt:write(sent)
      until_true(function() return reader:get_buffer_size() > 2048 end)
      assert.is_false(rt:is_closing()) -- open, its writer writing
      assert.is_false(rt:is_reading()) -- the reader holds too much
      assert.is_true(reader:read(1000) ~= "")
      wt:close()
      local got = { sent:sub(1, 1000) }
      repeat
        local chunk = reader:read(1000)
        got[#got + 1] = chunk
      until chunk == ""
      assert.are.equal(sent, table.concat(got))
      assert.is_true(reader:at_eof())
    end)
  end)

  it("with a callback, serves a connection as start_server does; bad " ..
     "arguments raise", function()
    run(function(loop)
      local got = loop:create_future()
      local server = loop:create_server(function()
        return tapio.StreamReaderProtocol(tapio.StreamReader(),
          function(reader, writer)
            writer:write(reader:readline():upper())
            writer:close()
            got:set_result(true)
          end)
      end, "127.0.0.1", 0)
      local reader, writer = tapio.open_connection("127.0.0.1",
        server:addresses()[1].port)
      writer:write("hi\n")
      assert.are.equal("HI\n", reader:readline())
      assert.is_true(got:await())
      writer:close()
      server:close()
      assert.matches("StreamReaderProtocol: bad argument #1 'reader' " ..
        "%(tapio.StreamReader expected, got table%)",
        fails(tapio.StreamReaderProtocol, {}))
      assert.matches("StreamReaderProtocol: bad argument #2 " ..
        "'client_connected_cb'",
        fails(tapio.StreamReaderProtocol, tapio.StreamReader(), 5))
    end)
  end)
end)

-- asyncio refuses the future a read or a drain of another loop's stream
-- awaits; tapio's would park for ever (nothing of the task's loop feeds
-- the reader): refused at once, as another loop's future is.
describe("a stream of another loop", function()
  it("refuses a task's reads of its reader, drain and wait_closed of its "
     .. "writer, naming the method", function()
    local other = tapio.new_loop()
    local s = other:run_until_complete(function()
      local got = { pair(other) } -- server, reader, writer, sr, sw
      got[5]:write("line\n") -- there to read: refused all the same
      tapio.wait_for(function() -- bounded: a timeout error, not a hang
        until_true(function() return got[2]:get_buffer_size() > 0 end)
      end, 5)
      return got
    end)
    local reader, writer, empty = s[2], s[3], s[4]
    run(function()
      for _, case in ipairs({ -- no tail calls: the error names the line
        { "reader:read", function() empty:read(10) end }, -- would park
        { "reader:read", function() reader:read(10) end },
        { "reader:readline", function() reader:readline() end },
        { "reader:readexactly", function() reader:readexactly(1) end },
        { "reader:readuntil", function() reader:readuntil("\n") end },
        { "writer:drain", function() writer:drain() end },
        { "writer:wait_closed", function() writer:wait_closed() end },
      }) do
        local ok, err = pcall(case[2])
        assert.is_false(ok, case[1])
        assert.matches("^[^:]*streams_spec%.lua:%d+: tapio: " .. case[1]
          .. ": the " .. case[1]:match("^%a+") .. " belongs to another loop "
          .. "than the task's$", err)
      end
    end, { deadline = 2 })
    assert.are.equal("line\n", other:run_until_complete(function()
      return reader:readline() -- its own loop's task reads it
    end))
    other:run_until_complete(function()
      writer:close()
      s[5]:close()
      s[1]:close()
      s[1]:wait_closed()
    end)
    other:close()
  end)
end)
