-- A read pipe and a write pipe through cat: lines go into one pipe with
-- connect_write_pipe, cat copies them into another, and connect_read_pipe
-- reads them back. The child is started with the pipes' far ends as its
-- stdin and stdout (descriptors given in subprocess_exec's options).
-- Usage: tapio examples/pipe_cat.lua
local tapio = require "tapio"

local lines = { "Hello World!\n", "through cat\n", "and back\n" }

-- The reading side: prints each line that arrives (cat may pass them in
-- one piece or several), resolves done at the end.
local ReadProtocol = {}
ReadProtocol.__index = ReadProtocol

function ReadProtocol:data_received(data)
  self.pending = self.pending .. data
  for line in self.pending:gmatch("[^\n]*\n") do
    print(("Received: %s"):format(tapio.repr(line)))
  end
  self.pending = self.pending:match("[^\n]*$")
end

function ReadProtocol:eof_received()
  print("Received the end of the output")
end

function ReadProtocol:connection_lost(exc)
  self.done:set_result(exc)
end

-- The writing side: a plain protocol (flow control would go here).
local WriteProtocol = {}

-- cat itself: only its exit matters here.
local CatProtocol = {}
CatProtocol.__index = CatProtocol

function CatProtocol:process_exited()
  self.exited:set_result(true)
end

tapio.run(function()
  local loop = tapio.get_running_loop()
  local in_r, in_w = tapio.pipe()     -- we write in_w, cat reads in_r
  local out_r, out_w = tapio.pipe()   -- cat writes out_w, we read out_r

  local cat_exited = loop:create_future()
  local cat = loop:subprocess_exec(function()
    return setmetatable({ exited = cat_exited }, CatProtocol)
  end, "cat", nil, { stdin = in_r, stdout = out_w })
  tapio.close_fd(in_r) -- the child has its own copies now
  tapio.close_fd(out_w)

  local done = loop:create_future()
  loop:connect_read_pipe(function()
    return setmetatable({ done = done, pending = "" }, ReadProtocol)
  end, out_r)
  local writer = loop:connect_write_pipe(function()
    return WriteProtocol
  end, in_w)

  for _, line in ipairs(lines) do
    writer:write(line)
    print(("Sent: %s"):format(tapio.repr(line)))
  end
  writer:write_eof() -- closes the write pipe: cat sees the end of input

  done:await()
  cat_exited:await()
  print(("cat exited with %d"):format(cat:get_returncode()))
end)
