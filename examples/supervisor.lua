-- A process supervisor, ported from python/supervisor.py: runs each
-- NAME=COMMAND as a child (sh -c COMMAND), prints its output line by line
-- as "[NAME] line" and its exit. A connection to PORT gets each child's
-- state. SIGHUP restarts the children; SIGTERM stops: no more
-- connections, then each child gets SIGTERM and GRACE seconds to exit
-- before it is killed.
-- Usage: tapio examples/supervisor.lua PORT GRACE NAME=COMMAND...
local tapio = require "tapio"

local PORT, GRACE = tonumber(arg[1]), tonumber(arg[2])

local function describe(returncode)
  if returncode == nil then
    return "running"
  elseif returncode < 0 then
    return "killed by " .. tapio.signal_name(-returncode)
  end
  return "exited with " .. returncode
end

local Child = {}
Child.__index = Child

function Child.new(spec)
  local name, command = spec:match("^([^=]*)=(.*)$")
  return setmetatable({ name = name, command = command }, Child)
end

function Child:run()
  self.proc = tapio.create_subprocess_exec("sh", { "-c", self.command },
    { stdin = "devnull", stdout = "pipe", stderr = "stdout" })
  print(("[%s] started"):format(self.name))
  for line in self.proc.stdout:lines() do
    print(("[%s] %s"):format(self.name, (line:gsub("%s+$", ""))))
  end
  print(("[%s] %s"):format(self.name, describe(self.proc:wait())))
end

function Child:state()
  return describe(self.proc and self.proc.returncode)
end

local function stop(children, tasks)
  for _, child in ipairs(children) do
    if child.proc.returncode == nil then
      child.proc:terminate()
    end
  end
  tapio.wait(tasks, { timeout = GRACE })
  for _, child in ipairs(children) do
    if child.proc.returncode == nil then
      print(("[%s] still running after %g s: killing"):format(child.name,
                                                             GRACE))
      child.proc:kill()
    end
  end
  tapio.gather(tasks)
end

tapio.run(function()
  local children = {}
  for i = 3, #arg do
    children[#children + 1] = Child.new(arg[i])
  end

  local function status(_, writer)
    for _, child in ipairs(children) do
      writer:write(("%s: %s\n"):format(child.name, child:state()))
    end
    writer:close()
    writer:wait_closed()
  end

  local loop = tapio.get_running_loop()
  local signals = tapio.Queue()
  for _, sig in ipairs { "SIGTERM", "SIGHUP" } do
    loop:add_signal_handler(sig, signals.put_nowait, signals, sig)
  end
  local server = tapio.start_server(status, "127.0.0.1", PORT)
  local tasks
  while true do
    tasks = {}
    for _, child in ipairs(children) do
      tasks[#tasks + 1] = tapio.create_task(child.run, child)
    end
    if signals:get() == "SIGTERM" then
      break
    end
    print("supervisor: SIGHUP: restarting the children")
    stop(children, tasks)
  end
  server:close()
  print("supervisor: SIGTERM: stopping")
  stop(children, tasks)
  server:wait_closed()
  print("supervisor: stopped")
end)
