-- A small line protocol with an idle timeout, and the protocol its spec
-- (line_spec.lua) tests with tapio.testing: a line "PING" is answered
-- "PONG", "QUIT" is answered "BYE" and ends the connection, any other
-- line comes back as "ECHO <line>". A client silent for idle_timeout
-- seconds (30 unless given) is told "TIMEOUT" and closed.
--
-- Nothing here knows about tests: the idle timer is the loop's
-- call_later, so on a real loop it takes 30 real seconds and on
-- tapio.testing's virtual clock it fires when the test moves the clock.
local LineProtocol = {}
LineProtocol.__index = LineProtocol

local M = { DEFAULT_IDLE = 30 }

--- line_protocol.new([opts]): a protocol for one connection.
-- opts.idle_timeout: seconds of silence before the server hangs up.
function M.new(opts)
  opts = opts or {}
  return setmetatable({ idle = opts.idle_timeout or M.DEFAULT_IDLE,
                        buf = "" }, LineProtocol)
end

-- (Re)starts the idle timer: any input means the client is alive.
function LineProtocol:arm()
  if self.timer then
    self.timer:cancel()
  end
  self.timer = self.loop:call_later(self.idle, function()
    self.timer = nil
    self.t:write("TIMEOUT\n")
    self.t:close()
  end)
end

function LineProtocol:disarm()
  if self.timer then
    self.timer:cancel()
    self.timer = nil
  end
end

function LineProtocol:connection_made(t)
  self.t, self.loop = t, t:get_loop()
  self:arm()
end

function LineProtocol:answer(line)
  if line == "PING" then
    self.t:write("PONG\n")
  elseif line == "QUIT" then
    self.t:write("BYE\n")
    self:disarm()
    self.t:close()
  else
    self.t:write("ECHO " .. line .. "\n")
  end
end

function LineProtocol:data_received(data)
  if self.t:is_closing() then
    return -- after QUIT: the rest is not read
  end
  self:arm()
  self.buf = self.buf .. data
  for line in self.buf:gmatch("([^\n]*)\n") do
    self:answer(line)
    if self.t:is_closing() then
      break
    end
  end
  self.buf = self.buf:match("[^\n]*$")
end

-- The client ended its side: an unfinished line is dropped, and the
-- transport closes (nil: the reference's default).
function LineProtocol:eof_received()
  self:disarm()
end

function LineProtocol:connection_lost()
  self:disarm()
end

return M
