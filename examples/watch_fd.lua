-- The reference's "watch a file descriptor for read events": wait until a
-- descriptor receives data with the loop's add_reader, on one end of a
-- socket pair, then stop the loop.
-- Usage: tapio examples/watch_fd.lua
local tapio = require "tapio"

-- Create a pair of connected file descriptors (tapio.socketpair() stands
-- in for Python's socket.socketpair(): descriptors, not socket objects)
local rsock, wsock = tapio.socketpair()

local loop = tapio.new_loop()

local function reader()
  local data = tapio.recv(rsock, 100)
  print("Received: " .. data)

  -- We are done: unregister the file descriptor
  loop:remove_reader(rsock)

  -- Stop the event loop
  loop:stop()
end

-- Register the file descriptor for read event
loop:add_reader(rsock, reader)

-- Simulate the reception of data from the network
loop:call_soon(tapio.send, wsock, "abc")

-- Run the event loop; whatever happens, close the sockets and the loop
local ok, err = pcall(loop.run_forever, loop)
tapio.close_fd(rsock)
tapio.close_fd(wsock)
loop:close()
if not ok then
  error(err, 0)
end
