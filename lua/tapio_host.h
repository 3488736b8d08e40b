/* tapio in a host's own Lua state: the C API of the Lua binding for
 * programs that embed Lua (a game, an application) and own their main
 * loop and their lua_State.
 *
 *   lua_State *L = luaL_newstate();    // or lua_newstate(my_alloc, ud)
 *   luaL_openlibs(L);
 *   tapio_lua_open(L);                 // require "tapio" now works
 *   tapio_loop *loop;
 *   tapio_loop_new_with_allocator(&loop, my_alloc, ud);
 *   tapio_lua_push_loop(L, loop);      // a tapio.loop for your scripts
 *   lua_setglobal(L, "loop");
 *   for (int frame = 0; frame < 3600; frame++)  // the host's frames
 *     tapio_loop_run_once(loop, 0);    // or poll() tapio_loop_backend_fd
 *   lua_close(L);                      // frees the loop too
 *
 * Lua 5.4: link with -ltapio_lua5.4 -ltapio (pkg-config tapio-lua5.4, or
 * CMake's tapio::tapio_lua5.4 from find_package(tapio)). LuaJIT: the same
 * with tapio_luajit (pkg-config tapio-luajit, tapio::tapio_luajit); this
 * header then includes LuaJIT's lua.h, which those flags put first. The
 * Lua layer (lua/tapio/NAME.lua) is compiled into the library, so no
 * search path is needed. Every callback of a loop pushed here
 * runs on a Lua thread of the loop's own in L, and errors in them go to
 * the loop's Lua exception handler, as for tapio.new_loop(). */
#ifndef TAPIO_HOST_H
#define TAPIO_HOST_H

#include <lua.h>

#include "tapio.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Makes `require "tapio"` (and "tapio.core") work in L: puts the binding
 * and the Lua layer into package.preload. Call after luaL_openlibs (it
 * needs the package library). Returns 0, or TAPIO_ENOMEM (L is left as
 * it was). */
int tapio_lua_open(lua_State *L);

/* Pushes a tapio.loop object for loop, a loop the host made (with its own
 * allocator, say), and returns 0. The object owns the loop from then on:
 * loop:close(), or the collection of the object when nothing of it is
 * open, or lua_close(L) frees it, and the host must not free it itself.
 * Until then the host steps it (tapio_loop_run_once) or polls its
 * descriptor; tapio.get_running_loop() inside its callbacks answers it
 * also when the host steps it from C. The loop's exception handler
 * becomes the Lua one. On failure nothing is pushed, and the loop is L's
 * all the same (freed by the collector, or at once if no object got it;
 * with L NULL, at once): TAPIO_ENOMEM, L has no memory; TAPIO_EINVAL,
 * NULL; TAPIO_EEXIST, L holds the tapio.core of another copy of the
 * binding (the Lua module a script required from package.cpath before
 * tapio_lua_open: its objects and this library's cannot share a state);
 * TAPIO_ECALLBACK, require "tapio" raised an error. It requires "tapio"
 * first (when tapio_lua_open or a search path lets it; when neither
 * does, the object has the binding's C methods only), so the object has
 * every method of the Lua layer. */
int tapio_lua_push_loop(lua_State *L, tapio_loop *loop);

/* The loop of the tapio.loop object at idx; NULL if it is not one or has
 * been closed (loop:close() from a script): a host that keeps a reference
 * to the object asks before stepping. */
tapio_loop *tapio_lua_to_loop(lua_State *L, int idx);

#ifdef __cplusplus
}
#endif

#endif
