/* Write flow control, deterministically: a raw peer that does not read
 * fills the kernel buffers, after which every byte written stays in
 * tapio's buffer until the loop runs, so the buffer size is exactly known
 * when the watermarks are crossed. */
#include "test.h"

/* r connected to a raw peer whose buffers are full; tapio holds some bytes
 * and has not paused (limits far away). *offset: bytes written. */
static int pair_full(tapio_loop *loop, rec *r, size_t *offset)
{
  int peer = pair_raw(loop, r);
  CHECK_OK(tapio_transport_set_write_buffer_limits(r->t, 1 << 30, 0));
  fill_until_buffered(r->t, offset);
  CHECK_STR(r->log, "made");
  return peer;
}

static void write_pattern(tapio_transport *t, size_t n, size_t *offset)
{
  char buf[4096];
  CHECK(n <= sizeof buf);
  pattern_fill(buf, n, *offset);
  CHECK_OK(tapio_transport_write(t, buf, n));
  *offset += n;
}

/* Reads everything until EOF after closing; checks the whole stream. */
static void close_and_drain(tapio_loop *loop, rec *r, int peer, size_t total)
{
  int status = 1;
  CHECK_OK(tapio_transport_close(r->t));
  CHECK_EQ(raw_drain_pattern(loop, peer, &status), total);
  CHECK_EQ(status, 0);
  WAIT_FOR(loop, r->lost);
  close(peer);
}

/* A buffer exactly at the high mark does not pause; one byte more does,
 * from inside that write. */
static void pause_strictly_over_high(void)
{
  tapio_loop *loop = new_loop();
  rec r;
  size_t offset = 0, b;
  int peer;
  rec_init(&r);
  peer = pair_full(loop, &r, &offset);
  b = tapio_transport_get_write_buffer_size(r.t);
  CHECK_OK(tapio_transport_set_write_buffer_limits(r.t, (int64_t)b + 10,
                                                   (int64_t)b / 2));
  CHECK_STR(r.log, "made");
  write_pattern(r.t, 10, &offset);
  CHECK_EQ(tapio_transport_get_write_buffer_size(r.t), b + 10);
  CHECK_STR(r.log, "made"); /* at high: not over it */
  write_pattern(r.t, 1, &offset);
  CHECK_STR(r.log, "made pause"); /* before write returned */
  CHECK_EQ(r.size_at_pause, b + 11);
  write_pattern(r.t, 1, &offset); /* no second pause while paused */
  CHECK_STR(r.log, "made pause");
  close_and_drain(loop, &r, peer, offset);
  CHECK_STR(r.log, "made pause resume lost:0");
  free_loop(loop);
  rec_free(&r);
}

/* resume_writing comes once the buffer is at the low mark or below. */
static void resume_at_low_or_below(void)
{
  tapio_loop *loop = new_loop();
  rec r;
  size_t offset = 0, b, low;
  int peer, status = 1;
  rec_init(&r);
  peer = pair_full(loop, &r, &offset);
  b = tapio_transport_get_write_buffer_size(r.t);
  low = b / 2;
  CHECK_OK(tapio_transport_set_write_buffer_limits(r.t, (int64_t)b,
                                                   (int64_t)low));
  write_pattern(r.t, 100, &offset);
  CHECK_STR(r.log, "made pause");
  CHECK_OK(tapio_transport_write_eof(r.t));
  CHECK_EQ(raw_drain_pattern(loop, peer, &status), offset);
  CHECK_EQ(status, 0);
  WAIT_FOR(loop, r.nresume == 1);
  CHECK(r.size_at_resume <= low);
  CHECK_STR(r.log, "made pause resume");
  end_pair(loop, &r, peer);
}

/* Limits lowered under the current buffer size pause at once. */
static void set_limits_below_buffer_pauses(void)
{
  tapio_loop *loop = new_loop();
  rec r;
  size_t offset = 0, b;
  int peer;
  rec_init(&r);
  peer = pair_full(loop, &r, &offset);
  b = tapio_transport_get_write_buffer_size(r.t);
  CHECK_OK(tapio_transport_set_write_buffer_limits(r.t, (int64_t)b, 0));
  CHECK_STR(r.log, "made"); /* at high */
  CHECK_OK(tapio_transport_set_write_buffer_limits(r.t, (int64_t)b - 1, 0));
  CHECK_STR(r.log, "made pause");
  close_and_drain(loop, &r, peer, offset);
  CHECK_STR(r.log, "made pause resume lost:0");
  free_loop(loop);
  rec_free(&r);
}

/* High 0: pause whenever the buffer is not empty; low 0: resume only once
 * it is empty. A write the socket takes whole does not pause. */
static void zero_limits(void)
{
  tapio_loop *loop = new_loop();
  rec r;
  size_t offset = 0;
  int peer, status = 1;
  rec_init(&r);
  peer = pair_raw(loop, &r);
  CHECK_OK(tapio_transport_set_write_buffer_limits(r.t, 0, 0));
  write_pattern(r.t, 100, &offset);
  CHECK_EQ(tapio_transport_get_write_buffer_size(r.t), 0);
  CHECK_STR(r.log, "made");
  fill_until_buffered(r.t, &offset);
  CHECK_STR(r.log, "made pause");
  CHECK(r.size_at_pause > 0);
  CHECK_OK(tapio_transport_write_eof(r.t));
  CHECK_EQ(raw_drain_pattern(loop, peer, &status), offset);
  WAIT_FOR(loop, r.nresume == 1);
  CHECK_EQ(r.size_at_resume, 0);
  CHECK_STR(r.log, "made pause resume");
  end_pair(loop, &r, peer);
}

/* A protocol that writes until pause_writing and starts again at
 * resume_writing. */
typedef struct flooder {
  size_t offset, limit, chunk;
  size_t min_at_pause, max_at_resume;
} flooder;

static void flood(rec *r, rec_event ev)
{
  flooder *f = r->user;
  static char buf[16 * 1024];
  if (ev == EV_PAUSE && r->size_at_pause < f->min_at_pause)
    f->min_at_pause = r->size_at_pause;
  if (ev == EV_RESUME && r->size_at_resume > f->max_at_resume)
    f->max_at_resume = r->size_at_resume;
  if (ev == EV_MADE) { /* a fixed send buffer: no autotuning to 4 MiB */
    int small = 16 * 1024;
    setsockopt(tapio_transport_get_fd(r->t), SOL_SOCKET, SO_SNDBUF, &small,
               sizeof small);
  }
  if (ev != EV_MADE && ev != EV_RESUME)
    return;
  while (!r->paused && f->offset < f->limit) {
    size_t n = f->limit - f->offset < f->chunk ? f->limit - f->offset
                                               : f->chunk;
    pattern_fill(buf, n, f->offset);
    CHECK_OK(tapio_transport_write(r->t, buf, n));
    f->offset += n;
  }
  if (f->offset == f->limit && !r->paused)
    CHECK_OK(tapio_transport_close(r->t));
}

/* Facing a peer that never reads, a protocol that stops at pause_writing
 * keeps the buffer bounded: high mark plus at most one write. */
static void buffer_bounded_by_pause(void)
{
  tapio_loop *loop = new_loop();
  flooder f = { 0, SIZE_MAX, 16 * 1024, SIZE_MAX, 0 };
  rec r;
  size_t low, high;
  int peer, i;
  rec_init(&r);
  r.hook = flood;
  r.user = &f;
  peer = pair_raw(loop, &r);
  CHECK_STR(r.log, "made pause"); /* flooded from connection_made */
  tapio_transport_get_write_buffer_limits(r.t, &low, &high);
  for (i = 0; i < 20; i++) {
    spin(loop, 1);
    CHECK(tapio_transport_get_write_buffer_size(r.t) <= high + f.chunk);
  }
  CHECK(r.size_at_pause > high);
  CHECK(tapio_transport_get_stat(r.t, TAPIO_STAT_WRITE_BUFFER_PEAK) <=
        high + f.chunk);
  CHECK_STR(r.log, "made pause");
  end_pair(loop, &r, peer);
}

/* Many pause/resume rounds against a reading peer: they alternate, each at
 * its mark, and the stream arrives whole. */
static void pause_resume_rounds(void)
{
  tapio_loop *loop = new_loop();
  flooder f = { 0, 4u << 20, 16 * 1024, SIZE_MAX, 0 };
  rec r;
  int peer, status = 1;
  rec_init(&r);
  r.hook = flood;
  r.user = &f;
  peer = pair_raw(loop, &r);
  CHECK_EQ(raw_drain_pattern(loop, peer, &status), f.limit);
  CHECK_EQ(status, 0);
  WAIT_FOR(loop, r.lost);
  CHECK(r.npause >= 2);
  CHECK_EQ(r.npause, r.nresume);
  CHECK(strstr(r.log, "BAD") == NULL);
  CHECK(f.min_at_pause > 64 * 1024);    /* strictly over the default high */
  CHECK(f.max_at_resume <= 16 * 1024);  /* at or below the default low */
  end_pair(loop, &r, peer);
}

TEST_MAIN(
  TEST(pause_strictly_over_high),
  TEST(resume_at_low_or_below),
  TEST(set_limits_below_buffer_pauses),
  TEST(zero_limits),
  TEST(buffer_bounded_by_pause),
  TEST(pause_resume_rounds)
)
