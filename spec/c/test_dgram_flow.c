/* Datagram endpoints under load: what the socket refuses is queued, in
 * order and copied (D4, D5), with the write buffer's watermarks; close
 * flushes it (D9), abort drops it; datagrams larger than tapio receives
 * are reported, not truncated; reads are bounded per iteration (libuv
 * #4219) and go on until the socket is empty; replies sent from a batch
 * of datagrams go out in order; closing inside a batch. A Unix datagram socketpair makes a full socket easy. */
#include "dgram.h"

/* An endpoint on one end of a Unix datagram socketpair; *peer is the
 * other end (raw, nonblocking). */
static void pair_endpoint(tapio_loop *loop, drec *r, int *peer)
{
  tapio_options *o = new_options(loop);
  int sv[2], small = 4096;
  CHECK(socketpair(AF_UNIX, SOCK_DGRAM, 0, sv) == 0);
  CHECK(setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof small) == 0);
  raw_nonblock(sv[1]);
  CHECK_OK(tapio_options_set_int(o, "sock", sv[0]));
  drec_init(r);
  CHECK_OK(endpoint(loop, r, o));
  tapio_options_free(o);
  *peer = sv[1];
}

/* Sends numbered 100-byte datagrams from *next on until `more` of them
 * had to be queued; the caller's buffer changes right after each call. */
static void send_until_queued(tapio_transport *t, int *next, int more)
{
  char buf[100];
  int queued = 0;
  while (queued < more) {
    memset(buf, 'a' + *next % 26, sizeof buf);
    memcpy(buf, next, sizeof *next);
    CHECK_OK(tapio_transport_sendto(t, buf, sizeof buf, NULL, 0));
    memset(buf, '?', sizeof buf); /* D5: tapio kept a copy */
    (*next)++;
    if (tapio_transport_get_write_buffer_size(t) > 0)
      queued++;
    if (*next > 100000)
      FAIL("the socket never refused a datagram");
  }
}

/* Reads n numbered datagrams from fd and checks their order and bytes. */
static void read_numbered(tapio_loop *loop, int fd, int from, int n)
{
  char buf[128];
  int i, k;
  for (i = from; i < from + n; i++) {
    CHECK_EQ(raw_recv_dgram(loop, fd, buf, sizeof buf), 100);
    memcpy(&k, buf, sizeof k);
    CHECK_EQ(k, i);
    CHECK_EQ(buf[99], 'a' + i % 26);
  }
}

/* D4, D5: queued datagrams leave in order, behind the ones sent, as the
 * caller gave them; each counts its bytes plus 8 (asyncio 3.13). */
static void queue_in_order(void)
{
  tapio_loop *loop = new_loop();
  drec r;
  int peer, next = 0;
  pair_endpoint(loop, &r, &peer);
  send_until_queued(r.t, &next, 1);
  CHECK_EQ(tapio_transport_get_write_buffer_size(r.t), 108);
  send_until_queued(r.t, &next, 20);
  CHECK_EQ(tapio_transport_get_write_buffer_size(r.t), 21 * 108);
  CHECK_EQ(tapio_transport_get_stat(r.t, TAPIO_STAT_WRITE_BUFFER_PEAK),
           21 * 108);
  read_numbered(loop, peer, 0, next);
  WAIT_FOR(loop, tapio_transport_get_write_buffer_size(r.t) == 0);
  CHECK_EQ(tapio_transport_get_stat(r.t, TAPIO_STAT_BYTES_SENT),
           (uint64_t)next * 100);
  CHECK_STR(r.log, "made");
  close(peer);
  free_loop(loop);
}

/* pause_writing over the high-water mark (from inside sendto),
 * resume_writing at the low one, as for streams. */
static void watermarks(void)
{
  tapio_loop *loop = new_loop();
  drec r;
  int peer, next = 0;
  size_t low, high;
  pair_endpoint(loop, &r, &peer);
  CHECK_OK(tapio_transport_set_write_buffer_limits(r.t, 1000, 500));
  tapio_transport_get_write_buffer_limits(r.t, &low, &high);
  CHECK_EQ(low, 500);
  CHECK_EQ(high, 1000);
  while (r.npause == 0)
    send_until_queued(r.t, &next, 1);
  CHECK(tapio_transport_get_write_buffer_size(r.t) > 1000);
  CHECK_STR(r.log, "made pause");
  read_numbered(loop, peer, 0, next);
  WAIT_FOR(loop, strstr(r.log, "resume") != NULL);
  CHECK_STR(r.log, "made pause resume");
  close(peer);
  free_loop(loop);
}

/* D9: close with datagrams queued sends them all, then connection_lost. */
static void close_flushes(void)
{
  tapio_loop *loop = new_loop();
  drec r;
  int peer, next = 0;
  pair_endpoint(loop, &r, &peer);
  send_until_queued(r.t, &next, 10);
  CHECK_OK(tapio_transport_close(r.t));
  CHECK(tapio_transport_is_closing(r.t));
  spin(loop, 3);
  CHECK_EQ(r.lost, 0); /* still flushing */
  read_numbered(loop, peer, 0, next);
  WAIT_FOR(loop, r.lost);
  CHECK_STR(r.log, "made lost:0");
  close(peer);
  free_loop(loop);
}

/* abort drops what is queued: the peer gets only what had gone. */
static void abort_drops(void)
{
  tapio_loop *loop = new_loop();
  drec r;
  char buf[128];
  int peer, next = 0, got = 0;
  pair_endpoint(loop, &r, &peer);
  send_until_queued(r.t, &next, 10);
  CHECK_OK(tapio_transport_abort(r.t));
  WAIT_FOR(loop, r.lost);
  while (recv(peer, buf, sizeof buf, 0) > 0)
    got++;
  CHECK_EQ(got, next - 10);
  CHECK_STR(r.log, "made lost:0");
  close(peer);
  free_loop(loop);
}

/* A datagram larger than tapio receives (256 KiB on a Unix socket) is
 * reported with EMSGSIZE and dropped, never delivered cut short; the
 * next one comes as usual. */
static void too_large_reported(void)
{
  tapio_loop *loop = new_loop();
  static char big[300000];
  int big_buf = 1 << 21;
  drec r;
  int peer;
  pair_endpoint(loop, &r, &peer);
  if (setsockopt(peer, SOL_SOCKET, SO_SNDBUFFORCE, &big_buf,
                 sizeof big_buf) < 0 ||
      setsockopt(tapio_transport_get_fd(r.t), SOL_SOCKET, SO_RCVBUFFORCE,
                 &big_buf, sizeof big_buf) < 0)
    SKIP("SO_SNDBUFFORCE needs CAP_NET_ADMIN");
  CHECK(send(peer, big, sizeof big, 0) == (ssize_t)sizeof big);
  CHECK(send(peer, "ok", 2, 0) == 2);
  WAIT_FOR(loop, r.ndata == 1);
  CHECK_STR(r.log, "made err:EMSGSIZE data:2");
  CHECK_STR(r.err_msg, "a datagram of 300000 bytes is larger than the "
                       "262144 bytes tapio receives: dropped");
  close(peer);
  free_loop(loop);
}

/* libuv #4219: one iteration takes a bounded number of datagrams (64,
 * read one by one or by recvmmsg), so a flooded endpoint cannot
 * starve the rest of the loop; the next iterations take the rest. */
static void bounded_reads(void)
{
  tapio_loop *loop = new_loop();
  drec s;
  int i, port = bound_endpoint(loop, &s, "127.0.0.1");
  int fd = raw_udp(AF_INET, "127.0.0.1", NULL);
  for (i = 0; i < 100; i++)
    raw_sendto(fd, "x", 1, AF_INET, "127.0.0.1", port);
  CHECK_OK(tapio_loop_run_once(loop, 1));
  CHECK(s.ndata > 1 && s.ndata <= 64);
  WAIT_FOR(loop, s.ndata == 100);
  close(fd);
  free_loop(loop);
}

/* Replies sent while a batch is delivered (gathered, then one sendmmsg)
 * reach the peer complete and in order. */
static void replies_from_a_batch(void)
{
  tapio_loop *loop = new_loop();
  drec s;
  char buf[64], want[64];
  int i, port = bound_endpoint(loop, &s, "127.0.0.1");
  int fd = raw_udp(AF_INET, "127.0.0.1", NULL);
  s.echo = 1;
  for (i = 0; i < 40; i++) {
    snprintf(buf, sizeof buf, "n%d", i);
    raw_sendto(fd, buf, strlen(buf), AF_INET, "127.0.0.1", port);
  }
  for (i = 0; i < 40; i++) {
    size_t n = raw_recv_dgram(loop, fd, buf, sizeof buf - 1);
    buf[n] = '\0';
    snprintf(want, sizeof want, "resp:n%d", i);
    CHECK_STR(buf, want);
  }
  CHECK_EQ(s.ndata, 40);
  close(fd);
  free_loop(loop);
}

/* Closing (or aborting) inside datagram_received: nothing more is
 * delivered, and the replies sent before the close still go, in order.
 * At the first datagram (read alone, its reply sent at once) and at the
 * 20th of 40 waiting (the first wake-up reads them one by one, then in
 * recvmmsg batches: the 20th ends one, its replies gathered until the
 * close sends them). */
static void close_inside_batch(int abort_it, int at)
{
  tapio_loop *loop = new_loop();
  drec s;
  char buf[64], want[64];
  int i, port = bound_endpoint(loop, &s, "127.0.0.1");
  int fd = raw_udp(AF_INET, "127.0.0.1", NULL);
  s.echo = 1;
  s.close_on_data = abort_it ? 2 : 1;
  s.close_at = at;
  for (i = 0; i < 40; i++) {
    snprintf(buf, sizeof buf, "q%d", i);
    raw_sendto(fd, buf, strlen(buf), AF_INET, "127.0.0.1", port);
  }
  WAIT_FOR(loop, s.lost);
  CHECK_EQ(s.ndata, at);
  CHECK_STR(s.log + strlen(s.log) - 7, " lost:0");
  for (i = 0; i < at; i++) {
    size_t n = raw_recv_dgram(loop, fd, buf, sizeof buf - 1);
    buf[n] = '\0';
    snprintf(want, sizeof want, "resp:q%d", i);
    CHECK_STR(buf, want);
  }
  close(fd);
  free_loop(loop);
}

static void close_inside_batch_close(void)
{
  close_inside_batch(0, 1);
  close_inside_batch(0, 20);
}

static void close_inside_batch_abort(void)
{
  close_inside_batch(1, 1);
  close_inside_batch(1, 20);
}

/* Reading goes on until the socket is empty, as a plain libev loop
 * reads: a datagram that arrives while datagram_received runs (as the
 * next request of a peer answered at once would) is delivered in the
 * same iteration, without another wait for readiness. */
static void reads_until_empty(void)
{
  tapio_loop *loop = new_loop();
  drec s;
  int port = bound_endpoint(loop, &s, "127.0.0.1");
  int fd = raw_udp(AF_INET, "127.0.0.1", NULL);
  s.send_fd = fd;
  s.send_port = port;
  raw_sendto(fd, "first", 5, AF_INET, "127.0.0.1", port);
  CHECK_OK(tapio_loop_run_once(loop, 1));
  CHECK_STR(s.log, "made data:5 data:4");
  close(fd);
  free_loop(loop);
}

TEST_MAIN(TEST(queue_in_order), TEST(watermarks), TEST(close_flushes),
          TEST(abort_drops), TEST(too_large_reported), TEST(bounded_reads),
          TEST(replies_from_a_batch), TEST(close_inside_batch_close),
          TEST(close_inside_batch_abort), TEST(reads_until_empty))
