-- The reference's "Connecting Existing Sockets": wait until a socket
-- receives data, with create_connection on one end of a socket pair.
-- Usage: tapio examples/existing_socket.lua
local tapio = require "tapio"

local MyProtocol = {}
MyProtocol.__index = MyProtocol

function MyProtocol.new(loop)
  return setmetatable({ transport = nil, on_con_lost = loop:create_future() },
                      MyProtocol)
end

function MyProtocol:connection_made(transport)
  self.transport = transport
end

function MyProtocol:data_received(data)
  print("Received: " .. data)
  -- We are done: close the transport; connection_lost() will be called
  -- automatically.
  self.transport:close()
end

function MyProtocol:connection_lost(exc)
  -- The socket has been closed
  self.on_con_lost:set_result(true)
end

tapio.run(function()
  local loop = tapio.get_running_loop()
  -- A pair of connected sockets (descriptors): tapio.socketpair() is the
  -- small helper standing in for Python's socket.socketpair().
  local rsock, wsock = tapio.socketpair()
  -- Register the socket to wait for data; tapio owns rsock from now on.
  local transport, protocol = loop:create_connection(function()
    return MyProtocol.new(loop)
  end, { sock = rsock })
  -- Simulate the reception of data from the network.
  loop:call_soon(tapio.send, wsock, "abc")
  local ok, err = pcall(protocol.on_con_lost.await, protocol.on_con_lost)
  transport:close()
  tapio.close_fd(wsock)
  if not ok then
    error(err, 0)
  end
end)
