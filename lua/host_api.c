/* The binding's host API (tapio_host.h): tapio in a host's own lua_State,
 * with a loop the host made. Linked into libtapio_lua5.4 (with the tapio
 * program) and libtapio_luajit, with the Lua layer compiled in. */
#include "tapio_lua.h"

#include "tapio_host.h"

#include <lualib.h>
#include <string.h>

/* The pure-Lua layer compiled in (lua/embed.cmake). */
struct tapio_embedded {
  const char *name, *chunkname, *src;
  size_t len;
};
extern const struct tapio_embedded tapio_embedded[];

/* ---- Host API ------------------------------------------------------------ */

static int load_embedded(lua_State *L) {
  const struct tapio_embedded *m = lua_touserdata(L, lua_upvalueindex(1));
  if (luaL_loadbuffer(L, m->src, m->len, m->chunkname) != LUA_OK)
    return lua_error(L);
  lua_pushstring(L, m->name);
  lua_call(L, 1, 1);
  return 1;
}

static int preload(lua_State *L) {
  const struct tapio_embedded *m;
  /* package.preload, in the registry under this name in 5.4 and LuaJIT */
  tl_getsubtable(L, LUA_REGISTRYINDEX, "_PRELOAD");
  lua_pushcfunction(L, luaopen_tapio_core);
  lua_setfield(L, -2, "tapio.core");
  for (m = tapio_embedded; m->name; m++) {
    lua_pushlightuserdata(L, (void *)m);
    lua_pushcclosure(L, load_embedded, 1);
    lua_setfield(L, -2, m->name);
  }
  return 0;
}

TL_EXPORT int tapio_lua_open(lua_State *L) {
  if (!L)
    return TAPIO_EINVAL;
  lua_pushcfunction(L, preload);
  if (lua_pcall(L, 0, 0, 0) != LUA_OK) {
    lua_pop(L, 1);
    return TAPIO_ENOMEM;
  }
  return 0;
}

/* Raises a tapio error code: tapio_lua_push_loop returns it. */
static int raise_code(lua_State *L, int code) {
  lua_pushinteger(L, code);
  return lua_error(L);
}

/* require "tapio", for the Lua layer's methods; unless no searcher finds
 * it (no tapio_lua_open, no search path): the object then has the
 * binding's own. Any other failure of it is raised. */
static void require_layer(lua_State *L) {
  static const char not_found[] = "module 'tapio' not found";
  const char *msg;
  int status;
  lua_getglobal(L, "require");
  if (lua_type(L, -1) != LUA_TFUNCTION) {
    lua_pop(L, 1);
    return;
  }
  lua_pushliteral(L, "tapio");
  status = lua_pcall(L, 1, 0, 0);
  if (status == LUA_OK)
    return;
  if (status == LUA_ERRMEM)
    raise_code(L, TAPIO_ENOMEM);
  msg = lua_tostring(L, -1);
  if (!msg || strncmp(msg, not_found, sizeof not_found - 1) != 0)
    raise_code(L, TAPIO_ECALLBACK);
  lua_pop(L, 1);
}

/* [1] &loop: the module opened (its metatables, and the methods of the
 * Lua layer when require finds it), then the object. A tapio.core that
 * L loaded from another copy of the binding (package.cpath's module)
 * stays the one require answers, and this copy's objects cannot live in
 * its registry: refused. */
static int push_loop(lua_State *L) {
  tl_requiref(L, "tapio.core", luaopen_tapio_core);
  lua_pop(L, 1);
  if (!tl_opened_here(L))
    return raise_code(L, TAPIO_EEXIST);
  require_layer(L);
  lua_pushcfunction(L, tl_wrap_loop);
  lua_pushvalue(L, 1);
  lua_call(L, 1, 1);
  return 1;
}

TL_EXPORT int tapio_lua_push_loop(lua_State *L, tapio_loop *loop) {
  int status, rc;
  if (!L || !loop) {
    if (loop) /* L's all the same: there is no L */
      tapio_loop_free(loop);
    return TAPIO_EINVAL;
  }
  lua_pushcfunction(L, push_loop);
  lua_pushlightuserdata(L, &loop);
  status = lua_pcall(L, 1, 1, 0);
  if (status == LUA_OK)
    return 0;
  rc = status != LUA_ERRMEM && lua_type(L, -1) == LUA_TNUMBER
           ? (int)lua_tointeger(L, -1)
           : TAPIO_ENOMEM;
  lua_pop(L, 1);
  if (loop) /* no object took it */
    tapio_loop_free(loop);
  return rc;
}

TL_EXPORT tapio_loop *tapio_lua_to_loop(lua_State *L, int idx) {
  return L ? tl_loop_of(L, idx) : NULL;
}
