/* In-memory pairs: the stream transport's state machine and API through
 * memory (order of callbacks, half-close, flow control, BufferedProtocol,
 * ends and resets), delivery the test controls (chunks, cuts, seeds,
 * delay), on a virtual loop and on a real one. */
#include "test.h"

#include <math.h>

typedef struct duo {
  tapio_loop *loop;
  rec a, b;
  tapio_transport *ta, *tb;
} duo;

static void duo_open(duo *d, tapio_loop *loop, const tapio_protocol *pa,
                     const tapio_protocol *pb)
{
  d->loop = loop;
  rec_init(&d->a);
  rec_init(&d->b);
  CHECK_OK(tapio_memory_pair(loop, pa, &d->a, pb, &d->b, &d->ta, &d->tb));
  CHECK(d->ta && d->tb);
  CHECK_STR(d->a.log, ""); /* connection_made comes from the loop */
}

static void duo_free(duo *d)
{
  free_loop(d->loop);
  rec_free(&d->a);
  rec_free(&d->b);
}

static void idle(tapio_loop *loop)
{
  CHECK_OK(tapio_loop_run_until_idle(loop));
}

/* ---- The state machine --------------------------------------------------- */

/* Bytes one way, end of file, and the default eof_received closing each
 * side: the reference's order, a's connection_made first. */
static void memory_exchange_and_close(void)
{
  duo d;
  duo_open(&d, new_virtual(), &rec_proto, &rec_proto);
  CHECK(tapio_memory_peer(d.ta) == d.tb && tapio_memory_peer(d.tb) == d.ta);
  CHECK_EQ(tapio_transport_get_kind(d.ta), TAPIO_TRANSPORT_STREAM);
  CHECK_OK(tapio_transport_write(d.ta, "hello", 5));
  idle(d.loop);
  CHECK_STR(d.a.log, "made");
  CHECK_STR(d.b.log, "made data:5");
  CHECK_EQ(memcmp(d.b.in, "hello", 5), 0);
  CHECK_OK(tapio_transport_write_eof(d.ta));
  idle(d.loop);
  CHECK_STR(d.b.log, "made data:5 eof lost:0");
  CHECK_STR(d.a.log, "made eof lost:0");
  CHECK_EQ(tapio_loop_transport_count(d.loop), 0);
  duo_free(&d);
}

/* What a writes in its connection_made reaches b after b's. */
static void write_in_made(rec *r, rec_event ev)
{
  if (ev == EV_MADE)
    CHECK_OK(tapio_transport_write(r->t, "early", 5));
}

static void memory_write_before_peer_made(void)
{
  duo d;
  duo_open(&d, new_virtual(), &rec_proto, &rec_proto);
  d.a.hook = write_in_made;
  idle(d.loop);
  CHECK_STR(d.b.log, "made data:5");
  CHECK_OK(tapio_transport_close(d.ta));
  idle(d.loop);
  CHECK_STR(d.a.log, "made lost:0");
  CHECK_STR(d.b.log, "made data:5 eof lost:0");
  duo_free(&d);
}

/* Half-close: b keeps its side open after the end of a's, answers, then
 * closes; a reads the answer and the end. */
static void memory_half_close(void)
{
  duo d;
  duo_open(&d, new_virtual(), &rec_proto, &rec_proto);
  d.b.eof_ret = 1;
  d.a.eof_ret = 1;
  idle(d.loop);
  CHECK_OK(tapio_transport_write(d.ta, "ask", 3));
  CHECK_OK(tapio_transport_write_eof(d.ta));
  CHECK_ERR(tapio_transport_write(d.ta, "x", 1), TAPIO_ESHUTDOWN);
  idle(d.loop);
  CHECK_STR(d.b.log, "made data:3 eof");
  CHECK_OK(tapio_transport_write(d.tb, "answer", 6));
  CHECK_OK(tapio_transport_close(d.tb));
  idle(d.loop);
  CHECK_STR(d.a.log, "made data:6 eof");
  CHECK_STR(d.b.log, "made data:3 eof lost:0");
  CHECK_OK(tapio_transport_close(d.ta));
  idle(d.loop);
  CHECK_STR(d.a.log, "made data:6 eof lost:0");
  duo_free(&d);
}

/* A side that leaves bytes unread resets the link: the other reads what
 * it had, then ECONNRESET, which a write meets first. Writing to a side
 * that closed is TCP's: the first write is taken (the peer's kernel
 * answers with a RST), the next fails with EPIPE. */
/* Writes an answer in eof_received (then closes: eof_ret 0). */
static void answer_at_eof(rec *r, rec_event ev)
{
  if (ev == EV_EOF)
    CHECK_OK(tapio_transport_write(r->t, "bye", 3));
}

static void memory_unread_bytes_reset(void)
{
  duo d;
  duo_open(&d, new_virtual(), &rec_proto, &rec_proto);
  idle(d.loop);
  CHECK_OK(tapio_transport_pause_reading(d.tb));
  CHECK_OK(tapio_transport_write(d.ta, "unread", 6));
  CHECK_OK(tapio_transport_write(d.tb, "last", 4));
  idle(d.loop);
  CHECK_OK(tapio_transport_abort(d.tb));
  idle(d.loop);
  CHECK_STR(d.b.log, "made lost:0");
  CHECK_STR(d.a.log, "made data:4 lost:ECONNRESET");
  duo_free(&d);

  duo_open(&d, new_virtual(), &rec_proto, &rec_proto);
  d.a.eof_ret = 1; /* stays open after b's clean end */
  idle(d.loop);
  CHECK_OK(tapio_transport_close(d.tb));
  idle(d.loop);
  CHECK_STR(d.a.log, "made eof");
  CHECK_OK(tapio_transport_write(d.ta, "late", 4));
  idle(d.loop);
  CHECK_STR(d.a.log, "made eof");
  CHECK_EQ(tapio_transport_get_write_buffer_size(d.ta), 0);
  CHECK_OK(tapio_transport_write(d.ta, "later", 5));
  idle(d.loop);
  CHECK_STR(d.a.log, "made eof lost:EPIPE");
  duo_free(&d);

  /* a's last answer in eof_received, then its close: a clean end */
  duo_open(&d, new_virtual(), &rec_proto, &rec_proto);
  d.a.hook = answer_at_eof;
  idle(d.loop);
  CHECK_OK(tapio_transport_close(d.tb));
  idle(d.loop);
  CHECK_STR(d.a.log, "made eof lost:0");
  duo_free(&d);

  /* b resets a that does not read: a's write meets the reset */
  duo_open(&d, new_virtual(), &rec_proto, &rec_proto);
  idle(d.loop);
  CHECK_OK(tapio_transport_pause_reading(d.ta));
  CHECK_OK(tapio_transport_pause_reading(d.tb));
  CHECK_OK(tapio_transport_write(d.ta, "unread", 6));
  idle(d.loop);
  CHECK_OK(tapio_transport_abort(d.tb));
  idle(d.loop);
  CHECK_OK(tapio_transport_write(d.ta, "x", 1));
  idle(d.loop);
  CHECK_STR(d.a.log, "made lost:ECONNRESET");
  duo_free(&d);

  /* b ended its side (a FIN), then closed with a's bytes unread (a RST):
   * a, reading only now, finds the FIN first, as on a socket, and a
   * write after it meets the RST as EPIPE */
  duo_open(&d, new_virtual(), &rec_proto, &rec_proto);
  d.a.eof_ret = 1;
  idle(d.loop);
  CHECK_OK(tapio_transport_pause_reading(d.ta));
  CHECK_OK(tapio_transport_pause_reading(d.tb));
  CHECK_OK(tapio_transport_write(d.ta, "unread", 6));
  CHECK_OK(tapio_transport_write_eof(d.tb));
  idle(d.loop);
  CHECK_OK(tapio_transport_close(d.tb));
  idle(d.loop);
  CHECK_OK(tapio_transport_resume_reading(d.ta));
  idle(d.loop);
  CHECK_STR(d.a.log, "made eof");
  CHECK_OK(tapio_transport_write(d.ta, "x", 1));
  idle(d.loop);
  CHECK_STR(d.a.log, "made eof lost:EPIPE");
  duo_free(&d);
}

/* Every callback, every way of closing from inside it: one
 * connection_lost, nothing out of the reference's order, on both sides. */
static void memory_close_from_every_callback(void)
{
  static const rec_event evs[] = { EV_MADE, EV_DATA, EV_EOF };
  static const rec_action acts[] = { ACT_CLOSE, ACT_ABORT, ACT_CLOSE_TWICE,
                                     ACT_ABORT_CLOSE, ACT_CLOSE_ABORT };
  size_t i, j;
  for (i = 0; i < sizeof evs / sizeof *evs; i++)
    for (j = 0; j < sizeof acts / sizeof *acts; j++) {
      duo d;
      duo_open(&d, new_virtual(), &rec_proto, &rec_proto);
      d.b.act[evs[i]] = acts[j];
      d.b.eof_ret = 1;
      idle(d.loop);
      if (!d.b.lost) {
        CHECK_OK(tapio_transport_write(d.ta, "data", 4));
        CHECK_OK(tapio_transport_write_eof(d.ta));
      }
      idle(d.loop);
      CHECK(d.b.lost && d.a.lost);
      CHECK(strstr(d.a.log, "BAD") == NULL && strstr(d.b.log, "BAD") == NULL);
      CHECK_EQ(tapio_loop_transport_count(d.loop), 0);
      duo_free(&d);
    }
}

/* The loop freed with a pair open: both get connection_lost(ECANCELED). */
static void memory_loop_freed(void)
{
  duo d;
  duo_open(&d, new_virtual(), &rec_proto, &rec_proto);
  idle(d.loop);
  CHECK_OK(tapio_transport_write(d.ta, "pending", 7));
  free_loop(d.loop);
  CHECK_STR(d.a.log, "made lost:ECANCELED");
  CHECK_STR(d.b.log, "made lost:ECANCELED");
  rec_free(&d.a);
  rec_free(&d.b);
}

/* A transport retained past its end: the peer sees the end at once; the
 * shell answers as a closed transport does. */
static void memory_retained_shell(void)
{
  duo d;
  tapio_transport *shell;
  duo_open(&d, new_virtual(), &rec_proto, &rec_proto);
  d.a.hook = retain_in_made;
  idle(d.loop);
  shell = d.ta;
  CHECK_OK(tapio_transport_close(d.ta));
  idle(d.loop);
  CHECK_STR(d.b.log, "made eof lost:0");
  CHECK_ERR(tapio_transport_write(shell, "x", 1), TAPIO_ECLOSED);
  CHECK(tapio_memory_peer(shell) == NULL);
  tapio_transport_release(shell);
  duo_free(&d);
}

/* ---- Flow control -------------------------------------------------------- */

/* b stops reading: the link fills (its capacity), then a's write buffer,
 * then pause_writing; b reads again: everything arrives in order,
 * resume_writing comes. */
static void memory_flow_control(void)
{
  duo d;
  static char buf[200000];
  size_t i;
  duo_open(&d, new_virtual(), &rec_proto, &rec_proto);
  idle(d.loop);
  pattern_fill(buf, sizeof buf, 0);
  CHECK_OK(tapio_memory_set_capacity(d.ta, 1000));
  CHECK_OK(tapio_transport_pause_reading(d.tb));
  CHECK_OK(tapio_transport_set_write_buffer_limits(d.ta, 3000, 1000));
  for (i = 0; i < 5; i++)
    CHECK_OK(tapio_transport_write(d.ta, buf + i * 1000, 1000));
  idle(d.loop);
  CHECK_STR(d.a.log, "made pause");
  CHECK_EQ(tapio_transport_get_write_buffer_size(d.ta), 4000);
  CHECK_EQ(tapio_memory_in_flight(d.ta, NULL, 0), 1000);
  CHECK_OK(tapio_loop_advance(d.loop, 2));
  CHECK_OK(tapio_transport_resume_reading(d.tb));
  idle(d.loop);
  CHECK_STR(d.a.log, "made pause resume");
  CHECK_EQ(d.b.nin, 5000);
  CHECK_EQ(pattern_check(d.b.in, d.b.nin, 0), -1);
  CHECK_EQ(tapio_transport_get_stat(d.ta, TAPIO_STAT_WRITE_PAUSED_USEC),
           2000000); /* the virtual clock's two seconds */
  CHECK_EQ(tapio_transport_get_stat(d.tb, TAPIO_STAT_READ_PAUSED_USEC),
           2000000);
  CHECK_OK(tapio_transport_close(d.ta));
  idle(d.loop);
  duo_free(&d);
}

/* ---- BufferedProtocol ---------------------------------------------------- */

static void memory_buffered_protocol(void)
{
  duo d;
  char small[4];
  duo_open(&d, new_virtual(), &rec_proto, &rec_bproto);
  d.b.buf = small;
  d.b.buflen = sizeof small;
  CHECK_OK(tapio_transport_write(d.ta, "0123456789", 10));
  CHECK_OK(tapio_transport_close(d.ta));
  idle(d.loop);
  CHECK_STR(d.b.log, "made buf:10 eof lost:0");
  CHECK_EQ(d.b.ngetbuf, 4); /* 4 + 4 + 2 bytes, then the end */
  CHECK_EQ(memcmp(d.b.in, "0123456789", 10), 0);
  duo_free(&d);
}

/* ---- Delivery the test controls ------------------------------------------ */

/* What b's data_received got, each call on its own. */
static const char *chunks_of(tapio_recorder *r, char *out, size_t size)
{
  size_t i, n, at = 0;
  out[0] = '\0';
  for (i = 0; i < tapio_recorder_count(r); i++) {
    const char *ev = tapio_recorder_event(r, i, &n);
    if (strncmp(ev, "data_received:", 14) != 0)
      continue;
    at += (size_t)snprintf(out + at, size - at, "%s%.*s", at ? "|" : "",
                           (int)(n - 14), ev + 14);
  }
  return out;
}

typedef struct observed {
  tapio_loop *loop;
  tapio_recorder *rec;
  tapio_transport *ta, *tb;
  rec a;
} observed;

static void observed_open(observed *o, tapio_loop *loop, int flags)
{
  o->loop = loop;
  rec_init(&o->a);
  CHECK_OK(tapio_recorder_new(NULL, NULL, flags, &o->rec));
  CHECK_OK(tapio_memory_pair(loop, &rec_proto, &o->a,
                             tapio_recorder_protocol(o->rec), o->rec, &o->ta,
                             &o->tb));
}

static void observed_free(observed *o)
{
  free_loop(o->loop);
  tapio_recorder_free(o->rec);
  rec_free(&o->a);
}

static void memory_chunks_of_one_byte(void)
{
  observed o;
  char out[256];
  observed_open(&o, new_virtual(), 0);
  CHECK_OK(tapio_memory_set_chunks(o.ta, 1, 1, 0));
  CHECK_OK(tapio_transport_write(o.ta, "abc", 3));
  CHECK_OK(tapio_transport_write_eof(o.ta));
  idle(o.loop);
  CHECK_STR(chunks_of(o.rec, out, sizeof out), "a|b|c");
  CHECK_STR(tapio_recorder_events(o.rec),
            "connection_made\ndata_received:a\ndata_received:b\n"
            "data_received:c\neof_received\nconnection_lost:nil");
  observed_free(&o);
}

/* Cuts: every pair of cut points of a three-message exchange gives
 * exactly those chunks, and a line parser on the other side the same
 * three lines. */
typedef struct lines {
  char part[64];
  size_t n;
  char got[128];
} lines;

static void lines_data(void *ud, tapio_transport *t, const char *data,
                       size_t len)
{
  lines *l = ud;
  size_t i;
  (void)t;
  for (i = 0; i < len; i++) {
    size_t g = strlen(l->got);
    if (data[i] == '\n') {
      CHECK(g + l->n + 2 <= sizeof l->got);
      memcpy(l->got + g, l->part, l->n); /* the line, then ';' */
      memcpy(l->got + g + l->n, ";", 2);
      l->n = 0;
    } else {
      CHECK(l->n < sizeof l->part);
      l->part[l->n++] = data[i];
    }
  }
}

static const tapio_protocol lines_proto = {
  .size = sizeof(tapio_protocol),
  .data_received = lines_data,
};

static void memory_every_split(void)
{
  static const char msg[] = "one\ntwo\nthree\n";
  size_t len = sizeof msg - 1, i, j, runs = 0;
  double t0 = now_sec();
  for (i = 1; i < len; i++)
    for (j = i + 1; j < len; j++) {
      observed o;
      lines l;
      char out[256], want[256];
      uint64_t cuts[2] = { i, j };
      memset(&l, 0, sizeof l);
      o.loop = new_virtual();
      rec_init(&o.a);
      CHECK_OK(tapio_recorder_new(&lines_proto, &l, 0, &o.rec));
      CHECK_OK(tapio_memory_pair(o.loop, &rec_proto, &o.a,
                                 tapio_recorder_protocol(o.rec), o.rec,
                                 &o.ta, &o.tb));
      CHECK_OK(tapio_memory_set_splits(o.ta, cuts, 2));
      CHECK_OK(tapio_transport_write(o.ta, msg, len));
      CHECK_OK(tapio_transport_close(o.ta));
      idle(o.loop);
      snprintf(want, sizeof want, "%.*s|%.*s|%s", (int)i, msg,
               (int)(j - i), msg + i, msg + j);
      CHECK_STR(chunks_of(o.rec, out, sizeof out), want);
      CHECK_STR(l.got, "one;two;three;");
      CHECK_STR(o.a.log, "made lost:0");
      observed_free(&o);
      runs++;
    }
  CHECK_EQ(runs, (len - 1) * (len - 2) / 2);
  CHECK(now_sec() - t0 < 1.0 * (under_valgrind() ? 30 : 1));
}

/* Sizes drawn from a seed: the same seed, the same chunks. */
static void seeded_chunks(uint64_t seed, char *out, size_t size)
{
  observed o;
  observed_open(&o, new_virtual(), 0);
  CHECK_OK(tapio_memory_set_chunks(o.ta, 1, 5, seed));
  CHECK_OK(tapio_transport_write(o.ta, "abcdefghijklmnopqrstuvwxyz", 26));
  idle(o.loop);
  chunks_of(o.rec, out, size);
  observed_free(&o);
}

static void memory_seeded_chunks(void)
{
  char one[256], again[256], other[256];
  size_t i, parts = 1;
  seeded_chunks(42, one, sizeof one);
  seeded_chunks(42, again, sizeof again);
  seeded_chunks(43, other, sizeof other);
  CHECK_STR(one, again);
  CHECK(strcmp(one, other) != 0);
  for (i = 0; one[i]; i++)
    parts += one[i] == '|';
  CHECK(parts >= 26 / 5 && parts < 26);
}

/* A delay: bytes arrive that long after they were written, in order. */
static void memory_delay(void)
{
  observed o;
  char out[256];
  observed_open(&o, new_virtual(), 0);
  CHECK_OK(tapio_memory_set_delay(o.ta, 0.5));
  CHECK_OK(tapio_transport_write(o.ta, "first", 5));
  CHECK_OK(tapio_loop_advance(o.loop, 0.25));
  CHECK_OK(tapio_transport_write(o.ta, "second", 6));
  CHECK_OK(tapio_loop_advance(o.loop, 0.2499));
  CHECK_STR(chunks_of(o.rec, out, sizeof out), "");
  CHECK_EQ(tapio_memory_in_flight(o.ta, out, sizeof out), 11);
  CHECK_EQ(memcmp(out, "firstsecond", 11), 0);
  CHECK_OK(tapio_loop_advance(o.loop, 0.0001));
  CHECK_STR(chunks_of(o.rec, out, sizeof out), "first");
  CHECK_OK(tapio_loop_advance(o.loop, 0.25));
  CHECK_STR(chunks_of(o.rec, out, sizeof out), "first|second");
  CHECK_EQ(tapio_memory_in_flight(o.ta, NULL, 0), 0);
  observed_free(&o);
}

/* A delay that is not exact in binary (0.01 + 0.05 is not 0.06) still
 * lands on the virtual clock's nanoseconds, as its timers do: the byte
 * arrives when the clock reaches 0.06, not at the next advance. */
static void memory_delay_exact_time(void)
{
  duo d;
  duo_open(&d, new_virtual(), &rec_proto, &rec_proto);
  CHECK_OK(tapio_memory_set_delay(d.ta, 0.05));
  CHECK_OK(tapio_loop_advance(d.loop, 0.01));
  CHECK_OK(tapio_transport_write(d.ta, "x", 1));
  CHECK_OK(tapio_loop_advance(d.loop, 0.05));
  CHECK_STR(d.b.log, "made data:1");
  CHECK_OK(tapio_transport_close(d.ta));
  CHECK_OK(tapio_loop_advance(d.loop, 1));
  duo_free(&d);
}

/* The end takes the delay too, as a FIN or RST would: a's close reaches
 * b 0.5 s later. Bytes of b's still on their way when a closes reach a
 * closed socket: b sees a clean end, and its RST comes back to b a delay
 * after they arrive, failing b's writes from then on (not a reset of the
 * connection at once, which b would read before a's end). */
static void memory_delay_carries_the_end(void)
{
  duo d;
  double t0;
  duo_open(&d, new_virtual(), &rec_proto, &rec_proto);
  CHECK_OK(tapio_memory_set_delay(d.ta, 0.5));
  idle(d.loop);
  CHECK_OK(tapio_transport_close(d.ta));
  CHECK_OK(tapio_loop_advance(d.loop, 0.4999));
  CHECK_STR(d.b.log, "made");
  CHECK_OK(tapio_loop_advance(d.loop, 0.0001));
  CHECK_STR(d.b.log, "made eof lost:0");
  duo_free(&d);

  duo_open(&d, new_virtual(), &rec_proto, &rec_proto);
  CHECK_OK(tapio_memory_set_delay(d.ta, 0.05));
  CHECK_OK(tapio_memory_set_delay(d.tb, 0.05));
  d.b.eof_ret = 1;
  idle(d.loop);
  t0 = tapio_loop_time(d.loop);
  CHECK_OK(tapio_transport_write(d.tb, "request", 7)); /* at a by t0+.05 */
  CHECK_OK(tapio_loop_advance(d.loop, 0.01));
  CHECK_OK(tapio_transport_close(d.ta));
  CHECK_OK(tapio_loop_advance(d.loop, 0.055)); /* a's end came at .06 */
  CHECK_STR(d.a.log, "made lost:0");
  CHECK_STR(d.b.log, "made eof");
  CHECK_OK(tapio_transport_write(d.tb, "late", 4)); /* the RST: at .1 */
  CHECK_OK(tapio_loop_advance(d.loop, 0.1 - 0.065 - 0.001));
  CHECK_STR(d.b.log, "made eof");
  CHECK(tapio_loop_time(d.loop) < t0 + 0.1);
  CHECK_OK(tapio_loop_advance(d.loop, 0.002));
  CHECK_OK(tapio_transport_write(d.tb, "later", 5));
  idle(d.loop);
  CHECK_STR(d.b.log, "made eof lost:EPIPE");
  duo_free(&d);
}

/* ---- A protocol with an idle timeout ------------------------------------- */

/* Closes its transport after `idle` seconds without a byte received. */
typedef struct idler {
  tapio_loop *loop;
  tapio_transport *t;
  tapio_handle *timer;
  double idle;
  double closed_at;
} idler;

static void idler_expired(void *ud)
{
  idler *i = ud;
  i->closed_at = tapio_loop_time(i->loop);
  tapio_transport_close(i->t);
}

static void idler_arm(idler *i)
{
  if (i->timer) {
    tapio_handle_cancel(i->timer);
    tapio_handle_release(i->timer);
  }
  CHECK_OK(tapio_call_later(i->loop, i->idle, idler_expired, i, &i->timer));
}

static void idler_made(void *ud, tapio_transport *t)
{
  idler *i = ud;
  i->t = t;
  idler_arm(i);
}

static void idler_data(void *ud, tapio_transport *t, const char *d, size_t n)
{
  (void)t;
  (void)d;
  (void)n;
  idler_arm(ud);
}

static void idler_lost(void *ud, tapio_transport *t, int code,
                       const char *msg)
{
  idler *i = ud;
  (void)t;
  (void)code;
  (void)msg;
  tapio_handle_cancel(i->timer);
  tapio_handle_release(i->timer);
  i->timer = NULL;
}

static const tapio_protocol idler_proto = {
  .size = sizeof(tapio_protocol),
  .connection_made = idler_made,
  .connection_lost = idler_lost,
  .data_received = idler_data,
};

/* The 30-second idle timeout, tested in no time: a byte at 20 s pushes it
 * to 50 s. The wall-clock bound only shows that nothing waited in real
 * time (50 s of it were due): a second, which a loaded machine's
 * scheduling cannot reach, as 10 ms under ASan could. */
static void memory_idle_timeout(void)
{
  tapio_loop *loop = new_virtual();
  idler i = { loop, NULL, NULL, 30, -1 };
  tapio_recorder *r;
  tapio_transport *ta, *tb;
  double t0 = now_sec();
  CHECK_OK(tapio_recorder_new(NULL, NULL, 0, &r));
  CHECK_OK(tapio_memory_pair(loop, tapio_recorder_protocol(r), r,
                             &idler_proto, &i, &ta, &tb));
  CHECK_OK(tapio_loop_advance(loop, 20));
  CHECK_OK(tapio_transport_write(ta, "x", 1));
  CHECK_OK(tapio_loop_advance(loop, 29.999));
  CHECK(i.closed_at < 0);
  CHECK_OK(tapio_loop_advance(loop, 0.001));
  CHECK(i.closed_at == 50);
  CHECK_STR(tapio_recorder_events(r),
            "connection_made\neof_received\nconnection_lost:nil");
  CHECK(now_sec() - t0 < 1.0);
  free_loop(loop);
  tapio_recorder_free(r);
}

/* ---- On a real loop ------------------------------------------------------ */

static void memory_on_a_real_loop(void)
{
  duo d;
  duo_open(&d, new_loop(), &rec_proto, &rec_proto);
  CHECK_OK(tapio_memory_set_delay(d.ta, 0.01));
  CHECK_OK(tapio_transport_write(d.ta, "real", 4));
  CHECK_OK(tapio_transport_close(d.ta));
  WAIT_FOR(d.loop, d.b.lost);
  CHECK_STR(d.b.log, "made data:4 eof lost:0");
  WAIT_FOR(d.loop, d.a.lost);
  duo_free(&d);
}

/* ---- Errors -------------------------------------------------------------- */

static void memory_bad_calls(void)
{
  tapio_loop *loop = new_virtual();
  tapio_transport *a = (tapio_transport *)1, *b = (tapio_transport *)1;
  static const tapio_protocol small = { .size = 4 };
  uint64_t backwards[2] = { 5, 3 };
  rec ra, rb;
  rec_init(&ra);
  rec_init(&rb);
  CHECK_ERR(tapio_memory_pair(NULL, &rec_proto, &ra, &rec_proto, &rb, &a, &b),
            TAPIO_EINVAL);
  CHECK(a == NULL && b == NULL);
  CHECK_ERR(tapio_memory_pair(loop, &small, &ra, &rec_proto, &rb, &a, &b),
            TAPIO_EINVAL);
  CHECK_ERR(tapio_memory_pair(loop, &rec_proto, &ra, NULL, &rb, &a, &b),
            TAPIO_EINVAL);
  CHECK_OK(tapio_memory_pair(loop, &rec_proto, &ra, &rec_proto, &rb, &a, &b));
  CHECK_ERR(tapio_memory_set_chunks(a, 3, 2, 0), TAPIO_EINVAL);
  CHECK_ERR(tapio_memory_set_chunks(a, 0, 2, 0), TAPIO_EINVAL);
  CHECK_ERR(tapio_memory_set_splits(a, backwards, 2), TAPIO_EINVAL);
  CHECK_ERR(tapio_memory_set_splits(a, NULL, 2), TAPIO_EINVAL);
  CHECK_OK(tapio_memory_set_splits(a, NULL, 0));
  CHECK_ERR(tapio_memory_set_delay(a, -1), TAPIO_EINVAL);
  CHECK_ERR(tapio_memory_set_delay(a, NAN), TAPIO_EINVAL);
  CHECK_ERR(tapio_memory_set_capacity(a, 0), TAPIO_EINVAL);
  CHECK_ERR(tapio_memory_set_delay(NULL, 1), TAPIO_EINVAL);
  CHECK_EQ(tapio_memory_in_flight(NULL, NULL, 0), 0);
  CHECK(tapio_memory_peer(NULL) == NULL);
  CHECK_ERR(tapio_transport_get_fd(a), TAPIO_ENOTSUP);
  CHECK_ERR(tapio_transport_get_peername(a, NULL, 0, NULL, NULL),
            TAPIO_ENOTSUP);
  free_loop(loop);
  rec_free(&ra);
  rec_free(&rb);
}

/* A transport that is not a pair's is refused by the pair's setters. */
static void memory_setters_want_a_pair(void)
{
  tapio_loop *loop = new_loop();
  rec r;
  int peer;
  rec_init(&r);
  peer = pair_raw(loop, &r);
  CHECK_ERR(tapio_memory_set_delay(r.t, 1), TAPIO_EINVAL);
  CHECK_ERR(tapio_memory_set_chunks(r.t, 1, 1, 0), TAPIO_EINVAL);
  CHECK(tapio_memory_peer(r.t) == NULL);
  end_pair(loop, &r, peer);
}

TEST_MAIN(TEST(memory_exchange_and_close), TEST(memory_write_before_peer_made),
          TEST(memory_half_close), TEST(memory_unread_bytes_reset),
          TEST(memory_close_from_every_callback), TEST(memory_loop_freed),
          TEST(memory_retained_shell), TEST(memory_flow_control),
          TEST(memory_buffered_protocol), TEST(memory_chunks_of_one_byte),
          TEST(memory_every_split), TEST(memory_seeded_chunks),
          TEST(memory_delay_exact_time),
          TEST(memory_delay_carries_the_end),
          TEST(memory_delay), TEST(memory_idle_timeout),
          TEST(memory_on_a_real_loop), TEST(memory_bad_calls),
          TEST(memory_setters_want_a_pair))
