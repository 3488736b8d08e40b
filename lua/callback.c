/* The one protected-call path every callback into Lua takes (a
 * trampoline per kind of callback, inside lua_pcall with a message handler
 * that keeps the traceback), and where a callback's error goes: the
 * loop's exception handler, Lua's or the default one. */
#include "tapio_lua.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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
  [TL_T_SHELL] = tl_tr_shell,
  [TL_T_PIPES] = tl_tr_pipes,
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

static void report_slow(tl_loop *lb, lua_State *L, double t0,
                        const char *what, tl_transport *lt);

/* The error of a failed call (on top): reported, and, when the call
 * fails its transport, the protocol gets connection_lost(err) with the
 * error itself. */
static void failed(tl_loop *lb, lua_State *L, int base, const char *what,
                   tl_transport *lt, int fail) {
  tl_report(lb, L, what, lt, fail);
  if (fail && lt && lt->t) {
    const char *msg = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1)
                                                     : "error in a callback";
    tapio_transport_fail(lt->t, TAPIO_ECALLBACK, msg);
  }
  lua_settop(L, base - 1);
}

/* Inlined into both callers: every protocol callback goes through here,
 * and a call of its own would cost each one (the counted echo rows). */
static inline __attribute__((always_inline)) int
call(tl_loop *lb, lua_State *L, int nargs, int nres, const char *what,
     tl_transport *lt, int fail) {
  int base = lua_gettop(L) - nargs - 1; /* the message handler */
  double t0;
  if (lb->slow <= 0) { /* the usual case: no clock read */
    if (lua_pcall(L, nargs, nres, base) == LUA_OK)
      return 0;
    failed(lb, L, base, what, lt, fail);
    return -1;
  }
  t0 = tl_monotonic();
  if (lua_pcall(L, nargs, nres, base) == LUA_OK) {
    report_slow(lb, L, t0, what, lt);
    return 0;
  }
  failed(lb, L, base, what, lt, fail);
  report_slow(lb, L, t0, what, lt);
  return -1;
}

int tl_call(tl_loop *lb, lua_State *L, int nargs, int nres,
            const char *what, tl_transport *lt) {
  return call(lb, L, nargs, nres, what, lt, 1);
}

int tl_call_open(tl_loop *lb, lua_State *L, int nargs, int nres,
                 const char *what, tl_transport *lt) {
  return call(lb, L, nargs, nres, what, lt, 0);
}

/* leave(the context at idx), unless it is false (none was entered). */
static void leave(tl_loop *lb, lua_State *L, int idx) {
  if (!lua_toboolean(L, idx) || !tl_context_hook(L, lb, TL_CTX_LEAVE))
    return;
  lua_pushvalue(L, idx);
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) { /* it allocates nothing */
    fprintf(stderr, "tapio: cannot leave a transport's context: %s\n",
            tl_tostring(L, -1));
    lua_pop(L, 1);
  }
}

/* The context entered sits below the message handler during the call:
 * left after it, whichever way it ended, then removed, so that the
 * stack is what tl_call leaves. */
int tl_call_in(tl_loop *lb, lua_State *L, int nargs, int nres,
               const char *what, tl_transport *lt, int how) {
  int at = lua_gettop(L) - nargs - 1; /* the message handler */
  int fail = how & TL_IN_FAIL, rc;
  if (!lua_checkstack(L, 4) || !tl_context_hook(L, lb, TL_CTX_ENTER))
    return call(lb, L, nargs, nres, what, lt, fail);
  lua_rawgeti(L, LUA_REGISTRYINDEX, lt->ctx_ref);
  lua_pushboolean(L, how & TL_IN_OWN);
  if (lua_pcall(L, 2, 1, 0) != LUA_OK) { /* out of memory */
    failed(lb, L, at, what, lt, fail);
    return -1;
  }
  lua_insert(L, at);
  rc = call(lb, L, nargs, nres, what, lt, fail);
  leave(lb, L, at);
  lua_remove(L, at);
  return rc;
}

typedef struct report_args {
  tl_loop *lb;
  const char *what;
  tl_transport *lt;
  int keep;
} report_args;

void tl_report(tl_loop *lb, lua_State *L, const char *what,
               tl_transport *lt, int keep) {
  report_args a;
  a.lb = lb;
  a.what = what;
  a.lt = lt;
  a.keep = keep;
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
  if (a->keep && lt && lt->lb && lt->err_ref == LUA_NOREF) {
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
void tl_on_exception(void *ud, tapio_loop *loop, int code,
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
 * traceback (which starts with the error) or the error alone, then the
 * transport and the task (or else the future) it concerns. */
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
  lua_getfield(L, ctx, "task");
  if (lua_isnil(L, -1)) /* a plain future's report: no task to name */
    print_field(L, ctx, "future", "  future: ");
  else
    print_field(L, ctx, "task", "  task: ");
  fflush(stderr);
  return 0;
}

void tl_report_by(lua_State *L, lua_CFunction fn, void *ud, const char *what) {
  lua_pushcfunction(L, fn);
  lua_pushlightuserdata(L, ud);
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
    fprintf(stderr, "tapio: cannot report %s: %s\n", what,
            tl_tostring(L, -1));
    lua_pop(L, 1);
  }
}

/* Calls handler(loop, context) with the context on top (popped); an error
 * in the handler itself is printed, as asyncio logs it. */
void tl_callhandler(tl_loop *lb, lua_State *L) {
  int ctx = lua_gettop(L);
  tl_pushloop(L, lb);
  if (lua_isuserdata(L, -1)) /* not while the collector ends it */
    tl_getiuservalue(L, -1, TL_LOOP_HANDLER);
  else
    lua_pushnil(L);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    lua_pushcfunction(L, l_default_handler);
  }
  lua_insert(L, -2); /* handler, loop */
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

/* The handler is the loop's user value, not a registry reference: kept
 * after close (asyncio's close keeps it: a report made then, a task's or
 * a future's collected, a callback of something still finishing, reaches
 * it), and a handler that holds the loop (a closure over it) makes a
 * cycle the collector takes, not an anchor. The three methods work on a
 * closed loop, as asyncio's. */
static int l_set_exception_handler(lua_State *L) {
  tl_toloop(L, 1, "loop:set_exception_handler");
  if (!lua_isnil(L, 2))
    tl_checkcallable(L, 2, "loop:set_exception_handler", 1, "handler");
  lua_settop(L, 2);
  tl_setiuservalue(L, 1, TL_LOOP_HANDLER);
  return 0;
}

static int l_get_exception_handler(lua_State *L) {
  tl_toloop(L, 1, "loop:get_exception_handler");
  tl_getiuservalue(L, 1, TL_LOOP_HANDLER);
  return 1;
}

static int l_call_exception_handler(lua_State *L) {
  tl_loop *lb = tl_toloop(L, 1, "loop:call_exception_handler");
  if (!lua_istable(L, 2))
    return tl_typeerror(L, "loop:call_exception_handler", 1, "context", 2,
                        "table");
  lua_settop(L, 2);
  tl_callhandler(lb, L);
  return 0;
}

/* ---- Slow callbacks (debug mode) ---------------------------------------- */

double tl_monotonic(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

typedef struct slow_args {
  tl_loop *lb;
  const char *what;
  tl_transport *lt;
  double t0, took;
} slow_args;

/* The functions tapio.task gives (core._debug_hooks): told when a loop
 * enters or leaves debug mode, and asked which task's step made a
 * callback slow. */
static const char debug_hook_key = 'd', slow_task_key = 's';

/* Pushes the task whose step took the loop's slow_callback_duration or
 * longer since t0, and its name (tapio.task notes it), or nothing. */
static int push_slow_task(lua_State *L, double t0) {
  tl_rawgetp(L, LUA_REGISTRYINDEX, &slow_task_key);
  if (!lua_isfunction(L, -1)) {
    lua_pop(L, 1);
    return 0;
  }
  lua_pushnumber(L, t0);
  lua_call(L, 1, 2); /* tapio.task's: it does not raise */
  if (lua_isnil(L, -2) || lua_type(L, -1) != LUA_TSTRING) {
    lua_pop(L, 2);
    return 0;
  }
  return 1;
}

/* [1] slow_args: the context, to the exception handler. */
static int tr_slow(lua_State *L) {
  slow_args *a = lua_touserdata(L, 1);
  const char *what = a->what ? a->what : "a callback";
  char msg[320];
  int task;
  if (strncmp(what, "error in ", 9) == 0)
    what += 9; /* the words of its failure name the callback */
  /* lt's values first: nothing is allocated before they are held (the
   * callback may have ended the transport, which a collection frees) */
  lua_settop(L, 1);
  if (a->lt && a->lt->self_ref != LUA_NOREF)
    lua_rawgeti(L, LUA_REGISTRYINDEX, a->lt->self_ref); /* [2] */
  else
    lua_pushnil(L);
  if (a->lt && a->lt->proto_ref != LUA_NOREF)
    lua_rawgeti(L, LUA_REGISTRYINDEX, a->lt->proto_ref); /* [3] */
  else
    lua_pushnil(L);
  task = push_slow_task(L, a->t0); /* [4] the task, [5] its name */
  if (task) /* a task's step was slow: named, as asyncio names it */
    snprintf(msg, sizeof msg, "slow callback: task '%.64s' (in %s) took "
             "%.3f s (the loop's slow_callback_duration: %g s)",
             lua_tostring(L, 5), what, a->took, a->lb->slow);
  else
    snprintf(msg, sizeof msg, "slow callback: %s took %.3f s (the loop's "
             "slow_callback_duration: %g s)", what, a->took, a->lb->slow);
  lua_createtable(L, 0, 5);
  lua_pushvalue(L, 2);
  lua_setfield(L, -2, "transport");
  lua_pushvalue(L, 3);
  lua_setfield(L, -2, "protocol");
  lua_pushstring(L, msg);
  lua_setfield(L, -2, "message");
  lua_pushnumber(L, a->took);
  lua_setfield(L, -2, "duration");
  if (task) {
    lua_pushvalue(L, 4);
    lua_setfield(L, -2, "task");
  }
  tl_callhandler(a->lb, L);
  return 0;
}

/* A call that ran for slow_callback_duration or longer is reported, as
 * asyncio's debug mode logs "Executing ... took 0.2 seconds": the
 * callback that holds the loop up (a frame's budget, every connection's
 * latency) is named. */
static void report_slow(tl_loop *lb, lua_State *L, double t0,
                        const char *what, tl_transport *lt) {
  slow_args a;
  a.t0 = t0;
  a.took = tl_monotonic() - t0;
  if (a.took < lb->slow || lb->quiet || !lua_checkstack(L, 4))
    return;
  a.lb = lb;
  a.what = what;
  a.lt = lt;
  tl_report_by(L, tr_slow, &a, "a slow callback");
}

/* loop:set_debug(enabled [, slow_callback_duration]) */
static int l_set_debug(lua_State *L) {
  tl_loop *lb = tl_checkloop(L, 1, "loop:set_debug");
  double d = lb->slow_duration;
  if (!lua_isnoneornil(L, 3)) {
    d = tl_checknumber(L, 3, "loop:set_debug", 2, "slow_callback_duration");
    if (!(d > 0))
      return tl_argerror(L, "loop:set_debug", 2, "slow_callback_duration",
                         "seconds > 0 expected");
    lb->slow_duration = d;
  }
  if ((lb->slow > 0) != lua_toboolean(L, 2)) { /* tapio.task times steps */
    tl_rawgetp(L, LUA_REGISTRYINDEX, &debug_hook_key);
    if (lua_isfunction(L, -1)) {
      lua_pushvalue(L, 1);
      lua_pushboolean(L, lua_toboolean(L, 2));
      lua_call(L, 2, 0); /* tapio.task's: it does not raise */
    } else {
      lua_pop(L, 1);
    }
  }
  lb->slow = lua_toboolean(L, 2) ? d : 0;
  return 0;
}

/* loop:get_debug() -> enabled, slow_callback_duration; also on a closed
 * loop (as asyncio's), whose closing may still resume tasks */
static int l_get_debug(lua_State *L) {
  tl_loop *lb = tl_toloop(L, 1, "loop:get_debug");
  lua_pushboolean(L, lb->slow > 0);
  lua_pushnumber(L, lb->slow_duration);
  return 2;
}

void tl_debug_init(tl_loop *lb) {
  const char *env = getenv("TAPIO_DEBUG");
  lb->slow_duration = 0.1; /* asyncio's default */
  lb->slow = env && *env && strcmp(env, "0") != 0 ? lb->slow_duration : 0;
}

/* ---- A loop's references ----------------------------------------------- */

static int new_ref_value(tl_loop *lb, lua_State *L) {
  lua_pushboolean(L, 0);
  return tl_ref(lb, L);
}

void tl_callpath_init(lua_State *L, tl_loop *lb) {
  int i;
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

void tl_callpath_free(lua_State *L, tl_loop *lb) {
  int i;
  tl_unref(lb, L, &lb->msgh_ref);
  for (i = 0; i < TL_NTRAMP; i++)
    tl_unref(lb, L, &lb->tramp_ref[i]);
  tl_unref(lb, L, &lb->tb_ref);
  tl_unref(lb, L, &lb->pending_ref);
}

static const luaL_Reg handler_methods[] = {
  {"set_exception_handler", l_set_exception_handler},
  {"get_exception_handler", l_get_exception_handler},
  {"call_exception_handler", l_call_exception_handler},
  {"default_exception_handler", l_default_handler},
  {"set_debug", l_set_debug},
  {"get_debug", l_get_debug},
  {NULL, NULL}
};

/* core._debug_hooks(on_debug, slow_task) (tapio.task): on_debug(loop,
 * on) when a loop enters or leaves debug mode; slow_task(since) -> the
 * task whose step was slow since then, and its name. */
static int l_debug_hooks(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  lua_pushvalue(L, 1);
  tl_rawsetp(L, LUA_REGISTRYINDEX, &debug_hook_key);
  lua_pushvalue(L, 2);
  tl_rawsetp(L, LUA_REGISTRYINDEX, &slow_task_key);
  return 0;
}

/* core._monotonic(): the real time debug mode measures with, in seconds */
static int l_monotonic(lua_State *L) {
  lua_pushnumber(L, tl_monotonic());
  return 1;
}

static const luaL_Reg debug_functions[] = {
  {"_debug_hooks", l_debug_hooks},
  {"_monotonic", l_monotonic},
  {NULL, NULL}
};

int tl_open_callback(lua_State *L) {
  tl_addmethods(L, TL_LOOP, handler_methods);
  luaL_setfuncs(L, debug_functions, 0);
  return 0;
}
