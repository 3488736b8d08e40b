/* Transport methods: close and abort, protocols, reading control, write,
 * writelines, write_eof, write buffer limits, addresses, the descriptor and
 * the statistics. Most tests face a raw peer socket, so that what reaches
 * the wire is checked by code that is not tapio. */
#include "test.h"

/* What a transport looked like when connection_lost came. */
typedef struct at_lost {
  size_t buffered;
  uint64_t sent;
} at_lost;

static void record_at_lost(rec *r, rec_event ev)
{
  at_lost *a = r->user;
  if (ev != EV_LOST)
    return;
  a->buffered = tapio_transport_get_write_buffer_size(r->t);
  a->sent = tapio_transport_get_stat(r->t, TAPIO_STAT_BYTES_SENT);
}

/* r connected to a raw peer, with limits high enough that filling the
 * kernel buffers does not pause writing. */
static int pair_unlimited(tapio_loop *loop, rec *r)
{
  int peer = pair_raw(loop, r);
  CHECK_OK(tapio_transport_set_write_buffer_limits(r->t, 1 << 30, -1));
  return peer;
}

/* ---- close and abort ----------------------------------------------------- */

/* close flushes the buffer first; connection_lost(0) comes after that. */
static void close_flushes_buffer(void)
{
  tapio_loop *loop = new_loop();
  at_lost a = { 99, 0 };
  rec r;
  size_t offset = 0, got;
  int peer, status = 1;
  rec_init(&r);
  r.hook = record_at_lost;
  r.user = &a;
  peer = pair_unlimited(loop, &r);
  fill_until_buffered(r.t, &offset);
  CHECK_OK(tapio_transport_close(r.t));
  CHECK_EQ(tapio_transport_is_closing(r.t), 1);
  spin(loop, 3); /* the peer does not read: nothing can be lost yet */
  CHECK_STR(r.log, "made");
  got = raw_drain_pattern(loop, peer, &status);
  CHECK_EQ(status, 0); /* EOF after everything */
  CHECK_EQ(got, offset);
  WAIT_FOR(loop, r.lost);
  CHECK_STR(r.log, "made lost:0");
  CHECK_EQ(a.buffered, 0);
  CHECK_EQ(a.sent, offset);
  end_pair(loop, &r, peer);
}

static void close_is_idempotent(void)
{
  tapio_loop *loop = new_loop();
  rec r;
  int peer;
  rec_init(&r);
  peer = pair_raw(loop, &r);
  CHECK_OK(tapio_transport_close(r.t));
  CHECK_OK(tapio_transport_close(r.t));
  WAIT_FOR(loop, r.lost);
  spin(loop, 3);
  CHECK_STR(r.log, "made lost:0");
  end_pair(loop, &r, peer);
}

/* abort drops the buffer: the peer gets less than was written. */
static void abort_drops_buffer(void)
{
  tapio_loop *loop = new_loop();
  rec r;
  size_t offset = 0, got;
  int peer, status = 1;
  rec_init(&r);
  peer = pair_unlimited(loop, &r);
  fill_until_buffered(r.t, &offset);
  CHECK_OK(tapio_transport_abort(r.t));
  CHECK_EQ(tapio_transport_is_closing(r.t), 1);
  WAIT_FOR(loop, r.lost);
  CHECK_STR(r.log, "made lost:0");
  got = raw_drain_pattern(loop, peer, &status);
  CHECK(status == 0 || status == -ECONNRESET);
  CHECK(got < offset);
  end_pair(loop, &r, peer);
}

static void is_closing(void)
{
  tapio_loop *loop = new_loop();
  rec a, b;
  int pa, pb;
  rec_init(&a);
  rec_init(&b);
  pa = pair_raw(loop, &a);
  pb = pair_raw(loop, &b);
  CHECK_EQ(tapio_transport_is_closing(a.t), 0);
  CHECK_OK(tapio_transport_close(a.t));
  CHECK_EQ(tapio_transport_is_closing(a.t), 1);
  CHECK_OK(tapio_transport_abort(b.t));
  CHECK_EQ(tapio_transport_is_closing(b.t), 1);
  WAIT_FOR(loop, a.lost && b.lost);
  close(pa);
  close(pb);
  free_loop(loop);
  rec_free(&a);
  rec_free(&b);
}

/* fail: like abort, with the protocol's own error (copied). */
static void fail_reports_code_and_message(void)
{
  tapio_loop *loop = new_loop();
  rec r;
  char msg[32];
  int peer;
  rec_init(&r);
  peer = pair_raw(loop, &r);
  snprintf(msg, sizeof msg, "bad header");
  CHECK_OK(tapio_transport_fail(r.t, TAPIO_EINVAL, msg));
  msg[0] = 'X'; /* tapio keeps its own copy */
  WAIT_FOR(loop, r.lost);
  CHECK_STR(r.log, "made lost:EINVAL");
  CHECK_STR(r.lost_msg, "bad header");
  end_pair(loop, &r, peer);
}

/* ---- Protocols ----------------------------------------------------------- */

static void get_protocol(void)
{
  tapio_loop *loop = new_loop();
  const tapio_protocol *p = NULL;
  rec r;
  int peer;
  rec_init(&r);
  peer = pair_raw(loop, &r);
  CHECK(tapio_transport_get_protocol(r.t, &p) == &r);
  CHECK(p == &rec_proto);
  CHECK(tapio_transport_get_protocol(r.t, NULL) == &r);
  CHECK(tapio_transport_get_loop(r.t) == loop);
  end_pair(loop, &r, peer);
}

/* The growth rule: a table smaller than this version's (0 included) is
 * refused wherever a table is given; a larger one, from a newer header,
 * works and its extra callbacks are never called. */
typedef struct newer_protocol {
  tapio_protocol v1;
  void (*later)(void *ud, tapio_transport *t); /* a callback of tomorrow */
} newer_protocol;

static void tomorrow_never_called(void *ud, tapio_transport *t)
{
  (void)ud;
  (void)t;
  FAIL("a callback past this version's table was called");
}

static void protocol_size_rule(void)
{
  tapio_loop *loop = new_loop();
  tapio_protocol small = rec_proto;
  newer_protocol newer = { rec_proto, tomorrow_never_called };
  conn_wait w = { 0 };
  rec r, b;
  int peer, port, lfd = raw_listen(AF_INET, &port);
  rec_init(&r);
  rec_init(&b);
  newer.v1.size = sizeof newer;
  small.size = 0;
  CHECK_ERR(tapio_create_connection(loop, "127.0.0.1", port, &small, &r,
                                    NULL, on_connected, &w), TAPIO_EINVAL);
  small.size = sizeof small - 1;
  CHECK_ERR(tapio_create_connection(loop, "127.0.0.1", port, &small, &r,
                                    NULL, on_connected, &w), TAPIO_EINVAL);
  CHECK_ERR(tapio_create_connection(loop, "127.0.0.1", port, NULL, &r, NULL,
                                    on_connected, &w), TAPIO_EINVAL);
  w.r = &r;
  CHECK_OK(tapio_create_connection(loop, "127.0.0.1", port, &newer.v1, &r,
                                   NULL, on_connected, &w));
  CHECK_OK(connect_wait(loop, &w));
  peer = raw_accept(loop, lfd);
  close(lfd);
  CHECK_ERR(tapio_transport_set_protocol(r.t, &small, &b), TAPIO_EINVAL);
  CHECK(tapio_transport_get_protocol(r.t, NULL) == &r);
  raw_send_str(loop, peer, "abc");
  WAIT_FOR(loop, r.nin == 3);
  CHECK_STR(r.log, "made data:3");
  end_pair(loop, &r, peer);
  rec_free(&b);
}

/* A server factory that gives a table of a wrong size: the connection is
 * closed, the exception handler told, nothing of the table is called. */
static void server_factory_bad_protocol_size(void)
{
  tapio_loop *loop = new_loop();
  static tapio_protocol bad;
  exc_rec e = { 0 };
  char buf[8], buf2[128];
  size_t n = 0;
  srv sv;
  int fd;
  bad = rec_proto;
  bad.size = 4;
  tapio_loop_set_exception_handler(loop, exc_record, &e);
  srv_start(&sv, loop);
  sv.proto = &bad;
  fd = raw_connect(AF_INET, "127.0.0.1", sv.port);
  CHECK_EQ(raw_recv_until_eof(loop, fd, buf, sizeof buf, &n), 0);
  CHECK_EQ(n, 0);
  CHECK_EQ(e.n, 1);
  CHECK_EQ(e.code, TAPIO_EINVAL);
  snprintf(buf2, sizeof buf2, "protocol factory gave a table of size 4, "
           "not sizeof(tapio_protocol) (%u) or more",
           (unsigned)sizeof(tapio_protocol));
  CHECK_STR(e.message, buf2); /* says what is wrong and how it should be */
  CHECK_EQ(sv.n, 1);
  CHECK_STR(sv.conns[0]->log, "");
  close(fd);
  srv_release_and_free(&sv, loop);
}

/* A factory that returns 0 without a protocol (an FFI callback that
 * raised returns its default, 0): the connection is closed, and the
 * exception handler is told that, not that the factory refused. */
static void server_factory_no_protocol(void)
{
  tapio_loop *loop = new_loop();
  exc_rec e = { 0 };
  char buf[8];
  size_t n = 0;
  srv sv;
  int fd;
  tapio_loop_set_exception_handler(loop, exc_record, &e);
  srv_start(&sv, loop);
  sv.proto = NULL;
  fd = raw_connect(AF_INET, "127.0.0.1", sv.port);
  CHECK_EQ(raw_recv_until_eof(loop, fd, buf, sizeof buf, &n), 0);
  CHECK_EQ(n, 0);
  CHECK_EQ(e.n, 1);
  CHECK_EQ(e.code, TAPIO_EINVAL);
  CHECK_STR(e.message,
            "protocol factory returned 0 but gave no protocol (*proto NULL)");
  close(fd);
  srv_release_and_free(&sv, loop);
}

static void transport_kind(void)
{
  tapio_loop *loop = new_loop();
  rec r;
  int peer;
  rec_init(&r);
  peer = pair_raw(loop, &r);
  CHECK_EQ(tapio_transport_get_kind(r.t), TAPIO_TRANSPORT_STREAM);
  CHECK_ERR(tapio_transport_get_kind(NULL), TAPIO_EINVAL);
  end_pair(loop, &r, peer);
}

/* After set_protocol every callback goes to the new protocol. */
static void set_protocol_mid_stream(void)
{
  tapio_loop *loop = new_loop();
  const tapio_protocol *p = NULL;
  rec a, b;
  int peer;
  rec_init(&a);
  rec_init(&b);
  peer = pair_raw(loop, &a);
  raw_send_str(loop, peer, "one");
  WAIT_FOR(loop, a.nin == 3);
  b.made = 1; /* b takes over a live transport */
  b.t = a.t;
  tapio_transport_set_protocol(a.t, &rec_proto_noeof, &b);
  CHECK(tapio_transport_get_protocol(a.t, &p) == &b);
  CHECK(p == &rec_proto_noeof);
  raw_send_str(loop, peer, "two!");
  close(peer);
  WAIT_FOR(loop, b.lost);
  CHECK_STR(a.log, "made data:3");
  CHECK_STR(b.log, "data:4 lost:0");
  CHECK(memcmp(b.in, "two!", 4) == 0);
  free_loop(loop);
  rec_free(&a);
  rec_free(&b);
}

/* ---- Reading control ----------------------------------------------------- */

/* Data ready in the socket while reading is paused stays there; resuming
 * delivers it. Both calls are idempotent. */
static void pause_reading_holds_data(void)
{
  tapio_loop *loop = new_loop();
  rec r;
  int peer;
  rec_init(&r);
  peer = pair_raw(loop, &r);
  CHECK_EQ(tapio_transport_is_reading(r.t), 1);
  CHECK_OK(tapio_transport_pause_reading(r.t));
  CHECK_OK(tapio_transport_pause_reading(r.t));
  CHECK_EQ(tapio_transport_is_reading(r.t), 0);
  raw_send_str(loop, peer, "held");
  CHECK(raw_wait(NULL, tapio_transport_get_fd(r.t), POLLIN));
  spin(loop, 5);
  CHECK_STR(r.log, "made");
  CHECK_OK(tapio_transport_resume_reading(r.t));
  CHECK_OK(tapio_transport_resume_reading(r.t));
  CHECK_EQ(tapio_transport_is_reading(r.t), 1);
  WAIT_FOR(loop, r.nin == 4);
  CHECK_STR(r.log, "made data:4");
  close(peer);
  WAIT_FOR(loop, r.lost);
  CHECK_STR(r.log, "made data:4 eof lost:0");
  free_loop(loop);
  rec_free(&r);
}

/* An EOF that arrives while paused is delivered after resuming, after the
 * data before it. */
static void pause_reading_holds_eof(void)
{
  tapio_loop *loop = new_loop();
  rec r;
  int peer;
  rec_init(&r);
  peer = pair_raw(loop, &r);
  CHECK_OK(tapio_transport_pause_reading(r.t));
  raw_send_str(loop, peer, "last");
  close(peer);
  CHECK(raw_wait(NULL, tapio_transport_get_fd(r.t), POLLIN));
  spin(loop, 5);
  CHECK_STR(r.log, "made");
  CHECK_OK(tapio_transport_resume_reading(r.t));
  WAIT_FOR(loop, r.lost);
  CHECK_STR(r.log, "made data:4 eof lost:0");
  free_loop(loop);
  rec_free(&r);
}

static void pause_in_data(rec *r, rec_event ev)
{
  if (ev == EV_DATA)
    CHECK_OK(tapio_transport_pause_reading(r->t));
}

/* Paused from inside data_received, with the peer's EOF already in the
 * socket: the EOF waits for resume_reading too. */
static void pause_in_data_received_holds_eof(void)
{
  tapio_loop *loop = new_loop();
  rec r;
  int peer;
  rec_init(&r);
  r.hook = pause_in_data;
  peer = pair_raw(loop, &r);
  raw_send_str(loop, peer, "abc");
  close(peer);
  WAIT_FOR(loop, r.nin == 3);
  spin(loop, 5);
  CHECK_STR(r.log, "made data:3");
  r.hook = NULL;
  CHECK_OK(tapio_transport_resume_reading(r.t));
  WAIT_FOR(loop, r.lost);
  CHECK_STR(r.log, "made data:3 eof lost:0");
  free_loop(loop);
  rec_free(&r);
}

static void pause_in_made(rec *r, rec_event ev)
{
  if (ev == EV_MADE)
    CHECK_OK(tapio_transport_pause_reading(r->t));
}

/* Paused from inside connection_made: nothing arrives before resuming. */
static void pause_reading_in_connection_made(void)
{
  tapio_loop *loop = new_loop();
  rec r;
  int peer;
  rec_init(&r);
  r.hook = pause_in_made;
  peer = pair_raw(loop, &r);
  CHECK_EQ(tapio_transport_is_reading(r.t), 0);
  raw_send_str(loop, peer, "early");
  CHECK(raw_wait(NULL, tapio_transport_get_fd(r.t), POLLIN));
  spin(loop, 5);
  CHECK_STR(r.log, "made");
  CHECK_OK(tapio_transport_resume_reading(r.t));
  WAIT_FOR(loop, r.nin == 5);
  close(peer);
  WAIT_FOR(loop, r.lost);
  CHECK_STR(r.log, "made data:5 eof lost:0");
  free_loop(loop);
  rec_free(&r);
}

static void pause_resume_reading_when_closing(void)
{
  tapio_loop *loop = new_loop();
  rec r;
  int peer;
  rec_init(&r);
  peer = pair_raw(loop, &r);
  CHECK_OK(tapio_transport_close(r.t));
  CHECK_EQ(tapio_transport_is_reading(r.t), 0);
  CHECK_OK(tapio_transport_pause_reading(r.t));
  CHECK_OK(tapio_transport_resume_reading(r.t));
  CHECK_OK(tapio_transport_resume_reading(r.t));
  CHECK_EQ(tapio_transport_is_reading(r.t), 0);
  WAIT_FOR(loop, r.lost);
  CHECK_STR(r.log, "made lost:0");
  end_pair(loop, &r, peer);
}

/* ---- write_eof ----------------------------------------------------------- */

static void can_write_eof(void)
{
  tapio_loop *loop = new_loop();
  rec r;
  int peer;
  rec_init(&r);
  peer = pair_raw(loop, &r);
  CHECK_EQ(tapio_transport_can_write_eof(r.t), 1);
  end_pair(loop, &r, peer);
}

/* The peer sees our data, then EOF; we still receive its data; writing
 * after write_eof is an error. */
static void write_eof_half_closes(void)
{
  tapio_loop *loop = new_loop();
  rec r;
  char buf[16];
  size_t n;
  int peer;
  rec_init(&r);
  peer = pair_raw(loop, &r);
  CHECK_OK(tapio_transport_write(r.t, "req", 3));
  CHECK_OK(tapio_transport_write_eof(r.t));
  CHECK_OK(tapio_transport_write_eof(r.t)); /* idempotent */
  CHECK_EQ(tapio_transport_is_closing(r.t), 0);
  CHECK_ERR(tapio_transport_write(r.t, "x", 1), TAPIO_ESHUTDOWN);
  CHECK_EQ(raw_recv_until_eof(loop, peer, buf, sizeof buf, &n), 0);
  CHECK_EQ(n, 3);
  CHECK(memcmp(buf, "req", 3) == 0);
  raw_send_str(loop, peer, "response");
  WAIT_FOR(loop, r.nin == 8);
  CHECK(memcmp(r.in, "response", 8) == 0);
  close(peer);
  WAIT_FOR(loop, r.lost);
  CHECK_STR(r.log, "made data:8 eof lost:0");
  free_loop(loop);
  rec_free(&r);
}

/* write_eof waits for the buffer: everything arrives before the EOF. */
static void write_eof_after_buffered(void)
{
  tapio_loop *loop = new_loop();
  rec r;
  size_t offset = 0, got;
  int peer, status = 1;
  rec_init(&r);
  peer = pair_unlimited(loop, &r);
  fill_until_buffered(r.t, &offset);
  CHECK_OK(tapio_transport_write_eof(r.t));
  got = raw_drain_pattern(loop, peer, &status);
  CHECK_EQ(status, 0);
  CHECK_EQ(got, offset);
  CHECK_EQ(r.lost, 0);
  CHECK_OK(tapio_transport_close(r.t));
  WAIT_FOR(loop, r.lost);
  CHECK_STR(r.log, "made lost:0");
  end_pair(loop, &r, peer);
}

/* ---- Write buffer limits ------------------------------------------------- */

static void check_limits(tapio_transport *t, size_t low, size_t high)
{
  size_t l = 1, h = 1;
  tapio_transport_get_write_buffer_limits(t, &l, &h);
  CHECK_EQ(l, low);
  CHECK_EQ(h, high);
}

/* One transport for the limit rules: a socketpair, no network needed. */
static rec *limits_transport(tapio_loop *loop, rec *r, int *other)
{
  conn_wait w = { 0 };
  int sv[2];
  rec_init(r);
  w.r = r;
  CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
  *other = sv[1];
  CHECK_OK(tapio_connect_accepted_socket(loop, sv[0], &rec_proto, r, NULL,
                                         on_connected, &w));
  CHECK_OK(connect_wait(loop, &w));
  return r;
}

static void limits_finish(tapio_loop *loop, rec *r, int other)
{
  close(other);
  free_loop(loop);
  CHECK(strncmp(r->log, "made", 4) == 0 && !strstr(r->log, "pause"));
  rec_free(r);
}

static void limits_defaults(void)
{
  tapio_loop *loop = new_loop();
  rec r;
  int other;
  limits_transport(loop, &r, &other);
  check_limits(r.t, 16 * 1024, 64 * 1024);
  CHECK_EQ(tapio_transport_get_write_buffer_size(r.t), 0);
  limits_finish(loop, &r, other);
}

static void limits_minus_one_means_default(void)
{
  tapio_loop *loop = new_loop();
  rec r;
  int other;
  limits_transport(loop, &r, &other);
  CHECK_OK(tapio_transport_set_write_buffer_limits(r.t, 1000, 10));
  CHECK_OK(tapio_transport_set_write_buffer_limits(r.t, -1, -1));
  check_limits(r.t, 16 * 1024, 64 * 1024);
  limits_finish(loop, &r, other);
}

static void limits_high_only(void)
{
  tapio_loop *loop = new_loop();
  rec r;
  int other;
  limits_transport(loop, &r, &other);
  CHECK_OK(tapio_transport_set_write_buffer_limits(r.t, 1000, -1));
  check_limits(r.t, 250, 1000);
  limits_finish(loop, &r, other);
}

static void limits_low_only(void)
{
  tapio_loop *loop = new_loop();
  rec r;
  int other;
  limits_transport(loop, &r, &other);
  CHECK_OK(tapio_transport_set_write_buffer_limits(r.t, -1, 300));
  check_limits(r.t, 300, 1200);
  limits_finish(loop, &r, other);
}

static void limits_both(void)
{
  tapio_loop *loop = new_loop();
  rec r;
  int other;
  limits_transport(loop, &r, &other);
  CHECK_OK(tapio_transport_set_write_buffer_limits(r.t, 5000, 5000));
  check_limits(r.t, 5000, 5000);
  CHECK_OK(tapio_transport_set_write_buffer_limits(r.t, 5000, 0));
  check_limits(r.t, 0, 5000);
  limits_finish(loop, &r, other);
}

/* Invalid limits are refused and leave the old ones in place. */
static void limits_low_above_high_einval(void)
{
  tapio_loop *loop = new_loop();
  rec r;
  int other;
  limits_transport(loop, &r, &other);
  CHECK_OK(tapio_transport_set_write_buffer_limits(r.t, 800, 200));
  CHECK_ERR(tapio_transport_set_write_buffer_limits(r.t, 100, 200),
            TAPIO_EINVAL);
  CHECK_ERR(tapio_transport_set_write_buffer_limits(r.t, 0, 1),
            TAPIO_EINVAL);
  check_limits(r.t, 200, 800);
  limits_finish(loop, &r, other);
}

static void limits_negative_einval(void)
{
  tapio_loop *loop = new_loop();
  rec r;
  int other;
  limits_transport(loop, &r, &other);
  CHECK_ERR(tapio_transport_set_write_buffer_limits(r.t, -2, -1),
            TAPIO_EINVAL);
  CHECK_ERR(tapio_transport_set_write_buffer_limits(r.t, -1, -5),
            TAPIO_EINVAL);
  CHECK_ERR(tapio_transport_set_write_buffer_limits(r.t, INT64_MIN, 0),
            TAPIO_EINVAL);
  check_limits(r.t, 16 * 1024, 64 * 1024);
  limits_finish(loop, &r, other);
}

static void limits_high_zero_forces_low_zero(void)
{
  tapio_loop *loop = new_loop();
  rec r;
  int other;
  limits_transport(loop, &r, &other);
  CHECK_OK(tapio_transport_set_write_buffer_limits(r.t, 0, -1));
  check_limits(r.t, 0, 0);
  limits_finish(loop, &r, other);
}

/* ---- write and writelines ------------------------------------------------ */

static void write_and_writelines_in_order(void)
{
  tapio_loop *loop = new_loop();
  static const char *const parts[] = { "22", "", "333" };
  static const size_t lens[] = { 2, 0, 3 };
  rec r;
  char buf[32];
  size_t n;
  int peer;
  rec_init(&r);
  peer = pair_raw(loop, &r);
  CHECK_OK(tapio_transport_write(r.t, "1", 1));
  CHECK_OK(tapio_transport_writelines(r.t, (const void *const *)parts, lens,
                                      3));
  /* an idle socket takes them: sent at once, nothing buffered */
  CHECK_EQ(tapio_transport_get_write_buffer_size(r.t), 0);
  CHECK_EQ(tapio_transport_get_stat(r.t, TAPIO_STAT_BYTES_SENT), 6);
  CHECK_OK(tapio_transport_writelines(r.t, NULL, NULL, 0));
  CHECK_OK(tapio_transport_write(r.t, "4", 1));
  CHECK_OK(tapio_transport_write(r.t, "", 0));
  CHECK_OK(tapio_transport_close(r.t));
  CHECK_EQ(raw_recv_until_eof(loop, peer, buf, sizeof buf, &n), 0);
  buf[n] = '\0';
  CHECK_STR(buf, "1223334");
  WAIT_FOR(loop, r.lost);
  CHECK_STR(r.log, "made lost:0");
  end_pair(loop, &r, peer);
}

/* writelines behind buffered data keeps the stream in order. */
static void writelines_after_buffered_keeps_order(void)
{
  tapio_loop *loop = new_loop();
  rec r;
  char a[1000], b[3000];
  const void *bufs[2] = { a, b };
  size_t lens[2] = { sizeof a, sizeof b }, offset = 0, got;
  int peer, status = 1;
  rec_init(&r);
  peer = pair_unlimited(loop, &r);
  fill_until_buffered(r.t, &offset);
  pattern_fill(a, sizeof a, offset);
  pattern_fill(b, sizeof b, offset + sizeof a);
  CHECK_OK(tapio_transport_writelines(r.t, bufs, lens, 2));
  offset += sizeof a + sizeof b;
  CHECK_OK(tapio_transport_close(r.t));
  got = raw_drain_pattern(loop, peer, &status);
  CHECK_EQ(status, 0);
  CHECK_EQ(got, offset);
  WAIT_FOR(loop, r.lost);
  end_pair(loop, &r, peer);
}

/* More buffers than one writev takes, into a socket that takes only part
 * of them: the stream still arrives whole and in order. */
static void writelines_many_buffers(void)
{
  enum { N = 3000, LEN = 100 };
  tapio_loop *loop = new_loop();
  static char data[N * LEN];
  static const void *bufs[N];
  static size_t lens[N];
  rec r;
  size_t i, got;
  int peer, status = 1, small = 16 * 1024;
  rec_init(&r);
  peer = pair_raw(loop, &r);
  CHECK_OK(tapio_transport_set_write_buffer_limits(r.t, 1 << 30, -1));
  setsockopt(tapio_transport_get_fd(r.t), SOL_SOCKET, SO_SNDBUF, &small,
             sizeof small);
  pattern_fill(data, sizeof data, 0);
  for (i = 0; i < N; i++) { /* buffer 7 is empty: the stream skips it */
    bufs[i] = data + (i < 8 ? i : i - 1) * LEN;
    lens[i] = i == 7 ? 0 : LEN;
  }
  CHECK_OK(tapio_transport_writelines(r.t, bufs, lens, N));
  CHECK(tapio_transport_get_write_buffer_size(r.t) > 0); /* partly sent */
  CHECK_OK(tapio_transport_close(r.t));
  got = raw_drain_pattern(loop, peer, &status);
  CHECK_EQ(status, 0);
  CHECK_EQ(got, (N - 1) * LEN);
  WAIT_FOR(loop, r.lost);
  end_pair(loop, &r, peer);
}

static void write_in_lost(rec *r, rec_event ev)
{
  if (ev == EV_LOST) {
    CHECK_ERR(tapio_transport_write(r->t, "x", 1), TAPIO_ECLOSED);
    CHECK_EQ(tapio_transport_is_closing(r->t), 1);
    CHECK_OK(tapio_transport_pause_reading(r->t));
    CHECK_OK(tapio_transport_resume_reading(r->t));
  }
}

/* Inside connection_lost the transport is still valid, and closed. */
static void methods_inside_connection_lost(void)
{
  tapio_loop *loop = new_loop();
  rec r;
  int peer;
  rec_init(&r);
  r.hook = write_in_lost;
  peer = pair_raw(loop, &r);
  close(peer);
  WAIT_FOR(loop, r.lost);
  CHECK_STR(r.log, "made eof lost:0");
  free_loop(loop);
  rec_free(&r);
}

static void write_after_close_eclosed(void)
{
  tapio_loop *loop = new_loop();
  static const char *const parts[] = { "a" };
  static const size_t lens[] = { 1 };
  rec r;
  int peer;
  rec_init(&r);
  peer = pair_raw(loop, &r);
  CHECK_OK(tapio_transport_close(r.t));
  CHECK_ERR(tapio_transport_write(r.t, "x", 1), TAPIO_ECLOSED);
  CHECK_ERR(tapio_transport_writelines(r.t, (const void *const *)parts, lens,
                                       1), TAPIO_ECLOSED);
  WAIT_FOR(loop, r.lost);
  end_pair(loop, &r, peer);
}

static void write_after_abort_eclosed(void)
{
  tapio_loop *loop = new_loop();
  rec r;
  int peer;
  rec_init(&r);
  peer = pair_raw(loop, &r);
  CHECK_OK(tapio_transport_abort(r.t));
  CHECK_ERR(tapio_transport_write(r.t, "x", 1), TAPIO_ECLOSED);
  WAIT_FOR(loop, r.lost);
  end_pair(loop, &r, peer);
}

/* ---- Addresses and descriptor -------------------------------------------- */

static void names_ipv4_match_the_peer(void)
{
  tapio_loop *loop = new_loop();
  struct sockaddr_in pa;
  socklen_t len = sizeof pa;
  rec r;
  char host[64];
  int peer, port = 0, family = 0;
  rec_init(&r);
  peer = pair_raw(loop, &r);
  CHECK(getpeername(peer, (struct sockaddr *)&pa, &len) == 0);
  CHECK_OK(tapio_transport_get_sockname(r.t, host, sizeof host, &port,
                                        &family));
  CHECK_STR(host, "127.0.0.1");
  CHECK_EQ(port, ntohs(pa.sin_port));
  CHECK_EQ(family, TAPIO_AF_INET);
  CHECK_OK(tapio_transport_get_peername(r.t, host, sizeof host, &port,
                                        &family));
  CHECK_STR(host, "127.0.0.1");
  CHECK_EQ(port, raw_port(peer));
  CHECK_EQ(family, TAPIO_AF_INET);
  end_pair(loop, &r, peer);
}

static void names_small_buffer_enobufs(void)
{
  tapio_loop *loop = new_loop();
  rec r;
  char host[4];
  int peer, port, family;
  rec_init(&r);
  peer = pair_raw(loop, &r);
  CHECK_ERR(tapio_transport_get_peername(r.t, host, sizeof host, &port,
                                         &family), TAPIO_ENOBUFS);
  CHECK_ERR(tapio_transport_get_sockname(r.t, host, sizeof host, &port,
                                         &family), TAPIO_ENOBUFS);
  end_pair(loop, &r, peer);
}

static void get_fd_is_the_socket(void)
{
  tapio_loop *loop = new_loop();
  struct sockaddr_in a;
  socklen_t len = sizeof a;
  rec r;
  int peer, fd;
  rec_init(&r);
  peer = pair_raw(loop, &r);
  fd = tapio_transport_get_fd(r.t);
  CHECK(fd >= 0);
  CHECK(getpeername(fd, (struct sockaddr *)&a, &len) == 0);
  CHECK_EQ(ntohs(a.sin_port), raw_port(peer));
  end_pair(loop, &r, peer);
}

/* ---- Statistics ---------------------------------------------------------- */

static void stat_bytes_exact(void)
{
  tapio_loop *loop = new_loop();
  char out[1000], in[1500];
  rec r;
  int peer;
  rec_init(&r);
  peer = pair_raw(loop, &r);
  pattern_fill(out, sizeof out, 0);
  pattern_fill(in, sizeof in, 7);
  CHECK_OK(tapio_transport_write(r.t, out, sizeof out));
  raw_send_all(loop, peer, in, sizeof in);
  WAIT_FOR(loop, r.nin == sizeof in);
  raw_recv_n(loop, peer, in, sizeof out);
  CHECK_EQ(tapio_transport_get_stat(r.t, TAPIO_STAT_BYTES_SENT), 1000);
  CHECK_EQ(tapio_transport_get_stat(r.t, TAPIO_STAT_BYTES_RECEIVED), 1500);
  CHECK_EQ(tapio_transport_get_stat(r.t, 9999), 0); /* unknown figure */
  end_pair(loop, &r, peer);
}

static void stat_write_buffer_and_peak(void)
{
  tapio_loop *loop = new_loop();
  rec r;
  size_t offset = 0, size, got;
  uint64_t peak;
  int peer, status = 1;
  rec_init(&r);
  peer = pair_unlimited(loop, &r);
  fill_until_buffered(r.t, &offset);
  CHECK_OK(tapio_transport_write(r.t, "", 0));
  size = tapio_transport_get_write_buffer_size(r.t);
  CHECK_EQ(tapio_transport_get_stat(r.t, TAPIO_STAT_WRITE_BUFFER_SIZE), size);
  peak = tapio_transport_get_stat(r.t, TAPIO_STAT_WRITE_BUFFER_PEAK);
  CHECK(peak >= size && peak > 0);
  CHECK_OK(tapio_transport_write_eof(r.t));
  got = raw_drain_pattern(loop, peer, &status);
  CHECK_EQ(got, offset);
  CHECK_EQ(tapio_transport_get_write_buffer_size(r.t), 0);
  CHECK_EQ(tapio_transport_get_stat(r.t, TAPIO_STAT_WRITE_BUFFER_SIZE), 0);
  CHECK_EQ(tapio_transport_get_stat(r.t, TAPIO_STAT_WRITE_BUFFER_PEAK), peak);
  CHECK_EQ(tapio_transport_get_stat(r.t, TAPIO_STAT_BYTES_SENT), offset);
  end_pair(loop, &r, peer);
}

static void stat_write_pauses(void)
{
  tapio_loop *loop = new_loop();
  rec r;
  size_t offset = 0;
  int peer, status = 1;
  uint64_t paused;
  rec_init(&r);
  peer = pair_raw(loop, &r);
  CHECK_OK(tapio_transport_set_write_buffer_limits(r.t, 0, 0));
  CHECK_EQ(tapio_transport_get_stat(r.t, TAPIO_STAT_WRITE_PAUSES), 0);
  fill_until_buffered(r.t, &offset);
  CHECK_STR(r.log, "made pause");
  CHECK_EQ(tapio_transport_get_stat(r.t, TAPIO_STAT_WRITE_PAUSES), 1);
  run_for(loop, 0.02);
  /* a pause still going on counts */
  paused = tapio_transport_get_stat(r.t, TAPIO_STAT_WRITE_PAUSED_USEC);
  CHECK(paused >= 10000);
  CHECK_OK(tapio_transport_write_eof(r.t));
  raw_drain_pattern(loop, peer, &status);
  WAIT_FOR(loop, r.nresume == 1);
  CHECK(tapio_transport_get_stat(r.t, TAPIO_STAT_WRITE_PAUSED_USEC) >=
        paused);
  CHECK_EQ(tapio_transport_get_stat(r.t, TAPIO_STAT_WRITE_PAUSES), 1);
  end_pair(loop, &r, peer);
}

static void stat_read_paused_time(void)
{
  tapio_loop *loop = new_loop();
  rec r;
  int peer;
  uint64_t paused;
  rec_init(&r);
  peer = pair_raw(loop, &r);
  CHECK_EQ(tapio_transport_get_stat(r.t, TAPIO_STAT_READ_PAUSED_USEC), 0);
  CHECK_OK(tapio_transport_pause_reading(r.t));
  run_for(loop, 0.02);
  paused = tapio_transport_get_stat(r.t, TAPIO_STAT_READ_PAUSED_USEC);
  CHECK(paused >= 10000); /* still paused: counted so far */
  CHECK_OK(tapio_transport_resume_reading(r.t));
  run_for(loop, 0.02);
  paused = tapio_transport_get_stat(r.t, TAPIO_STAT_READ_PAUSED_USEC);
  CHECK(paused >= 10000 && paused < 5000000);
  /* not growing once resumed */
  run_for(loop, 0.02);
  CHECK_EQ(tapio_transport_get_stat(r.t, TAPIO_STAT_READ_PAUSED_USEC),
           paused);
  end_pair(loop, &r, peer);
}

TEST_MAIN(
  TEST(close_flushes_buffer),
  TEST(close_is_idempotent),
  TEST(abort_drops_buffer),
  TEST(is_closing),
  TEST(fail_reports_code_and_message),
  TEST(get_protocol),
  TEST(set_protocol_mid_stream),
  TEST(protocol_size_rule),
  TEST(server_factory_bad_protocol_size),
  TEST(server_factory_no_protocol),
  TEST(transport_kind),
  TEST(pause_reading_holds_data),
  TEST(pause_reading_holds_eof),
  TEST(pause_in_data_received_holds_eof),
  TEST(pause_reading_in_connection_made),
  TEST(pause_resume_reading_when_closing),
  TEST(can_write_eof),
  TEST(write_eof_half_closes),
  TEST(write_eof_after_buffered),
  TEST(limits_defaults),
  TEST(limits_minus_one_means_default),
  TEST(limits_high_only),
  TEST(limits_low_only),
  TEST(limits_both),
  TEST(limits_low_above_high_einval),
  TEST(limits_negative_einval),
  TEST(limits_high_zero_forces_low_zero),
  TEST(write_and_writelines_in_order),
  TEST(writelines_after_buffered_keeps_order),
  TEST(writelines_many_buffers),
  TEST(methods_inside_connection_lost),
  TEST(write_after_close_eclosed),
  TEST(write_after_abort_eclosed),
  TEST(names_ipv4_match_the_peer),
  TEST(names_small_buffer_enobufs),
  TEST(get_fd_is_the_socket),
  TEST(stat_bytes_exact),
  TEST(stat_write_buffer_and_peak),
  TEST(stat_write_pauses),
  TEST(stat_read_paused_time)
)
