/* What the TLS tests share: the certificates (made by spec/tls/make_certs.sh
 * with the openssl command, by the tls.certs fixture or on first use),
 * contexts made from them, a TLS server and client on
 * test.h's recording protocol, and peers that are other programs
 * (openssl s_server/s_client, /usr/bin/python3) spoken to through pipes. */
#ifndef TAPIO_TEST_TLS_H
#define TAPIO_TEST_TLS_H

#include "test.h"

#ifndef TAPIO_SOURCE_DIR
#error "TAPIO_SOURCE_DIR must name the source tree"
#endif
#ifndef TAPIO_CERTS_DIR
#error "TAPIO_CERTS_DIR must name where the certificates go"
#endif

/* ---- Certificates -------------------------------------------------------- */

static inline const char *certs_dir(void)
{
  static int made;
  if (!made) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "sh %s/spec/tls/make_certs.sh %s >/dev/null",
             TAPIO_SOURCE_DIR, TAPIO_CERTS_DIR);
    if (system(cmd) != 0)
      FAIL("could not make the certificates: %s", cmd);
    made = 1;
  }
  return TAPIO_CERTS_DIR;
}

/* The path of certificate file name ("server.pem") in a static buffer of
 * four, so a call can use a few at once. */
static inline const char *cert(const char *name)
{
  static char bufs[4][512];
  static int next;
  char *b = bufs[next++ % 4];
  snprintf(b, sizeof bufs[0], "%s/%s", certs_dir(), name);
  return b;
}

/* A server context with certificate `name` (name.pem and name.key). */
static inline tapio_tls_context *server_ctx(const char *name)
{
  tapio_tls_context *c = NULL;
  char pem[64], key[64];
  snprintf(pem, sizeof pem, "%s.pem", name);
  snprintf(key, sizeof key, "%s.key", name);
  CHECK_OK(tapio_tls_context_new(TAPIO_TLS_SERVER, &c));
  const char *p = cert(pem), *k = cert(key);
  if (tapio_tls_context_load_cert_chain(c, p, k, NULL) != 0)
    FAIL("load_cert_chain(%s): %s", name, tapio_tls_context_error(c));
  return c;
}

/* A client context that trusts the test CA only. */
static inline tapio_tls_context *client_ctx(void)
{
  tapio_tls_context *c = NULL;
  CHECK_OK(tapio_tls_context_new(TAPIO_TLS_CLIENT, &c));
  CHECK_OK(tapio_tls_context_load_verify_locations(c, cert("ca.pem"), NULL,
                                                   NULL, 0));
  return c;
}

/* Options with "ssl" set to ctx (and released: the options hold it). */
static inline tapio_options *tls_options(tapio_loop *loop,
                                         tapio_tls_context *ctx)
{
  tapio_options *o = new_options(loop);
  CHECK_OK(tapio_options_set_tls(o, "ssl", ctx));
  tapio_tls_context_release(ctx);
  return o;
}

/* Options of a client that checks the name "localhost" (client_ctx's
 * CA). */
static inline tapio_options *tls_client_options(tapio_loop *loop)
{
  tapio_options *o = tls_options(loop, client_ctx());
  CHECK_OK(tapio_options_set_str(o, "server_hostname", "localhost"));
  return o;
}

/* Starts sv (srv_init done, its tmpl set) on 127.0.0.1 with options o,
 * which hold "ssl". */
static inline void tls_srv_listen(srv *sv, const tapio_options *o)
{
  static const char *const hosts[] = { "127.0.0.1" };
  CHECK_OK(srv_start_hosts(sv, hosts, 1, 0, o));
}

/* A TLS server on 127.0.0.1 with context ctx (released). */
static inline void tls_srv_start(srv *sv, tapio_loop *loop,
                                 tapio_tls_context *ctx)
{
  tapio_options *o = tls_options(loop, ctx);
  srv_init(sv, loop);
  tls_srv_listen(sv, o);
  tapio_options_free(o);
}

/* A create call's completion that also keeps tapio_loop_error_message. */
typedef struct tls_try {
  conn_wait w;          /* first: on_connected takes it */
  tapio_loop *loop;
  char msg[256];
} tls_try;

static inline void tls_try_done(void *ud, int status, tapio_transport *t)
{
  tls_try *tt = ud;
  const char *m = tapio_loop_error_message(tt->loop);
  if (status == 0 && m)
    FAIL("an error message after a success: %s", m);
  snprintf(tt->msg, sizeof tt->msg, "%s", m ? m : "");
  on_connected(&tt->w, status, t);
}

/* The words of the last failed tls_connect_opts/tls_connect. */
static char tls_last_msg[256];

/* Connects r, with protocol proto (rec_proto, or rec_bproto for r with a
 * buffer), to 127.0.0.1:port with options o (holding "ssl"); waits as
 * connect_tcp does; the status. */
static inline int tls_connect_as(tapio_loop *loop, int port, rec *r,
                                 const tapio_protocol *proto,
                                 const tapio_options *o)
{
  tls_try tt;
  memset(&tt, 0, sizeof tt);
  tt.w.r = r;
  tt.loop = loop;
  CHECK_OK(tapio_create_connection(loop, "127.0.0.1", port, proto, r, o,
                                   tls_try_done, &tt));
  CHECK_OK(connect_wait(loop, &tt.w) == tt.w.status ? 0 : -1);
  snprintf(tls_last_msg, sizeof tls_last_msg, "%s", tt.msg);
  return tt.w.status;
}

/* tls_connect_as with rec_proto. */
static inline int tls_connect_opts(tapio_loop *loop, int port, rec *r,
                                   const tapio_options *o)
{
  return tls_connect_as(loop, port, r, &rec_proto, o);
}

/* Connects r with TLS (ctx released) to 127.0.0.1:port; its status. With
 * name, server_hostname is set (else the host, "127.0.0.1", is checked). */
static inline int tls_connect(tapio_loop *loop, int port, rec *r,
                              tapio_tls_context *ctx, const char *name)
{
  tapio_options *o = tls_options(loop, ctx);
  int rc;
  if (name)
    CHECK_OK(tapio_options_set_str(o, "server_hostname", name));
  rc = tls_connect_opts(loop, port, r, o);
  tapio_options_free(o);
  return rc;
}

/* A string value of a TLS transport's extra info, or "" when none. */
static inline const char *tls_info(tapio_transport *t, int which)
{
  static char buf[4][512];
  static int next;
  char *b = buf[next++ % 4];
  b[0] = '\0';
  if (tapio_transport_get_tls_info(t, which, b, sizeof buf[0], NULL) < 0)
    b[0] = '\0';
  return b;
}

/* ---- A client and a server ------------------------------------------------ */

/* A client's rec and the server's side of its connection. */
typedef struct tls_pair {
  tapio_loop *loop;
  srv sv;
  rec c;
  rec *s;
} tls_pair;

/* A loop, a server not started yet (set p->sv.tmpl's hooks now) and an
 * empty client rec. */
static inline void tls_pair_init(tls_pair *p)
{
  p->loop = new_loop();
  srv_init(&p->sv, p->loop);
  rec_init(&p->c);
}

/* A TLS server with options so and a client with options co (each
 * holding "ssl", the client's its server_hostname too; both freed) and
 * protocol proto (rec_proto, or rec_bproto for a client rec with a
 * buffer) connected to it; fails the test unless it connects. */
static inline void tls_pair_up_opts(tls_pair *p, tapio_options *so,
                                    tapio_options *co,
                                    const tapio_protocol *proto)
{
  tls_srv_listen(&p->sv, so);
  tapio_options_free(so);
  if (tls_connect_as(p->loop, p->sv.port, &p->c, proto, co) != 0)
    FAIL("TLS connect: %s", tls_last_msg);
  tapio_options_free(co);
  p->s = srv_wait_conn(&p->sv, 0);
}

/* A TLS server with context sctx and a client with cctx (both released)
 * connected to it checking `name`; fails the test unless it connects. */
static inline void tls_pair_up(tls_pair *p, tapio_tls_context *sctx,
                               tapio_tls_context *cctx, const char *name)
{
  tapio_options *so = tls_options(p->loop, sctx);
  tapio_options *co = tls_options(p->loop, cctx);
  if (name)
    CHECK_OK(tapio_options_set_str(co, "server_hostname", name));
  tls_pair_up_opts(p, so, co, &rec_proto);
}

/* Waits until both sides are gone; their logs are clog and slog. */
static inline void tls_pair_lost(tls_pair *p, const char *clog,
                                 const char *slog)
{
  WAIT_FOR(p->loop, p->c.lost && p->s->lost);
  CHECK_STR(p->c.log, clog);
  CHECK_STR(p->s->log, slog);
}

static inline void tls_pair_end(tls_pair *p)
{
  srv_release_and_free(&p->sv, p->loop);
  rec_free(&p->c);
}

/* ---- TLS over memory ------------------------------------------------------ */

/* A new virtual loop and a testing-kit memory pair on it, each end
 * recorded by its own recorder (events merged), both connection_made
 * run: what the tests of TLS over memory start TLS on. chunk nonzero:
 * each end reads and writes that many bytes at a time. */
static inline tapio_loop *recorded_pair_open(size_t chunk,
                                             tapio_recorder **ra,
                                             tapio_transport **ta,
                                             tapio_recorder **rb,
                                             tapio_transport **tb)
{
  tapio_loop *loop = new_virtual();
  CHECK_OK(tapio_recorder_new(NULL, NULL, TAPIO_RECORDER_MERGE, ra));
  CHECK_OK(tapio_recorder_new(NULL, NULL, TAPIO_RECORDER_MERGE, rb));
  CHECK_OK(tapio_memory_pair(loop, tapio_recorder_protocol(*ra), *ra,
                             tapio_recorder_protocol(*rb), *rb, ta, tb));
  if (chunk) {
    CHECK_OK(tapio_memory_set_chunks(*ta, chunk, chunk, 0));
    CHECK_OK(tapio_memory_set_chunks(*tb, chunk, chunk, 0));
  }
  CHECK_OK(tapio_loop_run_until_idle(loop));
  return loop;
}

/* The loop, then the recorders (they outlive the transports). */
static inline void recorded_pair_free(tapio_loop *loop, tapio_recorder *ra,
                                      tapio_recorder *rb)
{
  free_loop(loop);
  tapio_recorder_free(ra);
  tapio_recorder_free(rb);
}

/* Writes pattern bytes on r's transport (from *offset on) until
 * pause_writing came; the count. */
static inline size_t fill_until_paused(rec *r, size_t *offset)
{
  static char more[64 * 1024];
  size_t total = fill_until_buffered(r->t, offset);
  while (!r->paused) {
    pattern_fill(more, sizeof more, *offset);
    CHECK_OK(tapio_transport_write(r->t, more, sizeof more));
    *offset += sizeof more;
    total += sizeof more;
  }
  return total;
}

/* ---- start_tls ----------------------------------------------------------- */

/* What a start_tls completion delivered. */
typedef struct started {
  tapio_loop *loop;
  int done, status;
  tapio_transport *t;
  char msg[256];
} started;

static inline void on_started(void *ud, int status, tapio_transport *t)
{
  started *st = ud;
  const char *m = tapio_loop_error_message(st->loop);
  st->done++;
  st->status = status;
  st->t = t;
  snprintf(st->msg, sizeof st->msg, "%s", m ? m : "");
  if ((status == 0) != (t != NULL))
    FAIL("start_tls completion: status %d with transport %p", status,
         (void *)t);
}

/* Upgrades r's transport with ctx (released) and options o (NULL, or
 * the caller's to free), r staying its protocol; buffered bytes are fed
 * first. Does not wait. */
static inline void start_tls_opts(rec *r, started *st,
                                  tapio_tls_context *ctx,
                                  const tapio_options *o,
                                  const char *buffered, size_t len)
{
  memset(st, 0, sizeof *st);
  st->loop = tapio_transport_get_loop(r->t);
  CHECK_OK(tapio_transport_start_tls(r->t, &rec_proto, r, ctx, o, buffered,
                                     len, on_started, st));
  tapio_tls_context_release(ctx);
  CHECK_EQ(st->done, 0); /* never from inside the call */
}

/* start_tls_opts with name as the server_hostname of a client (NULL for
 * servers). */
static inline void start_tls(rec *r, started *st, tapio_tls_context *ctx,
                             const char *name, const char *buffered,
                             size_t len)
{
  tapio_options *o = new_options(tapio_transport_get_loop(r->t));
  if (name)
    CHECK_OK(tapio_options_set_str(o, "server_hostname", name));
  start_tls_opts(r, st, ctx, o, buffered, len);
  tapio_options_free(o);
}

/* ---- Peers that are other programs --------------------------------------- */

typedef struct peer {
  pid_t pid;
  int in;   /* we write to the program's stdin */
  int out;  /* we read its stdout (and stderr) */
  char got[65536];
  size_t ngot;
} peer;

/* Starts argv with its stdin and stdout (stderr too) on pipes. */
static inline void peer_start(peer *p, char *const argv[])
{
  int in[2], out[2];
  memset(p, 0, sizeof *p);
  CHECK(pipe(in) == 0 && pipe(out) == 0);
  p->pid = fork();
  CHECK(p->pid >= 0);
  if (p->pid == 0) {
    dup2(in[0], 0);
    dup2(out[1], 1);
    dup2(out[1], 2);
    close(in[0]);
    close(in[1]);
    close(out[0]);
    close(out[1]);
    execvp(argv[0], argv);
    _exit(127);
  }
  close(in[0]);
  close(out[1]);
  p->in = in[1];
  p->out = out[0];
  raw_nonblock(p->out);
}

/* Reads what the program printed so far into p->got (kept whole). */
static inline void peer_poll(peer *p)
{
  for (;;) {
    ssize_t n = read(p->out, p->got + p->ngot, sizeof p->got - 1 - p->ngot);
    if (n <= 0)
      break;
    p->ngot += (size_t)n;
  }
  p->got[p->ngot] = '\0';
}

/* Runs the loop until the program printed text at or after *from (an
 * offset in p->got), then moves *from past it: waits in order, on a
 * program whose earlier output may hold the same text (the loop may be
 * NULL). */
static inline void peer_wait_from(tapio_loop *loop, peer *p, size_t *from,
                                  const char *text)
{
  double end = now_sec() + test_timeout() * 2;
  for (;;) {
    const char *at;
    peer_poll(p);
    if ((at = strstr(p->got + *from, text)) != NULL) {
      *from = (size_t)(at - p->got) + strlen(text);
      return;
    }
    if (now_sec() > end)
      FAIL("the peer never printed \"%s\" after its first %zu bytes; it "
           "printed:\n%s", text, *from, p->got);
    raw_wait(loop, p->out, POLLIN);
  }
}

/* Runs the loop until the program printed text (the loop may be NULL). */
static inline void peer_wait_for(tapio_loop *loop, peer *p, const char *text)
{
  size_t from = 0;
  peer_wait_from(loop, p, &from, text);
}

/* Whether the program printed text between offsets from and to of
 * p->got. */
static inline int peer_printed_between(const peer *p, size_t from, size_t to,
                                       const char *text)
{
  const char *at = strstr(p->got + from, text);
  return at && (size_t)(at - p->got) + strlen(text) <= to;
}

static inline void peer_send(peer *p, const char *text)
{
  size_t n = strlen(text);
  CHECK((size_t)write(p->in, text, n) == n);
}

/* Ends the program (SIGTERM, then waits). */
static inline void peer_stop(peer *p)
{
  int status;
  close(p->in);
  kill(p->pid, SIGTERM);
  waitpid(p->pid, &status, 0);
  close(p->out);
}

/* Runs the loop until the program printed a whole line that starts
 * with prefix; that line (in p->got). */
static inline const char *peer_wait_line(tapio_loop *loop, peer *p,
                                         const char *prefix)
{
  double end = now_sec() + test_timeout() * 2;
  for (;;) {
    const char *at;
    peer_poll(p);
    at = strstr(p->got, prefix);
    if (at && strchr(at, '\n'))
      return at;
    if (now_sec() > end)
      FAIL("the peer never printed a line \"%s...\"; it printed:\n%s",
           prefix, p->got);
    raw_wait(loop, p->out, POLLIN);
  }
}

/* The port openssl s_server listens on, given "-accept 127.0.0.1:0" (a
 * port it picks and keeps, where one picked here and released for it
 * could be taken meanwhile): it prints "ACCEPT 127.0.0.1:PORT". */
static inline int s_server_port(tapio_loop *loop, peer *p)
{
  const char *line = peer_wait_line(loop, p, "ACCEPT ");
  const char *colon = strchr(line, ':');
  CHECK(colon && colon < strchr(line, '\n'));
  return atoi(colon + 1);
}

/* ---- Python's peers (spec/tls/peer.py) ----------------------------------- */

#define PYTHON "/usr/bin/python3"

/* Skips the test unless program path is here. */
static inline void need(const char *path)
{
  if (access(path, X_OK) != 0)
    SKIP("no such program here");
}

/* peer.py in mode (port 0: a server, which prints its port). */
static inline void python_peer(peer *p, const char *mode, int port)
{
  char script[512], portarg[16];
  char *argv[] = { PYTHON, script, (char *)mode, (char *)certs_dir(),
                   portarg, NULL };
  need(PYTHON);
  snprintf(script, sizeof script, "%s/spec/tls/peer.py", TAPIO_SOURCE_DIR);
  snprintf(portarg, sizeof portarg, "%d", port);
  if (!port)
    argv[4] = NULL;
  peer_start(p, argv);
}

/* The port a server peer printed ("PORT n"). */
static inline int peer_port(tapio_loop *loop, peer *p)
{
  return atoi(peer_wait_line(loop, p, "PORT ") + 5);
}

#endif /* TAPIO_TEST_TLS_H */
