/* BufferedProtocol: get_buffer/buffer_updated with tiny and large buffers,
 * a get_buffer that gives no memory, and eof after the updates. */
#include "test.h"

/* r, a BufferedProtocol receiving into mem[len], connected to a raw peer. */
static int pair_buffered(tapio_loop *loop, rec *r, char *mem, size_t len)
{
  conn_wait w = { 0 };
  int port, lfd = raw_listen(AF_INET, &port), peer;
  rec_init(r);
  r->buf = mem;
  r->buflen = len;
  w.r = r;
  CHECK_OK(tapio_create_connection(loop, "127.0.0.1", port, &rec_bproto, r,
                                   NULL, on_connected, &w));
  CHECK_OK(connect_wait(loop, &w));
  peer = raw_accept(loop, lfd);
  close(lfd);
  return peer;
}

/* Sends n pattern bytes and closes; checks they arrived whole. */
static void stream_through(size_t buflen, size_t n)
{
  tapio_loop *loop = new_loop();
  char *mem = malloc(buflen), *data = malloc(n), expect[64];
  rec r;
  int peer;
  CHECK(mem && data);
  peer = pair_buffered(loop, &r, mem, buflen);
  pattern_fill(data, n, 0);
  raw_send_all(loop, peer, data, n);
  close(peer);
  WAIT_FOR(loop, r.lost);
  snprintf(expect, sizeof expect, "made buf:%zu eof lost:0", n);
  CHECK_STR(r.log, expect);
  CHECK_EQ(r.nin, n);
  CHECK_EQ(pattern_check(r.in, r.nin, 0), -1);
  CHECK(r.ngetbuf >= (int)((n + buflen - 1) / buflen));
  free_loop(loop);
  rec_free(&r);
  free(mem);
  free(data);
}

static void buffered_seven_byte_buffer(void)
{
  stream_through(7, 100 * 1000);
}

static void buffered_one_byte_buffer(void)
{
  stream_through(1, 3000);
}

static void buffered_large_buffer(void)
{
  stream_through(1 << 20, 3u << 20);
}

/* get_buffer returning NULL or a zero length aborts with EBUFFER. */
static void no_memory(char *mem, size_t len)
{
  tapio_loop *loop = new_loop();
  exc_rec e = { 0 }; /* asyncio also reports it: keep stderr quiet */
  rec r;
  char buf[8];
  size_t n;
  int peer, rc;
  tapio_loop_set_exception_handler(loop, exc_record, &e);
  peer = pair_buffered(loop, &r, mem, len);
  raw_send_str(loop, peer, "hello");
  WAIT_FOR(loop, r.lost);
  CHECK_STR(r.log, "made lost:EBUFFER");
  CHECK(r.lost_msg[0] != '\0');
  CHECK_EQ(r.ngetbuf, 1);
  rc = raw_recv_until_eof(loop, peer, buf, sizeof buf, &n);
  CHECK(rc == 0 || rc == -ECONNRESET);
  end_pair(loop, &r, peer);
}

static void buffered_get_buffer_null(void)
{
  no_memory(NULL, 64);
}

static void buffered_get_buffer_zero_length(void)
{
  static char mem[64];
  no_memory(mem, 0);
}

typedef struct eof_count {
  int getbuf_at_eof;
} eof_count;

static void note_eof(rec *r, rec_event ev)
{
  eof_count *e = r->user;
  if (ev == EV_EOF)
    e->getbuf_at_eof = r->ngetbuf;
}

/* eof_received comes after the updates, and get_buffer is not called after
 * it, also while the transport stays half-open. */
static void buffered_eof_after_updates(void)
{
  tapio_loop *loop = new_loop();
  char mem[16], buf[8];
  eof_count e = { -1 };
  rec r;
  int peer;
  peer = pair_buffered(loop, &r, mem, sizeof mem);
  r.eof_ret = 1;
  r.hook = note_eof;
  r.user = &e;
  raw_send_str(loop, peer, "0123456789abcdefghij");
  CHECK(shutdown(peer, SHUT_WR) == 0);
  WAIT_FOR(loop, r.eof);
  CHECK_OK(tapio_transport_write(r.t, "ok", 2));
  raw_recv_n(loop, peer, buf, 2);
  spin(loop, 3);
  CHECK_OK(tapio_transport_close(r.t));
  WAIT_FOR(loop, r.lost);
  CHECK_STR(r.log, "made buf:20 eof lost:0");
  CHECK_EQ(r.ngetbuf, e.getbuf_at_eof);
  CHECK(memcmp(r.in, "0123456789abcdefghij", 20) == 0);
  end_pair(loop, &r, peer);
}

/* A protocol set from inside get_buffer takes the read: nothing goes into
 * the memory the replaced one returned, no buffer_updated follows, and the
 * bytes reach the new protocol (found by spec/chaos_spec.lua: they went
 * into the old buffer and were lost). */
typedef struct handover {
  rec *to;
  const tapio_protocol *proto;
} handover;

static void hand_over(rec *r, rec_event ev)
{
  handover *h = r->user;
  if (ev == EV_GETBUF && h->to) {
    CHECK_OK(tapio_transport_set_protocol(r->t, h->proto, h->to));
    h->to = NULL;
  }
}

static void handover_in_get_buffer(const tapio_protocol *proto,
                                   const char *expect)
{
  tapio_loop *loop = new_loop();
  char mem[16], mem2[16];
  rec r, to;
  handover h;
  int peer = pair_buffered(loop, &r, mem, sizeof mem);
  rec_init(&to);
  to.made = 1; /* it takes over a connection made already */
  to.t = r.t;
  to.buf = mem2;
  to.buflen = sizeof mem2;
  h.to = &to;
  h.proto = proto;
  r.hook = hand_over;
  r.user = &h;
  memset(mem, 0, sizeof mem);
  raw_send_str(loop, peer, "hello");
  WAIT_FOR(loop, to.nin == 5);
  CHECK_STR(r.log, "made");
  CHECK_EQ(r.ngetbuf, 1);
  CHECK(memcmp(to.in, "hello", 5) == 0);
  CHECK(mem[0] == 0); /* nothing was read into the replaced one's memory */
  CHECK_OK(tapio_transport_close(r.t));
  WAIT_FOR(loop, to.lost);
  CHECK_STR(to.log, expect);
  rec_free(&r);
  end_pair(loop, &to, peer);
}

static void buffered_set_plain_in_get_buffer(void)
{
  handover_in_get_buffer(&rec_proto, "data:5 lost:0");
}

static void buffered_set_buffered_in_get_buffer(void)
{
  handover_in_get_buffer(&rec_bproto, "buf:5 lost:0");
}

/* uvloop's test_epollhup: over a Unix socket the peer sends 51 bytes and
 * closes before the loop looks, so the data and the hang-up come in one
 * epoll event; a 50-byte buffer takes them in two updates, then eof (read
 * into a third buffer, as asyncio's recv_into finds it) and
 * connection_lost(0). */
static void buffered_data_with_hangup(void)
{
  tapio_loop *loop = new_loop();
  tapio_options *o = new_options(loop);
  conn_wait w = { 0 };
  char mem[50], data[51];
  rec r;
  int sv[2];
  rec_init(&r);
  r.buf = mem;
  r.buflen = sizeof mem;
  w.r = &r;
  CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
  pattern_fill(data, sizeof data, 0);
  CHECK(write(sv[1], data, sizeof data) == (ssize_t)sizeof data);
  CHECK(close(sv[1]) == 0);
  CHECK_OK(tapio_options_set_int(o, "sock", sv[0]));
  CHECK_OK(tapio_create_connection(loop, NULL, 0, &rec_bproto, &r, o,
                                   on_connected, &w));
  tapio_options_free(o);
  CHECK_OK(connect_wait(loop, &w));
  WAIT_FOR(loop, r.lost);
  CHECK_STR(r.log, "made buf:51 eof lost:0");
  CHECK_EQ(r.ngetbuf, 3);
  CHECK_EQ(pattern_check(r.in, r.nin, 0), -1);
  free_loop(loop);
  rec_free(&r);
}

TEST_MAIN(
  TEST(buffered_data_with_hangup),
  TEST(buffered_seven_byte_buffer),
  TEST(buffered_one_byte_buffer),
  TEST(buffered_large_buffer),
  TEST(buffered_get_buffer_null),
  TEST(buffered_get_buffer_zero_length),
  TEST(buffered_eof_after_updates),
  TEST(buffered_set_plain_in_get_buffer),
  TEST(buffered_set_buffered_in_get_buffer)
)
