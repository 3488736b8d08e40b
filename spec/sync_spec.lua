-- tapio.Event, Lock, Semaphore, BoundedSemaphore, Condition and Barrier,
-- on the testing kit's virtual clock: the order tasks get their turn in,
-- and what a cancelled waiter passes on (the queues: queue_spec.lua).
local helper = require "spec.helper"
local tapio = helper.tapio
local testing = require "tapio.testing"

local jump = { autojump = true }

local raised = helper.fails -- the error a call raised (it must raise)

-- Runs the tasks made so far until nothing is left to run now.
local function settle()
  tapio.sleep(0)
  tapio.sleep(0)
end

describe("tapio.Event", function()
  it("wakes every task waiting when set, and none after clear",
     testing.run(function(clock, loop)
    local ev = tapio.Event()
    local woken = {}
    for i = 1, 3 do
      loop:create_task(function()
        assert.is_true(ev:wait())
        woken[#woken + 1] = ("%d at %g"):format(i, clock:time())
      end)
    end
    loop:call_later(2, function() ev:set() end)
    tapio.sleep(3)
    assert.are.same({ "1 at 2", "2 at 2", "3 at 2" }, woken)
    assert.is_true(ev:is_set())
    assert.is_true(ev:wait()) -- set: at once
    ev:clear()
    assert.is_false(ev:is_set())
    local late = loop:create_task(ev.wait, ev)
    settle()
    assert.is_false(late:done())
    ev:set()
    assert.is_true(late:await())
  end, jump))

  it("forgets a cancelled waiter; outside a task wait is a future",
     testing.run(function(_, loop)
    local ev = tapio.Event()
    local gone = loop:create_task(ev.wait, ev)
    settle()
    gone:cancel()
    assert.is_true(tapio.is_cancelled(raised(gone.await, gone)))
    assert.are.equal(0, ev._waiters.tail - ev._waiters.head + 1)
    local fut
    loop:call_soon(function() fut = ev:wait() end)
    settle()
    assert.is_true(tapio.is_future(fut))
    ev:set()
    assert.is_true(fut:await())
  end))
end)

describe("tapio.Lock", function()
  it("is held by one task at a time, in the order they came",
     testing.run(function(_, loop)
    local lock, log = tapio.Lock(), {}
    local tasks = {}
    for i = 1, 3 do
      tasks[i] = loop:create_task(function()
        lock:with(function()
          log[#log + 1] = "in " .. i
          tapio.sleep(1)
          log[#log + 1] = "out " .. i
        end)
      end)
    end
    tapio.gather(tasks)
    assert.are.same({ "in 1", "out 1", "in 2", "out 2", "in 3", "out 3" },
      log)
    assert.is_false(lock:locked())
    -- acquire returns true, at once and after a wait (asyncio's True)
    assert.is_true(lock:acquire())
    local waited = loop:create_task(function() return lock:acquire() end)
    settle()
    lock:release()
    assert.is_true(waited:await())
    lock:release()
  end, jump))

  it("lets no newcomer take it from the task it woke", testing.run(
     function(_, loop)
    local lock, log = tapio.Lock(), {}
    lock:acquire()
    local b = loop:create_task(function()
      lock:acquire()
      log[#log + 1] = "b"
      lock:release()
    end)
    settle()
    lock:release() -- b is woken, has not run yet
    assert.is_false(lock:locked())
    lock:acquire() -- this task asks again at once: after b
    log[#log + 1] = "a again"
    lock:release()
    b:await()
    assert.are.same({ "b", "a again" }, log)
  end))

  it("passes the turn on when the task it woke is cancelled before it " ..
     "ran", testing.run(function(_, loop)
    local lock = tapio.Lock()
    lock:acquire()
    local b = loop:create_task(lock.acquire, lock)
    local c = loop:create_task(function()
      lock:acquire()
      return "c has it"
    end)
    settle()
    lock:release() -- wakes b
    b:cancel()     -- before it runs
    assert.is_true(tapio.is_cancelled(raised(b.await, b)))
    assert.are.equal("c has it", c:await())
    assert.is_true(lock:locked())
    lock:release()
  end))

  it("wakes one at a time: a waiter cancelled behind the one woken " ..
     "wakes nobody", testing.run(function(_, loop)
    local lock, holders, most = tapio.Lock(), 0, 0
    local function holder()
      lock:with(function()
        holders = holders + 1
        most = math.max(most, holders)
        settle()
        holders = holders - 1
      end)
    end
    lock:acquire()
    local b = loop:create_task(holder)
    local c = loop:create_task(holder)
    local d = loop:create_task(holder)
    settle()
    c:cancel()     -- behind b: it runs first, the lock free, b woken
    lock:release() -- wakes b
    raised(c.await, c)
    b:await()
    d:await()
    assert.are.equal(1, most)
    assert.is_false(lock:locked())
  end))

  it("is released by with when fn raises; release unheld raises",
     testing.run(function()
    local lock = tapio.Lock()
    assert.are.equal("inside", raised(lock.with, lock, function()
      error("inside", 0)
    end))
    assert.is_false(lock:locked())
    assert.matches("sync_spec.lua:%d+: tapio: lock:release: the lock is " ..
      "not acquired", raised(function() lock:release() end))
    assert.matches("sync_spec.lua:%d+: tapio: lock:with: bad argument #1 " ..
      "'fn'", raised(function() lock:with(5) end))
    assert.matches("bad self", raised(lock.acquire, {}))
  end))
end)

describe("tapio.Semaphore", function()
  it("lets value tasks in at once, the rest in the order they came",
     testing.run(function(clock, loop)
    local sem, log = tapio.Semaphore(2), {}
    local tasks = {}
    for i = 1, 4 do
      tasks[i] = loop:create_task(function()
        sem:with(function()
          log[#log + 1] = ("%d in at %g"):format(i, clock:time())
          tapio.sleep(1)
        end)
      end)
    end
    tapio.gather(tasks)
    assert.are.same({ "1 in at 0", "2 in at 0", "3 in at 1", "4 in at 1" },
      log)
    assert.is_false(sem:locked())
  end, jump))

  it("gives back what it woke a cancelled task for and wakes the next",
     testing.run(function(_, loop)
    local sem = tapio.Semaphore(1)
    sem:acquire()
    local b = loop:create_task(sem.acquire, sem)
    local c = loop:create_task(sem.acquire, sem)
    settle()
    sem:release() -- wakes b
    b:cancel()
    raised(b.await, b)
    assert.is_true(c:await())
    assert.is_true(sem:locked())
    sem:release()
    assert.is_false(sem:locked())
  end))

  it("with, outside a task, raises at the caller's line", function()
    local sem = tapio.Semaphore()
    assert.matches("sync_spec.lua:%d+: tapio: semaphore:with: not inside " ..
      "a task", raised(function() sem:with(print) end))
  end)

  it("bounded, refuses a release beyond its value; a bad value raises",
     testing.run(function()
    local sem = tapio.BoundedSemaphore(1)
    sem:acquire()
    sem:release()
    assert.matches("semaphore:release: released too many times",
      raised(sem.release, sem))
    local plain = tapio.Semaphore(0)
    plain:release() -- an unbounded one may grow
    assert.is_true(plain:acquire())
    assert.matches("sync_spec.lua:%d+: tapio: Semaphore: bad argument #1 " ..
      "'value' %(an integer >= 0", raised(function() tapio.Semaphore(-1) end))
    assert.matches("sync_spec.lua:%d+: tapio: BoundedSemaphore: bad " ..
      "argument #1", raised(function() tapio.BoundedSemaphore("x") end))
    assert.are.equal(tapio.Semaphore, getmetatable(sem))
  end))
end)

describe("tapio.Condition", function()
  -- A task that waits on cond holding its lock, and logs when it is back.
  local function waiter(loop, cond, log, name)
    return loop:create_task(function()
      cond:with(function()
        assert.is_true(cond:wait())
        assert.is_true(cond:locked())
        log[#log + 1] = name
      end)
    end)
  end

  it("wait frees the lock; notify wakes the first n, in the order they " ..
     "waited", testing.run(function(_, loop)
    local cond, log = tapio.Condition(), {}
    local tasks = {}
    for i = 1, 4 do
      tasks[i] = waiter(loop, cond, log, "woke " .. i)
    end
    settle()
    assert.is_false(cond:locked()) -- all four wait, the lock free
    cond:with(function()
      cond:notify(0)
      cond:notify(2)
    end)
    settle()
    assert.are.same({ "woke 1", "woke 2" }, log)
    cond:with(function() cond:notify() end) -- n = 1
    settle()
    assert.are.same({ "woke 1", "woke 2", "woke 3" }, log)
    cond:with(function() cond:notify_all() end)
    tasks[4]:await()
    assert.are.same({ "woke 1", "woke 2", "woke 3", "woke 4" }, log)
    cond:with(function() cond:notify_all() end) -- nobody waits: nothing
    assert.is_false(cond:locked())
  end))

  it("returns from wait only once it holds the lock again",
     testing.run(function(_, loop)
    local cond, log = tapio.Condition(), {}
    local t = waiter(loop, cond, log, "back")
    settle()
    cond:acquire()
    cond:notify()
    settle()
    assert.are.same({}, log) -- notified, but the lock is this task's
    cond:release()
    t:await()
    assert.are.same({ "back" }, log)
  end))

  it("takes the lock back before it raises when cancelled in wait",
     testing.run(function(_, loop)
    local cond = tapio.Condition()
    local seen
    local t = loop:create_task(function()
      cond:acquire()
      local ok, err = pcall(cond.wait, cond)
      seen = { ok, tapio.is_cancelled(err), cond:locked() }
      cond:release() -- raises unless it is held
      return "released"
    end)
    settle()
    cond:acquire() -- the lock is this task's when t is cancelled
    t:cancel()
    settle()
    assert.is_nil(seen) -- t waits for the lock before it raises
    cond:release()
    assert.are.equal("released", t:await())
    assert.are.same({ false, true, true }, seen)
    assert.is_false(cond:locked())
  end))

  it("takes the lock back also when cancelled again while it waits for " ..
     "it, and passes its notify on", testing.run(function(_, loop)
    local cond, log = tapio.Condition(), {}
    local a = loop:create_task(function()
      cond:acquire()
      local ok, err = pcall(cond.wait, cond)
      log[#log + 1] = ("a: %s %s %s"):format(ok, tapio.is_cancelled(err),
        cond:locked())
      cond:release()
    end)
    local b = waiter(loop, cond, log, "b")
    settle()
    cond:acquire()
    cond:notify() -- a
    settle()      -- a waits for the lock now
    a:cancel()
    settle()
    a:cancel()    -- and again
    settle()
    assert.are.same({}, log)
    cond:release()
    a:await()
    b:await() -- woken by the notify a could not use
    assert.are.same({ "a: false true true", "b" }, log)
  end))

  it("passes the notify of a waiter cancelled before it ran on to the " ..
     "next (cpython gh-112202)", testing.run(function(_, loop)
    local cond, log = tapio.Condition(), {}
    local a = waiter(loop, cond, log, "a")
    local b = waiter(loop, cond, log, "b")
    settle()
    cond:with(function()
      cond:notify() -- a
      a:cancel()    -- before it runs
    end)
    assert.is_true(tapio.is_cancelled(raised(a.await, a)))
    b:await()
    assert.are.same({ "b" }, log)
    assert.is_false(cond:locked())
  end))

  it("wakes nobody for a waiter cancelled before any notify",
     testing.run(function(_, loop)
    local cond, log = tapio.Condition(), {}
    local a = waiter(loop, cond, log, "a")
    local b = waiter(loop, cond, log, "b")
    settle()
    a:cancel()
    raised(a.await, a)
    settle()
    assert.is_false(b:done()) -- no spurious wake-up
    cond:with(function() cond:notify() end)
    b:await()
    assert.are.same({ "b" }, log)
  end))

  it("wait_for waits until the predicate holds and returns its value",
     testing.run(function(_, loop)
    local cond, value, calls = tapio.Condition(), nil, 0
    local function ready()
      calls = calls + 1
      return value
    end
    local t = loop:create_task(function()
      return cond:with(cond.wait_for, cond, ready)
    end)
    settle()
    cond:with(function() cond:notify() end) -- still nil: waits again
    settle()
    assert.is_false(t:done())
    value = "ready"
    cond:with(function() cond:notify() end)
    assert.are.equal("ready", t:await())
    assert.are.equal(3, calls)
    value = 7 -- true at once: no wait
    assert.are.equal(7, cond:with(cond.wait_for, cond, ready))
  end))

  it("shares the lock it is given; outside a task wait is a future",
     testing.run(function(_, loop)
    local lock = tapio.Lock()
    local cond = tapio.Condition(lock)
    lock:acquire()
    assert.is_true(cond:locked())
    cond:release()
    assert.is_false(lock:locked())
    assert.is_true(cond:acquire())
    local fut
    loop:call_soon(function() fut = cond:wait() end)
    settle()
    assert.is_true(tapio.is_future(fut))
    assert.is_false(lock:locked()) -- its task freed the lock to wait
    cond:with(function() cond:notify() end)
    assert.is_true(fut:await())
    assert.is_true(lock:locked()) -- and took it back for the caller
    cond:release()
  end))

  it("raises, naming the method, when the lock is not held; bad " ..
     "arguments raise", testing.run(function()
    local cond = tapio.Condition()
    for _, call in ipairs({
      { "wait", function() cond:wait() end },
      { "wait_for", function() cond:wait_for(print) end },
      { "notify", function() cond:notify() end },
      { "notify_all", function() cond:notify_all() end },
      { "release", function() cond:release() end },
    }) do
      assert.matches("sync_spec.lua:%d+: tapio: condition:" .. call[1] ..
        ": the lock is not acquired", raised(call[2]))
    end
    assert.matches("sync_spec.lua:%d+: tapio: Condition: bad argument #1 " ..
      "'lock' %(tapio.Lock expected, got tapio.Semaphore%)",
      raised(function() tapio.Condition(tapio.Semaphore()) end))
    cond:acquire()
    assert.matches("sync_spec.lua:%d+: tapio: condition:notify: bad " ..
      "argument #1 'n' %(an integer >= 0 expected, got %-1%)",
      raised(function() cond:notify(-1) end))
    assert.matches("sync_spec.lua:%d+: tapio: condition:wait_for: bad " ..
      "argument #1 'predicate' %(function expected, got boolean%)",
      raised(function() cond:wait_for(true) end))
    assert.matches("sync_spec.lua:%d+: tapio: condition:with: bad " ..
      "argument #1 'fn'", raised(function() cond:with(5) end))
    assert.matches("bad self %(tapio.Condition expected",
      raised(cond.notify, tapio.Lock()))
    cond:release()
    assert.are.equal("inside", raised(cond.with, cond, function()
      error("inside", 0)
    end))
    assert.is_false(cond:locked())
  end))
end)

describe("tapio.Barrier", function()
  -- A task that waits on b and logs its index, or the error's name.
  local function party(loop, b, log, name)
    return loop:create_task(function()
      local ok, r = pcall(b.wait, b)
      log[#log + 1] = ("%s: %s"):format(name, ok and r or
        (tapio.is_cancelled(r) and "cancelled" or r.name))
    end)
  end

  -- A party per name, waiting once this returns; their tasks.
  local function parties(loop, b, log, ...)
    local tasks = {}
    for i, name in ipairs({ ... }) do
      tasks[i] = party(loop, b, log, name)
    end
    settle()
    return (table.unpack or unpack)(tasks)
  end

  it("lets parties tasks on together, each with its index in the order " ..
     "they came", testing.run(function(clock, loop)
    local b, log = tapio.Barrier(3), {}
    local tasks = {}
    for i = 1, 3 do
      tasks[i] = loop:create_task(function()
        tapio.sleep(i)
        local index = b:wait()
        log[#log + 1] = ("%d: %d at %g"):format(i, index, clock:time())
      end)
    end
    tapio.sleep(2.5)
    assert.are.same({ 2, false }, { b:n_waiting(), b:broken() })
    tapio.gather(tasks)
    -- the last one in goes on at once, then the others in turn
    assert.are.same({ "3: 2 at 3", "1: 0 at 3", "2: 1 at 3" }, log)
    assert.are.same({ 3, 0, false }, { b.parties, b:n_waiting(), b:broken() })
    assert.are.equal(0, tapio.Barrier(1):wait())
  end, jump))

  it("keeps a task that comes while it drains for the next round",
     testing.run(function(_, loop)
    local b, log = tapio.Barrier(2), {}
    local a = party(loop, b, log, "a")
    settle()
    local x = loop:create_task(function()
      local first = b:wait() -- fills the round
      log[#log + 1] = "x: " .. first
      assert.are.equal(0, b:n_waiting()) -- draining: a has not gone on
      local again = b:wait() -- so this waits for a
      log[#log + 1] = "x again: " .. again
    end)
    settle()
    assert.are.same({ "x: 1", "a: 0" }, log)
    assert.are.equal(1, b:n_waiting()) -- x, in the next round
    local y = party(loop, b, log, "y")
    tapio.gather({ a, x, y })
    assert.are.same({ "x: 1", "a: 0", "y: 1", "x again: 0" }, log)
  end))

  it("reset: the tasks in it raise BrokenBarrierError, those who come " ..
     "meanwhile wait, then it fills again", testing.run(function(_, loop)
    local b, log = tapio.Barrier(3), {}
    local t1, t2 = parties(loop, b, log, "t1", "t2")
    b:reset()
    local t3 = party(loop, b, log, "t3") -- while t1 and t2 leave
    tapio.gather({ t1, t2 })
    assert.are.same({ "t1: BrokenBarrierError", "t2: BrokenBarrierError" },
      log)
    assert.are.same({ 1, false }, { b:n_waiting(), b:broken() })
    local t4 = party(loop, b, log, "t4")
    settle()
    assert.are.equal(2, b:wait())
    tapio.gather({ t3, t4 })
    assert.are.same({ "t3: 0", "t4: 1" }, { log[3], log[4] })
    b:reset() -- nobody in it: nothing to do
    assert.are.equal(0, b:n_waiting())
  end))

  it("abort breaks it: waits raise BrokenBarrierError until a reset",
     testing.run(function(_, loop)
    local b = tapio.Barrier(2)
    local t = loop:create_task(b.wait, b)
    settle()
    b:abort()
    local err = raised(t.await, t)
    assert.are.same({ "BrokenBarrierError", tapio.EPIPE },
      { err.name, err.code })
    assert.matches("barrier:wait: the barrier was aborted", err.message)
    assert.is_true(b:broken())
    assert.are.equal(0, b:n_waiting())
    err = raised(b.wait, b) -- at once
    assert.matches("barrier:wait: the barrier is broken", err.message)
    b:reset()
    assert.is_false(b:broken())
    local u = loop:create_task(b.wait, b)
    settle()
    assert.are.equal(1, b:wait())
    assert.are.equal(0, u:await())
    err = raised(function()
      local r = tapio.Barrier(2)
      local v = loop:create_task(r.wait, r)
      settle()
      r:reset()
      v:await()
    end)
    assert.matches("barrier:wait: the barrier was reset", err.message)
  end))

  it("lets a cancelled task out of the round it fills, unbroken, as " ..
     "asyncio does; the next to come takes its index",
     testing.run(function(_, loop)
    local b, log = tapio.Barrier(3), {}
    local t1, t2 = parties(loop, b, log, "t1", "t2")
    t1:cancel()
    settle()
    assert.are.same({ 1, false }, { b:n_waiting(), b:broken() })
    local t3 = party(loop, b, log, "t3")
    settle()
    assert.are.equal(2, b:n_waiting())
    assert.are.equal(2, b:wait())
    tapio.gather({ t2, t3 })
    assert.are.same({ "t1: cancelled", "t2: 1", "t3: 0" }, log)
  end))

  it("a task let on but cancelled before it ran raises the " ..
     "cancellation; the others go on and the next round fills",
     testing.run(function(_, loop)
    local b, log = tapio.Barrier(3), {}
    local t1, t2 = parties(loop, b, log, "t1", "t2")
    assert.are.equal(2, b:wait()) -- lets them on
    t1:cancel()                   -- before it ran
    local late = party(loop, b, log, "late") -- waits for the drain
    settle()
    late:cancel()                 -- while it waits for the drain
    tapio.gather({ t1, t2, late })
    assert.are.same({ "t1: cancelled", "t2: 1", "late: cancelled" }, log)
    assert.are.same({ 0, false }, { b:n_waiting(), b:broken() })
    local t3, t4 = parties(loop, b, log, "t3", "t4")
    assert.are.equal(2, b:wait())
    tapio.gather({ t3, t4 })
    assert.are.same({ "t3: 0", "t4: 1" }, { log[4], log[5] })
  end))

  it("refuses parties < 1; wait outside a task is a future",
     testing.run(function(_, loop)
    for _, v in ipairs({ 0, -1, 1.5, "2" }) do
      assert.matches("sync_spec.lua:%d+: tapio: Barrier: bad argument " ..
        "#1 'parties' %(an integer >= 1 expected, got " ..
        (type(v) == "number" and tostring(v) or type(v)):gsub("%p", "%%%0"),
        raised(function() tapio.Barrier(v) end))
    end
    assert.matches("got nil", raised(function() tapio.Barrier() end))
    assert.matches("bad self %(tapio.Barrier expected",
      raised(tapio.Barrier.wait, {}))
    local b, fut = tapio.Barrier(2), nil
    loop:call_soon(function() fut = b:wait() end)
    settle()
    assert.is_true(tapio.is_future(fut))
    assert.are.equal(1, b:wait())
    assert.are.equal(0, fut:await())
  end))
end)

describe("the primitives' methods", function()
  it("refuse a bad self in their own name", function()
    local methods = {
      Event = { "is_set", "set", "clear", "wait" },
      Lock = { "locked", "acquire", "release", "with" },
      Semaphore = { "locked", "acquire", "release", "with" },
      Condition = { "locked", "acquire", "release", "with", "wait",
                    "wait_for", "notify", "notify_all" },
      Barrier = { "wait", "reset", "abort", "n_waiting", "broken" },
    }
    for class, names in pairs(methods) do
      for _, name in ipairs(names) do
        assert.matches(("sync_spec.lua:%%d+: tapio: %s:%s: bad self " ..
          "%%(tapio.%s expected, got table%%)"):format(class:lower(), name,
          class), raised(function() tapio[class][name]({}) end))
      end
    end
  end)

  it("refuse a condition's wait on a lock not held at once, outside a " ..
     "task too", function()
    local cond = tapio.Condition()
    assert.matches("sync_spec.lua:%d+: tapio: condition:wait: the lock is " ..
      "not acquired", raised(function() cond:wait() end))
    assert.matches("sync_spec.lua:%d+: tapio: condition:wait_for: the lock " ..
      "is not acquired", raised(function() cond:wait_for(print) end))
  end)
end)
