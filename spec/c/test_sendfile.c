/* tapio_transport_sendfile (asyncio's loop.sendfile): a file sent over a
 * stream transport, natively on a plain socket and through the fallback on
 * a memory pair, checked byte for byte at a raw peer; what the transport's
 * protocol sees meanwhile; failures, refusals and cancelling. */
#include "test.h"

#include <sys/sendfile.h>

#define FILE_SIZE (3u * 1024 * 1024 + 17) /* past the kernel's buffers */

typedef struct sf {
  int done, status;
  uint64_t sent;
  int lost_before;  /* the protocol's connection_lost had run */
  rec *r;
  int close_after;  /* close the transport in the completion */
} sf;

static void on_sent(void *ud, int status, uint64_t sent) {
  sf *s = ud;
  s->done++;
  s->status = status;
  s->sent = sent;
  s->lost_before = s->r ? s->r->lost : 0;
  if (s->close_after)
    CHECK_OK(tapio_transport_close(s->r->t));
}

/* Small socket buffers both ways, so that a file of FILE_SIZE waits for
 * a peer that does not read. */
static void small_buffers(tapio_transport *t, int peer) {
  int small = 16 * 1024;
  CHECK(setsockopt(tapio_transport_get_fd(t), SOL_SOCKET, SO_SNDBUF, &small,
                   sizeof small) == 0);
  CHECK(setsockopt(peer, SOL_SOCKET, SO_RCVBUF, &small, sizeof small) == 0);
}

/* A connection to a raw peer, a file of FILE_SIZE, and a sendfile's
 * completion. */
typedef struct fixture {
  tapio_loop *loop;
  rec r;
  sf s;
  int peer, fd;
} fixture;

static void fixture_open(fixture *x) {
  memset(x, 0, sizeof *x);
  x->loop = new_loop();
  rec_init(&x->r);
  x->peer = pair_raw(x->loop, &x->r);
  x->fd = pattern_file(FILE_SIZE);
  x->s.r = &x->r;
}

/* The whole file on its way to a peer that does not read: the kernel's
 * (small) buffers fill, the rest waits. */
static void fixture_waiting(fixture *x) {
  fixture_open(x);
  small_buffers(x->r.t, x->peer);
  CHECK_OK(tapio_transport_sendfile(x->r.t, x->fd, 0, 0, 1, on_sent,
                                    &x->s));
  run_for(x->loop, 0.05);
  CHECK_EQ(x->s.done, 0);
}

static void fixture_close(fixture *x) {
  close(x->fd);
  if (x->peer >= 0)
    close(x->peer);
  free_loop(x->loop);
  rec_free(&x->r);
}

/* Bytes written before go first; the file from offset to its end follows;
 * the file's offset ends at offset + sent; the protocol hears nothing of
 * it (no pause, no resume); reading is paused meanwhile and on again. */
static void native_whole_file(void) {
  fixture x;
  char head[1000];
  int status = 1;
  fixture_open(&x);
  pattern_fill(head, sizeof head, 0);
  CHECK_OK(tapio_transport_write(x.r.t, head, sizeof head));
  x.s.close_after = 1;
  CHECK_OK(tapio_transport_sendfile(x.r.t, x.fd, sizeof head, 0, 1, on_sent,
                                    &x.s));
  CHECK_EQ(x.s.done, 0); /* from the loop, never inside the call */
  CHECK_EQ(tapio_transport_is_reading(x.r.t), 0);
  CHECK_EQ(raw_drain_pattern(x.loop, x.peer, &status), FILE_SIZE);
  CHECK_EQ(status, 0);
  CHECK_EQ(x.s.done, 1);
  CHECK_ERR(x.s.status, 0);
  CHECK_EQ(x.s.sent, FILE_SIZE - sizeof head);
  CHECK_EQ(lseek(x.fd, 0, SEEK_CUR), FILE_SIZE);
  WAIT_FOR(x.loop, x.r.lost);
  CHECK_STR(x.r.log, "made lost:0");
  fixture_close(&x);
}

/* count bytes from offset, no more; writes are refused meanwhile (asyncio:
 * "sendfile is in progress"), and work again after; bytes the peer sent
 * meanwhile are read after. */
static void count_offset_and_writes(void) {
  fixture x;
  char got[5000], want[5000];
  fixture_open(&x);
  CHECK_OK(tapio_transport_sendfile(x.r.t, x.fd, 100, sizeof got, 1,
                                    on_sent, &x.s));
  CHECK_ERR(tapio_transport_write(x.r.t, "x", 1), TAPIO_EBUSY);
  CHECK_ERR(tapio_transport_sendfile(x.r.t, x.fd, 0, 0, 1, on_sent, &x.s),
            TAPIO_EBUSY);
  raw_send_str(x.loop, x.peer, "during");
  raw_recv_n(x.loop, x.peer, got, sizeof got);
  pattern_fill(want, sizeof want, 100);
  CHECK(memcmp(got, want, sizeof got) == 0);
  WAIT_FOR(x.loop, x.s.done);
  CHECK_ERR(x.s.status, 0);
  CHECK_EQ(x.s.sent, sizeof got);
  CHECK_EQ(lseek(x.fd, 0, SEEK_CUR), 100 + sizeof got);
  CHECK_EQ(tapio_transport_is_reading(x.r.t), 1);
  WAIT_FOR(x.loop, x.r.nin == 6);
  CHECK(memcmp(x.r.in, "during", 6) == 0);
  CHECK_OK(tapio_transport_write(x.r.t, "after", 5));
  raw_recv_n(x.loop, x.peer, got, 5);
  CHECK(memcmp(got, "after", 5) == 0);
  fixture_close(&x);
}

/* The peer resets while the file is on its way: the operation ends with
 * the error, before the protocol's connection_lost, which gets it too. */
static void peer_reset_midway(void) {
  fixture x;
  fixture_waiting(&x);
  raw_reset(x.peer);
  x.peer = -1;
  WAIT_FOR(x.loop, x.r.lost);
  CHECK_EQ(x.s.done, 1);
  CHECK_EQ(x.s.lost_before, 0);
  CHECK(x.s.status == TAPIO_ECONNRESET || x.s.status == TAPIO_EPIPE);
  CHECK(x.s.sent > 0 && x.s.sent < FILE_SIZE);
  CHECK_EQ(lseek(x.fd, 0, SEEK_CUR), x.s.sent);
  CHECK_EQ(x.r.lost_code, x.s.status);
  fixture_close(&x);
}

/* A peer that does not read, then an abort: the operation ends with
 * TAPIO_ECLOSED, then the protocol's connection_lost(0). */
static void abort_midway(void) {
  fixture x;
  fixture_waiting(&x);
  CHECK_OK(tapio_transport_abort(x.r.t));
  WAIT_FOR(x.loop, x.r.lost);
  CHECK_EQ(x.s.done, 1);
  CHECK_ERR(x.s.status, TAPIO_ECLOSED);
  CHECK(x.s.sent > 0 && x.s.sent < FILE_SIZE);
  CHECK_EQ(lseek(x.fd, 0, SEEK_CUR), x.s.sent);
  CHECK_STR(x.r.log, "made lost:0");
  fixture_close(&x);
}

/* Cancelled: no completion; the file is at what was sent (asyncio's
 * offset + sent: the peer gets exactly that much of it); the transport is
 * the protocol's again (writes, reading). */
static void cancel_gives_back(void) {
  fixture x;
  off_t at;
  char c;
  fixture_waiting(&x);
  CHECK_EQ(tapio_cancel_pending(x.loop, &x.s), 1);
  at = lseek(x.fd, 0, SEEK_CUR);
  CHECK(at > 0 && at < (off_t)FILE_SIZE);
  CHECK_EQ(tapio_transport_is_reading(x.r.t), 1);
  CHECK_OK(tapio_transport_write(x.r.t, "x", 1));
  raw_send_str(x.loop, x.peer, "hi");
  WAIT_FOR(x.loop, x.r.nin == 2);
  CHECK_EQ(raw_drain_n(x.loop, x.peer, (size_t)at, 0), (size_t)at);
  raw_recv_n(x.loop, x.peer, &c, 1);
  CHECK_EQ(c, 'x');
  run_for(x.loop, 0.01);
  CHECK_EQ(x.s.done, 0);
  fixture_close(&x);
}

/* get_protocol and set_protocol meanwhile are the held-aside protocol's:
 * the one set during the sendfile has the transport after it. */
static void protocol_held_aside(void) {
  fixture x;
  rec r2;
  const tapio_protocol *p = NULL;
  fixture_waiting(&x);
  rec_init(&r2);
  CHECK(tapio_transport_get_protocol(x.r.t, &p) == &x.r);
  CHECK(p == &rec_proto);
  r2.t = x.r.t;
  CHECK_OK(tapio_transport_set_protocol(x.r.t, &rec_proto, &r2));
  CHECK(tapio_transport_get_protocol(x.r.t, NULL) == &r2);
  CHECK_EQ(raw_drain_n(x.loop, x.peer, FILE_SIZE, 0), FILE_SIZE);
  WAIT_FOR(x.loop, x.s.done);
  CHECK_ERR(x.s.status, 0);
  raw_send_str(x.loop, x.peer, "hi");
  WAIT_FOR(x.loop, r2.nin == 2);
  CHECK_EQ(x.r.nin, 0);
  CHECK_OK(tapio_transport_close(r2.t));
  WAIT_FOR(x.loop, r2.lost);
  fixture_close(&x);
  rec_free(&r2);
}

/* The loop freed while a file waits for the peer: the completion gets
 * TAPIO_ECANCELED and the count, the file is at what was sent, and
 * nothing is left behind (valgrind, LeakSanitizer). */
static void loop_freed_midway(void) {
  fixture x;
  fixture_waiting(&x);
  free_loop(x.loop);
  x.loop = NULL;
  CHECK_EQ(x.s.done, 1);
  CHECK_ERR(x.s.status, TAPIO_ECANCELED);
  CHECK(x.s.sent > 0 && x.s.sent < FILE_SIZE);
  CHECK_EQ(lseek(x.fd, 0, SEEK_CUR), x.s.sent);
  close(x.peer);
  close(x.fd);
  rec_free(&x.r);
}

/* A file sendfile(2) cannot send from (procfs's status: EINVAL) goes to
 * the fallback on a plain socket too; with fallback off, its completion
 * is TAPIO_ENOTSUP and nothing was sent. */
static void kernel_refuses_the_file(void) {
  fixture x;
  char got[6];
  int probe[2], fd = open("/proc/self/status", O_RDONLY);
  off_t off = 0;
  CHECK(fd >= 0);
  CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, probe) == 0);
  if (sendfile(probe[0], fd, &off, 16) >= 0 || errno != EINVAL)
    SKIP("this kernel's sendfile(2) sends from /proc/self/status");
  close(probe[0]);
  close(probe[1]);
  fixture_open(&x);
  close(x.fd);
  x.fd = fd;
  CHECK_OK(tapio_transport_sendfile(x.r.t, fd, 0, 0, 0, on_sent, &x.s));
  WAIT_FOR(x.loop, x.s.done);
  CHECK_ERR(x.s.status, TAPIO_ENOTSUP);
  CHECK_EQ(x.s.sent, 0);
  x.s.done = 0;
  CHECK_OK(tapio_transport_sendfile(x.r.t, fd, 0, 5, 1, on_sent, &x.s));
  raw_recv_n(x.loop, x.peer, got, 5);
  CHECK(memcmp(got, "Name:", 5) == 0);
  WAIT_FOR(x.loop, x.s.done);
  CHECK_ERR(x.s.status, 0);
  CHECK_EQ(x.s.sent, 5);
  fixture_close(&x);
}

/* What a transport cannot do, refused at once with words. */
static void refusals(void) {
  tapio_loop *loop = new_loop();
  rec r;
  sf s = {0};
  int peer, fd = pattern_file(10);
  rec_init(&r);
  peer = pair_raw(loop, &r);
  CHECK_ERR(tapio_transport_sendfile(NULL, fd, 0, 0, 1, on_sent, &s),
            TAPIO_EINVAL);
  CHECK_ERR(tapio_transport_sendfile(r.t, fd, 0, 0, 1, NULL, &s),
            TAPIO_EINVAL);
  CHECK_ERR(tapio_transport_sendfile(r.t, 1000, 0, 0, 1, on_sent, &s),
            TAPIO_EBADF);
  CHECK_OK(tapio_transport_write_eof(r.t)); /* not closing: ended writing */
  CHECK_ERR(tapio_transport_sendfile(r.t, fd, 0, 0, 1, on_sent, &s),
            TAPIO_ECLOSED);
  CHECK_STR(tapio_loop_error_message(loop),
            "sendfile: the transport's writing is ended (write_eof)");
  CHECK_OK(tapio_transport_close(r.t));
  CHECK_ERR(tapio_transport_sendfile(r.t, fd, 0, 0, 1, on_sent, &s),
            TAPIO_ECLOSED);
  CHECK_STR(tapio_loop_error_message(loop),
            "sendfile: the transport is closing");
  WAIT_FOR(loop, r.lost);
  CHECK_EQ(s.done, 0);
  close(peer);
  close(fd);
  free_loop(loop);
  rec_free(&r);
}

/* On a memory pair (no socket) the fallback reads and writes, paced by
 * the pair's capacity; with fallback off, TAPIO_ENOTSUP at once. */
static void fallback_on_memory_pair(void) {
  tapio_loop *loop = new_virtual();
  rec a, b;
  sf s = {0};
  tapio_transport *ta, *tb;
  int fd = pattern_file(FILE_SIZE);
  rec_init(&a);
  rec_init(&b);
  CHECK_OK(tapio_memory_pair(loop, &rec_proto, &a, &rec_proto, &b, &ta,
                             &tb));
  CHECK_OK(tapio_loop_run(loop));
  CHECK_ERR(tapio_transport_sendfile(a.t, fd, 0, 0, 0, on_sent, &s),
            TAPIO_ENOTSUP);
  s.r = &a;
  CHECK_OK(tapio_transport_sendfile(a.t, fd, 7, 0, 1, on_sent, &s));
  CHECK_OK(tapio_loop_run(loop));
  CHECK_EQ(s.done, 1);
  CHECK_ERR(s.status, 0);
  CHECK_EQ(s.sent, FILE_SIZE - 7);
  CHECK_EQ(b.nin, FILE_SIZE - 7);
  CHECK_EQ(pattern_check(b.in, b.nin, 7), -1);
  CHECK_EQ(lseek(fd, 0, SEEK_CUR), FILE_SIZE);
  CHECK_STR(a.log, "made"); /* paced, but its protocol heard no pause */
  CHECK_OK(tapio_transport_close(a.t));
  CHECK_OK(tapio_transport_close(b.t));
  CHECK_OK(tapio_loop_run(loop));
  close(fd);
  free_loop(loop);
  rec_free(&a);
  rec_free(&b);
}

/* The peer of a Unix connection gone while the kernel sends the file:
 * EPIPE to the completion with the count sent, then to connection_lost;
 * no SIGPIPE (sendfile(2) has no MSG_NOSIGNAL: SIGPIPE is blocked around
 * it, for kernels that raise one: 6.18 returns EPIPE without it). */
static void peer_gone_midway(void) {
  tapio_loop *loop = new_loop();
  conn_wait w = {0};
  rec r;
  sf s = {0};
  char buf[4096];
  int sv[2], fd = pattern_file(FILE_SIZE);
  rec_init(&r);
  w.r = &r;
  CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
  CHECK_OK(tapio_connect_accepted_socket(loop, sv[0], &rec_proto, &r, NULL,
                                         on_connected, &w));
  CHECK_OK(connect_wait(loop, &w));
  s.r = &r;
  CHECK_OK(tapio_transport_sendfile(r.t, fd, 0, 0, 1, on_sent, &s));
  raw_recv_n(loop, sv[1], buf, sizeof buf);
  CHECK_EQ(pattern_check(buf, sizeof buf, 0), -1);
  close(sv[1]);
  WAIT_FOR(loop, s.done);
  CHECK_ERR(s.status, TAPIO_EPIPE);
  CHECK(s.sent >= sizeof buf && s.sent < FILE_SIZE);
  WAIT_FOR(loop, r.lost);
  CHECK_EQ(r.lost_code, TAPIO_EPIPE);
  close(fd);
  free_loop(loop);
  rec_free(&r);
}

TEST_MAIN(
  TEST(native_whole_file),
  TEST(count_offset_and_writes),
  TEST(peer_reset_midway),
  TEST(abort_midway),
  TEST(cancel_gives_back),
  TEST(protocol_held_aside),
  TEST(loop_freed_midway),
  TEST(kernel_refuses_the_file),
  TEST(peer_gone_midway),
  TEST(refusals),
  TEST(fallback_on_memory_pair)
)
