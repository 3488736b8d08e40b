-- STARTTLS, as SMTP does it: a line-based protocol that begins in the
-- clear and upgrades the same connection to TLS when the client asks,
-- with loop:start_tls. Whatever followed the STARTTLS line in the same
-- read (a client that sends its ClientHello at once) is handed to the
-- handshake, so nothing is lost.
-- Usage: tapio examples/starttls.lua server [certdir [port]]
--        tapio examples/starttls.lua client [cafile [port]]
--        (certdir holds server.pem and server.key; 127.0.0.1, 8587)
local tapio = require "tapio"

local mode = arg and arg[1] or "server"
local path = arg and arg[2] or "."
local port = tonumber(arg and arg[3]) or 8587

-- Splits what arrives into lines; line(self, text) gets each, and may
-- return the bytes left after it unread (start_tls takes them).
local function line_protocol(line)
  local p = { buffer = "" }
  function p:connection_made(transport)
    self.transport = transport
    if self.greet then
      self:greet()
    end
  end
  function p:data_received(data)
    self.buffer = self.buffer .. data
    while true do
      local at = self.buffer:find("\r\n", 1, true)
      if not at then
        return
      end
      local text = self.buffer:sub(1, at - 1)
      self.buffer = self.buffer:sub(at + 2)
      if line(self, text) == "upgrading" then
        return -- the rest of the buffer is the TLS handshake's
      end
    end
  end
  function p:send(text)
    print("> " .. text)
    self.transport:write(text .. "\r\n")
  end
  return p
end

local function server()
  local context = tapio.tls_context {
    side = "server",
    cert_file = path .. "/server.pem",
    key_file = path .. "/server.key",
  }
  local loop = tapio.get_running_loop()
  local done = loop:create_future()
  local srv = loop:create_server(function()
    local p = line_protocol(function(self, text)
      print("< " .. text)
      if text == "STARTTLS" then
        self:send("220 Ready to start TLS")
        local rest = self.buffer
        self.buffer = ""
        loop:start_tls(self.transport, self, context, nil, rest)
          :add_done_callback(function(f)
            f:result() -- a failure goes to the exception handler
          end)
        return "upgrading"
      elseif text == "QUIT" then
        self:send("221 Bye")
        self.transport:close()
      else
        local tls = self.transport:get_extra_info("tls_version")
        self:send("250 " .. text .. (tls and " (over " .. tls .. ")"
                                          or " (in the clear)"))
      end
    end)
    function p:greet()
      self:send("220 tapio STARTTLS example")
    end
    function p:connection_lost()
      done:set_result(true)
    end
    return p
  end, "127.0.0.1", port)
  done:await() -- one client, then the end
  srv:close()
end

local function client()
  local loop = tapio.get_running_loop()
  local context = tapio.tls_context { cafile = path }
  local replies = loop:create_future()
  local p = line_protocol(function(self, text)
    print("< " .. text)
    self.replies[#self.replies + 1] = text
    if self.waiting and not self.waiting:done() then
      self.waiting:set_result(text)
    end
  end)
  p.replies = {}
  function p:connection_lost()
    replies:set_result(true)
  end
  local function ask(text)
    p.waiting = loop:create_future()
    if text then
      p:send(text)
    end
    return p.waiting:await()
  end
  local transport = loop:create_connection(function() return p end,
                                           "127.0.0.1", port)
  ask() -- the greeting
  ask("HELLO")
  ask("STARTTLS")
  loop:start_tls(transport, p, context, { server_hostname = "localhost" })
  print("TLS started: " .. transport:get_extra_info("tls_version"))
  ask("HELLO")
  ask("QUIT")
  replies:await()
end

tapio.run(mode == "server" and server or client)
