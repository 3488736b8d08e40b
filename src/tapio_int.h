/* The one private header of the core: the object model behind the opaque
 * handles of capi/tapio.h. Nothing outside src/ includes it. */
#ifndef TAPIO_INT_H
#define TAPIO_INT_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* accept4, MSG_NOSIGNAL */
#endif

#include "tapio.h"

#include <ev.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

#define TAPIO_CONTAINER(ptr, type, member) \
  ((type *)((char *)(ptr) - offsetof(type, member)))

/* ---- Intrusive lists --------------------------------------------------- */

typedef struct tapio__link {
  struct tapio__link *next, *prev;
} tapio__link;

static inline void tapio__list_init(tapio__link *head) {
  head->next = head->prev = head;
}

static inline void tapio__list_push(tapio__link *head, tapio__link *l) {
  l->prev = head->prev;
  l->next = head;
  head->prev->next = l;
  head->prev = l;
}

static inline void tapio__list_remove(tapio__link *l) {
  l->prev->next = l->next;
  l->next->prev = l->prev;
  l->next = l->prev = l;
}

static inline int tapio__list_empty(const tapio__link *head) {
  return head->next == head;
}

/* ---- Tasks: the loop's ready queue ------------------------------------- */

/* Everything deferred to "soon" is a task: user calls, connection_made of a
 * wrapped socket, connection_lost, completions. Tasks run in FIFO order in
 * the loop's check phase, after I/O callbacks of the same iteration. */
typedef struct tapio__task tapio__task;
typedef void (*tapio__task_fn)(tapio__task *task);
struct tapio__task {
  tapio__task *next;
  tapio__task_fn run;
  int posted; /* queued and not yet run: a second post is ignored */
};

/* ---- Loop -------------------------------------------------------------- */

typedef struct tapio__ts_call tapio__ts_call;
typedef struct tapio__fdwatch tapio__fdwatch;
typedef struct tapio__sigwatch tapio__sigwatch;

struct tapio_loop {
  struct ev_loop *ev;
  tapio_alloc_fn alloc;
  void *alloc_ud;
  uint64_t memory;
  int running;        /* run/run_once on the stack */
  int preparing;      /* in a prepare callback: before this iteration's poll */
  int stop_requested; /* tapio_loop_stop: spent by the run it applies to */
  int syserr;         /* libev reported a system error during this run */
  const char *syserr_msg; /* its message, until reported */
  int freeing;        /* tapio_loop_free is tearing down */
  ev_check check;     /* runs the ready queue and due timers after the
                         poll; active only while they have work */
  ev_idle idle;       /* keeps the poll non-blocking while tasks wait */
  ev_io wakeup;       /* call_soon_threadsafe, signals, finished jobs;
                         keeps run() alive */
  int wakeup_fd;      /* its eventfd */
  tapio__task woken;  /* runs what the wakeup brought, in the ready queue */
  tapio__task jobs_done; /* and the jobs it brought, behind the due timers */
  int jobs_woken;     /* jobs_done is to be posted at the check */
  tapio__task *ready_head, *ready_tail;
  tapio__task *batch;      /* the tasks run_queued is running */
  tapio__link due;    /* timers fired this iteration, not yet queued */
  uint64_t seq;
  pthread_mutex_t ts_lock;
  tapio__ts_call *ts_head, *ts_tail;
  tapio_exception_fn exc_fn;
  void *exc_ud;
  tapio__link handles;     /* every tapio_handle not yet freed */
  tapio__link transports;  /* every live transport */
  tapio__link shells;      /* retained transports past connection_lost */
  tapio__link servers;     /* every server not yet freed */
  tapio__link requests;    /* pending connects and server creations */
  tapio__link fdwatches;   /* add_reader and add_writer (watch.c) */
  tapio__link sockops;     /* tapio_sock_* operations, in order (sock.c) */
  ev_prepare fdcheck;      /* watch.c: new watches' descriptors checked
                              before libev gives them to the kernel */
  struct tapio__signals *signals; /* add_signal_handler (signal.c) */
  char *rbuf;              /* the shared read buffer, made on first read */
  void *rbuf_block;        /* the allocation rbuf is aligned within */
  char *dbuf;              /* datagram slots, made on first datagram read */
  const char *errmsg;      /* tapio_loop_error_message, during a completion */
  char refused[320];       /* or why a create call just refused at once */
  struct tapio__resolver *resolver; /* c-ares, made on first name lookup */
  char *dns_servers;       /* tapio_loop_set_resolver's, or NULL */
  double dns_timeout;      /* seconds per try; 0: the system's */
  int dns_tries;           /* 0: the system's */
  /* the pollable loop (backend.c) */
  int io_changed;          /* a watcher started or stopped since the last
                              run began: libev's kernel set is stale */
  struct tapio__deadline **deadlines; /* every timer, a min-heap (when) */
  size_t ndeadlines, deadlines_cap;
  struct tapio__deadline *spilled; /* those the heap had no room for */
  struct tapio__backend *backend; /* made by tapio_loop_backend_fd */
  struct tapio__kit *kit;  /* the testing kit's (clock.c), or NULL */
  struct tapio__pool *pool; /* the worker pool, made at the first job */
  int pool_size;           /* tapio_loop_set_threadpool_size's, or 0 */
};

/* malloc/realloc/free as a tapio_alloc_fn. */
void *tapio__default_alloc(void *ud, void *ptr, size_t osize, size_t nsize);
void *tapio__alloc(tapio_loop *loop, size_t size);
void *tapio__calloc(tapio_loop *loop, size_t size);
void tapio__free(tapio_loop *loop, void *ptr, size_t size);
char *tapio__strdup(tapio_loop *loop, const char *s);
void tapio__strfree(tapio_loop *loop, char *s);

/* Queues task to run once, soon. Posting a task already queued (its
 * owner's memory is zeroed when made) does nothing: relinking it would
 * corrupt the queue. It may post itself again once it runs. */
void tapio__task_post(tapio_loop *loop, tapio__task *task);
/* Takes a posted task off the ready queue (or the batch being run), so
 * that its memory can go before it runs; harmless when not posted. */
void tapio__task_unpost(tapio_loop *loop, tapio__task *task);
/* Timers are due or tasks queued: the loop's check runs them at the end
 * of this iteration (the check rests while there is nothing to run). */
void tapio__check_wanted(tapio_loop *loop);
void tapio__report(tapio_loop *loop, int code, const char *message,
                   tapio_transport *t);
double tapio__now(void);
/* Makes the loop's wakeup eventfd readable: the loop wakes and runs its
 * thread-safe calls, caught signals and finished jobs' done callbacks.
 * Async-signal-safe. */
void tapio__wake(tapio_loop *loop);

/* ---- Watching descriptors and signals (watch.c, signal.c) -------------- */

/* tapio_loop_free: every watch of the loop goes (its ud stays the
 * caller's); the signals' dispositions are put back. */
void tapio__fdwatches_free_all(tapio_loop *loop);
/* What add_reader refuses fd for: TAPIO_EINVAL (negative), TAPIO_EBADF
 * (not open), TAPIO_EPERM (a file, a directory, a device that cannot
 * poll), TAPIO_EBUSY (a transport or server of the loop owns it); else 0. */
int tapio__fd_usable(tapio_loop *loop, int fd);
/* 0, or TAPIO_EPERM for a device epoll cannot watch (/dev/null); st is
 * fd's. */
struct stat;
int tapio__fd_pollable(int fd, const struct stat *st);
/* 1 if a transport or server of the loop owns fd. */
int tapio__fd_owned(tapio_loop *loop, int fd);
/* 1 when fd is not an open descriptor. */
int tapio__fd_closed(int fd);
/* A watcher was started: before the next poll, the loop checks that the
 * descriptors of new watchers are open (libev aborts when epoll is given
 * a closed one): add_reader's, then tapio__sock_fdcheck for sock.c's. */
void tapio__fdcheck_arm(tapio_loop *loop);
void tapio__sock_fdcheck(tapio_loop *loop);
/* 1 while a sock_* operation of the loop on fd (the file fd is now) has
 * not ended: a transport or server made of fd would take what it waits
 * for (tapio__sock_check refuses it). */
int tapio__sock_pending(tapio_loop *loop, int fd);
void tapio__signals_free(tapio_loop *loop);
/* The loop's wakeup: calls the callbacks of the signals caught since. */
void tapio__signals_dispatch(tapio_loop *loop);

/* ---- The worker pool (work.c) ------------------------------------------- */

typedef struct tapio__pool tapio__pool;
/* The loop's wakeup: the done of each job finished since. */
void tapio__work_dispatch(tapio_loop *loop);
/* tapio_loop_free: first, no thread starts another job; then
 * tapio__work_free drops the jobs not started, joins the threads, ends
 * every job with ECANCELED. */
void tapio__work_stop(tapio_loop *loop);
void tapio__work_free(tapio_loop *loop);

/* What one read asks for: 4 segments of 65,483 bytes, TCP's segment on
 * loopback (its MTU of 65,536 less the IP and TCP headers and timestamps),
 * rather than 256 KiB. A protocol that writes a whole read back (an echo,
 * a proxy) sends it as 4 whole segments; 256 KiB went out as 4 and a
 * runt of 212 bytes, a packet's whole way through both stacks for it
 * (bench/README.md, "Reads of 4 loopback segments"). Elsewhere the size
 * is as good as any: on Ethernet a segment is 1,448 bytes. */
#define TAPIO__RBUF_SIZE (4 * 65483)
/* The kernel copies into a page-aligned buffer several times faster than
 * into one 16 bytes past a page (where malloc puts large blocks). */
#define TAPIO__RBUF_ALIGN 4096

/* The loop's read buffer, allocated on first use; NULL without memory.
 * Inline: every read asks for it. */
char *tapio__read_buffer_make(tapio_loop *loop);
static inline char *tapio__read_buffer(tapio_loop *loop) {
  return loop->rbuf ? loop->rbuf : tapio__read_buffer_make(loop);
}

/* ---- The testing kit: a virtual clock, memory pairs (clock.c) ---------- */

/* What the kit keeps per loop: made with a virtual loop, or by the first
 * memory pair of a real one. */
typedef struct tapio__kit {
  int virtual;         /* the loop runs on a virtual clock */
  double now;          /* its time */
  tapio__link idle;    /* tapio_call_idle's handles, by (when, seq) */
  double horizon;      /* tapio_loop_advance's target; -1 outside one */
  int inert_fd;        /* never ready, for memory streams' watchers; -1 */
  tapio__link ends;    /* the memory pairs' sides (memory_wake.c) */
  tapio__link vnet;    /* the virtual network's listeners (vnet.c) */
  int next_port;       /* its next ephemeral port */
  ev_prepare poll;     /* tapio__memory_poll before each poll, while any */
  struct tapio__dnet *dnet; /* its datagram endpoints (vdgram.c) */
  struct tapio__fake *fakes; /* its fake programs (vchild.c) */
  int next_pid;        /* the next fake child's pid */
  uint64_t step_limit; /* steps a run makes at one time, at most; 0: none */
} tapio__kit;

static inline int tapio__virtual(const tapio_loop *loop) {
  return loop->kit && loop->kit->virtual;
}
/* A virtual clock counts whole nanoseconds, so that moving it by 29.999
 * then 0.001 seconds reaches a timer due 30 seconds later exactly. */
static inline double tapio__vround(double t) {
  double ns = t * 1e9;
  if (!(ns < 9e18 && ns > -9e18))
    return t; /* beyond what nanoseconds count (or NaN): as it is */
  return (double)(int64_t)(ns + (ns >= 0 ? 0.5 : -0.5)) / 1e9;
}
/* The loop's time: the clock of tapio_call_at, the timers and figures. */
static inline double tapio__time(const tapio_loop *loop) {
  return tapio__virtual(loop) ? loop->kit->now : tapio__now();
}
/* What a create call that does real I/O checks first: TAPIO_ECLOSED while
 * the loop is being freed, TAPIO_EVIRTUAL on a virtual clock. */
static inline int tapio__io_refused(const tapio_loop *loop) {
  return loop->freeing ? TAPIO_ECLOSED
                       : tapio__virtual(loop) ? TAPIO_EVIRTUAL : 0;
}
/* Wakes each memory pair's side whose stream watches for what its link
 * already holds (bytes, room, an end); how many were woken. */
int tapio__memory_poll(tapio_loop *loop);
/* splitmix64: the kit's seeded draws (a failing run replays from its
 * seed). */
static inline uint64_t tapio__splitmix64(uint64_t *state) {
  uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
/* The loop's kit, made on first use; NULL without memory. */
tapio__kit *tapio__kit_get(tapio_loop *loop);
void tapio__kit_free(tapio_loop *loop);
/* A run of a virtual loop (tapio_loop_run's ev_run): iterations that
 * never wait, until stopped or idle; one with once set. 0, or
 * TAPIO_ESPIN when it made the kit's step_limit steps at one time. */
int tapio__vclock_run(tapio_loop *loop, int once);
/* Work a step of a virtual loop would do now (queued calls, fired
 * timers, timers due at its time). */
int tapio__vclock_busy(tapio_loop *loop);

/* ---- The pollable loop (backend.c) ------------------------------------ */

/* Marks the descriptor readable for work added between steps
 * (backend.c; only a loop a host polls, and only between steps). */
void tapio__backend_wake(tapio_loop *loop);
static inline void tapio__backend_poke(tapio_loop *loop) {
  if (loop->backend && !loop->running)
    tapio__backend_wake(loop);
}

/* libev applies a started or stopped ev_io to the kernel only at its next
 * iteration, so a host polling the loop's descriptor must not sleep while
 * one is pending (tapio_loop_backend_timeout answers 0, the descriptor is
 * readable). Every src/ file includes this header: the two calls below
 * mark the loop on the way. */
static inline void tapio__io_changed(tapio_loop *loop) {
  loop->io_changed = 1;
  tapio__backend_poke(loop);
}
static inline void tapio__io_start(struct ev_loop *ev, ev_io *w) {
  tapio__io_changed(ev_userdata(ev));
  (ev_io_start)(ev, w);
}
static inline void tapio__io_stop(struct ev_loop *ev, ev_io *w) {
  if (ev_is_active(w))
    tapio__io_changed(ev_userdata(ev));
  (ev_io_stop)(ev, w);
}
#define ev_io_start(ev, w) tapio__io_start((ev), (w))
#define ev_io_stop(ev, w) tapio__io_stop((ev), (w))

/* A timer's due time, kept in the loop's heap beside libev's timer: libev
 * has no call that tells the next one. Every ev_timer of the core has
 * one (spec/c/test_backend.c checks that no other ev_timer starts). */
typedef struct tapio__deadline {
  double when;   /* tapio__now() clock */
  size_t index;  /* 1-based place in the heap; 0 when not in it */
  struct tapio__deadline *next, **pprev; /* in loop->spilled, or NULL */
} tapio__deadline;

/* Puts d in the heap at when (moving it if there already), or, when the
 * heap cannot grow, in the list beside it: it cannot fail. */
void tapio__deadline_set(tapio_loop *loop, tapio__deadline *d, double when);
/* Takes d out of the heap; harmless when not in it. */
void tapio__deadline_clear(tapio_loop *loop, tapio__deadline *d);
static inline int tapio__deadline_queued(const tapio__deadline *d) {
  return d->index != 0 || d->pprev != NULL;
}
/* The earliest deadline, or NULL; how many there are. */
tapio__deadline *tapio__deadline_first(tapio_loop *loop);
size_t tapio__deadline_count(tapio_loop *loop);
/* The earliest due time, or -1 with no timer. */
double tapio__deadline_next(tapio_loop *loop);
/* A one-shot timer of the core: libev's timer and its due time in the
 * loop's heap, kept together so that none can be forgotten (libev keeps
 * its timers private, and a host polling tapio must know the next one).
 * Every timer of the core is one of these (spec/embed/check_timers.sh). */
typedef struct tapio__timer tapio__timer;
typedef void (*tapio__timer_fn)(tapio__timer *tm);
struct tapio__timer {
  ev_timer ev;
  tapio__deadline dl;
  tapio_loop *loop;
  tapio__timer_fn fn;    /* called once it fired (no longer active) */
};

void tapio__timer_init(tapio__timer *tm, tapio_loop *loop,
                       tapio__timer_fn fn);
/* (Re)starts it for tapio__now() == when, or after seconds (negative: 0).
 * It cannot fail: a host polling tapio always knows when it is due. */
void tapio__timer_start_at(tapio__timer *tm, double when);
void tapio__timer_start(tapio__timer *tm, double after);
/* Harmless when not started or already fired. */
void tapio__timer_stop(tapio__timer *tm);
/* On a virtual clock a timer lives in the heap only (clock.c fires it). */
static inline int tapio__timer_active(const tapio__timer *tm) {
  return ev_is_active(&tm->ev) || tapio__deadline_queued(&tm->dl);
}

/* At the end of every run: re-arms the pollable descriptor's timer. */
void tapio__backend_sync(tapio_loop *loop);
void tapio__backend_free(tapio_loop *loop);

/* ---- Errors ------------------------------------------------------------ */

int tapio__from_errno(int err);
int tapio__from_gai(int err);

/* ---- Scheduled calls ----------------------------------------------------- */

/* Moves the timers that fired into the ready queue, in (when, seq) order. */
void tapio__queue_due(tapio_loop *loop);
/* tapio_call_idle's pending calls: the earliest one's due time (-1:
 * none), and queueing those due at the clock's time, in order. */
double tapio__idle_next(tapio_loop *loop);
void tapio__idle_post(tapio_loop *loop);
void tapio__handles_free_all(tapio_loop *loop);
void tapio__handles_cancel_all(tapio_loop *loop);

/* ---- Options ----------------------------------------------------------- */

/* Every option of every create call, in the order of options.c's table. */
enum tapio__opt {
  TAPIO__OPT_LOCAL_HOST,
  TAPIO__OPT_LOCAL_PORT,
  TAPIO__OPT_FAMILY,
  TAPIO__OPT_SOCK,
  TAPIO__OPT_NODELAY,
  TAPIO__OPT_BACKLOG,
  TAPIO__OPT_REUSE_ADDRESS,
  TAPIO__OPT_REUSE_PORT,
  TAPIO__OPT_KEEP_ALIVE,
  TAPIO__OPT_START_SERVING,
  TAPIO__OPT_CLEANUP_SOCKET,
  TAPIO__OPT_STDIN,
  TAPIO__OPT_STDOUT,
  TAPIO__OPT_STDERR,
  TAPIO__OPT_CWD,
  TAPIO__OPT_ENV,
  TAPIO__OPT_EXTEND_ENV,
  TAPIO__OPT_START_NEW_SESSION,
  TAPIO__OPT_PROCESS_GROUP,
  TAPIO__OPT_PASS_FDS,
  TAPIO__OPT_CLOSE_FDS,
  TAPIO__OPT_EXECUTABLE,
  TAPIO__OPT_PIPESIZE,
  TAPIO__OPT_USER,
  TAPIO__OPT_GROUP,
  TAPIO__OPT_EXTRA_GROUPS,
  TAPIO__OPT_UMASK,
  TAPIO__OPT_HAPPY_EYEBALLS_DELAY,
  TAPIO__OPT_INTERLEAVE,
  TAPIO__OPT_REMOTE_HOST,
  TAPIO__OPT_REMOTE_PORT,
  TAPIO__OPT_LOCAL_PATH,
  TAPIO__OPT_REMOTE_PATH,
  TAPIO__OPT_ALLOW_BROADCAST,
  TAPIO__OPT_SSL,
  TAPIO__OPT_SERVER_HOSTNAME,
  TAPIO__OPT_SSL_HANDSHAKE_TIMEOUT,
  TAPIO__OPT_SSL_SHUTDOWN_TIMEOUT,
  TAPIO__OPT_PROTO,
  TAPIO__OPT_FLAGS,
  TAPIO__OPT_LOCAL_FLOWINFO,
  TAPIO__OPT_REMOTE_FLOWINFO,
  TAPIO__OPT_COUNT
};

/* TAPIO_EINVAL if o holds an option call (enum tapio_call) does not take,
 * or TLS options that do not fit it, with its words for
 * tapio_loop_error_message. */
int tapio__opts_check(tapio_loop *loop, const tapio_options *o, int call);
/* The descriptor given as "sock" (or to connect_accepted_socket) must be
 * a socket of type (SOCK_STREAM, SOCK_DGRAM: asyncio's "A Stream Socket
 * was expected", "A datagram socket was expected"); it is then made
 * non-blocking. 0, or the code with call's words for
 * tapio_loop_error_message; the caller's failure path closes fd. */
int tapio__sock_check(tapio_loop *loop, int fd, int type, int call);
/* create_unix_connection's and create_unix_server's path (checked) or
 * "sock", not both (asyncio's "path and sock can not be specified at the
 * same time"). The sock itself is for tapio__sock_check, which checks a
 * Unix call's is a Unix socket. */
int tapio__unix_path_or_sock(tapio_loop *loop, const char *path,
                             const tapio_options *o, int call);
/* A create call failing: the descriptor given as "sock" is tapio's from
 * the call on, so it is closed; not with TAPIO_EBUSY, which refuses one a
 * transport, server or pending sock_* call of the loop holds
 * (tapio__sock_check). Returns
 * code. */
int tapio__opts_fail(const tapio_options *o, int code);
int64_t tapio__opt_int(const tapio_options *o, enum tapio__opt which,
                       int64_t dflt);
int tapio__opt_is_set(const tapio_options *o, enum tapio__opt which);
/* The option's name, as tapio_options_set_* take it. */
const char *tapio__opt_name(enum tapio__opt which);
/* A string option, or NULL when not set; an id option's name, or NULL
 * when it is not set or set by number (tapio__opt_int's). */
const char *tapio__opt_str(const tapio_options *o, enum tapio__opt which);
/* An entry of an id list option: a name, or (name NULL) a number. */
typedef struct tapio__id {
  const char *name;
  int64_t id;
} tapio__id;
/* A list option's entries (char *const *, const int64_t * or const
 * tapio__id *) and their count in *n; NULL and 0 when none. */
const void *tapio__opt_list(const tapio_options *o, enum tapio__opt which,
                            size_t *n);
double tapio__opt_double(const tapio_options *o, enum tapio__opt which,
                         double dflt);
/* The "ssl" option's context (borrowed), or NULL. */
tapio_tls_context *tapio__opt_tls(const tapio_options *o);

/* ---- Transports: one head for every kind, a body per kind -------------- */

/* The callbacks every protocol table of capi/tapio.h begins with, in this
 * order (asyncio's BaseProtocol): the head calls them without knowing the
 * kind. */
typedef struct tapio__proto {
  uint32_t size;
  void (*connection_made)(void *ud, tapio_transport *t);
  void (*connection_lost)(void *ud, tapio_transport *t, int code,
                          const char *message);
  void (*pause_writing)(void *ud, tapio_transport *t);
  void (*resume_writing)(void *ud, tapio_transport *t);
} tapio__proto;

/* 0, or TAPIO_EINVAL for a NULL table or one whose size is below min (the
 * size of the kind's first table: see the growth rule in capi/tapio.h). */
int tapio__proto_check(const void *proto, size_t min);

enum {
  /* the head's, every kind */
  TAPIO__T_MADE = 1 << 0,         /* connection_made has run */
  TAPIO__T_CLOSING = 1 << 1,      /* close or abort called */
  TAPIO__T_LOST = 1 << 2,         /* connection_lost scheduled */
  TAPIO__T_WPAUSED = 1 << 3,      /* pause_writing called, not resumed */
  TAPIO__T_RPAUSED = 1 << 4,      /* pause_reading */
  TAPIO__T_NOWRITE = 1 << 5,      /* the kind cannot write (its caps) */
  TAPIO__T_OWNED = 1 << 6,        /* another transport's: protocol fixed */
  TAPIO__T_ENDED = 1 << 7,        /* a retained shell after connection_lost */
  /* the stream body's */
  TAPIO__T_EOF_RECEIVED = 1 << 8,
  TAPIO__T_EOF_WANTED = 1 << 9,   /* write_eof called */
  TAPIO__T_SHUT = 1 << 10,        /* the I/O layer's shutdown is done */
  /* what a layer with a session waits for (tapio__stream_want) */
  TAPIO__WANT_READ = 1 << 11,     /* readability, whatever the protocol
                                     wants */
  TAPIO__WANT_WRITE = 1 << 12,    /* writability, with nothing buffered */
  TAPIO__HOLD_READ = 1 << 13,     /* no reading for the protocol */
  TAPIO__HOLD_WRITE = 1 << 14,    /* no flushing the stream's buffer */
  /* the transport is a sendfile's (sendfile.c): its protocol's writes
     are refused */
  TAPIO__T_SENDFILE = 1 << 15,
  /* close() found the buffer flushed: the I/O layer's ending (TLS's
     close_notify exchange) has begun and must not begin again */
  TAPIO__T_ENDING = 1 << 16,
  /* set_protocol was called (read_buffered: inside get_buffer) */
  TAPIO__T_NEWPROTO = 1 << 17,
  TAPIO__WANTS = TAPIO__WANT_READ | TAPIO__WANT_WRITE | TAPIO__HOLD_READ |
                 TAPIO__HOLD_WRITE
};

/* What a kind can do; the public functions check before they dispatch. */
enum {
  TAPIO__CAN_READ = 1 << 0,       /* pause_reading, resume_reading */
  TAPIO__CAN_WRITE = 1 << 1,      /* write, writelines, write_eof */
  TAPIO__CAN_FLOW = 1 << 2,       /* a write buffer with limits */
  TAPIO__BULK = 1 << 3            /* reads again after a full one: pipes */
};

/* The pipe kinds' abilities: pipe.c's and a memory pair's (memory.c). */
#define TAPIO__READ_PIPE_CAPS (TAPIO__CAN_READ | TAPIO__BULK)
#define TAPIO__WRITE_PIPE_CAPS (TAPIO__CAN_WRITE | TAPIO__CAN_FLOW)

/* A kind: its id (enum tapio_transport_kind), what it can do, the size of
 * its first protocol table, and the steps of the lifetime the head runs. */
typedef struct tapio__kind {
  int id;
  uint32_t caps;
  size_t proto_size;
  /* After connection_made returned: start I/O (unless closed in it). */
  void (*start)(tapio_transport *t);
  /* close() on an open transport (CLOSING is set): stop taking input,
   * flush, then tapio__transport_lost when done. */
  void (*close)(tapio_transport *t);
  /* Stops all I/O and drops buffered output: an abort, a failure. */
  void (*halt)(tapio_transport *t);
  /* After connection_lost returned: frees the body and its resources. */
  void (*destroy)(tapio_transport *t);
  /* get_extra_info("socket"/"pipe"): the descriptor, or TAPIO_ENOTSUP. */
  int (*fd)(tapio_transport *t);
  /* After connection_lost returned, for a transport the user retains:
   * closes the kind's descriptors and drops its buffers, keeping the
   * memory (destroy comes at the last release). NULL: the kind's
   * transports cannot be retained (tapio_transport_retain: ENOTSUP). */
  void (*shed)(tapio_transport *t);
  /* pause_reading or resume_reading (RPAUSED set or cleared by the head):
   * input stops, or goes on after what the kind holds. NULL for kinds
   * that do not read (no TAPIO__CAN_READ). */
  void (*reading)(tapio_transport *t);
} tapio__kind;

/* An IP address (a short Unix one too) in as little room as it takes. */
typedef union tapio__ipaddr {
  struct sockaddr sa;
  struct sockaddr_in6 in6;
} tapio__ipaddr;

/* A transport's write buffer figures, which most transports never need
 * (an idle connection's every byte counts): made at the first write the
 * transport could not send at once (tapio__flow_figs), freed with it. */
typedef struct tapio__wfigs {
  uint64_t peak;         /* the write buffer's largest size */
  double paused, since;  /* seconds writing was paused; the pause's start */
  uint32_t pauses;       /* pause_writing calls */
} tapio__wfigs;

/* The head: the first member of every kind's body. */
struct tapio_transport {
  const tapio__kind *kind;
  tapio_loop *loop;
  const tapio__proto *proto;  /* the kind's table, through its prefix */
  void *ud;
  uint32_t flags;
  int lost_code;
  char *lost_msg;
  tapio__task task;           /* connection_lost */
  tapio__link link;           /* loop->transports */
  tapio__link slink;          /* server->clients */
  tapio_server *server;       /* the server that accepted it, if any */
  size_t wsize, high, low;    /* write buffer and its limits */
  uint64_t nrecv, nsent;
  tapio__wfigs *wfigs;        /* NULL until the first buffered write */
  double rpause_since, rpaused;
  uint32_t refs;              /* tapio_transport_retain */
  tapio__ipaddr peer;         /* peername, kept: a reset makes it unknowable */
  socklen_t peerlen;          /* 0: not kept (a long Unix path: ask the fd) */
};

void tapio__transport_init(tapio_transport *t, const tapio__kind *kind,
                           tapio_loop *loop, const void *proto, void *ud);
/* Calls connection_made, then the kind's start. */
void tapio__transport_made(tapio_transport *t);
/* Schedules connection_lost (code 0: clean) and marks the transport
 * closing; the head frees it after the callback. */
void tapio__transport_lost(tapio_transport *t, int code, const char *message);
/* Keeps the peer's address (when it fits) for get_peername. */
void tapio__transport_set_peer(tapio_transport *t, const struct sockaddr *sa,
                               socklen_t len);
/* tapio_loop_free: the retained shells go with their loop. */
void tapio__shells_free_all(tapio_loop *loop);
/* abort with a code; 0 means a clean abort. */
void tapio__transport_force_close(tapio_transport *t, int code,
                                  const char *message);
/* Before t's write buffer first takes bytes: makes its figures. 0, or
 * TAPIO_ENOMEM (then nothing may be buffered). */
int tapio__flow_figs(tapio_transport *t);
/* The write buffer grew (t->wsize updated): peak figure, pause_writing. */
void tapio__flow_grew(tapio_transport *t);
/* It shrank: resume_writing at the low mark. */
void tapio__flow_shrank(tapio_transport *t);
/* A context reference more (tapio_tls_context_release gives it back). */
void tapio__tls_context_retain(tapio_tls_context *ctx);

/* During a sendfile on t (TAPIO__T_SENDFILE): where t's own protocol and
 * its user pointer are held (set_protocol and get_protocol use them). */
const tapio__proto **tapio__sendfile_held(tapio_transport *t, void ***ud);

/* Around a call that can raise SIGPIPE and has no MSG_NOSIGNAL (pipe.c):
 * SIGPIPE blocked, then the one an EPIPE raised taken back (epipe: the
 * call failed so), the mask and errno as they were. */
void tapio__sigpipe_block(sigset_t *old);
void tapio__sigpipe_restore(const sigset_t *old, int epipe);

/* The steps of sending a file (sendfile.c), the transport's and
 * sock_sendfile's (sock.c): a file from offset, count bytes (0: to its
 * end), of which *sent (or sent) went already. */
#define TAPIO__SENDFILE_TURN (16u << 20) /* bytes per wake-up: others run */
/* sendfile(2) to the socket sock while it takes it, at most a turn: 0
 * when all went (or the file ended), 1 when the socket is full or the
 * turn over (wait until it is writable), else minus the errno it failed
 * with. */
int tapio__sendfile_native(int sock, int file, uint64_t offset,
                           uint64_t count, uint64_t *sent);
/* 1 when sendfile(2) failed with err because it cannot send from this
 * file (or at all) and nothing was sent: the fallback's case. */
int tapio__sendfile_no_native(int err, uint64_t sent);
/* The fallback's read: the next bytes of the file (at most
 * TAPIO__RBUF_SIZE) into buf; 0 at the end (of the file or count), or a
 * negative error. */
ssize_t tapio__sendfile_read(int file, uint64_t offset, uint64_t count,
                             uint64_t sent, char *buf);
/* The file left at offset + sent, as asyncio leaves it (when any went). */
void tapio__sendfile_seek(int file, uint64_t offset, uint64_t sent);

/* ---- Write queue: bytes a stream could not send yet --------------------- */

typedef struct tapio__wchunk tapio__wchunk;
typedef struct tapio__wqueue {
  tapio__wchunk *head, *tail;
} tapio__wqueue;

#define TAPIO__MAX_IOV 64

/* Appends len bytes, filling the last chunk first. 0 or TAPIO_ENOMEM. */
int tapio__wq_push(tapio_loop *loop, tapio__wqueue *q, const char *p,
                   size_t len);
/* Fills iov with the queued bytes, oldest first; returns the count. */
int tapio__wq_iov(const tapio__wqueue *q, struct iovec *iov, int max);
/* Drops the first n bytes (n no more than what is queued). */
void tapio__wq_consume(tapio_loop *loop, tapio__wqueue *q, size_t n);
void tapio__wq_clear(tapio_loop *loop, tapio__wqueue *q);

/* ---- Stream transport: sockets (and pipes) through an I/O layer --------- */

typedef struct tapio__stream tapio__stream;

/* The I/O a stream does, so that another layer (TLS) can sit between the
 * transport and the descriptor: a table of operations and, in the stream,
 * the layer's own context (NULL for the plain layers). A layer on top of
 * another keeps the lower one's table and context in its own, so layers
 * stack. Each returns a count, or a negative tapio code: TAPIO_EAGAIN means
 * "nothing now, wait for readiness". */
typedef struct tapio__io {
  /* > 0 bytes read, 0 at end of file. */
  ssize_t (*read)(tapio__stream *s, void *ctx, void *buf, size_t len);
  /* Bytes taken from iov[0..n). */
  ssize_t (*writev)(tapio__stream *s, void *ctx, const struct iovec *iov,
                    int n);
  /* Ends the sending side once the buffer is flushed; NULL when the layer
   * cannot (then can_write_eof answers 0, and EOF always closes). */
  int (*shutdown)(tapio__stream *s, void *ctx);
  /* The rest is for layers with a session of their own (TLS: a
   * handshake, records OpenSSL holds, close_notify); the plain layers
   * leave it NULL. Such a layer tells the stream what it waits for with
   * tapio__layer_want (the fault layer, on top of it, forwards these). */
  /* The descriptor is ready (EV_READ/EV_WRITE): the layer's own work,
   * before the stream reads or flushes. */
  void (*ready)(tapio__stream *s, void *ctx, int revents);
  /* 1 when read would give something without the descriptor being ready
   * (bytes held inside the layer: nothing will wake the poll for them). */
  int (*pending)(tapio__stream *s, void *ctx);
  /* close() flushed the stream's buffer: 0 to end now, 1 when the layer
   * ends the transport itself later (tapio__transport_lost). */
  int (*close)(tapio__stream *s, void *ctx);
  /* close() was called with bytes still to flush (close comes once they
   * are): a layer with a deadline for its ending starts it now. */
  void (*closing)(tapio__stream *s, void *ctx);
  /* Stops the layer's own I/O and timers (abort, failure, the end). */
  void (*halt)(tapio__stream *s, void *ctx);
  /* Frees the layer (and the layers under it) with the transport. */
  void (*free)(tapio__stream *s, void *ctx);
} tapio__io;

struct tapio__stream {
  tapio_transport head;   /* its flags hold the layer's TAPIO__WANT_* and
                             TAPIO__HOLD_* (no room taken from plain ones) */
  ev_io rio, wio;
  const tapio__io *io;
  void *io_ctx;
  tapio__wqueue wq;
  tapio__task more;       /* reads on what a layer still holds, after the
                             budget of one wake-up (stream.c) */
  tapio__task again;      /* tapio__stream_read_soon */
};

/* Puts layer io (with its context) on the stream; a layer with `ready`
 * gets the stream's readiness first. */
void tapio__stream_set_io(tapio__stream *s, const tapio__io *io, void *ctx);
/* The layer's wants changed (TAPIO__WANT_* and TAPIO__HOLD_* bits): the
 * watchers follow (also when the stream's own needs changed, e.g. after a
 * layer took buffered bytes). */
void tapio__stream_want(tapio__stream *s, uint32_t want);
/* The layer's readiness for reading once more, from the ready queue: after
 * the loop's other callbacks, where feeding the read watcher from inside a
 * callback would run it before them (libev takes the last pending watcher
 * first), as long as the layer feeds it again. */
void tapio__stream_read_soon(tapio__stream *s);

/* A socket stream on fd (a connected TCP or Unix socket, non-blocking). */
tapio_transport *tapio__stream_new(tapio_loop *loop, int fd,
                                   const tapio_protocol *proto, void *ud);
/* Sets up the zeroed stream body s of a kind built on it (pipes), on fd
 * through the I/O layer io. */
void tapio__stream_init(tapio__stream *s, const tapio__kind *kind,
                        tapio_loop *loop, int fd, const tapio__io *io,
                        const void *proto, void *ud);
/* The stream's steps of the lifetime, for the kinds built on it. */
void tapio__stream_start(tapio_transport *t);
void tapio__stream_close(tapio_transport *t);
void tapio__stream_halt(tapio_transport *t);
int tapio__stream_fd(tapio_transport *t);
void tapio__stream_reading(tapio_transport *t);
/* A sendfile gave the stream back: a write_eof asked meanwhile is done
 * once what is buffered is sent. */
void tapio__stream_sendfile_ended(tapio_transport *t);
/* Frees a transport whose connection_made never ran (closes its fd). */
void tapio__transport_discard(tapio_transport *t);

extern const tapio__io tapio__socket_io;

static inline tapio__stream *tapio__to_stream(tapio_transport *t) {
  return TAPIO_CONTAINER(t, tapio__stream, head);
}

/* ---- The virtual network (vnet.c) ----------------------------------------
 * A virtual loop's servers listen at addresses of its own, and its
 * connects meet them there through memory pairs. */

typedef struct tapio__vlisten tapio__vlisten;
typedef struct tapio__vconnect tapio__vconnect;
struct tapio__addr;

/* Listens at a (port 0: one is chosen) for server s: TAPIO_EADDRINUSE
 * where another listener is, unless both have reuse_port. */
int tapio__vnet_listen(tapio_server *s, const struct tapio__addr *a,
                       int backlog, int reuse_port, tapio__vlisten **out);
/* The server closed: connections not yet accepted are reset, connects
 * waiting for room are refused. Frees v. */
void tapio__vnet_unlisten(tapio__vlisten *v);
/* Before the loop's transports go (tapio_loop_free): the connections no
 * server accepted go first, since the listeners hold them. */
void tapio__vnet_drop_backlogs(tapio_loop *loop);
/* The server started (on 1) or stopped serving. */
void tapio__vnet_serve(tapio__vlisten *v, int on);
int tapio__vnet_name(const tapio__vlisten *v, char *host, size_t hostlen,
                     int *port, int *family);
/* A connect's end, from a task of the loop: its transport (connection_made
 * not yet called), or NULL and a code with its message. */
typedef void (*tapio__vconnected_fn)(void *ud, tapio_transport *t, int code,
                                     const char *message);
/* Connects to `to` from `from` (NULL: an address of the network's own),
 * the client's side with proto; done is called once, unless cancelled. */
int tapio__vnet_connect(tapio_loop *loop, const struct tapio__addr *to,
                        const struct tapio__addr *from,
                        const tapio_protocol *proto, void *ud,
                        tapio__vconnected_fn done, void *done_ud,
                        tapio__vconnect **out);
void tapio__vnet_cancel(tapio__vconnect *c);
/* Resolves a name of the virtual network: "localhost" (127.0.0.1, or ::1
 * for IPv6 alone); no other name is known there. */
const char *tapio__vnet_host(const char *host, int family);

/* ---- Memory pairs and faults (memory*.c, fault.c) ----------------------- */

/* Whether t has a stream body (a socket's, a pipe's, a memory pair's). */
static inline int tapio__is_stream(const tapio_transport *t) {
  return t->kind->id == TAPIO_TRANSPORT_STREAM ||
         t->kind->id == TAPIO_TRANSPORT_READ_PIPE ||
         t->kind->id == TAPIO_TRANSPORT_WRITE_PIPE;
}
/* The stream's I/O layer under tapio's fault layer (or its own), with its
 * context in *ctx (ctx may be NULL). */
const tapio__io *tapio__base_io(const tapio__stream *s, void **ctx);
/* t's kind under the fault layer's wrapping (or its own). */
const tapio__kind *tapio__base_kind(const tapio_transport *t);
/* A layer with a session of its own (TLS) waits for want (TAPIO__WANT_*,
 * TAPIO__HOLD_*): tapio__stream_want, less the fault layer's holds. */
void tapio__layer_want(tapio__stream *s, uint32_t want);
/* Puts layer io (context ctx) on stream s, under the fault layer if there
 * is one (faults count what the protocol sees); the layer it goes on in
 * *lower and *lower_ctx. */
void tapio__layer_push(tapio__stream *s, const tapio__io *io, void *ctx,
                       const tapio__io **lower, void **lower_ctx);
/* A memory pair's t: its peer reads code after the bytes it has (a reset
 * seen from the other side). TAPIO_ENOTSUP for another transport. */
int tapio__memory_reset(tapio_transport *t, int code);
/* The virtual network's connection: a pair, client's end with proto,
 * the server's with none yet (the server's accept gives it one), neither
 * made (the caller makes each); client at `from`, server at `to`, as
 * their socknames and peernames answer. */
struct tapio__addr;
int tapio__memory_connect(tapio_loop *loop, const tapio_protocol *proto,
                          void *ud, const struct tapio__addr *from,
                          const struct tapio__addr *to,
                          tapio_transport **client, tapio_transport **server);
/* A memory side's sockname (peer 0) or peername (1), as
 * tapio__format_addr; TAPIO_ENOTSUP for another transport or a pair made
 * by the test, which has no addresses. */
int tapio__memory_name(tapio_transport *t, int peer, char *host,
                       size_t hostlen, int *port, int *family);
/* A pipe between a subprocess transport and a fake child: a pair whose
 * sides are pipe transports, neither made. to_child: the child's stdin
 * (*parent a write pipe with proto, *child a read pipe); else one of its
 * outputs (*parent a read pipe, *child a write pipe). *child has no
 * protocol yet. */
int tapio__memory_pipe(tapio_loop *loop, int to_child, const void *proto,
                       void *ud, tapio_transport **parent,
                       tapio_transport **child);
/* fn(ud, t) once t's side is gone (after its connection_lost returned);
 * NULL: nobody. Nothing for a transport that is not a pair's. */
void tapio__memory_on_gone(tapio_transport *t,
                           void (*fn)(void *ud, tapio_transport *t),
                           void *ud);

/* ---- TLS: the layer's entry points for the create calls ---------------- */

/* The TLS options of a create call, kept by the request (copied). */
typedef struct tapio__tls_params {
  tapio_tls_context *ctx;   /* referenced; NULL: no TLS */
  char *hostname;           /* a client's server_hostname, or NULL */
  double handshake_timeout, shutdown_timeout;
} tapio__tls_params;

/* Reads and checks the TLS options of call (enum tapio_call) into p: the
 * context's side against the call, server_hostname (host is the default;
 * required when the context checks host names). 0, TAPIO_EINVAL or
 * TAPIO_ENOMEM; p is empty on failure. */
int tapio__tls_params_get(tapio_loop *loop, const tapio_options *o, int call,
                          const char *host, tapio__tls_params *p);
void tapio__tls_params_free(tapio_loop *loop, tapio__tls_params *p);

/* The handshake is over: status 0 (make the connection now), or the
 * error, after which the transport is already failing. Called once, from
 * the loop; never after tapio__tls_cancel. */
typedef void (*tapio__tls_done_fn)(void *ud, tapio_transport *t, int status);

/* Puts a TLS layer (a client, or a server when server is 1) on stream t
 * and starts the handshake, with `len` bytes already read fed first. */
int tapio__tls_attach(tapio_transport *t, const tapio__tls_params *p,
                      int server, const void *buffered, size_t len,
                      tapio__tls_done_fn done, void *ud);
/* Fails t's handshake with code, without calling done. */
void tapio__tls_cancel(tapio_transport *t, int code);
/* Why t's TLS layer failed, in words, or NULL (borrowed: until t goes). */
const char *tapio__tls_error(tapio_transport *t);

/* A protocol with no callbacks: a server's connection until its factory
 * runs (after the handshake). */
extern const tapio_protocol tapio__no_protocol;

/* ---- Pipes ------------------------------------------------------------- */

/* A read pipe (writing 0) or write pipe on fd, in *out: checks fd's type
 * (TAPIO_EINVAL for a regular file) and makes it non-blocking, to be
 * restored on close. On failure fd is left open. */
int tapio__pipe_new(tapio_loop *loop, int fd, int writing, const void *proto,
                    void *ud, tapio_transport **out);

/* ---- Spawning ---------------------------------------------------------- */

/* A child just started. */
typedef struct tapio__child {
  pid_t pid;
  int pidfd;  /* -1 where there are no pidfds: the exit is polled */
  int fds[3]; /* our ends of the pipes to its 0, 1 and 2, or -1 */
} tapio__child;

/* Starts argv[0] (or the "executable" option's file) with argv
 * (NULL-terminated) as opts (subprocess_exec's) say, in *out; fn names
 * the call in the words of a refusal. 0, or the error with nothing left
 * behind. */
int tapio__spawn(tapio_loop *loop, const char *fn, char *const *argv,
                 const tapio_options *opts, tapio__child *out);

/* One step of a child's start before its exec, in order. spawn.c
 * describes them once; posix_spawn's file actions or spawn_fork.c's child
 * carry them out. */
enum tapio__step_kind {
  TAPIO__STEP_DUP2,      /* fd becomes from (fd == from: close-on-exec
                            cleared) */
  TAPIO__STEP_OPEN,      /* fd is path, opened with flags */
  TAPIO__STEP_CLOSE,     /* fd closed */
  TAPIO__STEP_CLOSEFROM, /* fd and every descriptor above it closed */
  TAPIO__STEP_CHDIR      /* into path */
};

typedef struct tapio__step {
  int kind, fd, from, flags;
  const char *path;
} tapio__step;

/* A child's start: what it runs, the steps, its session and group (both
 * ways), and what only the fork does (spawn_fork.c fills these in). The
 * child also gets every signal at its default and an empty mask. */
typedef struct tapio__start {
  const char *file;  /* what execve runs */
  char *const *argv;
  char *const *env;
  tapio__step *steps;
  size_t nsteps, cap;
  int setsid;
  pid_t pgroup;      /* -1: the parent's */
  int umask;         /* -1: the parent's */
  int set_uid, set_gid;
  uid_t uid;
  gid_t gid;
  gid_t *groups;     /* setgroups's */
  int ngroups;       /* -1: the parent's supplementary groups */
} tapio__start;

/* Where a start failed in the child: the words of the error. */
enum tapio__stage {
  TAPIO__STAGE_UNKNOWN,  /* posix_spawn's: it does not say */
  TAPIO__STAGE_SETSID,
  TAPIO__STAGE_PGROUP,
  TAPIO__STAGE_STEP,
  TAPIO__STAGE_GROUPS,
  TAPIO__STAGE_GID,
  TAPIO__STAGE_UID,
  TAPIO__STAGE_EXEC
};

/* st's user, group, extra_groups and umask from o (names looked up here,
 * in the parent); fn names the call in the words of a name not found
 * (TAPIO_EINVAL). Returns 1 when st needs spawn_fork's start, 0 when
 * posix_spawn's does, or the error. tapio__spawn_ids_free frees what it
 * kept. */
int tapio__spawn_ids(tapio_loop *loop, const tapio_options *o,
                     const char *fn, tapio__start *st);
void tapio__spawn_ids_free(tapio_loop *loop, tapio__start *st);
/* Starts st with fork: 0 and *pid, or the error of the first step that
 * failed (in the parent or the child, then reaped) and *stage. */
int tapio__spawn_fork(const tapio__start *st, pid_t *pid, int *stage);
/* Child fd i's option (stdin, stdout, stderr): enum tapio_stdio or a
 * descriptor; a pipe unless set. */
int tapio__stdio_opt(const tapio_options *o, int i);

/* ---- Fake children (vchild.c) ------------------------------------------ */

typedef struct tapio_fake_child tapio__vchild;
/* On a virtual loop: starts a fake child of the program registered for
 * argv (argv[0] and nargs arguments; shell: the command of
 * subprocess_shell, argv then "/bin/sh", "-c", it) for subprocess
 * transport process: pipes[i] gets the parent's end of each piped fd,
 * with pipe_proto and ud, not made. TAPIO_EVIRTUAL with words when no
 * program is registered for it. */
int tapio__vchild_spawn(tapio_loop *loop, tapio_transport *process,
                        char *const *argv, size_t nargs, const char *shell,
                        const tapio_options *opts, const void *pipe_proto,
                        void *ud, tapio_transport *pipes[3],
                        tapio__vchild **out);
int tapio__vchild_pid(const tapio__vchild *c);
/* Its exit status is known (the parent may not be told yet). */
int tapio__vchild_exited(const tapio__vchild *c);
/* send_signal: delivered from the loop. */
int tapio__vchild_signal(tapio__vchild *c, int sig);
/* Killed now, unless it exited: returns its returncode; the process
 * transport is no longer told. */
int tapio__vchild_kill(tapio__vchild *c);
/* The process transport lets go of it. */
void tapio__vchild_release(tapio__vchild *c);
/* tapio_loop_free: the registered programs go. */
void tapio__fakes_free(tapio_loop *loop);
/* process.c: the fake child of subprocess transport t exited. */
void tapio__process_exited(tapio_transport *t, int returncode);

/* ---- Datagram transport (datagram.c) ----------------------------------- */

typedef struct tapio__dgram tapio__dgram;
struct tapio__addr;

/* A datagram endpoint on fd (non-blocking, of family af). connected: the
 * socket is connected (its peer kept with tapio__transport_set_peer) and
 * sendto without an address uses send(); dflt (or NULL): the destination
 * of sendto without an address on an endpoint that is not connected. */
tapio_transport *tapio__datagram_new(tapio_loop *loop, int fd, int af,
                                     const tapio_datagram_protocol *proto,
                                     void *ud, int connected,
                                     const struct tapio__addr *dflt);
/* Frees the loop's datagram slots (tapio_loop_free). */
void tapio__datagram_area_free(tapio_loop *loop);
/* Where sendto(addr, addrlen) goes on an endpoint of family af: *sa and
 * *alen (NULL, 0: the connected peer, head's), dflt's when addr is NULL
 * and the endpoint is not connected, or the error asyncio's checks give.
 * Inline: the socket's sendto and the virtual one's share it. */
static inline int tapio__dgram_destination(int af, int connected,
                                           const struct tapio__addr *dflt,
                                           const tapio_transport *head,
                                           const void *addr, size_t addrlen,
                                           const struct sockaddr **sa,
                                           socklen_t *alen);
/* Python's name for the IPv4 broadcast address, taken wherever a
 * datagram endpoint takes an IPv4 host (sendto's addresses, local_host,
 * remote_host): host, or "255.255.255.255" for "<broadcast>". */
static inline const char *tapio__broadcast_name(const char *host) {
  return host && strcmp(host, "<broadcast>") == 0 ? "255.255.255.255" : host;
}
/* Datagrams an endpoint keeps (dgram_queue.c): in its write buffer,
 * each its destination's address (alen bytes, 0: the connected peer),
 * then its bytes; held while reading is paused, the sender's address
 * (0: an unnamed Unix peer), then its bytes, or, code set, the error
 * that takes a datagram's place (its message, with its NUL). */
typedef struct tapio__dgram_out {
  struct tapio__dgram_out *next;
  size_t len;
  socklen_t alen;
  int code;
  char bytes[];
} tapio__dgram_out;
typedef struct tapio__dgram_queue {
  tapio__dgram_out *head, *tail;
} tapio__dgram_queue;
/* Copies a datagram to the end of t's queue q; t's write buffer size
 * grows by asyncio's count (the caller calls tapio__flow_grew). 0 or
 * TAPIO_ENOMEM. */
int tapio__dgram_push(tapio_transport *t, tapio__dgram_queue *q,
                      const void *data, size_t len, const struct sockaddr *sa,
                      socklen_t alen);
/* The memory one kept datagram of len bytes from an address of alen
 * takes (what a held one counts against a receive buffer). */
size_t tapio__dgram_cost(size_t len, socklen_t alen);
/* Frees q's first datagram, t's write buffer size shrinking. */
void tapio__dgram_pop(tapio_transport *t, tapio__dgram_queue *q);
/* What an endpoint received and holds while reading is paused. */
typedef struct tapio__dgram_held {
  tapio__dgram_queue q;
  size_t bytes;                         /* the memory they take */
  tapio__task task;                     /* delivers them after resume */
  tapio_transport *t;
  void (*emptied)(tapio_transport *t);  /* all delivered, reading on */
} tapio__dgram_held;
/* emptied (or NULL): the kind reads again once nothing is held. */
void tapio__held_init(tapio__dgram_held *h, tapio_transport *t,
                      void (*emptied)(tapio_transport *t));
/* Copies a received datagram (code 0) or an error in its place (data its
 * message, len with the NUL) to the end. 0 or TAPIO_ENOMEM. */
int tapio__held_add(tapio__dgram_held *h, int code, const void *data,
                    size_t len, const struct sockaddr *sa, socklen_t alen);
/* resume_reading: the held ones go from a task, in order, until the
 * protocol pauses or closes again; then, all gone, emptied. With none
 * held, emptied at once. */
void tapio__held_resume(tapio__dgram_held *h);
/* close or abort: the held ones go undelivered. */
void tapio__held_clear(tapio__dgram_held *h);
/* TAPIO_STAT_DATAGRAMS_DROPPED of datagram endpoint t. */
uint64_t tapio__dgram_drops(tapio_transport *t);
/* A send after close: dropped; the exception handler hears of it once,
 * at the 5th, as asyncio logs its warning. TAPIO_ECLOSED. */
int tapio__dgram_lost_send(tapio_transport *t, unsigned *count);

/* ---- Virtual datagram endpoints (vdgram.c) ------------------------------ */

typedef struct tapio__dnet tapio__dnet;
/* An endpoint of a virtual loop's network, of family af (AF_INET or
 * AF_INET6), bound at local (NULL: an ephemeral port, at remote's source
 * when connected, else at the wildcard), connected to remote unless
 * broadcast (then remote is the default destination). 0, or
 * TAPIO_EADDRINUSE (TAPIO_ENOMEM). */
int tapio__vdgram_new(tapio_loop *loop, const tapio_datagram_protocol *proto,
                      void *ud, int af, const struct tapio__addr *local,
                      const struct tapio__addr *remote, int broadcast,
                      int reuse_port, tapio_transport **out);
/* A virtual endpoint's address in *out (0); TAPIO_ENOTSUP for another
 * transport. */
int tapio__vdgram_sockname(tapio_transport *t, struct tapio__addr *out);
/* tapio_transport_sendto on a virtual endpoint. */
int tapio__vdgram_sendto(tapio_transport *t, const void *data, size_t len,
                         const void *addr, size_t addrlen);
/* tapio__dgram_drops of a virtual endpoint. */
uint64_t tapio__vdgram_drops(tapio_transport *t);
/* tapio_loop_free: what is still in flight goes, with the network. */
void tapio__dnet_free(tapio_loop *loop);

/* ---- Requests: pending create calls and lookups (request.c) ------------ */

/* Every call that completes later through a user's completion callback
 * is a request, so that freeing the loop and tapio_cancel_pending find it.
 * `cancel` ends it at once with ECANCELED: it frees what it holds, and
 * calls the completion unless `quiet` is set (a cancel by the user). */
typedef struct tapio__request tapio__request;
struct tapio__request {
  tapio__task task;
  tapio__link link;          /* loop->requests */
  tapio_loop *loop;
  void (*cancel)(tapio__request *req);
  void *ud;                  /* the completion's user pointer */
  int quiet;                 /* cancelled by the user: call nobody */
};

void tapio__request_start(tapio_loop *loop, tapio__request *req,
                          tapio__task_fn run,
                          void (*cancel)(tapio__request *));
/* Unlinks the request; 1 if its completion is to be called, 0 when the
 * user cancelled it. */
int tapio__request_done(tapio__request *req);
/* Why a create call refuses its arguments at once (its code returned):
 * what tapio_loop_error_message answers until the next create call or
 * completion. */
void tapio__refuse(tapio_loop *loop, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* What each create call does first: no words of an earlier refusal. */
static inline void tapio__refuse_none(tapio_loop *loop) {
  if (loop)
    loop->refused[0] = '\0';
}
void tapio__requests_cancel_all(tapio_loop *loop);
/* A create call's transport t, made and waiting: from the loop,
 * connection_made (tapio__transport_made), then cb(cb_ud, 0, t); if the
 * request is cancelled first (the loop freed, tapio_cancel_pending), t is
 * discarded and cb gets TAPIO_ECANCELED (not after tapio_cancel_pending).
 * TAPIO_ENOMEM, with t untouched, when the request cannot be made. */
int tapio__request_transport(tapio_loop *loop, tapio_transport *t,
                             tapio_connect_fn cb, void *cb_ud);
/* A create call's completion with an error, when call (what
 * tapio__request_done said) is set: message (or NULL) is what
 * tapio_loop_error_message answers during it. The request is freed by
 * then. */
void tapio__connect_failed(tapio_loop *loop, int call, tapio_connect_fn cb,
                           void *ud, int code, const char *message);

/* ---- Name resolution (resolve.c) --------------------------------------- */

typedef struct tapio__addr {
  struct sockaddr_storage ss;
  socklen_t len;
} tapio__addr;

/* ---- Datagrams held until their time (flight.c) ------------------------ */

/* The faults of what a datagram endpoint sends (tapio_datagram_faults),
 * drawn per datagram, and the datagrams they hold, due at a time of the
 * loop's clock: the virtual network's whole transit (vdgram.c), a real
 * endpoint's delay and reordering before its socket (datagram.c). A
 * flight delivers what is due from a task of the loop (what is sent
 * meanwhile waits for the next turn), a timer waking it for the next
 * datagram due later; each lands through its owner's callback. */
typedef struct tapio__flight tapio__flight;
typedef struct tapio__fsender tapio__fsender;

/* A datagram held. */
typedef struct tapio__fpkt {
  struct tapio__fpkt *next;
  double due;            /* when it lands (loop time; < 0: see flight.c) */
  tapio__fsender *from;  /* its sender, NULL once forgotten */
  unsigned hold;         /* later datagrams of its sender to let pass */
  tapio__addr src, dst;  /* dst.len 0: the connected peer */
  size_t len;
  char data[];
} tapio__fpkt;

struct tapio__flight {
  tapio_loop *loop;
  tapio__fpkt *head;     /* held, by due time (ties: as sent) */
  tapio__fpkt *batch;    /* what the running delivery holds */
  tapio__task task;      /* delivers what is due */
  tapio__timer timer;    /* the next datagram due later */
  int at_once;           /* one due now, with nothing held, is not held:
                            tapio__flight_launch tells its sender */
  /* p is due: deliver it (p stays in the batch meanwhile). */
  void (*land)(tapio__flight *fl, tapio__fpkt *p);
};

/* A sender's faults and draws. */
struct tapio__fsender {
  tapio__flight *flight;          /* where its datagrams are held */
  tapio_datagram_faults faults;   /* drop: a copy of its own */
  uint64_t rng, sent;             /* the draws' state; sent since set */
  size_t inflight;                /* the bytes it has held */
  tapio_datagram_fault_counts counts; /* since its first faults */
  /* One of its datagrams landed (its bytes no longer in flight); may
   * be NULL. */
  void (*left)(tapio__fsender *s);
};

void tapio__flight_init(tapio__flight *fl, tapio_loop *loop,
                        void (*land)(tapio__flight *, tapio__fpkt *));
/* Frees what it holds, stops its timer and task. */
void tapio__flight_free(tapio__flight *fl);
/* One datagram s sends to dst (from src: the receiver's view; may be
 * NULL) as its faults say: lost, held, doubled. 0; with at_once, 1 or 2
 * when it is due now with nothing held: the caller sends it that many
 * times itself; TAPIO_ENOMEM (it is lost). */
int tapio__flight_launch(tapio__fsender *s, const void *data, size_t len,
                         const tapio__addr *dst, const tapio__addr *src);
/* Whether anything is held (a delivery running included). */
static inline int tapio__flight_busy(const tapio__flight *fl) {
  return fl->head || fl->batch;
}
/* Everything held goes, unlanded. */
void tapio__flight_clear(tapio__flight *fl);
/* s's datagrams go, unlanded (those of a running delivery: forgotten). */
void tapio__flight_drop(tapio__flight *fl, tapio__fsender *s);
/* s's datagrams still land, from no sender. */
void tapio__flight_forget(tapio__flight *fl, tapio__fsender *s);
/* Sets s's faults (f NULL: none): 0, TAPIO_EINVAL for a bad value,
 * TAPIO_ENOMEM. The numbering (sent) and the draws start again; the
 * counts go on. */
int tapio__fsender_set(tapio_loop *loop, tapio__fsender *s,
                       const tapio_datagram_faults *f);
/* Frees s's copy of the drop list. */
void tapio__fsender_free(tapio_loop *loop, tapio__fsender *s);
/* The sender of datagram endpoint t, virtual (vdgram.c) or real
 * (datagram.c: made when make is set): 0 with *s (NULL: none yet),
 * TAPIO_EINVAL for another transport, TAPIO_ENOMEM. */
tapio__fsender *tapio__vdgram_sender(tapio_transport *t);
int tapio__dgram_sender(tapio_transport *t, int make, tapio__fsender **s);

typedef struct tapio__lookup tapio__lookup;
typedef struct tapio__resolver tapio__resolver;

/* A lookup's answer, from a task of the loop: status 0 and n >= 1
 * addresses (the callback's to keep; tapio__addrs_free) and, when asked
 * for, the canonical name (borrowed for the call); or an error and none.
 * The lookup is gone by then: its owner forgets it. */
typedef void (*tapio__resolved_fn)(void *ud, int status, tapio__addr *addrs,
                                   size_t n, const char *canon);
/* A reverse lookup's answer: host and service borrowed for the call. */
typedef void (*tapio__named_fn)(void *ud, int status, const char *host,
                                const char *service);

enum {
  TAPIO__RES_PASSIVE = 1,  /* no host: every interface (else loopback) */
  TAPIO__RES_CANON = 2,    /* the answer carries the canonical name */
  TAPIO__RES_NUMERIC = 4,  /* a literal address or nothing: no lookup */
  TAPIO__RES_V4MAPPED = 8, /* getaddrinfo's AI_V4MAPPED, AI_ALL, */
  TAPIO__RES_ALL = 16,     /* AI_ADDRCONFIG and AI_NUMERICSERV */
  TAPIO__RES_ADDRCONFIG = 32,
  TAPIO__RES_NUMERICSERV = 64
};
/* Every TAPIO_AI_* flag, for the checks of the calls that take them. */
#define TAPIO__AI_ALL_FLAGS                                                 \
  (TAPIO_AI_PASSIVE | TAPIO_AI_CANONNAME | TAPIO_AI_NUMERICHOST |          \
   TAPIO_AI_V4MAPPED | TAPIO_AI_ALL | TAPIO_AI_ADDRCONFIG |                \
   TAPIO_AI_NUMERICSERV)

/* The one way names become addresses: host (a name, a literal, or
 * NULL/"") and service (a port number or a name from /etc/services) as
 * addresses of family (TAPIO_AF_* value, 0 any). A literal or no host is
 * answered at once, with no lookup: returns 1, *addrs and *n set (the
 * caller's), and cb is never called. A name goes to c-ares: returns 0,
 * *lk is the lookup, and cb runs later from a task unless
 * tapio__lookup_cancel comes first. Negative: an error, nothing pending. */
int tapio__resolve(tapio_loop *loop, const char *host, const char *service,
                   int family, int flags, tapio__resolved_fn cb, void *ud,
                   tapio__lookup **lk, tapio__addr **addrs, size_t *n);
/* The same for an int port. */
int tapio__resolve_port(tapio_loop *loop, const char *host, int port,
                        int family, int flags, tapio__resolved_fn cb,
                        void *ud, tapio__lookup **lk, tapio__addr **addrs,
                        size_t *n);
/* getnameinfo of sa (TAPIO_NI_* flags), always answered from a task. */
int tapio__nameinfo(tapio_loop *loop, const struct sockaddr *sa,
                    socklen_t len, int flags, tapio__named_fn cb, void *ud,
                    tapio__lookup **lk);
/* Nobody is called back; harmless for NULL. */
void tapio__lookup_cancel(tapio__lookup *lk);
/* The TAPIO__RES_* flags of TAPIO_AI_* flags. */
int tapio__res_flags(int ai_flags);
/* 0 if IP protocol proto (0: any) goes with type (TAPIO_SOCK_*, 0: any),
 * as getaddrinfo pairs them; else TAPIO_EAI_SOCKTYPE. */
int tapio__ipproto_check(int type, int proto);
void tapio__addrs_free(tapio_loop *loop, tapio__addr *addrs, size_t n);
/* Sets the flowinfo of the IPv6 addresses of addrs[n] (an option's,
 * local_flowinfo or remote_flowinfo; 0 leaves them as they are). */
void tapio__addrs_flowinfo(tapio__addr *addrs, size_t n, uint32_t flow);
/* Destroys the loop's c-ares channel, if any (tapio_loop_free). */
void tapio__resolver_free(tapio_loop *loop);

/* ---- Racing connects: Happy Eyeballs (eyeballs.c) ---------------------- */

typedef struct tapio__race tapio__race;
/* The race is over (it is freed by then): fd >= 0 connected to addr (the
 * caller's descriptor now), or fd -1, the first address's error and a
 * message saying what each address answered (borrowed for the call). */
typedef void (*tapio__race_fn)(void *ud, int fd, const tapio__addr *addr,
                               int code, const char *message);
/* Connects a stream socket to one of addrs[0..n), n >= 1, reordered in
 * place by family when first > 0 (asyncio's interleave), each bound to
 * the first of locals[0..nlocals) of its family that binds. delay < 0:
 * one address after the other; else Happy Eyeballs, a new attempt every
 * delay seconds; proto is the sockets' IP protocol (0: TCP). addrs and
 * locals must outlive the race. done may run
 * before this returns (every address failing at once): after a 0 return
 * the caller touches nothing of its own. *race, set before anything is
 * tried, is for tapio__race_cancel until done runs. */
int tapio__race_start(tapio_loop *loop, tapio__addr *addrs, size_t n,
                      const tapio__addr *locals, size_t nlocals, double delay,
                      size_t first, int proto, tapio__race_fn done, void *ud,
                      tapio__race **race);
/* Stops every attempt and frees the race; done is not called. */
void tapio__race_cancel(tapio__race *race);

/* ---- Sockets and addresses --------------------------------------------- */

int tapio__family_to_af(int family);
/* A socket address as the ABI reports it: numeric host (or Unix path),
 * port and TAPIO_AF_* family. */
int tapio__format_addr(const struct sockaddr *sa, socklen_t len, char *host,
                       size_t hostlen, int *port, int *family);
/* "what ('127.0.0.1', 9): connection refused" (a Unix path quoted, no
 * address when len is 0) into buf: how tapio's messages name an address
 * an operation failed on, as asyncio's do. */
void tapio__describe(char *buf, size_t size, const char *what,
                     const struct sockaddr *sa, socklen_t len, int code);
/* "could not resolve 'host': unknown node or service" into buf when code
 * is a lookup's (TAPIO_EAI_*): the code alone does not say which name. */
const char *tapio__describe_lookup(char *buf, size_t size, const char *host,
                                   int code);
/* Two socket addresses name the same endpoint (family, address, port,
 * IPv6 scope; a Unix path), whatever their padding. */
int tapio__addr_equal(const struct sockaddr *a, socklen_t alen,
                      const struct sockaddr *b, socklen_t blen);
/* getsockname (peer 0) or getpeername (peer 1) of fd, formatted. */
int tapio__fd_name(int fd, int peer, char *host, size_t hostlen, int *port,
                   int *family);
/* The virtual network's addresses (vnet.c, vdgram.c): the port (0 for a
 * Unix one); setting it; the wildcard (0.0.0.0, ::); the same host, the
 * port aside (a Unix path is its host); a bind at one clashes with one at
 * the other, as the kernel's EADDRINUSE (same family and port, the same
 * host or either a wildcard); the loopback address of a's family. */
int tapio__addr_port(const tapio__addr *a);
void tapio__addr_set_port(tapio__addr *a, int port);
int tapio__addr_is_any(const tapio__addr *a);
int tapio__addr_same_host(const tapio__addr *a, const tapio__addr *b);
int tapio__addr_clash(const tapio__addr *a, const tapio__addr *b);
void tapio__addr_loopback(tapio__addr *a, int port);
/* a, a destination, made the source Linux picks to send there (127.0.0.1
 * for any 127.x.y.z, a wildcard or a broadcast), at port. */
void tapio__addr_source(tapio__addr *a, int port);
/* 1 for IPv4's limited broadcast, 255.255.255.255. */
int tapio__addr_is_broadcast(const tapio__addr *a);
/* Ephemeral ports of the virtual network: Linux's ip_local_port_range. */
#define TAPIO__PORT_FIRST 32768
#define TAPIO__PORT_LAST 60999
/* The address of the Unix socket at path, or of Linux's abstract name
 * for "@name"; TAPIO_EINVAL for "" and "@", TAPIO_ENAMETOOLONG when it
 * does not fit. */
int tapio__unix_addr(const char *path, tapio__addr *a);
/* "@name": an abstract Unix name (Linux), no file. */
static inline int tapio__unix_abstract(const char *path) {
  return path[0] == '@';
}
/* Removes a socket file left at path by an earlier run (bind would fail
 * on it), as asyncio does; nothing for an abstract name. */
void tapio__unix_unlink_stale(const char *path);
int tapio__socket_nonblock(int fd);
/* setsockopt(fd, level, name) to 1: 0 or the error. */
int tapio__sockopt_on(int fd, int level, int name);
/* TCP_NODELAY on fd, a socket of address family af, when nodelay is set
 * and af is IPv4 or IPv6 (asyncio sets it on every TCP transport). */
void tapio__maybe_nodelay(int fd, int af, int nodelay);

/* ---- Servers ----------------------------------------------------------- */

tapio_server *tapio__server_new(tapio_loop *loop,
                                tapio_protocol_factory factory, void *ud,
                                const tapio_options *opts);
/* Adds a listening socket; the server owns fd from then on. */
int tapio__server_add_fd(tapio_server *s, int fd);
int tapio__server_set_unix_path(tapio_server *s, const char *path);
/* On a virtual loop: adds a listener at a of the virtual network. */
int tapio__server_add_virtual(tapio_server *s, const struct tapio__addr *a,
                              int reuse_port);
/* Takes a connection as accepting one does: t is made with no protocol;
 * the factory gives it one (or t is discarded), then connection_made,
 * after a TLS handshake with "ssl". */
void tapio__server_take(tapio_server *s, tapio_transport *t);
/* Undoes tapio__server_new when creation fails. */
void tapio__server_destroy(tapio_server *s);
void tapio__server_detach(tapio_server *s, tapio_transport *t);
void tapio__servers_close_all(tapio_loop *loop);
/* 1 if a server of the loop listens on fd. */
int tapio__servers_hold_fd(tapio_loop *loop, int fd);
void tapio__servers_free_all(tapio_loop *loop);

/* Defined here, where tapio__addr and tapio__addr_equal are (see the
 * declaration with the datagram transport). */
static inline int tapio__dgram_destination(int af, int connected,
                                           const tapio__addr *dflt,
                                           const tapio_transport *head,
                                           const void *addr, size_t addrlen,
                                           const struct sockaddr **sa,
                                           socklen_t *alen) {
  const struct sockaddr *given = (const struct sockaddr *)addr;
  *sa = NULL;
  *alen = 0;
  if (!addr) {
    if (connected)
      return 0;
    if (!dflt->len)
      return TAPIO_EINVAL; /* nowhere to send to */
    *sa = (const struct sockaddr *)&dflt->ss;
    *alen = dflt->len;
    return 0;
  }
  if (addrlen < sizeof(sa_family_t) ||
      addrlen > sizeof(struct sockaddr_storage))
    return TAPIO_EINVAL;
  if (given->sa_family != af)
    return TAPIO_EAFNOSUPPORT; /* asyncio: "socket family mismatch" */
  if (connected) /* asyncio: addr must be None or the peer's */
    return tapio__addr_equal(given, (socklen_t)addrlen, &head->peer.sa,
                             head->peerlen) ? 0 : TAPIO_EISCONN;
  *sa = given;
  *alen = (socklen_t)addrlen;
  return 0;
}

#endif
