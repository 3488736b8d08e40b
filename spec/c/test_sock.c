/* Operations on a caller's socket: tapio_sock_recv, recvfrom, sendall,
 * sendto, connect and accept (asyncio's loop.sock_*), on real sockets
 * whose other ends are plain POSIX calls. */
#include "test.h"

/* One operation's completion. */
typedef struct done {
  int calls, status, fd;
  size_t n;
  char host[64];
  int port;
  tapio_loop *loop;
  int close_fd;          /* closes this descriptor inside the completion */
  char buf[8192];
} done;

static void on_sock(void *ud, int status, size_t n, const void *addr,
                    size_t alen)
{
  done *d = ud;
  d->calls++;
  d->status = status;
  d->n = n;
  d->host[0] = '\0';
  if (addr)
    CHECK_OK(tapio_addr_format(addr, alen, d->host, sizeof d->host,
                               &d->port, NULL));
  if (d->close_fd > 0)
    close(d->close_fd);
}

static void on_accept(void *ud, int status, int fd, const void *addr,
                      size_t alen)
{
  on_sock(ud, status, 0, addr, alen);
  ((done *)ud)->fd = fd;
}

static done *new_done(void)
{
  done *d = calloc(1, sizeof *d);
  CHECK(d != NULL);
  d->fd = -1;
  return d;
}

static void pair(int sv[2])
{
  CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
}

/* A UDP socket on 127.0.0.1, non-blocking, and its port. */
static int udp_socket(int *port)
{
  struct sockaddr_in sin = { 0 };
  socklen_t len = sizeof sin;
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
  CHECK(fd >= 0);
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  CHECK(bind(fd, (struct sockaddr *)&sin, sizeof sin) == 0);
  CHECK(getsockname(fd, (struct sockaddr *)&sin, &len) == 0);
  *port = ntohs(sin.sin_port);
  return fd;
}

/* A listening TCP socket on 127.0.0.1 (non-blocking), and its port. */
static int tcp_listener(int *port)
{
  struct sockaddr_in sin = { 0 };
  socklen_t len = sizeof sin;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  CHECK(fd >= 0);
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  CHECK(bind(fd, (struct sockaddr *)&sin, sizeof sin) == 0);
  CHECK(listen(fd, 8) == 0);
  CHECK(getsockname(fd, (struct sockaddr *)&sin, &len) == 0);
  *port = ntohs(sin.sin_port);
  return fd;
}

static void addr_of(int port, void *addr, size_t *len)
{
  *len = TAPIO_ADDR_MAX;
  CHECK_OK(tapio_addr_parse("127.0.0.1", port, addr, len));
}

/* Data there already: the completion comes from the loop, not the call. */
static void recv_at_once(void)
{
  tapio_loop *loop = new_loop();
  done *d = new_done();
  int sv[2];
  pair(sv);
  CHECK_EQ(send(sv[1], "hello", 5, 0), 5);
  CHECK_OK(tapio_sock_recv(loop, sv[0], d->buf, sizeof d->buf, on_sock, d));
  CHECK_EQ(d->calls, 0);
  WAIT_FOR(loop, d->calls);
  CHECK_OK(d->status);
  CHECK_EQ(d->n, 5);
  CHECK(memcmp(d->buf, "hello", 5) == 0);
  free_loop(loop);
  close(sv[0]);
  close(sv[1]);
  free(d);
}

/* Nothing there: it waits, then gets what comes, then the end. */
static void recv_after_wait_and_end(void)
{
  tapio_loop *loop = new_loop();
  done *d = new_done();
  int sv[2];
  pair(sv);
  CHECK_OK(tapio_sock_recv(loop, sv[0], d->buf, sizeof d->buf, on_sock, d));
  spin(loop, 3);
  CHECK_EQ(d->calls, 0);
  CHECK_EQ(send(sv[1], "late", 4, 0), 4);
  WAIT_FOR(loop, d->calls);
  CHECK_EQ(d->n, 4);
  CHECK(memcmp(d->buf, "late", 4) == 0);
  CHECK_OK(tapio_sock_recv(loop, sv[0], d->buf, sizeof d->buf, on_sock, d));
  close(sv[1]);
  WAIT_FOR(loop, d->calls == 2);
  CHECK_OK(d->status);
  CHECK_EQ(d->n, 0);
  free_loop(loop);
  close(sv[0]);
  free(d);
}

/* More than the socket takes: the rest waits (copied: the caller's buffer
 * is gone after the call) while the peer reads, every byte in order. */
static void sendall_waits_for_room(void)
{
  tapio_loop *loop = new_loop();
  done *d = new_done();
  size_t len = 4 << 20, got = 0, i;
  char *data = malloc(len), *in = malloc(len);
  int sv[2];
  CHECK(data && in);
  for (i = 0; i < len; i++)
    data[i] = (char)(i * 7 + i / 4096);
  pair(sv);
  CHECK_OK(tapio_sock_sendall(loop, sv[0], data, len, on_sock, d));
  memset(data, 0, len); /* borrowed for the call only */
  while (got < len) {
    ssize_t n = recv(sv[1], in + got, len - got, MSG_DONTWAIT);
    if (n > 0)
      got += (size_t)n;
    else
      CHECK_OK(tapio_loop_run_once(loop, 0));
    CHECK(!d->calls || got == len || d->calls == 1);
  }
  WAIT_FOR(loop, d->calls);
  CHECK_OK(d->status);
  CHECK_EQ(d->n, len);
  for (i = 0; i < len; i++)
    if (in[i] != (char)(i * 7 + i / 4096))
      FAIL("byte %zu differs", i);
  free_loop(loop);
  close(sv[0]);
  close(sv[1]);
  free(data);
  free(in);
  free(d);
}

/* A peer gone: the error, the bytes sent before it, and no SIGPIPE
 * (which would end this process). */
static void sendall_to_closed_peer(void)
{
  tapio_loop *loop = new_loop();
  done *d = new_done();
  int sv[2];
  pair(sv);
  close(sv[1]);
  CHECK_OK(tapio_sock_sendall(loop, sv[0], "x", 1, on_sock, d));
  WAIT_FOR(loop, d->calls);
  CHECK_ERR(d->status, TAPIO_EPIPE);
  CHECK_EQ(d->n, 0);
  free_loop(loop);
  close(sv[0]);
  free(d);
}

/* A datagram each way: sendto's count, recvfrom's sender. */
static void sendto_and_recvfrom(void)
{
  tapio_loop *loop = new_loop();
  done *r = new_done(), *s = new_done();
  char addr[TAPIO_ADDR_MAX];
  size_t alen;
  int pa, pb;
  int a = udp_socket(&pa), b = udp_socket(&pb);
  CHECK_OK(tapio_sock_recvfrom(loop, b, r->buf, sizeof r->buf, on_sock, r));
  spin(loop, 2);
  addr_of(pb, addr, &alen);
  CHECK_OK(tapio_sock_sendto(loop, a, "ping", 4, addr, alen, on_sock, s));
  memset(addr, 0, sizeof addr); /* borrowed for the call only */
  WAIT_FOR(loop, r->calls && s->calls);
  CHECK_OK(s->status);
  CHECK_EQ(s->n, 4);
  CHECK_OK(r->status);
  CHECK_EQ(r->n, 4);
  CHECK(memcmp(r->buf, "ping", 4) == 0);
  CHECK_STR(r->host, "127.0.0.1");
  CHECK_EQ(r->port, pa);
  free_loop(loop);
  close(a);
  close(b);
  free(r);
  free(s);
}

/* Two receivers on one UDP socket: each gets a datagram, in the order
 * they asked (asyncio's second add_reader would silence the first). */
static void two_receivers_each_complete(void)
{
  tapio_loop *loop = new_loop();
  done *r1 = new_done(), *r2 = new_done();
  char addr[TAPIO_ADDR_MAX];
  size_t alen;
  int pa, pb;
  int a = udp_socket(&pa), b = udp_socket(&pb);
  CHECK_OK(tapio_sock_recv(loop, b, r1->buf, sizeof r1->buf, on_sock, r1));
  CHECK_OK(tapio_sock_recv(loop, b, r2->buf, sizeof r2->buf, on_sock, r2));
  spin(loop, 2);
  addr_of(pb, addr, &alen);
  CHECK_EQ(sendto(a, "one", 3, 0, (struct sockaddr *)addr, (socklen_t)alen),
           3);
  CHECK_EQ(sendto(a, "two", 3, 0, (struct sockaddr *)addr, (socklen_t)alen),
           3);
  WAIT_FOR(loop, r1->calls && r2->calls);
  CHECK(memcmp(r1->buf, "one", 3) == 0);
  CHECK(memcmp(r2->buf, "two", 3) == 0);
  free_loop(loop);
  close(a);
  close(b);
  free(r1);
  free(r2);
}

/* Cancelled while it waits: its completion never comes, no watch stays
 * (the asan and valgrind runs see one), and the bytes that arrive after are
 * all there for the next receive (cpython bpo-30064). */
static void cancel_loses_no_data(void)
{
  tapio_loop *loop = new_loop();
  done *d = new_done(), *e = new_done();
  int sv[2];
  pair(sv);
  CHECK_OK(tapio_sock_recv(loop, sv[0], d->buf, sizeof d->buf, on_sock, d));
  spin(loop, 2);
  CHECK_EQ(tapio_cancel_pending(loop, d), 1);
  CHECK_EQ(send(sv[1], "kept", 4, 0), 4);
  spin(loop, 3); /* a watch left behind would read into freed memory */
  CHECK_EQ(d->calls, 0);
  CHECK_OK(tapio_sock_recv(loop, sv[0], e->buf, sizeof e->buf, on_sock, e));
  WAIT_FOR(loop, e->calls);
  CHECK_EQ(e->n, 4);
  CHECK(memcmp(e->buf, "kept", 4) == 0);
  CHECK_EQ(d->calls, 0);
  free_loop(loop);
  close(sv[0]);
  close(sv[1]);
  free(d);
  free(e);
}

/* Cancelled before its first try (data there already): not read. */
static void cancel_before_the_try(void)
{
  tapio_loop *loop = new_loop();
  done *d = new_done();
  char buf[8];
  int sv[2];
  pair(sv);
  CHECK_EQ(send(sv[1], "kept", 4, 0), 4);
  CHECK_OK(tapio_sock_recv(loop, sv[0], d->buf, sizeof d->buf, on_sock, d));
  CHECK_EQ(tapio_cancel_pending(loop, d), 1);
  spin(loop, 2);
  CHECK_EQ(d->calls, 0);
  CHECK_EQ(recv(sv[0], buf, sizeof buf, 0), 4);
  free_loop(loop);
  close(sv[0]);
  close(sv[1]);
  free(d);
}

/* A closed port: ECONNREFUSED from SO_ERROR. */
static void connect_refused(void)
{
  tapio_loop *loop = new_loop();
  done *d = new_done();
  char addr[TAPIO_ADDR_MAX];
  size_t alen;
  int port, l = tcp_listener(&port), fd;
  close(l); /* nobody listens there now */
  fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  addr_of(port, addr, &alen);
  CHECK_OK(tapio_sock_connect(loop, fd, addr, alen, on_sock, d));
  WAIT_FOR(loop, d->calls);
  CHECK_ERR(d->status, TAPIO_ECONNREFUSED);
  free_loop(loop);
  close(fd);
  free(d);
}

/* accept, then an echo over the accepted socket; the client connects
 * with sock_connect, and each side sees the other's address. */
static void accept_then_echo(void)
{
  tapio_loop *loop = new_loop();
  done *a = new_done(), *c = new_done(), *r = new_done(), *s = new_done();
  done *back = new_done();
  char addr[TAPIO_ADDR_MAX];
  size_t alen;
  struct sockaddr_in me;
  socklen_t mlen = sizeof me;
  int port, l = tcp_listener(&port), fl;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  CHECK_OK(tapio_sock_accept(loop, l, on_accept, a));
  addr_of(port, addr, &alen);
  CHECK_OK(tapio_sock_connect(loop, fd, addr, alen, on_sock, c));
  WAIT_FOR(loop, a->calls && c->calls);
  CHECK_OK(c->status);
  CHECK_OK(a->status);
  CHECK(a->fd >= 0);
  fl = fcntl(a->fd, F_GETFL);
  CHECK(fl & O_NONBLOCK);
  CHECK(fcntl(a->fd, F_GETFD) & FD_CLOEXEC);
  CHECK(getsockname(fd, (struct sockaddr *)&me, &mlen) == 0);
  CHECK_STR(a->host, "127.0.0.1");
  CHECK_EQ(a->port, ntohs(me.sin_port));
  CHECK_OK(tapio_sock_sendall(loop, fd, "echo me", 7, on_sock, s));
  CHECK_OK(tapio_sock_recv(loop, a->fd, r->buf, sizeof r->buf, on_sock, r));
  WAIT_FOR(loop, r->calls && s->calls);
  CHECK_EQ(r->n, 7);
  CHECK_OK(tapio_sock_sendall(loop, a->fd, r->buf, r->n, on_sock, s));
  CHECK_OK(tapio_sock_recv(loop, fd, back->buf, sizeof back->buf, on_sock,
                           back));
  WAIT_FOR(loop, back->calls);
  CHECK_EQ(back->n, 7);
  CHECK(memcmp(back->buf, "echo me", 7) == 0);
  free_loop(loop);
  close(a->fd);
  close(fd);
  close(l);
  free(a);
  free(c);
  free(r);
  free(s);
  free(back);
}

/* connect and accept would block the loop on a blocking socket: refused
 * at once, with words; recv takes one (MSG_DONTWAIT). */
static void blocking_socket(void)
{
  tapio_loop *loop = new_loop();
  done *d = new_done();
  char addr[TAPIO_ADDR_MAX];
  size_t alen;
  int fd = socket(AF_INET, SOCK_STREAM, 0), sv[2];
  addr_of(9, addr, &alen);
  CHECK_ERR(tapio_sock_connect(loop, fd, addr, alen, on_sock, d),
            TAPIO_EINVAL);
  CHECK(strstr(tapio_loop_error_message(loop), "sock_connect: fd") != NULL);
  CHECK(strstr(tapio_loop_error_message(loop), "blocking") != NULL);
  CHECK_ERR(tapio_sock_accept(loop, fd, on_accept, d), TAPIO_EINVAL);
  CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
  CHECK_OK(tapio_sock_recv(loop, sv[0], d->buf, sizeof d->buf, on_sock, d));
  CHECK_EQ(send(sv[1], "b", 1, 0), 1);
  WAIT_FOR(loop, d->calls);
  CHECK_EQ(d->n, 1);
  spin(loop, 2);
  CHECK_EQ(d->calls, 1);
  free_loop(loop);
  close(fd);
  close(sv[0]);
  close(sv[1]);
  free(d);
}

/* What add_reader refuses, these refuse too; none calls back. */
static void refused_descriptors(void)
{
  tapio_loop *loop = new_loop();
  done *d = new_done();
  conn_wait w = { 0 };
  rec r;
  int sv[2], path_fd = open("/", O_RDONLY);
  rec_init(&r);
  w.r = &r;
  pair(sv);
  CHECK_OK(tapio_connect_accepted_socket(loop, sv[0], &rec_proto, &r, NULL,
                                         on_connected, &w));
  CHECK_OK(connect_wait(loop, &w));
  CHECK_ERR(tapio_sock_recv(loop, sv[0], d->buf, 1, on_sock, d),
            TAPIO_EBUSY);
  CHECK_ERR(tapio_sock_sendall(loop, sv[0], "x", 1, on_sock, d),
            TAPIO_EBUSY);
  CHECK_ERR(tapio_sock_recv(loop, path_fd, d->buf, 1, on_sock, d),
            TAPIO_EPERM);
  close(path_fd);
  CHECK_ERR(tapio_sock_recv(loop, path_fd, d->buf, 1, on_sock, d),
            TAPIO_EBADF);
  CHECK_ERR(tapio_sock_recv(loop, -1, d->buf, 1, on_sock, d), TAPIO_EINVAL);
  CHECK_ERR(tapio_sock_recv(loop, sv[1], NULL, 1, on_sock, d), TAPIO_EINVAL);
  CHECK_ERR(tapio_sock_recv(loop, sv[1], d->buf, 1, NULL, d), TAPIO_EINVAL);
  CHECK_ERR(tapio_sock_recv(NULL, sv[1], d->buf, 1, on_sock, d),
            TAPIO_EINVAL);
  spin(loop, 2);
  CHECK_EQ(d->calls, 0);
  free_loop(loop);
  close(sv[1]);
  rec_free(&r);
  free(d);
}

/* Freed with operations waiting and queued: each ends with ECANCELED, in
 * the free, and nothing leaks (valgrind and LeakSanitizer runs). */
static void loop_free_cancels(void)
{
  tapio_loop *loop = new_loop();
  done *d1 = new_done(), *d2 = new_done(), *d3 = new_done();
  int sv[2];
  char *big = calloc(1, 4 << 20);
  pair(sv);
  CHECK_OK(tapio_sock_recv(loop, sv[0], d1->buf, 1, on_sock, d1));
  CHECK_OK(tapio_sock_recv(loop, sv[0], d2->buf, 1, on_sock, d2));
  CHECK_OK(tapio_sock_sendall(loop, sv[0], big, 4 << 20, on_sock, d3));
  spin(loop, 2);
  CHECK_EQ(d1->calls + d2->calls + d3->calls, 0);
  free_loop(loop);
  CHECK_EQ(d1->calls, 1);
  CHECK_ERR(d1->status, TAPIO_ECANCELED);
  CHECK_EQ(d2->calls, 1);
  CHECK_ERR(d2->status, TAPIO_ECANCELED);
  CHECK_EQ(d3->calls, 1);
  CHECK_ERR(d3->status, TAPIO_ECANCELED);
  CHECK(d3->n > 0 && d3->n < (4u << 20)); /* what went before the end */
  close(sv[0]);
  close(sv[1]);
  free(big);
  free(d1);
  free(d2);
  free(d3);
}

/* The first completion closes the socket: the one queued behind it ends
 * with EBADF, and the loop goes on. */
static void close_inside_completion(void)
{
  tapio_loop *loop = new_loop();
  done *d1 = new_done(), *d2 = new_done();
  int sv[2];
  pair(sv);
  d1->close_fd = sv[0];
  CHECK_OK(tapio_sock_recv(loop, sv[0], d1->buf, 1, on_sock, d1));
  CHECK_OK(tapio_sock_recv(loop, sv[0], d2->buf, 1, on_sock, d2));
  spin(loop, 2);
  CHECK_EQ(send(sv[1], "ab", 2, 0), 2);
  WAIT_FOR(loop, d1->calls && d2->calls);
  CHECK_OK(d1->status);
  CHECK_EQ(d1->n, 1);
  CHECK_ERR(d2->status, TAPIO_EBADF);
  free_loop(loop);
  close(sv[1]);
  free(d1);
  free(d2);
}

/* Closed while it waits, before the loop polled: EBADF, not libev's
 * abort; and the iteration that ends it does not then sleep in its poll
 * (the end is found before the poll: nothing more would wake the loop). */
static void closed_before_the_poll(void)
{
  tapio_loop *loop = new_loop();
  done *d = new_done(), *closer = new_done();
  deadline dl;
  int sv[2], tv[2];
  pair(sv);
  pair(tv);
  /* tv's completion closes sv[0] in the same turn as d starts waiting */
  closer->close_fd = sv[0];
  CHECK_EQ(send(tv[1], "go", 2, 0), 2);
  CHECK_OK(tapio_sock_recv(loop, sv[0], d->buf, 1, on_sock, d));
  CHECK_OK(tapio_sock_recv(loop, tv[0], closer->buf, 8, on_sock, closer));
  deadline_start(&dl, loop, test_timeout());
  while (!d->calls && !dl.expired)
    CHECK_OK(tapio_loop_run_once(loop, 1));
  CHECK(!dl.expired); /* a run_once that slept after the end */
  deadline_end(&dl);
  CHECK_EQ(d->calls, 1);
  CHECK_ERR(d->status, TAPIO_EBADF);
  free_loop(loop);
  close(sv[1]);
  close(tv[0]);
  close(tv[1]);
  free(d);
  free(closer);
}

/* Sends on one socket go out in the order made, the second waiting
 * behind the first's leftovers. */
static void sends_keep_their_order(void)
{
  tapio_loop *loop = new_loop();
  done *d1 = new_done(), *d2 = new_done();
  size_t len = 2 << 20, got = 0;
  char *a = malloc(len), *in = malloc(len + 1);
  int sv[2];
  CHECK(a && in);
  memset(a, 'a', len);
  pair(sv);
  CHECK_OK(tapio_sock_sendall(loop, sv[0], a, len, on_sock, d1));
  CHECK_OK(tapio_sock_sendall(loop, sv[0], "b", 1, on_sock, d2));
  while (got < len + 1) {
    ssize_t n = recv(sv[1], in + got, len + 1 - got, MSG_DONTWAIT);
    if (n > 0)
      got += (size_t)n;
    else
      CHECK_OK(tapio_loop_run_once(loop, 0));
  }
  WAIT_FOR(loop, d1->calls && d2->calls);
  CHECK_EQ(in[len - 1], 'a');
  CHECK_EQ(in[len], 'b');
  free_loop(loop);
  close(sv[0]);
  close(sv[1]);
  free(a);
  free(in);
  free(d1);
  free(d2);
}

TEST_MAIN(TEST(recv_at_once), TEST(recv_after_wait_and_end),
          TEST(sendall_waits_for_room), TEST(sendall_to_closed_peer),
          TEST(sendto_and_recvfrom), TEST(two_receivers_each_complete),
          TEST(cancel_loses_no_data), TEST(cancel_before_the_try),
          TEST(connect_refused), TEST(accept_then_echo),
          TEST(blocking_socket), TEST(refused_descriptors),
          TEST(loop_free_cancels), TEST(close_inside_completion),
          TEST(closed_before_the_poll), TEST(sends_keep_their_order))
