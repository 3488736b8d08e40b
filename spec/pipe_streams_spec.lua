-- tapio.open_pipe_reader and tapio.open_pipe_writer: a pipe's ends as a
-- StreamReader and a StreamWriter, with real children at the other end.
local helper = require "spec.helper"
local tapio = helper.tapio

local run = helper.run

-- sh -c script with stdin and stdout as given (descriptors, or nil for
-- /dev/null); the process.
local function child(script, stdin, stdout)
  return tapio.create_subprocess_exec("sh", { "-c", script },
    { stdin = stdin or "devnull", stdout = stdout or "devnull" })
end

describe("tapio.open_pipe_reader", function()
  it("reads a child's output line by line, then the end", function()
    run(function()
      local r, w = tapio.pipe()
      local reader, transport = tapio.open_pipe_reader(r)
      assert.are.equal("tapio.read_transport", getmetatable(transport).__name)
      local proc = child("printf 'one\\ntwo\\nthree'", nil, w)
      tapio.close_fd(w)
      assert.are.equal("one\n", reader:readline())
      assert.are.equal("two\n", reader:readexactly(4))
      assert.are.equal("three", reader:read())
      assert.is_true(reader:at_eof())
      assert.are.equal(0, proc:wait())
      assert.is_true(transport:is_closing())
    end)
  end)

  it("pauses the pipe over twice its limit and resumes as it is read",
     function()
    run(function()
      local r, w = tapio.pipe()
      local reader, transport = tapio.open_pipe_reader(r, { limit = 1024 })
      -- the child writes 64 KiB; the reader takes at most what one read
      -- brings over 2 KiB before the pipe's reading pauses
      local proc = child("head -c 65536 /dev/zero", nil, w)
      tapio.close_fd(w)
      helper.until_true(function()
        return not transport:is_reading()
      end)
      assert.is_true(reader:get_buffer_size() > 2048)
      local got = #reader:read()
      assert.are.equal(65536, got)
      assert.are.equal(0, proc:wait())
    end)
  end)

  it("leaves the descriptor's transport to close when done early",
     function()
    run(function()
      local r, w = tapio.pipe()
      local reader, transport = tapio.open_pipe_reader(r)
      local proc = child("echo first; exec sleep 30", nil, w)
      tapio.close_fd(w)
      assert.are.equal("first\n", reader:readline())
      transport:close()
      assert.is_true(transport:is_closing())
      proc:kill()
      assert.are.equal(-9, proc:wait())
    end)
  end)

  it("closes its transport when cancelled once it was made, before the "
     .. "task resumed, and so does open_pipe_writer", function()
    run(function(loop)
      local r, w = tapio.pipe()
      local transport = helper.cancel_when_made(loop, tapio.open_pipe_reader,
        r)
      assert.is_true(transport:is_closing())
      tapio.close_fd(w)
      r, w = tapio.pipe() -- a reader that stays: the writer's end is its own
      transport = helper.cancel_when_made(loop, tapio.open_pipe_writer, w)
      assert.is_true(transport:is_closing())
      tapio.close_fd(r)
    end)
  end)

  it("refuses a bad descriptor and a bad limit, naming them", function()
    run(function()
      local ok, err = pcall(tapio.open_pipe_reader, "x")
      assert.is_false(ok)
      assert.matches("open_pipe_reader: bad argument #1", err)
      ok, err = pcall(tapio.open_pipe_reader, 0, { limit = 0 })
      assert.is_false(ok)
      assert.matches("open_pipe_reader: bad option 'limit'", err)
    end)
  end)
end)

describe("tapio.open_pipe_writer", function()
  it("writes to a child's stdin, and close gives it the end", function()
    run(function()
      local r, w = tapio.pipe()
      local out_r, out_w = tapio.pipe()
      local proc = child("tr a-z A-Z", r, out_w)
      tapio.close_fd(r)
      tapio.close_fd(out_w)
      local writer = tapio.open_pipe_writer(w)
      assert.are.equal("tapio.write_transport",
        getmetatable(writer.transport).__name)
      local reader = tapio.open_pipe_reader(out_r)
      writer:write("hello ")
      writer:writelines({ "pipe", "\n" })
      writer:drain()
      writer:close()
      writer:wait_closed()
      assert.are.equal("HELLO PIPE\n", reader:read())
      assert.are.equal(0, proc:wait())
    end)
  end)

  it("drain waits while the pipe is full, and every byte arrives",
     function()
    run(function(loop)
      local r, w = tapio.pipe()
      local writer = tapio.open_pipe_writer(w)
      local reader, rt = tapio.open_pipe_reader(r)
      rt:pause_reading() -- nobody reads: the pipe fills
      local block = ("0123456789abcdef"):rep(4096) -- 64 KiB
      local written = 0
      local high = select(2, writer.transport:get_write_buffer_limits())
      while writer.transport:get_write_buffer_size() <= high do
        writer:write(block)
        written = written + #block
      end
      local drained = false
      local t = loop:create_task(function()
        writer:drain()
        drained = true
        writer:close()
      end)
      tapio.sleep(0)
      assert.is_false(drained)
      rt:resume_reading()
      local got = reader:read()
      assert.is_true(drained)
      assert.are.equal(written, #got)
      assert.are.equal(block:rep(math.floor(written / #block)), got)
      t:result()
    end)
  end)

  it("raises EPIPE from drain once the reader has gone", function()
    run(function()
      local r, w = tapio.pipe()
      local writer = tapio.open_pipe_writer(w)
      tapio.close_fd(r)
      local ok, err = pcall(function()
        for _ = 1, 100 do
          writer:write(("x"):rep(65536))
          writer:drain()
        end
      end)
      assert.is_false(ok)
      assert.are.equal(tapio.EPIPE, err.code)
      assert.is_true(writer:is_closing())
    end)
  end)

  it("refuses a bad descriptor, naming it", function()
    run(function()
      local ok, err = pcall(tapio.open_pipe_writer, {})
      assert.is_false(ok)
      assert.matches("open_pipe_writer: bad argument #1", err)
    end)
  end)

  it("outside a task returns a future", function()
    local loop = tapio.new_loop()
    local r, w = tapio.pipe()
    local fut
    loop:call_soon(function()
      fut = tapio.open_pipe_writer(w)
    end)
    loop:run_until_complete(loop:create_task(function()
      assert.are.equal("function", type(fut.add_done_callback))
      local writer = fut:await()
      writer:write("x")
      writer:close()
      writer:wait_closed()
    end))
    tapio.close_fd(r)
    loop:close()
  end)
end)
