/* tapio's C TLS echo server for the TLS rows, written against
 * capi/tapio.h (and OpenSSL's allocator hooks, to count its memory).
 *
 *   tapio_tls_echo PORT CERT KEY [STATS_PORT]
 *
 * tapio_echo.c's protocol (write back, flow control by pausing reading)
 * on a server whose "ssl" option is a context made from CERT and KEY.
 * With STATS_PORT, a second (plain) listener answers each connection with
 * the C memory held: tapio_loop_memory(loop) plus what OpenSSL holds
 * (counted through CRYPTO_set_mem_functions), as one decimal line. */
#include "tapio.h"

#include <inttypes.h>
#include <malloc.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/socket.h>

static int64_t ossl_bytes;

static void *count_malloc(size_t n, const char *file, int line)
{
  void *p = malloc(n);
  (void)file;
  (void)line;
  if (p)
    ossl_bytes += (int64_t)malloc_usable_size(p);
  return p;
}

static void count_free(void *p, const char *file, int line)
{
  (void)file;
  (void)line;
  if (p)
    ossl_bytes -= (int64_t)malloc_usable_size(p);
  free(p);
}

static void *count_realloc(void *p, size_t n, const char *file, int line)
{
  size_t old = p ? malloc_usable_size(p) : 0;
  void *q = realloc(p, n);
  (void)file;
  (void)line;
  if (q || n == 0)
    ossl_bytes += (int64_t)(q ? malloc_usable_size(q) : 0) - (int64_t)old;
  return q;
}

static void echo_data(void *ud, tapio_transport *t, const char *data,
                      size_t len)
{
  (void)ud;
  tapio_transport_write(t, data, len);
}

static void echo_pause(void *ud, tapio_transport *t)
{
  (void)ud;
  tapio_transport_pause_reading(t);
}

static void echo_resume(void *ud, tapio_transport *t)
{
  (void)ud;
  tapio_transport_resume_reading(t);
}

static const tapio_protocol echo_protocol = {
  .size = sizeof(tapio_protocol),
  .data_received = echo_data,
  .pause_writing = echo_pause,
  .resume_writing = echo_resume,
};

static void stats_made(void *ud, tapio_transport *t)
{
  char line[32];
  (void)ud;
  int n = snprintf(line, sizeof line, "%" PRIu64 "\n",
                   tapio_loop_memory(tapio_transport_get_loop(t)) +
                       (uint64_t)ossl_bytes);
  tapio_transport_write(t, line, (size_t)n);
  tapio_transport_close(t);
}

static const tapio_protocol stats_protocol = {
  .size = sizeof(tapio_protocol),
  .connection_made = stats_made,
};

static int factory(void *ud, tapio_server *s, const tapio_protocol **proto,
                   void **proto_ud)
{
  (void)s;
  *proto = ud;
  *proto_ud = NULL;
  return 0;
}

static void listening(void *ud, int status, tapio_server *s)
{
  (void)s;
  if (status < 0) {
    fprintf(stderr, "tapio_tls_echo: %s: %s\n", (const char *)ud,
            tapio_strerror(status));
    exit(1);
  }
}

static int serve(tapio_loop *loop, tapio_options *opts, int port,
                 const tapio_protocol *proto, const char *what)
{
  static const char *const host[] = { "127.0.0.1" };
  int rc = tapio_create_server(loop, host, 1, port, factory, (void *)proto,
                               opts, listening, (void *)what);
  if (rc < 0)
    fprintf(stderr, "tapio_tls_echo: %s: %s\n", what, tapio_strerror(rc));
  return rc;
}

int main(int argc, char **argv)
{
  int port = argc > 3 ? atoi(argv[1]) : 0;
  int stats_port = argc > 4 ? atoi(argv[4]) : 0;
  tapio_loop *loop;
  tapio_options *opts, *plain;
  tapio_tls_context *ctx;
  struct rlimit rl;
  if (port <= 0 || port > 65535 || stats_port < 0 || stats_port > 65535) {
    fprintf(stderr, "usage: tapio_tls_echo PORT CERT KEY [STATS_PORT]\n");
    return 2;
  }
  CRYPTO_set_mem_functions(count_malloc, count_realloc, count_free);
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  if (tapio_loop_new(&loop) < 0 || tapio_options_new(loop, &opts) < 0 ||
      tapio_options_new(loop, &plain) < 0 ||
      tapio_tls_context_new(TAPIO_TLS_SERVER, &ctx) < 0) {
    fprintf(stderr, "tapio_tls_echo: cannot make the loop\n");
    return 1;
  }
  if (tapio_tls_context_load_cert_chain(ctx, argv[2], argv[3], NULL) < 0) {
    fprintf(stderr, "tapio_tls_echo: %s\n", tapio_tls_context_error(ctx));
    return 1;
  }
  tapio_options_set_int(opts, "backlog", SOMAXCONN);
  tapio_options_set_int(plain, "backlog", SOMAXCONN);
  tapio_options_set_tls(opts, "ssl", ctx);
  tapio_tls_context_release(ctx);
  if (serve(loop, opts, port, &echo_protocol, "echo") < 0 ||
      (stats_port && serve(loop, plain, stats_port, &stats_protocol,
                           "stats") < 0))
    return 1;
  tapio_options_free(opts);
  tapio_options_free(plain);
  int rc = tapio_loop_run(loop);
  if (rc < 0)
    fprintf(stderr, "tapio_tls_echo: run: %s\n", tapio_strerror(rc));
  return rc < 0;
}
