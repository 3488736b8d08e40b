/* luajit_prof: the `luajit` command as far as the benchmark's scripts need
 * it (luajit SCRIPT ARGS...: `arg` set, the script run), linked by
 * `profile.sh relink` with the static LuaJIT library so that callgrind
 * names LuaJIT's functions (Debian's luajit and libluajit are stripped).
 * For profiling only: the benchmark's tapio_lua_jit runs the real luajit. */
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include <stdio.h>

int main(int argc, char **argv) {
  lua_State *L = luaL_newstate();
  int i;
  if (!L || argc < 2) {
    fprintf(stderr, "usage: luajit_prof SCRIPT [ARGS...]\n");
    return 2;
  }
  luaL_openlibs(L);
  lua_createtable(L, argc, 0);
  for (i = 1; i < argc; i++) { /* arg[0] is the script */
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i - 1);
  }
  lua_setglobal(L, "arg");
  if (luaL_dofile(L, argv[1]) != 0) {
    fprintf(stderr, "luajit_prof: %s\n", lua_tostring(L, -1));
    return 1;
  }
  lua_close(L);
  return 0;
}
