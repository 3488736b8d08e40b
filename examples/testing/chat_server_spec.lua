-- The spec of examples/chat_server.lua: the server and its clients on
-- tapio.testing's virtual network and clock.
-- Run: busted examples/testing/chat_server_spec.lua
-- (make test: example_chat_server).
local tapio = require "tapio"
local testing = require "tapio.testing"
local chat = require "examples.chat_server"

local HOST, PORT = "127.0.0.1", 8888

-- The server, as the program runs it, in a task of its own (cancelling
-- it is Ctrl-C); its print goes to printed.
local function serve(printed)
  local real_print = print
  local task = tapio.create_task(function()
    _G.print = function(s) printed[#printed + 1] = s end
    local ok, err = pcall(chat.main, PORT)
    _G.print = real_print
    error(err, 0)
  end)
  while #printed == 0 do -- until it listens
    tapio.sleep(0)
  end
  return task
end

-- A client: its streams, and its nick as the server names it (welcome).
local function join()
  local reader, writer = tapio.open_connection(HOST, PORT)
  local nick = reader:readline():match("^welcome, (.*)\n$")
  return reader, writer, nick
end

describe("the chat server", function()
  it("passes each line to every other client, in order",
     testing.run(function()
    local printed = {}
    local server = serve(printed)
    assert.same({ "Serving on ('127.0.0.1', 8888)" }, printed)
    local ra, wa = join()
    local rb, wb, b = join()
    local rc, wc = join()
    wa:write("/nick ann\none\ntwo\n")
    wb:write("three\n")
    for _, r in ipairs({ rb, rc }) do
      local got = {}
      for i = 1, 3 do
        got[i] = r:readline()
      end
      assert.matches(" is now ann\n$", got[1])
      assert.same({ "ann: one\n", "ann: two\n" }, { got[2], got[3] })
    end
    assert.equal(b .. ": three\n", rc:readline())
    assert.equal(b .. ": three\n", ra:readline()) -- its own: not to b
    wb:write("/quit\n")
    assert.equal(b .. " left\n", ra:readline())
    assert.equal(b .. " left\n", rc:readline())
    assert.equal("", rb:read()) -- closed
    server:cancel()
    for _, r in ipairs({ ra, rc }) do
      assert.equal("server shutting down\n", r:readline())
      assert.equal("", r:read())
    end
    assert.is_false(pcall(server.await, server))
    assert.is_true(server:cancelled())
    for _, w in ipairs({ wa, wb, wc }) do
      w:close()
    end
  end))

  it("drops a client that stops reading once 1 MiB waits for it",
     testing.run(function()
    local printed = {}
    local server = serve(printed)
    local _, wa = join()
    local rb, wb = join()
    local rs, ws = join()
    local line = ("x"):rep(9999) .. "\n"
    local lines = 0
    -- the slow one reads nothing; b keeps up
    local reading = tapio.create_task(function()
      while true do
        local got = rb:readline()
        if got == "" then
          return
        end
        lines = lines + (got:match(": x+\n$") and 1 or 0)
      end
    end)
    local sent = 0
    while sent < 4 * chat.MAX_BUFFERED do
      wa:write(line)
      wa:drain()
      sent = sent + #line
    end
    tapio.sleep(0)
    -- the slow client got what was on its way, then the end
    local got = 0
    while true do
      local ok, data = pcall(rs.read, rs, 65536)
      if not ok or data == "" then
        break
      end
      got = got + #data
    end
    assert.is_true(got < sent - chat.MAX_BUFFERED, got)
    server:cancel()
    pcall(server.await, server)
    reading:await()
    assert.equal(sent / #line, lines)
    -- dropped at the first line past its limit: at most one line over
    local waiting = tonumber(printed[2]:match(
      "^%('127.0.0.1', %d+%) dropped: (%d+) bytes wait for it$"))
    local a_line = #"('127.0.0.1', 32769): " + #line
    assert.is_true(waiting > chat.MAX_BUFFERED, waiting)
    assert.is_true(waiting <= chat.MAX_BUFFERED + a_line, waiting)
    assert.equal(2, #printed)
    wa:close()
    wb:close()
    ws:close()
  end))
end)
