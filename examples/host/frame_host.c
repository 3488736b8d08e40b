/* frame_host: a program with its own main loop at 60 frames a second that
 * runs a Lua echo server in its own lua_State and steps tapio once per
 * frame, never waiting in it.
 *
 *   frame_host SCRIPT FRAMES [ARGS...]
 *
 * The host makes the loop (here with an allocator of its own that counts
 * bytes, as a game's budget would) and the Lua state, opens tapio into the
 * state (tapio_lua_open), hands the loop over as the global `loop`
 * (tapio_lua_push_loop) and runs SCRIPT with ARGS as `arg`. Then, each
 * frame, one tapio_loop_run_once(loop, 0) and the host's own work, until
 * FRAMES frames have passed (0: until the script closes the loop). At the
 * end it prints
 *
 *   frames N longest_step_us U served S memory_peak B
 *
 * (S is the script's global `served`), closes the state, which frees the
 * loop, and checks that every byte given out came back. */
#define _GNU_SOURCE
#include <tapio_host.h>

#include <lauxlib.h>
#include <lualib.h>

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

typedef struct counter {
  size_t now, peak;
} counter;

/* A lua_Alloc that counts: Lua and tapio share it. When ptr is NULL, Lua
 * passes a type tag as osize, not a size. */
static void *counting_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  counter *c = ud;
  size_t old = ptr ? osize : 0;
  void *p;
  if (nsize == 0) {
    free(ptr);
    c->now -= old;
    return NULL;
  }
  p = realloc(ptr, nsize);
  if (p) {
    c->now = c->now - old + nsize;
    if (c->now > c->peak)
      c->peak = c->now;
  }
  return p;
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int traceback(lua_State *L) {
  luaL_traceback(L, L, lua_tostring(L, 1), 1);
  return 1;
}

/* Runs the script with argv[3..] as arg[1..]; 0 or prints the error. */
static int run_script(lua_State *L, int argc, char **argv) {
  int i;
  lua_createtable(L, argc - 3, 1);
  for (i = 2; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i - 2);
  }
  lua_setglobal(L, "arg");
  lua_pushcfunction(L, traceback);
  if (luaL_loadfile(L, argv[1]) != LUA_OK ||
      lua_pcall(L, 0, 0, -2) != LUA_OK) {
    fprintf(stderr, "frame_host: %s\n", lua_tostring(L, -1));
    return 1;
  }
  lua_pop(L, 1);
  return 0;
}

/* Sleeps until the absolute time *next, then moves it on a frame. */
static void wait_frame(double *next) {
  struct timespec ts;
  *next += 1.0 / 60;
  ts.tv_sec = (time_t)*next;
  ts.tv_nsec = (long)((*next - (double)ts.tv_sec) * 1e9);
  while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) != 0)
    ;
}

int main(int argc, char **argv) {
  counter mem = {0, 0};
  tapio_loop *loop;
  lua_State *L;
  long frames, frame;
  double longest = 0, next;
  int ref, status = 0;
  if (argc < 3) {
    fprintf(stderr, "usage: frame_host SCRIPT FRAMES [ARGS...]\n");
    return 2;
  }
  frames = atol(argv[2]);
  setvbuf(stdout, NULL, _IOLBF, 0);
  L = lua_newstate(counting_alloc, &mem);
  if (!L || tapio_loop_new_with_allocator(&loop, counting_alloc, &mem) != 0)
    return 1;
  luaL_openlibs(L);
  if (tapio_lua_open(L) != 0 || tapio_lua_push_loop(L, loop) != 0)
    return 1;
  lua_pushvalue(L, -1);
  ref = luaL_ref(L, LUA_REGISTRYINDEX); /* to see whether it was closed */
  lua_setglobal(L, "loop");
  if (run_script(L, argc, argv) != 0) {
    lua_close(L);
    return 1;
  }
  next = now();
  for (frame = 0; frames == 0 || frame < frames; frame++) {
    double t0 = now();
    lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
    loop = tapio_lua_to_loop(L, -1);
    lua_pop(L, 1);
    if (!loop)
      break; /* the script closed it */
    if (tapio_loop_run_once(loop, 0) != 0)
      status = 1;
    if (now() - t0 > longest)
      longest = now() - t0;
    /* ... the host's own work for this frame ... */
    wait_frame(&next);
  }
  lua_getglobal(L, "served");
  printf("frames %ld longest_step_us %.0f served %lld memory_peak %zu\n",
         frame, longest * 1e6, (long long)lua_tointeger(L, -1), mem.peak);
  lua_close(L);
  if (mem.now != 0) {
    fprintf(stderr, "frame_host: %zu bytes not given back\n", mem.now);
    return 1;
  }
  return status;
}
