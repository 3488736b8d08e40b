/* Ended handles: a retained transport past connection_lost is a closed
 * shell (every call answers as on a closed transport, its descriptor is
 * closed, its memory stays until the last release or the loop's end); a
 * closed server and a run or cancelled call still answer until given
 * back. Under ASan and valgrind: no call reads freed memory. */
#include "test.h"

static void check_shell(tapio_transport *t, tapio_loop *loop, rec *r,
                        int peer_port)
{
  const void *bufs[1] = { "x" };
  size_t lens[1] = { 1 };
  char host[64];
  int port = 0, family = 0;
  const tapio_protocol *proto = NULL;
  CHECK_ERR(tapio_transport_write(t, "x", 1), TAPIO_ECLOSED);
  CHECK_ERR(tapio_transport_writelines(t, bufs, lens, 1), TAPIO_ECLOSED);
  CHECK_ERR(tapio_transport_get_fd(t), TAPIO_ECLOSED);
  CHECK_ERR(tapio_transport_get_sockname(t, host, sizeof host, &port,
                                         &family), TAPIO_ECLOSED);
  CHECK_OK(tapio_transport_get_peername(t, host, sizeof host, &port,
                                        &family));
  CHECK_EQ(port, peer_port);
  CHECK_STR(host, "127.0.0.1");
  CHECK_OK(tapio_transport_close(t));
  CHECK_OK(tapio_transport_abort(t));
  CHECK_OK(tapio_transport_fail(t, TAPIO_EIO, "late"));
  CHECK_OK(tapio_transport_write_eof(t));
  CHECK_OK(tapio_transport_pause_reading(t));
  CHECK_OK(tapio_transport_resume_reading(t));
  CHECK_EQ(tapio_transport_is_closing(t), 1);
  CHECK_EQ(tapio_transport_is_reading(t), 0);
  CHECK_EQ(tapio_transport_get_write_buffer_size(t), 0);
  CHECK_EQ(tapio_transport_get_stat(t, TAPIO_STAT_BYTES_SENT), 4);
  CHECK(tapio_transport_get_loop(t) == loop);
  CHECK(tapio_transport_get_protocol(t, &proto) == r);
  CHECK(proto == &rec_proto);
  CHECK_EQ(tapio_transport_get_kind(t), TAPIO_TRANSPORT_STREAM);
  spin(loop, 2);
  CHECK_STR(r->log, "made data:4 eof lost:0"); /* no callback after */
}

static void retained_transport_is_a_closed_shell(void)
{
  tapio_loop *loop = new_loop();
  srv sv;
  rec c, *s;
  tapio_transport *t;
  int fd;
  uint64_t mem;
  s = srv_start_pair(&sv, loop, &c);
  t = c.t;
  fd = tapio_transport_get_fd(t);
  CHECK_OK(tapio_transport_retain(t));
  CHECK_OK(tapio_transport_retain(t)); /* two holders */
  roundtrip(loop, &c, s);
  CHECK_OK(tapio_transport_close(s->t)); /* the server ends it */
  WAIT_FOR(loop, c.lost && s->lost);
  CHECK(fcntl(fd, F_GETFD) == -1 && errno == EBADF); /* closed now */
  check_shell(t, loop, &c, sv.port);
  mem = tapio_loop_memory(loop);
  tapio_transport_release(t);
  CHECK_EQ(tapio_loop_memory(loop), mem); /* one holder left */
  CHECK_ERR(tapio_transport_write(t, "x", 1), TAPIO_ECLOSED);
  tapio_transport_release(t);
  CHECK(tapio_loop_memory(loop) < mem); /* gone */
  rec_free(&c);
  srv_release_and_free(&sv, loop);
}

/* A shell answers the write figures it had (kept apart from the
 * transport, made at its first buffered write) until the last release,
 * which frees them with it. */
static void shell_keeps_write_figures(void)
{
  tapio_loop *loop = new_loop();
  rec r;
  tapio_transport *t;
  size_t offset = 0;
  int peer, status = 1;
  uint64_t peak, paused, mem;
  rec_init(&r);
  peer = pair_raw(loop, &r);
  t = r.t;
  CHECK_OK(tapio_transport_set_write_buffer_limits(t, 0, 0));
  fill_until_buffered(t, &offset);
  CHECK_OK(tapio_transport_retain(t));
  run_for(loop, 0.01); /* paused for that long at least */
  CHECK_OK(tapio_transport_write_eof(t));
  CHECK_EQ(raw_drain_pattern(loop, peer, &status), offset);
  close(peer);
  WAIT_FOR(loop, r.lost);
  CHECK_STR(r.log, "made pause resume eof lost:0");
  peak = tapio_transport_get_stat(t, TAPIO_STAT_WRITE_BUFFER_PEAK);
  paused = tapio_transport_get_stat(t, TAPIO_STAT_WRITE_PAUSED_USEC);
  CHECK(peak > 0 && paused >= 10000);
  CHECK_EQ(tapio_transport_get_stat(t, TAPIO_STAT_WRITE_PAUSES), 1);
  spin(loop, 2);
  CHECK_EQ(tapio_transport_get_stat(t, TAPIO_STAT_WRITE_BUFFER_PEAK), peak);
  CHECK_EQ(tapio_transport_get_stat(t, TAPIO_STAT_WRITE_PAUSED_USEC), paused);
  mem = tapio_loop_memory(loop);
  tapio_transport_release(t);
  CHECK(tapio_loop_memory(loop) < mem);
  end_pair(loop, &r, -1);
}

/* A transport that ends while paused (aborted with its buffer full, its
 * reading paused) ends its pauses there: a shell's paused times are the
 * connection's totals and stay as they were at connection_lost. */
static void shell_stops_counting_pauses(void)
{
  tapio_loop *loop = new_loop();
  rec r;
  tapio_transport *t;
  size_t offset = 0;
  int peer;
  uint64_t wpaused, rpaused;
  rec_init(&r);
  peer = pair_raw(loop, &r);
  t = r.t;
  CHECK_OK(tapio_transport_set_write_buffer_limits(t, 0, 0));
  fill_until_buffered(t, &offset);
  CHECK_OK(tapio_transport_pause_reading(t));
  CHECK_OK(tapio_transport_retain(t));
  run_for(loop, 0.01);
  CHECK_OK(tapio_transport_abort(t));
  WAIT_FOR(loop, r.lost);
  CHECK_STR(r.log, "made pause lost:0");
  wpaused = tapio_transport_get_stat(t, TAPIO_STAT_WRITE_PAUSED_USEC);
  rpaused = tapio_transport_get_stat(t, TAPIO_STAT_READ_PAUSED_USEC);
  CHECK(wpaused >= 10000 && rpaused >= 10000);
  run_for(loop, 0.02);
  CHECK_EQ(tapio_transport_get_stat(t, TAPIO_STAT_WRITE_PAUSED_USEC),
           wpaused);
  CHECK_EQ(tapio_transport_get_stat(t, TAPIO_STAT_READ_PAUSED_USEC),
           rpaused);
  tapio_transport_release(t);
  end_pair(loop, &r, peer);
}

static void retain_in_lost(rec *r, rec_event ev)
{
  if (ev == EV_LOST)
    CHECK_OK(tapio_transport_retain(r->t));
}

/* Retained from inside connection_lost, and never released: the loop's
 * freeing frees it (the leak checkers watch). */
static void shell_goes_with_its_loop(void)
{
  tapio_loop *loop = new_loop();
  srv sv;
  rec c, *s;
  tapio_transport *t;
  s = srv_start_pair(&sv, loop, &c);
  t = c.t;
  c.hook = retain_in_lost;
  roundtrip(loop, &c, s);
  CHECK_OK(tapio_transport_close(s->t));
  WAIT_FOR(loop, c.lost && s->lost);
  check_shell(t, loop, &c, sv.port);
  rec_free(&c);
  srv_release_and_free(&sv, loop);
}

/* A read pipe retained past its end: the descriptor closed at once, the
 * shell answering; a subprocess transport cannot be retained. */
static void retained_pipe_is_a_shell_too(void)
{
  tapio_loop *loop = new_loop();
  conn_wait w = { 0 };
  rec r;
  int fds[2];
  rec_init(&r);
  w.r = &r;
  CHECK(pipe(fds) == 0);
  CHECK_OK(tapio_connect_read_pipe(loop, fds[0], &rec_proto, &r, NULL,
                                   on_connected, &w));
  CHECK_OK(connect_wait(loop, &w));
  CHECK_OK(tapio_transport_retain(r.t));
  CHECK(write(fds[1], "ab", 2) == 2);
  close(fds[1]);
  {
    tapio_transport *t = r.t;
    WAIT_FOR(loop, r.lost);
    CHECK_STR(r.log, "made data:2 eof lost:0");
    CHECK(fcntl(fds[0], F_GETFD) == -1 && errno == EBADF);
    CHECK_ERR(tapio_transport_get_fd(t), TAPIO_ECLOSED);
    CHECK_OK(tapio_transport_pause_reading(t));
    CHECK_EQ(tapio_transport_is_closing(t), 1);
    CHECK_EQ(tapio_transport_get_stat(t, TAPIO_STAT_BYTES_RECEIVED), 2);
    tapio_transport_release(t);
  }
  rec_free(&r);
  free_loop(loop);
}

static void closed(void *ud, tapio_server *s)
{
  (void)s;
  ++*(int *)ud;
}

static void ran(void *ud) { ++*(int *)ud; }

/* A closed server, a call that ran and one cancelled: the caller's
 * references, answering until given back. */
static void ended_server_and_calls(void)
{
  tapio_loop *loop = new_loop();
  tapio_handle *done, *cancelled;
  char host[64];
  int n = 0, waited = 0;
  srv sv;
  srv_start(&sv, loop);
  CHECK_OK(tapio_server_close(sv.s));
  CHECK_ERR(tapio_server_start_serving(sv.s), TAPIO_ECLOSED);
  CHECK_EQ(tapio_server_is_serving(sv.s), 0);
  CHECK_EQ(tapio_server_socket_count(sv.s), 0);
  CHECK_ERR(tapio_server_get_fd(sv.s, 0), TAPIO_EINVAL);
  CHECK_ERR(tapio_server_get_address(sv.s, 0, host, sizeof host, NULL,
                                     NULL), TAPIO_EINVAL);
  CHECK_OK(tapio_server_close(sv.s));
  CHECK_OK(tapio_server_close_clients(sv.s));
  CHECK_OK(tapio_server_abort_clients(sv.s));
  CHECK_EQ(tapio_server_client_count(sv.s), 0);
  CHECK(tapio_server_get_loop(sv.s) == loop);
  CHECK_OK(tapio_server_wait_closed(sv.s, closed, &waited));
  CHECK_OK(tapio_call_soon(loop, ran, &n, &done));
  CHECK_OK(tapio_call_later(loop, 60, ran, &n, &cancelled));
  tapio_handle_cancel(cancelled);
  WAIT_FOR(loop, n == 1 && waited == 1);
  CHECK_EQ(tapio_handle_cancelled(done), 0);
  tapio_handle_cancel(done); /* ran: harmless, and marked, as asyncio's */
  CHECK_EQ(tapio_handle_cancelled(done), 1);
  CHECK(tapio_handle_when(done) == -1);
  CHECK_EQ(tapio_handle_cancelled(cancelled), 1);
  CHECK(tapio_handle_when(cancelled) > 0);
  tapio_handle_release(done);
  tapio_handle_release(cancelled);
  spin(loop, 2);
  CHECK_EQ(n, 1);
  srv_release_and_free(&sv, loop);
}

TEST_MAIN(TEST(retained_transport_is_a_closed_shell),
          TEST(shell_goes_with_its_loop), TEST(retained_pipe_is_a_shell_too),
          TEST(ended_server_and_calls), TEST(shell_keeps_write_figures),
          TEST(shell_stops_counting_pauses))
