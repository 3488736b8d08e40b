-- StreamReader on its own, fed with feed_data and feed_eof: every read
-- method, its errors with their exact partial, expected and consumed, the
-- data left behind, limits at the edge, separators split across feeds,
-- cancellation, and reading 64 MiB to EOF in linear time.
local helper = require "spec.helper"
local tapio = helper.tapio
local testing = require "tapio.testing"

local run, fails, started = helper.run, helper.fails, helper.started

-- What remains in the reader (it is at EOF then).
local function rest(reader)
  reader:feed_eof()
  return reader:read()
end

-- Feeds the pieces one by one, each in its own loop turn, from a task of
-- its own, while the caller's task reads.
local function feed_later(loop, reader, pieces, eof)
  return loop:create_task(function()
    for _, piece in ipairs(pieces) do
      tapio.sleep(0)
      reader:feed_data(piece)
    end
    if eof then
      tapio.sleep(0)
      reader:feed_eof()
    end
  end)
end

local function bytes_of(s)
  local t = {}
  for i = 1, #s do
    t[i] = s:sub(i, i)
  end
  return t
end

describe("a StreamReader", function()
  it("reads up to n bytes, waits for some, and '' at the end", function()
    run(function(loop)
      local r = tapio.StreamReader()
      assert.are.equal(0, r:get_buffer_size())
      r:feed_data("hello ")
      r:feed_data("world")
      assert.are.equal(11, r:get_buffer_size())
      assert.are.equal("hel", r:read(3))
      assert.are.equal("lo ", r:read(3))
      assert.are.equal("world", r:read(100)) -- what there is, no more
      assert.are.equal("", r:read(0))
      feed_later(loop, r, { "later" })
      assert.are.equal("later", r:read(100)) -- waited for it
      assert.is_false(r:at_eof())
      r:feed_eof()
      assert.is_true(r:at_eof())
      assert.are.equal("", r:read(100))
      assert.are.equal("", r:read())
    end)
  end)

  it("reads to the end with read() and read(-1)", function()
    run(function(loop)
      local r = tapio.StreamReader()
      r:feed_data("ab")
      feed_later(loop, r, { "cd", "ef" }, true)
      assert.are.equal("abcdef", r:read())
      local r2 = tapio.StreamReader()
      feed_later(loop, r2, { "x", "y" }, true)
      assert.are.equal("xy", r2:read(-1))
    end)
  end)

  it("joins a line fed in pieces and leaves the rest (R1)", function()
    run(function()
      local r = tapio.StreamReader()
      for _, s in ipairs({ "chunk1 ", "chunk2 ", "chunk3 ", "\n chunk4" }) do
        r:feed_data(s)
      end
      assert.are.equal("chunk1 chunk2 chunk3 \n", r:readline())
      assert.are.equal(7, r:get_buffer_size())
      assert.are.equal(" chunk4", rest(r))
    end)
  end)

  it("reads a line that arrives a byte at a time", function()
    run(function(loop)
      local r = tapio.StreamReader()
      feed_later(loop, r, bytes_of("first line\nsecond"), true)
      assert.are.equal("first line\n", r:readline())
      assert.are.equal("second", r:readline()) -- the end: what is left
      assert.are.equal("", r:readline())
    end)
  end)

  it("gives a task's for loop each line, the last without its newline",
    function()
      run(function(loop)
        local r = tapio.StreamReader()
        feed_later(loop, r, bytes_of("one\ntwo\n\nlast"), true)
        local lines = {}
        for line in r:lines() do
          lines[#lines + 1] = line
        end
        assert.are.same({ "one\n", "two\n", "\n", "last" }, lines)
        assert.is_true(r:at_eof())
      end)
    end)

  it("raises readline's errors out of the for loop, and needs a task",
    function()
      run(function()
        local r = tapio.StreamReader(4)
        r:feed_data("ok\ntoo long\naft\n")
        local lines = {}
        local ok, err = pcall(function()
          for line in r:lines() do
            lines[#lines + 1] = line
          end
        end)
        assert.is_false(ok)
        assert.are.equal("LimitOverrunError", err.name)
        assert.are.same({ "ok\n" }, lines)
        assert.are.equal("aft\n", r:readline()) -- the long line dropped
      end)
      local r = tapio.StreamReader()
      local ok, err = pcall(r.lines, r)
      assert.is_false(ok)
      assert.matches("tapio: reader:lines: not inside a task", err, 1, true)
      ok, err = pcall(r.lines, {})
      assert.is_false(ok)
      assert.matches("reader:lines", err, 1, true)
    end)

  it("returns the partial line at the end, then '' (R4)", function()
    run(function()
      local r = tapio.StreamReader()
      r:feed_data("some data")
      r:feed_eof()
      assert.are.equal("some data", r:readline())
      assert.are.equal("", r:readline())
      local empty = tapio.StreamReader()
      empty:feed_eof()
      assert.are.equal("", empty:readline())
    end)
  end)

  it("accepts a line of exactly the limit and refuses one more (R3)",
     function()
    run(function()
      local r = tapio.StreamReader(7)
      r:feed_data("1234567\n")
      assert.are.equal("1234567\n", r:readline())
      r:feed_data("12345678\n")
      local err = fails(r.readline, r)
      assert.are.equal("LimitOverrunError", err.name)
      assert.are.equal(8, err.consumed)
      assert.are.equal(0, r:get_buffer_size()) -- the line went, with "\n"
      r:feed_data("1234567\n")
      assert.are.equal("1234567\n", r:readuntil("\n"))
      r:feed_data("12345678\n")
      err = fails(r.readuntil, r, "\n")
      assert.are.equal(8, err.consumed)
      assert.are.equal(9, r:get_buffer_size()) -- readuntil leaves it
    end)
  end)

  it("drops an over-long line through its newline, keeping the next " ..
     "(R2)", function()
    run(function()
      local r = tapio.StreamReader(3)
      r:feed_data("li")
      r:feed_data("ne1\nline2\n")
      local err = fails(r.readline, r)
      assert.are.equal("LimitOverrunError", err.name)
      assert.are.equal(tapio.EMSGSIZE, err.code)
      assert.are.equal("Separator is found, but chunk is longer than limit",
        err.message)
      assert.are.equal(
        "Separator is found, but chunk is longer than limit " ..
        "(LimitOverrunError)", tostring(err))
      assert.are.equal("line2\n", rest(r))
    end)
  end)

  it("empties the buffer for an over-long line with no newline yet (R2)",
     function()
    run(function()
      local r = tapio.StreamReader(3)
      r:feed_data("li")
      r:feed_data("ne1")
      r:feed_data("li")
      local err = fails(r.readline, r)
      assert.are.equal("Separator is not found, and chunk exceed the limit",
        err.message)
      assert.are.equal(7, err.consumed)
      assert.are.equal(0, r:get_buffer_size())
    end)
  end)

  it("refuses an empty separator or list (R5), and bad ones", function()
    run(function()
      local r = tapio.StreamReader()
      r:feed_data("data")
      assert.matches("reader:readuntil: bad argument #1 'separator' " ..
        "%(separator should be at least one%-byte string%)",
        fails(r.readuntil, r, ""))
      assert.matches("should contain at least one element",
        fails(r.readuntil, r, {}))
      assert.matches("string or list expected, got number",
        fails(r.readuntil, r, 5))
      assert.matches("string expected at index 2, got boolean",
        fails(r.readuntil, r, { "a", true }))
      assert.matches("should be at least one%-byte",
        fails(r.readuntil, r, { "a", "" }))
      assert.matches("'separator' %(list expected, got a table with key "
        .. "'sep'%)", fails(r.readuntil, r, { sep = "a" }))
      assert.matches("%(list expected, got a [%a ]+%d%)",
        fails(r.readuntil, r, { "a", nil, "t" }))
      assert.are.equal(4, r:get_buffer_size())
    end)
  end)

  it("finds a separator split across feeds (R6)", function()
    run(function(loop)
      local r = tapio.StreamReader()
      r:feed_data("QWEaa")
      r:feed_data("XYaa")
      r:feed_data("a")
      assert.are.equal("QWEaaXYaaa", r:readuntil("aaa"))
      assert.are.equal(0, r:get_buffer_size())
      feed_later(loop, r, bytes_of("QWEaaXYaaaTAIL"), true)
      assert.are.equal("QWEaaXYaaa", r:readuntil("aaa"))
      assert.are.equal("TAIL", r:read())
    end)
  end)

  it("finds a separator across many small chunks, after a read of part",
     function()
    run(function()
      local r = tapio.StreamReader()
      r:feed_data("xx<")
      r:feed_data("!-")
      r:feed_data("-")
      r:feed_data("->rest")
      assert.are.equal("x", r:read(1)) -- the search starts past an offset
      assert.are.equal("x<!--->", r:readuntil("--->"))
      assert.are.equal("rest", rest(r))
    end)
  end)

  it("takes the separator that ends first from a list", function()
    run(function(loop)
      local r = tapio.StreamReader()
      r:feed_data("abc\r\ndef\n")
      assert.are.equal("abc\r\n", r:readuntil({ "\n", "\r\n" }))
      assert.are.equal("def\n", r:readuntil({ "\r\n", "\n" }))
      -- "bc" ends before "abcd": the shorter one wins, as asyncio's
      r:feed_data("xabcd")
      assert.are.equal("xabc", r:readuntil({ "abcd", "bc" }))
      feed_later(loop, r, { "1", "23", "!", "45" }, false)
      assert.are.equal("d123!", r:readuntil({ "45", "3!" }))
      assert.are.equal("45", r:read(10))
    end)
  end)

  it("reads through '\\n' with no separator, and through the first of " ..
     "separators of one length", function()
    run(function()
      local r = tapio.StreamReader()
      r:feed_data("a;b\nc,d\te")
      assert.are.equal("a;b\n", r:readuntil())
      local seps = { ",", ";", "\t", "\n", " " }
      assert.are.equal("c,", r:readuntil(seps))
      assert.are.equal("d\t", r:readuntil(seps))
      assert.are.equal("e", rest(r))
    end)
  end)

  it("takes a separator's bytes as they are, Lua's pattern characters too",
     function()
    run(function()
      local r = tapio.StreamReader()
      r:feed_data("ab.c%d(e")
      assert.are.equal("ab.", r:readuntil(".")) -- not any byte ("a")
      assert.are.equal("c%d", r:readuntil("%d"))
      assert.are.equal("(", r:readuntil("(")) -- not a pattern's error
      r:feed_data("x.")                       -- a separator across chunks
      r:feed_data("*y")
      assert.are.equal("ex.*", r:readuntil({ ".*", "%" }))
      assert.are.equal("y", rest(r))
    end)
  end)

  it("raises IncompleteReadError at the end of readuntil, emptied (R7)",
     function()
    run(function()
      local r = tapio.StreamReader()
      r:feed_data("some data")
      r:feed_eof()
      local err = fails(r.readuntil, r, "AAA")
      assert.are.equal("IncompleteReadError", err.name)
      assert.are.equal(tapio.EOF, err.code)
      assert.are.equal("some data", err.partial)
      assert.is_nil(err.expected)
      assert.are.equal("9 bytes read on a total of undefined expected bytes",
        err.message)
      assert.are.equal(0, r:get_buffer_size())
    end)
  end)

  it("raises LimitOverrunError leaving the buffer as it was (R8)",
     function()
    run(function()
      local r = tapio.StreamReader(3)
      r:feed_data("some dataAA")
      local err = fails(r.readuntil, r, "AAA")
      assert.are.equal("LimitOverrunError", err.name)
      assert.are.equal("Separator is not found, and chunk exceed the limit",
        err.message)
      assert.are.equal(9, err.consumed) -- 11 + 1 - 3
      assert.are.equal(11, r:get_buffer_size())
      r:feed_data("A")
      err = fails(r.readuntil, r, "AAA")
      assert.are.equal("Separator is found, but chunk is longer than limit",
        err.message)
      assert.are.equal(9, err.consumed)
      assert.are.equal("some dataAAA", rest(r))
    end)
  end)

  it("reads exactly n bytes, 0 at once, refusing a negative n (R9)",
     function()
    run(function(loop)
      local r = tapio.StreamReader()
      r:feed_data("data")
      assert.are.equal("", r:readexactly(0))
      assert.matches("reader:readexactly: bad argument #1 'n' %(size can " ..
        "not be less than zero%)", fails(r.readexactly, r, -1))
      assert.are.equal(4, r:get_buffer_size())
      feed_later(loop, r, { "12", "345", "6789" })
      assert.are.equal("data12345", r:readexactly(9))
      assert.are.equal("6789", r:readexactly(4))
    end)
  end)

  it("raises IncompleteReadError at the end of readexactly (R10)",
     function()
    run(function(loop)
      local r = tapio.StreamReader()
      local data = ("0123456789abcdef1\n"):rep(1)
      feed_later(loop, r, { data }, true)
      local err = fails(r.readexactly, r, 2 * #data)
      assert.are.equal("IncompleteReadError", err.name)
      assert.are.equal(data, err.partial)
      assert.are.equal(36, err.expected)
      assert.are.equal("18 bytes read on a total of 36 expected bytes " ..
        "(IncompleteReadError)", tostring(err))
      assert.are.equal(0, r:get_buffer_size())
    end)
  end)

  it("does not cap read(n) or readexactly(n) at the limit (R11)",
     function()
    run(function()
      local r = tapio.StreamReader(3)
      r:feed_data("chunk")
      assert.are.equal("chunk", r:read(5))
      r:feed_data("chunkchunk")
      assert.are.equal("chunkchunk", r:readexactly(10))
    end)
  end)

  it("wakes a waiting read with set_exception, and raises it from then " ..
     "on (R12)", function()
    run(function(loop)
      local r = tapio.StreamReader()
      local reset = tapio.error("ECONNRESET")
      loop:call_soon(function()
        r:set_exception(reset)
      end)
      assert.are.equal(reset, fails(r.readline, r))
      assert.are.equal(reset, r:exception())
      r:feed_data("late")
      assert.are.equal(reset, fails(r.read, r, 4))
      assert.are.equal(reset, fails(r.readexactly, r, 1))
    end)
  end)

  it("hands what comes to a read waiting for up to n bytes as it came, " ..
     "and buffers it for a read cancelled before it ran again",
     testing.run(function(clock)
    local _, wa, rb, wb = testing.open_pair() -- data_received, as a socket's
    local loop = clock.loop
    local t = started(loop, rb.read, rb, 4)
    wa:write("abcd") -- n bytes: the read has them as they came
    assert.are.equal("abcd", t:await())
    assert.are.equal(0, rb:get_buffer_size())
    t = started(loop, rb.read, rb, 4)
    wa:write("abcdef") -- more than n: the read takes 4, 2 are left
    assert.are.equal("abcd", t:await())
    assert.are.equal(2, rb:get_buffer_size())
    assert.are.equal("ef", rb:read(10))
    t = started(loop, rb.readuntil, rb, "\n") -- a wait for a separator:
    wa:write("ab")                             -- buffered, not handed
    clock:run_until_idle()
    assert.is_false(t:done())
    assert.are.equal(2, rb:get_buffer_size())
    wa:write("\n")
    assert.are.equal("ab\n", t:await())
    t = started(loop, rb.read, rb, 4)
    assert.is_true(t:cancel())
    wa:write("xy") -- the cancelled read has nothing: it stays
    wa:write_eof()
    assert.is_true(tapio.is_cancelled(select(2, pcall(t.await, t))))
    assert.are.equal("xy", rb:read())
    wa:close()
    wb:close()
    wa:wait_closed()
    wb:wait_closed()
  end))

  it("reads at once in a task, and returns a task outside one, " ..
     "whichever task read before", function()
    run(function(loop)
      local r = tapio.StreamReader()
      r:feed_data("ab\ncd\nef\ngh\n")
      assert.are.equal("a", r:read(1))
      assert.are.equal("b\n", r:readline())
      local read, line
      loop:call_soon(function()
        read, line = r:read(1), r:readline()
      end)
      tapio.sleep(0)
      assert.is_true(tapio.is_future(read))
      assert.is_true(tapio.is_future(line))
      assert.are.equal("c", read:await())
      assert.are.equal("d\n", line:await())
      local other = loop:create_task(function()
        return r:read(1), r:readline()
      end)
      assert.are.same({ "e", "f\n" }, { other:await() })
      assert.are.equal("gh\n", r:readline())
    end)
  end)

  it("survives set_exception after a cancelled read (R12)", function()
    run(function(loop)
      local r = tapio.StreamReader()
      local t = started(loop, r.read, r, 1)
      t:cancel()
      r:set_exception(tapio.error("EPIPE"))
      local ok, err = pcall(t.await, t)
      assert.is_false(ok)
      assert.is_true(tapio.is_cancelled(err))
      assert.are.equal("EPIPE", fails(r.read, r, 1).name)
    end)
  end)

  it("is left usable by a cancelled read, readline or readexactly",
     function()
    run(function(loop)
      local r = tapio.StreamReader()
      for _, call in ipairs({
        function() return r:read(10) end,
        function() return r:readline() end,
        function() return r:readexactly(5) end,
        function() return r:readuntil("!!") end,
        function() return r:read() end }) do
        r:feed_data("ab")
        local t = loop:create_task(call)
        tapio.sleep(0)
        tapio.sleep(0)
        if not t:done() then -- read(10) had data: it returned at once
          assert.is_true(t:cancel())
          assert.is_true(tapio.is_cancelled(select(2, pcall(t.await, t))))
        end
        -- a cancelled read consumed nothing: the bytes are still there
        local expect = t:cancelled() and "ab" or ""
        r:feed_data("c\n")
        assert.are.equal(expect .. "c\n", r:readline())
      end
    end)
  end)

  it("raises the cancellation's message in a waiting read, and cancels " ..
     "a task that cancelled itself before waiting", function()
    run(function(loop)
      local r = tapio.StreamReader()
      local t = started(loop, r.read, r, 1)
      assert.is_true(t:cancel("enough"))
      assert.is_true(t:cancel("twice")) -- cancelling, not yet done
      local ok, err = pcall(t.await, t)
      assert.is_false(ok)
      assert.are.equal("enough", err.message)
      assert.is_true(t:cancelled())
      local self_cancelled = loop:create_task(function()
        tapio.current_task():cancel()
        return r:read(1) -- cancelled here, where it waits
      end)
      assert.is_true(tapio.is_cancelled(select(2, pcall(self_cancelled.await,
        self_cancelled))))
      r:feed_data("x") -- nobody waits: it stays
      assert.are.equal(1, r:get_buffer_size())
    end)
  end)

  it("cancels a task that cancelled itself after data woke it, where it " ..
     "waits next", function()
    run(function(loop)
      local r = tapio.StreamReader()
      local got = {}
      local t = loop:create_task(function()
        got[1] = r:read(1) -- woken there and then by feed_data
        tapio.current_task():cancel()
        got[2] = r:read(1) -- cancelled here, where it waits
      end)
      tapio.sleep(0) -- t waits in its first read
      loop:call_soon(function() r:feed_data("x") end) -- as data_received
      local ok, err = pcall(t.await, t)
      assert.is_false(ok)
      assert.is_true(tapio.is_cancelled(err))
      assert.are.same({ "x" }, got)
    end, { deadline = 2 })
  end)

  it("searches from the start again when another task read what a " ..
     "waiting readuntil had searched", function()
    run(function(loop)
      local r = tapio.StreamReader()
      r:feed_data("ab") -- one chunk, read whole below
      local t = started(loop, r.readuntil, r, "\n")
      assert.are.equal("ab", r:read(100)) -- while t waits
      r:feed_data("c\n")
      assert.are.equal("c\n", t:await())
      r:feed_data("ab\ncd") -- a line at the head of a chunk
      t = started(loop, r.readuntil, r, "X")
      assert.are.equal("ab\n", r:readline())
      r:feed_data("X")
      assert.are.equal("cdX", t:await())
    end, { deadline = 2 })
  end)

  it("refuses a second waiting task", function()
    run(function(loop)
      local r = tapio.StreamReader()
      local first = started(loop, r.read, r, 5)
      assert.matches("reader:readline: another task is already waiting " ..
        "for data on this reader", fails(r.readline, r))
      r:feed_data("x")
      assert.are.equal("x", first:await())
    end)
  end)

  it("makes its error values with tapio.incomplete_read_error and "
     .. "limit_overrun_error, refusing bad arguments", function()
    local e = tapio.incomplete_read_error("ab", 5)
    assert.are.same({ "IncompleteReadError", tapio.EOF, "ab", 5 },
      { e.name, e.code, e.partial, e.expected })
    assert.are.equal("2 bytes read on a total of 5 expected bytes " ..
      "(IncompleteReadError)", tostring(e))
    assert.are.equal("0 bytes read on a total of undefined expected bytes",
      tapio.incomplete_read_error("").message)
    e = tapio.limit_overrun_error("too long", 7)
    assert.are.same({ "LimitOverrunError", tapio.EMSGSIZE, "too long", 7 },
      { e.name, e.code, e.message, e.consumed })
    assert.matches("reader_spec.lua:%d+: tapio: incomplete_read_error: " ..
      "bad argument #1 'partial' %(string expected, got nil%)",
      fails(function() tapio.incomplete_read_error() end))
    assert.matches("incomplete_read_error: bad argument #2 'expected' " ..
      "%(integer >= 0 or nil expected, got string%)",
      fails(tapio.incomplete_read_error, "ab", "x"))
    assert.matches("reader_spec.lua:%d+: tapio: limit_overrun_error: " ..
      "bad argument #1 'message' %(string expected, got nil%)",
      fails(function() tapio.limit_overrun_error() end))
    assert.matches("limit_overrun_error: bad argument #2 'consumed' " ..
      "%(integer >= 0 expected, got %-1%)",
      fails(tapio.limit_overrun_error, "m", -1))
  end)

  it("refuses a limit of 0 or less, or not an integer (R18)", function()
    assert.matches("StreamReader: bad argument #1 'limit' %(integer > 0 " ..
      "expected, got 0%)", fails(tapio.StreamReader, 0))
    assert.matches("got %-1", fails(tapio.StreamReader, -1))
    assert.matches("got 1.5", fails(tapio.StreamReader, 1.5))
    assert.matches("got string", fails(tapio.StreamReader, "10"))
    -- past 2^53 a float no longer holds every integer: no such limit
    assert.matches("'limit' %(integer > 0 expected, got inf%)",
      fails(tapio.StreamReader, math.huge))
    assert.matches("integer > 0 expected", fails(tapio.StreamReader, 2 ^ 53))
    assert.are.equal(2 ^ 53 - 1, tapio.StreamReader(2 ^ 53 - 1)._limit)
    assert.are.equal(65536, tapio.StreamReader()._limit)
    assert.are.equal(4096, tapio.StreamReader(2 ^ 12)._limit)
  end)

  it("checks its arguments and self, also outside a task", function()
    local r = tapio.StreamReader()
    assert.matches("reader:read: bad argument #1 'n' %(integer expected, " ..
      "got string%)", fails(r.read, r, "5"))
    assert.matches("reader:read: bad argument #1 'n' %(integer expected, " ..
      "got 1.5%)", fails(r.read, r, 1.5))
    assert.matches("reader:readexactly: bad argument #1 'n'",
      fails(r.readexactly, r))
    assert.matches("reader:read: bad self %(tapio.StreamReader expected, " ..
      "got number%)", fails(r.read, 5))
    assert.matches("reader:readline: bad self", fails(r.readline, {}))
    for _, name in ipairs({ "feed_eof", "set_exception", "exception",
                            "at_eof", "get_buffer_size", "feed_data",
                            "readexactly", "readuntil", "lines" }) do
      assert.matches("reader_spec.lua:%d+: tapio: reader:" .. name ..
        ": bad self %(tapio.StreamReader expected, got table%)",
        fails(function() r[name]({}, {}) end))
    end
    assert.matches("reader:feed_eof: bad self %(tapio.StreamReader " ..
      "expected, got nil%)", fails(r.feed_eof))
    assert.matches("reader_spec.lua:%d+: tapio: reader:feed_data: bad " ..
      "argument #1 'data' %(string expected, got nil%)",
      fails(function() r:feed_data() end))
    assert.matches("reader_spec.lua:%d+: tapio: reader:read: bad argument",
      fails(function() r:read({}) end))
    r:feed_eof()
    assert.matches("feed_data after feed_eof", fails(r.feed_data, r, "x"))
    assert.matches("set_exception: bad argument #1",
      fails(r.set_exception, r, nil))
    -- no task and no running loop: nothing to wait on
    assert.matches("reader:read: not in a task, and no loop",
      fails(r.read, r, 1))
  end)

  it("follows the async rule: a future outside a task", function()
    local r = tapio.StreamReader()
    assert.are.equal("abc", helper.in_callback(function(_, finish)
      local fut = r:readexactly(3)
      assert.is_true(tapio.is_future(fut))
      fut:add_done_callback(function(f)
        finish(f:result())
      end)
      r:feed_data("ab")
      r:feed_data("cd")
    end))
  end)

  it("prints what it holds", function()
    local r = tapio.StreamReader(100)
    r:feed_data("abc")
    assert.are.equal("tapio.StreamReader (3 bytes, limit=100)", tostring(r))
    r:feed_eof()
    assert.are.equal("tapio.StreamReader (3 bytes, eof, limit=100)",
      tostring(r))
  end)

  it("reads 64 MiB to the end in 64 KiB chunks in linear time", function()
    run(function(loop)
      local r = tapio.StreamReader()
      local chunk = ("0123456789abcdef"):rep(4096)
      local n = 1024
      local clock = os.clock()
      loop:create_task(function()
        for i = 1, n do
          r:feed_data(chunk)
          if i % 64 == 0 then
            tapio.sleep(0) -- the reader wakes only at the end
          end
        end
        r:feed_eof()
      end)
      local data = r:read()
      local cpu = os.clock() - clock
      assert.are.equal(n * #chunk, #data)
      assert.are.equal(chunk, data:sub(-#chunk))
      -- joined once: about 0.1 s; a join per chunk copies 32 GiB
      assert.is_true(cpu < 3, ("took %.2f s of CPU"):format(cpu))
    end, { deadline = 30 })
  end)

  it("reads 100-byte lines out of 64 KiB chunks in linear time", function()
    run(function(loop)
      local r = tapio.StreamReader()
      local line = ("x"):rep(99) .. "\n"
      local chunk = line:rep(655) .. ("y"):rep(36) -- lines span chunks
      local n = 256
      loop:create_task(function()
        for _ = 1, n do
          r:feed_data(chunk)
        end
        r:feed_eof()
      end)
      local clock, count, bytes = os.clock(), 0, 0
      while true do
        local l = r:readline()
        if l == "" then
          break
        end
        count, bytes = count + 1, bytes + #l
      end
      local cpu = os.clock() - clock
      assert.are.equal(n * #chunk, bytes)
      assert.is_true(count >= n * 655)
      assert.is_true(cpu < 3, ("took %.2f s of CPU"):format(cpu))
    end, { deadline = 30 })
  end)
end)
