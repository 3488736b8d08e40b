/* The Lua binding's loop: "tapio.loop", the lists and registry references
 * its objects share, and the module's entry point, luaopen_tapio_core. The
 * protected-call path and the exception handler are callback.c's. */
#include "tapio_lua.h"

#include <inttypes.h>
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
void tl_hold(tl_loop *lb, lua_State *L) {
  if (lb->nopen++ == 0) {
    tl_pushloop(L, lb);
    lb->self_ref = tl_ref(lb, L);
  }
}

void tl_unhold(tl_loop *lb, lua_State *L) {
  if (--lb->nopen == 0)
    tl_unref(lb, L, &lb->self_ref);
}

int tl_anchor(tl_loop *lb, lua_State *L) {
  tl_hold(lb, L);
  return tl_ref(lb, L);
}

void tl_unanchor(tl_loop *lb, lua_State *L, int *ref) {
  if (*ref == LUA_NOREF)
    return;
  tl_unref(lb, L, ref);
  tl_unhold(lb, L);
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

/* Callbacks run on a thread of the loop's own, never on the caller's: a
 * write from a task calls pause_writing at once, and on the task's
 * coroutine the callback would be inside that task (the async rule would
 * make it yield across the C call). The thread is only ever used by
 * balanced calls, so it serves nested callbacks too. */
static void loop_init_refs(lua_State *L, tl_loop *lb) {
  int i;
  lb->msgh_ref = lb->tb_ref = lb->pending_ref = LUA_NOREF;
  lb->fakes_ref = lb->hooks_ref = LUA_NOREF;
  for (i = 0; i < TL_NTRAMP; i++)
    lb->tramp_ref[i] = LUA_NOREF;
  lb->L = lua_newthread(L);
  lb->thread_ref = tl_ref(lb, L);
  tl_callpath_init(L, lb);
}

static void loop_free_refs(lua_State *L, tl_loop *lb) {
  tl_callpath_free(L, lb);
  tl_unref(lb, L, &lb->fakes_ref);
  tl_unref(lb, L, &lb->hooks_ref);
  tl_unref(lb, L, &lb->thread_ref);
  tl_acache_free(lb);
  lb->L = NULL;
}

/* A "tapio.loop" userdata on top, before any core loop exists: running
 * out of memory then leaks nothing. Its user value TL_LOOP_HANDLER is
 * the exception handler (callback.c). */
static tl_loop *new_loop_object(lua_State *L) {
  tl_loop *lb = tl_newuserdata_n(L, sizeof *lb, 1);
  memset(lb, 0, sizeof *lb);
  lb->msgh_ref = lb->thread_ref = lb->self_ref = lb->jobs_ref = LUA_NOREF;
  tl_list_init(&lb->servers);
  tl_list_init(&lb->calls);
  tl_list_init(&lb->watches);
  tl_list_init(&lb->transports);
  tl_debug_init(lb);
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
  tapio_loop_set_exception_handler(lb->loop, tl_on_exception, lb);
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

int tl_opened_here(lua_State *L) {
  int opened;
  tl_rawgetp(L, LUA_REGISTRYINDEX, &loops_key);
  opened = lua_istable(L, -1);
  lua_pop(L, 1);
  return opened;
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
  tl_work_free(lb, L);
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

void tl_push_run_error(lua_State *L, tapio_loop *loop, const char *fn,
                       int rc) {
  char at[32], limit[24];
  if (rc != TAPIO_ESPIN) {
    lua_pushfstring(L, "tapio: %s: %s", fn, tapio_strerror(rc));
    return;
  }
  snprintf(at, sizeof at, "%g", tapio_loop_time(loop)); /* not a %f */
  snprintf(limit, sizeof limit, "%" PRIu64, tapio_loop_step_limit(loop));
  lua_pushfstring(L, "tapio: %s: the loop made %s steps at virtual time "
                  "t=%s and its clock never moved: code that keeps itself "
                  "ready (a call_soon that calls call_soon, a task that "
                  "sleeps 0 in a loop) lets no virtual time pass (the "
                  "limit: tapio.testing.step_limit, or testing.run's "
                  "opts.step_limit)", fn, limit, at);
}

/* Runs the loop with it as the running one; restores the outer one
 * after. The callbacks ran on the loop's thread: an error of the run is
 * raised with tl_raise_after_calls. */
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
  if (rc < 0) {
    tl_push_run_error(L, lb->loop, fn, rc);
    return tl_raise_after_calls(L);
  }
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
  lua_createtable(L, 0, 4);
  lua_pushinteger(L, lb->nrefs);
  lua_setfield(L, -2, "refs");
  lua_pushinteger(L, nservers);
  lua_setfield(L, -2, "servers");
  lua_pushinteger(L, ncalls);
  lua_setfield(L, -2, "calls");
  lua_pushinteger(L, lb->njobs - lb->nspare);
  lua_setfield(L, -2, "jobs");
  return 1;
}

static int l_loop_tostring(lua_State *L) {
  tl_loop *lb = tl_toloop(L, 1, "loop:__tostring");
  lua_pushfstring(L, "tapio.loop (%s)",
                  !lb->loop ? "closed"
                  : tapio_loop_is_running(lb->loop) ? "running" : "idle");
  return 1;
}

/* Pushes the loop whose run is on the stack, or nil. */
static void push_running(lua_State *L) {
  tl_rawgetp(L, LUA_REGISTRYINDEX, &running_key);
  if (lua_toboolean(L, -1))
    return;
  lua_pop(L, 1);
  /* a host stepping a loop from C (tapio_loop_run_once): ask the core */
  tl_rawgetp(L, LUA_REGISTRYINDEX, &loops_key);
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    tl_loop *lb = lua_touserdata(L, -1);
    if (lb && lb->loop && tapio_loop_is_running(lb->loop)) {
      lua_replace(L, -3); /* over the table; the key goes */
      lua_pop(L, 1);
      return;
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  lua_pushnil(L);
}

/* tapio.core.get_running_loop(): the loop whose run is on the stack. */
static int l_get_running_loop(lua_State *L) {
  push_running(L);
  return 1;
}

tl_loop *tl_running(lua_State *L) {
  tl_loop *lb;
  push_running(L);
  lb = lua_isnil(L, -1) ? NULL : lua_touserdata(L, -1);
  lua_pop(L, 1);
  return lb && lb->loop ? lb : NULL;
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

void tl_lifecycle(lua_State *L, const char *tname, lua_CFunction gc,
                  lua_CFunction close, lua_CFunction tostring) {
  luaL_getmetatable(L, tname);
  lua_pushcfunction(L, gc);
  lua_setfield(L, -2, "__gc");
#if LUA_VERSION_NUM >= 504
  if (close) {
    lua_pushcfunction(L, close);
    lua_setfield(L, -2, "__close");
  }
#else
  (void)close;
#endif
  lua_pushcfunction(L, tostring);
  lua_setfield(L, -2, "__tostring");
}

static void open_loop(lua_State *L) {
  tl_newclass(L, TL_LOOP, loop_methods);
  lua_setfield(L, -2, "loop_methods");
  tl_lifecycle(L, TL_LOOP, l_gc, l_close, l_loop_tostring);
  lua_setfield(L, -2, "loop_metatable"); /* the Lua layer checks self */
}

void tl_push_weak(lua_State *L, const void *key, const char *mode) {
  tl_rawgetp(L, LUA_REGISTRYINDEX, key);
  if (!lua_isnil(L, -1))
    return;
  lua_pop(L, 1);
  lua_newtable(L);
  lua_createtable(L, 0, 1);
  lua_pushstring(L, mode);
  lua_setfield(L, -2, "__mode");
  lua_setmetatable(L, -2);
  lua_pushvalue(L, -1);
  tl_rawsetp(L, LUA_REGISTRYINDEX, key);
}

void tl_weak_registry(lua_State *L, const void *key) {
  tl_push_weak(L, key, "v");
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
  tl_open_callback(L);
  tl_open_context(L);
  tl_open_call(L);
  tl_open_transport(L);
  tl_open_server(L);
  tl_open_tls(L);
  tl_open_pipe(L);
  tl_open_process(L);
  tl_open_util(L);
  tl_open_datagram(L);
  tl_open_resolve(L);
  tl_open_sendfile(L);
  tl_open_sock(L);
  tl_open_embed(L);
  tl_open_watch(L);
  tl_open_work(L);
  tl_open_testing(L);
  lua_pushstring(L, tapio_version_string());
  lua_setfield(L, -2, "version");
  return 1;
}
