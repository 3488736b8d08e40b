/* Why tapio spawns with posix_spawn: the raw cost of starting and reaping
 * a child by posix_spawn (glibc: a clone with CLONE_VM | CLONE_VFORK, no
 * copy of the parent's memory) and by fork + execve (the parent's page
 * tables copied), with the parent holding RSS_MB of touched memory.
 *
 *   spawn_raw posix_spawn|fork PROGRAM N [RSS_MB]
 *
 * Prints children per second and the parent's CPU per child. */
#define _GNU_SOURCE
#include "bench_child.h"

#include <spawn.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

int main(int argc, char **argv)
{
  char *args[2];
  size_t rss;
  char *mem;
  double t0, c0;
  int n, i, use_fork;
  if (argc < 4) {
    fprintf(stderr, "usage: spawn_raw posix_spawn|fork PROGRAM N [RSS_MB]\n");
    return 2;
  }
  use_fork = strcmp(argv[1], "fork") == 0;
  n = atoi(argv[3]);
  rss = (size_t)(argc > 4 ? atoi(argv[4]) : 0) << 20;
  mem = rss ? malloc(rss) : NULL;
  if (mem)
    memset(mem, 1, rss);
  args[0] = argv[2];
  args[1] = NULL;
  t0 = bench_now();
  c0 = bench_cpu();
  for (i = 0; i < n; i++) {
    pid_t pid;
    int status;
    if (use_fork) {
      pid = fork();
      if (pid == 0) {
        execve(argv[2], args, environ);
        _exit(127);
      }
    } else if (posix_spawn(&pid, argv[2], NULL, NULL, args, environ) != 0) {
      pid = -1;
    }
    if (pid < 0 || waitpid(pid, &status, 0) < 0 || status != 0)
      return 1;
  }
  bench_spawn_report(n, bench_now() - t0, bench_cpu() - c0);
  free(mem);
  return 0;
}
