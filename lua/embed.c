/* The loop's pollable descriptor for Lua: loop:backend_fd() and
 * loop:backend_timeout() (see tapio_loop_backend_fd in capi/tapio.h). */
#include "tapio_lua.h"

/* ---- loop:backend_fd(), loop:backend_timeout() -------------------------- */

/* The descriptor, or nil and an error value (ENOTSUP where libev does not
 * use epoll), as luv's backend_fd answers nil where there is none. */
static int l_backend_fd(lua_State *L) {
  tl_loop *lb = tl_checkloop(L, 1, "loop:backend_fd");
  int fd = tapio_loop_backend_fd(lb->loop);
  if (fd < 0)
    return tl_fail(L, fd);
  lua_pushinteger(L, fd);
  return 1;
}

/* Milliseconds the host may sleep: 0 work is ready, -1 nothing scheduled. */
static int l_backend_timeout(lua_State *L) {
  tl_loop *lb = tl_checkloop(L, 1, "loop:backend_timeout");
  lua_pushinteger(L, tapio_loop_backend_timeout(lb->loop));
  return 1;
}

static const luaL_Reg embed_methods[] = {
  {"backend_fd", l_backend_fd},
  {"backend_timeout", l_backend_timeout},
  {NULL, NULL}
};

int tl_open_embed(lua_State *L) {
  tl_addmethods(L, TL_LOOP, embed_methods);
  return 0;
}
