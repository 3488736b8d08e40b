/* A TLS-terminating TCP proxy on tapio's C ABI. Clients speak TLS to it;
 * for each one it opens a plain TCP connection to the backend (the name
 * looked up without blocking, addresses raced with Happy Eyeballs) and
 * relays both ways with flow control: while one side's write buffer is
 * over its high-water mark, the other side's reading is paused.
 *
 * Ends: a client's end (its close_notify) becomes the backend's write_eof.
 * The other way TLS has no half-close here (tapio's TLS transport cannot
 * write_eof and closes both ways on the peer's close_notify), so the
 * backend's end closes the TLS session (what was relayed is flushed
 * first, then close_notify); the backend stays open until the client's
 * side is gone, then is closed.
 *
 * Each connection's end is logged on stdout, one line: the bytes each
 * way, the largest write buffer of each side, how the TLS session ended
 * (clean, truncated, timeout, aborted) and why the connection ended; a
 * client whose handshake failed is logged too, with why.
 * SIGTERM or SIGINT stops accepting, closes every connection (flushed,
 * close_notify) and aborts what is left after the shutdown timeout.
 *
 * Usage: tls_proxy [options] PORT BACKEND_HOST BACKEND_PORT
 *   --cert FILE            certificate chain (PEM, leaf first); required
 *   --key FILE             its private key (default: in the --cert file)
 *   --client-ca FILE       require a client certificate issued by these CAs
 *   --alpn P1,P2,...       ALPN protocols accepted, in order of preference
 *   --listen HOST          address to listen at (default 127.0.0.1)
 *   --connect-timeout S    backend connect timeout (default 10)
 *   --idle-timeout S       close a connection idle this long (default 300)
 *   --shutdown-timeout S   bound on closing at a signal (default 5)
 *   --high BYTES           write buffers' high-water mark (default 65536)
 * Prints "listening on PORT" once it listens (the port picked for 0). */
#include <tapio.h>

#include <signal.h>
#include <stdio.h>
#include <sys/socket.h>
#include <stdlib.h>
#include <string.h>

enum { MAX_ALPN = 8 };

typedef struct conn conn;

/* One side's totals, read as it ends. */
typedef struct figures {
  uint64_t received, sent, peak; /* peak: of its write buffer */
} figures;

typedef struct proxy {
  tapio_loop *loop;
  tapio_server *server;
  tapio_options *backend_opts;
  const char *backend_host;
  int backend_port;
  double connect_timeout, idle_timeout, shutdown_timeout;
  int64_t high;
  conn *conns;             /* the live connections */
  unsigned long next_id;
  int stopping;
  int failed;              /* could not listen */
  tapio_handle *deadline;  /* the shutdown's bound */
} proxy;

struct conn {
  proxy *p;
  conn *next, **prev;
  unsigned long id;
  tapio_transport *client, *backend; /* NULL once lost */
  int connecting;          /* the backend's create_connection is pending */
  tapio_handle *timer;     /* the connect timeout, then the idle one */
  double last_active;
  char why[200];           /* why it ended; the first reason wins */
  int tls_end;
  figures fc, fb;          /* the client's side, the backend's */
};

static void conn_check(void *ud);
static void maybe_done(proxy *p);

/* ---- A connection's bookkeeping --------------------------------------- */

static void set_why(conn *c, const char *fmt, const char *arg) {
  if (c->why[0] == '\0')
    snprintf(c->why, sizeof c->why, fmt, arg ? arg : "");
}

static void arm_timer(conn *c, double delay) {
  if (c->timer) {
    tapio_handle_cancel(c->timer);
    tapio_handle_release(c->timer);
    c->timer = NULL;
  }
  if (delay >= 0)
    tapio_call_later(c->p->loop, delay, conn_check, c, &c->timer);
}

static void touch(conn *c) { c->last_active = tapio_loop_time(c->p->loop); }

static const char *tls_end_name(int end) {
  static const char *const names[] = {"open", "clean", "truncated",
                                      "timeout", "aborted"};
  return end >= 0 && end <= 4 ? names[end] : "unknown";
}

/* The one log line of a connection, once both sides are gone. */
static void conn_free(conn *c) {
  printf("conn %lu closed: up %llu/%llu down %llu/%llu"
         " peak client %llu backend %llu tls %s: %s\n",
         c->id, (unsigned long long)c->fc.received,
         (unsigned long long)c->fb.sent, (unsigned long long)c->fb.received,
         (unsigned long long)c->fc.sent, (unsigned long long)c->fc.peak,
         (unsigned long long)c->fb.peak, tls_end_name(c->tls_end),
         c->why[0] ? c->why : "closed");
  arm_timer(c, -1);
  *c->prev = c->next;
  if (c->next)
    c->next->prev = c->prev;
  maybe_done(c->p);
  free(c);
}

static void maybe_free(conn *c) {
  if (!c->client && !c->backend && !c->connecting)
    conn_free(c);
}

/* Closes both sides: the client's TLS session with close_notify. */
static void conn_close(conn *c) {
  if (c->connecting) {
    tapio_cancel_pending(c->p->loop, c);
    c->connecting = 0;
  }
  if (c->client)
    tapio_transport_close(c->client);
  if (c->backend)
    tapio_transport_close(c->backend);
  maybe_free(c);
}

/* The connect timeout, then the idle timeout: one timer, re-armed for
 * what is left rather than at every read. */
static void conn_check(void *ud) {
  conn *c = ud;
  double idle;
  tapio_handle_release(c->timer);
  c->timer = NULL;
  if (c->connecting) {
    set_why(c, "backend connect timed out%s", NULL);
    conn_close(c);
    return;
  }
  idle = tapio_loop_time(c->p->loop) - c->last_active;
  if (idle >= c->p->idle_timeout) {
    set_why(c, "idle timeout%s", NULL);
    conn_close(c);
  } else {
    arm_timer(c, c->p->idle_timeout - idle);
  }
}

/* One side has ended (code 0: cleanly): the other side o ends the same
 * way. A failure (a reset, a TLS error) is passed on as a reset: abort
 * alone closes the socket with a FIN, which reads as a clean end, and
 * SO_LINGER 0 makes the kernel send RST at the close. */
static void pass_end(tapio_transport *o, int code) {
  struct linger now = {1, 0};
  if (!o)
    return;
  if (code == 0) {
    tapio_transport_close(o);
    return;
  }
  if (tapio_transport_get_fd(o) >= 0)
    setsockopt(tapio_transport_get_fd(o), SOL_SOCKET, SO_LINGER, &now,
               sizeof now);
  tapio_transport_abort(o);
}

/* ---- Relaying: the same both ways ----------------------------------- */

/* The other side of t's connection, or NULL (not yet made, or gone). */
static tapio_transport *other(conn *c, tapio_transport *t) {
  return t == c->client ? c->backend : c->client;
}

static void relay_data(void *ud, tapio_transport *t, const char *data,
                       size_t len) {
  conn *c = ud;
  tapio_transport *o = other(c, t);
  touch(c);
  if (o)
    tapio_transport_write(o, data, len);
}

/* t cannot take more for now: stop reading from the other side. */
static void relay_pause(void *ud, tapio_transport *t) {
  tapio_transport *o = other(ud, t);
  if (o)
    tapio_transport_pause_reading(o);
}

static void relay_resume(void *ud, tapio_transport *t) {
  tapio_transport *o = other(ud, t);
  if (o)
    tapio_transport_resume_reading(o);
}

/* Read in connection_lost, where they are the side's totals. */
static void read_figures(tapio_transport *t, figures *f) {
  f->received = tapio_transport_get_stat(t, TAPIO_STAT_BYTES_RECEIVED);
  f->sent = tapio_transport_get_stat(t, TAPIO_STAT_BYTES_SENT);
  f->peak = tapio_transport_get_stat(t, TAPIO_STAT_WRITE_BUFFER_PEAK);
}

/* ---- The backend's side ------------------------------------------------ */

static void backend_made(void *ud, tapio_transport *t) {
  conn *c = ud;
  c->backend = t;
  tapio_transport_set_write_buffer_limits(t, c->p->high, -1);
}

/* No half-close over TLS: the session is closed (flushed, then
 * close_notify). What the client sends after that is dropped by tapio (a
 * closing transport reads only to find the peer's close_notify), so the
 * backend is kept open only until the client's side is gone. */
static int backend_eof(void *ud, tapio_transport *t) {
  conn *c = ud;
  (void)t;
  set_why(c, "backend closed%s", NULL);
  if (c->client)
    tapio_transport_close(c->client);
  return 1;
}

static void backend_lost(void *ud, tapio_transport *t, int code,
                         const char *message) {
  conn *c = ud;
  read_figures(t, &c->fb);
  c->backend = NULL;
  if (code)
    set_why(c, "backend: %s", message);
  pass_end(c->client, code);
  maybe_free(c);
}

static const tapio_protocol backend_protocol = {
  .size = sizeof(tapio_protocol),
  .connection_made = backend_made,
  .connection_lost = backend_lost,
  .pause_writing = relay_pause,
  .resume_writing = relay_resume,
  .data_received = relay_data,
  .eof_received = backend_eof,
};

/* Why the backend's connect failed: the loop's words, or the code's. */
static void connect_failed(conn *c, int status) {
  const char *why = tapio_loop_error_message(c->p->loop);
  set_why(c, "backend connect failed: %s",
          why ? why : tapio_strerror(status));
}

static void backend_connected(void *ud, int status, tapio_transport *t) {
  conn *c = ud;
  (void)t;
  c->connecting = 0;
  if (status < 0) {
    connect_failed(c, status);
    conn_close(c);
    return;
  }
  touch(c);
  arm_timer(c, c->p->idle_timeout);
  if (c->client)
    tapio_transport_resume_reading(c->client);
}

/* ---- The client's side (TLS) ------------------------------------------ */

/* The client certificate's common name, or "" without one. */
static void peer_name(tapio_transport *t, char *value, size_t len) {
  char name[64];
  size_t i;
  value[0] = '\0';
  for (i = 0; tapio_transport_get_peercert_entry(
                  t, TAPIO_TLS_SUBJECT, i, name, sizeof name, value, len) == 0;
       i++)
    if (strcmp(name, "commonName") == 0)
      return;
  value[0] = '\0';
}

static void client_made(void *ud, tapio_transport *t) {
  conn *c = ud;
  proxy *p = c->p;
  char host[64] = "?", alpn[64] = "", cn[128];
  int port = 0, rc;
  c->client = t;
  tapio_transport_set_write_buffer_limits(t, p->high, -1);
  tapio_transport_get_peername(t, host, sizeof host, &port, NULL);
  tapio_transport_get_tls_info(t, TAPIO_TLS_INFO_ALPN, alpn, sizeof alpn,
                               NULL);
  peer_name(t, cn, sizeof cn);
  printf("conn %lu from %s:%d alpn '%s' client '%s'\n", c->id, host, port,
         alpn, cn);
  /* Nothing is read until there is somewhere to send it. */
  tapio_transport_pause_reading(t);
  rc = tapio_create_connection(p->loop, p->backend_host, p->backend_port,
                               &backend_protocol, c, p->backend_opts,
                               backend_connected, c);
  if (rc < 0) {
    connect_failed(c, rc);
    tapio_transport_close(t);
    return;
  }
  c->connecting = 1;
  arm_timer(c, p->connect_timeout);
}


/* The client's close_notify: passed on as the backend's end of input.
 * TLS closes the session both ways whatever this returns. */
static int client_eof(void *ud, tapio_transport *t) {
  conn *c = ud;
  (void)t;
  set_why(c, "client closed%s", NULL);
  if (c->backend)
    tapio_transport_write_eof(c->backend);
  return 1;
}

static void client_lost(void *ud, tapio_transport *t, int code,
                        const char *message) {
  conn *c = ud;
  read_figures(t, &c->fc);
  c->tls_end = (int)tapio_transport_get_tls_num(t, TAPIO_TLS_NUM_END);
  c->client = NULL;
  if (code)
    set_why(c, "client: %s", message);
  if (c->connecting) {
    tapio_cancel_pending(c->p->loop, c);
    c->connecting = 0;
  }
  pass_end(c->backend, code);
  maybe_free(c);
}

static const tapio_protocol client_protocol = {
  .size = sizeof(tapio_protocol),
  .connection_made = client_made,
  .connection_lost = client_lost,
  .pause_writing = relay_pause,
  .resume_writing = relay_resume,
  .data_received = relay_data,
  .eof_received = client_eof,
};

/* Called once a client's handshake is done. */
static int factory(void *ud, tapio_server *s, const tapio_protocol **proto,
                   void **proto_ud) {
  proxy *p = ud;
  conn *c = calloc(1, sizeof *c);
  (void)s;
  if (!c)
    return TAPIO_ENOMEM;
  c->p = p;
  c->id = ++p->next_id;
  c->next = p->conns;
  c->prev = &p->conns;
  if (p->conns)
    p->conns->prev = &c->next;
  p->conns = c;
  *proto = &client_protocol;
  *proto_ud = c;
  return 0;
}

/* ---- Starting and stopping -------------------------------------------- */

static void maybe_done(proxy *p) {
  if (p->stopping && !p->conns) {
    tapio_handle_cancel(p->deadline);
    tapio_loop_stop(p->loop);
  }
}

/* The shutdown's bound: whatever has not closed by now is aborted. */
static void shutdown_deadline(void *ud) {
  proxy *p = ud;
  conn *c;
  tapio_handle_release(p->deadline);
  p->deadline = NULL;
  printf("shutdown timeout: aborting what is left\n");
  for (c = p->conns; c; c = c->next) {
    set_why(c, "aborted at shutdown%s", NULL);
    if (c->client)
      tapio_transport_abort(c->client);
    if (c->backend)
      tapio_transport_abort(c->backend);
  }
}

static void stop(void *ud) {
  proxy *p = ud;
  conn *c, *next;
  if (p->stopping)
    return;
  p->stopping = 1;
  printf("stopping: %zu connection(s) open\n",
         tapio_server_client_count(p->server));
  /* Released, the server calls the factory no more: a handshake still
   * going on is aborted when it ends. */
  tapio_server_close(p->server);
  tapio_server_release(p->server);
  p->server = NULL;
  for (c = p->conns; c; c = next) {
    next = c->next; /* conn_close may free c */
    set_why(c, "proxy stopping%s", NULL);
    conn_close(c);
  }
  tapio_call_later(p->loop, p->shutdown_timeout, shutdown_deadline, p,
                   &p->deadline);
  maybe_done(p);
}

/* A client whose handshake failed (no certificate, a scanner, a stall)
 * never becomes a conn: logged here, with who and why. */
static void handshake_failed(void *ud, tapio_server *s, tapio_transport *t,
                             int status) {
  const char *why = tapio_loop_error_message(tapio_server_get_loop(s));
  char host[64] = "?";
  int port = 0;
  (void)ud;
  tapio_transport_get_peername(t, host, sizeof host, &port, NULL);
  printf("handshake failed from %s:%d: %s\n", host, port,
         why ? why : tapio_strerror(status));
}

static void listening(void *ud, int status, tapio_server *s) {
  proxy *p = ud;
  int port = 0;
  if (status < 0) {
    fprintf(stderr, "tls_proxy: cannot listen: %s\n",
            tapio_loop_error_message(p->loop));
    p->failed = 1;
    tapio_loop_stop(p->loop);
    return;
  }
  p->server = s;
  tapio_server_set_handshake_failed(s, handshake_failed, p);
  tapio_server_get_address(s, 0, NULL, 0, &port, NULL);
  printf("listening on %d\n", port);
}

typedef struct config {
  const char *cert, *key, *client_ca, *listen;
  const char *alpn[MAX_ALPN];
  size_t nalpn;
  char alpn_buf[256];
} config;

static int usage(void) {
  fprintf(stderr, "usage: tls_proxy [--cert F] [--key F] [--client-ca F]"
                  " [--alpn P1,P2] [--listen HOST] [--connect-timeout S]"
                  " [--idle-timeout S] [--shutdown-timeout S] [--high N]"
                  " PORT BACKEND_HOST BACKEND_PORT\n");
  return 2;
}

static void split_alpn(config *cfg, const char *list) {
  char *s;
  snprintf(cfg->alpn_buf, sizeof cfg->alpn_buf, "%s", list);
  for (s = strtok(cfg->alpn_buf, ","); s && cfg->nalpn < MAX_ALPN;
       s = strtok(NULL, ","))
    cfg->alpn[cfg->nalpn++] = s;
}

/* Options, then the three operands; returns how many arguments it took,
 * or -1. */
static int parse_args(int argc, char **argv, proxy *p, config *cfg) {
  int i;
  for (i = 1; i + 1 < argc && strncmp(argv[i], "--", 2) == 0; i += 2) {
    const char *o = argv[i], *v = argv[i + 1];
    if (strcmp(o, "--cert") == 0) cfg->cert = v;
    else if (strcmp(o, "--key") == 0) cfg->key = v;
    else if (strcmp(o, "--client-ca") == 0) cfg->client_ca = v;
    else if (strcmp(o, "--alpn") == 0) split_alpn(cfg, v);
    else if (strcmp(o, "--listen") == 0) cfg->listen = v;
    else if (strcmp(o, "--connect-timeout") == 0) p->connect_timeout = atof(v);
    else if (strcmp(o, "--idle-timeout") == 0) p->idle_timeout = atof(v);
    else if (strcmp(o, "--shutdown-timeout") == 0)
      p->shutdown_timeout = atof(v);
    else if (strcmp(o, "--high") == 0) p->high = atoll(v);
    else return -1;
  }
  if (argc - i != 3 || !cfg->cert)
    return -1;
  p->backend_host = argv[i + 1];
  p->backend_port = atoi(argv[i + 2]);
  return i;
}

static int make_tls(const config *cfg, tapio_tls_context **out) {
  tapio_tls_context *ctx;
  int rc = tapio_tls_context_new(TAPIO_TLS_SERVER, &ctx);
  if (rc < 0)
    return rc;
  rc = tapio_tls_context_load_cert_chain(ctx, cfg->cert, cfg->key, NULL);
  if (rc == 0 && cfg->client_ca) {
    rc = tapio_tls_context_load_verify_locations(ctx, cfg->client_ca, NULL,
                                                 NULL, 0);
    if (rc == 0)
      rc = tapio_tls_context_set_verify(ctx, TAPIO_TLS_VERIFY_REQUIRED);
  }
  if (rc == 0 && cfg->nalpn)
    rc = tapio_tls_context_set_alpn(ctx, cfg->alpn, cfg->nalpn);
  if (rc < 0)
    fprintf(stderr, "tls_proxy: TLS set-up: %s\n",
            tapio_tls_context_error(ctx));
  *out = ctx;
  return rc;
}

/* The listening server's options and the backend connections'. The TLS
 * sessions keep the default ssl_shutdown_timeout (asyncio's 30 s): it
 * bounds every close from its start, the flush included, so the shutdown
 * bound there would cut a slow client's last megabytes short after a
 * backend's ordinary end; at a signal, shutdown_deadline bounds it all. */
static int make_options(proxy *p, tapio_tls_context *tls,
                        tapio_options **server_opts) {
  int rc = tapio_options_new(p->loop, server_opts);
  if (rc == 0)
    rc = tapio_options_set_tls(*server_opts, "ssl", tls);
  if (rc == 0)
    rc = tapio_options_new(p->loop, &p->backend_opts);
  if (rc == 0)
    rc = tapio_options_set_double(p->backend_opts, "happy_eyeballs_delay",
                                  0.25);
  return rc;
}

static int serve(proxy *p, const config *cfg, int port) {
  tapio_tls_context *tls = NULL;
  tapio_options *server_opts = NULL;
  int rc = make_tls(cfg, &tls);
  if (rc == 0)
    rc = make_options(p, tls, &server_opts);
  if (rc == 0)
    rc = tapio_add_signal_handler(p->loop, SIGTERM, stop, p);
  if (rc == 0)
    rc = tapio_add_signal_handler(p->loop, SIGINT, stop, p);
  if (rc == 0)
    rc = tapio_create_server(p->loop, &cfg->listen, 1, port, factory, p,
                             server_opts, listening, p);
  tapio_options_free(server_opts); /* the server keeps its own copy */
  tapio_tls_context_release(tls);  /* and its own reference */
  if (rc == 0)
    rc = tapio_loop_run(p->loop);
  return rc;
}

int main(int argc, char **argv) {
  proxy p = {0};
  config cfg = {0};
  int rc, i;
  p.connect_timeout = 10;
  p.idle_timeout = 300;
  p.shutdown_timeout = 5;
  p.high = 65536;
  cfg.listen = "127.0.0.1";
  i = parse_args(argc, argv, &p, &cfg);
  if (i < 0)
    return usage();
  setvbuf(stdout, NULL, _IOLBF, 0);
  rc = tapio_loop_new(&p.loop);
  if (rc == 0)
    rc = serve(&p, &cfg, atoi(argv[i]));
  if (rc < 0)
    fprintf(stderr, "tls_proxy: %s\n", tapio_strerror(rc));
  if (p.server)
    tapio_server_release(p.server);
  tapio_handle_cancel(p.deadline);
  tapio_handle_release(p.deadline);
  tapio_options_free(p.backend_opts);
  tapio_loop_free(p.loop);
  return rc < 0 || p.failed ? 1 : 0;
}
