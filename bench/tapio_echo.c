/* tapio's C echo server, written only against capi/tapio.h.
 *
 *   tapio_echo PORT [STATS_PORT [CERT KEY]]
 *
 * Listens on 127.0.0.1:PORT; each connection gets the same static protocol
 * table with no per-connection state of its own, so the memory a
 * connection costs is what tapio holds for it. data_received writes the
 * bytes straight back. Flow control is asyncio's: when the write buffer
 * passes the high-water mark the transport stops reading until it drains.
 *
 * With STATS_PORT, a second listener on 127.0.0.1:STATS_PORT answers each
 * connection with tapio_loop_memory(loop) as one decimal line and closes:
 * the benchmark reads it before and after opening its idle connections.
 * Nothing of this touches the echo path.
 *
 * With CERT and KEY, the echo listener is TLS (the TLS rows: its "ssl"
 * option is a context made from them), and the stats port counts what
 * OpenSSL holds too (its allocator is counted, see ossl_count.h). */
#include "tapio.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include "ossl_count.h"

static void echo_data(void *ud, tapio_transport *t, const char *data,
                      size_t len)
{
  (void)ud;
  /* Only fails on a closing transport, where dropping is what we want. */
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

/* eof_received NULL: the transport closes once its output is flushed. */
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

/* A server that cannot listen makes the whole benchmark meaningless. */
static void listening(void *ud, int status, tapio_server *s)
{
  (void)s;
  if (status < 0) {
    fprintf(stderr, "tapio_echo: %s: %s\n", (const char *)ud,
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
    fprintf(stderr, "tapio_echo: %s: %s\n", what, tapio_strerror(rc));
  return rc;
}

/* The idle-connection row opens 10,000 connections. */
static void raise_nofile(void)
{
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

/* The echo listener's options: the backlog, and with cert and key, TLS. */
static tapio_options *echo_options(tapio_loop *loop, tapio_options *plain,
                                   const char *cert, const char *key)
{
  tapio_options *o;
  tapio_tls_context *ctx;
  if (!cert)
    return plain;
  if (tapio_options_new(loop, &o) < 0 ||
      tapio_tls_context_new(TAPIO_TLS_SERVER, &ctx) < 0)
    return NULL;
  if (tapio_tls_context_load_cert_chain(ctx, cert, key, NULL) < 0) {
    fprintf(stderr, "tapio_echo: %s\n", tapio_tls_context_error(ctx));
    return NULL;
  }
  tapio_options_set_int(o, "backlog", SOMAXCONN);
  tapio_options_set_tls(o, "ssl", ctx);
  tapio_tls_context_release(ctx);
  return o;
}

int main(int argc, char **argv)
{
  int port = argc > 1 ? atoi(argv[1]) : 0;
  int stats_port = argc > 2 ? atoi(argv[2]) : 0;
  const char *cert = argc > 4 ? argv[3] : NULL;
  const char *key = argc > 4 ? argv[4] : NULL;
  if (port <= 0 || port > 65535 || stats_port < 0 || stats_port > 65535 ||
      argc == 4) {
    fprintf(stderr, "usage: tapio_echo PORT [STATS_PORT [CERT KEY]]\n");
    return 2;
  }
  if (cert)
    ossl_count_install();
  raise_nofile();
  tapio_loop *loop;
  tapio_options *opts, *echo;
  if (tapio_loop_new(&loop) < 0 || tapio_options_new(loop, &opts) < 0) {
    fprintf(stderr, "tapio_echo: cannot make the loop\n");
    return 1;
  }
  /* Same accept queue as the libev server: the load opens 10k at once. */
  tapio_options_set_int(opts, "backlog", SOMAXCONN);
  echo = echo_options(loop, opts, cert, key);
  if (!echo || serve(loop, echo, port, &echo_protocol, "echo") < 0 ||
      (stats_port && serve(loop, opts, stats_port, &stats_protocol,
                           "stats") < 0))
    return 1;
  if (echo != opts)
    tapio_options_free(echo);
  tapio_options_free(opts);
  int rc = tapio_loop_run(loop);
  if (rc < 0)
    fprintf(stderr, "tapio_echo: run: %s\n", tapio_strerror(rc));
  return rc < 0;
}
