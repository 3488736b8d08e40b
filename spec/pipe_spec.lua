-- loop:connect_read_pipe and loop:connect_write_pipe on pipes, a pty and a
-- socketpair, with real children as the other end: asyncio's
-- ReadTransport and WriteTransport, each with only its own methods.
local helper = require "spec.helper"
local tapio = helper.tapio

local run, recorder = helper.run, helper.recorder

-- Starts sh -c script with its stdin and stdout as given (descriptors or
-- nil for /dev/null); returns the subprocess recorder.
local function child(loop, script, stdin, stdout)
  local _, p = loop:subprocess_exec(function()
    return helper.sub_recorder(loop)
  end, "sh", { "-c", script },
    { stdin = stdin or "devnull", stdout = stdout or "devnull" })
  return p
end

local function read_pipe(loop, fd)
  local t, p = loop:connect_read_pipe(function() return recorder(loop) end,
    fd)
  return t, p
end

local function write_pipe(loop, fd)
  local t, p = loop:connect_write_pipe(function() return recorder(loop) end,
    fd)
  return t, p
end

describe("a read pipe", function()
  it("gets a writer's data, then eof, then connection_lost(nil)",
     function()
    run(function(loop)
      local r, w = tapio.pipe()
      local t, p = read_pipe(loop, r)
      assert.are.equal("tapio.read_transport", getmetatable(t).__name)
      assert.are.equal(r, t:get_extra_info("pipe"))
      assert.is_nil(t:get_extra_info("socket"))
      assert.are.equal(("tapio.read_transport (fd %d)"):format(r),
        tostring(t))
      assert.is_true(t:is_reading())
      assert.is_nil(t.write) -- a ReadTransport cannot write
      assert.is_nil(t.abort)
      child(loop, "printf 'from the child'", nil, w)
      tapio.close_fd(w)
      assert.are.equal(false, p.lost:await())
      assert.are.equal("from the child", p.received)
      assert.are.same({ "made", "data", "eof", "lost" },
        { p.events[1], p.events[2], p.events[#p.events - 1],
          p.events[#p.events] })
      assert.is_true(t:is_closing())
      assert.is_false(t:is_reading())
      -- after the end, as asyncio's: the pipe is gone, the rest answers
      assert.is_nil(t:get_extra_info("pipe"))
      assert.is_nil(t:get_protocol())
      assert.are.equal(loop, t:get_loop())
      assert.are.equal(#"from the child", t:get_stats().bytes_received)
      t:pause_reading()
      t:resume_reading()
      t:close()
    end)
  end)

  it("closes after eof even when eof_received returns true", function()
    run(function(loop)
      local r, w = tapio.pipe()
      local _, p = read_pipe(loop, r)
      p.keep_open = true
      tapio.close_fd(w)
      assert.are.equal(false, p.lost:await())
      assert.are.same({ "made", "eof", "lost" }, p.events)
    end)
  end)

  it("pauses and resumes reading", function()
    run(function(loop)
      local r, w = tapio.pipe()
      local t, p = read_pipe(loop, r)
      t:pause_reading()
      t:pause_reading()
      assert.is_false(t:is_reading())
      local writer = child(loop, "printf abc", nil, w)
      tapio.close_fd(w)
      writer.lost:await()
      tapio.sleep(0.02) -- the data waits in the pipe, unread
      assert.are.equal("", p.received)
      t:resume_reading()
      assert.are.equal("abc", p:bytes(3):await())
      p.lost:await()
    end)
  end)

  it("takes a pty's EIO as end of file", function()
    run(function(loop)
      local master, slave = tapio.openpty()
      local _, p = read_pipe(loop, master)
      child(loop, "printf 'on the tty'", nil, slave)
      tapio.close_fd(slave)
      assert.are.equal(false, p.lost:await())
      assert.are.equal("on the tty", p.received)
      assert.are.equal("eof", p.events[#p.events - 1])
    end)
  end)

  it("reads a socketpair", function()
    run(function(loop)
      local a, b = tapio.socketpair()
      local _, p = read_pipe(loop, a)
      tapio.send(b, "sock")
      tapio.close_fd(b)
      assert.are.equal(false, p.lost:await())
      assert.are.equal("sock", p.received)
    end)
  end)

  it("is closed at once, calling nobody, when its create is cancelled",
     function()
    run(function(loop)
      local refs = loop:_debug().refs
      local a, b = tapio.socketpair()
      local made, fut = false, nil
      loop:call_soon(function() -- outside a task: the future comes back
        fut = loop:connect_read_pipe(function()
          made = true
          return recorder(loop)
        end, a)
        fut:cancel()
      end)
      tapio.sleep(0.05) -- turns of the loop in which nobody may be called
      assert.is_true(fut:cancelled())
      assert.is_false(made)
      local n, err = tapio.send(b, "x") -- its reader is gone
      assert.is_nil(n)
      assert.are.equal("EPIPE", err.name)
      assert.are.equal(refs, loop:_debug().refs)
      tapio.close_fd(b)
    end)
  end)
end)

describe("a write pipe", function()
  it("writes to a reader, write_eof closes it", function()
    run(function(loop)
      local r, w = tapio.pipe()
      local t, p = write_pipe(loop, w)
      assert.are.equal("tapio.write_transport", getmetatable(t).__name)
      assert.is_nil(t.pause_reading) -- a WriteTransport cannot read
      assert.are.equal(w, t:get_extra_info("pipe"))
      assert.is_true(t:can_write_eof())
      local cat = child(loop, "cat", r, "pipe")
      tapio.close_fd(r)
      t:write("one ")
      t:writelines({ "two ", "three" })
      t:write_eof()
      assert.is_true(t:is_closing())
      t:write("dropped") -- closing: ignored, as asyncio does
      assert.are.equal(false, p.lost:await())
      cat.lost:await()
      assert.are.equal("one two three", cat:output(1))
      -- after the end, as asyncio's
      t:write_eof()
      assert.is_true(t:can_write_eof())
      assert.are.equal(0, t:get_write_buffer_size())
      assert.are.same({ 16384, 65536 }, { t:get_write_buffer_limits() })
      assert.is_nil(t:get_extra_info("pipe"))
      assert.are.equal(13, t:get_stats().bytes_sent)
    end)
  end)

  it("pauses and resumes writing with a slow reader", function()
    run(function(loop)
      local r, w = tapio.pipe()
      local t, p = write_pipe(loop, w)
      t:set_write_buffer_limits(16 * 1024, 1024)
      local data = ("y"):rep(256 * 1024)
      t:write(data)
      assert.are.equal("pause", p.events[#p.events])
      assert.is_true(t:get_write_buffer_size() > 16 * 1024)
      local cat = child(loop, "sleep 0.05; exec cat", r, "pipe")
      tapio.close_fd(r)
      t:close()
      p.lost:await()
      cat.lost:await()
      assert.are.same({ "made", "pause", "resume", "lost" }, p.events)
      assert.are.equal(#data, cat.bytes[1])
    end)
  end)

  it("ends with EPIPE when its reader goes away, writing or not",
     function()
    run(function(loop)
      local r, w = tapio.pipe()
      local t, p = write_pipe(loop, w)
      local head = child(loop, "head -c 5 >/dev/null", r)
      tapio.close_fd(r)
      t:write("12345")
      head.lost:await() -- the reader is gone; nothing more is written
      local err = p.lost:await()
      assert.are.equal("EPIPE", err.name)
      assert.are.same({ "made", "lost" }, p.events)
      assert.is_true(t:is_closing())
    end)
  end)

  it("aborts, dropping what is buffered", function()
    run(function(loop)
      local r, w = tapio.pipe()
      local t, p = write_pipe(loop, w)
      t:write(("z"):rep(256 * 1024))
      assert.is_true(t:get_write_buffer_size() > 0)
      t:abort()
      assert.are.equal(0, t:get_write_buffer_size())
      assert.are.equal(false, p.lost:await())
      tapio.close_fd(r)
    end)
  end)

  it("writes to a pty, whose other side writing is not a reader gone",
     function()
    run(function(loop)
      local master, slave = tapio.openpty()
      local t, p = write_pipe(loop, master)
      local cat = child(loop, "head -c 6; echo noise", slave, slave)
      tapio.close_fd(slave)
      t:write("to tty")
      cat.lost:await()
      tapio.sleep(0.02)
      assert.are.same({ "made" }, p.events)
      t:close()
      assert.are.equal(false, p.lost:await())
    end)
  end)
end)

describe("pipe arguments", function()
  it("raise for a bad descriptor type, an option, no factory", function()
    run(function(loop)
      local f = function() return recorder(loop) end
      assert.has_error(function() loop:connect_read_pipe(f, "0") end,
        "tapio: loop:connect_read_pipe: bad argument #2 'pipe' (integer " ..
        "expected, got string)")
      assert.has_error(function() loop:connect_write_pipe(nil, 1) end,
        "tapio: loop:connect_write_pipe: bad argument #1 " ..
        "'protocol_factory' (function expected, got nil)")
      assert.has_error(function()
        loop:connect_read_pipe(f, 0, { nodelay = true })
      end, "tapio: loop:connect_read_pipe: unknown option 'nodelay'")
      local ok, err = pcall(read_pipe, loop, 1000)
      assert.is_false(ok)
      assert.are.equal("EBADF", err.name)
    end)
  end)
end)
