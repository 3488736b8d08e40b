/* The Lua binding's private header: the userdata behind "tapio.loop",
 * "tapio.transport", "tapio.server", "tapio.handle" and "tapio.buffer", and
 * the helpers the binding's files share. Built on capi/tapio.h only. */
#ifndef TAPIO_LUA_H
#define TAPIO_LUA_H

#include "compat.h"
#include "tapio.h"

#include <stddef.h>

#define TL_LOOP "tapio.loop"
#define TL_TRANSPORT "tapio.transport"
/* The metatables of the other kinds of transport. */
#define TL_READ_TRANSPORT "tapio.read_transport"   /* a read pipe */
#define TL_WRITE_TRANSPORT "tapio.write_transport" /* a write pipe */
#define TL_SUBPROCESS "tapio.subprocess_transport"
#define TL_DGRAM_TRANSPORT "tapio.datagram_transport"
#define TL_SERVER "tapio.server"
#define TL_HANDLE "tapio.handle"
#define TL_BUFFER "tapio.buffer"
#define TL_ERROR "tapio.error"
#define TL_ADDRESS "tapio.address"
#define TL_TLSCTX "tapio.tls_context"

#if defined(__GNUC__)
#define TL_EXPORT __attribute__((visibility("default")))
#else
#define TL_EXPORT
#endif

typedef struct tl_link {
  struct tl_link *next, *prev;
} tl_link;

void tl_list_init(tl_link *head);
void tl_list_push(tl_link *head, tl_link *l);
void tl_list_remove(tl_link *l);

/* Every call from a tapio callback into Lua goes through one of these C
 * functions, run inside lua_pcall with the loop's message handler: the
 * method lookup, the string for the data and the error values are made
 * inside the protected call, so nothing can longjmp across libev. */
enum {
  TL_T_FACTORY,  /* a client's protocol factory, at connection_made */
  TL_T_MADE,     /* connection_made */
  TL_T_DATA,     /* data_received */
  TL_T_METHOD,   /* eof_received, pause/resume_writing, buffer_updated */
  TL_T_LOST,     /* connection_lost */
  TL_T_GETBUF,   /* get_buffer */
  TL_T_ACCEPT,   /* a server's protocol factory */
  TL_T_CONNECTED,/* create_connection's completion */
  TL_T_SERVED,   /* create_server's completion */
  TL_T_CALL,     /* call_soon/later/at and wait_closed callbacks */
  TL_T_REPORT,   /* an error to the exception handler */
  TL_T_CORE,     /* an error the core reports */
  TL_T_PIPE_DATA,/* pipe_data_received */
  TL_T_PIPE_LOST,/* pipe_connection_lost */
  TL_T_DGRAM,    /* datagram_received */
  TL_T_DGRAM_ERR,/* error_received */
  TL_T_LOOKUP,   /* getaddrinfo's and getnameinfo's completions */
  TL_T_WATCH,    /* add_reader, add_writer, add_signal_handler callbacks */
  TL_T_SHELL,    /* keeping what a closed shell answers (tl_end_transport) */
  TL_T_PIPES,    /* a subprocess's pipe transports' Lua objects */
  TL_NTRAMP
};

/* "tapio.loop" */
typedef struct tl_loop {
  tapio_loop *loop;   /* NULL once closed */
  lua_State *L;       /* the loop's own thread: every callback runs on it,
                         whoever triggered it (see tl_loop in loop.c) */
  int thread_ref;     /* anchors L */
  int msgh_ref;       /* message handler: keeps a traceback (callback.c) */
  int tramp_ref[TL_NTRAMP];
  int tb_ref;         /* slot: traceback of the last failed call */
  int pending_ref;    /* slot: a server factory's error, until reported */
  int fakes_ref;      /* the testing kit's fake programs (testing.c) */
  int hooks_ref;      /* tapio.context's functions, once a ContextVar
                         exists (context.c) */
  int nrefs;          /* registry references held for the loop's objects */
  int nopen;          /* objects anchored with tl_anchor */
  int self_ref;       /* anchors the loop's userdata while nopen > 0 */
  int closing;        /* tapio_loop_free is running */
  int quiet;          /* closing from __gc: release, call nobody */
  double slow;        /* debug mode: a Lua callback that runs this long
                         (seconds) is reported; 0: off (callback.c) */
  double slow_duration; /* loop:set_debug's slow_callback_duration */
  char *rbuf;         /* LuaJIT: where plain protocols read (protocol.c) */
  struct tl_acache *acache; /* address values by socket address (address.c) */
  int jobs_ref;       /* work.c: a table of the loop's job objects, kept
                         for the next jobs (no anchor: not in nrefs) */
  struct tl_work *spare_jobs; /* those not in flight, to reuse */
  int njobs, nspare;  /* made, and not in flight */
  tl_link servers;    /* every tl_server not yet collected */
  tl_link calls;      /* pending scheduled calls and server waiters */
  tl_link watches;    /* descriptor and signal watches (watch.c) */
  tl_link transports; /* every anchored tl_transport (loop:_open) */
} tl_loop;

/* The "tapio.loop" userdata's user value: its Lua exception handler (nil:
 * the default), kept after close (callback.c). */
#define TL_LOOP_HANDLER 1

/* Every kind of transport ("tapio.transport", "tapio.read_transport",
 * "tapio.write_transport", "tapio.subprocess_transport",
 * "tapio.datagram_transport"): lives from the
 * create call (or accept) to connection_lost anchored in the registry,
 * then as a closed shell. A subprocess's pipe transports are ones too,
 * made with it, not anchored (their subprocess holds them), with
 * no protocol of their own. */
typedef struct tl_transport {
  tl_link link;       /* lb->transports while anchored */
  tapio_transport *t; /* NULL before connection_made and after lost */
  tl_loop *lb;        /* NULL after connection_lost */
  int self_ref;       /* anchors this userdata while open */
  int proto_ref;      /* the protocol table */
  int factory_ref;    /* a client's factory, until connection_made */
  int cb_ref;         /* create_connection's completion callback */
  int tls_ref;        /* start_tls's, while its handshake runs (a client
                         may start it in connection_made, before cb_ref's
                         call) */
  int err_ref;        /* a callback's error, for connection_lost */
  int buf_ref;        /* the buffer get_buffer returned last */
  int buffered;       /* the tapio protocol table in use has get_buffer */
  unsigned lost_writes; /* writes dropped after connection_lost */
  int batched;        /* a StreamWriter's: see transport:_batched */
  int has_uv;         /* the user value is the transport's table (a
                         subprocess's slots, a closed shell's answers) */
  int ctx_ref;        /* the context its protocol's callbacks run in
                         (context.c); LUA_NOREF: where the loop runs */
} tl_transport;

/* What a closed shell answers after connection_lost, kept then in its
 * user value (tl_end_transport): the extra info under its names, and
 * these slots (a subprocess's 0..4 are its own, process.c). Lua's
 * values: no core handle stays alive for them. */
enum {
  TL_SHELL_LOOP = 5, /* get_loop */
  TL_SHELL_PROTOCOL, /* what set_protocol set after the end */
  TL_SHELL_LOW,      /* get_write_buffer_limits */
  TL_SHELL_HIGH,
  TL_SHELL_EOF,      /* can_write_eof */
  TL_SHELL_STATS,    /* get_stats's figures at the end */
  TL_SHELL_N = TL_SHELL_STATS
};

/* "tapio.server" */
typedef struct tl_server {
  tl_link link;       /* lb->servers */
  tl_loop *lb;        /* NULL once the loop is closed */
  tapio_server *s;    /* our reference, released by __gc */
  int self_ref;       /* anchors this userdata until closed and its
                         connections are gone */
  int factory_ref;
  int cb_ref;         /* create_server's completion callback */
  int ctx_ref;        /* what each connection's context copies
                         (context.c); LUA_NOREF: none */
  int closed;         /* server:close() was called */
} tl_server;

/* "tapio.handle": a scheduled call, or a server's wait_closed waiter. Its
 * user value holds { fn, args..., n = count }. */
typedef struct tl_sched {
  tl_link link;       /* lb->calls while pending */
  tl_loop *lb;
  tapio_handle *h;    /* NULL once run, cancelled, or for waiters */
  int self_ref;       /* anchors this userdata while pending */
  int cancelled;
  double when;        /* loop time it is due; NaN for call_soon */
} tl_sched;

/* "tapio.buffer": fixed-size memory for BufferedProtocol.get_buffer. */
typedef struct tl_buffer {
  size_t size;
  char data[1];
} tl_buffer;

/* ---- loop.c ------------------------------------------------------------ */

/* The module: require "tapio.core". */
TL_EXPORT int luaopen_tapio_core(lua_State *L);

tl_loop *tl_checkloop(lua_State *L, int idx, const char *fn);
/* Pushes the message of the error of fn's run of loop that returned rc
 * (< 0): a busy virtual loop's (TAPIO_ESPIN) says what to look for. */
void tl_push_run_error(lua_State *L, tapio_loop *loop, const char *fn,
                       int rc);
/* The same, also when the loop is closed. */
tl_loop *tl_toloop(lua_State *L, int idx, const char *fn);
/* Pushes the loop's userdata, or nil once it has been collected. */
void tl_pushloop(lua_State *L, tl_loop *lb);
int tl_ref(tl_loop *lb, lua_State *L);
void tl_unref(tl_loop *lb, lua_State *L, int *ref);
/* An open object's anchor: refs the value on top (popped) and, while any
 * such anchor is held, the loop's userdata too. */
int tl_anchor(tl_loop *lb, lua_State *L);
/* The loop anchors itself while something it runs is open (tl_anchor's
 * half): one tl_hold per object, one tl_unhold when it ends. */
void tl_hold(tl_loop *lb, lua_State *L);
void tl_unhold(tl_loop *lb, lua_State *L);
void tl_unanchor(tl_loop *lb, lua_State *L, int *ref);
/* A metatable tname whose __index is a new methods table, left on the
 * stack. */
void tl_newclass(lua_State *L, const char *tname, const luaL_Reg *methods);
/* True when the value at idx has the metatable that is the running C
 * function's upvalue 1 (the transport classes' methods: see
 * tl_transport_class): addresses compared, cheaper than lua_rawequal. */
static inline int tl_isclass(lua_State *L, int idx) {
  int ok = 0;
  if (lua_getmetatable(L, idx)) {
    ok = lua_topointer(L, -1) == lua_topointer(L, lua_upvalueindex(1));
    lua_pop(L, 1);
  }
  return ok;
}
/* t.name = v, t the table on top: the module's constants. */
static inline void tl_setint(lua_State *L, const char *name, int v) {
  lua_pushinteger(L, v);
  lua_setfield(L, -2, name);
}
/* Adds methods to the methods table of the metatable tname. */
void tl_addmethods(lua_State *L, const char *tname, const luaL_Reg *methods);
/* Pushes the metatable tname with its __gc, its __close (Lua 5.4; none
 * when close is NULL) and its __tostring set. */
void tl_lifecycle(lua_State *L, const char *tname, lua_CFunction gc,
                  lua_CFunction close, lua_CFunction tostring);
/* Makes the registry's table at key, with weak values, if it is not
 * there yet. */
void tl_weak_registry(lua_State *L, const void *key);
/* Pushes registry[key], a table whose __mode is mode ("k", "v"), made at
 * the first call. */
void tl_push_weak(lua_State *L, const void *key, const char *mode);

/* lua_CFunction: [1] a light userdata pointing at a host's tapio_loop
 * pointer; pushes a "tapio.loop" object that owns the loop and NULLs the
 * pointer once it does (host_api.c's tapio_lua_push_loop). */
int tl_wrap_loop(lua_State *L);
/* 1 if this copy of the binding was opened in L (luaopen_tapio_core ran
 * there): another copy's tapio.core (a module found on package.cpath) has
 * registry keys of its own, which this copy's objects cannot use. */
int tl_opened_here(lua_State *L);
/* The core loop of the "tapio.loop" at idx; NULL if not one, or closed. */
tapio_loop *tl_loop_of(lua_State *L, int idx);

/* ---- callback.c: the protected-call path, the exception handler ------- */

/* Adds the exception handler's and debug mode's methods to "tapio.loop",
 * and debug mode's hooks for tapio.task to the module on top. */
int tl_open_callback(lua_State *L);
/* Makes the loop's message handler, trampolines and slots (tl_loop's
 * msgh_ref, tramp_ref, tb_ref, pending_ref); tl_callpath_free lets them
 * go (not the Lua exception handler: the loop's user value, kept after
 * close). */
void tl_callpath_init(lua_State *L, tl_loop *lb);
void tl_callpath_free(lua_State *L, tl_loop *lb);
/* The core loop's exception handler (ud: the tl_loop): to the Lua one. */
void tl_on_exception(void *ud, tapio_loop *loop, int code,
                     const char *message, tapio_transport *t);
/* Pushes the message handler and trampoline `which`; push the
 * trampoline's arguments next, then call tl_call. */
int tl_prepare(tl_loop *lb, lua_State *L, int which);
/* Calls the trampoline with nargs arguments. On success, nres results
 * sit on top of the message handler (pop nres + 1); on failure the error
 * is kept for lt's connection_lost (and connect callback), has gone to the
 * exception handler with `what`, lt and proto unless what is NULL, and the
 * stack is back where tl_prepare found it. Returns 0 or -1. */
int tl_call(tl_loop *lb, lua_State *L, int nargs, int nres,
            const char *what, tl_transport *lt);
/* The same for a callback whose error leaves lt open (a datagram
 * endpoint's, as asyncio lets their errors through to the loop's handler
 * and reads on): the error is reported, not kept. */
int tl_call_open(tl_loop *lb, lua_State *L, int nargs, int nres,
                 const char *what, tl_transport *lt);
/* tl_call (how: TL_IN_FAIL) or tl_call_open in lt's context (ctx_ref),
 * or, with TL_IN_OWN, in a copy of it made for this call (asyncio's
 * connection_made): entered around the call, left after it, also after
 * an error (whose report runs inside). One that is entered already (a
 * callback of lt's own on the stack) is not entered again. */
enum { TL_IN_FAIL = 1, TL_IN_OWN = 2 };
int tl_call_in(tl_loop *lb, lua_State *L, int nargs, int nres,
               const char *what, tl_transport *lt, int how);
/* tl_call and tl_call_open for a protocol callback of lt: in lt's
 * context when it has one. Nothing more than the test of ctx_ref while
 * no ContextVar exists (the counted echo rows). */
static inline int tl_proto_call(tl_loop *lb, lua_State *L, int nargs,
                                int nres, const char *what,
                                tl_transport *lt) {
  if (lt->ctx_ref == LUA_NOREF)
    return tl_call(lb, L, nargs, nres, what, lt);
  return tl_call_in(lb, L, nargs, nres, what, lt, TL_IN_FAIL);
}
static inline int tl_proto_call_open(tl_loop *lb, lua_State *L, int nargs,
                                     int nres, const char *what,
                                     tl_transport *lt) {
  if (lt->ctx_ref == LUA_NOREF)
    return tl_call_open(lb, L, nargs, nres, what, lt);
  return tl_call_in(lb, L, nargs, nres, what, lt, 0);
}
/* In debug mode (loop:set_debug, TAPIO_DEBUG), tl_call also tells the
 * exception handler of a call that ran slow_callback_duration or longer
 * (its message names the callback by `what`). tl_debug_init reads
 * TAPIO_DEBUG for a new loop. */
void tl_debug_init(tl_loop *lb);
/* CLOCK_MONOTONIC in seconds (real time, also on a virtual loop). */
double tl_monotonic(void);
/* Sends the value on top (not popped) to the exception handler as an
 * error of `what` (unless NULL), within a protected call, and, if keep,
 * keeps it as lt's error. */
void tl_report(tl_loop *lb, lua_State *L, const char *what,
               tl_transport *lt, int keep);
/* Inside a trampoline: calls the handler with the context table on top
 * (popped), protected. */
void tl_callhandler(tl_loop *lb, lua_State *L);
/* Runs fn(ud) protected, fn making a report to the exception handler (of
 * `what`, e.g. "a slow callback"): an error on the way (out of memory) is
 * printed, as the handler's own are. Needs 2 free stack slots. */
void tl_report_by(lua_State *L, lua_CFunction fn, void *ud, const char *what);
/* The loop whose run is on the stack (or a host steps), or NULL. */
tl_loop *tl_running(lua_State *L);

/* ---- context.c: a transport's context (tapio.context) ------------------ */

/* core._context_hooks, which tapio.context calls at the first ContextVar;
 * before it there is no context to keep and none of these does anything
 * (a transport costs one registry lookup). */
int tl_open_context(lua_State *L);
/* tapio.context's functions that tl_call_in calls. */
enum { TL_CTX_ENTER = 1, TL_CTX_LEAVE };
/* Pushes tapio.context's function h and returns 1, or returns 0 (nothing
 * pushed) before the first ContextVar. */
int tl_context_hook(lua_State *L, tl_loop *lb, int h);
/* A reference to the current context itself (copy 0), or to a copy of
 * it; LUA_NOREF before the first ContextVar. May raise (memory). */
int tl_context_capture(lua_State *L, tl_loop *lb, int copy);
/* A reference to a copy of the context at ref; LUA_NOREF for none. */
int tl_context_copy(lua_State *L, tl_loop *lb, int ref);
/* Calls the protocol factory on top (popped; its protocol pushed) in
 * lt's context, when it has one, as asyncio calls it: an accepted
 * connection's in the copy of its server's; a client's (trade) in the
 * context of the code that made the transport itself, which lt then
 * trades for a copy of it. */
void tl_context_factory(lua_State *L, tl_transport *lt, int trade);

/* ---- embed.c: loop:backend_fd(), loop:backend_timeout() ---------------- */

int tl_open_embed(lua_State *L);

/* ---- testing.c: tapio.core.testing, for tapio.testing ------------------- */

int tl_open_testing(lua_State *L);
/* At a datagram endpoint's connection_lost (datagram.c): its
 * fault counts stay readable through its userdata until it is gone. */
void tl_keep_fault_counts(lua_State *L, tl_transport *lt);

/* ---- call.c ------------------------------------------------------------ */

int tl_open_call(lua_State *L);
int tl_tr_call(lua_State *L);
/* Gives the userdata on top a user value { fn, args..., n } of the values
 * at fi..top: a function and its arguments, kept for a later call. */
void tl_store_call(lua_State *L, int fi, int top);
/* Calls what tl_store_call kept in the userdata at idx (unprotected: from
 * a trampoline). */
void tl_call_stored(lua_State *L, int idx);
/* Registers a server waiter calling the function at fi with the values
 * after it; returns 0 or a tapio error code. */
int tl_wait_closed(lua_State *L, tl_loop *lb, tapio_server *s, int fi);
/* The loop is closed: forget its pending calls. */
void tl_release_calls(tl_loop *lb, lua_State *L);

/* ---- transport.c ------------------------------------------------------- */

int tl_open_transport(lua_State *L);
/* The groups of methods a kind of transport has, as asyncio's classes. */
enum {
  TL_M_BASE = 1 << 0,  /* BaseTransport: close, is_closing, get_extra_info,
                          set_protocol, get_protocol (and get_loop) */
  TL_M_READ = 1 << 1,  /* ReadTransport: is_reading, pause/resume_reading */
  TL_M_WRITE = 1 << 2, /* write, writelines, can_write_eof, write_eof */
  TL_M_FLOW = 1 << 3,  /* abort and the write buffer's size and limits
                          (WriteTransport's and DatagramTransport's) */
  TL_M_STATS = 1 << 4  /* get_stats: tapio's figures */
};
/* The metatable tname of a kind of transport: the groups in which (TL_M_*
 * bits), each method written once in transport.c, and the kind's own
 * (or NULL). Every method checks self against the kind's metatable (its
 * upvalue 1: tl_checktransport). Leaves the methods table on top. */
void tl_transport_class(lua_State *L, const char *tname, unsigned which,
                        const luaL_Reg *own);
/* A new transport userdata of metatable tname on top, with no references
 * and not anchored (a subprocess's pipe: its subprocess holds it). */
tl_transport *tl_newunanchored(lua_State *L, tl_loop *lb, const char *tname);
/* Inside a trampoline: a new transport userdata of metatable tname (the
 * kind's), anchored, on top. */
tl_transport *tl_newtransport(lua_State *L, tl_loop *lb, const char *tname);
/* Releases the anchors of a transport that is done with. */
void tl_release_transport(lua_State *L, tl_transport *lt);
/* At the end of connection_lost: keeps what the closed shell answers
 * after (in a protected call, whose failure is only reported), then
 * releases lt. idx: lt's userdata, or 0 for its anchor. */
void tl_end_transport(lua_State *L, tl_transport *lt, int idx);
int tl_tr_shell(lua_State *L);
/* The transport's Lua object when t is one of the binding's, else nil. */
void tl_pushtransport(lua_State *L, tapio_transport *t);
int tl_tr_connected(lua_State *L);
/* self (index 1) of a transport method: the method's upvalue 1 is the
 * metatable of the kind it belongs to. Raises "bad self" otherwise. */
tl_transport *tl_checktransport(lua_State *L, const char *fn);
/* The transport of any kind at idx, or NULL. */
tl_transport *tl_testtransport(lua_State *L, int idx);
/* Raises fn's error unless lt is open and lb's: "transport is closed" or
 * "the transport belongs to another loop" (a loop method given one). */
void tl_check_usable(lua_State *L, tl_transport *lt, tl_loop *lb,
                     const char *fn);
/* A transport of metatable tname for a create call, anchored, on top: the
 * factory (at fi) runs at connection_made, the completion callback (at
 * cbi) after. */
tl_transport *tl_pending(lua_State *L, tl_loop *lb, const char *tname,
                         int fi, int cbi);
/* The core's completion callback for tl_pending's transports. */
void tl_on_connected(void *ud, int status, tapio_transport *t);
/* What a create method returns for the core's rc: the pending transport
 * (loop:_cancel takes it), or nil and the error (the pending transport
 * released). */
int tl_create_done(lua_State *L, tl_transport *lt, int rc);
/* Calls lt's completion callback (cb_ref, then let go) with status, as
 * create_connection's: (nil, transport, protocol) or (err); `what` names
 * a failing callback for the exception handler. */
void tl_complete(tl_transport *lt, int status, const char *what);

/* ---- protocol.c -------------------------------------------------------- */

/* BaseProtocol's four callbacks, shared by every kind's table (stream,
 * datagram, subprocess): they call the Lua protocol's methods. */
void tl_base_made(void *ud, tapio_transport *t);
void tl_base_lost(void *ud, tapio_transport *t, int code,
                  const char *message);
void tl_base_pause(void *ud, tapio_transport *t);
void tl_base_resume(void *ud, tapio_transport *t);
extern const tapio_protocol tl_plain_protocol;
extern const tapio_protocol tl_buffered_protocol;
/* Inside a trampoline: calls the factory on top (in lt's context:
 * tl_context_factory; client: a create call's), anchors the protocol
 * table it returns and picks the tapio protocol table. */
void tl_take_protocol(lua_State *L, tl_transport *lt, int client);
/* Picks the tapio protocol table for the protocol at index proto: with
 * get_buffer, the buffered one. */
void tl_choose_kind(lua_State *L, int proto, tl_transport *lt);
/* After tl_call: pops the results and the message handler on success. */
void tl_done(lua_State *L, int nres, int status);
int tl_tr_factory(lua_State *L);
int tl_tr_made(lua_State *L);
int tl_tr_data(lua_State *L);
int tl_tr_method(lua_State *L);
int tl_tr_lost(lua_State *L);
int tl_tr_getbuf(lua_State *L);

/* ---- pipe.c, process.c ------------------------------------------------- */

/* loop:_connect_read_pipe, _connect_write_pipe; tapio.pipe, openpty. */
int tl_open_pipe(lua_State *L);
/* loop:_subprocess_exec, _subprocess_shell, "tapio.subprocess_transport",
 * tapio.PIPE and friends, tapio.signals. */
int tl_open_process(lua_State *L);
int tl_tr_pipe_data(lua_State *L);
int tl_tr_pipe_lost(lua_State *L);
int tl_tr_pipes(lua_State *L);
/* The signal at idx, argument n of fn: a number (0..SIGRTMAX) or a name
 * of tapio.signals, with or without "SIG". */
int tl_checksignal(lua_State *L, int idx, const char *fn, int n);

/* ---- tls.c ------------------------------------------------------------- */

int tl_open_tls(lua_State *L);
/* The context of the "tapio.tls_context" at idx, or NULL. */
tapio_tls_context *tl_totlsctx(lua_State *L, int idx);
/* Sets option name to a new default client context (on) or to none. */
int tl_set_default_tls(tapio_options *o, const char *name, int on);
/* transport:get_extra_info's TLS keys: 1 with the value pushed, else 0. */
int tl_tls_extra_info(lua_State *L, tapio_transport *t, const char *name);
/* The TLS keys a closed shell answers, into the table at idx. */
void tl_tls_keep(lua_State *L, tapio_transport *t, int idx);
/* transport:get_stats's TLS figures, into the table on top. */
void tl_tls_stats(lua_State *L, tapio_transport *t);

/* ---- server.c ---------------------------------------------------------- */

int tl_open_server(lua_State *L);
/* The loop is gone: forget its servers. */
void tl_servers_detach(tl_loop *lb, lua_State *L);
int tl_tr_accept(lua_State *L);
int tl_tr_served(lua_State *L);

/* ---- util.c: errors, options, addresses, buffers, sockets -------------- */

/* Pushes a tapio error value {code, name, message}. */
void tl_pusherror(lua_State *L, int code, const char *message);
/* Returns nil, error: how the binding's functions report what the user
 * could not have prevented. */
int tl_fail(lua_State *L, int code);
/* The same for a create call (or start_tls) of loop that returned code at
 * once: with the words of its refusal when the core gave some. */
int tl_fail_call(lua_State *L, tapio_loop *loop, int code);
/* The same for a system call's errno as fn's, in tapio's words: "tapio:
 * fn: " and tapio_strerror's, or, when the descriptor fn took as argument
 * n (0: none) is what is wrong (EBADF, ENOTSOCK), the argument named as
 * an argument error names it. */
int tl_oserror(lua_State *L, int err, const char *fn, int n);
/* Why the core refused a call at once: its words less the call's name
 * (an argument error names the method), or dflt when it gave none. */
const char *tl_refusal(tapio_loop *loop, const char *dflt);
/* Raises "tapio: fn: bad argument #n 'name' (msg)". */
int tl_argerror(lua_State *L, const char *fn, int n, const char *name,
                const char *msg);
int tl_typeerror(lua_State *L, const char *fn, int n, const char *name,
                 int idx, const char *expected);
/* Raises "tapio: fn: msg" placed at the function at level (luaL_where's:
 * 1, the caller of the C function raising it). */
int tl_error_at(lua_State *L, int level, const char *fn, const char *msg);
/* The argument error of a create call given opts.sock and a host or port
 * too (asyncio's ValueError); raised before the call, so the descriptor
 * stays the caller's. */
#define TL_SOCK_EXCLUDES "host/port and opts.sock cannot be given together"
/* Raises "unknown option 'k'" for a key of the table at idx not in names
 * (NULL-ended). */
void tl_checkkeys(lua_State *L, int idx, const char *fn,
                  const char *const *names);
/* The same, placed at the function at level (luaL_where's), for a C
 * function that a Lua method of tapio's calls on its caller's behalf. */
int tl_typeerror_at(lua_State *L, int level, const char *fn, int n,
                    const char *name, int idx, const char *expected);
/* Sends what a StreamWriter batched on transport lt (at idx) before what
 * must come after it: see transport:_batched in transport.c. */
void tl_flush_batched(lua_State *L, tl_transport *lt, int idx);
/* The userdata of metatable tname at idx, or raises "bad self". */
void *tl_checkself(lua_State *L, int idx, const char *tname,
                   const char *fn);
/* Checks an integer argument in [min, max]. */
lua_Integer tl_checkint(lua_State *L, int idx, const char *fn, int n,
                        const char *name, lua_Integer min, lua_Integer max);
/* Whether the string at idx has a NUL inside (C would read it only up to
 * there). */
int tl_hasnul(lua_State *L, int idx);
/* The string at idx as a C string for the core (a host name, a service):
 * one with a NUL inside, which C would read only up to it, raises. */
const char *tl_checkcstring(lua_State *L, int idx, const char *fn, int n,
                            const char *name);
/* A port argument: an integer 0..65535, or a string of one, or a TCP
 * service's name ("http": /etc/services, as asyncio's getaddrinfo takes
 * it). */
int tl_checkport(lua_State *L, int idx, const char *fn, int n);
/* The port string s names: digits, or a service's name for proto ("tcp",
 * "udp"); TL_PORT_RANGE (digits over 65535) or TL_PORT_UNKNOWN. */
enum { TL_PORT_RANGE = -1, TL_PORT_UNKNOWN = -2 };
int tl_portname(const char *s, const char *proto);
/* The port of an address option's {host, port} (at idx): an integer
 * 0..65535, digits, or a service's name for proto. NULL and *port, or
 * what is wrong (a message made for an unknown name left pushed). */
const char *tl_optport(lua_State *L, int idx, const char *proto,
                       lua_Integer *port);
/* 0, or nil and the error value EAI_NONAME pushed (2) when the port at
 * port is a service's name and opts (at opts, a table or not) has flags
 * with AI_NUMERICSERV, which getaddrinfo refuses names for. */
int tl_refuse_named_port(lua_State *L, const char *fn, int port, int opts);
/* NULL if the table at idx is a list of n entries (keys 1..n, no hole);
 * else why not, pushed ("got a table with key 'a'"): a map read as a
 * list would be an empty one. */
const char *tl_not_a_list(lua_State *L, int idx, size_t n);
/* Whether flags are tapio.AI_* flags only (the core's "flags" option). */
int tl_ai_flags_known(lua_Integer flags);
/* The Unix path (a string) at idx for the core: a Linux abstract name
 * given as asyncio spells it ("\0name") becomes the core's "@name" in
 * that slot. NULL when a NUL byte is left inside (C cannot hold it). */
const char *tl_unixpath(lua_State *L, int idx);
/* tl_unixpath of the argument at idx, or an error naming fn's argument. */
const char *tl_checkunixpath(lua_State *L, int idx, const char *fn, int n,
                             const char *name);
/* 1 if the table at idx (any value) has a "sock". */
int tl_has_sock(lua_State *L, int idx);
/* The Unix calls' (cb, factory, path, opts) from slot 4, also given as
 * (cb, factory, opts): the path, or NULL when opts.sock stands for it
 * (a path as well is an argument error). The options end in slot 5. */
const char *tl_unix_path_or_sock(lua_State *L, const char *fn);
double tl_checknumber(lua_State *L, int idx, const char *fn, int n,
                      const char *name);
void tl_checkcallable(lua_State *L, int idx, const char *fn, int n,
                      const char *name);
/* tostring() without the base library; pushes the result. */
const char *tl_tostring(lua_State *L, int idx);

/* Why descriptor fd is not a socket of type (SOCK_STREAM, SOCK_DGRAM), in
 * the words of an argument error, or NULL: asyncio's "A Stream Socket was
 * expected" raised before the call, so the descriptor stays the caller's.
 * A number not open is NULL: the call's EBADF error value says it. */
const char *tl_socktype_problem(int fd, int type);
/* The options table at idx (nil: NULL) as tapio options for call (enum
 * tapio_call), which the caller frees. Raises, having freed them, for a
 * name the call does not take or a bad value (a "sock" of the wrong type
 * among them); so call it after every other argument check and before
 * anything else is made. */
tapio_options *tl_options(lua_State *L, int idx, const char *fn, int n,
                          int call, tapio_loop *loop);

int tl_open_util(lua_State *L);

/* ---- address.c: address values -------------------------------------------- */

void tl_pushaddress(lua_State *L, const char *host, int port, int family);
/* The address value of a socket address: "tapio.address" for IP, the
 * path for Unix, nil for none (an unnamed Unix peer, len 0). */
void tl_pushsockaddr(lua_State *L, const void *sa, size_t len);
/* The socket address of the value at idx (an address value, a table
 * {host, port} of a numeric host, a Unix path) into out[*len]; raises a
 * bad argument n of fn otherwise. */
int tl_toaddr(lua_State *L, int idx, void *out, size_t *len, const char *fn,
              int n);
/* The bytes of the address value at idx, or NULL if it is none. */
const void *tl_addrbytes(lua_State *L, int idx, size_t *len);
/* An IP address given as an option (local_addr, remote_addr) at idx: an
 * address value, {host, port} or {host, port, flowinfo, scope_id}.
 * Pushes its host ("%scope" when it has one), port and flowinfo (nil:
 * none); NULL, or what is wrong with it (that message pushed instead). */
const char *tl_addrparts(lua_State *L, int idx);
/* Pushes the address value of sa[len] as tl_pushsockaddr does, the same
 * value for the same socket address while the loop's cache keeps it (the
 * cache's values: the table at idx). lua_rawgeti may raise (memory). */
void tl_pushcachedaddr(lua_State *L, tl_loop *lb, int idx, const void *sa,
                       size_t len);
/* The bytes of the address value at idx when it is the one
 * tl_pushcachedaddr pushed last (sendto's fast path), else NULL. */
const void *tl_lastaddr(lua_State *L, tl_loop *lb, int idx, size_t *len);
void tl_acache_free(tl_loop *lb);
int tl_open_address(lua_State *L);

/* ---- watch.c: add_reader and friends, add_signal_handler --------------- */

int tl_open_watch(lua_State *L);
int tl_tr_watch(lua_State *L);
/* The loop is closed: forget its watches. */
void tl_release_watches(tl_loop *lb, lua_State *L);

/* ---- datagram.c, resolve.c --------------------------------------------------- */

extern const tapio_datagram_protocol tl_datagram_protocol;
int tl_open_datagram(lua_State *L);
int tl_tr_dgram(lua_State *L);
int tl_tr_dgram_err(lua_State *L);
int tl_open_resolve(lua_State *L);
int tl_tr_lookup(lua_State *L);
/* A pending call with a Lua completion (resolve.c): made with the
 * callback at cbi, left on the stack (loop:_cancel takes it); released
 * by its completion, or by the caller when the call failed at once. */
typedef struct tl_lookup tl_lookup;
tl_lookup *tl_pending_new(lua_State *L, tl_loop *lb, int cbi);
void tl_pending_release(lua_State *L, tl_lookup *lk);
/* A completion with a count (sendfile's): cb(nil, count), or cb(err)
 * with err.count. */
void tl_pending_count(void *ud, int status, uint64_t count);
/* sendfile.c: the descriptor of a file argument (argument n at idx of
 * fn): a Lua file, or an integer; offset (nil: 0) at idx and count (nil:
 * 0, to the end) at idx + 1, arguments n and n + 1 of fn. */
int tl_file_fd(lua_State *L, int idx, const char *fn, int n);
void tl_check_range(lua_State *L, int idx, const char *fn, int n,
                    lua_Integer *offset, lua_Integer *count);
/* A pending call whose userdata also holds size bytes of buffer (a
 * sock_recv's), and that buffer. */
tl_lookup *tl_pending_new_buffer(lua_State *L, tl_loop *lb, int cbi,
                                 size_t size);
void *tl_pending_buffer(tl_lookup *lk);
/* Pushes a completion's results after its nil (status 0; how many), or
 * adds to its error value on top (0). */
typedef int (*tl_push_fn)(lua_State *L, const void *ctx, int status);
/* A completion with results push gives: cb(nil, ...) or cb(err); 1 when
 * cb was called (a closing loop calls nobody). */
int tl_pending_answer(void *ud, int status, tl_push_fn push,
                      const void *ctx);
int tl_open_sendfile(lua_State *L);
/* ---- sock.c: loop:_sock_recv and friends ------------------------------- */

int tl_open_sock(lua_State *L);
/* watch.c's words for a descriptor the core refused (EBADF, EPERM,
 * EBUSY), raised as a bad argument n of fn; returns 0 for another rc. */
int tl_fd_refused(lua_State *L, const char *fn, int n, int rc);
/* ---- work.c: loop:_run_in_executor (to_thread) ------------------------- */

int tl_open_work(lua_State *L);
/* 1 when the value at idx is a pending job ("tapio.work"). */
int tl_is_work(lua_State *L, int idx);
/* loop:_cancel of the job at idx: pushes true if it was still to come. */
int tl_work_cancel(lua_State *L, int idx);
/* loop_free, after the core loop: the table of the loop's jobs goes. */
void tl_work_free(tl_loop *lb, lua_State *L);

/* server.c: a pending create_server was cancelled; nothing will call it. */
void tl_server_cancelled(lua_State *L, tl_server *ls);

#endif
