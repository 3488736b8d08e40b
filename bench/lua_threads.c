/* lua_threads: runs one Lua script in N threads at once, each thread with
 * its own lua_State (and so its own tapio loop), for the benchmark's row
 * of N loops in N threads serving one port with reuse_port.
 *
 *   lua_threads N SCRIPT [ARGS...]
 *
 * Each state has tapio opened in it (tapio_host.h) and arg as the tapio
 * host sets it. The program ends when every thread's script has returned
 * (an echo server's never does: the benchmark stops it with SIGTERM); it
 * exits 1 if any raised. It spreads itself over every core first: pinned
 * to one, N threads could only take turns. */
#define _GNU_SOURCE
#include <tapio_host.h>

#include <lauxlib.h>
#include <lualib.h>

#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

typedef struct job {
  pthread_t th;
  int argc;
  char **argv; /* argv[0] is the script */
  int failed;
} job;

static void *run(void *ud) {
  job *j = ud;
  lua_State *L = luaL_newstate();
  int i;
  j->failed = 1;
  if (!L)
    return NULL;
  luaL_openlibs(L);
  lua_gc(L, LUA_GCGEN, 0, 400); /* as the tapio host runs its state */
  if (tapio_lua_open(L) == 0) {
    lua_createtable(L, j->argc, 1);
    for (i = 0; i < j->argc; i++) {
      lua_pushstring(L, j->argv[i]);
      lua_rawseti(L, -2, i);
    }
    lua_setglobal(L, "arg");
    if (luaL_loadfile(L, j->argv[0]) == LUA_OK &&
        lua_pcall(L, 0, 0, 0) == LUA_OK)
      j->failed = 0;
    else
      fprintf(stderr, "lua_threads: %s\n", lua_tostring(L, -1));
  }
  lua_close(L);
  return NULL;
}

int main(int argc, char **argv) {
  long n = argc > 2 ? atol(argv[1]) : 0, i, cpus;
  job *jobs;
  cpu_set_t all;
  int status = 0;
  if (n < 1) {
    fprintf(stderr, "usage: lua_threads N SCRIPT [ARGS...]\n");
    return 2;
  }
  setvbuf(stdout, NULL, _IOLBF, 0);
  CPU_ZERO(&all);
  cpus = sysconf(_SC_NPROCESSORS_ONLN);
  for (i = 0; i < cpus && i < CPU_SETSIZE; i++)
    CPU_SET(i, &all);
  sched_setaffinity(0, sizeof all, &all);
  jobs = calloc((size_t)n, sizeof *jobs);
  if (!jobs)
    return 1;
  for (i = 0; i < n; i++) {
    jobs[i].argc = argc - 2;
    jobs[i].argv = argv + 2;
    if (pthread_create(&jobs[i].th, NULL, run, &jobs[i]) != 0)
      return 1;
  }
  for (i = 0; i < n; i++) {
    pthread_join(jobs[i].th, NULL);
    status |= jobs[i].failed;
  }
  free(jobs);
  return status;
}
