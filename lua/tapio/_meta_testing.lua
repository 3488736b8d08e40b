---@meta tapio.testing
-- Definitions of tapio.testing (require "tapio.testing") for the Lua
-- language server, as _meta.lua's for tapio; never loaded at run time.
-- spec/embed/test_meta.lua checks them against the module too.

---A memory pair side's delivery options (pipe_pair's opts, opts.a, opts.b).
---@class tapio.testing.PairOptions
---@field loop? tapio.Loop default: the running one
---@field chunk? integer|integer[] a read's size; {min, max}: drawn from seed
---@field splits? integer[] ascending offsets no read spans
---@field delay? number seconds between a write (or an end) and its arrival
---@field capacity? integer bytes a direction holds (65536)
---@field seed? integer the seed of chunk's draws
---@field a? tapio.testing.PairOptions what side a sends
---@field b? tapio.testing.PairOptions what side b sends
---@field limit? integer open_pair only: each reader's limit

---What testing.fault breaks; counts are bytes from now, n or {lo, hi}.
---@class tapio.testing.Faults
---@field reset_after? integer|integer[] a reset both ways after n bytes in
---@field read_error? string|integer reading fails with it ("EIO")
---@field read_error_after? integer|integer[]
---@field eof_after? integer|integer[] end of file after n bytes in
---@field write_error? string|integer sending fails with it ("EPIPE")
---@field write_error_after? integer|integer[]
---@field stop_reading? boolean|integer|integer[] no more input taken
---@field stop_writing? boolean|integer|integer[] the output not taken
---@field drip? integer at most n bytes per read
---@field drip_interval? number one read per so many seconds
---@field seed? integer the seed of {lo, hi} draws

---testing.run's options.
---Faults of what a virtual loop's datagram endpoint sends.
---@class tapio.testing.DatagramFaultCounts
---@field sent integer datagrams sent since the faults were set
---@field lost integer lost by loss's draws
---@field dropped integer lost as drop named them
---@field duplicated integer sent twice
---@field reordered integer held back to let later ones go first
---@field delayed integer held delay + jitter > 0 seconds

---@class tapio.testing.DatagramFaults
---@field loss? number the chance a datagram is lost (0..1)
---@field drop? integer[] these are lost (1: the next one sent), ascending
---@field duplicate? number the chance it arrives twice (0..1)
---@field reorder? integer it lets up to so many later ones go first
---@field delay? number seconds (loop time) in flight
---@field jitter? number plus 0..jitter seconds, drawn: they reorder
---@field capacity? integer bytes in flight before the write buffer fills
---@field seed? integer the seed of the draws (default: the session's)

---@class tapio.testing.RunOptions
---@field seed? integer the session's seed for the run
---@field autojump? boolean the clock jumps to the next timer while waiting
---@field errors_ok? boolean calls of the exception handler allowed
---@field tasks_ok? boolean tasks left pending allowed
---@field transports_ok? boolean transports left open allowed
---@field servers_ok? boolean servers left open allowed
---@field real? boolean on a fresh real loop instead (clock is nil)
---@field deadline? number opts.real: seconds the body has (default 10)
---@field timers_ok? boolean timers left pending allowed
---@field step_limit? integer steps a run may make at one virtual time (100000; 0: none)

---The kit for testing protocols (lua/README.md, "Testing protocols").
---@class tapio.testing
local testing = {}

---Sets the session's seed (TAPIO_TEST_SEED's default); returns it.
---@param n? integer
---@return integer
function testing.seed(n) end
---The clock of a virtual loop.
---@param loop tapio.Loop
---@return tapio.testing.Clock
function testing.clock(loop) end
---The steps a run of virtual loop may make at one virtual time before it
---raises (a busy loop); n (0: none) sets it first.
---@param loop tapio.Loop
---@param n? integer
---@return integer
function testing.step_limit(loop, n) end
---A loop on a virtual clock at 0, and its clock.
---@return tapio.Loop
---@return tapio.testing.Clock
function testing.new_loop() end
---Joins two protocols through memory; their transports, at once.
---@param protocol_a tapio.Protocol
---@param protocol_b tapio.Protocol
---@param opts? tapio.testing.PairOptions
---@return tapio.Transport
---@return tapio.Transport
function testing.pipe_pair(protocol_a, protocol_b, opts) end
---Two reader/writer pairs joined through memory (the async rule).
---@param opts? tapio.testing.PairOptions
---@return tapio.StreamReader reader_a
---@return tapio.StreamWriter writer_a
---@return tapio.StreamReader reader_b
---@return tapio.StreamWriter writer_b
function testing.open_pair(opts) end
---The bytes t wrote that its peer has not read.
---@param t tapio.Transport
---@return string
function testing.in_flight(t) end
---The other side of t's pair, or nil.
---@param t tapio.Transport
---@return tapio.Transport?
function testing.peer(t) end
---Transports of the loop made and not yet ended.
---@param loop tapio.Loop
---@return integer
function testing.transport_count(loop) end
---Servers of the loop made and not yet closed.
---@param loop tapio.Loop
---@return integer
function testing.server_count(loop) end
---Breaks t's bytes where spec says; the faults as set, counts drawn.
---@param t tapio.Transport
---@param spec tapio.testing.Faults
---@return table
function testing.fault(t, spec) end
---Lifts t's faults: what was held goes on.
---@param t tapio.Transport
function testing.clear_faults(t) end
---Breaks what datagram endpoint t (a virtual loop's, or a real socket's:
---what is delayed or held back waits in tapio; capacity: virtual only)
---sends from now on; nil or {} clears. Returns the spec, with the seed
---used.
---@param t tapio.DatagramTransport
---@param spec? tapio.testing.DatagramFaults
---@return tapio.testing.DatagramFaults
function testing.datagram_faults(t, spec) end
---The bytes of t's datagrams in flight (sent, not yet arrived; on a real
---endpoint: held by its faults).
---@param t tapio.DatagramTransport
---@return integer
function testing.datagram_in_flight(t) end
---How many datagrams each fault of t hit in its life (setting or clearing
---its faults does not reset them; they read after its connection_lost).
---@param t tapio.DatagramTransport
---@return tapio.testing.DatagramFaultCounts
function testing.datagram_fault_counts(t) end
---A protocol that writes down every callback in rec.events, then calls
---inner's. opts.merge: bytes that follow bytes are one event. opts.kind:
---a datagram or subprocess protocol's callbacks too, without an inner.
---@param inner? table
---@param opts? {merge: boolean?, kind: "datagram"|"subprocess"|nil}
---@return tapio.testing.Recorder
function testing.recorder(inner, opts) end
---Registers a fake program on virtual loop `loop`: every subprocess_exec
---of name (or a path ending in /name; subprocess_shell: the command, else
---"sh") runs fn(child) as a task instead of a real child; its return value
---(default 0) is the exit status, an error exits 1 and is reported. fn
---nil removes it.
---@param loop tapio.Loop
---@param name string
---@param fn? fun(child: tapio.testing.Child): integer?
function testing.fake_program(loop, name, fn) end
---A function for busted's it(): body(clock, loop) as a task on a fresh
---virtual loop, failing on an error or on what it leaves.
---@param body fun(clock: tapio.testing.Clock, loop: tapio.Loop)
---@param opts? tapio.testing.RunOptions
---@return fun()
function testing.run(body, opts) end

---A virtual loop's clock.
---@class tapio.testing.Clock
---@field loop tapio.Loop
---@field errors? tapio.ExceptionContext[] testing.run's handler calls
local Clock = {}

---The virtual time.
---@return number
function Clock:time() end
---When the next timer is due, or nil.
---@return number?
function Clock:next_timer() end
---Moves the time seconds ahead, each timer at its own time (the async
---rule inside a run).
---@param seconds number
function Clock:advance(seconds) end
---advance(0): everything ready now.
function Clock:run_until_idle() end

---A fake program's child, as fn sees it.
---@class tapio.testing.Child
---@field program string as started
---@field args string[]
---@field env? table<string, string> the env option's, when given
---@field cwd? string
---@field stdin tapio.StreamReader end of file at once when not piped
---@field stdout tapio.StreamWriter writes dropped when not piped
---@field stderr tapio.StreamWriter stdout's with stderr = tapio.STDOUT
---@field returncode? integer once it ended
local Child = {}

---Exits with status (0..255, default 0): its pipes close, flushed; in
---fn it ends fn there, elsewhere fn is cancelled.
---@param status? integer
function Child:exit(status) end
---Catches sig (a number, "SIGTERM" or "TERM"): fn(sig) runs as a task,
---the child runs on (an error in fn exits 1, as one in the program's
---function); nil: the default. SIGKILL cannot be caught.
---@param sig integer|string
---@param fn? fun(sig: integer)
function Child:on_signal(sig, fn) end

---A recording protocol.
---@class tapio.testing.Recorder: tapio.Protocol
---@field events string[] "connection_made", "data_received:abc", ...
---@field transport? tapio.Transport
local Recorder = {}

---The first event starting with prefix, once written down (async rule).
---@param prefix string
---@return string
function Recorder:wait(prefix) end
---Forgets the events so far.
function Recorder:clear() end

return testing
