/* The Lua binding's scheduled calls: loop:call_soon, call_later, call_at,
 * loop:_call_idle (a virtual loop's, for tapio.testing's clock), their
 * "tapio.handle", and the waiters of server:wait_closed, which are pending
 * calls too. */
#include "tapio_lua.h"

#include <math.h>
#include <string.h>

static tl_sched *tocall(lua_State *L, const char *fn) {
  return tl_checkself(L, 1, TL_HANDLE, fn);
}

void tl_call_stored(lua_State *L, int idx) {
  int i, n;
  idx = tl_absindex(L, idx);
  tl_getuservalue(L, idx);
  lua_getfield(L, -1, "n");
  n = (int)lua_tointeger(L, -1);
  lua_pop(L, 1);
  luaL_checkstack(L, n + 1, "too many arguments");
  for (i = 1; i <= n + 1; i++)
    lua_rawgeti(L, -i, i);
  lua_call(L, n, 0);
  lua_pop(L, 1); /* the user value */
}

void tl_store_call(lua_State *L, int fi, int top) {
  int i;
  lua_createtable(L, top - fi + 1, 1);
  for (i = fi; i <= top; i++) {
    lua_pushvalue(L, i);
    lua_rawseti(L, -2, i - fi + 1);
  }
  lua_pushinteger(L, top - fi);
  lua_setfield(L, -2, "n");
  tl_setuservalue(L, -2);
}

/* [1] the tl_sched: runs fn(args...) from its user value. */
int tl_tr_call(lua_State *L) {
  tl_sched *c = lua_touserdata(L, 1);
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->self_ref);
  tl_unanchor(c->lb, L, &c->self_ref); /* on the stack now: safe to let go */
  tl_call_stored(L, -1);
  return 0;
}

static void run_call(void *ud) {
  tl_sched *c = ud;
  tl_loop *lb = c->lb;
  lua_State *L = lb->L;
  tl_list_remove(&c->link);
  if (c->h) {
    tapio_handle_release(c->h);
    c->h = NULL;
  }
  if (lb->quiet || tl_prepare(lb, L, TL_T_CALL) < 0) {
    tl_unanchor(lb, L, &c->self_ref);
    return;
  }
  lua_pushlightuserdata(L, c);
  if (tl_call(lb, L, 1, 0, "error in a scheduled callback", NULL) == 0)
    lua_pop(L, 1);
}

static void run_waiter(void *ud, tapio_server *s) {
  (void)s;
  run_call(ud);
}

/* A pending call: userdata with { fn, args..., n } as user value, linked
 * and anchored. fn is at index fi, its arguments follow. */
static tl_sched *newcall(lua_State *L, tl_loop *lb, int fi) {
  int top = lua_gettop(L);
  tl_sched *c = tl_newuserdata(L, sizeof *c);
  memset(c, 0, sizeof *c);
  c->lb = lb;
  c->self_ref = LUA_NOREF;
  c->when = NAN; /* none: a call_soon's, a waiter's */
  tl_list_init(&c->link);
  luaL_setmetatable(L, TL_HANDLE);
  tl_store_call(L, fi, top);
  return c;
}

static void anchor_call(lua_State *L, tl_loop *lb, tl_sched *c) {
  lua_pushvalue(L, -1);
  c->self_ref = tl_anchor(lb, L);
  tl_list_push(&lb->calls, &c->link);
}

enum { SOON, LATER, AT, IDLE };

static int schedule(lua_State *L, const char *fn, int kind) {
  tl_loop *lb = tl_toloop(L, 1, fn);
  int fi = kind == SOON ? 2 : 3, rc;
  double t = kind == SOON ? 0 : tl_checknumber(L, 2, fn, 1,
                                               kind == AT ? "when"
                                                          : "delay");
  tl_sched *c;
  if (!lb->loop)
    return luaL_error(L, "tapio: %s: the loop is closed", fn);
  tl_checkcallable(L, fi, fn, fi - 1, "callback");
  c = newcall(L, lb, fi);
  if (lb->closing) {
    /* From a connection_lost that loop:close runs: dropped, as the calls
     * still pending when the loop closes are. */
    c->cancelled = 1;
    return 1;
  }
  if (kind == SOON)
    rc = tapio_call_soon(lb->loop, run_call, c, &c->h);
  else if (kind == LATER)
    rc = tapio_call_later(lb->loop, t, run_call, c, &c->h);
  else if (kind == AT)
    rc = tapio_call_at(lb->loop, t, run_call, c, &c->h);
  else
    rc = tapio_call_idle(lb->loop, t, run_call, c, &c->h);
  if (rc < 0)
    return luaL_error(L, "tapio: %s: %s", fn, tapio_strerror(rc));
  if (kind != SOON) /* a time, maybe below 0 (call_at on a virtual clock) */
    c->when = tapio_handle_when(c->h);
  anchor_call(L, lb, c);
  return 1;
}

static int l_call_soon(lua_State *L) {
  return schedule(L, "loop:call_soon", SOON);
}

static int l_call_later(lua_State *L) {
  return schedule(L, "loop:call_later", LATER);
}

static int l_call_at(lua_State *L) {
  return schedule(L, "loop:call_at", AT);
}

static int l_call_idle(lua_State *L) {
  return schedule(L, "loop:_call_idle", IDLE);
}

/* A server's wait_closed waiter, pending like a scheduled call. Called by
 * server.c with the callback at index fi. */
int tl_wait_closed(lua_State *L, tl_loop *lb, tapio_server *s, int fi) {
  tl_sched *c = newcall(L, lb, fi);
  int rc = tapio_server_wait_closed(s, run_waiter, c);
  if (rc < 0)
    return rc;
  anchor_call(L, lb, c);
  return 0;
}

static int h_cancel(lua_State *L) {
  tl_sched *c = tocall(L, "handle:cancel");
  c->cancelled = 1;
  if (!c->h)
    return 0; /* run already (or a waiter, which is not cancellable) */
  tapio_handle_cancel(c->h);
  tapio_handle_release(c->h);
  c->h = NULL;
  tl_list_remove(&c->link);
  tl_unanchor(c->lb, L, &c->self_ref);
  return 0;
}

static int h_cancelled(lua_State *L) {
  lua_pushboolean(L, tocall(L, "handle:cancelled")->cancelled);
  return 1;
}

/* handle:when(): the loop time a call_later/call_at is due, else nil. */
static int h_when(lua_State *L) {
  tl_sched *c = tocall(L, "handle:when");
  if (isnan(c->when))
    return 0;
  lua_pushnumber(L, c->when);
  return 1;
}

static int h_tostring(lua_State *L) {
  tl_sched *c = tocall(L, "handle:__tostring");
  lua_pushfstring(L, "tapio.handle (%s)",
                  c->cancelled ? "cancelled"
                  : c->self_ref != LUA_NOREF ? "pending" : "done");
  return 1;
}

/* The loop is closed: the core dropped the pending calls unrun. */
void tl_release_calls(tl_loop *lb, lua_State *L) {
  while (lb->calls.next != &lb->calls) {
    tl_sched *c = (tl_sched *)lb->calls.next;
    tl_list_remove(&c->link);
    c->h = NULL; /* the core freed it with the loop */
    tl_unanchor(lb, L, &c->self_ref);
  }
}

static const luaL_Reg handle_methods[] = {
  {"cancel", h_cancel},
  {"cancelled", h_cancelled},
  {"when", h_when},
  {NULL, NULL}
};

static const luaL_Reg loop_methods[] = {
  {"call_soon", l_call_soon},
  {"call_later", l_call_later},
  {"call_at", l_call_at},
  {"_call_idle", l_call_idle},
  {NULL, NULL}
};

int tl_open_call(lua_State *L) {
  tl_newclass(L, TL_HANDLE, handle_methods);
  lua_setfield(L, -2, "handle_methods");
  luaL_getmetatable(L, TL_HANDLE);
  lua_pushcfunction(L, h_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);
  tl_addmethods(L, TL_LOOP, loop_methods);
  return 0;
}
