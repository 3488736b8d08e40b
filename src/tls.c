/* The TLS layer of a stream transport: OpenSSL over the layer below it
 * (the socket, or another TLS layer), through a BIO of our own.
 *
 * Why a BIO of our own, not OpenSSL on the descriptor or memory BIOs:
 * start_tls must feed bytes a reader already took off the socket, and a
 * layer over a layer (TLS inside TLS) must read and write through that
 * layer; OpenSSL on the descriptor can do neither. Memory BIOs copy every
 * byte twice more and keep their buffers while idle. This BIO reads the
 * layer below straight into OpenSSL's record buffer (read-ahead: one
 * record buffer per call), and writes records straight to it; only what
 * the socket does not take is copied, into a buffer freed once sent. So
 * SSL_write never waits for the socket (no retry with the same arguments),
 * and flow control stays the stream's: the layer stops taking plain bytes
 * while such ciphertext waits. bench/README.md has the measurements.
 *
 * States: CLEAR (start_tls: the stream's earlier bytes go out as they
 * are), HANDSHAKE, OPEN, SHUTDOWN (our close_notify sent, waiting for the
 * peer's), DEAD. ssl_shutdown_timeout counts from close(), the flush of
 * what the protocol wrote included (start_shutdown_timer). */
#include "tls_int.h"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <string.h>

/* Plain bytes encrypted in one batch, sent with one write: as much as the
 * loop reads at once. Its ciphertext buffer is made per batch and freed
 * once sent, so an idle connection holds none. */
#define BATCH (256 * 1024)
/* The ciphertext of n plain bytes fits this: TLS 1.3 adds 22 bytes to a
 * record of at most 16 KiB (1.2: up to 29). */
#define CIPHER_OF(n) ((n) + ((n) / 16384 + 1) * 64)

static void update_want(tapio__tls *tc);
static void shutdown_step(tapio__tls *tc);
static void start_shutdown_timer(tapio__tls *tc);

/* ---- The BIO: OpenSSL's I/O, through the layer below ------------------ */

static int bio_read(BIO *b, char *dst, int len) {
  tapio__tls *tc = BIO_get_data(b);
  ssize_t n;
  BIO_clear_retry_flags(b);
  if (tc->in_off < tc->in_len) { /* start_tls: bytes read before it */
    n = (ssize_t)(tc->in_len - tc->in_off);
    n = n < len ? n : len;
    memcpy(dst, tc->in + tc->in_off, (size_t)n);
    if ((tc->in_off += (size_t)n) == tc->in_len) { /* all fed: let go */
      tapio__free(tc->s->head.loop, tc->in, tc->in_len);
      tc->in = NULL;
      tc->in_off = tc->in_len = 0;
    }
    return (int)n;
  }
  if (tc->in_eof)
    return 0;
  n = tc->lower->read(tc->s, tc->lower_ctx, dst, (size_t)len);
  if (n > 0) {
    tc->wire_in += (uint64_t)n;
    tc->starved = 0;
    return (int)n;
  }
  if (n == 0)
    tc->in_eof = 1;
  else if (n == TAPIO_EAGAIN)
    BIO_set_retry_read(b);
  else
    tc->io_err = (int)n;
  return n == 0 ? 0 : -1;
}

static int out_append(tapio__tls *tc, const char *p, size_t len) {
  tapio_loop *loop = tc->s->head.loop;
  if (tc->out_len + len > tc->out_cap) {
    size_t cap = (tc->out_len + len) * 2;
    char *grown = tapio__alloc(loop, cap);
    if (!grown)
      return TAPIO_ENOMEM;
    if (tc->out)
      memcpy(grown, tc->out + tc->out_off, tc->out_len - tc->out_off);
    tapio__free(loop, tc->out, tc->out_cap);
    tc->out = grown;
    tc->out_len -= tc->out_off;
    tc->out_off = 0;
    tc->out_cap = cap;
  }
  memcpy(tc->out + tc->out_len, p, len);
  tc->out_len += len;
  return 0;
}

/* Room in `out` (which holds nothing yet) for the ciphertext of a batch
 * of `plain` bytes: what they take, so that a small write costs little. */
static int out_reserve(tapio__tls *tc, size_t plain) {
  size_t need = CIPHER_OF(plain);
  if (tc->out_cap >= need)
    return 0;
  tapio__free(tc->s->head.loop, tc->out, tc->out_cap);
  tc->out = tapio__alloc(tc->s->head.loop, need);
  tc->out_cap = tc->out ? need : 0;
  tc->out_off = tc->out_len = 0;
  return tc->out ? 0 : TAPIO_ENOMEM;
}

static int lower_write(tapio__tls *tc, const char *p, size_t len) {
  struct iovec iov = {(void *)p, len};
  ssize_t n = tc->lower->writev(tc->s, tc->lower_ctx, &iov, 1);
  if (n == TAPIO_EAGAIN)
    return 0;
  if (n < 0)
    tc->io_err = (int)n;
  else
    tc->wire_out += (uint64_t)n;
  return (int)n;
}

/* Records go to the layer below at once (the handshake's, alerts), or
 * into `out` while tls_writev makes a batch; what the layer below does
 * not take waits in `out`. Never a retry: OpenSSL counts every record as
 * written. */
static int bio_write(BIO *b, const char *src, int len) {
  tapio__tls *tc = BIO_get_data(b);
  int n = 0;
  BIO_clear_retry_flags(b);
  if (tc->io_err)
    return -1;
  if (!tc->batching && tc->out_off == tc->out_len &&
      (n = lower_write(tc, src, (size_t)len)) < 0)
    return -1;
  if (n < len && out_append(tc, src + n, (size_t)(len - n)) < 0) {
    tc->io_err = TAPIO_ENOMEM;
    return -1;
  }
  return len;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr) {
  (void)b;
  (void)num;
  (void)ptr;
  return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

static int bio_create(BIO *b) {
  BIO_set_init(b, 1);
  return 1;
}

BIO_METHOD *tapio__tls_bio_method(void) {
  BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK,
                               "tapio stream");
  if (m && (!BIO_meth_set_read(m, bio_read) ||
            !BIO_meth_set_write(m, bio_write) ||
            !BIO_meth_set_ctrl(m, bio_ctrl) ||
            !BIO_meth_set_create(m, bio_create))) {
    BIO_meth_free(m);
    m = NULL;
  }
  return m;
}

static void drop_out(tapio__tls *tc) {
  tapio__free(tc->s->head.loop, tc->out, tc->out_cap);
  tc->out = NULL;
  tc->out_off = tc->out_len = tc->out_cap = 0;
}

/* Sends what waits in `out`: 0, or the lower layer's error. */
static int flush_out(tapio__tls *tc) {
  while (tc->out_off < tc->out_len) {
    int n = lower_write(tc, tc->out + tc->out_off, tc->out_len - tc->out_off);
    if (n <= 0)
      return n;
    tc->out_off += (size_t)n;
  }
  if (tc->out)
    drop_out(tc);
  return 0;
}

/* ---- The handshake ------------------------------------------------------ */

static void take_done(tapio__tls *tc, int status) {
  tapio__tls_done_fn done = tc->done;
  tc->done = NULL;
  if (done)
    done(tc->done_ud, &tc->s->head, status);
}

/* After a halt, done is told from the loop: the halt may come from inside
 * a call whose caller still uses the transport. */
static void run_done(tapio__task *task) {
  tapio__tls *tc = TAPIO_CONTAINER(task, tapio__tls, task);
  take_done(tc, tc->done_code);
}

/* The session cannot go on: the transport fails with code (and the words
 * kept), and a pending handshake reports it. */
static void tls_fail(tapio__tls *tc, int code) {
  int handshaking = tc->state <= TAPIO__TLS_HANDSHAKE;
  tc->state = TAPIO__TLS_DEAD;
  tc->end = TAPIO_TLS_END_ABORTED;
  tapio__timer_stop(&tc->timer);
  if (handshaking) {
    tapio__tls_done_fn done = tc->done;
    tc->done = NULL; /* the halt below must not report it again */
    tapio__transport_force_close(&tc->s->head, code, tc->err);
    tc->done = done;
    take_done(tc, code);
  } else {
    tapio__transport_force_close(&tc->s->head, code, tc->err);
  }
}

static void handshake_done(tapio__tls *tc) {
  tc->state = TAPIO__TLS_OPEN;
  tc->agreed = 1;
  tc->hs_usec = (uint64_t)((tapio__now() - tc->t0) * 1e6);
  tapio__timer_stop(&tc->timer);
  update_want(tc);
  take_done(tc, 0);
}

static void handshake(tapio__tls *tc) {
  int r;
  tc->kick = 0;
  ERR_clear_error();
  r = SSL_do_handshake(tc->ssl);
  if (r == 1)
    handshake_done(tc);
  else if (SSL_get_error(tc->ssl, r) == SSL_ERROR_WANT_READ && !tc->in_eof &&
           !tc->io_err)
    return;
  else
    tls_fail(tc, tapio__tls_classify(tc, r));
}

static void on_timer(tapio__timer *tm) {
  tapio__tls *tc = TAPIO_CONTAINER(tm, tapio__tls, timer);
  char secs[32];
  snprintf(secs, sizeof secs, "%g", tc->timer_secs);
  if (tc->state >= TAPIO__TLS_OPEN) { /* flushing or SHUTDOWN */
    tc->timed_out = 1;
    tc->state = TAPIO__TLS_DEAD;
    tc->end = TAPIO_TLS_END_TIMEOUT;
    tapio__tls_set_err(tc, "TLS shutdown timed out after %s seconds%s", secs, "");
    tapio__transport_force_close(&tc->s->head, TAPIO_ETIMEDOUT, tc->err);
    return;
  }
  tapio__tls_set_err(tc, "TLS handshake is taking longer than %s seconds: %s", secs,
          "aborting the connection");
  tls_fail(tc, TAPIO_ETIMEDOUT);
}

/* ---- The layer's operations ------------------------------------------- */

/* The peer's close_notify came: nothing more is read. OpenSSL keeps its
 * read buffer (64 KiB) after an alert, where it lets it go after data:
 * let it go now, or every connection ending in one loop turn would hold
 * one until its end (bench/README.md, "An idle TLS connection's RSS"). */
static void notify_came(tapio__tls *tc) {
  tc->got_notify = 1;
  SSL_free_buffers(tc->ssl);
}

/* Reads plain bytes: as many records as fit, reading the layer below as
 * OpenSSL needs. The end (EOF, an error) waits for the next call when
 * bytes came before it. */
static ssize_t tls_read(tapio__stream *s, void *ctx, void *buf, size_t len) {
  tapio__tls *tc = ctx;
  size_t got = 0, n;
  int r;
  (void)s;
  if (tc->state != TAPIO__TLS_OPEN)
    return TAPIO_EAGAIN;
  while (got < len && !tc->rd_end) {
    ERR_clear_error();
    if ((r = SSL_read_ex(tc->ssl, (char *)buf + got, len - got, &n)) == 1) {
      got += n;
      continue;
    }
    switch (SSL_get_error(tc->ssl, r)) {
    case SSL_ERROR_WANT_READ:
      tc->starved = 1; /* what OpenSSL holds is no whole record */
      if (!tc->io_err)
        goto out;
      tc->rd_end = tapio__tls_classify(tc, r);
      break;
    case SSL_ERROR_ZERO_RETURN:
      notify_came(tc);
      tc->rd_end = 1;
      break;
    default: /* a TCP end without close_notify is an end, a truncation */
      tc->rd_end = tc->in_eof && !tc->io_err ? 1 : tapio__tls_classify(tc, r);
    }
  }
out:
  update_want(tc);
  if (got)
    return (ssize_t)got;
  if (tc->rd_end < 0) {
    tls_fail(tc, tc->rd_end);
    return tc->rd_end;
  }
  return tc->rd_end ? 0 : TAPIO_EAGAIN;
}

/* start_tls: the stream's bytes from before it, as they are. */
static ssize_t clear_writev(tapio__tls *tc, const struct iovec *iov, int n) {
  struct iovec v[TAPIO__MAX_IOV];
  size_t room = tc->clear_left;
  int i, k = 0;
  ssize_t r;
  for (i = 0; i < n && room; i++, k++) {
    v[k] = iov[i];
    if (v[k].iov_len > room)
      v[k].iov_len = room;
    room -= v[k].iov_len;
  }
  r = tc->lower->writev(tc->s, tc->lower_ctx, v, k);
  if (r > 0 && (tc->clear_left -= (size_t)r) == 0) {
    tc->state = TAPIO__TLS_HANDSHAKE;
    update_want(tc);
  }
  return r;
}

/* The plain bytes of iov[0..n) one batch takes. */
static size_t batch_of(const struct iovec *iov, int n) {
  size_t total = 0;
  int i;
  for (i = 0; i < n && total < BATCH; i++)
    total += iov[i].iov_len;
  return total < BATCH ? total : BATCH;
}

/* Encrypts a batch of plain bytes (at most BATCH) into `out`, then sends
 * it to the layer below in one write: a batch of records costs one system
 * call, not one per record. Nothing is taken while ciphertext still
 * waits, so the stream's buffer (and its flow control) holds the rest. */
static ssize_t tls_writev(tapio__stream *s, void *ctx, const struct iovec *iov,
                          int n) {
  tapio__tls *tc = ctx;
  size_t total = 0;
  int i, rc;
  (void)s;
  if (tc->state == TAPIO__TLS_CLEAR)
    return clear_writev(tc, iov, n);
  if (tc->state != TAPIO__TLS_OPEN || tc->wr_wants_read)
    return TAPIO_EAGAIN;
  if ((rc = flush_out(tc)) < 0) {
    tls_fail(tc, tapio__tls_classify(tc, -1));
    return rc;
  }
  if (tc->out_off < tc->out_len || out_reserve(tc, batch_of(iov, n)) < 0) {
    update_want(tc);
    return TAPIO_EAGAIN;
  }
  tc->batching = 1;
  for (i = 0; i < n && total < BATCH; i++) {
    const char *p = iov[i].iov_base;
    size_t left = iov[i].iov_len, w;
    while (left && total < BATCH) {
      size_t chunk = left < BATCH - total ? left : BATCH - total;
      ERR_clear_error();
      if (!SSL_write_ex(tc->ssl, p, chunk, &w)) {
        tc->batching = 0;
        if (SSL_get_error(tc->ssl, 0) == SSL_ERROR_WANT_READ && !tc->io_err) {
          tc->wr_wants_read = 1; /* a renegotiation: input first */
          break;
        }
        rc = tapio__tls_classify(tc, 0);
        tls_fail(tc, rc);
        return rc;
      }
      p += w;
      left -= w;
      total += w;
    }
  }
  tc->batching = 0;
  if ((rc = flush_out(tc)) < 0) {
    tls_fail(tc, tapio__tls_classify(tc, -1));
    return rc;
  }
  update_want(tc);
  return total ? (ssize_t)total : TAPIO_EAGAIN;
}

static void tls_ready(tapio__stream *s, void *ctx, int revents) {
  tapio__tls *tc = ctx;
  if (tc->lower->ready) /* TLS inside TLS: the outer session first */
    tc->lower->ready(s, tc->lower_ctx, revents);
  if (tc->state == TAPIO__TLS_DEAD) {
    update_want(tc); /* the outer session may still be closing */
    return;
  }
  if ((revents & EV_WRITE) && flush_out(tc) < 0) {
    if (tc->state != TAPIO__TLS_SHUTDOWN) {
      tls_fail(tc, tapio__tls_classify(tc, -1));
      return;
    }
    drop_out(tc); /* nobody left to send close_notify to */
    tc->peer_done = 1;
  }
  if (tc->state == TAPIO__TLS_HANDSHAKE)
    handshake(tc);
  else if (tc->state == TAPIO__TLS_SHUTDOWN)
    shutdown_step(tc);
  else if (revents & EV_READ)
    tc->wr_wants_read = 0; /* SSL_write may try again */
  if (tc->state != TAPIO__TLS_DEAD)
    update_want(tc);
}

static int tls_pending(tapio__stream *s, void *ctx) {
  tapio__tls *tc = ctx;
  if (tc->state != TAPIO__TLS_OPEN)
    return 0;
  return tc->rd_end || SSL_pending(tc->ssl) > 0 ||
         (!tc->starved && SSL_has_pending(tc->ssl)) ||
         tc->in_off < tc->in_len ||
         (tc->lower->pending && tc->lower->pending(s, tc->lower_ctx));
}

/* ---- Closing ------------------------------------------------------------ */

/* Our close_notify is sent and the peer has said its last: the session is
 * over; TLS inside TLS closes the outer session next. */
static void shutdown_done(tapio__tls *tc) {
  tapio__stream *s = tc->s;
  tc->state = TAPIO__TLS_DEAD;
  tc->end = tc->got_notify ? TAPIO_TLS_END_CLEAN : TAPIO_TLS_END_TRUNCATED;
  tapio__timer_stop(&tc->timer);
  if (s->head.flags & TAPIO__T_LOST)
    return; /* the session under this one failed it: that was the end */
  if (tc->lower->close && tc->lower->close(s, tc->lower_ctx) == 1)
    return;
  tapio__transport_lost(&s->head, 0, NULL);
}

/* Reads until the peer's close_notify (or its end), dropping what comes
 * before it: the protocol closed, nobody reads any more. */
static void shutdown_step(tapio__tls *tc) {
  char *scratch = tapio__read_buffer(tc->s->head.loop);
  int passes = 16;
  size_t n;
  while (!tc->peer_done && scratch && passes > 0) {
    int r;
    ERR_clear_error();
    if ((r = SSL_read_ex(tc->ssl, scratch, TAPIO__RBUF_SIZE, &n)) == 1) {
      passes--; /* 0 after the last: more may wait (not after a break) */
      continue;
    }
    r = SSL_get_error(tc->ssl, r);
    if (r == SSL_ERROR_WANT_READ && !tc->in_eof && !tc->io_err)
      break;
    if (r == SSL_ERROR_ZERO_RETURN)
      notify_came(tc);
    tc->peer_done = 1;
  }
  ERR_clear_error();
  if (tc->peer_done && tc->out_off == tc->out_len)
    shutdown_done(tc);
  else if (passes == 0 && !tc->peer_done) /* more may wait in OpenSSL */
    tapio__stream_read_soon(tc->s); /* after the others: a peer that sends
                                       on would keep the loop here */
}

/* ssl_shutdown_timeout bounds the whole ending from close(), as asyncio's
 * does: flushing what the protocol wrote, then the close_notify exchange.
 * A peer that stops reading cannot hold a close forever. */
static void start_shutdown_timer(tapio__tls *tc) {
  tc->timer_secs = tc->shutdown_timeout;
  tapio__timer_start(&tc->timer, tc->shutdown_timeout);
}

/* close() before the handshake is done aborts, as asyncio's does, with
 * bytes written meanwhile or not: they were for a session not made. */
static int abort_handshake(tapio__stream *s, tapio__tls *tc) {
  if (tc->state > TAPIO__TLS_HANDSHAKE)
    return 0;
  tapio__transport_force_close(&s->head, 0, NULL);
  return 1;
}

/* close() while the stream still has bytes for us: the timer starts now. */
static void tls_closing(tapio__stream *s, void *ctx) {
  tapio__tls *tc = ctx;
  if (abort_handshake(s, tc) || tc->flushing || tc->state > TAPIO__TLS_OPEN)
    return;
  tc->flushing = 1;
  start_shutdown_timer(tc);
}

static int tls_close(tapio__stream *s, void *ctx) {
  tapio__tls *tc = ctx;
  if (abort_handshake(s, tc))
    return 1;
  if (tc->state != TAPIO__TLS_OPEN)
    return 0;
  tc->state = TAPIO__TLS_SHUTDOWN;
  ERR_clear_error();
  SSL_shutdown(tc->ssl); /* our close_notify, after what was written */
  ERR_clear_error();
  if (SSL_get_shutdown(tc->ssl) & SSL_RECEIVED_SHUTDOWN)
    tc->got_notify = 1;
  tc->peer_done = tc->got_notify || tc->in_eof || tc->rd_end || tc->io_err;
  if (tc->io_err)
    drop_out(tc);
  if (tc->peer_done && tc->out_off == tc->out_len) {
    shutdown_done(tc);
    return 1;
  }
  if (!tc->flushing)
    start_shutdown_timer(tc);
  if (SSL_has_pending(tc->ssl)) /* read on the loop, not in here */
    tapio__stream_read_soon(s);
  update_want(tc);
  return 1;
}

static void tls_halt(tapio__stream *s, void *ctx) {
  tapio__tls *tc = ctx;
  if (tc->lower->halt)
    tc->lower->halt(s, tc->lower_ctx);
  tapio__timer_stop(&tc->timer);
  if (tc->state == TAPIO__TLS_DEAD)
    return;
  if (tc->done) { /* abort, close or the loop's end during the handshake */
    tc->done_code = TAPIO_ECANCELED;
    tc->task.run = run_done;
    tapio__task_post(s->head.loop, &tc->task);
  }
  tc->end = TAPIO_TLS_END_ABORTED;
  tc->state = TAPIO__TLS_DEAD;
}

static void tls_free(tapio__stream *s, void *ctx) {
  tapio__tls *tc = ctx;
  tapio_loop *loop = s->head.loop;
  if (tc->lower && tc->lower->free) /* none when attaching failed */
    tc->lower->free(s, tc->lower_ctx);
  SSL_free(tc->ssl);
  tapio__free(loop, tc->in, tc->in_len);
  tapio__free(loop, tc->out, tc->out_cap);
  tapio__strfree(loop, tc->err);
  tapio__strfree(loop, tc->hostname);
  tapio__strfree(loop, tc->cache_key);
  tapio_tls_context_release(tc->ctx);
  tapio_tls_context_release(tc->sni);
  tapio__free(loop, tc, sizeof *tc);
}

const tapio__io tapio__tls_io = {
  .read = tls_read,
  .writev = tls_writev,
  .ready = tls_ready,
  .pending = tls_pending,
  .close = tls_close,
  .closing = tls_closing,
  .halt = tls_halt,
  .free = tls_free,
};

/* What the stream must watch for the outermost layer: its own needs, and
 * those of the layers under it. */
static uint32_t want_of(const tapio__tls *tc) {
  uint32_t w = tc->out_off < tc->out_len ? TAPIO__WANT_WRITE : 0;
  if (tc->lower == &tapio__tls_io)
    w |= want_of(tc->lower_ctx) & (TAPIO__WANT_READ | TAPIO__WANT_WRITE);
  switch (tc->state) {
  case TAPIO__TLS_CLEAR:
    w |= TAPIO__HOLD_READ;
    break;
  case TAPIO__TLS_HANDSHAKE:
    w |= TAPIO__WANT_READ | TAPIO__HOLD_READ | TAPIO__HOLD_WRITE;
    if (tc->kick)
      w |= TAPIO__WANT_WRITE;
    break;
  case TAPIO__TLS_OPEN:
    if (tc->wr_wants_read)
      w |= TAPIO__WANT_READ | TAPIO__HOLD_WRITE;
    break;
  case TAPIO__TLS_SHUTDOWN:
    w |= TAPIO__WANT_READ | TAPIO__HOLD_READ;
    break;
  default:
    break;
  }
  return w;
}

/* The outermost TLS layer's wants go to the stream (through the fault
 * layer when one is above: tapio__layer_want takes its holds out). */
static void update_want(tapio__tls *tc) {
  tapio__tls *top = tapio__tls_of(&tc->s->head);
  if (top)
    tapio__layer_want(tc->s, want_of(top));
}

/* ---- Attaching ---------------------------------------------------------- */

static int is_ip(const char *name) {
  unsigned char a[16];
  return inet_pton(AF_INET, name, a) == 1 || inet_pton(AF_INET6, name, a) == 1;
}

/* SNI (names only, as RFC 6066 says) and the name the certificate must
 * have (an address is checked as an address). */
static int set_peer_name(tapio__tls *tc, const char *name) {
  tapio_tls_context *c = tc->ctx;
  int ip = is_ip(name), ok = 1;
  if (!ip)
    ok = SSL_set_tlsext_host_name(tc->ssl, name) == 1;
  if (ok && c->check_hostname && c->verify != TAPIO_TLS_VERIFY_NONE)
    ok = ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(tc->ssl), name)
            : SSL_set1_host(tc->ssl, name);
  ERR_clear_error();
  tc->hostname = tapio__strdup(tc->s->head.loop, name);
  return ok && tc->hostname ? 0 : TAPIO_ENOMEM;
}

static tapio__tls *tls_new(tapio__stream *s, const tapio__tls_params *p,
                           const void *buffered, size_t len) {
  tapio_loop *loop = s->head.loop;
  tapio__tls *tc = tapio__calloc(loop, sizeof *tc);
  BIO *b;
  if (!tc)
    return NULL;
  tc->s = s;
  tc->ssl = SSL_new(p->ctx->ctx);
  b = tc->ssl ? BIO_new(p->ctx->bio) : NULL;
  tc->in = len ? tapio__alloc(loop, len) : NULL;
  if (!b || (len && !tc->in)) {
    BIO_free(b);
    SSL_free(tc->ssl);
    tapio__free(loop, tc->in, len);
    tapio__free(loop, tc, sizeof *tc);
    ERR_clear_error();
    return NULL;
  }
  if (len)
    memcpy(tc->in, buffered, len);
  tc->in_len = len;
  BIO_set_data(b, tc);
  SSL_set_bio(tc->ssl, b, b);
  SSL_set_app_data(tc->ssl, tc);
  tapio__tls_context_retain(p->ctx);
  tc->ctx = p->ctx;
  tc->shutdown_timeout = p->shutdown_timeout;
  tapio__timer_init(&tc->timer, s->head.loop, on_timer);
  return tc;
}

/* Whether the layer below holds bytes already (the outer session of TLS
 * inside TLS may hold a whole ClientHello): no readiness announces them. */
static int held_below(tapio__tls *tc) {
  return tc->lower->pending && tc->lower->pending(tc->s, tc->lower_ctx);
}

int tapio__tls_attach(tapio_transport *t, const tapio__tls_params *p,
                      int server, const void *buffered, size_t len,
                      tapio__tls_done_fn done, void *ud) {
  tapio__stream *s = tapio__to_stream(t);
  tapio__tls *tc = tls_new(s, p, buffered, len);
  if (!tc)
    return TAPIO_ENOMEM;
  if (p->ctx->verify != TAPIO_TLS_VERIFY_NONE)
    tapio__tls_context_load_defaults(p->ctx);
  if (server) {
    SSL_set_accept_state(tc->ssl);
  } else {
    SSL_set_connect_state(tc->ssl);
    if (p->hostname && *p->hostname && set_peer_name(tc, p->hostname) < 0) {
      tls_free(s, tc); /* frees no lower layer: not attached yet */
      return TAPIO_ENOMEM;
    }
    tapio__tls_session_resume(tc);
  }
  tc->done = done;
  tc->done_ud = ud;
  tc->clear_left = t->wsize;
  tc->state = t->wsize ? TAPIO__TLS_CLEAR : TAPIO__TLS_HANDSHAKE;
  tc->t0 = tapio__now();
  tc->timer_secs = p->handshake_timeout;
  tapio__timer_start(&tc->timer, p->handshake_timeout);
  tapio__layer_push(s, &tapio__tls_io, tc, &tc->lower, &tc->lower_ctx);
  /* The first step: a client's at once (it speaks first); a server's
   * when the ClientHello is readable, or at once if it is here already.
   * A step before it came has OpenSSL make its record buffers and
   * handshake state (47 KB), idle until the client's turn: under a burst
   * of connections, every queued one holds them (bench/README.md, "An
   * idle TLS connection's RSS"). */
  tc->kick = !server || len || held_below(tc);
  update_want(tc);
  return 0;
}

void tapio__tls_cancel(tapio_transport *t, int code) {
  tapio__tls *tc = tapio__tls_of(t);
  if (tc)
    tc->done = NULL;
  tapio__transport_force_close(t, code, NULL);
}

void tapio__tls_switch_context(SSL *ssl, tapio_tls_context *use) {
  tapio__tls *tc = SSL_get_app_data(ssl);
  SSL_set_SSL_CTX(ssl, use->ctx);
  SSL_set_verify(ssl, SSL_CTX_get_verify_mode(use->ctx), NULL);
  tapio__tls_context_retain(use);
  tapio_tls_context_release(tc->sni);
  tc->sni = use;
}

const char *tapio__tls_error(tapio_transport *t) {
  tapio__tls *tc = tapio__tls_of(t);
  return tc ? tc->err : NULL;
}

tapio__tls *tapio__tls_of(tapio_transport *t) {
  void *ctx;
  if (!t || t->kind->id != TAPIO_TRANSPORT_STREAM)
    return NULL;
  return tapio__base_io(tapio__to_stream(t), &ctx) == &tapio__tls_io ? ctx
                                                                      : NULL;
}
