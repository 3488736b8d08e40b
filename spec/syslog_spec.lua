-- examples/syslog_wire.lua's parser on RFC 5424's and RFC 3164's examples
-- and on what is no syslog message (an error value, never a raise, for
-- any bytes), and examples/syslog_collector.lua as a program fed by real
-- senders: logger (util-linux, over UDP in both formats and to the Unix
-- socket) and Python's logging.handlers.SysLogHandler
-- (spec/support/syslog_send.py); its output backed up, it pauses
-- reading, the kernel drops what the UDP socket cannot hold, and it
-- reports the drops. Every wait is on an event: a line of its output, a
-- sender's exit, the collector's exit.
local helper = require "spec.helper"
local tapio = helper.tapio

package.path = "examples/?.lua;" .. package.path
local wire = require "syslog_wire"
local collector = require "syslog_collector"

local python = "/usr/bin/python3"
local logger = "/usr/bin/logger"

describe("examples/syslog_wire.lua", function()
  it("parses RFC 5424's examples", function()
    local m = assert(wire.parse("<34>1 2003-10-11T22:14:15.003Z "
      .. "mymachine.example.com su - ID47 - \239\187\191'su root' failed for "
      .. "lonvick on /dev/pts/8"))
    assert.are.same({ format = "rfc5424", pri = 34, facility = 4,
      severity = 2, facility_name = "auth", severity_name = "crit",
      version = 1, timestamp = "2003-10-11T22:14:15.003Z",
      host = "mymachine.example.com", app = "su", msgid = "ID47",
      utf8 = true, message = "'su root' failed for lonvick on /dev/pts/8" },
      m)
    m = assert(wire.parse("<165>1 2003-08-24T05:14:15.000003-07:00 "
      .. "192.0.2.1 myproc 8710 - - %% It's time to make the do-nothing."))
    assert.are.same({ "local4", "notice", "2003-08-24T05:14:15.000003-07:00",
      "192.0.2.1", "myproc", "8710", "%% It's time to make the do-nothing." },
      { m.facility_name, m.severity_name, m.timestamp, m.host, m.app,
        m.procid, m.message })
    assert.is_nil(m.msgid)
    assert.is_nil(m.sd)
    m = assert(wire.parse("<165>1 2003-10-11T22:14:15.003Z "
      .. "mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut=\"3\" "
      .. "eventSource=\"Application\" eventID=\"1011\"][examplePriority@32473 "
      .. "class=\"high\"]"))
    assert.are.same({ { id = "exampleSDID@32473", params = { { "iut", "3" },
      { "eventSource", "Application" }, { "eventID", "1011" } } },
      { id = "examplePriority@32473", params = { { "class", "high" } } } },
      m.sd)
    assert.are.equal("", m.message)
  end)

  it("takes NILVALUEs, escapes in PARAM-VALUEs, and writes SD back",
     function()
    local m = assert(wire.parse("<0>1 - - - - - -"))
    assert.are.same({ "kern", "emerg", "" },
      { m.facility_name, m.severity_name, m.message })
    for _, k in ipairs({ "timestamp", "host", "app", "procid", "msgid",
                         "sd" }) do
      assert.is_nil(m[k])
    end
    local sd = '[id@1 a="x\\"y\\\\z\\]w" b="\\q" c=""]'
    m = assert(wire.parse("<191>1 - h a p m " .. sd .. " text\n"))
    assert.are.same({ "local7", "debug", "text" },
      { m.facility_name, m.severity_name, m.message })
    assert.are.same({ { "a", 'x"y\\z]w' }, { "b", "\\q" }, { "c", "" } },
      m.sd[1].params)
    assert.are.equal('[id@1 a="x\\"y\\\\z\\]w" b="\\\\q" c=""]',
                     wire.sd_text(m.sd))
    assert.are.equal("-", wire.sd_text(nil))
  end)

  it("parses RFC 3164's examples and what logger and Python send",
     function()
    local m = assert(wire.parse("<34>Oct 11 22:14:15 mymachine su: 'su root'"
      .. " failed for lonvick on /dev/pts/8"))
    assert.are.same({ format = "rfc3164", pri = 34, facility = 4,
      severity = 2, facility_name = "auth", severity_name = "crit",
      timestamp = "Oct 11 22:14:15", host = "mymachine", app = "su",
      message = "'su root' failed for lonvick on /dev/pts/8" }, m)
    assert.are.equal("--10-11T22:14:15", wire.iso_time(m))
    m = assert(wire.parse("<13>Feb  5 17:32:18 10.0.0.99 Use the BFG!"))
    assert.are.same({ "Feb  5 17:32:18", "10.0.0.99", "Use the BFG!" },
      { m.timestamp, m.host, m.message })
    assert.is_nil(m.app)
    assert.are.equal("--02-05T17:32:18", wire.iso_time(m))
    -- logger over the network, and to a local socket (no host)
    m = assert(wire.parse("<13>Dec  2 02:06:45 vm myapp[16576]: hello"))
    assert.are.same({ "vm", "myapp", "16576", "hello" },
      { m.host, m.app, m.procid, m.message })
    m = assert(wire.parse("<13>Dec  2 02:06:45 uapp: hello unix"))
    assert.are.same({ "uapp", "hello unix" }, { m.app, m.message })
    assert.is_nil(m.host)
    -- Python's SysLogHandler: no header, a NUL at the end
    m = assert(wire.parse("<12>py warn\0"))
    assert.are.same({ "user", "warning", "py warn" },
      { m.facility_name, m.severity_name, m.message })
    assert.is_nil(m.timestamp)
    m = assert(wire.parse("<11>app: one\ntwo\0"))
    assert.are.same({ "app", "one\ntwo" }, { m.app, m.message })
    -- not a timestamp: all of it is the message
    m = assert(wire.parse("<13>Foo 11 22:14:15 x"))
    assert.are.same({ "Foo 11 22:14:15 x" }, { m.message })
  end)

  it("gives an error value for what is no syslog message", function()
    local cases = {
      [""] = "empty datagram",
      ["hello"] = "no PRI: a syslog message begins with <",
      ["<>x"] = "bad PRI: <1 to 3 digits> expected",
      ["<1234>x"] = "bad PRI: <1 to 3 digits> expected",
      ["<13"] = "bad PRI: <1 to 3 digits> expected",
      ["<013>x"] = "bad PRI: leading zero",
      ["<192>x"] = "PRI out of range 0..191",
      ["<13>2 - - - - - -"] = "unknown syslog VERSION 2",
      ["<13>1 - h a p"] = "RFC 5424 header: TIMESTAMP HOSTNAME APP-NAME "
        .. "PROCID MSGID expected",
      ["<13>1 2003-13-11T22:14:15Z h a p m -"] =
        "bad TIMESTAMP 2003-13-11T22:14:15Z",
      ["<13>1 2003-10-11T22:14:15.1234567Z h a p m -"] =
        "bad TIMESTAMP 2003-10-11T22:14:15.1234567Z",
      ["<13>1 2003-10-11 22:14:15 h a p m -"] = "bad TIMESTAMP 2003-10-11",
      ["<13>1 - h a p " .. ("m"):rep(33) .. " -"] =
        "MSGID longer than 32 characters",
      ["<13>1 - h\1 a p m -"] = "HOSTNAME not printable US-ASCII",
      ["<13>1 - h a p m x"] = "STRUCTURED-DATA: [ or - expected",
      ["<13>1 - h a p m -x"] = "STRUCTURED-DATA: a space expected before MSG",
      ["<13>1 - h a p m [x"] = "unterminated SD-ELEMENT [x]",
      ["<13>1 - h a p m []"] = "bad SD-ID",
      ["<13>1 - h a p m [id a=b]"] = "bad SD-PARAM in [id]",
      ['<13>1 - h a p m [id a="b]'] = "unterminated PARAM-VALUE in [id]",
    }
    for datagram, why in pairs(cases) do
      local m, err = wire.parse(datagram)
      assert.is_nil(m, datagram)
      assert.are.equal(why, err, datagram)
    end
    assert.are.same({ nil, "a string expected" }, { wire.parse(nil) })
  end)

  it("never raises, whatever the bytes", function()
    local seed = 20240501
    local function rand(n) -- a small LCG: the same bytes every run
      seed = (seed * 1103515245 + 12345) % 2147483648
      return seed % n
    end
    local alphabet = '<>[]="\\ -:.T0123456789Zab\0\1\n\239\187\191'
    local prefixes = { "", "<13>", "<13>1 ", "<13>1 - h a p m ",
                       "<13>1 - h a p m [id ", "<13>Oct 11 22:14:15 " }
    for _ = 1, 3000 do
      local parts = { prefixes[rand(#prefixes) + 1] }
      for i = 1, rand(40) do
        local k = rand(#alphabet) + 1
        parts[i + 1] = alphabet:sub(k, k)
      end
      local s = table.concat(parts)
      local ok, m, err = pcall(wire.parse, s)
      assert(ok, ("raised on %q: %s"):format(s, tostring(m)))
      assert(type(m) == "table" or type(err) == "string", s)
      if m then
        assert.is_string(collector.format("x", s))
      end
    end
  end)
end)

describe("examples/syslog_collector.lua's lines", function()
  it("put a message on one line, control bytes escaped; a malformed "
     .. "one as such", function()
    assert.are.equal("a:1 rfc5424 user.notice - - app - - -: one\\ntwo"
      .. "\\x01\\\\", collector.format("a:1", "<13>1 - - app - - - "
      .. "one\ntwo\1\\"))
    local line, ok = collector.format("a:1", "garbage\1\n")
    assert.is_false(ok)
    assert.are.equal("a:1 malformed (no PRI: a syslog message begins with "
      .. "<): garbage\\x01\\n", line)
  end)
end)

-- ---- The program --------------------------------------------------------

-- Inside a task: the collector as a program on a free UDP port and a Unix
-- socket path of its own. c.port, c.path; c.line() its next line on
-- stdout; c.status() the next on stderr; c.stop() stops it (SIGTERM: it
-- must end with 0) and returns the rest of its stderr's lines.
local function start_collector()
  local path = os.tmpname()
  os.remove(path)
  local p = tapio.create_subprocess_exec(helper.HOST, {
    "examples/syslog_collector.lua", "--report", "100", "0", path },
    { stdout = tapio.PIPE, stderr = tapio.PIPE })
  local c = { p = p, path = path }
  local first = p.stderr:readline()
  c.port = tonumber(first:match("^listening on udp 127%.0%.0%.1:(%d+) and "
                                .. "unix " .. path:gsub("%p", "%%%0") .. "\n$"))
  assert(c.port, first)
  function c.line()
    return (p.stdout:readline():gsub("\n$", ""))
  end
  function c.status()
    return (p.stderr:readline():gsub("\n$", ""))
  end
  function c.stop()
    p:send_signal("SIGTERM")
    local err = p.stderr:read()
    assert.are.equal(0, p:wait())
    assert.is_nil(helper.exists(path) or nil, "the socket file was left")
    local lines = {}
    for l in err:gmatch("[^\n]+") do
      lines[#lines + 1] = l
    end
    return lines
  end
  return c
end

-- Inside a task: runs program with args; it must exit with 0.
local function send_with(program, args)
  local p = tapio.create_subprocess_exec(program, args)
  assert.are.equal(0, p:wait())
end

local function logger_udp(c, args)
  local argv = { "--server", "127.0.0.1", "--port", tostring(c.port),
                 "--udp" }
  for _, a in ipairs(args) do
    argv[#argv + 1] = a
  end
  send_with(logger, argv)
end

local function python_send(...)
  send_with(python, { "spec/support/syslog_send.py", ... })
end

-- A line's fields: FROM FORMAT FACILITY.SEVERITY TIMESTAMP HOST APP PROCID
-- MSGID, then SD and the message.
local function fields(line)
  local f = { line:match("^(%S+) (%S+) (%S+) (%S+) (%S+) (%S+) (%S+) (%S+) "
                         .. "(.-): (.*)$") }
  assert(#f == 10, line)
  return f
end

describe("examples/syslog_collector.lua", function()
  if not (helper.exists(logger) and helper.exists(python)) then
    return
  end

  it("prints what logger sends over UDP, in RFC 5424 and RFC 3164, and "
     .. "to the Unix socket", function()
    helper.run(function()
      local c = start_collector()
      logger_udp(c, { "--rfc5424", "-t", "myapp", "-p", "local3.warning",
        "--msgid", "ID47", "--sd-id", "exampleSDID@32473", "--sd-param",
        'iut="3"', "hello 5424" })
      local f = fields(c.line())
      assert.truthy(f[1]:match("^127%.0%.0%.1:%d+$"))
      assert.are.same({ "rfc5424", "local3.warning", "myapp", "-", "ID47",
        "hello 5424" }, { f[2], f[3], f[6], f[7], f[8], f[10] })
      assert.truthy(f[4]:match("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d"))
      assert.truthy(f[9]:match('%[exampleSDID@32473 iut="3"%]$'), f[9])
      logger_udp(c, { "--rfc3164", "-t", "myapp", "-p", "daemon.err",
        "--id=4242", "hello 3164" })
      f = fields(c.line())
      assert.are.same({ "rfc3164", "daemon.err", "myapp", "4242", "-", "-",
        "hello 3164" }, { f[2], f[3], f[6], f[7], f[8], f[9], f[10] })
      assert.truthy(f[4]:match("^%-%-%d%d%-%d%dT%d%d:%d%d:%d%d$"), f[4])
      send_with(logger, { "-u", c.path, "-t", "uapp", "-p", "mail.info",
        "hello unix" })
      f = fields(c.line())
      assert.are.same({ "unix", "rfc3164", "mail.info", "-", "uapp", "-",
        "hello unix" }, { f[1], f[2], f[3], f[5], f[6], f[7], f[10] })
      send_with(logger, { "-u", c.path, "--rfc5424", "-t", "uapp",
        "-p", "user.debug", "hello unix 5424" })
      f = fields(c.line())
      assert.are.same({ "unix", "rfc5424", "user.debug", "uapp",
        "hello unix 5424" }, { f[1], f[2], f[3], f[6], f[10] })
      assert.are.same({ "stopped: 4 messages (0 malformed), 0 datagrams "
        .. "dropped" }, c.stop())
    end)
  end)

  it("prints what Python's SysLogHandler sends over UDP and to the Unix "
     .. "socket; a malformed datagram as such", function()
    helper.run(function(loop)
      local c = start_collector()
      python_send("udp", tostring(c.port), "warning", "py warn")
      assert.truthy(c.line():match("^127%.0%.0%.1:%d+ rfc3164 user%.warning "
        .. "%- %- %- %- %- %-: py warn$"))
      python_send("udp", tostring(c.port), "--format",
        "%(name)s[%(process)d]: %(message)s", "error", "one\ntwo")
      local f = fields(c.line())
      assert.are.same({ "user.err", "app", "one\\ntwo" },
        { f[3], f[6], f[10] })
      assert.truthy(f[7]:match("^%d+$"))
      python_send("unix", c.path, "critical", "py unix")
      assert.are.equal("unix rfc3164 user.crit - - - - - -: py unix",
        c.line())
      local t = loop:create_datagram_endpoint(function() return {} end,
        { remote_addr = { "127.0.0.1", c.port } })
      t:sendto("<999>nonsense")
      t:sendto("<14>1 - - late - - - still read")
      assert.truthy(c.line():match("^127%.0%.0%.1:%d+ malformed %(PRI out "
        .. "of range 0%.%.191%): <999>nonsense$"))
      assert.truthy(c.line():match(": still read$"))
      t:close()
      assert.are.same({ "stopped: 5 messages (1 malformed), 0 datagrams "
        .. "dropped" }, c.stop())
    end)
  end)

  it("pauses reading while its output is backed up; the kernel drops "
     .. "what the UDP socket cannot hold, and it reports that", function()
    helper.run(function(loop)
      local c = start_collector()
      -- over the Unix socket (its sender waits, none is lost) until the
      -- collector's stdout, which nobody reads yet, backs up
      local unix = loop:create_datagram_endpoint(function() return {} end,
        { remote_addr = c.path })
      local pad, nunix = ("u"):rep(200), 3000
      for i = 1, nunix do
        unix:sendto(("<14>1 - - unixer - - - %d %s"):format(i, pad))
      end
      assert.are.equal("reading paused (output backed up)", c.status())
      -- over UDP, twice what its receive buffer holds
      local f = assert(io.open("/proc/sys/net/core/rmem_default"))
      local rmem = assert(tonumber(f:read("*l")))
      f:close()
      local udp = loop:create_datagram_endpoint(function() return {} end,
        { remote_addr = { "127.0.0.1", c.port } })
      local nudp, big = math.floor(2 * rmem / 400) + 100, ("d"):rep(400)
      for i = 1, nudp do
        udp:sendto(("<14>1 - - udper - - - %d %s"):format(i, big))
      end
      -- now read what it printed: it resumes, and tells of the drops
      local got = { unixer = {}, udper = {} }
      local counted = tapio.Event()
      local want
      local reader = tapio.create_task(function()
        while true do
          local fl = fields(c.line())
          local list = got[fl[6]]
          list[#list + 1] = tonumber(fl[10]:match("^(%d+) "))
          if want and #got.unixer + #got.udper == want then
            counted:set()
          end
        end
      end)
      local dropped
      repeat
        local status = c.status()
        assert.truthy(status:match("^reading paused") or status:match(
          "^reading resumed") or status:match("^dropped"), status)
        dropped = tonumber(status:match("^dropped (%d+) datagrams on udp "
          .. "127%.0%.0%.1:" .. c.port .. " %(its receive buffer was full%)$"))
      until dropped
      assert.is_true(dropped > 0 and dropped < nudp)
      want = nunix + nudp - dropped
      if #got.unixer + #got.udper < want then
        counted:wait()
      end
      reader:cancel()
      for i = 1, nunix do -- all of them, in order
        assert(got.unixer[i] == i, "unix datagram " .. i)
      end
      for i = 1, nudp - dropped do -- those before the socket was full
        assert(got.udper[i] == i, "UDP datagram " .. i)
      end
      unix:close()
      udp:close()
      local rest = c.stop()
      assert.are.equal(("stopped: %d messages (0 malformed), %d datagrams "
        .. "dropped"):format(want, dropped), rest[#rest])
    end, { deadline = 30 })
  end)
end)
