-- The streams page's "get HTTP headers": a HEAD request for the URL
-- given, each header line printed as "HTTP header> ...". Unlike the
-- page's Python, a port in the URL is used (else 80, or 443 for https).
-- Usage: tapio examples/http_headers.lua URL
local tapio = require "tapio"

local url = assert(arg and arg[1], "usage: http_headers.lua URL")

-- scheme://host[:port]/path?query#fragment, as urllib.parse.urlsplit
-- splits it (an IPv6 host in brackets).
local function urlsplit(s)
  local scheme, rest = s:match("^(%a[%w+.-]*)://(.*)$")
  assert(scheme, "not a URL: " .. s)
  local netloc, path = rest:match("^([^/?#]*)([^?#]*)")
  local host, port = netloc:match("^%[(.+)%]:?(%d*)$")
  if not host then
    host, port = netloc:match("^([^:]*):?(%d*)$")
  end
  return { scheme = scheme:lower(), hostname = host:lower(),
           port = tonumber(port), path = path }
end

local function print_http_headers(target)
  local u = urlsplit(target)
  local reader, writer
  if u.scheme == "https" then
    -- as asyncio's ssl=True: a client context trusting the system's CAs
    -- (SSL_CERT_FILE names others), checking the host's name
    reader, writer = tapio.open_connection(u.hostname, u.port or 443,
                                           { ssl = true })
  else
    reader, writer = tapio.open_connection(u.hostname, u.port or 80)
  end

  local query = ("HEAD %s HTTP/1.0\r\nHost: %s\r\n\r\n")
    :format(u.path ~= "" and u.path or "/", u.hostname)

  writer:write(query)
  while true do
    local line = reader:readline()
    if line == "" then
      break
    end

    line = line:gsub("%s+$", "")
    if line ~= "" then
      print(("HTTP header> %s"):format(line))
    end
  end

  -- Ignore the body, close the socket.
  writer:close()
end

tapio.run(print_http_headers, url)
