/* The protocol state machine as callback sequences (made, data*, eof,
 * lost), eof_received's return value, and close/abort from inside every
 * callback: the sequence always ends with exactly one connection_lost and
 * nothing after it (ASan and valgrind would see a use after free). */
#include "test.h"

static void finish(tapio_loop *loop, rec *r, int peer)
{
  spin(loop, 3); /* nothing may follow connection_lost */
  end_pair(loop, r, peer);
}

/* ---- Sequences ----------------------------------------------------------- */

static void seq_data_eof_lost(void)
{
  tapio_loop *loop = new_loop();
  rec r;
  char buf[8];
  size_t n;
  int peer;
  rec_init(&r);
  peer = pair_raw(loop, &r);
  raw_send_str(loop, peer, "hello");
  CHECK(shutdown(peer, SHUT_WR) == 0);
  WAIT_FOR(loop, r.lost);
  CHECK_STR(r.log, "made data:5 eof lost:0");
  CHECK(memcmp(r.in, "hello", 5) == 0);
  /* eof_received returned 0: tapio closed its side as well */
  CHECK_EQ(raw_recv_until_eof(loop, peer, buf, sizeof buf, &n), 0);
  CHECK_EQ(n, 0);
  finish(loop, &r, peer);
}

static void seq_eof_without_data(void)
{
  tapio_loop *loop = new_loop();
  rec r;
  int peer;
  rec_init(&r);
  peer = pair_raw(loop, &r);
  close(peer);
  WAIT_FOR(loop, r.lost);
  CHECK_STR(r.log, "made eof lost:0");
  finish(loop, &r, -1);
}

/* eof_received returning nonzero keeps the transport half-open: we can
 * still write, the peer reads it, and only our close ends it. */
static void seq_eof_nonzero_half_open(void)
{
  tapio_loop *loop = new_loop();
  rec r;
  char buf[16];
  size_t n;
  int peer;
  rec_init(&r);
  r.eof_ret = 1;
  peer = pair_raw(loop, &r);
  raw_send_str(loop, peer, "question");
  CHECK(shutdown(peer, SHUT_WR) == 0);
  WAIT_FOR(loop, r.eof);
  spin(loop, 3);
  CHECK_STR(r.log, "made data:8 eof");
  CHECK_EQ(tapio_transport_is_closing(r.t), 0);
  CHECK_EQ(tapio_transport_is_reading(r.t), 0); /* at EOF */
  CHECK_OK(tapio_transport_write(r.t, "answer", 6));
  raw_recv_n(loop, peer, buf, 6);
  CHECK(memcmp(buf, "answer", 6) == 0);
  CHECK_OK(tapio_transport_close(r.t));
  CHECK_EQ(raw_recv_until_eof(loop, peer, buf, sizeof buf, &n), 0);
  CHECK_EQ(n, 0);
  WAIT_FOR(loop, r.lost);
  CHECK_STR(r.log, "made data:8 eof lost:0");
  finish(loop, &r, peer);
}

/* A NULL eof_received is the reference's default: close. */
static void seq_null_eof_received_closes(void)
{
  tapio_loop *loop = new_loop();
  rec r;
  conn_wait w = { 0 };
  int port, lfd = raw_listen(AF_INET, &port), peer;
  rec_init(&r);
  w.r = &r;
  CHECK_OK(tapio_create_connection(loop, "127.0.0.1", port, &rec_proto_noeof,
                                   &r, NULL, on_connected, &w));
  CHECK_OK(connect_wait(loop, &w));
  peer = raw_accept(loop, lfd);
  close(lfd);
  raw_send_str(loop, peer, "bye");
  CHECK(shutdown(peer, SHUT_WR) == 0);
  WAIT_FOR(loop, r.lost);
  CHECK_STR(r.log, "made data:3 lost:0");
  finish(loop, &r, peer);
}

/* eof_received returning 0 closes, and a close flushes: what was
 * buffered still reaches the peer (which only shut its sending side). */
static void seq_eof_close_flushes(void)
{
  tapio_loop *loop = new_loop();
  rec r;
  size_t offset = 0, got;
  int peer, status = 1;
  rec_init(&r);
  peer = pair_raw(loop, &r);
  CHECK_OK(tapio_transport_set_write_buffer_limits(r.t, 1 << 30, -1));
  fill_until_buffered(r.t, &offset);
  CHECK(shutdown(peer, SHUT_WR) == 0);
  WAIT_FOR(loop, r.eof);
  CHECK_EQ(tapio_transport_is_closing(r.t), 1);
  CHECK_EQ(r.lost, 0);
  got = raw_drain_pattern(loop, peer, &status);
  CHECK_EQ(status, 0);
  CHECK_EQ(got, offset);
  WAIT_FOR(loop, r.lost);
  CHECK_STR(r.log, "made eof lost:0");
  finish(loop, &r, peer);
}

/* Much data in many chunks is still one run of data_received calls, in
 * order, before eof. */
static void seq_many_chunks_in_order(void)
{
  tapio_loop *loop = new_loop();
  static char big[1 << 20];
  rec r;
  int peer;
  rec_init(&r);
  peer = pair_raw(loop, &r);
  pattern_fill(big, sizeof big, 0);
  raw_send_all(loop, peer, big, sizeof big);
  close(peer);
  WAIT_FOR(loop, r.lost);
  CHECK_STR(r.log, "made data:1048576 eof lost:0");
  CHECK_EQ(pattern_check(r.in, r.nin, 0), -1);
  finish(loop, &r, -1);
}

/* ---- close/abort inside a callback --------------------------------------- */

/* Reads what the peer gets until EOF: 0 or a reset, n bytes. */
static size_t peer_sees_end(tapio_loop *loop, int peer)
{
  int status = 1;
  size_t got = raw_drain_pattern(loop, peer, &status);
  CHECK(status == 0 || status == -ECONNRESET);
  return got;
}

static void act_in_made(rec_action act)
{
  tapio_loop *loop = new_loop();
  rec r;
  int peer;
  rec_init(&r);
  r.act[EV_MADE] = act;
  peer = pair_raw(loop, &r);
  WAIT_FOR(loop, r.lost);
  CHECK_STR(r.log, "made lost:0");
  CHECK_EQ(peer_sees_end(loop, peer), 0);
  finish(loop, &r, peer);
}

static void close_in_made(void) { act_in_made(ACT_CLOSE); }
static void abort_in_made(void) { act_in_made(ACT_ABORT); }

static void act_in_data(rec_action act)
{
  tapio_loop *loop = new_loop();
  rec r;
  int peer;
  rec_init(&r);
  r.act[EV_DATA] = act;
  peer = pair_raw(loop, &r);
  raw_send_str(loop, peer, "hello");
  WAIT_FOR(loop, r.lost);
  CHECK_STR(r.log, "made data:5 lost:0");
  peer_sees_end(loop, peer);
  finish(loop, &r, peer);
}

static void close_in_data(void) { act_in_data(ACT_CLOSE); }
static void abort_in_data(void) { act_in_data(ACT_ABORT); }
static void close_twice_in_data(void) { act_in_data(ACT_CLOSE_TWICE); }
static void abort_twice_in_data(void) { act_in_data(ACT_ABORT_TWICE); }
static void close_then_abort_in_data(void) { act_in_data(ACT_CLOSE_ABORT); }
static void abort_then_close_in_data(void) { act_in_data(ACT_ABORT_CLOSE); }

/* eof_received closes or aborts and returns 1 (keep open): the close
 * wins. */
static void act_in_eof(rec_action act)
{
  tapio_loop *loop = new_loop();
  rec r;
  int peer;
  rec_init(&r);
  r.act[EV_EOF] = act;
  r.eof_ret = 1;
  peer = pair_raw(loop, &r);
  raw_send_str(loop, peer, "hello");
  CHECK(shutdown(peer, SHUT_WR) == 0);
  WAIT_FOR(loop, r.lost);
  CHECK_STR(r.log, "made data:5 eof lost:0");
  CHECK_EQ(peer_sees_end(loop, peer), 0);
  finish(loop, &r, peer);
}

static void close_in_eof(void) { act_in_eof(ACT_CLOSE); }
static void abort_in_eof(void) { act_in_eof(ACT_ABORT); }

/* close or abort inside connection_lost: harmless. */
static void act_in_lost(rec_action act)
{
  tapio_loop *loop = new_loop();
  rec r;
  int peer;
  rec_init(&r);
  r.act[EV_LOST] = act;
  peer = pair_raw(loop, &r);
  raw_send_str(loop, peer, "hello");
  close(peer);
  WAIT_FOR(loop, r.lost);
  CHECK_STR(r.log, "made data:5 eof lost:0");
  finish(loop, &r, -1);
}

static void close_in_lost(void) { act_in_lost(ACT_CLOSE_TWICE); }
static void abort_in_lost(void) { act_in_lost(ACT_ABORT_CLOSE); }

/* pause_writing comes from inside write: high 0 pauses as soon as
 * anything is buffered. */
static void act_in_pause(rec_action act)
{
  tapio_loop *loop = new_loop();
  rec r;
  size_t offset = 0, got;
  int peer;
  rec_init(&r);
  r.act[EV_PAUSE] = act;
  peer = pair_raw(loop, &r);
  CHECK_OK(tapio_transport_set_write_buffer_limits(r.t, 0, 0));
  fill_until_buffered(r.t, &offset);
  CHECK_EQ(tapio_transport_is_closing(r.t), 1);
  got = peer_sees_end(loop, peer);
  WAIT_FOR(loop, r.lost);
  if (act == ACT_CLOSE) {
    CHECK_EQ(got, offset); /* close still flushes */
    /* asyncio also reports the drain of a closing transport */
    if (strcmp(r.log, "made pause resume lost:0") != 0)
      CHECK_STR(r.log, "made pause lost:0");
  } else {
    CHECK(got < offset);
    CHECK_STR(r.log, "made pause lost:0");
  }
  finish(loop, &r, peer);
}

static void close_in_pause_writing(void) { act_in_pause(ACT_CLOSE); }
static void abort_in_pause_writing(void) { act_in_pause(ACT_ABORT); }

static void act_in_resume(rec_action act)
{
  tapio_loop *loop = new_loop();
  rec r;
  size_t offset = 0;
  int peer;
  rec_init(&r);
  r.act[EV_RESUME] = act;
  peer = pair_raw(loop, &r);
  CHECK_OK(tapio_transport_set_write_buffer_limits(r.t, 0, 0));
  fill_until_buffered(r.t, &offset);
  CHECK_STR(r.log, "made pause");
  /* resume comes once the buffer is empty: nothing is left to drop */
  CHECK_EQ(peer_sees_end(loop, peer), offset);
  WAIT_FOR(loop, r.lost);
  CHECK_STR(r.log, "made pause resume lost:0");
  finish(loop, &r, peer);
}

static void close_in_resume_writing(void) { act_in_resume(ACT_CLOSE); }
static void abort_in_resume_writing(void) { act_in_resume(ACT_ABORT); }

/* BufferedProtocol callbacks. Closing inside get_buffer may or may not
 * let that one read complete (asyncio's does); either way it ends there. */
static void act_in_buffered(rec_event ev, rec_action act)
{
  tapio_loop *loop = new_loop();
  char mem[64];
  rec r;
  conn_wait w = { 0 };
  int port, lfd = raw_listen(AF_INET, &port), peer;
  rec_init(&r);
  r.buf = mem;
  r.buflen = sizeof mem;
  r.act[ev] = act;
  w.r = &r;
  CHECK_OK(tapio_create_connection(loop, "127.0.0.1", port, &rec_bproto, &r,
                                   NULL, on_connected, &w));
  CHECK_OK(connect_wait(loop, &w));
  peer = raw_accept(loop, lfd);
  close(lfd);
  raw_send_str(loop, peer, "hello");
  WAIT_FOR(loop, r.lost);
  if (ev == EV_BUFUPD || strcmp(r.log, "made lost:0") != 0)
    CHECK_STR(r.log, "made buf:5 lost:0");
  CHECK_EQ(r.ngetbuf, 1);
  peer_sees_end(loop, peer);
  finish(loop, &r, peer);
}

static void close_in_get_buffer(void) { act_in_buffered(EV_GETBUF, ACT_CLOSE); }
static void abort_in_get_buffer(void) { act_in_buffered(EV_GETBUF, ACT_ABORT); }
static void close_in_buffer_updated(void)
{
  act_in_buffered(EV_BUFUPD, ACT_CLOSE);
}
static void abort_in_buffer_updated(void)
{
  act_in_buffered(EV_BUFUPD, ACT_ABORT);
}

/* With a buffer smaller than what is waiting, closing inside the first
 * buffer_updated ends reading there: no further get_buffer. */
static void close_in_buffer_updated_stops_reading(void)
{
  tapio_loop *loop = new_loop();
  char mem[7];
  rec r;
  conn_wait w = { 0 };
  int port, lfd = raw_listen(AF_INET, &port), peer;
  rec_init(&r);
  r.buf = mem;
  r.buflen = sizeof mem;
  r.act[EV_BUFUPD] = ACT_CLOSE;
  w.r = &r;
  CHECK_OK(tapio_create_connection(loop, "127.0.0.1", port, &rec_bproto, &r,
                                   NULL, on_connected, &w));
  CHECK_OK(connect_wait(loop, &w));
  peer = raw_accept(loop, lfd);
  close(lfd);
  raw_send_str(loop, peer, "0123456789abcdefghij");
  WAIT_FOR(loop, r.lost);
  CHECK_STR(r.log, "made buf:7 lost:0");
  CHECK_EQ(r.ngetbuf, 1);
  finish(loop, &r, peer);
}

/* The server side too: a connection closed inside connection_made. */
static void close_in_made_server_side(void)
{
  tapio_loop *loop = new_loop();
  srv sv;
  rec c;
  rec_init(&c);
  srv_start(&sv, loop);
  sv.tmpl.act[EV_MADE] = ACT_CLOSE;
  CHECK_OK(connect_tcp(loop, "127.0.0.1", sv.port, &c, NULL));
  WAIT_FOR(loop, sv.n == 1 && sv.conns[0]->lost);
  CHECK_STR(sv.conns[0]->log, "made lost:0");
  WAIT_FOR(loop, c.lost);
  CHECK_STR(c.log, "made eof lost:0");
  WAIT_FOR(loop, tapio_server_client_count(sv.s) == 0);
  tapio_server_release(sv.s);
  finish(loop, &c, -1);
  srv_free(&sv);
}

TEST_MAIN(
  TEST(seq_data_eof_lost),
  TEST(seq_eof_without_data),
  TEST(seq_eof_nonzero_half_open),
  TEST(seq_null_eof_received_closes),
  TEST(seq_eof_close_flushes),
  TEST(seq_many_chunks_in_order),
  TEST(close_in_made),
  TEST(abort_in_made),
  TEST(close_in_data),
  TEST(abort_in_data),
  TEST(close_twice_in_data),
  TEST(abort_twice_in_data),
  TEST(close_then_abort_in_data),
  TEST(abort_then_close_in_data),
  TEST(close_in_eof),
  TEST(abort_in_eof),
  TEST(close_in_lost),
  TEST(abort_in_lost),
  TEST(close_in_pause_writing),
  TEST(abort_in_pause_writing),
  TEST(close_in_resume_writing),
  TEST(abort_in_resume_writing),
  TEST(close_in_get_buffer),
  TEST(abort_in_get_buffer),
  TEST(close_in_buffer_updated),
  TEST(abort_in_buffer_updated),
  TEST(close_in_buffer_updated_stops_reading),
  TEST(close_in_made_server_side)
)
