/* Signals on any loop: asyncio's add_signal_handler and
 * remove_signal_handler, for every loop of the process, not only a default
 * one (libev's ev_signal works on its default loop alone).
 *
 * A signal's disposition is the process's, so the dispatcher is too: while
 * any loop watches signal s, tapio's handler is s's disposition (the one
 * before is kept and put back when the last loop stops watching). The
 * handler runs in whichever thread the kernel picks; it marks s pending in
 * every loop that watches it and writes to each one's wakeup eventfd (the
 * one of call_soon_threadsafe), so every watching loop wakes, whatever
 * thread it runs on and whatever that thread's signal mask. The loop then
 * calls its callback from its own thread (libuv fans signals out the same
 * way: its signal_multiple_loops test). A signalfd per loop was the other
 * choice; it was not taken because it needs the signal blocked in every
 * thread of the process (a host's threads, children started with
 * system()), and two loops reading one signal would each see it only by
 * luck. */
#include "tapio_int.h"

#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>

struct tapio__sigwatch {
  tapio__sigwatch *next; /* the next loop watching the same signal */
  tapio_loop *loop;
  tapio_call_fn fn;
  void *ud;
};

struct tapio__signals {
  _Atomic uint64_t pending;        /* bit sig - 1: caught, not yet called */
  tapio__sigwatch *by_sig[NSIG];   /* this loop's watch of each signal */
};

/* The process's table: for each signal, the loops watching it and the
 * disposition tapio's handler replaced. The handler reads it, so it is
 * guarded by a spin lock, which is what a signal handler may take: every
 * other taker blocks all signals in its thread first (a handler cannot
 * interrupt its own thread's holder), and the handler runs with every
 * signal blocked (a second handler cannot interrupt the first). */
static atomic_flag table_lock = ATOMIC_FLAG_INIT;
static struct {
  tapio__sigwatch *head;
  struct sigaction old;
} table[NSIG];

/* One bit per signal number, 1..64 on Linux. */
_Static_assert(NSIG <= 65, "a signal number that fits no pending bit");

static uint64_t bit(int sig) { return (uint64_t)1 << (sig - 1); }

static void spin_lock(void) {
  while (atomic_flag_test_and_set_explicit(&table_lock, memory_order_acquire))
    ;
}

static void spin_unlock(void) {
  atomic_flag_clear_explicit(&table_lock, memory_order_release);
}

static void lock_table(sigset_t *saved) {
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, saved);
  spin_lock();
}

static void unlock_table(const sigset_t *saved) {
  spin_unlock();
  pthread_sigmask(SIG_SETMASK, saved, NULL);
}

/* Async-signal-safe: atomics and write(2). */
static void on_signal(int sig) {
  int saved_errno = errno;
  tapio__sigwatch *w;
  spin_lock();
  for (w = table[sig].head; w; w = w->next) {
    atomic_fetch_or(&w->loop->signals->pending, bit(sig));
    tapio__wake(w->loop);
  }
  spin_unlock();
  errno = saved_errno;
}

/* Signals a loop may not watch: SIGCHLD (child exits are the subprocess
 * watcher's: a handler reaping with waitpid(-1) would take them), those
 * no handler can catch, the faults a program raises on itself, which
 * happen again as soon as a handler returns (tapio's returns at once and
 * runs the callback later), and those the C library keeps for its threads
 * (below SIGRTMIN: glibc's 32 and 33). */
static const char *refused(int sig) {
  if (sig <= 0 || sig >= NSIG)
    return "is not a signal number (1..64)";
  if (sig == SIGCHLD)
    return "is the subprocess watcher's (SIGCHLD)";
  if (sig == SIGKILL || sig == SIGSTOP)
    return "cannot be caught (SIGKILL, SIGSTOP)";
  if (sig == SIGSEGV || sig == SIGBUS || sig == SIGFPE || sig == SIGILL)
    return "is a fault: it would happen again as soon as a handler returned";
  if (sig > 31 && sig < SIGRTMIN)
    return "is the C library's, for its threads";
  return NULL;
}

static int install(int sig) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigfillset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART; /* the host's system calls go on */
  return sigaction(sig, &sa, &table[sig].old) == 0 ? 0
                                                  : tapio__from_errno(errno);
}

/* Links w into the process's table, installing the handler for the first
 * loop that watches sig. */
static int link_watch(tapio__sigwatch *w, int sig) {
  sigset_t saved;
  int rc = 0;
  lock_table(&saved);
  if (!table[sig].head)
    rc = install(sig);
  if (rc == 0) {
    w->next = table[sig].head;
    table[sig].head = w;
  }
  unlock_table(&saved);
  return rc;
}

/* Unlinks w; the last loop out puts the old disposition back. */
static void unlink_watch(tapio__sigwatch *w, int sig) {
  tapio__sigwatch **p;
  sigset_t saved;
  lock_table(&saved);
  for (p = &table[sig].head; *p; p = &(*p)->next) {
    if (*p == w) {
      *p = w->next;
      break;
    }
  }
  if (!table[sig].head)
    sigaction(sig, &table[sig].old, NULL);
  unlock_table(&saved);
}

int tapio_add_signal_handler(tapio_loop *loop, int sig, tapio_call_fn fn,
                             void *ud) {
  tapio__sigwatch *w;
  const char *why = refused(sig);
  int rc;
  tapio__refuse_none(loop);
  if (loop && why) /* the words for tapio_loop_error_message */
    tapio__refuse(loop, "add_signal_handler: signal %d %s", sig, why);
  if (!loop || !fn || why)
    return TAPIO_EINVAL;
  /* a signal comes on real time, which a virtual clock cannot wait for
   * (as a descriptor's readiness: add_reader) */
  if ((rc = tapio__io_refused(loop)) < 0)
    return rc;
  if (!loop->signals && !(loop->signals = tapio__calloc(loop,
                                                   sizeof *loop->signals)))
    return TAPIO_ENOMEM;
  if ((w = loop->signals->by_sig[sig]) != NULL) { /* replaces, as asyncio */
    w->fn = fn;
    w->ud = ud;
    return 0;
  }
  if (!(w = tapio__alloc(loop, sizeof *w)))
    return TAPIO_ENOMEM;
  w->loop = loop;
  w->fn = fn;
  w->ud = ud;
  if ((rc = link_watch(w, sig)) < 0) {
    tapio__free(loop, w, sizeof *w);
    return rc;
  }
  loop->signals->by_sig[sig] = w;
  return 0;
}

int tapio_remove_signal_handler(tapio_loop *loop, int sig) {
  tapio__sigwatch *w;
  tapio__refuse_none(loop);
  if (loop && (sig <= 0 || sig >= NSIG))
    tapio__refuse(loop, "remove_signal_handler: signal %d is not a signal "
                  "number (1..64)", sig);
  if (!loop || sig <= 0 || sig >= NSIG)
    return TAPIO_EINVAL;
  if (!loop->signals || !(w = loop->signals->by_sig[sig]))
    return 0;
  unlink_watch(w, sig);
  loop->signals->by_sig[sig] = NULL;
  atomic_fetch_and(&loop->signals->pending, ~bit(sig));
  tapio__free(loop, w, sizeof *w);
  return 1;
}

/* From the loop's wakeup: each signal caught since the last time, once,
 * in signal-number order. A callback may add or remove handlers (of this
 * signal too): each is looked up again just before its call. */
void tapio__signals_dispatch(tapio_loop *loop) {
  uint64_t caught;
  int sig;
  if (!loop->signals)
    return;
  caught = atomic_exchange(&loop->signals->pending, 0);
  for (sig = 1; sig < NSIG && caught; sig++) {
    tapio__sigwatch *w;
    if (!(caught & bit(sig)))
      continue;
    caught &= ~bit(sig);
    if ((w = loop->signals->by_sig[sig]) != NULL)
      w->fn(w->ud);
  }
}

void tapio__signals_free(tapio_loop *loop) {
  int sig;
  if (!loop->signals)
    return;
  for (sig = 1; sig < NSIG; sig++)
    tapio_remove_signal_handler(loop, sig);
  tapio__free(loop, loop->signals, sizeof *loop->signals);
  loop->signals = NULL;
}
