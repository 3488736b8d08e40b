-- A supervisor: runs a child program, starts it again when it exits with
-- a non-zero status (at most max_restarts times within `window`
-- seconds, then it gives up), and on stop() forwards SIGTERM to the
-- child, killing it if it has not exited grace seconds later.
--
-- Nothing here knows about tests: the child is started with
-- tapio.create_subprocess_exec, which tapio.testing's fake programs
-- answer on a virtual loop.
local tapio = require "tapio"

local Supervisor = {}
Supervisor.__index = Supervisor

local M = {}

--- supervisor.new(program, args [, opts])
-- opts.max_restarts (5) within opts.window seconds (60);
-- opts.grace: seconds between SIGTERM and SIGKILL at stop() (5).
function M.new(program, args, opts)
  opts = opts or {}
  return setmetatable({
    program = program, args = args or {},
    max_restarts = opts.max_restarts or 5,
    window = opts.window or 60,
    grace = opts.grace or 5,
    starts = {}, -- loop times of the child's starts
  }, Supervisor)
end

-- Whether one more restart now stays within the limit.
function Supervisor:may_restart(now)
  local recent = 0
  for i = 2, #self.starts do -- the first start is no restart
    if self.starts[i] > now - self.window then
      recent = recent + 1
    end
  end
  return recent < self.max_restarts
end

--- sup:run(): runs the child until it succeeds or stop() is called
-- (returns its last status), or the restart limit is reached (returns
-- nil and "restart limit reached", with the last status). A task's call.
function Supervisor:run()
  local loop = tapio.get_running_loop()
  while true do
    self.starts[#self.starts + 1] = loop:time()
    self.proc = tapio.create_subprocess_exec(self.program, self.args,
      { stdin = "devnull", stdout = "devnull", stderr = "devnull" })
    local status = self.proc:wait()
    self.proc = nil
    if status == 0 or self.stopping then
      return status
    elseif not self:may_restart(loop:time()) then
      return nil, "restart limit reached", status
    end
  end
end

--- sup:stop(): SIGTERM to the child, SIGKILL after grace seconds; waits
-- for its exit (a task's call). Returns its status, or nil if none ran.
function Supervisor:stop()
  self.stopping = true
  local proc = self.proc
  if not proc then
    return nil
  end
  proc:terminate()
  local ok, status = pcall(tapio.wait_for, function()
    return proc:wait()
  end, self.grace)
  if ok then
    return status
  end
  proc:kill()
  return proc:wait()
end

return M
