/* A host's allocator with a budget: when it refuses, tapio reports an
 * error (a create call fails with ENOMEM, a connection is refused with the
 * exception handler told, a write fails with ENOMEM), keeps running with
 * nothing leaked, and serves again when memory is back. Then every
 * allocation of a whole exchange is refused in turn. */
#include "dgram.h"

typedef struct budget {
  size_t used, limit;  /* limit: SIZE_MAX for none */
  long allocs;         /* allocations asked for */
  long fail_at;        /* refuse that one (0: none) */
  long refused;
} budget;

static void *budget_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
  budget *b = ud;
  size_t old = ptr ? osize : 0;
  void *p;
  if (nsize == 0) {
    free(ptr);
    b->used -= old;
    return NULL;
  }
  b->allocs++;
  if (b->allocs == b->fail_at || nsize > old + (b->limit - b->used)) {
    b->refused++;
    return NULL;
  }
  p = realloc(ptr, nsize);
  if (p)
    b->used += nsize - old;
  return p;
}

static tapio_loop *budget_loop(budget *b)
{
  tapio_loop *loop = NULL;
  memset(b, 0, sizeof *b);
  b->limit = SIZE_MAX;
  CHECK_OK(tapio_loop_new_with_allocator(&loop, budget_alloc, b));
  return loop;
}

/* The peer of a raw client: EOF or a reset, the way a refused connection
 * ends (never data). */
static void raw_expect_end(int fd)
{
  char c;
  size_t n;
  int rc = raw_recv_until_eof(NULL, fd, &c, 1, &n);
  CHECK(rc == 0 || rc == -ECONNRESET);
  CHECK_EQ(n, 0);
}

static void refused_then_served_again(void)
{
  budget b;
  tapio_loop *loop = budget_loop(&b);
  const char *host = "127.0.0.1";
  tapio_options *o = (tapio_options *)&o;
  tapio_handle *h = (tapio_handle *)&h;
  exc_rec exc = { 0 };
  srv sv;
  rec *a;
  int peer_a, peer_b, peer_c, rc;
  uint64_t at_start, after_a;
  static char chunk[64 * 1024];

  tapio_loop_set_exception_handler(loop, exc_record, &exc);
  srv_start(&sv, loop);
  tapio_loop_backend_fd(loop);
  peer_a = raw_connect(AF_INET, host, sv.port);
  CHECK(peer_a >= 0);
  raw_send_str(NULL, peer_a, "ping");
  a = srv_wait_conn(&sv, 0);
  WAIT_FOR(loop, a->nin == 4); /* the read buffer is made */
  at_start = tapio_loop_memory(loop);

  b.limit = b.used; /* not a byte more */
  /* create calls fail, and call nobody */
  CHECK_ERR(tapio_create_connection(loop, host, sv.port, &rec_proto, NULL,
                                    NULL, never_connected, NULL),
            TAPIO_ENOMEM);
  CHECK_ERR(tapio_create_server(loop, &host, 1, 0, srv_factory, &sv, NULL,
                                never_served, NULL), TAPIO_ENOMEM);
  CHECK_ERR(tapio_call_soon(loop, never_called, NULL, &h), TAPIO_ENOMEM);
  CHECK(h == NULL);
  CHECK_ERR(tapio_call_later(loop, 1, never_called, NULL, NULL),
            TAPIO_ENOMEM);
  CHECK_ERR(tapio_options_new(loop, &o), TAPIO_ENOMEM);
  CHECK(o == NULL);
  CHECK_ERR(tapio_server_wait_closed(sv.s, never_closed, NULL),
            TAPIO_ENOMEM);

  /* a connection is refused, the exception handler told */
  peer_b = raw_connect(AF_INET, host, sv.port);
  CHECK(peer_b >= 0);
  HOST_WAIT(loop, exc.n == 1);
  CHECK_EQ(exc.code, TAPIO_ENOMEM);
  raw_expect_end(peer_b);
  close(peer_b);
  CHECK_EQ(sv.n, 1); /* no factory asked for a connection it cannot have */

  /* a write that must buffer fails, and so does its transport */
  do
    rc = tapio_transport_write(a->t, chunk, sizeof chunk);
  while (rc == 0 && !a->lost);
  CHECK_ERR(rc, TAPIO_ENOMEM);
  HOST_WAIT(loop, a->lost);
  CHECK_EQ(a->lost_code, TAPIO_ENOMEM);
  close(peer_a);
  after_a = tapio_loop_memory(loop);
  CHECK(after_a < at_start); /* a's memory went */

  /* memory is back: it serves */
  b.limit = SIZE_MAX;
  peer_c = raw_connect(AF_INET, host, sv.port);
  CHECK(peer_c >= 0);
  raw_send_str(NULL, peer_c, "again");
  HOST_WAIT(loop, sv.n == 2 && sv.conns[1]->nin == 5);
  CHECK(memcmp(sv.conns[1]->in, "again", 5) == 0);
  close(peer_c);
  HOST_WAIT(loop, sv.conns[1]->lost);
  CHECK_EQ(tapio_loop_memory(loop), after_a); /* c's went too */
  CHECK(b.refused > 0);
  srv_release_and_free(&sv, loop);
  CHECK_EQ(b.used, 0); /* every byte given back */
}

/* ---- Every allocation refused in turn ---------------------------------- */

typedef struct exchange {
  rec c;
  int connected, connect_status;
  srv sv;
  exc_rec exc;
} exchange;

static void on_client(void *ud, int status, tapio_transport *t)
{
  exchange *x = ud;
  (void)t;
  x->connected = 1;
  x->connect_status = status;
}

static void on_listen(void *ud, int status, tapio_server *s)
{
  exchange *x = ud;
  x->sv.done = 1;
  x->sv.status = status;
  x->sv.s = s;
}

/* A server and a client on one loop: connect, "ping", close. Any step
 * may fail for want of memory; the exchange then ends where it can. */
static void run_exchange(tapio_loop *loop, exchange *x)
{
  static const char *const host = "127.0.0.1";
  char addr[64];
  int port = 0;
  if (tapio_create_server(loop, &host, 1, 0, srv_factory, &x->sv, NULL,
                          on_listen, x) != 0)
    return;
  HOST_WAIT(loop, x->sv.done);
  if (x->sv.status != 0)
    return;
  tapio_server_get_address(x->sv.s, 0, addr, sizeof addr, &port, NULL);
  if (tapio_create_connection(loop, host, port, &rec_proto, &x->c, NULL,
                              on_client, x) != 0)
    return;
  HOST_WAIT(loop, x->connected);
  if (x->connect_status != 0)
    return;
  tapio_transport_write(x->c.t, "ping", 4);
  /* the server's side gets it, or was refused (the client sees EOF) */
  HOST_WAIT(loop, x->c.lost || (x->sv.n && (x->sv.conns[0]->nin == 4 ||
                                            x->sv.conns[0]->lost)));
  if (!x->c.lost)
    tapio_transport_close(x->c.t);
  HOST_WAIT(loop, x->c.lost);
}

static void every_allocation_refused_once(void)
{
  long k, total = 0;
  for (k = 1;; k++) {
    budget b;
    exchange x;
    tapio_loop *loop = budget_loop(&b);
    long before;
    memset(&x, 0, sizeof x);
    rec_init(&x.c);
    srv_init(&x.sv, loop);
    tapio_loop_set_exception_handler(loop, exc_record, &x.exc);
    CHECK(tapio_loop_backend_fd(loop) >= 0); /* HOST_WAIT's, made first */
    before = b.allocs;
    b.fail_at = before + k;
    run_exchange(loop, &x);
    if (x.sv.s)
      tapio_server_release(x.sv.s);
    CHECK_OK(tapio_loop_free(loop));
    CHECK_EQ(b.used, 0); /* nothing leaked, whichever one failed */
    rec_free(&x.c);
    srv_free(&x.sv);
    if (b.refused == 0) { /* the exchange needs fewer than k */
      total = b.allocs - before;
      break;
    }
  }
  CHECK(total > 5);
  printf("  %ld allocations, each refused once\n", k - 1);
}

/* D3 (asyncio's fatal read error): the loop's datagram area cannot be
 * made for the first datagram read, a failure that is not the network's:
 * the endpoint ends with connection_lost(ENOMEM), as asyncio's
 * connection_lost(exc); the loop goes on, and with memory back another
 * endpoint receives. */
static void datagram_area_refused(void)
{
  budget b;
  tapio_loop *loop = budget_loop(&b);
  drec s, s2;
  int port = bound_endpoint(loop, &s, "127.0.0.1"), port2;
  int fd = raw_udp(AF_INET, "127.0.0.1", NULL);
  tapio_loop_backend_fd(loop); /* made before the budget is spent */
  b.limit = b.used;
  raw_sendto(fd, "x", 1, AF_INET, "127.0.0.1", port);
  HOST_WAIT(loop, s.lost); /* WAIT_FOR's timer would need memory */
  CHECK_STR(s.log, "made lost:ENOMEM");
  b.limit = SIZE_MAX;
  port2 = bound_endpoint(loop, &s2, "127.0.0.1");
  raw_sendto(fd, "y", 1, AF_INET, "127.0.0.1", port2);
  WAIT_FOR(loop, s2.ndata == 1);
  CHECK_STR(s2.log, "made data:1");
  close(fd);
  free_loop(loop);
  CHECK_EQ(b.used, 0);
}

/* ---- sock_sendall's copy refused ---------------------------------------- */

typedef struct sendall_done {
  int calls, status;
  size_t n;
} sendall_done;

static void on_sendall(void *ud, int status, size_t n, const void *addr,
                       size_t alen)
{
  sendall_done *d = ud;
  (void)addr;
  (void)alen;
  d->calls++;
  d->status = status;
  d->n = n;
}

/* A sendall that sent part of its data and then found no memory for a
 * copy of the rest: the completion tells ENOMEM with the count sent, as
 * a failed send's (the call's own error would lose the count), and the
 * peer has exactly those bytes; with nothing sent, the call's ENOMEM,
 * and no completion. */
static void sendall_copy_refused(void)
{
  budget b;
  tapio_loop *loop = budget_loop(&b);
  sendall_done d = { 0 };
  size_t len = 4u << 20, got = 0;
  char *data = malloc(len), *in = malloc(len);
  int sv[2];
  CHECK(data && in);
  pattern_fill(data, len, 0);
  CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
  b.fail_at = b.allocs + 2; /* the operation, then its copy */
  CHECK_OK(tapio_sock_sendall(loop, sv[0], data, len, on_sendall, &d));
  CHECK_EQ(b.refused, 1);
  CHECK_EQ(d.calls, 0); /* from the loop */
  WAIT_FOR(loop, d.calls);
  CHECK_ERR(d.status, TAPIO_ENOMEM);
  CHECK(d.n > 0 && d.n < len);
  b.fail_at = b.allocs + 2;
  CHECK_ERR(tapio_sock_sendall(loop, sv[0], data, len, on_sendall, &d),
            TAPIO_ENOMEM); /* the socket is full: nothing went */
  shutdown(sv[0], SHUT_WR);
  for (;;) {
    ssize_t n = recv(sv[1], in + got, len - got, 0);
    CHECK(n >= 0);
    if (n == 0)
      break;
    got += (size_t)n;
  }
  CHECK_EQ(got, d.n);
  CHECK_EQ(pattern_check(in, got, 0), -1);
  spin(loop, 2);
  CHECK_EQ(d.calls, 1);
  free_loop(loop);
  close(sv[0]);
  close(sv[1]);
  free(data);
  free(in);
}

/* Out of descriptors and of memory at once: the server's pause before it
 * tries to accept again is a timer whose start cannot fail, so a host
 * polling tapio wakes for it, also with the heap of due times full of
 * later ones (it slept through it when the start needed memory for the
 * heap: its timeout said the later ones' time). */
static void accept_retry_without_memory(void)
{
  budget b;
  tapio_loop *loop = budget_loop(&b);
  exc_rec exc = { 0 };
  fd_fill f;
  srv sv;
  struct sockaddr_storage ss;
  socklen_t len;
  tapio_handle *later[16];
  int c1, c2, ms, i;
  tapio_loop_set_exception_handler(loop, exc_record, &exc);
  srv_start(&sv, loop);
  tapio_loop_backend_fd(loop);
  for (i = 0; i < 16; i++) /* the heap's first 16 places taken */
    CHECK_OK(tapio_call_later(loop, 30, never_called, NULL, &later[i]));
  len = raw_addr(AF_INET, NULL, sv.port, &ss);
  c1 = socket(AF_INET, SOCK_STREAM, 0); /* before the table is full */
  CHECK(c1 >= 0);
  b.limit = b.used; /* not a byte more */
  fd_fill_up(&f);
  CHECK(connect(c1, (struct sockaddr *)&ss, len) == 0);
  HOST_WAIT(loop, exc.n >= 1);
  CHECK_ERR(exc.code, TAPIO_EMFILE);
  CHECK_OK(tapio_loop_run_once(loop, 0)); /* the listener's stop applied */
  ms = tapio_loop_backend_timeout(loop);
  CHECK(ms >= 0 && ms <= 1000);
  fd_fill_release(&f);
  b.limit = SIZE_MAX;
  c2 = raw_connect(AF_INET, "127.0.0.1", sv.port);
  CHECK(c2 >= 0);
  HOST_WAIT(loop, sv.n >= 1);
  for (i = 0; i < 16; i++) {
    tapio_handle_cancel(later[i]);
    tapio_handle_release(later[i]);
  }
  close(c1);
  close(c2);
  srv_release_and_free(&sv, loop);
  CHECK_EQ(b.used, 0);
}

TEST_MAIN(TEST(refused_then_served_again),
          TEST(every_allocation_refused_once), TEST(datagram_area_refused),
          TEST(sendall_copy_refused), TEST(accept_retry_without_memory))
