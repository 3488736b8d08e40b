-- A shell pipeline runner, ported from python/pipeline.py:
--   tapio examples/pipeline.lua [--timeout S] [--grace S] [--pipefail] \
--     'cmd1' 'cmd2' ...
-- runs each command with sh -c, the stdout of each connected straight to
-- the stdin of the next through an OS pipe (the data never passes through
-- the runner). Each child's stderr is printed as "[index] line". All the
-- children share one new process group; on timeout, SIGINT or SIGTERM the
-- group gets SIGTERM, then SIGKILL after a grace period. The exit status
-- is bash's (--pipefail: the last non-zero one) and the statuses are
-- printed at the end to stderr, as bash's PIPESTATUS.
local tapio = require "tapio"

local function usage()
  io.stderr:write("usage: pipeline.lua [--timeout S] [--grace S] "
                  .. "[--pipefail] 'cmd' ...\n")
  os.exit(1)
end

local function parse(argv)
  local opts, i = { grace = 2, pipefail = false }, 1
  while argv[i] and argv[i]:sub(1, 2) == "--" do
    local name, value = argv[i], tonumber(argv[i + 1])
    if name == "--pipefail" then
      opts.pipefail, i = true, i + 1
    elseif (name == "--timeout" or name == "--grace") and value then
      opts[name:sub(3)], i = value, i + 2
    else
      usage()
    end
  end
  local commands = table.move(argv, i, #argv, 1, {})
  if #commands == 0 then
    usage()
  end
  return opts, commands
end

local function say(line)
  io.stderr:write(line)
end

-- The next line of reader (the last one may have no newline; "" at the
-- end); a line longer than the reader's limit comes in pieces.
local function next_line(reader)
  local ok, err = pcall(reader.readuntil, reader, "\n")
  if ok then
    return err
  elseif err.code == tapio.EOF then
    return err.partial
  elseif err.code == tapio.EMSGSIZE then -- LimitOverrunError: what it
    return reader:read(err.consumed + 1) -- saw, through a newline there
  end
  error(err, 0)
end

local function relay_stderr(index, reader)
  for line in next_line, reader do
    if line == "" then
      break
    end
    if line:sub(-1) ~= "\n" then
      line = line .. "\n"
    end
    say(("[%d] %s"):format(index, line))
  end
end

-- The process group's leader: a child that lives until every command has
-- joined its group (a command that exited and was reaped at once would
-- take the group with it, and the next one could not join).
local function start_leader()
  return tapio.create_subprocess_exec("cat", nil,
    { stdin = "pipe", stdout = "devnull", process_group = 0 })
end

-- Starts the children, each one's stdout the next one's stdin.
local function start(commands, pgid)
  local procs, stdin = {}, "inherit"
  for i, command in ipairs(commands) do
    local read_end, write_end
    if i < #commands then
      read_end, write_end = tapio.pipe()
    end
    local ok, proc = pcall(tapio.create_subprocess_exec, "sh",
      { "-c", command }, { stdin = stdin, stdout = write_end or "inherit",
                           stderr = "pipe", process_group = pgid })
    -- the children hold the pipes now, the runner must not
    if stdin ~= "inherit" then
      tapio.close_fd(stdin)
    end
    if write_end then
      tapio.close_fd(write_end)
    end
    if not ok then
      error(proc, 0)
    end
    procs[i], stdin = proc, read_end
  end
  return procs
end

local function bash_status(returncode)
  return returncode < 0 and 128 - returncode or returncode
end

local function killpg(pgid, sig)
  local ok, err = tapio.killpg(pgid, sig)
  if not ok and err.code ~= tapio.ESRCH then -- ESRCH: all gone already
    error(err)
  end
end

local function run(opts, commands)
  local loop = tapio.get_running_loop()
  local stopped = loop:create_future()
  for _, sig in ipairs { "SIGINT", "SIGTERM" } do
    loop:add_signal_handler(sig, function()
      if not stopped:done() then
        stopped:set_result(tapio.signals[sig])
      end
    end)
  end
  local leader = start_leader()
  local pgid = leader.pid
  local ok, procs = pcall(start, commands, pgid)
  leader.stdin:close()
  if not ok then
    killpg(pgid, "SIGKILL")
    error(procs, 0)
  end
  -- done when every child has exited and every stderr has ended (a
  -- grandchild may still hold one)
  local parts = { function() return leader:wait() end }
  for i, p in ipairs(procs) do
    parts[#parts + 1] = function() return p:wait() end
    parts[#parts + 1] = function() relay_stderr(i, p.stderr) end
  end
  local done = tapio.create_task(tapio.gather, parts)
  tapio.wait({ done, stopped },
             { timeout = opts.timeout, return_when = "FIRST_COMPLETED" })
  local signalled = stopped:done() and stopped:result() or nil
  if not done:done() then
    if not signalled then
      say(("pipeline: timed out after %g s\n"):format(opts.timeout))
    end
    killpg(pgid, "SIGTERM")
    tapio.wait({ done }, { timeout = opts.grace })
    if not done:done() then
      say(("pipeline: still running after %g s: SIGKILL\n")
          :format(opts.grace))
      killpg(pgid, "SIGKILL")
    end
  end
  done:await() -- raises what failed in it
  local statuses, failed = {}, 0
  for i, p in ipairs(procs) do
    statuses[i] = bash_status(p.returncode)
    failed = statuses[i] ~= 0 and statuses[i] or failed
  end
  say(("pipestatus: %s\n"):format(table.concat(statuses, " ")))
  if signalled then
    return 128 + signalled
  end
  return opts.pipefail and failed or statuses[#statuses]
end

os.exit(tapio.run(run, parse(arg)))
