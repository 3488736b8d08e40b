/* The load generator's TLS modes (the TLS rows, bench/tls_rows.sh). One
 * thread, epoll, loopback, OpenSSL on the socket (read-ahead, partial
 * writes), TLS 1.3 only, certificates not verified (the servers' are
 * throwaway ones).
 *
 *   load tls-stream --port P --conns N --size B --depth D [--warmup S]
 *                   [--duration S] [--pid PID]
 *       N connections each keep D blocks of B bytes in flight and read the
 *       echo back; counts echoed bytes over the window and, with --pid,
 *       the server's CPU time over exactly that window. At the end every
 *       connection sends close_notify, reads to EOF and must have had
 *       every byte back, in order (checked byte for byte throughout).
 *   load tls-handshake --port P --conns N [--warmup S] [--duration S]
 *                      [--pid PID]
 *       N connections at a time: connect, full handshake (no resumption),
 *       close, again. Counts handshakes completed in the window.
 *   load tls-idle --port P --conns N --pid PID [--stats-port P]
 *       Opens N TLS connections, one 64-byte round trip on each, then
 *       reports the server's RSS growth per connection (and the growth of
 *       the number its stats port answers).
 *
 * One line of key=value pairs on stdout; any failure prints error=... and
 * exits 1. Every loop is bounded by a deadline. */
#define _GNU_SOURCE
#include <openssl/err.h>
#include <openssl/ssl.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "load.h"

enum { PERIOD = 64 * 1021, MAX_IO = 256 * 1024, RECV_BURST = 64 };
static unsigned char pattern[PERIOD + MAX_IO];
static unsigned char rbuf[MAX_IO];
static const double SETUP_SECS = 60, DRAIN_SECS = 20;

struct conn {
  int fd;
  SSL *ssl;
  int ready;          /* handshake done */
  int out;            /* EPOLLOUT watched */
  int closing;        /* close_notify sent: reading to EOF */
  size_t wlen;        /* a write OpenSSL asked to be repeated, or 0 */
  uint32_t seed;
  uint64_t sent, recvd;
};

static const struct opts *O;
static SSL_CTX *ctx;
static int ep;
static struct conn *conns;
static uint64_t total_recvd, handshakes;
static int done, sending = 1;
static int idle_mode, hs_mode; /* tls-idle: one block each; tls-handshake */

/* A non-blocking connect to 127.0.0.1:port, under way: the descriptor,
 * or -1 with errno set. */
static int dial_nb(int port)
{
  struct sockaddr_in sa = { .sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port) };
  int one = 1;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0)
    return -1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0 &&
      errno != EINPROGRESS) {
    int e = errno;
    close(fd);
    errno = e;
    return -1;
  }
  return fd;
}

static const unsigned char *stream_at(const struct conn *c, uint64_t off)
{
  return pattern + (c->seed + off) % PERIOD;
}

/* ---- Connections -------------------------------------------------------- */

static void watch(struct conn *c, int out)
{
  struct epoll_event ev = { .events = EPOLLIN | (out ? EPOLLOUT : 0),
                            .data.ptr = c };
  if (c->out == out)
    return;
  if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) < 0)
    die("epoll_ctl: %s", strerror(errno));
  c->out = out;
}

static void conn_start(struct conn *c, int i)
{
  struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT, .data.ptr = c };
  memset(c, 0, sizeof *c);
  c->fd = dial_nb(O->port);
  if (c->fd < 0)
    die("connect: %s", strerror(errno));
  c->ssl = SSL_new(ctx);
  if (!c->ssl)
    die("SSL_new");
  SSL_set_fd(c->ssl, c->fd);
  SSL_set_connect_state(c->ssl);
  c->seed = (uint32_t)((uint64_t)i * 7919 % 1021 * 64);
  c->out = 1;
  if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) < 0)
    die("epoll_ctl: %s", strerror(errno));
}

static void conn_end(struct conn *c)
{
  SSL_free(c->ssl);
  close(c->fd);
  c->ssl = NULL;
  c->fd = -1;
}

/* What OpenSSL's last call wants: 0 to wait (watching as it asks), -1 at
 * the end of the stream. */
static int wants(struct conn *c, int r, const char *what)
{
  int e = SSL_get_error(c->ssl, r);
  if (e == SSL_ERROR_WANT_READ) {
    watch(c, 0);
    return 0;
  }
  if (e == SSL_ERROR_WANT_WRITE) {
    watch(c, 1);
    return 0;
  }
  if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && r == 0))
    return -1;
  char msg[160];
  ERR_error_string_n(ERR_get_error(), msg, sizeof msg);
  die("%s: %s (ssl error %d, errno %s)", what, msg, e, strerror(errno));
  return -1;
}

/* How far the stream may be sent now: depth blocks past the echo (one
 * block in all when idle); when no longer sending, only a write OpenSSL
 * asked to be repeated. */
static uint64_t target(const struct conn *c)
{
  uint64_t t = (c->recvd / O->size + (uint64_t)O->depth) * O->size;
  if (!sending)
    return c->sent + c->wlen;
  return idle_mode && t > O->size ? O->size : t;
}

static void conn_send(struct conn *c)
{
  while (c->sent < target(c)) {
    uint64_t want = target(c) - c->sent;
    size_t len = c->wlen ? c->wlen : want < MAX_IO ? (size_t)want : MAX_IO;
    int n = SSL_write(c->ssl, stream_at(c, c->sent), (int)len);
    if (n <= 0) {
      c->wlen = len;
      if (wants(c, n, "SSL_write") < 0)
        die("server closed a connection mid-run");
      return;
    }
    c->wlen = 0;
    c->sent += (uint64_t)n;
  }
  watch(c, 0);
}

/* Reads what the server echoed, sending more as it comes. At most
 * RECV_BURST records a call, then back to pump, which must see its
 * deadline: against a server as fast as the load the echo never runs dry
 * (windows of 0.4 s took up to 2 s), and every connection gets its turn.
 * What OpenSSL already holds is read out first, since epoll would not
 * wake for it. */
static void conn_recv(struct conn *c)
{
  for (int k = 0;; k++) {
    if (k >= RECV_BURST && !SSL_has_pending(c->ssl))
      return;
    int n = SSL_read(c->ssl, rbuf, sizeof rbuf);
    if (n <= 0) {
      if (wants(c, n, "SSL_read") == 0)
        return;
      if (!c->closing)
        die("server closed a connection mid-run");
      if (c->recvd != c->sent)
        die("EOF after %llu of %llu bytes echoed",
            (unsigned long long)c->recvd, (unsigned long long)c->sent);
      epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
      done++;
      return;
    }
    if (c->recvd + (uint64_t)n > c->sent)
      die("server sent more than it was sent");
    if (memcmp(rbuf, stream_at(c, c->recvd), (size_t)n))
      die("echoed bytes differ from the bytes sent");
    c->recvd += (uint64_t)n;
    total_recvd += (uint64_t)n;
    if (idle_mode && c->recvd == O->size)
      done++;
    if (!c->closing)
      conn_send(c);
  }
}

/* Finishes a pending write, then sends close_notify (again, if the
 * socket was full). */
static void conn_close_notify(struct conn *c)
{
  if (c->wlen) {
    conn_send(c);
    if (c->wlen)
      return;
  }
  int r = SSL_shutdown(c->ssl);
  if (r < 0 && wants(c, r, "SSL_shutdown") == 0)
    return;
  c->closing = 2;
  watch(c, 0);
}

/* One step of a connection, whatever woke it. */
static void conn_step(struct conn *c, int i)
{
  if (!c->ready) {
    int r = SSL_do_handshake(c->ssl);
    if (r <= 0) {
      if (wants(c, r, "handshake") < 0)
        die("server closed during the handshake");
      return;
    }
    c->ready = 1;
    if (hs_mode) {
      handshakes++;
      conn_end(c);
      conn_start(c, i);
      return;
    }
  }
  if (c->closing == 1)
    conn_close_notify(c);
  else if (!c->closing)
    conn_send(c);
  conn_recv(c);
}

static void open_all(void)
{
  conns = calloc((size_t)O->conns, sizeof *conns);
  if (!conns)
    die("out of memory");
  for (int i = 0; i < O->conns; i++)
    conn_start(&conns[i], i);
}

/* Serves events until `until`, or until `goal` connections are done. */
static int pump(double until, int goal)
{
  struct epoll_event ev[256];
  while (!goal || done < goal) {
    double left = until - now();
    if (left <= 0)
      return 0;
    int n = epoll_wait(ep, ev, 256, left > 0.1 ? 100 : (int)(left * 1e3) + 1);
    if (n < 0 && errno != EINTR)
      die("epoll_wait: %s", strerror(errno));
    for (int k = 0; k < n; k++) {
      struct conn *c = ev[k].data.ptr;
      conn_step(c, (int)(c - conns));
    }
  }
  return 1;
}

/* close_notify on every connection, then every byte back and the EOF. */
static void drain_all(void)
{
  sending = 0;
  done = 0;
  for (int i = 0; i < O->conns; i++) {
    struct conn *c = &conns[i];
    if (!c->ready)
      die("a connection never finished its handshake");
    c->closing = 1;
    conn_close_notify(c);
  }
  if (!pump(now() + DRAIN_SECS, O->conns))
    die("%d of %d connections not echoed to the end", O->conns - done,
        O->conns);
  for (int i = 0; i < O->conns; i++)
    conn_end(&conns[i]);
}

/* ---- Modes -------------------------------------------------------------- */

struct window {
  double t0, cpu0, self0, busy0, steal0;
};

static void window_start(struct window *w)
{
  w->cpu0 = O->pid ? proc_cpu(O->pid) : 0;
  if (w->cpu0 < 0)
    die("cannot read the CPU time of pid %d", O->pid);
  w->self0 = self_cpu();
  machine_cpu(&w->busy0, &w->steal0);
  w->t0 = now();
}

/* Prints secs, server CPU, load CPU and the rest of the machine's. */
static double window_end(const struct window *w, double *cpu)
{
  double secs = now() - w->t0, busy, steal;
  *cpu = O->pid ? proc_cpu(O->pid) - w->cpu0 : 0;
  double self = self_cpu() - w->self0;
  machine_cpu(&busy, &steal);
  double other = busy - w->busy0 - *cpu - self;
  printf("secs=%.3f server_cpu_s=%.3f load_cpu_s=%.3f other_cpu_s=%.2f ",
         secs, *cpu, self, other > 0 ? other : 0);
  return secs;
}

/* Opens the connections, warms up, then counts *counter over the window
 * (whose figures window_end prints): the count; the window's length and
 * the server's CPU time in *secs and *cpu. */
static uint64_t measure(const uint64_t *counter, double *secs, double *cpu)
{
  struct window w;
  open_all();
  pump(now() + O->warmup, 0);
  uint64_t c0 = *counter;
  window_start(&w);
  pump(w.t0 + O->duration, 0);
  uint64_t n = *counter - c0;
  *secs = window_end(&w, cpu);
  return n;
}

static int mode_stream(void)
{
  double secs, cpu;
  uint64_t bytes = measure(&total_recvd, &secs, &cpu);
  double mb = (double)bytes / 1e6;
  printf("mode=stream conns=%d size=%zu depth=%d bytes=%llu mbps=%.2f "
         "cpu_us_per_mb=%.2f\n", O->conns, O->size, O->depth,
         (unsigned long long)bytes, mb / secs, mb ? cpu * 1e6 / mb : 0);
  fflush(stdout);
  if (bytes == 0)
    die("no echo in %.1f s", secs);
  drain_all();
  return 0;
}

static int mode_handshake(void)
{
  double secs, cpu;
  uint64_t n = measure(&handshakes, &secs, &cpu);
  printf("mode=handshake conns=%d handshakes=%llu hps=%.1f "
         "cpu_us_per_hs=%.1f\n", O->conns, (unsigned long long)n,
         (double)n / secs, n ? cpu * 1e6 / (double)n : 0);
  if (n == 0)
    die("no handshake in %.1f s", secs);
  return 0;
}

static int mode_idle(void)
{
  if (!O->pid)
    die("idle needs --pid");
  long rss0 = proc_rss_kb(O->pid);
  long long mem0 = O->stats_port ? query_stats(O->stats_port) : -1;
  open_all();
  if (!pump(now() + SETUP_SECS, O->conns))
    die("only %d of %d round trips done", done, O->conns);
  long rss1 = proc_rss_kb(O->pid);
  long long mem1 = O->stats_port ? query_stats(O->stats_port) : -1;
  printf("mode=idle conns=%d rss_per_conn=%.1f", O->conns,
         (double)(rss1 - rss0) * 1024 / O->conns);
  if (mem0 >= 0 && mem1 >= 0)
    printf(" cmem_per_conn=%.1f", (double)(mem1 - mem0) / O->conns);
  printf("\n");
  drain_all();
  return 0;
}

/* ---- The modes' entry --------------------------------------------------- */

int mode_tls(const struct opts *o)
{
  static struct opts idle;
  O = o;
  idle_mode = !strcmp(o->mode, "tls-idle");
  hs_mode = !strcmp(o->mode, "tls-handshake");
  if (idle_mode) { /* one 64-byte round trip each */
    idle = *o;
    idle.size = 64;
    idle.depth = 1;
    O = &idle;
  }
  uint32_t x = 2463534242u;
  for (size_t i = 0; i < sizeof pattern; i++) {
    x ^= x << 13, x ^= x >> 17, x ^= x << 5;
    pattern[i] = i < PERIOD ? (unsigned char)x : pattern[i - PERIOD];
  }
  ctx = SSL_CTX_new(TLS_client_method());
  SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_read_ahead(ctx, 1);
  SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS |
                        SSL_MODE_ENABLE_PARTIAL_WRITE |
                        SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  ep = epoll_create1(EPOLL_CLOEXEC);
  if (!ctx || ep < 0)
    die("setup");
  if (!strcmp(o->mode, "tls-stream"))
    return mode_stream();
  if (hs_mode)
    return mode_handshake();
  if (idle_mode)
    return mode_idle();
  die("no mode %s", o->mode);
}
