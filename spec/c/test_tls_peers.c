/* TLS against peers whose behaviour another implementation defines, both
 * ways: the openssl command's s_server and s_client, and Python's ssl with
 * asyncio (spec/tls/peer.py, run by /usr/bin/python3). */
#include "tls.h"

#include <openssl/ssl.h>

/* ---- Helpers ------------------------------------------------------------ */

/* A server rec that echoes what it gets (its user is a size_t: how far). */
static void echo_hook(rec *r, rec_event ev)
{
  size_t *done = r->user;
  if (ev == EV_DATA && r->nin > *done) {
    CHECK_OK(tapio_transport_write(r->t, r->in + *done, r->nin - *done));
    *done = r->nin;
  }
}

static void end_with(rec *r, rec_event ev)
{
  if (ev == EV_LOST)
    r->eof_ret = (int)tapio_transport_get_tls_num(r->t, TAPIO_TLS_NUM_END);
}

/* r as a TLS client of 127.0.0.1:port ("localhost" checked). */
static void connect_to(tapio_loop *loop, int port, rec *r)
{
  if (tls_connect(loop, port, r, client_ctx(), "localhost") != 0)
    FAIL("TLS connect: %s", tls_last_msg);
}

/* ---- openssl s_server and s_client ---------------------------------------- */

/* s_server run as argv (on "-accept 127.0.0.1:0"), and c (set up by the
 * caller) connected to it. */
static void s_server_with(tapio_loop *loop, peer *srv, char *const argv[],
                          rec *c)
{
  need("/usr/bin/openssl");
  peer_start(srv, argv);
  connect_to(loop, s_server_port(loop, srv), c);
}

/* tapio's client against s_server: bytes both ways, then a clean close
 * (s_server answers close_notify). */
static void s_server_both_ways(const char *version)
{
  tapio_loop *loop = new_loop();
  char *argv[] = { "openssl", "s_server", "-accept", "127.0.0.1:0", "-cert",
                   (char *)cert("server.pem"), "-key",
                   (char *)cert("server.key"), "-naccept", "1",
                   (char *)version, NULL };
  peer srv;
  rec c;
  rec_init(&c);
  c.hook = end_with;
  s_server_with(loop, &srv, argv, &c);
  CHECK_OK(tapio_transport_write(c.t, "hello from tapio\n", 17));
  peer_wait_for(loop, &srv, "hello from tapio");
  peer_send(&srv, "hello from openssl\n");
  WAIT_FOR(loop, c.nin >= 19);
  CHECK(memcmp(c.in, "hello from openssl\n", 19) == 0);
  CHECK_STR(tls_info(c.t, TAPIO_TLS_INFO_VERSION),
            strcmp(version, "-tls1_2") ? "TLSv1.3" : "TLSv1.2");
  CHECK_OK(tapio_transport_close(c.t));
  WAIT_FOR(loop, c.lost);
  CHECK_STR(c.log, "made data:19 lost:0");
  CHECK_EQ(c.eof_ret, TAPIO_TLS_END_CLEAN);
  peer_stop(&srv);
  free_loop(loop);
  rec_free(&c);
}

static void s_server_tls13(void) { s_server_both_ways("-tls1_3"); }
static void s_server_tls12(void) { s_server_both_ways("-tls1_2"); }

/* A TLS server on loop whose connections echo (echoed: how far), and
 * s_client run as argv, whose "-connect" argument is addr (32 bytes, set
 * here); the server's side of its connection. */
static rec *s_client_of(tapio_loop *loop, srv *sv, size_t *echoed, peer *cl,
                        char *const argv[], char *addr)
{
  need("/usr/bin/openssl");
  tls_srv_start(sv, loop, server_ctx("server"));
  sv->tmpl.hook = echo_hook;
  sv->tmpl.user = echoed;
  snprintf(addr, 32, "127.0.0.1:%d", sv->port);
  peer_start(cl, argv);
  return srv_wait_conn(sv, 0);
}

/* s_client against tapio's server: it verifies tapio's certificate and
 * name, its line comes back. */
static void s_client_to_tapio(void)
{
  tapio_loop *loop = new_loop();
  char addr[32];
  char *argv[] = { "openssl", "s_client", "-connect", addr, "-CAfile",
                   (char *)cert("ca.pem"), "-verify_return_error",
                   "-servername", "localhost", "-verify_hostname",
                   "localhost", "-quiet", NULL };
  size_t echoed = 0;
  peer cl;
  srv sv;
  rec *s = s_client_of(loop, &sv, &echoed, &cl, argv, addr);
  peer_send(&cl, "hello from s_client\n");
  peer_wait_for(loop, &cl, "hello from s_client");
  CHECK_STR(tls_info(s->t, TAPIO_TLS_INFO_SERVER_HOSTNAME), "localhost");
  peer_stop(&cl);
  WAIT_FOR(loop, s->lost);
  CHECK_STR(s->log, "made data:20 eof lost:0");
  srv_release_and_free(&sv, loop);
}

/* TLS 1.2 renegotiation asked by the server in the middle of a session
 * (s_server's "r" command): followed inside a read, the session goes on
 * both ways. s_server's -msg lines (each flushed as it is printed, where
 * its "SSL_do_handshake -> 1" waits in stdout's buffer, and comes once
 * the HelloRequest is sent, not when the handshake is done) show the
 * renegotiation: a ClientHello after the HelloRequest, and the client's
 * Finished after that. */
static void s_server_renegotiates(void)
{
  tapio_loop *loop = new_loop();
  char *argv[] = { "openssl", "s_server", "-accept", "127.0.0.1:0", "-cert",
                   (char *)cert("server.pem"), "-key",
                   (char *)cert("server.key"), "-naccept", "1", "-tls1_2",
                   "-msg", NULL };
  peer srv;
  rec c;
  size_t at;
  rec_init(&c);
  s_server_with(loop, &srv, argv, &c);
  CHECK_OK(tapio_transport_write(c.t, "before\n", 7));
  peer_wait_for(loop, &srv, "before");
  at = srv.ngot;
  peer_send(&srv, "r\n");
  peer_wait_from(loop, &srv, &at,
                 ">>> TLS 1.2, Handshake [length 0004], HelloRequest");
  peer_wait_from(loop, &srv, &at, "], ClientHello");
  peer_wait_from(loop, &srv, &at,
                 "<<< TLS 1.2, Handshake [length 0010], Finished");
  peer_send(&srv, "after\n");
  WAIT_FOR(loop, c.nin >= 6);
  CHECK(memcmp(c.in, "after\n", 6) == 0);
  CHECK_OK(tapio_transport_write(c.t, "tapio after\n", 12));
  peer_wait_for(loop, &srv, "tapio after");
  CHECK_OK(tapio_transport_close(c.t));
  WAIT_FOR(loop, c.lost);
  CHECK_STR(c.log, "made data:6 lost:0");
  peer_stop(&srv);
  free_loop(loop);
  rec_free(&c);
}

/* A client's renegotiation (s_client's "R", TLS 1.2) is refused, as
 * OpenSSL 3 refuses it by default (each would make the server work anew
 * for nothing): a no_renegotiation warning, which s_client answers with
 * a handshake_failure alert. The connection ends with ETLS, not as a
 * cipher mismatch: the session had agreed on one. */
static void s_client_renegotiation_refused(void)
{
  tapio_loop *loop = new_loop();
  char addr[32];
  char *argv[] = { "openssl", "s_client", "-connect", addr, "-CAfile",
                   (char *)cert("ca.pem"), "-servername", "localhost",
                   "-tls1_2", NULL };
  size_t echoed = 0;
  peer cl;
  srv sv;
  rec *s = s_client_of(loop, &sv, &echoed, &cl, argv, addr);
  peer_send(&cl, "hello\n");
  WAIT_FOR(loop, s->nin == 6);
  peer_send(&cl, "R\n");
  WAIT_FOR(loop, s->lost);
  peer_wait_for(loop, &cl, "RENEGOTIATING");
  CHECK_STR(s->log, "made data:6 lost:ETLS");
  CHECK_STR(s->lost_msg, "TLS failed: sslv3 alert handshake failure");
  peer_stop(&cl);
  srv_release_and_free(&sv, loop);
}

/* ---- TLS 1.3 KeyUpdate against s_client and s_server -------------------- */

/* What openssl's -msg prints for a KeyUpdate it sends (dir ">>>") or
 * gets ("<<<"), up to its last digit, req: "1" when it asks the receiver
 * to update its keys too, "0" when not, "" for either. */
#define KEY_UPDATE(dir, req)                                                 \
  dir " TLS 1.3, Handshake [length 0005], KeyUpdate\n    18 00 00 01 0" req

/* The openssl program op sends line (given on its stdin) to tapio's
 * echoing r, and prints the echo, after *at (moved past it). op reads the
 * line alone: it took what came before (its echo came). */
static void echo_line(tapio_loop *loop, peer *op, rec *r, size_t *at,
                      const char *line)
{
  size_t n0 = r->nin, n = strlen(line);
  peer_send(op, line);
  peer_wait_from(loop, op, at, line);
  CHECK_EQ(r->nin, n0 + n);
  CHECK(memcmp(r->in + n0, line, n) == 0);
}

/* op's command line cmd ("k\n" or "K\n"), done: op printed the KeyUpdate
 * it sent. op takes a line as a command only at the start of what one
 * read of its stdin got, and drops the rest of that read: so a command
 * goes once op has read all before it, and is seen done before more. */
static void op_key_update(tapio_loop *loop, peer *op, size_t *at,
                          const char *cmd)
{
  const char *sent = cmd[0] == 'K' ? KEY_UPDATE(">>>", "1")
                                   : KEY_UPDATE(">>>", "0");
  peer_send(op, cmd);
  peer_wait_from(loop, op, at, sent);
}

/* TLS 1.3 KeyUpdate between tapio's r, which echoes, and an openssl
 * program op run with -msg (s_client or s_server; tokens with '-' never
 * match its hex or base64). op updates its keys ("k"): the echo goes
 * on, tapio reading under op's new key, and tapio sends no KeyUpdate,
 * as none was asked. op asks for ours too ("K"): tapio's KeyUpdate goes
 * before its next bytes, once. tapio asks for op's (with OpenSSL's
 * SSL_key_update on the SSL * it gives: tapio has no call of its own):
 * op's answer comes with its next bytes, which tapio reads. */
static void key_updates(tapio_loop *loop, peer *op, rec *r)
{
  size_t at = 0, mark;
  echo_line(loop, op, r, &at, "line-one\n");
  op_key_update(loop, op, &at, "k\n");
  mark = at;
  echo_line(loop, op, r, &at, "line-two\n");
  CHECK(!peer_printed_between(op, mark, at, KEY_UPDATE("<<<", "")));
  op_key_update(loop, op, &at, "K\n");
  mark = at;
  echo_line(loop, op, r, &at, "line-three\n");
  CHECK(peer_printed_between(op, mark, at, KEY_UPDATE("<<<", "0")));
  mark = at;
  echo_line(loop, op, r, &at, "line-four\n");
  CHECK(!peer_printed_between(op, mark, at, KEY_UPDATE("<<<", "")));
  CHECK(SSL_key_update(tapio_transport_get_ssl(r->t),
                       SSL_KEY_UPDATE_REQUESTED) == 1);
  CHECK_OK(tapio_transport_write(r->t, "tapio-five\n", 11));
  peer_wait_from(loop, op, &at, KEY_UPDATE("<<<", "1"));
  peer_wait_from(loop, op, &at, "tapio-five\n");
  mark = at;
  echo_line(loop, op, r, &at, "line-six\n");
  CHECK(peer_printed_between(op, mark, at, KEY_UPDATE(">>>", "0")));
  CHECK_OK(tapio_transport_close(r->t));
  WAIT_FOR(loop, r->lost);
  CHECK_EQ(r->lost_code, 0);
}

/* tapio's server and s_client: -quiet, as s_client's session print
 * (the server's certificate in base64, made anew each run) could hold a
 * line's words, and -no_ign_eof, as -quiet alone turns the commands
 * off. */
static void s_client_key_update(void)
{
  tapio_loop *loop = new_loop();
  char addr[32];
  char *argv[] = { "openssl", "s_client", "-connect", addr, "-CAfile",
                   (char *)cert("ca.pem"), "-servername", "localhost",
                   "-tls1_3", "-quiet", "-no_ign_eof", "-msg", NULL };
  size_t echoed = 0;
  peer cl;
  srv sv;
  rec *s = s_client_of(loop, &sv, &echoed, &cl, argv, addr);
  key_updates(loop, &cl, s);
  CHECK_STR(s->log, "made data:48 lost:0");
  peer_stop(&cl);
  srv_release_and_free(&sv, loop);
}

/* tapio's client and s_server. */
static void s_server_key_update(void)
{
  tapio_loop *loop = new_loop();
  char *argv[] = { "openssl", "s_server", "-accept", "127.0.0.1:0", "-cert",
                   (char *)cert("server.pem"), "-key",
                   (char *)cert("server.key"), "-naccept", "1", "-tls1_3",
                   "-msg", NULL };
  size_t echoed = 0;
  peer sv;
  rec c;
  rec_init(&c);
  c.hook = echo_hook;
  c.user = &echoed;
  s_server_with(loop, &sv, argv, &c);
  key_updates(loop, &sv, &c);
  CHECK_STR(c.log, "made data:48 lost:0");
  peer_stop(&sv);
  free_loop(loop);
  rec_free(&c);
}

/* ---- Python's ssl and asyncio --------------------------------------------- */

static void python_server(const char *mode, const char *version)
{
  tapio_loop *loop = new_loop();
  peer py;
  rec c;
  rec_init(&c);
  c.hook = end_with;
  python_peer(&py, mode, 0);
  connect_to(loop, peer_port(loop, &py), &c);
  CHECK_OK(tapio_transport_write(c.t, "ping\n", 5));
  WAIT_FOR(loop, c.nin == 5);
  peer_wait_for(loop, &py, "GOT ping");
  CHECK_STR(tls_info(c.t, TAPIO_TLS_INFO_VERSION), version);
  CHECK_OK(tapio_transport_close(c.t));
  WAIT_FOR(loop, c.lost);
  peer_wait_for(loop, &py, "LOST None"); /* a clean close for asyncio */
  CHECK_STR(c.log, "made data:5 lost:0");
  CHECK_EQ(c.eof_ret, TAPIO_TLS_END_CLEAN);
  peer_stop(&py);
  free_loop(loop);
  rec_free(&c);
}

static void python_server_tls13(void)
{
  python_server("echo-server", "TLSv1.3");
}

static void python_server_tls12(void)
{
  python_server("echo-server-tls12", "TLSv1.2");
}

/* asyncio's client against tapio's server, to the end of its close. */
static void python_client(void)
{
  tapio_loop *loop = new_loop();
  size_t echoed = 0;
  peer py;
  srv sv;
  rec *s;
  tls_srv_start(&sv, loop, server_ctx("server"));
  sv.tmpl.hook = echo_hook;
  sv.tmpl.user = &echoed;
  python_peer(&py, "echo-client", sv.port);
  s = srv_wait_conn(&sv, 0);
  peer_wait_for(loop, &py, "GOT hello from python");
  peer_wait_for(loop, &py, "CLOSED");
  WAIT_FOR(loop, s->lost);
  CHECK_STR(s->log, "made data:18 eof lost:0");
  peer_stop(&py);
  srv_release_and_free(&sv, loop);
}

/* A client certificate, as Python's server sees it. */
static void python_server_wants_cert(void)
{
  tapio_loop *loop = new_loop();
  tapio_tls_context *cc = client_ctx();
  peer py;
  rec c;
  rec_init(&c);
  CHECK_OK(tapio_tls_context_load_cert_chain(cc, cert("client.pem"),
                                             cert("client.key"), NULL));
  python_peer(&py, "cert-server", 0);
  CHECK_OK(tls_connect(loop, peer_port(loop, &py), &c, cc, "localhost"));
  peer_wait_for(loop, &py, "PEER tapio client");
  CHECK_OK(tapio_transport_close(c.t));
  WAIT_FOR(loop, c.lost);
  peer_stop(&py);
  free_loop(loop);
  rec_free(&c);
}

/* STARTTLS against asyncio's start_tls, tapio as the client. */
static void starttls_hook(rec *r, rec_event ev)
{
  started *st = r->user;
  if (ev == EV_DATA && r->nin == 3 && !st->loop) {
    CHECK(memcmp(r->in, "GO\n", 3) == 0);
    start_tls(r, st, client_ctx(), "localhost", NULL, 0);
    CHECK_OK(tapio_transport_write(r->t, "hello over tls\n", 15));
  }
}

static void python_starttls_server(void)
{
  tapio_loop *loop = new_loop();
  started st = { 0 };
  peer py;
  rec c;
  rec_init(&c);
  c.hook = starttls_hook;
  c.user = &st;
  python_peer(&py, "starttls-server", 0);
  CHECK_OK(connect_tcp(loop, "127.0.0.1", peer_port(loop, &py), &c, NULL));
  CHECK_OK(tapio_transport_write(c.t, "STARTTLS\n", 9));
  WAIT_FOR(loop, st.done);
  CHECK_OK(st.status);
  peer_wait_for(loop, &py, "GOT hello over tls");
  WAIT_FOR(loop, c.nin == 3 + 15);
  CHECK(memcmp(c.in + 3, "hello over tls\n", 15) == 0);
  CHECK_OK(tapio_transport_close(c.t));
  WAIT_FOR(loop, c.lost);
  CHECK_STR(c.log, "made data:18 lost:0");
  peer_stop(&py);
  free_loop(loop);
  rec_free(&c);
}

/* asyncio's start_tls client writes as soon as its handshake is done; the
 * tapio server upgrades on the line and echoes. */
typedef struct upgrade {
  started st;
  size_t echoed;
} upgrade;

static void upgrade_hook(rec *r, rec_event ev)
{
  upgrade *u = r->user;
  if (ev != EV_DATA)
    return;
  if (!u->st.loop && r->nin >= 9) {
    CHECK(memcmp(r->in, "STARTTLS\n", 9) == 0);
    CHECK_OK(tapio_transport_write(r->t, "GO\n", 3));
    start_tls(r, &u->st, server_ctx("server"), NULL, r->in + 9, r->nin - 9);
    r->nin = u->echoed = 9;
  } else if (u->st.done && r->nin > u->echoed) {
    CHECK_OK(tapio_transport_write(r->t, r->in + u->echoed,
                                   r->nin - u->echoed));
    u->echoed = r->nin;
  }
}

/* peer.py's client in mode against a tapio server that upgrades on
 * "STARTTLS" and echoes: the client sends line once upgraded and prints
 * its echo ("GOT" and the line), then `last` (NULL: nothing more). */
static void python_upgrading_client(const char *mode, const char *line,
                                    const char *last)
{
  tapio_loop *loop = new_loop();
  size_t n = strlen(line);
  char got[128];
  upgrade u;
  peer py;
  srv sv;
  rec *s;
  memset(&u, 0, sizeof u);
  srv_start(&sv, loop);
  sv.tmpl.hook = upgrade_hook;
  sv.tmpl.user = &u;
  python_peer(&py, mode, sv.port);
  s = srv_wait_conn(&sv, 0);
  snprintf(got, sizeof got, "GOT %.*s", (int)n - 1, line);
  peer_wait_for(loop, &py, got);
  if (last)
    peer_wait_for(loop, &py, last);
  WAIT_FOR(loop, s->lost);
  CHECK_OK(u.st.status);
  CHECK_EQ(s->nin, 9 + n);
  CHECK(memcmp(s->in + 9, line, n) == 0);
  peer_stop(&py);
  srv_release_and_free(&sv, loop);
}

static void python_starttls_client(void)
{
  python_upgrading_client("starttls-client", "hello after starttls\n",
                          "CLOSED");
}

/* S20 (cpython's test_remote_shutdown_receives_trailing_data): the peer
 * sends its close_notify while we hold a backlog of 4 MiB and more for
 * it (it stopped reading): eof_received, then (TLS has no half-close)
 * our close, which still sends the whole backlog before our
 * close_notify; the peer, reading on after its close_notify, gets every
 * byte, then a clean end. */
static void python_notify_first(void)
{
  enum { MORE = 4 << 20 };
  tapio_loop *loop = new_loop();
  size_t offset = 0, total;
  char *more = malloc(MORE), want[64];
  peer py;
  rec c;
  rec_init(&c);
  c.hook = end_with;
  python_peer(&py, "notify-first-server", 0);
  connect_to(loop, peer_port(loop, &py), &c);
  CHECK_OK(tapio_transport_write(c.t, "ping\n", 5));
  WAIT_FOR(loop, c.nin == 5);
  total = fill_until_paused(&c, &offset);
  pattern_fill(more, MORE, offset);
  CHECK_OK(tapio_transport_write(c.t, more, MORE));
  total += MORE;
  CHECK(tapio_transport_get_write_buffer_size(c.t) > MORE);
  peer_send(&py, "shut\n");
  WAIT_FOR(loop, c.lost);
  peer_wait_for(loop, &py, "END ");
  snprintf(want, sizeof want, "READ %zu\nEND clean\n", total);
  if (!strstr(py.got, want))
    FAIL("the peer printed:\n%s", py.got);
  CHECK_STR(c.log, "made data:5 pause eof resume lost:0");
  CHECK_EQ(c.eof_ret, TAPIO_TLS_END_CLEAN);
  peer_stop(&py);
  free_loop(loop);
  rec_free(&c);
  free(more);
}

/* uvloop's test_first_data_after_wakeup: a start_tls server gets the
 * client's first bytes in the same segment as the client's last
 * handshake flight (peer.py sends them in one send), and echoes them. */
static void python_first_data_with_finished(void)
{
  python_upgrading_client("starttls-first-data-client", "hello\n", NULL);
}

/* 8 MiB for a peer that never reads: most of it stays in the buffer. */
static char big[8 << 20];

/* A TLS client of spec/tls/peer.py's silent-server (it never reads after
 * its handshake), ssl_shutdown_timeout 0.3 s. */
static tapio_loop *silent_client(peer *py, rec *c)
{
  tapio_loop *loop = new_loop();
  tapio_options *o = tls_client_options(loop);
  rec_init(c);
  c->hook = end_with;
  python_peer(py, "silent-server", 0);
  CHECK_OK(tapio_options_set_double(o, "ssl_shutdown_timeout", 0.3));
  CHECK_OK(tls_connect_opts(loop, peer_port(loop, py), c, o));
  tapio_options_free(o);
  peer_wait_for(loop, py, "HANDSHAKE TLSv1.3");
  return loop;
}

/* The end of a close (started after t0) that the silent peer never lets
 * finish: ssl_shutdown_timeout's 0.3 s, then ETIMEDOUT; log is c's. */
static void ends_timed_out(tapio_loop *loop, peer *py, rec *c, double t0,
                           const char *log)
{
  WAIT_FOR(loop, c->lost);
  CHECK(now_sec() - t0 >= 0.29);
  CHECK_STR(c->log, log);
  CHECK(strstr(c->lost_msg, "TLS shutdown timed out") != NULL);
  CHECK_EQ(c->eof_ret, TAPIO_TLS_END_TIMEOUT);
  peer_stop(py);
  free_loop(loop);
  rec_free(c);
}

/* A peer that never answers close_notify (a plain ssl socket that stops
 * reading): the close ends after ssl_shutdown_timeout all the same. */
static void python_never_answers(void)
{
  peer py;
  rec c;
  tapio_loop *loop = silent_client(&py, &c);
  double t0 = now_sec();
  CHECK_OK(tapio_transport_close(c.t));
  ends_timed_out(loop, &py, &c, t0, "made lost:ETIMEDOUT");
}

/* A peer that stops reading while we still have bytes to send: the close
 * waits for the flush, and ssl_shutdown_timeout, counted from close(),
 * ends that wait too (asyncio starts it at close; a timer started only
 * once the buffer drained would never start). The log's pause with no
 * resume shows the buffer never drained: drained, the close would time
 * out all the same, waiting for close_notify, so the 8 MiB matter. */
static void python_never_reads(void)
{
  peer py;
  rec c;
  tapio_loop *loop = silent_client(&py, &c);
  double t0;
  CHECK_OK(tapio_transport_write(c.t, big, sizeof big));
  CHECK(tapio_transport_get_write_buffer_size(c.t) > 0);
  t0 = now_sec();
  CHECK_OK(tapio_transport_close(c.t));
  ends_timed_out(loop, &py, &c, t0, "made pause lost:ETIMEDOUT");
}

/* The same with the bytes written during start_tls's handshake (they go
 * after it) and the close once it is done. (A close during it aborts:
 * test_tls_io's close_during_starttls_with_writes.) */
static void python_never_reads_after_starttls(void)
{
  tapio_loop *loop = new_loop();
  tapio_options *o = new_options(loop);
  started st;
  peer py;
  rec c;
  double t0;
  rec_init(&c);
  c.hook = end_with;
  python_peer(&py, "silent-server", 0); /* its handshake comes first */
  CHECK_OK(connect_tcp(loop, "127.0.0.1", peer_port(loop, &py), &c, NULL));
  CHECK_OK(tapio_options_set_str(o, "server_hostname", "localhost"));
  CHECK_OK(tapio_options_set_double(o, "ssl_shutdown_timeout", 0.3));
  start_tls_opts(&c, &st, client_ctx(), o, NULL, 0);
  tapio_options_free(o);
  CHECK_OK(tapio_transport_write(c.t, big, sizeof big));
  WAIT_FOR(loop, st.done);
  CHECK_OK(st.status);
  CHECK(tapio_transport_get_write_buffer_size(c.t) > 0);
  t0 = now_sec();
  CHECK_OK(tapio_transport_close(c.t));
  ends_timed_out(loop, &py, &c, t0, "made pause lost:ETIMEDOUT");
}

TEST_MAIN_WARM(s_server_tls13, TEST(s_server_tls13), TEST(s_server_tls12),
               TEST(s_client_to_tapio), TEST(s_server_renegotiates),
               TEST(s_client_renegotiation_refused),
               TEST(s_client_key_update), TEST(s_server_key_update),
               TEST(python_server_tls13),
               TEST(python_server_tls12), TEST(python_client),
               TEST(python_server_wants_cert), TEST(python_starttls_server),
               TEST(python_starttls_client), TEST(python_notify_first),
               TEST(python_first_data_with_finished),
               TEST(python_never_answers), TEST(python_never_reads),
               TEST(python_never_reads_after_starttls))
