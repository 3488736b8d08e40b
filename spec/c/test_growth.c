/* Steady state through the C ABI: every kind of operation, done and
 * failed or cancelled, leaves the loop's memory (tapio_loop_memory) and
 * the process's descriptors where they were. A long-running server leaks
 * if any per-operation state outlives the operation; ASan and valgrind
 * see none of it, since the loop's free gives everything back. Each kind
 * runs a few times (tables and buffers settle), is measured, runs n
 * times more and is measured again: the same bytes, the same
 * descriptors. spec/growth_spec.lua does the same through Lua. */
#include "test.h"
#include "tls.h"
#include "dns.h"

#define WARM 10

/* Cycles a kind runs: enough that one object kept a cycle shows (the
 * figures must be equal, not close); fewer under valgrind, as slow. */
static int cycles(int n)
{
  return under_valgrind() ? n / 10 : n;
}

typedef struct level {
  uint64_t mem;
  int fds;
} level;

/* A few turns (what ends a turn after its last callback goes), then the
 * figures. */
static level measure(tapio_loop *loop)
{
  level l;
  spin(loop, 3);
  l.mem = tapio_loop_memory(loop);
  l.fds = fd_count();
  return l;
}

/* cycle(loop, ud) WARM times, then n times; then settle(loop, ud) (when
 * given: waits for what ends after a cycle's own wait, a server's end of
 * a connection); the figures must be those of before. */
static void steady(tapio_loop *loop, const char *what, int n,
                   void (*cycle)(tapio_loop *, void *), void *ud,
                   void (*settle)(tapio_loop *, void *))
{
  level before, after;
  int i;
  for (i = 0; i < WARM; i++)
    cycle(loop, ud);
  if (settle)
    settle(loop, ud);
  before = measure(loop);
  for (i = 0; i < n; i++)
    cycle(loop, ud);
  if (settle)
    settle(loop, ud);
  after = measure(loop);
  if (after.mem != before.mem || after.fds != before.fds)
    FAIL("%s, %d times: memory %llu -> %llu bytes, descriptors %d -> %d",
         what, n, (unsigned long long)before.mem,
         (unsigned long long)after.mem, before.fds, after.fds);
}

/* ---- Connections: an echo server and a client that pings ---------------- */

static void echo_data(void *ud, tapio_transport *t, const char *d, size_t n)
{
  (void)ud;
  CHECK_OK(tapio_transport_write(t, d, n));
}

static const tapio_protocol echo_proto = {
  .size = sizeof(tapio_protocol),
  .data_received = echo_data,
};

static int echo_factory(void *ud, tapio_server *s, const tapio_protocol **p,
                        void **pud)
{
  (void)s;
  *p = &echo_proto;
  *pud = ud;
  return 0;
}

/* A client: writes "ping" once made, closes at the echo; lost counts. */
typedef struct ping {
  int lost, code;
  int status; /* the create call's completion: 1 + status once done */
} ping;

static void ping_made(void *ud, tapio_transport *t)
{
  (void)ud;
  CHECK_OK(tapio_transport_write(t, "ping", 4));
}

static void ping_data(void *ud, tapio_transport *t, const char *d, size_t n)
{
  (void)ud;
  CHECK(n <= 4 && memcmp(d, "ping", n) == 0);
  CHECK_OK(tapio_transport_close(t));
}

static void ping_lost(void *ud, tapio_transport *t, int code,
                      const char *msg)
{
  ping *p = ud;
  (void)t;
  (void)msg;
  p->lost++;
  p->code = code;
}

static const tapio_protocol ping_proto = {
  .size = sizeof(tapio_protocol),
  .connection_made = ping_made,
  .connection_lost = ping_lost,
  .data_received = ping_data,
};

static void ping_done(void *ud, int status, tapio_transport *t)
{
  (void)t;
  ((ping *)ud)->status = 1 + status;
}

typedef struct served {
  tapio_server *s;
  int port;
  tapio_options *client; /* the client's options, or NULL */
  int expect;            /* the create call's status */
} served;

static void on_served(void *ud, int status, tapio_server *s)
{
  served *sv = ud;
  CHECK_OK(status);
  sv->s = s;
}

static void serve(tapio_loop *loop, served *sv, const tapio_options *opts)
{
  static const char *const hosts[] = { "127.0.0.1" };
  char host[64];
  int fam;
  CHECK_OK(tapio_create_server(loop, hosts, 1, 0, echo_factory, NULL, opts,
                               on_served, sv));
  WAIT_FOR(loop, sv->s != NULL);
  CHECK_OK(tapio_server_get_address(sv->s, 0, host, sizeof host, &sv->port,
                                    &fam));
}

static void no_clients(tapio_loop *loop, void *ud)
{
  WAIT_FOR(loop, tapio_server_client_count(((served *)ud)->s) == 0);
}

static void end_served(tapio_loop *loop, served *sv)
{
  CHECK_OK(tapio_server_close(sv->s));
  tapio_server_release(sv->s);
  tapio_options_free(sv->client);
  free_loop(loop);
}

/* One connection: pinged and closed (or the create call's error). */
static void ping_cycle(tapio_loop *loop, void *ud)
{
  served *sv = ud;
  ping p = { 0, 0, 0 };
  CHECK_OK(tapio_create_connection(loop, "127.0.0.1", sv->port, &ping_proto,
                                   &p, sv->client, ping_done, &p));
  WAIT_FOR(loop, p.status != 0);
  CHECK_ERR(p.status - 1, sv->expect);
  if (sv->expect == 0) {
    WAIT_FOR(loop, p.lost);
    CHECK_OK(p.code);
  }
}

static void connections(void)
{
  tapio_loop *loop = new_loop();
  served sv = { 0 };
  serve(loop, &sv, NULL);
  steady(loop, "TCP connections", cycles(1000), ping_cycle, &sv, no_clients);
  sv.expect = TAPIO_ECONNREFUSED;
  close(raw_bind(AF_INET, &sv.port)); /* a port nobody listens on */
  steady(loop, "refused connections", cycles(1000), ping_cycle, &sv, NULL);
  end_served(loop, &sv);
}

static void tls_connections(void)
{
  tapio_loop *loop = new_loop();
  served sv = { 0 };
  tapio_options *so = tls_options(loop, server_ctx("server"));
  serve(loop, &sv, so);
  tapio_options_free(so);
  sv.client = tls_client_options(loop);
  steady(loop, "TLS connections", cycles(300), ping_cycle, &sv, no_clients);
  end_served(loop, &sv);
}

/* A client that trusts another CA: every handshake fails. */
static void tls_handshakes_failed(void)
{
  tapio_loop *loop = new_loop();
  served sv = { 0 };
  tapio_options *so = tls_options(loop, server_ctx("server"));
  tapio_tls_context *other = NULL;
  serve(loop, &sv, so);
  tapio_options_free(so);
  CHECK_OK(tapio_tls_context_new(TAPIO_TLS_CLIENT, &other));
  CHECK_OK(tapio_tls_context_load_verify_locations(other, cert("ca2.pem"),
                                                   NULL, NULL, 0));
  sv.client = tls_options(loop, other);
  sv.expect = TAPIO_ETLS_UNKNOWN_CA;
  steady(loop, "TLS handshakes failed", cycles(300), ping_cycle, &sv,
         no_clients);
  end_served(loop, &sv);
}

/* ---- Create calls cancelled while pending ------------------------------- */

static void never_gai(void *ud, int status, const tapio_addrinfo *res)
{
  (void)ud;
  (void)status;
  (void)res;
  FAIL("a cancelled getaddrinfo was answered");
}

typedef struct stalled {
  int port;
  char path[108];
} stalled;

/* A connect to a listener that never accepts (its backlog full), a
 * server (TCP, Unix), a datagram endpoint, a child and a lookup, each
 * cancelled before its completion: nothing of them is left. */
static void cancel_cycle(tapio_loop *loop, void *ud)
{
  stalled *st = ud;
  static const char *const hosts[] = { "127.0.0.1" };
  static const char *const args[] = { "60" };
  static const tapio_subprocess_protocol sub = {
    .size = sizeof(tapio_subprocess_protocol),
  };
  static const tapio_datagram_protocol dg = {
    .size = sizeof(tapio_datagram_protocol),
  };
  tapio_options *o = new_options(loop);
  int tag;
  CHECK_OK(tapio_create_connection(loop, "127.0.0.1", st->port, &ping_proto,
                                   NULL, NULL, never_connected, &tag));
  spin(loop, 2); /* connecting */
  CHECK_OK(tapio_create_server(loop, hosts, 1, 0, refusing_factory, NULL,
                               NULL, never_served, &tag));
  CHECK_OK(tapio_create_unix_server(loop, st->path, refusing_factory, NULL,
                                    NULL, never_served, &tag));
  CHECK_OK(tapio_options_set_str(o, "local_host", "127.0.0.1"));
  CHECK_OK(tapio_create_datagram_endpoint(loop, &dg, NULL, o,
                                          never_connected, &tag));
  tapio_options_free(o);
  CHECK_OK(tapio_subprocess_exec(loop, "sleep", args, 1, &sub, NULL, NULL,
                                 never_connected, &tag));
  CHECK_OK(tapio_getaddrinfo(loop, "127.0.0.1", "80", 0, 0, 0, never_gai,
                             &tag));
  CHECK_EQ(tapio_cancel_pending(loop, &tag), 6);
}

/* A listening socket that never accepts, its backlog (0) full with one
 * connection: connects to it stay pending. */
static int listen_full(int *port, int *filler)
{
  struct sockaddr_storage ss;
  int l = raw_bind(AF_INET, port);
  socklen_t len = raw_addr(AF_INET, NULL, *port, &ss);
  CHECK(listen(l, 0) == 0);
  *filler = socket(AF_INET, SOCK_STREAM, 0);
  CHECK(*filler >= 0);
  CHECK(connect(*filler, (struct sockaddr *)&ss, len) == 0);
  return l;
}

static void create_calls_cancelled(void)
{
  tapio_loop *loop = new_loop();
  stalled st;
  int filler, l = listen_full(&st.port, &filler);
  snprintf(st.path, sizeof st.path, "/tmp/tapio-growth-%d", (int)getpid());
  steady(loop, "create calls cancelled", cycles(500), cancel_cycle, &st,
         NULL);
  close(filler);
  close(l);
  unlink(st.path);
  free_loop(loop);
}

/* ---- Datagram endpoints --------------------------------------------------- */

typedef struct dgram {
  int made, got, errors, lost;
  tapio_transport *t;
} dgram;

static void dg_made(void *ud, tapio_transport *t)
{
  ((dgram *)ud)->t = t;
}

static void dg_lost(void *ud, tapio_transport *t, int code, const char *m)
{
  (void)t;
  (void)m;
  CHECK_OK(code);
  ((dgram *)ud)->lost++;
}

static void dg_received(void *ud, tapio_transport *t, const char *d,
                        size_t n, const void *addr, size_t alen)
{
  (void)d;
  (void)n;
  (void)addr;
  (void)alen;
  ((dgram *)ud)->got++;
  CHECK_OK(tapio_transport_close(t));
}

static void dg_error(void *ud, tapio_transport *t, int code, const char *m)
{
  (void)m;
  CHECK_ERR(code, TAPIO_ECONNREFUSED);
  if (((dgram *)ud)->errors++ == 0)
    CHECK_OK(tapio_transport_close(t));
}

static const tapio_datagram_protocol dg_proto = {
  .size = sizeof(tapio_datagram_protocol),
  .connection_made = dg_made,
  .connection_lost = dg_lost,
  .datagram_received = dg_received,
  .error_received = dg_error,
};

/* An endpoint that sends itself a datagram and closes at it; with ud (a
 * port nobody listens on), one connected there, closed at the refusal. */
static void dgram_cycle(tapio_loop *loop, void *ud)
{
  const int *refused = ud;
  dgram d = { 0, 0, 0, 0, NULL };
  conn_wait w = { 0 };
  tapio_options *o = new_options(loop);
  char addr[64];
  size_t alen = sizeof addr;
  if (refused) {
    CHECK_OK(tapio_options_set_str(o, "remote_host", "127.0.0.1"));
    CHECK_OK(tapio_options_set_int(o, "remote_port", *refused));
  } else {
    CHECK_OK(tapio_options_set_str(o, "local_host", "127.0.0.1"));
  }
  CHECK_OK(tapio_create_datagram_endpoint(loop, &dg_proto, &d, o,
                                          on_connected, &w));
  tapio_options_free(o);
  CHECK_OK(connect_wait(loop, &w));
  if (refused) {
    /* a datagram at a time until one's ICMP error comes (the kernel's
     * rate limit of ICMP drops some) */
    double end = now_sec() + test_timeout();
    while (!d.errors && !d.lost && now_sec() < end) {
      deadline dl;
      CHECK_OK(tapio_transport_sendto(d.t, "x", 1, NULL, 0));
      deadline_start(&dl, loop, 0.01);
      while (!d.errors && !dl.expired)
        CHECK_OK(tapio_loop_run_once(loop, 1));
      deadline_end(&dl);
    }
    CHECK_EQ(d.got, 0);
    CHECK(d.errors);
  } else {
    CHECK_OK(tapio_transport_get_sockaddr(d.t, addr, &alen));
    CHECK_OK(tapio_transport_sendto(d.t, "x", 1, addr, alen));
  }
  WAIT_FOR(loop, d.lost);
}

/* A UDP port that refuses: its socket is connected to itself, so the
 * kernel gives it no datagram of another sender (ICMP port unreachable),
 * and, held, no endpoint gets the port (a port merely closed could come
 * back as an endpoint's own, which then hears itself). */
static int refusing_udp(int *port)
{
  struct sockaddr_storage ss;
  socklen_t len = raw_addr(AF_INET, NULL, 0, &ss);
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  CHECK(fd >= 0);
  CHECK(bind(fd, (struct sockaddr *)&ss, len) == 0);
  *port = raw_port(fd);
  len = raw_addr(AF_INET, NULL, *port, &ss);
  CHECK(connect(fd, (struct sockaddr *)&ss, len) == 0);
  return fd;
}

static void datagrams(void)
{
  tapio_loop *loop = new_loop();
  int port, fd = refusing_udp(&port);
  steady(loop, "datagram endpoints", cycles(1000), dgram_cycle, NULL, NULL);
  steady(loop, "datagrams refused", cycles(1000), dgram_cycle, &port, NULL);
  close(fd);
  free_loop(loop);
}

/* ---- Subprocesses --------------------------------------------------------- */

typedef struct child {
  int lost, out, rc;
  tapio_transport *t;
} child;

static void child_made(void *ud, tapio_transport *t)
{
  ((child *)ud)->t = t;
}

static void child_lost(void *ud, tapio_transport *t, int code,
                       const char *m)
{
  (void)t;
  (void)m;
  CHECK_OK(code);
  ((child *)ud)->lost++;
}

static void child_data(void *ud, tapio_transport *t, int fd, const char *d,
                       size_t n)
{
  (void)t;
  (void)fd;
  (void)d;
  ((child *)ud)->out += (int)n;
}

static void child_exited(void *ud, tapio_transport *t)
{
  CHECK_EQ(tapio_subprocess_get_returncode(t, &((child *)ud)->rc), 1);
}

static const tapio_subprocess_protocol child_proto = {
  .size = sizeof(tapio_subprocess_protocol),
  .connection_made = child_made,
  .connection_lost = child_lost,
  .pipe_data_received = child_data,
  .process_exited = child_exited,
};

/* echo with its pipes, to its end; with ud, sleep killed. */
static void child_cycle(tapio_loop *loop, void *ud)
{
  static const char *const hi[] = { "hi" }, *const long_[] = { "60" };
  child c = { 0, 0, 1, NULL };
  conn_wait w = { 0 };
  CHECK_OK(tapio_subprocess_exec(loop, ud ? "sleep" : "echo",
                                 ud ? long_ : hi, 1, &child_proto, &c, NULL,
                                 on_connected, &w));
  CHECK_OK(connect_wait(loop, &w));
  if (ud)
    CHECK_OK(tapio_subprocess_kill(c.t));
  WAIT_FOR(loop, c.lost);
  CHECK_EQ(c.rc, ud ? -9 : 0);
  CHECK_EQ(c.out, ud ? 0 : 3);
}

static void subprocesses(void)
{
  tapio_loop *loop = new_loop();
  steady(loop, "subprocesses", cycles(200), child_cycle, NULL, NULL);
  steady(loop, "subprocesses killed", cycles(200), child_cycle, loop, NULL);
  free_loop(loop);
}

/* ---- Lookups ---------------------------------------------------------------- */

typedef struct lookup {
  int status; /* 1 + the status, once answered */
} lookup;

static void on_gai(void *ud, int status, const tapio_addrinfo *res)
{
  lookup *l = ud;
  CHECK((status == 0) == (res != NULL));
  l->status = 1 + status;
}

static void on_gni(void *ud, int status, const char *host, const char *serv)
{
  lookup *l = ud;
  CHECK_OK(status);
  CHECK_STR(host, "localhost");
  CHECK_STR(serv, "http");
  l->status = 1;
}

/* Names answered, refused and failed, a literal, a reverse lookup. */
static void lookup_cycle(tapio_loop *loop, void *ud)
{
  static const char *const names[] = { "v4.tapio.test", "127.0.0.1",
                                       "nx.tapio.test",
                                       "fail.v4.tapio.test" };
  static const int want[] = { 0, 0, TAPIO_EAI_NONAME, TAPIO_EAI_AGAIN };
  struct sockaddr_storage ss;
  socklen_t len = raw_addr(AF_INET, NULL, 80, &ss);
  lookup l;
  size_t i;
  (void)ud;
  for (i = 0; i < 4; i++) {
    l.status = 0;
    CHECK_OK(tapio_getaddrinfo(loop, names[i], "80", 0, 0, 0, on_gai, &l));
    WAIT_FOR(loop, l.status);
    CHECK_ERR(l.status - 1, want[i]);
  }
  l.status = 0;
  CHECK_OK(tapio_getnameinfo(loop, &ss, len, 0, on_gni, &l));
  WAIT_FOR(loop, l.status);
}

/* A lookup the server never answers, cancelled once its query is out. */
static void cancelled_lookup_cycle(tapio_loop *loop, void *ud)
{
  int tag;
  (void)ud;
  CHECK_OK(tapio_getaddrinfo(loop, "silent.v4.tapio.test", "80", 0, 0, 0,
                             never_gai, &tag));
  spin(loop, 2);
  CHECK_EQ(tapio_cancel_pending(loop, &tag), 1);
}

/* The loop's memory while a deadline (WAIT_FOR's timer) is set. */
static uint64_t memory_waiting(tapio_loop *loop)
{
  deadline d;
  uint64_t mem;
  deadline_start(&d, loop, test_timeout());
  mem = tapio_loop_memory(loop);
  deadline_end(&d);
  return mem;
}

/* Waits until the loop holds *ud bytes, as memory_waiting counts them. */
static void memory_back(tapio_loop *loop, void *ud)
{
  const uint64_t *mem = ud;
  deadline d;
  deadline_start(&d, loop, test_timeout());
  while (tapio_loop_memory(loop) != *mem && !d.expired)
    CHECK_OK(tapio_loop_run_once(loop, 1));
  CHECK_EQ(tapio_loop_memory(loop), *mem);
  deadline_end(&d);
}

/* A loop on d whose resolver is made. */
static tapio_loop *resolving(dns_server *d)
{
  tapio_loop *loop = dns_loop(d, 0.5);
  lookup l = { 0 };
  CHECK_OK(tapio_getaddrinfo(loop, "v4.tapio.test", "80", 0, 0, 0, on_gai,
                             &l));
  WAIT_FOR(loop, l.status);
  return loop;
}

static void lookups(void)
{
  dns_server d;
  tapio_loop *loop;
  uint64_t mem;
  dns_start(&d, 0);
  loop = resolving(&d);
  steady(loop, "lookups", cycles(500), lookup_cycle, NULL, NULL);
  free_loop(loop);
  /* A cancelled query stays with c-ares until it gives up (0.5 s): the
   * loop's memory must come back to what it held before, counted while
   * the wait's own timer is set (its handle, the timer heap). */
  loop = resolving(&d);
  mem = memory_waiting(loop);
  steady(loop, "lookups cancelled", cycles(500), cancelled_lookup_cycle,
         &mem, memory_back);
  free_loop(loop);
  dns_stop(&d);
}

/* ---- Jobs and scheduled calls ------------------------------------------------ */

typedef struct jobs {
  tapio_loop *loop;
  int pending; /* done callbacks to come */
} jobs;

static void nothing(void *ud)
{
  (void)ud;
}

static void job_work(void *ud)
{
  jobs *j = ud;
  CHECK_OK(tapio_call_soon_threadsafe(j->loop, nothing, NULL));
}

static void job_done(void *ud, int status)
{
  jobs *j = ud;
  CHECK(status == 0 || status == TAPIO_ECANCELED);
  j->pending--;
}

/* Ten jobs, every other one cancelled (dropped if not started); each that
 * runs makes a call_soon_threadsafe. */
static void job_cycle(tapio_loop *loop, void *ud)
{
  jobs *j = ud;
  tapio_work *w[10];
  int i;
  for (i = 0; i < 10; i++) {
    CHECK_OK(tapio_queue_work(loop, job_work, job_done, j, &w[i]));
    j->pending++;
  }
  for (i = 0; i < 10; i += 2)
    if (tapio_work_cancel(w[i]) == 1)
      j->pending--;
  for (i = 0; i < 10; i++)
    tapio_work_release(w[i]);
  WAIT_FOR(loop, j->pending == 0);
}

static void count_call(void *ud)
{
  (*(int *)ud)++;
}

/* call_soon, call_later and call_at run, and cancelled. */
static void call_cycle(tapio_loop *loop, void *ud)
{
  int ran = 0;
  tapio_handle *h[3];
  (void)ud;
  CHECK_OK(tapio_call_soon(loop, count_call, &ran, NULL));
  CHECK_OK(tapio_call_later(loop, 0, count_call, &ran, NULL));
  CHECK_OK(tapio_call_at(loop, tapio_loop_time(loop), count_call, &ran,
                         NULL));
  CHECK_OK(tapio_call_soon(loop, never_called, NULL, &h[0]));
  CHECK_OK(tapio_call_later(loop, 3600, never_called, NULL, &h[1]));
  CHECK_OK(tapio_call_at(loop, tapio_loop_time(loop) + 3600, never_called,
                         NULL, &h[2]));
  for (int i = 0; i < 3; i++) {
    tapio_handle_cancel(h[i]);
    tapio_handle_release(h[i]);
  }
  WAIT_FOR(loop, ran == 3);
}

static void jobs_and_calls(void)
{
  tapio_loop *loop = new_loop();
  jobs j = { loop, 0 };
  int i;
  /* 70 at once: the pool keeps up to 64 jobs' memory for the next ones
   * (src/work.c), as many as were in flight at once */
  for (i = 0; i < 70; i++) {
    CHECK_OK(tapio_queue_work(loop, job_work, job_done, &j, NULL));
    j.pending++;
  }
  WAIT_FOR(loop, j.pending == 0);
  steady(loop, "jobs", cycles(200), job_cycle, &j, NULL);
  steady(loop, "scheduled calls", cycles(2000), call_cycle, NULL, NULL);
  free_loop(loop);
}

static void warm(void)
{
  tls_connections();
}

TEST_MAIN_WARM(warm, TEST(connections), TEST(tls_connections),
               TEST(tls_handshakes_failed), TEST(create_calls_cancelled),
               TEST(datagrams), TEST(subprocesses), TEST(lookups),
               TEST(jobs_and_calls))
