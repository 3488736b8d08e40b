/* game_host: a game engine's shape (LOVE's, a Defold-style engine's): the
 * engine owns a LuaJIT state and a frame loop at 60 frames a second; the
 * game's script runs in that state, and its coroutines (tapio tasks) talk
 * to a server across frames.
 *
 *   game_host SCRIPT [ARGS...]
 *
 * The host opens tapio into its state (tapio_lua_open), hands it a loop as
 * the global `loop` (tapio_lua_push_loop) and runs SCRIPT with ARGS as
 * `...`; the script returns its game table. Then, each frame, one
 * tapio_loop_run_once(loop, 0), which never waits, and game:update(frame),
 * until update returns true. It prints "frames N " and game:summary(),
 * and closes the state, which frees the loop. Built against LuaJIT with
 * pkg-config tapio-luajit (or CMake's tapio::tapio_luajit); the same
 * source builds against Lua 5.4 with tapio-lua5.4. */
#define _GNU_SOURCE
#include <tapio_host.h>
#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static int traceback(lua_State *L) {
  luaL_traceback(L, L, lua_tostring(L, 1), 1);
  return 1;
}

/* Calls game:name(frame) (frame < 0: no argument); 0 or -1 (printed). */
static int call_method(lua_State *L, int game, const char *name, long frame,
                       int nres) {
  lua_pushcfunction(L, traceback);
  lua_rawgeti(L, LUA_REGISTRYINDEX, game);
  lua_getfield(L, -1, name);
  lua_insert(L, -2);
  if (frame >= 0)
    lua_pushinteger(L, frame);
  if (lua_pcall(L, frame >= 0 ? 2 : 1, nres, -3 - (frame >= 0)) != 0) {
    fprintf(stderr, "game_host: %s\n", lua_tostring(L, -1));
    lua_pop(L, 2);
    return -1;
  }
  lua_remove(L, -1 - nres);
  return 0;
}

static void wait_frame(struct timespec *next) {
  next->tv_nsec += 1000000000L / 60;
  if (next->tv_nsec >= 1000000000L) {
    next->tv_sec++;
    next->tv_nsec -= 1000000000L;
  }
  while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, next, NULL) != 0)
    ;
}

int main(int argc, char **argv) {
  lua_State *L;
  tapio_loop *loop;
  struct timespec next;
  int game, i, status = 0;
  long frame;
  if (argc < 2) {
    fprintf(stderr, "usage: game_host SCRIPT [ARGS]\n");
    return 2;
  }
  L = luaL_newstate();
  luaL_openlibs(L);
  if (tapio_lua_open(L) != 0 || tapio_loop_new(&loop) != 0 ||
      tapio_lua_push_loop(L, loop) != 0)
    return 1;
  lua_setglobal(L, "loop");
  lua_pushcfunction(L, traceback);
  if (luaL_loadfile(L, argv[1]) != 0) {
    fprintf(stderr, "game_host: %s\n", lua_tostring(L, -1));
    return 1;
  }
  for (i = 2; i < argc; i++)
    lua_pushstring(L, argv[i]);
  if (lua_pcall(L, argc - 2, 1, -(argc - 2) - 2) != 0) {
    fprintf(stderr, "game_host: %s\n", lua_tostring(L, -1));
    lua_close(L);
    return 1;
  }
  game = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pop(L, 1);
  clock_gettime(CLOCK_MONOTONIC, &next);
  for (frame = 0;; frame++) {
    int done;
    tapio_loop_run_once(loop, 0);
    if (call_method(L, game, "update", frame, 1) != 0) {
      status = 1;
      break;
    }
    done = lua_toboolean(L, -1);
    lua_pop(L, 1);
    if (done)
      break;
    wait_frame(&next);
  }
  if (call_method(L, game, "summary", -1, 1) == 0) {
    printf("frames %ld %s\n", frame, lua_tostring(L, -1));
    lua_pop(L, 1);
  }
  lua_close(L);
  return status;
}
