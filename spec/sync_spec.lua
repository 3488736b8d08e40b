-- tapio.Event, Lock, Semaphore, BoundedSemaphore, Condition and Barrier,
-- on the testing kit's virtual clock: the order tasks get their turn in,
-- and what a cancelled waiter passes on (the queues: queue_spec.lua).
local helper = require "spec.helper"
local tapio = helper.tapio
local testing = require "tapio.testing"

local jump = { autojump = true }

local function raised(fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok, "expected an error")
  return err
end

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
