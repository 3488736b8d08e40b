-- What the differential specs' Lua sides share (reader_parity_spec.lua,
-- queue_parity_spec.lua): a Python script of spec/support/ (built on
-- sequences.py) draws random sequences of operations from seeds, runs
-- them on asyncio and prints the operations and what it saw; here each
-- sequence runs again on tapio and the two lists of events must be the
-- same. A mismatch fails with the seed, the operation's index and both
-- events.
--
-- Environment: TAPIO_PARITY_COUNT sequences (default: the spec's),
-- from seed TAPIO_PARITY_SEED (default 1), run by TAPIO_PARITY_PYTHON
-- (default: a python3.13 on PATH or in pyenv's versions, which draws what 3.11 lacks: readuntil
-- with a list of separators, a queue's shutdown; else /usr/bin/python3).
local helper = require "spec.helper"

local M = {}

local BATCH = 500 -- sequences per run of the script

-- The text sequences.py's esc made, back to bytes. (The pattern takes
-- up to two hex digits after every escape; after \n, \r and \\ they are
-- put back as they were.)
local UNESC = { ["\\"] = "\\", n = "\n", r = "\r" }
function M.unesc(s)
  return (s:gsub("\\(.)(%x?%x?)", function(c, hex)
    if c == "x" then
      return string.char(tonumber(hex, 16))
    end
    return UNESC[c] .. hex
  end))
end

--- data as sequences.py's esc writes it: \n, \r, \\, \xNN.
function M.esc(data)
  return (data:gsub("[^%w]", function(c)
    if c == "\n" then return "\\n" end
    if c == "\r" then return "\\r" end
    if c == "\\" then return "\\\\" end
    local b = c:byte()
    if b < 33 or b > 126 or c == "|" or c == "," or c == '"' then
      return ("\\x%02x"):format(b)
    end
  end))
end

function M.quoted(data)
  return '"' .. M.esc(data) .. '"'
end

-- How many sequences, from which seed, by which Python.
-- pyenv's own 3.13 first: its python3.13 shim, when 3.13 is not the
-- active version, takes some 1.5 s to say so. Found once per process.
local found_python
local function default_python()
  if found_python then
    return found_python
  end
  local out, status = helper.execute("for p in "
    .. "\"$(pyenv root 2>/dev/null)\"/versions/3.13*/bin/python3.13 python3.13; "
    .. "do \"$p\" -c 'import sys; print(sys.executable)' 2>/dev/null && "
    .. "break; done")
  found_python = "/usr/bin/python3"
  if status == 0 and out:match("^/[^\n]*\n$") then
    found_python = out:sub(1, -2)
  end
  return found_python
end
M.default_python = default_python

--- What spec/support/<script> prints under asyncio, for a parity spec
-- whose script needs Python 3.12 or later (eager tasks, a handle's
-- get_context): Debian 12 has 3.11, so what the script printed under
-- Python 3.13 is kept in spec/support/<recorded> and stands in where no
-- 3.12 or later is found. Where one is, the script runs and must print
-- that file, so the file never goes stale.
function M.asyncio_output(script, recorded)
  local python = os.getenv("TAPIO_PARITY_PYTHON") or default_python()
  local path = "spec/support/" .. recorded
  local _, old = helper.execute(python
    .. " -c 'import sys; sys.exit(sys.version_info < (3, 12))'")
  local file = assert(io.open(path))
  local kept = file:read("*a")
  file:close()
  if old ~= 0 then
    return kept
  end
  local out, status = helper.execute(python .. " spec/support/" .. script)
  assert(status == 0, "spec/support/" .. script .. " (" .. python
    .. ") failed:\n" .. out)
  assert(out == kept, path .. " is not what " .. python
    .. " prints now: make it again with python3.13 spec/support/" .. script
    .. " > " .. path)
  return out
end


local function settings(default_count)
  return tonumber(os.getenv("TAPIO_PARITY_COUNT")) or default_count,
    tonumber(os.getenv("TAPIO_PARITY_SEED")) or 1,
    os.getenv("TAPIO_PARITY_PYTHON") or default_python()
end

-- The script's sequences for seeds first .. first + count - 1, in order:
-- { seed =, ops = { { name, arg }... }, events = { text... } }.
local function python_sequences(python, script, first, count)
  local out, status = helper.execute(("timeout 600 %s spec/support/%s %d %d")
    :format(python, script, first, count))
  assert(status == 0, out)
  local seqs, by_seed = {}, {}
  for seed, kind, rest in out:gmatch("(%d+)|(%a+)|([^\n]*)\n") do
    local seq = by_seed[seed]
    if not seq then
      seq = { seed = tonumber(seed), ops = {}, events = {} }
      by_seed[seed], seqs[#seqs + 1] = seq, seq
    end
    if kind == "op" then
      local name, arg = rest:match("^([^|]+)|(.*)$")
      assert(name, "not an operation: " .. rest)
      seq.ops[#seq.ops + 1] = { name, arg }
    else
      seq.events[#seq.events + 1] = rest
    end
  end
  assert(#seqs == count, ("%s printed %d sequences of %d: %s")
    :format(script, #seqs, count, out:sub(1, 2000)))
  return seqs
end

-- Fails, saying where the two lists part.
local function compare(script, seq, got)
  local want = seq.events
  for i = 1, math.max(#want, #got) do
    if want[i] ~= got[i] then
      local lines = { ("seed %d, event %d, op #%s (again: "
        .. "TAPIO_PARITY_SEED=%d TAPIO_PARITY_COUNT=1; its Python side: "
        .. "python3 spec/support/%s %d 1)"):format(seq.seed, i,
        (want[i] or got[i]):match("^#(%d+)") or "?", seq.seed, script,
        seq.seed),
        "  asyncio: " .. tostring(want[i]),
        "  tapio:   " .. tostring(got[i]),
        "events before it:" }
      for j = math.max(1, i - 8), i - 1 do
        lines[#lines + 1] = "  " .. want[j]
      end
      error(table.concat(lines, "\n"), 0)
    end
  end
end

--- Runs count sequences (the default, unless the environment says)
-- of spec/support/SCRIPT on tapio: run(seq) returns the events of
-- seq.ops. Returns how many ran.
function M.check(script, default_count, run)
  local count, first, python = settings(default_count)
  for from = first, first + count - 1, BATCH do
    local n = math.min(BATCH, first + count - from)
    for _, seq in ipairs(python_sequences(python, script, from, n)) do
      compare(script, seq, run(seq))
    end
  end
  return count
end

-- A value as the parity scripts' logs write it (Python's: None, True,
-- False; a string as it is).
local function py_text(v)
  if v == nil then
    return "None"
  elseif type(v) == "boolean" then
    return v and "True" or "False"
  end
  return tostring(v)
end
M.py_text = py_text

--- events, log: a list of lines, and log(...) adding one (its values as
-- the parity scripts write them, separated by spaces).
function M.event_log()
  local events = {}
  return events, function(...)
    local words = {}
    for i = 1, select("#", ...) do
      words[i] = py_text((select(i, ...)))
    end
    events[#events + 1] = table.concat(words, " ")
  end
end

return M
