/* create_connection to a name with several addresses: tried in order, or
 * raced with Happy Eyeballs (happy_eyeballs_delay, interleave); what each
 * address answered when all fail. The addresses come from the tests' own
 * DNS server; a stalled connect is a listener whose backlog is full and
 * which never accepts. */
#include "dns.h"

/* A completion that keeps the message tapio_loop_error_message gives. */
typedef struct msg_wait {
  tapio_loop *loop;
  int done, status;
  tapio_transport *t;
  char message[1024];
} msg_wait;

static void on_done(void *ud, int status, tapio_transport *t)
{
  msg_wait *w = ud;
  const char *m = tapio_loop_error_message(w->loop);
  w->done++;
  w->status = status;
  w->t = t;
  snprintf(w->message, sizeof w->message, "%s", m ? m : "(none)");
}

static int connect_msg(tapio_loop *loop, const char *host, int port,
                       rec *r, const tapio_options *o, msg_wait *w)
{
  memset(w, 0, sizeof *w);
  w->loop = loop;
  CHECK_OK(tapio_create_connection(loop, host, port, &rec_proto, r, o,
                                   on_done, w));
  WAIT_FOR(loop, w->done);
  CHECK(tapio_loop_error_message(loop) == NULL); /* only inside */
  return w->status;
}

/* What most tests here use: the DNS server, a loop asking it, a client
 * protocol. */
typedef struct fixture {
  dns_server d;
  tapio_loop *loop;
  rec c;
} fixture;

static void begin(fixture *f, int need_ipv6)
{
  if (need_ipv6 && !ipv6_available())
    SKIP("no IPv6 loopback");
  dns_start(&f->d, 0);
  f->loop = dns_loop(&f->d, 2);
  rec_init(&f->c);
}

static void end(fixture *f)
{
  free_loop(f->loop);
  rec_free(&f->c);
  dns_stop(&f->d);
}

/* A TCP port nobody listens on, on 127.0.0.1 and ::1. */
static int closed_port(void)
{
  int port, fd = raw_bind(AF_INET, &port);
  close(fd);
  return port;
}

static tapio_options *he_options(tapio_loop *loop, double delay,
                                 int interleave)
{
  tapio_options *o = new_options(loop);
  if (delay >= 0)
    CHECK_OK(tapio_options_set_double(o, "happy_eyeballs_delay", delay));
  if (interleave >= 0)
    CHECK_OK(tapio_options_set_int(o, "interleave", interleave));
  return o;
}

/* ---- All fail: what each answered ------------------------------------------ */

static void every_address_refused(void)
{
  fixture f;
  msg_wait w;
  char want[512];
  int port = closed_port();
  begin(&f, 1);
  CHECK_ERR(connect_msg(f.loop, "both.tapio.test", port, &f.c, NULL, &w),
            TAPIO_ECONNREFUSED);
  snprintf(want, sizeof want, "Multiple exceptions: connect call failed "
           "('::1', %d, 0, 0): connection refused (ECONNREFUSED), connect "
           "call failed ('127.0.0.1', %d): connection refused "
           "(ECONNREFUSED)", port, port);
  CHECK_STR(w.message, want);
  CHECK_ERR(connect_msg(f.loop, "127.0.0.1", port, &f.c, NULL, &w),
            TAPIO_ECONNREFUSED);
  snprintf(want, sizeof want, "connect call failed ('127.0.0.1', %d): "
           "connection refused", port);
  CHECK_STR(w.message, want);
  CHECK_STR(f.c.log, "");
  end(&f);
}

/* interleave reorders by family: mix.tapio.test sorts as ::1, 127.0.0.1,
 * ::ffff:127.0.0.1; interleave 2 takes two IPv6 addresses first. The
 * order shows in what each answered. */
static void interleave_orders_the_attempts(void)
{
  fixture f;
  tapio_options *o;
  msg_wait w;
  char want[512];
  int port = closed_port();
  begin(&f, 1);
  o = he_options(f.loop, -1, 2);
  CHECK_ERR(connect_msg(f.loop, "mix.tapio.test", port, &f.c, o, &w),
            TAPIO_ECONNREFUSED);
  snprintf(want, sizeof want, "Multiple exceptions: connect call failed "
           "('::1', %d, 0, 0): connection refused (ECONNREFUSED), connect "
           "call failed ('::ffff:127.0.0.1', %d, 0, 0): connection refused "
           "(ECONNREFUSED), connect call failed ('127.0.0.1', %d): "
           "connection refused (ECONNREFUSED)", port, port, port);
  CHECK_STR(w.message, want);
  tapio_options_free(o);
  o = he_options(f.loop, -1, 0);
  CHECK_ERR(connect_msg(f.loop, "mix.tapio.test", port, &f.c, o, &w),
            TAPIO_ECONNREFUSED);
  CHECK(strstr(w.message, "('::1'") < strstr(w.message, "('127.0.0.1'"));
  CHECK(strstr(w.message, "('127.0.0.1'") <
        strstr(w.message, "('::ffff:127.0.0.1'"));
  tapio_options_free(o);
  end(&f);
}

/* A local address that cannot be bound: said so, per address. */
static void bind_failure_named(void)
{
  tapio_loop *loop = new_loop();
  tapio_options *o = new_options(loop);
  msg_wait w;
  char want[256];
  rec c;
  int lport, lfd = raw_bind(AF_INET, &lport);
  int port, sfd = raw_listen(AF_INET, &port);
  rec_init(&c);
  CHECK_OK(tapio_options_set_str(o, "local_host", "127.0.0.1"));
  CHECK_OK(tapio_options_set_int(o, "local_port", lport));
  CHECK_ERR(connect_msg(loop, "127.0.0.1", port, &c, o, &w),
            TAPIO_EADDRINUSE);
  snprintf(want, sizeof want, "error while attempting to bind on address "
           "('127.0.0.1', %d): address already in use", lport);
  CHECK_STR(w.message, want);
  tapio_options_free(o);
  close(lfd);
  close(sfd);
  free_loop(loop);
  rec_free(&c);
}

/* A local address of the other family only: no connect is made, and the
 * message says so (asyncio: "no matching local address with
 * family=... found"), not that a connect failed. */
static void no_local_address_of_family_named(void)
{
  tapio_loop *loop = new_loop();
  tapio_options *o = new_options(loop);
  msg_wait w;
  char want[256];
  rec c;
  int port, sfd = raw_listen(AF_INET, &port);
  rec_init(&c);
  CHECK_OK(tapio_options_set_str(o, "local_host", "::1"));
  CHECK_ERR(connect_msg(loop, "127.0.0.1", port, &c, o, &w),
            TAPIO_EADDRNOTAVAIL);
  snprintf(want, sizeof want, "no matching local address with family "
           "AF_INET found to connect to ('127.0.0.1', %d): address not "
           "available", port);
  CHECK_STR(w.message, want);
  tapio_options_free(o);
  close(sfd);
  free_loop(loop);
  rec_free(&c);
}

/* asyncio's test_create_connection_multiple_errors_local_addr: a local
 * address that fits one family only; the other family's address fails
 * (nothing to bind) and the next is tried. */
static void local_address_of_one_family(void)
{
  fixture f;
  tapio_options *o;
  msg_wait w;
  srv sv;
  int port;
  begin(&f, 1);
  srv_start(&sv, f.loop);
  o = new_options(f.loop);
  CHECK_OK(tapio_options_set_str(o, "local_host", "127.0.0.1"));
  CHECK_OK(connect_msg(f.loop, "six4.tapio.test", sv.port, &f.c, o, &w));
  CHECK_OK(tapio_transport_get_sockname(w.t, NULL, 0, &port, NULL));
  CHECK(port > 0);
  tapio_options_free(o);
  tapio_server_release(sv.s);
  end(&f);
  srv_free(&sv);
}

/* A TCP socket bound to host:0 (no listen, no SO_REUSEADDR: nobody else
 * can bind that address and port); *port gets the port. */
static int bound_on(const char *host, int *port)
{
  struct sockaddr_storage ss;
  socklen_t len = raw_addr(AF_INET, host, 0, &ss);
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  CHECK(fd >= 0);
  CHECK(bind(fd, (struct sockaddr *)&ss, len) == 0);
  *port = raw_port(fd);
  return fd;
}

/* Whether host:port can be bound now (then left free again). */
static int bindable(const char *host, int port)
{
  struct sockaddr_storage ss;
  socklen_t len = raw_addr(AF_INET, host, port, &ss);
  int fd = socket(AF_INET, SOCK_STREAM, 0), ok;
  CHECK(fd >= 0);
  ok = bind(fd, (struct sockaddr *)&ss, len) == 0;
  close(fd);
  return ok;
}

/* asyncio's test_create_connection_multiple_errors_local_addr: the local
 * name has two addresses (two4.tapio.test: 127.0.0.2, then 127.0.0.1);
 * the first cannot be bound (its port is taken there), so the same
 * socket binds the second and connects from it. */
static void next_local_address_after_bind_fails(void)
{
  fixture f;
  tapio_options *o;
  msg_wait w;
  srv sv;
  char host[64];
  int lport = 0, held = -1, port, tries;
  begin(&f, 0);
  for (tries = 0; held < 0 && tries < 20; tries++) {
    held = bound_on("127.0.0.2", &lport);
    if (!bindable("127.0.0.1", lport)) {
      close(held);
      held = -1;
    }
  }
  CHECK(held >= 0);
  CHECK(!bindable("127.0.0.2", lport));
  srv_start(&sv, f.loop);
  o = new_options(f.loop);
  CHECK_OK(tapio_options_set_str(o, "local_host", "two4.tapio.test"));
  CHECK_OK(tapio_options_set_int(o, "local_port", lport));
  CHECK_OK(connect_msg(f.loop, "127.0.0.1", sv.port, &f.c, o, &w));
  CHECK_OK(tapio_transport_get_sockname(w.t, host, sizeof host, &port,
                                        NULL));
  CHECK_STR(host, "127.0.0.1");
  CHECK_EQ(port, lport);
  roundtrip(f.loop, &f.c, srv_wait_conn(&sv, 0));
  tapio_options_free(o);
  close(held);
  tapio_server_release(sv.s);
  end(&f);
  srv_free(&sv);
}

/* asyncio's test_create_connection_ipv6_scope: "fe80::1%1" keeps its
 * scope (interface 1, lo) down to connect(). Without it Linux refuses a
 * link-local address at once (EINVAL); with it, lo has no route there
 * (ENETUNREACH), or, on a host where it has, the attempt goes out. The
 * words name the address with its scope either way. */
static void link_local_keeps_its_scope(void)
{
  tapio_loop *loop = new_loop();
  msg_wait w;
  rec c;
  int port, fd = raw_bind(AF_INET, &port), rc;
  rec_init(&c);
  rc = connect_msg(loop, "fe80::1%1", port, &c, NULL, &w);
  if (rc == 0)
    tapio_transport_abort(w.t);
  else
    CHECK(strstr(w.message, "('fe80::1%1', ") != NULL);
  CHECK(rc != TAPIO_EINVAL);
  close(fd);
  free_loop(loop);
  rec_free(&c);
}

/* ---- Racing ---------------------------------------------------------------- */

/* A listener on host:*port (0: any port) whose backlog is full: a connect
 * to it stalls. *filler holds the backlog. */
static int stalled_listener(int family, const char *host, int *port,
                            int *filler)
{
  struct sockaddr_storage ss;
  socklen_t len = raw_addr(family, host, *port, &ss);
  int fd = socket(family, SOCK_STREAM, 0);
  CHECK(fd >= 0);
  if (bind(fd, (struct sockaddr *)&ss, len) < 0) {
    close(fd);
    return -1;
  }
  *port = raw_port(fd);
  CHECK(listen(fd, 0) == 0);
  *filler = raw_connect(family, host, *port);
  CHECK(*filler >= 0);
  return fd;
}

/* The same port on ::1 (stalled) and 127.0.0.1 (a tapio server). */
typedef struct split {
  int port, stall_fd, filler;
  srv sv;
} split;

static void split_start(split *sp, tapio_loop *loop, int family,
                        const char *stall_host)
{
  static const char *const good[] = { "127.0.0.1" };
  int tries;
  for (tries = 0; tries < 50; tries++) {
    sp->port = 0;
    sp->stall_fd = stalled_listener(family, stall_host, &sp->port,
                                    &sp->filler);
    CHECK(sp->stall_fd >= 0);
    srv_init(&sp->sv, loop);
    if (srv_start_hosts(&sp->sv, good, 1, sp->port, NULL) == 0)
      return;
    close(sp->filler);
    close(sp->stall_fd);
  }
  FAIL("no port free on both addresses");
}

/* Before the loop is freed; split_free after. */
static void split_end(split *sp)
{
  close(sp->filler);
  close(sp->stall_fd);
  tapio_server_release(sp->sv.s);
}

/* asyncio's test_create_connection_happy_eyeballs: the IPv6 address
 * stalls; with a delay of 0.1 s the IPv4 one is tried and wins, and the
 * stalled attempt is closed. */
static void stalled_ipv6_loses(void)
{
  fixture f;
  tapio_options *o;
  msg_wait w;
  split sp;
  char host[64];
  double t0;
  begin(&f, 1);
  split_start(&sp, f.loop, AF_INET6, "::1");
  o = he_options(f.loop, 0.1, -1);
  t0 = now_sec();
  CHECK_OK(connect_msg(f.loop, "six4.tapio.test", sp.port, &f.c, o, &w));
  CHECK(now_sec() - t0 >= 0.09);
  CHECK_OK(tapio_transport_get_peername(w.t, host, sizeof host, NULL, NULL));
  CHECK_STR(host, "127.0.0.1");
  CHECK_EQ(connecting_to(AF_INET6, sp.port), 0); /* the loser is closed */
  roundtrip(f.loop, &f.c, srv_wait_conn(&sp.sv, 0));
  tapio_options_free(o);
  split_end(&sp);
  end(&f);
  srv_free(&sp.sv);
}

/* Without a delay (asyncio's None) the addresses go one after the other:
 * the stalled first one holds the connect up. */
static void no_delay_waits_for_the_first(void)
{
  fixture f;
  split sp;
  int tag;
  begin(&f, 1);
  split_start(&sp, f.loop, AF_INET6, "::1");
  CHECK_OK(tapio_create_connection(f.loop, "six4.tapio.test", sp.port,
                                   &rec_proto, &f.c, NULL, never_connected,
                                   &tag));
  run_for(f.loop, 0.4);
  CHECK_EQ(connecting_to(AF_INET6, sp.port), 1);
  CHECK_EQ(sp.sv.n, 0);
  CHECK_EQ(tapio_cancel_pending(f.loop, &tag), 1);
  CHECK_EQ(connecting_to(AF_INET6, sp.port), 0);
  split_end(&sp);
  end(&f);
  srv_free(&sp.sv);
}

/* Two IPv4 addresses, the first stalled: Happy Eyeballs within a family. */
static void stalled_first_of_one_family(void)
{
  fixture f;
  tapio_options *o;
  msg_wait w;
  split sp;
  char host[64];
  begin(&f, 0);
  split_start(&sp, f.loop, AF_INET, "127.0.0.2");
  o = he_options(f.loop, 0.05, -1);
  CHECK_OK(connect_msg(f.loop, "two4.tapio.test", sp.port, &f.c, o, &w));
  CHECK_OK(tapio_transport_get_peername(w.t, host, sizeof host, NULL, NULL));
  CHECK_STR(host, "127.0.0.1");
  CHECK_EQ(tcp_connecting_to(sp.port), 0);
  tapio_options_free(o);
  split_end(&sp);
  end(&f);
  srv_free(&sp.sv);
}

/* cpython#131728: a cancelled connect left its watcher on a descriptor
 * it had closed, and the next socket to get that number was raced. Both
 * addresses stalled, both attempts under way, then cancelled: both are
 * closed at once, and the socket pair made next (on the numbers they
 * freed) is nobody's but the test's: nothing is called, its byte stays. */
static void cancel_mid_race_frees_both(void)
{
  fixture f;
  tapio_options *o;
  int port = 0, fill6, fill4, stall6, stall4 = -1, sv[2], tag, tries;
  char byte = 0;
  begin(&f, 1);
  for (tries = 0; stall4 < 0 && tries < 50; tries++) {
    port = 0;
    stall6 = stalled_listener(AF_INET6, "::1", &port, &fill6);
    CHECK(stall6 >= 0);
    stall4 = stalled_listener(AF_INET, "127.0.0.1", &port, &fill4);
    if (stall4 < 0) {
      close(fill6);
      close(stall6);
    }
  }
  CHECK(stall4 >= 0);
  o = he_options(f.loop, 0.05, -1);
  CHECK_OK(tapio_create_connection(f.loop, "six4.tapio.test", port,
                                   &rec_proto, &f.c, o, never_connected,
                                   &tag));
  tapio_options_free(o);
  WAIT_FOR(f.loop, connecting_to(AF_INET6, port) == 1 &&
                   connecting_to(AF_INET, port) == 1);
  CHECK_EQ(tapio_cancel_pending(f.loop, &tag), 1);
  CHECK_EQ(connecting_to(AF_INET6, port), 0);
  CHECK_EQ(connecting_to(AF_INET, port), 0);
  CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0); /* writable both */
  CHECK(write(sv[0], "x", 1) == 1);
  run_for(f.loop, 0.2);
  CHECK(read(sv[1], &byte, 1) == 1);
  CHECK_EQ(byte, 'x');
  CHECK_STR(f.c.log, "");
  close(sv[0]);
  close(sv[1]);
  close(fill6);
  close(stall6);
  close(fill4);
  close(stall4);
  end(&f);
}

/* A failure starts the next address at once, not after the delay. */
static void failure_starts_the_next_at_once(void)
{
  fixture f;
  tapio_options *o;
  msg_wait w;
  srv sv;
  double t0;
  int probe;
  begin(&f, 1);
  srv_start(&sv, f.loop);
  probe = raw_connect(AF_INET6, "::1", sv.port);
  if (probe >= 0) /* something of another test holds [::1]:port */
    SKIP("the port is taken on ::1");
  o = he_options(f.loop, 10.0, -1); /* far above a slow (valgrind) run */
  t0 = now_sec();
  CHECK_OK(connect_msg(f.loop, "six4.tapio.test", sv.port, &f.c, o, &w));
  CHECK(now_sec() - t0 < 5.0);
  tapio_options_free(o);
  tapio_server_release(sv.s);
  end(&f);
  srv_free(&sv);
}

/* The inode of this process's socket connecting (SYN_SENT) to host:port
 * (host an IPv4 address), or 0. */
static unsigned long stalled_ino(const char *host, int port)
{
  char line[256], want[64], rem[64];
  struct in_addr ia;
  unsigned st;
  unsigned long ino = 0, found = 0;
  FILE *f = fopen("/proc/net/tcp", "r");
  CHECK(f != NULL);
  CHECK(inet_pton(AF_INET, host, &ia) == 1);
  snprintf(want, sizeof want, "%08X:%04X", (unsigned)ia.s_addr, port);
  while (!found && fgets(line, sizeof line, f))
    if (sscanf(line, "%*d: %*s %63s %x %*s %*s %*s %*u %*d %lu", rem, &st,
               &ino) == 3 && strcmp(rem, want) == 0 && st == 2 &&
        own_socket(ino))
      found = ino;
  fclose(f);
  return found;
}

/* Makes this process's stalled connect to host:port fail at once: a
 * shutdown of a connect under way resets it (ECONNRESET). */
static void fail_stalled(const char *host, int port)
{
  unsigned long ino = stalled_ino(host, port);
  int fd;
  CHECK(ino != 0);
  for (fd = 0; fd < 1024; fd++) {
    struct stat sb;
    if (fstat(fd, &sb) == 0 && S_ISSOCK(sb.st_mode) &&
        (unsigned long)sb.st_ino == ino) {
      CHECK(shutdown(fd, SHUT_RDWR) == 0);
      return;
    }
  }
  FAIL("the stalled connect's descriptor is not found");
}

/* RFC 8305 and asyncio's staggered start: an attempt starts early only
 * when the one started just before it fails, not when an older one does.
 * three4.tapio.test: 127.0.0.3 and 127.0.0.2 stall, 127.0.0.1 serves.
 * With both stalled attempts under way, the first fails (a shutdown of
 * its connect makes it fail with ECONNRESET at once): the third still
 * waits for the second's delay; then the second fails: the third starts
 * at once, before that delay is up. */
static void only_the_latest_failure_starts_the_next(void)
{
  static const char *const good[] = { "127.0.0.1" };
  fixture f;
  tapio_options *o;
  msg_wait w;
  srv sv;
  int port = 0, stall3 = -1, stall2 = -1, fill3, fill2, tries;
  double delay = 0.6, t2;
  begin(&f, 0);
  for (tries = 0; tries < 50; tries++) {
    port = 0;
    stall3 = stalled_listener(AF_INET, "127.0.0.3", &port, &fill3);
    CHECK(stall3 >= 0);
    stall2 = stalled_listener(AF_INET, "127.0.0.2", &port, &fill2);
    srv_init(&sv, f.loop);
    if (stall2 >= 0 && srv_start_hosts(&sv, good, 1, port, NULL) == 0)
      break;
    if (stall2 >= 0) {
      close(fill2);
      close(stall2);
    }
    close(fill3);
    close(stall3);
    stall2 = -1;
  }
  CHECK(stall2 >= 0);
  o = he_options(f.loop, delay, -1);
  memset(&w, 0, sizeof w);
  w.loop = f.loop;
  CHECK_OK(tapio_create_connection(f.loop, "three4.tapio.test", port,
                                   &rec_proto, &f.c, o, on_done, &w));
  WAIT_FOR(f.loop, stalled_ino("127.0.0.2", port) != 0);
  t2 = now_sec(); /* the second attempt is under way: its delay runs */
  fail_stalled("127.0.0.3", port);
  run_for(f.loop, delay / 4);
  CHECK_EQ(w.done, 0); /* the third has not started */
  CHECK_EQ(sv.n, 0);
  CHECK_EQ(stalled_ino("127.0.0.3", port), 0);
  fail_stalled("127.0.0.2", port);
  WAIT_FOR(f.loop, w.done);
  CHECK_OK(w.status);
  CHECK(now_sec() - t2 < delay * 0.75); /* not the delay's start */
  srv_wait_conn(&sv, 0);
  tapio_transport_abort(w.t);
  tapio_options_free(o);
  close(fill3);
  close(stall3);
  close(fill2);
  close(stall2);
  tapio_server_release(sv.s);
  end(&f);
  srv_free(&sv);
}

static void bad_options(void)
{
  tapio_loop *loop = new_loop();
  tapio_options *o = new_options(loop);
  CHECK_ERR(tapio_options_set_double(o, "happy_eyeballs_delay", -0.1),
            TAPIO_EINVAL);
  CHECK_ERR(tapio_options_set_double(o, "happy_eyeballs_delay", 0.0 / 0.0),
            TAPIO_EINVAL);
  CHECK_ERR(tapio_options_set_double(o, "interleave", 1.0), TAPIO_EINVAL);
  CHECK_ERR(tapio_options_set_int(o, "interleave", -1), TAPIO_EINVAL);
  CHECK_OK(tapio_options_set_int(o, "happy_eyeballs_delay", 1));
  CHECK_OK(tapio_options_set_double(o, "happy_eyeballs_delay", 0.25));
  CHECK_ERR(tapio_create_server(loop, NULL, 0, 0, refusing_factory, NULL, o,
                                never_served, NULL), TAPIO_EINVAL);
  tapio_options_free(o);
  free_loop(loop);
}

TEST_MAIN(TEST(every_address_refused), TEST(interleave_orders_the_attempts),
          TEST(bind_failure_named), TEST(no_local_address_of_family_named),
          TEST(local_address_of_one_family),
          TEST(next_local_address_after_bind_fails),
          TEST(link_local_keeps_its_scope),
          TEST(stalled_ipv6_loses),
          TEST(no_delay_waits_for_the_first),
          TEST(stalled_first_of_one_family), TEST(cancel_mid_race_frees_both),
          TEST(failure_starts_the_next_at_once),
          TEST(only_the_latest_failure_starts_the_next), TEST(bad_options))
