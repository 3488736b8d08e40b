-- The date example with create_subprocess_exec: a python3 child prints
-- datetime.datetime.now(); its stdout is a StreamReader, read a line of.
-- Usage: tapio examples/subprocess_date_streams.lua [python3]
local tapio = require "tapio"

local python = arg and arg[1] or "python3"

local function get_date()
  local code = "import datetime; print(datetime.datetime.now())"

  -- Create the subprocess; redirect the standard output into a pipe.
  local proc = tapio.create_subprocess_exec(python, { "-c", code },
                                            { stdout = tapio.PIPE })

  -- Read one line of output.
  local data = proc.stdout:readline()
  local line = data:gsub("%s+$", "")

  -- Wait for the subprocess exit.
  proc:wait()
  return line
end

local date = tapio.run(get_date)
print(("Current date: %s"):format(date))
