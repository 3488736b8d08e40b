/* Faults under TLS, against Python's ssl (spec/tls/peer.py's fault-server
 * and fault-client: plain ssl sockets that raise a ragged end instead of
 * hiding it), each on a tapio TLS client and on a tapio TLS server. The
 * counts are plaintext, the bytes the protocol sees; what the protocol
 * observes is its callbacks and bytes, what the peer observes is what its
 * ssl socket read and how it ended: close_notify, a truncation (a TCP end
 * without it) or a reset. Also: faults set on a plain connection before
 * start_tls (fault-starttls-server: STARTTLS in the clear, then the
 * same). */
#include "tls.h"

enum { CLIENT, SERVER };

/* name_client and name_server: test name(side) as each. */
#define BOTH_SIDES(name)                                                     \
  static void name##_client(void) { name(CLIENT); }                          \
  static void name##_server(void) { name(SERVER); }

/* A tapio TLS transport (on r) and the Python peer on its other end. */
typedef struct conn {
  tapio_loop *loop;
  int side;
  peer py;
  srv sv;
  rec c;
  rec *r;
} conn;

/* The pieces data_received got: how many, the largest, the loop's time
 * at each of the first few. */
#define TIMED 8

typedef struct pieces {
  size_t seen, count, largest;
  double at[TIMED];
} pieces;

/* Counts the pieces (user: a pieces, or NULL); at connection_lost keeps
 * how the TLS session ended (enum tapio_tls_end) in eof_ret. */
static void watch(rec *r, rec_event ev)
{
  pieces *p = r->user;
  if (ev == EV_LOST)
    r->eof_ret = (int)tapio_transport_get_tls_num(r->t, TAPIO_TLS_NUM_END);
  if (ev != EV_DATA || !p)
    return;
  if (p->count < TIMED)
    p->at[p->count] = tapio_loop_time(tapio_transport_get_loop(r->t));
  p->count++;
  if (r->nin - p->seen > p->largest)
    p->largest = r->nin - p->seen;
  p->seen = r->nin;
}

/* Connects tapio as side (CLIENT: to a fault-server; SERVER: from a
 * fault-client), counting pieces in p (may be NULL). */
static void link_open(conn *l, int side, pieces *p)
{
  memset(l, 0, sizeof *l);
  l->loop = new_loop();
  l->side = side;
  if (side == CLIENT) {
    rec_init(&l->c);
    l->c.hook = watch;
    l->c.user = p;
    python_peer(&l->py, "fault-server", 0);
    if (tls_connect(l->loop, peer_port(l->loop, &l->py), &l->c,
                    client_ctx(), "localhost") != 0)
      FAIL("TLS connect: %s", tls_last_msg);
    l->r = &l->c;
  } else {
    tls_srv_start(&l->sv, l->loop, server_ctx("server"));
    l->sv.tmpl.hook = watch;
    l->sv.tmpl.user = p;
    python_peer(&l->py, "fault-client", l->sv.port);
    l->r = srv_wait_conn(&l->sv, 0);
  }
}

static void link_close(conn *l)
{
  if (l->r->t)
    CHECK_OK(tapio_transport_abort(l->r->t));
  WAIT_FOR(l->loop, l->r->lost);
  peer_stop(&l->py);
  if (l->side == CLIENT) {
    free_loop(l->loop);
    rec_free(&l->c);
  } else {
    srv_release_and_free(&l->sv, l->loop);
  }
}

/* r's session was shut down (tapio's close_notify went out), not
 * aborted; the peer's close_notify may or may not have come. */
static void check_shut_down(const rec *r)
{
  CHECK(r->eof_ret == TAPIO_TLS_END_CLEAN ||
        r->eof_ret == TAPIO_TLS_END_TRUNCATED);
}

/* Runs the loop until the peer printed text. */
static void peer_says(conn *l, const char *text)
{
  peer_wait_for(l->loop, &l->py, text);
}

static void write_pattern(tapio_transport *t, size_t n)
{
  char *buf = malloc(n);
  CHECK(buf != NULL);
  pattern_fill(buf, n, 0);
  CHECK_OK(tapio_transport_write(t, buf, n));
  free(buf);
}

/* ---- Reading -------------------------------------------------------------- */

/* Reading fails with code after `after` of the peer's 10 bytes: the
 * protocol has those, then connection_lost(code); no close_notify goes
 * out (the session ends aborted), and the peer's read ends as `end`
 * says. */
static void read_fails(int side, uint64_t after, int code, const char *log,
                       const char *end)
{
  conn l;
  link_open(&l, side, NULL);
  CHECK_OK(tapio_fault_set(l.r->t, TAPIO_FAULT_READ_ERROR, after, code));
  peer_send(&l.py, "send 10\nread\n");
  WAIT_FOR(l.loop, l.r->lost);
  CHECK_STR(l.r->log, log);
  CHECK_EQ(pattern_check(l.r->in, (size_t)after, 0), -1);
  CHECK_EQ(l.r->eof_ret, TAPIO_TLS_END_ABORTED);
  peer_says(&l, end);
  link_close(&l);
}

/* A reset after 5 bytes: the socket ends with a RST, and the peer's read
 * fails with a reset. */
static void tls_fault_reset(int side)
{
  read_fails(side, 5, TAPIO_ECONNRESET, "made data:5 lost:ECONNRESET",
             "END reset");
}

/* Another error after 3 bytes: the socket closes (a FIN) without
 * close_notify: the peer sees a truncation. */
static void tls_fault_read_error(int side)
{
  read_fails(side, 3, TAPIO_ETIMEDOUT, "made data:3 lost:ETIMEDOUT",
             "END truncated");
}

/* An end of file after 4 bytes is the peer's close_notify as the protocol
 * sees it: eof_received, then (TLS cannot half-close) the close, which
 * sends tapio's close_notify: the peer's read ends cleanly. */
static void tls_fault_eof(int side)
{
  conn l;
  link_open(&l, side, NULL);
  CHECK_OK(tapio_fault_set(l.r->t, TAPIO_FAULT_EOF, 4, 0));
  peer_send(&l.py, "send 10\nread\n");
  WAIT_FOR(l.loop, l.r->lost);
  CHECK_STR(l.r->log, "made data:4 eof lost:0");
  CHECK_EQ(pattern_check(l.r->in, 4, 0), -1);
  check_shut_down(l.r);
  peer_says(&l, "END clean");
  link_close(&l);
}

/* Reading stops after 1000 of the peer's 2 MB: the TLS layer stops
 * reading the socket too, so the peer's sending backs up for real (its
 * socket takes nothing for a second) while the loop sleeps; cleared,
 * all of it arrives, in order. */
#define FLOOD (2 * 1024 * 1024)

static void tls_fault_stop_reading(int side)
{
  double cpu;
  conn l;
  link_open(&l, side, NULL);
  CHECK_OK(tapio_fault_set(l.r->t, TAPIO_FAULT_STOP_READING, 1000, 0));
  peer_send(&l.py, "send 2097152\n");
  WAIT_FOR(l.loop, l.r->nin == 1000);
  cpu = cpu_seconds();
  peer_says(&l, "STUCK "); /* a second at least */
  CHECK(cpu_seconds() - cpu < 0.5); /* the loop did not spin meanwhile */
  CHECK_EQ(l.r->nin, 1000);
  CHECK(atol(strstr(l.py.got, "STUCK ") + 6) < FLOOD);
  CHECK_OK(tapio_fault_clear(l.r->t));
  WAIT_FOR(l.loop, l.r->nin == FLOOD);
  CHECK_EQ(pattern_check(l.r->in, FLOOD, 0), -1);
  peer_says(&l, "SENT 2097152");
  link_close(&l);
}

/* A drip of 3 bytes: the peer's 20 bytes (one TLS record) come up as
 * 3, 3, 3, 3, 3, 3, 2. */
static void tls_fault_drip(int side)
{
  pieces p = { 0 };
  conn l;
  link_open(&l, side, &p);
  CHECK_OK(tapio_fault_drip(l.r->t, 3, 0));
  peer_send(&l.py, "send 20\n");
  WAIT_FOR(l.loop, l.r->nin == 20);
  CHECK_EQ(p.count, 7);
  CHECK_EQ(p.largest, 3);
  CHECK_EQ(pattern_check(l.r->in, 20, 0), -1);
  link_close(&l);
}

/* A timed drip, 3 bytes every 50 ms: the peer's 20 bytes come up as
 * seven pieces, in order, each at least 50 ms of loop time after the one
 * before (a lower bound only: the machine may be slow, never early). */
#define DRIP_EVERY 0.05

static void tls_fault_drip_timed(int side)
{
  pieces p = { 0 };
  conn l;
  size_t i;
  link_open(&l, side, &p);
  CHECK_OK(tapio_fault_drip(l.r->t, 3, DRIP_EVERY));
  peer_send(&l.py, "send 20\n");
  WAIT_FOR(l.loop, l.r->nin == 20);
  CHECK_EQ(p.count, 7);
  CHECK_EQ(p.largest, 3);
  CHECK_EQ(pattern_check(l.r->in, 20, 0), -1);
  for (i = 1; i < p.count; i++)
    if (p.at[i] - p.at[i - 1] < DRIP_EVERY - 1e-9)
      FAIL("piece %zu came %.4f s after the one before", i,
           p.at[i] - p.at[i - 1]);
  link_close(&l);
}

/* Aborts on the second piece of a drip. */
static void abort_on_second(rec *r, rec_event ev)
{
  watch(r, ev);
  if (ev == EV_DATA && ((pieces *)r->user)->count == 2)
    CHECK_OK(tapio_transport_abort(r->t));
}

/* Aborting from inside data_received while the fault layer and OpenSSL
 * still hold the rest: nothing more comes up, the layers go with the
 * transport (ASan and valgrind watch). */
static void tls_fault_abort_inside(void)
{
  pieces p = { 0 };
  conn l;
  link_open(&l, CLIENT, &p);
  l.c.hook = abort_on_second;
  CHECK_OK(tapio_fault_drip(l.r->t, 3, 0));
  peer_send(&l.py, "send 20\nread\n");
  WAIT_FOR(l.loop, l.r->lost);
  CHECK_STR(l.r->log, "made data:6 lost:0");
  CHECK_EQ(p.count, 2);
  peer_says(&l, "END ");
  link_close(&l);
}

/* ---- Writing -------------------------------------------------------------- */

/* Sending fails after 3 of 10 bytes: the peer reads those 3, then the
 * socket's end without close_notify: a truncation. A tapio client may not
 * have read the server's session tickets yet (TLS 1.3 sends them after
 * the handshake), and a socket closed with bytes unread sends a RST: the
 * peer then sees a reset, as a truncation too (no close_notify either
 * way; once in a CI run). */
static void tls_fault_write_error(int side)
{
  conn l;
  link_open(&l, side, NULL);
  CHECK_OK(tapio_fault_set(l.r->t, TAPIO_FAULT_WRITE_ERROR, 3, TAPIO_EPIPE));
  peer_send(&l.py, "read\n");
  write_pattern(l.r->t, 10);
  WAIT_FOR(l.loop, l.r->lost);
  CHECK_STR(l.r->log, "made lost:EPIPE");
  CHECK_EQ(l.r->eof_ret, TAPIO_TLS_END_ABORTED);
  peer_says(&l, "END ");
  if (!strstr(l.py.got, "READ 3\nEND truncated") &&
      !(side == CLIENT && strstr(l.py.got, "READ 3\nEND reset")))
    FAIL("the peer printed:\n%s", l.py.got);
  link_close(&l);
}

/* Sending stops after 1000 of 100000 bytes: the peer has read 1000 and
 * gets no more (tapio buffers the rest, past the high-water mark);
 * cleared, the rest arrives and a close ends it with close_notify. */
static void tls_fault_stop_writing(int side)
{
  conn l;
  link_open(&l, side, NULL);
  CHECK_OK(tapio_fault_set(l.r->t, TAPIO_FAULT_STOP_WRITING, 1000, 0));
  peer_send(&l.py, "read\n");
  write_pattern(l.r->t, 100000);
  peer_says(&l, "READ 1000\n");
  run_for(l.loop, 0.2);
  peer_poll(&l.py);
  CHECK(strstr(l.py.got, "READ 1000\n")[10] == '\0'); /* nothing since */
  CHECK_EQ(tapio_transport_get_write_buffer_size(l.r->t), 99000);
  CHECK_OK(tapio_fault_clear(l.r->t));
  peer_says(&l, "READ 100000\n");
  CHECK_OK(tapio_transport_close(l.r->t));
  peer_says(&l, "END clean");
  WAIT_FOR(l.loop, l.r->lost);
  CHECK_STR(l.r->log, "made pause resume lost:0");
  check_shut_down(l.r);
  link_close(&l);
}

/* A close with 10000 bytes held by stop_writing on l, opened as side:
 * for 0.1 s of loop time the peer reads nothing (no byte, no end) and
 * connection_lost does not come. */
#define HELD 10000

static void close_held(conn *l, int side)
{
  link_open(l, side, NULL);
  CHECK_OK(tapio_fault_set(l->r->t, TAPIO_FAULT_STOP_WRITING, 0, 0));
  peer_send(&l->py, "read\n");
  write_pattern(l->r->t, HELD);
  CHECK_OK(tapio_transport_close(l->r->t));
  run_for(l->loop, 0.1);
  peer_poll(&l->py);
  if (strstr(l->py.got, "READ ") || strstr(l->py.got, "END "))
    FAIL("the peer printed:\n%s", l->py.got);
  CHECK_STR(l->r->log, "made");
  CHECK_EQ(tapio_transport_get_write_buffer_size(l->r->t), HELD);
}

/* l's transport is lost now, with code 0, and gets no callback after
 * it. */
static void lost_once(conn *l)
{
  WAIT_FOR(l->loop, l->r->lost);
  run_for(l->loop, 0.05);
  CHECK_STR(l->r->log, "made lost:0");
}

/* The close waits until the fault is cleared; then the peer reads the
 * 10000 bytes, then tapio's close_notify, and connection_lost(0) comes
 * once. */
static void tls_fault_close_waits(int side)
{
  conn l;
  close_held(&l, side);
  CHECK_OK(tapio_fault_clear(l.r->t));
  peer_says(&l, "END ");
  if (!strstr(l.py.got, "READ 10000\nEND clean\n"))
    FAIL("the peer printed:\n%s", l.py.got);
  lost_once(&l);
  check_shut_down(l.r);
  link_close(&l);
}

/* abort does not wait: the held bytes are dropped and the socket closes
 * without close_notify: the peer reads none of them, then a truncation.
 * A tapio client mostly ends with a reset instead: the server's TLS 1.3
 * session tickets come just after the handshake, by then the close
 * waits, a closing transport reads no more, and a socket closed with
 * bytes unread sends a RST. */
static void tls_fault_abort_drops(int side)
{
  conn l;
  close_held(&l, side);
  CHECK_OK(tapio_transport_abort(l.r->t));
  peer_says(&l, "END ");
  if (strstr(l.py.got, "READ ") || (!strstr(l.py.got, "END truncated") &&
                                    !(side == CLIENT &&
                                      strstr(l.py.got, "END reset"))))
    FAIL("the peer printed:\n%s", l.py.got);
  lost_once(&l);
  CHECK_EQ(l.r->eof_ret, TAPIO_TLS_END_ABORTED);
  link_close(&l);
}

/* ---- Faults carried over start_tls ---------------------------------------- */

/* A plain connection to peer.py's fault-starttls-server, faulted by
 * `fault` (after, value) at once: "STARTTLS\n" goes out, "GO\n" comes
 * back in the clear (3 bytes the fault counts), then start_tls upgrades
 * the connection (its handshake not counted). */
static void starttls_open(conn *l, int fault, uint64_t after, int value)
{
  started st;
  memset(l, 0, sizeof *l);
  l->loop = new_loop();
  l->side = CLIENT;
  rec_init(&l->c);
  l->c.hook = watch;
  l->r = &l->c;
  python_peer(&l->py, "fault-starttls-server", 0);
  CHECK_OK(connect_tcp(l->loop, "127.0.0.1", peer_port(l->loop, &l->py),
                       &l->c, NULL));
  CHECK_OK(tapio_fault_set(l->c.t, fault, after, value));
  CHECK_OK(tapio_transport_write(l->c.t, "STARTTLS\n", 9));
  WAIT_FOR(l->loop, l->c.nin == 3);
  CHECK(memcmp(l->c.in, "GO\n", 3) == 0);
  start_tls(&l->c, &st, client_ctx(), "localhost", NULL, 0);
  WAIT_FOR(l->loop, st.done);
  if (st.status != 0)
    FAIL("start_tls: %s", st.msg);
}

/* A reset after 3 + 5 bytes: "GO\n" in the clear, then 5 of the peer's 10
 * plaintext bytes; no close_notify, a RST: the peer's read fails with a
 * reset. */
static void tls_fault_starttls_reset(void)
{
  conn l;
  starttls_open(&l, TAPIO_FAULT_READ_ERROR, 3 + 5, TAPIO_ECONNRESET);
  peer_send(&l.py, "send 10\nread\n");
  WAIT_FOR(l.loop, l.r->lost);
  CHECK_STR(l.r->log, "made data:8 lost:ECONNRESET");
  CHECK_EQ(pattern_check(l.r->in + 3, 5, 0), -1);
  CHECK_EQ(l.r->eof_ret, TAPIO_TLS_END_ABORTED);
  peer_says(&l, "END reset");
  link_close(&l);
}

/* An end after 3 + 4 bytes: the protocol has "GO\n" and 4 plaintext
 * bytes, then eof_received; its close sends close_notify: the peer's read
 * ends cleanly. */
static void tls_fault_starttls_eof(void)
{
  conn l;
  starttls_open(&l, TAPIO_FAULT_EOF, 3 + 4, 0);
  peer_send(&l.py, "send 10\nread\n");
  WAIT_FOR(l.loop, l.r->lost);
  CHECK_STR(l.r->log, "made data:7 eof lost:0");
  CHECK_EQ(pattern_check(l.r->in + 3, 4, 0), -1);
  check_shut_down(l.r);
  peer_says(&l, "END clean");
  link_close(&l);
}

/* Each test on a tapio TLS client and on a tapio TLS server. */
BOTH_SIDES(tls_fault_reset)
BOTH_SIDES(tls_fault_read_error)
BOTH_SIDES(tls_fault_eof)
BOTH_SIDES(tls_fault_stop_reading)
BOTH_SIDES(tls_fault_drip)
BOTH_SIDES(tls_fault_write_error)
BOTH_SIDES(tls_fault_stop_writing)
BOTH_SIDES(tls_fault_drip_timed)
BOTH_SIDES(tls_fault_close_waits)
BOTH_SIDES(tls_fault_abort_drops)

TEST_MAIN_WARM(tls_fault_eof_client, TEST(tls_fault_reset_client),
               TEST(tls_fault_reset_server), TEST(tls_fault_read_error_client),
               TEST(tls_fault_read_error_server), TEST(tls_fault_eof_client),
               TEST(tls_fault_eof_server), TEST(tls_fault_stop_reading_client),
               TEST(tls_fault_stop_reading_server),
               TEST(tls_fault_drip_client), TEST(tls_fault_drip_server),
               TEST(tls_fault_drip_timed_client),
               TEST(tls_fault_drip_timed_server), TEST(tls_fault_abort_inside),
               TEST(tls_fault_write_error_client),
               TEST(tls_fault_write_error_server),
               TEST(tls_fault_stop_writing_client),
               TEST(tls_fault_stop_writing_server),
               TEST(tls_fault_close_waits_client),
               TEST(tls_fault_close_waits_server),
               TEST(tls_fault_abort_drops_client),
               TEST(tls_fault_abort_drops_server),
               TEST(tls_fault_starttls_reset), TEST(tls_fault_starttls_eof))
