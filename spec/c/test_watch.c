/* Watching descriptors: tapio_add_reader, tapio_add_writer and their
 * removal (asyncio's add_reader and friends, the reference's "watch a file
 * descriptor for read events" example), on real sockets and pipes. */
#include "test.h"
#include "pipes.h"

#include <fcntl.h>

typedef struct watcher {
  tapio_loop *loop;
  int fd;           /* what the callback reads from */
  int calls;
  size_t per_call;  /* bytes read per call; 0 reads nothing */
  int remove_after; /* remove the watch at this call; 0: never */
  int removed;      /* what that remove_reader returned */
  char got[256];
  size_t ngot;
  struct watcher *other; /* whose watch to remove, if any */
} watcher;

static void on_readable(void *ud)
{
  watcher *w = ud;
  w->calls++;
  if (w->per_call) {
    ssize_t n = recv(w->fd, w->got + w->ngot, w->per_call, 0);
    CHECK(n >= 0);
    w->ngot += (size_t)n;
  }
  if (w->calls == w->remove_after)
    w->removed = tapio_remove_reader(w->loop, w->fd);
}

static void watcher_init(watcher *w, tapio_loop *loop, int fd)
{
  memset(w, 0, sizeof *w);
  w->loop = loop;
  w->fd = fd;
}

static void make_pair(int sv[2])
{
  CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
}

static void close_pair(int sv[2])
{
  close(sv[0]);
  close(sv[1]);
}

/* The reference's example: data arrives, the callback reads it, removes
 * its own watch and stops the loop. */
static void reader_sees_data_and_removes_itself(void)
{
  tapio_loop *loop = new_loop();
  watcher w;
  int sv[2];
  make_pair(sv);
  watcher_init(&w, loop, sv[0]);
  w.per_call = 100;
  w.remove_after = 1;
  CHECK_OK(tapio_add_reader(loop, sv[0], on_readable, &w));
  spin(loop, 2);
  CHECK_EQ(w.calls, 0); /* nothing to read yet */
  CHECK(send(sv[1], "abc", 3, 0) == 3);
  WAIT_FOR(loop, w.calls == 1);
  CHECK_EQ(w.removed, 1);
  CHECK_EQ(w.ngot, 3);
  CHECK(memcmp(w.got, "abc", 3) == 0);
  CHECK(send(sv[1], "more", 4, 0) == 4); /* removed: never called again */
  spin(loop, 3);
  CHECK_EQ(w.calls, 1);
  CHECK_EQ(tapio_remove_reader(loop, sv[0]), 0);
  close_pair(sv);
  free_loop(loop);
}

/* Level-triggered, as asyncio's: called each iteration while unread data
 * is there, one byte read per call; then quiet. End of file is readable. */
static void reader_is_level_triggered(void)
{
  tapio_loop *loop = new_loop();
  watcher w;
  int sv[2];
  make_pair(sv);
  watcher_init(&w, loop, sv[0]);
  w.per_call = 1;
  CHECK_OK(tapio_add_reader(loop, sv[0], on_readable, &w));
  CHECK(send(sv[1], "xyz", 3, 0) == 3);
  WAIT_FOR(loop, w.ngot == 3);
  CHECK_EQ(w.calls, 3);
  spin(loop, 3);
  CHECK_EQ(w.calls, 3);
  shutdown(sv[1], SHUT_WR);
  WAIT_FOR(loop, w.calls == 4); /* the end of file: recv gives 0 */
  CHECK_EQ(w.ngot, 3);
  CHECK_EQ(tapio_remove_reader(loop, sv[0]), 1);
  close_pair(sv);
  free_loop(loop);
}

/* A pipe works like a socket. */
static void reader_on_a_pipe(void)
{
  tapio_loop *loop = new_loop();
  watcher w;
  int p[2];
  CHECK(pipe2(p, O_NONBLOCK) == 0);
  watcher_init(&w, loop, p[0]);
  w.remove_after = 1;
  CHECK_OK(tapio_add_reader(loop, p[0], on_readable, &w));
  CHECK(write(p[1], "z", 1) == 1);
  WAIT_FOR(loop, w.calls == 1);
  CHECK_EQ(w.removed, 1);
  close(p[0]);
  close(p[1]);
  free_loop(loop);
}

typedef struct writer {
  tapio_loop *loop;
  int fd, calls, remove_after;
} writer;

static void on_writable(void *ud)
{
  writer *w = ud;
  if (++w->calls == w->remove_after)
    CHECK_EQ(tapio_remove_writer(w->loop, w->fd), 1);
}

/* A writable socket calls its writer each iteration until removed. */
static void writer_runs_while_writable(void)
{
  tapio_loop *loop = new_loop();
  writer w = { loop, -1, 0, 3 };
  int sv[2];
  make_pair(sv);
  w.fd = sv[0];
  CHECK_OK(tapio_add_writer(loop, sv[0], on_writable, &w));
  WAIT_FOR(loop, w.calls == 3);
  spin(loop, 3);
  CHECK_EQ(w.calls, 3);
  CHECK_EQ(tapio_remove_writer(loop, sv[0]), 0);
  close_pair(sv);
  free_loop(loop);
}

/* A full socket is not writable: the writer waits for the peer to read. */
static void writer_waits_for_room(void)
{
  tapio_loop *loop = new_loop();
  writer w = { loop, -1, 0, 1 };
  char buf[65536];
  int sv[2];
  make_pair(sv);
  w.fd = sv[0];
  memset(buf, 'x', sizeof buf);
  while (send(sv[0], buf, sizeof buf, 0) > 0)
    ;
  CHECK_OK(tapio_add_writer(loop, sv[0], on_writable, &w));
  spin(loop, 3);
  CHECK_EQ(w.calls, 0);
  while (recv(sv[1], buf, sizeof buf, 0) > 0)
    ;
  WAIT_FOR(loop, w.calls == 1);
  close_pair(sv);
  free_loop(loop);
}

/* A reader and a writer on one descriptor are two watches: removing one
 * leaves the other. */
static void reader_and_writer_on_one_fd(void)
{
  tapio_loop *loop = new_loop();
  writer wr = { loop, -1, 0, 0 };
  watcher rd;
  int sv[2];
  make_pair(sv);
  wr.fd = sv[0];
  watcher_init(&rd, loop, sv[0]);
  rd.per_call = 100;
  CHECK_OK(tapio_add_reader(loop, sv[0], on_readable, &rd));
  CHECK_OK(tapio_add_writer(loop, sv[0], on_writable, &wr));
  WAIT_FOR(loop, wr.calls >= 1);
  CHECK_EQ(rd.calls, 0);
  CHECK_EQ(tapio_remove_writer(loop, sv[0]), 1);
  wr.calls = 0;
  CHECK(send(sv[1], "hi", 2, 0) == 2);
  WAIT_FOR(loop, rd.ngot == 2);
  CHECK_EQ(wr.calls, 0);
  CHECK_EQ(tapio_remove_reader(loop, sv[0]), 1);
  CHECK_EQ(tapio_remove_writer(loop, sv[0]), 0);
  close_pair(sv);
  free_loop(loop);
}

/* Adding a reader for a watched descriptor replaces its callback. */
static void add_again_replaces(void)
{
  tapio_loop *loop = new_loop();
  watcher first, second;
  int sv[2];
  make_pair(sv);
  watcher_init(&first, loop, sv[0]);
  watcher_init(&second, loop, sv[0]);
  second.per_call = 100;
  CHECK_OK(tapio_add_reader(loop, sv[0], on_readable, &first));
  CHECK_OK(tapio_add_reader(loop, sv[0], on_readable, &second));
  CHECK(send(sv[1], "q", 1, 0) == 1);
  WAIT_FOR(loop, second.ngot == 1);
  CHECK_EQ(first.calls, 0);
  CHECK_EQ(tapio_remove_reader(loop, sv[0]), 1);
  CHECK_EQ(tapio_remove_reader(loop, sv[0]), 0);
  close_pair(sv);
  free_loop(loop);
}

static void remove_the_other(void *ud)
{
  watcher *w = ud;
  w->calls++;
  CHECK_EQ(tapio_remove_reader(w->loop, w->other->fd), 1);
  CHECK_EQ(tapio_remove_reader(w->loop, w->fd), 1);
}

/* Two descriptors ready in one iteration: whichever callback runs first
 * removes the other's watch, whose event was already taken; the other is
 * never called (and its memory is gone: ASan and valgrind watch). */
static void remove_a_watch_already_due(void)
{
  tapio_loop *loop = new_loop();
  watcher a, b;
  int sa[2], sb[2];
  make_pair(sa);
  make_pair(sb);
  watcher_init(&a, loop, sa[0]);
  watcher_init(&b, loop, sb[0]);
  a.other = &b;
  b.other = &a;
  CHECK_OK(tapio_add_reader(loop, sa[0], remove_the_other, &a));
  CHECK_OK(tapio_add_reader(loop, sb[0], remove_the_other, &b));
  spin(loop, 1); /* both in the kernel's set before the data comes */
  CHECK(send(sa[1], "1", 1, 0) == 1);
  CHECK(send(sb[1], "2", 1, 0) == 1);
  WAIT_FOR(loop, a.calls + b.calls >= 1);
  spin(loop, 3);
  CHECK_EQ(a.calls + b.calls, 1);
  close_pair(sa);
  close_pair(sb);
  free_loop(loop);
}

/* Bad input: a clear code each, nothing kept, and the loop runs on. */
static void bad_descriptors(void)
{
  tapio_loop *loop = new_loop();
  char path[] = "/tmp/tapio_watch_XXXXXX";
  int file = mkstemp(path), sv[2], closed;
  watcher w;
  CHECK(file >= 0);
  unlink(path);
  make_pair(sv);
  closed = dup(sv[0]);
  close(closed);
  watcher_init(&w, loop, sv[0]);
  CHECK_ERR(tapio_add_reader(NULL, sv[0], never_called, NULL), TAPIO_EINVAL);
  CHECK_ERR(tapio_add_reader(loop, sv[0], NULL, NULL), TAPIO_EINVAL);
  CHECK_ERR(tapio_add_reader(loop, -1, never_called, NULL), TAPIO_EINVAL);
  CHECK_ERR(tapio_add_writer(loop, closed, never_called, NULL), TAPIO_EBADF);
  CHECK_ERR(tapio_add_reader(loop, file, never_called, NULL), TAPIO_EPERM);
  CHECK_ERR(tapio_remove_reader(NULL, 0), TAPIO_EINVAL);
  CHECK_ERR(tapio_remove_writer(NULL, 0), TAPIO_EINVAL);
  CHECK_EQ(tapio_remove_reader(loop, file), 0);
  CHECK_EQ(tapio_remove_writer(loop, -1), 0);
  close(file);
  file = open("/tmp", O_RDONLY | O_DIRECTORY);
  CHECK(file >= 0);
  CHECK_ERR(tapio_add_reader(loop, file, never_called, NULL), TAPIO_EPERM);
  close(file);
  w.per_call = 10;
  w.remove_after = 1;
  CHECK_OK(tapio_add_reader(loop, sv[0], on_readable, &w));
  CHECK(send(sv[1], "ok", 2, 0) == 2);
  WAIT_FOR(loop, w.calls == 1);
  close_pair(sv);
  free_loop(loop);
}

/* A device whose driver cannot poll (/dev/null, /dev/zero) is refused
 * as a regular file is (asyncio's PermissionError): libev took it and
 * called the watch at every poll, polling without waiting, so a run
 * spun and a host asleep on the loop's descriptor never heard of it
 * again. A terminal polls: watched. */
static void device_that_cannot_poll(void)
{
  tapio_loop *loop = new_loop();
  int null = open("/dev/null", O_RDWR), zero = open("/dev/zero", O_RDONLY);
  int m, sl;
  CHECK(null >= 0 && zero >= 0);
  CHECK_ERR(tapio_add_reader(loop, null, never_called, NULL), TAPIO_EPERM);
  CHECK_ERR(tapio_add_writer(loop, null, never_called, NULL), TAPIO_EPERM);
  CHECK_ERR(tapio_add_reader(loop, zero, never_called, NULL), TAPIO_EPERM);
  spin(loop, 2);
  CHECK_EQ(tapio_loop_backend_timeout(loop), -1); /* nothing watched */
  make_pty(&m, &sl);
  CHECK_OK(tapio_add_reader(loop, sl, never_called, NULL));
  CHECK_EQ(tapio_remove_reader(loop, sl), 1);
  close(sl);
  close(m);
  close(null);
  close(zero);
  free_loop(loop);
}

/* A descriptor closed after add_reader, before the loop polled (libev
 * would give epoll a closed descriptor and abort), or after add_writer
 * joined its applied reader: the loop goes on, the handler hears of it
 * once, neither watch is called, both are still there to remove, and a
 * descriptor of that number opened again is watched anew. */
static void closed_before_the_poll(void)
{
  tapio_loop *loop = new_loop();
  exc_rec e = {0};
  watcher w;
  int sv[2], fd;
  tapio_loop_set_exception_handler(loop, exc_record, &e);
  make_pair(sv);
  fd = sv[0];
  CHECK_OK(tapio_add_reader(loop, fd, never_called, NULL));
  close(fd);
  spin(loop, 2);
  CHECK_EQ(e.n, 1);
  CHECK_EQ(e.code, TAPIO_EBADF);
  CHECK(strstr(e.message, "was closed while watched") != NULL);
  CHECK_EQ(tapio_remove_reader(loop, fd), 1);
  close(sv[1]);
  make_pair(sv); /* the reader is applied, then a writer joins it */
  CHECK_OK(tapio_add_reader(loop, sv[0], never_called, NULL));
  spin(loop, 1);
  CHECK_OK(tapio_add_writer(loop, sv[0], never_called, NULL));
  close(sv[0]);
  spin(loop, 2);
  CHECK_EQ(e.n, 2);
  close(sv[1]);
  make_pair(sv); /* the number again: the stopped reader restarts */
  CHECK_EQ(sv[0], fd);
  watcher_init(&w, loop, sv[0]);
  w.per_call = 10;
  CHECK_OK(tapio_add_reader(loop, sv[0], on_readable, &w));
  CHECK(send(sv[1], "again", 5, 0) == 5);
  WAIT_FOR(loop, w.ngot == 5);
  CHECK_EQ(tapio_remove_reader(loop, sv[0]), 1);
  CHECK_EQ(tapio_remove_writer(loop, sv[0]), 1);
  CHECK_EQ(e.n, 2);
  close_pair(sv);
  free_loop(loop);
}

/* The handler told of a closed descriptor runs before the poll (libev's
 * prepare phase) and may do what any callback may: remove the watches of
 * that descriptor (its advice: the loop was walking them then), queue
 * work, which runs in the same iteration without the poll waiting for
 * anything, and stop the loop, whose run then ends, the work left for
 * the next one. */
typedef struct reacting {
  int fds[2];
  int n, ran, stop;
} reacting;

static void ran_soon(void *ud)
{
  ((reacting *)ud)->ran++;
}

static void react(void *ud, tapio_loop *loop, int code, const char *message,
                  tapio_transport *t)
{
  reacting *r = ud;
  (void)code;
  (void)message;
  (void)t;
  CHECK_EQ(tapio_remove_reader(loop, r->fds[r->n]), 1);
  CHECK_OK(tapio_call_soon(loop, ran_soon, r, NULL));
  if (r->stop)
    tapio_loop_stop(loop);
  r->n++;
}

static void closed_handler_reacts(void)
{
  tapio_loop *loop = new_loop();
  reacting r = {{-1, -1}, 0, 0, 0};
  deadline dl;
  int a[2], b[2];
  tapio_loop_set_exception_handler(loop, react, &r);
  make_pair(a);
  make_pair(b);
  r.fds[0] = a[0];
  r.fds[1] = b[0];
  CHECK_OK(tapio_add_reader(loop, a[0], never_called, NULL));
  CHECK_OK(tapio_add_reader(loop, b[0], never_called, NULL));
  close(a[0]);
  close(b[0]);
  deadline_start(&dl, loop, test_timeout());
  CHECK_OK(tapio_loop_run_once(loop, 1));
  CHECK(!dl.expired); /* the poll waited with the work queued */
  CHECK_EQ(r.n, 2);
  CHECK_EQ(r.ran, 2);
  make_pair(a); /* again, the handler stopping the loop */
  r.fds[0] = a[0];
  r.n = r.ran = 0;
  r.stop = 1;
  CHECK_OK(tapio_add_reader(loop, a[0], never_called, NULL));
  close(a[0]);
  CHECK_OK(tapio_loop_run(loop));
  CHECK(!dl.expired);
  CHECK_EQ(r.n, 1);
  CHECK_EQ(r.ran, 0); /* queued after the stop: the next run's */
  CHECK_OK(tapio_loop_run_once(loop, 1));
  CHECK(!dl.expired);
  CHECK_EQ(r.ran, 1);
  deadline_end(&dl);
  free_loop(loop);
  close(a[1]);
  close(b[1]);
}

/* A transport's or a server's descriptor is theirs (asyncio: "File
 * descriptor is used by transport"). */
static void descriptors_of_transports_and_servers_are_busy(void)
{
  tapio_loop *loop = new_loop();
  rec client, *server_side;
  srv sv;
  int fd;
  server_side = srv_start_pair(&sv, loop, &client);
  fd = tapio_transport_get_fd(client.t);
  CHECK(fd >= 0);
  CHECK_ERR(tapio_add_reader(loop, fd, never_called, NULL), TAPIO_EBUSY);
  CHECK_ERR(tapio_add_writer(loop, fd, never_called, NULL), TAPIO_EBUSY);
  fd = tapio_server_get_fd(sv.s, 0);
  CHECK(fd >= 0);
  CHECK_ERR(tapio_add_reader(loop, fd, never_called, NULL), TAPIO_EBUSY);
  roundtrip(loop, &client, server_side); /* both go on as before */
  srv_release_and_free(&sv, loop);
  rec_free(&client);
}

/* Freeing the loop removes what is still watched; nothing is called. */
static void loop_free_removes_watches(void)
{
  tapio_loop *loop = new_loop();
  int sv[2];
  make_pair(sv);
  CHECK(send(sv[1], "x", 1, 0) == 1);
  CHECK_OK(tapio_add_reader(loop, sv[0], never_called, NULL));
  CHECK_OK(tapio_add_writer(loop, sv[0], never_called, NULL));
  free_loop(loop);
  close_pair(sv);
}

/* A host polling tapio's descriptor: a reader added between steps, then
 * data, wakes it (the watch reaches the kernel at the next step). */
static void host_wakes_for_a_reader(void)
{
  tapio_loop *loop = new_loop();
  watcher w;
  int sv[2];
  make_pair(sv);
  watcher_init(&w, loop, sv[0]);
  w.per_call = 10;
  CHECK(tapio_loop_backend_fd(loop) >= 0);
  CHECK_OK(tapio_add_reader(loop, sv[0], on_readable, &w));
  CHECK_EQ(tapio_loop_backend_timeout(loop), 0); /* the change is work */
  CHECK_OK(tapio_loop_run_once(loop, 0));
  CHECK_EQ(tapio_loop_backend_timeout(loop), -1);
  CHECK(send(sv[1], "poll", 4, 0) == 4);
  HOST_WAIT(loop, w.ngot == 4);
  CHECK_EQ(tapio_remove_reader(loop, sv[0]), 1);
  close_pair(sv);
  free_loop(loop);
}

/* ---- A descriptor closed while watched, its number reused ---------------
 * A callback that closes its descriptor without removing its watch leaves
 * the watch stale: epoll forgot the descriptor, libev did not. The next
 * descriptor opened gets the number. */

static void close_in_callback(void *ud)
{
  watcher *w = ud;
  w->calls++;
  close(w->fd);
}

/* sv: a new pair whose first end has the number of old's closed one. */
static int stale_reader(tapio_loop *loop, watcher *old, int sv[2])
{
  int fd;
  make_pair(sv);
  fd = sv[0];
  watcher_init(old, loop, fd);
  CHECK_OK(tapio_add_reader(loop, fd, close_in_callback, old));
  CHECK(send(sv[1], "x", 1, 0) == 1);
  WAIT_FOR(loop, old->calls == 1);
  close(sv[1]);
  make_pair(sv);
  CHECK_EQ(sv[0], fd);
  return fd;
}

/* add_reader on the reused number replaces the stale watch and watches
 * the new descriptor (asyncio 3.13's never calls it: its selector only
 * swaps the callback, epoll is not told of the new descriptor). */
static void stale_watch_readded(void)
{
  tapio_loop *loop = new_loop();
  watcher old, fresh;
  int sv[2], fd = stale_reader(loop, &old, sv);
  watcher_init(&fresh, loop, fd);
  fresh.per_call = 10;
  CHECK_OK(tapio_add_reader(loop, fd, on_readable, &fresh));
  CHECK(send(sv[1], "new", 3, 0) == 3);
  WAIT_FOR(loop, fresh.ngot == 3);
  CHECK_EQ(old.calls, 1);
  CHECK_EQ(tapio_remove_reader(loop, fd), 1);
  CHECK_EQ(tapio_remove_reader(loop, fd), 0);
  close_pair(sv);
  free_loop(loop);
}

/* A writer on the reused number, or a transport taking it, brings the
 * number back into epoll: the stale reader is never called for the new
 * descriptor (it would read, or close, what is not its own); it stops,
 * the exception handler hears of it, and it stays until removed. */
static void stale_watch_beside_a_writer(void)
{
  tapio_loop *loop = new_loop();
  exc_rec e = {0};
  watcher old;
  writer w = { loop, -1, 0, 1 };
  int sv[2], fd;
  tapio_loop_set_exception_handler(loop, exc_record, &e);
  fd = stale_reader(loop, &old, sv);
  w.fd = fd;
  CHECK(send(sv[1], "new", 3, 0) == 3); /* readable at the writer's poll */
  CHECK_OK(tapio_add_writer(loop, fd, on_writable, &w));
  WAIT_FOR(loop, w.calls == 1);
  spin(loop, 2);
  CHECK_EQ(old.calls, 1);
  CHECK_EQ(e.n, 1);
  CHECK_EQ(e.code, TAPIO_EBADF);
  CHECK(strstr(e.message, "was closed while watched") != NULL);
  CHECK_EQ(tapio_remove_reader(loop, fd), 1);
  close_pair(sv);
  free_loop(loop);
}

static void stale_watch_under_a_transport(void)
{
  tapio_loop *loop = new_loop();
  exc_rec e = {0};
  conn_wait cw = { 0 };
  watcher old;
  rec r;
  int sv[2], fd;
  tapio_loop_set_exception_handler(loop, exc_record, &e);
  fd = stale_reader(loop, &old, sv);
  rec_init(&r);
  cw.r = &r;
  CHECK_OK(tapio_connect_accepted_socket(loop, fd, &rec_proto, &r, NULL,
                                         on_connected, &cw));
  CHECK_OK(connect_wait(loop, &cw));
  raw_send_str(loop, sv[1], "hello");
  WAIT_FOR(loop, r.nin == 5);
  CHECK_EQ(old.calls, 1);
  CHECK_EQ(e.n, 1);
  CHECK_OK(tapio_transport_close(r.t));
  WAIT_FOR(loop, r.lost);
  CHECK_STR(r.log, "made data:5 lost:0");
  CHECK_EQ(tapio_remove_reader(loop, fd), 1);
  close(sv[1]);
  free_loop(loop);
  rec_free(&r);
}

/* A FIFO reopened at its end, as readers of one do: the new descriptor
 * gets the number (and the same file: one device and inode), and
 * add_reader again watches it, though the closed one's watch was never
 * removed. */
typedef struct fifo_reader {
  tapio_loop *loop;
  const char *path;
  int fd, reopened;
  char got[16];
  size_t ngot;
} fifo_reader;

static void read_fifo(void *ud)
{
  fifo_reader *f = ud;
  ssize_t n = read(f->fd, f->got + f->ngot, sizeof f->got - f->ngot);
  CHECK(n >= 0);
  f->ngot += (size_t)n;
  if (n > 0)
    return;
  close(f->fd); /* the end: reopen, add again */
  CHECK_EQ(open(f->path, O_RDONLY | O_NONBLOCK), f->fd);
  f->reopened++;
  CHECK_OK(tapio_add_reader(f->loop, f->fd, read_fifo, f));
}

static void fifo_reopened_at_its_end(void)
{
  tapio_loop *loop = new_loop();
  char path[] = "/tmp/tapio_fifo_XXXXXX", fifo[64];
  fifo_reader f;
  int w;
  CHECK(mkdtemp(path) != NULL);
  snprintf(fifo, sizeof fifo, "%s/f", path);
  CHECK(mkfifo(fifo, 0600) == 0);
  memset(&f, 0, sizeof f);
  f.loop = loop;
  f.path = fifo;
  f.fd = open(fifo, O_RDONLY | O_NONBLOCK);
  CHECK(f.fd >= 0);
  w = open(fifo, O_WRONLY);
  CHECK(w >= 0);
  CHECK_OK(tapio_add_reader(loop, f.fd, read_fifo, &f));
  CHECK(write(w, "one", 3) == 3);
  WAIT_FOR(loop, f.ngot == 3);
  close(w);
  WAIT_FOR(loop, f.reopened == 1);
  w = open(fifo, O_WRONLY);
  CHECK(w >= 0);
  CHECK(write(w, "two", 3) == 3);
  WAIT_FOR(loop, f.ngot == 6);
  CHECK(memcmp(f.got, "onetwo", 6) == 0);
  CHECK_EQ(tapio_remove_reader(loop, f.fd), 1);
  close(w);
  close(f.fd);
  unlink(fifo);
  rmdir(path);
  free_loop(loop);
}

TEST_MAIN(TEST(reader_sees_data_and_removes_itself),
          TEST(reader_is_level_triggered), TEST(reader_on_a_pipe),
          TEST(writer_runs_while_writable), TEST(writer_waits_for_room),
          TEST(reader_and_writer_on_one_fd), TEST(add_again_replaces),
          TEST(remove_a_watch_already_due), TEST(bad_descriptors),
          TEST(device_that_cannot_poll),
          TEST(closed_before_the_poll), TEST(closed_handler_reacts),
          TEST(descriptors_of_transports_and_servers_are_busy),
          TEST(loop_free_removes_watches), TEST(host_wakes_for_a_reader),
          TEST(stale_watch_readded), TEST(stale_watch_beside_a_writer),
          TEST(stale_watch_under_a_transport),
          TEST(fifo_reopened_at_its_end))
