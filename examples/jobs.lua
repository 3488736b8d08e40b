-- A job runner, ported from python/jobs.py: each line of FILE is a shell
-- command, run as a child process by a pool of WORKERS tasks that take
-- the jobs from a queue; at most RUNNING children run at once (a
-- semaphore) and each has TIMEOUT seconds. Results are printed as the
-- jobs finish. Ctrl-C kills the children still running, and waits for
-- them, before it exits.
-- Usage: tapio examples/jobs.lua FILE [workers [running [timeout]]]
local tapio = require "tapio"

local FILE = assert(arg[1], "usage: jobs.lua FILE [workers [running [timeout]]]")
local WORKERS = tonumber(arg[2]) or 4
local RUNNING = tonumber(arg[3]) or 2
local TIMEOUT = tonumber(arg[4]) or 10

local function run(command, running)
  return running:with(function()
    local proc = tapio.create_subprocess_exec("sh", { "-c", command },
                                              { stdout = "pipe" })
    local ok, out = pcall(tapio.wait_for, function()
      return proc:communicate()
    end, TIMEOUT)
    if proc.returncode == nil then -- timed out, or cancelled
      proc:kill()
      proc:wait()
    end
    if ok then
      return ("exit %d: %s"):format(proc.returncode,
                                    tapio.repr(out:match("^%s*(.-)%s*$")))
    elseif out.code == tapio.ETIMEDOUT then
      return ("timed out after %g s"):format(TIMEOUT)
    end
    error(out, 0)
  end)
end

local function worker(jobs, running)
  while true do
    local ok, job = pcall(jobs.get, jobs)
    if not ok and job.name == "QueueShutDown" then -- no more jobs
      return
    elseif not ok then
      error(job, 0)
    end
    local done, result = pcall(run, job.command, running)
    if done then
      job.result:set_result(result)
    elseif tapio.is_cancelled(result) then
      error(result, 0)
    else
      job.result:set_exception(result)
    end
  end
end

local function produce(jobs, list)
  for _, job in ipairs(list) do
    jobs:put(job)
  end
  jobs:shutdown()
end

tapio.run(function()
  local loop = tapio.get_running_loop()
  local list, results, job_of = {}, {}, {}
  for command in io.lines(FILE) do
    command = command:match("^%s*(.-)%s*$")
    if command ~= "" then
      local job = { n = #list + 1, command = command,
                    result = loop:create_future() }
      list[#list + 1], results[#list + 1] = job, job.result
      job_of[job.result] = job
    end
  end
  local jobs = tapio.Queue(WORKERS)
  local running = tapio.Semaphore(RUNNING)
  tapio.TaskGroup(function(tg)
    for _ = 1, WORKERS do
      tg:create_task(worker, jobs, running)
    end
    tg:create_task(produce, jobs, list)
    for result in tapio.as_completed(results) do
      local job = job_of[result]
      print(("[%d] %s: %s"):format(job.n, job.command, result:result()))
    end
  end)
end)
