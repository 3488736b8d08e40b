/* The Lua binding's loop:_sendfile (tapio/loop.lua gives it the async
 * rule as loop:sendfile): tapio_transport_sendfile, with a completion of
 * the binding's pending calls (resolve.c) that gives the count sent; the
 * file arguments, also sock.c's loop:_sock_sendfile's. */
#include "tapio_lua.h"

#include <lualib.h>
#include <stdio.h>
#include <unistd.h>

#define FN "loop:sendfile"

int tl_file_fd(lua_State *L, int idx, const char *fn, int n) {
  FILE **f = luaL_testudata(L, idx, LUA_FILEHANDLE);
  if (f) /* a Lua 5.4 luaL_Stream and a LuaJIT file both begin so */
    return *f ? fileno(*f) : tl_argerror(L, fn, n, "file", "closed file");
  if (lua_type(L, idx) != LUA_TNUMBER)
    return tl_typeerror(L, fn, n, "file", idx, "file or integer");
  return (int)tl_checkint(L, idx, fn, n, "file", 0, INT32_MAX);
}

void tl_check_range(lua_State *L, int idx, const char *fn, int n,
                        lua_Integer *offset, lua_Integer *count) {
  *offset = *count = 0;
  if (!lua_isnil(L, idx))
    *offset = tl_checkint(L, idx, fn, n, "offset", 0, INT64_MAX);
  if (!lua_isnil(L, idx + 1))
    *count = tl_checkint(L, idx + 1, fn, n + 1, "count", 1, INT64_MAX);
}

/* loop:_sendfile(cb, transport, file, offset, count, opts) */
static int l_sendfile(lua_State *L) {
  static const char *const names[] = {"fallback", NULL};
  tl_loop *lb = tl_checkloop(L, 1, FN);
  tl_transport *lt = tl_testtransport(L, 3);
  lua_Integer offset, count;
  int fd, fallback = 1, rc;
  tl_lookup *pending;
  lua_settop(L, 7);
  if (!lt)
    return tl_typeerror(L, FN, 1, "transport", 3, "transport");
  fd = tl_file_fd(L, 4, FN, 2);
  tl_check_range(L, 5, FN, 3, &offset, &count);
  if (lua_istable(L, 7)) {
    tl_checkkeys(L, 7, FN, names);
    lua_getfield(L, 7, "fallback");
    fallback = lua_isnil(L, -1) || lua_toboolean(L, -1);
    lua_pop(L, 1);
  } else if (!lua_isnil(L, 7)) {
    return tl_typeerror(L, FN, 5, "opts", 7, "table or nil");
  }
  if (lt->t && lt->lb == lb)
    tl_flush_batched(L, lt, 3); /* a StreamWriter's writes go first */
  tl_check_usable(L, lt, lb, FN);
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

/* loop:_fd_offset(file): where its descriptor is (lseek), or nil: what a
 * cancelled sock_sendfile left a Lua file at. */
static int l_fd_offset(lua_State *L) {
  off_t at = lseek(tl_file_fd(L, 2, "loop:_fd_offset", 1), 0, SEEK_CUR);
  if (at < 0)
    return 0;
  lua_pushinteger(L, (lua_Integer)at);
  return 1;
}

static const luaL_Reg loop_methods[] = {
  {"_sendfile", l_sendfile},
  {"_fd_offset", l_fd_offset},
  {NULL, NULL}
};

int tl_open_sendfile(lua_State *L) {
  tl_addmethods(L, TL_LOOP, loop_methods);
  return 0;
}
