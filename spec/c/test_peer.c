/* What a peer does to us: resets (SO_LINGER 0), closes while we write
 * (EPIPE without SIGPIPE), and half-closes in either direction; the
 * addresses a transport still knows after a reset. */
#include "test.h"

static int is_reset_or_pipe(int code)
{
  return code == TAPIO_ECONNRESET || code == TAPIO_EPIPE;
}

/* A reset while we only read: connection_lost gets ECONNRESET (Linux
 * reports the RST as an error, not as an EOF). */
static void peer_reset_while_idle(void)
{
  tapio_loop *loop = new_loop();
  rec r;
  int peer;
  rec_init(&r);
  peer = pair_raw(loop, &r);
  raw_reset(peer);
  WAIT_FOR(loop, r.lost);
  CHECK_STR(r.log, "made lost:ECONNRESET");
  CHECK(r.lost_msg[0] != '\0');
  free_loop(loop);
  rec_free(&r);
}

/* A reset while tapio has output buffered: an error arrives, whichever of
 * the two the kernel reports first. */
static void peer_reset_while_writing(void)
{
  tapio_loop *loop = new_loop();
  rec r;
  size_t offset = 0;
  int peer;
  rec_init(&r);
  peer = pair_raw(loop, &r);
  CHECK_OK(tapio_transport_set_write_buffer_limits(r.t, 1 << 30, -1));
  fill_until_buffered(r.t, &offset);
  raw_reset(peer);
  WAIT_FOR(loop, r.lost);
  if (!is_reset_or_pipe(r.lost_code))
    FAIL("lost with %s", r.log);
  CHECK(strncmp(r.log, "made lost:E", 11) == 0);
  free_loop(loop);
  rec_free(&r);
}

/* The peer closed; we keep writing (eof_received kept us open). Its kernel
 * answers with a RST; the next write fails. */
static void write_into_closed_peer(tapio_loop *loop, rec *r)
{
  int peer = pair_raw(loop, r);
  close(peer);
  WAIT_FOR(loop, r->eof);
  CHECK_OK(tapio_transport_write(r->t, "first", 5));
  /* the RST is back once our socket reports the error */
  CHECK(raw_wait(NULL, tapio_transport_get_fd(r->t), POLLERR | POLLHUP));
}

static void write_to_closed_peer_fails(void)
{
  tapio_loop *loop = new_loop();
  rec r;
  int i;
  rec_init(&r);
  r.eof_ret = 1;
  write_into_closed_peer(loop, &r);
  for (i = 0; i < 3 && !tapio_transport_is_closing(r.t); i++)
    tapio_transport_write(r.t, "again", 5);
  WAIT_FOR(loop, r.lost);
  if (!is_reset_or_pipe(r.lost_code))
    FAIL("lost with %s", r.log);
  CHECK(strncmp(r.log, "made eof lost:E", 15) == 0);
  free_loop(loop);
  rec_free(&r);
}

/* Once the socket's pending error has been taken (here by the test), a
 * send fails with EPIPE, which raises SIGPIPE unless the core sends with
 * MSG_NOSIGNAL. The test runs with SIGPIPE's default action: death. */
static void write_epipe_no_sigpipe(void)
{
  tapio_loop *loop = new_loop();
  rec r;
  int err = 0;
  socklen_t len = sizeof err;
  rec_init(&r);
  r.eof_ret = 1;
  write_into_closed_peer(loop, &r);
  CHECK(getsockopt(tapio_transport_get_fd(r.t), SOL_SOCKET, SO_ERROR, &err,
                   &len) == 0);
  /* EPIPE when the RST found us at CLOSE_WAIT (after the peer's FIN) */
  CHECK(err == ECONNRESET || err == EPIPE);
  tapio_transport_write(r.t, "again", 5);
  WAIT_FOR(loop, r.lost);
  CHECK_STR(r.log, "made eof lost:EPIPE");
  free_loop(loop);
  rec_free(&r);
}

/* We write_eof first; the peer reads to EOF, answers and closes. */
static void half_close_we_shut_first(void)
{
  tapio_loop *loop = new_loop();
  rec r;
  char buf[16];
  size_t n;
  int peer;
  rec_init(&r);
  peer = pair_raw(loop, &r);
  CHECK_OK(tapio_transport_write(r.t, "request", 7));
  CHECK_OK(tapio_transport_write_eof(r.t));
  CHECK_EQ(raw_recv_until_eof(loop, peer, buf, sizeof buf, &n), 0);
  CHECK_EQ(n, 7);
  CHECK(memcmp(buf, "request", 7) == 0);
  raw_send_str(loop, peer, "reply");
  close(peer);
  WAIT_FOR(loop, r.lost);
  CHECK_STR(r.log, "made data:5 eof lost:0");
  CHECK(memcmp(r.in, "reply", 5) == 0);
  free_loop(loop);
  rec_free(&r);
}

/* (The peer shutting down first, then our answer, is seq_eof_nonzero_half_open
 * in test_state.c.) */

/* Both ends tapio: the client half-closes, the server answers after its
 * eof_received and closes. */
static void half_close_between_tapio_ends(void)
{
  tapio_loop *loop = new_loop();
  srv sv;
  rec c, *s;
  rec_init(&c);
  srv_start(&sv, loop);
  sv.tmpl.eof_ret = 1;
  CHECK_OK(connect_tcp(loop, "127.0.0.1", sv.port, &c, NULL));
  s = srv_wait_conn(&sv, 0);
  CHECK_OK(tapio_transport_write(c.t, "request", 7));
  CHECK_OK(tapio_transport_write_eof(c.t));
  WAIT_FOR(loop, s->eof);
  CHECK_OK(tapio_transport_write(s->t, "reply", 5));
  CHECK_OK(tapio_transport_close(s->t));
  WAIT_FOR(loop, c.lost && s->lost);
  CHECK_STR(s->log, "made data:7 eof lost:0");
  CHECK_STR(c.log, "made data:5 eof lost:0");
  srv_release_and_free(&sv, loop);
  rec_free(&c);
}

/* ---- Addresses after a reset ------------------------------------------ */

/* What get_peername and get_sockname answer inside connection_lost. */
typedef struct names {
  int peer_rc, sock_rc, peer_port, sock_port;
  char peer[64], sock[64];
} names;

static void names_in_lost(rec *r, rec_event ev)
{
  names *n = r->user;
  if (ev != EV_LOST)
    return;
  n->peer_rc = tapio_transport_get_peername(r->t, n->peer, sizeof n->peer,
                                            &n->peer_port, NULL);
  n->sock_rc = tapio_transport_get_sockname(r->t, n->sock, sizeof n->sock,
                                            &n->sock_port, NULL);
}

/* After the reset, inside connection_lost, the transport still answers
 * with the addresses connection_made saw (asyncio keeps them): peer_port
 * is the far end's port, sock_port ours. */
static void check_names_after_reset(tapio_loop *loop, rec *r, int raw,
                                    int peer_port, int sock_port)
{
  names *n = r->user;
  raw_reset(raw);
  WAIT_FOR(loop, r->lost);
  CHECK_STR(r->log, "made lost:ECONNRESET");
  CHECK_OK(n->peer_rc);
  CHECK_STR(n->peer, "127.0.0.1");
  CHECK_EQ(n->peer_port, peer_port);
  CHECK_OK(n->sock_rc);
  CHECK_STR(n->sock, "127.0.0.1");
  CHECK_EQ(n->sock_port, sock_port);
}

static void peername_kept_after_reset_client(void)
{
  tapio_loop *loop = new_loop();
  names n;
  rec r;
  int port, lfd = raw_listen(AF_INET, &port), peer;
  rec_init(&r);
  r.hook = names_in_lost;
  r.user = &n;
  CHECK_OK(connect_tcp(loop, "127.0.0.1", port, &r, NULL));
  peer = raw_accept(loop, lfd);
  close(lfd);
  check_names_after_reset(loop, &r, peer, port, raw_peer_port(peer));
  free_loop(loop);
  rec_free(&r);
}

static void peername_kept_after_reset_server(void)
{
  static const char *const hosts[] = { "127.0.0.1" };
  tapio_loop *loop = new_loop();
  names n;
  srv sv;
  int raw;
  srv_init(&sv, loop);
  sv.tmpl.hook = names_in_lost;
  sv.tmpl.user = &n;
  CHECK_OK(srv_start_hosts(&sv, hosts, 1, 0, NULL));
  raw = raw_connect(AF_INET, "127.0.0.1", sv.port);
  CHECK(raw >= 0);
  check_names_after_reset(loop, srv_wait_conn(&sv, 0), raw, raw_port(raw),
                          sv.port);
  srv_release_and_free(&sv, loop);
}

/* A socket handed over (connect_accepted_socket) is asked once, when it
 * is handed over. */
static void peername_kept_after_reset_accepted(void)
{
  tapio_loop *loop = new_loop();
  names n;
  rec r;
  conn_wait w = { 0 };
  int port, lfd = raw_listen(AF_INET, &port), raw, fd;
  rec_init(&r);
  r.hook = names_in_lost;
  r.user = &n;
  raw = raw_connect(AF_INET, "127.0.0.1", port);
  CHECK(raw >= 0);
  fd = raw_accept(NULL, lfd);
  close(lfd);
  w.r = &r;
  CHECK_OK(tapio_connect_accepted_socket(loop, fd, &rec_proto, &r, NULL,
                                         on_connected, &w));
  CHECK_OK(connect_wait(loop, &w));
  check_names_after_reset(loop, &r, raw, raw_port(raw), port);
  free_loop(loop);
  rec_free(&r);
}

TEST_MAIN(
  TEST(peer_reset_while_idle),
  TEST(peer_reset_while_writing),
  TEST(write_to_closed_peer_fails),
  TEST(write_epipe_no_sigpipe),
  TEST(half_close_we_shut_first),
  TEST(half_close_between_tapio_ends),
  TEST(peername_kept_after_reset_client),
  TEST(peername_kept_after_reset_server),
  TEST(peername_kept_after_reset_accepted)
)
