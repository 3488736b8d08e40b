/* Subprocess transports: asyncio's SubprocessTransport (its
 * base_subprocess.py) over a child spawn.c started. The transport holds up
 * to three pipe transports of its own (pipe.c) whose protocol forwards to
 * the SubprocessProtocol: pipe_data_received, pipe_connection_lost and the
 * stdin pipe's pause_writing/resume_writing. The child's exit is watched
 * through its pidfd on this loop (or, without pidfds, a timer polling
 * waitid with WNOHANG) and reaped here; connection_lost comes once the
 * child is reaped, process_exited has run and every pipe is gone.
 *
 * On a virtual loop the child is a fake one (vchild.c): the transport is
 * the same, its steps on the child are the fake's, chosen once when it
 * starts (child_ops), and its pipes are memory pairs. */
#include "tapio_int.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/wait.h>
#include <unistd.h>

#define POLL_FIRST 0.001 /* seconds; doubled up to POLL_MAX while waiting */
#define POLL_MAX 0.05

typedef struct child_ops child_ops;

typedef struct tapio__process {
  tapio_transport head;
  const child_ops *ops;   /* a real child's steps, or a fake's */
  tapio__vchild *fake;    /* the fake child, or NULL */
  pid_t pid;
  int pidfd;              /* -1 without one, and once reaped */
  ev_io exit_io;          /* the pidfd reads ready once the child exits */
  tapio__timer poll;      /* or waitid(WNOHANG) now and then */
  double poll_after;      /* its next wait, doubled each time */
  int reaped, returncode;
  int exit_due;           /* process_exited has run or is queued */
  tapio__task exit_task;  /* process_exited after a kill in halt */
  tapio_transport *pipes[3];
} tapio__process;

/* What the transport does to its child. */
struct child_ops {
  void (*watch)(tapio__process *p);       /* after connection_made */
  int (*exited)(tapio__process *p);       /* also before it was noticed */
  int (*signal)(tapio__process *p, int sig);
  void (*kill_and_reap)(tapio__process *p); /* now: returncode known */
  void (*release)(tapio__process *p);     /* the transport goes */
};

static const tapio__kind process_kind;

static tapio__process *to_process(tapio_transport *t) {
  return TAPIO_CONTAINER(t, tapio__process, head);
}

static int is_process(tapio_transport *t) {
  return t && t->kind == &process_kind;
}

/* The protocol read at each call: set_protocol may replace it. */
static const tapio_subprocess_protocol *proto_of(tapio__process *p) {
  return (const tapio_subprocess_protocol *)p->head.proto;
}

/* ---- The child --------------------------------------------------------- */

/* waitid on the child, through its pidfd when it has one. 1 when it has
 * exited (si filled in unless the status is gone), 0 while it runs. */
static int wait_child(tapio__process *p, int flags, siginfo_t *si) {
  int rc;
  memset(si, 0, sizeof *si);
  do
    rc = p->pidfd >= 0 ? waitid(P_PIDFD, (id_t)p->pidfd, si, WEXITED | flags)
                       : waitid(P_PID, (id_t)p->pid, si, WEXITED | flags);
  while (rc < 0 && errno == EINTR);
  return rc < 0 || si->si_pid != 0; /* ECHILD: reaped by someone else */
}

/* Exited (also before the loop noticed), without reaping it. */
static int has_exited(tapio__process *p) {
  siginfo_t si;
  return p->reaped || wait_child(p, WNOHANG | WNOWAIT, &si);
}

/* Takes the exit status; blocks unless nohang. 1 once reaped. A status
 * someone else took (a waitpid(-1) of the application's, SIGCHLD set to
 * SIG_IGN) is lost: the returncode is then 255, as asyncio reports it. */
static int reap(tapio__process *p, int nohang) {
  siginfo_t si;
  if (p->reaped)
    return 1;
  if (!wait_child(p, nohang ? WNOHANG : 0, &si))
    return 0;
  if (si.si_pid == 0)
    p->returncode = 255;
  else if (si.si_code == CLD_EXITED)
    p->returncode = si.si_status;
  else
    p->returncode = -si.si_status; /* killed: minus the signal */
  p->reaped = 1;
  ev_io_stop(p->head.loop->ev, &p->exit_io);
  tapio__timer_stop(&p->poll);
  if (p->pidfd >= 0)
    close(p->pidfd);
  p->pidfd = -1;
  return 1;
}

static int signal_child(tapio__process *p, int sig) {
  int rc = -1;
  if (p->pidfd >= 0)
    rc = pidfd_send_signal(p->pidfd, sig, NULL, 0);
  if (p->pidfd < 0 || (rc < 0 && errno == ENOSYS))
    rc = kill(p->pid, sig); /* unreaped: its pid cannot be reused */
  return rc < 0 ? tapio__from_errno(errno) : 0;
}

/* A child that is still running is killed and reaped at once: SIGKILL
 * cannot be caught, so the wait is short. */
static void kill_and_reap(tapio__process *p) {
  if (p->reaped)
    return;
  if (!has_exited(p))
    signal_child(p, SIGKILL);
  reap(p, 0);
}

/* ---- The end ----------------------------------------------------------- */

/* connection_lost once the exit was told and every pipe is gone. */
static void maybe_finish(tapio__process *p) {
  int i;
  if (!p->exit_due || (p->head.flags & TAPIO__T_LOST))
    return;
  for (i = 0; i < 3; i++)
    if (p->pipes[i])
      return;
  tapio__transport_lost(&p->head, 0, NULL);
}

static void exited(tapio__process *p) {
  tapio_transport *t = &p->head;
  p->exit_due = 1;
  if (proto_of(p)->process_exited)
    proto_of(p)->process_exited(t->ud, t);
  maybe_finish(p);
}

static void on_exit_io(struct ev_loop *ev, ev_io *w, int revents) {
  tapio__process *p = TAPIO_CONTAINER(w, tapio__process, exit_io);
  (void)ev;
  (void)revents;
  if (reap(p, 1))
    exited(p);
}

/* Without a pidfd (valgrind has none), waitid(WNOHANG) at growing
 * intervals. */
static void poll_later(tapio__process *p) {
  tapio__timer_start(&p->poll, p->poll_after);
  p->poll_after = p->poll_after * 2 < POLL_MAX ? p->poll_after * 2
                                                : POLL_MAX;
}

static void on_poll(tapio__timer *tm) {
  tapio__process *p = TAPIO_CONTAINER(tm, tapio__process, poll);
  if (reap(p, 1))
    exited(p);
  else
    poll_later(p);
}

/* The exit is watched: the pidfd, or waitid now and then. */
static void watch_exit(tapio__process *p) {
  if (p->pidfd >= 0)
    ev_io_start(p->head.loop->ev, &p->exit_io);
  else
    poll_later(p);
}

static void nothing(tapio__process *p) { (void)p; }

static const child_ops real_child = {
  watch_exit, has_exited, signal_child, kill_and_reap, nothing
};

/* ---- A fake child's steps ---------------------------------------------- */

void tapio__process_exited(tapio_transport *t, int returncode) {
  tapio__process *p = to_process(t);
  if (p->reaped)
    return;
  p->reaped = 1;
  p->returncode = returncode;
  if (t->flags & TAPIO__T_MADE)
    exited(p); /* else at the start */
}

/* An exit told before connection_made: told now. */
static void fake_watch(tapio__process *p) {
  if (p->reaped)
    exited(p);
}

static int fake_exited(tapio__process *p) {
  return p->reaped || tapio__vchild_exited(p->fake);
}

static int fake_signal(tapio__process *p, int sig) {
  return tapio__vchild_signal(p->fake, sig);
}

static void fake_kill(tapio__process *p) {
  if (p->reaped)
    return;
  p->returncode = tapio__vchild_kill(p->fake);
  p->reaped = 1;
}

static void fake_release(tapio__process *p) {
  tapio__vchild_release(p->fake);
}

static const child_ops fake_child = {
  fake_watch, fake_exited, fake_signal, fake_kill, fake_release
};

/* process_exited of a child halt() killed, before connection_lost. */
static void run_exit(tapio__task *task) {
  tapio__process *p = TAPIO_CONTAINER(task, tapio__process, exit_task);
  if ((p->head.flags & TAPIO__T_MADE) && proto_of(p)->process_exited)
    proto_of(p)->process_exited(p->head.ud, &p->head);
}

/* ---- The pipes' protocol: forwarding to the SubprocessProtocol ---------- */

static int pipe_fd(tapio__process *p, tapio_transport *pipe) {
  int i;
  for (i = 0; i < 3 && p->pipes[i] != pipe; i++)
    ;
  return i;
}

static void pipe_data(void *ud, tapio_transport *pipe, const char *data,
                      size_t len) {
  tapio__process *p = ud;
  if (proto_of(p)->pipe_data_received)
    proto_of(p)->pipe_data_received(p->head.ud, &p->head, pipe_fd(p, pipe),
                                    data, len);
}

static void pipe_lost(void *ud, tapio_transport *pipe, int code,
                      const char *message) {
  tapio__process *p = ud;
  int fd = pipe_fd(p, pipe);
  if (fd > 2)
    return; /* not one of ours: cannot happen */
  p->pipes[fd] = NULL;
  if (proto_of(p)->pipe_connection_lost)
    proto_of(p)->pipe_connection_lost(p->head.ud, &p->head, fd, code,
                                      message);
  maybe_finish(p);
}

static void pipe_pause(void *ud, tapio_transport *pipe) {
  tapio__process *p = ud;
  (void)pipe;
  if (proto_of(p)->pause_writing)
    proto_of(p)->pause_writing(p->head.ud, &p->head);
}

static void pipe_resume(void *ud, tapio_transport *pipe) {
  tapio__process *p = ud;
  (void)pipe;
  if (proto_of(p)->resume_writing)
    proto_of(p)->resume_writing(p->head.ud, &p->head);
}

static const tapio_protocol pipe_proto = {
  .size = sizeof(tapio_protocol),
  .connection_lost = pipe_lost,
  .pause_writing = pipe_pause,
  .resume_writing = pipe_resume,
  .data_received = pipe_data,
};

/* ---- The kind's steps -------------------------------------------------- */

/* After connection_made: the pipes start their I/O (they were made with
 * the transport, so that closing it inside connection_made closes them
 * with pipe_connection_lost), and the exit is watched. */
static void process_start(tapio_transport *t) {
  tapio__process *p = to_process(t);
  int i;
  for (i = 0; i < 3; i++)
    if (p->pipes[i] && !(p->pipes[i]->flags & TAPIO__T_CLOSING))
      p->pipes[i]->kind->start(p->pipes[i]);
  if (!p->exit_due) /* else aborted inside connection_made */
    p->ops->watch(p);
}

/* asyncio's close(): the pipes close, and a child still running (not one
 * that exited, even unnoticed) is killed; the end comes as usual. */
static void process_close(tapio_transport *t) {
  tapio__process *p = to_process(t);
  int i;
  for (i = 0; i < 3; i++)
    if (p->pipes[i])
      tapio_transport_close(p->pipes[i]);
  if (!p->ops->exited(p))
    p->ops->signal(p, SIGKILL);
  maybe_finish(p);
}

/* abort, a failure, the loop freed: the pipes are aborted with the same
 * code, the child is killed and reaped now, process_exited queued before
 * connection_lost. The pipes' connection_lost tasks are queued first, so
 * they run while this transport still lives. */
static void process_halt(tapio_transport *t) {
  tapio__process *p = to_process(t);
  int i;
  for (i = 0; i < 3; i++)
    if (p->pipes[i])
      tapio__transport_force_close(p->pipes[i], t->lost_code, NULL);
  p->ops->kill_and_reap(p);
  if (!p->exit_due) {
    p->exit_due = 1;
    tapio__task_post(t->loop, &p->exit_task);
  }
}

/* Pipes are left here only when connection_made never ran (the loop was
 * freed first): they were never started and have no task queued. */
static void process_destroy(tapio_transport *t) {
  tapio__process *p = to_process(t);
  int i;
  for (i = 0; i < 3; i++)
    if (p->pipes[i])
      tapio__transport_discard(p->pipes[i]);
  p->ops->kill_and_reap(p);
  p->ops->release(p);
  tapio__free(t->loop, p, sizeof *p);
}

static int process_fd(tapio_transport *t) {
  (void)t;
  return TAPIO_ENOTSUP;
}

static const tapio__kind process_kind = {
  TAPIO_TRANSPORT_SUBPROCESS,
  0,
  sizeof(tapio_subprocess_protocol),
  process_start, process_close, process_halt, process_destroy, process_fd,
  NULL, /* not retained: its pipes and child go with it */
  NULL
};

/* ---- Making one -------------------------------------------------------- */

/* Each pipe transport is marked made (its protocol's connection_made is
 * nothing) and owned. */
static void own_pipes(tapio__process *p) {
  int i;
  for (i = 0; i < 3; i++)
    if (p->pipes[i])
      p->pipes[i]->flags |= TAPIO__T_MADE | TAPIO__T_OWNED;
}

/* The pipe transports on our ends of the child's pipes. */
static int make_pipes(tapio__process *p, int *fds) {
  int i, rc = 0;
  for (i = 0; i < 3; i++) {
    if (fds[i] < 0)
      continue;
    if (rc == 0)
      rc = tapio__pipe_new(p->head.loop, fds[i], i == 0, &pipe_proto, p,
                           &p->pipes[i]);
    if (rc < 0)
      close(fds[i]);
  }
  own_pipes(p);
  return rc;
}

static tapio__process *process_new(tapio_loop *loop, const tapio__child *c,
                                   const tapio_subprocess_protocol *proto,
                                   void *ud) {
  tapio__process *p = tapio__calloc(loop, sizeof *p);
  if (!p)
    return NULL;
  tapio__transport_init(&p->head, &process_kind, loop, proto, ud);
  p->ops = &real_child;
  p->pid = c->pid;
  p->pidfd = c->pidfd;
  p->exit_task.run = run_exit;
  ev_io_init(&p->exit_io, on_exit_io, c->pidfd, EV_READ);
  tapio__timer_init(&p->poll, loop, on_poll);
  p->poll_after = POLL_FIRST;
  return p;
}

/* A child that started, and nothing to tell it to: gone again. */
static void undo_child(tapio__child *c) {
  int i;
  tapio__process p;
  memset(&p, 0, sizeof p);
  p.pid = c->pid;
  p.pidfd = c->pidfd;
  for (i = 0; i < 3; i++)
    if (c->fds[i] >= 0)
      close(c->fds[i]);
  if (!has_exited(&p))
    signal_child(&p, SIGKILL);
  wait_child(&p, 0, &(siginfo_t){0});
  if (c->pidfd >= 0)
    close(c->pidfd);
}

/* The transport made and waiting for its connection_made. */
static int request(tapio__process *p, tapio_connect_fn cb, void *cb_ud,
                   int rc) {
  if (rc == 0)
    rc = tapio__request_transport(p->head.loop, &p->head, cb, cb_ud);
  if (rc < 0)
    tapio__transport_discard(&p->head); /* kills and reaps the child */
  return rc;
}

/* A virtual loop's child: the fake program registered for argv (shell:
 * the command of subprocess_shell). */
static int start_fake(tapio_loop *loop, char *const *argv, size_t nargs,
                      const char *shell,
                      const tapio_subprocess_protocol *proto, void *ud,
                      const tapio_options *opts, tapio_connect_fn cb,
                      void *cb_ud) {
  tapio__child none = {-1, -1, {-1, -1, -1}};
  tapio__process *p = process_new(loop, &none, proto, ud);
  int rc;
  if (!p)
    return TAPIO_ENOMEM;
  rc = tapio__vchild_spawn(loop, &p->head, argv, nargs, shell, opts,
                           &pipe_proto, p, p->pipes, &p->fake);
  if (rc < 0) {
    p->ops = &real_child; /* nothing to kill, nothing to release */
    p->reaped = 1;
    tapio__transport_discard(&p->head);
    return rc;
  }
  p->ops = &fake_child;
  p->pid = tapio__vchild_pid(p->fake);
  own_pipes(p);
  return request(p, cb, cb_ud, 0);
}

static int start(tapio_loop *loop, char *const *argv, size_t nargs,
                 const char *shell, const tapio_subprocess_protocol *proto,
                 void *ud, const tapio_options *opts, tapio_connect_fn cb,
                 void *cb_ud) {
  tapio__child c;
  tapio__process *p;
  int rc;
  if (tapio__virtual(loop))
    return start_fake(loop, argv, nargs, shell, proto, ud, opts, cb, cb_ud);
  rc = tapio__spawn(loop, shell ? "subprocess_shell" : "subprocess_exec",
                    argv, opts, &c);
  if (rc < 0)
    return rc;
  p = process_new(loop, &c, proto, ud);
  if (!p) {
    undo_child(&c);
    return TAPIO_ENOMEM;
  }
  return request(p, cb, cb_ud, make_pipes(p, c.fds));
}

static int bad_args(tapio_loop *loop, const tapio_subprocess_protocol *proto,
                    tapio_connect_fn cb, const tapio_options *opts,
                    int call) {
  tapio__refuse_none(loop);
  if (!loop || !cb || tapio__proto_check(proto, sizeof *proto) < 0)
    return TAPIO_EINVAL;
  if (loop->freeing)
    return TAPIO_ECLOSED; /* a virtual loop's: a fake child (start) */
  if (tapio__opt_int(opts, TAPIO__OPT_START_NEW_SESSION, 0) &&
      tapio__opt_is_set(opts, TAPIO__OPT_PROCESS_GROUP)) {
    /* setpgid fails for a session leader: said here, not as the child's
     * EPERM */
    tapio__refuse(loop, "%s: options 'start_new_session' and "
                  "'process_group' together: a session leader's group is "
                  "its own", call == TAPIO_CALL_SUBPROCESS_EXEC
                  ? "subprocess_exec" : "subprocess_shell");
    return TAPIO_EINVAL;
  }
  return tapio__opts_check(loop, opts, call);
}

int tapio_subprocess_exec(tapio_loop *loop, const char *program,
                          const char *const *args, size_t nargs,
                          const tapio_subprocess_protocol *proto,
                          void *proto_ud, const tapio_options *opts,
                          tapio_connect_fn cb, void *cb_ud) {
  char **argv;
  size_t i, size;
  int rc = bad_args(loop, proto, cb, opts, TAPIO_CALL_SUBPROCESS_EXEC);
  if (rc == 0 && (!program || (nargs && !args) || nargs > 1u << 20))
    rc = TAPIO_EINVAL;
  for (i = 0; rc == 0 && i < nargs; i++)
    if (!args[i])
      rc = TAPIO_EINVAL;
  if (rc < 0)
    return rc;
  size = (nargs + 2) * sizeof *argv;
  argv = tapio__alloc(loop, size);
  if (!argv)
    return TAPIO_ENOMEM;
  argv[0] = (char *)program;
  for (i = 0; i < nargs; i++)
    argv[i + 1] = (char *)args[i];
  argv[nargs + 1] = NULL;
  rc = start(loop, argv, nargs, NULL, proto, proto_ud, opts, cb, cb_ud);
  tapio__free(loop, argv, size);
  return rc;
}

int tapio_subprocess_shell(tapio_loop *loop, const char *command,
                           const tapio_subprocess_protocol *proto,
                           void *proto_ud, const tapio_options *opts,
                           tapio_connect_fn cb, void *cb_ud) {
  const char *exe = tapio__opt_str(opts, TAPIO__OPT_EXECUTABLE);
  /* Python's: the shell given as executable is also its argv[0] */
  char *argv[] = {exe ? (char *)exe : "/bin/sh", "-c", (char *)command,
                  NULL};
  int rc = bad_args(loop, proto, cb, opts, TAPIO_CALL_SUBPROCESS_SHELL);
  if (rc == 0 && !command)
    rc = TAPIO_EINVAL;
  return rc < 0 ? rc : start(loop, argv, 2, command, proto, proto_ud, opts,
                             cb, cb_ud);
}

/* ---- The transport's methods ------------------------------------------- */

int tapio_subprocess_get_pid(tapio_transport *t) {
  if (!is_process(t))
    return t ? TAPIO_ENOTSUP : TAPIO_EINVAL;
  return (int)to_process(t)->pid;
}

tapio_transport *tapio_subprocess_get_pipe_transport(tapio_transport *t,
                                                     int fd) {
  if (!is_process(t) || fd < 0 || fd > 2)
    return NULL;
  return to_process(t)->pipes[fd];
}

int tapio_subprocess_get_returncode(tapio_transport *t, int *returncode) {
  tapio__process *p;
  if (returncode)
    *returncode = 0;
  if (!is_process(t))
    return t ? TAPIO_ENOTSUP : TAPIO_EINVAL;
  p = to_process(t);
  if (!p->reaped)
    return 0;
  if (returncode)
    *returncode = p->returncode;
  return 1;
}

int tapio_subprocess_send_signal(tapio_transport *t, int sig) {
  if (!is_process(t))
    return t ? TAPIO_ENOTSUP : TAPIO_EINVAL;
  if (sig < 0 || sig > SIGRTMAX)
    return TAPIO_EINVAL;
  if (to_process(t)->reaped)
    return TAPIO_ESRCH;
  return to_process(t)->ops->signal(to_process(t), sig);
}

int tapio_subprocess_terminate(tapio_transport *t) {
  return tapio_subprocess_send_signal(t, SIGTERM);
}

int tapio_subprocess_kill(tapio_transport *t) {
  return tapio_subprocess_send_signal(t, SIGKILL);
}
