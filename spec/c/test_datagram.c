/* Datagram endpoints: the echo round trip over IPv4 and IPv6, empty
 * datagrams, ICMP errors to error_received with the endpoint still
 * receiving, Unix datagram sockets, a socket handed over, sendto's
 * errors, the socket options asked for and no other, and asyncio's checks
 * of create_datagram_endpoint (ANCHORS 1a). Real sockets on loopback. */
#include "dgram.h"
#include "dns.h"

#include <net/if.h>
#include <sys/resource.h>

/* ---- Round trips ---------------------------------------------------------- */

/* D17: the server gets 3 bytes from the client's address and answers
 * "resp:xxx"; sockname is set; close gives connection_lost(0). */
static void echo_round_trip(const char *host)
{
  tapio_loop *loop = new_loop();
  tapio_options *o;
  drec s, c;
  char h[64];
  int port = bound_endpoint(loop, &s, host), cport;
  s.echo = 1;
  drec_init(&c);
  o = dgram_opts(loop, NULL, 0, host, port);
  CHECK_OK(endpoint(loop, &c, o));
  CHECK_OK(tapio_transport_get_sockname(c.t, h, sizeof h, &cport, NULL));
  CHECK_STR(h, host);
  CHECK(cport > 0);
  CHECK_OK(tapio_transport_get_peername(c.t, h, sizeof h, NULL, NULL));
  CHECK_STR(h, host);
  CHECK_EQ(tapio_transport_get_kind(c.t), TAPIO_TRANSPORT_DATAGRAM);
  CHECK_OK(tapio_transport_sendto(c.t, "xxx", 3, NULL, 0));
  WAIT_FOR(loop, c.ndata == 1);
  CHECK_EQ(c.last_len, 8);
  CHECK(memcmp(c.last, "resp:xxx", 8) == 0);
  {
    int p;
    CHECK_OK(tapio_addr_format(s.from, s.from_len, h, sizeof h, &p, NULL));
    CHECK_STR(h, host);
    CHECK_EQ(p, cport);
    CHECK_OK(tapio_addr_format(c.from, c.from_len, h, sizeof h, &p, NULL));
    CHECK_EQ(p, port);
  }
  CHECK_OK(tapio_transport_close(c.t));
  CHECK_OK(tapio_transport_close(s.t));
  WAIT_FOR(loop, c.lost && s.lost);
  CHECK_STR(s.log, "made data:3 lost:0");
  CHECK_STR(c.log, "made data:8 lost:0");
  CHECK_EQ(tapio_transport_get_stat(NULL, 0), 0);
  tapio_options_free(o);
  free_loop(loop);
}

static void echo_ipv4(void)
{
  echo_round_trip("127.0.0.1");
}

static void echo_ipv6(void)
{
  if (!ipv6_available())
    SKIP("no IPv6 loopback");
  echo_round_trip("::1");
}

/* D10 (asyncio 3.13, gh-113812): an empty datagram is sent and delivered
 * as an empty one, both ways. */
static void empty_datagrams(void)
{
  tapio_loop *loop = new_loop();
  drec s, c;
  char addr[TAPIO_ADDR_MAX];
  int port = bound_endpoint(loop, &s, "127.0.0.1");
  bound_endpoint(loop, &c, "127.0.0.1");
  CHECK_OK(tapio_transport_sendto(c.t, "", 0, addr,
                                  addr_of("127.0.0.1", port, addr)));
  CHECK_OK(tapio_transport_sendto(c.t, NULL, 0, addr,
                                  addr_of("127.0.0.1", port, addr)));
  WAIT_FOR(loop, s.ndata == 2);
  CHECK_EQ(s.last_len, 0);
  CHECK_OK(tapio_transport_sendto(s.t, "", 0, s.from, s.from_len));
  WAIT_FOR(loop, c.ndata == 1);
  CHECK_STR(s.log, "made data:0 data:0");
  CHECK_STR(c.log, "made data:0");
  free_loop(loop);
}

/* ---- ICMP errors: error_received, and the endpoint goes on ----------------- */

/* D6, libuv's udp_send_unreachable: a connected endpoint sending to a
 * closed port gets ECONNREFUSED in error_received; then a peer opens that
 * port and its datagram is delivered; sending works again. */
static void connected_refused_keeps_going(void)
{
  tapio_loop *loop = new_loop();
  int port = closed_udp_port(), fd;
  tapio_options *o = dgram_opts(loop, NULL, 0, "127.0.0.1", port);
  char buf[16];
  drec c;
  drec_init(&c);
  CHECK_OK(endpoint(loop, &c, o));
  CHECK_OK(tapio_transport_sendto(c.t, "a", 1, NULL, 0));
  WAIT_FOR(loop, c.nerr == 1);
  CHECK_ERR(c.err_code, TAPIO_ECONNREFUSED);
  fd = raw_udp_on(AF_INET, "127.0.0.1", port);
  if (fd < 0)
    SKIP("the closed port was taken meanwhile");
  {
    int cport;
    CHECK_OK(tapio_transport_get_sockname(c.t, NULL, 0, &cport, NULL));
    raw_sendto(fd, "back", 4, AF_INET, "127.0.0.1", cport);
  }
  WAIT_FOR(loop, c.ndata == 1);
  CHECK_OK(tapio_transport_sendto(c.t, "b", 1, NULL, 0));
  CHECK_EQ(raw_recv_dgram(loop, fd, buf, sizeof buf), 1);
  CHECK_STR(c.log, "made err:ECONNREFUSED data:4");
  CHECK(!tapio_transport_is_closing(c.t));
  close(fd);
  tapio_options_free(o);
  free_loop(loop);
}

/* D18 (gh-91227): an endpoint that is not connected learns of the ICMP
 * error too (IP_RECVERR), with the address it concerns, and still
 * receives afterwards. IPv4 and IPv6. */
static void unconnected_refused(const char *host, int family)
{
  tapio_loop *loop = new_loop();
  drec s;
  char addr[TAPIO_ADDR_MAX], want[128];
  int port, dead, fd;
  port = bound_endpoint(loop, &s, host);
  fd = raw_udp(family, host, &dead);
  close(fd); /* dead: a closed port */
  CHECK_OK(tapio_transport_sendto(s.t, "x", 1, addr,
                                  addr_of(host, dead, addr)));
  WAIT_FOR(loop, s.nerr == 1);
  CHECK_ERR(s.err_code, TAPIO_ECONNREFUSED);
  snprintf(want, sizeof want, "sendto ('%s', %d%s): connection refused", host,
           dead, family == AF_INET6 ? ", 0, 0" : "");
  CHECK_STR(s.err_msg, want);
  fd = raw_udp(family, host, NULL);
  raw_sendto(fd, "later", 5, family, host, port);
  WAIT_FOR(loop, s.ndata == 1);
  CHECK_STR(s.log, "made err:ECONNREFUSED data:5");
  close(fd);
  free_loop(loop);
}

static void unconnected_refused_ipv4(void)
{
  unconnected_refused("127.0.0.1", AF_INET);
}

static void unconnected_refused_ipv6(void)
{
  if (!ipv6_available())
    SKIP("no IPv6 loopback");
  unconnected_refused("::1", AF_INET6);
}

/* The CPU time this process uses while the loop runs idle for secs: a
 * loop that spins uses about all of it. */
static double cpu_while_idle(tapio_loop *loop, double secs)
{
  struct rusage a, b;
  getrusage(RUSAGE_SELF, &a);
  run_for(loop, secs);
  getrusage(RUSAGE_SELF, &b);
  return (double)(b.ru_utime.tv_sec - a.ru_utime.tv_sec) +
         (double)(b.ru_stime.tv_sec - a.ru_stime.tv_sec) +
         (double)(b.ru_utime.tv_usec - a.ru_utime.tv_usec) * 1e-6 +
         (double)(b.ru_stime.tv_usec - a.ru_stime.tv_usec) * 1e-6;
}

/* libuv's udp_recv_cb_close_pollerr: after an ICMP error the loop does not
 * spin: idle for 0.3 s, the process uses little CPU time. */
static void error_does_not_spin(void)
{
  tapio_loop *loop = new_loop();
  drec s;
  char addr[TAPIO_ADDR_MAX];
  bound_endpoint(loop, &s, "127.0.0.1");
  CHECK_OK(tapio_transport_sendto(s.t, "x", 1, addr,
                                  addr_of("127.0.0.1", closed_udp_port(),
                                          addr)));
  WAIT_FOR(loop, s.nerr == 1);
  CHECK(cpu_while_idle(loop, 0.3) < 0.15);
  CHECK_EQ(s.nerr, 1);
  free_loop(loop);
}

/* libuv's udp_send_pollerr_no_recv: an endpoint whose protocol has no
 * callbacks at all still drains its ICMP errors, and does not spin. */
static void errors_without_callbacks(void)
{
  static const tapio_datagram_protocol bare = {
    .size = sizeof(tapio_datagram_protocol)
  };
  tapio_loop *loop = new_loop();
  tapio_options *o = dgram_opts(loop, "127.0.0.1", 0, NULL, 0);
  conn_wait w = { 0 };
  char addr[TAPIO_ADDR_MAX];
  int i;
  CHECK_OK(tapio_create_datagram_endpoint(loop, &bare, NULL, o, on_connected,
                                          &w));
  WAIT_FOR(loop, w.done);
  CHECK_OK(w.status);
  for (i = 0; i < 5; i++)
    CHECK_OK(tapio_transport_sendto(w.t, "x", 1, addr,
                                    addr_of("127.0.0.1", closed_udp_port(),
                                            addr)));
  CHECK(cpu_while_idle(loop, 0.3) < 0.15);
  CHECK(!tapio_transport_is_closing(w.t));
  tapio_options_free(o);
  free_loop(loop);
}

static void bump(void *ud)
{
  (*(int *)ud)++;
}

/* libuv's udp_send_hang_loop: a datagram to an unroutable address does
 * not stop the loop (an error, if the OS gives one, is reported). */
static void unroutable_destination(void)
{
  tapio_loop *loop = new_loop();
  drec s;
  char addr[TAPIO_ADDR_MAX];
  int ticks = 0;
  bound_endpoint(loop, &s, "0.0.0.0");
  CHECK_OK(tapio_transport_sendto(s.t, "x", 1, addr,
                                  addr_of("192.0.2.3", 9, addr)));
  CHECK_OK(tapio_call_later(loop, 0.05, bump, &ticks, NULL));
  WAIT_FOR(loop, ticks == 1);
  CHECK(!tapio_transport_is_closing(s.t));
  CHECK(s.nerr == 0 || s.err_code == TAPIO_ENETUNREACH ||
        s.err_code == TAPIO_EHOSTUNREACH);
  free_loop(loop);
}

/* ---- sendto's errors -------------------------------------------------------- */

/* D7, uvloop's sendto tests: a connected endpoint takes no other address
 * (EISCONN), the peer's own is fine; an address of the other family is
 * EAFNOSUPPORT; no address on an endpoint with no peer is EINVAL; a
 * datagram larger than UDP carries is EMSGSIZE (libuv udp_dgram_too_big);
 * none of them sends anything or calls the protocol. */
static void sendto_errors(void)
{
  tapio_loop *loop = new_loop();
  static char big[70000];
  tapio_options *o;
  drec s, c;
  char addr[TAPIO_ADDR_MAX];
  int port = bound_endpoint(loop, &s, "127.0.0.1");
  drec_init(&c);
  o = dgram_opts(loop, NULL, 0, "127.0.0.1", port);
  CHECK_OK(endpoint(loop, &c, o));
  CHECK_ERR(tapio_transport_sendto(c.t, "x", 1, addr,
                                   addr_of("127.0.0.1", port + 1, addr)),
            TAPIO_EISCONN);
  CHECK_OK(tapio_transport_sendto(c.t, "y", 1, addr,
                                  addr_of("127.0.0.1", port, addr)));
  CHECK_ERR(tapio_transport_sendto(c.t, "x", 1, addr,
                                   addr_of("::1", port, addr)),
            TAPIO_EAFNOSUPPORT);
  CHECK_ERR(tapio_transport_sendto(s.t, "x", 1, NULL, 0), TAPIO_EINVAL);
  CHECK_ERR(tapio_transport_sendto(c.t, big, sizeof big, NULL, 0),
            TAPIO_EMSGSIZE);
  CHECK_ERR(tapio_transport_sendto(c.t, NULL, 1, NULL, 0), TAPIO_EINVAL);
  CHECK_ERR(tapio_transport_sendto(c.t, "x", 1, addr, 1), TAPIO_EINVAL);
  CHECK_ERR(tapio_transport_sendto(NULL, "x", 1, NULL, 0), TAPIO_EINVAL);
  WAIT_FOR(loop, s.ndata == 1);
  run_for(loop, 0.05);
  CHECK_STR(s.log, "made data:1");
  CHECK_STR(c.log, "made");
  CHECK_EQ(tapio_transport_get_write_buffer_size(c.t), 0);
  tapio_options_free(o);
  free_loop(loop);
}

/* A datagram transport is not a stream: no write; it reads, and its
 * reading pauses as a stream's (test_dgram_pause.c). */
static void not_a_stream(void)
{
  tapio_loop *loop = new_loop();
  drec s;
  rec r;
  srv sv;
  bound_endpoint(loop, &s, "127.0.0.1");
  CHECK_ERR(tapio_transport_write(s.t, "x", 1), TAPIO_ENOTSUP);
  CHECK_ERR(tapio_transport_write_eof(s.t), TAPIO_ENOTSUP);
  CHECK_EQ(tapio_transport_can_write_eof(s.t), 0);
  CHECK_EQ(tapio_transport_is_reading(s.t), 1);
  srv_start_pair(&sv, loop, &r);
  CHECK_ERR(tapio_transport_sendto(r.t, "x", 1, NULL, 0), TAPIO_ENOTSUP);
  CHECK(tapio_transport_get_fd(s.t) > 2);
  srv_release_and_free(&sv, loop);
  rec_free(&r);
}

/* D8: sendto after close sends nothing (ECLOSED); at the fifth the
 * exception handler hears of it, once, as asyncio warns. */
static void sendto_after_close(void)
{
  tapio_loop *loop = new_loop();
  exc_rec e = { 0 };
  drec s;
  char addr[TAPIO_ADDR_MAX];
  size_t len;
  int i;
  int port = bound_endpoint(loop, &s, "127.0.0.1");
  tapio_transport *t = s.t;
  len = addr_of("127.0.0.1", port, addr);
  tapio_loop_set_exception_handler(loop, exc_record, &e);
  CHECK_OK(tapio_transport_close(t));
  for (i = 0; i < 7; i++) {
    CHECK_ERR(tapio_transport_sendto(t, "x", 1, addr, len), TAPIO_ECLOSED);
    CHECK_EQ(e.n, i >= 4);
  }
  CHECK_ERR(e.code, TAPIO_ECLOSED);
  CHECK(e.transport == t);
  WAIT_FOR(loop, s.lost);
  CHECK_STR(s.log, "made lost:0");
  free_loop(loop);
}

/* ---- Socket options: only what was asked for -------------------------------- */

static int sockopt_of(tapio_transport *t, int name)
{
  int v = -1;
  socklen_t len = sizeof v;
  CHECK(getsockopt(tapio_transport_get_fd(t), SOL_SOCKET, name, &v, &len) ==
        0);
  return v;
}

/* D11, D12: never SO_REUSEADDR; SO_REUSEPORT and SO_BROADCAST only when
 * asked; allow_broadcast with a remote address does not connect, and
 * sendto without an address goes there. */
static void socket_options(void)
{
  tapio_loop *loop = new_loop();
  tapio_options *o;
  drec a, b, c;
  char buf[16];
  struct sockaddr_storage ss;
  socklen_t sl = sizeof ss;
  int port, fd;
  bound_endpoint(loop, &a, "127.0.0.1");
  CHECK_EQ(sockopt_of(a.t, SO_REUSEADDR), 0);
  CHECK_EQ(sockopt_of(a.t, SO_REUSEPORT), 0);
  CHECK_EQ(sockopt_of(a.t, SO_BROADCAST), 0);
  o = dgram_opts(loop, "127.0.0.1", 0, NULL, 0);
  CHECK_OK(tapio_options_set_int(o, "reuse_port", 1));
  drec_init(&b);
  CHECK_OK(endpoint(loop, &b, o));
  CHECK_EQ(sockopt_of(b.t, SO_REUSEPORT), 1);
  CHECK_EQ(sockopt_of(b.t, SO_REUSEADDR), 0);
  tapio_options_free(o);
  fd = raw_udp(AF_INET, "127.0.0.1", &port);
  o = dgram_opts(loop, NULL, 0, "127.0.0.1", port);
  CHECK_OK(tapio_options_set_int(o, "allow_broadcast", 1));
  drec_init(&c);
  CHECK_OK(endpoint(loop, &c, o));
  CHECK_EQ(sockopt_of(c.t, SO_BROADCAST), 1);
  CHECK(getpeername(tapio_transport_get_fd(c.t), (struct sockaddr *)&ss,
                    &sl) < 0 && errno == ENOTCONN);
  CHECK_OK(tapio_transport_sendto(c.t, "bcast", 5, NULL, 0));
  CHECK_EQ(raw_recv_dgram(loop, fd, buf, sizeof buf), 5);
  close(fd);
  tapio_options_free(o);
  free_loop(loop);
}

/* ---- asyncio's checks of the call (D13, D14, D15) -------------------------- */

#define DG "create_datagram_endpoint: "

/* The call refuses o (TAPIO_EINVAL, nothing called) with the words why
 * (tapio_loop_error_message); o is freed. */
static void refused(tapio_loop *loop, tapio_options *o, const char *why)
{
  drec r;
  drec_init(&r);
  CHECK_ERR(tapio_create_datagram_endpoint(loop, &drec_proto, &r, o,
                                           never_connected, NULL),
            TAPIO_EINVAL);
  CHECK_STR(tapio_loop_error_message(loop), why);
  tapio_options_free(o);
  spin(loop, 1);
  CHECK_STR(r.log, "");
}

/* Options holding a socketpair's end of type as "sock"; *other is the
 * other end. */
static tapio_options *sock_opts(tapio_loop *loop, int type, int *sock,
                                int *other)
{
  tapio_options *o = new_options(loop);
  int sv[2];
  CHECK(socketpair(AF_UNIX, type, 0, sv) == 0);
  CHECK_OK(tapio_options_set_int(o, "sock", sv[0]));
  *sock = sv[0];
  *other = sv[1];
  return o;
}

static void option_errors(void)
{
  static const char modifiers[] = "(asyncio: socket modifier keyword "
    "arguments can not be used when sock is specified)";
  char want[256];
  tapio_loop *loop = new_loop();
  tapio_options *o;
  int sock, other;
  /* D13: IPv4 remote, IPv6 local; nothing to make a socket of */
  refused(loop, dgram_opts(loop, "::1", 0, "127.0.0.1", 9),
          DG "the local host '::1' and the remote host '127.0.0.1' are of "
          "different families (asyncio: can not get address information)");
  refused(loop, NULL, DG "no local or remote address, no family and no sock: "
          "nothing to make a socket of (asyncio: unexpected address "
          "family)");
  /* D14: sock with an address, every option named; a stream socket: the
   * sock is closed */
  o = sock_opts(loop, SOCK_DGRAM, &sock, &other);
  CHECK_OK(tapio_options_set_str(o, "local_host", "127.0.0.1"));
  CHECK_OK(tapio_options_set_int(o, "reuse_port", 1));
  CHECK_OK(tapio_options_set_int(o, "proto", 17));
  snprintf(want, sizeof want, DG "'sock' cannot be given with 'local_host', "
           "'reuse_port', 'proto' %s", modifiers);
  refused(loop, o, want);
  CHECK(fcntl(sock, F_GETFD) < 0);
  close(other);
  refused(loop, sock_opts(loop, SOCK_STREAM, &sock, &other),
          DG "'sock' is a stream socket; a datagram socket was expected");
  CHECK(fcntl(sock, F_GETFD) < 0);
  close(other);
  /* a remote host with no port, a port with no host; a path with a
   * family, or with an IP address; another call's option */
  o = new_options(loop);
  CHECK_OK(tapio_options_set_str(o, "remote_host", "127.0.0.1"));
  refused(loop, o, DG "the remote address has a host but no port (it is a "
          "host and a port)");
  o = new_options(loop);
  CHECK_OK(tapio_options_set_int(o, "remote_port", 9));
  refused(loop, o, DG "the remote address has a port but no host (it is a "
          "host and a port)");
  o = new_options(loop);
  CHECK_OK(tapio_options_set_str(o, "local_path", "/tmp/x"));
  CHECK_OK(tapio_options_set_int(o, "family", 4));
  CHECK_ERR(tapio_options_set_int(o, "remote_port", 70000), TAPIO_EINVAL);
  refused(loop, o, DG "'family' given with a Unix path (a path's family is "
          "AF_UNIX)");
  o = dgram_opts(loop, NULL, 0, "127.0.0.1", 9);
  CHECK_OK(tapio_options_set_str(o, "local_path", "/tmp/x"));
  refused(loop, o, DG "an IP address (a host or port) and a Unix path given "
          "together: the local and remote addresses must be both IP or both "
          "Unix paths");
  o = dgram_opts(loop, "127.0.0.1", 0, NULL, 0);
  CHECK_OK(tapio_options_set_int(o, "reuse_address", 1));
  refused(loop, o, "create_datagram_endpoint does not take option "
          "'reuse_address'");
  free_loop(loop);
}

/* D13: a bind that fails is the completion's error, named, and leaves no
 * socket behind. */
static void bind_failure(void)
{
  tapio_loop *loop = new_loop();
  tapio_options *o;
  conn_wait w = { 0 };
  drec r;
  int port, fd = raw_udp(AF_INET, "127.0.0.1", &port), before;
  drec_init(&r);
  o = dgram_opts(loop, "127.0.0.1", port, NULL, 0);
  before = fd_count();
  CHECK_OK(tapio_create_datagram_endpoint(loop, &drec_proto, &r, o,
                                          on_connected, &w));
  WAIT_FOR(loop, w.done);
  CHECK_ERR(w.status, TAPIO_EADDRINUSE);
  CHECK_EQ(fd_count(), before);
  CHECK_STR(r.log, "");
  close(fd);
  tapio_options_free(o);
  free_loop(loop);
}

/* D15: literal addresses are bound and connected with no lookup (the
 * server logs none); a name is looked up, without blocking. */
static void literals_and_names(void)
{
  dns_server d;
  tapio_loop *loop;
  tapio_options *o;
  char log[1024] = "";
  drec s, c;
  int port;
  dns_start(&d, 1);
  loop = dns_loop(&d, 2);
  port = bound_endpoint(loop, &s, "127.0.0.1");
  s.echo = 1;
  o = dgram_opts(loop, "127.0.0.1", 0, "127.0.0.1", port);
  drec_init(&c);
  CHECK_OK(endpoint(loop, &c, o));
  tapio_options_free(o);
  dns_queries(&d, log, sizeof log);
  CHECK_STR(log, "");
  o = dgram_opts(loop, NULL, 0, "v4.tapio.test", port);
  drec_init(&c);
  CHECK_OK(endpoint(loop, &c, o));
  CHECK_OK(tapio_transport_sendto(c.t, "n", 1, NULL, 0));
  WAIT_FOR(loop, c.ndata == 1);
  tapio_options_free(o);
  o = dgram_opts(loop, NULL, 0, "nosuch.tapio.test", port);
  drec_init(&c);
  CHECK_ERR(endpoint(loop, &c, o), TAPIO_EAI_NONAME);
  tapio_options_free(o);
  free_loop(loop);
  dns_stop(&d);
}

/* A pending create_datagram_endpoint (its name never answered) is
 * cancelled: nobody is called. */
static void cancel_endpoint(void)
{
  dns_server d;
  tapio_loop *loop;
  tapio_options *o;
  drec r;
  int tag;
  dns_start(&d, 0);
  loop = dns_loop(&d, 0.2);
  drec_init(&r);
  o = dgram_opts(loop, NULL, 0, "silent.v4.tapio.test", 9);
  CHECK_OK(tapio_create_datagram_endpoint(loop, &drec_proto, &r, o,
                                          never_connected, &tag));
  spin(loop, 3);
  CHECK_EQ(tapio_cancel_pending(loop, &tag), 1);
  run_for(loop, 0.4);
  CHECK_STR(r.log, "");
  tapio_options_free(o);
  free_loop(loop);
  dns_stop(&d);
}

/* ---- Unix datagram sockets (D16) and sockets handed over --------------------- */

static void unix_endpoint(void)
{
  char dir[] = "/tmp/tapio-dgram-XXXXXX", path[128], peer[128];
  tapio_loop *loop = new_loop();
  tapio_options *o = new_options(loop);
  struct sockaddr_un un;
  char buf[64], host[128];
  drec s;
  int fd, stale;
  CHECK(mkdtemp(dir) != NULL);
  snprintf(path, sizeof path, "%s/server", dir);
  snprintf(peer, sizeof peer, "%s/peer", dir);
  /* a stale socket file where the endpoint binds is removed first */
  stale = socket(AF_UNIX, SOCK_DGRAM, 0);
  CHECK(bind(stale, (struct sockaddr *)&un, unix_sockaddr(&un, path)) == 0);
  close(stale);
  CHECK_OK(tapio_options_set_str(o, "local_path", path));
  drec_init(&s);
  s.echo = 1;
  CHECK_OK(endpoint(loop, &s, o));
  CHECK_OK(tapio_transport_get_sockname(s.t, host, sizeof host, NULL, NULL));
  CHECK_STR(host, path);
  fd = socket(AF_UNIX, SOCK_DGRAM, 0);
  CHECK(bind(fd, (struct sockaddr *)&un, unix_sockaddr(&un, peer)) == 0);
  raw_nonblock(fd);
  CHECK(sendto(fd, "hi", 2, 0, (struct sockaddr *)&un,
               unix_sockaddr(&un, path)) == 2);
  WAIT_FOR(loop, s.ndata == 1);
  CHECK_OK(tapio_addr_format(s.from, s.from_len, host, sizeof host, NULL,
                             NULL));
  CHECK_STR(host, peer);
  CHECK_EQ(raw_recv_dgram(loop, fd, buf, sizeof buf), 7);
  CHECK(memcmp(buf, "resp:hi", 7) == 0);
  close(fd);
  tapio_options_free(o);
  free_loop(loop);
  unlink(path);
  unlink(peer);
  rmdir(dir);
}

/* uvloop's test_socketpair: a connected Unix datagram socket handed over;
 * the peer is unnamed (addrlen 0), and sendto with no address replies. */
static void socketpair_handed_over(void)
{
  tapio_loop *loop = new_loop();
  tapio_options *o = new_options(loop);
  char buf[16];
  drec s;
  int sv[2];
  CHECK(socketpair(AF_UNIX, SOCK_DGRAM, 0, sv) == 0);
  raw_nonblock(sv[1]);
  CHECK_OK(tapio_options_set_int(o, "sock", sv[0]));
  drec_init(&s);
  CHECK_OK(endpoint(loop, &s, o));
  CHECK_EQ(tapio_transport_get_fd(s.t), sv[0]);
  CHECK(send(sv[1], "abc", 3, 0) == 3);
  WAIT_FOR(loop, s.ndata == 1);
  CHECK_EQ(s.from_len, 0);
  CHECK_OK(tapio_transport_sendto(s.t, "def", 3, NULL, 0));
  CHECK_EQ(raw_recv_dgram(loop, sv[1], buf, sizeof buf), 3);
  CHECK(memcmp(buf, "def", 3) == 0);
  close(sv[1]);
  tapio_options_free(o);
  free_loop(loop);
}

/* A "sock" is the endpoint's from the call on: given again meanwhile (to
 * a second create call, to add_reader) it is refused as owned and stays
 * open; a call cancelled before the loop ran it closes it, once. */
static void sock_taken_at_the_call(void)
{
  tapio_loop *loop = new_loop();
  tapio_options *o = new_options(loop);
  conn_wait w = { 0 }, again = { 0 }, gone = { 0 };
  drec s, t, u;
  int sv[2];
  CHECK(socketpair(AF_UNIX, SOCK_DGRAM, 0, sv) == 0);
  CHECK_OK(tapio_options_set_int(o, "sock", sv[0]));
  drec_init(&s);
  drec_init(&t);
  drec_init(&u);
  CHECK_OK(tapio_create_datagram_endpoint(loop, &drec_proto, &s, o,
                                          on_connected, &w));
  CHECK_ERR(tapio_create_datagram_endpoint(loop, &drec_proto, &t, o,
                                           on_connected, &again),
            TAPIO_EBUSY);
  CHECK_ERR(tapio_add_reader(loop, sv[0], never_called, NULL), TAPIO_EBUSY);
  CHECK(fcntl(sv[0], F_GETFD) >= 0);
  WAIT_FOR(loop, w.done);
  CHECK_OK(w.status);
  CHECK_EQ(tapio_transport_get_fd(s.t), sv[0]);
  CHECK_STR(t.log, "");
  CHECK_EQ(again.done, 0);
  tapio_transport_abort(s.t);
  WAIT_FOR(loop, s.lost);
  close(sv[1]);
  CHECK(socketpair(AF_UNIX, SOCK_DGRAM, 0, sv) == 0);
  CHECK_OK(tapio_options_set_int(o, "sock", sv[0]));
  CHECK_OK(tapio_create_datagram_endpoint(loop, &drec_proto, &u, o,
                                          on_connected, &gone));
  CHECK_EQ(tapio_cancel_pending(loop, &gone), 1);
  CHECK(fcntl(sv[0], F_GETFD) < 0);
  spin(loop, 1);
  CHECK_EQ(gone.done, 0);
  CHECK_STR(u.log, "");
  close(sv[1]);
  tapio_options_free(o);
  free_loop(loop);
}

/* A Unix datagram socket has no error queue: recvmsg(MSG_ERRQUEUE) there
 * reads an ordinary datagram. When the peer of a socketpair connects
 * elsewhere with datagrams of ours unread, our socket gets ECONNRESET
 * with its own datagrams still queued: error_received, then every one of
 * them (none eaten as if it were an ICMP report). */
static void unix_reset_keeps_datagrams(void)
{
  tapio_loop *loop = new_loop();
  tapio_options *o = new_options(loop);
  struct sockaddr_un un;
  char name[64];
  drec s;
  int sv[2], third;
  socklen_t len;
  CHECK(socketpair(AF_UNIX, SOCK_DGRAM, 0, sv) == 0);
  CHECK_OK(tapio_options_set_int(o, "sock", sv[0]));
  drec_init(&s);
  CHECK_OK(endpoint(loop, &s, o));
  third = socket(AF_UNIX, SOCK_DGRAM, 0);
  memset(&un, 0, sizeof un);
  un.sun_family = AF_UNIX;
  snprintf(name, sizeof name, "tapio-reset-%d", (int)getpid());
  memcpy(un.sun_path + 1, name, strlen(name)); /* abstract */
  len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + strlen(name));
  CHECK(bind(third, (struct sockaddr *)&un, len) == 0);
  CHECK(send(sv[1], "one", 3, 0) == 3);
  CHECK(send(sv[1], "three", 5, 0) == 5);
  CHECK(send(sv[0], "x", 1, 0) == 1); /* the peer holds one of ours */
  CHECK(connect(sv[1], (struct sockaddr *)&un, len) == 0);
  WAIT_FOR(loop, s.ndata == 2);
  CHECK_STR(s.log, "made err:ECONNRESET data:3 data:5");
  CHECK(memcmp(s.last, "three", 5) == 0);
  close(third);
  close(sv[1]);
  tapio_options_free(o);
  free_loop(loop);
}

/* remote_flowinfo and a "%scope" of remote_host: the peer's socket
 * address has them (get_peeraddr), as it was given; get_sockaddr is
 * getsockname's. */
static void remote_flowinfo_and_scope(void)
{
  tapio_loop *loop;
  tapio_options *o;
  struct sockaddr_in6 peer, self;
  size_t len = sizeof peer;
  char host[64], small[4];
  unsigned lo = if_nametoindex("lo");
  drec s, c;
  int port;
  if (!ipv6_available() || lo == 0)
    SKIP("no IPv6 loopback");
  loop = new_loop();
  port = bound_endpoint(loop, &s, "::1");
  snprintf(host, sizeof host, "::1%%%u", lo);
  o = dgram_opts(loop, NULL, 0, host, port);
  CHECK_OK(tapio_options_set_int(o, "remote_flowinfo", 5));
  drec_init(&c);
  CHECK_OK(endpoint(loop, &c, o));
  CHECK_OK(tapio_transport_get_peeraddr(c.t, &peer, &len));
  CHECK_EQ(len, sizeof peer);
  CHECK_EQ(ntohl(peer.sin6_flowinfo), 5);
  CHECK_EQ(peer.sin6_scope_id, lo);
  CHECK_EQ(ntohs(peer.sin6_port), port);
  len = sizeof self;
  CHECK_OK(tapio_transport_get_sockaddr(c.t, &self, &len));
  CHECK_EQ(self.sin6_family, AF_INET6);
  CHECK(ntohs(self.sin6_port) != 0);
  len = sizeof small;
  CHECK_ERR(tapio_transport_get_sockaddr(c.t, small, &len), TAPIO_ENOBUFS);
  CHECK_OK(tapio_transport_sendto(c.t, "x", 1, NULL, 0));
  WAIT_FOR(loop, s.ndata == 1);
  CHECK_ERR(tapio_options_set_int(o, "remote_flowinfo", 1048576),
            TAPIO_EINVAL);
  tapio_options_free(o);
  free_loop(loop);
}

/* Freeing the loop: the endpoint's connection_lost gets ECANCELED. */
static void free_loop_with_endpoint(void)
{
  tapio_loop *loop = new_loop();
  drec s;
  bound_endpoint(loop, &s, "127.0.0.1");
  free_loop(loop);
  CHECK_STR(s.log, "made lost:ECANCELED");
}

/* The growth rule: a table smaller than this version's is refused. */
static void protocol_size(void)
{
  tapio_loop *loop = new_loop();
  tapio_options *o = dgram_opts(loop, "127.0.0.1", 0, NULL, 0);
  tapio_datagram_protocol small = drec_proto;
  drec r;
  drec_init(&r);
  small.size = sizeof(tapio_datagram_protocol) - 1;
  CHECK_ERR(tapio_create_datagram_endpoint(loop, &small, &r, o,
                                           never_connected, NULL),
            TAPIO_EINVAL);
  CHECK_ERR(tapio_create_datagram_endpoint(loop, NULL, &r, o,
                                           never_connected, NULL),
            TAPIO_EINVAL);
  tapio_options_free(o);
  free_loop(loop);
}

TEST_MAIN(TEST(echo_ipv4), TEST(echo_ipv6), TEST(empty_datagrams),
          TEST(connected_refused_keeps_going),
          TEST(unconnected_refused_ipv4), TEST(unconnected_refused_ipv6),
          TEST(error_does_not_spin), TEST(errors_without_callbacks),
          TEST(unroutable_destination),
          TEST(sendto_errors), TEST(not_a_stream), TEST(sendto_after_close),
          TEST(socket_options), TEST(option_errors), TEST(bind_failure),
          TEST(literals_and_names), TEST(cancel_endpoint),
          TEST(unix_endpoint), TEST(socketpair_handed_over),
          TEST(sock_taken_at_the_call),
          TEST(unix_reset_keeps_datagrams), TEST(remote_flowinfo_and_scope),
          TEST(free_loop_with_endpoint), TEST(protocol_size))
