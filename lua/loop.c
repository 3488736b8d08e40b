/* The Lua binding's loop: "tapio.loop", the one protected-call path every
 * callback takes, the exception handler, and the module's entry point,
 * luaopen_tapio_core. */
#include "tapio_lua.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Registry keys (their addresses): a weak table of the loops by their
 * tl_loop pointer, and the loop that is running, if any. */
static const char loops_key = 'l';
static const char running_key = 'r';

/* ---- Lists ------------------------------------------------------------- */

void tl_list_init(tl_link *head) { head->next = head->prev = head; }

void tl_list_push(tl_link *head, tl_link *l) {
  l->prev = head->prev;
  l->next = head;
  head->prev->next = l;
  head->prev = l;
}

void tl_list_remove(tl_link *l) {
  l->prev->next = l->next;
  l->next->prev = l->prev;
  l->next = l->prev = l;
}

/* ---- References -------------------------------------------------------- */

/* Counted so that a spec can see every anchor come back (loop:_debug). */
int tl_ref(tl_loop *lb, lua_State *L) {
  lb->nrefs++;
  return luaL_ref(L, LUA_REGISTRYINDEX);
}

void tl_unref(tl_loop *lb, lua_State *L, int *ref) {
  if (*ref == LUA_NOREF)
    return;
  luaL_unref(L, LUA_REGISTRYINDEX, *ref); /* nothing to do for REFNIL */
  *ref = LUA_NOREF;
  lb->nrefs--;
}

/* Open objects (a transport from its create call to connection_lost, a
 * server until closed, a pending call or waiter) anchor their userdata in
 * the registry, and while any is anchored the loop anchors its own: the
 * collector never closes a loop under them (asyncio: a transport holds its
 * loop), however the script let go of the loop. */
int tl_anchor(tl_loop *lb, lua_State *L) {
  if (lb->nopen++ == 0) {
    tl_pushloop(L, lb);
    lb->self_ref = tl_ref(lb, L);
  }
  return tl_ref(lb, L);
}

void tl_unanchor(tl_loop *lb, lua_State *L, int *ref) {
  if (*ref == LUA_NOREF)
    return;
  tl_unref(lb, L, ref);
  if (--lb->nopen == 0)
    tl_unref(lb, L, &lb->self_ref);
}

/* ---- The protected-call path ------------------------------------------- */

static int tr_report(lua_State *L);
static int tr_core(lua_State *L);

static const lua_CFunction tramps[TL_NTRAMP] = {
  [TL_T_FACTORY] = tl_tr_factory,
  [TL_T_MADE] = tl_tr_made,
  [TL_T_DATA] = tl_tr_data,
  [TL_T_METHOD] = tl_tr_method,
  [TL_T_LOST] = tl_tr_lost,
  [TL_T_GETBUF] = tl_tr_getbuf,
  [TL_T_ACCEPT] = tl_tr_accept,
  [TL_T_CONNECTED] = tl_tr_connected,
  [TL_T_SERVED] = tl_tr_served,
  [TL_T_CALL] = tl_tr_call,
  [TL_T_REPORT] = tr_report,
  [TL_T_CORE] = tr_core,
  [TL_T_PIPE_DATA] = tl_tr_pipe_data,
  [TL_T_PIPE_LOST] = tl_tr_pipe_lost,
  [TL_T_DGRAM] = tl_tr_dgram,
  [TL_T_DGRAM_ERR] = tl_tr_dgram_err,
  [TL_T_LOOKUP] = tl_tr_lookup,
  [TL_T_WATCH] = tl_tr_watch,
};

/* [1]'s __tostring, in a call of its own: it may raise. */
static int call_tostring(lua_State *L) {
  return luaL_callmeta(L, 1, "__tostring");
}

/* Pushes the text of the error value at 1 for its traceback. */
static const char *error_text(lua_State *L) {
  if (lua_type(L, 1) == LUA_TSTRING || lua_type(L, 1) == LUA_TNUMBER) {
    lua_pushvalue(L, 1); /* a number is converted in the copy */
    return lua_tostring(L, -1);
  }
  lua_pushcfunction(L, call_tostring);
  lua_pushvalue(L, 1);
  if (lua_pcall(L, 1, 1, 0) == LUA_OK && lua_type(L, -1) == LUA_TSTRING)
    return lua_tostring(L, -1);
  lua_pop(L, 1);
  return lua_pushfstring(L, "(error object is a %s value)",
                         luaL_typename(L, 1));
}

/* The message handler: keeps the traceback in the loop's tb slot and
 * leaves the error value itself alone, so that connection_lost gets the
 * very value the protocol raised. Only nil and false, which would read as
 * a clean close, become an ECALLBACK error value: a failure is always an
 * error value. */
static int msghandler(lua_State *L) {
  tl_loop *lb = lua_touserdata(L, lua_upvalueindex(1));
  lua_settop(L, 1);
  if (!lua_toboolean(L, 1)) {
    tl_pusherror(L, TAPIO_ECALLBACK,
                 lua_pushfstring(L, "error object is a %s value",
                                 luaL_typename(L, 1)));
    lua_replace(L, 1);
    lua_settop(L, 1);
  }
  luaL_traceback(L, L, error_text(L), 1);
  lua_rawseti(L, LUA_REGISTRYINDEX, lb->tb_ref);
  lua_settop(L, 1);
  return 1;
}

int tl_prepare(tl_loop *lb, lua_State *L, int which) {
  if (!lua_checkstack(L, 8))
    return -1;
  lua_rawgeti(L, LUA_REGISTRYINDEX, lb->msgh_ref);
  lua_rawgeti(L, LUA_REGISTRYINDEX, lb->tramp_ref[which]);
  return 0;
}

int tl_call(tl_loop *lb, lua_State *L, int nargs, int nres,
            const char *what, tl_transport *lt) {
  int base = lua_gettop(L) - nargs - 1; /* the message handler */
  if (lua_pcall(L, nargs, nres, base) == LUA_OK)
    return 0;
  tl_report(lb, L, what, lt);
  if (lt && lt->t) {
    const char *msg = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1)
                                                     : "error in a callback";
    /* The protocol gets connection_lost(err) with the error itself. */
    tapio_transport_fail(lt->t, TAPIO_ECALLBACK, msg);
  }
  lua_settop(L, base - 1);
  return -1;
}

typedef struct report_args {
  tl_loop *lb;
  const char *what;
  tl_transport *lt;
} report_args;

void tl_report(tl_loop *lb, lua_State *L, const char *what,
               tl_transport *lt) {
  report_args a;
  a.lb = lb;
  a.what = what;
  a.lt = lt;
  if (lb->quiet || !lua_checkstack(L, 4))
    return;
  lua_rawgeti(L, LUA_REGISTRYINDEX, lb->tramp_ref[TL_T_REPORT]);
  lua_pushlightuserdata(L, &a);
  lua_pushvalue(L, -3); /* the error */
  if (lua_pcall(L, 2, 0, 0) != LUA_OK) {
    fprintf(stderr, "tapio: cannot report an error (%s): %s\n",
            what ? what : "kept",
            lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "?");
    lua_pop(L, 1);
  }
}

/* Moves the kept traceback into ctx (on top) and clears the slot. */
static void take_traceback(tl_loop *lb, lua_State *L) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, lb->tb_ref);
  if (lua_type(L, -1) == LUA_TSTRING)
    lua_setfield(L, -2, "traceback");
  else
    lua_pop(L, 1);
  lua_pushboolean(L, 0);
  lua_rawseti(L, LUA_REGISTRYINDEX, lb->tb_ref);
}

/* [1] report_args, [2] the error */
static int tr_report(lua_State *L) {
  report_args *a = lua_touserdata(L, 1);
  tl_transport *lt = a->lt;
  if (lt && lt->lb && lt->err_ref == LUA_NOREF) {
    lua_pushvalue(L, 2); /* the first error is the one connection_lost gets */
    lt->err_ref = tl_ref(lt->lb, L);
  }
  if (!a->what) { /* someone else reports it */
    lua_pushboolean(L, 0);
    lua_rawseti(L, LUA_REGISTRYINDEX, a->lb->tb_ref);
    return 0;
  }
  lua_createtable(L, 0, 5);
  lua_pushstring(L, a->what);
  lua_setfield(L, -2, "message");
  lua_pushvalue(L, 2);
  lua_setfield(L, -2, "exception");
  take_traceback(a->lb, L);
  if (lt && lt->self_ref != LUA_NOREF) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, lt->self_ref);
    lua_setfield(L, -2, "transport");
  }
  if (lt && lt->proto_ref != LUA_NOREF) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, lt->proto_ref);
    lua_setfield(L, -2, "protocol");
  }
  tl_callhandler(a->lb, L);
  return 0;
}

typedef struct core_args {
  tl_loop *lb;
  int code;
  const char *message;
  tapio_transport *t;
} core_args;

/* An error the core reports ([1] core_args): a server factory's failure
 * comes back here as TAPIO_ECALLBACK with the Lua error kept aside. */
static int tr_core(lua_State *L) {
  core_args *a = lua_touserdata(L, 1);
  lua_createtable(L, 0, 4);
  lua_pushstring(L, a->message ? a->message : tapio_strerror(a->code));
  lua_setfield(L, -2, "message");
  lua_rawgeti(L, LUA_REGISTRYINDEX, a->lb->pending_ref);
  if (a->code == TAPIO_ECALLBACK && lua_toboolean(L, -1)) {
    lua_setfield(L, -2, "exception");
    take_traceback(a->lb, L);
  } else {
    lua_pop(L, 1);
    tl_pusherror(L, a->code, a->message);
    lua_setfield(L, -2, "exception");
  }
  lua_pushboolean(L, 0);
  lua_rawseti(L, LUA_REGISTRYINDEX, a->lb->pending_ref);
  if (a->t) {
    tl_pushtransport(L, a->t);
    lua_setfield(L, -2, "transport");
  }
  tl_callhandler(a->lb, L);
  return 0;
}

/* The core's exception handler: everything goes to the Lua one. */
static void on_exception(void *ud, tapio_loop *loop, int code,
                         const char *message, tapio_transport *t) {
  tl_loop *lb = ud;
  lua_State *L = lb->L;
  core_args a;
  (void)loop;
  if (lb->quiet || !L || !lua_checkstack(L, 4))
    return;
  a.lb = lb;
  a.code = code;
  a.message = message;
  a.t = t;
  lua_rawgeti(L, LUA_REGISTRYINDEX, lb->tramp_ref[TL_T_CORE]);
  lua_pushlightuserdata(L, &a);
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
    fprintf(stderr, "tapio: %s (%s)\n", message ? message : "error",
            tapio_errname(code));
    lua_pop(L, 1);
  }
}

/* ---- Exception handler ------------------------------------------------- */

static void print_field(lua_State *L, int ctx, const char *name,
                        const char *prefix) {
  lua_getfield(L, ctx, name);
  if (!lua_isnil(L, -1))
    fprintf(stderr, "%s%s\n", prefix, tl_tostring(L, -1));
  lua_settop(L, ctx);
}

/* loop:default_exception_handler(context): the message, then the
 * traceback (which starts with the error) or the error alone. */
static int l_default_handler(lua_State *L) {
  int ctx = 2;
  if (!lua_istable(L, ctx))
    return tl_typeerror(L, "loop:default_exception_handler", 1, "context",
                        ctx, "table");
  lua_settop(L, ctx);
  lua_getfield(L, ctx, "message");
  fprintf(stderr, "tapio: %s\n",
          lua_isnil(L, -1) ? "unhandled error" : tl_tostring(L, -1));
  lua_settop(L, ctx);
  lua_getfield(L, ctx, "traceback");
  if (lua_type(L, -1) == LUA_TSTRING)
    fprintf(stderr, "%s\n", lua_tostring(L, -1));
  else
    print_field(L, ctx, "exception", "");
  lua_settop(L, ctx);
  print_field(L, ctx, "transport", "  transport: ");
  fflush(stderr);
  return 0;
}

/* Calls handler(loop, context) with the context on top (popped); an error
 * in the handler itself is printed, as asyncio logs it. */
void tl_callhandler(tl_loop *lb, lua_State *L) {
  int ctx = lua_gettop(L);
  if (lb->handler_ref == LUA_NOREF)
    lua_pushcfunction(L, l_default_handler);
  else
    lua_rawgeti(L, LUA_REGISTRYINDEX, lb->handler_ref);
  tl_pushloop(L, lb);
  lua_pushvalue(L, ctx);
  if (lua_pcall(L, 2, 0, 0) != LUA_OK) {
    fprintf(stderr, "tapio: the exception handler failed: %s\n",
            tl_tostring(L, -1));
    lua_settop(L, ctx);
    lua_pushcfunction(L, l_default_handler);
    tl_pushloop(L, lb);
    lua_pushvalue(L, ctx);
    if (lua_pcall(L, 2, 0, 0) != LUA_OK)
      fprintf(stderr, "tapio: %s\n", tl_tostring(L, -1));
  }
  lua_settop(L, ctx - 1);
}

static int l_set_exception_handler(lua_State *L) {
  tl_loop *lb = tl_checkloop(L, 1, "loop:set_exception_handler");
  if (!lua_isnil(L, 2))
    tl_checkcallable(L, 2, "loop:set_exception_handler", 1, "handler");
  lua_settop(L, 2);
  tl_unref(lb, L, &lb->handler_ref);
  if (lua_isnil(L, 2))
    return 0;
  lb->handler_ref = tl_ref(lb, L);
  return 0;
}

static int l_get_exception_handler(lua_State *L) {
  tl_loop *lb = tl_checkloop(L, 1, "loop:get_exception_handler");
  if (lb->handler_ref == LUA_NOREF)
    lua_pushnil(L);
  else
    lua_rawgeti(L, LUA_REGISTRYINDEX, lb->handler_ref);
  return 1;
}

static int l_call_exception_handler(lua_State *L) {
  tl_loop *lb = tl_checkloop(L, 1, "loop:call_exception_handler");
  if (!lua_istable(L, 2))
    return tl_typeerror(L, "loop:call_exception_handler", 1, "context", 2,
                        "table");
  lua_settop(L, 2);
  tl_callhandler(lb, L);
  return 0;
}

/* ---- The loop object --------------------------------------------------- */

tl_loop *tl_toloop(lua_State *L, int idx, const char *fn) {
  return tl_checkself(L, idx, TL_LOOP, fn);
}

tl_loop *tl_checkloop(lua_State *L, int idx, const char *fn) {
  tl_loop *lb = tl_toloop(L, idx, fn);
  if (!lb->loop || lb->closing)
    luaL_error(L, "tapio: %s: the loop is closed", fn);
  return lb;
}

void tl_pushloop(lua_State *L, tl_loop *lb) {
  tl_rawgetp(L, LUA_REGISTRYINDEX, &loops_key);
  tl_rawgetp(L, -1, lb);
  lua_remove(L, -2);
}

static int new_ref_value(tl_loop *lb, lua_State *L) {
  lua_pushboolean(L, 0);
  return tl_ref(lb, L);
}

/* Callbacks run on a thread of the loop's own, never on the caller's: a
 * write from a task calls pause_writing at once, and on the task's
 * coroutine the callback would be inside that task (the async rule would
 * make it yield across the C call). The thread is only ever used by
 * balanced calls, so it serves nested callbacks too. */
static void loop_init_refs(lua_State *L, tl_loop *lb) {
  int i;
  lb->msgh_ref = lb->handler_ref = lb->tb_ref = lb->pending_ref = LUA_NOREF;
  for (i = 0; i < TL_NTRAMP; i++)
    lb->tramp_ref[i] = LUA_NOREF;
  lb->L = lua_newthread(L);
  lb->thread_ref = tl_ref(lb, L);
  lua_pushlightuserdata(L, lb);
  lua_pushcclosure(L, msghandler, 1);
  lb->msgh_ref = tl_ref(lb, L);
  for (i = 0; i < TL_NTRAMP; i++) {
    int n = 0;
    /* the method's name as an upvalue: its lookup hashes no C string */
    if (i == TL_T_DATA) {
      lua_pushliteral(L, "data_received");
      n = 1;
    } else if (i == TL_T_DGRAM) {
      lua_pushliteral(L, "datagram_received");
      lua_newtable(L); /* the values of lb->acache, made as they come */
      n = 2;
    }
    lua_pushcclosure(L, tramps[i], n);
    lb->tramp_ref[i] = tl_ref(lb, L);
  }
  lb->tb_ref = new_ref_value(lb, L);
  lb->pending_ref = new_ref_value(lb, L);
}

static void loop_free_refs(lua_State *L, tl_loop *lb) {
  int i;
  tl_unref(lb, L, &lb->msgh_ref);
  for (i = 0; i < TL_NTRAMP; i++)
    tl_unref(lb, L, &lb->tramp_ref[i]);
  tl_unref(lb, L, &lb->handler_ref);
  tl_unref(lb, L, &lb->tb_ref);
  tl_unref(lb, L, &lb->pending_ref);
  tl_unref(lb, L, &lb->thread_ref);
  tl_acache_free(lb);
  lb->L = NULL;
}

/* A "tapio.loop" userdata on top, before any core loop exists: running
 * out of memory then leaks nothing. */
static tl_loop *new_loop_object(lua_State *L) {
  tl_loop *lb = tl_newuserdata(L, sizeof *lb);
  memset(lb, 0, sizeof *lb);
  lb->msgh_ref = lb->thread_ref = lb->self_ref = LUA_NOREF;
  tl_list_init(&lb->servers);
  tl_list_init(&lb->calls);
  tl_list_init(&lb->watches);
  tl_list_init(&lb->transports);
  return lb;
}

/* The object on top takes *loop (and NULLs it once it does): from the
 * metatable on, __gc frees it. */
static void adopt_loop(lua_State *L, tl_loop *lb, tapio_loop **loop) {
  lb->loop = *loop;
  luaL_setmetatable(L, TL_LOOP);
  *loop = NULL;
  loop_init_refs(L, lb);
  tl_rawgetp(L, LUA_REGISTRYINDEX, &loops_key);
  lua_pushvalue(L, -2);
  tl_rawsetp(L, -2, lb);
  lua_pop(L, 1);
  tapio_loop_set_exception_handler(lb->loop, on_exception, lb);
}

/* tapio.new_loop() */
static int l_new_loop(lua_State *L) {
  tl_loop *lb = new_loop_object(L);
  tapio_loop *loop;
  int rc = tapio_loop_new(&loop);
  if (rc < 0) { /* e.g. EMFILE: raised as an error value, code and all */
    lua_pushfstring(L, "tapio: new_loop: %s", tapio_strerror(rc));
    tl_pusherror(L, rc, lua_tostring(L, -1));
    return lua_error(L);
  }
  adopt_loop(L, lb, &loop);
  return 1;
}

int tl_wrap_loop(lua_State *L) {
  tapio_loop **loop = lua_touserdata(L, 1);
  tl_loop *lb = new_loop_object(L);
  adopt_loop(L, lb, loop);
  return 1;
}

tapio_loop *tl_loop_of(lua_State *L, int idx) {
  tl_loop *lb = luaL_testudata(L, idx, TL_LOOP);
  return lb && !lb->closing ? lb->loop : NULL;
}

/* Frees the core loop. Its open transports get connection_lost (with
 * ECANCELED) unless quiet; calls made from those callbacks are dropped. */
static void loop_free(lua_State *L, tl_loop *lb, int quiet) {
  lb->quiet = quiet;
  lb->closing = 1;
  tapio_loop_free(lb->loop);
  lb->loop = NULL;
  free(lb->rbuf);
  lb->rbuf = NULL;
  tl_release_calls(lb, L);
  tl_release_watches(lb, L);
  tl_servers_detach(lb, L);
  loop_free_refs(L, lb);
}

static int l_close(lua_State *L) {
  tl_loop *lb = tl_toloop(L, 1, "loop:close");
  if (!lb->loop || lb->closing)
    return 0;
  if (tapio_loop_is_running(lb->loop))
    return luaL_error(L, "tapio: loop:close: cannot close a running loop");
  loop_free(L, lb, 0);
  return 0;
}

/* A loop with anything open anchors itself (tl_anchor): the collector
 * gets here with nothing open, or at lua_close, where everything is
 * collected at once; then the loop is freed without calling anybody back. */
static int l_gc(lua_State *L) {
  tl_loop *lb = lua_touserdata(L, 1);
  if (lb->loop && !lb->closing && !tapio_loop_is_running(lb->loop))
    loop_free(L, lb, 1);
  return 0;
}

static int l_is_closed(lua_State *L) {
  tl_loop *lb = tl_toloop(L, 1, "loop:is_closed");
  lua_pushboolean(L, !lb->loop || lb->closing);
  return 1;
}

static int l_is_running(lua_State *L) {
  tl_loop *lb = tl_toloop(L, 1, "loop:is_running");
  lua_pushboolean(L, lb->loop && tapio_loop_is_running(lb->loop));
  return 1;
}

/* Runs the loop with it as the running one; restores the outer one
 * after. */
static int run_with(lua_State *L, tl_loop *lb, const char *fn, int once,
                    int wait) {
  int rc;
  tl_rawgetp(L, LUA_REGISTRYINDEX, &running_key); /* the outer one */
  lua_pushvalue(L, 1);
  tl_rawsetp(L, LUA_REGISTRYINDEX, &running_key);
  rc = once ? tapio_loop_run_once(lb->loop, wait) : tapio_loop_run(lb->loop);
  tl_rawsetp(L, LUA_REGISTRYINDEX, &running_key);
  if (rc == TAPIO_ERUNNING && tapio_loop_is_running(lb->loop))
    return luaL_error(L, "tapio: %s: the loop is already running", fn);
  if (rc == TAPIO_ERUNNING) /* the core refuses nested runs, as asyncio */
    return luaL_error(L, "tapio: %s: another loop is running on this "
                      "thread (loops do not nest)", fn);
  if (rc < 0)
    return luaL_error(L, "tapio: %s: %s", fn, tapio_strerror(rc));
  return 0;
}

static int l_run_forever(lua_State *L) {
  tl_loop *lb = tl_checkloop(L, 1, "loop:run_forever");
  lua_settop(L, 1);
  return run_with(L, lb, "loop:run_forever", 0, 0);
}

/* loop:run_once([wait]): one iteration; waits for events only when wait
 * is true, so a host can step tapio every frame. */
static int l_run_once(lua_State *L) {
  tl_loop *lb = tl_checkloop(L, 1, "loop:run_once");
  int wait = lua_toboolean(L, 2);
  lua_settop(L, 1);
  return run_with(L, lb, "loop:run_once", 1, wait);
}

static int l_stop(lua_State *L) {
  tl_loop *lb = tl_checkloop(L, 1, "loop:stop");
  tapio_loop_stop(lb->loop);
  return 0;
}

static int l_time(lua_State *L) {
  tl_loop *lb = tl_checkloop(L, 1, "loop:time");
  lua_pushnumber(L, tapio_loop_time(lb->loop));
  return 1;
}

static int l_memory(lua_State *L) {
  tl_loop *lb = tl_checkloop(L, 1, "loop:memory");
  lua_pushnumber(L, (lua_Number)tapio_loop_memory(lb->loop));
  return 1;
}

/* loop:_debug(): figures for the specs' leak checks. */
static int l_debug(lua_State *L) {
  tl_loop *lb = tl_toloop(L, 1, "loop:_debug");
  int nservers = 0, ncalls = 0;
  tl_link *l;
  for (l = lb->servers.next; l != &lb->servers; l = l->next)
    nservers++;
  for (l = lb->calls.next; l != &lb->calls; l = l->next)
    ncalls++;
  lua_createtable(L, 0, 3);
  lua_pushinteger(L, lb->nrefs);
  lua_setfield(L, -2, "refs");
  lua_pushinteger(L, nservers);
  lua_setfield(L, -2, "servers");
  lua_pushinteger(L, ncalls);
  lua_setfield(L, -2, "calls");
  return 1;
}

static int l_loop_tostring(lua_State *L) {
  tl_loop *lb = tl_toloop(L, 1, "loop:__tostring");
  lua_pushfstring(L, "tapio.loop (%s)",
                  !lb->loop ? "closed"
                  : tapio_loop_is_running(lb->loop) ? "running" : "idle");
  return 1;
}

/* tapio.core.get_running_loop(): the loop whose run is on the stack. */
static int l_get_running_loop(lua_State *L) {
  tl_rawgetp(L, LUA_REGISTRYINDEX, &running_key);
  if (lua_toboolean(L, -1))
    return 1;
  /* a host stepping a loop from C (tapio_loop_run_once): ask the core */
  tl_rawgetp(L, LUA_REGISTRYINDEX, &loops_key);
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    tl_loop *lb = lua_touserdata(L, -1);
    if (lb && lb->loop && tapio_loop_is_running(lb->loop))
      return 1;
    lua_pop(L, 1);
  }
  lua_pushnil(L);
  return 1;
}

/* ---- Module ------------------------------------------------------------ */

static const luaL_Reg loop_methods[] = {
  {"close", l_close},
  {"is_closed", l_is_closed},
  {"is_running", l_is_running},
  {"run_forever", l_run_forever},
  {"run_once", l_run_once},
  {"stop", l_stop},
  {"time", l_time},
  {"memory", l_memory},
  {"set_exception_handler", l_set_exception_handler},
  {"get_exception_handler", l_get_exception_handler},
  {"call_exception_handler", l_call_exception_handler},
  {"default_exception_handler", l_default_handler},
  {"_debug", l_debug},
  {NULL, NULL}
};


/* The module exposes each methods table so the Lua layer can add to it. */
void tl_newclass(lua_State *L, const char *tname, const luaL_Reg *methods) {
  luaL_newmetatable(L, tname);
  lua_pushstring(L, tname); /* 5.4 sets __name, 5.1 does not */
  lua_setfield(L, -2, "__name");
  lua_newtable(L);
  luaL_setfuncs(L, methods, 0);
  lua_pushvalue(L, -1);
  lua_setfield(L, -3, "__index");
  lua_remove(L, -2);
}

void tl_addmethods(lua_State *L, const char *tname, const luaL_Reg *methods) {
  luaL_getmetatable(L, tname);
  lua_getfield(L, -1, "__index");
  luaL_setfuncs(L, methods, 0);
  lua_pop(L, 2);
}

static void open_loop(lua_State *L) {
  tl_newclass(L, TL_LOOP, loop_methods);
  lua_setfield(L, -2, "loop_methods");
  luaL_getmetatable(L, TL_LOOP);
  lua_pushcfunction(L, l_gc);
  lua_setfield(L, -2, "__gc");
#if LUA_VERSION_NUM >= 504
  lua_pushcfunction(L, l_close);
  lua_setfield(L, -2, "__close");
#endif
  lua_pushcfunction(L, l_loop_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_setfield(L, -2, "loop_metatable"); /* the Lua layer checks self */
}

void tl_weak_registry(lua_State *L, const void *key) {
  tl_rawgetp(L, LUA_REGISTRYINDEX, key);
  if (lua_isnil(L, -1)) {
    lua_newtable(L);
    lua_createtable(L, 0, 1);
    lua_pushliteral(L, "v");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
    tl_rawsetp(L, LUA_REGISTRYINDEX, key);
  }
  lua_pop(L, 1);
}

static void registry_tables(lua_State *L) {
  tl_rawgetp(L, LUA_REGISTRYINDEX, &running_key);
  if (lua_isnil(L, -1)) {
    lua_pushboolean(L, 0);
    tl_rawsetp(L, LUA_REGISTRYINDEX, &running_key);
  }
  lua_pop(L, 1);
  tl_weak_registry(L, &loops_key);
}

static const luaL_Reg module_functions[] = {
  {"new_loop", l_new_loop},
  {"get_running_loop", l_get_running_loop},
  {NULL, NULL}
};

TL_EXPORT int luaopen_tapio_core(lua_State *L) {
  registry_tables(L);
  lua_newtable(L);
  luaL_setfuncs(L, module_functions, 0);
  open_loop(L);
  tl_open_call(L);
  tl_open_transport(L);
  tl_open_server(L);
  tl_open_tls(L);
  tl_open_pipe(L);
  tl_open_process(L);
  tl_open_util(L);
  tl_open_datagram(L);
  tl_open_resolve(L);
  tl_open_embed(L);
  tl_open_watch(L);
  tl_open_testing(L);
  lua_pushstring(L, tapio_version_string());
  lua_setfield(L, -2, "version");
  return 1;
}
