/* The resolver: getaddrinfo and getnameinfo of the loop, and names in
 * create_connection and create_server, looked up without blocking the
 * loop. Real lookups against the tests' own DNS server (spec/support/
 * dns_server.py): answers at once, late, never, or "no such name";
 * /etc/hosts, search domains and literal addresses without any lookup. */
#include "dns.h"

/* ---- getaddrinfo's answer as text ---------------------------------------- */

typedef struct gai_wait {
  int done, status;
  char text[512]; /* "127.0.0.1:80/1/6 ..." (address:port/type/protocol) */
  char canon[128];
} gai_wait;

static void on_gai(void *ud, int status, const tapio_addrinfo *res)
{
  gai_wait *w = ud;
  size_t i, n = tapio_addrinfo_count(res);
  w->done++;
  w->status = status;
  if (status == 0 && n == 0)
    FAIL("getaddrinfo: success without an entry");
  if (status != 0 && res != NULL)
    FAIL("getaddrinfo: an error with an answer");
  for (i = 0; i < n; i++) {
    const void *addr;
    size_t len;
    int fam, type, proto, port;
    char host[64];
    CHECK_OK(tapio_addrinfo_get(res, i, &addr, &len, &fam, &type, &proto));
    CHECK_OK(tapio_addr_format(addr, len, host, sizeof host, &port, NULL));
    snprintf(w->text + strlen(w->text), sizeof w->text - strlen(w->text),
             "%s%s:%d/%d/%d", i ? " " : "", host, port, type, proto);
  }
  CHECK_ERR(tapio_addrinfo_get(res, n, NULL, NULL, NULL, NULL, NULL),
            TAPIO_EINVAL);
  if (tapio_addrinfo_canonname(res))
    snprintf(w->canon, sizeof w->canon, "%s", tapio_addrinfo_canonname(res));
}

/* getaddrinfo, waited for; its status. */
static int gai(tapio_loop *loop, const char *host, const char *service,
               int family, int type, int flags, gai_wait *w)
{
  memset(w, 0, sizeof *w);
  CHECK_OK(tapio_getaddrinfo(loop, host, service, family, type, flags,
                             on_gai, w));
  CHECK_EQ(w->done, 0); /* never from inside the call */
  WAIT_FOR(loop, w->done);
  return w->status;
}

/* ---- Literals, /etc/hosts, names ------------------------------------------ */

/* A literal address is answered without any lookup: the server, which
 * logs each query, hears nothing; so is "localhost" (from /etc/hosts). */
static void literal_needs_no_lookup(void)
{
  dns_server d;
  gai_wait w;
  char log[1024] = "";
  tapio_loop *loop;
  dns_start(&d, 1);
  loop = dns_loop(&d, 0.5);
  CHECK_OK(gai(loop, "127.0.0.1", "80", 0, TAPIO_SOCK_STREAM, 0, &w));
  CHECK_STR(w.text, "127.0.0.1:80/1/6");
  CHECK_OK(gai(loop, "::1", "53", 0, 0, 0, &w));
  CHECK_STR(w.text, "::1:53/1/6 ::1:53/2/17");
  CHECK_OK(gai(loop, NULL, "7", TAPIO_AF_INET, TAPIO_SOCK_DGRAM,
               TAPIO_AI_PASSIVE, &w));
  CHECK_STR(w.text, "0.0.0.0:7/2/17");
  CHECK_OK(gai(loop, "localhost", "80", TAPIO_AF_INET, TAPIO_SOCK_STREAM, 0,
               &w));
  CHECK_STR(w.text, "127.0.0.1:80/1/6");
  CHECK_ERR(gai(loop, "127.0.0.1", "1", TAPIO_AF_INET6, 0, 0, &w),
            TAPIO_EAI_FAMILY);
  CHECK_ERR(gai(loop, "v4.tapio.test", "1", 0, 0, TAPIO_AI_NUMERICHOST, &w),
            TAPIO_EAI_NONAME);
  /* asyncio's test_create_connection_service_name and _ipv6_scope */
  CHECK_OK(gai(loop, "127.0.0.1", "http", 0, TAPIO_SOCK_STREAM, 0, &w));
  CHECK_STR(w.text, "127.0.0.1:80/1/6");
  CHECK_ERR(gai(loop, "127.0.0.1", "nonsense", 0, 0, 0, &w),
            TAPIO_EAI_SERVICE);
  CHECK_OK(gai(loop, "fe80::1%1", "7", 0, TAPIO_SOCK_DGRAM, 0, &w));
  CHECK_STR(w.text, "fe80::1%1:7/2/17");
  CHECK_OK(gai(loop, "fe80::1%lo", "7", 0, TAPIO_SOCK_DGRAM, 0, &w));
  CHECK_STR(w.text, "fe80::1%1:7/2/17");
  /* glibc takes a scope name on link-local addresses only: no such name,
   * not a family the resolver lacks */
  CHECK_ERR(gai(loop, "::1%lo", "7", 0, 0, 0, &w), TAPIO_EAI_NONAME);
  CHECK_ERR(gai(loop, "::1%lo", "7", TAPIO_AF_INET6, 0, 0, &w),
            TAPIO_EAI_NONAME);
  CHECK_ERR(gai(loop, "::1", "7", TAPIO_AF_INET, 0, 0, &w),
            TAPIO_EAI_FAMILY);
  free_loop(loop);
  dns_queries(&d, log, sizeof log);
  CHECK_STR(log, "");
  dns_stop(&d);
}

static void names_from_the_server(void)
{
  dns_server d;
  gai_wait w;
  tapio_loop *loop;
  dns_start(&d, 0);
  loop = dns_loop(&d, 2);
  CHECK_OK(gai(loop, "v4.tapio.test", "80", 0, 0, TAPIO_AI_CANONNAME, &w));
  CHECK_STR(w.text, "127.0.0.1:80/1/6 127.0.0.1:80/2/17");
  CHECK_STR(w.canon, "v4.tapio.test");
  CHECK_OK(gai(loop, "v6.tapio.test", "http", 0, TAPIO_SOCK_STREAM, 0, &w));
  CHECK_STR(w.text, "::1:80/1/6");
  CHECK_STR(w.canon, ""); /* not asked for */
  /* both families, IPv6 first as RFC 6724 sorts loopback */
  CHECK_OK(gai(loop, "both.tapio.test", "5", 0, TAPIO_SOCK_STREAM, 0, &w));
  CHECK_STR(w.text, "::1:5/1/6 127.0.0.1:5/1/6");
  CHECK_OK(gai(loop, "both.tapio.test", "5", TAPIO_AF_INET,
               TAPIO_SOCK_STREAM, 0, &w));
  CHECK_STR(w.text, "127.0.0.1:5/1/6");
  CHECK_OK(gai(loop, "TWO4.tapio.test", "5", 0, TAPIO_SOCK_STREAM, 0, &w));
  CHECK_STR(w.text, "127.0.0.2:5/1/6 127.0.0.1:5/1/6");
  free_loop(loop);
  dns_stop(&d);
}

/* No such name, a server failure, no answer (a short timeout): the
 * errors getaddrinfo gives for them. */
static void lookup_errors(void)
{
  dns_server d;
  gai_wait w;
  tapio_loop *loop;
  dns_start(&d, 0);
  loop = dns_loop(&d, 0.2);
  CHECK_ERR(gai(loop, "nosuch.tapio.test", "1", 0, 0, 0, &w),
            TAPIO_EAI_NONAME);
  CHECK_ERR(gai(loop, "v6.tapio.test", "1", TAPIO_AF_INET, 0, 0, &w),
            TAPIO_EAI_NONAME);
  CHECK_ERR(gai(loop, "fail.v4.tapio.test", "1", 0, 0, 0, &w),
            TAPIO_EAI_AGAIN);
  CHECK_ERR(gai(loop, "silent.v4.tapio.test", "1", 0, 0, 0, &w),
            TAPIO_EAI_AGAIN);
  free_loop(loop);
  dns_stop(&d);
}

/* Search domains as the system resolver applies them: LOCALDOMAIN (as
 * resolv.conf's "search") makes "v4" v4.tapio.test. */
static void search_domains(void)
{
  dns_server d;
  gai_wait w;
  tapio_loop *loop;
  setenv("LOCALDOMAIN", "tapio.test", 1);
  dns_start(&d, 0);
  loop = dns_loop(&d, 2);
  CHECK_OK(gai(loop, "v4", "1", 0, TAPIO_SOCK_STREAM, 0, &w));
  CHECK_STR(w.text, "127.0.0.1:1/1/6");
  free_loop(loop);
  dns_stop(&d);
}

/* ---- Never blocking -------------------------------------------------------- */

static void tick(void *ud)
{
  (*(int *)ud)++;
}

/* While a lookup waits 400 ms for its answer, timers run and a TCP
 * round trip completes. */
static void slow_lookup_blocks_nothing(void)
{
  dns_server d;
  gai_wait w = { 0 };
  tapio_loop *loop;
  tapio_handle *h[4];
  int ticks = 0, i;
  srv sv;
  rec c, *s;
  double t0;
  dns_start(&d, 0);
  loop = dns_loop(&d, 3);
  t0 = now_sec();
  CHECK_OK(tapio_getaddrinfo(loop, "slow400.v4.tapio.test", "1", 0, 0, 0,
                             on_gai, &w));
  for (i = 0; i < 4; i++)
    CHECK_OK(tapio_call_later(loop, 0.05 * (i + 1), tick, &ticks, &h[i]));
  s = srv_start_pair(&sv, loop, &c);
  roundtrip(loop, &c, s);
  WAIT_FOR(loop, ticks == 4);
  CHECK_EQ(w.done, 0);
  WAIT_FOR(loop, w.done);
  CHECK_OK(w.status);
  CHECK(now_sec() - t0 >= 0.35);
  CHECK_STR(w.text, "127.0.0.1:1/1/6 127.0.0.1:1/2/17");
  for (i = 0; i < 4; i++)
    tapio_handle_release(h[i]);
  srv_release_and_free(&sv, loop);
  rec_free(&c);
  dns_stop(&d);
}

/* ---- Names in create_connection and create_server -------------------------- */

static void connect_and_serve_by_name(void)
{
  static const char *const hosts[] = { "v4.tapio.test" };
  dns_server d;
  tapio_loop *loop;
  char host[64];
  srv sv;
  rec c, bad, *s;
  dns_start(&d, 0);
  loop = dns_loop(&d, 2);
  rec_init(&c);
  srv_init(&sv, loop);
  CHECK_OK(srv_start_hosts(&sv, hosts, 1, 0, NULL));
  CHECK_OK(tapio_server_get_address(sv.s, 0, host, sizeof host, NULL,
                                    NULL));
  CHECK_STR(host, "127.0.0.1");
  CHECK_OK(connect_tcp(loop, "v4.tapio.test", sv.port, &c, NULL));
  s = srv_wait_conn(&sv, 0);
  roundtrip(loop, &c, s);
  rec_init(&bad);
  CHECK_ERR(connect_tcp(loop, "nosuch.tapio.test", sv.port, &bad, NULL),
            TAPIO_EAI_NONAME);
  srv_release_and_free(&sv, loop);
  rec_free(&c);
  dns_stop(&d);
}

static void connect_ipv6_by_name(void)
{
  static const char *const hosts[] = { "::1" };
  dns_server d;
  tapio_loop *loop;
  char host[64];
  srv sv;
  rec c;
  if (!ipv6_available())
    SKIP("no IPv6 loopback");
  dns_start(&d, 0);
  loop = dns_loop(&d, 2);
  rec_init(&c);
  srv_init(&sv, loop);
  CHECK_OK(srv_start_hosts(&sv, hosts, 1, 0, NULL));
  CHECK_OK(connect_tcp(loop, "v6.tapio.test", sv.port, &c, NULL));
  CHECK_OK(tapio_transport_get_peername(c.t, host, sizeof host, NULL, NULL));
  CHECK_STR(host, "::1");
  roundtrip(loop, &c, srv_wait_conn(&sv, 0));
  srv_release_and_free(&sv, loop);
  rec_free(&c);
  dns_stop(&d);
}

/* ---- getnameinfo ----------------------------------------------------------- */

typedef struct gni_wait {
  int done, status;
  char host[128], service[32];
} gni_wait;

static void on_gni(void *ud, int status, const char *host,
                   const char *service)
{
  gni_wait *w = ud;
  w->done++;
  w->status = status;
  snprintf(w->host, sizeof w->host, "%s", host ? host : "(null)");
  snprintf(w->service, sizeof w->service, "%s", service ? service : "(null)");
}

static int gni(tapio_loop *loop, const char *host, int port, int flags,
               gni_wait *w)
{
  char addr[TAPIO_ADDR_MAX];
  size_t len = sizeof addr;
  memset(w, 0, sizeof *w);
  CHECK_OK(tapio_addr_parse(host, port, addr, &len));
  CHECK_OK(tapio_getnameinfo(loop, addr, len, flags, on_gni, w));
  CHECK_EQ(w->done, 0);
  WAIT_FOR(loop, w->done);
  return w->status;
}

static void nameinfo(void)
{
  dns_server d;
  gni_wait w;
  tapio_loop *loop;
  char un[TAPIO_ADDR_MAX];
  size_t unlen = sizeof un;
  dns_start(&d, 0);
  loop = dns_loop(&d, 0.3);
  CHECK_OK(gni(loop, "127.0.0.1", 80, TAPIO_NI_NUMERICHOST |
                                          TAPIO_NI_NUMERICSERV, &w));
  CHECK_STR(w.host, "127.0.0.1");
  CHECK_STR(w.service, "80");
  CHECK_OK(gni(loop, "127.0.0.1", 80, 0, &w)); /* /etc/hosts, services */
  CHECK_STR(w.host, "localhost");
  CHECK_STR(w.service, "http");
  CHECK_OK(gni(loop, "::1", 53, TAPIO_NI_NUMERICHOST | TAPIO_NI_DGRAM, &w));
  CHECK_STR(w.host, "::1");
  CHECK_STR(w.service, "domain");
  CHECK_OK(tapio_addr_unix("/tmp/x", un, &unlen));
  CHECK_ERR(tapio_getnameinfo(loop, un, unlen, 0, on_gni, &w),
            TAPIO_EAFNOSUPPORT);
  free_loop(loop);
  dns_stop(&d);
}

/* ---- Cancelling ------------------------------------------------------------ */

static void never_gai(void *ud, int status, const tapio_addrinfo *res)
{
  (void)ud;
  (void)status;
  (void)res;
  FAIL("a cancelled getaddrinfo was answered");
}

/* A loop on d (timeout seconds per try) whose c-ares channel is made,
 * holding in *before what it held then, with a lookup the server never
 * answers sent and cancelled (tag its completion's user pointer). */
static tapio_loop *cancelled_silent_lookup(dns_server *d, double timeout,
                                           uint64_t *before, int *tag)
{
  gai_wait w;
  tapio_loop *loop;
  dns_start(d, 0);
  loop = dns_loop(d, timeout);
  CHECK_OK(gai(loop, "v4.tapio.test", "1", 0, 0, 0, &w)); /* c-ares made */
  *before = tapio_loop_memory(loop);
  CHECK_OK(tapio_getaddrinfo(loop, "silent.v4.tapio.test", "1", 0, 0, 0,
                             never_gai, tag));
  spin(loop, 3); /* the query is out */
  CHECK_EQ(tapio_cancel_pending(loop, tag), 1);
  return loop;
}

/* A lookup the server never answers is cancelled: nothing is called back,
 * and once c-ares gives up on the query (a short timeout) the loop holds
 * what it held before. A cancel before the request ran, the same. */
static void cancel_getaddrinfo(void)
{
  dns_server d;
  uint64_t before;
  int tag;
  tapio_loop *loop = cancelled_silent_lookup(&d, 0.2, &before, &tag);
  CHECK_EQ(tapio_cancel_pending(loop, &tag), 0);
  CHECK_OK(tapio_getaddrinfo(loop, "v4.tapio.test", "1", 0, 0, 0, never_gai,
                             &tag));
  CHECK_EQ(tapio_cancel_pending(loop, &tag), 1); /* before it ran */
  run_for(loop, 0.6);
  CHECK_EQ(tapio_loop_memory(loop), before);
  CHECK_ERR(tapio_cancel_pending(NULL, &tag), TAPIO_EINVAL);
  free_loop(loop);
  dns_stop(&d);
}

/* create_connection cancelled while its name is looked up, and while it
 * connects to a listener that never accepts: no completion, no
 * connection_made, the socket closed. */
static void cancel_create_connection(void)
{
  dns_server d;
  tapio_loop *loop;
  rec c;
  int port, tag, lfd, filler;
  dns_start(&d, 0);
  loop = dns_loop(&d, 0.2);
  rec_init(&c);
  CHECK_OK(tapio_create_connection(loop, "silent.v4.tapio.test", 9,
                                   &rec_proto, &c, NULL, never_connected,
                                   &tag));
  spin(loop, 3);
  CHECK_EQ(tapio_cancel_pending(loop, &tag), 1);
  /* a full backlog: the next connect never completes */
  lfd = raw_bind(AF_INET, &port);
  CHECK(listen(lfd, 0) == 0);
  filler = raw_connect(AF_INET, "127.0.0.1", port);
  CHECK(filler >= 0);
  CHECK_OK(tapio_create_connection(loop, "127.0.0.1", port, &rec_proto, &c,
                                   NULL, never_connected, &tag));
  run_for(loop, 0.2);
  CHECK_EQ(tcp_connecting_to(port), 1); /* its socket, in SYN_SENT */
  CHECK_EQ(tapio_cancel_pending(loop, &tag), 1);
  CHECK_EQ(tcp_connecting_to(port), 0); /* closed */
  run_for(loop, 0.3);
  CHECK_STR(c.log, "");
  close(filler);
  close(lfd);
  free_loop(loop);
  rec_free(&c);
  dns_stop(&d);
}

static void never_served_ud(void *ud, int status, tapio_server *s)
{
  never_served(ud, status, s);
}

static void cancel_create_server(void)
{
  static const char *const hosts[] = { "slow300.v4.tapio.test" };
  dns_server d;
  tapio_loop *loop;
  uint64_t before;
  int tag;
  dns_start(&d, 0);
  loop = dns_loop(&d, 1);
  before = tapio_loop_memory(loop);
  CHECK_OK(tapio_create_server(loop, hosts, 1, 0, refusing_factory, NULL,
                               NULL, never_served_ud, &tag));
  spin(loop, 3);
  CHECK_EQ(tapio_cancel_pending(loop, &tag), 1);
  run_for(loop, 0.5); /* the answer comes, and is dropped */
  CHECK_EQ(tapio_loop_memory(loop), before);
  free_loop(loop);
  dns_stop(&d);
}

/* Freeing the loop with a lookup in flight: its completion gets
 * ECANCELED (uvloop's test_getaddrinfo_close_loop). */
static void free_loop_with_lookup(void)
{
  dns_server d;
  gai_wait w = { 0 };
  tapio_loop *loop;
  dns_start(&d, 0);
  loop = dns_loop(&d, 2);
  CHECK_OK(tapio_getaddrinfo(loop, "silent.v4.tapio.test", "1", 0, 0, 0,
                             on_gai, &w));
  spin(loop, 3);
  free_loop(loop);
  CHECK_EQ(w.done, 1);
  CHECK_ERR(w.status, TAPIO_ECANCELED);
  dns_stop(&d);
}

/* ---- Bad input ------------------------------------------------------------ */

static void bad_input(void)
{
  tapio_loop *loop = new_loop();
  gai_wait w = { 0 };
  char addr[TAPIO_ADDR_MAX];
  size_t len = sizeof addr;
  CHECK_ERR(tapio_getaddrinfo(loop, NULL, NULL, 0, 0, 0, on_gai, &w),
            TAPIO_EINVAL);
  CHECK_ERR(tapio_getaddrinfo(loop, "x", "70000", 0, 0, 0, on_gai, &w),
            TAPIO_EINVAL);
  CHECK_ERR(tapio_getaddrinfo(loop, "x", "1", 5, 0, 0, on_gai, &w),
            TAPIO_EINVAL);
  CHECK_ERR(tapio_getaddrinfo(loop, "x", "1", 0, 3, 0, on_gai, &w),
            TAPIO_EINVAL);
  CHECK_ERR(tapio_getaddrinfo(loop, "x", "1", 0, 0, 64, on_gai, &w),
            TAPIO_EINVAL);
  CHECK_ERR(tapio_getaddrinfo(loop, "x", "1", 0, 0, 0, NULL, &w),
            TAPIO_EINVAL);
  CHECK_ERR(tapio_addr_parse("example.com", 1, addr, &len),
            TAPIO_EAI_NONAME);
  CHECK_ERR(tapio_addr_parse("127.0.0.1", 70000, addr, &len), TAPIO_EINVAL);
  CHECK_ERR(tapio_addr_parse("127.0.0.1", -1, addr, &len), TAPIO_EINVAL);
  CHECK_ERR(tapio_addr_parse("1.2.3.4.5", 1, addr, &len), TAPIO_EAI_NONAME);
  CHECK_ERR(tapio_addr_parse("::1%nosuchif0", 1, addr, &len),
            TAPIO_EAI_NONAME);
  len = sizeof addr;
  CHECK_OK(tapio_addr_parse("fe80::1%1", 9, addr, &len));
  {
    char host[64];
    int port;
    CHECK_OK(tapio_addr_format(addr, len, host, sizeof host, &port, NULL));
    CHECK_STR(host, "fe80::1%1"); /* the scope is kept */
    CHECK_EQ(port, 9);
    CHECK_ERR(tapio_addr_format(addr, len, host, 4, NULL, NULL),
              TAPIO_ENOBUFS);
  }
  len = 4;
  CHECK_ERR(tapio_addr_parse("127.0.0.1", 1, addr, &len), TAPIO_ENOBUFS);
  CHECK_ERR(tapio_loop_set_resolver(loop, "not a server", 0, 0),
            TAPIO_EINVAL);
  CHECK_ERR(tapio_loop_set_resolver(loop, NULL, -1, 0), TAPIO_EINVAL);
  CHECK_ERR(tapio_loop_set_resolver(loop, NULL, 0, -1), TAPIO_EINVAL);
  spin(loop, 2);
  CHECK_EQ(w.done, 0);
  free_loop(loop);
}

/* set_resolver while a lookup is in flight: EBUSY, and the lookup is
 * answered by the server it went to. */
static void set_resolver_busy(void)
{
  dns_server d;
  gai_wait w = { 0 };
  tapio_loop *loop;
  dns_start(&d, 0);
  loop = dns_loop(&d, 2);
  CHECK_OK(tapio_getaddrinfo(loop, "slow100.v4.tapio.test", "1", 0, 0, 0,
                             on_gai, &w));
  spin(loop, 3);
  CHECK_ERR(tapio_loop_set_resolver(loop, NULL, 0, 0), TAPIO_EBUSY);
  WAIT_FOR(loop, w.done);
  CHECK_OK(w.status);
  CHECK_OK(tapio_loop_set_resolver(loop, d.servers, 0, 0));
  free_loop(loop);
  dns_stop(&d);
}

/* A cancelled lookup keeps nobody waiting: set_resolver goes ahead at
 * once (c-ares still held the query, for seconds here), the query is
 * dropped with the old channel, and the new one answers. */
static void set_resolver_after_cancel(void)
{
  dns_server d;
  gai_wait w;
  uint64_t before;
  int tag;
  tapio_loop *loop = cancelled_silent_lookup(&d, 5, &before, &tag);
  CHECK_OK(tapio_loop_set_resolver(loop, d.servers, 5, 1));
  CHECK_EQ(tapio_loop_memory(loop), before);
  CHECK_OK(gai(loop, "v4.tapio.test", "1", 0, 0, 0, &w));
  free_loop(loop);
  dns_stop(&d);
}

TEST_MAIN(TEST(literal_needs_no_lookup), TEST(names_from_the_server),
          TEST(lookup_errors), TEST(search_domains),
          TEST(slow_lookup_blocks_nothing), TEST(connect_and_serve_by_name),
          TEST(connect_ipv6_by_name), TEST(nameinfo),
          TEST(cancel_getaddrinfo), TEST(cancel_create_connection),
          TEST(cancel_create_server), TEST(free_loop_with_lookup),
          TEST(bad_input), TEST(set_resolver_busy),
          TEST(set_resolver_after_cancel))
