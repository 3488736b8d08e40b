/* Operations on a caller's socket: tapio_sock_recv, recvfrom, sendall,
 * sendto, connect, accept and sendfile (asyncio's loop.sock_*), on real
 * sockets whose other ends are plain POSIX calls. */
#include "test.h"

#include <sys/sendfile.h>

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

/* No byte asked: 0 at once, from the loop, with nothing there (recv(2)
 * would wait for data), and nothing taken when there is some. */
static void recv_of_nothing(void)
{
  tapio_loop *loop = new_loop();
  done *d = new_done();
  int sv[2];
  pair(sv);
  CHECK_OK(tapio_sock_recv(loop, sv[0], NULL, 0, on_sock, d));
  CHECK_EQ(d->calls, 0);
  spin(loop, 3);
  CHECK_EQ(d->calls, 1);
  CHECK_OK(d->status);
  CHECK_EQ(d->n, 0);
  CHECK_EQ(send(sv[1], "kept", 4, 0), 4);
  CHECK_OK(tapio_sock_recv(loop, sv[0], d->buf, 0, on_sock, d));
  WAIT_FOR(loop, d->calls == 2);
  CHECK_EQ(d->n, 0);
  CHECK_EQ(recv(sv[0], d->buf, sizeof d->buf, 0), 4);
  free_loop(loop);
  close(sv[0]);
  close(sv[1]);
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

/* The other way round: a descriptor a receive waits on, given to a
 * transport, is refused (TAPIO_EBUSY) and left open, so the receive gets
 * what comes; once it has ended, the descriptor may be wrapped. */
static void waited_descriptor_refused(void)
{
  tapio_loop *loop = new_loop();
  tapio_options *o = new_options(loop);
  done *d = new_done();
  conn_wait w = { 0 };
  rec r;
  int sv[2];
  rec_init(&r);
  w.r = &r;
  pair(sv);
  CHECK_OK(tapio_sock_recv(loop, sv[0], d->buf, sizeof d->buf, on_sock, d));
  spin(loop, 2);
  CHECK_ERR(tapio_connect_accepted_socket(loop, sv[0], &rec_proto, &r, NULL,
                                          on_connected, &w), TAPIO_EBUSY);
  CHECK_STR(tapio_loop_error_message(loop), "connect_accepted_socket: "
            "'sock' is in use by a pending sock_* call of the loop");
  CHECK_OK(tapio_options_set_int(o, "sock", sv[0]));
  CHECK_ERR(tapio_create_connection(loop, NULL, 0, &rec_proto, &r, o,
                                    on_connected, &w), TAPIO_EBUSY);
  CHECK_EQ(send(sv[1], "mine", 4, 0), 4);
  WAIT_FOR(loop, d->calls);
  CHECK_OK(d->status);
  CHECK_EQ(d->n, 4);
  CHECK_EQ(w.done, 0);
  CHECK_OK(tapio_connect_accepted_socket(loop, sv[0], &rec_proto, &r, NULL,
                                         on_connected, &w));
  CHECK_OK(connect_wait(loop, &w));
  CHECK_OK(tapio_transport_close(r.t));
  WAIT_FOR(loop, r.lost);
  tapio_options_free(o);
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

/* A receive left waiting on a descriptor closed after the loop polled
 * (not cancelled): a transport that gets the number has its bytes, and
 * the receive ends with EBADF when the number is ready again, never
 * reading the new socket (it took the transport's bytes). */
static void closed_and_number_reused(void)
{
  tapio_loop *loop = new_loop();
  done *d = new_done();
  conn_wait cw = { 0 };
  rec r;
  int sv[2], fd;
  pair(sv);
  fd = sv[0];
  CHECK_OK(tapio_sock_recv(loop, fd, d->buf, 16, on_sock, d));
  spin(loop, 3); /* waiting, in epoll */
  CHECK_EQ(d->calls, 0);
  close(sv[0]);
  close(sv[1]);
  pair(sv);
  CHECK_EQ(sv[0], fd);
  rec_init(&r);
  cw.r = &r;
  CHECK_OK(tapio_connect_accepted_socket(loop, fd, &rec_proto, &r, NULL,
                                         on_connected, &cw));
  CHECK_OK(connect_wait(loop, &cw));
  raw_send_str(loop, sv[1], "hello");
  WAIT_FOR(loop, r.nin == 5 && d->calls == 1);
  CHECK_ERR(d->status, TAPIO_EBADF);
  CHECK_EQ(d->n, 0);
  CHECK_OK(tapio_transport_close(r.t));
  WAIT_FOR(loop, r.lost);
  CHECK_STR(r.log, "made data:5 lost:0");
  close(sv[1]);
  free_loop(loop);
  rec_free(&r);
  free(d);
}

/* An operation of the new socket that got a closed one's number is not
 * queued behind the operation left on the closed one (which waits on a
 * number epoll no longer watches): the new one reads its socket at once,
 * and the stale one ends with EBADF, as asyncio's sock_recv on the new
 * socket reads at once. */
static void reused_number_not_behind_stale(void)
{
  tapio_loop *loop = new_loop();
  done *stale = new_done(), *d = new_done();
  int sv[2], fd;
  pair(sv);
  fd = sv[0];
  CHECK_OK(tapio_sock_recv(loop, fd, stale->buf, 16, on_sock, stale));
  spin(loop, 3); /* waiting, in epoll */
  close(sv[0]);
  close(sv[1]);
  pair(sv);
  CHECK_EQ(sv[0], fd);
  CHECK_EQ(write(sv[1], "hello", 5), 5);
  CHECK_OK(tapio_sock_recv(loop, fd, d->buf, 16, on_sock, d));
  WAIT_FOR(loop, d->calls == 1 && stale->calls == 1);
  CHECK_OK(d->status);
  CHECK_EQ(d->n, 5);
  CHECK_ERR(stale->status, TAPIO_EBADF);
  CHECK_EQ(stale->n, 0);
  close(sv[0]);
  close(sv[1]);
  free_loop(loop);
  free(stale);
  free(d);
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

/* ---- sock_sendfile -------------------------------------------------------- */

#define BIG_FILE (5u * 1024 * 1024 + 17) /* past the kernel's buffers */

typedef struct filed {
  int calls, status;
  uint64_t sent;
} filed;

static void on_file(void *ud, int status, uint64_t sent)
{
  filed *f = ud;
  f->calls++;
  f->status = status;
  f->sent = sent;
}

/* A TCP connection on 127.0.0.1: *fd the client's (non-blocking, a small
 * send buffer), the server's end returned (a small receive buffer). */
static int tcp_pair(int *fd)
{
  int port, small = 16 * 1024, lfd = raw_listen(AF_INET, &port), peer;
  *fd = raw_connect(AF_INET, "127.0.0.1", port);
  CHECK(*fd >= 0);
  CHECK(setsockopt(*fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof small) == 0);
  peer = raw_accept(NULL, lfd);
  close(lfd);
  return peer;
}

static off_t position(int file)
{
  return lseek(file, 0, SEEK_CUR);
}

/* Several MiB over TCP to a peer reading slowly: the send waits for room
 * (not done when the peer has had part), every byte arrives in order, the
 * completion counts them all, the file is left at its end; the first try
 * is the loop's, not the call's. */
static void sendfile_tcp_every_byte(void)
{
  tapio_loop *loop = new_loop();
  filed f = { 0 };
  int fd, peer = tcp_pair(&fd), file = pattern_file(BIG_FILE);
  char buf[4096];
  CHECK_OK(tapio_sock_sendfile(loop, fd, file, 0, 0, 1, on_file, &f));
  CHECK_EQ(f.calls, 0); /* nothing tried in the call: */
  CHECK(recv(peer, buf, 1, MSG_PEEK | MSG_DONTWAIT) < 0 && errno == EAGAIN);
  raw_recv_n(loop, peer, buf, sizeof buf);
  CHECK_EQ(pattern_check(buf, sizeof buf, 0), -1);
  CHECK_EQ(f.calls, 0); /* waiting for room */
  CHECK_EQ(raw_drain_n(loop, peer, BIG_FILE - sizeof buf, sizeof buf),
           BIG_FILE - sizeof buf);
  WAIT_FOR(loop, f.calls);
  CHECK_OK(f.status);
  CHECK_EQ(f.sent, BIG_FILE);
  CHECK_EQ(position(file), (off_t)BIG_FILE);
  free_loop(loop);
  close(fd);
  close(peer);
  close(file);
}

/* On a Unix socket: offset and count give exactly those bytes, the file
 * then at offset + sent; a count past the end sends what there is; an
 * offset past the end sends nothing (the file not moved). */
static void sendfile_offset_and_count(void)
{
  tapio_loop *loop = new_loop();
  filed f = { 0 };
  int sv[2], file = pattern_file(100000);
  pair(sv);
  CHECK_OK(tapio_sock_sendfile(loop, sv[0], file, 7, 300, 1, on_file, &f));
  CHECK_EQ(raw_drain_n(loop, sv[1], 300, 7), 300);
  WAIT_FOR(loop, f.calls);
  CHECK_OK(f.status);
  CHECK_EQ(f.sent, 300);
  CHECK_EQ(position(file), 307);
  f.calls = 0;
  CHECK_OK(tapio_sock_sendfile(loop, sv[0], file, 99990, 100, 1, on_file,
                               &f));
  CHECK_EQ(raw_drain_n(loop, sv[1], 10, 99990), 10);
  WAIT_FOR(loop, f.calls);
  CHECK_OK(f.status);
  CHECK_EQ(f.sent, 10);
  CHECK_EQ(position(file), 100000);
  f.calls = 0;
  CHECK_EQ(lseek(file, 5, SEEK_SET), 5);
  CHECK_OK(tapio_sock_sendfile(loop, sv[0], file, 200000, 0, 1, on_file,
                               &f));
  WAIT_FOR(loop, f.calls);
  CHECK_OK(f.status);
  CHECK_EQ(f.sent, 0);
  CHECK_EQ(position(file), 5);
  free_loop(loop);
  close(sv[0]);
  close(sv[1]);
  close(file);
}

/* A file sendfile(2) cannot send from (procfs's status): without the
 * fallback TAPIO_ENOTSUP and nothing sent; with it, read and sent, also
 * with a count past its end (what there is). */
static void sendfile_not_a_regular_file(void)
{
  tapio_loop *loop = new_loop();
  filed f = { 0 };
  char got[5], all[65536];
  size_t n;
  int sv[2], file = open("/proc/self/status", O_RDONLY);
  off_t off = 0;
  CHECK(file >= 0);
  pair(sv);
  if (sendfile(sv[0], file, &off, 16) >= 0 || errno != EINVAL)
    SKIP("this kernel's sendfile(2) sends from /proc/self/status");
  CHECK_OK(tapio_sock_sendfile(loop, sv[0], file, 0, 0, 0, on_file, &f));
  WAIT_FOR(loop, f.calls);
  CHECK_ERR(f.status, TAPIO_ENOTSUP);
  CHECK_EQ(f.sent, 0);
  f.calls = 0;
  CHECK_OK(tapio_sock_sendfile(loop, sv[0], file, 0, 5, 1, on_file, &f));
  raw_recv_n(loop, sv[1], got, 5);
  CHECK(memcmp(got, "Name:", 5) == 0);
  WAIT_FOR(loop, f.calls);
  CHECK_OK(f.status);
  CHECK_EQ(f.sent, 5);
  CHECK_EQ(position(file), 5);
  f.calls = 0;
  CHECK_OK(tapio_sock_sendfile(loop, sv[0], file, 0, 1 << 20, 1, on_file,
                               &f));
  WAIT_FOR(loop, f.calls);
  CHECK_OK(f.status);
  CHECK(f.sent > 5 && f.sent < sizeof all);
  shutdown(sv[0], SHUT_WR);
  CHECK_EQ(raw_recv_until_eof(loop, sv[1], all, sizeof all, &n), 0);
  CHECK_EQ(n, f.sent);
  CHECK(memcmp(all, "Name:", 5) == 0);
  free_loop(loop);
  close(sv[0]);
  close(sv[1]);
  close(file);
}

/* Cancelled midway (the peer has read part): its completion is never
 * called, the file is left at offset + the bytes sent, and the peer gets
 * exactly those, in order. */
static void sendfile_cancel_midway(void)
{
  tapio_loop *loop = new_loop();
  filed f = { 0 };
  int fd, peer = tcp_pair(&fd), file = pattern_file(BIG_FILE);
  char buf[4096];
  size_t got;
  off_t at;
  CHECK_OK(tapio_sock_sendfile(loop, fd, file, 3, 0, 1, on_file, &f));
  raw_recv_n(loop, peer, buf, sizeof buf);
  CHECK_EQ(pattern_check(buf, sizeof buf, 3), -1);
  CHECK_EQ(tapio_cancel_pending(loop, &f), 1);
  at = position(file);
  CHECK(at > 3 + (off_t)sizeof buf && at < 3 + (off_t)BIG_FILE);
  spin(loop, 3); /* a watch left behind would send on */
  CHECK_EQ(f.calls, 0);
  CHECK_EQ(position(file), at);
  shutdown(fd, SHUT_WR);
  got = sizeof buf + raw_drain_n(loop, peer, (size_t)at - 3 - sizeof buf,
                                 3 + sizeof buf);
  CHECK_EQ(got, (size_t)at - 3);
  CHECK_EQ(raw_recv_until_eof(loop, peer, buf, sizeof buf, &got), 0);
  CHECK_EQ(got, 0); /* not a byte more */
  free_loop(loop);
  close(fd);
  close(peer);
  close(file);
}

/* After a sendall's leftovers, in order; a peer gone: the error and the
 * count sent before it; the loop freed while it waits: ECANCELED. */
static void sendfile_order_error_and_free(void)
{
  tapio_loop *loop = new_loop();
  filed f = { 0 };
  done *d = new_done();
  size_t len = 1 << 20;
  char *data = malloc(len);
  int fd, peer = tcp_pair(&fd), file = pattern_file(BIG_FILE);
  CHECK(data != NULL);
  memset(data, 'a', len);
  CHECK_OK(tapio_sock_sendall(loop, fd, data, len, on_sock, d));
  CHECK_OK(tapio_sock_sendfile(loop, fd, file, 0, 1000, 1, on_file, &f));
  raw_recv_n(loop, peer, data, len);
  CHECK(data[0] == 'a' && data[len - 1] == 'a');
  CHECK_EQ(raw_drain_n(loop, peer, 1000, 0), 1000);
  WAIT_FOR(loop, f.calls);
  CHECK_EQ(d->calls, 1);
  CHECK_OK(f.status);
  f.calls = 0;
  CHECK_OK(tapio_sock_sendfile(loop, fd, file, 0, 0, 1, on_file, &f));
  raw_recv_n(loop, peer, data, 4096);
  raw_reset(peer);
  WAIT_FOR(loop, f.calls);
  CHECK(f.status == TAPIO_ECONNRESET || f.status == TAPIO_EPIPE);
  CHECK(f.sent >= 4096 && f.sent < BIG_FILE);
  CHECK_EQ(position(file), (off_t)f.sent);
  close(fd);
  peer = tcp_pair(&fd);
  f.calls = 0;
  CHECK_OK(tapio_sock_sendfile(loop, fd, file, 0, 0, 1, on_file, &f));
  raw_recv_n(loop, peer, data, 4096);
  free_loop(loop);
  CHECK_EQ(f.calls, 1);
  CHECK_ERR(f.status, TAPIO_ECANCELED);
  close(fd);
  close(peer);
  close(file);
  free(data);
  free(d);
}

/* What the call refuses, with words; none calls back. */
static void sendfile_refusals(void)
{
  tapio_loop *loop = new_loop();
  filed f = { 0 };
  int sv[2], port, udp = udp_socket(&port), file = pattern_file(10);
  int blocking = socket(AF_INET, SOCK_STREAM, 0);
  pair(sv);
  CHECK_ERR(tapio_sock_sendfile(NULL, sv[0], file, 0, 0, 1, on_file, &f),
            TAPIO_EINVAL);
  CHECK_ERR(tapio_sock_sendfile(loop, sv[0], file, 0, 0, 1, NULL, &f),
            TAPIO_EINVAL);
  CHECK_ERR(tapio_sock_sendfile(loop, sv[0], -1, 0, 0, 1, on_file, &f),
            TAPIO_EINVAL);
  CHECK_ERR(tapio_sock_sendfile(loop, sv[0], file, (uint64_t)INT64_MAX + 1,
                                0, 1, on_file, &f),
            TAPIO_EINVAL);
  CHECK_ERR(tapio_sock_sendfile(loop, sv[0], file, 0,
                                (uint64_t)INT64_MAX + 1, 1, on_file, &f),
            TAPIO_EINVAL);
  CHECK_ERR(tapio_sock_sendfile(loop, sv[0], 1000, 0, 0, 1, on_file, &f),
            TAPIO_EBADF);
  CHECK_STR(tapio_loop_error_message(loop),
            "sock_sendfile: file 1000 is not an open descriptor");
  CHECK_ERR(tapio_sock_sendfile(loop, -1, file, 0, 0, 1, on_file, &f),
            TAPIO_EINVAL);
  CHECK_ERR(tapio_sock_sendfile(loop, file, file, 0, 0, 1, on_file, &f),
            TAPIO_EPERM);
  CHECK_ERR(tapio_sock_sendfile(loop, udp, file, 0, 0, 1, on_file, &f),
            TAPIO_EINVAL);
  CHECK(strstr(tapio_loop_error_message(loop), "not a stream socket"));
  CHECK_ERR(tapio_sock_sendfile(loop, blocking, file, 0, 0, 1, on_file, &f),
            TAPIO_EINVAL);
  CHECK(strstr(tapio_loop_error_message(loop), "blocking"));
  spin(loop, 2);
  CHECK_EQ(f.calls, 0);
  CHECK_EQ(tapio_loop_memory(loop) < 1024 * 1024, 1);
  free_loop(loop);
  close(sv[0]);
  close(sv[1]);
  close(udp);
  close(blocking);
  close(file);
}

TEST_MAIN(TEST(recv_at_once), TEST(recv_after_wait_and_end),
          TEST(recv_of_nothing),
          TEST(closed_and_number_reused),
          TEST(reused_number_not_behind_stale),
          TEST(sendall_waits_for_room), TEST(sendall_to_closed_peer),
          TEST(sendto_and_recvfrom), TEST(two_receivers_each_complete),
          TEST(cancel_loses_no_data), TEST(cancel_before_the_try),
          TEST(connect_refused), TEST(accept_then_echo),
          TEST(blocking_socket), TEST(refused_descriptors),
          TEST(waited_descriptor_refused),
          TEST(loop_free_cancels), TEST(close_inside_completion),
          TEST(closed_before_the_poll), TEST(sends_keep_their_order),
          TEST(sendfile_tcp_every_byte), TEST(sendfile_offset_and_count),
          TEST(sendfile_not_a_regular_file), TEST(sendfile_cancel_midway),
          TEST(sendfile_order_error_and_free), TEST(sendfile_refusals))
