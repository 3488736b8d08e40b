/* The virtual network's datagrams: create_datagram_endpoint on a virtual
 * loop makes endpoints with no socket, bound at virtual addresses, that
 * exchange datagrams in memory on the loop's clock: the echo round trip,
 * ephemeral ports and EADDRINUSE, the connected endpoint's rules,
 * ECONNREFUSED to error_received with the endpoint still receiving,
 * wildcard binds, broadcasts, flow control at the capacity, close and
 * abort, and the seeded faults (loss, duplication, reordering, delay,
 * jitter), each replayed from its seed. A client's 3-second retransmit timer runs in
 * microseconds. */
#include "dgram.h"

/* Makes an endpoint for r with o on the virtual loop; its status. */
static int vendpoint(tapio_loop *loop, drec *r, tapio_options *o)
{
  conn_wait w = { 0 };
  CHECK_OK(tapio_create_datagram_endpoint(loop, &drec_proto, r, o,
                                          on_connected, &w));
  CHECK_EQ(w.done, 0);
  CHECK_STR(r->log, "");
  CHECK_OK(tapio_loop_run_until_idle(loop));
  CHECK_EQ(w.done, 1);
  if (w.status == 0)
    CHECK(r->made && r->t == w.t);
  else
    CHECK_STR(r->log, "");
  tapio_options_free(o);
  return w.status;
}

/* An endpoint of r at host:port (port 0: ephemeral); its port. */
static int vbound(tapio_loop *loop, drec *r, const char *host, int port)
{
  int got;
  drec_init(r);
  CHECK_OK(vendpoint(loop, r, dgram_opts(loop, host, port, NULL, 0)));
  CHECK_OK(tapio_transport_get_sockname(r->t, NULL, 0, &got, NULL));
  return got;
}

/* An endpoint of r connected to host:port. */
static void vconnected(tapio_loop *loop, drec *r, const char *host, int port)
{
  drec_init(r);
  CHECK_OK(vendpoint(loop, r, dgram_opts(loop, NULL, 0, host, port)));
}

/* A server s at an ephemeral port of 127.0.0.1 and a client c connected
 * to it. */
static void vpair(tapio_loop *loop, drec *s, drec *c)
{
  vconnected(loop, c, "127.0.0.1", vbound(loop, s, "127.0.0.1", 0));
}

/* Datagrams of lengths from..to from t (to its peer). */
static void send_lengths(tapio_transport *t, int from, int to)
{
  static char d[256];
  int i;
  for (i = from; i <= to; i++)
    CHECK_OK(tapio_transport_sendto(t, d, (size_t)i, NULL, 0));
}

static void sendto_host(tapio_transport *t, const char *data, size_t len,
                        const char *host, int port)
{
  char a[TAPIO_ADDR_MAX];
  size_t alen = addr_of(host, port, a);
  CHECK_OK(tapio_transport_sendto(t, data, len, a, alen));
}

static void check_name(tapio_transport *t, int peer, const char *host,
                       int port)
{
  char h[64];
  int p;
  if (peer)
    CHECK_OK(tapio_transport_get_peername(t, h, sizeof h, &p, NULL));
  else
    CHECK_OK(tapio_transport_get_sockname(t, h, sizeof h, &p, NULL));
  CHECK_STR(h, host);
  CHECK_EQ(p, port);
}

static void check_from(const drec *r, const char *host, int port)
{
  char h[64];
  int p;
  CHECK_OK(tapio_addr_format(r->from, r->from_len, h, sizeof h, &p, NULL));
  CHECK_STR(h, host);
  CHECK_EQ(p, port);
}

static void close_all(tapio_loop *loop, drec *a, drec *b)
{
  if (a && a->t)
    CHECK_OK(tapio_transport_close(a->t));
  if (b && b->t)
    CHECK_OK(tapio_transport_close(b->t));
  CHECK_OK(tapio_loop_run_until_idle(loop));
}

/* Every endpoint gone, the loop goes. */
static void free_vloop(tapio_loop *loop)
{
  CHECK_EQ(tapio_loop_transport_count(loop), 0);
  free_loop(loop);
}

/* ---- Round trips ---------------------------------------------------------- */

/* examples/udp_echo_*'s exchange: the server answers "resp:" + data to
 * the client's address; both see the other's virtual address; nothing is
 * delivered inside sendto, and no descriptor exists. */
static void echo_round_trip(const char *host, const char *wild)
{
  tapio_loop *loop = new_virtual();
  drec s, c;
  int port = vbound(loop, &s, host, 0), cport;
  s.echo = 1;
  CHECK_EQ(port, 32768);
  vconnected(loop, &c, host, port);
  CHECK_OK(tapio_transport_get_sockname(c.t, NULL, 0, &cport, NULL));
  CHECK_EQ(cport, 32769);
  check_name(c.t, 0, host, cport); /* bound at its source, as Linux */
  check_name(c.t, 1, host, port);
  CHECK(tapio_transport_get_peername(s.t, NULL, 0, NULL, NULL) < 0);
  CHECK_ERR(tapio_transport_get_fd(c.t), TAPIO_ENOTSUP);
  CHECK_EQ(tapio_transport_get_kind(c.t), TAPIO_TRANSPORT_DATAGRAM);
  CHECK_EQ(tapio_loop_transport_count(loop), 2);
  CHECK_OK(tapio_transport_sendto(c.t, "xxx", 3, NULL, 0));
  CHECK_STR(s.log, "made");
  CHECK_EQ(tapio_datagram_in_flight(c.t), 3);
  CHECK_OK(tapio_loop_run_until_idle(loop));
  CHECK_STR(s.log, "made data:3");
  CHECK_STR(c.log, "made data:8");
  CHECK(memcmp(c.last, "resp:xxx", 8) == 0);
  check_from(&s, host, cport);
  check_from(&c, host, port);
  CHECK_EQ(tapio_transport_get_stat(c.t, TAPIO_STAT_BYTES_SENT), 3);
  CHECK_EQ(tapio_transport_get_stat(c.t, TAPIO_STAT_BYTES_RECEIVED), 8);
  CHECK_EQ(tapio_loop_time(loop), 0); /* no time passed */
  close_all(loop, &c, &s);
  CHECK_STR(s.log, "made data:3 lost:0");
  CHECK_STR(c.log, "made data:8 lost:0");
  (void)wild;
  free_vloop(loop);
}

static void echo_ipv4(void) { echo_round_trip("127.0.0.1", "0.0.0.0"); }
static void echo_ipv6(void) { echo_round_trip("::1", "::"); }

/* Empty datagrams are delivered; the largest IPv4 and IPv6 ones too, one
 * byte more is EMSGSIZE and sends nothing. */
static void sizes(void)
{
  tapio_loop *loop = new_virtual();
  static char big[65528];
  drec s, c, s6, c6;
  int port = vbound(loop, &s, "127.0.0.1", 0);
  int port6 = vbound(loop, &s6, "::1", 0);
  vconnected(loop, &c, "127.0.0.1", port);
  vconnected(loop, &c6, "::1", port6);
  CHECK_OK(tapio_transport_sendto(c.t, "", 0, NULL, 0));
  CHECK_OK(tapio_transport_sendto(c.t, big, 65507, NULL, 0));
  CHECK_ERR(tapio_transport_sendto(c.t, big, 65508, NULL, 0),
            TAPIO_EMSGSIZE);
  CHECK_OK(tapio_transport_sendto(c6.t, big, 65527, NULL, 0));
  CHECK_ERR(tapio_transport_sendto(c6.t, big, 65528, NULL, 0),
            TAPIO_EMSGSIZE);
  CHECK_OK(tapio_loop_run_until_idle(loop));
  CHECK_STR(s.log, "made data:0 data:65507");
  CHECK_STR(s6.log, "made data:65527");
  close_all(loop, &c, &s);
  close_all(loop, &c6, &s6);
  free_vloop(loop);
}

/* ---- Binding ---------------------------------------------------------------- */

/* Ports from 32768 up; a port bound is EADDRINUSE (the same address, or
 * either a wildcard) with the real call's message, unless both set
 * reuse_port; another address at the same port is free; the port is free
 * again once the endpoint is gone; IPv4 and IPv6 are apart. */
static void ports(void)
{
  tapio_loop *loop = new_virtual();
  drec a, b, c, d, e;
  tapio_options *o;
  CHECK_EQ(vbound(loop, &a, "127.0.0.1", 5000), 5000);
  drec_init(&b);
  CHECK_ERR(vendpoint(loop, &b, dgram_opts(loop, "127.0.0.1", 5000, NULL, 0)),
            TAPIO_EADDRINUSE);
  CHECK_ERR(vendpoint(loop, &b, dgram_opts(loop, "0.0.0.0", 5000, NULL, 0)),
            TAPIO_EADDRINUSE);
  {
    conn_wait w = { 0 };
    o = dgram_opts(loop, "127.0.0.1", 5000, NULL, 0);
    CHECK_OK(tapio_create_datagram_endpoint(loop, &drec_proto, &b, o,
                                            on_connected, &w));
    tapio_options_free(o);
    CHECK_OK(tapio_loop_run_until_idle(loop));
    CHECK_ERR(w.status, TAPIO_EADDRINUSE);
  }
  CHECK_EQ(vbound(loop, &b, "127.0.0.2", 5000), 5000);
  CHECK_EQ(vbound(loop, &c, "::", 5000), 5000);
  CHECK_EQ(vbound(loop, &d, "127.0.0.1", 0), 32768);
  CHECK_EQ(vbound(loop, &e, "127.0.0.1", 0), 32769);
  close_all(loop, &a, &b);
  close_all(loop, &c, &d);
  close_all(loop, &e, NULL);
  CHECK_EQ(vbound(loop, &a, "0.0.0.0", 5000), 5000);
  o = dgram_opts(loop, "0.0.0.0", 5001, NULL, 0);
  CHECK_OK(tapio_options_set_int(o, "reuse_port", 1));
  drec_init(&b);
  CHECK_OK(vendpoint(loop, &b, o));
  o = dgram_opts(loop, "0.0.0.0", 5001, NULL, 0);
  CHECK_OK(tapio_options_set_int(o, "reuse_port", 1));
  drec_init(&c);
  CHECK_OK(vendpoint(loop, &c, o));
  drec_init(&d); /* reuse_port on one side only */
  CHECK_ERR(vendpoint(loop, &d, dgram_opts(loop, "0.0.0.0", 5001, NULL, 0)),
            TAPIO_EADDRINUSE);
  CHECK_EQ(vbound(loop, &d, "127.0.0.1", 0), 32770); /* on from the last */
  close_all(loop, &a, &b);
  close_all(loop, &c, &d);
  free_vloop(loop);
}

/* The error's message is the real call's. */
typedef struct failed {
  tapio_loop *loop;
  int status;
  char msg[256];
} failed;

static void on_failed(void *ud, int status, tapio_transport *t)
{
  failed *f = ud;
  const char *m = tapio_loop_error_message(f->loop);
  CHECK(t == NULL);
  f->status = status;
  snprintf(f->msg, sizeof f->msg, "%s", m ? m : "(none)");
}

static void fail_messages(void)
{
  tapio_loop *loop = new_virtual();
  drec a, b;
  failed f = { loop, 0, "" };
  tapio_options *o = dgram_opts(loop, "127.0.0.1", 7000, NULL, 0);
  vbound(loop, &a, "127.0.0.1", 7000);
  drec_init(&b);
  CHECK_OK(tapio_create_datagram_endpoint(loop, &drec_proto, &b, o,
                                          on_failed, &f));
  tapio_options_free(o);
  CHECK_OK(tapio_loop_run_until_idle(loop));
  CHECK_ERR(f.status, TAPIO_EADDRINUSE);
  CHECK_STR(f.msg, "error while attempting to bind on address "
                   "('127.0.0.1', 7000): address already in use");
  o = dgram_opts(loop, NULL, 0, "nowhere.invalid", 53);
  CHECK_OK(tapio_create_datagram_endpoint(loop, &drec_proto, &b, o,
                                          on_failed, &f));
  tapio_options_free(o);
  CHECK_OK(tapio_loop_run_until_idle(loop));
  CHECK_ERR(f.status, TAPIO_EAI_NONAME); /* the resolver's, as a real
                                            loop's lookup answers */
  close_all(loop, &a, NULL);
  free_vloop(loop);
}

/* "localhost" is 127.0.0.1 (::1 with family AF_INET6); another name fails
 * as an unknown name does, with no lookup; sock and Unix paths are
 * refused with EVIRTUAL (the descriptor closed); asyncio's checks stand. */
static void names_and_refusals(void)
{
  tapio_loop *loop = new_virtual();
  drec a, b;
  tapio_options *o;
  int sv[2];
  CHECK_EQ(vbound(loop, &a, "localhost", 6000), 6000);
  check_name(a.t, 0, "127.0.0.1", 6000);
  o = dgram_opts(loop, "localhost", 6000, NULL, 0);
  CHECK_OK(tapio_options_set_int(o, "family", TAPIO_AF_INET6));
  drec_init(&b);
  CHECK_OK(vendpoint(loop, &b, o));
  check_name(b.t, 0, "::1", 6000);
  close_all(loop, &a, &b);
  drec_init(&a);
  CHECK_ERR(vendpoint(loop, &a, dgram_opts(loop, "example.invalid", 0, NULL,
                                           0)), TAPIO_EAI_NONAME);
  CHECK_ERR(vendpoint(loop, &a, dgram_opts(loop, NULL, 0, "example.invalid",
                                           53)), TAPIO_EAI_NONAME);
  o = new_options(loop);
  CHECK_OK(tapio_options_set_str(o, "local_path", "/tmp/x.sock"));
  CHECK_ERR(tapio_create_datagram_endpoint(loop, &drec_proto, &a, o,
                                           never_connected, NULL),
            TAPIO_EVIRTUAL);
  tapio_options_free(o);
  CHECK_EQ(socketpair(AF_UNIX, SOCK_DGRAM, 0, sv), 0);
  o = new_options(loop);
  CHECK_OK(tapio_options_set_int(o, "sock", sv[0]));
  CHECK_ERR(tapio_create_datagram_endpoint(loop, &drec_proto, &a, o,
                                           never_connected, NULL),
            TAPIO_EVIRTUAL);
  tapio_options_free(o);
  CHECK(fcntl(sv[0], F_GETFD) < 0);
  close(sv[1]);
  CHECK_ERR(tapio_create_datagram_endpoint(loop, &drec_proto, &a, NULL,
                                           never_connected, NULL),
            TAPIO_EINVAL);
  CHECK_ERR(tapio_create_datagram_endpoint(
                loop, &drec_proto, &a,
                o = dgram_opts(loop, "::1", 0, "127.0.0.1", 9),
                never_connected, NULL), TAPIO_EINVAL);
  tapio_options_free(o);
  CHECK_OK(tapio_loop_run_until_idle(loop));
  CHECK_EQ(tapio_loop_transport_count(loop), 0);
  free_vloop(loop);
}

/* A family alone: unbound, port 0, until its first send binds it at an
 * ephemeral port of its wildcard (Linux's autobind); a refused send
 * binds nothing. */
static void family_only(void)
{
  tapio_loop *loop = new_virtual();
  tapio_options *o = new_options(loop);
  drec a, b;
  drec_init(&a);
  drec_init(&b);
  CHECK_OK(tapio_options_set_int(o, "family", TAPIO_AF_INET6));
  CHECK_OK(vendpoint(loop, &a, o));
  check_name(a.t, 0, "::", 0);
  CHECK_ERR(tapio_transport_sendto(a.t, "x", 1, NULL, 0), TAPIO_EINVAL);
  check_name(a.t, 0, "::", 0);
  CHECK_EQ(vbound(loop, &b, "::1", 0), 32768); /* a port 0 is not taken */
  sendto_host(a.t, "x", 1, "::1", 32768);
  check_name(a.t, 0, "::", 32769);
  CHECK_OK(tapio_loop_run_until_idle(loop));
  check_from(&b, "::1", 32769);
  close_all(loop, &a, &b);
  free_vloop(loop);
}

/* ---- Connected endpoints, wildcards, refusals ------------------------------- */

/* sendto another address is EISCONN, the peer's own is fine, another
 * family EAFNOSUPPORT; a third endpoint's datagrams do not reach it (the
 * third hears ECONNREFUSED, as from a closed port). */
static void connected_rules(void)
{
  tapio_loop *loop = new_virtual();
  drec s, c, x;
  int port = vbound(loop, &s, "127.0.0.1", 0), cport;
  char a[TAPIO_ADDR_MAX];
  size_t alen;
  vconnected(loop, &c, "127.0.0.1", port);
  CHECK_OK(tapio_transport_get_sockname(c.t, NULL, 0, &cport, NULL));
  alen = addr_of("127.0.0.1", port + 100, a);
  CHECK_ERR(tapio_transport_sendto(c.t, "x", 1, a, alen), TAPIO_EISCONN);
  alen = addr_of("::1", port, a);
  CHECK_ERR(tapio_transport_sendto(c.t, "x", 1, a, alen),
            TAPIO_EAFNOSUPPORT);
  sendto_host(c.t, "ab", 2, "127.0.0.1", port);
  vbound(loop, &x, "127.0.0.1", 0);
  sendto_host(x.t, "abc", 3, "127.0.0.1", cport);
  sendto_host(s.t, "abcd", 4, "127.0.0.1", cport);
  CHECK_OK(tapio_loop_run_until_idle(loop));
  CHECK_STR(s.log, "made data:2");
  CHECK_STR(c.log, "made data:4");
  CHECK_STR(x.log, "made err:ECONNREFUSED");
  close_all(loop, &s, &c);
  close_all(loop, &x, NULL);
  free_vloop(loop);
}

/* gh-91227: a connected endpoint sending where nothing is bound gets
 * error_received(ECONNREFUSED) naming the address, and keeps receiving;
 * an unconnected one too (tapio's sockets hear the ICMP error on
 * loopback, connected or not). */
static void refused_keeps_going(void)
{
  tapio_loop *loop = new_virtual();
  drec s, c, u;
  vconnected(loop, &c, "127.0.0.1", 9);
  CHECK_OK(tapio_transport_sendto(c.t, "ping", 4, NULL, 0));
  CHECK_OK(tapio_loop_run_until_idle(loop));
  CHECK_STR(c.log, "made err:ECONNREFUSED");
  CHECK_STR(c.err_msg, "sendto ('127.0.0.1', 9): connection refused");
  vbound(loop, &s, "127.0.0.1", 9);
  s.echo = 1;
  CHECK_OK(tapio_transport_sendto(c.t, "ping", 4, NULL, 0));
  CHECK_OK(tapio_loop_run_until_idle(loop));
  CHECK_STR(c.log, "made err:ECONNREFUSED data:9");
  vbound(loop, &u, "::1", 0);
  sendto_host(u.t, "x", 1, "::1", 9);
  CHECK_OK(tapio_loop_run_until_idle(loop));
  CHECK_STR(u.log, "made err:ECONNREFUSED");
  CHECK_STR(u.err_msg, "sendto ('::1', 9, 0, 0): connection refused");
  close_all(loop, &s, &c);
  close_all(loop, &u, NULL);
  free_vloop(loop);
}

/* A wildcard bind receives for any address of its family at its port; a
 * specific bind at the same port (reuse_port: else EADDRINUSE) is chosen
 * first; a sender bound at a
 * wildcard is seen from the address it sent to. */
static void wildcards(void)
{
  tapio_loop *loop = new_virtual();
  drec w, sp, c;
  int cport;
  CHECK_OK(tapio_loop_run_until_idle(loop));
  tapio_options *o = dgram_opts(loop, "0.0.0.0", 7000, NULL, 0);
  CHECK_OK(tapio_options_set_int(o, "reuse_port", 1));
  drec_init(&w);
  CHECK_OK(vendpoint(loop, &w, o));
  o = dgram_opts(loop, "10.0.0.2", 7000, NULL, 0);
  CHECK_OK(tapio_options_set_int(o, "reuse_port", 1));
  drec_init(&sp);
  CHECK_OK(vendpoint(loop, &sp, o));
  CHECK_EQ(vbound(loop, &c, "0.0.0.0", 0), 32768);
  cport = 32768;
  sendto_host(c.t, "a", 1, "127.0.0.1", 7000);
  CHECK_OK(tapio_loop_run_until_idle(loop));
  check_from(&w, "127.0.0.1", cport);
  sendto_host(c.t, "bb", 2, "10.0.0.1", 7000);
  CHECK_OK(tapio_loop_run_until_idle(loop));
  check_from(&w, "10.0.0.1", cport);
  sendto_host(c.t, "ccc", 3, "10.0.0.2", 7000);
  CHECK_OK(tapio_loop_run_until_idle(loop));
  CHECK_STR(w.log, "made data:1 data:2");
  CHECK_STR(sp.log, "made data:3");
  check_from(&sp, "10.0.0.2", cport);
  close_all(loop, &w, &sp);
  close_all(loop, &c, NULL);
  free_vloop(loop);
}

/* allow_broadcast: remote is the default destination, not a peer. */
static void broadcast_default(void)
{
  tapio_loop *loop = new_virtual();
  drec s, c;
  tapio_options *o;
  int port = vbound(loop, &s, "127.0.0.1", 0);
  o = dgram_opts(loop, NULL, 0, "127.0.0.1", port);
  CHECK_OK(tapio_options_set_int(o, "allow_broadcast", 1));
  drec_init(&c);
  CHECK_OK(vendpoint(loop, &c, o));
  CHECK(tapio_transport_get_peername(c.t, NULL, 0, NULL, NULL) < 0);
  CHECK_OK(tapio_transport_sendto(c.t, "ab", 2, NULL, 0));
  sendto_host(c.t, "abc", 3, "127.0.0.1", port);
  CHECK_OK(tapio_loop_run_until_idle(loop));
  CHECK_STR(s.log, "made data:2 data:3");
  close_all(loop, &s, &c);
  free_vloop(loop);
}

/* A broadcast reaches every endpoint at its port's wildcard, reuse_port's
 * all, also when the first two end themselves as it reaches them (each is
 * unbound at once), and none at the port is no error for the sender. */
static void broadcast_to_all(void)
{
  tapio_loop *loop = new_virtual();
  drec w[3], c;
  tapio_options *o;
  int i;
  for (i = 0; i < 3; i++) {
    o = dgram_opts(loop, "0.0.0.0", 7000, NULL, 0);
    CHECK_OK(tapio_options_set_int(o, "reuse_port", 1));
    drec_init(&w[i]);
    w[i].close_on_data = i < 2 ? 2 - i : 0; /* abort, close, stay */
    CHECK_OK(vendpoint(loop, &w[i], o));
  }
  o = dgram_opts(loop, NULL, 0, "255.255.255.255", 7000);
  CHECK_OK(tapio_options_set_int(o, "allow_broadcast", 1));
  drec_init(&c);
  CHECK_OK(vendpoint(loop, &c, o));
  CHECK_OK(tapio_transport_sendto(c.t, "ab", 2, NULL, 0));
  sendto_host(c.t, "abc", 3, "255.255.255.255", 7001); /* nobody */
  CHECK_OK(tapio_loop_run_until_idle(loop));
  CHECK_STR(w[0].log, "made data:2 lost:0");
  CHECK_STR(w[1].log, "made data:2 lost:0");
  CHECK_STR(w[2].log, "made data:2");
  check_from(&w[2], "127.0.0.1", 32768);
  CHECK_STR(c.log, "made");
  close_all(loop, &w[2], &c);
  free_vloop(loop);
}

/* ---- Closing, flow control ---------------------------------------------------- */

/* Five datagrams of 50 with room in flight for 100: two go, three wait in
 * the write buffer (58 bytes each: asyncio's count), over the high mark:
 * pause_writing; as they arrive the rest goes, resume_writing. */
static void flow_at_capacity(void)
{
  tapio_loop *loop = new_virtual();
  drec s, c;
  char d[50] = { 0 };
  int i;
  vpair(loop, &s, &c);
  CHECK_OK(tapio_datagram_set_capacity(c.t, 100));
  CHECK_OK(tapio_transport_set_write_buffer_limits(c.t, 100, 0));
  for (i = 0; i < 5; i++)
    CHECK_OK(tapio_transport_sendto(c.t, d, sizeof d, NULL, 0));
  CHECK_EQ(tapio_datagram_in_flight(c.t), 100);
  CHECK_EQ(tapio_transport_get_write_buffer_size(c.t), 3 * 58);
  CHECK_STR(c.log, "made pause");
  CHECK_OK(tapio_loop_run_until_idle(loop));
  CHECK_STR(s.log, "made data:50 data:50 data:50 data:50 data:50");
  CHECK_STR(c.log, "made pause resume");
  CHECK_EQ(tapio_transport_get_write_buffer_size(c.t), 0);
  CHECK_EQ(tapio_datagram_in_flight(c.t), 0);
  close_all(loop, &s, &c);
  free_vloop(loop);
}

/* close with datagrams waiting sends them all, then connection_lost(0);
 * sendto after close is ECLOSED and sends nothing. */
static void close_flushes(void)
{
  tapio_loop *loop = new_virtual();
  drec s, c;
  char d[50] = { 0 };
  vpair(loop, &s, &c);
  CHECK_OK(tapio_datagram_set_capacity(c.t, 3)); /* 1 and 2 go, 3, 4 wait */
  send_lengths(c.t, 1, 4);
  CHECK_EQ(tapio_transport_get_write_buffer_size(c.t), 3 + 4 + 2 * 8);
  CHECK_OK(tapio_transport_close(c.t));
  CHECK_ERR(tapio_transport_sendto(c.t, d, 9, NULL, 0), TAPIO_ECLOSED);
  CHECK_OK(tapio_loop_run_until_idle(loop));
  CHECK_STR(s.log, "made data:1 data:2 data:3 data:4");
  CHECK_STR(c.log, "made lost:0");
  close_all(loop, &s, NULL);
  free_vloop(loop);
}

/* abort drops what waits; what was in flight still arrives (the kernel
 * had it); the port is free at once. */
static void abort_drops(void)
{
  tapio_loop *loop = new_virtual();
  drec s, c, again;
  int cport;
  vpair(loop, &s, &c);
  CHECK_OK(tapio_transport_get_sockname(c.t, NULL, 0, &cport, NULL));
  CHECK_OK(tapio_datagram_set_capacity(c.t, 3));
  send_lengths(c.t, 1, 4);
  CHECK_OK(tapio_transport_abort(c.t));
  CHECK_EQ(vbound(loop, &again, "127.0.0.1", cport), cport);
  CHECK_OK(tapio_loop_run_until_idle(loop));
  CHECK_STR(s.log, "made data:1 data:2");
  CHECK_STR(c.log, "made lost:0");
  close_all(loop, &s, &again);
  free_vloop(loop);
}

/* close inside datagram_received: the rest of the turn's datagrams are
 * not delivered; once it is gone, a datagram there is refused. */
static void close_in_callback(void)
{
  tapio_loop *loop = new_virtual();
  drec s, c;
  vpair(loop, &s, &c);
  s.close_on_data = 1;
  send_lengths(c.t, 1, 3);
  CHECK_OK(tapio_loop_run_until_idle(loop));
  CHECK_STR(s.log, "made data:1 lost:0");
  CHECK_STR(c.log, "made");
  CHECK_OK(tapio_transport_sendto(c.t, "abc", 3, NULL, 0));
  CHECK_OK(tapio_loop_run_until_idle(loop));
  CHECK_STR(c.log, "made err:ECONNREFUSED");
  close_all(loop, &c, NULL);
  free_vloop(loop);
}

/* abort inside datagram_received, the endpoint echoing to itself. */
static void abort_in_callback(void)
{
  tapio_loop *loop = new_virtual();
  drec s;
  int port = vbound(loop, &s, "127.0.0.1", 0);
  s.close_on_data = 2;
  s.echo = 1;
  sendto_host(s.t, "a", 1, "127.0.0.1", port);
  sendto_host(s.t, "b", 1, "127.0.0.1", port);
  CHECK_OK(tapio_loop_run_until_idle(loop));
  CHECK_STR(s.log, "made data:1 lost:0");
  CHECK_EQ(tapio_loop_transport_count(loop), 0);
  free_vloop(loop);
}

/* Freed with endpoints open, datagrams in flight (delayed) and waiting:
 * connection_lost(ECANCELED), nothing leaks (ASan, valgrind). */
static void free_with_endpoints(void)
{
  tapio_loop *loop = new_virtual();
  tapio_datagram_faults f = { 0 };
  drec s, c;
  vpair(loop, &s, &c);
  f.delay = 1;
  CHECK_OK(tapio_datagram_set_faults(c.t, &f));
  CHECK_OK(tapio_datagram_set_capacity(c.t, 1));
  CHECK_OK(tapio_transport_sendto(c.t, "ab", 2, NULL, 0));
  CHECK_OK(tapio_transport_sendto(c.t, "cd", 2, NULL, 0));
  CHECK_OK(tapio_transport_close(c.t));
  CHECK_EQ(tapio_loop_transport_count(loop), 2);
  free_loop(loop);
  CHECK_STR(s.log, "made lost:ECANCELED");
  CHECK_STR(c.log, "made lost:ECANCELED");
}

/* ---- Faults ------------------------------------------------------------------ */

/* n datagrams of lengths 1..n from c to s under f; s's log. */
static void run_faults(const tapio_datagram_faults *f, int n, double advance,
                       char *out, size_t outlen)
{
  tapio_loop *loop = new_virtual();
  drec s, c;
  vpair(loop, &s, &c);
  CHECK_OK(tapio_datagram_set_faults(c.t, f));
  send_lengths(c.t, 1, n);
  CHECK_OK(tapio_loop_advance(loop, advance));
  snprintf(out, outlen, "%s", s.log);
  close_all(loop, &s, &c);
  CHECK(tapio_loop_next_timer(loop) < 0); /* what was in flight went */
  free_vloop(loop);
}

static int count_of(const char *log, const char *word)
{
  int n = 0;
  for (; (log = strstr(log, word)); log++)
    n++;
  return n;
}

static const char *in_order(int n)
{
  static char buf[4096];
  int i;
  snprintf(buf, sizeof buf, "made");
  for (i = 1; i <= n; i++)
    snprintf(buf + strlen(buf), sizeof buf - strlen(buf), " data:%d", i);
  return buf;
}

/* Loss: some are lost, the same ones from the same seed, others from
 * another seed; drop names them. */
static void fault_loss(void)
{
  tapio_datagram_faults f = { 0 };
  uint64_t drop[] = { 2, 5 };
  char a[4096], b[4096];
  f.loss = 0.3;
  f.seed = 7;
  run_faults(&f, 100, 0, a, sizeof a);
  run_faults(&f, 100, 0, b, sizeof b);
  CHECK_STR(a, b);
  CHECK_CMP(count_of(a, "data:"), >=, 50);
  CHECK_CMP(count_of(a, "data:"), <=, 90);
  f.seed = 8;
  run_faults(&f, 100, 0, b, sizeof b);
  CHECK(strcmp(a, b) != 0);
  memset(&f, 0, sizeof f);
  f.drop = drop;
  f.ndrop = 2;
  run_faults(&f, 6, 0, a, sizeof a);
  CHECK_STR(a, "made data:1 data:3 data:4 data:6");
  f.loss = 1;
  f.ndrop = 0;
  run_faults(&f, 6, 0, a, sizeof a);
  CHECK_STR(a, "made");
}

/* Duplication: each arrives twice (the copy right after); with a chance,
 * some, the same from the same seed. */
static void fault_duplicate(void)
{
  tapio_datagram_faults f = { 0 };
  char a[4096], b[4096];
  f.duplicate = 1;
  run_faults(&f, 3, 0, a, sizeof a);
  CHECK_STR(a, "made data:1 data:1 data:2 data:2 data:3 data:3");
  f.duplicate = 0.3;
  f.seed = 11;
  run_faults(&f, 50, 0, a, sizeof a);
  run_faults(&f, 50, 0, b, sizeof b);
  CHECK_STR(a, b);
  CHECK_CMP(count_of(a, "data:"), >, 55);
  CHECK_CMP(count_of(a, "data:"), <, 95);
}

/* Reordering: all arrive, not in order, none passed by more than k of
 * the ones sent after it, k reached; replayed from the seed. */
static void fault_reorder(void)
{
  tapio_datagram_faults f = { 0 };
  char a[4096], b[4096];
  int n = 200, i, seen[201] = { 0 }, pos = 0, most = 0;
  const char *p;
  f.reorder = 2;
  f.seed = 3;
  run_faults(&f, n, 0, a, sizeof a);
  run_faults(&f, n, 0, b, sizeof b);
  CHECK_STR(a, b);
  CHECK(strcmp(a, in_order(n)) != 0);
  for (p = strstr(a, "data:"); p; p = strstr(p + 1, "data:")) {
    int v = atoi(p + 5), passed = 0, j;
    CHECK(v >= 1 && v <= n && !seen[v]);
    for (j = v + 1; j <= n; j++)
      passed += seen[j];
    if (passed > most)
      most = passed;
    seen[v] = 1;
    pos++;
  }
  CHECK_EQ(most, 2); /* later ones that went first: at most 2 */
  CHECK_EQ(pos, n);
  for (i = 1; i <= n; i++)
    CHECK(seen[i]);
}

/* Delay: a datagram arrives delay seconds of loop time later, not
 * before; jitter reorders them, the same from the same seed. */
static void fault_delay(void)
{
  tapio_loop *loop = new_virtual();
  tapio_datagram_faults f = { 0 };
  char a[4096], b[4096];
  drec s, c;
  vpair(loop, &s, &c);
  f.delay = 0.05;
  CHECK_OK(tapio_datagram_set_faults(c.t, &f));
  CHECK_OK(tapio_transport_sendto(c.t, "abc", 3, NULL, 0));
  CHECK_OK(tapio_loop_advance(loop, 0.049));
  CHECK_STR(s.log, "made");
  CHECK_EQ(tapio_datagram_in_flight(c.t), 3);
  CHECK_OK(tapio_loop_advance(loop, 0.001));
  CHECK_STR(s.log, "made data:3");
  close_all(loop, &s, &c);
  free_vloop(loop);
  f.delay = 0.01;
  f.jitter = 0.1;
  f.seed = 5;
  run_faults(&f, 20, 0.2, a, sizeof a);
  run_faults(&f, 20, 0.2, b, sizeof b);
  CHECK_STR(a, b);
  CHECK_EQ(count_of(a, "data:"), 20);
  CHECK(strcmp(a, in_order(20)) != 0);
  run_faults(&f, 20, 0.0099, b, sizeof b);
  CHECK_STR(b, "made");
}

/* set_faults and set_capacity: virtual endpoints only, sane values. */
static void fault_arguments(void)
{
  tapio_loop *loop = new_virtual();
  tapio_datagram_faults f = { 0 };
  uint64_t bad[] = { 3, 3 };
  tapio_transport *a, *b;
  rec ra, rb;
  drec s;
  vbound(loop, &s, "127.0.0.1", 0);
  CHECK_OK(tapio_datagram_set_faults(s.t, NULL));
  f.loss = 1.5;
  CHECK_ERR(tapio_datagram_set_faults(s.t, &f), TAPIO_EINVAL);
  f.loss = 0;
  f.delay = -1;
  CHECK_ERR(tapio_datagram_set_faults(s.t, &f), TAPIO_EINVAL);
  f.delay = 0;
  f.drop = bad;
  f.ndrop = 2;
  CHECK_ERR(tapio_datagram_set_faults(s.t, &f), TAPIO_EINVAL);
  CHECK_ERR(tapio_datagram_set_capacity(s.t, 0), TAPIO_EINVAL);
  rec_init(&ra);
  rec_init(&rb);
  CHECK_OK(tapio_memory_pair(loop, &rec_proto, &ra, &rec_proto, &rb, &a, &b));
  CHECK_ERR(tapio_datagram_set_faults(a, NULL), TAPIO_EINVAL);
  CHECK_ERR(tapio_datagram_set_capacity(a, 5), TAPIO_EINVAL);
  CHECK_EQ(tapio_datagram_in_flight(a), 0);
  CHECK_ERR(tapio_transport_sendto(a, "x", 1, NULL, 0), TAPIO_ENOTSUP);
  tapio_transport_close(a);
  tapio_transport_close(b);
  close_all(loop, &s, NULL);
  rec_free(&ra);
  rec_free(&rb);
  free_vloop(loop);
}

/* ---- A request/retry client ---------------------------------------------------- */

/* Sends "req" at once and again every 3 seconds until an answer comes. */
typedef struct retry {
  tapio_loop *loop;
  tapio_transport *t;
  tapio_handle *timer;
  int tries, answered;
  double answered_at;
} retry;

static void retry_send(void *ud)
{
  retry *r = ud;
  tapio_handle_release(r->timer);
  r->timer = NULL;
  r->tries++;
  CHECK_OK(tapio_transport_sendto(r->t, "req", 3, NULL, 0));
  CHECK_OK(tapio_call_later(r->loop, 3.0, retry_send, r, &r->timer));
}

static void retry_made(void *ud, tapio_transport *t)
{
  retry *r = ud;
  r->t = t;
  retry_send(r);
}

static void retry_data(void *ud, tapio_transport *t, const char *data,
                       size_t len, const void *addr, size_t addrlen)
{
  retry *r = ud;
  (void)data;
  (void)len;
  (void)addr;
  (void)addrlen;
  r->answered++;
  r->answered_at = tapio_loop_time(r->loop);
  tapio_handle_cancel(r->timer);
  tapio_handle_release(r->timer);
  r->timer = NULL;
  tapio_transport_close(t);
}

static const tapio_datagram_protocol retry_proto = {
  .size = sizeof(tapio_datagram_protocol),
  .connection_made = retry_made,
  .datagram_received = retry_data,
};

/* The server loses its first two answers: the client's third try, at 6 s
 * of loop time, gets one; the whole takes microseconds. */
static void retry_client(void)
{
  tapio_loop *loop = new_virtual();
  tapio_datagram_faults f = { 0 };
  uint64_t drop[] = { 1, 2 };
  tapio_options *o;
  conn_wait w = { 0 };
  retry r = { 0 };
  double start = now_sec();
  drec s;
  int port = vbound(loop, &s, "127.0.0.1", 0);
  s.echo = 1;
  f.drop = drop;
  f.ndrop = 2;
  CHECK_OK(tapio_datagram_set_faults(s.t, &f));
  r.loop = loop;
  o = dgram_opts(loop, NULL, 0, "127.0.0.1", port);
  CHECK_OK(tapio_create_datagram_endpoint(loop, &retry_proto, &r, o,
                                          on_connected, &w));
  tapio_options_free(o);
  CHECK_OK(tapio_loop_advance(loop, 60));
  CHECK_EQ(r.tries, 3);
  CHECK_EQ(r.answered, 1);
  CHECK(r.answered_at == 6.0);
  CHECK_STR(s.log, "made data:3 data:3 data:3");
  CHECK(now_sec() - start < 2.0);
  close_all(loop, &s, NULL);
  free_vloop(loop);
}

TEST_MAIN(TEST(echo_ipv4), TEST(echo_ipv6), TEST(sizes), TEST(ports),
          TEST(fail_messages), TEST(names_and_refusals), TEST(family_only),
          TEST(connected_rules), TEST(refused_keeps_going), TEST(wildcards),
          TEST(broadcast_to_all),
          TEST(broadcast_default), TEST(flow_at_capacity),
          TEST(close_flushes), TEST(abort_drops), TEST(close_in_callback),
          TEST(abort_in_callback), TEST(free_with_endpoints),
          TEST(fault_loss), TEST(fault_duplicate), TEST(fault_reorder),
          TEST(fault_delay), TEST(fault_arguments), TEST(retry_client))
