-- The streams page's "register an open socket to wait for data using
-- streams": open_connection on one end of a socket pair.
-- Usage: tapio examples/streams_socketpair.lua
local tapio = require "tapio"

local function wait_for_data()
  -- The running loop, for its low-level call_soon.
  local loop = tapio.get_running_loop()

  -- A pair of connected sockets (descriptors, as tapio.socketpair()
  -- gives them, standing in for Python's socket.socketpair()).
  local rsock, wsock = tapio.socketpair()

  -- Register the open socket to wait for data; tapio owns rsock now.
  local reader, writer = tapio.open_connection({ sock = rsock })

  -- Simulate the reception of data from the network.
  loop:call_soon(tapio.send, wsock, "abc")

  -- Wait for data.
  local data = reader:read(100)

  -- Got data, we are done: close the socket.
  print("Received: " .. data)
  writer:close()

  -- Close the second socket.
  tapio.close_fd(wsock)
end

tapio.run(wait_for_data)
