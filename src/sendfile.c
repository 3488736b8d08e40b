/* asyncio's loop.sendfile: a file sent over an open stream transport.
 * On a plain socket the kernel moves the bytes (sendfile(2): no copy
 * through user space); elsewhere (TLS, a write pipe, a memory pair, a
 * socket under a testing fault) or where the kernel cannot (a file that
 * is not a regular one), the fallback reads the file and writes it
 * through the transport, paced by its flow control, as asyncio's
 * _sendfile_fallback does.
 *
 * Meanwhile the transport is the operation's: its reading is paused and
 * its protocol held aside (as asyncio swaps in its fallback protocol), so
 * that pause_writing/resume_writing pace the operation and a connection
 * lost ends it before the protocol hears of it; writes by the protocol
 * are refused (TAPIO_EBUSY: asyncio's "sendfile is in progress"). All is
 * given back at the end, before the completion, and the file is left at
 * offset + sent however it ends (asyncio's, cancelled too). */
#include "tapio_int.h"

#include <errno.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <unistd.h>

#define CHUNK TAPIO__RBUF_SIZE    /* a fallback read, and one write */
#define TURN_MAX TAPIO__SENDFILE_TURN

typedef struct op {
  tapio__request req;
  tapio_transport *t;
  const tapio__proto *proto; /* the protocol, held aside */
  void *proto_ud;
  int fd;
  uint64_t offset, count, sent; /* count 0: to the end of the file */
  int native, fallback, was_reading, was_paused;
  ev_io wio;                 /* native: the socket is writable */
  tapio_sendfile_fn cb;
} op;

static void pump(op *o);

/* Gives the transport back as it was: its protocol, its reading, and its
 * protocol's view of the write buffer. */
static void give_back(op *o) {
  tapio_transport *t = o->t;
  int paused = (t->flags & TAPIO__T_WPAUSED) != 0;
  ev_io_stop(t->loop->ev, &o->wio);
  t->proto = o->proto;
  t->ud = o->proto_ud;
  t->flags &= ~(uint32_t)TAPIO__T_SENDFILE;
  if (t->flags & (TAPIO__T_CLOSING | TAPIO__T_LOST))
    return;
  tapio__stream_sendfile_ended(t);
  if (o->was_reading)
    tapio_transport_resume_reading(t);
  if (o->was_paused && !paused && t->proto->resume_writing)
    t->proto->resume_writing(t->ud, t);
  else if (!o->was_paused && paused && t->proto->pause_writing)
    t->proto->pause_writing(t->ud, t);
}

static void op_free(op *o) {
  tapio__free(o->t->loop, o, sizeof *o);
}

/* Ends it, however it ends (done, failed, cancelled, the loop freed):
 * the transport given back, the file at offset + sent (as asyncio leaves
 * it, also cancelled), then the completion, unless the user cancelled. */
static void finish(op *o, int code) {
  give_back(o);
  tapio__sendfile_seek(o->fd, o->offset, o->sent);
  if (tapio__request_done(&o->req))
    o->cb(o->req.ud, code, o->sent);
  op_free(o);
}

/* ---- The steps, shared with sock_sendfile (sock.c) --------------------- */

/* What is left to send now: at most max, none past count. */
static size_t want(uint64_t count, uint64_t sent, size_t max) {
  uint64_t left = count ? count - sent : max;
  return left < max ? (size_t)left : max;
}

void tapio__sendfile_seek(int file, uint64_t offset, uint64_t sent) {
  if (sent > 0)
    lseek(file, (off_t)(offset + sent), SEEK_SET);
}

ssize_t tapio__sendfile_read(int file, uint64_t offset, uint64_t count,
                             uint64_t sent, char *buf) {
  ssize_t n;
  if (count && sent == count)
    return 0;
  do
    n = pread(file, buf, want(count, sent, CHUNK), (off_t)(offset + sent));
  while (n < 0 && errno == EINTR);
  return n < 0 ? tapio__from_errno(errno) : n;
}

/* EINVAL: a file sendfile(2) cannot send from (not a regular one). */
int tapio__sendfile_no_native(int err, uint64_t sent) {
  return sent == 0 && (err == EINVAL || err == ENOSYS);
}

static int native_turn(int sock, int file, uint64_t offset, uint64_t count,
                       uint64_t *sent) {
  size_t turn = 0;
  while (!(count && *sent == count)) {
    off_t off = (off_t)(offset + *sent);
    ssize_t n;
    if (turn >= TURN_MAX)
      return 1;
    n = sendfile(sock, file, &off, want(count, *sent, CHUNK));
    if (n == 0)
      break; /* the end of the file */
    if (n > 0) {
      *sent += (uint64_t)n;
      turn += (size_t)n;
    } else if (errno == EAGAIN) {
      return 1;
    } else if (errno != EINTR) {
      return -errno;
    }
  }
  return 0;
}

/* sendfile(2) has no MSG_NOSIGNAL: a peer gone would raise SIGPIPE. */
int tapio__sendfile_native(int sock, int file, uint64_t offset,
                           uint64_t count, uint64_t *sent) {
  sigset_t old;
  int rc;
  tapio__sigpipe_block(&old);
  rc = native_turn(sock, file, offset, count, sent);
  tapio__sigpipe_restore(&old, rc == -EPIPE);
  return rc;
}

/* ---- Fallback: read, write, wait for resume_writing -------------------- */

/* A chunk goes through the loop's read buffer: the write takes (or
 * copies) it before anything else can read into it. */
static void pump(op *o) {
  tapio_transport *t = o->t;
  char *buf = tapio__read_buffer(t->loop);
  size_t turn = 0;
  if (!buf)
    return finish(o, TAPIO_ENOMEM);
  while (!(t->flags & TAPIO__T_WPAUSED) && turn < TURN_MAX) {
    ssize_t n = tapio__sendfile_read(o->fd, o->offset, o->count, o->sent,
                                     buf);
    uint32_t held = t->flags & (TAPIO__T_SENDFILE | TAPIO__T_EOF_WANTED);
    int rc;
    if (n <= 0)
      return finish(o, (int)n);
    t->flags &= ~held; /* the file's writes: before a write_eof asked */
    rc = tapio_transport_write(t, buf, (size_t)n);
    t->flags |= held;
    if (rc < 0)
      return finish(o, rc);
    o->sent += (uint64_t)n;
    turn += (size_t)n;
    if (t->flags & (TAPIO__T_CLOSING | TAPIO__T_LOST))
      return; /* failing: connection_lost ends it */
  }
  if (turn >= TURN_MAX)
    tapio__task_post(t->loop, &o->req.task); /* go on next turn */
}

/* ---- Native: sendfile(2) while the socket takes it --------------------- */

/* sendfile(2)'s errors that are the file's: not open for reading, a
 * read of it failing, an offset it cannot take. */
static int file_error(int err) {
  return err == EBADF || err == EIO || err == EOVERFLOW || err == ESPIPE ||
         err == EISDIR || err == ENXIO;
}

/* sendfile(2) failed with err: a file it cannot send from goes to the
 * fallback (when allowed, and nothing was sent yet); the file's own
 * failure ends the operation only, the connection given back as it was
 * (asyncio's read of the file raises); a broken connection ends the
 * operation, then the transport. */
static void native_failed(op *o, int err) {
  tapio_transport *t = o->t;
  int code = tapio__from_errno(err);
  if (tapio__sendfile_no_native(err, o->sent)) {
    if (!o->fallback)
      return finish(o, TAPIO_ENOTSUP);
    o->native = 0;
    return pump(o);
  }
  finish(o, code); /* frees o */
  if (!file_error(err))
    tapio__transport_force_close(t, code, NULL);
}

static void send_native(op *o) {
  tapio_transport *t = o->t;
  uint64_t before = o->sent;
  int rc;
  if (t->wsize) /* what was written before goes first */
    return ev_io_start(t->loop->ev, &o->wio);
  rc = tapio__sendfile_native(tapio__stream_fd(t), o->fd, o->offset,
                              o->count, &o->sent);
  t->nsent += o->sent - before;
  if (rc == 1) /* full, or the turn over: once writable */
    return ev_io_start(t->loop->ev, &o->wio);
  if (rc)
    return native_failed(o, -rc);
  finish(o, 0);
}

static void on_writable(struct ev_loop *ev, ev_io *w, int revents) {
  op *o = TAPIO_CONTAINER(w, op, wio);
  (void)revents;
  ev_io_stop(ev, w);
  if (!(o->t->flags & TAPIO__T_LOST)) /* else connection_lost ends it */
    send_native(o);
}

static void run(tapio__task *task) {
  op *o = TAPIO_CONTAINER(task, op, req.task);
  if (o->req.loop->freeing)
    return finish(o, TAPIO_ECANCELED);
  if (o->t->flags & TAPIO__T_LOST)
    return; /* connection_lost ends it */
  if (o->native)
    send_native(o);
  else
    pump(o);
}

/* ---- The protocol held aside: what it would have heard ----------------- */

/* The transport is lost: the operation ends, then its protocol hears. */
static void held_lost(void *ud, tapio_transport *t, int code,
                      const char *message) {
  op *o = ud;
  const tapio_protocol *p = (const tapio_protocol *)o->proto;
  void *pud = o->proto_ud;
  finish(o, code ? code : TAPIO_ECLOSED);
  if (p->connection_lost)
    p->connection_lost(pud, t, code, message);
}

/* Room again: the fallback writes on (native sends wait on the socket). */
static void held_resume(void *ud, tapio_transport *t) {
  op *o = ud;
  (void)t;
  if (!o->native)
    pump(o);
}

/* Bytes read before the pause (a layer's): still the protocol's. */
static void held_data(void *ud, tapio_transport *t, const char *data,
                      size_t len) {
  op *o = ud;
  const tapio_protocol *p = (const tapio_protocol *)o->proto;
  if (p->data_received)
    p->data_received(o->proto_ud, t, data, len);
}

static int held_eof(void *ud, tapio_transport *t) {
  op *o = ud;
  const tapio_protocol *p = (const tapio_protocol *)o->proto;
  return p->eof_received ? p->eof_received(o->proto_ud, t) : 0;
}

static const tapio_protocol held = {
    sizeof(tapio_protocol), NULL, held_lost, NULL, held_resume,
    held_data, held_eof, NULL, NULL};

const tapio__proto **tapio__sendfile_held(tapio_transport *t, void ***ud) {
  op *o = t->ud;
  *ud = &o->proto_ud;
  return &o->proto;
}

/* ---- The call ----------------------------------------------------------- */

static void cancel(tapio__request *req) {
  finish(TAPIO_CONTAINER(req, op, req), TAPIO_ECANCELED);
}

/* Why t cannot send a file now, or 0. */
static int refused(tapio_transport *t, int fd) {
  struct stat st;
  uint32_t kind = t->kind->id;
  if (!(t->kind->caps & TAPIO__CAN_WRITE) || (t->flags & TAPIO__T_OWNED) ||
      (kind != TAPIO_TRANSPORT_STREAM && kind != TAPIO_TRANSPORT_WRITE_PIPE)) {
    tapio__refuse(t->loop, "sendfile: the transport cannot send a file "
                           "(a stream or a write pipe can)");
    return TAPIO_ENOTSUP;
  }
  if (t->flags & TAPIO__T_SENDFILE) {
    tapio__refuse(t->loop, "sendfile: another sendfile is in progress");
    return TAPIO_EBUSY;
  }
  if (t->flags & TAPIO__T_CLOSING) {
    tapio__refuse(t->loop, "sendfile: the transport is closing");
    return TAPIO_ECLOSED;
  }
  if (t->flags & TAPIO__T_EOF_WANTED) {
    tapio__refuse(t->loop, "sendfile: the transport's writing is ended "
                           "(write_eof)");
    return TAPIO_ECLOSED;
  }
  if (fstat(fd, &st) < 0) {
    tapio__refuse(t->loop, "sendfile: %d is not an open descriptor", fd);
    return TAPIO_EBADF;
  }
  return 0;
}

int tapio_transport_sendfile(tapio_transport *t, int fd, uint64_t offset,
                             uint64_t count, int fallback,
                             tapio_sendfile_fn cb, void *cb_ud) {
  op *o;
  int rc, native;
  if (!t || !cb || fd < 0 || offset > INT64_MAX || count > INT64_MAX)
    return TAPIO_EINVAL;
  tapio__refuse_none(t->loop);
  rc = refused(t, fd);
  if (rc < 0)
    return rc;
  if (t->loop->freeing)
    return TAPIO_ECLOSED;
  native = tapio__to_stream(t)->io == &tapio__socket_io;
  if (!native && !fallback) {
    tapio__refuse(t->loop, "sendfile: the transport has no native "
                           "sendfile (TLS, a pipe, a memory pair) and "
                           "fallback is off");
    return TAPIO_ENOTSUP;
  }
  o = tapio__alloc(t->loop, sizeof *o);
  if (!o)
    return TAPIO_ENOMEM;
  *o = (op){.t = t, .fd = fd, .offset = offset, .count = count,
            .native = native, .fallback = fallback, .cb = cb,
            .proto = t->proto, .proto_ud = t->ud};
  ev_io_init(&o->wio, on_writable, tapio__stream_fd(t), EV_WRITE);
  o->was_reading = tapio_transport_is_reading(t) == 1;
  o->was_paused = (t->flags & TAPIO__T_WPAUSED) != 0;
  if (o->was_reading)
    tapio_transport_pause_reading(t);
  t->proto = (const tapio__proto *)&held;
  t->ud = o;
  t->flags |= TAPIO__T_SENDFILE;
  o->req.ud = cb_ud;
  tapio__request_start(t->loop, &o->req, run, cancel);
  return 0;
}
