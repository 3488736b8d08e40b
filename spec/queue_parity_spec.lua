-- tapio's Queue, PriorityQueue and LifoQueue against asyncio's, on
-- random sequences: spec/support/queue_parity.py draws each sequence
-- from a seed (put_nowait, get_nowait, qsize, full, empty, task_done,
-- put, get and join as tasks, cancelling them, on maxsize 0, 1 or 3),
-- runs it on asyncio and prints what each operation gave, the queue's
-- size and its unfinished count; here the same operations run on tapio,
-- on a virtual loop, and every event must be the same
-- (spec/support/sequences.lua).
-- A waiting task writes its event when it ends: the order in which they
-- end is compared too. TAPIO_PARITY_COUNT=20000 for a long run.
local tapio = require "tapio"
local testing = require "tapio.testing"
local seqs = require "spec.support.sequences"

-- A value as Python's "%s" writes it.
local function py(v)
  if v == nil then return "None" end
  if type(v) == "boolean" then return v and "True" or "False" end
  return tostring(v)
end

-- What queue_parity.py's failure writes.
local function failure(err)
  if type(err) == "table" and (err.name == "QueueFull"
      or err.name == "QueueEmpty" or err.name == "QueueShutDown") then
    return err.name
  elseif tostring(err):match("task_done: called more times") then
    return "ValueError"
  end
  error(err, 0)
end

local function outcome(ok, v)
  if ok then
    return "ok " .. py(v)
  end
  return failure(v)
end

-- The events of one sequence's operations on tapio.
local function run(seq)
  local loop, clock = testing.new_loop()
  local kind, maxsize = seq.ops[1][2]:match("^(%a+) (%d+)$")
  local q = tapio[kind](tonumber(maxsize))
  local events, tasks = {}, {} -- tasks: by the index of the op that made it
  local function event(i, name, text)
    events[#events + 1] = ("#%d %s -> %s | size=%d unfinished=%d"):format(
      i, name, text, q:qsize(), q._unfinished)
  end
  for i = 2, #seq.ops do
    local name, args = seq.ops[i][1], {}
    for word in seq.ops[i][2]:gmatch("%S+") do
      args[#args + 1] = tonumber(word)
    end
    local arg = args[1]
    if name == "shutdown" then -- (immediate: 0 or 1)
      arg = arg == 1
    end
    if name == "put" or name == "get" or name == "join" then
      local task = loop:create_task(function()
        local ok, v = pcall(q[name], q, arg)
        if not ok and tapio.is_cancelled(v) then
          event(i, "done", "CancelledError")
          error(v, 0)
        end
        event(i, "done", outcome(ok, v))
      end)
      tasks[i] = task
      clock:run_until_idle()
      if not task:done() then
        event(i, name, "pending")
      end
    elseif name == "cancel" then
      tasks[arg]:cancel()
      clock:run_until_idle()
      event(i, name, "ok")
    else -- "NAME+cancel": then the task made by op args[#args] cancelled
      local base = name:match("^(.*)%+cancel$")
      local text = outcome(pcall(q[base or name], q, arg))
      if base then
        tasks[args[#args]]:cancel()
      end
      clock:run_until_idle()
      event(i, name, text)
    end
  end
  loop:close()
  return events
end

describe("queues against asyncio's, on random sequences", function()
  it("give what asyncio gives, operation by operation", function()
    seqs.check("queue_parity.py", 300, run)
  end)
end)
