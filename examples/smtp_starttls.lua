-- An SMTP-like mail submission server and client with STARTTLS, ported
-- from python/smtp_starttls.py: the session starts in the clear, the
-- client pipelines EHLO and STARTTLS in one write, both sides upgrade the
-- connection with writer:start_tls, and over TLS the server lets a client
-- in by its certificate (AUTH EXTERNAL: the commonName must be one it
-- knows) before it takes a message, whose MAIL, RCPT and DATA the client
-- pipelines too.
-- Usage: tapio examples/smtp_starttls.lua server CERTDIR PORT
--        tapio examples/smtp_starttls.lua client CERTDIR PORT [WHO]
--        (CERTDIR as spec/tls/make_certs.sh makes it; WHO: the client
--        certificate's name there, client or other; none: no certificate)
local tapio = require "tapio"

local MODE, CERTS, PORT = arg[1], arg[2], tonumber(arg[3])
local WHO = arg[4] or "client"
local ALLOWED = { ["tapio client"] = true }

local function common_name(cert)
  for _, entry in ipairs(cert.subject) do
    if entry[1] == "commonName" then
      return entry[2]
    end
  end
end

local function server_context()
  return tapio.tls_context {
    side = "server",
    cafile = CERTS .. "/ca.pem",
    cert_file = CERTS .. "/server.pem", key_file = CERTS .. "/server.key",
    verify = "required", -- no certificate, no TLS
  }
end

local function session(reader, writer)
  local function reply(...) -- a multi-line reply is "250-...", then "250 ..."
    local lines = { ... }
    for i, text in ipairs(lines) do
      text = text:sub(1, 3) .. (i == #lines and " " or "-") .. text:sub(5)
      print("> " .. text)
      writer:write(text .. "\r\n")
    end
  end

  local user, mail
  reply("220 mail.test ESMTP")
  for line in reader:lines() do
    local command = line:gsub("\r?\n$", "")
    print("< " .. command)
    local verb = command:match("^%S*"):upper()
    local tls = writer:get_extra_info("tls_version") ~= nil
    if verb == "EHLO" then
      reply("250 mail.test", "250 PIPELINING",
            tls and "250 AUTH EXTERNAL" or "250 STARTTLS")
    elseif verb == "STARTTLS" and not tls then
      reply("220 ready to start TLS")
      if not pcall(writer.start_tls, writer, server_context()) then
        print("* TLS handshake failed") -- the connection is gone
        return
      end
    elseif verb == "AUTH" and tls and not user then
      local name = common_name(writer:get_extra_info("peercert"))
      if ALLOWED[name] then
        user = name
        reply(("235 %s authenticated"):format(name))
      else
        reply(("535 %s is not allowed"):format(name))
      end
    elseif (verb == "MAIL" or verb == "RCPT" or verb == "DATA")
        and not user then
      reply("530 authentication required")
    elseif verb == "MAIL" then
      mail = { command:sub(11) }
      reply("250 ok")
    elseif verb == "RCPT" and mail then
      mail[#mail + 1] = command:sub(9)
      reply("250 ok")
    elseif verb == "DATA" and mail and #mail > 1 then
      reply("354 end with .")
      local body = reader:readuntil("\r\n.\r\n")
      print(("* %s: mail from %s to %s, %d bytes"):format(user, mail[1],
        table.concat(mail, ", ", 2), #body - 5))
      reply("250 queued")
      mail = nil
    elseif verb == "QUIT" then
      reply("221 bye")
      break
    else
      reply("503 bad sequence of commands")
    end
  end
  writer:close()
  writer:wait_closed()
end

local function serve()
  local server = tapio.start_server(session, "127.0.0.1", PORT)
  server:serve_forever()
end

local function client()
  local context = tapio.tls_context {
    cafile = CERTS .. "/ca.pem",
    cert_file = WHO ~= "none" and ("%s/%s.pem"):format(CERTS, WHO) or nil,
    key_file = WHO ~= "none" and ("%s/%s.key"):format(CERTS, WHO) or nil,
  }
  local reader, writer = tapio.open_connection("127.0.0.1", PORT)

  local function send(...) -- pipelined: one write
    local commands = { ... }
    for _, command in ipairs(commands) do
      print("> " .. command)
    end
    writer:write(table.concat(commands, "\r\n") .. "\r\n")
  end

  local function replies(n) -- the last line of each of n replies
    local codes = {}
    while #codes < n do
      local line = reader:readline():gsub("\r?\n$", "")
      if line == "" then
        error(tapio.error("EOF", "the server closed the connection"), 0)
      end
      print("< " .. line)
      if line:sub(4, 4) ~= "-" then
        codes[#codes + 1] = line:sub(1, 3)
      end
    end
    return table.concat(codes, " ")
  end

  replies(1)
  send("EHLO client.test", "STARTTLS")
  if not replies(2):match("220$") then
    return
  end
  writer:start_tls(context, { server_hostname = "localhost" })
  print("* TLS: " .. writer:get_extra_info("tls_version"))
  local ok, err = pcall(function()
    send("EHLO client.test")
    replies(1)
    send("AUTH EXTERNAL")
    if replies(1) == "235" then
      send("MAIL FROM:<ann@client.test>", "RCPT TO:<bob@mail.test>", "DATA")
      if replies(3) == "250 250 354" then
        send("Subject: hello", "", "Hello, Bob.", ".")
        replies(1)
      end
    end
    send("QUIT")
    replies(1)
  end)
  -- in TLS 1.3 a refused certificate shows here: an alert, the end, or a
  -- reset (the server may close before it read all the client sent)
  if not ok and type(err) == "table" and (err.code == tapio.EOF
      or err.code == tapio.ECONNRESET or err.name:match("^ETLS")) then
    print("* the server ended the TLS session")
  elseif not ok then
    error(err, 0)
  end
  writer:close()
end

tapio.run(MODE == "server" and serve or client)
