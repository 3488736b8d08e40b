/* asyncio's proto and flags: the "proto" and "flags" options of
 * create_connection, create_server and create_datagram_endpoint, and
 * tapio_getaddrinfo_proto. flags go into the lookups (a literal address
 * still needs none); proto into the sockets, and it must be a protocol of
 * the call's socket type, as getaddrinfo checks it. */
#include "dgram.h"
#include "dns.h"

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

static int gai(tapio_loop *loop, const char *host, int type, int proto,
               gai_wait *w)
{
  memset(w, 0, sizeof *w);
  CHECK_OK(tapio_getaddrinfo_proto(loop, host, "7", 0, type, proto, 0,
                                   on_gai, w));
  WAIT_FOR(loop, w->done);
  return w->status;
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
  CHECK_ERR(tapio_options_set_int(o, "flags", 8), TAPIO_EINVAL);
  tapio_options_free(o);
  spin(loop, 2);
  CHECK_EQ(w.done, 0);
  srv_release_and_free(&sv, loop);
  rec_free(&c);
}

TEST_MAIN(TEST(getaddrinfo_proto_entries), TEST(getaddrinfo_proto_refused),
          TEST(connect_numerichost), TEST(server_flags),
          TEST(datagram_numerichost), TEST(datagram_proto_udplite),
          TEST(connect_proto_sctp), TEST(proto_of_the_other_type))
