/* What a peer does to us: resets (SO_LINGER 0), closes while we write
 * (EPIPE without SIGPIPE), and half-closes in either direction. */
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
  tapio_server_release(sv.s);
  free_loop(loop);
  srv_free(&sv);
  rec_free(&c);
}

TEST_MAIN(
  TEST(peer_reset_while_idle),
  TEST(peer_reset_while_writing),
  TEST(write_to_closed_peer_fails),
  TEST(write_epipe_no_sigpipe),
  TEST(half_close_we_shut_first),
  TEST(half_close_between_tapio_ends)
)
