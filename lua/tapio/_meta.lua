---@meta tapio
-- Definitions of tapio's Lua API for the Lua language server (LuaLS, the
-- engine of editors' Lua support): classes, methods, parameters, returns.
-- Never loaded at run time. Point the server at lua/ (or at the luarocks
-- tree where tapio is installed: this file is the module "tapio._meta").
-- spec/embed/test_meta.lua checks that every public function of the
-- module is annotated here, and nothing that does not exist.

---A protocol: any table; tapio calls the methods it has. A missing method
---is the reference's default (a missing eof_received closes).
---@class tapio.Protocol
---@field connection_made? fun(self: table, transport: tapio.Transport)
---@field data_received? fun(self: table, data: string)
---@field eof_received? fun(self: table): boolean? true stays half-open
---@field connection_lost? fun(self: table, err: tapio.Error|any|nil) nil: clean
---@field pause_writing? fun(self: table)
---@field resume_writing? fun(self: table)
---@field get_buffer? fun(self: table, sizehint: integer): tapio.Buffer, integer? BufferedProtocol
---@field buffer_updated? fun(self: table, nbytes: integer)

---@alias tapio.ProtocolFactory fun(): tapio.Protocol

---An error value: what failed, as tapio and the OS name it.
---@class tapio.Error
---@field code integer negative; tapio.errors maps names to codes
---@field name string "ECONNREFUSED"
---@field message string "connection refused"

---An IP address as get_extra_info gives it; addr[1], addr[2] too.
---@class tapio.Address
---@field host string
---@field port integer
---@field family integer 4 or 6

---What the exception handler gets, as asyncio's context.
---@class tapio.ExceptionContext
---@field message string
---@field exception? any the error value as raised (none for a slow callback)
---@field traceback? string
---@field future? tapio.Future whose error was never retrieved (a task too)
---@field task? tapio.Task the same, when it is a task; or whose step was slow (debug mode)
---@field duration? number seconds a slow callback took (debug mode)
---@field peername? tapio.Address|string the client of a failed incoming TLS handshake (debug mode)
---@field server? tapio.Server the server that accepted it
---@field transport? tapio.Transport
---@field protocol? tapio.Protocol
---@field tasks? tapio.Task[] what tapio.run cancelled at exit
---@field servers? tapio.Server[] what tapio.run closed at exit
---@field transports? tapio.Transport[] what tapio.run closed at exit

---The options of the create_* methods (asyncio's keyword arguments).
---@class tapio.Options
---@field local_host? string
---@field local_port? integer
---@field local_flowinfo? integer IPv6: the flowinfo of local_host's addresses (0..1048575)
---@field local_addr? table|tapio.Address {host, port [, flowinfo, scope_id]} or an address value: local_host, local_port and local_flowinfo (create_connection, open_connection)
---@field family? integer 0, 4 or 6
---@field sock? integer a stream socket tapio takes over (a Unix one for the Unix calls)
---@field proto? integer create_connection: tapio.IPPROTO_TCP or IPPROTO_SCTP (0: TCP)
---@field flags? integer tapio.AI_* of the lookups (create_server: AI_PASSIVE by default)
---@field nodelay? boolean
---@field happy_eyeballs_delay? number seconds between staggered connects
---@field interleave? integer addresses of one family before the other
---@field backlog? integer
---@field reuse_address? boolean
---@field reuse_port? boolean
---@field keep_alive? boolean create_server: SO_KEEPALIVE on each connection accepted
---@field start_serving? boolean
---@field cleanup_socket? boolean
---@field ssl? tapio.TLSContext|boolean TLS on the stream calls (see tapio.tls_context); true: a default client context
---@field server_hostname? string the name checked and sent as SNI
---@field ssl_handshake_timeout? number seconds (60)
---@field ssl_shutdown_timeout? number seconds (30)

---What tapio.tls_context takes (lua/README.md, TLS).
---@class tapio.TLSOptions
---@field side "client"|"server" fixed for the context
---@field cafile? string trusted CAs; none given: the system's
---@field capath? string
---@field cadata? string PEM text
---@field cert_file? string
---@field key_file? string
---@field password? string the key's
---@field cert_pem? string
---@field key_pem? string
---@field verify? "required"|"optional"|"none"
---@field check_hostname? boolean
---@field min_version? string "TLSv1.2"
---@field max_version? string "TLSv1.3"
---@field ciphers? string TLS 1.2 cipher list
---@field ciphersuites? string TLS 1.3 suites
---@field alpn? string[]
---@field sni? table<string, tapio.TLSContext> servers: a context by the name asked
---@field keylog_file? string SSLKEYLOGFILE format
---@field session_cache? integer clients: sessions kept (64)

---A TLS context (OpenSSL's SSL_CTX), shared by any number of connections.
---@class tapio.TLSContext
---@field side fun(self: tapio.TLSContext): "client"|"server"
---@field close fun(self: tapio.TLSContext) gives this reference back

---A SubprocessProtocol: any table; tapio calls the methods it has.
---@class tapio.DatagramProtocol
---@field connection_made? fun(self: table, transport: tapio.DatagramTransport)
---@field datagram_received? fun(self: table, data: string, addr: tapio.Address|string|nil)
---@field error_received? fun(self: table, err: tapio.Error)
---@field pause_writing? fun(self: table)
---@field resume_writing? fun(self: table)
---@field connection_lost? fun(self: table, err: tapio.Error|any|nil)

---@class tapio.DatagramOptions
---@field local_addr? table|tapio.Address|string {host, port} (port: a number, digits or a UDP service's name), {host, port, flowinfo, scope_id} of a literal host, an address value, or a Unix path
---@field remote_addr? table|tapio.Address|string the same: a connected endpoint
---@field local_path? string a Unix datagram socket's own path
---@field remote_path? string a Unix datagram socket's peer
---@field family? integer 0, 4, 6 or tapio.AF_UNIX
---@field reuse_port? boolean
---@field allow_broadcast? boolean
---@field sock? integer a datagram socket tapio takes over
---@field proto? integer tapio.IPPROTO_UDP or IPPROTO_UDPLITE (0: UDP)
---@field flags? integer tapio.AI_* of the lookups

---@class tapio.SubprocessProtocol
---@field connection_made? fun(self: table, transport: tapio.SubprocessTransport)
---@field pipe_data_received? fun(self: table, fd: integer, data: string)
---@field pipe_connection_lost? fun(self: table, fd: integer, err: tapio.Error|any|nil)
---@field process_exited? fun(self: table)
---@field pause_writing? fun(self: table)
---@field resume_writing? fun(self: table)
---@field connection_lost? fun(self: table, err: tapio.Error|any|nil)

---The options of subprocess_exec and subprocess_shell. A descriptor given
---as stdin, stdout or stderr stays the caller's (close it once the child
---has it).
---@class tapio.ProcessOptions
---@field stdin? "pipe"|"devnull"|"inherit"|integer
---@field stdout? "pipe"|"devnull"|"inherit"|integer
---@field stderr? "pipe"|"devnull"|"inherit"|"stdout"|integer
---@field cwd? string
---@field env? table<string, string>|string[]
---@field extend_env? boolean
---@field start_new_session? boolean
---@field process_group? integer
---@field pass_fds? integer[]
---@field close_fds? boolean
---@field executable? string the file run; program stays argv[0]
---@field pipesize? integer bytes of each pipe made for the child
---@field user? string|integer a user name or uid
---@field group? string|integer a group name or gid
---@field extra_groups? (string|integer)[] group names or gids
---@field umask? integer 0..511, -1: the parent's

---@class tapio
---@field version string "major.minor.patch"
---@field shutdown_timeout number seconds tapio.run gives what it closes at exit to flush
---@field handle_sigint boolean tapio.run cancels its main task on SIGINT (the tapio program sets it)
---@field signals table<string, integer> signal names to numbers
---@field PIPE integer subprocess stdio: a pipe (Python's value)
---@field DEVNULL integer subprocess stdio: /dev/null
---@field STDOUT integer stderr to the child's stdout
---@field INHERIT integer the parent's descriptor (asyncio's None)
---@field errors table<string, integer> error names to codes
---@field FIRST_COMPLETED string tapio.wait's return_when: "FIRST_COMPLETED"
---@field FIRST_EXCEPTION string tapio.wait's return_when: "FIRST_EXCEPTION"
---@field ALL_COMPLETED string tapio.wait's return_when: "ALL_COMPLETED" (the default)
---@field Future table the future class (its methods)
---@field Task tapio.Task the task class (callable: tapio.Task(loop, fn, ...), a task no factory makes)
---@field Context table the context class (its methods)
---@field Token table the token class: Token.MISSING
---@field StreamReader tapio.StreamReader the reader class (callable)
---@field StreamWriter table the writer class
---@field Process table the process class
---@field Event tapio.Event the event class (callable: tapio.Event())
---@field Lock tapio.Lock the lock class (callable: tapio.Lock())
---@field Semaphore tapio.Semaphore the semaphore class (callable: tapio.Semaphore(value))
---@field Condition tapio.Condition the condition class (callable: tapio.Condition(lock))
---@field Barrier tapio.Barrier the barrier class (callable: tapio.Barrier(parties))
---@field Queue tapio.Queue the queue class (callable: tapio.Queue(maxsize))
---@field AF_INET integer
---@field AF_INET6 integer
---@field AF_UNIX integer
---@field SOCK_STREAM integer getaddrinfo's opts.type, tapio.socket's type
---@field SOCK_DGRAM integer
---@field SOCK_RAW integer tapio.socket's only
---@field IPPROTO_ICMP integer tapio.socket's proto (IANA's numbers)
---@field IPPROTO_ICMPV6 integer
---@field IPPROTO_TCP integer
---@field IPPROTO_UDP integer
---@field IPPROTO_SCTP integer
---@field IPPROTO_UDPLITE integer
---@field AI_PASSIVE integer getaddrinfo's opts.flags
---@field AI_CANONNAME integer
---@field AI_NUMERICHOST integer
---@field AI_V4MAPPED integer
---@field AI_ALL integer
---@field AI_ADDRCONFIG integer
---@field AI_NUMERICSERV integer
---@field NI_NUMERICHOST integer getnameinfo's flags
---@field NI_NUMERICSERV integer
---@field NI_NOFQDN integer
---@field NI_NAMEREQD integer
---@field NI_DGRAM integer
---@field AF_UNSPEC integer
---@field E2BIG integer
---@field EACCES integer
---@field EADDRINUSE integer
---@field EADDRNOTAVAIL integer
---@field EAFNOSUPPORT integer
---@field EAGAIN integer
---@field EAI_AGAIN integer
---@field EAI_FAIL integer
---@field EAI_FAMILY integer
---@field EAI_NONAME integer
---@field EAI_SERVICE integer
---@field EAI_SOCKTYPE integer
---@field EALREADY integer
---@field EBADF integer
---@field EBUFFER integer
---@field EBUSY integer
---@field ECALLBACK integer
---@field ECANCELED integer
---@field ECHILD integer
---@field ECLOSED integer
---@field ECONNABORTED integer
---@field ECONNREFUSED integer
---@field ECONNRESET integer
---@field EEXIST integer
---@field EHOSTUNREACH integer
---@field EINTR integer
---@field EINVAL integer
---@field EIO integer
---@field EISCONN integer
---@field ELOOP integer
---@field EMFILE integer
---@field EMSGSIZE integer
---@field ENAMETOOLONG integer
---@field ENETDOWN integer
---@field ENETUNREACH integer
---@field ENFILE integer
---@field ENOBUFS integer
---@field ENOENT integer
---@field ENOMEM integer
---@field ENOPROTOOPT integer
---@field ENOSPC integer
---@field ENOSYS integer
---@field ENOTCONN integer
---@field ENOTDIR integer
---@field ENOTSOCK integer
---@field ENOTSUP integer
---@field EOF integer
---@field EPERM integer
---@field EPIPE integer
---@field EPROTONOSUPPORT integer
---@field EPROTOTYPE integer
---@field EROFS integer
---@field ERUNNING integer
---@field ESHUTDOWN integer
---@field ESRCH integer
---@field ESYSTEM integer
---@field EVIRTUAL integer real I/O asked of a virtual-clock loop (tapio.testing)
---@field ESPIN integer a virtual loop kept busy at one time past its step limit
---@field ETIMEDOUT integer
---@field ETLS integer
---@field ETLS_EXPIRED integer the peer's certificate expired
---@field ETLS_NOT_YET_VALID integer
---@field ETLS_HOSTNAME integer the certificate is for another name
---@field ETLS_UNKNOWN_CA integer
---@field ETLS_SELF_SIGNED integer
---@field ETLS_VERIFY integer another verification failure
---@field ETLS_NO_CERT integer a required certificate was not given
---@field ETLS_VERSION integer no protocol version in common
---@field ETLS_CIPHER integer no cipher in common (or a handshake alert)
---@field EUNKNOWN integer
local tapio = {}

---Runs main(...) as a task on a new loop until it ends; cancels the tasks
---left, closes the servers and transports left (reporting what it ended
---to the exception handler), closes the loop; returns main's results or
---raises its error. With tapio.handle_sigint, SIGINT cancels main and run
---raises an EINTR error ("interrupted (SIGINT)"). A tapio.Runner used
---once (debug and loop_factory: a Runner's).
---@param main async fun(...): ...
---@param ... any
---@return any ...
function tapio.run(main, ...) end

---@class tapio.RunnerOptions
---@field debug? boolean loop:set_debug at the loop's making (nil: as it is)
---@field loop_factory? fun(): tapio.Loop makes the loop (default tapio.new_loop)

---asyncio.Runner: a loop made at the first run or get_loop, that runs
---one main function after another (the tasks a run leaves go on in the
---next), every run in one context (a copy of the one current at the
---loop's making), until close.
---@param options? tapio.RunnerOptions
---@return tapio.Runner
function tapio.Runner(options) end

---@class tapio.Runner
local Runner = {}

---fn(...) as a task on the Runner's loop until it ends (SIGINT as in
---tapio.run); its results, or raises its error. Raises inside a running
---loop, and once closed.
---@param fn async fun(...): ...
---@param ... any
---@return any ...
function Runner:run(fn, ...) end

---run, in ctx itself (asyncio's run(coro, context=ctx)).
---@param ctx tapio.Context
---@param fn async fun(...): ...
---@param ... any
---@return any ...
function Runner:run_in(ctx, fn, ...) end

---The Runner's loop (made now if not yet); raises once closed.
---@return tapio.Loop
function Runner:get_loop() end

---Cancels the tasks left, closes the servers and transports left (as
---tapio.run's exit, reporting), closes the loop. Nothing before the
---first run or get_loop (the Runner still runs then), nor once closed.
function Runner:close() end

---Returns ... after delay seconds (the async rule: inside a task it
---waits; elsewhere it returns a future).
---@param delay number
---@param ... any
---@return any ...
function tapio.sleep(delay, ...) end

---asyncio's to_thread: runs fn(...) on a thread of the running loop's
---worker pool and returns its results (the async rule). fn crosses as
---its bytecode into that thread's own Lua state: its only upvalue may be
---_ENV (the thread's globals; LuaJIT: none). Arguments and results are
---copied: nil, booleans, numbers, strings and tables of them.
---@param fn fun(...): ...
---@param ... nil|boolean|number|string|table
---@return any ...
function tapio.to_thread(fn, ...) end

---aw's results (a future, or a function run as a task); after timeout
---seconds (nil: none) aw is cancelled and, once it has finished, a
---timeout error (code ETIMEDOUT) is raised (the async rule).
---@param aw tapio.Future|async fun(): ...
---@param timeout number?
---@return any ...
function tapio.wait_for(aw, timeout) end

---fn(...)'s results, run in the calling task; after delay seconds (nil:
---no deadline) the task is cancelled where it waits and a timeout error
---(code ETIMEDOUT) is raised here (asyncio.timeout; outside a task: a
---task of it).
---@param delay number?
---@param fn async fun(...): ...
---@param ... any
---@return any ...
function tapio.timeout(delay, fn, ...) end

---tapio.timeout with the deadline at when, on loop:time()'s clock (nil:
---none): asyncio.timeout_at.
---@param when number?
---@param fn async fun(...): ...
---@param ... any
---@return any ...
function tapio.timeout_at(when, fn, ...) end

---The first result of each future or function (run as a task) of list,
---in its order; fails with the first error, unless
---opts.return_exceptions puts errors in their places (the async rule).
---@param list (tapio.Future|async fun(): any)[]
---@param opts? { return_exceptions?: boolean }
---@return { n: integer, [integer]: any }
function tapio.gather(list, opts) end

---aw's results; cancelling what waits does not cancel aw (the async rule).
---@param aw tapio.Future|async fun(): ...
---@return any ...
function tapio.shield(aw) end

---Waits for the futures (or functions, run as tasks) of list until
---opts.return_when holds (default ALL_COMPLETED) or opts.timeout seconds
---have passed: done and pending, lists of the futures in list's order,
---each once. Raises none of their errors and no timeout; cancels none.
---An empty list raises (the async rule: outside a task, a task of it).
---@param list (tapio.Future|async fun(): any)[]
---@param opts? { timeout?: number, return_when?: "FIRST_COMPLETED"|"FIRST_EXCEPTION"|"ALL_COMPLETED" }
---@return tapio.Future[] done
---@return tapio.Future[] pending
function tapio.wait(list, opts) end

---For a generic for in a task: the futures of list (functions become
---tasks), each once, in the order they complete; each step waits for
---the next. Once opts.timeout seconds (from this call) have passed, a
---step that would wait raises a timeout error (code ETIMEDOUT).
---@param list (tapio.Future|async fun(): any)[]
---@param opts? { timeout?: number }
---@return fun(): tapio.Future?
function tapio.as_completed(list, opts) end

---Runs fn(tg, ...) in the calling task and returns its results once it
---and every task made by tg:create_task have finished (asyncio's
---TaskGroup; outside a task: a task of it). The first child to fail
---cancels the others and fn; then the group raises an ExceptionGroup
---of the children's errors and fn's. A cancellation from outside
---cancels the children and, once they are done, goes on.
---@param fn async fun(tg: tapio.TaskGroup, ...): ...
---@param ... any
---@return any ...
function tapio.TaskGroup(fn, ...) end

---The same as tapio.TaskGroup.
---@param fn async fun(tg: tapio.TaskGroup, ...): ...
---@param ... any
---@return any ...
function tapio.task_group(fn, ...) end

---The group tapio.TaskGroup hands its body.
---@class tapio.TaskGroup
local TaskGroup = {}

---fn(...) as a task of the group; raises once the group is shutting down
---(a child failed, the body raised, the task was cancelled) or finished.
---@param fn async fun(...): ...
---@param ... any
---@return tapio.Task
function TaskGroup:create_task(fn, ...) end

---create_task with ctx itself as the task's context (asyncio's
---tg.create_task(coro, context=ctx)).
---@param ctx tapio.Context
---@param fn async fun(...): ...
---@param ... any
---@return tapio.Task
function TaskGroup:create_task_in(ctx, fn, ...) end

---What a TaskGroup raises (name "ExceptionGroup", code ECALLBACK): the
---children's errors in the order they failed, then the body's.
---@class tapio.ExceptionGroup: tapio.Error
---@field exceptions any[]

---A new loop (raises an EMFILE error value without descriptors).
---@return tapio.Loop
function tapio.new_loop() end

---The loop running now; raises when none runs.
---@return tapio.Loop
function tapio.get_running_loop() end

---fn(...) as a task on the running loop.
---@param fn async fun(...): ...
---@param ... any
---@return tapio.Task
function tapio.create_task(fn, ...) end

---A context variable; a default given as nil counts.
---@param name string
---@param default? any
---@return tapio.ContextVar
function tapio.ContextVar(name, default) end

---A copy of the current context.
---@return tapio.Context
function tapio.copy_context() end

---fn(...) as a task on the running loop, in ctx itself (asyncio's
---create_task(coro, context=ctx)).
---@param ctx tapio.Context
---@param fn async fun(...): ...
---@param ... any
---@return tapio.Task
function tapio.create_task_in(ctx, fn, ...) end

---The task running now, or nil.
---@return tapio.Task?
function tapio.current_task() end

---A task of fn(...) on loop whose first step runs now, up to where fn
---first waits (asyncio's eager_task_factory; a loop not running: as
---create_task). For loop:set_task_factory, or called for one eager task.
---@param loop tapio.Loop
---@param fn async fun(...): ...
---@param ... any
---@return tapio.Task
function tapio.eager_task_factory(loop, fn, ...) end

---A factory for loop:set_task_factory calling
---custom_task_constructor(loop, fn, ...), the tapio.Task it calls
---starting eagerly (asyncio's eager_start=True);
---create_eager_task_factory(tapio.Task) makes eager_task_factory's tasks.
---@param custom_task_constructor fun(loop: tapio.Loop, fn: function, ...): tapio.Task
---@return fun(loop: tapio.Loop, fn: function, ...): tapio.Task
function tapio.create_eager_task_factory(custom_task_constructor) end

---The tasks of loop (default: the running one) not yet done.
---@param loop? tapio.Loop
---@return tapio.Task[]
function tapio.all_tasks(loop) end

---Inside a task: waits for fut, then returns its results or raises.
---@param fut tapio.Future
---@return any ...
function tapio.await(fut) end

---Whether v is a tapio future (or task).
---@param v any
---@return boolean
function tapio.is_future(v) end

---Whether err is a cancellation.
---@param err any
---@return boolean
function tapio.is_cancelled(err) end

---A cancellation error value.
---@param message? string
---@return tapio.Error
function tapio.cancelled_error(message) end

---An error value for a code or a name; the message defaults to the code's.
---@param code_or_name integer|string
---@param message? string
---@return tapio.Error
function tapio.error(code_or_name, message) end

---The sentence for an error code.
---@param code integer
---@return string
function tapio.strerror(code) end

---Fixed-size memory for BufferedProtocol.get_buffer, zeroed.
---@param size integer
---@return tapio.Buffer
function tapio.buffer(size) end

---An address value of a numeric host (no lookup), for transport:sendto.
---@param host string
---@param port integer
---@param flowinfo? integer IPv6: 0..1048575
---@param scope_id? integer IPv6: an interface's index
---@return tapio.Address
function tapio.address(host, port, flowinfo, scope_id) end

---Two connected stream sockets (descriptors).
---@return integer, integer
function tapio.socketpair() end

---A blocking send: the count sent, or nil and an error value.
---@param fd integer
---@param data string
---@return integer?, tapio.Error?
function tapio.send(fd, data) end

---One recv of at most n bytes: the data ("" at the end), or nil and an
---error value (EAGAIN: nothing there; it never waits).
---@param fd integer
---@param n integer
---@return string?, tapio.Error?
function tapio.recv(fd, n) end

---Closes a descriptor.
---@param fd integer
function tapio.close_fd(fd) end

---A new socket, non-blocking and close-on-exec (for loop:sock_*): the
---descriptor, or nil and an error value.
---@param family integer tapio.AF_INET, AF_INET6 or AF_UNIX
---@param type integer tapio.SOCK_STREAM, SOCK_DGRAM or SOCK_RAW
---@param proto? integer tapio.IPPROTO_* (0)
---@return integer?, tapio.Error?
function tapio.socket(family, type, proto) end

---Binds fd to addr: true, or nil and an error value.
---@param fd integer
---@param addr tapio.Address|table|string {host, port}, or a Unix path
---@return boolean?, tapio.Error?
function tapio.bind(fd, addr) end

---Listens on fd (backlog 100): true, or nil and an error value.
---@param fd integer
---@param backlog? integer
---@return boolean?, tapio.Error?
function tapio.listen(fd, backlog) end

---fd's own address (a Unix path as a string), or nil and an error value.
---@param fd integer
---@return tapio.Address|string|nil, tapio.Error?
function tapio.getsockname(fd) end

---A signal's name ("SIGTERM" for 15), or nil for a number with none in
---tapio.signals (Python's signal.Signals(sig).name).
---@param sig integer
---@return string?
function tapio.signal_name(sig) end

---Sends sig to every process of the group pgid (Python's os.killpg):
---true, or nil and an error value (ESRCH: the group has no process left).
---@param pgid integer >= 1 (a child started with process_group = 0 leads
---the group numbered by its pid)
---@param sig integer|string
---@return true?, tapio.Error?
function tapio.killpg(pgid, sig) end

---A pipe, as os.pipe(): its read end and its write end (close-on-exec).
---@return integer read, integer write
function tapio.pipe() end

---A pty in raw mode: its master and its slave.
---@return integer master, integer slave
function tapio.openpty() end
---A TLS context for the ssl option and start_tls; raises an error value
---(ENOENT, ETLS with OpenSSL's words) for a bad option or file.
---@param opts tapio.TLSOptions
---@return tapio.TLSContext
function tapio.tls_context(opts) end

---A string as Python's repr() prints it: valid UTF-8 as text, other bytes
---from 128 up escaped ('\x80').
---@param s any
---@return string
function tapio.repr(s) end

---An event loop: one per thread.
---@class tapio.Loop
local Loop = {}

---Runs until stop().
function Loop:run_forever() end
---Runs until fut (or a task of fn(...)) is done; returns its results.
---@param fut_or_fn tapio.Future|async fun(...): ...
---@param ... any
---@return any ...
function Loop:run_until_complete(fut_or_fn, ...) end
---One iteration; waits for events only when wait is true (hosts step it).
---@param wait? boolean
function Loop:run_once(wait) end
---Ends the run going on, or makes the next one a single turn.
function Loop:stop() end
---Frees the loop: open transports get connection_lost(ECANCELED).
function Loop:close() end
---@return boolean
function Loop:is_running() end
---@return boolean
function Loop:is_closed() end
---Monotonic seconds, the clock of call_at.
---@return number
function Loop:time() end
---Bytes the core holds for this loop.
---@return number
function Loop:memory() end
---A descriptor readable while the loop has work, for a host's own poll
---(nil and an error value where there is none).
---@return integer?, tapio.Error?
function Loop:backend_fd() end
---How long a host may sleep, in ms: 0 work is ready, -1 nothing scheduled.
---@return integer
function Loop:backend_timeout() end
---@param fn function
---@param ... any
---@return tapio.Handle
function Loop:call_soon(fn, ...) end
---@param delay number seconds
---@param fn function
---@param ... any
---@return tapio.Handle
function Loop:call_later(delay, fn, ...) end
---@param when number on loop:time()'s clock
---@param fn function
---@param ... any
---@return tapio.Handle
function Loop:call_at(when, fn, ...) end
---call_soon whose fn runs in ctx itself (asyncio's context=ctx).
---@param ctx tapio.Context
---@param fn function
---@param ... any
---@return tapio.Handle
function Loop:call_soon_in(ctx, fn, ...) end
---call_later whose fn runs in ctx itself.
---@param ctx tapio.Context
---@param delay number seconds
---@param fn function
---@param ... any
---@return tapio.Handle
function Loop:call_later_in(ctx, delay, fn, ...) end
---call_at whose fn runs in ctx itself.
---@param ctx tapio.Context
---@param when number on loop:time()'s clock
---@param fn function
---@param ... any
---@return tapio.Handle
function Loop:call_at_in(ctx, when, fn, ...) end
---@return tapio.Future
function Loop:create_future() end
---Calls fn(...) each iteration fd is readable, until removed; replaces
---a reader fd has. fd stays yours: remove the reader before closing it.
---@param fd integer
---@param fn function
---@param ... any
function Loop:add_reader(fd, fn, ...) end
---@param fd integer
---@return boolean removed whether fd had a reader
function Loop:remove_reader(fd) end
---Calls fn(...) each iteration fd is writable, until removed.
---@param fd integer
---@param fn function
---@param ... any
function Loop:add_writer(fd, fn, ...) end
---@param fd integer
---@return boolean removed whether fd had a writer
function Loop:remove_writer(fd) end
---Calls fn(...) from the loop after signal sig arrives (any loop; every
---loop watching sig hears of it). SIGCHLD, SIGKILL, SIGSTOP and the fault
---signals are refused, and every signal on a virtual-clock loop
---(tapio.testing's: a signal comes on real time).
---@param sig integer|string a number or a name ("SIGINT", "INT")
---@param fn function
---@param ... any
function Loop:add_signal_handler(sig, fn, ...) end
---@param sig integer|string
---@return boolean removed whether sig had a handler on this loop
function Loop:remove_signal_handler(sig) end
---@param fn async fun(...): ...
---@param ... any
---@return tapio.Task
function Loop:create_task(fn, ...) end
---create_task with ctx itself as the task's context (asyncio's
---create_task(coro, context=ctx)).
---@param ctx tapio.Context
---@param fn async fun(...): ...
---@param ... any
---@return tapio.Task
function Loop:create_task_in(ctx, fn, ...) end
---Every task the loop makes is factory(loop, fn, ...)'s from now on
---(tapio.Task or tapio.eager_task_factory make one); nil: the default.
---@param factory? fun(loop: tapio.Loop, fn: function, ...): tapio.Task
function Loop:set_task_factory(factory) end
---@return (fun(loop: tapio.Loop, fn: function, ...): tapio.Task)?
function Loop:get_task_factory() end
---fn(loop, context) gets errors nobody awaits; nil restores the default.
---@param fn? fun(loop: tapio.Loop, context: tapio.ExceptionContext)
function Loop:set_exception_handler(fn) end
---@return fun(loop: tapio.Loop, context: tapio.ExceptionContext)?
function Loop:get_exception_handler() end
---@param context tapio.ExceptionContext
function Loop:call_exception_handler(context) end
---@param context tapio.ExceptionContext
function Loop:default_exception_handler(context) end
---Debug mode: a Lua callback running slow_callback_duration seconds or
---longer (default 0.1) is reported to the exception handler, and so is a
---TLS handshake a server's client failed.
---@param enabled boolean
---@param slow_callback_duration? number
function Loop:set_debug(enabled, slow_callback_duration) end
---@return boolean enabled
---@return number slow_callback_duration
function Loop:get_debug() end
---Connects (the async rule); or, given {sock = fd, ...} for host, wraps a
---connected socket.
---@param factory tapio.ProtocolFactory
---@param host string|tapio.Options
---@param port? integer|string a number, digits or a service name ("http")
---@param opts? tapio.Options
---@return tapio.Transport, tapio.Protocol
function Loop:create_connection(factory, host, port, opts) end
---@param factory tapio.ProtocolFactory
---@param path? string|tapio.Options nil with opts.sock (or opts in its place)
---@param opts? tapio.Options
---@return tapio.Transport, tapio.Protocol
function Loop:create_unix_connection(factory, path, opts) end
---@param factory tapio.ProtocolFactory
---@param fd integer a connected socket tapio takes over
---@param opts? tapio.Options
---@return tapio.Transport, tapio.Protocol
function Loop:connect_accepted_socket(factory, fd, opts) end
---Upgrades a connection to TLS in place (the async rule); protocol is its
---protocol from then on; buffered: bytes a reader already took off it.
---@param transport tapio.Transport
---@param protocol tapio.Protocol
---@param sslcontext tapio.TLSContext
---@param opts? {server_hostname?: string, ssl_handshake_timeout?: number, ssl_shutdown_timeout?: number}
---@param buffered? string
---@return tapio.Transport transport the same transport
function Loop:start_tls(transport, protocol, sslcontext, opts, buffered) end
---@param factory tapio.ProtocolFactory
---@param host? string|string[] nil: every interface
---@param port integer|string 0: a free one; digits or a service name too
---@param opts? tapio.Options
---@return tapio.Server
function Loop:create_server(factory, host, port, opts) end
---@param factory tapio.ProtocolFactory
---@param path? string|tapio.Options nil with opts.sock (or opts in its place)
---@param opts? tapio.Options
---@return tapio.Server
function Loop:create_unix_server(factory, path, opts) end
---asyncio's ReadTransport on a pipe, FIFO, pty or socket tapio takes over.
---@param factory tapio.ProtocolFactory
---@param fd integer
---@return tapio.ReadTransport, tapio.Protocol
function Loop:connect_read_pipe(factory, fd) end
---asyncio's WriteTransport on a descriptor tapio takes over.
---@param factory tapio.ProtocolFactory
---@param fd integer
---@return tapio.WriteTransport, tapio.Protocol
function Loop:connect_write_pipe(factory, fd) end
---Starts program (looked up in PATH without a /) with args.
---@param factory fun(): tapio.SubprocessProtocol
---@param program string
---@param args? string[]
---@param opts? tapio.ProcessOptions
---@return tapio.SubprocessTransport, tapio.SubprocessProtocol
function Loop:subprocess_exec(factory, program, args, opts) end
---Starts cmd with /bin/sh -c.
---@param factory fun(): tapio.SubprocessProtocol
---@param cmd string
---@param opts? tapio.ProcessOptions
---@return tapio.SubprocessTransport, tapio.SubprocessProtocol
function Loop:subprocess_shell(factory, cmd, opts) end

---A datagram endpoint (UDP, or a Unix datagram socket).
---@param factory fun(): tapio.DatagramProtocol
---@param opts? tapio.DatagramOptions
---@return tapio.DatagramTransport, tapio.DatagramProtocol
function Loop:create_datagram_endpoint(factory, opts) end
---Looks host and port up without blocking the loop (c-ares).
---@param host? string
---@param port? integer|string a number or a service name
---@param opts? {family?: integer, type?: integer, proto?: integer, flags?: integer}
---@return {family: integer, type: integer, proto: integer, canonname?: string, addr: tapio.Address}[]
function Loop:getaddrinfo(host, port, opts) end
---asyncio's loop.run_in_executor on the loop's own worker pool
---(executor must be nil): fn(...) on a pool thread, as tapio.to_thread.
---@param executor nil
---@param fn fun(...): ...
---@param ... nil|boolean|number|string|table
---@return any ...
function Loop:run_in_executor(executor, fn, ...) end
---At most size jobs of the worker pool at once (1..128; default
---TAPIO_THREADPOOL_SIZE, else 4); before the loop's first job.
---@param size integer
function Loop:set_threadpool_size(size) end
---asyncio's loop.sendfile: file from offset (0), count bytes (nil: to
---its end) over transport; natively on a plain socket, else read and
---written unless opts.fallback is false. Async rule; the file then at
---offset + the bytes sent, also when cancelled.
---@param transport tapio.Transport
---@param file file*|integer a Lua file or a descriptor
---@param offset? integer
---@param count? integer
---@param opts? {fallback?: boolean}
---@return integer sent
function Loop:sendfile(transport, file, offset, count, opts) end
---asyncio's loop.sock_recv: at most n bytes of fd ("" at the end of a
---stream; n 0: "" at once). Async rule; cancelling loses no byte, also
---in the turn the bytes came (the task has them, then the cancellation).
---@param fd integer
---@param n integer
---@return string data
function Loop:sock_recv(fd, n) end
---asyncio's loop.sock_recvfrom: one datagram of at most n bytes and its
---sender. Async rule.
---@param fd integer
---@param n integer
---@return string data, tapio.Address|string|nil addr
function Loop:sock_recvfrom(fd, n) end
---asyncio's loop.sock_recv_into: at most #buf bytes of fd into buf from
---its first byte; the count (0 at the end of a stream). Async rule; buf
---is held while the call waits.
---@param fd integer
---@param buf tapio.Buffer
---@return integer count
function Loop:sock_recv_into(fd, buf) end
---asyncio's loop.sock_recvfrom_into: one datagram, at most nbytes of it
---(nil or 0: #buf; more is an error), into buf; the count and the sender.
---@param fd integer
---@param buf tapio.Buffer
---@param nbytes? integer
---@return integer count, tapio.Address|string|nil addr
function Loop:sock_recvfrom_into(fd, buf, nbytes) end
---asyncio's loop.sock_sendall: every byte of data, or the error (its
---.count the bytes sent before it). Async rule.
---@param fd integer
---@param data string
function Loop:sock_sendall(fd, data) end
---asyncio's loop.sock_sendto: one datagram to addr. Async rule.
---@param fd integer
---@param data string
---@param addr tapio.Address|table|string {host, port}, or a Unix path
---@return integer sent
function Loop:sock_sendto(fd, data, addr) end
---asyncio's loop.sock_connect: fd (non-blocking) to a numeric addr.
---Async rule.
---@param fd integer
---@param addr tapio.Address|table|string {host, port}, or a Unix path
function Loop:sock_connect(fd, addr) end
---asyncio's loop.sock_accept: the next connection of the listening fd
---(non-blocking): its descriptor (non-blocking, close-on-exec) and the
---peer's address. Async rule.
---@param fd integer
---@return integer fd, tapio.Address|string|nil addr
function Loop:sock_accept(fd) end
---asyncio's loop.sock_sendfile: file from offset (0), count bytes (nil:
---to its end) on fd, a non-blocking stream socket; natively, else read
---and sent unless fallback is false. Async rule; the file then at
---offset + the bytes sent, also when cancelled.
---@param fd integer
---@param file file*|integer a Lua file or a descriptor
---@param offset? integer
---@param count? integer
---@param fallback? boolean
---@return integer sent
function Loop:sock_sendfile(fd, file, offset, count, fallback) end
---The host and service names of an address.
---@param addr tapio.Address|table {host, port}
---@param flags? integer tapio.NI_*
---@return string host, string service
function Loop:getnameinfo(addr, flags) end
---Points the loop's resolver at servers ("127.0.0.1:5353,..."), and
---sets its timeout (seconds per try) and tries; nil keeps the system's.
---@param opts {servers?: string, timeout?: number, tries?: integer}
function Loop:set_resolver(opts) end

---One connection end. After connection_lost a closed shell answering as
---asyncio's closed transports do (lua/README.md, Transports).
---@class tapio.Transport
local Transport = {}

---Ignored while closing (as asyncio); raises after write_eof.
---@param data string
function Transport:write(data) end
---@param list string[] one writev
function Transport:writelines(list) end
---Shuts the sending side once the buffer is flushed; nothing after the
---end; raises with TLS (no half-close).
function Transport:write_eof() end
---@return boolean
function Transport:can_write_eof() end
---Closes after flushing; connection_lost follows.
function Transport:close() end
---Closes now, dropping buffered output.
function Transport:abort() end
---@return boolean
function Transport:is_closing() end
---Idempotent, also while closing.
function Transport:pause_reading() end
---Idempotent, also while closing.
function Transport:resume_reading() end
---@return boolean
function Transport:is_reading() end
---@return integer
function Transport:get_write_buffer_size() end
---@return integer low, integer high
function Transport:get_write_buffer_limits() end
---nil: as asyncio derives it.
---@param high? integer
---@param low? integer
function Transport:set_write_buffer_limits(high, low) end
---"peername", "sockname" (addresses), "socket" (the descriptor); with
---TLS "peercert", "cipher", "tls_version", "alpn_protocol",
---"server_hostname", "compression", "session_reused", "sslcontext",
---"ssl_object", "tls_end". After the end: what it had then, but the
---descriptor and "ssl_object" (the default).
---@param name string
---@param default? any
---@return any
function Transport:get_extra_info(name, default) end
---@param protocol tapio.Protocol
function Transport:set_protocol(protocol) end
---nil after the end (as asyncio), unless set_protocol set one since.
---@return tapio.Protocol?
function Transport:get_protocol() end
---@return tapio.Loop
function Transport:get_loop() end
---bytes_received, bytes_sent, write_buffer_size, write_buffer_peak,
---write_paused_usec, read_paused_usec, write_pauses; with TLS
---tls_handshake_usec, tls_wire_bytes_received, tls_wire_bytes_sent.
---After the end, those at the end.
---@return table<string, integer>
function Transport:get_stats() end

---asyncio's DatagramTransport (create_datagram_endpoint).
---@class tapio.DatagramTransport
local DatagramTransport = {}

---Never blocks: what the socket refuses is queued (with flow control).
---On a connected endpoint addr must be nil or the remote address.
---@param data string
---@param addr? tapio.Address|table {host, port}, or a Unix path
function DatagramTransport:sendto(data, addr) end
---Flushes queued datagrams, then connection_lost(nil).
function DatagramTransport:close() end
---Drops queued datagrams.
function DatagramTransport:abort() end
---@return boolean
function DatagramTransport:is_closing() end
---Idempotent, also while closing. Inside datagram_received: nothing more
---is delivered, also of a batch already read, until resume_reading.
function DatagramTransport:pause_reading() end
---Idempotent. What was held comes first, from the loop, in order.
function DatagramTransport:resume_reading() end
---@return boolean
function DatagramTransport:is_reading() end
---@return integer
function DatagramTransport:get_write_buffer_size() end
---@return integer low, integer high
function DatagramTransport:get_write_buffer_limits() end
---@param high? integer
---@param low? integer
function DatagramTransport:set_write_buffer_limits(high, low) end
---"peername", "sockname" (addresses), "socket" (the descriptor).
---@param name string
---@param default? any
---@return any
function DatagramTransport:get_extra_info(name, default) end
---@param protocol tapio.DatagramProtocol
function DatagramTransport:set_protocol(protocol) end
---nil after the end (as asyncio), unless set_protocol set one since.
---@return tapio.DatagramProtocol?
function DatagramTransport:get_protocol() end
---@return tapio.Loop
function DatagramTransport:get_loop() end
---The stream's figures and datagrams_dropped: the datagrams the kernel
---dropped as the socket's receive queue was full (0 on a Unix socket).
---@return table<string, integer>
function DatagramTransport:get_stats() end

---The read end of a pipe (connect_read_pipe, a subprocess's stdout).
---@class tapio.ReadTransport
local ReadTransport = {}

---Idempotent.
function ReadTransport:pause_reading() end
---Idempotent.
function ReadTransport:resume_reading() end
---@return boolean
function ReadTransport:is_reading() end
---Closes; connection_lost follows.
function ReadTransport:close() end
---@return boolean
function ReadTransport:is_closing() end
---"pipe": the descriptor.
---@param name string
---@param default? any
---@return any
function ReadTransport:get_extra_info(name, default) end
---@param protocol tapio.Protocol
function ReadTransport:set_protocol(protocol) end
---nil after the end (as asyncio), unless set_protocol set one since.
---@return tapio.Protocol?
function ReadTransport:get_protocol() end
---@return tapio.Loop
function ReadTransport:get_loop() end
---@return table<string, integer>
function ReadTransport:get_stats() end

---The write end of a pipe (connect_write_pipe, a subprocess's stdin).
---@class tapio.WriteTransport
local WriteTransport = {}

---@param data string
function WriteTransport:write(data) end
---@param list string[]
function WriteTransport:writelines(list) end
---Closes once the buffer is flushed.
function WriteTransport:write_eof() end
---@return boolean
function WriteTransport:can_write_eof() end
---Closes now, dropping buffered output.
function WriteTransport:abort() end
---@return integer
function WriteTransport:get_write_buffer_size() end
---@return integer low, integer high
function WriteTransport:get_write_buffer_limits() end
---@param high? integer
---@param low? integer
function WriteTransport:set_write_buffer_limits(high, low) end
---Closes after flushing; connection_lost follows.
function WriteTransport:close() end
---@return boolean
function WriteTransport:is_closing() end
---"pipe": the descriptor.
---@param name string
---@param default? any
---@return any
function WriteTransport:get_extra_info(name, default) end
---@param protocol tapio.Protocol
function WriteTransport:set_protocol(protocol) end
---nil after the end (as asyncio), unless set_protocol set one since.
---@return tapio.Protocol?
function WriteTransport:get_protocol() end
---@return tapio.Loop
function WriteTransport:get_loop() end
---@return table<string, integer>
function WriteTransport:get_stats() end

---A child process and its pipes.
---@class tapio.SubprocessTransport
local SubprocessTransport = {}

---@return integer
function SubprocessTransport:get_pid() end
---nil while running; the exit status, or minus the signal that killed it.
---@return integer?
function SubprocessTransport:get_returncode() end
---0: its stdin's write transport; 1, 2: read transports (closed shells
---once their pipe ends, as asyncio's); nil if not a pipe.
---@param fd integer
---@return tapio.WriteTransport|tapio.ReadTransport|nil
function SubprocessTransport:get_pipe_transport(fd) end
---@param sig integer|string a number, or "SIGHUP" or "HUP"
---@return true?, tapio.Error?
function SubprocessTransport:send_signal(sig) end
---SIGTERM.
---@return true?, tapio.Error?
function SubprocessTransport:terminate() end
---SIGKILL.
---@return true?, tapio.Error?
function SubprocessTransport:kill() end
---Kills the child if it still runs, closes the pipes.
function SubprocessTransport:close() end
---@return boolean
function SubprocessTransport:is_closing() end
---"subprocess": the pid.
---@param name string
---@param default? any
---@return any
function SubprocessTransport:get_extra_info(name, default) end
---@param protocol tapio.SubprocessProtocol
function SubprocessTransport:set_protocol(protocol) end
---nil after the end (as asyncio), unless set_protocol set one since.
---@return tapio.SubprocessProtocol?
function SubprocessTransport:get_protocol() end
---@return tapio.Loop
function SubprocessTransport:get_loop() end

---Listening sockets and the connections they accepted.
---@class tapio.Server
local Server = {}

---Stops listening; connections stay open.
function Server:close() end
---close() every connection it accepted.
function Server:close_clients() end
---abort() them.
function Server:abort_clients() end
---@return integer
function Server:client_count() end
---@return boolean
function Server:is_serving() end
---Idempotent.
function Server:start_serving() end
---Serves until closed (the async rule).
function Server:serve_forever() end
---Returns once closed and every connection is gone (the async rule).
function Server:wait_closed() end
---@return integer[]
function Server:sockets() end
---@return (tapio.Address|string)[]
function Server:addresses() end
---@return tapio.Loop
function Server:get_loop() end

---A scheduled call.
---@class tapio.Handle
local Handle = {}

---Harmless once run.
function Handle:cancel() end
---@return boolean
function Handle:cancelled() end
---@return number? when it is due (loop time), nil for call_soon
function Handle:when() end
---The context the callback runs in: the one given (call_soon_in...),
---else the copy of the current one call_soon took.
---@return tapio.Context
function Handle:get_context() end

---A result that comes later.
---@class tapio.Future
local Future = {}

---@return any ... the results, or raises the error
function Future:result() end
---@return any? err
function Future:exception() end
---@return boolean
function Future:done() end
---@return boolean
function Future:cancelled() end
---@param msg? string
---@return boolean
function Future:cancel(msg) end
---@param ... any several values are several results
function Future:set_result(...) end
---Unless result, exception or cancel retrieves err, it is reported when
---the future is collected ("future exception was never retrieved").
---@param err any
function Future:set_exception(err) end
---fn(fut), always from the loop.
---@param fn fun(fut: tapio.Future)
function Future:add_done_callback(fn) end
---@param fn fun(fut: tapio.Future)
---@return integer removed
function Future:remove_done_callback(fn) end
---Inside a task: waits, then result().
---@return any ...
function Future:await() end
---@return tapio.Loop
function Future:get_loop() end

---A coroutine the loop runs; a future of its results.
---@class tapio.Task: tapio.Future
local Task = {}

---@param msg? string
---@return boolean
function Task:cancel(msg) end
---Cancel requests made and not taken back (asyncio's cancelling()).
---@return integer
function Task:cancelling() end
---Takes one cancel request back; returns the count left.
---@return integer
function Task:uncancel() end
---"Task-N" (N counts the tasks of this Lua state), or what set_name gave.
---@return string
function Task:get_name() end
---Names the task (tostring of name); returns the task.
---@param name any
---@return tapio.Task
function Task:set_name(name) end
---@return thread
function Task:get_coro() end
---@return string? the traceback of its error
function Task:get_traceback() end
---The task's context: a copy of the current one when it was made (or the
---one create_task_in gave); its steps run there.
---@return tapio.Context
function Task:get_context() end

---A frame of a task's stack.
---@class tapio.Frame
---@field source string the chunk's file (or its name)
---@field line integer the line running (a failed task's: raising)
---@field name string the function's name as its caller knows it, else "function <source:line defined>"

---@class tapio.StackOptions
---@field limit? integer a waiting task's newest frames, a failed one's oldest
---@field file? file* where print_stack writes (default io.stderr)

---A waiting (or the running) task's frames where it is, a failed one's
---where it raised, oldest first (tapio's own and C functions left out);
---none for a task done otherwise or not started.
---@param opts? tapio.StackOptions
---@return tapio.Frame[]
function Task:get_stack(opts) end
---get_stack's frames written as asyncio's print_stack writes them, with
---their source lines; a failed task's error last.
---@param opts? tapio.StackOptions
function Task:print_stack(opts) end

---A context variable (Python's contextvars.ContextVar).
---@class tapio.ContextVar
---@field name string
local ContextVar = {}
---Its value in the current context, else default (if given), else the
---var's default, else raises a LookupError value (name "LookupError").
---@param default? any
---@return any
function ContextVar:get(default) end
---Sets it in the current context (nil is a value).
---@param value any
---@return tapio.Token
function ContextVar:set(value) end
---Gives back the value before the set that made token; raises for a
---token used already, of another var, or made in another context.
---@param token tapio.Token
function ContextVar:reset(token) end

---What var:set returns, for var:reset.
---@class tapio.Token
---@field var tapio.ContextVar
---@field old_value any the value before the set; tapio.Token.MISSING if none
---@field MISSING table

---A mapping of ContextVars to values (Python's contextvars.Context).
---@class tapio.Context
local Context = {}
---fn(...) with this context current; raises if it is already entered.
---@param fn fun(...): ...
---@param ... any
---@return ...
function Context:run(fn, ...) end
---var's value in this context, else default (nil if not given).
---@param var tapio.ContextVar
---@param default? any
---@return any
function Context:get(var, default) end
---Whether var has a value in this context (Python's `var in ctx`).
---@param var tapio.ContextVar
---@return boolean
function Context:has(var) end
---An iterator of var, value for the vars set in this context.
---@return fun(): tapio.ContextVar?, any
function Context:items() end
---A copy of this context.
---@return tapio.Context
function Context:copy() end

---Fixed-size memory (BufferedProtocol).
---@class tapio.Buffer
local Buffer = {}

---@param i integer
---@param j? integer
---@return string
function Buffer:sub(i, j) end
---@param i integer
---@return integer?
function Buffer:byte(i) end
---@param i integer
---@param s string
function Buffer:set(i, s) end


-- ---- Streams -----------------------------------------------------------

---The options of the stream calls: the create call's, and the reader's
---limit.
---@class tapio.StreamOptions: tapio.Options
---@field limit? integer the reader's limit in bytes (64 KiB)

---Opens a connection; its reader and writer (the async rule).
---open_connection({sock = fd, ...}) wraps a connected socket.
---@param host string|table
---@param port? integer|string
---@param opts? tapio.StreamOptions
---@return tapio.StreamReader, tapio.StreamWriter
function tapio.open_connection(host, port, opts) end

---Opens a Unix socket connection; its reader and writer.
---open_unix_connection({sock = fd, ...}) wraps a connected Unix socket.
---@param path string|tapio.StreamOptions
---@param opts? tapio.StreamOptions
---@return tapio.StreamReader, tapio.StreamWriter
function tapio.open_unix_connection(path, opts) end

---The read end of a pipe (a terminal, a character device) as a
---StreamReader, and its transport (the async rule).
---@param fd integer
---@param opts? {limit?: integer}
---@return tapio.StreamReader, tapio.ReadTransport
function tapio.open_pipe_reader(fd, opts) end

---The write end of a pipe (standard output, a child's stdin) as a
---StreamWriter (the async rule).
---@param fd integer
---@return tapio.StreamWriter
function tapio.open_pipe_writer(fd) end

---Serves: client_connected_cb(reader, writer) runs as a task per
---connection; an error in it goes to the exception handler and closes
---that connection.
---@param client_connected_cb async fun(reader: tapio.StreamReader, writer: tapio.StreamWriter)
---@param host? string|string[]
---@param port? integer|string
---@param opts? tapio.StreamOptions
---@return tapio.Server
function tapio.start_server(client_connected_cb, host, port, opts) end

---start_server on a Unix socket path; (cb, {sock = fd, ...}) serves a
---listening Unix socket.
---@param client_connected_cb async fun(reader: tapio.StreamReader, writer: tapio.StreamWriter)
---@param path string|tapio.StreamOptions
---@param opts? tapio.StreamOptions
---@return tapio.Server
function tapio.start_unix_server(client_connected_cb, path, opts) end

---Starts program with args; stdin, stdout and stderr "inherit" unless
---given (tapio.PIPE: a stream).
---@param program string
---@param args? string[]
---@param opts? tapio.ProcessOptions|{limit?: integer}
---@return tapio.Process
function tapio.create_subprocess_exec(program, args, opts) end

---Starts cmd with /bin/sh -c.
---@param cmd string
---@param opts? tapio.ProcessOptions|{limit?: integer}
---@return tapio.Process
function tapio.create_subprocess_shell(cmd, opts) end

---The error value of a read that met the end first (name
---"IncompleteReadError").
---@param partial string what was read
---@param expected? integer the size asked for (nil: a separator)
---@return tapio.IncompleteReadError
function tapio.incomplete_read_error(partial, expected) end

---The error value of a separator not found within the limit (name
---"LimitOverrunError").
---@param message string
---@param consumed integer how far the buffer was searched
---@return tapio.LimitOverrunError
function tapio.limit_overrun_error(message, consumed) end

---@class tapio.IncompleteReadError: tapio.Error
---@field partial string
---@field expected integer?

---@class tapio.LimitOverrunError: tapio.Error
---@field consumed integer

---What a task reads a connection or a child's output from. Called,
---tapio.StreamReader(limit) makes one to feed by hand.
---@class tapio.StreamReader
local StreamReader = {}

---Up to n bytes, waiting for some; nil or negative: to the end; "" at
---the end.
---@param n? integer
---@return string
function StreamReader:read(n) end
---A line through "\n"; at the end what is left. Over the limit:
---LimitOverrunError, the line dropped.
---@return string
function StreamReader:readline() end
---In a task, for a generic for: each readline() until the end.
---@return fun(): string?
function StreamReader:lines() end
---Exactly n bytes, or IncompleteReadError at the end.
---@param n integer
---@return string
function StreamReader:readexactly(n) end
---The data through the separator ("\n"); a list: the first match to
---end wins.
---@param separator? string|string[]
---@return string
function StreamReader:readuntil(separator) end
---@return boolean true at the end with nothing buffered
function StreamReader:at_eof() end
---Appends data (for tests: connections feed their own).
---@param data string
function StreamReader:feed_data(data) end
---Marks the end: reads return what is left, then "".
function StreamReader:feed_eof() end
---Every read from now on raises err.
---@param err any
function StreamReader:set_exception(err) end
---@return any?
function StreamReader:exception() end
---@return integer bytes buffered, unread
function StreamReader:get_buffer_size() end

---What a task writes a connection or a child's stdin with.
---@class tapio.StreamWriter
---@field transport tapio.Transport|tapio.WriteTransport
local StreamWriter = {}

---@param data string
function StreamWriter:write(data) end
---@param data string[]
function StreamWriter:writelines(data) end
---Returns once it is right to write again; raises the connection's
---error once it is lost (the async rule).
function StreamWriter:drain() end
---Sends what is batched, then closes the transport.
function StreamWriter:close() end
---Returns once the connection has ended (the async rule).
function StreamWriter:wait_closed() end
---@return boolean
function StreamWriter:is_closing() end
---@return boolean
function StreamWriter:can_write_eof() end
---Ends the writing side once the buffer is flushed.
function StreamWriter:write_eof() end
---@param name string
---@param default? any
---@return any
function StreamWriter:get_extra_info(name, default) end
---The bytes written and not yet sent: what the writer batched and the
---transport's buffer; 0 once the connection is lost (tapio's addition).
---@return integer
function StreamWriter:get_write_buffer_size() end
---Upgrades the connection to TLS in place (the async rule); every byte
---the reader holds unread goes to the handshake first.
---@param sslcontext tapio.TLSContext
---@param opts? {server_hostname?: string, ssl_handshake_timeout?: number, ssl_shutdown_timeout?: number}
function StreamWriter:start_tls(sslcontext, opts) end

---A child started by create_subprocess_exec or _shell.
---@class tapio.Process
---@field pid integer
---@field returncode integer? nil while it runs; -N: killed by signal N
---@field stdin tapio.StreamWriter? where piped
---@field stdout tapio.StreamReader? where piped
---@field stderr tapio.StreamReader? where piped
local Process = {}

---The returncode, once the child has exited (the async rule).
---@return integer
function Process:wait() end
---Writes input and closes stdin, reads stdout and stderr to their end,
---waits for the exit (the async rule).
---@param input? string
---@return string? stdout, string? stderr
function Process:communicate(input) end
---@param sig integer|string
---@return true|nil, tapio.Error?
function Process:send_signal(sig) end
---@return true|nil, tapio.Error?
function Process:terminate() end
---@return true|nil, tapio.Error?
function Process:kill() end

---asyncio's: a protocol that feeds reader (for connect_read_pipe and
---friends), pausing the transport while reader holds more than twice its
---limit; with client_connected_cb, a writer too and the callback as a task.
---@param reader tapio.StreamReader
---@param client_connected_cb? async fun(reader: tapio.StreamReader, writer: tapio.StreamWriter)
---@return table
function tapio.StreamReaderProtocol(reader, client_connected_cb) end

---A Semaphore whose release beyond value raises.
---@param value? integer default 1
---@return tapio.Semaphore
function tapio.BoundedSemaphore(value) end

---A flag tasks wait for (asyncio.Event).
---@class tapio.Event
local Event = {}
---@return boolean
function Event:is_set() end
---Sets the flag and wakes every task waiting.
function Event:set() end
---Lowers the flag: wait waits again.
function Event:clear() end
---true once the flag is set (the async rule).
---@return true
function Event:wait() end

---Held by one task at a time, first come first served (asyncio.Lock).
---@class tapio.Lock
local Lock = {}
---@return boolean
function Lock:locked() end
---true once the lock is the task's (the async rule).
---@return true
function Lock:acquire() end
---Frees the lock; the first task waiting gets it (unheld: raises).
function Lock:release() end
---fn(...)'s results, run holding the lock (in a task).
---@param fn async fun(...): ...
---@param ... any
---@return any ...
function Lock:with(fn, ...) end

---value acquires at once, the rest wait in turn (asyncio.Semaphore).
---@class tapio.Semaphore
local Semaphore = {}
---@return boolean
function Semaphore:locked() end
---true once acquired (the async rule).
---@return true
function Semaphore:acquire() end
---One more acquire; wakes the first task waiting.
function Semaphore:release() end
---fn(...)'s results, run holding one acquire (in a task).
---@param fn async fun(...): ...
---@param ... any
---@return any ...
function Semaphore:with(fn, ...) end

---asyncio.Condition: tasks holding its lock wait until another notifies.
---@class tapio.Condition
local Condition = {}
---@return boolean
function Condition:locked() end
---true once the lock is the task's (the async rule).
---@return true
function Condition:acquire() end
---Frees the lock (unheld: raises).
function Condition:release() end
---fn(...)'s results, run holding the lock (in a task).
---@param fn async fun(...): ...
---@param ... any
---@return any ...
function Condition:with(fn, ...) end
---Holding the lock: frees it, waits for a notify, takes it back (also
---when cancelled, before raising); true (the async rule).
---@return true
function Condition:wait() end
---Holding the lock: waits until predicate() is true; returns its value
---(the async rule).
---@param predicate fun(): any
---@return any
function Condition:wait_for(predicate) end
---Holding the lock: wakes the first n tasks waiting.
---@param n? integer default 1
function Condition:notify(n) end
---Holding the lock: wakes every task waiting.
function Condition:notify_all() end

---asyncio.Barrier: parties tasks wait for each other, round by round.
---@class tapio.Barrier
---@field parties integer
local Barrier = {}
---This task's index in its round, 0 to parties - 1 in the order they
---came; raises BrokenBarrierError (code EPIPE) when broken, reset or
---aborted (the async rule).
---@return integer
function Barrier:wait() end
---The tasks waiting raise BrokenBarrierError; then it fills again.
function Barrier:reset() end
---Breaks it: every wait raises BrokenBarrierError until a reset.
function Barrier:abort() end
---How many wait for the round to fill.
---@return integer
function Barrier:n_waiting() end
---@return boolean
function Barrier:broken() end

---A Queue giving the last item put first.
---@param maxsize? integer default 0 (unbounded)
---@return tapio.Queue
function tapio.LifoQueue(maxsize) end

---PriorityQueue's options.
---@class tapio.PriorityQueueOptions
---@field less? fun(a: any, b: any): boolean whether a comes out before b

---A Queue giving the smallest item first: a table's first field is its
---priority ({priority, item}), any other item its own, compared with <;
---or opts.less orders the items. Equals: first in, first out.
---@param maxsize? integer default 0 (unbounded)
---@param opts? tapio.PriorityQueueOptions
---@return tapio.Queue
function tapio.PriorityQueue(maxsize, opts) end

---First in, first out; put waits while maxsize items are in it (0: never).
---@class tapio.Queue
---@field maxsize integer
local Queue = {}
---@return integer
function Queue:qsize() end
---@return boolean
function Queue:empty() end
---@return boolean
function Queue:full() end
---Waits while the queue is full (the async rule).
---@param item any
function Queue:put(item) end
---The first item, waiting while the queue is empty (the async rule).
---@return any
function Queue:get() end
---Raises QueueFull (code EAGAIN) when full.
---@param item any
function Queue:put_nowait(item) end
---The first item, or raises QueueEmpty (code EAGAIN).
---@return any
function Queue:get_nowait() end
---One item got is dealt with (for join).
function Queue:task_done() end
---Waits until task_done was called for every item put (the async rule).
function Queue:join() end
---put raises QueueShutDown (code ESHUTDOWN) from now on, get once the
---queue is empty; immediate drops the items (counted done for join);
---the tasks waiting in put or get raise it.
---@param immediate? boolean
function Queue:shutdown(immediate) end

return tapio
