-- tapio.testing with streams: testing.open_pair, and the proof that the
-- kit tests tapio's own streams: the reader's whole readuntil error
-- matrix (every split position of every case, every ending), against a
-- model of the reference's algorithm, in moments.
local helper = require "spec.helper"
local tapio = helper.tapio
local testing = require "tapio.testing"

describe("testing.open_pair", function()
  it("joins two reader/writer pairs through memory",
     testing.run(function(clock)
    local ra, wa, rb, wb = testing.open_pair({ chunk = 1 })
    wa:write("hello\nworld")
    wa:drain()
    assert.equal("hello\n", rb:readline())
    wb:write("back")
    wb:write_eof()
    assert.equal("back", ra:read())
    assert.equal("", ra:read())
    assert.is_true(ra:at_eof())
    wa:close()
    assert.equal("world", rb:read(-1))
    wb:close()
    wa:wait_closed()
    wb:wait_closed()
    assert.equal(0, testing.transport_count(clock.loop))
  end))

  it("carries backpressure: drain waits while the peer does not read",
     testing.run(function(clock)
    local _, wa, rb, wb = testing.open_pair({ capacity = 100, limit = 16 })
    wa.transport:set_write_buffer_limits(1000)
    local drained = false
    local writer = tapio.create_task(function()
      wa:write(("x"):rep(5000))
      wa:drain()
      drained = true
    end)
    clock:run_until_idle()
    assert.is_false(drained) -- rb's buffer is over its limit: paused
    assert.equal(("x"):rep(5000), rb:readexactly(5000))
    writer:result()
    assert.is_true(drained)
    wa:close()
    wb:close()
  end, { autojump = true }))

  it("pauses reading once the reader holds more than twice its limit, "
     .. "and reads again once a read leaves the limit",
     testing.run(function(clock)
    -- asyncio's edges: len(buffer) > 2 * limit pauses, <= limit resumes
    local _, wa, rb, wb = testing.open_pair({ limit = 16 })
    wa:write(("x"):rep(32))
    clock:run_until_idle()
    assert.equal(32, rb:get_buffer_size())
    assert.is_true(wb.transport:is_reading()) -- twice the limit: not over
    wa:write("y")
    clock:run_until_idle()
    assert.equal(33, rb:get_buffer_size())
    assert.is_false(wb.transport:is_reading())
    assert.equal(("x"):rep(16), rb:read(16))
    assert.is_false(wb.transport:is_reading()) -- 17 left: over the limit
    assert.equal("x", rb:read(1))
    assert.is_true(wb.transport:is_reading()) -- 16 left: the limit
    wa:close()
    wb:close()
  end))

  it("raises from drain after close once the buffer it waited on is sent",
     testing.run(function()
    local _, wa, rb, wb = testing.open_pair({ capacity = 100 })
    wa.transport:set_write_buffer_limits(1000)
    wa:drain() -- this task drains wa: drain's usual case from now on
    wa:write(("x"):rep(5000)) -- paused for writing
    wa:close()
    -- the peer reads it all: the buffer goes out while closing
    assert.equal(("x"):rep(5000), rb:readexactly(5000))
    local ok, err = pcall(wa.drain, wa)
    assert.is_false(ok)
    assert.equal("ECONNRESET", err.name)
    wb:close()
  end))

  it("takes faults through the writer's transport",
     testing.run(function()
    local _, wa, rb, wb = testing.open_pair()
    testing.fault(wb.transport, { reset_after = 3 })
    wa:write("abcdef")
    assert.equal("abc", rb:read(3))
    local ok, err = pcall(rb.read, rb, 10)
    assert.is_false(ok)
    assert.equal("ECONNRESET", err.name)
    local ok2, err2 = pcall(wa.wait_closed, wa)
    assert.is_false(ok2)
    assert.equal("ECONNRESET", err2.name)
  end))

  it("follows the async rule and checks its options", function()
    local loop = testing.new_loop()
    local task = testing.open_pair({ loop = loop })
    assert.is_true(tapio.is_future(task))
    local ra, wa, rb, wb = loop:run_until_complete(task)
    assert.is_truthy(ra and wa and rb and wb)
    wa:close()
    wb:close()
    testing.clock(loop):run_until_idle()
    assert.has_error(function() testing.open_pair({ loop = loop, chunk = 0 })
      end, "tapio: testing.open_pair: bad argument #1 'opts' (chunk: a "
      .. "size >= 1 or {min, max} expected)")
    assert.has_error(function() testing.open_pair(5) end,
      "tapio: testing.open_pair: bad argument #1 'opts' (table or nil "
      .. "expected, got number)")
    loop:close()
  end)
end)

describe("streams on a virtual-clock loop", function()
  it("refuse real I/O, named after the streams function", function()
    local loop = testing.new_loop()
    local task = loop:create_task(function()
      local ok, err = pcall(tapio.create_subprocess_exec, "true")
      return ok, err
    end)
    local ok, err = loop:run_until_complete(task)
    assert.is_false(ok)
    assert.matches("^tapio: create_subprocess_exec: no fake program 'true' "
      .. "on this virtual loop", err)
    loop:close()
  end)
end)

-- The reference's readuntil (asyncio's StreamReader.readuntil), chunk by
-- chunk: what a read started before the first byte returns, or the error
-- it raises, once `ending` ("eof", "reset", or "open") follows the bytes.
local function model(chunks, sep, limit, ending)
  local buf, offset = "", 0
  for i = 0, #chunks do
    if i > 0 then
      buf = buf .. chunks[i]
    end
    if #buf - offset >= #sep then
      local s = buf:find(sep, offset + 1, true)
      if s then
        local isep = s - 1
        if isep > limit then
          return "LimitOverrunError:found:" .. isep
        end
        return "ok:" .. buf:sub(1, isep + #sep)
      end
      offset = #buf + 1 - #sep
      if offset > limit then
        return "LimitOverrunError:not found:" .. offset
      end
    end
  end
  if ending == "eof" then
    return "IncompleteReadError:" .. buf
  elseif ending == "reset" then
    return "ECONNRESET"
  end
  return "waiting"
end

-- The same read through a memory pair: the bytes cut at `cuts`, then
-- the ending.
local function through_kit(data, cuts, sep, limit, ending)
  local outcome
  testing.run(function(clock)
    local _, wa, rb, wb = testing.open_pair({ limit = limit,
                                              a = { splits = cuts } })
    if ending == "reset" then
      testing.fault(wb.transport, { reset_after = #data })
    end
    local read = tapio.create_task(function()
      local ok, res = pcall(rb.readuntil, rb, sep)
      if ok then
        return "ok:" .. res
      elseif res.name == "LimitOverrunError" then
        return ("LimitOverrunError:%s:%d"):format(
          res.message:match("not found") and "not found" or "found",
          res.consumed)
      elseif res.name == "IncompleteReadError" then
        assert.is_nil(res.expected)
        return "IncompleteReadError:" .. res.partial
      end
      return res.name
    end)
    wa:write(data)
    if ending == "eof" then
      wa:write_eof()
    end
    clock:run_until_idle()
    outcome = read:done() and read:result() or "waiting"
    if not read:done() then
      read:cancel()
    end
    wa.transport:abort()
    wb.transport:abort()
    clock:run_until_idle()
  end, { tasks_ok = true })()
  return outcome
end

local function chunks_of(data, cuts)
  local out, from = {}, 1
  for _, c in ipairs(cuts) do
    out[#out + 1] = data:sub(from, c)
    from = c + 1
  end
  out[#out + 1] = data:sub(from)
  return out
end

describe("the streams reader's readuntil error matrix on the kit", function()
  it("matches the reference at every cut position, in moments",
     function()
    local cases = {
      -- data, separator, limit: found, found past the limit, not found
      -- within it, the separator cut in two, an end before it
      { "abc\r\ndef", "\r\n", 64 },
      { "abcdefgh\r\n", "\r\n", 4 },
      { "abcdefgh\r\n", "\r\n", 7 },
      { "abcdefgh\r\n", "\r\n", 8 },
      { "ab\r", "\r\n", 64 },
      { "abcdef", "\r\n", 3 },
      { "x==y==z", "==", 2 },
      { "hello", "\n", 64 },
    }
    local t0, runs, seen, expected = os.clock(), 0, {}, 0
    for _, case in ipairs(cases) do
      local n = #case[1] - 1
      expected = expected + 3 * (1 + n + n * (n - 1) / 2)
    end
    for _, case in ipairs(cases) do
      local data, sep, limit = case[1], case[2], case[3]
      local splits = { {} } -- uncut, cut once anywhere, cut twice
      for i = 1, #data - 1 do
        splits[#splits + 1] = { i }
        for j = i + 1, #data - 1 do
          splits[#splits + 1] = { i, j }
        end
      end
      for _, cuts in ipairs(splits) do
        for _, ending in ipairs({ "eof", "reset", "open" }) do
          local want = model(chunks_of(data, cuts), sep, limit, ending)
          local got = through_kit(data, cuts, sep, limit, ending)
          assert.equal(want, got, ("%q sep %q limit %d cut at %s, %s")
            :format(data, sep, limit, table.concat(cuts, ","), ending))
          seen[want:match("^[^:]+")] = true
          runs = runs + 1
        end
      end
    end
    -- every outcome of the matrix was reached
    assert.same({ ok = true, LimitOverrunError = true,
                  IncompleteReadError = true, ECONNRESET = true,
                  waiting = true }, seen)
    assert.equal(expected, runs)
    -- about 0.3 s of CPU, 1 s in the ASan host: a guard against a blow-up
    assert.is_true(os.clock() - t0 < 5, "took " .. (os.clock() - t0))
  end)
end)
