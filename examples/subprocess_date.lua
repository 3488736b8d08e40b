-- The reference's loop.subprocess_exec() example, in its newer form (the
-- Japanese page's): a SubprocessProtocol collects a child's stdout and
-- waits for both its exit and its pipe's end (process_exited may come
-- before pipe_connection_lost). The child is python3 printing
-- datetime.datetime.now(), as the reference runs sys.executable.
-- Usage: tapio examples/subprocess_date.lua [python3]
local tapio = require "tapio"

local python = arg and arg[1] or "python3"

local DateProtocol = {}
DateProtocol.__index = DateProtocol

function DateProtocol.new(exit_future)
  return setmetatable({ exit_future = exit_future, output = {},
                        pipe_closed = false, exited = false }, DateProtocol)
end

function DateProtocol:pipe_connection_lost(fd, exc)
  self.pipe_closed = true
  self:check_for_exit()
end

function DateProtocol:pipe_data_received(fd, data)
  self.output[#self.output + 1] = data
end

function DateProtocol:process_exited()
  self.exited = true
  -- process_exited() can be called before pipe_connection_lost():
  -- wait until both are called.
  self:check_for_exit()
end

function DateProtocol:check_for_exit()
  if self.pipe_closed and self.exited then
    self.exit_future:set_result(true)
  end
end

local function get_date()
  -- Get a reference to the event loop as we plan to use low-level APIs.
  local loop = tapio.get_running_loop()
  local code = "import datetime; print(datetime.datetime.now())"
  local exit_future = loop:create_future()

  -- Create the subprocess controlled by DateProtocol; redirect the
  -- standard output into a pipe (stdin and stderr are the parent's).
  local transport, protocol = loop:subprocess_exec(function()
    return DateProtocol.new(exit_future)
  end, python, { "-c", code }, { stdin = "inherit", stderr = "inherit" })

  -- Wait for the subprocess exit using the process_exited() method of the
  -- protocol.
  exit_future:await()

  -- Close the stdout pipe.
  transport:close()

  -- Read the output which was collected by the pipe_data_received()
  -- method of the protocol.
  local data = table.concat(protocol.output)
  return (data:gsub("%s+$", ""))
end

local date = tapio.run(get_date)
print(("Current date: %s"):format(date))
