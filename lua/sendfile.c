/* The Lua binding's loop:_sendfile (tapio/loop.lua gives it the async
 * rule as loop:sendfile): tapio_transport_sendfile, with a completion of
 * the binding's pending calls (resolve.c) that gives the count sent. */
#include "tapio_lua.h"

#include <lualib.h>
#include <stdio.h>

#define FN "loop:sendfile"

/* The descriptor of file (argument n at idx): a Lua file, or an integer. */
static int file_fd(lua_State *L, int idx, int n) {
  FILE **f = luaL_testudata(L, idx, LUA_FILEHANDLE);
  if (f) /* a Lua 5.4 luaL_Stream and a LuaJIT file both begin so */
    return *f ? fileno(*f) : tl_argerror(L, FN, n, "file", "closed file");
  if (lua_type(L, idx) != LUA_TNUMBER)
    return tl_typeerror(L, FN, n, "file", idx, "file or integer");
  return (int)tl_checkint(L, idx, FN, n, "file", 0, INT32_MAX);
}

/* loop:_sendfile(cb, transport, file, offset, count, opts) */
static int l_sendfile(lua_State *L) {
  static const char *const names[] = {"fallback", NULL};
  tl_loop *lb = tl_checkloop(L, 1, FN);
  tl_transport *lt = tl_testtransport(L, 3);
  lua_Integer offset = 0, count = 0;
  int fd, fallback = 1, rc;
  tl_lookup *pending;
  lua_settop(L, 7);
  if (!lt)
    return tl_typeerror(L, FN, 1, "transport", 3, "transport");
  fd = file_fd(L, 4, 2);
  if (!lua_isnil(L, 5))
    offset = tl_checkint(L, 5, FN, 3, "offset", 0, INT64_MAX);
  if (!lua_isnil(L, 6))
    count = tl_checkint(L, 6, FN, 4, "count", 1, INT64_MAX);
  if (lua_istable(L, 7)) {
    tl_checkkeys(L, 7, FN, names);
    lua_getfield(L, 7, "fallback");
    fallback = lua_isnil(L, -1) || lua_toboolean(L, -1);
    lua_pop(L, 1);
  } else if (!lua_isnil(L, 7)) {
    return tl_typeerror(L, FN, 5, "opts", 7, "table or nil");
  }
  if (!lt->t || lt->lb != lb)
    return luaL_error(L, "tapio: %s: transport is closed", FN);
  pending = tl_pending_new(L, lb, 2);
  rc = tapio_transport_sendfile(lt->t, fd, (uint64_t)offset,
                                (uint64_t)count, fallback, tl_pending_count,
                                pending);
  if (rc < 0) {
    tl_pending_release(L, pending);
    return tl_fail_call(L, lb->loop, rc);
  }
  return 1; /* the pending call, for loop:_cancel */
}

static const luaL_Reg loop_methods[] = {
  {"_sendfile", l_sendfile},
  {NULL, NULL}
};

int tl_open_sendfile(lua_State *L) {
  tl_addmethods(L, TL_LOOP, loop_methods);
  return 0;
}
