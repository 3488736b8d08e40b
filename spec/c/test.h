/* The harness of the C tests: checks, a test runner, a deadline-bounded
 * loop runner, a protocol that records its callbacks as one string, and
 * raw POSIX sockets for peers whose behaviour must not come from tapio.
 *
 * Every test runs in a child process of its own: a failed check exits the
 * child at once, a crash or a hang (SIGALRM) fails that test only, limits a
 * test lowers (RLIMIT_NOFILE) die with it, and valgrind or LeakSanitizer
 * check each child's leaks as it exits. TAPIO_TEST_NOFORK=1 runs the tests
 * in-process (for a debugger); arguments name the tests to run. */
#ifndef TAPIO_TEST_H
#define TAPIO_TEST_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tapio.h"

/* ---- Checks -------------------------------------------------------------- */

#define TEST_SKIP_STATUS 77

static inline void test_fail_(const char *file, int line, const char *fmt,
                              ...)
    __attribute__((noreturn, format(printf, 3, 4)));
static inline void test_fail_(const char *file, int line, const char *fmt,
                              ...)
{
  va_list ap;
  fprintf(stderr, "%s:%d: ", file, line);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  fflush(NULL);
  _exit(1); /* the test's handles are live: skip the leak report */
}

#define FAIL(...) test_fail_(__FILE__, __LINE__, __VA_ARGS__)

#define CHECK(cond)                                                          \
  do {                                                                       \
    if (!(cond))                                                             \
      FAIL("CHECK(%s) failed", #cond);                                       \
  } while (0)

#define CHECK_CMP(a, op, b)                                                  \
  do {                                                                       \
    long long a_ = (long long)(a), b_ = (long long)(b);                      \
    if (!(a_ op b_))                                                         \
      FAIL("CHECK(%s %s %s) failed: %lld vs %lld", #a, #op, #b, a_, b_);     \
  } while (0)

#define CHECK_EQ(a, b) CHECK_CMP(a, ==, b)

#define CHECK_STR(a, b)                                                      \
  do {                                                                       \
    const char *a_ = (a), *b_ = (b);                                         \
    if (a_ == NULL || b_ == NULL || strcmp(a_, b_) != 0)                     \
      FAIL("CHECK_STR(%s, %s) failed:\n  got      \"%s\"\n  expected \"%s\"", \
           #a, #b, a_ ? a_ : "(null)", b_ ? b_ : "(null)");                  \
  } while (0)

/* expr returns a tapio code; prints both codes by name. */
#define CHECK_ERR(expr, code)                                                \
  do {                                                                       \
    int got_ = (int)(expr), want_ = (code);                                  \
    if (got_ != want_)                                                       \
      FAIL("%s returned %d (%s), expected %d (%s)", #expr, got_,             \
           tapio_errname(got_), want_, tapio_errname(want_));                \
  } while (0)

#define CHECK_OK(expr) CHECK_ERR(expr, 0)

#define SKIP(why)                                                            \
  do {                                                                       \
    fprintf(stderr, "skipped: %s\n", why);                                   \
    fflush(NULL);                                                            \
    _exit(TEST_SKIP_STATUS);                                                 \
  } while (0)

/* ---- Runner -------------------------------------------------------------- */

typedef struct test_case {
  const char *name;
  void (*fn)(void);
} test_case;

#define TEST(fn) { #fn, fn }

static inline double now_sec(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static inline int under_valgrind(void)
{
  const char *preload = getenv("LD_PRELOAD");
  return preload && strstr(preload, "vgpreload");
}

/* How long a wait may take before the test fails. Generous under valgrind
 * and sanitizers, which slow every callback down. */
static inline double test_timeout(void)
{
  const char *env = getenv("TAPIO_TEST_TIMEOUT");
  double t = 5.0;
  if (env && atof(env) > 0)
    return atof(env);
  if (under_valgrind())
    t *= 5;
#if defined(__SANITIZE_ADDRESS__)
  t *= 2;
#endif
  return t;
}

static inline int test_selected(int argc, char **argv, const char *name)
{
  int i;
  if (argc < 2)
    return 1;
  for (i = 1; i < argc; i++)
    if (strcmp(argv[i], name) == 0)
      return 1;
  return 0;
}

/* Runs one test in a child; returns 0 ok, 1 failed, 2 skipped. */
static inline int test_run_one(const test_case *tc)
{
  int status;
  pid_t pid;
  fflush(NULL);
  pid = fork();
  if (pid < 0) {
    perror("fork");
    return 1;
  }
  if (pid == 0) {
    signal(SIGPIPE, SIG_DFL); /* the core must not need SIGPIPE ignored */
    alarm((unsigned)(test_timeout() * 4 + 10));
    tc->fn();
    fflush(NULL);
    exit(0); /* runs LeakSanitizer; valgrind checks leaks at exit */
  }
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
    ;
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
    return 0;
  if (WIFEXITED(status) && WEXITSTATUS(status) == TEST_SKIP_STATUS)
    return 2;
  if (WIFEXITED(status))
    printf("  (%s: exit status %d)\n", tc->name, WEXITSTATUS(status));
  else if (WIFSIGNALED(status))
    printf("  (%s: killed by signal %d: %s)\n", tc->name, WTERMSIG(status),
           WTERMSIG(status) == SIGALRM ? "hung" : strsignal(WTERMSIG(status)));
  return 1;
}

/* Under valgrind, warm (one of the file's own tests) runs once in the
 * runner's process before the tests fork. Valgrind translates a block of
 * code the first time a process runs it, and a child inherits what its
 * parent translated: without this, every child translated OpenSSL and the
 * core anew (a TLS test took some 2 s under valgrind, 0.4 s warm). Every
 * test leaves nothing behind (each child's leak check proves it), so the
 * children start as they would without it. */
static inline void test_warm_up(void (*warm)(void), int nofork)
{
  if (!warm || nofork || !under_valgrind())
    return;
  warm();
  fflush(NULL);
}

static inline int test_main(int argc, char **argv, const test_case *tests,
                            size_t n, void (*warm)(void))
{
  static const char *const label[] = { "ok  ", "FAIL", "skip" };
  int nofork = getenv("TAPIO_TEST_NOFORK") != NULL;
  size_t i, counts[3] = { 0, 0, 0 };
  test_warm_up(warm, nofork);
  for (i = 0; i < n; i++) {
    double t0 = now_sec();
    int r;
    if (!test_selected(argc, argv, tests[i].name))
      continue;
    if (nofork) {
      tests[i].fn();
      r = 0;
    } else {
      r = test_run_one(&tests[i]);
    }
    counts[r]++;
    printf("%s %s (%.2fs)\n", label[r], tests[i].name, now_sec() - t0);
    fflush(stdout);
  }
  printf("%zu passed, %zu failed, %zu skipped\n", counts[0], counts[1],
         counts[2]);
  return counts[1] ? 1 : 0;
}

#define TEST_MAIN_WARM(warm, ...)                                            \
  int main(int argc, char **argv)                                            \
  {                                                                          \
    static const test_case tests_[] = { __VA_ARGS__ };                       \
    return test_main(argc, argv, tests_, sizeof tests_ / sizeof *tests_,     \
                     warm);                                                  \
  }

#define TEST_MAIN(...) TEST_MAIN_WARM(NULL, __VA_ARGS__)

/* ---- Loop helpers -------------------------------------------------------- */

static inline tapio_loop *new_loop(void)
{
  tapio_loop *loop = NULL;
  CHECK_OK(tapio_loop_new(&loop));
  CHECK(loop != NULL);
  return loop;
}

/* A loop on a virtual clock (the testing kit's). */
static inline tapio_loop *new_virtual(void)
{
  tapio_loop *loop = NULL;
  CHECK_OK(tapio_loop_new_virtual(&loop, NULL, NULL));
  CHECK(loop != NULL);
  CHECK_EQ(tapio_loop_is_virtual(loop), 1);
  return loop;
}

static inline void free_loop(tapio_loop *loop)
{
  CHECK_OK(tapio_loop_free(loop));
}

/* A call_later timer that bounds a wait, so that run_once(loop, 1) always
 * returns even when the awaited event never comes. */
typedef struct deadline {
  tapio_handle *h;
  int expired;
} deadline;

static inline void deadline_fire_(void *ud)
{
  ((deadline *)ud)->expired = 1;
}

static inline void deadline_start(deadline *d, tapio_loop *loop, double secs)
{
  d->expired = 0;
  d->h = NULL;
  CHECK_OK(tapio_call_later(loop, secs, deadline_fire_, d, &d->h));
}

static inline void deadline_end(deadline *d)
{
  tapio_handle_cancel(d->h);
  tapio_handle_release(d->h);
}

/* Runs the loop until cond holds; fails the test after secs seconds. */
#define WAIT_FOR_T(loop, cond, secs)                                         \
  do {                                                                       \
    deadline d_;                                                             \
    double s_ = (secs);                                                      \
    deadline_start(&d_, (loop), s_);                                         \
    while (!(cond) && !d_.expired)                                           \
      CHECK_OK(tapio_loop_run_once((loop), 1));                              \
    deadline_end(&d_);                                                       \
    if (!(cond))                                                             \
      FAIL("timed out after %.1fs waiting for %s", s_, #cond);               \
  } while (0)

#define WAIT_FOR(loop, cond) WAIT_FOR_T(loop, cond, test_timeout())

/* A test file built with -DTAPIO_TEST_AS_HOST waits as a host asleep on
 * the loop's descriptor (HOST_WAIT) wherever it says WAIT_FOR, and with
 * -DTAPIO_TEST_AS_FRAMES as a host that steps once a frame (1 ms) and
 * never waits on tapio: every event source the file's tests wait for must
 * reach such hosts too. Not in ctest (it would double the run); expect
 * the tests that count descriptors to see the backend's two more, and a
 * 7-byte BufferedProtocol (one read a step, as asyncio's) to outlast the
 * frames' deadline. */
#ifdef TAPIO_TEST_AS_HOST
#undef WAIT_FOR_T
#define WAIT_FOR_T(loop, cond, secs) HOST_WAIT(loop, cond)
#endif
#ifdef TAPIO_TEST_AS_FRAMES
#undef WAIT_FOR_T
#define WAIT_FOR_T(loop, cond, secs)                                         \
  do {                                                                       \
    double e_ = now_sec() + test_timeout();                                  \
    while (!(cond)) {                                                        \
      if (now_sec() > e_)                                                    \
        FAIL("timed out (in frames) waiting for %s", #cond);                 \
      CHECK_OK(tapio_loop_run_once((loop), 0));                              \
      poll(NULL, 0, 1);                                                      \
    }                                                                        \
  } while (0)
#endif

/* Waits as a host that owns its main loop does, allocating nothing (the
 * WAIT_FOR deadline is a timer): sleeps in poll() on tapio's descriptor
 * for the timeout tapio gives, capped by the test's deadline (which fails
 * the test: a host that would sleep through work is the bug), steps. */
#define HOST_WAIT(loop, cond)                                                \
  do {                                                                       \
    int fd_ = tapio_loop_backend_fd(loop);                                   \
    double end_ = now_sec() + test_timeout();                                \
    CHECK(fd_ >= 0);                                                         \
    while (!(cond)) {                                                        \
      int ms_ = tapio_loop_backend_timeout(loop);                            \
      int left_ = (int)((end_ - now_sec()) * 1000) + 1;                      \
      struct pollfd p_ = { fd_, POLLIN, 0 };                                 \
      if (left_ <= 0)                                                        \
        FAIL("timed out (as a host) waiting for %s", #cond);                 \
      if (poll(&p_, 1, ms_ < 0 || ms_ > left_ ? left_ : ms_) == 0 &&         \
          (ms_ < 0 || ms_ > left_))                                          \
        FAIL("slept (as a host) to the deadline waiting for %s", #cond);     \
      CHECK_OK(tapio_loop_run_once(loop, 0));                                \
    }                                                                        \
  } while (0)

/* The CPU time this process used so far: a loop that spins shows. */
static inline double cpu_seconds(void)
{
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
         (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

/* n iterations that handle what is ready without waiting. */
static inline void spin(tapio_loop *loop, int n)
{
  while (n-- > 0)
    CHECK_OK(tapio_loop_run_once(loop, 0));
}

/* Runs the loop until secs of loop time have passed (a loop timer, not a
 * sleep: used where a figure must measure elapsed time). */
static inline void run_for(tapio_loop *loop, double secs)
{
  deadline d;
  deadline_start(&d, loop, secs);
  while (!d.expired)
    CHECK_OK(tapio_loop_run_once(loop, 1));
  deadline_end(&d);
}

/* ---- Recording protocol -------------------------------------------------- */

/* Callbacks a test can hook an action onto. */
typedef enum rec_event {
  EV_MADE, EV_DATA, EV_EOF, EV_LOST, EV_PAUSE, EV_RESUME, EV_GETBUF,
  EV_BUFUPD, EV_COUNT
} rec_event;

typedef enum rec_action {
  ACT_NONE, ACT_CLOSE, ACT_ABORT, ACT_CLOSE_TWICE, ACT_ABORT_TWICE,
  ACT_CLOSE_ABORT, ACT_ABORT_CLOSE
} rec_action;

/* One transport's view: its callbacks as a space-separated string
 * ("made data:5 eof lost:0"), the bytes it received, and what to do inside
 * each callback. Consecutive data_received (or buffer_updated) calls are
 * merged into one token, so chunking does not change the sequence. A
 * callback that breaks the reference's state machine logs a BAD token. */
typedef struct rec {
  char log[1024];
  size_t merge_at; /* where the last data/buf token starts, or SIZE_MAX */
  size_t merge_total;
  tapio_transport *t; /* NULL before connection_made and after lost */
  int made, eof, lost, paused;
  int lost_code;
  char lost_msg[256];
  int npause, nresume, ngetbuf;
  size_t size_at_pause, size_at_resume; /* write buffer size then */
  char *in;         /* bytes received */
  size_t nin, incap;
  int eof_ret;      /* what eof_received returns */
  rec_action act[EV_COUNT];
  char *buf;        /* BufferedProtocol: get_buffer returns buf/buflen */
  size_t buflen;
  void (*hook)(struct rec *r, rec_event ev); /* test-specific reaction */
  void *user;
} rec;

static inline void rec_init(rec *r)
{
  memset(r, 0, sizeof *r);
  r->merge_at = SIZE_MAX;
}

static inline void rec_free(rec *r)
{
  free(r->in);
  r->in = NULL;
}

/* A hook that keeps the transport past its end (a shell). */
static inline void retain_in_made(rec *r, rec_event ev)
{
  if (ev == EV_MADE)
    CHECK_OK(tapio_transport_retain(r->t));
}

/* The usual end of a test with one transport and a raw peer socket. */
static inline void end_pair(tapio_loop *loop, rec *r, int peer)
{
  if (peer >= 0)
    close(peer);
  free_loop(loop);
  rec_free(r);
}

static inline void rec_append_(rec *r, const char *tok)
{
  size_t len = strlen(r->log);
  snprintf(r->log + len, sizeof r->log - len, "%s%s", len ? " " : "", tok);
}

static inline void rec_log(rec *r, const char *tok)
{
  r->merge_at = SIZE_MAX;
  rec_append_(r, tok);
}

/* Logs "kind:n", adding n to the previous token if it was the same kind. */
static inline void rec_log_bytes(rec *r, const char *kind, size_t n)
{
  size_t klen = strlen(kind), len;
  if (r->merge_at != SIZE_MAX &&
      strncmp(r->log + r->merge_at, kind, klen) == 0 &&
      r->log[r->merge_at + klen] == ':') {
    r->merge_total += n;
    r->log[r->merge_at] = '\0';
  } else {
    r->merge_total = n;
    len = strlen(r->log);
    if (len && len + 1 < sizeof r->log) {
      r->log[len] = ' ';
      r->log[len + 1] = '\0';
    }
    r->merge_at = strlen(r->log);
  }
  len = strlen(r->log);
  snprintf(r->log + len, sizeof r->log - len, "%s:%zu", kind,
           r->merge_total);
}

static inline void rec_keep_(rec *r, const char *data, size_t len)
{
  if (r->nin + len > r->incap) {
    r->incap = (r->nin + len) * 2;
    r->in = realloc(r->in, r->incap);
    CHECK(r->in != NULL);
  }
  memcpy(r->in + r->nin, data, len);
  r->nin += len;
}

static inline void rec_act_(rec *r, tapio_transport *t, rec_event ev)
{
  switch (r->act[ev]) {
  case ACT_NONE: break;
  case ACT_CLOSE: tapio_transport_close(t); break;
  case ACT_ABORT: tapio_transport_abort(t); break;
  case ACT_CLOSE_TWICE:
    tapio_transport_close(t);
    tapio_transport_close(t);
    break;
  case ACT_ABORT_TWICE:
    tapio_transport_abort(t);
    tapio_transport_abort(t);
    break;
  case ACT_CLOSE_ABORT:
    tapio_transport_close(t);
    tapio_transport_abort(t);
    break;
  case ACT_ABORT_CLOSE:
    tapio_transport_abort(t);
    tapio_transport_close(t);
    break;
  }
  if (r->hook)
    r->hook(r, ev);
}

/* Logs a BAD token when a callback comes out of the reference's order. */
static inline void rec_order_(rec *r, tapio_transport *t, rec_event ev)
{
  if (r->lost)
    rec_log(r, "BAD:after-lost");
  else if (ev != EV_MADE && !r->made)
    rec_log(r, "BAD:before-made");
  else if (ev != EV_MADE && t != r->t)
    rec_log(r, "BAD:other-transport");
  else if (r->eof && (ev == EV_DATA || ev == EV_GETBUF || ev == EV_BUFUPD ||
                      ev == EV_EOF))
    rec_log(r, "BAD:after-eof");
}

static inline void rec_made_(void *ud, tapio_transport *t)
{
  rec *r = ud;
  if (r->made)
    rec_log(r, "BAD:made-twice");
  r->made = 1;
  r->t = t;
  rec_order_(r, t, EV_MADE);
  rec_log(r, "made");
  rec_act_(r, t, EV_MADE);
}

static inline void rec_data_(void *ud, tapio_transport *t, const char *data,
                             size_t len)
{
  rec *r = ud;
  rec_order_(r, t, EV_DATA);
  if (len == 0)
    rec_log(r, "BAD:empty-data");
  rec_keep_(r, data, len);
  rec_log_bytes(r, "data", len);
  rec_act_(r, t, EV_DATA);
}

static inline int rec_eof_(void *ud, tapio_transport *t)
{
  rec *r = ud;
  rec_order_(r, t, EV_EOF);
  r->eof = 1;
  rec_log(r, "eof");
  rec_act_(r, t, EV_EOF);
  return r->eof_ret;
}

static inline void rec_lost_(void *ud, tapio_transport *t, int code,
                             const char *message)
{
  rec *r = ud;
  char tok[64];
  rec_order_(r, t, EV_LOST);
  r->lost = 1;
  r->lost_code = code;
  snprintf(r->lost_msg, sizeof r->lost_msg, "%s", message ? message : "");
  if (code == 0 && message != NULL)
    rec_log(r, "BAD:message-without-code");
  if (code != 0 && message == NULL)
    rec_log(r, "BAD:code-without-message");
  snprintf(tok, sizeof tok, "lost:%s", code ? tapio_errname(code) : "0");
  rec_log(r, tok);
  rec_act_(r, t, EV_LOST);
  r->t = NULL; /* freed once this returns */
}

static inline void rec_pause_(void *ud, tapio_transport *t)
{
  rec *r = ud;
  rec_order_(r, t, EV_PAUSE);
  if (r->paused)
    rec_log(r, "BAD:pause-twice");
  r->paused = 1;
  r->npause++;
  r->size_at_pause = tapio_transport_get_write_buffer_size(t);
  rec_log(r, "pause");
  rec_act_(r, t, EV_PAUSE);
}

static inline void rec_resume_(void *ud, tapio_transport *t)
{
  rec *r = ud;
  rec_order_(r, t, EV_RESUME);
  if (!r->paused)
    rec_log(r, "BAD:resume-unpaused");
  r->paused = 0;
  r->nresume++;
  r->size_at_resume = tapio_transport_get_write_buffer_size(t);
  rec_log(r, "resume");
  rec_act_(r, t, EV_RESUME);
}

static inline void *rec_get_buffer_(void *ud, tapio_transport *t,
                                    int64_t sizehint, size_t *len)
{
  rec *r = ud;
  rec_order_(r, t, EV_GETBUF);
  if (sizehint != -1)
    rec_log(r, "BAD:sizehint");
  r->ngetbuf++;
  rec_act_(r, t, EV_GETBUF);
  *len = r->buflen;
  return r->buf;
}

static inline void rec_buffer_updated_(void *ud, tapio_transport *t,
                                       size_t nbytes)
{
  rec *r = ud;
  rec_order_(r, t, EV_BUFUPD);
  if (nbytes == 0 || nbytes > r->buflen)
    rec_log(r, "BAD:nbytes");
  else
    rec_keep_(r, r->buf, nbytes);
  rec_log_bytes(r, "buf", nbytes);
  rec_act_(r, t, EV_BUFUPD);
}

static const tapio_protocol rec_proto = {
  .size = sizeof(tapio_protocol),
  .connection_made = rec_made_,
  .connection_lost = rec_lost_,
  .pause_writing = rec_pause_,
  .resume_writing = rec_resume_,
  .data_received = rec_data_,
  .eof_received = rec_eof_,
};

/* eof_received NULL: the reference's default, which closes. */
static const tapio_protocol rec_proto_noeof = {
  .size = sizeof(tapio_protocol),
  .connection_made = rec_made_,
  .connection_lost = rec_lost_,
  .pause_writing = rec_pause_,
  .resume_writing = rec_resume_,
  .data_received = rec_data_,
};

/* A BufferedProtocol: data_received is never used. */
static const tapio_protocol rec_bproto = {
  .size = sizeof(tapio_protocol),
  .connection_made = rec_made_,
  .connection_lost = rec_lost_,
  .pause_writing = rec_pause_,
  .resume_writing = rec_resume_,
  .eof_received = rec_eof_,
  .get_buffer = rec_get_buffer_,
  .buffer_updated = rec_buffer_updated_,
};

/* ---- Exception handler that records -------------------------------------- */

typedef struct exc_rec {
  int n;
  int code;          /* the last one */
  char message[256];
  tapio_transport *transport;
} exc_rec;

static inline void exc_record(void *ud, tapio_loop *loop, int code,
                              const char *message, tapio_transport *t)
{
  exc_rec *e = ud;
  (void)loop;
  e->n++;
  e->code = code;
  e->transport = t;
  snprintf(e->message, sizeof e->message, "%s", message ? message : "");
}

/* ---- Creating connections ------------------------------------------------ */

/* What a create_* completion delivered, and whether connection_made had
 * already run then. */
typedef struct conn_wait {
  int done, status;
  tapio_transport *t;
  rec *r;
  int made_before;
} conn_wait;

static inline void on_connected(void *ud, int status, tapio_transport *t)
{
  conn_wait *w = ud;
  w->done++;
  w->status = status;
  w->t = t;
  w->made_before = w->r ? w->r->made : -1;
  if (status != 0 && t != NULL)
    FAIL("connect completion: error %d with a transport", status);
  if (status == 0 && t == NULL)
    FAIL("connect completion: success without a transport");
}

/* Waits for the completion of a create call that just returned 0: neither
 * it nor connection_made ran inside the call, and connection_made ran
 * before it. Returns its status. */
static inline int connect_wait(tapio_loop *loop, conn_wait *w)
{
  CHECK_EQ(w->done, 0);
  if (w->r)
    CHECK_STR(w->r->log, "");
  WAIT_FOR(loop, w->done);
  CHECK_EQ(w->done, 1);
  if (w->status == 0 && w->r) {
    CHECK_EQ(w->made_before, 1);
    CHECK(w->r->t == w->t || w->r->lost);
  }
  return w->status;
}

/* Connects r to host:port and waits for the completion; its status. */
static inline int connect_tcp(tapio_loop *loop, const char *host, int port,
                              rec *r, const tapio_options *opts)
{
  conn_wait w = { 0 };
  w.r = r;
  CHECK_OK(tapio_create_connection(loop, host, port, &rec_proto, r, opts,
                                   on_connected, &w));
  return connect_wait(loop, &w);
}

/* ---- Servers ------------------------------------------------------------- */

#define SRV_MAX 64

/* A server whose factory gives each connection a fresh rec, configured from
 * tmpl (eof_ret, act, hook, buffer). The recs outlive the loop: srv_free
 * after tapio_loop_free. */
typedef struct srv {
  tapio_loop *loop;
  tapio_server *s;
  int done, status;
  int port;
  const tapio_protocol *proto;
  rec tmpl;
  int reject; /* nonzero: the factory returns it */
  int nfactory;
  rec *conns[SRV_MAX];
  size_t n;
  int closed; /* wait_closed fired */
  char msg[256]; /* tapio_loop_error_message during the completion */
} srv;

static inline void srv_init(srv *sv, tapio_loop *loop)
{
  memset(sv, 0, sizeof *sv);
  sv->loop = loop;
  sv->proto = &rec_proto;
  rec_init(&sv->tmpl);
}

static inline int srv_factory(void *ud, tapio_server *server,
                              const tapio_protocol **proto, void **proto_ud)
{
  srv *sv = ud;
  rec *r;
  sv->nfactory++;
  if (server != sv->s)
    FAIL("factory called with server %p, not %p", (void *)server,
         (void *)sv->s);
  if (sv->reject)
    return sv->reject;
  if (sv->n == SRV_MAX)
    FAIL("too many connections");
  r = malloc(sizeof *r);
  CHECK(r != NULL);
  *r = sv->tmpl;
  r->in = NULL;
  sv->conns[sv->n++] = r;
  *proto = sv->proto;
  *proto_ud = r;
  return 0;
}

static inline void on_server(void *ud, int status, tapio_server *server)
{
  srv *sv = ud;
  const char *msg = tapio_loop_error_message(sv->loop);
  sv->done++;
  sv->status = status;
  sv->s = server;
  snprintf(sv->msg, sizeof sv->msg, "%s", msg ? msg : "(none)");
  if ((status == 0) != (server != NULL))
    FAIL("server completion: status %d with server %p", status,
         (void *)server);
}

static inline void on_server_closed(void *ud, tapio_server *server)
{
  srv *sv = ud;
  if (server != sv->s)
    FAIL("wait_closed callback for another server");
  sv->closed++;
}

/* Creates a server on hosts[0..nhosts) and waits for it; its status. The
 * port of the first listening socket goes to sv->port. */
static inline int srv_start_hosts(srv *sv, const char *const *hosts,
                                  size_t nhosts, int port,
                                  const tapio_options *opts)
{
  CHECK_OK(tapio_create_server(sv->loop, hosts, nhosts, port, srv_factory,
                               sv, opts, on_server, sv));
  WAIT_FOR(sv->loop, sv->done);
  CHECK_EQ(sv->done, 1);
  if (sv->status == 0) {
    int fam = 0;
    char host[64];
    CHECK(tapio_server_socket_count(sv->s) >= 1);
    CHECK_OK(tapio_server_get_address(sv->s, 0, host, sizeof host,
                                      &sv->port, &fam));
    CHECK(sv->port > 0);
  }
  return sv->status;
}

/* The usual server: 127.0.0.1, an ephemeral port. */
static inline void srv_start(srv *sv, tapio_loop *loop)
{
  static const char *const hosts[] = { "127.0.0.1" };
  srv_init(sv, loop);
  CHECK_OK(srv_start_hosts(sv, hosts, 1, 0, NULL));
}

/* After tapio_loop_free: the per-connection recs. */
static inline void srv_free(srv *sv)
{
  size_t i;
  for (i = 0; i < sv->n; i++) {
    rec_free(sv->conns[i]);
    free(sv->conns[i]);
  }
  sv->n = 0;
}

/* The end of a test with a server: its reference, the loop, the recs. */
static inline void srv_release_and_free(srv *sv, tapio_loop *loop)
{
  tapio_server_release(sv->s);
  free_loop(loop);
  srv_free(sv);
}

/* The server side of a connection a client makes: waits for it. */
static inline rec *srv_wait_conn(srv *sv, size_t i)
{
  WAIT_FOR(sv->loop, sv->n > i && sv->conns[i]->made);
  return sv->conns[i];
}

/* The usual server and a client c connected to it: the server side's rec,
 * once its connection_made has run. */
static inline rec *srv_start_pair(srv *sv, tapio_loop *loop, rec *c)
{
  rec_init(c);
  srv_start(sv, loop);
  CHECK_OK(connect_tcp(loop, "127.0.0.1", sv->port, c, NULL));
  return srv_wait_conn(sv, 0);
}

/* ---- Raw sockets (the peer that is not tapio) ---------------------------- */

static inline void raw_nonblock(int fd)
{
  int fl = fcntl(fd, F_GETFL);
  CHECK(fl >= 0 && fcntl(fd, F_SETFL, fl | O_NONBLOCK) == 0);
}

static inline socklen_t raw_addr(int family, const char *host, int port,
                                 struct sockaddr_storage *ss)
{
  memset(ss, 0, sizeof *ss);
  if (family == AF_INET6) {
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
    a->sin6_family = AF_INET6;
    a->sin6_port = htons((uint16_t)port);
    CHECK(inet_pton(AF_INET6, host ? host : "::1", &a->sin6_addr) == 1);
    return sizeof *a;
  } else {
    struct sockaddr_in *a = (struct sockaddr_in *)ss;
    a->sin_family = AF_INET;
    a->sin_port = htons((uint16_t)port);
    CHECK(inet_pton(AF_INET, host ? host : "127.0.0.1", &a->sin_addr) == 1);
    return sizeof *a;
  }
}

/* The port of a socket's own end (getsockname) or far end (getpeername). */
static inline int raw_name_port(int fd,
                                int (*fn)(int, struct sockaddr *, socklen_t *))
{
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  CHECK(fn(fd, (struct sockaddr *)&ss, &len) == 0);
  if (ss.ss_family == AF_INET6)
    return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
  return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

static inline int raw_port(int fd)
{
  return raw_name_port(fd, getsockname);
}

static inline int raw_peer_port(int fd)
{
  return raw_name_port(fd, getpeername);
}

/* A bound TCP socket on loopback, port 0; *port gets its port. */
static inline int raw_bind(int family, int *port)
{
  struct sockaddr_storage ss;
  socklen_t len = raw_addr(family, NULL, 0, &ss);
  int fd = socket(family, SOCK_STREAM, 0);
  CHECK(fd >= 0);
  CHECK(bind(fd, (struct sockaddr *)&ss, len) == 0);
  if (port)
    *port = raw_port(fd);
  return fd;
}

/* A listening TCP socket on loopback whose accepted sockets get a small
 * receive buffer, so that a peer that does not read fills up fast. */
static inline int raw_listen(int family, int *port)
{
  int fd = raw_bind(family, port);
  int small = 16 * 1024;
  CHECK(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small) == 0);
  CHECK(listen(fd, 16) == 0);
  return fd;
}

/* Waits until fd is ready for events, running the loop (when given)
 * meanwhile so that tapio makes progress: the loop waits for its own events
 * or a 5 ms tick, whichever comes first, then fd is polled. 1 when ready,
 * 0 on timeout. */
static inline int raw_wait(tapio_loop *loop, int fd, short events)
{
  double end = now_sec() + test_timeout();
  for (;;) {
    struct pollfd p;
    double left = end - now_sec();
    p.fd = fd;
    p.events = events;
    p.revents = 0;
    if (poll(&p, 1, loop || left <= 0 ? 0 : (int)(left * 1000) + 1) > 0)
      return 1;
    if (now_sec() > end)
      return 0;
    if (loop) {
      deadline tick;
      deadline_start(&tick, loop, 0.005);
      CHECK_OK(tapio_loop_run_once(loop, 1));
      deadline_end(&tick);
    }
  }
}

static inline int raw_accept(tapio_loop *loop, int lfd)
{
  int fd;
  if (!raw_wait(loop, lfd, POLLIN))
    FAIL("raw accept timed out");
  fd = accept(lfd, NULL, NULL);
  CHECK(fd >= 0);
  raw_nonblock(fd);
  return fd;
}

/* A nonblocking socket connected (blocking connect) to host:port, or
 * -errno. */
static inline int raw_connect(int family, const char *host, int port)
{
  struct sockaddr_storage ss;
  socklen_t len = raw_addr(family, host, port, &ss);
  int fd = socket(family, SOCK_STREAM, 0);
  CHECK(fd >= 0);
  if (connect(fd, (struct sockaddr *)&ss, len) != 0) {
    int e = errno;
    close(fd);
    return -e;
  }
  raw_nonblock(fd);
  return fd;
}

static inline void raw_send_all(tapio_loop *loop, int fd, const void *data,
                                size_t n)
{
  const char *p = data;
  while (n > 0) {
    ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
    if (k < 0 && errno == EAGAIN) {
      if (!raw_wait(loop, fd, POLLOUT))
        FAIL("raw send timed out");
      continue;
    }
    if (k < 0)
      FAIL("raw send: %s", strerror(errno));
    p += k;
    n -= (size_t)k;
  }
}

static inline void raw_send_str(tapio_loop *loop, int fd, const char *s)
{
  raw_send_all(loop, fd, s, strlen(s));
}

/* Reads into buf until EOF, an error or cap bytes. Returns 0 at EOF,
 * -errno on an error (e.g. -ECONNRESET), 1 when cap was reached; *n gets
 * the count. */
static inline int raw_recv_until_eof(tapio_loop *loop, int fd, char *buf,
                                     size_t cap, size_t *n)
{
  *n = 0;
  while (*n < cap) {
    ssize_t k = recv(fd, buf + *n, cap - *n, 0);
    if (k == 0)
      return 0;
    if (k < 0 && errno == EAGAIN) {
      if (!raw_wait(loop, fd, POLLIN))
        FAIL("raw recv timed out after %zu bytes", *n);
      continue;
    }
    if (k < 0)
      return -errno;
    *n += (size_t)k;
  }
  return 1;
}

/* Reads exactly n bytes (fails the test on EOF, error or timeout). */
static inline void raw_recv_n(tapio_loop *loop, int fd, char *buf, size_t n)
{
  size_t got = 0;
  while (got < n) {
    ssize_t k = recv(fd, buf + got, n - got, 0);
    if (k < 0 && errno == EAGAIN) {
      if (!raw_wait(loop, fd, POLLIN))
        FAIL("raw recv timed out after %zu of %zu bytes", got, n);
      continue;
    }
    if (k <= 0)
      FAIL("raw recv: %s after %zu of %zu bytes",
           k == 0 ? "EOF" : strerror(errno), got, n);
    got += (size_t)k;
  }
}

/* Closes with SO_LINGER 0: the peer gets a RST instead of a FIN. */
static inline void raw_reset(int fd)
{
  struct linger lg = { 1, 0 };
  CHECK(setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg) == 0);
  CHECK(close(fd) == 0);
}

/* r (a tapio client) connected to a raw peer on 127.0.0.1; the peer's
 * descriptor, nonblocking, with a small receive buffer. */
static inline int pair_raw(tapio_loop *loop, rec *r)
{
  int port, peer;
  int lfd = raw_listen(AF_INET, &port);
  CHECK_OK(connect_tcp(loop, "127.0.0.1", port, r, NULL));
  peer = raw_accept(loop, lfd);
  close(lfd);
  return peer;
}

/* Sends "ping" from a to b and "pong" back, and waits for both. */
static inline void roundtrip(tapio_loop *loop, rec *a, rec *b)
{
  size_t na = a->nin, nb = b->nin;
  CHECK_OK(tapio_transport_write(a->t, "ping", 4));
  WAIT_FOR(loop, b->nin >= nb + 4);
  CHECK(memcmp(b->in + nb, "ping", 4) == 0);
  CHECK_OK(tapio_transport_write(b->t, "pong", 4));
  WAIT_FOR(loop, a->nin >= na + 4);
  CHECK(memcmp(a->in + na, "pong", 4) == 0);
}

/* ---- Data ---------------------------------------------------------------- */

/* Bytes that depend on their position in the stream, so that a lost,
 * doubled or reordered chunk shows. */
static inline void pattern_fill(char *buf, size_t n, size_t offset)
{
  size_t i;
  for (i = 0; i < n; i++)
    buf[i] = (char)(((offset + i) * 31 + (offset + i) / 251) & 0xff);
}

/* Index of the first byte that breaks the pattern, or -1. */
static inline long pattern_check(const char *buf, size_t n, size_t offset)
{
  size_t i;
  for (i = 0; i < n; i++)
    if (buf[i] != (char)(((offset + i) * 31 + (offset + i) / 251) & 0xff))
      return (long)i;
  return -1;
}

/* Writes pattern bytes in chunks until tapio has to keep some: the kernel
 * buffers towards a peer that does not read are full. Returns the number of
 * bytes written; *offset advances. Does not run the loop, so nothing
 * drains meanwhile. Stops early if the transport starts closing. */
static inline size_t fill_until_buffered(tapio_transport *t, size_t *offset)
{
  enum { CHUNK = 64 * 1024 };
  static char chunk[CHUNK];
  size_t total = 0;
  /* raise the kernel's pressure point: a small send buffer fills quickly */
  int small = 16 * 1024;
  setsockopt(tapio_transport_get_fd(t), SOL_SOCKET, SO_SNDBUF, &small,
             sizeof small);
  while (tapio_transport_get_write_buffer_size(t) == 0 &&
         !tapio_transport_is_closing(t)) { /* pause_writing may close */
    if (total > 256u * 1024 * 1024)
      FAIL("wrote 256 MiB and tapio buffered nothing");
    pattern_fill(chunk, CHUNK, *offset);
    CHECK_OK(tapio_transport_write(t, chunk, CHUNK));
    *offset += CHUNK;
    total += CHUNK;
  }
  return total;
}

/* Reads n pattern bytes at the peer, the stream's from offset on
 * (running the loop meanwhile); n. */
static inline size_t raw_drain_n(tapio_loop *loop, int peer, size_t n,
                                 size_t offset)
{
  static char buf[64 * 1024];
  size_t total = 0;
  while (total < n) {
    size_t k = n - total < sizeof buf ? n - total : sizeof buf;
    raw_recv_n(loop, peer, buf, k);
    CHECK_EQ(pattern_check(buf, k, offset + total), -1);
    total += k;
  }
  return total;
}

/* A temporary file holding the stream's pattern bytes [0, n), at 0. */
static inline int pattern_file(size_t n)
{
  char path[] = "/tmp/tapio_sendfile_XXXXXX";
  static char buf[64 * 1024];
  size_t off = 0;
  int fd = mkstemp(path);
  CHECK(fd >= 0);
  unlink(path);
  while (off < n) {
    size_t k = n - off < sizeof buf ? n - off : sizeof buf;
    pattern_fill(buf, k, off);
    CHECK_EQ(write(fd, buf, k), (ssize_t)k);
    off += k;
  }
  CHECK_EQ(lseek(fd, 0, SEEK_SET), 0);
  return fd;
}

/* Reads pattern bytes from a raw peer until EOF; checks them; the count. */
static inline size_t raw_drain_pattern(tapio_loop *loop, int fd, int *status)
{
  static char buf[64 * 1024];
  size_t total = 0;
  for (;;) {
    size_t n;
    int rc = raw_recv_until_eof(loop, fd, buf, sizeof buf, &n);
    long bad = pattern_check(buf, n, total);
    if (bad >= 0)
      FAIL("byte %zu of the stream is wrong", total + (size_t)bad);
    total += n;
    if (rc != 1) {
      *status = rc;
      return total;
    }
  }
}

/* ---- Callbacks that must never run --------------------------------------- */

/* Given to calls that must refuse them (a NULL handle, a bad argument). */
static inline void never_called(void *ud)
{
  (void)ud;
  FAIL("a call that was refused ran");
}

static inline void never_connected(void *ud, int status, tapio_transport *t)
{
  (void)ud;
  (void)status;
  (void)t;
  FAIL("the completion of a refused create call ran");
}

static inline void never_served(void *ud, int status, tapio_server *s)
{
  (void)ud;
  (void)status;
  (void)s;
  FAIL("the completion of a refused create call ran");
}

static inline void never_closed(void *ud, tapio_server *s)
{
  (void)ud;
  (void)s;
  FAIL("a refused wait_closed ran");
}

/* A factory for servers no connection reaches. */
static inline int refusing_factory(void *ud, tapio_server *s,
                                   const tapio_protocol **p, void **pud)
{
  (void)ud;
  (void)s;
  (void)p;
  (void)pud;
  return TAPIO_EINVAL;
}

/* ---- Out of descriptors ------------------------------------------------ */

typedef struct fd_fill {
  int fds[256];
  int n;
  struct rlimit old;
} fd_fill;

/* Lowers the descriptor limit a little above what is open and takes every
 * descriptor left, so that the next one asked for fails with EMFILE. */
static inline void fd_fill_up(fd_fill *f)
{
  struct rlimit low;
  int probe = open("/dev/null", O_RDONLY);
  CHECK(probe >= 0);
  CHECK(getrlimit(RLIMIT_NOFILE, &f->old) == 0);
  low = f->old;
  low.rlim_cur = (rlim_t)probe + 32;
  CHECK(setrlimit(RLIMIT_NOFILE, &low) == 0);
  f->fds[0] = probe;
  f->n = 1;
  for (;;) {
    int fd = open("/dev/null", O_RDONLY);
    if (fd < 0) {
      CHECK_EQ(errno, EMFILE);
      break;
    }
    if (f->n == 256)
      FAIL("the lowered descriptor limit did not hold");
    f->fds[f->n++] = fd;
  }
}

/* Gives n of the filled descriptors back. */
static inline void fd_fill_free(fd_fill *f, int n)
{
  while (n-- > 0 && f->n > 0)
    close(f->fds[--f->n]);
}

/* Gives every one back and restores the limit. */
static inline void fd_fill_release(fd_fill *f)
{
  fd_fill_free(f, f->n);
  CHECK(setrlimit(RLIMIT_NOFILE, &f->old) == 0);
}

static inline int fd_is_open(int fd)
{
  return fcntl(fd, F_GETFD) >= 0;
}

/* How many descriptors this process has open. */
static inline int fd_count(void)
{
  int n = 0, fd;
  for (fd = 0; fd < 1024; fd++)
    n += fd_is_open(fd);
  return n;
}

/* How many descriptors can still be opened (opened and closed again). */
static inline int fd_count_free(void)
{
  int fds[256], n = 0;
  while (n < 256 && (fds[n] = open("/dev/null", O_RDONLY)) >= 0)
    n++;
  CHECK(n == 256 || errno == EMFILE);
  for (int i = 0; i < n; i++)
    close(fds[i]);
  return n;
}

/* ---- Misc ---------------------------------------------------------------- */

static inline tapio_options *new_options(tapio_loop *loop)
{
  tapio_options *o = NULL;
  CHECK_OK(tapio_options_new(loop, &o));
  CHECK(o != NULL);
  return o;
}

static inline int ipv6_available(void)
{
  struct sockaddr_storage ss;
  socklen_t len = raw_addr(AF_INET6, "::1", 0, &ss);
  int fd = socket(AF_INET6, SOCK_STREAM, 0);
  int ok = fd >= 0 && bind(fd, (struct sockaddr *)&ss, len) == 0;
  if (fd >= 0)
    close(fd);
  return ok;
}

#endif /* TAPIO_TEST_H */
