-- examples/pipeline.lua and examples/tee_exec.lua run as programs (the
-- `tapio` host) with real children through sh, against their Python
-- originals (examples/python/) where those define the behaviour: exit
-- statuses as bash gives them (SIGPIPE, a command not found, a middle
-- command that exits early), stderr relayed line by line, binary data
-- through the pipes, a timeout and SIGTERM ending the whole process group
-- (grandchildren too), and tee_exec's 10 MiB both ways with flow control
-- and its SubprocessProtocol events in asyncio's order.
local helper = require "spec.helper"
local tapio = helper.tapio

local run = helper.run
local python = "/usr/bin/python3"
local MIB = 1024 * 1024

-- Inside a task: runs `tapio examples/NAME.lua args` (python: the Python
-- original) with input on its stdin (nil: /dev/null); returns its stdout,
-- its stderr and its exit status.
local function program(name, args, input, py)
  local argv = { (py and "examples/python/%s.py" or "examples/%s.lua")
                 :format(name) }
  table.move(args, 1, #args, 2, argv)
  local p = tapio.create_subprocess_exec(py and python or helper.HOST, argv,
    { stdin = input and "pipe" or "devnull", stdout = "pipe",
      stderr = "pipe" })
  local out, err = p:communicate(input)
  return out, err, p.returncode
end

local function pipeline(args, input, py)
  return program("pipeline", args, input, py)
end

-- The lines of s as a list (a last one without "\n" too).
local function lines(s)
  local list = {}
  for line in s:gmatch("[^\n]+") do
    list[#list + 1] = line
  end
  return list
end

-- Runs the pipeline with tapio and with Python: both must print the same
-- stdout and stderr (stderr's lines sorted: children write at once) and
-- end with the same status; returns tapio's.
local function both(args, input)
  local out, err, status = pipeline(args, input)
  if helper.exists(python) then
    local py_out, py_err, py_status = pipeline(args, input, true)
    assert.is_true(py_out == out, "stdout differs from Python's")
    local mine, theirs = lines(err), lines(py_err)
    table.sort(mine)
    table.sort(theirs)
    assert.are.same(theirs, mine)
    assert.are.equal(py_status, status)
  end
  return out, err, status
end

-- Whether no process of pid (a number as a string; "-pgid": its process
-- group) is alive: gone, or a zombie (an orphaned grandchild stays one
-- until init reaps it, which may be never in a container).
local function dead(pid)
  local ps = io.popen("ps -e -o pid=,pgid=,stat=")
  local list = ps:read("a")
  ps:close()
  for p, g, stat in list:gmatch("(%d+)%s+(%d+)%s+(%S+)") do
    if (p == pid or "-" .. g == pid) and stat:sub(1, 1) ~= "Z" then
      return false
    end
  end
  return true
end

-- bytes 0..255, n of them
local function binary(n)
  local t = {}
  for i = 0, 255 do
    t[#t + 1] = string.char(i)
  end
  return table.concat(t):rep(math.floor(n / 256) + 1):sub(1, n)
end

describe("examples/pipeline.lua", function()
  it("gives yes its SIGPIPE: 141 with --pipefail, as bash", function()
    run(function()
      local cmds = { "yes", "head -c 5000000", "wc -c" }
      local out, err, status = both(cmds)
      assert.are.equal("5000000", out:match("%d+"))
      assert.are.equal("pipestatus: 141 0 0\n", err)
      assert.are.equal(0, status)
      table.insert(cmds, 1, "--pipefail")
      out, err, status = both(cmds)
      assert.are.equal("pipestatus: 141 0 0\n", err)
      assert.are.equal(141, status)
    end, { deadline = 30 })
  end)

  it("goes on when a middle command exits early", function()
    run(function()
      local cmds = { "seq 1000000", "head -n 2; exit 5", "cat" }
      local out, err, status = both(cmds)
      assert.are.equal("1\n2\n", out)
      assert.are.equal("pipestatus: 141 5 0\n", err)
      assert.are.equal(0, status)
      table.insert(cmds, 1, "--pipefail")
      assert.are.equal(5, select(3, both(cmds)))
    end, { deadline = 30 })
  end)

  it("reports a command not found as 127, with sh's words", function()
    run(function()
      local out, err, status = both({ "true", "no_such_command_x" })
      assert.are.equal("", out)
      assert.is_truthy(err:find("[2] sh: 1: no_such_command_x: not found\n",
                                1, true), err)
      assert.is_truthy(err:find("pipestatus: 0 127\n", 1, true), err)
      assert.are.equal(127, status)
    end, { deadline = 30 })
  end)

  it("relays each child's stderr line by line, a last line without a "
     .. "newline too", function()
    run(function()
      local loud = 'for i in $(seq 500); do echo "%s $i" >&2; done'
      local _, err, status = both({ loud:format("one"),
        "printf 'ab' >&2; printf 'cd\\nlast' >&2", loud:format("two") })
      assert.are.equal(0, status)
      local next_of = { one = 1, two = 1 }
      local seen = {}
      for _, line in ipairs(lines(err)) do
        local index, word, n = line:match("^%[(%d)%] (%a+) (%d+)$")
        if index then -- whole lines, each child's in order
          assert.are.equal(index == "1" and "one" or "two", word)
          assert.are.equal(next_of[word], tonumber(n))
          next_of[word] = next_of[word] + 1
        else
          seen[#seen + 1] = line
        end
      end
      assert.are.same({ one = 501, two = 501 }, next_of)
      assert.are.same({ "[2] abcd", "[2] last", "pipestatus: 0 0 0" }, seen)
    end, { deadline = 30 })
  end)

  it("relays a stderr line longer than the reader's limit in pieces",
     function()
    run(function()
      for _, py in ipairs { false, helper.exists(python) } do
        local _, err, status = pipeline({ "head -c 200000 /dev/zero | "
          .. "tr '\\0' x >&2; echo after >&2; printf end >&2" }, nil, py)
        assert.are.equal(0, status)
        local pieces = lines(err)
        assert.are.equal("pipestatus: 0", table.remove(pieces))
        assert.are.equal("[1] end", table.remove(pieces))
        assert.is_true(#pieces >= 2, err:sub(1, 100))
        for i, piece in ipairs(pieces) do
          pieces[i] = piece:match("^%[1%] (.*)$")
        end
        assert.is_true(table.concat(pieces) == ("x"):rep(200000) .. "after")
      end
    end, { deadline = 30 })
  end)

  it("passes binary data with NUL bytes through unchanged", function()
    run(function()
      local input = binary(3 * MIB)
      local out, err, status = both({ "cat", "cat", "cat" }, input)
      assert.are.equal(#input, #out)
      assert.is_true(out == input)
      assert.are.equal("pipestatus: 0 0 0\n", err)
      assert.are.equal(0, status)
    end, { deadline = 30 })
  end)

  it("does not care that the first child closed its stdin early",
     function()
    run(function()
      local out, err, status = both({ "head -c 10", "wc -c" },
                                    binary(4 * MIB))
      assert.are.equal("10", out:match("%d+"))
      assert.are.equal("pipestatus: 0 0\n", err)
      assert.are.equal(0, status)
    end, { deadline = 30 })
  end)

  it("ends on timeout the whole group, a grandchild holding the pipe too",
     function()
    run(function()
      local out, err, status = pipeline({ "--timeout", "0.5",
        "sleep 100 & echo $! >&2; wait", "cat" })
      assert.are.equal("", out)
      local grandchild = err:match("^%[1%] (%d+)\n")
      assert.is_truthy(grandchild, err)
      local left = not dead(grandchild)
      if left then -- a broken runner's: it must not outlive the spec
        helper.execute("kill -9 " .. grandchild)
      end
      assert.is_false(left)
      assert.is_truthy(err:find("pipeline: timed out after 0.5 s\n"
                                .. "pipestatus: 143 143\n", 1, true), err)
      assert.are.equal(143, status)
    end, { deadline = 30 })
  end)

  for _, sig in ipairs { "SIGTERM", "SIGINT" } do
    it("on " .. sig .. " ends every child, SIGKILL for one that ignores "
       .. "SIGTERM", function()
      run(function()
        local p = tapio.create_subprocess_exec(helper.HOST, {
          "examples/pipeline.lua", "--grace", "0.3", "sleep 100",
          "trap '' TERM; sleep 100 & echo $$ $! >&2; "
          .. "cut -d' ' -f5 /proc/$$/stat >&2; wait", "cat" },
          { stdin = "devnull", stdout = "pipe", stderr = "pipe" })
        local sh, grandchild = p.stderr:readline()
          :match("^%[2%] (%d+) (%d+)\n$")
        local pgid = p.stderr:readline():match("^%[2%] (%d+)\n$")
        assert.is_truthy(sh and pgid)
        assert.is_false(dead(grandchild))
        assert.is_false(dead("-" .. pgid))
        p:send_signal(sig)
        local ok, err = pcall(tapio.wait_for, function()
          return p.stderr:read()
        end, 10)
        -- what a broken runner left must not outlive the spec
        tapio.killpg(tonumber(pgid), "SIGKILL")
        assert(ok, err)
        assert.are.equal(128 + tapio.signals[sig], p:wait())
        assert.are.equal("pipeline: still running after 0.3 s: SIGKILL\n"
                         .. "pipestatus: 143 137 143\n", err)
        assert.are.equal("", p.stdout:read())
        assert.is_true(dead(sh))
        assert.is_true(dead(grandchild))
        assert.is_true(dead("-" .. pgid)) -- the group is empty
      end, { deadline = 30 })
    end)
  end
end)

-- ---- tee_exec -----------------------------------------------------------

-- tee_exec's input, n bytes: 0, 1, ..., 250 over and over
local function pattern(n)
  local t = {}
  for i = 0, 250 do
    t[#t + 1] = string.char(i)
  end
  return table.concat(t):rep(math.floor(n / 251) + 1):sub(1, n)
end

local function read_file(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

-- tee_exec's event lines, without the "tee_exec: " prefix; the others
local function events(err)
  local list, other = {}, {}
  for _, line in ipairs(lines(err)) do
    local event = line:match("^tee_exec: (.*)")
    if event then
      list[#list + 1] = event
    else
      other[#other + 1] = line
    end
  end
  return list, other
end

-- Asserts the order asyncio defines for a SubprocessProtocol: made first,
-- each pipe lost once (stdout's after all its bytes), the exit once
-- (before or after the pipes), lost last; then the pauses line. Returns
-- the pause counts.
local function assert_order(list, lost0, code)
  assert.are.equal("connection_made", list[1])
  local middle = {}
  for i = 2, #list - 2 do
    middle[#middle + 1] = list[i]:gsub("after %d+ bytes", "after N bytes")
  end
  table.sort(middle)
  assert.are.same({ "pipe_connection_lost 0: " .. lost0,
    "pipe_connection_lost 1 after N bytes: ok",
    "pipe_connection_lost 2: ok", "process_exited " .. code }, middle)
  assert.are.equal("connection_lost: ok", list[#list - 1])
  local stdin, stdout = list[#list]
    :match("^stdin paused (%d+) times, stdout (%d+) times$")
  return tonumber(stdin), tonumber(stdout)
end

describe("examples/tee_exec.lua", function()
  local path = os.tmpname()
  teardown(function()
    os.remove(path)
  end)

  for _, py in ipairs { false, true } do
    if py and not helper.exists(python) then
      break
    end
    local who = py and "python's tee_exec.py" or "tee_exec.lua"

    it(who .. " copies 10 MiB through cat to stdout and a lagging file, "
       .. "pausing both ways", function()
      run(function()
        local out, err, status = program("tee_exec",
          { "--sink-delay", "0.3", path, "cat; echo done >&2" }, nil, py)
        local expected = pattern(10 * MIB)
        assert.are.equal(#expected, #out)
        assert.is_true(out == expected)
        assert.is_true(read_file(path) == expected)
        assert.are.equal(0, status)
        local list, other = events(err)
        assert.are.same({ "done" }, other)
        assert.is_truthy(err:find("pipe_connection_lost 1 after 10485760 "
                                  .. "bytes: ok", 1, true))
        local stdin, stdout = assert_order(list, "ok", 0)
        assert.is_true(stdin > 0, err)
        assert.is_true(stdout > 0, err) -- the file's sleep made it lag
      end, { deadline = 60 })
    end)

    it(who .. " fills the file when our stdout's reader goes away",
       function()
      run(function()
        local tee = py and { python, "examples/python/tee_exec.py" }
                    or { helper.HOST, "examples/tee_exec.lua" }
        tee[#tee + 1] = path
        tee[#tee + 1] = "cat"
        for i, word in ipairs(tee) do
          tee[i] = helper.shell_quote(word)
        end
        local p = tapio.create_subprocess_exec("sh", { "-c",
          table.concat(tee, " ") .. " | head -c 10" },
          { stdin = "devnull", stdout = "pipe", stderr = "pipe" })
        local out, err = p:communicate()
        assert.is_true(out == pattern(10))
        assert.is_true(read_file(path) == pattern(10 * MIB))
        local list, other = events(err)
        assert.are.same({}, other) -- no write after the end, nothing else
        assert.are.equal("connection_lost: ok", list[#list - 1])
      end, { deadline = 60 })
    end)

    it(who .. " goes on when the command reads 100 bytes and exits "
       .. "(EPIPE)", function()
      run(function()
        local out, err, status = program("tee_exec",
          { path, "head -c 100; exit 4" }, nil, py)
        assert.is_true(out == pattern(100))
        assert.is_true(read_file(path) == pattern(100))
        assert.are.equal(4, status)
        assert.is_truthy(err:find("pipe_connection_lost 1 after 100 bytes",
                                  1, true), err)
        assert_order(events(err), "EPIPE", 4)
      end, { deadline = 60 })
    end)
  end
end)
