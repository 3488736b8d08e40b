/* tapio: asyncio's Transports and Protocols on libev, as a C ABI.
 *
 * This header is the whole public surface of the library. It is written so
 * that the part between TAPIO_CDEF_BEGIN and TAPIO_CDEF_END holds no
 * preprocessor line at all: the build copies that part into
 * `tapio_cdef.h`, which LuaJIT's ffi.cdef and Python's cffi accept as it
 * is. Everything is an opaque handle, a fixed-width integer, a C string or a
 * function pointer; no struct is passed by value.
 *
 * Conventions
 * - Functions that can fail return 0 or a negative TAPIO_E* code.
 * - A function that takes a completion callback and returns an error never
 *   calls that callback; one that returns 0 calls it exactly once, from the
 *   loop, never from inside the call itself. The callback is required:
 *   NULL is TAPIO_EINVAL.
 * - Every callback takes the user pointer given with it as first argument.
 * - Pointers given to a callback are borrowed for the duration of the call
 *   unless stated otherwise. Strings passed in are copied when kept.
 * - NULL for a handle is never a crash: a function that returns an error
 *   code returns TAPIO_EINVAL, a query answers 0 (NULL; -1 for
 *   tapio_handle_when) with its out-parameters zeroed, and a function
 *   that returns nothing does nothing. A call that fails leaves NULL in
 *   its out-parameter for a new handle.
 * - A reference the caller holds (a scheduled call's handle, a server) is
 *   given back once. A second release while tapio still holds the object
 *   does nothing; after its memory is gone it is undefined, as free()
 *   twice is.
 * - A length no object can have (past PTRDIFF_MAX, alone or added up) is
 *   TAPIO_EINVAL; sizes are checked before any arithmetic on them.
 * - A loop and everything made from it belong to one thread at a time.
 *   Only tapio_call_soon_threadsafe may be called from another thread
 *   (so another thread stops a running loop by scheduling a call that
 *   calls tapio_loop_stop); a worker pool's job is such a thread (see
 *   tapio_queue_work). A loop not running may be handed to another
 *   thread when the handover synchronises (pthread_create, pthread_join,
 *   a mutex): make it in one thread, run it in another, free it in the
 *   first after the join.
 * - tapio keeps no hidden global state, with three process-wide
 *   exceptions forced by its libraries: libev's system-error callback
 *   (tapio reports instead of aborting), the allocator libev uses for its
 *   own tables (untouched: see tapio_loop_new_with_allocator), and c-ares's library set-up (done once, never
 *   undone; c-ares allocates with malloc); one forced by the OS: the
 *   dispositions of the signals loops watch, and the table of which loops
 *   watch which signal (see tapio_add_signal_handler); and one per thread:
 *   which loop runs on it.
 */
#ifndef TAPIO_H
#define TAPIO_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Version and stability ----------------------------------------------
 * The version this header declares; tapio_version() is the library's, so
 * a program can compare the two at run time. Within one major version
 * (the shared library's soname, libtapio.so.MAJOR) the ABI only grows:
 * functions, enum values and options are added, never removed or changed;
 * protocol tables gain callbacks only at their end (see the growth rule
 * under Protocols); handles stay opaque, so their structs may change
 * freely. What a program built against 0.x.y does, it does against any
 * library 0.x'.y' with x' >= x. Every exported symbol is declared here
 * (spec/embed/test_abi.py compares the library's symbols with this
 * header's functions, both ways). */
#define TAPIO_VERSION_MAJOR 0
#define TAPIO_VERSION_MINOR 1
#define TAPIO_VERSION_PATCH 0
#define TAPIO_VERSION                                                        \
  ((TAPIO_VERSION_MAJOR << 16) | (TAPIO_VERSION_MINOR << 8) |               \
   TAPIO_VERSION_PATCH)

#if defined(__GNUC__)
#pragma GCC visibility push(default)
#endif

/* TAPIO_CDEF_BEGIN */

/* ---- Version ----------------------------------------------------------- */

/* The library's version: major << 16 | minor << 8 | patch (TAPIO_VERSION
 * is the header's). */
uint32_t tapio_version(void);
/* "major.minor.patch", static storage. */
const char *tapio_version_string(void);

/* ---- Errors ------------------------------------------------------------ */

/* The same values on every platform; the OS's errno is translated once. */
enum tapio_error {
  TAPIO_OK = 0,
  TAPIO_EPERM = -1,
  TAPIO_ENOENT = -2,
  TAPIO_EINTR = -3,
  TAPIO_EIO = -4,
  TAPIO_EBADF = -5,
  TAPIO_EAGAIN = -6,
  TAPIO_ENOMEM = -7,
  TAPIO_EACCES = -8,
  TAPIO_EBUSY = -9,
  TAPIO_EEXIST = -10,
  TAPIO_ENOTDIR = -11,
  TAPIO_EINVAL = -12,
  TAPIO_ENFILE = -13,
  TAPIO_EMFILE = -14,
  TAPIO_ENOSPC = -15,
  TAPIO_EPIPE = -16,
  TAPIO_ENAMETOOLONG = -17,
  TAPIO_ENOSYS = -18,
  TAPIO_ENOTSOCK = -19,
  TAPIO_EMSGSIZE = -20,
  TAPIO_EPROTONOSUPPORT = -21,
  TAPIO_ENOTSUP = -22,
  TAPIO_EAFNOSUPPORT = -23,
  TAPIO_EADDRINUSE = -24,
  TAPIO_EADDRNOTAVAIL = -25,
  TAPIO_ENETDOWN = -26,
  TAPIO_ENETUNREACH = -27,
  TAPIO_ECONNABORTED = -28,
  TAPIO_ECONNRESET = -29,
  TAPIO_ENOBUFS = -30,
  TAPIO_EISCONN = -31,
  TAPIO_ENOTCONN = -32,
  TAPIO_ETIMEDOUT = -33,
  TAPIO_ECONNREFUSED = -34,
  TAPIO_EHOSTUNREACH = -35,
  TAPIO_EALREADY = -36,
  TAPIO_ECANCELED = -37,
  TAPIO_ESHUTDOWN = -38,
  TAPIO_ECHILD = -39,
  TAPIO_ESRCH = -40,
  TAPIO_E2BIG = -41,
  TAPIO_ENOPROTOOPT = -42,
  TAPIO_EPROTOTYPE = -43,
  TAPIO_ELOOP = -44,
  TAPIO_EROFS = -45,
  /* tapio's own */
  TAPIO_EOF = -100,        /* end of file */
  TAPIO_ECLOSED = -101,    /* the handle is closing or closed */
  TAPIO_ERUNNING = -102,   /* the loop is already running */
  TAPIO_EBUFFER = -103,    /* get_buffer returned no buffer (NULL, 0) */
  TAPIO_ECALLBACK = -104,  /* a callback raised an error (bindings) */
  TAPIO_ESYSTEM = -105,    /* libev reported a system error */
  TAPIO_EVIRTUAL = -106,   /* real I/O asked of a virtual-clock loop */
  TAPIO_ESPIN = -107,      /* a virtual loop kept busy at one time */
  TAPIO_EAI_NONAME = -110, /* name resolution: no such host */
  TAPIO_EAI_AGAIN = -111,  /* name resolution: temporary failure */
  TAPIO_EAI_FAIL = -112,   /* name resolution: permanent failure */
  TAPIO_EAI_FAMILY = -113, /* name resolution: family not supported */
  TAPIO_EAI_SERVICE = -114,/* name resolution: bad service/port */
  TAPIO_EAI_SOCKTYPE = -115,/* name resolution: protocol not of the type */
  TAPIO_ETLS = -120,       /* TLS: protocol error (bad record, alert) */
  TAPIO_ETLS_EXPIRED = -121,       /* TLS: a certificate has expired */
  TAPIO_ETLS_NOT_YET_VALID = -122, /* TLS: a certificate is not yet valid */
  TAPIO_ETLS_HOSTNAME = -123,      /* TLS: certificate not for that host */
  TAPIO_ETLS_UNKNOWN_CA = -124,    /* TLS: issuer not trusted or unknown */
  TAPIO_ETLS_SELF_SIGNED = -125,   /* TLS: self-signed and not trusted */
  TAPIO_ETLS_VERIFY = -126,        /* TLS: any other verification failure */
  TAPIO_ETLS_NO_CERT = -127,       /* TLS: a certificate required, none */
  TAPIO_ETLS_VERSION = -128,       /* TLS: no protocol version in common */
  TAPIO_ETLS_CIPHER = -129,        /* TLS: no cipher in common / refused */
  TAPIO_EUNKNOWN = -199    /* an OS error tapio has no name for */
};

/* A sentence describing code ("connection refused"); static storage. */
const char *tapio_strerror(int code);
/* The enum name without its prefix ("ECONNREFUSED"); static storage. */
const char *tapio_errname(int code);
/* The code for an errno value of this platform (bindings making their own
 * system calls report like tapio does); TAPIO_EUNKNOWN if it has none. */
int tapio_error_from_errno(int err);

/* ---- Handles ----------------------------------------------------------- */

typedef struct tapio_loop tapio_loop;
typedef struct tapio_transport tapio_transport;
typedef struct tapio_server tapio_server;
typedef struct tapio_handle tapio_handle;
typedef struct tapio_options tapio_options;
typedef struct tapio_tls_context tapio_tls_context;

/* ---- Loop -------------------------------------------------------------- */

/* Like lua_Alloc: nsize 0 frees ptr (returning NULL); otherwise realloc ptr
 * (NULL when new) from osize to nsize bytes, returning NULL on failure. */
typedef void *(*tapio_alloc_fn)(void *ud, void *ptr, size_t osize,
                                size_t nsize);

/* Errors nobody awaits go here: code, a message (borrowed for the call) and
 * the transport concerned, or NULL. The default prints to stderr. */
typedef void (*tapio_exception_fn)(void *ud, tapio_loop *loop, int code,
                                   const char *message,
                                   tapio_transport *transport);

/* A scheduled call. */
typedef void (*tapio_call_fn)(void *ud);

/* A new loop in *out, allocating with malloc. A loop holds two
 * descriptors (its epoll instance and its wakeup); TAPIO_EMFILE (or
 * ENFILE) when they cannot be had, and then nothing is kept. */
int tapio_loop_new(tapio_loop **out);
/* A new loop whose allocations go through alloc: the loop, every handle,
 * transport and server of it, their write buffers, the read buffer, name
 * resolution results, options, the timer heap; tapio_loop_memory counts
 * them. When alloc refuses, the call that needed the memory fails with
 * TAPIO_ENOMEM (a create call, call_soon/later/at, options, wait_closed;
 * a write that must buffer, which also fails its transport with
 * connection_lost(TAPIO_ENOMEM)), a connection being accepted is closed
 * and the exception handler told (TAPIO_ENOMEM), and the loop goes on,
 * serving again once alloc gives memory (spec/c/test_budget.c refuses
 * each allocation of a whole exchange in turn). Not through alloc, and
 * why: libev's own tables (ev_set_allocator is process-wide and takes no
 * user pointer, so it cannot be one loop's; tapio leaves it to the
 * host), OpenSSL's (CRYPTO_set_mem_functions is process-wide too and must
 * precede every other OpenSSL call: a host that wants it calls it
 * itself), the nodes of tapio_call_soon_threadsafe (malloc: alloc need not
 * be thread-safe), the resolver's (c-ares allocates with malloc) and what
 * libc allocates inside getaddrinfo (for literal addresses). */
int tapio_loop_new_with_allocator(tapio_loop **out, tapio_alloc_fn alloc,
                                  void *ud);
/* Frees the loop. Open transports are aborted (their connection_lost runs,
 * with ECANCELED), servers closed (wait_closed callbacks run), pending
 * create calls and lookups completed with ECANCELED, pending calls
 * dropped unrun. Jobs of the worker pool not started are dropped (their
 * work never runs), those running are waited for (a job that never
 * returns hangs the free), and the done of each gets TAPIO_ECANCELED.
 * Every handle of the loop is invalid afterwards.
 * TAPIO_ERUNNING while it runs. */
int tapio_loop_free(tapio_loop *loop);

/* Runs until tapio_loop_stop. Loops do not nest, as in asyncio:
 * TAPIO_ERUNNING if this loop or another one is running on this thread
 * (a run called from inside a callback). TAPIO_ESYSTEM when the poll
 * itself failed (the exception handler got the cause); TAPIO_ECLOSED
 * from inside tapio_loop_free. */
int tapio_loop_run(tapio_loop *loop);
/* Runs one iteration: waits for events when wait is nonzero, else only
 * handles what is ready. For hosts that own their main loop. Returns what
 * tapio_loop_run returns. */
int tapio_loop_run_once(tapio_loop *loop, int wait);
/* Ends the run going on (run or run_once) once the current iteration is
 * done; the stop is spent with that run. Called while the loop is not
 * running, it applies to the next run or run_once, which handles what is
 * ready without waiting and returns (asyncio's stop() before
 * run_forever()). */
void tapio_loop_stop(tapio_loop *loop);
/* 1 while tapio_loop_run or tapio_loop_run_once is on the stack. */
int tapio_loop_is_running(tapio_loop *loop);
/* Monotonic time in seconds, the clock of tapio_call_at. */
double tapio_loop_time(tapio_loop *loop);
/* Bytes the loop and its handles hold through the loop's allocator
 * (OpenSSL's own memory is not: it has one allocator per process). */
uint64_t tapio_loop_memory(tapio_loop *loop);

/* ---- Embedding: a loop the host polls ----------------------------------
 * A host that owns its main loop waits in its own poll/select/epoll on
 * tapio_loop_backend_fd, for at most tapio_loop_backend_timeout
 * milliseconds, then calls tapio_loop_run_once(loop, 0); or it steps
 * tapio_loop_run_once(loop, 0) once per frame and never waits on tapio. */

/* A descriptor that is readable while the loop has work: I/O ready, a
 * timer due, calls queued, or a watcher change libev has yet to apply. It
 * is an epoll instance of tapio's own holding libev's epoll descriptor and
 * a timerfd armed to the next deadline, so it alone covers timers too; it
 * is re-armed at the end of every run and by tapio_loop_backend_timeout.
 * Work the host adds between steps (a call, a write that starts a
 * watcher, a timer sooner than the last timeout said) turns it readable
 * at once, so a host asleep on the descriptor alone steps; a host that
 * also sleeps on a timeout of its own from tapio_loop_backend_timeout
 * may keep it, as the descriptor covers the new work. Made at the first
 * call (two descriptors more), then the same one until the loop is
 * freed; tapio owns it and tapio_loop_free closes it, so a host takes it
 * out of its poller first (asyncio's remove_reader, epoll's EPOLL_CTL_DEL):
 * its number may come back as another descriptor. Readable means "step
 * now"; reading it is tapio's business.
 * libev has no call that returns its descriptor: tapio finds it through
 * ev_embed (documented; the member that holds it is marked private in
 * ev.h) and trusts it only when the kernel confirms it holds tapio's own
 * watchers (adding one fails with EEXIST); otherwise TAPIO_ENOTSUP.
 * libev makes its epoll descriptor anew when an event comes for a
 * descriptor closed while its file lives on elsewhere (a dup, a child
 * holding it); the step that does so takes the old one out (a child the
 * host forked holds it still) and adds the new one, so the host's
 * descriptor stays the same and keeps waking for I/O. Also
 * TAPIO_ENOTSUP where libev does not use epoll; TAPIO_EMFILE without
 * descriptors; TAPIO_ECLOSED while the loop is being freed. */
int tapio_loop_backend_fd(tapio_loop *loop);
/* How long the host may sleep, in milliseconds, rounded up: 0 when work is
 * ready (calls queued, timers due, events taken, a watcher started or
 * stopped since the last step began, which libev gives the kernel only at
 * its next step), -1 when nothing is scheduled (sleep until the
 * descriptor is readable), else the time to the next timer on the clock
 * as it is now. TAPIO_EINVAL for NULL. */
int tapio_loop_backend_timeout(tapio_loop *loop);

/* Replaces the exception handler; NULL restores the default. */
void tapio_loop_set_exception_handler(tapio_loop *loop, tapio_exception_fn fn,
                                      void *ud);
/* Sends an error to the loop's exception handler (bindings use it so that
 * their errors and tapio's own go to one place). */
void tapio_loop_call_exception_handler(tapio_loop *loop, int code,
                                       const char *message,
                                       tapio_transport *transport);

/* ---- Scheduled calls --------------------------------------------------- */

/* Each schedules fn(ud) and, when out is not NULL, stores a handle in *out
 * that the caller must give back with tapio_handle_release (cancel does not
 * release it). Calls due in the same iteration run in the order they were
 * scheduled; a call scheduled by a running call runs in the next iteration,
 * after I/O has been polled. A pending call is dropped unrun when the loop
 * is freed: its ud stays the caller's. */
int tapio_call_soon(tapio_loop *loop, tapio_call_fn fn, void *ud,
                    tapio_handle **out);
/* After delay seconds (negative counts as 0), never before. */
int tapio_call_later(tapio_loop *loop, double delay, tapio_call_fn fn,
                     void *ud, tapio_handle **out);
/* At tapio_loop_time() == when: never before it (the machine may make it
 * late); TAPIO_EINVAL for NaN (as delay for call_later). */
int tapio_call_at(tapio_loop *loop, double when, tapio_call_fn fn, void *ud,
                  tapio_handle **out);
/* From any thread: fn(ud) runs on the loop's thread in a later iteration
 * and wakes the loop if it waits (or turns a polled loop's descriptor
 * readable). It joins the loop's ready queue as asyncio's does: with
 * timers due in the same iteration, it runs before them and what it
 * schedules after them (so do signal callbacks; a job's done runs after
 * them, as the callbacks of asyncio's run_in_executor future). Each
 * call runs exactly once, and the calls one thread makes run in the
 * order it made them (spec/c/test_loop.c checks both with four
 * threads at once, also built with ThreadSanitizer). From a callback of
 * the running loop, it is call_soon: in order with the calls call_soon
 * made around it, as asyncio's. No handle; it cannot be cancelled. A pending call is dropped unrun when the loop is freed,
 * which must not race with another thread's call: stop calling before
 * the loop goes. Not for signal handlers (it allocates). */
int tapio_call_soon_threadsafe(tapio_loop *loop, tapio_call_fn fn, void *ud);
/* Cancels the call if it has not run; harmless afterwards. */
void tapio_handle_cancel(tapio_handle *h);
/* 1 if cancelled. */
int tapio_handle_cancelled(tapio_handle *h);
/* The time a call_later/call_at handle is due, in loop time; -1 for
 * call_soon handles. */
double tapio_handle_when(tapio_handle *h);
/* Gives back the handle stored by call_soon/later/at; from inside the
 * call's own fn too (the handle lives until fn returns). A second release
 * is harmless while the call is pending, undefined after. */
void tapio_handle_release(tapio_handle *h);

/* ---- Work off the loop: the worker pool ---------------------------------
 * Blocking work (a blocking library call, a compression, a password hash)
 * runs on a pool thread while the loop goes on: libuv's uv_queue_work,
 * asyncio's run_in_executor. Each loop has its own pool; its threads start
 * at the first job, as jobs need them, up to the pool's size, and are
 * joined by tapio_loop_free. Every signal is blocked on them. */

typedef struct tapio_work tapio_work;
/* Runs on a pool thread. It may call tapio_call_soon_threadsafe and
 * nothing else of tapio's. */
typedef void (*tapio_work_fn)(void *ud);
/* Runs on the loop's thread, from the loop, after work returned: status
 * 0, or TAPIO_ECANCELED when the job was cancelled while it ran, or when
 * the loop is freed (then work may not have run at all). */
typedef void (*tapio_work_done_fn)(void *ud, int status);

/* The pool's size: at most this many jobs run at once (the rest wait, in
 * the order queued). 1..128; TAPIO_EINVAL outside, TAPIO_EBUSY once the
 * loop has had a job. Unset, it is the environment variable
 * TAPIO_THREADPOOL_SIZE (read at the first job; brought within 1..128;
 * not a number: ignored), else 4. */
int tapio_loop_set_threadpool_size(tapio_loop *loop, int size);
/* Queues work(ud) for a pool thread, then done(ud, status) on the loop's
 * thread. Jobs start in the order queued; with more than one thread they
 * may finish in any order, each done as the loop sees its work's end,
 * after the timers due then: a loop waiting in run wakes for it (a host's
 * polled descriptor turns readable). done is called exactly once, unless tapio_work_cancel
 * answered 1, and never from inside this call: free ud there. When out
 * is not NULL, *out is a handle the caller gives back with
 * tapio_work_release (from inside done too).
 * TAPIO_EINVAL for a NULL loop, work or done; TAPIO_ECLOSED while the loop
 * is freed; TAPIO_EVIRTUAL on a virtual-clock loop (its time would not
 * wait for the thread); TAPIO_EAGAIN or TAPIO_ENOMEM when the pool has no
 * thread and none can be started. */
int tapio_queue_work(tapio_loop *loop, tapio_work_fn work,
                     tapio_work_done_fn done, void *ud, tapio_work **out);
/* 1: the job had not started and is dropped: work and done are never
 * called, and ud is the caller's again at once. 0: its work has started
 * (or ended) and cannot be stopped: done still comes, with
 * TAPIO_ECANCELED, after work returns. TAPIO_EALREADY when cancelled
 * before or once its done has run; TAPIO_EINVAL for NULL. */
int tapio_work_cancel(tapio_work *w);
/* Gives back the handle stored by tapio_queue_work. A second release is
 * harmless while the job is pending, undefined after. */
void tapio_work_release(tapio_work *w);

/* ---- Watching descriptors and signals ---------------------------------- */

/* asyncio's add_reader and add_writer: fn(ud) runs from the loop each
 * iteration fd is readable (or writable), until removed; level-triggered,
 * as asyncio's (read what is there, or it runs again). fd stays the
 * caller's: tapio never reads, writes or closes it. A reader and a writer
 * are separate watches of one fd; adding one that exists replaces its fn
 * and ud. Errors: TAPIO_EINVAL (NULL, fd < 0), TAPIO_EBADF (fd is not
 * open), TAPIO_EPERM (a regular file, a directory, a device that cannot
 * poll such as /dev/null: epoll cannot watch them, asyncio's
 * PermissionError), TAPIO_EBUSY (a transport or server
 * of this loop owns fd: asyncio's "File descriptor is used by
 * transport"), TAPIO_ECLOSED (the loop is being freed), TAPIO_EVIRTUAL
 * (a virtual clock's loop: Testing). Removing a watch
 * from inside any callback, its own included, is safe and takes effect at
 * once: a removed watch is not called again, also when its event is
 * already due in this iteration. Remove the watch before closing fd (a
 * new descriptor can get its number). A watch is of the file it was
 * added for: one whose descriptor was closed is never called for
 * another file that gets the number (a pipe or socket opened later, a
 * transport's): when its number is ready again it stops instead, and
 * the exception handler gets TAPIO_EBADF ("descriptor N was closed while
 * watched ..."). A file is told by its device and inode, which the
 * anonymous kinds share (eventfd, timerfd, signalfd, epoll: one inode
 * for all), as two opens of one FIFO do: for those the check cannot
 * tell. Adding a watch for the number replaces it and watches the new
 * file (asyncio 3.13's selector keeps the closed one's place and never
 * sees the new one). A descriptor closed before the loop has polled
 * since its watch was added stops every watch of its number at once,
 * with the same report. A stopped watch stays until removed (or until
 * the number is watched again).
 * tapio_loop_free removes the watches left; their ud stays the
 * caller's. */
int tapio_add_reader(tapio_loop *loop, int fd, tapio_call_fn fn, void *ud);
int tapio_add_writer(tapio_loop *loop, int fd, tapio_call_fn fn, void *ud);
/* 1 if fd was watched (the watch is gone), 0 if not; TAPIO_EINVAL for a
 * NULL loop. */
int tapio_remove_reader(tapio_loop *loop, int fd);
int tapio_remove_writer(tapio_loop *loop, int fd);

/* ---- Operations on a caller's socket: asyncio's loop.sock_* ------------
 * For sockets no transport covers (raw and ICMP sockets, netlink, a
 * socket another library made): one operation on fd, a socket the caller
 * owns and keeps (tapio never closes it), completed once through cb, from
 * the loop. Each tries its system call first and waits for readiness only
 * when the socket has nothing (or no room) for now, as asyncio's does;
 * EINTR is retried; a send never raises SIGPIPE (a closed peer is
 * TAPIO_EPIPE). The completion gets the status (0 or the error), n (the
 * bytes received or sent, also on error: a sendall's bytes sent before
 * it) and, for recvfrom and accept, the peer's socket address (borrowed
 * for the call; addrlen 0 when there is none, as an unnamed Unix peer).
 * Operations of one direction on one fd (receiving and accepting;
 * sending and connecting) complete in the order they were made: only the
 * first of them tries and waits, the next tries once it is done (two
 * tasks in sock_recv on one UDP socket each get a datagram, where
 * asyncio's second add_reader silences the first). A receive waits
 * without reading: cancelling it (tapio_cancel_pending(loop, cb_ud))
 * stops its watch at once and loses no byte, and its completion is never
 * called (what a send sent stays sent). tapio_loop_free ends the
 * operations left with TAPIO_ECANCELED. A completion may close fd, or
 * start another operation on it; closing fd while an operation waits on
 * it (cancel it first) ends that operation with TAPIO_EBADF when the loop
 * sees it before its next poll, or else once the file that got the number
 * is watched by the loop and ready (a transport's, an add_reader's) or is
 * given a tapio_sock_* operation (at once: that one never waits behind
 * it); with nothing of the loop on the number it waits until cancelled.
 * A file is told by its device and inode: the operation never reads or
 * writes another file.
 * Errors of the call, none of which calls cb: TAPIO_EINVAL (NULL, fd < 0,
 * a NULL buffer with a length), TAPIO_EBADF (fd is not open), TAPIO_EPERM
 * (a regular file, a directory, a device that cannot poll), TAPIO_EBUSY (a transport or server of
 * the loop owns fd, as add_reader refuses it), TAPIO_ECLOSED (the loop is
 * being freed), TAPIO_EVIRTUAL (a loop on a virtual clock), TAPIO_ENOMEM.
 * A socket that is not non-blocking is used as one by recv, recvfrom,
 * sendall and sendto (MSG_DONTWAIT); connect, accept and sendfile cannot
 * and refuse it: TAPIO_EINVAL, and tapio_loop_error_message says so.
 * tapio_sock_sendfile (with tapio_transport_sendfile, below) is one of
 * them, a send. */
typedef void (*tapio_sock_fn)(void *ud, int status, size_t n,
                              const void *addr, size_t addrlen);
/* accept's: the new socket (non-blocking, close-on-exec, the caller's to
 * close), or -1 with an error. */
typedef void (*tapio_sock_accept_fn)(void *ud, int status, int fd,
                                     const void *addr, size_t addrlen);
/* sock_recv / sock_recv_into: at most len bytes into buf, which must
 * stay valid until the completion (or the cancel); n 0 is the end of a
 * stream (or an empty datagram). len 0 completes with n 0 at once (from
 * the loop), taking nothing, as Python's recv(0) (so asyncio's sock_recv)
 * does; buf may then be NULL. */
int tapio_sock_recv(tapio_loop *loop, int fd, void *buf, size_t len,
                    tapio_sock_fn cb, void *cb_ud);
/* sock_recvfrom / sock_recvfrom_into: one datagram (the rest of a longer
 * one is dropped, as recvfrom(2) does) and the address it came from. */
int tapio_sock_recvfrom(tapio_loop *loop, int fd, void *buf, size_t len,
                        tapio_sock_fn cb, void *cb_ud);
/* sock_sendall: every byte of data, or an error; data is borrowed for the
 * call only (what must wait is copied). Out of memory for that copy: the
 * call's TAPIO_ENOMEM when nothing was sent, else the completion's, with
 * n the bytes sent. */
int tapio_sock_sendall(tapio_loop *loop, int fd, const void *data,
                       size_t len, tapio_sock_fn cb, void *cb_ud);
/* sock_sendto: one datagram to addr (a socket address, see
 * tapio_addr_parse), n the bytes sent; data and addr are borrowed for
 * the call only. */
int tapio_sock_sendto(tapio_loop *loop, int fd, const void *data,
                      size_t len, const void *addr, size_t addrlen,
                      tapio_sock_fn cb, void *cb_ud);
/* sock_connect: connects fd to addr (numeric: no lookup), status 0 once
 * connected or the error (TAPIO_ECONNREFUSED, ...), read from SO_ERROR
 * after the wait; a Unix socket whose listener's backlog is full fails
 * at once with TAPIO_EAGAIN (the kernel gives no readiness to wait for).
 * A cancelled connect may still go on in the kernel: the socket is the
 * caller's to close. */
int tapio_sock_connect(tapio_loop *loop, int fd, const void *addr,
                       size_t addrlen, tapio_sock_fn cb, void *cb_ud);
/* sock_accept: the next connection of the listening socket fd. */
int tapio_sock_accept(tapio_loop *loop, int fd, tapio_sock_accept_fn cb,
                      void *cb_ud);

/* asyncio's add_signal_handler, on any loop of any thread: fn(ud) runs
 * from the loop, on its thread, after signal sig arrives; adding a
 * handler sig has on this loop replaces its fn and ud. The same signal
 * arriving again before the call is one call (as the OS itself merges a
 * pending signal); signals caught together are called in signal-number
 * order. A waiting loop wakes for it, and a polled loop's descriptor
 * (tapio_loop_backend_fd) turns readable.
 * What the OS forces: a signal's disposition is the process's. While
 * any loop watches sig, tapio's handler is sig's disposition, and the
 * disposition it found (SIG_DFL, SIG_IGN or another handler, which does
 * not run meanwhile) is put back when the last loop stops watching; a
 * program that sets sig's disposition itself in between takes sig from
 * every loop. tapio's handler has SA_RESTART (a host's interrupted system
 * calls go on) and does only async-signal-safe work (it marks sig and
 * writes to each watching loop's wakeup eventfd). The kernel gives a process's signal to any one thread that
 * does not block it: tapio's handler, in whichever thread that is, passes
 * it to every loop watching sig, so when two loops (in one thread or two)
 * watch one signal, both are called. A thread blocking sig does not stop
 * its loop from hearing of it, unless every thread blocks it: then the
 * signal stays pending in the kernel. A signal sent to one thread
 * (pthread_kill) reaches every watching loop too. Not fork-safe: a child
 * of fork() must not use its parent's loops.
 * Errors: TAPIO_EINVAL for NULL, a sig outside 1..64 (the OS's
 * signals), SIGCHLD (child exits are the subprocess watcher's), SIGKILL
 * and SIGSTOP (they cannot be caught), SIGSEGV, SIGBUS, SIGFPE and SIGILL
 * (a fault happens again as soon as a handler returns, and the callback
 * runs later) or a signal the C library keeps for itself (glibc's 32 and
 * 33), each with its words in tapio_loop_error_message
 * ("add_signal_handler: signal 17 is the subprocess watcher's
 * (SIGCHLD)"); TAPIO_ECLOSED while the loop is being freed;
 * TAPIO_EVIRTUAL on a virtual-clock loop (a signal comes on real time:
 * see "Testing").
 * tapio_loop_free removes the handlers left. */
int tapio_add_signal_handler(tapio_loop *loop, int sig, tapio_call_fn fn,
                             void *ud);
/* 1 if sig had a handler on this loop (it is gone, and a caught sig not
 * yet called is dropped), 0 if not; TAPIO_EINVAL for a NULL loop or a sig
 * outside 1..64. Safe from inside any callback. */
int tapio_remove_signal_handler(tapio_loop *loop, int sig);

/* ---- Options ----------------------------------------------------------- */

/* Keyword options for the create_* functions, like asyncio's keyword
 * arguments. Each create call takes the options below and no other: given
 * one it does not take, it returns TAPIO_EINVAL. The set functions return
 * TAPIO_EINVAL for a name no call takes, or a value of the wrong type or
 * range; TAPIO_ENOENT never.
 *   create_connection: "local_host" (str), "local_port" (int),
 *     "local_flowinfo" (int 0..1048575: the flowinfo of local_host's
 *     IPv6 addresses; a scope id is the host's "%scope"),
 *     "family" (int: 0 any, 4, 6), "sock" (int: an already connected
 *     descriptor; host and port must then be NULL/0), "nodelay" (bool,
 *     default 1: TCP_NODELAY as asyncio sets it),
 *     "happy_eyeballs_delay" (double, seconds: start the next address
 *     after this long while the previous still tries, RFC 8305; not set,
 *     asyncio's None: one address after the other), "interleave" (int:
 *     reorder the addresses by family, this many of the first family
 *     first; 0 none; not set: 1 when happy_eyeballs_delay is set, as
 *     asyncio), "proto" (int: the IP protocol of the socket, 0 the
 *     type's own; as getaddrinfo, a stream one: 6 TCP, 132 SCTP; another
 *     is the call's TAPIO_EAI_SOCKTYPE), "flags" (int: TAPIO_AI_* flags
 *     OR-ed into the lookups of host and local_host)
 *   connect_accepted_socket: "nodelay"
 *   create_server: "backlog" (int, default 100), "reuse_address" (bool,
 *     default 1), "reuse_port" (bool, default 0), "start_serving" (bool,
 *     default 1), "family" (int), "nodelay" (bool, default 1),
 *     "keep_alive" (bool, default 0: SO_KEEPALIVE on every connection
 *     accepted, as asyncio 3.13; also with "sock"), "flags" (int:
 *     TAPIO_AI_* flags of the hosts' lookups, default TAPIO_AI_PASSIVE as
 *     asyncio's: without it, no host is loopback rather than every
 *     interface),
 *     "sock" (int: an already bound socket, listened on with "backlog"
 *     as asyncio's server does; host NULL, port 0)
 *   create_unix_server: "backlog", "start_serving", "cleanup_socket"
 *     (bool, default 1: unlink the path when the server closes), "sock"
 *     (int: a bound Unix stream socket, listened on as create_server's,
 *     path NULL; its file stays the caller's: the server's close leaves
 *     it)
 *   create_unix_connection: "sock" (int: a connected Unix stream socket,
 *     path NULL)
 *   create_datagram_endpoint: "local_host" (str) and "local_port" (int):
 *     bind there; "remote_host" (str, a name or literal) and "remote_port"
 *     (int): connect there (a host "<broadcast>" is 255.255.255.255, as
 *     in tapio_addr_parse); "local_flowinfo", "remote_flowinfo" (int
 *     0..1048575: the flowinfo of their IPv6 addresses); "local_path", "remote_path" (str): the same
 *     for a Unix datagram socket (a socket file at local_path is removed
 *     first, stale or a live endpoint's, as asyncio does; the file is
 *     left at close, as asyncio leaves it); "family" (int: 0, 4, 6), "reuse_port" (bool),
 *     "allow_broadcast" (bool: SO_BROADCAST, and remote_host is then not
 *     connected but only the default destination), "sock" (int: a
 *     datagram socket, with no other option), "proto" (int: as
 *     create_connection's, a datagram one: 17 UDP, 136 UDP-Lite),
 *     "flags" (int: as create_connection's, for local_host and
 *     remote_host). SO_REUSEADDR is never set
 *     (asyncio refuses reuse_address for UDP: another process could take
 *     the port's datagrams).
 *   connect_read_pipe, connect_write_pipe: none
 *   subprocess_exec, subprocess_shell: "stdin", "stdout", "stderr" (int:
 *     a TAPIO_STDIO_* value or a descriptor the child gets as its own 0,
 *     1 or 2; default TAPIO_STDIO_PIPE), "cwd" (str), "env" (str list of
 *     "NAME=value": the child's whole environment, Python's env=),
 *     "extend_env" (bool, default 0: with 1, env's entries are added to
 *     the parent's environment, replacing those of the same name),
 *     "start_new_session" (bool, default 0: setsid() in the child),
 *     "process_group" (int: 0, the child leads a new process group
 *     numbered by its pid; n, it joins group n: Python 3.11's
 *     process_group; with "start_new_session" TAPIO_EINVAL, a session
 *     leader cannot change its group; a group that does not exist is the
 *     call's TAPIO_EPERM, tapio_loop_error_message naming the group),
 *     "pass_fds" (int list: descriptors the child keeps, at their
 *     numbers), "close_fds" (bool, default 1: the child gets no other
 *     descriptor of the parent's than 0, 1, 2 and pass_fds, even one
 *     without close-on-exec),
 *     "executable" (str: the file run instead of the program, which
 *     stays the child's argv[0]; found as the program is, PATH and cwd;
 *     subprocess_shell: the shell instead of /bin/sh, also its argv[0],
 *     as Python's), "pipesize" (int, bytes: F_SETPIPE_SZ on each pipe
 *     made for the child's stdin, stdout, stderr, rounded up by Linux to
 *     a power of two pages; 0 or -1, the default: the system's size; a
 *     size the kernel refuses, above /proc/sys/fs/pipe-max-size without
 *     CAP_SYS_RESOURCE say, is the call's error, TAPIO_EPERM with words
 *     in tapio_loop_error_message; ignored
 *     where there is no F_SETPIPE_SZ, as Python's subprocess does),
 *     Python's user, group, extra_groups and umask: "user" (id: a user
 *     name or uid; setreuid(uid, uid) in the child), "group" (id: a
 *     group name or gid; setregid(gid, gid)), "extra_groups" (id list:
 *     group names or gids; setgroups with them, an empty list none),
 *     "umask" (int 0..0777; -1, the default: the parent's). Each changes
 *     only what it names: "user" alone leaves the child the parent's
 *     group and supplementary groups, as Python's. Names are
 *     looked up in the parent, inside the call, with getpwnam_r and
 *     getgrnam_r: like Python's, these may block on NSS (LDAP, say). A
 *     name that does not exist is TAPIO_EINVAL with words in
 *     tapio_loop_error_message ("subprocess_exec: option 'user': no user
 *     named 'nosuch'"). posix_spawn cannot do these four: a call given
 *     any of them starts its child with fork (only async-signal-safe
 *     calls in the child, the same steps in the same order as
 *     posix_spawn's, then umask, setgroups, setregid, setreuid, as
 *     Python's subprocess; fork copies the parent's page tables, so it
 *     costs more the larger the parent), and a step that fails in the
 *     child (a
 *     setreuid refused, a program the user may not run) is the call's
 *     error as from posix_spawn (TAPIO_EPERM with words naming the id,
 *     TAPIO_EACCES), never a child that exits 127
 * TLS (see "TLS" below), asyncio's keyword arguments:
 *   "ssl" (tapio_options_set_tls): create_connection,
 *     create_unix_connection, connect_accepted_socket, create_server,
 *     create_unix_server; the connection is TLS, a client for the connect
 *     calls, a server for the servers and connect_accepted_socket. The
 *     context's side must match (TAPIO_EINVAL).
 *   "server_hostname" (str): create_connection, create_unix_connection,
 *     start_tls; the name sent (SNI) and checked against the certificate.
 *     Defaults to create_connection's host; "" sends none, and is
 *     TAPIO_EINVAL for a context that checks names (check_hostname 1 and
 *     verification on), as Python's "check_hostname requires
 *     server_hostname".
 *   "ssl_handshake_timeout", "ssl_shutdown_timeout" (double, seconds,
 *     > 0; defaults 60 and 30): every call that takes "ssl", and start_tls.
 * Given without "ssl", these are TAPIO_EINVAL, as asyncio's ValueError.
 * A descriptor given as "sock" belongs to tapio from the create call on,
 * also when the call fails (whatever the reason): it is closed then;
 * but one a transport or server of the loop owns already is refused
 * with TAPIO_EBUSY and left to it (two owners would close it twice), and
 * so is one a sock_* call of the loop has not ended on (it would take
 * what that call waits for: asyncio refuses the other way round). It
 * must be a stream socket for the stream calls and a datagram socket for
 * create_datagram_endpoint (asyncio's "A Stream Socket was expected",
 * "A datagram socket was expected"): another type is TAPIO_EINVAL, no
 * socket TAPIO_ENOTSOCK, with words in tapio_loop_error_message. The
 * Unix calls' is TAPIO_EINVAL too when of another family (asyncio's "A
 * UNIX Domain Stream Socket was expected") or given with a path
 * ("path and sock can not be specified at the same time").
 * Options are copied by the call they are given to and can be freed
 * afterwards or reused. */
int tapio_options_new(tapio_loop *loop, tapio_options **out);
void tapio_options_free(tapio_options *opts);
int tapio_options_set_int(tapio_options *opts, const char *name,
                          int64_t value);
int tapio_options_set_str(tapio_options *opts, const char *name,
                          const char *value);
/* Append value to a list option ("env": strings, "pass_fds": integers,
 * "extra_groups": either). add_str with value NULL only marks the list
 * given (an empty "env" is an empty environment, an empty "extra_groups"
 * no supplementary group). TAPIO_EINVAL for an option that is not a list
 * of that type, or an integer out of its range. */
int tapio_options_add_str(tapio_options *opts, const char *name,
                          const char *value);
int tapio_options_add_int(tapio_options *opts, const char *name,
                          int64_t value);
/* A number (TAPIO_OPTION_DOUBLE); NaN is TAPIO_EINVAL. set_int works for
 * these options too. */
int tapio_options_set_double(tapio_options *opts, const char *name,
                             double value);
/* The "ssl" option (TAPIO_OPTION_TLS): a TLS context (see TLS below),
 * which the options hold a reference to until freed or set again; NULL
 * unsets it. */
int tapio_options_set_tls(tapio_options *opts, const char *name,
                          tapio_tls_context *ctx);

/* The calls that take options, for the queries below. Like every enum
 * here, the values are the ABI's and never change; 7 is unassigned. */
enum tapio_call {
  TAPIO_CALL_CREATE_CONNECTION = 1,
  TAPIO_CALL_CREATE_UNIX_CONNECTION = 2,
  TAPIO_CALL_CONNECT_ACCEPTED_SOCKET = 3,
  TAPIO_CALL_CREATE_SERVER = 4,
  TAPIO_CALL_CREATE_UNIX_SERVER = 5,
  TAPIO_CALL_CREATE_DATAGRAM_ENDPOINT = 6,
  TAPIO_CALL_CONNECT_READ_PIPE = 8,
  TAPIO_CALL_CONNECT_WRITE_PIPE = 9,
  TAPIO_CALL_SUBPROCESS_EXEC = 10,
  TAPIO_CALL_SUBPROCESS_SHELL = 11,
  TAPIO_CALL_START_TLS = 12
};

/* How an option's value is given (fixed values, as the calls'). */
enum tapio_option_type {
  TAPIO_OPTION_INT = 1,  /* tapio_options_set_int, within min..max */
  TAPIO_OPTION_BOOL = 2, /* tapio_options_set_int, 0 or 1 */
  TAPIO_OPTION_STR = 3,  /* tapio_options_set_str */
  TAPIO_OPTION_DOUBLE = 4, /* tapio_options_set_double, within min..max */
  TAPIO_OPTION_STR_LIST = 5, /* tapio_options_add_str, once per entry */
  TAPIO_OPTION_INT_LIST = 6, /* tapio_options_add_int, within min..max */
  TAPIO_OPTION_TLS = 7,  /* tapio_options_set_tls */
  TAPIO_OPTION_ID = 8,   /* a user or group: tapio_options_set_str with a
                            name, or tapio_options_set_int with a number
                            within min..max */
  TAPIO_OPTION_ID_LIST = 9 /* groups: tapio_options_add_str (a name) or
                              tapio_options_add_int (a number), once per
                              entry */
};

/* The core's one table of options, for bindings (which keep none of their
 * own): whether call (enum tapio_call) takes option name, and then its
 * type, the bounds of a number (0, 0 for strings) and, in words, what it
 * accepts ("integer 0..65535", "0, 4 or 6", "boolean", "string"; static
 * storage, for messages that read "<expects> expected"). Any out-pointer
 * may be NULL. TAPIO_ENOENT if the call
 * takes no such option, TAPIO_EINVAL for an unknown call or NULL name. */
int tapio_option_info(int call, const char *name, int *type, int64_t *min,
                      int64_t *max, const char **expects);
/* The name of the i-th option (from 0) call takes; NULL past the last. */
const char *tapio_option_name(int call, size_t i);

/* ---- Protocols --------------------------------------------------------- */

/* A protocol is a table of callbacks the user fills and tapio reads, and
 * the user pointer given with it (every callback's first argument). Any
 * callback may be NULL, meaning the reference's default. The table is not
 * copied: it must outlive every transport that uses it (a static const
 * table is the usual way).
 *
 * Growth rule (the ABI promise): every table starts with `size`, which the
 * user sets to the size of the table as compiled (sizeof(tapio_protocol);
 * ffi.sizeof("tapio_protocol") from LuaJIT). Tables only ever gain
 * callbacks at their end. tapio reads no field at or past `size` and takes
 * a missing one as NULL, so a table compiled against an older header works
 * with a newer library, and one compiled against a newer header works with
 * an older library (its extra callbacks are not called). A size below that
 * of this version's table (0 included) is TAPIO_EINVAL wherever a table is
 * given. Every kind's table begins with the same four callbacks, asyncio's
 * BaseProtocol: connection_made, connection_lost, pause_writing,
 * resume_writing. */

/* The stream protocol (TCP and Unix connections). A protocol with
 * get_buffer set is a BufferedProtocol: data arrives through
 * get_buffer/buffer_updated and data_received is not used.
 *
 * Order (per the reference): connection_made, then data_received* (or
 * get_buffer/buffer_updated pairs), then at most one eof_received, then
 * connection_lost exactly once, last; after it returns the transport is
 * freed. pause_writing/resume_writing come in pairs in between. */
typedef struct tapio_protocol {
  uint32_t size; /* sizeof(tapio_protocol) */
  void (*connection_made)(void *ud, tapio_transport *t);
  /* code 0 and message NULL: closed cleanly (EOF, close, abort). Otherwise
   * the error and a message borrowed for the call. */
  void (*connection_lost)(void *ud, tapio_transport *t, int code,
                          const char *message);
  /* The write buffer went strictly over the high-water mark. */
  void (*pause_writing)(void *ud, tapio_transport *t);
  /* The write buffer drained to the low-water mark or below. */
  void (*resume_writing)(void *ud, tapio_transport *t);
  /* data is borrowed for the call; len > 0. */
  void (*data_received)(void *ud, tapio_transport *t, const char *data,
                        size_t len);
  /* Nonzero keeps the transport half-open; zero (or NULL) closes it. */
  int (*eof_received)(void *ud, tapio_transport *t);
  /* Returns memory to receive into and its size in *len; sizehint is -1
   * (any size). NULL or *len == 0 aborts the transport with EBUFFER. The
   * memory must stay valid until buffer_updated returns. A protocol set
   * from inside get_buffer takes this read: nothing is read into the
   * memory returned, and no buffer_updated follows. */
  void *(*get_buffer)(void *ud, tapio_transport *t, int64_t sizehint,
                      size_t *len);
  /* nbytes (> 0) bytes were written at the start of that memory. */
  void (*buffer_updated)(void *ud, tapio_transport *t, size_t nbytes);
} tapio_protocol;

/* Called by a server once per accepted connection: stores the protocol
 * for it in *proto and *proto_ud. A nonzero return rejects the connection
 * (it is closed and the code goes to the exception handler). */
typedef int (*tapio_protocol_factory)(void *ud, tapio_server *server,
                                      const tapio_protocol **proto,
                                      void **proto_ud);

/* Completion of create_connection and friends: status 0 and the transport
 * (whose connection_made has already run, and which may already be
 * closing), or an error and NULL. */
typedef void (*tapio_connect_fn)(void *ud, int status, tapio_transport *t);
/* Completion of create_server and friends: status 0 and the server (the
 * caller owns one reference: tapio_server_release), or an error and NULL. */
typedef void (*tapio_server_fn)(void *ud, int status, tapio_server *server);
/* Server closed and every connection it accepted is gone. */
typedef void (*tapio_closed_fn)(void *ud, tapio_server *server);

/* ---- Creating transports ----------------------------------------------- */

/* Connects to host (a name or numeric address) and port. A name is
 * looked up without blocking the loop (see tapio_getaddrinfo); its
 * addresses are tried in order, one after the other, or raced with Happy
 * Eyeballs when "happy_eyeballs_delay" is set: the first to connect wins
 * and the others are closed. When every address fails, the status is the
 * error they share (else the first address's) and
 * tapio_loop_error_message says what each answered ("Multiple
 * exceptions: ..."). proto/proto_ud become the transport's protocol. */
int tapio_create_connection(tapio_loop *loop, const char *host, int port,
                            const tapio_protocol *proto, void *proto_ud,
                            const tapio_options *opts, tapio_connect_fn cb,
                            void *cb_ud);
/* Connects to the Unix socket at path. Everywhere tapio takes a Unix
 * path (these calls, create_datagram_endpoint's local_path and
 * remote_path, tapio_addr_unix), "@name" is Linux's abstract name "name"
 * (no file; the NUL Linux puts first is written "@", as ss(8), systemd
 * and Go write it): at most 107 bytes after the "@", none of them NUL;
 * "@" alone is TAPIO_EINVAL. A file whose name starts with "@" is
 * reached as "./@name". The names read back (sockname, peername, a
 * datagram's sender) are written the same way. */
int tapio_create_unix_connection(tapio_loop *loop, const char *path,
                                 const tapio_protocol *proto, void *proto_ud,
                                 const tapio_options *opts,
                                 tapio_connect_fn cb, void *cb_ud);
/* Wraps fd, a connected stream socket (TCP or Unix) the caller hands
 * over: tapio owns it from now on, also on error (one a transport or
 * server of the loop owns, or a pending sock_* call waits on, is
 * TAPIO_EBUSY, left open; a datagram socket is TAPIO_EINVAL, as "sock"
 * above). */
int tapio_connect_accepted_socket(tapio_loop *loop, int fd,
                                  const tapio_protocol *proto, void *proto_ud,
                                  const tapio_options *opts,
                                  tapio_connect_fn cb, void *cb_ud);

/* ---- Pending calls ------------------------------------------------------ */

/* Cancels every pending call (create_connection and friends, create_server
 * and friends, create_datagram_endpoint, connect_read_pipe and
 * connect_write_pipe, subprocess_exec and subprocess_shell, getaddrinfo,
 * getnameinfo, sendfile, the tapio_sock_* operations) whose completion
 * was given cb_ud as its user pointer. Each is freed before this returns
 * (its sockets and pipes closed, its lookup dropped, its child killed and
 * reaped, its protocol never told) and its completion is never called.
 * Returns how many it cancelled: 0 when none was pending (done already,
 * or never made). A "sock" or pipe given to a cancelled call is closed;
 * the socket of a tapio_sock_* operation is not (it stays the
 * caller's). */
int tapio_cancel_pending(tapio_loop *loop, void *cb_ud);
/* Inside a completion callback called with an error: the message that
 * goes with it (e.g. what each address of a failed connect answered, why
 * a TLS handshake failed: "certificate verify failed: certificate has
 * expired", which name did not resolve: "could not resolve 'x':
 * unknown node or service"), or NULL when there is none; borrowed for the
 * callback. Right after a create call (or start_tls, or
 * tapio_add/remove_signal_handler) returned an error at once, why, when its
 * options (or signal) were refused ("create_server: option 'ssl' is a
 * client TLS context; this call needs a server one", "create_connection
 * does not take option 'backlog'", "... option 'server_hostname' is for
 * TLS: give 'ssl' too"), until the next such call or completion. NULL
 * elsewhere. */
const char *tapio_loop_error_message(tapio_loop *loop);

/* ---- Names and socket addresses ---------------------------------------- */

/* A socket address is the OS's own (struct sockaddr_in, sockaddr_in6 or
 * sockaddr_un) passed as bytes and a length: no parsing or formatting on
 * the way through. These two convert; TAPIO_ADDR_MAX bytes hold any. */
enum { TAPIO_ADDR_MAX = 128 };
/* The numeric host (IPv6 with "%scope" when it has one; a Unix path,
 * possibly ""), port (0 for Unix) and TAPIO_AF_* family of addr; any
 * out-pointer may be NULL. TAPIO_ENOBUFS if hostlen is too small (64
 * bytes hold any IP), TAPIO_EAFNOSUPPORT for another family. */
int tapio_addr_format(const void *addr, size_t addrlen, char *host,
                      size_t hostlen, int *port, int *family);
/* Builds the socket address of a numeric host ("127.0.0.1", "::1",
 * "fe80::1%eth0"; "<broadcast>" is 255.255.255.255) and port into
 * addr[*addrlen], setting *addrlen. Never a lookup: a name is
 * TAPIO_EAI_NONAME. TAPIO_EINVAL for a port outside 0..65535,
 * TAPIO_ENOBUFS if *addrlen is too small. */
int tapio_addr_parse(const char *host, int port, void *addr,
                     size_t *addrlen);
/* The socket address of the Unix socket at path ("@name": the abstract
 * name, *addrlen its exact length). TAPIO_EINVAL for "" and "@",
 * TAPIO_ENAMETOOLONG when it does not fit a sockaddr_un. */
int tapio_addr_unix(const char *path, void *addr, size_t *addrlen);

/* Socket types and the flags of tapio_getaddrinfo/tapio_getnameinfo. */
enum tapio_socktype {
  TAPIO_SOCK_STREAM = 1,
  TAPIO_SOCK_DGRAM = 2
};
/* getaddrinfo's flags, with Linux's values, meaning what they mean to
 * glibc's getaddrinfo whether the answer comes from a literal, from
 * /etc/hosts or from DNS. Without TAPIO_AI_ADDRCONFIG (and without
 * TAPIO_AI_PASSIVE), a name looked up for family 0 whose answer has both
 * families keeps only those the host has addresses of (127.0.0.1 and ::1
 * aside), unless that leaves none: a softer AI_ADDRCONFIG that never
 * fails a lookup, tapio's default since it used glibc's resolver. */
enum tapio_ai_flags {
  TAPIO_AI_PASSIVE = 1,      /* no host: the wildcard address to bind */
  TAPIO_AI_CANONNAME = 2,    /* tapio_addrinfo_canonname answers */
  TAPIO_AI_NUMERICHOST = 4,  /* a literal address only: no lookup */
  TAPIO_AI_V4MAPPED = 8,     /* family 6: IPv4 as ::ffff:a.b.c.d if no
                                IPv6 address */
  TAPIO_AI_ALL = 16,         /* with V4MAPPED: IPv6 and mapped IPv4 both */
  TAPIO_AI_ADDRCONFIG = 32,  /* a family only if the host has an address
                                of it (127.0.0.1 and ::1 aside): none
                                then is TAPIO_EAI_NONAME, even for a
                                literal, so a loopback-only host gets
                                nothing for family 4 or 6 */
  TAPIO_AI_NUMERICSERV = 1024 /* a port number only: a service name is
                                 TAPIO_EAI_NONAME */
};
enum tapio_ni_flags {
  TAPIO_NI_NUMERICHOST = 1,
  TAPIO_NI_NUMERICSERV = 2,
  TAPIO_NI_NAMEREQD = 4,     /* an address without a name is an error */
  TAPIO_NI_DGRAM = 8,        /* the service is a UDP one */
  TAPIO_NI_NOFQDN = 16
};

/* A lookup's answer, borrowed for the completion callback. */
typedef struct tapio_addrinfo tapio_addrinfo;
typedef void (*tapio_addrinfo_fn)(void *ud, int status,
                                  const tapio_addrinfo *res);
typedef void (*tapio_nameinfo_fn)(void *ud, int status, const char *host,
                                  const char *service);

/* asyncio's loop.getaddrinfo: host (a name, a literal, or NULL) and
 * service (a port number, a service name, or NULL for port 0) as socket
 * addresses of family (TAPIO_AF_*, 0 any) and type (TAPIO_SOCK_*, 0: one
 * entry of each type per address). A literal is answered without a
 * lookup; a name goes to the loop's resolver (c-ares: /etc/hosts first,
 * then DNS as /etc/resolv.conf says, search domains included) and never
 * blocks the loop. cb gets status 0 and at least one entry, or an error
 * (TAPIO_EAI_NONAME: no such name; TAPIO_EAI_AGAIN: no server answered).
 * Both host and service NULL is TAPIO_EINVAL. */
int tapio_getaddrinfo(tapio_loop *loop, const char *host,
                      const char *service, int family, int type, int flags,
                      tapio_addrinfo_fn cb, void *ud);
/* The same with asyncio's proto: an IP protocol number (0..255, 0 the
 * type's own) that every entry carries. As getaddrinfo, a stream type
 * takes 6 (TCP) or 132 (SCTP), a datagram one 17 (UDP) or 136 (UDP-Lite),
 * and type 0 gets the entries of the protocol's type only; another pair
 * is TAPIO_EAI_SOCKTYPE at once. */
int tapio_getaddrinfo_proto(tapio_loop *loop, const char *host,
                            const char *service, int family, int type,
                            int proto, int flags, tapio_addrinfo_fn cb,
                            void *ud);
size_t tapio_addrinfo_count(const tapio_addrinfo *res);
/* Entry i: its socket address (borrowed like res), TAPIO_AF_* family,
 * TAPIO_SOCK_* type and IP protocol number (the one asked for, else 6
 * TCP, 17 UDP). Any
 * out-pointer may be NULL; TAPIO_EINVAL past the last entry. */
int tapio_addrinfo_get(const tapio_addrinfo *res, size_t i,
                       const void **addr, size_t *addrlen, int *family,
                       int *type, int *protocol);
/* With TAPIO_AI_CANONNAME, the canonical name; else NULL. */
const char *tapio_addrinfo_canonname(const tapio_addrinfo *res);
/* asyncio's loop.getnameinfo: the host name and service of addr
 * (TAPIO_NI_* flags), from /etc/hosts or a reverse DNS lookup. */
int tapio_getnameinfo(tapio_loop *loop, const void *addr, size_t addrlen,
                      int flags, tapio_nameinfo_fn cb, void *ud);
/* Points the loop's resolver at other DNS servers: "host[:port],..."
 * (IPv6 as "[::1]:53"), or NULL for /etc/resolv.conf's (the default,
 * unless the environment variable TAPIO_DNS_SERVERS names some: one that
 * does not parse fails every lookup with TAPIO_EINVAL); timeout
 * is the seconds per try and tries the attempts per server, 0 for the
 * system's. /etc/hosts is still read first. TAPIO_EINVAL for a server
 * list that does not parse, TAPIO_EBUSY while lookups are in flight
 * (cancelled ones do not count: remaking the resolver drops them). */
int tapio_loop_set_resolver(tapio_loop *loop, const char *servers,
                            double timeout, int tries);

/* ---- Transport --------------------------------------------------------- */

/* Every transport is a tapio_transport of one kind. A function a kind does
 * not have (write on a read-only transport, say) returns TAPIO_ENOTSUP;
 * one that returns a size or a flag answers 0. The kinds' values are
 * fixed (the ABI's); a binding may keep them in a table. */
enum tapio_transport_kind {
  TAPIO_TRANSPORT_STREAM = 1,    /* a TCP or Unix stream socket */
  TAPIO_TRANSPORT_DATAGRAM = 2,  /* a UDP or Unix datagram endpoint */
  TAPIO_TRANSPORT_READ_PIPE = 3, /* asyncio's ReadTransport on a pipe */
  TAPIO_TRANSPORT_WRITE_PIPE = 4,/* asyncio's WriteTransport on a pipe */
  TAPIO_TRANSPORT_SUBPROCESS = 5 /* a child process and its pipes */
};
/* The kind, a TAPIO_TRANSPORT_* value. */
int tapio_transport_get_kind(tapio_transport *t);

/* Closes after flushing the write buffer; connection_lost(0) follows on a
 * later turn. Idempotent. */
int tapio_transport_close(tapio_transport *t);
/* Closes now, dropping buffered output; connection_lost(0) follows. The
 * descriptor is closed as close() closes it: the peer reads an orderly
 * end (TCP's FIN), not a reset, unless input was left unread (then the
 * kernel sends RST); TLS sends no close_notify (the peer sees a
 * truncation). To reset a TCP connection (pass a peer's reset on, say),
 * set SO_LINGER {1, 0} on tapio_transport_get_fd(t), then abort. */
int tapio_transport_abort(tapio_transport *t);
/* Like abort, but connection_lost gets code and message (copied): how a
 * protocol reports its own failure, e.g. a parse error or a binding's
 * callback error. */
int tapio_transport_fail(tapio_transport *t, int code, const char *message);
/* 1 if closing or closed. */
int tapio_transport_is_closing(tapio_transport *t);

/* Ended handles. A transport's memory goes as its connection_lost
 * returns, and a call on it after that is undefined (as free() twice):
 * tapio cannot tell a freed transport from a live one without reading
 * freed memory, and a generation check would need handles that are not
 * pointers. A program (or a binding) that keeps a transport past its end
 * retains it: then, after connection_lost, it is a closed shell whose
 * memory stays until the last tapio_transport_release, its descriptor
 * closed (the peer sees the close as usual), and every call answers as a
 * closed transport does: write, writelines and get_fd, get_sockname
 * TAPIO_ECLOSED; close, abort, fail, write_eof, pause and resume harmless;
 * is_closing 1, is_reading 0; get_peername, the figures (get_stat), the
 * protocol and the loop still answer. Each retain wants one release; the
 * loop's freeing frees its shells too, so release before
 * tapio_loop_free. Retain from connection_made (or any callback before
 * connection_lost returns). Streams and pipes can be retained; a
 * subprocess transport cannot (TAPIO_ENOTSUP: its child and pipes go with
 * it; its pipes' transports can). The other handles are the caller's until given back (a
 * server, a scheduled call's handle, options, the loop): once ended
 * (closed, run, cancelled) and before that they answer the same way;
 * after it, as free() twice. spec/ffi/ended_luajit.lua calls every
 * ended handle through LuaJIT's FFI. */
int tapio_transport_retain(tapio_transport *t);
void tapio_transport_release(tapio_transport *t);

/* Replaces the protocol for the next callback on. TAPIO_EINVAL for a
 * table whose size is wrong (see the growth rule). The old protocol
 * hears nothing more: its user pointer is the caller's again. proto is a
 * table of t's kind, typed as the stream one; for a datagram endpoint or
 * a subprocess, tapio_transport_set_datagram_protocol and
 * tapio_transport_set_subprocess_protocol take their own tables (this
 * one wants them cast, which cffi and LuaJIT refuse to do implicitly)
 * and check the kind: here the size is all tapio can check, and a larger
 * table of another kind (a stream table given to a datagram endpoint) is
 * taken, its callbacks then called with the arguments of the kind's. */
int tapio_transport_set_protocol(tapio_transport *t,
                                 const tapio_protocol *proto, void *ud);
/* The protocol's user pointer, and its table in *proto when not NULL
 * (the table of t's kind, typed as above: cast it back). */
void *tapio_transport_get_protocol(tapio_transport *t,
                                   const tapio_protocol **proto);
tapio_loop *tapio_transport_get_loop(tapio_transport *t);

/* 1 if data is being received (not paused, closing or at EOF). */
int tapio_transport_is_reading(tapio_transport *t);
/* Both idempotent, also on a closing transport. On a stream, a read pipe
 * and a datagram endpoint (TAPIO_ENOTSUP for the others). A datagram
 * endpoint paused inside datagram_received delivers nothing more until
 * resumed, also of a batch of datagrams already read: the rest is held
 * (copied) and delivered first after resume_reading, in order, from the
 * loop (never from inside resume_reading); what arrives meanwhile waits
 * in the socket, which drops what does not fit
 * (TAPIO_STAT_DATAGRAMS_DROPPED); close and abort drop the held ones.
 * Sending, and flushing what is queued, go on while reading is paused. */
int tapio_transport_pause_reading(tapio_transport *t);
int tapio_transport_resume_reading(tapio_transport *t);

/* Writes len bytes (copied if they cannot be sent at once). May call
 * pause_writing before returning. TAPIO_ECLOSED when closing or closed,
 * TAPIO_ESHUTDOWN after write_eof, TAPIO_EBUSY during a sendfile. */
int tapio_transport_write(tapio_transport *t, const void *data, size_t len);
/* Writes n buffers as one (one writev); may call pause_writing, as write.
 * A NULL buffer with a nonzero length is TAPIO_EINVAL, and then nothing
 * of the call is written. */
int tapio_transport_writelines(tapio_transport *t, const void *const *bufs,
                               const size_t *lens, size_t n);
/* 1: write_eof is supported (a socket stream, a write pipe); 0
 * otherwise. */
int tapio_transport_can_write_eof(tapio_transport *t);
/* Shuts down the sending side after the buffer is flushed (and after the
 * file of a sendfile in progress); data may still arrive. On a write pipe,
 * which has no other side, it is close() (as asyncio's). Idempotent.
 * TAPIO_ENOTSUP where can_write_eof answers 0. */
int tapio_transport_write_eof(tapio_transport *t);

/* asyncio's loop.sendfile(transport, file, offset, count, fallback): sends
 * count bytes (0: to the end) of the file open at fd, from offset, over the
 * stream transport t (a TCP or Unix stream, TLS or not, a write pipe, a
 * memory pair), and then calls cb with 0 (or the error) and the bytes sent,
 * from the loop; the file's offset is then offset + sent if any was sent (as
 * asyncio leaves it), however it ends: done, failed, cancelled or the loop
 * freed. What t had buffered goes first. On a plain socket the kernel sends
 * from the file (sendfile(2): no copy through user space); elsewhere (TLS, a
 * pipe, a memory pair, a testing fault), or for a file the kernel cannot
 * send from, it is read (pread, on the loop's thread) and written through t
 * at the pace of its flow control, unless fallback is 0: then TAPIO_ENOTSUP
 * (where it is known at once, from the call). Meanwhile t is the
 * operation's: reading is paused (and resumed after, if it was on), its
 * protocol hears neither pause_writing nor resume_writing (it hears at the
 * end if its view changed) and its writes fail with TAPIO_EBUSY (a write_eof
 * waits for the file's end, where asyncio's shuts the socket under it); a
 * connection lost ends the operation with that error before the protocol's
 * connection_lost, a close() with TAPIO_ECLOSED; a file that cannot be read
 * (not open for reading, a read error) ends it with that error, t given back
 * as it was. The call returns TAPIO_ENOTSUP for a kind that cannot send a
 * file (datagrams, a read pipe, a subprocess's pipes), TAPIO_EBUSY during
 * another sendfile on t, TAPIO_ECLOSED when t is closing (or after
 * write_eof), TAPIO_EBADF for an fd that is not open (TAPIO_EINVAL for a
 * negative one). get_protocol and set_protocol meanwhile answer and change
 * the protocol held aside (it is the transport's again at the end);
 * start_tls is TAPIO_EBUSY. tapio_cancel_pending(loop, cb_ud) stops it (what
 * was sent stays sent; lseek(fd, 0, SEEK_CUR) tells how far it got). */
typedef void (*tapio_sendfile_fn)(void *ud, int status, uint64_t sent);
int tapio_transport_sendfile(tapio_transport *t, int fd, uint64_t offset,
                             uint64_t count, int fallback,
                             tapio_sendfile_fn cb, void *cb_ud);
/* asyncio's loop.sock_sendfile(sock, file, offset, count, fallback): the
 * same sending on fd, a stream socket of the caller's, as one of the
 * tapio_sock_* operations (see them: its place among fd's sends and
 * connects, the cancel, the closed fd, the loop freed, the errors of the
 * call). sendfile(2) while the socket takes it, waiting for room, a turn
 * of 16 MiB at most per wake-up; a file the kernel cannot send from (not
 * a regular one) is read (pread, on the loop's thread) and sent, unless
 * fallback is 0: then TAPIO_ENOTSUP and nothing sent. cb gets 0 (or the
 * error) and the bytes sent, fewer than count when the file ends first.
 * The first try comes from the loop, never inside the call. After it,
 * also when cancelled, the file's offset is offset + sent if any was sent
 * (as asyncio leaves it): lseek(file, 0, SEEK_CUR) tells how far a
 * cancelled one got. The call also refuses a file that is not open
 * (TAPIO_EBADF), a negative one, and an fd that is not a stream socket
 * (TAPIO_EINVAL; tapio_loop_error_message says why). */
int tapio_sock_sendfile(tapio_loop *loop, int fd, int file, uint64_t offset,
                        uint64_t count, int fallback, tapio_sendfile_fn cb,
                        void *cb_ud);

/* The bytes the write buffer holds, not yet sent (each queued datagram
 * counts its size plus 8); the low and high marks it pauses and resumes
 * writing at (see set_write_buffer_limits). */
size_t tapio_transport_get_write_buffer_size(tapio_transport *t);
void tapio_transport_get_write_buffer_limits(tapio_transport *t,
                                             size_t *low, size_t *high);
/* -1 means "not given" (asyncio's None): high defaults to 64 KiB, or 4 *
 * low when only low is given (at most INT64_MAX); low defaults to high /
 * 4. TAPIO_EINVAL for other negatives or low > high. May call
 * pause_writing. */
int tapio_transport_set_write_buffer_limits(tapio_transport *t, int64_t high,
                                            int64_t low);
/* The limits set_write_buffer_limits would set, without a transport (a
 * binding's closed transport keeps its own): *high and *low, each -1 for
 * "not given", become them by the rule above. TAPIO_EINVAL, both left as
 * they were, where set would refuse them. */
int tapio_write_buffer_limits(int64_t *high, int64_t *low);

/* Address families reported by the address queries. */
enum tapio_family {
  TAPIO_AF_UNSPEC = 0,
  TAPIO_AF_UNIX = 1,
  TAPIO_AF_INET = 4,
  TAPIO_AF_INET6 = 6
};
/* get_extra_info("peername"/"sockname"): the numeric host (or the Unix
 * path, possibly "") into host[hostlen], the port (0 for Unix) and the
 * family. TAPIO_ENOBUFS if hostlen is too small; 64 bytes hold any IP.
 * Any out-pointer may be NULL (host NULL with hostlen 0: the port only).
 * Both answer from connection_made to the end of connection_lost, also
 * after a reset: the peer's address is kept, as asyncio keeps it. */
int tapio_transport_get_peername(tapio_transport *t, char *host,
                                 size_t hostlen, int *port, int *family);
int tapio_transport_get_sockname(tapio_transport *t, char *host,
                                 size_t hostlen, int *port, int *family);
/* The same two as socket addresses (IPv6's flowinfo and scope id
 * included) into addr[*addrlen], setting *addrlen; TAPIO_ADDR_MAX bytes
 * hold any. TAPIO_ENOBUFS if *addrlen is too small. */
int tapio_transport_get_peeraddr(tapio_transport *t, void *addr,
                                 size_t *addrlen);
int tapio_transport_get_sockaddr(tapio_transport *t, void *addr,
                                 size_t *addrlen);
/* get_extra_info("socket") or ("pipe"): the descriptor (still owned by
 * tapio), TAPIO_ENOTSUP for a subprocess, TAPIO_EINVAL for NULL. */
int tapio_transport_get_fd(tapio_transport *t);

/* Cheap figures for diagnosing a slow peer. */
enum tapio_stat {
  TAPIO_STAT_BYTES_RECEIVED = 0,
  TAPIO_STAT_BYTES_SENT = 1,
  TAPIO_STAT_WRITE_BUFFER_SIZE = 2,
  TAPIO_STAT_WRITE_BUFFER_PEAK = 3,   /* the largest it has been */
  TAPIO_STAT_WRITE_PAUSED_USEC = 4,   /* time spent with writing paused */
  TAPIO_STAT_READ_PAUSED_USEC = 5,    /* time spent with reading paused */
  TAPIO_STAT_WRITE_PAUSES = 6,        /* pause_writing calls */
  TAPIO_STAT_DATAGRAMS_DROPPED = 7    /* see below */
};
/* One figure; times include a pause still going on (one going on at the
 * end counts until the end). 0 for unknown. Answers until
 * connection_lost returns: read there (or from a retained shell later),
 * they are the connection's totals (a proxy's per-connection log). On TLS the bytes
 * and write buffer figures are plain bytes (TAPIO_TLS_NUM_WIRE_* count
 * ciphertext).
 * TAPIO_STAT_DATAGRAMS_DROPPED: the datagrams the kernel dropped for a
 * datagram endpoint because its socket's receive queue was full (reading
 * paused, or slower than the senders): Linux's count for the socket
 * (getsockopt SO_MEMINFO, SK_MEMINFO_DROPS; SO_RXQ_OVFL tells the same
 * count but in every datagram's ancillary data, a cost per datagram,
 * where this one is asked only when wanted). It is the kernel's 32-bit
 * counter (it wraps) and counts the socket's other drops too (a bad
 * checksum, a socket filter's). A Unix datagram socket never drops (its
 * sender waits, or hears EAGAIN): 0. UINT64_MAX where the OS cannot tell,
 * and for every other kind of transport (a stream loses nothing). A
 * virtual loop's endpoint counts what arrived while reading was paused
 * and did not fit its receive buffer (212992 bytes, Linux's default). */
uint64_t tapio_transport_get_stat(tapio_transport *t, int which);

/* ---- Datagram endpoints ------------------------------------------------ */

/* The datagram protocol (UDP and Unix datagram endpoints), asyncio's
 * DatagramProtocol; the growth rule above applies. Order: connection_made,
 * then datagram_received and error_received in any number, then
 * connection_lost exactly once, last. pause_writing/resume_writing come in
 * pairs in between, as for streams. */
typedef struct tapio_datagram_protocol {
  uint32_t size; /* sizeof(tapio_datagram_protocol) */
  void (*connection_made)(void *ud, tapio_transport *t);
  void (*connection_lost)(void *ud, tapio_transport *t, int code,
                          const char *message);
  void (*pause_writing)(void *ud, tapio_transport *t);
  void (*resume_writing)(void *ud, tapio_transport *t);
  /* One datagram: data (len may be 0: an empty datagram) and the
   * sender's socket address, both borrowed for the call; addrlen 0 for
   * an unnamed Unix peer. */
  void (*datagram_received)(void *ud, tapio_transport *t, const char *data,
                            size_t len, const void *addr, size_t addrlen);
  /* A send or receive failed and the endpoint stays open: an ICMP error
   * (TAPIO_ECONNREFUSED for a closed port, TAPIO_EHOSTUNREACH, ...),
   * reported for connected and unconnected endpoints alike (the message
   * names the address sent to when the OS says it), or TAPIO_EMSGSIZE
   * for a datagram larger than tapio receives (65536 bytes; 262144 on a
   * Unix socket), which is dropped, never truncated. */
  void (*error_received)(void *ud, tapio_transport *t, int code,
                         const char *message);
} tapio_datagram_protocol;

/* Makes a datagram endpoint (see the options above): binds, connects,
 * or wraps "sock". Names are looked up without blocking the loop; with
 * both a local and a remote address, a family they share is used. cb gets
 * the transport (after its connection_made) or the error. asyncio's
 * checks are made at the call, TAPIO_EINVAL with tapio_loop_error_message
 * saying which options and why: neither an address, a "family" nor a
 * "sock" ("unexpected address family"); "sock" with any option that
 * makes a socket, each named; a Unix path with an IP address or a
 * "family"; "remote_host" without "remote_port" or the other way; literal
 * local and remote hosts of different families. */
int tapio_create_datagram_endpoint(tapio_loop *loop,
                                   const tapio_datagram_protocol *proto,
                                   void *proto_ud, const tapio_options *opts,
                                   tapio_connect_fn cb, void *cb_ud);
/* Sends one datagram of len bytes (0 allowed) to addr (a socket address,
 * see tapio_addr_parse), or, with addr NULL, to the connected peer (or the
 * default destination "remote_host" named). Never blocks: what the
 * socket refuses for now is copied and sent when it can take it, in
 * order, through the write buffer (its size counts each datagram's bytes
 * plus 8, as asyncio), with pause_writing/resume_writing. Returns 0 also
 * when the send failed for a reason of the network: that goes to
 * error_received. Errors: TAPIO_ECLOSED once closing (the datagram is
 * dropped; after 5 such drops the exception handler hears of it, as
 * asyncio warns), TAPIO_EMSGSIZE too large, TAPIO_EISCONN addr is not the
 * connected peer's, TAPIO_EAFNOSUPPORT addr is of another family,
 * TAPIO_EINVAL no addr on an endpoint with no peer (or a bad one),
 * TAPIO_ENOTSUP not a datagram transport. */
int tapio_transport_sendto(tapio_transport *t, const void *data, size_t len,
                           const void *addr, size_t addrlen);
/* tapio_transport_set_protocol with the datagram table: TAPIO_EINVAL for
 * a transport that is not a datagram endpoint or a table whose size is
 * wrong. */
int tapio_transport_set_datagram_protocol(tapio_transport *t,
                                          const tapio_datagram_protocol *proto,
                                          void *ud);

/* ---- Servers ----------------------------------------------------------- */

/* Listens on port at each of hosts[0..nhosts) (names or numeric; none, or
 * a NULL/"" entry, means every interface, IPv4 and IPv6); an address that
 * two hosts reach is bound once, as asyncio does. Port 0 gives an ephemeral
 * port (see tapio_server_get_address). factory is called once per
 * accepted connection. cb gets the listening server or the error (e.g.
 * TAPIO_EADDRINUSE; tapio_loop_error_message names the address that did
 * not bind, as asyncio's "error while attempting to bind on address"). */
int tapio_create_server(tapio_loop *loop, const char *const *hosts,
                        size_t nhosts, int port, tapio_protocol_factory factory,
                        void *factory_ud, const tapio_options *opts,
                        tapio_server_fn cb, void *cb_ud);
/* Listens on the Unix socket path. A socket file there is removed first,
 * stale or not (a live server's too, as asyncio removes it); another
 * kind of file is TAPIO_EADDRINUSE. An abstract name ("@name", see
 * tapio_create_unix_connection) has no file to remove, before or after;
 * one taken is TAPIO_EADDRINUSE. */
int tapio_create_unix_server(tapio_loop *loop, const char *path,
                             tapio_protocol_factory factory, void *factory_ud,
                             const tapio_options *opts, tapio_server_fn cb,
                             void *cb_ud);

/* Starts accepting (when created with start_serving 0). Idempotent. The
 * sockets listen from the create call on, so connections made before
 * this wait in the backlog (asyncio listens only here and refuses them). */
int tapio_server_start_serving(tapio_server *s);
/* 1 while accepting connections. */
int tapio_server_is_serving(tapio_server *s);
/* Stops listening and closes the listening sockets; accepted connections
 * stay open. Idempotent. A TLS connection accepted before still has the
 * factory called when its handshake ends, after close: keep factory_ud
 * alive until tapio_server_wait_closed's callback (or release the
 * server: after tapio_server_release the factory is never called, and
 * such a connection is aborted when its handshake ends). */
int tapio_server_close(tapio_server *s);
/* close() every connection the server accepted that is still open. */
int tapio_server_close_clients(tapio_server *s);
/* abort() them. */
int tapio_server_abort_clients(tapio_server *s);
/* Connections accepted and not yet lost. */
size_t tapio_server_client_count(tapio_server *s);
/* cb(ud, s) once the server is closed and all its connections are gone;
 * from the loop, also when that is already so. */
int tapio_server_wait_closed(tapio_server *s, tapio_closed_fn cb, void *ud);
/* Failed TLS handshakes of a server's connections. A client whose
 * handshake fails hears why; the server's user hears of it only through
 * this hook (asyncio logs it in debug mode only): fn(ud, s, t, status)
 * once per connection s accepted whose handshake failed, status a
 * TAPIO_ETLS_* code, TAPIO_ECONNRESET (the client closed during it) or
 * TAPIO_ETIMEDOUT (ssl_handshake_timeout). t never reaches the protocol
 * factory and is already closed; it is borrowed for the call, where
 * tapio_transport_get_peername, get_stat and TLS extra info such as the
 * SNI name asked (TAPIO_TLS_INFO_SERVER_HOSTNAME) answer, and
 * tapio_loop_error_message says why ("certificate verify failed: ...").
 * Not called for handshakes cut short by the server's or the loop's own
 * doing (close_clients, abort_clients, the loop's freeing), nor once the
 * server is released; called after tapio_server_close for connections
 * accepted before. fn NULL (the default): no hook. */
typedef void (*tapio_handshake_failed_fn)(void *ud, tapio_server *s,
                                          tapio_transport *t, int status);
int tapio_server_set_handshake_failed(tapio_server *s,
                                      tapio_handshake_failed_fn fn, void *ud);
/* Number of listening sockets (0 once closed). */
size_t tapio_server_socket_count(tapio_server *s);
/* The address of listening socket i, as for tapio_transport_get_sockname. */
int tapio_server_get_address(tapio_server *s, size_t i, char *host,
                             size_t hostlen, int *port, int *family);
/* The descriptor of listening socket i, or a negative code. */
int tapio_server_get_fd(tapio_server *s, size_t i);
tapio_loop *tapio_server_get_loop(tapio_server *s);
/* Gives back the caller's reference; closes the server if still open.
 * Memory goes once its connections are gone too: a second release is
 * harmless until then, undefined after. */
void tapio_server_release(tapio_server *s);

/* ---- Pipes ------------------------------------------------------------- */

/* asyncio's connect_read_pipe and connect_write_pipe: a ReadTransport
 * (kind TAPIO_TRANSPORT_READ_PIPE: pause_reading, resume_reading,
 * is_reading, close) or a WriteTransport (TAPIO_TRANSPORT_WRITE_PIPE:
 * write, writelines, write_eof, flow control, abort, close) on fd, with a
 * stream protocol (tapio_protocol). fd is the read or write end of a pipe
 * or a FIFO, a character device (a pty: EIO from the master once the
 * slave is closed reads as end of file) or a socket; anything else (a
 * regular file, which cannot be watched for readiness) is TAPIO_EINVAL.
 * A character device that cannot poll (/dev/zero, /dev/null: epoll
 * refuses it) is read as always ready, from the loop's queue, until
 * paused or at its end.
 *
 * tapio owns fd from the call on, also when the call fails: it is closed
 * with the transport. fd may be in blocking or non-blocking mode: tapio
 * sets O_NONBLOCK (on the open file description, which dup'ed descriptors
 * and other processes share, a terminal's say) and, if it was not set
 * when given, clears it again before closing fd, so the description is
 * left as it was found; while another pipe transport of the loop still
 * uses the description (fd and a dup of it as a read and a write pipe),
 * it stays non-blocking and the last of them to close clears it.
 *
 * A read pipe calls data_received (or get_buffer/buffer_updated), then at
 * the end of the input eof_received (its result is ignored: a read pipe
 * has nothing left to keep open), then connection_lost. A write pipe on a
 * pipe, FIFO or socket watches for its reader going away: then it ends
 * with connection_lost(TAPIO_EPIPE), also while nothing is being written
 * (on a socket, anything readable counts as the reader gone, as in
 * asyncio). A write to a pipe whose reader is gone is TAPIO_EPIPE, never a
 * SIGPIPE, whatever the process's disposition of SIGPIPE: tapio blocks it
 * in the writing thread around the write and takes back the one the write
 * raised. */
int tapio_connect_read_pipe(tapio_loop *loop, int fd,
                            const tapio_protocol *proto, void *proto_ud,
                            const tapio_options *opts, tapio_connect_fn cb,
                            void *cb_ud);
int tapio_connect_write_pipe(tapio_loop *loop, int fd,
                             const tapio_protocol *proto, void *proto_ud,
                             const tapio_options *opts, tapio_connect_fn cb,
                             void *cb_ud);

/* ---- Subprocesses ------------------------------------------------------ */

/* What a child's stdin, stdout or stderr is (options "stdin", "stdout",
 * "stderr"), besides a descriptor (>= 0) the child gets as it is: the
 * values of Python's subprocess.PIPE, STDOUT and DEVNULL. */
enum tapio_stdio {
  TAPIO_STDIO_PIPE = -1,    /* a pipe to a pipe transport of tapio's */
  TAPIO_STDIO_STDOUT = -2,  /* stderr only: the same as stdout */
  TAPIO_STDIO_DEVNULL = -3, /* /dev/null */
  TAPIO_STDIO_INHERIT = -4  /* the parent's own (asyncio's None) */
};

/* asyncio's SubprocessProtocol. It begins with BaseProtocol's callbacks;
 * pause_writing and resume_writing are the stdin pipe's flow control. t
 * is always the subprocess transport; fd is 0, 1 or 2.
 *
 * Order: connection_made first; then pipe_data_received(1 or 2, ...) and
 * pipe_connection_lost(fd, ...) for each pipe, each fd's data before its
 * pipe_connection_lost; process_exited once the child has exited, which
 * may come before or after the pipes close (a grandchild holding a pipe
 * open does not delay it); connection_lost once, last, after the exit
 * and every pipe closed. */
typedef struct tapio_subprocess_protocol {
  uint32_t size; /* sizeof(tapio_subprocess_protocol) */
  void (*connection_made)(void *ud, tapio_transport *t);
  void (*connection_lost)(void *ud, tapio_transport *t, int code,
                          const char *message);
  void (*pause_writing)(void *ud, tapio_transport *t);
  void (*resume_writing)(void *ud, tapio_transport *t);
  /* data (len > 0) from the child's stdout (fd 1) or stderr (fd 2). */
  void (*pipe_data_received)(void *ud, tapio_transport *t, int fd,
                             const char *data, size_t len);
  /* code 0 and message NULL: closed cleanly; else the error. */
  void (*pipe_connection_lost)(void *ud, tapio_transport *t, int fd,
                               int code, const char *message);
  void (*process_exited)(void *ud, tapio_transport *t);
} tapio_subprocess_protocol;

/* Starts program with the arguments args[0..nargs) that follow argv[0],
 * which is program itself (asyncio's subprocess_exec(program, *args), not
 * execv's argv: nargs 0 runs it with none) and makes a subprocess
 * transport (kind TAPIO_TRANSPORT_SUBPROCESS) for it; cb gets it once
 * connection_made has run. program without a '/' is searched in PATH (the "env" option's PATH
 * when it gives one, else the parent's), a relative one from "cwd".
 *
 * The child is started at once, inside the call, with posix_spawn (a
 * vfork-like clone: no copy of the parent's memory), or with fork when
 * "user", "group", "extra_groups" or "umask" is given (see Options). A
 * program that cannot be started is this call's error, never a child that
 * exits 127: not found (TAPIO_ENOENT), not executable (TAPIO_EACCES, also
 * by the user it is to run as), a bad "cwd" (TAPIO_ENOENT, TAPIO_ENOTDIR,
 * TAPIO_EACCES), a bad descriptor given as stdin/stdout/stderr or in
 * pass_fds (TAPIO_EBADF, tapio_loop_error_message saying which); nothing
 * of it is left
 * behind (descriptors, memory, a child). The child gets the default
 * disposition of every signal and an empty signal mask, whatever the
 * parent's; every descriptor tapio opens is close-on-exec.
 *
 * Its exit is watched with a pidfd on this loop (any loop, any thread; no
 * SIGCHLD handler, nothing process-wide; where pidfds are missing, as
 * under valgrind, a timer polls waitpid with WNOHANG) and reaped by tapio.
 * A process-wide reaper of the application's (waitpid(-1), SIGCHLD set to
 * SIG_IGN) can take the exit status first: the returncode is then 255.
 * The transport's close() kills (SIGKILL) a child still running, not one
 * that has exited (also before the loop noticed), and closes the pipes;
 * connection_lost still waits for the exit and the pipes. abort() (and a
 * transport failing) kills a running child at once and reaps it.
 * tapio_loop_free kills and reaps every child still running (as asyncio
 * does), so no zombie is left. On a virtual loop the child is a fake
 * program's (Testing, "Fake programs"), or TAPIO_EVIRTUAL. */
int tapio_subprocess_exec(tapio_loop *loop, const char *program,
                          const char *const *args, size_t nargs,
                          const tapio_subprocess_protocol *proto,
                          void *proto_ud, const tapio_options *opts,
                          tapio_connect_fn cb, void *cb_ud);
/* The same with program "/bin/sh" (or the "executable" option's shell)
 * and args "-c", command. */
int tapio_subprocess_shell(tapio_loop *loop, const char *command,
                           const tapio_subprocess_protocol *proto,
                           void *proto_ud, const tapio_options *opts,
                           tapio_connect_fn cb, void *cb_ud);

/* tapio_transport_set_protocol with the subprocess table: TAPIO_EINVAL
 * for a transport that is not a subprocess (its pipes' transports
 * included) or a table whose size is wrong. */
int tapio_transport_set_subprocess_protocol(
    tapio_transport *t, const tapio_subprocess_protocol *proto, void *ud);
/* The child's pid (get_extra_info("subprocess")), or a negative code. */
int tapio_subprocess_get_pid(tapio_transport *t);
/* The pipe transport of the child's fd (0: a write pipe to its stdin; 1,
 * 2: read pipes from its stdout, stderr), or NULL when that fd is not a
 * pipe or its pipe transport is gone (after pipe_connection_lost). It is
 * a real pipe transport (pause_reading, write, close, ...) whose protocol
 * is the subprocess transport's: set_protocol on it is TAPIO_EINVAL. */
tapio_transport *tapio_subprocess_get_pipe_transport(tapio_transport *t,
                                                     int fd);
/* 1 and the returncode in *returncode once the child has exited and been
 * reaped: its exit status, or minus the signal number that killed it (as
 * asyncio's); 0 while it runs. */
int tapio_subprocess_get_returncode(tapio_transport *t, int *returncode);
/* Sends signal sig through the child's pidfd, so never to another process
 * that reuses its pid. TAPIO_ESRCH once the child is reaped, TAPIO_EINVAL
 * for a bad signal number. */
int tapio_subprocess_send_signal(tapio_transport *t, int sig);
/* send_signal(SIGTERM) */
int tapio_subprocess_terminate(tapio_transport *t);
/* send_signal(SIGKILL) */
int tapio_subprocess_kill(tapio_transport *t);

/* ---- TLS --------------------------------------------------------------- */

/* TLS (OpenSSL 3) is a layer inside a stream transport, not a kind of its
 * own: a TLS connection is a TAPIO_TRANSPORT_STREAM whose protocol sees
 * plain bytes through the usual callbacks and flow control (write buffer
 * sizes count plain bytes), BufferedProtocol included. Give a context as
 * the "ssl" option of a create call, or upgrade an open connection with
 * tapio_transport_start_tls.
 * - connection_made comes after the handshake. A handshake that fails
 *   reaches the create call's completion (or start_tls's) as a code that
 *   says why (TAPIO_ETLS_*, ECONNRESET when the peer closed during it,
 *   ETIMEDOUT after ssl_handshake_timeout); the protocol then gets neither
 *   connection_made nor connection_lost. A server calls its protocol
 *   factory only once a connection's handshake is done; a failed incoming
 *   handshake reaches only tapio_server_set_handshake_failed's hook (none
 *   by default, as asyncio logs it in debug mode only), the client sees
 *   why.
 * - write_eof is unsupported (can_write_eof answers 0), and eof_received's
 *   answer cannot keep the connection half-open: TLS closes both ways.
 *   eof_received comes for the peer's close_notify and also for a TCP end
 *   without one (a truncation, which asyncio does not report either);
 *   connection_lost gets 0 for both, and TAPIO_TLS_NUM_END, read in
 *   connection_lost, tells them apart.
 * - Memory: besides the write buffer (plain bytes), the layer holds at
 *   most one batch of ciphertext the socket has not taken (about 256 KiB
 *   plus record overhead); it takes no more plain bytes until that is
 *   sent, so the flow control of the write buffer bounds both.
 * - close flushes, sends close_notify, waits for the peer's, then closes
 *   the socket either way, all of it within ssl_shutdown_timeout counted
 *   from close (as asyncio counts it: a peer that stops reading cannot
 *   hold the flush forever); connection_lost gets 0, or ETIMEDOUT when the
 *   flush or the peer's answer did not come in time. Data the peer sends
 *   after its close_notify is discarded, and so is what it sends after
 *   our close() and before its close_notify (the protocol has closed and
 *   reads nothing more; one that wants all the peer sends waits for
 *   eof_received before it closes). How the session ended is TAPIO_TLS_NUM_END.
 * - Renegotiation (TLS 1.2) asked by a server is followed, data in flight
 *   both ways meanwhile. A tapio server refuses a client's (OpenSSL 3's
 *   default) with a no_renegotiation warning, which OpenSSL's clients
 *   answer by ending the connection: connection_lost(TAPIO_ETLS). */

/* A context: what a TLS connection is made from, shareable by any number
 * of connections and loops (its reference count is atomic). Set it up
 * before making connections from it: its settings are read unlocked. */
enum tapio_tls_side {
  TAPIO_TLS_CLIENT = 1,
  TAPIO_TLS_SERVER = 2
};
enum tapio_tls_verify {
  TAPIO_TLS_VERIFY_NONE = 0,     /* ask nothing (servers' default) */
  TAPIO_TLS_VERIFY_OPTIONAL = 1, /* servers: ask clients, check if given */
  TAPIO_TLS_VERIFY_REQUIRED = 2  /* clients' default */
};
enum tapio_tls_version {
  TAPIO_TLS_1_2 = 0x0303,
  TAPIO_TLS_1_3 = 0x0304
};

/* A new context for side in *out (the caller holds one reference).
 * Clients verify the server's certificate against the system's trusted
 * CAs (OpenSSL's default locations, which SSL_CERT_FILE and SSL_CERT_DIR
 * override) and check its host name; servers ask nothing of clients. Both:
 * TLS 1.2 at least, OpenSSL's default ciphers, session tickets, clients
 * resuming sessions (see set_session_cache). */
int tapio_tls_context_new(int side, tapio_tls_context **out);
/* Gives the caller's reference back; connections, servers and options
 * using the context hold their own. */
void tapio_tls_context_release(tapio_tls_context *ctx);
/* TAPIO_TLS_CLIENT or TAPIO_TLS_SERVER; TAPIO_EINVAL for NULL. */
int tapio_tls_context_get_side(tapio_tls_context *ctx);
/* Why the last failing call on ctx failed: OpenSSL's first error, or
 * tapio's words for a call refused before OpenSSL ("a protocol name is 1
 * to 255 bytes"); "" if none; valid until the next call on ctx. */
const char *tapio_tls_context_error(tapio_tls_context *ctx);

/* The certificate chain (leaf first) and its private key from PEM files
 * (keyfile NULL: the key is in certfile); password NULL for a plain key.
 * TAPIO_ENOENT for a missing file, TAPIO_ETLS for a bad one or a key that
 * does not match. */
int tapio_tls_context_load_cert_chain(tapio_tls_context *ctx,
                                      const char *certfile,
                                      const char *keyfile,
                                      const char *password);
/* The same from PEM text in memory. */
int tapio_tls_context_load_cert_chain_pem(tapio_tls_context *ctx,
                                          const char *cert, size_t certlen,
                                          const char *key, size_t keylen,
                                          const char *password);
/* Adds trusted CAs: a PEM file, a hashed directory, PEM text (any may be
 * NULL/0). A client's first call replaces the system store. */
int tapio_tls_context_load_verify_locations(tapio_tls_context *ctx,
                                            const char *cafile,
                                            const char *capath,
                                            const char *pem, size_t pemlen);
/* TAPIO_TLS_VERIFY_*: the explicit way to turn verification off. A
 * client with VERIFY_NONE also stops checking the host name, whatever
 * set_check_hostname says: anyone on the path can pose as the server. */
int tapio_tls_context_set_verify(tapio_tls_context *ctx, int mode);
/* Clients: 1 (default) checks the certificate against server_hostname
 * (an IP address is checked as an address). */
int tapio_tls_context_set_check_hostname(tapio_tls_context *ctx, int on);
/* TAPIO_TLS_1_2 or _1_3 each; 0 leaves that bound as it is. */
int tapio_tls_context_set_versions(tapio_tls_context *ctx, int min, int max);
/* OpenSSL's cipher lists: tls12 for TLS 1.2 ("ECDHE+AESGCM"), tls13 for
 * 1.3 suites ("TLS_AES_128_GCM_SHA256"); NULL leaves one as it is. */
int tapio_tls_context_set_ciphers(tapio_tls_context *ctx, const char *tls12,
                                  const char *tls13);
/* ALPN: the protocols a client offers, or a server accepts, in order of
 * preference. A server takes the first of its own the client offers; with
 * none in common the connection goes on without one (as Python's). */
int tapio_tls_context_set_alpn(tapio_tls_context *ctx,
                               const char *const *protos, size_t n);
/* Servers: connections asking for host name `name` (SNI) use `use`
 * instead (its certificate and settings). A name may be added once. */
int tapio_tls_context_add_sni(tapio_tls_context *ctx, const char *name,
                              tapio_tls_context *use);
/* Servers: called with the name a client asks for (NULL if none) before
 * the table above is consulted; store a context in *use to switch to it
 * (borrowed: keep it alive), or leave it. Nonzero refuses the connection
 * (alert unrecognized_name). */
typedef int (*tapio_tls_sni_fn)(void *ud, tapio_tls_context *ctx,
                                const char *name, tapio_tls_context **use);
int tapio_tls_context_set_sni_callback(tapio_tls_context *ctx,
                                       tapio_tls_sni_fn fn, void *ud);
/* Debugging with Wireshark: every secret as an NSS key log line
 * (SSLKEYLOGFILE's format), appended to path, or given to fn. Off by
 * default; NULL turns it off. */
int tapio_tls_context_set_keylog_file(tapio_tls_context *ctx,
                                      const char *path);
typedef void (*tapio_tls_keylog_fn)(void *ud, const char *line);
int tapio_tls_context_set_keylog_callback(tapio_tls_context *ctx,
                                          tapio_tls_keylog_fn fn, void *ud);
/* Clients: the number of sessions kept for resumption, per server name
 * and address (default 64; 0 resumes nothing). */
int tapio_tls_context_set_session_cache(tapio_tls_context *ctx, size_t n);

/* Upgrades the open stream transport t to TLS in place (STARTTLS): as
 * a client or a server by the context's side. Bytes written before the
 * call go out in the clear first; bytes already read from the connection
 * but not used (a stream reader's buffer) are given in buffered/len and
 * fed to the handshake before anything read after; nothing that arrives
 * with the peer's last handshake flight, or right after, is lost. From
 * the call on, proto/proto_ud are the transport's protocol; it gets no
 * connection_made (the connection was made). Writes made meanwhile are
 * sent encrypted after the handshake; it works while writing is paused.
 * Options: "server_hostname", "ssl_handshake_timeout",
 * "ssl_shutdown_timeout". cb gets 0 and t once the handshake is done, or
 * the error and NULL; then the transport is failing and the protocol
 * gets connection_lost with that error (asyncio calls no protocol then;
 * here the connection was made, so its one connection_lost comes). A
 * pause_reading from before the call stays (asyncio's start_tls resumes
 * reading); the handshake reads all the same. A close() before the handshake
 * is done aborts, as asyncio's: what was written and not yet sent (the
 * clear bytes from before the call too) is dropped, cb gets
 * TAPIO_ECANCELED. A TLS transport can be given (TLS inside TLS).
 * TAPIO_EBUSY during another start_tls's handshake or a sendfile;
 * TAPIO_ECLOSED on a closing transport (or after write_eof); TAPIO_ENOTSUP
 * for a transport that is not a stream; tapio_loop_error_message says
 * which, right after the call. */
int tapio_transport_start_tls(tapio_transport *t, const tapio_protocol *proto,
                              void *proto_ud, tapio_tls_context *ctx,
                              const tapio_options *opts, const void *buffered,
                              size_t len, tapio_connect_fn cb, void *cb_ud);

/* get_extra_info for TLS, as strings. */
enum tapio_tls_info {
  TAPIO_TLS_INFO_VERSION = 1,      /* "TLSv1.3" */
  TAPIO_TLS_INFO_CIPHER = 2,       /* "TLS_AES_256_GCM_SHA384" */
  TAPIO_TLS_INFO_ALPN = 3,         /* the protocol agreed */
  TAPIO_TLS_INFO_SERVER_HOSTNAME = 4, /* sent (client), asked for (server) */
  TAPIO_TLS_INFO_COMPRESSION = 5,  /* the method, when there is one */
  TAPIO_TLS_INFO_PEER_CERT = 6,    /* the peer's certificate, DER bytes */
  TAPIO_TLS_INFO_PEER_NOT_BEFORE = 7, /* "Jan  5 09:34:43 2024 GMT" */
  TAPIO_TLS_INFO_PEER_NOT_AFTER = 8,
  TAPIO_TLS_INFO_PEER_SERIAL = 9,  /* upper-case hex, as Python's */
  TAPIO_TLS_INFO_ERROR = 10        /* why the session failed, in words */
};
/* Copies the value into buf[buflen] (NUL-terminated when it fits) and its
 * length into *len (either may be NULL/0 to ask the length).
 * TAPIO_ENOBUFS when it does not fit; TAPIO_ENOENT when there is no such
 * value (no certificate, no ALPN; no version nor cipher while the
 * handshake runs or once it failed); TAPIO_ENOTSUP on a transport without
 * TLS. Answers until connection_lost returns. */
int tapio_transport_get_tls_info(tapio_transport *t, int which, char *buf,
                                 size_t buflen, size_t *len);
/* Entry i (from 0) of the peer certificate's subject, issuer or
 * subjectAltName: name ("commonName", "DNS", "IP Address") and value, as
 * Python's getpeercert() gives them, each NUL-terminated. TAPIO_ENOENT
 * past the last (and without a peer certificate), TAPIO_ENOTSUP on a
 * transport without TLS, TAPIO_ENOBUFS when the name or the value and
 * its NUL do not fit: no length is told, so ask for entry i again with
 * more room (a loop that stops at the first nonzero answer would take a
 * long entry for the end of the list). 128 bytes hold any name. */
enum tapio_tls_names {
  TAPIO_TLS_SUBJECT = 1,
  TAPIO_TLS_ISSUER = 2,
  TAPIO_TLS_SUBJECT_ALT_NAME = 3
};
int tapio_transport_get_peercert_entry(tapio_transport *t, int which,
                                       size_t i, char *name, size_t namelen,
                                       char *value, size_t valuelen);
/* How a TLS session ended (TAPIO_TLS_NUM_END). */
enum tapio_tls_end {
  TAPIO_TLS_END_OPEN = 0,      /* not ended */
  TAPIO_TLS_END_CLEAN = 1,     /* close_notify both ways */
  TAPIO_TLS_END_TRUNCATED = 2, /* the peer closed without close_notify */
  TAPIO_TLS_END_TIMEOUT = 3,   /* the peer never answered our close_notify */
  TAPIO_TLS_END_ABORTED = 4    /* aborted or failed */
};
/* get_extra_info for TLS, as numbers, and the layer's figures. */
enum tapio_tls_num {
  TAPIO_TLS_NUM_VERSION = 1,        /* TAPIO_TLS_1_2, TAPIO_TLS_1_3 */
  TAPIO_TLS_NUM_SECRET_BITS = 2,    /* of the cipher */
  TAPIO_TLS_NUM_SESSION_REUSED = 3, /* 1: a resumed session */
  TAPIO_TLS_NUM_END = 4,            /* enum tapio_tls_end */
  TAPIO_TLS_NUM_HANDSHAKE_USEC = 5, /* from start to done */
  TAPIO_TLS_NUM_WIRE_BYTES_RECEIVED = 6, /* ciphertext; the stream's */
  TAPIO_TLS_NUM_WIRE_BYTES_SENT = 7      /* TAPIO_STAT_BYTES_* count plain */
};
/* The value (>= 0), or TAPIO_ENOTSUP on a transport without TLS,
 * TAPIO_EINVAL for NULL or an unknown which. Answers until
 * connection_lost returns; TAPIO_TLS_NUM_END says how the session ended
 * from connection_lost on (read it there: in eof_received the ending is
 * not over yet). */
int64_t tapio_transport_get_tls_num(tapio_transport *t, int which);
/* get_extra_info("sslcontext"): the context (borrowed), or NULL. */
tapio_tls_context *tapio_transport_get_tls_context(tapio_transport *t);
/* get_extra_info("ssl_object"): OpenSSL's SSL * (borrowed, for programs
 * that use OpenSSL themselves), or NULL. */
void *tapio_transport_get_ssl(tapio_transport *t);

/* ---- Testing: a virtual clock, memory pairs, faults, a recorder --------
 * The kit for people who write protocols on tapio and test them (in Lua,
 * `require "tapio.testing"`: lua/README.md's chapter "Testing protocols",
 * with examples/testing/). The protocol code under test is the same that
 * runs on real sockets: only the loop and the transports' far ends are
 * the kit's. A server protocol's 30-second idle timeout, tested in well
 * under a millisecond (spec/c/test_memory.c, memory_idle_timeout):
 *
 *   tapio_loop_new_virtual(&loop, NULL, NULL);
 *   tapio_recorder_new(NULL, NULL, 0, &rec);          the client's side
 *   tapio_memory_pair(loop, tapio_recorder_protocol(rec), rec,
 *                     &server_proto, &server_state, &client, &server);
 *   tapio_loop_advance(loop, 29.999);                 nothing yet
 *   tapio_loop_advance(loop, 0.001);                  the server hung up:
 *   tapio_recorder_events(rec) is "connection_made\neof_received\n"
 *                                 "connection_lost:nil"
 *
 * A virtual clock. tapio_loop_new_virtual makes a loop whose time starts
 * at 0 and moves only when the test moves it: tapio_loop_advance from
 * outside a run, tapio_call_idle from inside one (a callback, a Lua
 * task). tapio_loop_time answers that time. Every timer of the core
 * follows it, since each is one of the loop's timers kept in its heap of
 * deadlines: call_later and call_at (and the Lua layer's sleep), and the
 * core's own (TLS's handshake and shutdown timeouts, with TLS started on
 * a memory pair, Happy Eyeballs' stagger, the accept retry); they
 * fire in order of due time, each with the clock at its due time, those
 * due together in the order they were scheduled. A run never sleeps:
 * tapio_loop_run and tapio_loop_run_once handle what is ready at the
 * clock's time and return once the loop is idle there (nothing queued,
 * no timer due, no tapio_call_idle to move the clock for): time does not
 * pass by waiting, so a wait could only hang. Nor does it pass by
 * working: code that keeps itself ready (a call_soon that calls
 * call_soon again, a task that sleeps 0 in a loop) would hold a run at
 * one time for ever, so a run that has made the loop's step limit of
 * steps (TAPIO_STEP_LIMIT unless set: tapio_loop_set_step_limit) with
 * the clock where it was and work still ready there returns TAPIO_ESPIN
 * instead of hanging (tapio_loop_run, tapio_loop_advance; the work stays
 * queued). A step is one turn of the loop: everything ready at its
 * start runs. A call_soon_threadsafe
 * runs at the next step but is never waited for. For a host polling it,
 * tapio_loop_backend_timeout answers 0 while a step has work, else -1.
 *
 * A virtual network. On a virtual loop, create_server and
 * create_unix_server listen at addresses of the loop's own, with no
 * socket, and create_connection and create_unix_connection (with "ssl"
 * too) meet them there: each connection is a memory pair (below) whose
 * sides answer get_sockname and get_peername as sockets would, so a
 * client and a server are tested through the calls they use on real
 * sockets. Its names: numeric addresses, and "localhost" (127.0.0.1; ::1
 * with family TAPIO_AF_INET6); any other name fails as an unknown one
 * (TAPIO_EAI_NONAME); tapio_getaddrinfo answers them. Port 0 picks a
 * port from 32768 up, as Linux does; a Unix path is a name only (no file
 * is made). Datagram endpoints meet there too (below, "The virtual
 * network's datagrams"). As the kernel: a listener
 * at the same address and port, or the wildcard over it, is
 * TAPIO_EADDRINUSE, unless both set reuse_port (the first then takes
 * the connects); a connect where nothing listens fails with
 * TAPIO_ECONNREFUSED (a Unix path: TAPIO_ENOENT) and asyncio's message.
 * A connect completes from the loop while the listener's backlog (its
 * connections not yet accepted) has room, and a serving server accepts
 * them, one per loop turn; a server that does not serve (start_serving 0)
 * leaves up to backlog + 1 connections waiting for it (Linux's count),
 * with what their clients wrote, and further connects wait, however far
 * the clock moves, as a SYN to a full queue goes unanswered (a Unix one
 * fails at once with TAPIO_EAGAIN, as the socket's does): with backlog 0
 * and one connection waiting, every further connect waits, which is how
 * a connect timeout is tested; cancelling one (tapio_cancel_pending)
 * frees it. A server that closes resets the
 * connections it never accepted (their clients read TAPIO_ECONNRESET
 * after what they had) and refuses the connects still waiting.
 * tapio_server_get_fd and tapio_transport_get_fd answer TAPIO_ENOTSUP.
 *
 * Other real I/O is refused on a virtual loop: every call that would
 * make a socket, a pipe, a child or a reverse lookup, or wait on a
 * descriptor (create_datagram_endpoint with a Unix path, the "sock"
 * option, connect_accepted_socket, connect_read_pipe, connect_write_pipe,
 * getnameinfo, the sock_ calls, add_reader, add_writer; and watching a
 * signal, add_signal_handler, as signals come on real time) returns
 * TAPIO_EVIRTUAL, closing a descriptor given to it
 * as on any failure; subprocess_exec and subprocess_shell start fake
 * children of the programs a test registered (below, "Fake programs"),
 * and return TAPIO_EVIRTUAL for any other, with words
 * (tapio_loop_error_message) that name it and say how to register one.
 * Why: the clock moves when the loop is idle, and the loop cannot know
 * that bytes from the kernel or another process are on their way; a
 * timeout would fire before an answer that was merely in flight, which is
 * the flaky test the kit exists to remove (and the kernel's own timers, a
 * TCP connect's, run on real time whatever the loop's clock says). Memory
 * pairs and the virtual network are the loop's own and deliver at times
 * it knows. Real sockets are tested on a real loop, with faults too. */

/* A loop on a virtual clock at 0, allocating through alloc (NULL:
 * malloc), as tapio_loop_new_with_allocator. */
int tapio_loop_new_virtual(tapio_loop **out, tapio_alloc_fn alloc, void *ud);
/* 1 for a loop on a virtual clock. */
int tapio_loop_is_virtual(tapio_loop *loop);
/* Moves the clock seconds ahead (negative: 0): runs what is ready, then
 * each timer due up to now + seconds in turn at its own time (and each
 * tapio_call_idle due there), with all they make ready, and returns once
 * nothing is left to run at now + seconds, the clock there. Not from
 * inside a run (TAPIO_ERUNNING: tapio_call_idle is the way there);
 * TAPIO_ENOTSUP on a real loop; TAPIO_EINVAL for NaN or a time past what
 * a double holds (infinity). A timer due at infinity (call_later of an
 * infinite delay) never fires, as on a real loop. A tapio_loop_stop from
 * a callback ends it early, the clock where it was then. Else as
 * tapio_loop_run. */
int tapio_loop_advance(tapio_loop *loop, double seconds);
/* tapio_loop_advance(loop, 0): everything ready at the clock's time. */
int tapio_loop_run_until_idle(tapio_loop *loop);
/* The steps a run of a virtual loop may make at one virtual time before
 * it returns TAPIO_ESPIN (see above). */
enum { TAPIO_STEP_LIMIT = 100000 };
/* Sets loop's step limit (0: none, a busy loop then hangs the run).
 * 0; TAPIO_ENOTSUP on a real loop, which has none. */
int tapio_loop_set_step_limit(tapio_loop *loop, uint64_t steps);
/* Loop's step limit (0 on a real loop). */
uint64_t tapio_loop_step_limit(tapio_loop *loop);
/* What tapio_loop_advance does, from inside a run: fn(ud) runs once the
 * clock has moved delay seconds and nothing else is left to run then
 * (after the timers due at that time and what they made ready); until
 * then the run moves the clock from timer to timer. A Lua task's
 * clock:advance(s) waits on one. The handle is call_later's (cancel,
 * when, release). TAPIO_ENOTSUP on a real loop; TAPIO_EINVAL as
 * tapio_loop_advance. */
int tapio_call_idle(tapio_loop *loop, double delay, tapio_call_fn fn,
                    void *ud, tapio_handle **out);
/* The due time of the loop's next timer (any, the core's own too), or
 * -1 with none. */
double tapio_loop_next_timer(tapio_loop *loop);
/* Transports of the loop made and not yet ended (connection_lost not yet
 * returned; pending creates count): 0 when a test closed everything. */
size_t tapio_loop_transport_count(tapio_loop *loop);
/* Servers of the loop not yet closed: 0 when a test closed them all. */
size_t tapio_loop_server_count(tapio_loop *loop);

/* Fake programs. On a virtual loop, subprocess_exec of a program
 * registered with tapio_loop_add_fake_program starts a fake child: the
 * code under test gets the subprocess transport it gets for a real child
 * (kind TAPIO_TRANSPORT_SUBPROCESS, the same callbacks in the same order,
 * get_pipe_transport, get_returncode, send_signal, close, abort), and the
 * program's callbacks play the child. A program is found by its name,
 * else by its name's last part ("/usr/bin/sort" finds "sort");
 * subprocess_shell(cmd) finds the program registered as cmd itself
 * (started then gets cmd as program, no args), else "sh" (with args
 * "-c", cmd).
 *
 * Each piped fd is a memory pair of pipe transports: the parent's pipe
 * transport (a write pipe to fd 0, read pipes from 1 and 2) on one side,
 * the fake's end on the other (a read pipe for fd 0, write pipes for 1
 * and 2), which the fake reads and writes as any transport, after setting
 * its protocol in started. Flow control, end of file, capacity (65536
 * bytes) and delivery are the pair's: a parent that pauses reading stops
 * the child's writes at the capacity (its write buffer fills: pause_
 * writing), a child that does not read its stdin makes the parent's stdin
 * pipe pause_writing. A write pipe whose reader is gone closes with
 * TAPIO_EPIPE, as a real pipe's (the fake is not killed by SIGPIPE).
 * stderr TAPIO_STDIO_STDOUT: fd 2's end is fd 1's. DEVNULL, INHERIT or
 * a descriptor: no pipe (tapio_fake_child_pipe answers NULL). The ends
 * are memory pairs' sides: tapio_memory_set_capacity, _set_delay and
 * _set_chunks shape what they write, testing faults apply.
 *
 * The child runs until tapio_fake_child_exit(status) or a signal ends it.
 * Exit closes its ends, flushing what they hold first (a child whose
 * reader never reads never exits, as a real one blocked in write). Once
 * every end is gone, the transport's returncode (status) and
 * process_exited follow, from the loop; the parent's read pipes read what
 * the pipes hold, then end of file (after process_exited when they held
 * nothing more). send_signal is delivered from the loop: signal() may
 * catch it (return 1); SIGKILL never reaches it; an uncaught SIGCHLD,
 * SIGURG, SIGWINCH, SIGCONT or stop signal is ignored (never stopped),
 * any other ends the child with returncode minus the signal, its ends
 * aborted (what they held back is lost; the parent reads what was in the
 * pipes, then end of file, and its stdin pipe closes with TAPIO_EPIPE).
 * close() kills a running child (SIGKILL), abort() and tapio_loop_free
 * kill it at once, as for a real one. get_pid answers a number above
 * Linux's largest pid (never a real process's). tapio_loop_transport_count
 * counts the subprocess transport, its pipes and the fake's ends. A C
 * example (spec/c/test_vchild.c, vchild_filter), a sort:
 *
 *   static void sort_started(void *ud, tapio_fake_child *c,
 *                            const char *program, const char *const *args,
 *                            size_t nargs) {
 *     tapio_transport_set_protocol(tapio_fake_child_pipe(c, 0),
 *                                  &collect_stdin, c);
 *   }   collect_stdin's eof_received writes the lines sorted to
 *       tapio_fake_child_pipe(c, 1), then tapio_fake_child_exit(c, 0)
 *   static const tapio_fake_program sort_prog = {
 *     sizeof sort_prog, sort_started, NULL, NULL};
 *   tapio_loop_add_fake_program(loop, "sort", &sort_prog, NULL);
 *   tapio_subprocess_exec(loop, "sort", NULL, 0, &proto, ud, NULL, cb, ud);
 */
typedef struct tapio_fake_child tapio_fake_child;

typedef struct tapio_fake_program {
  uint32_t size; /* sizeof(tapio_fake_program) */
  /* A child started (from the loop, before the subprocess transport's
   * connection_made): program as exec got it, args after it. Its ends
   * get connection_made once this returns; set their protocols here. */
  void (*started)(void *ud, tapio_fake_child *child, const char *program,
                  const char *const *args, size_t nargs);
  /* sig was sent to the running child (never SIGKILL): 1 caught, it runs
   * on; 0 the default action. NULL: nothing is caught. */
  int (*signal)(void *ud, tapio_fake_child *child, int sig);
  /* The child is over for the program (once, for every child started):
   * it exited (returncode its status) or a signal killed it (minus the
   * signal; its ends are aborted); also when the loop is freed. The
   * handle is gone once this returns. NULL: nobody is told. */
  void (*ended)(void *ud, tapio_fake_child *child, int returncode);
} tapio_fake_program;

/* Registers prog (copied) with ud as the program name on a virtual loop,
 * replacing one of that name; prog NULL removes it. Children already
 * started keep theirs. TAPIO_ENOTSUP on a real loop, TAPIO_EINVAL for no
 * name or started. */
int tapio_loop_add_fake_program(tapio_loop *loop, const char *name,
                                const tapio_fake_program *prog, void *ud);
/* The fake's end of fd (0, 1, 2): a pipe transport the test reads or
 * writes; NULL when fd is not piped or the end is gone. */
tapio_transport *tapio_fake_child_pipe(tapio_fake_child *child, int fd);
/* Exits with status (0..255): the ends close, flushed; the parent's
 * returncode is status. TAPIO_ESRCH once it exited or was killed. */
int tapio_fake_child_exit(tapio_fake_child *child, int status);
/* The "cwd" option, or NULL. */
const char *tapio_fake_child_cwd(tapio_fake_child *child);
/* The "env" option's entries ("NAME=value", *n of them), or NULL when it
 * was not given (extend_env is not applied: the child sees what was). */
const char *const *tapio_fake_child_env(tapio_fake_child *child, size_t *n);
/* A pointer of the program's own, per child. */
void tapio_fake_child_set_data(tapio_fake_child *child, void *data);
void *tapio_fake_child_get_data(tapio_fake_child *child);

/* In-memory pairs. tapio_memory_pair joins two stream protocols through
 * memory: two transports of kind TAPIO_TRANSPORT_STREAM, stored in *a and
 * *b at once, each the stream transport itself with an I/O layer of
 * memory instead of a socket (write, writelines, write_eof, flow control
 * with watermarks, pause_reading, half-close, BufferedProtocol, close,
 * abort, retain: the socket's code; tapio_transport_start_tls on both
 * sides puts TLS over the memory). Their connection_made run from the
 * loop, a's first; a transport closed before then still gets
 * connection_made, then connection_lost. On any loop, virtual or real.
 *
 * Each direction is a link that holds what one side wrote until the
 * other reads it, up to a capacity (65536 bytes unless set); what the
 * link cannot take waits in the writer's write buffer, which is where
 * pause_writing comes from. A read takes what the link holds (one
 * data_received), one read per loop turn, unless the direction's
 * chunking says less. write_eof and close end the writer's direction:
 * the reader gets eof_received after the bytes. A side that ends with
 * bytes it never read (closed, aborted, failed) resets the link instead,
 * as the kernel sends RST: the other side reads what it had, then fails
 * with TAPIO_ECONNRESET (a write meets it first; a side that had ended
 * its writing first is read to its end of file, as a FIN before the RST,
 * and a write then fails with TAPIO_EPIPE). Writing to a side
 * that ended cleanly is TCP's: the first write is taken and its bytes
 * are lost (the peer's kernel answers with a RST), the next fails with
 * TAPIO_EPIPE, so an answer written in eof_received after the peer's
 * close ends with connection_lost(nil). There is no descriptor: get_fd answers TAPIO_ENOTSUP, and
 * so do get_peername and get_sockname but on the virtual network's. The
 * stream's watchers wait on a descriptor that is never ready (an empty
 * epoll instance, one per loop, made with its first pair), so the
 * stream's code is the socket's; the link runs them when bytes, room or
 * an end arrive. */
int tapio_memory_pair(tapio_loop *loop, const tapio_protocol *pa, void *ua,
                      const tapio_protocol *pb, void *ub,
                      tapio_transport **a, tapio_transport **b);
/* How what t writes reaches its peer. Each returns 0, or TAPIO_EINVAL
 * for a transport that is not a memory pair's or a bad value.
 * Reads of min..max bytes (min == max: that size, 1: every byte on its
 * own; 0, 0: all there is, the default), a size drawn per read from
 * seed (splitmix64) when min < max: a failing run replays from its
 * seed. */
int tapio_memory_set_chunks(tapio_transport *t, size_t min, size_t max,
                            uint64_t seed);
/* No read spans one of the offsets at[0..n) (ascending; counted from
 * the first byte t wrote): the byte stream is cut there. n 0 clears. */
int tapio_memory_set_splits(tapio_transport *t, const uint64_t *at,
                            size_t n);
/* Each byte reaches the peer delay seconds (loop time) after it was
 * written, in order, and so does t's end (write_eof, close, a reset), as
 * a FIN or RST would: after t's bytes, delay after it ended. Bytes still
 * on their way to a side that has gone reach a closed socket: the sender
 * sees that side's clean end, and its writes fail (EPIPE) from a delay
 * after their arrival, when the RST would be back. */
int tapio_memory_set_delay(tapio_transport *t, double delay);
/* What the link from t holds at most (> 0). */
int tapio_memory_set_capacity(tapio_transport *t, size_t bytes);
/* The bytes t wrote that its peer has not read: copies up to len of them
 * into buf (may be NULL) and returns how many there are. */
size_t tapio_memory_in_flight(tapio_transport *t, void *buf, size_t len);
/* The other side of t's pair, or NULL (not a pair's, or it is gone). */
tapio_transport *tapio_memory_peer(tapio_transport *t);

/* The virtual network's datagrams. On a virtual loop,
 * tapio_create_datagram_endpoint (same options, the network's names)
 * makes an endpoint with no socket, bound at an address of the network,
 * and datagrams travel in memory, delivered by the loop at times it
 * knows. Port 0 (or no local address): an ephemeral port from 32768 up
 * (the endpoints' own, apart from the listeners', as UDP's and TCP's
 * are); a port bound already (the same address, or either a wildcard)
 * fails with TAPIO_EADDRINUSE and the real call's message, unless both
 * set reuse_port (the first bound receives). No local address: bound at
 * the source Linux picks for remote (its address; 127.0.0.1 for any
 * 127.x.y.z and for a wildcard), as Linux binds a connected socket, else
 * (no remote, or allow_broadcast's) unbound, as a real socket: its
 * sockname says port 0 and nothing reaches it until its first sendto
 * binds it at an ephemeral port of the family's wildcard (Linux's
 * autobind); a wildcard-bound endpoint sends from that source too
 * (127.0.0.1 for a broadcast).
 * remote_host connects it with the socket's rules: sendto without an
 * address goes there, to another is TAPIO_EISCONN, and it receives only
 * its peer's datagrams; with allow_broadcast remote is only the default
 * destination. A wildcard bind receives what is sent to any address of
 * its family at its port (IPv4 and IPv6 are apart: no dual-stack). A
 * broadcast (255.255.255.255) reaches every endpoint at its port's
 * wildcard, reuse_port's all, and no one there is no error (no ICMP
 * answers a broadcast), as the kernel delivers it.
 * TAPIO_EVIRTUAL for sock and for Unix paths.
 *
 * sendto (TAPIO_EMSGSIZE over 65507 bytes for IPv4, 65527 for IPv6, as a
 * socket) puts the datagram in flight; the loop delivers it in a later
 * turn (after its delay), datagram_received with the sender's address:
 * its bound one, or for a wildcard bind the address it sent to. Nothing
 * bound there (or an endpoint connected elsewhere): dropped, and the
 * sender gets error_received(TAPIO_ECONNREFUSED, "sendto ('127.0.0.1',
 * 9): connection refused"), connected or not, as tapio's sockets hear the
 * ICMP error on loopback; it keeps receiving. A closing endpoint receives
 * nothing more; its port is free once connection_lost is on its way, and
 * what it sent before still arrives. Empty datagrams are delivered.
 * get_sockname and get_peername answer the virtual addresses, get_fd
 * TAPIO_ENOTSUP (Lua's "socket": nil). tapio_loop_transport_count counts
 * them. A virtual endpoint's bytes in flight are held to a capacity (its
 * socket's send buffer, 212992 bytes unless set); what does not fit waits
 * in the write buffer (get_write_buffer_size: bytes plus 8 per datagram)
 * with pause_writing and resume_writing at the watermarks, and close
 * waits for it to go, then connection_lost(0). */

/* Faults of what t sends, drawn per datagram from seed (splitmix64), so
 * that a failing run replays from its seed: on a virtual endpoint, and on
 * a real one (UDP over IPv4 or IPv6, a Unix datagram socket; connected or
 * not) with the same meaning from the sender's side and the same draws.
 * There a lost datagram is never handed to the socket, a duplicated one
 * is sent twice, and delay, jitter and reorder hold datagrams in tapio
 * until their time (the loop's clock: real time), each then sent as
 * sendto sends, in the order the virtual network delivers them for the
 * same seed; one neither delayed nor held back, with nothing held before
 * it, goes to the socket within sendto, as without faults. What is held
 * is in flight (tapio_datagram_in_flight), not in the write buffer:
 * get_write_buffer_size, pause_writing and resume_writing count what the
 * socket refused, as without faults. close sends what is held at its
 * time, then connection_lost(0), as it flushes the write buffer; abort, a
 * failure and tapio_loop_free drop it. A held datagram the socket refuses
 * at its time (TAPIO_EMSGSIZE too) goes to error_received, as any later
 * send failure: sendto had answered 0. From the first call on (cleared
 * or not) that endpoint's sends no longer gather into one sendmmsg while
 * a batch of datagrams is delivered; an endpoint never given faults pays
 * nothing. */
typedef struct tapio_datagram_faults {
  double loss;           /* 0..1: the chance a datagram is lost */
  double duplicate;      /* 0..1: the chance it arrives twice */
  unsigned reorder;      /* it lets up to this many of the ones t sends
                            after it go first (drawn 0..reorder; those
                            that never come: it goes last of its turn) */
  double delay;          /* seconds of loop time in flight (held) */
  double jitter;         /* plus 0..jitter seconds, drawn: they reorder */
  uint64_t seed;
  const uint64_t *drop;  /* these are lost: 1 is the first sent after the
                            call (ascending, copied); may be NULL */
  size_t ndrop;
} tapio_datagram_faults;
/* Sets t's faults (f NULL: none); the numbering of datagrams (drop's
 * 1 is the next one sent) and the draws start again, the counts of
 * tapio_datagram_get_fault_counts go on. 0; TAPIO_EINVAL for a bad value or a transport that is not
 * a datagram endpoint; TAPIO_ECLOSED once its connection_lost is on its
 * way; TAPIO_ENOMEM. */
int tapio_datagram_set_faults(tapio_transport *t,
                              const tapio_datagram_faults *f);
/* How many datagrams each fault of t hit in t's life (since its first
 * faults were set; a virtual endpoint's sent: since it opened), however
 * often they were set or cleared, so that a test can assert what the
 * code under test had to cope with; a retained t's still read after its
 * connection_lost. A datagram lost is only that (dropped when the drop list
 * named it, else lost); one that goes on can be duplicated, reordered
 * (drawn to let at least one later datagram go first) and delayed (held
 * delay + jitter > 0 seconds). */
typedef struct tapio_datagram_fault_counts {
  uint64_t sent;         /* datagrams t sent through its faults */
  uint64_t lost;         /* lost by loss's draw */
  uint64_t dropped;      /* lost as drop listed them */
  uint64_t duplicated;   /* sent twice */
  uint64_t reordered;    /* held back for later ones (reorder drew > 0) */
  uint64_t delayed;      /* held a delay (delay + drawn jitter > 0) */
} tapio_datagram_fault_counts;
/* t's counts into *out (all 0 for an endpoint never given faults, but a
 * virtual one's sent). 0; TAPIO_EINVAL for another transport or out
 * NULL. */
int tapio_datagram_get_fault_counts(tapio_transport *t,
                                    tapio_datagram_fault_counts *out);
/* The bytes virtual endpoint t may have in flight (> 0; one datagram
 * always may). TAPIO_EINVAL for 0 or another transport (a real
 * endpoint's socket has its own send buffer). */
int tapio_datagram_set_capacity(tapio_transport *t, size_t bytes);
/* The bytes of t's datagrams in flight (sent, not yet arrived; on a
 * real endpoint: held by its faults). */
size_t tapio_datagram_in_flight(tapio_transport *t);

/* Faults on demand, on a memory pair's transport or a real one (a stream
 * socket, a pipe), with TLS on it or not: at the first fault, a layer of
 * tapio's goes between t and its own I/O (the socket, the link) for the
 * rest of t's life. `after` counts bytes from the call on; setting a fault
 * again restarts it. Each returns 0; TAPIO_EINVAL for a bad value;
 * TAPIO_ENOTSUP for a datagram endpoint or a subprocess; TAPIO_ECLOSED
 * once t's connection_lost is on its way.
 *
 * Under TLS the layer goes above the TLS layer: the counts are the bytes
 * the protocol sees (plaintext), as on a plain socket. A read error sends
 * no close_notify (the peer sees a truncation; with ECONNRESET a RST);
 * an end of file is what the protocol gets when the peer's close_notify
 * comes, and its close then sends t's; a held direction (stop_reading,
 * stop_writing, a drip's interval) holds TLS's own socket I/O too, so the
 * peer's writes back up for real (a close while reading is held waits
 * for the peer's close_notify until ssl_shutdown_timeout, and a close
 * with bytes held by stop_writing waits for the clear at most that
 * long); a drip hands
 * up plaintext in pieces. Faults set
 * before start_tls stay on top of the new TLS layer and go on counting
 * plaintext (the handshake is not counted). */
enum tapio_fault {
  /* After `after` more bytes received, reading fails with value (a
   * TAPIO_E* code): t's connection_lost gets it. TAPIO_ECONNRESET is a
   * reset both ways: a memory peer reads ECONNRESET after what it has, a
   * socket's peer gets a RST when t closes. */
  TAPIO_FAULT_READ_ERROR = 1,
  /* After `after` more bytes received, end of file: eof_received, in the
   * middle of a message if there is one (the peer knows nothing of it). */
  TAPIO_FAULT_EOF = 2,
  /* After `after` more bytes sent, sending fails with value. */
  TAPIO_FAULT_WRITE_ERROR = 3,
  /* After `after` more bytes received, t takes no more input until
   * tapio_fault_clear: its peer's output backs up (pause_writing there). */
  TAPIO_FAULT_STOP_READING = 4,
  /* After `after` more bytes sent, t's output is no longer taken, as when
   * the peer stops reading: t's write buffer fills, pause_writing comes.
   * A close with bytes held waits for them until the fault is cleared
   * (abort does not: it drops them), as a close waits on a peer that
   * stops reading. */
  TAPIO_FAULT_STOP_WRITING = 5
};
int tapio_fault_set(tapio_transport *t, int fault, uint64_t after,
                    int64_t value);
/* A slow drip: t receives at most bytes per read (0: any) and, with
 * interval > 0, one read per interval seconds of loop time: each read at
 * least interval after the protocol's data_received (or buffer_updated)
 * for the read before has returned. */
int tapio_fault_drip(tapio_transport *t, size_t bytes, double interval);
/* Lifts every fault of t: what was held is read or sent at once. */
int tapio_fault_clear(tapio_transport *t);

/* A recorder: a stream protocol that writes down every callback it gets
 * with its arguments, then passes it to an inner protocol (NULL: the
 * reference's defaults). Give tapio_recorder_protocol(r) and r as the
 * protocol and its user pointer. Events read as the Lua recorder's:
 * "connection_made", "data_received:<bytes>", "eof_received",
 * "connection_lost:nil" (clean) or "connection_lost:ECONNRESET" (the
 * code's tapio_errname), "pause_writing", "resume_writing",
 * "get_buffer:-1" and "buffer_updated:<the bytes>" (a BufferedProtocol,
 * when inner is one). With TAPIO_RECORDER_MERGE, consecutive
 * data_received (or buffer_updated) are one event and get_buffer is not
 * written down: the byte stream whatever its chunking, as a real
 * socket and a memory pair can be compared. */
typedef struct tapio_recorder tapio_recorder;
enum { TAPIO_RECORDER_MERGE = 1 };
/* A recorder belongs to no loop: it may outlive the loops it served
 * (whose freeing still calls it), and takes its memory from malloc. */
int tapio_recorder_new(const tapio_protocol *inner, void *inner_ud,
                       int flags, tapio_recorder **out);
const tapio_protocol *tapio_recorder_protocol(tapio_recorder *r);
size_t tapio_recorder_count(tapio_recorder *r);
/* Event i (from 0) and its length in *len (may be NULL), binary-safe;
 * NULL past the last. Valid until the next event, clear or free. */
const char *tapio_recorder_event(tapio_recorder *r, size_t i, size_t *len);
/* Every event joined by '\n', as one C string (valid as above). */
const char *tapio_recorder_events(tapio_recorder *r);
void tapio_recorder_clear(tapio_recorder *r);
/* The transport between its connection_made and connection_lost. */
tapio_transport *tapio_recorder_transport(tapio_recorder *r);
/* Not while a transport still has it as its protocol. */
void tapio_recorder_free(tapio_recorder *r);

/* TAPIO_CDEF_END */

#if defined(__GNUC__)
#pragma GCC visibility pop
#endif

#ifdef __cplusplus
}
#endif

#endif /* TAPIO_H */
