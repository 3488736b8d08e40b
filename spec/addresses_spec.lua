-- The addresses a transport keeps: what connection_made learned is still
-- there inside connection_lost after the peer reset the connection (the
-- socket itself no longer knows its peer then), as asyncio keeps them.
local helper = require "spec.helper"

describe("a transport reset by its peer", function()
  it("still answers peername and sockname inside connection_lost",
     function()
    helper.run(function(loop)
      local seen = loop:create_future()
      local server_proto = helper.recorder(loop, {
        connection_lost = function(self, err)
          seen:set_result({
            err = err,
            peer = self.transport:get_extra_info("peername"),
            sock = self.transport:get_extra_info("sockname"),
          })
        end,
      })
      local server, t, _, sp = helper.pair(loop, server_proto)
      local client_addr = t:get_extra_info("sockname")
      local server_addr = t:get_extra_info("peername")
      -- bytes left unread when the client closes make its kernel send a
      -- reset instead of a FIN
      t:pause_reading()
      sp.transport:write("never read")
      t:abort()
      local got = seen:await()
      assert.are.equal("ECONNRESET", got.err and got.err.name)
      assert.are.equal(client_addr, got.peer)
      assert.are.equal(server_addr, got.sock)
      server:close()
    end)
  end)
end)
