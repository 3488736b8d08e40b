/* TLS connections at work between tapio's own client and server: bulk
 * data with flow control, BufferedProtocol, closing (close_notify both
 * ways, a peer that never answers, a peer that just goes), start_tls on a
 * plain connection and on a TLS one, and ends in the middle of it all. */
#include "tls.h"

#include <openssl/ssl.h>
#include <sys/ioctl.h>

/* ---- Bulk data with flow control ---------------------------------------- */

/* One side of a transfer: it sends `total` pattern bytes, pausing when
 * told to, and checks the `total` bytes it receives, pausing its reading
 * every STEP bytes for a moment. */
typedef struct flow {
  tapio_transport *t;
  size_t total, sent, got, next_pause;
  int wpaused, read_pauses, write_pauses, lost, lost_code;
  char chunk[64 * 1024];
} flow;

#define STEP (4u << 20)

static void flow_send(flow *f)
{
  while (!f->wpaused && f->sent < f->total && !f->lost) {
    size_t n = f->total - f->sent;
    if (n > sizeof f->chunk)
      n = sizeof f->chunk;
    pattern_fill(f->chunk, n, f->sent);
    f->sent += n; /* before: write may call pause_writing */
    CHECK_OK(tapio_transport_write(f->t, f->chunk, n));
  }
}

static void flow_made(void *ud, tapio_transport *t)
{
  flow *f = ud;
  int small = 64 * 1024, fd = tapio_transport_get_fd(t);
  f->t = t;
  /* small kernel buffers: the layer keeps ciphertext, the stream pauses */
  CHECK(setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof small) == 0);
  CHECK(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small) == 0);
  CHECK_OK(tapio_transport_set_write_buffer_limits(t, 256 * 1024, -1));
  flow_send(f);
}

/* Due 2 ms after a pause: by then the connection may have ended, and its
 * transport been freed after connection_lost. */
static void flow_resume_reading(void *ud)
{
  flow *f = ud;
  if (!f->lost)
    tapio_transport_resume_reading(f->t);
}

static void flow_data(void *ud, tapio_transport *t, const char *data,
                      size_t len)
{
  flow *f = ud;
  long bad = pattern_check(data, len, f->got);
  if (bad >= 0)
    FAIL("byte %zu of the stream is wrong", f->got + (size_t)bad);
  f->got += len;
  if (f->got > f->total)
    FAIL("more bytes than were sent");
  if (f->got >= f->next_pause) {
    f->next_pause += STEP;
    f->read_pauses++;
    CHECK_OK(tapio_transport_pause_reading(t));
    CHECK_OK(tapio_call_later(tapio_transport_get_loop(t), 0.002,
                              flow_resume_reading, f, NULL));
  }
}

static void flow_pause(void *ud, tapio_transport *t)
{
  flow *f = ud;
  (void)t;
  f->wpaused = 1;
  f->write_pauses++;
}

static void flow_resume(void *ud, tapio_transport *t)
{
  flow *f = ud;
  (void)t;
  f->wpaused = 0;
  flow_send(f);
}

static void flow_lost(void *ud, tapio_transport *t, int code, const char *m)
{
  flow *f = ud;
  (void)t;
  (void)m;
  f->lost = 1;
  f->lost_code = code;
}

static const tapio_protocol flow_proto = {
  .size = sizeof(tapio_protocol),
  .connection_made = flow_made,
  .connection_lost = flow_lost,
  .pause_writing = flow_pause,
  .resume_writing = flow_resume,
  .data_received = flow_data,
};

static flow *flow_server;

static int flow_factory(void *ud, tapio_server *s, const tapio_protocol **p,
                        void **pud)
{
  (void)ud;
  (void)s;
  *p = &flow_proto;
  *pud = flow_server;
  return 0;
}

static void on_flow_server(void *ud, int status, tapio_server *s)
{
  CHECK_OK(status);
  *(tapio_server **)ud = s;
}

/* 64 MiB each way at once (less under valgrind), checked byte for byte,
 * with pause_reading and pause_writing on both sides. */
static void bulk_both_ways(void)
{
  static const char *const hosts[] = { "127.0.0.1" };
  tapio_loop *loop = new_loop();
  tapio_options *so = tls_options(loop, server_ctx("server"));
  tapio_options *co = tls_client_options(loop);
  tapio_server *s = NULL;
  flow *a = calloc(1, sizeof *a), *b = calloc(1, sizeof *b);
  conn_wait w = { 0 };
  char host[64];
  int port, fam;
  size_t total = under_valgrind() ? (4u << 20) : (64u << 20);
  a->total = b->total = total;
  a->next_pause = b->next_pause = STEP;
  flow_server = b;
  CHECK_OK(tapio_create_server(loop, hosts, 1, 0, flow_factory, NULL, so,
                               on_flow_server, &s));
  WAIT_FOR(loop, s != NULL);
  CHECK_OK(tapio_server_get_address(s, 0, host, sizeof host, &port, &fam));
  CHECK_OK(tapio_create_connection(loop, "127.0.0.1", port, &flow_proto, a,
                                   co, on_connected, &w));
  WAIT_FOR_T(loop, a->got == total && b->got == total, 120);
  CHECK(a->write_pauses > 0 && b->write_pauses > 0);
  CHECK(a->read_pauses > 0 && b->read_pauses > 0);
  CHECK_EQ(tapio_transport_get_stat(a->t, TAPIO_STAT_BYTES_RECEIVED), total);
  CHECK_OK(tapio_transport_close(a->t));
  WAIT_FOR(loop, a->lost && b->lost);
  CHECK_EQ(a->lost_code, 0);
  CHECK_EQ(b->lost_code, 0);
  tapio_options_free(so);
  tapio_options_free(co);
  tapio_server_release(s);
  free_loop(loop);
  free(a);
  free(b);
}

/* ---- Pairs of recording protocols --------------------------------------- */

/* A connection of the client's, buffered: get_buffer gives buflen bytes. */
static void buffered_client_up(tls_pair *p)
{
  tls_pair_up_opts(p, tls_options(p->loop, server_ctx("server")),
                   tls_client_options(p->loop), &rec_bproto);
}

/* S9: a BufferedProtocol with a 1-byte buffer gets every byte. */
static void buffered_one_byte(void)
{
  tls_pair p;
  char one, big[100000];
  tls_pair_init(&p);
  p.c.buf = &one;
  p.c.buflen = 1;
  buffered_client_up(&p);
  pattern_fill(big, sizeof big, 0);
  CHECK_OK(tapio_transport_write(p.s->t, big, sizeof big));
  CHECK_OK(tapio_transport_close(p.s->t));
  WAIT_FOR(p.loop, p.c.lost);
  CHECK_STR(p.c.log, "made buf:100000 eof lost:0");
  CHECK(p.c.ngetbuf >= 100000); /* one byte a time */
  CHECK(pattern_check(p.c.in, p.c.nin, 0) < 0);
  tls_pair_end(&p);
}

/* What the client had when a call_soon made at its first bytes ran. */
static size_t had_then;

static void note_had(void *ud)
{
  had_then = ((rec *)ud)->nin;
}

/* Resumes reading at once in every buffer_updated, while TLS still holds
 * bytes for it. */
static void pause_resume(rec *r, rec_event ev)
{
  if (ev != EV_BUFUPD)
    return;
  if (r->nin == r->buflen) /* the first bytes */
    CHECK_OK(tapio_call_soon(tapio_transport_get_loop(r->t), note_had, r,
                             NULL));
  CHECK_OK(tapio_transport_pause_reading(r->t));
  CHECK_OK(tapio_transport_resume_reading(r->t));
}

/* Reading resumed while the layer holds bytes goes on from the loop's
 * ready queue, bounded, as the rest of a layered read does: the other
 * callbacks of the loop (here a call_soon) run meanwhile. Resumed at once
 * again and again, a protocol with a small buffer kept the loop reading
 * it, before all else, for as long as the peer's bytes lasted. */
static void resumed_reading_leaves_room(void)
{
  tls_pair p;
  char small[64];
  static char big[1 << 20];
  tls_pair_init(&p);
  p.c.buf = small;
  p.c.buflen = sizeof small;
  p.c.hook = pause_resume;
  buffered_client_up(&p);
  had_then = SIZE_MAX;
  pattern_fill(big, sizeof big, 0);
  CHECK_OK(tapio_transport_write(p.s->t, big, sizeof big));
  WAIT_FOR(p.loop, had_then != SIZE_MAX);
  CHECK(had_then < 16 * 1024); /* 32 passes: 2 KiB; fed, it had 64 KiB */
  WAIT_FOR(p.loop, p.c.nin == sizeof big);
  CHECK(pattern_check(p.c.in, p.c.nin, 0) < 0);
  tls_pair_end(&p);
}

/* ---- Closing ------------------------------------------------------------ */

static void record_end(rec *r, rec_event ev)
{
  if (ev == EV_LOST)
    r->eof_ret = (int)tapio_transport_get_tls_num(r->t, TAPIO_TLS_NUM_END);
}

/* A pair whose client keeps how its session ended in eof_ret. */
static void ended_pair_up(tls_pair *p)
{
  tls_pair_init(p);
  p->c.hook = record_end;
  tls_pair_up(p, server_ctx("server"), client_ctx(), "localhost");
}

/* S18, S19: close() while writing is paused flushes everything, then
 * close_notify goes both ways: a clean end on both sides. */
static void close_flushes_then_notify(void)
{
  tls_pair p;
  size_t offset = 0, total;
  char want[64];
  tls_pair_init(&p);
  p.c.hook = record_end;
  p.sv.tmpl.hook = record_end;
  tls_pair_up(&p, server_ctx("server"), client_ctx(), "localhost");
  CHECK_OK(tapio_transport_pause_reading(p.s->t));
  total = fill_until_paused(&p.c, &offset);
  CHECK_OK(tapio_transport_close(p.c.t));
  CHECK_ERR(tapio_transport_write(p.c.t, "x", 1), TAPIO_ECLOSED); /* S5 */
  CHECK_OK(tapio_transport_resume_reading(p.s->t));
  snprintf(want, sizeof want, "made data:%zu eof lost:0", total);
  tls_pair_lost(&p, "made pause resume lost:0", want);
  CHECK_EQ(p.s->nin, total);
  CHECK(pattern_check(p.s->in, p.s->nin, 0) < 0);
  CHECK_EQ(p.c.eof_ret, TAPIO_TLS_END_CLEAN);
  CHECK_EQ(p.s->eof_ret, TAPIO_TLS_END_CLEAN);
  tls_pair_end(&p);
}

/* A peer that never answers close_notify: ssl_shutdown_timeout ends the
 * wait, connection_lost says so; the close never hangs. */
static void shutdown_timeout(void)
{
  tls_pair p;
  tapio_options *co;
  tls_pair_init(&p);
  p.c.hook = record_end;
  p.sv.tmpl.act[EV_MADE] = ACT_NONE;
  co = tls_client_options(p.loop);
  CHECK_OK(tapio_options_set_double(co, "ssl_shutdown_timeout", 0.3));
  tls_pair_up_opts(&p, tls_options(p.loop, server_ctx("server")), co,
                   &rec_proto);
  CHECK_OK(tapio_transport_pause_reading(p.s->t)); /* never reads again */
  {
    double t0 = now_sec();
    CHECK_OK(tapio_transport_close(p.c.t));
    WAIT_FOR(p.loop, p.c.lost);
    CHECK(now_sec() - t0 >= 0.29);
  }
  CHECK_STR(p.c.log, "made lost:ETIMEDOUT");
  CHECK(strstr(p.c.lost_msg, "TLS shutdown timed out") != NULL);
  CHECK_EQ(p.c.eof_ret, TAPIO_TLS_END_TIMEOUT);
  tls_pair_end(&p);
}

/* The session's end as eof_received saw it. */
static int end_at_eof = -1;

static void record_ends(rec *r, rec_event ev)
{
  if (ev == EV_EOF)
    end_at_eof = (int)tapio_transport_get_tls_num(r->t, TAPIO_TLS_NUM_END);
  record_end(r, ev);
}

/* The peer goes without close_notify (an abort): an end of file all the
 * same, which the session's end tells apart from connection_lost on (in
 * eof_received it is not over: the header says to read it later).
 * eof_received cannot keep a TLS connection half-open (there is no
 * write_eof): it closes anyway. */
static void peer_truncates(void)
{
  tls_pair p;
  tls_pair_init(&p);
  p.c.hook = record_ends;
  p.c.eof_ret = 1; /* asks to stay half-open; record_end reuses it */
  tls_pair_up(&p, server_ctx("server"), client_ctx(), "localhost");
  roundtrip(p.loop, &p.c, p.s);
  CHECK_OK(tapio_transport_abort(p.s->t));
  WAIT_FOR(p.loop, p.c.lost);
  CHECK_STR(p.c.log, "made data:4 eof lost:0");
  CHECK_EQ(end_at_eof, TAPIO_TLS_END_OPEN);
  CHECK_EQ(p.c.eof_ret, TAPIO_TLS_END_TRUNCATED);
  tls_pair_end(&p);
}

/* S20, S21: reading paused while the peer sends data and its close_notify:
 * after resume_reading everything arrives, then the end. */
static void paused_reader_gets_everything(void)
{
  tls_pair p;
  tapio_options *o;
  char *big = malloc(1 << 20);
  tls_pair_init(&p);
  o = tls_options(p.loop, server_ctx("server"));
  /* The server's close waits this long for the paused client's
   * close_notify, flushing included: long enough for valgrind to
   * encrypt the megabyte on a busy machine (0.2 s was not, once). */
  CHECK_OK(tapio_options_set_double(o, "ssl_shutdown_timeout",
                                    test_timeout() / 10));
  tls_pair_up_opts(&p, o, tls_client_options(p.loop), &rec_proto);
  CHECK_OK(tapio_transport_pause_reading(p.c.t));
  pattern_fill(big, 1 << 20, 0);
  CHECK_OK(tapio_transport_write(p.s->t, big, 1 << 20));
  CHECK_OK(tapio_transport_close(p.s->t));
  WAIT_FOR(p.loop, p.s->lost); /* its close_notify is out */
  CHECK_STR(p.c.log, "made");
  CHECK_OK(tapio_transport_resume_reading(p.c.t));
  WAIT_FOR(p.loop, p.c.lost);
  CHECK_STR(p.c.log, "made data:1048576 eof lost:0");
  CHECK(pattern_check(p.c.in, p.c.nin, 0) < 0);
  free(big);
  tls_pair_end(&p);
}

/* An ended pair whose client read the session tickets (a roundtrip),
 * then paused reading; the server then wrote text. */
static void paused_client_sent(tls_pair *p, const char *text)
{
  ended_pair_up(p);
  roundtrip(p->loop, &p->c, p->s);
  CHECK_OK(tapio_transport_pause_reading(p->c.t));
  CHECK_OK(tapio_transport_write(p->s->t, text, strlen(text)));
}

/* Bytes waiting in the socket, not yet read. */
static int unread(tapio_transport *t)
{
  int n = 0;
  CHECK(ioctl(tapio_transport_get_fd(t), FIONREAD, &n) == 0);
  return n;
}

/* S21: reading paused, the peer sends bytes, then its socket's end
 * without close_notify (an abort): after resume_reading the bytes come,
 * then eof_received and connection_lost(0), the session truncated.
 * (uvloop's test of it, test_shutdown_timeout_handler_not_set, expects
 * them dropped; tapio gives the protocol what the peer sent.) */
static void paused_reader_then_truncation(void)
{
  tls_pair p;
  paused_client_sent(&p, "extra bytes");
  CHECK_OK(tapio_transport_abort(p.s->t));
  WAIT_FOR(p.loop, p.s->lost && unread(p.c.t) > 0);
  CHECK_STR(p.c.log, "made data:4");
  CHECK_OK(tapio_transport_resume_reading(p.c.t));
  WAIT_FOR(p.loop, p.c.lost);
  CHECK_STR(p.c.log, "made data:15 eof lost:0");
  CHECK(memcmp(p.c.in + 4, "extra bytes", 11) == 0);
  CHECK_EQ(p.c.eof_ret, TAPIO_TLS_END_TRUNCATED);
  tls_pair_end(&p);
}

/* S16: bytes that are not TLS in the middle of a session fail it with a
 * TLS error that says why; close() afterwards is harmless. Bytes after the
 * peer's close_notify are dropped without an error (bpo-39951). */
static void garbage_mid_stream(void)
{
  tls_pair p;
  int fd;
  tls_pair_init(&p);
  tls_pair_up(&p, server_ctx("server"), client_ctx(), "localhost");
  roundtrip(p.loop, &p.c, p.s);
  fd = tapio_transport_get_fd(p.s->t);
  CHECK(write(fd, "\x17\x03\x03\x00\x05garbage", 12) == 12);
  WAIT_FOR(p.loop, p.c.lost);
  CHECK_STR(p.c.log, "made data:4 lost:ETLS");
  CHECK(strstr(p.c.lost_msg, "TLS failed: ") != NULL);
  tls_pair_end(&p);
}

static void close_notify_then_garbage(rec *r, rec_event ev)
{
  if (ev == EV_DATA && r->nin == 4) {
    int fd = tapio_transport_get_fd(r->t);
    CHECK_OK(tapio_transport_close(r->t)); /* close_notify goes now */
    CHECK(write(fd, "junk after close_notify", 23) == 23);
  }
}

static void data_after_close_notify(void)
{
  tls_pair p;
  tls_pair_init(&p);
  p.sv.tmpl.hook = close_notify_then_garbage;
  tls_pair_up(&p, server_ctx("server"), client_ctx(), "localhost");
  CHECK_OK(tapio_transport_write(p.c.t, "ping", 4));
  WAIT_FOR(p.loop, p.c.lost);
  CHECK_STR(p.c.log, "made eof lost:0");
  tls_pair_end(&p);
}

/* S5: what the peer sends after our close() (before its close_notify) is
 * read and dropped: no data_received after close, no error, a clean end
 * both ways. */
static void data_after_our_close(void)
{
  tls_pair p;
  ended_pair_up(&p);
  CHECK_OK(tapio_transport_close(p.c.t)); /* close_notify goes now */
  CHECK_OK(tapio_transport_write(p.s->t, "late", 4)); /* crosses it */
  tls_pair_lost(&p, "made lost:0", "made eof lost:0");
  CHECK_EQ(p.c.eof_ret, TAPIO_TLS_END_CLEAN);
  tls_pair_end(&p);
}

/* uvloop's close() while reading is paused: the close_notify exchange
 * still runs to its end, connection_lost(0) comes; the record that
 * waited is dropped, and (tapio's order: lua/README.md "Differences")
 * no eof_received after close. */
static void close_while_paused_reading(void)
{
  tls_pair p;
  paused_client_sent(&p, "trailing data");
  WAIT_FOR(p.loop, unread(p.c.t) > 0);
  CHECK_OK(tapio_transport_close(p.c.t));
  tls_pair_lost(&p, "made data:4 lost:0", "made data:4 eof lost:0");
  CHECK_EQ(p.c.eof_ret, TAPIO_TLS_END_CLEAN);
  tls_pair_end(&p);
}

/* uvloop's test_renegotiation (TLS 1.2): the server asks for a new
 * handshake (SSL_renegotiate on the SSL * it is given, as a program
 * using OpenSSL itself would) while 1 MiB goes each way; both sides go
 * through it, and every byte arrives once, in order. */
static void renegotiation_mid_stream(void)
{
  enum { BIG = 1 << 20 };
  tapio_tls_context *cc = client_ctx();
  char *big = malloc(BIG);
  tls_pair p;
  SSL *ssl;
  CHECK_OK(tapio_tls_context_set_versions(cc, 0, TAPIO_TLS_1_2));
  tls_pair_init(&p);
  tls_pair_up(&p, server_ctx("server"), cc, "localhost");
  ssl = tapio_transport_get_ssl(p.s->t);
  pattern_fill(big, BIG, 0);
  CHECK_OK(tapio_transport_write(p.c.t, big, BIG));
  CHECK(SSL_renegotiate(ssl) == 1);
  CHECK_OK(tapio_transport_write(p.s->t, big, BIG)); /* asks for it */
  WAIT_FOR(p.loop, p.s->nin == BIG && p.c.nin == BIG);
  CHECK(pattern_check(p.s->in, BIG, 0) < 0);
  CHECK(pattern_check(p.c.in, BIG, 0) < 0);
  CHECK_EQ(SSL_num_renegotiations(ssl), 1);
  CHECK_EQ(SSL_renegotiate_pending(ssl), 0); /* done */
  roundtrip(p.loop, &p.c, p.s);
  CHECK_OK(tapio_transport_close(p.c.t));
  WAIT_FOR(p.loop, p.c.lost && p.s->lost);
  CHECK(strstr(p.c.log, "BAD") == NULL && strstr(p.s->log, "BAD") == NULL);
  CHECK_EQ(p.c.lost_code, 0);
  CHECK_EQ(p.s->lost_code, 0);
  CHECK_EQ(p.c.nin, BIG + 4);
  free(big);
  tls_pair_end(&p);
}

/* ---- TLS over a Unix socket -------------------------------------------- */

static void on_unix_server(void *ud, int status, tapio_server *s)
{
  srv *sv = ud;
  sv->done++;
  sv->status = status;
  sv->s = s;
}

static void over_unix_socket(void)
{
  tapio_loop *loop = new_loop();
  tapio_options *so = tls_options(loop, server_ctx("server"));
  tapio_options *co = tls_options(loop, client_ctx());
  char dir[] = "/tmp/tapio-tls-XXXXXX", path[128];
  conn_wait w = { 0 };
  srv sv;
  rec c;
  CHECK(mkdtemp(dir) != NULL);
  snprintf(path, sizeof path, "%s/s", dir);
  srv_init(&sv, loop);
  rec_init(&c);
  CHECK_OK(tapio_create_unix_server(loop, path, srv_factory, &sv, so,
                                    on_unix_server, &sv));
  WAIT_FOR(loop, sv.done);
  CHECK_OK(sv.status);
  /* a name is needed: a Unix path is no host to check */
  CHECK_ERR(tapio_create_unix_connection(loop, path, &rec_proto, &c, co,
                                         never_connected, NULL),
            TAPIO_EINVAL);
  CHECK_OK(tapio_options_set_str(co, "server_hostname", "localhost"));
  w.r = &c;
  CHECK_OK(tapio_create_unix_connection(loop, path, &rec_proto, &c, co,
                                        on_connected, &w));
  CHECK_OK(connect_wait(loop, &w));
  roundtrip(loop, &c, srv_wait_conn(&sv, 0));
  CHECK_STR(tls_info(c.t, TAPIO_TLS_INFO_VERSION), "TLSv1.3");
  tapio_options_free(so);
  tapio_options_free(co);
  srv_release_and_free(&sv, loop);
  rec_free(&c);
  rmdir(dir);
}

/* ---- start_tls -------------------------------------------------------- */

/* The server's side of a STARTTLS exchange: on its line, it answers (or
 * not), then upgrades with whatever followed the line in the same read;
 * once upgraded it says hello at once. */
typedef struct starttls_srv {
  const char *line;   /* "STARTTLS\r\n" */
  const char *answer; /* written in the clear first, or NULL */
  const char *ctx;    /* the certificate */
  size_t clear;       /* or: upgrade after this many bytes */
  started st;
  size_t extra;       /* bytes fed to the handshake */
  int upgraded;
} starttls_srv;

static void starttls_srv_hook(rec *r, rec_event ev)
{
  starttls_srv *ss = r->user;
  size_t at = ss->clear;
  if (ev != EV_DATA || ss->upgraded)
    return;
  if (!at) {
    char *eol = memmem(r->in, r->nin, ss->line, strlen(ss->line));
    if (!eol)
      return;
    at = (size_t)(eol - r->in) + strlen(ss->line);
  }
  if (r->nin < at)
    return;
  ss->upgraded = 1;
  ss->extra = r->nin - at;
  if (ss->answer)
    CHECK_OK(tapio_transport_write(r->t, ss->answer, strlen(ss->answer)));
  r->nin = at; /* what follows is TLS: fed to the handshake */
  start_tls(r, &ss->st, server_ctx(ss->ctx), NULL, r->in + at, ss->extra);
}

/* A plain server whose connections upgrade as ss says, and a plain
 * client connected to it. */
static void starttls_pair(tls_pair *p, starttls_srv *ss)
{
  tls_pair_init(p);
  srv_start(&p->sv, p->loop);
  p->sv.tmpl.hook = starttls_srv_hook;
  p->sv.tmpl.user = ss;
  CHECK_OK(connect_tcp(p->loop, "127.0.0.1", p->sv.port, &p->c, NULL));
  p->s = srv_wait_conn(&p->sv, 0);
}

/* The STARTTLS of SMTP: a line, an answer in the clear, the upgrade; each
 * side writes as soon as its handshake is done (bytes in flight both
 * ways), the client even before (sent once it is done). */
static void starttls_answered(void)
{
  tls_pair p;
  starttls_srv ss = { "STARTTLS\r\n", "GO\r\n", "server", 0, { 0 }, 0, 0 };
  started cst;
  starttls_pair(&p, &ss);
  CHECK_OK(tapio_transport_write(p.c.t, "STARTTLS\r\n", 10));
  WAIT_FOR(p.loop, p.c.nin == 4);
  CHECK(memcmp(p.c.in, "GO\r\n", 4) == 0);
  start_tls(&p.c, &cst, client_ctx(), "localhost", NULL, 0);
  CHECK_OK(tapio_transport_write(p.c.t, "early ", 6)); /* during it */
  WAIT_FOR(p.loop, cst.done && ss.st.done);
  CHECK_OK(cst.status);
  CHECK_OK(ss.st.status);
  CHECK(cst.t == p.c.t);
  CHECK_OK(tapio_transport_write(p.s->t, "hello from server", 17));
  CHECK_OK(tapio_transport_write(p.c.t, "hello from client", 17));
  WAIT_FOR(p.loop, p.c.nin == 21 && p.s->nin == 33);
  CHECK(memcmp(p.c.in, "GO\r\nhello from server", 21) == 0);
  CHECK(memcmp(p.s->in, "STARTTLS\r\nearly hello from client", 33) == 0);
  CHECK_STR(tls_info(p.c.t, TAPIO_TLS_INFO_VERSION), "TLSv1.3");
  CHECK_STR(tls_info(p.s->t, TAPIO_TLS_INFO_VERSION), "TLSv1.3");
  CHECK_OK(tapio_transport_close(p.c.t));
  /* the client: connection_made once */
  tls_pair_lost(&p, "made data:21 lost:0", "made data:33 eof lost:0");
  tls_pair_end(&p);
}

/* R19 (cpython 142352, uvloop 707): the ClientHello arrives in the same
 * read as the STARTTLS line; what the reader already took is given to
 * start_tls, and nothing is lost. */
static void starttls_pipelined(void)
{
  tls_pair p;
  starttls_srv ss = { "STARTTLS\r\n", NULL, "server", 0, { 0 }, 0, 0 };
  started cst;
  starttls_pair(&p, &ss);
  CHECK_OK(tapio_transport_pause_reading(p.s->t)); /* let both arrive */
  CHECK_OK(tapio_transport_write(p.c.t, "STARTTLS\r\n", 10));
  start_tls(&p.c, &cst, client_ctx(), "localhost", NULL, 0);
  run_for(p.loop, 0.05);
  CHECK_OK(tapio_transport_resume_reading(p.s->t));
  WAIT_FOR(p.loop, cst.done && ss.st.done);
  CHECK_OK(cst.status);
  CHECK_OK(ss.st.status);
  CHECK(ss.extra > 100); /* the ClientHello came with the line */
  roundtrip(p.loop, &p.c, p.s);
  tls_pair_end(&p);
}

/* cpython 109051: start_tls while writing is paused; the clear bytes go
 * first, the handshake after them, and resume_writing comes. */
static void starttls_while_paused(void)
{
  tls_pair p;
  starttls_srv ss = { NULL, NULL, "server", 0, { 0 }, 0, 0 };
  started cst;
  size_t offset = 0;
  starttls_pair(&p, &ss);
  CHECK_OK(tapio_transport_pause_reading(p.s->t));
  fill_until_paused(&p.c, &offset);
  ss.clear = offset;
  start_tls(&p.c, &cst, client_ctx(), "localhost", NULL, 0);
  CHECK_OK(tapio_transport_resume_reading(p.s->t));
  WAIT_FOR_T(p.loop, cst.done && ss.st.done, 30);
  CHECK_OK(cst.status);
  CHECK_OK(ss.st.status);
  CHECK(strstr(p.c.log, "pause resume") != NULL);
  CHECK(pattern_check(p.s->in, offset, 0) < 0);
  p.c.nin = 0;
  p.s->nin = offset;
  roundtrip(p.loop, &p.c, p.s);
  tls_pair_end(&p);
}

/* A TLS pair with TLS inside it: the client asks with a line, its inner
 * ClientHello right behind it, inside the outer session. */
static void tls_pair_inner(tls_pair *p, starttls_srv *ss)
{
  started cst;
  tls_pair_init(p);
  tls_pair_up(p, server_ctx("server"), client_ctx(), "localhost");
  p->s->hook = starttls_srv_hook;
  p->s->user = ss;
  CHECK_OK(tapio_transport_write(p->c.t, "INNER\r\n", 7));
  start_tls(&p->c, &cst, client_ctx(), "localhost", NULL, 0);
  WAIT_FOR(p->loop, cst.done && ss->st.done);
  CHECK_OK(cst.status);
  CHECK_OK(ss->st.status);
}

/* S23: TLS inside TLS. */
static void tls_inside_tls(void)
{
  tls_pair p;
  starttls_srv ss = { "INNER\r\n", NULL, "rsa", 0, { 0 }, 0, 0 };
  tls_pair_inner(&p, &ss);
  roundtrip(p.loop, &p.c, p.s);
  /* the inner session is the one the transport answers for: its wire
   * bytes are the outer session's plain bytes */
  CHECK(tapio_transport_get_tls_num(p.c.t, TAPIO_TLS_NUM_HANDSHAKE_USEC) > 0);
  CHECK_CMP(tapio_transport_get_tls_num(p.c.t, TAPIO_TLS_NUM_WIRE_BYTES_SENT),
            >, tapio_transport_get_stat(p.c.t, TAPIO_STAT_BYTES_SENT));
  CHECK_OK(tapio_transport_close(p.c.t));
  WAIT_FOR(p.loop, p.c.lost && p.s->lost);
  CHECK_STR(p.c.log, "made data:4 lost:0");
  CHECK(strstr(p.s->log, "eof lost:0") != NULL);
  tls_pair_end(&p);
}

/* Found by spec/c/test_chaos.c: TLS inside TLS, closed and waiting for
 * the peer's inner close_notify, when the outer session fails under it
 * (a reset): connection_lost comes once, with the reset (it came twice,
 * the second on freed memory). */
static void inner_closing_outer_reset(void)
{
  tls_pair p;
  starttls_srv ss = { "INNER\r\n", NULL, "rsa", 0, { 0 }, 0, 0 };
  struct linger lg = { 1, 0 };
  tls_pair_inner(&p, &ss);
  CHECK_OK(tapio_transport_close(p.c.t)); /* inner close_notify sent */
  CHECK(setsockopt(tapio_transport_get_fd(p.s->t), SOL_SOCKET, SO_LINGER,
                   &lg, sizeof lg) == 0);
  CHECK_OK(tapio_transport_abort(p.s->t)); /* before it answers: RST */
  WAIT_FOR(p.loop, p.c.lost && p.s->lost);
  spin(p.loop, 5); /* a second connection_lost would come now */
  CHECK_STR(p.c.log, "made lost:ECONNRESET");
  tls_pair_end(&p);
}

/* The plain protocol a buffered one hands over to in its buffer_updated
 * once it has 5 bytes. */
static rec *swap_to;

static void swap_at_five(rec *r, rec_event ev)
{
  if (ev == EV_BUFUPD && r->nin == 5) {
    swap_to->made = 1; /* it takes over a made connection */
    swap_to->t = r->t;
    CHECK_OK(tapio_transport_set_protocol(r->t, &rec_proto, swap_to));
  }
}

/* S9: start_tls with a BufferedProtocol whose buffer is 1 byte, which
 * sets a plain Protocol mid-stream: every byte comes once, in order, the
 * first 5 one at a time; connection_made came once in all (before the
 * upgrade). */
static void starttls_buffered_then_plain(void)
{
  tls_pair p;
  starttls_srv ss = { "STARTTLS\r\n", NULL, "server", 0, { 0 }, 0, 0 };
  tapio_tls_context *cc = client_ctx();
  tapio_options *o;
  started cst = { 0 };
  rec b, plain;
  char one;
  starttls_pair(&p, &ss);
  rec_init(&b);
  rec_init(&plain);
  b.buf = &one;
  b.buflen = 1;
  b.made = 1;
  b.t = p.c.t;
  b.hook = swap_at_five;
  swap_to = &plain;
  CHECK_OK(tapio_transport_write(p.c.t, "STARTTLS\r\n", 10));
  o = new_options(p.loop);
  CHECK_OK(tapio_options_set_str(o, "server_hostname", "localhost"));
  cst.loop = p.loop;
  CHECK_OK(tapio_transport_start_tls(p.c.t, &rec_bproto, &b, cc, o, NULL, 0,
                                     on_started, &cst));
  tapio_options_free(o);
  tapio_tls_context_release(cc);
  WAIT_FOR(p.loop, cst.done && ss.st.done);
  CHECK_OK(cst.status);
  CHECK_OK(ss.st.status);
  CHECK_OK(tapio_transport_write(p.s->t, "0123456789", 10));
  WAIT_FOR(p.loop, plain.nin == 5);
  CHECK(memcmp(b.in, "01234", 5) == 0);
  CHECK(memcmp(plain.in, "56789", 5) == 0);
  CHECK(b.ngetbuf >= 5); /* and one more when a read found no bytes */
  CHECK_OK(tapio_transport_close(p.c.t));
  WAIT_FOR(p.loop, plain.lost && p.s->lost);
  CHECK_STR(p.c.log, "made");
  CHECK_STR(b.log, "buf:5");
  CHECK_STR(plain.log, "data:5 lost:0");
  rec_free(&b);
  rec_free(&plain);
  tls_pair_end(&p);
}

/* A TLS server's connection that upgrades again (TLS inside TLS) from
 * its connection_made, its reading paused (user: a started). */
static void inner_from_made(rec *r, rec_event ev)
{
  if (ev == EV_MADE) {
    CHECK_OK(tapio_transport_pause_reading(r->t));
    start_tls(r, r->user, server_ctx("rsa"), NULL, NULL, 0);
  }
}

/* The client asks for the inner session as soon as the outer one is
 * made: its ClientHello may come with its last outer flight. */
static void inner_at_once(rec *r, rec_event ev)
{
  if (ev == EV_MADE)
    start_tls(r, r->user, client_ctx(), "localhost", NULL, 0);
}

/* S23: TLS inside TLS on the server's side, upgraded from connection_made
 * with reading paused (the handshake reads all the same; the protocol's
 * pause stays, on the one transport), then 1 MiB up and a writelines
 * down through both sessions. */
static void tls_inside_tls_from_made(void)
{
  static const void *const bufs[] = { "SP", "A", "M" };
  static const size_t lens[] = { 2, 1, 1 };
  char *big = malloc(1 << 20);
  started sst = { 0 }, cst = { 0 };
  tls_pair p;
  tls_pair_init(&p);
  p.sv.tmpl.hook = inner_from_made;
  p.sv.tmpl.user = &sst;
  p.c.hook = inner_at_once;
  p.c.user = &cst;
  tls_pair_up(&p, server_ctx("server"), client_ctx(), "localhost");
  WAIT_FOR(p.loop, cst.done && sst.done);
  CHECK_OK(cst.status);
  CHECK_OK(sst.status);
  CHECK_EQ(tapio_transport_is_reading(p.s->t), 0);
  pattern_fill(big, 1 << 20, 0);
  CHECK_OK(tapio_transport_write(p.c.t, big, 1 << 20));
  CHECK_OK(tapio_transport_resume_reading(p.s->t));
  WAIT_FOR(p.loop, p.s->nin == 1 << 20);
  CHECK(pattern_check(p.s->in, p.s->nin, 0) < 0);
  CHECK_OK(tapio_transport_writelines(p.s->t, bufs, lens, 3));
  WAIT_FOR(p.loop, p.c.nin == 4);
  CHECK(memcmp(p.c.in, "SPAM", 4) == 0);
  CHECK_OK(tapio_transport_close(p.c.t));
  tls_pair_lost(&p, "made pause resume data:4 lost:0",
                "made data:1048576 eof lost:0");
  free(big);
  tls_pair_end(&p);
}

/* A client c (made here) in start_tls's handshake (completion st) with
 * a raw peer that read its ClientHello and never answers; the peer. */
static int starttls_unanswered(tapio_loop *loop, rec *c, started *st)
{
  char buf[512];
  int peer;
  rec_init(c);
  peer = pair_raw(loop, c);
  start_tls(c, st, client_ctx(), "localhost", NULL, 0);
  CHECK(raw_wait(loop, peer, POLLIN)); /* the ClientHello */
  CHECK(recv(peer, buf, sizeof buf, 0) > 0);
  return peer;
}

/* After a close during starttls_unanswered's handshake, once c is gone:
 * the completion said cancelled, connection_lost(0) came once, the peer
 * got an end of file; how many bytes it got before it. */
static size_t cancelled_by_close(tapio_loop *loop, rec *c, started *st,
                                 int peer)
{
  char buf[512];
  size_t n;
  CHECK_EQ(st->done, 1);
  CHECK_ERR(st->status, TAPIO_ECANCELED);
  CHECK_STR(c->log, "made lost:0");
  CHECK_EQ(raw_recv_until_eof(loop, peer, buf, sizeof buf, &n), 0);
  return n;
}

/* S4: close() during start_tls's handshake aborts; the completion says
 * it was cancelled, connection_lost comes once. */
static void close_during_starttls(void)
{
  tapio_loop *loop = new_loop();
  started st;
  rec c;
  int peer = starttls_unanswered(loop, &c, &st);
  CHECK_OK(tapio_transport_close(c.t));
  WAIT_FOR(loop, c.lost);
  cancelled_by_close(loop, &c, &st, peer);
  end_pair(loop, &c, peer);
}

/* In connection_lost: whether a cipher is told (eof_ret: the call's). */
static void cipher_at_lost(rec *r, rec_event ev)
{
  char buf[64];
  if (ev == EV_LOST)
    r->eof_ret = tapio_transport_get_tls_info(r->t, TAPIO_TLS_INFO_CIPHER,
                                              buf, sizeof buf, NULL);
}

/* During start_tls's handshake there is no cipher yet, as there is no
 * version (Python's cipher() is None): not OpenSSL's "(NONE)"; nor
 * after it failed. The name to check is known already. */
static void info_during_handshake(void)
{
  tapio_loop *loop = new_loop();
  started st;
  rec c;
  char buf[512];
  int peer = starttls_unanswered(loop, &c, &st);
  CHECK_ERR(tapio_transport_get_tls_info(c.t, TAPIO_TLS_INFO_CIPHER, buf,
                                         sizeof buf, NULL),
            TAPIO_ENOENT);
  CHECK_ERR(tapio_transport_get_tls_info(c.t, TAPIO_TLS_INFO_VERSION, buf,
                                         sizeof buf, NULL),
            TAPIO_ENOENT);
  CHECK_EQ(tapio_transport_get_tls_num(c.t, TAPIO_TLS_NUM_SECRET_BITS), 0);
  CHECK_STR(tls_info(c.t, TAPIO_TLS_INFO_SERVER_HOSTNAME), "localhost");
  c.hook = cipher_at_lost;
  CHECK_OK(tapio_transport_abort(c.t));
  WAIT_FOR(loop, c.lost && st.done);
  CHECK_ERR(c.eof_ret, TAPIO_ENOENT);
  end_pair(loop, &c, peer);
}

/* S4 with bytes written during the handshake (not yet sent: the
 * handshake holds them): the close aborts all the same, at once, and
 * does not wait for a handshake the peer never answers. */
static void close_during_starttls_with_writes(void)
{
  tapio_loop *loop = new_loop();
  started st;
  rec c;
  int peer = starttls_unanswered(loop, &c, &st);
  CHECK_OK(tapio_transport_write(c.t, "queued", 6));
  CHECK_EQ(tapio_transport_get_write_buffer_size(c.t), 6);
  CHECK_OK(tapio_transport_close(c.t));
  WAIT_FOR_T(loop, c.lost, 5.0);
  /* "queued" never went out, in the clear or not */
  CHECK_EQ(cancelled_by_close(loop, &c, &st, peer), 0);
  end_pair(loop, &c, peer);
}

/* S10: start_tls against a peer that never answers ends after its
 * ssl_handshake_timeout; the connection goes with that error. */
static void starttls_timeout(void)
{
  tapio_loop *loop = new_loop();
  tapio_options *o = new_options(loop);
  started st;
  rec c;
  int peer;
  rec_init(&c);
  peer = pair_raw(loop, &c);
  CHECK_OK(tapio_options_set_str(o, "server_hostname", "localhost"));
  CHECK_OK(tapio_options_set_double(o, "ssl_handshake_timeout", 0.2));
  start_tls_opts(&c, &st, client_ctx(), o, NULL, 0);
  tapio_options_free(o);
  WAIT_FOR(loop, st.done && c.lost);
  CHECK_ERR(st.status, TAPIO_ETIMEDOUT);
  CHECK(strstr(st.msg, "taking longer than 0.2 seconds") != NULL);
  CHECK_STR(c.log, "made lost:ETIMEDOUT");
  end_pair(loop, &c, peer);
}

/* S25, S18: 25 clients at once writing lists of buffers; each gets its
 * echo and a clean end. The server's recs echo with counters of their
 * own, found by their place in the server's list. */
static srv *echo_srv;
static size_t echo_done[SRV_MAX];

static void echo_each(rec *r, rec_event ev)
{
  size_t i;
  for (i = 0; i < echo_srv->n && echo_srv->conns[i] != r; i++)
    ;
  if (ev == EV_DATA && r->nin > echo_done[i]) {
    CHECK_OK(tapio_transport_write(r->t, r->in + echo_done[i],
                                   r->nin - echo_done[i]));
    echo_done[i] = r->nin;
  }
}

static void many_clients_writelines(void)
{
  static const void *const bufs[] = { "one,", "two,", "three" };
  static const size_t lens[] = { 4, 4, 5 };
  enum { N = 25 };
  tapio_loop *loop = new_loop();
  tapio_options *so = tls_options(loop, server_ctx("server"));
  tapio_options *co = tls_client_options(loop);
  conn_wait w[N];
  rec c[N];
  srv sv;
  int i;
  srv_init(&sv, loop);
  echo_srv = &sv;
  sv.tmpl.hook = echo_each;
  CHECK_OK(tapio_options_set_double(so, "ssl_handshake_timeout", 100));
  tls_srv_listen(&sv, so);
  for (i = 0; i < N; i++) { /* all at once: 25 handshakes in flight */
    rec_init(&c[i]);
    memset(&w[i], 0, sizeof w[i]);
    w[i].r = &c[i];
    CHECK_OK(tapio_create_connection(loop, "127.0.0.1", sv.port, &rec_proto,
                                     &c[i], co, on_connected, &w[i]));
  }
  for (i = 0; i < N; i++) {
    WAIT_FOR(loop, w[i].done);
    CHECK_OK(w[i].status);
    CHECK_OK(tapio_transport_writelines(c[i].t, bufs, lens, 3));
  }
  for (i = 0; i < N; i++) {
    WAIT_FOR(loop, c[i].nin == 13);
    CHECK(memcmp(c[i].in, "one,two,three", 13) == 0);
    CHECK_OK(tapio_transport_close(c[i].t));
  }
  for (i = 0; i < N; i++)
    WAIT_FOR(loop, c[i].lost && sv.conns[i]->lost);
  for (i = 0; i < N; i++) {
    CHECK_STR(c[i].log, "made data:13 lost:0");
    rec_free(&c[i]);
  }
  tapio_options_free(so);
  tapio_options_free(co);
  srv_release_and_free(&sv, loop);
}

/* S7: set_protocol on a TLS transport: the next bytes go to the new one. */
static void set_protocol_swaps(void)
{
  tls_pair p;
  rec other;
  tls_pair_init(&p);
  rec_init(&other);
  tls_pair_up(&p, server_ctx("server"), client_ctx(), "localhost");
  roundtrip(p.loop, &p.c, p.s);
  other.made = 1; /* it takes over a made connection */
  other.t = p.c.t;
  CHECK_OK(tapio_transport_set_protocol(p.c.t, &rec_proto, &other));
  CHECK_OK(tapio_transport_write(p.s->t, "swapped", 7));
  WAIT_FOR(p.loop, other.nin == 7);
  CHECK_OK(tapio_transport_close(p.c.t));
  WAIT_FOR(p.loop, other.lost);
  CHECK_STR(other.log, "data:7 lost:0");
  CHECK_STR(p.c.log, "made data:4");
  rec_free(&other);
  tls_pair_end(&p);
}

/* S12 and friends: what start_tls refuses at once. */
static void starttls_arguments(void)
{
  tapio_loop *loop = new_loop();
  tapio_tls_context *cc = client_ctx();
  tapio_options *o = new_options(loop);
  started st;
  rec c;
  int peer;
  rec_init(&c);
  peer = pair_raw(loop, &c);
  CHECK_ERR(tapio_transport_start_tls(c.t, &rec_proto, &c, NULL, NULL, NULL,
                                      0, on_started, &st), TAPIO_EINVAL);
  CHECK_ERR(tapio_transport_start_tls(NULL, &rec_proto, &c, cc, NULL, NULL,
                                      0, on_started, &st), TAPIO_EINVAL);
  CHECK_ERR(tapio_transport_start_tls(c.t, &rec_proto, &c, cc, NULL, "x", 0,
                                      NULL, &st), TAPIO_EINVAL);
  /* a client that checks names needs one */
  CHECK_ERR(tapio_transport_start_tls(c.t, &rec_proto, &c, cc, NULL, NULL,
                                      0, on_started, &st), TAPIO_EINVAL);
  /* "ssl" is start_tls's argument, not an option of it */
  CHECK_OK(tapio_options_set_tls(o, "ssl", cc));
  CHECK_ERR(tapio_transport_start_tls(c.t, &rec_proto, &c, cc, o, NULL, 0,
                                      on_started, &st), TAPIO_EINVAL);
  tapio_options_free(o);
  o = new_options(loop);
  CHECK_OK(tapio_options_set_str(o, "server_hostname", "localhost"));
  memset(&st, 0, sizeof st);
  st.loop = loop;
  /* S1: the timeouts are seconds > 0 */
  CHECK_ERR(tapio_options_set_double(o, "ssl_handshake_timeout", 0),
            TAPIO_EINVAL);
  CHECK_ERR(tapio_options_set_double(o, "ssl_handshake_timeout", -1),
            TAPIO_EINVAL);
  CHECK_ERR(tapio_options_set_double(o, "ssl_shutdown_timeout", 0),
            TAPIO_EINVAL);
  CHECK_OK(tapio_transport_start_tls(c.t, &rec_proto, &c, cc, o, NULL, 0,
                                     on_started, &st));
  /* a second start_tls during the first's handshake says why */
  CHECK_ERR(tapio_transport_start_tls(c.t, &rec_proto, &c, cc, o, NULL, 0,
                                      on_started, &st), TAPIO_EBUSY);
  CHECK_STR(tapio_loop_error_message(loop),
            "start_tls: the transport's TLS handshake is still under way");
  CHECK_OK(tapio_transport_abort(c.t));
  CHECK_ERR(tapio_transport_start_tls(c.t, &rec_proto, &c, cc, o, NULL, 0,
                                      on_started, &st), TAPIO_ECLOSED);
  CHECK_STR(tapio_loop_error_message(loop),
            "start_tls: the transport is closing");
  WAIT_FOR(loop, st.done && c.lost);
  CHECK_ERR(st.status, TAPIO_ECANCELED);
  tapio_options_free(o);
  tapio_tls_context_release(cc);
  end_pair(loop, &c, peer);
}

/* S12: TLS over a pipe is refused in words, calling nobody. */
static void starttls_not_on_pipes(void)
{
  tapio_loop *loop = new_loop();
  tapio_tls_context *cc = client_ctx();
  conn_wait w = { 0 };
  started st = { 0 };
  rec r;
  int fds[2];
  rec_init(&r);
  CHECK(pipe(fds) == 0);
  w.r = &r;
  CHECK_OK(tapio_connect_write_pipe(loop, fds[1], &rec_proto, &r, NULL,
                                    on_connected, &w));
  CHECK_OK(connect_wait(loop, &w));
  CHECK_ERR(tapio_transport_start_tls(r.t, &rec_proto, &r, cc, NULL, NULL, 0,
                                      on_started, &st), TAPIO_ENOTSUP);
  CHECK_STR(tapio_loop_error_message(loop), "start_tls: TLS goes over a "
            "stream transport (TCP or Unix) only");
  CHECK_OK(tapio_transport_close(r.t));
  WAIT_FOR(loop, r.lost);
  CHECK_EQ(st.done, 0);
  CHECK_STR(r.log, "made lost:0");
  close(fds[0]);
  tapio_tls_context_release(cc);
  end_pair(loop, &r, -1);
}

/* start_tls on a transport that is closing (a close still flushing, or a
 * write_eof) fails at once and in words; nothing is called back, the
 * protocol stays the old one, whose close then ends as it would have. */
static void starttls_while_closing(void)
{
  tapio_loop *loop = new_loop();
  tapio_tls_context *cc = client_ctx();
  tapio_options *o = new_options(loop);
  started st = { 0 };
  rec c, other;
  size_t offset = 0, total;
  int status, peer;
  rec_init(&c);
  rec_init(&other);
  CHECK_OK(tapio_options_set_str(o, "server_hostname", "localhost"));
  peer = pair_raw(loop, &c);
  total = fill_until_buffered(c.t, &offset); /* the peer reads nothing */
  CHECK_OK(tapio_transport_close(c.t));
  CHECK_ERR(tapio_transport_start_tls(c.t, &rec_proto, &other, cc, o, NULL,
                                      0, on_started, &st), TAPIO_ECLOSED);
  CHECK_STR(tapio_loop_error_message(loop),
            "start_tls: the transport is closing");
  CHECK_EQ(raw_drain_pattern(loop, peer, &status), total); /* all of it */
  CHECK_EQ(status, 0);
  WAIT_FOR(loop, c.lost);
  CHECK_STR(c.log, "made lost:0");
  close(peer);
  rec_init(&c);
  peer = pair_raw(loop, &c);
  CHECK_OK(tapio_transport_write_eof(c.t));
  CHECK_ERR(tapio_transport_start_tls(c.t, &rec_proto, &other, cc, o, NULL,
                                      0, on_started, &st), TAPIO_ECLOSED);
  CHECK_STR(tapio_loop_error_message(loop), "start_tls: the transport is "
            "closing (write_eof was called)");
  CHECK_OK(tapio_transport_close(c.t));
  WAIT_FOR(loop, c.lost);
  CHECK_STR(c.log, "made lost:0");
  CHECK_EQ(st.done, 0);
  CHECK_STR(other.log, "");
  tapio_options_free(o);
  tapio_tls_context_release(cc);
  rec_free(&other);
  end_pair(loop, &c, peer);
}

/* The peer resets during start_tls's handshake: the completion gets the
 * reset and the words; the protocol given to start_tls gets no
 * connection_made (the connection was made) and one connection_lost with
 * the reset (asyncio calls neither protocol); the one before it gets
 * nothing more. */
static void starttls_peer_resets(void)
{
  tapio_loop *loop = new_loop();
  tapio_tls_context *cc = client_ctx();
  tapio_options *o = new_options(loop);
  started st = { 0 };
  rec c, other;
  char hello[512];
  int peer;
  rec_init(&c);
  rec_init(&other);
  peer = pair_raw(loop, &c);
  other.made = 1; /* it takes over a made connection */
  other.t = c.t;
  st.loop = loop;
  CHECK_OK(tapio_options_set_str(o, "server_hostname", "localhost"));
  CHECK_OK(tapio_transport_start_tls(c.t, &rec_proto, &other, cc, o, NULL, 0,
                                     on_started, &st));
  CHECK(raw_wait(loop, peer, POLLIN)); /* the ClientHello */
  CHECK(recv(peer, hello, sizeof hello, 0) > 0);
  raw_reset(peer);
  WAIT_FOR(loop, st.done && other.lost);
  CHECK_EQ(st.done, 1);
  CHECK_ERR(st.status, TAPIO_ECONNRESET);
  CHECK_STR(st.msg, "TLS handshake failed: connection reset by peer");
  CHECK_STR(other.log, "lost:ECONNRESET");
  CHECK_STR(c.log, "made");
  tapio_options_free(o);
  tapio_tls_context_release(cc);
  rec_free(&other);
  end_pair(loop, &c, -1);
}

/* ---- Ends in the middle ---------------------------------------------------- */

/* S13, S22: freeing the loop during a handshake completes the connect
 * with ECANCELED, reports nothing and leaks nothing (valgrind). */
static void loop_free_mid_handshake(void)
{
  tapio_loop *loop = new_loop();
  tapio_options *o = tls_options(loop, client_ctx());
  exc_rec e = { 0 };
  conn_wait w = { 0 };
  rec c;
  char buf[512];
  int port, lfd = raw_listen(AF_INET, &port), peer;
  rec_init(&c);
  tapio_loop_set_exception_handler(loop, exc_record, &e);
  CHECK_OK(tapio_options_set_str(o, "server_hostname", "localhost"));
  w.r = &c;
  CHECK_OK(tapio_create_connection(loop, "127.0.0.1", port, &rec_proto, &c,
                                   o, on_connected, &w));
  tapio_options_free(o);
  peer = raw_accept(loop, lfd);
  CHECK(raw_wait(loop, peer, POLLIN));
  CHECK(recv(peer, buf, sizeof buf, 0) > 0);
  free_loop(loop);
  CHECK_EQ(w.done, 1);
  CHECK_ERR(w.status, TAPIO_ECANCELED);
  CHECK_EQ(e.n, 0);
  CHECK_STR(c.log, "");
  close(peer);
  close(lfd);
  rec_free(&c);
}

/* A server closing its clients during their handshakes: they go, the
 * factory never runs, wait_closed completes. */
static void server_closes_handshaking_clients(void)
{
  tapio_loop *loop = new_loop();
  srv sv;
  char buf[16];
  size_t n;
  int peer;
  tls_srv_start(&sv, loop, server_ctx("server"));
  peer = raw_connect(AF_INET, "127.0.0.1", sv.port);
  CHECK(peer >= 0);
  WAIT_FOR(loop, tapio_server_client_count(sv.s) == 1);
  CHECK_OK(tapio_server_close(sv.s));
  CHECK_OK(tapio_server_wait_closed(sv.s, on_server_closed, &sv));
  CHECK_OK(tapio_server_close_clients(sv.s));
  CHECK_EQ(raw_recv_until_eof(loop, peer, buf, sizeof buf, &n), 0);
  WAIT_FOR(loop, sv.closed);
  CHECK_EQ(sv.nfactory, 0);
  close(peer);
  srv_release_and_free(&sv, loop);
}

/* Freeing the loop while a close waits for the peer's close_notify. */
static void loop_free_mid_shutdown(void)
{
  tls_pair p;
  tls_pair_init(&p);
  tls_pair_up(&p, server_ctx("server"), client_ctx(), "localhost");
  CHECK_OK(tapio_transport_pause_reading(p.s->t));
  CHECK_OK(tapio_transport_close(p.c.t));
  spin(p.loop, 3);
  CHECK_STR(p.c.log, "made");
  free_loop(p.loop);
  CHECK_STR(p.c.log, "made lost:ECANCELED");
  srv_free(&p.sv);
  rec_free(&p.c);
}

TEST_MAIN_WARM(starttls_answered, TEST(bulk_both_ways),
               TEST(buffered_one_byte), TEST(resumed_reading_leaves_room),
               TEST(close_flushes_then_notify), TEST(shutdown_timeout),
               TEST(peer_truncates), TEST(paused_reader_gets_everything),
               TEST(paused_reader_then_truncation), TEST(garbage_mid_stream),
               TEST(data_after_close_notify), TEST(data_after_our_close),
               TEST(close_while_paused_reading),
               TEST(renegotiation_mid_stream), TEST(over_unix_socket),
               TEST(starttls_answered), TEST(starttls_pipelined),
               TEST(starttls_while_paused), TEST(tls_inside_tls),
               TEST(inner_closing_outer_reset),
               TEST(starttls_buffered_then_plain),
               TEST(tls_inside_tls_from_made), TEST(close_during_starttls),
               TEST(close_during_starttls_with_writes),
               TEST(info_during_handshake),
               TEST(starttls_timeout), TEST(starttls_arguments),
               TEST(starttls_not_on_pipes), TEST(starttls_while_closing),
               TEST(starttls_peer_resets), TEST(many_clients_writelines),
               TEST(set_protocol_swaps), TEST(loop_free_mid_handshake),
               TEST(server_closes_handshaking_clients),
               TEST(loop_free_mid_shutdown))
