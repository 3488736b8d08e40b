/* A plain OpenSSL echo server on libev, written for the TLS rows of the
 * benchmark the way a careful C programmer would: the reference for what
 * the machine can do with TLS.
 *
 *   openssl_echo PORT CERT KEY [mem|socket] [STATS_PORT]
 *
 * Listens on 127.0.0.1:PORT, makes every connection a TLS server (TLS 1.2
 * or 1.3, OpenSSL's defaults otherwise: session tickets on) and echoes
 * every byte back. Two ways to give OpenSSL its ciphertext:
 *
 *   mem     memory BIOs (as Python's ssl and uvloop do): one 256 KiB read
 *           from the socket is handed to the read BIO, everything it
 *           decrypts is encrypted into the write BIO at once and sent in
 *           one write; what the socket does not take waits, and reading
 *           stops until it has gone.
 *   socket  SSL on the descriptor (SSL_set_fd) with read-ahead: OpenSSL
 *           reads and writes the socket itself, one record per call;
 *           a write the socket does not take is retried as OpenSSL asks.
 *
 * Both release OpenSSL's record buffers while idle
 * (SSL_MODE_RELEASE_BUFFERS), so an idle connection costs its SSL object.
 * With STATS_PORT, a second listener answers each connection with the
 * bytes OpenSSL holds (counted through CRYPTO_set_mem_functions) as one
 * decimal line: the idle row's "per-SSL footprint". */
#define _GNU_SOURCE
#include <ev.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ossl_count.h"

enum { BUF = 256 * 1024 };
static _Alignas(4096) char buf[BUF];
static SSL_CTX *ctx;
static int use_mem;

/* ---- Connections -------------------------------------------------------- */

struct conn {
  ev_io io;        /* first member: the watcher is the conn */
  SSL *ssl;
  BIO *rbio, *wbio; /* mem: ours to feed and drain */
  char *left;      /* mem: ciphertext the socket did not take;
                      socket: plaintext OpenSSL must be given again */
  size_t left_len, left_off;
  int closing;     /* mem: the peer is done; close once drained */
};

static void conn_close(struct ev_loop *loop, struct conn *c)
{
  ev_io_stop(loop, &c->io);
  close(c->io.fd);
  SSL_free(c->ssl);
  free(c->left);
  free(c);
}

static void conn_watch(struct ev_loop *loop, struct conn *c, int events)
{
  if (c->io.events == events)
    return;
  ev_io_stop(loop, &c->io);
  ev_io_set(&c->io, c->io.fd, events);
  ev_io_start(loop, &c->io);
}

static ssize_t send_some(int fd, const char *p, size_t len)
{
  size_t done = 0;
  while (done < len) {
    ssize_t n = send(fd, p + done, len - done, MSG_NOSIGNAL);
    if (n > 0)
      done += (size_t)n;
    else if (n < 0 && errno == EINTR)
      continue;
    else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
      break;
    else
      return -1;
  }
  return (ssize_t)done;
}

static int keep(struct conn *c, const char *p, size_t len)
{
  c->left = malloc(len);
  if (!c->left)
    return -1;
  memcpy(c->left, p, len);
  c->left_len = len;
  c->left_off = 0;
  return 0;
}

/* ---- mem: memory BIOs ----------------------------------------------------- */

/* Sends what the write BIO holds; keeps what the socket does not take.
 * -1 on a dead socket. */
static int mem_flush(struct ev_loop *loop, struct conn *c)
{
  int n;
  while ((n = BIO_read(c->wbio, buf, BUF)) > 0) {
    ssize_t w = send_some(c->io.fd, buf, (size_t)n);
    if (w < 0)
      return -1;
    if (w < n) {
      if (keep(c, buf + w, (size_t)(n - w)) < 0)
        return -1;
      conn_watch(loop, c, EV_WRITE);
      return 0;
    }
  }
  return 0;
}

/* Everything decrypted is encrypted back into the write BIO. Returns 0,
 * or -1 when the peer is done (close_notify) or the session failed. */
static int mem_echo(struct conn *c)
{
  for (;;) {
    size_t got = 0;
    int n;
    int e = 0;
    while (got < BUF && (n = SSL_read(c->ssl, buf + got, BUF - (int)got)) > 0)
      got += (size_t)n;
    if (got < BUF)
      e = SSL_get_error(c->ssl, n); /* before the write resets it */
    if (got && SSL_write(c->ssl, buf, (int)got) != (int)got)
      return -1;
    if (got < BUF)
      return e == SSL_ERROR_WANT_READ ? 0 : -1;
  }
}

/* The peer is done or the session failed: what was echoed goes first. */
static void mem_finish(struct ev_loop *loop, struct conn *c)
{
  c->closing = 1;
  if (mem_flush(loop, c) < 0 || !c->left)
    conn_close(loop, c);
}

static void mem_read(struct ev_loop *loop, struct conn *c)
{
  ssize_t n = read(c->io.fd, buf, BUF);
  if (n < 0 && (errno == EAGAIN || errno == EINTR))
    return;
  if (n <= 0 || BIO_write(c->rbio, buf, (int)n) != n) {
    mem_finish(loop, c);
    return;
  }
  if (!SSL_is_init_finished(c->ssl)) {
    int r = SSL_do_handshake(c->ssl);
    if (r <= 0 && SSL_get_error(c->ssl, r) != SSL_ERROR_WANT_READ) {
      mem_finish(loop, c); /* the alert goes out */
      return;
    }
  }
  if (SSL_is_init_finished(c->ssl) && mem_echo(c) < 0)
    mem_finish(loop, c);
  else if (mem_flush(loop, c) < 0)
    conn_close(loop, c);
}

static void mem_drain(struct ev_loop *loop, struct conn *c)
{
  ssize_t w = send_some(c->io.fd, c->left + c->left_off,
                        c->left_len - c->left_off);
  if (w < 0) {
    conn_close(loop, c);
    return;
  }
  c->left_off += (size_t)w;
  if (c->left_off < c->left_len)
    return;
  free(c->left);
  c->left = NULL;
  if (mem_flush(loop, c) < 0 || (c->closing && !c->left))
    conn_close(loop, c);
  else if (!c->left)
    conn_watch(loop, c, EV_READ);
}

/* ---- socket: SSL on the descriptor --------------------------------------- */

/* Writes len plaintext bytes; what OpenSSL could not send is kept to be
 * given again (the same bytes, as it requires). */
static int sock_write(struct ev_loop *loop, struct conn *c, const char *p,
                      size_t len)
{
  while (len > 0) {
    int n = SSL_write(c->ssl, p, (int)len);
    if (n > 0) {
      p += n;
      len -= (size_t)n;
      continue;
    }
    if (SSL_get_error(c->ssl, n) != SSL_ERROR_WANT_WRITE)
      return -1;
    if (p != c->left + c->left_off) {
      free(c->left);
      c->left = NULL;
      if (keep(c, p, len) < 0)
        return -1;
    } else {
      c->left_off = c->left_len - len;
    }
    conn_watch(loop, c, EV_WRITE);
    return 0;
  }
  free(c->left);
  c->left = NULL;
  conn_watch(loop, c, EV_READ);
  return 0;
}

static void sock_read(struct ev_loop *loop, struct conn *c)
{
  for (int pass = 0; pass < 16; pass++) {
    size_t got = 0;
    int n, e = 0;
    while (got < BUF && (n = SSL_read(c->ssl, buf + got, BUF - (int)got)) > 0)
      got += (size_t)n;
    if (got < BUF)
      e = SSL_get_error(c->ssl, n); /* before the write resets it */
    if (got && (sock_write(loop, c, buf, got) < 0 || c->left)) {
      if (!c->left)
        conn_close(loop, c);
      return;
    }
    if (got < BUF) {
      if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
        conn_close(loop, c);
      return;
    }
  }
}

static void on_conn(struct ev_loop *loop, ev_io *w, int revents)
{
  struct conn *c = (struct conn *)w;
  (void)revents;
  if (use_mem) {
    if (c->left)
      mem_drain(loop, c);
    else
      mem_read(loop, c);
  } else if (c->left) {
    if (sock_write(loop, c, c->left + c->left_off,
                   c->left_len - c->left_off) < 0)
      conn_close(loop, c);
    else if (!c->left)
      sock_read(loop, c);
  } else {
    sock_read(loop, c);
  }
}

static void conn_open(struct ev_loop *loop, int fd)
{
  int one = 1;
  struct conn *c = calloc(1, sizeof *c);
  if (!c || !(c->ssl = SSL_new(ctx))) {
    free(c);
    close(fd);
    return;
  }
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (use_mem) {
    c->rbio = BIO_new(BIO_s_mem());
    c->wbio = BIO_new(BIO_s_mem());
    BIO_set_mem_eof_return(c->rbio, -1);
    SSL_set_bio(c->ssl, c->rbio, c->wbio);
  } else {
    SSL_set_fd(c->ssl, fd);
  }
  SSL_set_accept_state(c->ssl);
  ev_io_init(&c->io, on_conn, fd, EV_READ);
  ev_io_start(loop, &c->io);
}

/* ---- Stats: OpenSSL's bytes ---------------------------------------------- */

static void on_stats(struct ev_loop *loop, ev_io *w, int revents)
{
  char line[32];
  (void)loop;
  (void)revents;
  int fd = accept4(w->fd, NULL, NULL, SOCK_CLOEXEC);
  if (fd < 0)
    return;
  int n = snprintf(line, sizeof line, "%lld\n", (long long)ossl_bytes);
  if (write(fd, line, (size_t)n) < 0)
    perror("openssl_echo: stats");
  close(fd);
}

/* ---- Listening ----------------------------------------------------------- */

static void on_accept(struct ev_loop *loop, ev_io *w, int revents)
{
  (void)revents;
  for (;;) {
    int fd = accept4(w->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
      conn_open(loop, fd);
      continue;
    }
    if (errno == EINTR || errno == ECONNABORTED)
      continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK)
      perror("openssl_echo: accept4");
    return;
  }
}

static int listen_on(int port, int nonblock)
{
  int one = 1;
  struct sockaddr_in sa = { .sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port) };
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC |
                  (nonblock ? SOCK_NONBLOCK : 0), 0);
  if (fd < 0)
    return -1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 ||
      listen(fd, SOMAXCONN) < 0) {
    close(fd);
    return -1;
  }
  return fd;
}

static SSL_CTX *make_ctx(const char *cert, const char *key)
{
  SSL_CTX *c = SSL_CTX_new(TLS_server_method());
  if (!c || SSL_CTX_use_certificate_chain_file(c, cert) != 1 ||
      SSL_CTX_use_PrivateKey_file(c, key, SSL_FILETYPE_PEM) != 1) {
    ERR_print_errors_fp(stderr);
    return NULL;
  }
  SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION);
  SSL_CTX_set_mode(c, SSL_MODE_RELEASE_BUFFERS);
  if (!use_mem) { /* a write BIO in memory takes every record at once */
    SSL_CTX_set_mode(c, SSL_MODE_ENABLE_PARTIAL_WRITE |
                        SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_read_ahead(c, 1);
  }
  return c;
}

static void raise_nofile(void)
{
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

int main(int argc, char **argv)
{
  int port = argc > 3 ? atoi(argv[1]) : 0;
  int stats = argc > 5 ? atoi(argv[5]) : 0;
  if (port <= 0 || port > 65535 || stats < 0 || stats > 65535 ||
      (argc > 4 && strcmp(argv[4], "mem") && strcmp(argv[4], "socket"))) {
    fprintf(stderr,
            "usage: openssl_echo PORT CERT KEY [mem|socket] [STATS_PORT]\n");
    return 2;
  }
  use_mem = argc <= 4 || !strcmp(argv[4], "mem");
  ossl_count_install();
  raise_nofile();
  signal(SIGPIPE, SIG_IGN);
  if (!(ctx = make_ctx(argv[2], argv[3])))
    return 1;
  int lfd = listen_on(port, 1), sfd = stats ? listen_on(stats, 0) : -1;
  if (lfd < 0 || (stats && sfd < 0)) {
    perror("openssl_echo: listen");
    return 1;
  }
  struct ev_loop *loop = ev_default_loop(EVFLAG_AUTO);
  ev_io accept_w, stats_w;
  ev_io_init(&accept_w, on_accept, lfd, EV_READ);
  ev_io_start(loop, &accept_w);
  if (stats) {
    ev_io_init(&stats_w, on_stats, sfd, EV_READ);
    ev_io_start(loop, &stats_w);
  }
  ev_run(loop, 0);
  return 0;
}
