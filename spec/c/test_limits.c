/* Limits: descriptors running out when a loop is made, many timers falling
 * due at once, and size arguments at the edge of their types. */
#include "test.h"

#include <math.h>

/* ---- Out of descriptors ------------------------------------------------ */

/* A loop needs two descriptors (its epoll instance and its wakeup). With
 * none or one left, tapio_loop_new returns TAPIO_EMFILE at once, keeps no
 * descriptor and no memory, and the process goes on: with two, it works. */
static void loop_new_emfile(void)
{
  fd_fill f;
  tapio_loop *loop = NULL;
  int free_fds;
  fd_fill_up(&f);
  for (free_fds = 0; free_fds <= 1; free_fds++) {
    fd_fill_free(&f, free_fds ? 1 : 0);
    CHECK_EQ(fd_count_free(), free_fds);
    loop = (tapio_loop *)&f; /* overwritten with NULL on failure */
    CHECK_ERR(tapio_loop_new(&loop), TAPIO_EMFILE);
    CHECK(loop == NULL);
    CHECK_EQ(fd_count_free(), free_fds); /* nothing kept */
  }
  fd_fill_free(&f, 1);
  CHECK_OK(tapio_loop_new(&loop));
  CHECK_EQ(fd_count_free(), 0);
  free_loop(loop);
  CHECK_EQ(fd_count_free(), 2);
  fd_fill_release(&f);
}

/* ---- Timers falling due together --------------------------------------- */

enum { NTIMERS = 100000 };

typedef struct timer_order {
  double when[NTIMERS];
  int ran[NTIMERS]; /* the indexes (the scheduling order), as they ran */
  int n;
} timer_order;

typedef struct timer_arg {
  timer_order *o;
  int index;
} timer_arg;

static void timer_ran(void *ud)
{
  timer_arg *a = ud;
  a->o->ran[a->o->n++] = a->index;
}

/* 100,000 timers that are all due when the loop next looks (as after a
 * stall): half of them due at one same time, half at times spread in a
 * shuffled order. One iteration runs them all, by due time and then in
 * the order they were scheduled, in well under a second: they are sorted
 * once, not inserted one by one into a sorted list. */
static void timers_due_together_are_linearithmic(void)
{
  static timer_order o;
  static timer_arg args[NTIMERS];
  tapio_loop *loop = new_loop();
  double base = tapio_loop_time(loop) - 10, t0, took, bound;
  unsigned rnd = 12345;
  int i;
  for (i = 0; i < NTIMERS; i++) {
    rnd = rnd * 1103515245u + 12345u;
    o.when[i] = i % 2 ? base : base + (double)(rnd % 5000000) * 1e-6;
    args[i].o = &o;
    args[i].index = i;
    CHECK_OK(tapio_call_at(loop, o.when[i], timer_ran, &args[i], NULL));
  }
  t0 = now_sec();
  CHECK_OK(tapio_loop_run_once(loop, 0));
  took = now_sec() - t0;
  CHECK_EQ(o.n, NTIMERS);
  for (i = 1; i < NTIMERS; i++) {
    int a = o.ran[i - 1], b = o.ran[i];
    if (o.when[a] > o.when[b] || (o.when[a] == o.when[b] && a > b))
      FAIL("timer %d ran before timer %d", a, b);
  }
  /* about 0.05 s here; the sorted insertion took minutes */
  bound = under_valgrind() ? 30 : 2;
#if defined(__SANITIZE_ADDRESS__)
  bound *= 3;
#endif
  if (took > bound)
    FAIL("%d due timers took %.2f s (bound %.0f s)", NTIMERS, took, bound);
  printf("  %d due timers ran in %.3f s\n", NTIMERS, took);
  free_loop(loop);
}

/* ---- Sizes at the edge of their types ---------------------------------- */

/* high = 4 * low when only low is given: saturated, not overflowed (UBSan
 * watches the signed multiplication). */
static void limits_do_not_overflow(void)
{
  tapio_loop *loop = new_loop();
  rec r;
  int peer;
  size_t low, high;
  rec_init(&r);
  peer = pair_raw(loop, &r);
  CHECK_OK(tapio_transport_set_write_buffer_limits(r.t, -1, INT64_MAX));
  tapio_transport_get_write_buffer_limits(r.t, &low, &high);
  CHECK(low == (size_t)INT64_MAX && high == (size_t)INT64_MAX);
  CHECK_OK(tapio_transport_set_write_buffer_limits(r.t, -1,
                                                   INT64_MAX / 4 + 1));
  tapio_transport_get_write_buffer_limits(r.t, &low, &high);
  CHECK(low == (size_t)(INT64_MAX / 4 + 1) && high == (size_t)INT64_MAX);
  CHECK_OK(tapio_transport_set_write_buffer_limits(r.t, INT64_MAX, -1));
  tapio_transport_get_write_buffer_limits(r.t, &low, &high);
  CHECK(low == (size_t)(INT64_MAX / 4) && high == (size_t)INT64_MAX);
  CHECK_ERR(tapio_transport_set_write_buffer_limits(r.t, INT64_MIN, -1),
            TAPIO_EINVAL);
  end_pair(loop, &r, peer);
}

/* tapio_write_buffer_limits is the rule set_write_buffer_limits applies
 * (a binding's closed transport keeps limits by it): for each pair, the
 * same limits as a transport's, or the same refusal, leaving both as they
 * were. */
static void limits_without_a_transport(void)
{
  static const int64_t pairs[][2] = {
    { -1, -1 }, { -1, 1000 }, { 8000, -1 }, { 400, 100 }, { 0, 0 },
    { -1, INT64_MAX }, { INT64_MAX, -1 }, { 10, 20 }, { -2, -1 },
    { -1, INT64_MIN },
  };
  tapio_loop *loop = new_loop();
  rec r;
  int peer;
  size_t i, low, high;
  rec_init(&r);
  peer = pair_raw(loop, &r);
  for (i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
    int64_t h = pairs[i][0], l = pairs[i][1];
    int rc = tapio_write_buffer_limits(&h, &l);
    CHECK_EQ(rc, tapio_transport_set_write_buffer_limits(r.t, pairs[i][0],
                                                         pairs[i][1]));
    if (rc < 0) {
      CHECK(h == pairs[i][0] && l == pairs[i][1]);
      continue;
    }
    tapio_transport_get_write_buffer_limits(r.t, &low, &high);
    CHECK(low == (size_t)l && high == (size_t)h);
  }
  CHECK_ERR(tapio_write_buffer_limits(NULL, NULL), TAPIO_EINVAL);
  end_pair(loop, &r, peer);
}

/* Lengths no object can have (past PTRDIFF_MAX, alone or added up) are
 * TAPIO_EINVAL before any byte is read from the buffers: with data
 * queued, a wrapped allocation size would have copied past them. */
static void write_lengths_past_any_object_einval(void)
{
  tapio_loop *loop = new_loop();
  rec r;
  int peer;
  size_t offset = 0, before;
  const void *bufs[2] = { "a", "b" };
  size_t lens[2] = { SIZE_MAX / 2 + 1, SIZE_MAX / 2 + 1 };
  size_t lens1[2] = { 1, (size_t)PTRDIFF_MAX };
  rec_init(&r);
  peer = pair_raw(loop, &r);
  fill_until_buffered(r.t, &offset);
  before = tapio_transport_get_write_buffer_size(r.t);
  CHECK_ERR(tapio_transport_write(r.t, "x", SIZE_MAX), TAPIO_EINVAL);
  CHECK_ERR(tapio_transport_write(r.t, "x", (size_t)PTRDIFF_MAX + 1),
            TAPIO_EINVAL);
  CHECK_ERR(tapio_transport_writelines(r.t, bufs, lens, 2), TAPIO_EINVAL);
  CHECK_ERR(tapio_transport_writelines(r.t, bufs, lens1, 2), TAPIO_EINVAL);
  CHECK_EQ(tapio_transport_get_write_buffer_size(r.t), before);
  CHECK_EQ(tapio_transport_is_closing(r.t), 0);
  end_pair(loop, &r, peer);
}

/* A NaN time is never due and has no place in the order of due times. */
static void call_at_nan_einval(void)
{
  tapio_loop *loop = new_loop();
  tapio_handle *h = (tapio_handle *)&h;
  CHECK_ERR(tapio_call_at(loop, NAN, never_called, NULL, &h), TAPIO_EINVAL);
  CHECK(h == NULL);
  h = (tapio_handle *)&h;
  CHECK_ERR(tapio_call_later(loop, NAN, never_called, NULL, &h), TAPIO_EINVAL);
  CHECK(h == NULL);
  spin(loop, 2);
  free_loop(loop);
}

/* A host count whose array size wraps around is TAPIO_EINVAL, before any
 * host is read. */
static void server_host_count_overflow_einval(void)
{
  tapio_loop *loop = new_loop();
  const char *hosts[1] = { "127.0.0.1" };
  CHECK_ERR(tapio_create_server(loop, hosts, SIZE_MAX / sizeof(char *) + 2,
                                0, refusing_factory, NULL, NULL, never_served,
                                NULL), TAPIO_EINVAL);
  spin(loop, 2);
  free_loop(loop);
}

TEST_MAIN(
  TEST(loop_new_emfile),
  TEST(timers_due_together_are_linearithmic),
  TEST(limits_do_not_overflow),
  TEST(limits_without_a_transport),
  TEST(write_lengths_past_any_object_einval),
  TEST(call_at_nan_einval),
  TEST(server_host_count_overflow_einval)
)
