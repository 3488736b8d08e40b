/* The pipe benchmark's tapio C reader: subprocess_exec(SOURCE BYTES) with
 * only stdout piped; pipe_data_received counts the bytes. Written only
 * against capi/tapio.h.
 *
 *   pipe_tapio SOURCE BYTES
 *
 * Prints bytes, seconds, MB/s and this process's CPU per MB. */
#include "bench_child.h"
#include "tapio.h"

static long long received;

static void on_data(void *ud, tapio_transport *t, int fd, const char *data,
                    size_t len)
{
  (void)ud;
  (void)t;
  (void)fd;
  (void)data;
  received += (long long)len;
}

static void on_lost(void *ud, tapio_transport *t, int code, const char *msg)
{
  (void)t;
  (void)code;
  (void)msg;
  tapio_loop_stop(ud);
}

static const tapio_subprocess_protocol counting = {
  .size = sizeof(tapio_subprocess_protocol),
  .connection_lost = on_lost,
  .pipe_data_received = on_data,
};

static void on_started(void *ud, int status, tapio_transport *t)
{
  (void)ud;
  (void)t;
  if (status < 0) {
    fprintf(stderr, "pipe_tapio: %s\n", tapio_strerror(status));
    exit(1);
  }
}

int main(int argc, char **argv)
{
  const char *args[1];
  tapio_loop *loop;
  tapio_options *o;
  double t0, c0;
  if (argc < 3) {
    fprintf(stderr, "usage: pipe_tapio SOURCE BYTES\n");
    return 2;
  }
  args[0] = argv[2];
  t0 = bench_now();
  c0 = bench_cpu();
  if (tapio_loop_new(&loop) < 0 || tapio_options_new(loop, &o) < 0)
    return 1;
  tapio_options_set_int(o, "stdin", TAPIO_STDIO_DEVNULL);
  tapio_options_set_int(o, "stderr", TAPIO_STDIO_INHERIT);
  if (tapio_subprocess_exec(loop, argv[1], args, 1, &counting, loop, o,
                            on_started, NULL) < 0)
    return 1;
  tapio_options_free(o);
  tapio_loop_run(loop);
  tapio_loop_free(loop);
  bench_pipe_report(received, bench_now() - t0, bench_cpu() - c0);
  return received == atoll(argv[2]) ? 0 : 1;
}
