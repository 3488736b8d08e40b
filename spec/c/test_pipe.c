/* Read and write pipe transports (connect_read_pipe, connect_write_pipe)
 * on pipe(), a FIFO, a socketpair and a pty: the callback order, the bytes,
 * flow control, a reader that goes away (EPIPE, never SIGPIPE), the
 * descriptor's mode, and what is refused. The test runner leaves SIGPIPE
 * at its default: a SIGPIPE kills the test. */
#include "pipes.h"

/* ---- Read pipes -------------------------------------------------------- */

/* r, a read pipe on a new pipe fds (the test holds the writer's end). */
static void new_read_pipe(tapio_loop *loop, rec *r, int fds[2])
{
  rec_init(r);
  make_pipe(fds);
  CHECK_OK(connect_pipe(loop, fds[0], 0, r));
}

/* Waits for r's connection_lost, checks its log, closes peer (unless
 * -1), frees the loop. */
static void ends_with(tapio_loop *loop, rec *r, const char *log, int peer)
{
  WAIT_FOR(loop, r->lost);
  CHECK_STR(r->log, log);
  end_pair(loop, r, peer);
}

static void read_pipe_gets_data_then_eof(void)
{
  tapio_loop *loop = new_loop();
  rec r;
  int fds[2];
  new_read_pipe(loop, &r, fds);
  CHECK_EQ(tapio_transport_get_kind(r.t), TAPIO_TRANSPORT_READ_PIPE);
  CHECK_EQ(tapio_transport_get_fd(r.t), fds[0]);
  CHECK(is_nonblocking(fds[0]));
  CHECK_EQ(tapio_transport_is_reading(r.t), 1);
  CHECK_ERR(tapio_transport_write(r.t, "x", 1), TAPIO_ENOTSUP);
  CHECK_ERR(tapio_transport_write_eof(r.t), TAPIO_ENOTSUP);
  CHECK_EQ(tapio_transport_can_write_eof(r.t), 0);
  CHECK_ERR(tapio_transport_set_write_buffer_limits(r.t, 10, 1),
            TAPIO_ENOTSUP);
  CHECK(write(fds[1], "hello", 5) == 5);
  WAIT_FOR(loop, r.nin == 5);
  CHECK(write(fds[1], " world", 6) == 6);
  CHECK(close(fds[1]) == 0);
  WAIT_FOR(loop, r.lost);
  CHECK(memcmp(r.in, "hello world", 11) == 0);
  CHECK(!fd_is_open(fds[0])); /* closed with the transport */
  ends_with(loop, &r, "made data:11 eof lost:0", -1);
}

/* eof_received returning true cannot keep a read pipe open. */
static void read_pipe_eof_closes_anyway(void)
{
  tapio_loop *loop = new_loop();
  rec r;
  int fds[2];
  new_read_pipe(loop, &r, fds);
  r.eof_ret = 1;
  CHECK(close(fds[1]) == 0);
  ends_with(loop, &r, "made eof lost:0", -1);
}

/* libuv's pipe_close_stdout_read_stdin: a writer gone before the pipe is
 * connected is seen in the first iteration that does not wait. */
static void read_pipe_writer_gone_in_one_iteration(void)
{
  tapio_loop *loop = new_loop();
  rec r;
  int fds[2];
  rec_init(&r);
  make_pipe(fds);
  CHECK(close(fds[1]) == 0);
  CHECK_OK(connect_pipe(loop, fds[0], 0, &r));
  spin(loop, 1);
  CHECK_STR(r.log, "made eof lost:0");
  end_pair(loop, &r, -1);
}

static void read_pipe_pause_and_resume(void)
{
  tapio_loop *loop = new_loop();
  rec r;
  int fds[2];
  new_read_pipe(loop, &r, fds);
  CHECK_OK(tapio_transport_pause_reading(r.t));
  CHECK_OK(tapio_transport_pause_reading(r.t)); /* idempotent */
  CHECK_EQ(tapio_transport_is_reading(r.t), 0);
  CHECK(write(fds[1], "abc", 3) == 3);
  run_for(loop, 0.05);
  CHECK_EQ(r.nin, 0);
  CHECK_OK(tapio_transport_resume_reading(r.t));
  CHECK_EQ(tapio_transport_is_reading(r.t), 1);
  WAIT_FOR(loop, r.nin == 3);
  CHECK(close(fds[1]) == 0);
  ends_with(loop, &r, "made data:3 eof lost:0", -1);
}

/* The pty master reads EIO once the slave is closed: end of file. */
static void read_pipe_pty_eio_is_eof(void)
{
  tapio_loop *loop = new_loop();
  rec r;
  int m, s;
  rec_init(&r);
  make_pty(&m, &s);
  CHECK_OK(connect_pipe(loop, m, 0, &r));
  CHECK(write(s, "from the slave", 14) == 14);
  WAIT_FOR(loop, r.nin == 14);
  CHECK(close(s) == 0);
  WAIT_FOR(loop, r.lost);
  CHECK_STR(r.log, "made data:14 eof lost:0");
  CHECK(memcmp(r.in, "from the slave", 14) == 0);
  end_pair(loop, &r, -1);
}

static void read_pipe_fifo(void)
{
  tapio_loop *loop = new_loop();
  char path[128];
  rec r;
  int rd, wr;
  rec_init(&r);
  make_fifo(path, sizeof path);
  rd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  wr = open(path, O_WRONLY | O_CLOEXEC);
  CHECK(rd >= 0 && wr >= 0);
  CHECK_OK(connect_pipe(loop, rd, 0, &r));
  CHECK(write(wr, "fifo!", 5) == 5);
  CHECK(close(wr) == 0);
  fifo_remove(path);
  ends_with(loop, &r, "made data:5 eof lost:0", -1);
}

static void read_pipe_socketpair(void)
{
  tapio_loop *loop = new_loop();
  rec r;
  int sv[2];
  rec_init(&r);
  CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
  CHECK_OK(connect_pipe(loop, sv[0], 0, &r));
  CHECK(send(sv[1], "sock", 4, 0) == 4);
  CHECK(close(sv[1]) == 0);
  ends_with(loop, &r, "made data:4 eof lost:0", -1);
}

/* A BufferedProtocol reads a pipe through its own buffer. */
static void read_pipe_buffered_protocol(void)
{
  tapio_loop *loop = new_loop();
  conn_wait w = { 0 };
  char buf[3];
  rec r;
  int fds[2];
  rec_init(&r);
  r.buf = buf;
  r.buflen = sizeof buf;
  w.r = &r;
  make_pipe(fds);
  CHECK_OK(tapio_connect_read_pipe(loop, fds[0], &rec_bproto, &r, NULL,
                                   on_connected, &w));
  CHECK_OK(connect_wait(loop, &w));
  CHECK(write(fds[1], "12345678", 8) == 8);
  CHECK(close(fds[1]) == 0);
  WAIT_FOR(loop, r.lost);
  CHECK_STR(r.log, "made buf:8 eof lost:0");
  CHECK(memcmp(r.in, "12345678", 8) == 0);
  end_pair(loop, &r, -1);
}

/* ---- What a pipe transport does to its descriptor ----------------------- */

/* A pipe transport on one end of a pipe given blocking or not, closed:
 * whether that end's open file description is non-blocking afterwards,
 * seen through a duplicate (sharing it, as another process would). While
 * the transport has it, it is non-blocking. */
static int nonblocking_after_close(int given_nonblocking, int writing)
{
  tapio_loop *loop = new_loop();
  rec r;
  int fds[2], copy, after;
  rec_init(&r);
  CHECK(pipe2(fds, O_CLOEXEC | (given_nonblocking ? O_NONBLOCK : 0)) == 0);
  copy = dup(fds[writing]);
  CHECK_OK(connect_pipe(loop, fds[writing], writing, &r));
  CHECK(is_nonblocking(copy));
  CHECK_OK(tapio_transport_close(r.t));
  WAIT_FOR(loop, r.lost);
  after = is_nonblocking(copy);
  CHECK(close(copy) == 0 && close(fds[!writing]) == 0);
  end_pair(loop, &r, -1);
  return after;
}

/* A blocking descriptor is made non-blocking and, as it was blocking when
 * given, blocking again before it is closed. */
static void pipe_mode_restored_on_close(void)
{
  CHECK(!nonblocking_after_close(0, 0));
  CHECK(!nonblocking_after_close(0, 1));
}

/* A non-blocking one is left non-blocking. */
static void pipe_nonblocking_stays(void)
{
  CHECK(nonblocking_after_close(1, 0));
  CHECK(nonblocking_after_close(1, 1));
}

/* A read pipe and a write pipe on one open file description (a socket and
 * its duplicate, as asyncio's bidirectional idiom has it), given blocking:
 * the one closed first must not make the description blocking under the
 * other, whose writes would then block the loop; the last one out puts
 * the mode back. */
static void shared_description_keeps_mode(void)
{
  tapio_loop *loop = new_loop();
  rec rd, wr;
  int sv[2], copy, seen;
  rec_init(&rd);
  rec_init(&wr);
  CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
  copy = fcntl(sv[0], F_DUPFD_CLOEXEC, 0);
  seen = fcntl(sv[0], F_DUPFD_CLOEXEC, 0); /* the description's mode */
  CHECK(copy >= 0 && seen >= 0);
  CHECK_OK(connect_pipe(loop, sv[0], 0, &rd));
  CHECK_OK(connect_pipe(loop, copy, 1, &wr));
  CHECK_OK(tapio_transport_close(rd.t));
  WAIT_FOR(loop, rd.lost);
  CHECK(is_nonblocking(seen)); /* the write pipe still writes through it */
  CHECK_OK(tapio_transport_write(wr.t, "still", 5));
  CHECK_OK(tapio_transport_close(wr.t));
  WAIT_FOR(loop, wr.lost);
  CHECK_STR(wr.log, "made lost:0");
  CHECK(!is_nonblocking(seen)); /* as it was found */
  CHECK(close(seen) == 0);
  rec_free(&rd);
  end_pair(loop, &wr, sv[1]);
}

/* A regular file cannot be watched: refused, and closed (tapio owns the
 * descriptor from the call on); so is a bad descriptor and an option. */
static void pipe_refusals(void)
{
  tapio_loop *loop = new_loop();
  tapio_options *o = new_options(loop);
  char path[] = "/tmp/tapio-file-XXXXXX";
  int fd = mkstemp(path), fds[2];
  CHECK(fd >= 0);
  CHECK(unlink(path) == 0);
  CHECK_ERR(tapio_connect_read_pipe(loop, fd, &rec_proto, NULL, NULL,
                                    never_connected, NULL), TAPIO_EINVAL);
  CHECK(!fd_is_open(fd));
  fd = open("/tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  CHECK_ERR(tapio_connect_write_pipe(loop, fd, &rec_proto, NULL, NULL,
                                     never_connected, NULL), TAPIO_EINVAL);
  CHECK(!fd_is_open(fd));
  CHECK_ERR(tapio_connect_read_pipe(loop, -1, &rec_proto, NULL, NULL,
                                    never_connected, NULL), TAPIO_EBADF);
  CHECK_ERR(tapio_connect_read_pipe(loop, 1000, &rec_proto, NULL, NULL,
                                    never_connected, NULL), TAPIO_EBADF);
  make_pipe(fds);
  CHECK_OK(tapio_options_set_int(o, "nodelay", 1));
  CHECK_ERR(tapio_connect_read_pipe(loop, fds[0], &rec_proto, NULL, o,
                                    never_connected, NULL), TAPIO_EINVAL);
  CHECK(!fd_is_open(fds[0]));
  CHECK_ERR(tapio_connect_write_pipe(NULL, fds[1], &rec_proto, NULL, NULL,
                                     never_connected, NULL), TAPIO_EINVAL);
  CHECK(!fd_is_open(fds[1]));
  tapio_options_free(o);
  spin(loop, 2);
  free_loop(loop);
}

/* A read pipe on a device that cannot poll (/dev/zero, which epoll
 * refuses): libev called its watcher at every poll, but the loop's
 * descriptor never turned readable for it, so a host asleep there read
 * one step's worth and no more. It reads on, from the ready queue, until
 * paused; /dev/null reads its end at once. */
static void read_pipe_on_a_device_that_cannot_poll(void)
{
  tapio_loop *loop = new_loop();
  int zero = open("/dev/zero", O_RDONLY | O_CLOEXEC);
  int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
  size_t at;
  rec r, e;
  CHECK(zero >= 0 && null >= 0);
  rec_init(&r);
  CHECK_OK(connect_pipe(loop, zero, 0, &r));
  HOST_WAIT(loop, r.nin >= (8u << 20));
  CHECK_OK(tapio_transport_pause_reading(r.t));
  at = r.nin;
  spin(loop, 3);
  CHECK_EQ(r.nin, at);
  CHECK_OK(tapio_transport_resume_reading(r.t));
  HOST_WAIT(loop, r.nin >= at + (8u << 20));
  tapio_transport_close(r.t);
  HOST_WAIT(loop, r.lost);
  rec_init(&e);
  CHECK_OK(connect_pipe(loop, null, 0, &e));
  HOST_WAIT(loop, e.lost);
  CHECK_STR(e.log, "made eof lost:0");
  rec_free(&e);
  end_pair(loop, &r, -1);
}

/* ---- Write pipes ------------------------------------------------------- */

static void write_pipe_writes_and_write_eof_closes(void)
{
  tapio_loop *loop = new_loop();
  const void *bufs[2] = { "one ", "two" };
  size_t lens[2] = { 4, 3 }, n;
  char got[64];
  rec r;
  int fds[2], eof;
  rec_init(&r);
  make_pipe(fds);
  raw_nonblock(fds[0]);
  CHECK_OK(connect_pipe(loop, fds[1], 1, &r));
  CHECK_EQ(tapio_transport_get_kind(r.t), TAPIO_TRANSPORT_WRITE_PIPE);
  CHECK_EQ(tapio_transport_is_reading(r.t), 0);
  CHECK_ERR(tapio_transport_pause_reading(r.t), TAPIO_ENOTSUP);
  CHECK_ERR(tapio_transport_resume_reading(r.t), TAPIO_ENOTSUP);
  CHECK_EQ(tapio_transport_can_write_eof(r.t), 1);
  CHECK_OK(tapio_transport_write(r.t, "zero ", 5));
  CHECK_OK(tapio_transport_writelines(r.t, bufs, lens, 2));
  CHECK_OK(tapio_transport_write_eof(r.t));
  CHECK_EQ(tapio_transport_is_closing(r.t), 1);
  CHECK_ERR(tapio_transport_write(r.t, "x", 1), TAPIO_ECLOSED);
  n = read_fd_all(loop, fds[0], got, sizeof got, &eof);
  CHECK(eof);
  CHECK_EQ(n, 12);
  CHECK(memcmp(got, "zero one two", 12) == 0);
  ends_with(loop, &r, "made lost:0", fds[0]);
}

/* Flow control: pause_writing over the high mark, resume_writing at the
 * low one as the reader drains; every byte arrives in order. */
static void write_pipe_flow_control(void)
{
  tapio_loop *loop = new_loop();
  static char got[4 << 20];
  size_t offset = 0, n;
  rec r;
  int fds[2], eof;
  rec_init(&r);
  make_pipe(fds);
  raw_nonblock(fds[0]);
  CHECK_OK(connect_pipe(loop, fds[1], 1, &r));
  CHECK_OK(tapio_transport_set_write_buffer_limits(r.t, 64 * 1024, 1024));
  while (!r.paused) {
    char chunk[16 * 1024];
    pattern_fill(chunk, sizeof chunk, offset);
    CHECK_OK(tapio_transport_write(r.t, chunk, sizeof chunk));
    offset += sizeof chunk;
    CHECK(offset < sizeof got);
  }
  CHECK(r.size_at_pause > 64 * 1024);
  CHECK_OK(tapio_transport_close(r.t)); /* flushes first */
  n = read_fd_all(loop, fds[0], got, sizeof got, &eof);
  CHECK(eof);
  CHECK_EQ(n, offset);
  CHECK_EQ(pattern_check(got, n, 0), -1);
  WAIT_FOR(loop, r.lost);
  CHECK_STR(r.log, "made pause resume lost:0");
  CHECK(r.size_at_resume <= 1024);
  CHECK(close(fds[0]) == 0);
  end_pair(loop, &r, -1);
}

/* r, a write pipe on a new pipe fds (the test holds the reader's end). */
static void new_write_pipe(tapio_loop *loop, rec *r, int fds[2])
{
  rec_init(r);
  make_pipe(fds);
  CHECK_OK(connect_pipe(loop, fds[1], 1, r));
}

/* The end of a write pipe whose reader went: log, ending in
 * connection_lost(EPIPE). Frees the loop; whether SIGPIPE was pending. */
static int ends_with_epipe(tapio_loop *loop, rec *r, const char *log)
{
  int pending;
  WAIT_FOR(loop, r->lost);
  pending = sigpipe_pending();
  ends_with(loop, r, log, -1);
  return pending;
}

/* The reader goes away while nothing is written: noticed, EPIPE. */
static void write_pipe_reader_gone_idle(void)
{
  tapio_loop *loop = new_loop();
  rec r;
  int fds[2];
  new_write_pipe(loop, &r, fds);
  run_for(loop, 0.02);
  CHECK_STR(r.log, "made");
  CHECK(close(fds[0]) == 0);
  CHECK(!ends_with_epipe(loop, &r, "made lost:EPIPE"));
}

/* A write after the reader went: EPIPE from the write itself, and the
 * SIGPIPE it raised taken back (the runner's default disposition would
 * have killed the test). */
static void write_pipe_write_after_reader_gone(void)
{
  tapio_loop *loop = new_loop();
  rec r;
  int fds[2];
  new_write_pipe(loop, &r, fds);
  CHECK(close(fds[0]) == 0);
  CHECK_OK(tapio_transport_write(r.t, "x", 1)); /* fails: lost follows */
  CHECK_EQ(tapio_transport_is_closing(r.t), 1);
  CHECK(!ends_with_epipe(loop, &r, "made lost:EPIPE"));
}

/* r, a write pipe holding output it could not write yet, so it has
 * called pause_writing. */
static void buffered_write_pipe(tapio_loop *loop, rec *r, int fds[2])
{
  static char chunk[256 * 1024];
  new_write_pipe(loop, r, fds);
  CHECK_OK(tapio_transport_write(r->t, chunk, sizeof chunk));
  CHECK(tapio_transport_get_write_buffer_size(r->t) > 0);
}

/* ... and while output is buffered. */
static void write_pipe_reader_gone_writing(void)
{
  tapio_loop *loop = new_loop();
  rec r;
  int fds[2];
  buffered_write_pipe(loop, &r, fds);
  CHECK(close(fds[0]) == 0);
  CHECK(!ends_with_epipe(loop, &r, "made pause lost:EPIPE"));
}

/* A SIGPIPE the caller blocks stays the caller's: tapio leaves it
 * pending, as it found the mask. */
static void write_pipe_caller_blocked_sigpipe(void)
{
  tapio_loop *loop = new_loop();
  sigset_t set;
  rec r;
  int fds[2];
  sigemptyset(&set);
  sigaddset(&set, SIGPIPE);
  CHECK(sigprocmask(SIG_BLOCK, &set, NULL) == 0);
  new_write_pipe(loop, &r, fds);
  CHECK(close(fds[0]) == 0);
  CHECK_OK(tapio_transport_write(r.t, "x", 1));
  CHECK(ends_with_epipe(loop, &r, "made lost:EPIPE"));
}

static void write_pipe_fifo_reader_gone(void)
{
  tapio_loop *loop = new_loop();
  char path[128], got[8];
  rec r;
  int rd, wr, eof;
  rec_init(&r);
  make_fifo(path, sizeof path);
  rd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  wr = open(path, O_WRONLY | O_CLOEXEC);
  CHECK(rd >= 0 && wr >= 0);
  CHECK_OK(connect_pipe(loop, wr, 1, &r));
  CHECK_OK(tapio_transport_write(r.t, "fifo", 4));
  CHECK_EQ(read_fd_all(loop, rd, got, 4, &eof), 4);
  CHECK(close(rd) == 0);
  fifo_remove(path);
  CHECK(!ends_with_epipe(loop, &r, "made lost:EPIPE"));
}

static void write_pipe_socketpair(void)
{
  tapio_loop *loop = new_loop();
  char got[8];
  rec r;
  int sv[2];
  rec_init(&r);
  CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
  raw_nonblock(sv[1]);
  CHECK_OK(connect_pipe(loop, sv[0], 1, &r));
  CHECK_OK(tapio_transport_write(r.t, "sock", 4));
  raw_recv_n(loop, sv[1], got, 4);
  CHECK(memcmp(got, "sock", 4) == 0);
  CHECK(close(sv[1]) == 0);
  CHECK(!ends_with_epipe(loop, &r, "made lost:EPIPE"));
}

/* A pty master is written to as a terminal: no reader watch (the slave's
 * output would look like one going away); the slave reads the bytes. */
static void write_pipe_pty(void)
{
  tapio_loop *loop = new_loop();
  char got[16];
  rec r;
  int m, s, eof;
  rec_init(&r);
  make_pty(&m, &s);
  raw_nonblock(s);
  CHECK_OK(connect_pipe(loop, m, 1, &r));
  CHECK_OK(tapio_transport_write(r.t, "to the slave", 12));
  CHECK_EQ(read_fd_all(loop, s, got, 12, &eof), 12);
  CHECK(memcmp(got, "to the slave", 12) == 0);
  CHECK(write(s, "noise", 5) == 5); /* readable master: not a reader gone */
  run_for(loop, 0.02);
  CHECK_STR(r.log, "made");
  CHECK_OK(tapio_transport_close(r.t));
  WAIT_FOR(loop, r.lost);
  CHECK_STR(r.log, "made lost:0");
  CHECK(close(s) == 0);
  end_pair(loop, &r, -1);
}

static void write_pipe_abort_drops_output(void)
{
  tapio_loop *loop = new_loop();
  rec r;
  int fds[2];
  buffered_write_pipe(loop, &r, fds);
  CHECK_OK(tapio_transport_abort(r.t));
  CHECK_EQ(tapio_transport_get_write_buffer_size(r.t), 0);
  ends_with(loop, &r, "made pause lost:0", fds[0]);
}

/* A pty both ways (asyncio's test_bidirectional_pty): a read pipe on the
 * master and a write pipe on a duplicate; the slave side echoes. */
static void pty_bidirectional(void)
{
  tapio_loop *loop = new_loop();
  char got[8];
  rec rd, wr;
  int m, s, eof;
  rec_init(&rd);
  rec_init(&wr);
  make_pty(&m, &s);
  raw_nonblock(s);
  CHECK_OK(connect_pipe(loop, m, 0, &rd));
  CHECK_OK(connect_pipe(loop, fcntl(m, F_DUPFD_CLOEXEC, 3), 1, &wr));
  CHECK_OK(tapio_transport_write(wr.t, "ping", 4));
  CHECK_EQ(read_fd_all(loop, s, got, 4, &eof), 4);
  CHECK(memcmp(got, "ping", 4) == 0);
  CHECK(write(s, "pong", 4) == 4);
  WAIT_FOR(loop, rd.nin == 4);
  CHECK(memcmp(rd.in, "pong", 4) == 0);
  CHECK_OK(tapio_transport_close(wr.t));
  CHECK(close(s) == 0);
  WAIT_FOR(loop, rd.lost && wr.lost);
  CHECK_STR(rd.log, "made data:4 eof lost:0");
  CHECK_STR(wr.log, "made lost:0");
  free_loop(loop);
  rec_free(&rd);
  rec_free(&wr);
}

/* libuv's closed_fd_events: a pipe whose other copy lives on (here a dup
 * standing for a child's) stops its events once the transport closes: no
 * callback after connection_lost, and the loop does not spin on it. */
static void closed_pipe_stops_events(void)
{
  tapio_loop *loop = new_loop();
  deadline d;
  rec r;
  int fds[2], copy, turns = 0;
  rec_init(&r);
  make_pipe(fds);
  copy = dup(fds[0]);
  CHECK_OK(connect_pipe(loop, fds[0], 0, &r));
  CHECK_OK(tapio_transport_close(r.t));
  WAIT_FOR(loop, r.lost);
  CHECK(write(fds[1], "late", 4) == 4); /* readable, through the copy */
  deadline_start(&d, loop, 0.05);
  while (!d.expired) {
    CHECK_OK(tapio_loop_run_once(loop, 1));
    turns++;
  }
  deadline_end(&d);
  CHECK(turns < 10);
  CHECK_STR(r.log, "made lost:0");
  CHECK(close(copy) == 0 && close(fds[1]) == 0);
  end_pair(loop, &r, -1);
}

/* Pending pipe transports cancelled before connection_made: their
 * descriptors are closed at once (the other ends see it), nobody is
 * called. */
static void pipes_cancelled_before_made(void)
{
  tapio_loop *loop = new_loop();
  conn_wait w = { 0 };
  struct pollfd pfd;
  rec a, b;
  int in[2], out[2];
  char c;
  rec_init(&a);
  rec_init(&b);
  make_pipe(in);
  make_pipe(out);
  CHECK_OK(tapio_connect_read_pipe(loop, in[0], &rec_proto, &a, NULL,
                                   on_connected, &w));
  CHECK_OK(tapio_connect_write_pipe(loop, out[1], &rec_proto, &b, NULL,
                                    on_connected, &w));
  CHECK_EQ(tapio_cancel_pending(loop, &w), 2);
  CHECK(!fd_is_open(in[0]) && !fd_is_open(out[1]));
  pfd.fd = in[1];
  pfd.events = POLLOUT;
  CHECK(poll(&pfd, 1, 0) == 1 && (pfd.revents & POLLERR)); /* no reader */
  CHECK(read(out[0], &c, 1) == 0); /* no writer: end of file */
  spin(loop, 3);
  CHECK_EQ(w.done, 0);
  CHECK_STR(a.log, "");
  CHECK_STR(b.log, "");
  CHECK(close(in[1]) == 0 && close(out[0]) == 0);
  free_loop(loop);
  rec_free(&a);
  rec_free(&b);
}

/* A loop freed with pipes open: connection_lost(ECANCELED) for each. */
static void pipes_freed_with_loop(void)
{
  tapio_loop *loop = new_loop();
  rec a, b;
  int fds[2];
  rec_init(&a);
  rec_init(&b);
  make_pipe(fds);
  CHECK_OK(connect_pipe(loop, fds[0], 0, &a));
  CHECK_OK(connect_pipe(loop, fds[1], 1, &b));
  free_loop(loop);
  CHECK_STR(a.log, "made lost:ECANCELED");
  CHECK_STR(b.log, "made lost:ECANCELED");
  rec_free(&a);
  rec_free(&b);
}

TEST_MAIN(
  TEST(read_pipe_gets_data_then_eof),
  TEST(read_pipe_eof_closes_anyway),
  TEST(read_pipe_writer_gone_in_one_iteration),
  TEST(read_pipe_pause_and_resume),
  TEST(read_pipe_pty_eio_is_eof),
  TEST(read_pipe_fifo),
  TEST(read_pipe_socketpair),
  TEST(read_pipe_buffered_protocol),
  TEST(pipe_mode_restored_on_close),
  TEST(pipe_nonblocking_stays),
  TEST(shared_description_keeps_mode),
  TEST(pipe_refusals),
  TEST(read_pipe_on_a_device_that_cannot_poll),
  TEST(write_pipe_writes_and_write_eof_closes),
  TEST(write_pipe_flow_control),
  TEST(write_pipe_reader_gone_idle),
  TEST(write_pipe_write_after_reader_gone),
  TEST(write_pipe_reader_gone_writing),
  TEST(write_pipe_caller_blocked_sigpipe),
  TEST(write_pipe_fifo_reader_gone),
  TEST(write_pipe_socketpair),
  TEST(write_pipe_pty),
  TEST(write_pipe_abort_drops_output),
  TEST(pty_bidirectional),
  TEST(closed_pipe_stops_events),
  TEST(pipes_cancelled_before_made),
  TEST(pipes_freed_with_loop)
)
