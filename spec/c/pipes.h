/* What the pipe and subprocess tests share: making pipe transports and
 * waiting for them, ptys, FIFOs, descriptor checks. */
#ifndef TAPIO_TEST_PIPES_H
#define TAPIO_TEST_PIPES_H

#include "test.h"

#include <signal.h>
#include <sys/stat.h>
#include <termios.h>

/* r made on fd as a read pipe (writing 0) or a write pipe; waits for the
 * completion and returns its status. */
static inline int connect_pipe(tapio_loop *loop, int fd, int writing, rec *r)
{
  conn_wait w = { 0 };
  w.r = r;
  if (writing)
    CHECK_OK(tapio_connect_write_pipe(loop, fd, &rec_proto, r, NULL,
                                      on_connected, &w));
  else
    CHECK_OK(tapio_connect_read_pipe(loop, fd, &rec_proto, r, NULL,
                                     on_connected, &w));
  return connect_wait(loop, &w);
}

/* pipe2 with close-on-exec; blocking ends. */
static inline void make_pipe(int fds[2])
{
  CHECK(pipe2(fds, O_CLOEXEC) == 0);
}

static inline int is_nonblocking(int fd)
{
  int fl = fcntl(fd, F_GETFL);
  CHECK(fl >= 0);
  return (fl & O_NONBLOCK) != 0;
}

/* A pty in raw mode (bytes pass unchanged, no echo): *master, *slave. */
static inline void make_pty(int *master, int *slave)
{
  struct termios tio;
  int m = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC), s;
  CHECK(m >= 0);
  CHECK(grantpt(m) == 0 && unlockpt(m) == 0);
  s = open(ptsname(m), O_RDWR | O_NOCTTY | O_CLOEXEC);
  CHECK(s >= 0);
  CHECK(tcgetattr(s, &tio) == 0);
  cfmakeraw(&tio);
  CHECK(tcsetattr(s, TCSANOW, &tio) == 0);
  *master = m;
  *slave = s;
}

/* A FIFO in a fresh directory; path gets its name (remove with
 * fifo_remove). */
static inline void make_fifo(char *path, size_t size)
{
  char dir[] = "/tmp/tapio-fifo-XXXXXX";
  CHECK(mkdtemp(dir) != NULL);
  snprintf(path, size, "%s/fifo", dir);
  CHECK(mkfifo(path, 0600) == 0);
}

static inline void fifo_remove(const char *path)
{
  char dir[256];
  snprintf(dir, sizeof dir, "%s", path);
  *strrchr(dir, '/') = '\0';
  CHECK(unlink(path) == 0);
  CHECK(rmdir(dir) == 0);
}

/* Whether SIGPIPE is pending for this thread. */
static inline int sigpipe_pending(void)
{
  sigset_t set;
  CHECK(sigpending(&set) == 0);
  return sigismember(&set, SIGPIPE);
}

/* Reads what fd has until EOF (or cap bytes), running the loop while it
 * waits; fd is non-blocking. Returns the count; *eof tells if EOF came. */
static inline size_t read_fd_all(tapio_loop *loop, int fd, char *buf,
                                 size_t cap, int *eof)
{
  size_t got = 0;
  *eof = 0;
  while (got < cap) {
    ssize_t k = read(fd, buf + got, cap - got);
    if (k == 0) {
      *eof = 1;
      break;
    }
    if (k < 0 && errno == EAGAIN) {
      if (!raw_wait(loop, fd, POLLIN))
        FAIL("read timed out after %zu bytes", got);
      continue;
    }
    if (k < 0 && errno == EIO) { /* a pty master once the slave closed */
      *eof = 1;
      break;
    }
    CHECK(k > 0);
    got += (size_t)k;
  }
  return got;
}

/* Writes all of data to a non-blocking fd, running the loop meanwhile. */
static inline void write_fd_all(tapio_loop *loop, int fd, const void *data,
                                size_t n)
{
  const char *p = data;
  while (n > 0) {
    ssize_t k = write(fd, p, n);
    if (k < 0 && errno == EAGAIN) {
      if (!raw_wait(loop, fd, POLLOUT))
        FAIL("write timed out");
      continue;
    }
    CHECK(k > 0);
    p += k;
    n -= (size_t)k;
  }
}

/* ---- A recording subprocess protocol ---------------------------------- */

/* One subprocess transport's view: its callbacks as one string ("made
 * out:5 lost1:0 exited lost0:EPIPE lost:0"; consecutive data of one fd
 * merged: out for fd 1, err for fd 2), the bytes of each fd, and a hook a
 * test can react in. Out-of-order callbacks log a BAD token. */
typedef enum pev {
  PEV_MADE, PEV_DATA, PEV_PIPE_LOST, PEV_EXITED, PEV_LOST, PEV_PAUSE,
  PEV_RESUME
} pev;

typedef struct prec {
  rec r;                 /* its log, data merging and buffers */
  tapio_transport *t;
  int pid;               /* get_pid in connection_made */
  int made, exited, lost, lost_code;
  int pipe_lost[3], pipe_code[3];
  int exit_known;        /* get_returncode answered in process_exited */
  int returncode;        /* what it said then */
  int paused, npause, nresume;
  int discard;           /* keep no bytes (a long stream) */
  const char *last;      /* the data of the call the hook sees */
  size_t lastlen;
  size_t total[3];       /* bytes received per fd */
  char *out[3];
  size_t nout[3], cap[3];
  void (*hook)(struct prec *p, pev ev, int fd);
  void *user;
} prec;

static inline void prec_init(prec *p)
{
  memset(p, 0, sizeof *p);
  rec_init(&p->r);
}

static inline void prec_free(prec *p)
{
  int i;
  for (i = 0; i < 3; i++)
    free(p->out[i]);
  rec_free(&p->r);
}

static inline void prec_order_(prec *p, tapio_transport *t, pev ev)
{
  if (p->lost)
    rec_log(&p->r, "BAD:after-lost");
  else if (ev != PEV_MADE && !p->made)
    rec_log(&p->r, "BAD:before-made");
  else if (t != p->t)
    rec_log(&p->r, "BAD:other-transport");
  else if (ev == PEV_EXITED && p->exited)
    rec_log(&p->r, "BAD:exited-twice");
}

static inline void prec_made_(void *ud, tapio_transport *t)
{
  prec *p = ud;
  if (p->made)
    rec_log(&p->r, "BAD:made-twice");
  p->made = 1;
  p->t = t;
  p->pid = tapio_subprocess_get_pid(t);
  rec_log(&p->r, "made");
  if (p->hook)
    p->hook(p, PEV_MADE, -1);
}

static inline void prec_data_(void *ud, tapio_transport *t, int fd,
                              const char *data, size_t len)
{
  prec *p = ud;
  prec_order_(p, t, PEV_DATA);
  if (fd != 1 && fd != 2)
    rec_log(&p->r, "BAD:data-fd");
  else if (p->pipe_lost[fd])
    rec_log(&p->r, "BAD:data-after-pipe-lost");
  if (len == 0)
    rec_log(&p->r, "BAD:empty-data");
  p->last = data;
  p->lastlen = len;
  if (fd == 1 || fd == 2)
    p->total[fd] += len;
  if ((fd == 1 || fd == 2) && !p->discard) {
    if (p->nout[fd] + len > p->cap[fd]) {
      p->cap[fd] = (p->nout[fd] + len) * 2;
      p->out[fd] = realloc(p->out[fd], p->cap[fd]);
      CHECK(p->out[fd] != NULL);
    }
    memcpy(p->out[fd] + p->nout[fd], data, len);
    p->nout[fd] += len;
  }
  rec_log_bytes(&p->r, fd == 1 ? "out" : "err", len);
  if (p->hook)
    p->hook(p, PEV_DATA, fd);
}

static inline void prec_pipe_lost_(void *ud, tapio_transport *t, int fd,
                                   int code, const char *message)
{
  prec *p = ud;
  char tok[64];
  prec_order_(p, t, PEV_PIPE_LOST);
  if (fd < 0 || fd > 2 || p->pipe_lost[fd]) {
    rec_log(&p->r, "BAD:pipe-lost-fd");
    return;
  }
  if ((code == 0) != (message == NULL))
    rec_log(&p->r, "BAD:code-and-message");
  p->pipe_lost[fd] = 1;
  p->pipe_code[fd] = code;
  snprintf(tok, sizeof tok, "lost%d:%s", fd, code ? tapio_errname(code)
                                                   : "0");
  rec_log(&p->r, tok);
  if (p->hook)
    p->hook(p, PEV_PIPE_LOST, fd);
}

static inline void prec_exited_(void *ud, tapio_transport *t)
{
  prec *p = ud;
  prec_order_(p, t, PEV_EXITED);
  p->exited = 1;
  p->exit_known = tapio_subprocess_get_returncode(t, &p->returncode);
  rec_log(&p->r, "exited");
  if (p->hook)
    p->hook(p, PEV_EXITED, -1);
}

static inline void prec_lost_(void *ud, tapio_transport *t, int code,
                              const char *message)
{
  prec *p = ud;
  char tok[64];
  int i;
  prec_order_(p, t, PEV_LOST);
  if (!p->exited)
    rec_log(&p->r, "BAD:lost-before-exited");
  for (i = 0; i < 3; i++)
    if (tapio_subprocess_get_pipe_transport(t, i))
      rec_log(&p->r, "BAD:lost-with-a-pipe");
  if ((code == 0) != (message == NULL))
    rec_log(&p->r, "BAD:code-and-message");
  p->lost = 1;
  p->lost_code = code;
  snprintf(tok, sizeof tok, "lost:%s", code ? tapio_errname(code) : "0");
  rec_log(&p->r, tok);
  if (p->hook)
    p->hook(p, PEV_LOST, -1);
  p->t = NULL;
}

static inline void prec_pause_(void *ud, tapio_transport *t)
{
  prec *p = ud;
  prec_order_(p, t, PEV_PAUSE);
  if (p->paused)
    rec_log(&p->r, "BAD:pause-twice");
  p->paused = 1;
  p->npause++;
  if (p->npause == 1)
    rec_log(&p->r, "pause");
  if (p->hook)
    p->hook(p, PEV_PAUSE, 0);
}

static inline void prec_resume_(void *ud, tapio_transport *t)
{
  prec *p = ud;
  prec_order_(p, t, PEV_RESUME);
  if (!p->paused)
    rec_log(&p->r, "BAD:resume-unpaused");
  p->paused = 0;
  p->nresume++;
  if (p->nresume == 1)
    rec_log(&p->r, "resume");
  if (p->hook)
    p->hook(p, PEV_RESUME, 0);
}

static const tapio_subprocess_protocol prec_proto = {
  .size = sizeof(tapio_subprocess_protocol),
  .connection_made = prec_made_,
  .connection_lost = prec_lost_,
  .pause_writing = prec_pause_,
  .resume_writing = prec_resume_,
  .pipe_data_received = prec_data_,
  .pipe_connection_lost = prec_pipe_lost_,
  .process_exited = prec_exited_,
};

/* Whether the log has token tok (a whole word). */
static inline int prec_has(const prec *p, const char *tok)
{
  const char *s = p->r.log;
  size_t n = strlen(tok);
  while ((s = strstr(s, tok)) != NULL) {
    if ((s == p->r.log || s[-1] == ' ') && (s[n] == ' ' || s[n] == '\0'))
      return 1;
    s += n;
  }
  return 0;
}

/* The log has every token of want (space-separated) and no BAD one,
 * begins with made and ends with the transport's lost. */
#define CHECK_EVENTS(p, want, last)                                          \
  do {                                                                       \
    char w_[512], *tok_, *save_;                                             \
    const char *log_ = (p)->r.log;                                           \
    size_t ll_ = strlen(log_), tl_ = strlen(last);                           \
    snprintf(w_, sizeof w_, "%s", (want));                                   \
    if (strstr(log_, "BAD") || strncmp(log_, "made", 4) != 0 ||              \
        ll_ < tl_ || strcmp(log_ + ll_ - tl_, (last)) != 0)                  \
      FAIL("events \"%s\": want made, %s, then %s", log_, (want), (last)); \
    for (tok_ = strtok_r(w_, " ", &save_); tok_;                             \
         tok_ = strtok_r(NULL, " ", &save_))                                 \
      if (!prec_has((p), tok_))                                              \
        FAIL("events \"%s\" lack %s", log_, tok_);                         \
  } while (0)

/* Starts argv[0] with argv[1..] (NULL-terminated) and waits for the
 * completion; its status (the transport is p->t). */
static inline int spawn_wait(tapio_loop *loop, prec *p, const char *const *argv,
                             const tapio_options *opts)
{
  conn_wait w = { 0 };
  size_t n = 0;
  int rc;
  while (argv[n + 1])
    n++;
  rc = tapio_subprocess_exec(loop, argv[0], argv + 1, n, &prec_proto, p,
                             opts, on_connected, &w);
  if (rc < 0)
    return rc;
  CHECK_STR(p->r.log, "");
  WAIT_FOR(loop, w.done);
  CHECK_EQ(w.status, 0);
  CHECK(p->made && w.t == p->t);
  return 0;
}

/* sh -c script */
static inline int shell_wait(tapio_loop *loop, prec *p, const char *script,
                             const tapio_options *opts)
{
  const char *argv[] = { "/bin/sh", "-c", script, NULL };
  return spawn_wait(loop, p, argv, opts);
}

/* A child that is ours no longer: reaped (by tapio), so not a zombie. */
static inline int reaped(pid_t pid)
{
  siginfo_t si;
  memset(&si, 0, sizeof si);
  return waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) < 0 &&
         errno == ECHILD;
}

/* fd's pipe transport, which must be there. */
static inline tapio_transport *pipe_of(prec *p, int fd)
{
  tapio_transport *t = tapio_subprocess_get_pipe_transport(p->t, fd);
  CHECK(t != NULL);
  return t;
}

/* A hook that pauses stdout's reading in connection_made: what the child
 * writes waits in the pipe, and the transport outlives its exit. */
static inline void prec_pause_stdout_hook(prec *p, pev ev, int fd)
{
  (void)fd;
  if (ev == PEV_MADE)
    CHECK_OK(tapio_transport_pause_reading(pipe_of(p, 1)));
}

static inline tapio_options *stdio_opts(tapio_loop *loop, int in, int out,
                                        int err)
{
  tapio_options *o = new_options(loop);
  CHECK_OK(tapio_options_set_int(o, "stdin", in));
  CHECK_OK(tapio_options_set_int(o, "stdout", out));
  CHECK_OK(tapio_options_set_int(o, "stderr", err));
  return o;
}

/* Runs script to its end with options o (freed); checks it exited 0; p
 * keeps what it said. */
static inline void run_script(tapio_loop *loop, prec *p,
                              const char *script, tapio_options *o)
{
  CHECK_OK(shell_wait(loop, p, script, o));
  tapio_options_free(o);
  WAIT_FOR(loop, p->lost);
  CHECK(strstr(p->r.log, "BAD") == NULL);
  CHECK_EQ(p->returncode, 0);
}

#define CHECK_OUT(p, fd, text)                                               \
  do {                                                                       \
    CHECK_EQ((p)->nout[fd], strlen(text));                                   \
    CHECK(memcmp((p)->out[fd], (text), strlen(text)) == 0);                  \
  } while (0)


#endif
