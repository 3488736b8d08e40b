/* The spawn benchmark's tapio C side: N children of PROGRAM (/bin/true),
 * K in flight, each started with subprocess_exec (stdin, stdout and stderr
 * on /dev/null) and a new one started from the connection_lost of each
 * that ends. Written only against capi/tapio.h.
 *
 *   spawn_tapio PROGRAM N K
 *
 * Prints children started and reaped per second and the parent's CPU per
 * child. */
#include "bench_child.h"
#include "tapio.h"

static tapio_loop *loop;
static tapio_options *opts;
static const char *program;
static int started, ended, total;

static void start_one(void);

static void on_lost(void *ud, tapio_transport *t, int code, const char *msg)
{
  int rc = -1;
  (void)ud;
  (void)code;
  (void)msg;
  if (tapio_subprocess_get_returncode(t, &rc) != 1 || rc != 0) {
    fprintf(stderr, "spawn_tapio: a child ended with %d\n", rc);
    exit(1);
  }
  if (++ended == total)
    tapio_loop_stop(loop);
  else if (started < total)
    start_one();
}

static const tapio_subprocess_protocol proto = {
  .size = sizeof(tapio_subprocess_protocol),
  .connection_lost = on_lost,
};

static void on_started(void *ud, int status, tapio_transport *t)
{
  (void)ud;
  (void)t;
  if (status < 0) {
    fprintf(stderr, "spawn_tapio: %s\n", tapio_strerror(status));
    exit(1);
  }
}

static void start_one(void)
{
  int rc = tapio_subprocess_exec(loop, program, NULL, 0, &proto, NULL, opts,
                                 on_started, NULL);
  if (rc < 0) {
    fprintf(stderr, "spawn_tapio: %s\n", tapio_strerror(rc));
    exit(1);
  }
  started++;
}

int main(int argc, char **argv)
{
  int k, i;
  double t0, c0;
  if (argc < 4) {
    fprintf(stderr, "usage: spawn_tapio PROGRAM N K\n");
    return 2;
  }
  program = argv[1];
  total = atoi(argv[2]);
  k = atoi(argv[3]);
  if (tapio_loop_new(&loop) < 0 || tapio_options_new(loop, &opts) < 0)
    return 1;
  tapio_options_set_int(opts, "stdin", TAPIO_STDIO_DEVNULL);
  tapio_options_set_int(opts, "stdout", TAPIO_STDIO_DEVNULL);
  tapio_options_set_int(opts, "stderr", TAPIO_STDIO_DEVNULL);
  t0 = bench_now();
  c0 = bench_cpu();
  for (i = 0; i < k && i < total; i++)
    start_one();
  tapio_loop_run(loop);
  bench_spawn_report(total, bench_now() - t0, bench_cpu() - c0);
  tapio_options_free(opts);
  tapio_loop_free(loop);
  return 0;
}
