/* Faults on demand: on memory pairs (virtual clock) and on real TCP
 * connections with a raw peer (real loop): resets both ways, an end of
 * file in the middle of a message, a send that fails, input and output
 * that stop being taken (and are taken again), a close that waits on
 * held output (and an abort that does not), a slow drip. */
#include "test.h"


typedef struct duo {
  tapio_loop *loop;
  rec a;
  tapio_recorder *b; /* b's side, every call on its own */
  tapio_transport *ta, *tb;
} duo;

static void duo_open(duo *d)
{
  d->loop = new_virtual();
  rec_init(&d->a);
  CHECK_OK(tapio_recorder_new(NULL, NULL, 0, &d->b));
  CHECK_OK(tapio_memory_pair(d->loop, &rec_proto, &d->a,
                             tapio_recorder_protocol(d->b), d->b, &d->ta,
                             &d->tb));
  CHECK_OK(tapio_loop_run_until_idle(d->loop));
}

static void duo_free(duo *d)
{
  free_loop(d->loop);
  rec_free(&d->a);
  tapio_recorder_free(d->b);
}

static void idle(duo *d)
{
  CHECK_OK(tapio_loop_run_until_idle(d->loop));
}

/* ---- On memory pairs ----------------------------------------------------- */

/* b is reset after 5 bytes: it has those, then ECONNRESET; a, reading,
 * is reset too. */
static void fault_reset_both_ways(void)
{
  duo d;
  duo_open(&d);
  CHECK_OK(tapio_fault_set(d.tb, TAPIO_FAULT_READ_ERROR, 5,
                           TAPIO_ECONNRESET));
  CHECK_OK(tapio_transport_write(d.ta, "0123456789", 10));
  idle(&d);
  CHECK_STR(tapio_recorder_events(d.b),
            "connection_made\ndata_received:01234\n"
            "connection_lost:ECONNRESET");
  CHECK_STR(d.a.log, "made lost:ECONNRESET");
  duo_free(&d);
}

/* Another error code fails only the side it is set on. */
static void fault_read_error_code(void)
{
  duo d;
  duo_open(&d);
  CHECK_OK(tapio_fault_set(d.tb, TAPIO_FAULT_READ_ERROR, 0,
                           TAPIO_ETIMEDOUT));
  idle(&d); /* after 0 bytes: now, with nothing sent */
  CHECK_STR(tapio_recorder_events(d.b),
            "connection_made\nconnection_lost:ETIMEDOUT");
  CHECK_STR(d.a.log, "made eof lost:0");
  duo_free(&d);
}

/* An end of file in the middle of a message: b sees "hel", then the end;
 * the rest was never read, so b's close resets a, as the kernel would. */
static void fault_eof_mid_message(void)
{
  duo d;
  duo_open(&d);
  CHECK_OK(tapio_fault_set(d.tb, TAPIO_FAULT_EOF, 3, 0));
  CHECK_OK(tapio_transport_write(d.ta, "hello\n", 6));
  idle(&d);
  CHECK_STR(tapio_recorder_events(d.b),
            "connection_made\ndata_received:hel\neof_received\n"
            "connection_lost:nil");
  CHECK_STR(d.a.log, "made lost:ECONNRESET");
  duo_free(&d);
}

/* a's send fails after 3 bytes: b gets those, then a's end. */
static void fault_write_error(void)
{
  duo d;
  duo_open(&d);
  CHECK_OK(tapio_fault_set(d.ta, TAPIO_FAULT_WRITE_ERROR, 3, TAPIO_EPIPE));
  CHECK_OK(tapio_transport_write(d.ta, "abcdef", 6));
  idle(&d);
  CHECK_STR(d.a.log, "made lost:EPIPE");
  CHECK_STR(tapio_recorder_events(d.b),
            "connection_made\ndata_received:abc\neof_received\n"
            "connection_lost:nil");
  duo_free(&d);
}

/* The bytes of a recorder's data events. */
static size_t data_bytes(tapio_recorder *r)
{
  size_t i, n, total = 0;
  for (i = 0; i < tapio_recorder_count(r); i++) {
    const char *ev = tapio_recorder_event(r, i, &n);
    if (strncmp(ev, "data_received:", 14) == 0)
      total += n - 14;
  }
  return total;
}

/* b stops reading after 2 bytes: a's output backs up to pause_writing;
 * cleared, everything arrives in order and a resumes. */
static void fault_stop_reading(void)
{
  duo d;
  static char buf[5000];
  duo_open(&d);
  pattern_fill(buf, sizeof buf, 0);
  CHECK_OK(tapio_memory_set_capacity(d.ta, 100));
  CHECK_OK(tapio_transport_set_write_buffer_limits(d.ta, 1000, 10));
  CHECK_OK(tapio_fault_set(d.tb, TAPIO_FAULT_STOP_READING, 2, 0));
  CHECK_OK(tapio_transport_write(d.ta, buf, sizeof buf));
  idle(&d);
  CHECK_STR(d.a.log, "made pause");
  CHECK_EQ(tapio_recorder_count(d.b), 2); /* made, 2 bytes */
  CHECK_EQ(tapio_transport_is_reading(d.tb), 1); /* its protocol's view */
  CHECK_EQ(tapio_memory_in_flight(d.ta, NULL, 0), 100);
  CHECK_OK(tapio_fault_clear(d.tb));
  idle(&d);
  CHECK_STR(d.a.log, "made pause resume");
  CHECK_EQ(tapio_memory_in_flight(d.ta, NULL, 0), 0);
  CHECK_EQ(data_bytes(d.b), sizeof buf);
  duo_free(&d);
}

/* a's output is no longer taken (its peer stopped reading): a's write
 * buffer fills and pause_writing comes; cleared, it all goes. */
static void fault_stop_writing(void)
{
  duo d;
  tapio_recorder *merged;
  tapio_transport *ta, *tb;
  rec a;
  static char buf[100000];
  size_t n;
  tapio_loop *loop = new_virtual();
  rec_init(&a);
  CHECK_OK(tapio_recorder_new(NULL, NULL, TAPIO_RECORDER_MERGE, &merged));
  CHECK_OK(tapio_memory_pair(loop, &rec_proto, &a,
                             tapio_recorder_protocol(merged), merged, &ta,
                             &tb));
  memset(buf, 'x', sizeof buf);
  CHECK_OK(tapio_fault_set(ta, TAPIO_FAULT_STOP_WRITING, 10, 0));
  CHECK_OK(tapio_transport_write(ta, buf, sizeof buf));
  CHECK_OK(tapio_loop_run_until_idle(loop));
  CHECK_STR(a.log, "made pause");
  CHECK_EQ(tapio_transport_get_write_buffer_size(ta), sizeof buf - 10);
  CHECK_EQ(tapio_memory_in_flight(ta, NULL, 0), 0); /* b read the 10 */
  CHECK_OK(tapio_fault_clear(ta));
  CHECK_OK(tapio_transport_close(ta));
  CHECK_OK(tapio_loop_run_until_idle(loop));
  CHECK_STR(a.log, "made pause resume lost:0");
  CHECK_EQ(tapio_recorder_count(merged), 4); /* made, data, eof, lost */
  CHECK(tapio_recorder_event(merged, 1, &n) != NULL);
  CHECK_EQ(n, strlen("data_received:") + sizeof buf);
  free_loop(loop);
  tapio_recorder_free(merged);
  rec_free(&a);
  (void)d;
}

/* A slow drip: 3 bytes a second. */
static void fault_drip(void)
{
  duo d;
  double t[8];
  size_t n = 0, seen = 1;
  duo_open(&d);
  CHECK_OK(tapio_fault_drip(d.tb, 3, 1.0));
  CHECK_OK(tapio_transport_write(d.ta, "0123456789", 10));
  while (n < 8 && tapio_loop_time(d.loop) < 10) {
    CHECK_OK(tapio_loop_advance(d.loop, 0.5));
    if (tapio_recorder_count(d.b) > seen) {
      seen = tapio_recorder_count(d.b);
      t[n++] = tapio_loop_time(d.loop);
    }
  }
  CHECK_EQ(n, 4);
  CHECK(t[0] == 0.5 && t[1] == 1.0 && t[2] == 2.0 && t[3] == 3.0);
  CHECK_STR(tapio_recorder_events(d.b),
            "connection_made\ndata_received:012\ndata_received:345\n"
            "data_received:678\ndata_received:9");
  CHECK_OK(tapio_fault_drip(d.tb, 0, 0)); /* off again */
  CHECK_OK(tapio_transport_write(d.ta, "abcdefgh", 8));
  idle(&d);
  CHECK_EQ(strcmp(tapio_recorder_event(d.b, 5, NULL),
                  "data_received:abcdefgh"), 0);
  duo_free(&d);
}

/* A fault set again restarts its count; one cleared is gone. */
static void fault_set_again_and_clear(void)
{
  duo d;
  duo_open(&d);
  CHECK_OK(tapio_fault_set(d.tb, TAPIO_FAULT_EOF, 2, 0));
  CHECK_OK(tapio_fault_set(d.tb, TAPIO_FAULT_EOF, 4, 0));
  CHECK_OK(tapio_transport_write(d.ta, "abc", 3));
  idle(&d);
  CHECK_OK(tapio_fault_clear(d.tb));
  CHECK_OK(tapio_transport_write(d.ta, "defgh", 5));
  idle(&d);
  CHECK_STR(tapio_recorder_events(d.b),
            "connection_made\ndata_received:abc\ndata_received:defgh");
  CHECK_OK(tapio_fault_clear(d.tb)); /* harmless twice */
  duo_free(&d);
}

static void fault_bad_calls(void)
{
  duo d;
  duo_open(&d);
  CHECK_ERR(tapio_fault_set(NULL, TAPIO_FAULT_EOF, 0, 0), TAPIO_EINVAL);
  CHECK_ERR(tapio_fault_set(d.ta, 0, 0, 0), TAPIO_EINVAL);
  CHECK_ERR(tapio_fault_set(d.ta, 6, 0, 0), TAPIO_EINVAL);
  CHECK_ERR(tapio_fault_set(d.ta, TAPIO_FAULT_READ_ERROR, 1, 0),
            TAPIO_EINVAL);
  CHECK_ERR(tapio_fault_set(d.ta, TAPIO_FAULT_WRITE_ERROR, 1, 5),
            TAPIO_EINVAL);
  CHECK_ERR(tapio_fault_drip(d.ta, 0, 1), TAPIO_EINVAL);
  CHECK_ERR(tapio_fault_drip(d.ta, 1, -1), TAPIO_EINVAL);
  CHECK_ERR(tapio_fault_clear(NULL), TAPIO_EINVAL);
  CHECK_OK(tapio_transport_abort(d.ta));
  CHECK_ERR(tapio_fault_set(d.ta, TAPIO_FAULT_EOF, 0, 0), TAPIO_ECLOSED);
  idle(&d);
  duo_free(&d);
}

/* A faulted transport retained past its end, and one the loop frees:
 * the layer goes with it (valgrind and ASan watch). */
static void fault_layer_lifetime(void)
{
  duo d;
  tapio_transport *shell;
  duo_open(&d);
  CHECK_OK(tapio_fault_drip(d.tb, 1, 0.5));
  CHECK_OK(tapio_transport_write(d.ta, "abc", 3));
  free_loop(d.loop); /* the drip's timer pending */
  rec_free(&d.a);
  tapio_recorder_free(d.b);

  d.loop = new_virtual();
  rec_init(&d.a);
  d.a.hook = retain_in_made;
  CHECK_OK(tapio_recorder_new(NULL, NULL, 0, &d.b));
  CHECK_OK(tapio_memory_pair(d.loop, &rec_proto, &d.a,
                             tapio_recorder_protocol(d.b), d.b, &d.ta,
                             &d.tb));
  idle(&d);
  shell = d.ta;
  CHECK_OK(tapio_fault_set(d.ta, TAPIO_FAULT_WRITE_ERROR, 1, TAPIO_EIO));
  CHECK_OK(tapio_transport_write(d.ta, "xy", 2));
  idle(&d);
  CHECK_STR(d.a.log, "made lost:EIO");
  CHECK_ERR(tapio_transport_write(shell, "z", 1), TAPIO_ECLOSED);
  CHECK_ERR(tapio_fault_set(shell, TAPIO_FAULT_EOF, 0, 0), TAPIO_ECLOSED);
  tapio_transport_release(shell);
  duo_free(&d);
}

/* ---- On real sockets ----------------------------------------------------- */

/* The tapio side is reset after 4 bytes: it has those, then ECONNRESET;
 * its raw peer gets a RST when it closes. */
static void fault_real_reset(void)
{
  tapio_loop *loop = new_loop();
  rec r;
  char buf[64];
  size_t n;
  int peer;
  rec_init(&r);
  peer = pair_raw(loop, &r);
  CHECK_OK(tapio_fault_set(r.t, TAPIO_FAULT_READ_ERROR, 4,
                           TAPIO_ECONNRESET));
  raw_send_str(loop, peer, "abcdefgh");
  WAIT_FOR(loop, r.lost);
  CHECK_STR(r.log, "made data:4 lost:ECONNRESET");
  CHECK_EQ(memcmp(r.in, "abcd", 4), 0);
  CHECK_EQ(raw_recv_until_eof(loop, peer, buf, sizeof buf, &n),
           -ECONNRESET);
  end_pair(loop, &r, peer);
}

/* An end of file in the middle of what the peer sent, on a socket. */
static void fault_real_eof(void)
{
  tapio_loop *loop = new_loop();
  rec r;
  int peer;
  rec_init(&r);
  peer = pair_raw(loop, &r);
  CHECK_OK(tapio_fault_set(r.t, TAPIO_FAULT_EOF, 2, 0));
  r.eof_ret = 1;
  raw_send_str(loop, peer, "hello");
  WAIT_FOR(loop, r.eof);
  CHECK_STR(r.log, "made data:2 eof");
  CHECK_OK(tapio_transport_write(r.t, "still here", 10)); /* half-open */
  CHECK_OK(tapio_transport_close(r.t));
  WAIT_FOR(loop, r.lost);
  end_pair(loop, &r, peer);
}

/* The socket's output is not taken: tapio buffers, pause_writing, the
 * peer gets nothing, and the loop does not spin on the socket's
 * writability meanwhile; cleared, all of it arrives in order. */
static void fault_real_stop_writing(void)
{
  tapio_loop *loop = new_loop();
  rec r;
  static char buf[300000];
  char one;
  double cpu;
  int peer, status;
  rec_init(&r);
  peer = pair_raw(loop, &r);
  pattern_fill(buf, sizeof buf, 0);
  CHECK_OK(tapio_fault_set(r.t, TAPIO_FAULT_STOP_WRITING, 0, 0));
  CHECK_OK(tapio_transport_write(r.t, buf, sizeof buf));
  CHECK_STR(r.log, "made pause");
  cpu = cpu_seconds();
  run_for(loop, 0.3);
  CHECK(cpu_seconds() - cpu < 0.15);
  CHECK_EQ(recv(peer, &one, 1, 0), -1); /* EAGAIN: nothing came */
  CHECK_EQ(tapio_transport_get_write_buffer_size(r.t), sizeof buf);
  CHECK_OK(tapio_fault_clear(r.t));
  CHECK_OK(tapio_transport_close(r.t));
  CHECK_EQ(raw_drain_pattern(loop, peer, &status), sizeof buf);
  CHECK_EQ(status, 0);
  WAIT_FOR(loop, r.lost);
  CHECK_STR(r.log, "made pause resume lost:0");
  end_pair(loop, &r, peer);
}

/* A close with bytes held by stop_writing waits until the fault is
 * cleared: for 0.1 s of loop time the peer gets nothing (not even the
 * end) and connection_lost does not come. */
#define HELD 5000

/* r's transport, connected to the raw peer returned, holds HELD pattern
 * bytes unsent, closing. */
static int close_held(tapio_loop *loop, rec *r)
{
  static char buf[HELD];
  char one;
  int peer;
  rec_init(r);
  peer = pair_raw(loop, r);
  pattern_fill(buf, sizeof buf, 0);
  CHECK_OK(tapio_fault_set(r->t, TAPIO_FAULT_STOP_WRITING, 0, 0));
  CHECK_OK(tapio_transport_write(r->t, buf, sizeof buf));
  CHECK_OK(tapio_transport_close(r->t));
  run_for(loop, 0.1);
  CHECK_STR(r->log, "made");
  CHECK_EQ(tapio_transport_get_write_buffer_size(r->t), HELD);
  CHECK_EQ(recv(peer, &one, 1, 0), -1); /* not even the end */
  CHECK_EQ(errno, EAGAIN);
  return peer;
}

/* Then: cleared, the peer reads the HELD bytes, then the end. Or
 * aborted: the held bytes are dropped and the socket closes as an abort
 * closes it, with a FIN (tapio's receive queue is empty, so no RST): the
 * peer reads the end and none of the bytes. Either way connection_lost(0)
 * comes once. */
static void held_close_ends(int abort)
{
  tapio_loop *loop = new_loop();
  rec r;
  int status;
  int peer = close_held(loop, &r);
  if (abort) {
    CHECK_OK(tapio_transport_abort(r.t));
    CHECK_EQ(raw_drain_pattern(loop, peer, &status), 0);
  } else {
    CHECK_OK(tapio_fault_clear(r.t));
    CHECK_EQ(raw_drain_pattern(loop, peer, &status), HELD);
  }
  CHECK_EQ(status, 0); /* the end, after exactly those bytes */
  WAIT_FOR(loop, r.lost);
  run_for(loop, 0.05); /* nothing after connection_lost */
  CHECK_STR(r.log, "made lost:0");
  end_pair(loop, &r, peer);
}

static void fault_real_close_waits(void) { held_close_ends(0); }

static void fault_real_abort_drops(void) { held_close_ends(1); }

/* Runs the loop until cond holds, one run_once(loop, 1) at a time; a run
 * that sleeps in its poll after the work that makes cond hold (nothing
 * more would wake it) fails the test at the deadline. */
#define WAIT_AWAKE(loop, cond)                                               \
  do {                                                                       \
    deadline dl_;                                                            \
    deadline_start(&dl_, (loop), test_timeout());                            \
    while (!(cond) && !dl_.expired)                                          \
      CHECK_OK(tapio_loop_run_once((loop), 1));                              \
    CHECK(!dl_.expired); /* a run_once that slept after the work */         \
    deadline_end(&dl_);                                                      \
  } while (0)

/* The tapio side takes no input: nothing arrives, the loop does not spin
 * on the readable socket; cleared (outside a run: the event the lifted
 * hold feeds runs before the next run's poll), what waited arrives, and
 * that run does not then sleep in its poll. */
static void fault_real_stop_reading(void)
{
  tapio_loop *loop = new_loop();
  rec r;
  double cpu;
  int peer;
  rec_init(&r);
  peer = pair_raw(loop, &r);
  CHECK_OK(tapio_fault_set(r.t, TAPIO_FAULT_STOP_READING, 0, 0));
  raw_send_str(loop, peer, "waiting");
  cpu = cpu_seconds();
  run_for(loop, 0.3);
  CHECK(cpu_seconds() - cpu < 0.15);
  CHECK_STR(r.log, "made");
  CHECK_OK(tapio_fault_clear(r.t));
  WAIT_AWAKE(loop, r.nin == 7);
  CHECK_EQ(memcmp(r.in, "waiting", 7), 0);
  end_pair(loop, &r, peer);
}

/* Output held, then let go outside a run: the fed write sends it all,
 * and that run does not then sleep in its poll. */
static void fault_real_release_writing(void)
{
  tapio_loop *loop = new_loop();
  rec r;
  char buf[16];
  int peer;
  rec_init(&r);
  peer = pair_raw(loop, &r);
  CHECK_OK(tapio_fault_set(r.t, TAPIO_FAULT_STOP_WRITING, 0, 0));
  CHECK_OK(tapio_transport_write(r.t, "held", 4));
  CHECK_EQ(tapio_transport_get_write_buffer_size(r.t), 4);
  CHECK_OK(tapio_fault_clear(r.t));
  WAIT_AWAKE(loop, tapio_transport_get_write_buffer_size(r.t) == 0);
  CHECK_EQ(recv(peer, buf, sizeof buf, 0), 4);
  CHECK_EQ(memcmp(buf, "held", 4), 0);
  end_pair(loop, &r, peer);
}

/* A drip on a socket: two bytes per read. */
static void fault_real_drip(void)
{
  tapio_loop *loop = new_loop();
  tapio_recorder *rr;
  conn_wait w = { 0 };
  int port, peer, lfd = raw_listen(AF_INET, &port);
  CHECK_OK(tapio_recorder_new(NULL, NULL, 0, &rr));
  CHECK_OK(tapio_create_connection(loop, "127.0.0.1", port,
                                   tapio_recorder_protocol(rr), rr, NULL,
                                   on_connected, &w));
  WAIT_FOR(loop, w.done);
  CHECK_OK(w.status);
  peer = raw_accept(loop, lfd);
  close(lfd);
  CHECK_OK(tapio_fault_drip(w.t, 2, 0));
  raw_send_str(loop, peer, "abcdef");
  WAIT_FOR(loop, tapio_recorder_count(rr) == 4);
  CHECK_STR(tapio_recorder_events(rr),
            "connection_made\ndata_received:ab\ndata_received:cd\n"
            "data_received:ef");
  close(peer);
  free_loop(loop);
  tapio_recorder_free(rr);
}

/* A timed drip's interval counts from when the protocol has had the
 * piece: a data_received that takes 60 ms (spun here, as a loaded machine
 * or valgrind may take it) sees the next piece at least 60 + 50 ms after
 * the one before, never 50 ms after the read (lower bounds only). */
#define SLOW_DRIP 0.05
#define SLOW_READER 0.06

static void note_slowly(rec *r, rec_event ev)
{
  double *at = r->user;
  tapio_loop *loop;
  if (ev != EV_DATA || at[2] >= 2)
    return;
  loop = tapio_transport_get_loop(r->t);
  at[(int)at[2]] = tapio_loop_time(loop);
  while (tapio_loop_time(loop) < at[(int)at[2]] + SLOW_READER)
    ;
  at[2]++;
}

static void fault_real_drip_slow_reader(void)
{
  tapio_loop *loop = new_loop();
  double at[3] = { 0, 0, 0 };
  rec r;
  int peer;
  rec_init(&r);
  r.hook = note_slowly;
  r.user = at;
  peer = pair_raw(loop, &r);
  CHECK_OK(tapio_fault_drip(r.t, 2, SLOW_DRIP));
  raw_send_str(loop, peer, "abcd");
  WAIT_FOR(loop, r.nin == 4);
  CHECK_EQ(at[2], 2);
  if (at[1] - at[0] < SLOW_DRIP + SLOW_READER - 1e-9)
    FAIL("the second piece came %.4f s after the first", at[1] - at[0]);
  end_pair(loop, &r, peer);
}

/* Closing or aborting inside the data_received of a timed drip's piece:
 * the drip's start (posted for after the callback) and its timer go with
 * the transport; nothing fires later (ASan and valgrind runs watch). */
static void drip_ends_inside(rec_action act)
{
  tapio_loop *loop = new_loop();
  rec r;
  int peer;
  rec_init(&r);
  r.act[EV_DATA] = act;
  peer = pair_raw(loop, &r);
  CHECK_OK(tapio_fault_drip(r.t, 2, SLOW_DRIP));
  raw_send_str(loop, peer, "abcd");
  WAIT_FOR(loop, r.lost);
  run_for(loop, 2 * SLOW_DRIP);
  CHECK_STR(r.log, "made data:2 lost:0");
  CHECK_EQ(r.nin, 2);
  end_pair(loop, &r, peer);
}

static void fault_drip_close_inside(void)
{
  drip_ends_inside(ACT_CLOSE);
}

static void fault_drip_abort_inside(void)
{
  drip_ends_inside(ACT_ABORT);
}

TEST_MAIN(TEST(fault_reset_both_ways), TEST(fault_read_error_code),
          TEST(fault_eof_mid_message), TEST(fault_write_error),
          TEST(fault_stop_reading), TEST(fault_stop_writing),
          TEST(fault_drip), TEST(fault_set_again_and_clear),
          TEST(fault_bad_calls), TEST(fault_layer_lifetime),
          TEST(fault_real_reset), TEST(fault_real_eof),
          TEST(fault_real_stop_writing), TEST(fault_real_close_waits),
          TEST(fault_real_abort_drops), TEST(fault_real_stop_reading),
          TEST(fault_real_release_writing),
          TEST(fault_real_drip), TEST(fault_real_drip_slow_reader),
          TEST(fault_drip_close_inside), TEST(fault_drip_abort_inside))
