/* asyncio's proto and flags: the "proto" and "flags" options of
 * create_connection, create_server and create_datagram_endpoint, and
 * tapio_getaddrinfo_proto. flags go into the lookups (a literal address
 * still needs none); proto into the sockets, and it must be a protocol of
 * the call's socket type, as getaddrinfo checks it. */
#include "dgram.h"
#include "dns.h"

#include <netdb.h>
#include <netinet/in.h>

/* ---- getaddrinfo's proto ------------------------------------------------- */

typedef struct gai_wait {
  int done, status;
  char text[256]; /* "127.0.0.1:7/2/17 ..." (address:port/type/protocol) */
} gai_wait;

static void on_gai(void *ud, int status, const tapio_addrinfo *res)
{
  gai_wait *w = ud;
  size_t i;
  w->done++;
  w->status = status;
  for (i = 0; i < tapio_addrinfo_count(res); i++) {
    const void *addr;
    size_t len;
    int type, proto, port;
    char host[64];
    CHECK_OK(tapio_addrinfo_get(res, i, &addr, &len, NULL, &type, &proto));
    CHECK_OK(tapio_addr_format(addr, len, host, sizeof host, &port, NULL));
    snprintf(w->text + strlen(w->text), sizeof w->text - strlen(w->text),
             "%s%s:%d/%d/%d", i ? " " : "", host, port, type, proto);
  }
}

static int gai_with(tapio_loop *loop, const char *host, const char *service,
                    int family, int type, int proto, int flags, gai_wait *w)
{
  memset(w, 0, sizeof *w);
  CHECK_OK(tapio_getaddrinfo_proto(loop, host, service, family, type, proto,
                                   flags, on_gai, w));
  WAIT_FOR(loop, w->done);
  return w->status;
}

static int gai(tapio_loop *loop, const char *host, int type, int proto,
               gai_wait *w)
{
  return gai_with(loop, host, "7", 0, type, proto, 0, w);
}

/* Stream entries of host:7 for family and flags. */
static int gai_flags(tapio_loop *loop, const char *host, int family,
                     int flags, gai_wait *w)
{
  return gai_with(loop, host, "7", family, TAPIO_SOCK_STREAM, 0, flags, w);
}

/* Every entry carries the protocol; with no type it picks its type; a
 * name (from the tests' DNS server) is answered the same. */
static void getaddrinfo_proto_entries(void)
{
  dns_server d;
  gai_wait w;
  tapio_loop *loop;
  dns_start(&d, 0);
  loop = dns_loop(&d, 2);
  CHECK_OK(gai(loop, "127.0.0.1", 0, IPPROTO_UDP, &w));
  CHECK_STR(w.text, "127.0.0.1:7/2/17");
  CHECK_OK(gai(loop, "127.0.0.1", TAPIO_SOCK_DGRAM, IPPROTO_UDPLITE, &w));
  CHECK_STR(w.text, "127.0.0.1:7/2/136");
  CHECK_OK(gai(loop, "127.0.0.1", 0, IPPROTO_SCTP, &w));
  CHECK_STR(w.text, "127.0.0.1:7/1/132");
  CHECK_OK(gai(loop, "v4.tapio.test", 0, IPPROTO_TCP, &w));
  CHECK_STR(w.text, "127.0.0.1:7/1/6");
  CHECK_OK(gai(loop, "127.0.0.1", 0, 0, &w));
  CHECK_STR(w.text, "127.0.0.1:7/1/6 127.0.0.1:7/2/17");
  free_loop(loop);
  dns_stop(&d);
}

/* A protocol of the other type is glibc's EAI_SOCKTYPE ("ai_socktype not
 * supported"), at once; out of range, EINVAL. */
static void getaddrinfo_proto_refused(void)
{
  tapio_loop *loop = new_loop();
  gai_wait w = { 0 };
  CHECK_ERR(tapio_getaddrinfo_proto(loop, "127.0.0.1", "7", 0,
                                    TAPIO_SOCK_STREAM, IPPROTO_UDP, 0,
                                    on_gai, &w), TAPIO_EAI_SOCKTYPE);
  CHECK_ERR(tapio_getaddrinfo_proto(loop, "x.test", "7", 0, TAPIO_SOCK_DGRAM,
                                    IPPROTO_TCP, 0, on_gai, &w),
            TAPIO_EAI_SOCKTYPE);
  CHECK_ERR(tapio_getaddrinfo_proto(loop, "127.0.0.1", "7", 0, 0, 99, 0,
                                    on_gai, &w), TAPIO_EAI_SOCKTYPE);
  CHECK_ERR(tapio_getaddrinfo_proto(loop, "127.0.0.1", "7", 0, 0, 256, 0,
                                    on_gai, &w), TAPIO_EINVAL);
  CHECK_ERR(tapio_getaddrinfo_proto(loop, "127.0.0.1", "7", 0, 0, -1, 0,
                                    on_gai, &w), TAPIO_EINVAL);
  CHECK_STR(tapio_strerror(TAPIO_EAI_SOCKTYPE),
            "protocol not supported for socket type");
  spin(loop, 2);
  CHECK_EQ(w.done, 0);
  free_loop(loop);
}

/* ---- flags ---------------------------------------------------------------- */

/* TAPIO_AI_NUMERICHOST: a name fails as getaddrinfo's does, with no query
 * sent, not even for one /etc/hosts has; a literal connects. */
static void connect_numerichost(void)
{
  dns_server d;
  tapio_loop *loop;
  tapio_options *o;
  char log[512] = "";
  srv sv;
  rec c, bad;
  dns_start(&d, 1);
  loop = dns_loop(&d, 2);
  o = new_options(loop);
  rec_init(&c);
  rec_init(&bad);
  srv_start(&sv, loop);
  CHECK_OK(tapio_options_set_int(o, "flags", TAPIO_AI_NUMERICHOST));
  CHECK_ERR(connect_tcp(loop, "v4.tapio.test", sv.port, &bad, o),
            TAPIO_EAI_NONAME);
  CHECK_ERR(connect_tcp(loop, "localhost", sv.port, &bad, o),
            TAPIO_EAI_NONAME);
  CHECK_OK(connect_tcp(loop, "127.0.0.1", sv.port, &c, o));
  srv_wait_conn(&sv, 0);
  tapio_options_free(o);
  srv_release_and_free(&sv, loop);
  dns_queries(&d, log, sizeof log);
  CHECK_STR(log, "");
  rec_free(&c);
  rec_free(&bad);
  dns_stop(&d);
}

/* Each address's host, joined with spaces. */
static void hosts_of(tapio_server *s, char *out, size_t cap)
{
  size_t i;
  out[0] = '\0';
  for (i = 0; i < (size_t)tapio_server_socket_count(s); i++) {
    char host[64];
    CHECK_OK(tapio_server_get_address(s, i, host, sizeof host, NULL, NULL));
    snprintf(out + strlen(out), cap - strlen(out), "%s%s", i ? " " : "",
             host);
  }
}

/* A server's flags default to TAPIO_AI_PASSIVE: no host is every
 * interface; flags 0 makes it loopback, as asyncio's flags=0 does. */
static void server_flags(void)
{
  tapio_loop *loop = new_loop();
  tapio_options *o = new_options(loop);
  char got[128];
  srv all, lo;
  srv_init(&all, loop);
  srv_init(&lo, loop);
  CHECK_OK(tapio_options_set_int(o, "family", 4));
  CHECK_OK(srv_start_hosts(&all, NULL, 0, 0, o));
  hosts_of(all.s, got, sizeof got);
  CHECK_STR(got, "0.0.0.0");
  CHECK_OK(tapio_options_set_int(o, "flags", 0));
  CHECK_OK(srv_start_hosts(&lo, NULL, 0, 0, o));
  hosts_of(lo.s, got, sizeof got);
  CHECK_STR(got, "127.0.0.1");
  tapio_options_free(o);
  tapio_server_release(all.s);
  srv_release_and_free(&lo, loop);
  srv_free(&all);
}

/* create_datagram_endpoint's flags go into remote_host's lookup. */
static void datagram_numerichost(void)
{
  tapio_loop *loop = new_loop();
  tapio_options *o = dgram_opts(loop, NULL, 0, "localhost", 9);
  drec r;
  drec_init(&r);
  CHECK_OK(tapio_options_set_int(o, "flags", TAPIO_AI_NUMERICHOST));
  CHECK_ERR(endpoint(loop, &r, o), TAPIO_EAI_NONAME);
  tapio_options_free(o);
  free_loop(loop);
}

/* AI_V4MAPPED and AI_ALL, as glibc's getaddrinfo answers them for names
 * of /etc/hosts and literals (Python's socket.getaddrinfo here): family 6
 * gets IPv4 as ::ffff:a.b.c.d when there is no IPv6 address, both with
 * AI_ALL (IPv6 first); AI_ALL alone, or another family, changes nothing.
 * Names from DNS and literals alike. */
static void getaddrinfo_v4mapped(void)
{
  const int mapped = TAPIO_AI_V4MAPPED, all = TAPIO_AI_V4MAPPED |
                                              TAPIO_AI_ALL;
  dns_server d;
  gai_wait w;
  tapio_loop *loop;
  dns_start(&d, 0);
  loop = dns_loop(&d, 2);
  CHECK_OK(gai_flags(loop, "v4.tapio.test", 6, mapped, &w));
  CHECK_STR(w.text, "::ffff:127.0.0.1:7/1/6");
  CHECK_OK(gai_flags(loop, "both.tapio.test", 6, mapped, &w));
  CHECK_STR(w.text, "::1:7/1/6");
  CHECK_OK(gai_flags(loop, "both.tapio.test", 6, all, &w));
  CHECK_STR(w.text, "::1:7/1/6 ::ffff:127.0.0.1:7/1/6");
  CHECK_OK(gai_flags(loop, "v6.tapio.test", 6, all, &w));
  CHECK_STR(w.text, "::1:7/1/6");
  CHECK_OK(gai_flags(loop, "v4.tapio.test", 6, all, &w));
  CHECK_STR(w.text, "::ffff:127.0.0.1:7/1/6");
  CHECK_ERR(gai_flags(loop, "v4.tapio.test", 6, TAPIO_AI_ALL, &w),
            TAPIO_EAI_NONAME);
  CHECK_OK(gai_flags(loop, "both.tapio.test", 0, all, &w));
  CHECK_STR(w.text, "::1:7/1/6 127.0.0.1:7/1/6");
  CHECK_OK(gai_flags(loop, "both.tapio.test", 4, all, &w));
  CHECK_STR(w.text, "127.0.0.1:7/1/6");
  CHECK_OK(gai_flags(loop, "127.0.0.1", 6, mapped, &w));
  CHECK_STR(w.text, "::ffff:127.0.0.1:7/1/6");
  CHECK_ERR(gai_flags(loop, "127.0.0.1", 6, 0, &w), TAPIO_EAI_FAMILY);
  CHECK_OK(gai_flags(loop, NULL, 6, mapped, &w));
  CHECK_STR(w.text, "::1:7/1/6");
  free_loop(loop);
  dns_stop(&d);
}

/* Whether glibc's getaddrinfo answers a literal of af with AI_ADDRCONFIG:
 * whether this host has an address of that family (127.0.0.1 and ::1
 * aside). The test's oracle, so that it holds on any host. */
static int glibc_configured(int af)
{
  struct addrinfo hints, *res = NULL;
  int rc;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = af;
  hints.ai_flags = AI_ADDRCONFIG | AI_NUMERICHOST;
  rc = getaddrinfo(af == AF_INET ? "127.0.0.1" : "::1", "7", &hints, &res);
  if (res)
    freeaddrinfo(res);
  return rc == 0;
}

/* AI_ADDRCONFIG means what it means to glibc here, on every path: a
 * family the host has no address of is no such name (a literal too: a
 * loopback-only host answers nothing for family 4 or 6), and family 0
 * narrows to the host's one family when it has addresses of one only. */
static void getaddrinfo_addrconfig(void)
{
  const int ac = TAPIO_AI_ADDRCONFIG;
  int v4 = glibc_configured(AF_INET), v6 = glibc_configured(AF_INET6);
  const char *both = v4 == v6 ? "::1:7/1/6 127.0.0.1:7/1/6"
                     : v4     ? "127.0.0.1:7/1/6"
                              : "::1:7/1/6";
  dns_server d;
  gai_wait w;
  tapio_loop *loop;
  dns_start(&d, 0);
  loop = dns_loop(&d, 2);
  CHECK_ERR(gai_flags(loop, "127.0.0.1", 4, ac, &w),
            v4 ? 0 : TAPIO_EAI_NONAME);
  CHECK_ERR(gai_flags(loop, "::1", 6, ac, &w), v6 ? 0 : TAPIO_EAI_NONAME);
  CHECK_ERR(gai_flags(loop, NULL, 6, ac, &w), v6 ? 0 : TAPIO_EAI_NONAME);
  CHECK_ERR(gai_flags(loop, "v4.tapio.test", 4, ac, &w),
            v4 ? 0 : TAPIO_EAI_NONAME);
  CHECK_ERR(gai_flags(loop, "both.tapio.test", 6, ac, &w),
            v6 ? 0 : TAPIO_EAI_NONAME);
  CHECK_OK(gai_flags(loop, "both.tapio.test", 0, ac, &w));
  CHECK_STR(w.text, both);
  free_loop(loop);
  dns_stop(&d);
}

/* AI_NUMERICSERV: a service's name is no such name, before any query (a
 * port number, also glibc's " 80", goes). */
static void getaddrinfo_numericserv(void)
{
  const int ns = TAPIO_AI_NUMERICSERV;
  dns_server d;
  gai_wait w;
  tapio_loop *loop;
  char log[256] = "";
  dns_start(&d, 1);
  loop = dns_loop(&d, 2);
  CHECK_ERR(gai_with(loop, "127.0.0.1", "echo", 0, 1, 0, ns, &w),
            TAPIO_EAI_NONAME);
  CHECK_ERR(gai_with(loop, "v4.tapio.test", "echo", 0, 1, 0, ns, &w),
            TAPIO_EAI_NONAME);
  CHECK_OK(gai_with(loop, "127.0.0.1", "echo", 0, 1, 0, 0, &w));
  CHECK_STR(w.text, "127.0.0.1:7/1/6");
  CHECK_OK(gai_with(loop, "127.0.0.1", " 7", 0, 1, 0, ns, &w));
  CHECK_STR(w.text, "127.0.0.1:7/1/6");
  dns_queries(&d, log, sizeof log);
  CHECK_STR(log, "");
  CHECK_OK(gai_with(loop, "v4.tapio.test", "7", 0, 1, 0, ns, &w));
  CHECK_STR(w.text, "127.0.0.1:7/1/6");
  free_loop(loop);
  dns_stop(&d);
}

/* create_connection's flags reach its lookup: family 6 with V4MAPPED
 * connects to an IPv4 name's server, the peer ::ffff:127.0.0.1. */
static void connect_v4mapped(void)
{
  dns_server d;
  tapio_loop *loop;
  tapio_options *o;
  char host[64];
  srv sv;
  rec c;
  dns_start(&d, 0);
  loop = dns_loop(&d, 2);
  o = new_options(loop);
  rec_init(&c);
  srv_start(&sv, loop);
  CHECK_OK(tapio_options_set_int(o, "family", 6));
  CHECK_ERR(connect_tcp(loop, "v4.tapio.test", sv.port, &c, o),
            TAPIO_EAI_NONAME);
  CHECK_OK(tapio_options_set_int(o, "flags", TAPIO_AI_V4MAPPED));
  CHECK_OK(connect_tcp(loop, "v4.tapio.test", sv.port, &c, o));
  srv_wait_conn(&sv, 0);
  CHECK_OK(tapio_transport_get_peername(c.t, host, sizeof host, NULL,
                                        NULL));
  CHECK_STR(host, "::ffff:127.0.0.1");
  tapio_options_free(o);
  srv_release_and_free(&sv, loop);
  rec_free(&c);
  dns_stop(&d);
}

/* create_datagram_endpoint's flags go into both lookups: remote_host
 * mapped as create_connection's. */
static void datagram_v4mapped(void)
{
  tapio_loop *loop = new_loop();
  tapio_options *o = dgram_opts(loop, NULL, 0, "127.0.0.1", 9);
  char host[64];
  drec r;
  drec_init(&r);
  CHECK_OK(tapio_options_set_int(o, "family", 6));
  CHECK_OK(tapio_options_set_int(o, "flags", TAPIO_AI_V4MAPPED));
  CHECK_OK(endpoint(loop, &r, o));
  CHECK_OK(tapio_transport_get_peername(r.t, host, sizeof host, NULL,
                                        NULL));
  CHECK_STR(host, "::ffff:127.0.0.1");
  tapio_options_free(o);
  CHECK_OK(tapio_transport_close(r.t));
  WAIT_FOR(loop, r.lost);
  free_loop(loop);
}

/* ---- proto ---------------------------------------------------------------- */

/* The socket is made with it: UDP-Lite here (where the kernel has it). */
static void datagram_proto_udplite(void)
{
  tapio_loop *loop = new_loop();
  tapio_options *o = dgram_opts(loop, "127.0.0.1", 0, NULL, 0);
  int got = 0, probe = socket(AF_INET, SOCK_DGRAM, IPPROTO_UDPLITE);
  socklen_t len = sizeof got;
  drec r;
  if (probe < 0) {
    free_loop(loop);
    SKIP("no UDP-Lite in this kernel");
  }
  close(probe);
  drec_init(&r);
  CHECK_OK(tapio_options_set_int(o, "proto", IPPROTO_UDPLITE));
  CHECK_OK(endpoint(loop, &r, o));
  tapio_options_free(o);
  CHECK(getsockopt(tapio_transport_get_fd(r.t), SOL_SOCKET, SO_PROTOCOL,
                   &got, &len) == 0);
  CHECK_EQ(got, IPPROTO_UDPLITE);
  CHECK_OK(tapio_transport_close(r.t));
  WAIT_FOR(loop, r.lost);
  free_loop(loop);
}

/* create_connection's socket is made with it: SCTP to a TCP server's
 * port never makes a TCP connection (no SCTP here, or nobody on SCTP). */
static void connect_proto_sctp(void)
{
  tapio_loop *loop = new_loop();
  tapio_options *o = new_options(loop);
  srv sv;
  rec c;
  int rc;
  rec_init(&c);
  srv_start(&sv, loop);
  CHECK_OK(tapio_options_set_int(o, "proto", IPPROTO_SCTP));
  rc = connect_tcp(loop, "127.0.0.1", sv.port, &c, o);
  CHECK(rc == TAPIO_EPROTONOSUPPORT || rc == TAPIO_ECONNREFUSED);
  CHECK_EQ(sv.n, 0);
  tapio_options_free(o);
  srv_release_and_free(&sv, loop);
  rec_free(&c);
}

/* The call's own type's protocols go; another is EAI_SOCKTYPE at once,
 * with words that name the call. */
static void proto_of_the_other_type(void)
{
  tapio_loop *loop = new_loop();
  tapio_options *o = new_options(loop);
  conn_wait w = { 0 };
  srv sv;
  rec c;
  drec r;
  rec_init(&c);
  drec_init(&r);
  srv_start(&sv, loop);
  CHECK_OK(tapio_options_set_int(o, "proto", IPPROTO_TCP));
  CHECK_OK(connect_tcp(loop, "127.0.0.1", sv.port, &c, o));
  CHECK_OK(tapio_options_set_int(o, "proto", IPPROTO_UDP));
  CHECK_ERR(tapio_create_connection(loop, "127.0.0.1", sv.port, &rec_proto,
                                    &c, o, on_connected, &w),
            TAPIO_EAI_SOCKTYPE);
  CHECK_STR(tapio_loop_error_message(loop),
            "create_connection: option 'proto' 17 is no stream socket's "
            "protocol (getaddrinfo: ai_socktype not supported)");
  tapio_options_free(o);
  o = dgram_opts(loop, "127.0.0.1", 0, NULL, 0);
  CHECK_OK(tapio_options_set_int(o, "proto", IPPROTO_TCP));
  CHECK_ERR(tapio_create_datagram_endpoint(loop, &drec_proto, &r, o,
                                           on_connected, &w),
            TAPIO_EAI_SOCKTYPE);
  CHECK_STR(tapio_loop_error_message(loop),
            "create_datagram_endpoint: option 'proto' 6 is no datagram "
            "socket's protocol (getaddrinfo: ai_socktype not supported)");
  CHECK_ERR(tapio_options_set_int(o, "proto", 256), TAPIO_EINVAL);
  CHECK_ERR(tapio_options_set_int(o, "flags", 64), TAPIO_EINVAL);
  CHECK_OK(tapio_options_set_int(o, "flags", TAPIO_AI_NUMERICSERV));
  tapio_options_free(o);
  spin(loop, 2);
  CHECK_EQ(w.done, 0);
  srv_release_and_free(&sv, loop);
  rec_free(&c);
}

TEST_MAIN(TEST(getaddrinfo_proto_entries), TEST(getaddrinfo_proto_refused),
          TEST(connect_numerichost), TEST(server_flags),
          TEST(datagram_numerichost), TEST(getaddrinfo_v4mapped),
          TEST(getaddrinfo_addrconfig), TEST(getaddrinfo_numericserv),
          TEST(connect_v4mapped), TEST(datagram_v4mapped),
          TEST(datagram_proto_udplite),
          TEST(connect_proto_sctp), TEST(proto_of_the_other_type))
