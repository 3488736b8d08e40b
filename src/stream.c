/* The stream transport: reading into the loop's buffer (or the protocol's),
 * writing straight to the socket and queueing only leftovers, flow control,
 * half-close, close and abort. Shared by TCP and Unix sockets. */
#include "tapio_int.h"

#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define MAX_IOV 64
#define MIN_CHUNK (16 * 1024)
#define DEFAULT_HIGH (64 * 1024)

struct tapio__wchunk {
  tapio__wchunk *next;
  size_t cap, start, end;
  char data[];
};

static void run_lost(tapio__task *task);
static void on_readable(struct ev_loop *ev, ev_io *w, int revents);
static void on_writable(struct ev_loop *ev, ev_io *w, int revents);

tapio_transport *tapio__transport_new(tapio_loop *loop, int fd,
                                      const tapio_protocol *proto, void *ud) {
  tapio_transport *t = tapio__calloc(loop, sizeof *t);
  if (!t)
    return NULL;
  t->loop = loop;
  t->proto = proto;
  t->ud = ud;
  t->high = DEFAULT_HIGH;
  t->low = DEFAULT_HIGH / 4;
  t->flags = TAPIO__T_SOCKET;
  t->task.run = run_lost;
  ev_io_init(&t->rio, on_readable, fd, EV_READ);
  ev_io_init(&t->wio, on_writable, fd, EV_WRITE);
  tapio__list_init(&t->slink);
  tapio__list_push(&loop->transports, &t->link);
  return t;
}

static void free_wbuf(tapio_transport *t) {
  tapio__wchunk *c = t->whead;
  while (c) {
    tapio__wchunk *next = c->next;
    tapio__free(t->loop, c, sizeof *c + c->cap);
    c = next;
  }
  t->whead = t->wtail = NULL;
  t->wsize = 0;
}

static void free_transport(tapio_transport *t) {
  tapio_loop *loop = t->loop;
  ev_io_stop(loop->ev, &t->rio);
  ev_io_stop(loop->ev, &t->wio);
  close(t->rio.fd);
  tapio__list_remove(&t->link);
  free_wbuf(t);
  tapio__strfree(loop, t->lost_msg);
  tapio__free(loop, t, sizeof *t);
}

void tapio__transport_discard(tapio_transport *t) { free_transport(t); }

/* ---- Reading ----------------------------------------------------------- */

static int wants_reading(const tapio_transport *t) {
  return (t->flags & (TAPIO__T_MADE | TAPIO__T_PAUSED | TAPIO__T_CLOSING |
                      TAPIO__T_EOF_RECEIVED)) == TAPIO__T_MADE;
}

static void update_reading(tapio_transport *t) {
  if (wants_reading(t)) {
    if (!ev_is_active(&t->rio))
      ev_io_start(t->loop->ev, &t->rio);
  } else if (ev_is_active(&t->rio)) {
    ev_io_stop(t->loop->ev, &t->rio);
  }
}

void tapio__transport_made(tapio_transport *t) {
  t->flags |= TAPIO__T_MADE;
  if (t->proto->connection_made)
    t->proto->connection_made(t->ud, t);
  update_reading(t);
}

static void on_eof(tapio_transport *t) {
  int keep_open = 0;
  t->flags |= TAPIO__T_EOF_RECEIVED;
  update_reading(t);
  if (t->proto->eof_received)
    keep_open = t->proto->eof_received(t->ud, t);
  if (!keep_open)
    tapio_transport_close(t);
}

static ssize_t read_some(tapio_transport *t, void *buf, size_t len) {
  ssize_t n;
  do
    n = read(t->rio.fd, buf, len);
  while (n < 0 && errno == EINTR);
  return n;
}

/* Returns 1 when n bytes arrived for the protocol to see. */
static int read_result(tapio_transport *t, ssize_t n) {
  if (n > 0) {
    t->nrecv += (uint64_t)n;
    return 1;
  }
  if (n == 0)
    on_eof(t);
  else if (errno != EAGAIN && errno != EWOULDBLOCK)
    tapio__transport_force_close(t, tapio__from_errno(errno), NULL);
  return 0;
}

static void read_buffered(tapio_transport *t) {
  size_t len = 0;
  void *buf = t->proto->get_buffer(t->ud, t, -1, &len);
  ssize_t n;
  if (t->flags & TAPIO__T_CLOSING)
    return; /* closed from inside get_buffer */
  if (!buf || len == 0) {
    tapio__report(t->loop, TAPIO_EBUFFER,
                  "protocol get_buffer returned an empty buffer", t);
    tapio__transport_force_close(t, TAPIO_EBUFFER, NULL);
    return;
  }
  n = read_some(t, buf, len);
  if (read_result(t, n) && t->proto->buffer_updated)
    t->proto->buffer_updated(t->ud, t, (size_t)n);
}

static void read_plain(tapio_transport *t) {
  char *buf = tapio__read_buffer(t->loop);
  ssize_t n;
  if (!buf) {
    tapio__transport_force_close(t, TAPIO_ENOMEM, NULL);
    return;
  }
  n = read_some(t, buf, TAPIO__RBUF_SIZE);
  if (read_result(t, n) && t->proto->data_received)
    t->proto->data_received(t->ud, t, buf, (size_t)n);
}

static void on_readable(struct ev_loop *ev, ev_io *w, int revents) {
  tapio_transport *t = TAPIO_CONTAINER(w, tapio_transport, rio);
  (void)ev;
  (void)revents;
  if (t->proto->get_buffer)
    read_buffered(t);
  else
    read_plain(t);
}

int tapio_transport_is_reading(tapio_transport *t) {
  return t && !(t->flags & (TAPIO__T_PAUSED | TAPIO__T_CLOSING |
                       TAPIO__T_EOF_RECEIVED));
}

int tapio_transport_pause_reading(tapio_transport *t) {
  if (!t)
    return TAPIO_EINVAL;
  if (t->flags & (TAPIO__T_CLOSING | TAPIO__T_PAUSED))
    return 0;
  t->flags |= TAPIO__T_PAUSED;
  t->rpause_since = tapio__now();
  update_reading(t);
  return 0;
}

int tapio_transport_resume_reading(tapio_transport *t) {
  if (!t)
    return TAPIO_EINVAL;
  if ((t->flags & TAPIO__T_CLOSING) || !(t->flags & TAPIO__T_PAUSED))
    return 0;
  t->flags &= ~(uint32_t)TAPIO__T_PAUSED;
  t->rpaused += tapio__now() - t->rpause_since;
  update_reading(t);
  return 0;
}

/* ---- Flow control ------------------------------------------------------ */

static void maybe_pause(tapio_transport *t) {
  if (t->wsize <= t->high || (t->flags & TAPIO__T_PROTO_PAUSED))
    return;
  t->flags |= TAPIO__T_PROTO_PAUSED;
  t->write_pauses++;
  t->wpause_since = tapio__now();
  if (t->proto->pause_writing)
    t->proto->pause_writing(t->ud, t);
}

static void maybe_resume(tapio_transport *t) {
  if (!(t->flags & TAPIO__T_PROTO_PAUSED) || t->wsize > t->low)
    return;
  t->flags &= ~(uint32_t)TAPIO__T_PROTO_PAUSED;
  t->wpaused += tapio__now() - t->wpause_since;
  if (t->proto->resume_writing)
    t->proto->resume_writing(t->ud, t);
}

/* A limit that does not fit a size_t (32-bit) means "never". */
static size_t to_size(int64_t v) {
#if SIZE_MAX < INT64_MAX
  if ((uint64_t)v > SIZE_MAX)
    return SIZE_MAX;
#endif
  return (size_t)v;
}

int tapio_transport_set_write_buffer_limits(tapio_transport *t, int64_t high,
                                            int64_t low) {
  if (!t || high < -1 || low < -1)
    return TAPIO_EINVAL;
  if (high == -1 && low == -1)
    high = DEFAULT_HIGH;
  else if (high == -1) /* 4 * low, saturating */
    high = low > INT64_MAX / 4 ? INT64_MAX : 4 * low;
  if (low == -1)
    low = high / 4;
  if (low > high)
    return TAPIO_EINVAL;
  t->high = to_size(high);
  t->low = to_size(low);
  maybe_pause(t);
  return 0;
}

void tapio_transport_get_write_buffer_limits(tapio_transport *t, size_t *low,
                                             size_t *high) {
  if (low)
    *low = t ? t->low : 0;
  if (high)
    *high = t ? t->high : 0;
}

size_t tapio_transport_get_write_buffer_size(tapio_transport *t) {
  return t ? t->wsize : 0;
}

/* ---- Writing ----------------------------------------------------------- */

static ssize_t send_iov(tapio_transport *t, struct iovec *iov, int n) {
  ssize_t r;
  do {
    if (n == 1 && (t->flags & TAPIO__T_SOCKET)) {
      /* the common case: one buffer, no msghdr to fill */
      r = send(t->wio.fd, iov->iov_base, iov->iov_len, MSG_NOSIGNAL);
    } else if (t->flags & TAPIO__T_SOCKET) {
      struct msghdr msg;
      memset(&msg, 0, sizeof msg);
      msg.msg_iov = iov;
      msg.msg_iovlen = (size_t)n;
      r = sendmsg(t->wio.fd, &msg, MSG_NOSIGNAL);
    } else {
      r = writev(t->wio.fd, iov, n);
    }
  } while (r < 0 && errno == EINTR);
  return r;
}

/* Sends what the socket takes now. Returns the bytes sent, or -1 after
 * failing the transport. */
static ssize_t send_now(tapio_transport *t, struct iovec *iov, int n) {
  ssize_t r = send_iov(t, iov, n);
  if (r >= 0) {
    t->nsent += (uint64_t)r;
    return r;
  }
  if (errno == EAGAIN || errno == EWOULDBLOCK)
    return 0;
  tapio__transport_force_close(t, tapio__from_errno(errno), NULL);
  return -1;
}

/* Appends to the write buffer, filling the last chunk first. */
static int wbuf_push(tapio_transport *t, const char *p, size_t len) {
  tapio__wchunk *c = t->wtail;
  size_t room = c ? c->cap - c->end : 0;
  size_t n = len < room ? len : room;
  if (n) {
    memcpy(c->data + c->end, p, n);
    c->end += n;
    p += n;
    len -= n;
    t->wsize += n;
  }
  if (!len)
    return 0;
  room = len > MIN_CHUNK ? len : MIN_CHUNK;
  c = tapio__alloc(t->loop, sizeof *c + room);
  if (!c)
    return TAPIO_ENOMEM;
  c->next = NULL;
  c->cap = room;
  c->start = 0;
  c->end = len;
  memcpy(c->data, p, len);
  if (t->wtail)
    t->wtail->next = c;
  else
    t->whead = c;
  t->wtail = c;
  t->wsize += len;
  return 0;
}

/* After pushing leftovers: wait for writability, then flow control. */
static int buffered(tapio_transport *t, int rc) {
  if (rc < 0) {
    tapio__transport_force_close(t, rc, NULL);
    return rc;
  }
  if (t->wsize > t->wpeak)
    t->wpeak = t->wsize;
  if (!ev_is_active(&t->wio))
    ev_io_start(t->loop->ev, &t->wio);
  maybe_pause(t);
  return 0;
}

static int write_check(tapio_transport *t) {
  if (!t)
    return TAPIO_EINVAL;
  if (t->flags & TAPIO__T_EOF_WANTED)
    return TAPIO_ESHUTDOWN;
  if (t->flags & TAPIO__T_CLOSING)
    return TAPIO_ECLOSED;
  return 0;
}

int tapio_transport_write(tapio_transport *t, const void *data, size_t len) {
  int rc = write_check(t);
  const char *p = data;
  if (rc < 0 || len == 0)
    return rc;
  if (!data || len > PTRDIFF_MAX) /* no object is larger */
    return TAPIO_EINVAL;
  if (t->wsize == 0) {
    struct iovec iov = {(void *)p, len};
    ssize_t n = send_now(t, &iov, 1);
    if (n < 0 || (size_t)n == len)
      return 0; /* a failure arrives through connection_lost */
    p += n;
    len -= (size_t)n;
  }
  return buffered(t, wbuf_push(t, p, len));
}

/* Fills iov from bufs[*i..n) (skipping empty ones); returns the count and
 * the total in *total. */
static int gather(const void *const *bufs, const size_t *lens, size_t n,
                  size_t *i, struct iovec *iov, size_t *total) {
  int cnt = 0;
  *total = 0;
  for (; *i < n && cnt < MAX_IOV; (*i)++) {
    if (!lens[*i])
      continue;
    iov[cnt].iov_base = (void *)bufs[*i];
    iov[cnt].iov_len = lens[*i];
    *total += lens[*i];
    cnt++;
  }
  return cnt;
}

/* Before anything is sent: a NULL buffer with a length, or lengths that
 * add up past what any object can hold, are TAPIO_EINVAL, as for write. */
static int check_lines(const void *const *bufs, const size_t *lens,
                       size_t n) {
  size_t i, total = 0;
  if (!bufs || !lens)
    return TAPIO_EINVAL;
  for (i = 0; i < n; i++) {
    if ((lens[i] && !bufs[i]) || lens[i] > (size_t)PTRDIFF_MAX - total)
      return TAPIO_EINVAL;
    total += lens[i];
  }
  return 0;
}

int tapio_transport_writelines(tapio_transport *t, const void *const *bufs,
                               const size_t *lens, size_t n) {
  struct iovec iov[MAX_IOV];
  size_t i = 0, skip = 0;
  int rc = write_check(t);
  if (rc < 0 || n == 0)
    return rc;
  rc = check_lines(bufs, lens, n);
  if (rc < 0)
    return rc;
  while (t->wsize == 0 && i < n) {
    size_t first = i, total;
    int cnt = gather(bufs, lens, n, &i, iov, &total);
    ssize_t sent = cnt ? send_now(t, iov, cnt) : 0;
    if (sent < 0)
      return 0;
    if ((size_t)sent == total)
      continue;
    for (i = first; (size_t)sent >= lens[i]; i++)
      sent -= (ssize_t)lens[i]; /* whole buffers sent */
    skip = (size_t)sent;
    break;
  }
  for (rc = 0; i < n && rc == 0; i++, skip = 0)
    rc = wbuf_push(t, (const char *)bufs[i] + skip, lens[i] - skip);
  return (t->wsize || rc) ? buffered(t, rc) : 0;
}

static void consume(tapio_transport *t, size_t n) {
  t->wsize -= n;
  while (n) {
    tapio__wchunk *c = t->whead;
    size_t left = c->end - c->start;
    if (n < left) {
      c->start += n;
      return;
    }
    n -= left;
    t->whead = c->next;
    if (!t->whead)
      t->wtail = NULL;
    tapio__free(t->loop, c, sizeof *c + c->cap);
  }
}

static void schedule_lost(tapio_transport *t, int code, const char *message) {
  t->flags |= TAPIO__T_LOST | TAPIO__T_CLOSING;
  t->lost_code = code;
  if (message)
    t->lost_msg = tapio__strdup(t->loop, message);
  tapio__task_post(t->loop, &t->task);
}

/* The buffer is empty: finish a pending close or write_eof. */
static void drained(tapio_transport *t) {
  ev_io_stop(t->loop->ev, &t->wio);
  if (t->flags & TAPIO__T_CLOSING) {
    schedule_lost(t, 0, NULL);
  } else if ((t->flags & TAPIO__T_EOF_WANTED) &&
             !(t->flags & TAPIO__T_SHUT)) {
    shutdown(t->wio.fd, SHUT_WR);
    t->flags |= TAPIO__T_SHUT;
  }
}

static void on_writable(struct ev_loop *ev, ev_io *w, int revents) {
  tapio_transport *t = TAPIO_CONTAINER(w, tapio_transport, wio);
  struct iovec iov[MAX_IOV];
  tapio__wchunk *c;
  int cnt = 0;
  ssize_t n;
  (void)ev;
  (void)revents;
  for (c = t->whead; c && cnt < MAX_IOV; c = c->next, cnt++) {
    iov[cnt].iov_base = c->data + c->start;
    iov[cnt].iov_len = c->end - c->start;
  }
  n = send_now(t, iov, cnt);
  if (n <= 0)
    return;
  consume(t, (size_t)n);
  maybe_resume(t);
  if (!(t->flags & TAPIO__T_LOST) && t->wsize == 0)
    drained(t);
}

int tapio_transport_can_write_eof(tapio_transport *t) {
  return t != NULL;
}

int tapio_transport_write_eof(tapio_transport *t) {
  if (!t)
    return TAPIO_EINVAL;
  if (t->flags & (TAPIO__T_CLOSING | TAPIO__T_EOF_WANTED))
    return 0;
  t->flags |= TAPIO__T_EOF_WANTED;
  if (t->wsize == 0)
    drained(t);
  return 0;
}

/* ---- Closing ----------------------------------------------------------- */

int tapio_transport_close(tapio_transport *t) {
  if (!t)
    return TAPIO_EINVAL;
  if (t->flags & TAPIO__T_CLOSING)
    return 0;
  t->flags |= TAPIO__T_CLOSING;
  update_reading(t);
  if (t->wsize == 0)
    schedule_lost(t, 0, NULL);
  return 0;
}

void tapio__transport_force_close(tapio_transport *t, int code,
                                  const char *message) {
  if (t->flags & TAPIO__T_LOST)
    return;
  free_wbuf(t);
  ev_io_stop(t->loop->ev, &t->wio);
  t->flags |= TAPIO__T_CLOSING;
  update_reading(t);
  schedule_lost(t, code, message);
}

int tapio_transport_abort(tapio_transport *t) {
  if (!t)
    return TAPIO_EINVAL;
  tapio__transport_force_close(t, 0, NULL);
  return 0;
}

int tapio_transport_fail(tapio_transport *t, int code, const char *message) {
  if (!t || code >= 0)
    return TAPIO_EINVAL;
  tapio__transport_force_close(t, code, message);
  return 0;
}

int tapio_transport_is_closing(tapio_transport *t) {
  return t && (t->flags & TAPIO__T_CLOSING) != 0;
}

/* connection_lost, the last callback; then the descriptor is closed and
 * the memory freed. */
static void run_lost(tapio__task *task) {
  tapio_transport *t = TAPIO_CONTAINER(task, tapio_transport, task);
  ev_io_stop(t->loop->ev, &t->rio);
  ev_io_stop(t->loop->ev, &t->wio);
  if ((t->flags & TAPIO__T_MADE) && t->proto->connection_lost) {
    const char *msg = NULL;
    if (t->lost_code)
      msg = t->lost_msg ? t->lost_msg : tapio_strerror(t->lost_code);
    t->proto->connection_lost(t->ud, t, t->lost_code, msg);
  }
  if (t->server)
    tapio__server_detach(t->server, t);
  free_transport(t);
}

/* ---- Protocol and figures ---------------------------------------------- */

void tapio_transport_set_protocol(tapio_transport *t,
                                  const tapio_protocol *proto, void *ud) {
  if (!t || !proto)
    return;
  t->proto = proto;
  t->ud = ud;
}

void *tapio_transport_get_protocol(tapio_transport *t,
                                   const tapio_protocol **proto) {
  if (proto)
    *proto = t ? t->proto : NULL;
  return t ? t->ud : NULL;
}

tapio_loop *tapio_transport_get_loop(tapio_transport *t) {
  return t ? t->loop : NULL;
}

int tapio_transport_get_fd(tapio_transport *t) {
  return t ? t->rio.fd : TAPIO_EINVAL;
}

static uint64_t usec(double seconds) {
  return seconds > 0 ? (uint64_t)(seconds * 1e6) : 0;
}

uint64_t tapio_transport_get_stat(tapio_transport *t, int which) {
  double now = tapio__now();
  if (!t)
    return 0;
  switch (which) {
  case TAPIO_STAT_BYTES_RECEIVED:
    return t->nrecv;
  case TAPIO_STAT_BYTES_SENT:
    return t->nsent;
  case TAPIO_STAT_WRITE_BUFFER_SIZE:
    return t->wsize;
  case TAPIO_STAT_WRITE_BUFFER_PEAK:
    return t->wpeak;
  case TAPIO_STAT_WRITE_PAUSED_USEC:
    return usec(t->wpaused + ((t->flags & TAPIO__T_PROTO_PAUSED)
                                  ? now - t->wpause_since : 0));
  case TAPIO_STAT_READ_PAUSED_USEC:
    return usec(t->rpaused +
                ((t->flags & TAPIO__T_PAUSED) ? now - t->rpause_since : 0));
  case TAPIO_STAT_WRITE_PAUSES:
    return t->write_pauses;
  default:
    return 0;
  }
}
