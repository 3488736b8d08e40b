-- Blocking work off the loop: tapio.to_thread and loop:run_in_executor.
-- fn runs on a pool thread in a Lua state of its own; what crosses is
-- copied; the loop goes on meanwhile. Jobs that must stay running wait
-- on a real pipe (opened through /proc/self/fd) that the loop writes to.
local helper = require "spec.helper"
local tapio = helper.tapio

local is54 = _VERSION == "Lua 5.4"

-- A write pipe transport of the loop and the path a job opens to read
-- what it writes: the job blocks until the loop writes, or closes it.
local function job_pipe(loop)
  local r, w = tapio.pipe()
  local transport = loop:connect_write_pipe(function() return {} end, w)
  return "/proc/self/fd/" .. r, transport, function()
    transport:close()
    tapio.close_fd(r)
  end
end

-- A read pipe of the loop and the path a job opens to write to it: the
-- future is done once the job has written there (the job has started).
local function started_pipe(loop)
  local r, w = tapio.pipe()
  local fut = loop:create_future()
  loop:connect_read_pipe(function()
    return { data_received = function()
      if not fut:done() then
        fut:set_result()
      end
    end }
  end, r)
  return "/proc/self/fd/" .. w, fut, function() tapio.close_fd(w) end
end

-- fn for a job: tells started (a path, or nil) it runs, reads n bytes
-- from path (nil at its end), then writes marker to the file at mark
-- (if given).
local function read_from(path, n, started, mark, marker)
  if started then
    local s = assert(io.open(started, "wb"))
    s:write("s")
    s:close()
  end
  local f = assert(io.open(path, "rb"))
  f:setvbuf("no") -- n bytes from the pipe, no more: other jobs read it too
  local got = f:read(n)
  f:close()
  if mark then
    local m = assert(io.open(mark, "wb"))
    m:write(marker)
    m:close()
  end
  return got
end

local function file_text(path)
  local f = io.open(path, "rb")
  if not f then
    return nil
  end
  local text = f:read("a")
  f:close()
  return text
end

describe("tapio.to_thread", function()
  it("returns fn's results, copied, types and all", function()
    helper.run(function()
      local n, a, b, c, d, e, f, g = tapio.to_thread(function(...)
        return select("#", ...), ...
      end, nil, true, false, 42, 1.5, "a\0\255b", nil)
      assert.are.equal(7, n) -- trailing nils count
      assert.is_nil(a)
      assert.is_true(b)
      assert.is_false(c)
      assert.are.equal(42, d)
      assert.are.equal(1.5, e)
      assert.are.equal("a\0\255b", f)
      assert.is_nil(g)
      local r = { tapio.to_thread(function(x) return x, nil, nil end, 1) }
      assert.are.same({ 1 }, r)
      assert.are.equal(3, select("#", tapio.to_thread(function()
        return 1, nil, nil
      end)))
    end)
  end)

  it("keeps integers integers (Lua 5.4) and floats floats", function()
    helper.run(function()
      local i, fl, big, huge, neg = tapio.to_thread(function(...)
        return ...
      end, 7, 7.0, 2 ^ 53, math.huge, -0.5)
      if is54 then
        assert.are.equal("integer", math.type(i))
        assert.are.equal("float", math.type(fl))
        local mx = tapio.to_thread(function(x) return x end, math.maxinteger)
        assert.are.equal(math.maxinteger, mx)
        assert.are.equal("integer", tapio.to_thread(function(x)
          return math.type(x)
        end, 3))
      end
      assert.are.equal(7, i)
      assert.are.equal(7, fl)
      assert.are.equal(2 ^ 53, big)
      assert.are.equal(math.huge, huge)
      assert.are.equal(-0.5, neg)
      local nan = tapio.to_thread(function() return 0 / 0 end)
      assert.is_true(nan ~= nan)
    end)
  end)

  it("copies nested tables both ways, keys of every kind", function()
    helper.run(function()
      local shared = { "s" }
      local t = { 1, 2, { x = { y = { z = "deep" } } }, [true] = "yes",
                  [2.5] = "float", a = shared, b = shared,
                  [{ "k" }] = "table key" }
      local back, seen = tapio.to_thread(function(v)
        local keys = {}
        for k in pairs(v) do
          keys[#keys + 1] = type(k)
        end
        table.sort(keys)
        v.added = "in the thread"
        return v, table.concat(keys, ",")
      end, t)
      assert.are_not.equal(t, back) -- a copy
      assert.is_nil(t.added)
      assert.are.equal("in the thread", back.added)
      assert.are.equal("deep", back[3].x.y.z)
      assert.are.equal("yes", back[true])
      assert.are.equal("float", back[2.5])
      assert.are.same({ "s" }, back.a)
      assert.are.same({ "s" }, back.b) -- shared, not a cycle: copied twice
      for k, v in pairs(back) do
        if type(k) == "table" then
          assert.are.same({ "k" }, k)
          assert.are.equal("table key", v)
        end
      end
      assert.are.equal("boolean,number,number,number,number,string,"
        .. "string,table", seen)
      -- no metatable crosses
      local plain = tapio.to_thread(function(v)
        return getmetatable(v) == nil
      end, setmetatable({}, { __index = function() return 1 end }))
      assert.is_true(plain)
    end)
  end)

  it("raises fn's error in the task, with fn's message", function()
    helper.run(function()
      local ok, err = pcall(tapio.to_thread, function()
        error("boom")
      end)
      assert.is_false(ok)
      assert.matches("to_thread_spec.lua:%d+: boom$", err)
      ok, err = pcall(tapio.to_thread, function()
        error({ code = 7, message = "a table" })
      end)
      assert.is_false(ok)
      assert.are.same({ code = 7, message = "a table" }, err)
      ok, err = pcall(tapio.to_thread, function() error(nil) end)
      assert.is_false(ok)
      assert.are.equal("nil", err)
      ok, err = pcall(tapio.to_thread, function() error(print) end)
      assert.is_false(ok)
      assert.matches("^function", err) -- its tostring
      ok, err = pcall(tapio.to_thread, function()
        return 1, io.stdout
      end)
      assert.is_false(ok)
      assert.matches("tapio.to_thread: result #2 is a userdata", err)
      if is54 then -- LuaJIT's unpack gives 8000 at most
        ok, err = pcall(tapio.to_thread, function(n)
          local t = {}
          for i = 1, n do
            t[i] = i
          end
          return table.unpack(t)
        end, 10001)
        assert.is_false(ok)
        assert.matches("fn returned 10001 results: at most 10000 come "
          .. "back", err)
      end
      -- the pool goes on
      assert.are.equal(2, tapio.to_thread(function() return 2 end))
    end)
  end)

  it("refuses fn with upvalues, naming the upvalue", function()
    helper.run(function()
      local factor = 3
      local err = helper.fails(tapio.to_thread, function(x)
        return x * factor
      end, 2)
      assert.matches("tapio.to_thread: bad argument #1 'fn' %(it uses "
        .. "upvalue 'factor'", err)
      err = helper.fails(tapio.to_thread, print)
      assert.matches("a C function cannot be copied", err)
      err = helper.fails(tapio.to_thread, "print")
      assert.matches("bad argument #1 'fn' %(function expected, got "
        .. "string%)", err)
      -- globals are the thread's own: _ENV is no upvalue to refuse
      assert.are.equal("table", tapio.to_thread(function()
        return type(string)
      end))
    end)
  end)

  it("refuses arguments that cannot be copied, naming their position",
    function()
      helper.run(function()
        local id = function(...) return ... end
        local err = helper.fails(tapio.to_thread, id, 1, print)
        assert.matches("tapio.to_thread: fn's argument #2 is a function", err)
        err = helper.fails(tapio.to_thread, id, io.stdout)
        assert.matches("fn's argument #1 is a userdata", err)
        err = helper.fails(tapio.to_thread, id, 1, 2, coroutine.create(id))
        assert.matches("fn's argument #3 is a thread", err)
        err = helper.fails(tapio.to_thread, id, { { f = print } })
        assert.matches("fn's argument #1 holds a function", err)
        local cycle = { 1 }
        cycle[2] = { cycle }
        err = helper.fails(tapio.to_thread, id, "x", cycle)
        assert.matches("fn's argument #2 holds a table that contains "
          .. "itself %(a cycle%)", err)
        local deep = {}
        for _ = 1, 200 do
          deep = { deep }
        end
        err = helper.fails(tapio.to_thread, id, deep)
        assert.matches("nests tables more than 100 deep", err)
      end)
    end)

  it("raises an argument's error at the line that called it", function()
    local function line_of(fn)
      local ok, err = pcall(fn)
      assert.is_false(ok)
      return tonumber(tostring(err):match("^[^:]*to_thread_spec%.lua:(%d+): "
        .. "tapio: "))
    end
    helper.run(function(loop)
      local here = debug.getinfo(1, "l").currentline
      local got = line_of(function()
        local r = tapio.to_thread(function() end, print) -- here + 2
        return r
      end)
      assert.are.equal(here + 2, got)
      got = line_of(function()
        local r = tapio.to_thread(print) -- here + 7
        return r
      end)
      assert.are.equal(here + 7, got)
      got = line_of(function()
        local r = loop:run_in_executor(nil, function() end, { print })
        return r -- the line above: here + 12
      end)
      assert.are.equal(here + 12, got)
      -- outside a task: the future's method raises there too
      local fut = loop:create_future()
      loop:call_soon(function()
        fut:set_result(line_of(function()
          local r = loop:run_in_executor(nil, 42) -- here + 20
          return r
        end))
      end)
      assert.are.equal(here + 20, fut:await())
    end)
  end)

  it("raises where no loop runs", function()
    local err = helper.fails(tapio.to_thread, function() end)
    assert.matches("tapio: to_thread: no running event loop", err)
  end)
end)

describe("loop:run_in_executor", function()
  it("takes nil for the executor, and the async rule", function()
    helper.run(function(loop)
      assert.are.equal(5, loop:run_in_executor(nil, function(a, b)
        return a + b
      end, 2, 3))
      local err = helper.fails(loop.run_in_executor, loop, {}, function() end)
      assert.matches("bad argument #1 'executor' %(nil expected", err)
      err = helper.fails(loop.run_in_executor, loop, nil, 42)
      assert.matches("loop:run_in_executor: bad argument #2 'fn'", err)
      -- outside a task: a future
      local fut
      loop:call_soon(function()
        fut = loop:run_in_executor(nil, function() return "later", 2 end)
      end)
      tapio.sleep(0)
      assert.is_true(tapio.is_future(fut))
      local a, b = fut:await()
      assert.are.equal("later", a)
      assert.are.equal(2, b)
    end)
  end)

  it("raises on a closed loop and on a virtual one", function()
    local loop = tapio.new_loop()
    loop:close()
    local err = helper.fails(loop.run_in_executor, loop, nil, function() end)
    assert.matches("the loop is closed", err)
    local testing = require "tapio.testing"
    testing.run(function()
      err = helper.fails(tapio.to_thread, function() end)
      assert.matches("a virtual%-clock loop %(tapio.testing's%) runs no "
        .. "threads", err)
    end)
  end)
end)

describe("the worker pool", function()
  it("keeps the loop running timers while a job blocks", function()
    helper.run(function(loop)
      local path, transport, close = job_pipe(loop)
      local ticks = 0
      local function tick()
        ticks = ticks + 1
        if ticks == 5 then
          transport:write("x") -- lets the job go
        else
          loop:call_later(0.005, tick)
        end
      end
      loop:call_later(0.005, tick)
      assert.are.equal("x", tapio.to_thread(read_from, path, 1))
      assert.are.equal(5, ticks)
      close()
    end)
  end)

  it("resumes the task after the timers due when the job's end is seen, "
     .. "as asyncio's (lua/README: a ticker made before the job)", function()
    helper.run(function(loop)
      local mark = os.tmpname()
      os.remove(mark)
      local ticks = 0
      local waiter = loop:create_task(function()
        loop:call_later(0, function() ticks = ticks + 1 end)
        tapio.to_thread(read_from, "/dev/null", 1, nil, mark, "m")
        return ticks
      end)
      loop:create_task(function() -- holds the loop until the job has ended
        while not file_text(mark) do end
        local t = os.clock() -- and its end has reached the loop's wakeup
        while os.clock() - t < 0.005 do end
      end)
      assert.are.equal(1, waiter:await())
      os.remove(mark)
    end)
  end)

  it("runs 100 different functions twice each, each its own", function()
    -- more than a thread's state keeps loaded (64): it starts again
    helper.run(function(loop)
      loop:set_threadpool_size(1)
      local fns = {}
      for i = 1, 100 do
        fns[i] = assert(load("return function(x) return x * " .. i
          .. " end"))()
      end
      for round = 1, 2 do
        for i = 1, 100 do
          assert.are.equal(i * round, tapio.to_thread(fns[i], round))
        end
      end
    end)
  end)

  it("runs more jobs than it has threads, each once", function()
    helper.run(function(loop)
      local jobs = {}
      for i = 1, 40 do
        jobs[i] = function()
          return tapio.to_thread(function(n)
            local s = 0
            for k = 1, n do
              s = s + k
            end
            return s, n
          end, i * 1000)
        end
      end
      local results = tapio.gather(jobs)
      for i = 1, 40 do
        local n = i * 1000
        assert.are.equal(n * (n + 1) / 2, results[i])
      end
      -- four blocked jobs fill the default pool; a fifth waits its turn
      local path, transport, close = job_pipe(loop)
      local blocked = {}
      for i = 1, 4 do
        blocked[i] = loop:create_task(tapio.to_thread, read_from, path, 1)
      end
      tapio.sleep(0) -- the tasks have queued their jobs
      local fifth = loop:create_task(tapio.to_thread, function()
        return "fifth"
      end)
      tapio.sleep(0.05)
      assert.is_false(fifth:done())
      transport:write("abcd")
      assert.are.equal("fifth", fifth:await())
      local got = {}
      for i = 1, 4 do
        got[i] = blocked[i]:await()
      end
      table.sort(got)
      assert.are.equal("abcd", table.concat(got))
      close()
    end)
  end)

  it("keeps nothing of a finished job's call, and reuses its object",
    function()
      helper.run(function(loop)
        local weak = setmetatable({}, { __mode = "k" })
        local function four() -- its registers go with its frame
          local ts = {}
          for i = 1, 4 do -- four jobs in flight: four job objects
            ts[i] = loop:create_task(tapio.to_thread, function(s)
              return #s
            end, string.rep("x", 100))
            weak[ts[i]] = true
          end
          for i = 1, 4 do
            assert.are.equal(100, ts[i]:await())
          end
        end
        four()
        assert.are.equal(0, loop:_debug().jobs)
        collectgarbage()
        collectgarbage()
        local left = 0
        for _ in pairs(weak) do
          left = left + 1
        end
        -- the job objects do not hold the tasks (the task machinery may
        -- keep the last one it ran)
        assert.is_true(left <= 1)
      end)
    end)

  it("drops a cancelled job that has not started", function()
    helper.run(function(loop)
      loop:set_threadpool_size(1)
      local mark = os.tmpname()
      os.remove(mark)
      local path, transport, close = job_pipe(loop)
      local spath, started, sclose = started_pipe(loop)
      local refs = loop:_debug().refs
      local first = loop:create_task(tapio.to_thread, read_from, path, 1,
        spath)
      local second = loop:create_task(tapio.to_thread, read_from, path, 1,
        nil, mark, "ran")
      started:await() -- the first runs: the second waits in the queue
      local queued = loop:_debug().jobs -- the jobs in flight
      assert.are.equal(2, queued)
      assert.is_true(second:cancel())
      -- dropped at the cancel, before the first's end frees the thread
      assert.are.equal(1, loop:_debug().jobs)
      transport:write("ab")
      assert.are.equal("a", first:await())
      -- one thread: a job queued after the second starts after it would have
      assert.are.equal("b", tapio.to_thread(read_from, path, 1))
      assert.is_nil(file_text(mark))
      assert.is_true(second:cancelled())
      assert.are.equal(refs, loop:_debug().refs)
      close()
      sclose()
      local err = helper.fails(loop.set_threadpool_size, loop, 2)
      assert.matches("the loop's pool has had jobs already", err)
    end)
  end)

  it("lets a cancelled running job finish and drops its results", function()
    helper.run(function(loop)
      loop:set_threadpool_size(1)
      local mark = os.tmpname()
      local path, transport, close = job_pipe(loop)
      local spath, started, sclose = started_pipe(loop)
      local refs = loop:_debug().refs
      local task = loop:create_task(tapio.to_thread, read_from, path, 1,
        spath, mark, "finished")
      started:await()
      task:cancel()
      local ok, err = pcall(task.await, task)
      assert.is_false(ok)
      assert.is_true(tapio.is_cancelled(err))
      assert.are_not.equal("finished", file_text(mark))
      transport:write("x")
      -- one thread: the next job runs once the cancelled one has ended
      assert.are.equal("after", tapio.to_thread(function() return "after" end))
      assert.are.equal("finished", file_text(mark))
      tapio.sleep(0)
      assert.are.equal(refs, loop:_debug().refs)
      os.remove(mark)
      close()
      sclose()
    end)
  end)

  it("lets tapio.run end with a job running: the loop waits for it", function()
    local mark = os.tmpname()
    local out = helper.run_script(([[
      local tapio = require "tapio"
      local mark = %q
      tapio.run(function()
        local loop = tapio.get_running_loop()
        local r, w = tapio.pipe()
        loop:connect_write_pipe(function() return {} end, w)
        local r2, w2 = tapio.pipe()
        local started = loop:create_future()
        loop:connect_read_pipe(function()
          return { data_received = function() started:set_result() end }
        end, r2)
        loop:create_task(function()
          local ok, err = pcall(tapio.to_thread, function(path, s, m)
            local f = assert(io.open(s, "wb"))
            f:write("s")
            f:close()
            f = assert(io.open(path, "rb"))
            local got = f:read(1) -- nil once run closes the pipe
            f:close()
            f = assert(io.open(m, "wb"))
            f:write("ended with " .. tostring(got))
            f:close()
          end, "/proc/self/fd/" .. r, "/proc/self/fd/" .. w2, mark)
          print("the task:", ok, tapio.is_cancelled(err))
        end)
        started:await()
        tapio.close_fd(w2)
      end)
      print(io.open(mark, "rb"):read("a"))
    ]]):format(mark))
    os.remove(mark)
    -- run cancelled the task, closed the pipe, waited for the job
    assert.matches("^the task:\tfalse\ttrue\n", out)
    assert.matches("\nended with nil\n$", out)
  end)
end)
