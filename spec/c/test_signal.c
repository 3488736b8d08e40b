/* Signals on any loop: tapio_add_signal_handler and
 * tapio_remove_signal_handler, with real signals sent to the test process
 * (each test runs in a child of its own, so dispositions do not leak from
 * one test to the next). */
#include "test.h"

#include <pthread.h>

typedef struct caught {
  tapio_loop *loop;
  int sig;
  int calls;
  int stop;          /* stop the loop at the first call */
  int remove;        /* remove the handler at the first call */
  int removed;       /* what that remove returned */
  pthread_t thread;  /* where the last call ran */
  char *log;         /* shared order log, or NULL */
} caught;

static void on_caught(void *ud)
{
  caught *c = ud;
  c->calls++;
  c->thread = pthread_self();
  if (c->log)
    sprintf(c->log + strlen(c->log), "%s%d", *c->log ? " " : "", c->sig);
  if (c->remove && c->calls == 1)
    c->removed = tapio_remove_signal_handler(c->loop, c->sig);
  if (c->stop)
    tapio_loop_stop(c->loop);
}

static void caught_init(caught *c, tapio_loop *loop, int sig)
{
  memset(c, 0, sizeof *c);
  c->loop = loop;
  c->sig = sig;
}

/* The handler sig has in the process now. */
static void (*disposition(int sig))(int)
{
  struct sigaction sa;
  CHECK(sigaction(sig, NULL, &sa) == 0);
  return sa.sa_handler;
}

static void user_handler(int sig)
{
  (void)sig;
}

/* A signal sent to the process reaches the loop's callback, on the loop's
 * thread. */
static void signal_calls_the_handler(void)
{
  tapio_loop *loop = new_loop();
  caught c;
  caught_init(&c, loop, SIGUSR1);
  CHECK_OK(tapio_add_signal_handler(loop, SIGUSR1, on_caught, &c));
  spin(loop, 2);
  CHECK_EQ(c.calls, 0);
  CHECK(kill(getpid(), SIGUSR1) == 0);
  WAIT_FOR(loop, c.calls == 1);
  CHECK(pthread_equal(c.thread, pthread_self()));
  CHECK(kill(getpid(), SIGUSR1) == 0); /* and again */
  WAIT_FOR(loop, c.calls == 2);
  CHECK_EQ(tapio_remove_signal_handler(loop, SIGUSR1), 1);
  free_loop(loop);
}

/* tapio's handler is the disposition while a loop watches; the one found
 * before (default, ignored, or a handler of the program's) comes back
 * after. */
static void disposition_comes_back(void)
{
  tapio_loop *loop = new_loop();
  struct sigaction sa;
  caught c;
  caught_init(&c, loop, SIGUSR1);
  CHECK(disposition(SIGUSR1) == SIG_DFL);
  CHECK_OK(tapio_add_signal_handler(loop, SIGUSR1, on_caught, &c));
  CHECK(disposition(SIGUSR1) != SIG_DFL);
  CHECK_EQ(tapio_remove_signal_handler(loop, SIGUSR1), 1);
  CHECK(disposition(SIGUSR1) == SIG_DFL);
  signal(SIGUSR2, SIG_IGN);
  CHECK_OK(tapio_add_signal_handler(loop, SIGUSR2, on_caught, &c));
  CHECK(disposition(SIGUSR2) != SIG_IGN);
  CHECK_EQ(tapio_remove_signal_handler(loop, SIGUSR2), 1);
  CHECK(disposition(SIGUSR2) == SIG_IGN);
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = user_handler;
  CHECK(sigaction(SIGHUP, &sa, NULL) == 0);
  CHECK_OK(tapio_add_signal_handler(loop, SIGHUP, on_caught, &c));
  free_loop(loop); /* the loop's end removes its handlers too */
  CHECK(disposition(SIGHUP) == user_handler);
  CHECK_EQ(c.calls, 0);
}

/* Two loops of one thread watching one signal: each is called. The first
 * loop out leaves the disposition to the second. */
static void two_loops_both_called(void)
{
  tapio_loop *a = new_loop(), *b = new_loop();
  caught ca, cb;
  caught_init(&ca, a, SIGUSR1);
  caught_init(&cb, b, SIGUSR1);
  CHECK_OK(tapio_add_signal_handler(a, SIGUSR1, on_caught, &ca));
  CHECK_OK(tapio_add_signal_handler(b, SIGUSR1, on_caught, &cb));
  CHECK(kill(getpid(), SIGUSR1) == 0);
  WAIT_FOR(a, ca.calls == 1);
  WAIT_FOR(b, cb.calls == 1);
  CHECK_EQ(tapio_remove_signal_handler(a, SIGUSR1), 1);
  CHECK(disposition(SIGUSR1) != SIG_DFL);
  CHECK(kill(getpid(), SIGUSR1) == 0);
  WAIT_FOR(b, cb.calls == 2);
  spin(a, 2);
  CHECK_EQ(ca.calls, 1);
  free_loop(b);
  CHECK(disposition(SIGUSR1) == SIG_DFL);
  free_loop(a);
}

typedef struct other {
  caught c;
  int ready[2];  /* the thread tells the main thread its loop watches */
  int rc;
} other;

/* A loop of its own in another thread, run until its handler stops it. */
static void *other_thread(void *ud)
{
  other *o = ud;
  tapio_loop *loop = new_loop();
  deadline d;
  caught_init(&o->c, loop, SIGUSR1);
  o->c.stop = 1;
  CHECK_OK(tapio_add_signal_handler(loop, SIGUSR1, on_caught, &o->c));
  CHECK(write(o->ready[1], "r", 1) == 1);
  deadline_start(&d, loop, test_timeout());
  o->rc = tapio_loop_run(loop);
  CHECK(!d.expired);
  deadline_end(&d);
  free_loop(loop);
  return NULL;
}

/* Loops in two threads, and the main thread blocks the signal: the kernel
 * can only give it to the other thread, whose handler passes it to both
 * loops. The other loop waits in tapio_loop_run and wakes for it. */
static void loops_in_two_threads_both_called(void)
{
  tapio_loop *loop = new_loop();
  sigset_t set, old;
  pthread_t th;
  caught c;
  other o;
  char r;
  memset(&o, 0, sizeof o);
  caught_init(&c, loop, SIGUSR1);
  CHECK(pipe(o.ready) == 0);
  CHECK_OK(tapio_add_signal_handler(loop, SIGUSR1, on_caught, &c));
  CHECK(pthread_create(&th, NULL, other_thread, &o) == 0);
  CHECK(read(o.ready[0], &r, 1) == 1);
  sigemptyset(&set);
  sigaddset(&set, SIGUSR1);
  CHECK(pthread_sigmask(SIG_BLOCK, &set, &old) == 0);
  CHECK(kill(getpid(), SIGUSR1) == 0);
  WAIT_FOR(loop, c.calls == 1);
  CHECK(pthread_join(th, NULL) == 0);
  CHECK_OK(o.rc);
  CHECK_EQ(o.c.calls, 1);
  CHECK(pthread_equal(c.thread, pthread_self()));
  CHECK(!pthread_equal(o.c.thread, pthread_self()));
  CHECK(pthread_sigmask(SIG_SETMASK, &old, NULL) == 0);
  close(o.ready[0]);
  close(o.ready[1]);
  free_loop(loop);
}

typedef struct sender {
  int go[2];
  int sig;
} sender;

static void tell_sender(void *ud)
{
  sender *s = ud;
  CHECK(write(s->go[1], "g", 1) == 1);
}

static void *send_when_told(void *ud)
{
  sender *s = ud;
  char g;
  CHECK(read(s->go[0], &g, 1) == 1);
  CHECK(kill(getpid(), s->sig) == 0);
  return NULL;
}

/* A loop asleep in tapio_loop_run with nothing else to do wakes for the
 * signal, whichever thread the kernel interrupts. */
static void waiting_loop_wakes(void)
{
  tapio_loop *loop = new_loop();
  sender s = { { -1, -1 }, SIGUSR2 };
  pthread_t th;
  deadline d;
  caught c;
  caught_init(&c, loop, SIGUSR2);
  c.stop = 1;
  CHECK(pipe(s.go) == 0);
  CHECK_OK(tapio_add_signal_handler(loop, SIGUSR2, on_caught, &c));
  CHECK(pthread_create(&th, NULL, send_when_told, &s) == 0);
  CHECK_OK(tapio_call_soon(loop, tell_sender, &s, NULL));
  deadline_start(&d, loop, test_timeout());
  CHECK_OK(tapio_loop_run(loop));
  CHECK(!d.expired);
  deadline_end(&d);
  CHECK_EQ(c.calls, 1);
  CHECK(pthread_join(th, NULL) == 0);
  close(s.go[0]);
  close(s.go[1]);
  free_loop(loop);
}

/* A host polling tapio's descriptor wakes for a signal. */
static void polled_descriptor_turns_readable(void)
{
  tapio_loop *loop = new_loop();
  caught c;
  int fd = tapio_loop_backend_fd(loop);
  struct pollfd p = { fd, POLLIN, 0 };
  caught_init(&c, loop, SIGUSR1);
  CHECK(fd >= 0);
  CHECK_OK(tapio_add_signal_handler(loop, SIGUSR1, on_caught, &c));
  CHECK_EQ(poll(&p, 1, 0), 0);
  CHECK(kill(getpid(), SIGUSR1) == 0);
  CHECK_EQ(poll(&p, 1, (int)(test_timeout() * 1000)), 1);
  HOST_WAIT(loop, c.calls == 1);
  free_loop(loop);
}

/* Caught twice before the loop ran: one call (the OS merges a pending
 * signal the same way). Several signals: called in number order. */
static void caught_signals_merge_in_order(void)
{
  tapio_loop *loop = new_loop();
  caught hup, usr1, usr2;
  char log[64] = "";
  caught_init(&hup, loop, SIGHUP);
  caught_init(&usr1, loop, SIGUSR1);
  caught_init(&usr2, loop, SIGUSR2);
  hup.log = usr1.log = usr2.log = log;
  CHECK_OK(tapio_add_signal_handler(loop, SIGUSR2, on_caught, &usr2));
  CHECK_OK(tapio_add_signal_handler(loop, SIGUSR1, on_caught, &usr1));
  CHECK_OK(tapio_add_signal_handler(loop, SIGHUP, on_caught, &hup));
  CHECK(raise(SIGUSR2) == 0); /* the handler has run when raise returns */
  CHECK(raise(SIGUSR1) == 0);
  CHECK(raise(SIGUSR2) == 0);
  CHECK(raise(SIGHUP) == 0);
  WAIT_FOR(loop, usr2.calls == 1);
  spin(loop, 2);
  CHECK_STR(log, "1 10 12");
  free_loop(loop);
}

/* A handler removing itself from its callback: 1, and it is not called
 * again (the disposition found, ignored here, is back). */
static void remove_inside_the_callback(void)
{
  tapio_loop *loop = new_loop();
  caught c;
  caught_init(&c, loop, SIGUSR2);
  c.remove = 1;
  signal(SIGUSR2, SIG_IGN);
  CHECK_OK(tapio_add_signal_handler(loop, SIGUSR2, on_caught, &c));
  CHECK(raise(SIGUSR2) == 0);
  WAIT_FOR(loop, c.calls == 1);
  CHECK_EQ(c.removed, 1);
  CHECK(disposition(SIGUSR2) == SIG_IGN);
  CHECK(raise(SIGUSR2) == 0);
  spin(loop, 3);
  CHECK_EQ(c.calls, 1);
  free_loop(loop);
}

/* Removed after the signal came and before the loop ran: not called. */
static void remove_drops_a_caught_signal(void)
{
  tapio_loop *loop = new_loop();
  caught c;
  caught_init(&c, loop, SIGUSR1);
  CHECK_OK(tapio_add_signal_handler(loop, SIGUSR1, on_caught, &c));
  CHECK(raise(SIGUSR1) == 0);
  CHECK_EQ(tapio_remove_signal_handler(loop, SIGUSR1), 1);
  CHECK_OK(tapio_add_signal_handler(loop, SIGUSR1, on_caught, &c));
  spin(loop, 3);
  CHECK_EQ(c.calls, 0);
  free_loop(loop);
}

/* Caught, then the loop freed before it ran: nobody is called, nothing
 * leaks, and the disposition is back. */
static void loop_free_drops_a_caught_signal(void)
{
  tapio_loop *loop = new_loop();
  caught c;
  caught_init(&c, loop, SIGUSR1);
  CHECK_OK(tapio_add_signal_handler(loop, SIGUSR1, on_caught, &c));
  CHECK(raise(SIGUSR1) == 0);
  free_loop(loop);
  CHECK_EQ(c.calls, 0);
  CHECK(disposition(SIGUSR1) == SIG_DFL);
}

/* Adding again replaces the callback. */
static void add_again_replaces(void)
{
  tapio_loop *loop = new_loop();
  caught first, second;
  caught_init(&first, loop, SIGUSR1);
  caught_init(&second, loop, SIGUSR1);
  CHECK_OK(tapio_add_signal_handler(loop, SIGUSR1, on_caught, &first));
  CHECK_OK(tapio_add_signal_handler(loop, SIGUSR1, on_caught, &second));
  CHECK(raise(SIGUSR1) == 0);
  WAIT_FOR(loop, second.calls == 1);
  CHECK_EQ(first.calls, 0);
  free_loop(loop);
}

/* Bad input: a clear code each, the disposition untouched. */
static void refused_signals(void)
{
  tapio_loop *loop = new_loop();
  static const int refused[] = { 0, -1, 65, 1000, SIGCHLD, SIGKILL,
                                 SIGSTOP, SIGSEGV, SIGBUS, SIGFPE, SIGILL,
                                 32, 33 };
  size_t i;
  for (i = 0; i < sizeof refused / sizeof refused[0]; i++)
    CHECK_ERR(tapio_add_signal_handler(loop, refused[i], never_called, NULL),
              TAPIO_EINVAL);
  CHECK(disposition(SIGCHLD) == SIG_DFL);
  /* each refusal says why (the words of the last one, then of SIGCHLD) */
  CHECK_STR(tapio_loop_error_message(loop), "add_signal_handler: signal 33 "
            "is the C library's, for its threads");
  CHECK_ERR(tapio_add_signal_handler(loop, SIGCHLD, never_called, NULL),
            TAPIO_EINVAL);
  CHECK_STR(tapio_loop_error_message(loop), "add_signal_handler: signal 17 "
            "is the subprocess watcher's (SIGCHLD)");
  CHECK_ERR(tapio_add_signal_handler(loop, 65, never_called, NULL),
            TAPIO_EINVAL);
  CHECK_STR(tapio_loop_error_message(loop), "add_signal_handler: signal 65 "
            "is not a signal number (1..64)");
  CHECK_ERR(tapio_add_signal_handler(NULL, SIGUSR1, never_called, NULL),
            TAPIO_EINVAL);
  CHECK_ERR(tapio_add_signal_handler(loop, SIGUSR1, NULL, NULL),
            TAPIO_EINVAL);
  CHECK(tapio_loop_error_message(loop) == NULL); /* no earlier call's */
  CHECK(disposition(SIGUSR1) == SIG_DFL);
  CHECK_ERR(tapio_remove_signal_handler(NULL, SIGUSR1), TAPIO_EINVAL);
  CHECK_ERR(tapio_remove_signal_handler(loop, 0), TAPIO_EINVAL);
  CHECK_ERR(tapio_remove_signal_handler(loop, 65), TAPIO_EINVAL);
  CHECK_STR(tapio_loop_error_message(loop), "remove_signal_handler: signal "
            "65 is not a signal number (1..64)");
  CHECK_EQ(tapio_remove_signal_handler(loop, SIGUSR1), 0);
  CHECK_EQ(tapio_remove_signal_handler(loop, SIGCHLD), 0);
  free_loop(loop);
}

TEST_MAIN(TEST(signal_calls_the_handler), TEST(disposition_comes_back),
          TEST(two_loops_both_called), TEST(loops_in_two_threads_both_called),
          TEST(waiting_loop_wakes), TEST(polled_descriptor_turns_readable),
          TEST(caught_signals_merge_in_order),
          TEST(remove_inside_the_callback),
          TEST(remove_drops_a_caught_signal),
          TEST(loop_free_drops_a_caught_signal), TEST(add_again_replaces),
          TEST(refused_signals))
