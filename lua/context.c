/* A transport's context (tapio.context: Python's contextvars as asyncio
 * uses them): a transport keeps the context its protocol's callbacks run
 * in, as asyncio's transports do through the handles they make when they
 * are made, and a server keeps the one each connection it accepts copies.
 * tapio.context gives the functions that make and enter contexts at its
 * first ContextVar (core._context_hooks); before that nothing is kept,
 * and a protocol callback pays the test of ctx_ref (tl_proto_call). */
#include "tapio_lua.h"

/* The registry's table of tapio.context's functions: TL_CTX_ENTER,
 * TL_CTX_LEAVE, and these two. */
static const char hooks_key = 'h';
enum { CTX_CAPTURE = TL_CTX_LEAVE + 1, CTX_FACTORY, CTX_NHOOKS = CTX_FACTORY };

/* core._context_hooks(enter, leave, capture, run_factory):
 * enter(ctx, own) -> the context entered (own: a new copy of ctx), or
 * false when ctx is entered already; leave(entered); capture(ctx, copy)
 * -> ctx (nil: the current one) or a copy of it; run_factory(ctx, fn) ->
 * fn() in ctx. */
static int l_context_hooks(lua_State *L) {
  int i;
  lua_settop(L, CTX_NHOOKS);
  lua_createtable(L, CTX_NHOOKS, 0);
  for (i = 1; i <= CTX_NHOOKS; i++) {
    luaL_checktype(L, i, LUA_TFUNCTION);
    lua_pushvalue(L, i);
    lua_rawseti(L, -2, i);
  }
  tl_rawsetp(L, LUA_REGISTRYINDEX, &hooks_key);
  return 0;
}

/* The loop keeps the table by reference once there is one: a lookup by
 * address in the registry costs a callback hundreds of instructions. */
int tl_context_hook(lua_State *L, tl_loop *lb, int h) {
  if (lb->hooks_ref == LUA_NOREF) {
    tl_rawgetp(L, LUA_REGISTRYINDEX, &hooks_key);
    if (lua_isnil(L, -1)) {
      lua_pop(L, 1);
      return 0;
    }
    lb->hooks_ref = tl_ref(lb, L);
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, lb->hooks_ref);
  lua_rawgeti(L, -1, h);
  lua_remove(L, -2);
  return 1;
}

/* capture(ctx at ref or the current one, copy) referenced. */
static int capture(lua_State *L, tl_loop *lb, int ref, int copy) {
  if (!tl_context_hook(L, lb, CTX_CAPTURE))
    return LUA_NOREF;
  if (ref == LUA_NOREF)
    lua_pushnil(L);
  else
    lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
  lua_pushboolean(L, copy);
  lua_call(L, 2, 1);
  return tl_ref(lb, L);
}

int tl_context_capture(lua_State *L, tl_loop *lb, int copy) {
  return capture(L, lb, LUA_NOREF, copy);
}

int tl_context_copy(lua_State *L, tl_loop *lb, int ref) {
  return ref == LUA_NOREF ? LUA_NOREF : capture(L, lb, ref, 1);
}

void tl_context_factory(lua_State *L, tl_transport *lt, int trade) {
  int fn = lua_gettop(L), ref;
  if (lt->ctx_ref == LUA_NOREF ||
      !tl_context_hook(L, lt->lb, CTX_FACTORY)) {
    lua_call(L, 0, 1);
    return;
  }
  lua_insert(L, fn);
  lua_rawgeti(L, LUA_REGISTRYINDEX, lt->ctx_ref);
  lua_insert(L, fn + 1);
  lua_call(L, 2, 1);
  if (!trade)
    return;
  /* a client's: asyncio's handles, made after the factory returned,
   * copy the context it ran in (what it set is seen by the protocol) */
  ref = tl_context_copy(L, lt->lb, lt->ctx_ref);
  tl_unref(lt->lb, L, &lt->ctx_ref);
  lt->ctx_ref = ref;
}

static const luaL_Reg functions[] = {
  {"_context_hooks", l_context_hooks},
  {NULL, NULL}
};

int tl_open_context(lua_State *L) {
  luaL_setfuncs(L, functions, 0);
  return 0;
}
