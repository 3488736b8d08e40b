/* Datagram endpoints' reading pauses: pause_reading inside
 * datagram_received stops the delivery at once, also inside a batch
 * already read (recvmmsg), whose rest comes first after resume_reading,
 * in order, from the loop and never from inside resume_reading; pausing
 * twice and resuming unpaused are harmless; close and abort drop what is
 * held; sending goes on while paused. The kernel's drops of a paused
 * endpoint's full socket (TAPIO_STAT_DATAGRAMS_DROPPED); ICMP errors
 * heard while paused (on a slowed loopback of the test's own); and the
 * same rules on a virtual loop's endpoints, whose receive buffer drops
 * too. */
#include "dgram.h"

#include <net/if.h>
#include <sched.h>
#include <sys/ioctl.h>

#define MAXN 20000

/* An endpoint's numbered datagrams (the number in the first 4 bytes), in
 * the order they came, and when it pauses. */
typedef struct prec {
  tapio_transport *t;
  int made, lost, lost_code, nerr, last_err;
  int n, seq[MAXN];
  int pause_at[2];   /* pause in the datagram_received of the n-th */
  int pause_in_made;
  int retain;        /* retain the transport in connection_made */
  int close_at;      /* close (or abort: abort_it) in the n-th's */
  int abort_it;
  int in_resume;     /* the test is inside resume_reading */
  int bad;           /* a callback where none may come */
} prec;

static void p_made(void *ud, tapio_transport *t)
{
  prec *p = ud;
  p->made = 1;
  p->t = t;
  if (p->retain)
    CHECK_OK(tapio_transport_retain(t));
  if (p->pause_in_made)
    CHECK_OK(tapio_transport_pause_reading(t));
}

static void p_lost(void *ud, tapio_transport *t, int code, const char *msg)
{
  prec *p = ud;
  (void)t;
  (void)msg;
  p->lost = 1;
  p->lost_code = code;
  p->t = NULL;
}

static void p_data(void *ud, tapio_transport *t, const char *data,
                   size_t len, const void *addr, size_t addrlen)
{
  prec *p = ud;
  int k = -1;
  (void)addr;
  (void)addrlen;
  if (p->in_resume || p->lost || !tapio_transport_is_reading(t))
    p->bad++;
  if (len >= sizeof k)
    memcpy(&k, data, sizeof k);
  if (p->n < MAXN)
    p->seq[p->n] = k;
  p->n++;
  if (p->n == p->pause_at[0] || p->n == p->pause_at[1])
    CHECK_OK(tapio_transport_pause_reading(t));
  if (p->n == p->close_at)
    CHECK_OK(p->abort_it ? tapio_transport_abort(t)
                         : tapio_transport_close(t));
}

static void p_error(void *ud, tapio_transport *t, int code, const char *msg)
{
  prec *p = ud;
  (void)t;
  (void)msg;
  if (p->in_resume)
    p->bad++;
  p->nerr++;
  p->last_err = code;
  if (p->n < MAXN)
    p->seq[p->n] = -code; /* in its place among the datagrams */
  p->n++;
}

static const tapio_datagram_protocol prec_proto = {
  .size = sizeof(tapio_datagram_protocol),
  .connection_made = p_made,
  .connection_lost = p_lost,
  .datagram_received = p_data,
  .error_received = p_error,
};

static void prec_init(prec *p)
{
  memset(p, 0, sizeof *p);
}

/* Makes p's endpoint with o (freed); waits for it. */
static void pendpoint(tapio_loop *loop, prec *p, tapio_options *o)
{
  conn_wait w = { 0 };
  CHECK_OK(tapio_create_datagram_endpoint(loop, &prec_proto, p, o,
                                          on_connected, &w));
  if (tapio_loop_is_virtual(loop))
    CHECK_OK(tapio_loop_run_until_idle(loop));
  else
    WAIT_FOR(loop, w.done);
  CHECK_OK(w.status);
  CHECK(p->made && p->t == w.t);
  tapio_options_free(o);
}

/* p's endpoint on one end of a Unix datagram socketpair (its sender waits
 * rather than the kernel dropping); the other end, raw, in *peer. */
static void pair(tapio_loop *loop, prec *p, int *peer)
{
  tapio_options *o = new_options(loop);
  int sv[2];
  CHECK(socketpair(AF_UNIX, SOCK_DGRAM, 0, sv) == 0);
  raw_nonblock(sv[1]);
  CHECK_OK(tapio_options_set_int(o, "sock", sv[0]));
  pendpoint(loop, p, o);
  *peer = sv[1];
}

/* Datagram number k, len bytes (at least 4), sent on fd (connected). */
static void send_numbered(int fd, int k, size_t len)
{
  char buf[2048];
  CHECK(len >= sizeof k && len <= sizeof buf);
  memset(buf, 'a' + k % 26, len);
  memcpy(buf, &k, sizeof k);
  CHECK(send(fd, buf, len, 0) == (ssize_t)len);
}

/* p got 0..n-1, each once, in order. */
static void check_in_order(const prec *p, int n)
{
  int i;
  CHECK_EQ(p->n, n);
  for (i = 0; i < n && i < MAXN; i++)
    if (p->seq[i] != i)
      FAIL("datagram %d is number %d", i, p->seq[i]);
  CHECK_EQ(p->bad, 0);
}

/* resume_reading as a user calls it: nothing may be delivered inside. */
static void resume(prec *p)
{
  int before = p->n;
  p->in_resume = 1;
  CHECK_OK(tapio_transport_resume_reading(p->t));
  p->in_resume = 0;
  CHECK_EQ(p->n, before);
  CHECK_EQ(tapio_transport_is_reading(p->t), 1);
}

/* Resumes, then waits for all n, in order. */
static void resume_all(tapio_loop *loop, prec *p, int n)
{
  resume(p);
  WAIT_FOR(loop, p->n == n);
  check_in_order(p, n);
}

/* Closes p's endpoint (if still open), waits for its end, frees. */
static void finish(tapio_loop *loop, prec *p, int peer)
{
  if (p->t)
    CHECK_OK(tapio_transport_close(p->t));
  WAIT_FOR(loop, p->lost);
  if (peer >= 0)
    close(peer);
  free_loop(loop);
}

/* ---- Real sockets ------------------------------------------------------- */

/* p's endpoint on a socketpair with 40 numbered datagrams waiting; back
 * when it paused in the datagram_received of the pause_at[0]-th. */
static void forty_waiting(tapio_loop *loop, prec *p, int *peer)
{
  int i;
  pair(loop, p, peer);
  for (i = 0; i < 40; i++)
    send_numbered(*peer, i, 64);
  WAIT_FOR(loop, p->n == p->pause_at[0]);
}

/* 40 datagrams wait; the first wake-up reads 8 one by one, then batches
 * of 4 (the 9th to 12th) and 8 (13th to 20th): a pause at the 14th
 * leaves 6 of that batch held. Nothing comes while paused, however long
 * the loop runs; after resume, first the held ones, then the socket's,
 * in order, none lost. */
static void pause_inside_batch(void)
{
  tapio_loop *loop = new_loop();
  prec p;
  int peer;
  prec_init(&p);
  p.pause_at[0] = 14;
  forty_waiting(loop, &p, &peer);
  spin(loop, 5);
  CHECK_EQ(p.n, 14);
  CHECK_EQ(tapio_transport_is_reading(p.t), 0);
  CHECK_EQ(tapio_transport_get_stat(p.t, TAPIO_STAT_BYTES_RECEIVED),
           14 * 64);
  resume_all(loop, &p, 40);
  finish(loop, &p, peer);
}

/* Paused again while the held ones are delivered (at the 17th, 3 after
 * the first pause at the 14th): the rest waits again. */
static void pause_while_held_go(void)
{
  tapio_loop *loop = new_loop();
  prec p;
  int peer;
  prec_init(&p);
  p.pause_at[0] = 14;
  p.pause_at[1] = 17;
  forty_waiting(loop, &p, &peer);
  resume(&p);
  WAIT_FOR(loop, p.n == 17);
  spin(loop, 5);
  CHECK_EQ(p.n, 17);
  resume_all(loop, &p, 40);
  finish(loop, &p, peer);
}

/* Iterations of the loop (each waiting for an event) in secs: a handful
 * unless a watcher fires without end. */
static int iterations_in(tapio_loop *loop, double secs)
{
  deadline d;
  int n = 0;
  deadline_start(&d, loop, secs);
  while (!d.expired) {
    CHECK_OK(tapio_loop_run_once(loop, 1));
    n++;
  }
  deadline_end(&d);
  return n;
}

/* As on streams: a second pause, a resume while reading, both on a
 * closing endpoint, return 0 and change nothing; the paused time counts;
 * a pause in connection_made holds everything from the start, without
 * watching the socket (the loop sleeps with a datagram waiting). */
static void idempotent(void)
{
  tapio_loop *loop = new_loop();
  prec p;
  int peer;
  prec_init(&p);
  p.pause_in_made = 1;
  pair(loop, &p, &peer);
  CHECK_EQ(tapio_transport_is_reading(p.t), 0);
  CHECK_OK(tapio_transport_pause_reading(p.t));
  send_numbered(peer, 0, 8);
  CHECK(iterations_in(loop, 0.02) < 10);
  CHECK_EQ(p.n, 0);
  CHECK(tapio_transport_get_stat(p.t, TAPIO_STAT_READ_PAUSED_USEC) >= 20000);
  resume(&p);
  CHECK_OK(tapio_transport_resume_reading(p.t));
  WAIT_FOR(loop, p.n == 1);
  CHECK_OK(tapio_transport_close(p.t));
  CHECK_OK(tapio_transport_pause_reading(p.t));
  CHECK_OK(tapio_transport_resume_reading(p.t));
  CHECK_EQ(tapio_transport_is_reading(p.t), 0);
  check_in_order(&p, 1);
  finish(loop, &p, peer);
}

/* close, or abort, with a batch's rest held: connection_lost(0), and the
 * held ones are never delivered (ASan and valgrind see them freed). */
static void end_while_held(int abort_it)
{
  tapio_loop *loop = new_loop();
  prec p;
  int peer;
  prec_init(&p);
  p.pause_at[0] = 14;
  forty_waiting(loop, &p, &peer);
  CHECK_OK(abort_it ? tapio_transport_abort(p.t)
                    : tapio_transport_close(p.t));
  CHECK_OK(tapio_transport_resume_reading(p.t));
  WAIT_FOR(loop, p.lost);
  CHECK_EQ(p.lost_code, 0);
  spin(loop, 3);
  check_in_order(&p, 14);
  finish(loop, &p, peer);
}

static void close_while_held(void) { end_while_held(0); }
static void abort_while_held(void) { end_while_held(1); }

/* Resumed, then closed (in the first held one's callback) before the
 * held ones all went: the rest is dropped, connection_lost comes. */
static void close_while_held_go(void)
{
  tapio_loop *loop = new_loop();
  prec p;
  int peer;
  prec_init(&p);
  p.pause_at[0] = 14;
  p.close_at = 15;
  forty_waiting(loop, &p, &peer);
  resume(&p);
  WAIT_FOR(loop, p.lost);
  check_in_order(&p, 15);
  finish(loop, &p, peer);
}

/* While paused, sendto sends at once, and what the socket refused is
 * flushed as the peer reads; the peer's datagrams wait for the resume. */
static void sends_while_paused(void)
{
  tapio_loop *loop = new_loop();
  prec p;
  char buf[128];
  int peer, small = 4096, sent = 0, got = 0;
  prec_init(&p);
  p.pause_in_made = 1;
  pair(loop, &p, &peer);
  CHECK(setsockopt(tapio_transport_get_fd(p.t), SOL_SOCKET, SO_SNDBUF,
                   &small, sizeof small) == 0);
  send_numbered(peer, 0, 8);
  while (tapio_transport_get_write_buffer_size(p.t) == 0) {
    memset(buf, 'x', sizeof buf);
    memcpy(buf, &sent, sizeof sent);
    CHECK_OK(tapio_transport_sendto(p.t, buf, 100, NULL, 0));
    if (++sent > 100000)
      FAIL("the socket never refused a datagram");
  }
  while (got < sent) {
    int k;
    CHECK_EQ(raw_recv_dgram(loop, peer, buf, sizeof buf), 100);
    memcpy(&k, buf, sizeof k);
    CHECK_EQ(k, got);
    got++;
  }
  WAIT_FOR(loop, tapio_transport_get_write_buffer_size(p.t) == 0);
  CHECK_EQ(p.n, 0);
  resume_all(loop, &p, 1);
  finish(loop, &p, peer);
}

/* A network namespace of this test's own whose loopback sends through a
 * slow queue (tc's token bucket, 100 kbit/s), so that a datagram socket
 * fills and an endpoint keeps datagrams queued for a while. Skipped
 * without the rights (root) or the queue. */
static void own_slow_loopback(void)
{
  struct ifreq ifr;
  int fd;
  if (unshare(CLONE_NEWNET) != 0)
    SKIP("no network namespace of its own (needs root)");
  fd = socket(AF_INET, SOCK_DGRAM, 0);
  CHECK(fd >= 0);
  memset(&ifr, 0, sizeof ifr);
  strcpy(ifr.ifr_name, "lo");
  CHECK(ioctl(fd, SIOCGIFFLAGS, &ifr) == 0);
  ifr.ifr_flags |= IFF_UP;
  CHECK(ioctl(fd, SIOCSIFFLAGS, &ifr) == 0);
  close(fd);
  if (system("tc qdisc add dev lo root tbf rate 100kbit burst 1600 "
             "latency 10s 2>/dev/null") != 0)
    SKIP("no tc, or no tbf queue in this kernel");
}

/* An endpoint paused for reading, sending to a closed port with
 * datagrams queued: the ICMP errors keep the socket in EPOLLERR, which
 * libev hands to the write watcher; they reach error_received while
 * paused, and the loop neither spins on them (a few iterations per
 * datagram sent, not thousands) nor loses a queued datagram. */
static void icmp_while_paused(void)
{
  tapio_loop *loop;
  prec p;
  char buf[100], addr[TAPIO_ADDR_MAX];
  size_t alen;
  int small = 4096, sent = 0, iterations = 0, queued;
  deadline d;
  own_slow_loopback();
  loop = new_loop();
  prec_init(&p);
  p.pause_in_made = 1;
  pendpoint(loop, &p, dgram_opts(loop, "127.0.0.1", 0, NULL, 0));
  CHECK(setsockopt(tapio_transport_get_fd(p.t), SOL_SOCKET, SO_SNDBUF,
                   &small, sizeof small) == 0);
  alen = addr_of("127.0.0.1", closed_udp_port(), addr);
  memset(buf, 'x', sizeof buf);
  for (queued = 0; queued < 30; sent++) {
    CHECK_OK(tapio_transport_sendto(p.t, buf, sizeof buf, addr, alen));
    queued += tapio_transport_get_write_buffer_size(p.t) > 0;
    if (sent > 100000)
      FAIL("the socket never refused a datagram");
  }
  deadline_start(&d, loop, 20);
  while (!d.expired && tapio_transport_get_write_buffer_size(p.t) > 0) {
    CHECK_OK(tapio_loop_run_once(loop, 1));
    iterations++;
  }
  deadline_end(&d);
  CHECK_EQ(tapio_transport_get_write_buffer_size(p.t), 0);
  CHECK(p.nerr > 0);
  CHECK_ERR(p.last_err, TAPIO_ECONNREFUSED);
  CHECK_EQ(p.n, p.nerr); /* errors only, each in its place */
  CHECK_EQ(p.bad, 0);
  if (iterations > 4 * sent + 100)
    FAIL("the loop spun while the errors waited");
  CHECK(tapio_transport_is_reading(p.t) == 0);
  resume(&p);
  finish(loop, &p, -1);
}

/* A datagram too large to receive, in a batch's held rest: its EMSGSIZE
 * comes in its place, between its neighbours. */
static void too_large_held(void)
{
  tapio_loop *loop = new_loop();
  static char big[300000];
  int big_buf = 1 << 21, i, peer;
  prec p;
  prec_init(&p);
  p.pause_at[0] = 10; /* the batch of the 9th to the 12th */
  pair(loop, &p, &peer);
  if (setsockopt(peer, SOL_SOCKET, SO_SNDBUFFORCE, &big_buf,
                 sizeof big_buf) < 0 ||
      setsockopt(tapio_transport_get_fd(p.t), SOL_SOCKET, SO_RCVBUFFORCE,
                 &big_buf, sizeof big_buf) < 0)
    SKIP("SO_SNDBUFFORCE needs CAP_NET_ADMIN");
  for (i = 0; i < 10; i++)
    send_numbered(peer, i, 64);
  CHECK(send(peer, big, sizeof big, 0) == (ssize_t)sizeof big);
  for (i = 11; i < 20; i++)
    send_numbered(peer, i, 64);
  WAIT_FOR(loop, p.n == 10);
  spin(loop, 3);
  CHECK_EQ(p.n, 10);
  resume(&p);
  WAIT_FOR(loop, p.n == 20);
  CHECK_EQ(p.nerr, 1);
  CHECK_EQ(p.seq[10], -TAPIO_EMSGSIZE);
  p.seq[10] = 10;
  check_in_order(&p, 20);
  finish(loop, &p, peer);
}

/* A UDP socket with the smallest receive buffer, given as "sock", paused
 * from connection_made, flooded until the kernel drops: the figure
 * counts them; after resume, what the socket kept arrives in order, and
 * with the drops makes what was sent. A retained endpoint still tells
 * the figure after its end. */
static void kernel_drops(void)
{
  tapio_loop *loop = new_loop();
  tapio_options *o = new_options(loop);
  int port, fd = raw_udp(AF_INET, "127.0.0.1", &port), small = 1;
  int out = raw_udp(AF_INET, "127.0.0.1", NULL), sent = 0;
  struct sockaddr_storage ss;
  socklen_t alen = raw_addr(AF_INET, "127.0.0.1", port, &ss);
  uint64_t drops;
  tapio_transport *t;
  prec p;
  CHECK(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small) == 0);
  CHECK(connect(out, (struct sockaddr *)&ss, alen) == 0);
  CHECK_OK(tapio_options_set_int(o, "sock", fd));
  prec_init(&p);
  p.pause_in_made = 1;
  p.retain = 1;
  pendpoint(loop, &p, o);
  t = p.t;
  CHECK_EQ(tapio_transport_get_stat(p.t, TAPIO_STAT_DATAGRAMS_DROPPED), 0);
  while (tapio_transport_get_stat(p.t, TAPIO_STAT_DATAGRAMS_DROPPED) == 0) {
    send_numbered(out, sent++, 200);
    if (sent == MAXN)
      FAIL("no datagram was dropped");
  }
  CHECK_EQ(p.n, 0);
  resume(&p);
  /* the last one sent, or a few more where the kernel put the delivery
   * off to its softirq thread */
  WAIT_FOR(loop, (uint64_t)p.n + tapio_transport_get_stat(p.t,
                   TAPIO_STAT_DATAGRAMS_DROPPED) == (uint64_t)sent);
  drops = tapio_transport_get_stat(p.t, TAPIO_STAT_DATAGRAMS_DROPPED);
  spin(loop, 3);
  check_in_order(&p, sent - (int)drops);
  CHECK_OK(tapio_transport_close(p.t));
  WAIT_FOR(loop, p.lost);
  CHECK_ERR(tapio_transport_get_fd(t), TAPIO_ECLOSED);
  CHECK_EQ(tapio_transport_get_stat(t, TAPIO_STAT_DATAGRAMS_DROPPED), drops);
  tapio_transport_release(t);
  close(out);
  free_loop(loop);
}

/* The figure for the other kinds: a Unix datagram socket's is 0 (its
 * sender waits instead), a stream's is unknown (UINT64_MAX). */
static void drops_of_kinds(void)
{
  tapio_loop *loop = new_loop();
  conn_wait w = { 0 };
  prec p;
  rec r;
  int peer, sv[2];
  prec_init(&p);
  pair(loop, &p, &peer);
  CHECK_EQ(tapio_transport_get_stat(p.t, TAPIO_STAT_DATAGRAMS_DROPPED), 0);
  CHECK_OK(tapio_transport_close(p.t));
  WAIT_FOR(loop, p.lost);
  close(peer);
  CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
  rec_init(&r);
  CHECK_OK(tapio_connect_accepted_socket(loop, sv[0], &rec_proto, &r, NULL,
                                         on_connected, &w));
  WAIT_FOR(loop, w.done && r.t != NULL);
  CHECK_EQ(tapio_transport_get_stat(r.t, TAPIO_STAT_DATAGRAMS_DROPPED),
           UINT64_MAX);
  CHECK_OK(tapio_transport_close(r.t));
  WAIT_FOR(loop, r.lost);
  end_pair(loop, &r, sv[1]);
}

/* ---- A virtual loop's endpoints ----------------------------------------- */

/* Ends both endpoints of vpair and the loop. */
static void vfinish(tapio_loop *loop, prec *s, prec *c)
{
  if (s->t)
    CHECK_OK(tapio_transport_close(s->t));
  CHECK_OK(tapio_transport_close(c->t));
  CHECK_OK(tapio_loop_run_until_idle(loop));
  CHECK(s->lost && c->lost);
  free_loop(loop);
}

/* Server s at 127.0.0.1 and client c connected to it, on virtual loop. */
static void vpair(tapio_loop *loop, prec *s, prec *c)
{
  int port;
  prec_init(s);
  prec_init(c);
  pendpoint(loop, s, dgram_opts(loop, "127.0.0.1", 0, NULL, 0));
  CHECK_OK(tapio_transport_get_sockname(s->t, NULL, 0, &port, NULL));
  pendpoint(loop, c, dgram_opts(loop, NULL, 0, "127.0.0.1", port));
}

/* c sends numbers from..to-1, len bytes each; the loop runs until all
 * that can happen has. */
static void vsend(tapio_loop *loop, prec *c, int from, int to, size_t len)
{
  static char buf[2048];
  int k;
  for (k = from; k < to; k++) {
    memcpy(buf, &k, sizeof k);
    CHECK_OK(tapio_transport_sendto(c->t, buf, len, NULL, 0));
  }
  CHECK_OK(tapio_loop_run_until_idle(loop));
}

/* What arrives while paused (also after a pause inside the delivery of
 * one of several arriving at once) is held; after resume it comes from
 * the loop, in order, before what arrives later. */
static void virtual_pause(void)
{
  tapio_loop *loop = new_virtual();
  prec s, c;
  vpair(loop, &s, &c);
  s.pause_at[0] = 3;
  vsend(loop, &c, 0, 10, 16);
  CHECK_EQ(s.n, 3);
  vsend(loop, &c, 10, 12, 16);
  CHECK_EQ(s.n, 3);
  resume(&s);
  vsend(loop, &c, 12, 15, 16);
  check_in_order(&s, 15);
  vfinish(loop, &s, &c);
}

/* Paused, a virtual endpoint holds up to its receive buffer (212992
 * bytes, as held: each 1000-byte datagram takes a little more) and
 * drops the rest, counted; after resume the held ones come in order. */
static void virtual_drops(void)
{
  tapio_loop *loop = new_virtual();
  prec s, c;
  uint64_t drops;
  vpair(loop, &s, &c);
  CHECK_OK(tapio_transport_pause_reading(s.t));
  vsend(loop, &c, 0, 300, 1000);
  drops = tapio_transport_get_stat(s.t, TAPIO_STAT_DATAGRAMS_DROPPED);
  CHECK(drops > 90 && drops < 300 - 200);
  CHECK_EQ(s.n, 0);
  resume(&s);
  CHECK_OK(tapio_loop_run_until_idle(loop));
  check_in_order(&s, 300 - (int)drops);
  vsend(loop, &c, 300 - (int)drops, 300 - (int)drops + 1, 1000);
  check_in_order(&s, 300 - (int)drops + 1);
  CHECK_EQ(tapio_transport_get_stat(c.t, TAPIO_STAT_DATAGRAMS_DROPPED), 0);
  vfinish(loop, &s, &c);
}

/* close with datagrams held: none delivered, all freed. */
static void virtual_close_held(void)
{
  tapio_loop *loop = new_virtual();
  prec s, c;
  vpair(loop, &s, &c);
  s.pause_at[0] = 2;
  vsend(loop, &c, 0, 10, 16);
  CHECK_EQ(s.n, 2);
  resume(&s);
  CHECK_OK(tapio_transport_abort(s.t));
  vfinish(loop, &s, &c);
  check_in_order(&s, 2);
}

TEST_MAIN(TEST(pause_inside_batch), TEST(pause_while_held_go),
          TEST(idempotent), TEST(close_while_held), TEST(abort_while_held),
          TEST(close_while_held_go), TEST(sends_while_paused),
          TEST(icmp_while_paused),
          TEST(too_large_held), TEST(kernel_drops), TEST(drops_of_kinds),
          TEST(virtual_pause), TEST(virtual_drops),
          TEST(virtual_close_held))
