/* Subprocess transports, their lifetime: exit, returncode, signals, close,
 * abort, programs that cannot start, many children, two loops in two
 * threads, a loop freed with children running. Real children: sh, true,
 * sleep, cat. Data and options are in test_process_io.c. */
#include "pipes.h"

#include <pthread.h>
#include <sched.h>

static const char *const true_argv[] = { "true", NULL };
static const char *const sleep_argv[] = { "sleep", "30", NULL };

/* Every fd to /dev/null: a child with no pipes. */
static tapio_options *devnull_opts(tapio_loop *loop)
{
  return stdio_opts(loop, TAPIO_STDIO_DEVNULL, TAPIO_STDIO_DEVNULL,
                    TAPIO_STDIO_DEVNULL);
}

/* In process_exited: the returncode is known, the child reaped, and every
 * signal is ESRCH, never sent to whoever has the pid now. */
static void signals_after_exit_hook(prec *p, pev ev, int fd)
{
  int rc = -1;
  (void)fd;
  if (ev != PEV_EXITED)
    return;
  CHECK(reaped(p->pid));
  CHECK_EQ(tapio_subprocess_get_returncode(p->t, &rc), 1);
  CHECK_EQ(rc, 0);
  CHECK_ERR(tapio_subprocess_send_signal(p->t, SIGHUP), TAPIO_ESRCH);
  CHECK_ERR(tapio_subprocess_terminate(p->t), TAPIO_ESRCH);
  CHECK_ERR(tapio_subprocess_kill(p->t), TAPIO_ESRCH);
  rec_log(&p->r, "checked");
}

/* P1: after the exit, the returncode, process_exited, connection_lost. */
static void exit_then_lost(void)
{
  tapio_loop *loop = new_loop();
  int rc = -1;
  pid_t pid;
  prec p;
  prec_init(&p);
  p.hook = signals_after_exit_hook;
  CHECK_OK(spawn_wait(loop, &p, true_argv, NULL));
  CHECK_EQ(tapio_subprocess_get_returncode(p.t, &rc), 0);
  pid = tapio_subprocess_get_pid(p.t);
  CHECK(pid > 0);
  CHECK_EQ(tapio_transport_get_kind(p.t), TAPIO_TRANSPORT_SUBPROCESS);
  CHECK_ERR(tapio_transport_get_fd(p.t), TAPIO_ENOTSUP);
  CHECK(tapio_subprocess_get_pipe_transport(p.t, 0) != NULL);
  CHECK(tapio_subprocess_get_pipe_transport(p.t, 3) == NULL);
  WAIT_FOR(loop, p.lost);
  CHECK_EQ(p.exit_known, 1);
  CHECK_EQ(p.returncode, 0);
  CHECK(reaped(pid));
  /* the stdin pipe's reader (the child) went away: EPIPE (see header) */
  CHECK_EVENTS(&p, "lost0:EPIPE lost1:0 lost2:0 exited checked", "lost:0");
  free_loop(loop);
  prec_free(&p);
}

/* P17: no pipes; the exit status of `exit 7`; close after the end. */
static void exit_code_without_pipes(void)
{
  tapio_loop *loop = new_loop();
  tapio_options *o = devnull_opts(loop);
  prec p;
  prec_init(&p);
  CHECK_OK(shell_wait(loop, &p, "exit 7", o));
  tapio_options_free(o);
  CHECK(tapio_subprocess_get_pipe_transport(p.t, 0) == NULL);
  CHECK(tapio_subprocess_get_pipe_transport(p.t, 1) == NULL);
  CHECK(tapio_subprocess_get_pipe_transport(p.t, 2) == NULL);
  WAIT_FOR(loop, p.lost);
  CHECK_STR(p.r.log, "made exited lost:0");
  CHECK_EQ(p.returncode, 7);
  free_loop(loop);
  prec_free(&p);
}

/* P18: kill -9, terminate -15, send_signal(SIGHUP) -1, and SIGHUP even
 * with the parent ignoring it (bpo-31034: the child gets defaults). */
static void signals_give_negative_returncodes(void)
{
  static const struct { int sig; int how; } cases[] = {
    { SIGKILL, 0 }, { SIGTERM, 1 }, { SIGHUP, 2 }, { SIGINT, 2 }
  };
  tapio_loop *loop = new_loop();
  size_t i;
  signal(SIGHUP, SIG_IGN);
  signal(SIGINT, SIG_IGN);
  for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    tapio_options *o = devnull_opts(loop);
    prec p;
    prec_init(&p);
    CHECK_OK(spawn_wait(loop, &p, sleep_argv, o));
    tapio_options_free(o);
    if (cases[i].how == 0)
      CHECK_OK(tapio_subprocess_kill(p.t));
    else if (cases[i].how == 1)
      CHECK_OK(tapio_subprocess_terminate(p.t));
    else
      CHECK_OK(tapio_subprocess_send_signal(p.t, cases[i].sig));
    WAIT_FOR(loop, p.lost);
    CHECK_STR(p.r.log, "made exited lost:0");
    CHECK_EQ(p.returncode, -cases[i].sig);
    prec_free(&p);
  }
  free_loop(loop);
}

static void bad_signal_numbers(void)
{
  tapio_loop *loop = new_loop();
  tapio_options *o = devnull_opts(loop);
  prec p;
  prec_init(&p);
  CHECK_OK(spawn_wait(loop, &p, sleep_argv, o));
  tapio_options_free(o);
  CHECK_ERR(tapio_subprocess_send_signal(p.t, -1), TAPIO_EINVAL);
  CHECK_ERR(tapio_subprocess_send_signal(p.t, 1000), TAPIO_EINVAL);
  CHECK_OK(tapio_subprocess_send_signal(p.t, 0)); /* it exists */
  CHECK_ERR(tapio_subprocess_send_signal(NULL, SIGTERM), TAPIO_EINVAL);
  CHECK_OK(tapio_transport_close(p.t));
  WAIT_FOR(loop, p.lost);
  CHECK_EQ(p.returncode, -SIGKILL);
  free_loop(loop);
  prec_free(&p);
}

/* p, a `sleep 30` with its three pipes; its pid. */
static pid_t start_sleep(tapio_loop *loop, prec *p)
{
  prec_init(p);
  CHECK_OK(spawn_wait(loop, p, sleep_argv, NULL));
  return tapio_subprocess_get_pid(p->t);
}

/* P9: close() kills a running child and closes its pipes. */
static void close_kills_running_child(void)
{
  tapio_loop *loop = new_loop();
  prec p;
  pid_t pid = start_sleep(loop, &p);
  CHECK_OK(tapio_transport_close(p.t));
  CHECK_EQ(tapio_transport_is_closing(p.t), 1);
  CHECK_OK(tapio_transport_close(p.t));
  WAIT_FOR(loop, p.lost);
  CHECK_EVENTS(&p, "lost0:0 lost1:0 lost2:0 exited", "lost:0");
  CHECK_EQ(p.returncode, -SIGKILL);
  CHECK(reaped(pid));
  free_loop(loop);
  prec_free(&p);
}

/* ... but not one that has exited, even before the loop noticed (through
 * a pidfd a signal to the zombie would change nothing visible: what shows
 * is that close reports the real exit, 0, and finishes as usual). */
static void close_spares_finished_child(void)
{
  tapio_loop *loop = new_loop();
  siginfo_t si;
  prec p;
  prec_init(&p);
  CHECK_OK(spawn_wait(loop, &p, true_argv, NULL));
  memset(&si, 0, sizeof si); /* wait for the exit without reaping */
  CHECK(waitid(P_PID, (id_t)tapio_subprocess_get_pid(p.t), &si,
               WEXITED | WNOWAIT) == 0);
  CHECK_EQ(p.exited, 0);
  CHECK_OK(tapio_transport_close(p.t));
  WAIT_FOR(loop, p.lost);
  CHECK_EQ(p.returncode, 0);
  free_loop(loop);
  prec_free(&p);
}

/* close() inside connection_made: the pipes still report their end. */
static void close_in_connection_made_hook(prec *p, pev ev, int fd)
{
  (void)fd;
  if (ev == PEV_MADE)
    CHECK_OK(tapio_transport_close(p->t));
}

static void close_in_connection_made(void)
{
  tapio_loop *loop = new_loop();
  prec p;
  prec_init(&p);
  p.hook = close_in_connection_made_hook;
  CHECK_OK(spawn_wait(loop, &p, sleep_argv, NULL));
  WAIT_FOR(loop, p.lost);
  CHECK_EVENTS(&p, "lost0:0 lost1:0 lost2:0 exited", "lost:0");
  CHECK_EQ(p.returncode, -SIGKILL);
  free_loop(loop);
  prec_free(&p);
}

/* close or abort from inside each callback: one end, in order. */
typedef struct inside {
  pev ev;
  int abort;
} inside;

static void act_inside_hook(prec *p, pev ev, int fd)
{
  const inside *in = p->user;
  (void)fd;
  if (ev != in->ev || p->lost)
    return;
  if (in->abort)
    CHECK_OK(tapio_transport_abort(p->t));
  else
    CHECK_OK(tapio_transport_close(p->t));
  CHECK_EQ(tapio_transport_is_closing(p->t), 1);
}

static void close_inside_callbacks(void)
{
  static const pev evs[] = { PEV_MADE, PEV_DATA, PEV_PIPE_LOST, PEV_EXITED };
  tapio_loop *loop = new_loop();
  size_t i;
  for (i = 0; i < 2 * sizeof evs / sizeof evs[0]; i++) {
    inside in = { evs[i / 2], (int)(i % 2) };
    prec p;
    prec_init(&p);
    p.hook = act_inside_hook;
    p.user = &in;
    /* stdout ends early; the child only exits by itself for PEV_EXITED */
    CHECK_OK(shell_wait(loop, &p, in.ev == PEV_EXITED
                                      ? "echo hi"
                                      : "echo hi; exec >&-; exec sleep 30",
                        NULL));
    WAIT_FOR(loop, p.lost);
    CHECK_EVENTS(&p, "exited", "lost:0");
    CHECK(p.pipe_lost[0] && p.pipe_lost[1] && p.pipe_lost[2]);
    prec_free(&p);
  }
  free_loop(loop);
}

/* abort() kills at once; process_exited still comes before the end. */
static void abort_kills_at_once(void)
{
  tapio_loop *loop = new_loop();
  prec p;
  pid_t pid = start_sleep(loop, &p);
  CHECK_OK(tapio_transport_abort(p.t));
  CHECK(reaped(pid));
  CHECK_STR(p.r.log, "made");
  WAIT_FOR(loop, p.lost);
  CHECK_STR(p.r.log, "made lost0:0 lost1:0 lost2:0 exited lost:0");
  CHECK_EQ(p.returncode, -SIGKILL);
  free_loop(loop);
  prec_free(&p);
}

/* A child that closes stdout early and keeps running: that pipe ends
 * first, the rest when it is killed. */
static void child_closes_stdout_early(void)
{
  tapio_loop *loop = new_loop();
  prec p;
  prec_init(&p);
  CHECK_OK(shell_wait(loop, &p, "exec >&-; exec sleep 30", NULL));
  WAIT_FOR(loop, p.pipe_lost[1]);
  CHECK_STR(p.r.log, "made lost1:0");
  CHECK_OK(tapio_subprocess_kill(p.t));
  WAIT_FOR(loop, p.lost);
  CHECK_EVENTS(&p, "lost0:EPIPE lost2:0 exited", "lost:0");
  free_loop(loop);
  prec_free(&p);
}

/* A grandchild holding stdout open does not delay process_exited
 * (python/cpython#119710); connection_lost waits for the pipe. */
static void grandchild_holds_pipe(void)
{
  tapio_loop *loop = new_loop();
  tapio_options *o = new_options(loop);
  pid_t grandchild;
  prec p;
  prec_init(&p);
  CHECK_OK(tapio_options_set_int(o, "stdin", TAPIO_STDIO_DEVNULL));
  CHECK_OK(shell_wait(loop, &p, "sleep 30 & echo $!", o));
  tapio_options_free(o);
  WAIT_FOR(loop, p.exited);
  CHECK_EQ(p.returncode, 0);
  CHECK_EQ(p.pipe_lost[1], 0);
  CHECK_EQ(p.lost, 0);
  WAIT_FOR(loop, p.nout[1] > 0 && p.out[1][p.nout[1] - 1] == '\n');
  grandchild = (pid_t)atoi(p.out[1]);
  CHECK(grandchild > 0);
  CHECK(kill(grandchild, SIGKILL) == 0);
  WAIT_FOR(loop, p.lost);
  CHECK_EVENTS(&p, "exited lost1:0 lost2:0", "lost:0");
  free_loop(loop);
  prec_free(&p);
}

/* ---- Programs that cannot start ----------------------------------------- */

/* Each is the call's error, with no child left (not even one that exited
 * 127) and no descriptor kept. */
static void spawn_failures(void)
{
  tapio_loop *loop = new_loop();
  tapio_options *o = new_options(loop);
  char path[] = "/tmp/tapio-noexec-XXXXXX", cmd[64];
  const char *argv[] = { path, NULL };
  const char *missing[] = { "tapio-no-such-program", NULL };
  const char *slash[] = { "/nonexistent/prog", NULL };
  int fd = mkstemp(path), before;
  prec p;
  prec_init(&p);
  CHECK(fd >= 0);
  CHECK(write(fd, "#!/bin/sh\n", 10) == 10);
  CHECK(close(fd) == 0);
  CHECK(chmod(path, 0644) == 0);
  before = fd_count();
  CHECK_ERR(spawn_wait(loop, &p, missing, NULL), TAPIO_ENOENT);
  CHECK_ERR(spawn_wait(loop, &p, slash, NULL), TAPIO_ENOENT);
  CHECK_ERR(spawn_wait(loop, &p, argv, NULL), TAPIO_EACCES);
  CHECK_OK(tapio_options_set_str(o, "cwd", "/nonexistent"));
  CHECK_ERR(spawn_wait(loop, &p, true_argv, o), TAPIO_ENOENT);
  CHECK_OK(tapio_options_set_str(o, "cwd", path));
  CHECK_ERR(spawn_wait(loop, &p, true_argv, o), TAPIO_ENOTDIR);
  snprintf(cmd, sizeof cmd, "/tmp");
  CHECK_OK(tapio_options_set_str(o, "cwd", cmd));
  CHECK_ERR(spawn_wait(loop, &p, missing, o), TAPIO_ENOENT);
  CHECK_EQ(fd_count(), before);
  CHECK(waitpid(-1, NULL, WNOHANG) < 0 && errno == ECHILD);
  CHECK_STR(p.r.log, "");
  CHECK(unlink(path) == 0);
  tapio_options_free(o);
  spin(loop, 2);
  CHECK_STR(p.r.log, "");
  free_loop(loop);
  prec_free(&p);
}

/* uvloop: ten failed spawns (each with its three pipes made and undone)
 * leave the descriptor count unchanged. */
static void ten_failed_spawns_leak_nothing(void)
{
  tapio_loop *loop = new_loop();
  const char *missing[] = { "tapio-no-such-program", NULL };
  uint64_t mem;
  int before, i;
  prec p;
  prec_init(&p);
  CHECK_OK(spawn_wait(loop, &p, true_argv, NULL)); /* warm up */
  WAIT_FOR(loop, p.lost);
  prec_free(&p);
  before = fd_count();
  mem = tapio_loop_memory(loop);
  for (i = 0; i < 10; i++) {
    prec_init(&p);
    CHECK_ERR(spawn_wait(loop, &p, missing, NULL), TAPIO_ENOENT);
    prec_free(&p);
  }
  CHECK_EQ(fd_count(), before);
  CHECK_EQ(tapio_loop_memory(loop), mem);
  for (i = 0; i < 10; i++) { /* and ten that ran, with their pipes */
    prec_init(&p);
    CHECK_OK(spawn_wait(loop, &p, true_argv, NULL));
    WAIT_FOR(loop, p.lost);
    prec_free(&p);
  }
  CHECK_EQ(fd_count(), before);
  CHECK_EQ(tapio_loop_memory(loop), mem);
  free_loop(loop);
}

/* libuv's spawn_exercise_sigchld_issue: 100 spawns that fail, then one
 * that runs: exactly one exit is seen, no child is left. */
static void failures_then_one_exit(void)
{
  tapio_loop *loop = new_loop();
  const char *missing[] = { "tapio-no-such-program", NULL };
  int i;
  prec p;
  for (i = 0; i < 100; i++) {
    prec_init(&p);
    CHECK_ERR(spawn_wait(loop, &p, missing, NULL), TAPIO_ENOENT);
    prec_free(&p);
  }
  prec_init(&p);
  CHECK_OK(spawn_wait(loop, &p, true_argv, NULL));
  WAIT_FOR(loop, p.lost);
  CHECK_EQ(p.exited, 1);
  CHECK(strstr(p.r.log, "BAD") == NULL);
  CHECK(waitpid(-1, NULL, WNOHANG) < 0 && errno == ECHILD);
  free_loop(loop);
  prec_free(&p);
}

/* Bad arguments: refused before anything is made. */
static void refusals(void)
{
  tapio_loop *loop = new_loop();
  tapio_options *o = new_options(loop);
  const char *args[] = { NULL };
  tapio_subprocess_protocol small = prec_proto;
  small.size = sizeof(tapio_subprocess_protocol) - sizeof(void *);
  CHECK_ERR(tapio_subprocess_exec(NULL, "true", NULL, 0, &prec_proto, NULL,
                                  NULL, never_connected, NULL),
            TAPIO_EINVAL);
  CHECK_ERR(tapio_subprocess_exec(loop, NULL, NULL, 0, &prec_proto, NULL,
                                  NULL, never_connected, NULL),
            TAPIO_EINVAL);
  CHECK_ERR(tapio_subprocess_exec(loop, "true", args, 1, &prec_proto, NULL,
                                  NULL, never_connected, NULL),
            TAPIO_EINVAL);
  CHECK_ERR(tapio_subprocess_exec(loop, "true", NULL, 0, &small, NULL, NULL,
                                  never_connected, NULL), TAPIO_EINVAL);
  CHECK_ERR(tapio_subprocess_shell(loop, NULL, &prec_proto, NULL, NULL,
                                   never_connected, NULL), TAPIO_EINVAL);
  /* P19: no such options; stdout for stdin; a socket option */
  CHECK_ERR(tapio_options_set_int(o, "bufsize", 0), TAPIO_EINVAL);
  CHECK_ERR(tapio_options_set_int(o, "universal_newlines", 1),
            TAPIO_EINVAL);
  CHECK_ERR(tapio_options_set_int(o, "stdin", -5), TAPIO_EINVAL);
  CHECK_ERR(tapio_options_set_str(o, "env", "A=1"), TAPIO_EINVAL);
  CHECK_ERR(tapio_options_add_str(o, "cwd", "/"), TAPIO_EINVAL);
  CHECK_ERR(tapio_options_add_int(o, "pass_fds", -1), TAPIO_EINVAL);
  CHECK_OK(tapio_options_set_int(o, "stdin", TAPIO_STDIO_STDOUT));
  CHECK_ERR(tapio_subprocess_exec(loop, "true", NULL, 0, &prec_proto, NULL,
                                  o, never_connected, NULL), TAPIO_EINVAL);
  tapio_options_free(o);
  o = new_options(loop);
  CHECK_OK(tapio_options_set_int(o, "stdout", 1000)); /* not open */
  CHECK_ERR(tapio_subprocess_exec(loop, "true", NULL, 0, &prec_proto, NULL,
                                  o, never_connected, NULL), TAPIO_EBADF);
  tapio_options_free(o);
  o = new_options(loop);
  CHECK_OK(tapio_options_add_int(o, "pass_fds", 1000));
  CHECK_ERR(tapio_subprocess_exec(loop, "true", NULL, 0, &prec_proto, NULL,
                                  o, never_connected, NULL), TAPIO_EBADF);
  tapio_options_free(o);
  o = new_options(loop);
  CHECK_OK(tapio_options_set_int(o, "nodelay", 1));
  CHECK_ERR(tapio_subprocess_shell(loop, "true", &prec_proto, NULL, o,
                                   never_connected, NULL), TAPIO_EINVAL);
  tapio_options_free(o);
  CHECK(waitpid(-1, NULL, WNOHANG) < 0 && errno == ECHILD);
  free_loop(loop);
}

/* ---- Many children, many loops ------------------------------------------ */

/* 200 children at once, every exit seen. */
static void two_hundred_children(void)
{
  enum { N = 200 };
  tapio_loop *loop = new_loop();
  tapio_options *o = devnull_opts(loop);
  static prec ps[N];
  conn_wait ws[N];
  int i, lost = 0, before = fd_count();
  for (i = 0; i < N; i++) {
    prec_init(&ps[i]);
    memset(&ws[i], 0, sizeof ws[i]);
    CHECK_OK(tapio_subprocess_shell(loop, "exit 3", &prec_proto, &ps[i], o,
                                    on_connected, &ws[i]));
  }
  tapio_options_free(o);
  for (i = 0; i < N; i++) {
    WAIT_FOR(loop, ps[i].lost);
    CHECK_STR(ps[i].r.log, "made exited lost:0");
    CHECK_EQ(ps[i].returncode, 3);
    lost += ps[i].lost;
    prec_free(&ps[i]);
  }
  CHECK_EQ(lost, N);
  CHECK_EQ(fd_count(), before);
  CHECK(waitpid(-1, NULL, WNOHANG) < 0 && errno == ECHILD);
  free_loop(loop);
}

/* Two loops in two threads, each running children at once. */
static void *thread_children(void *arg)
{
  enum { N = 20 };
  tapio_loop *loop = new_loop();
  prec ps[N];
  conn_wait ws[N];
  int i;
  (void)arg;
  for (i = 0; i < N; i++) {
    prec_init(&ps[i]);
    memset(&ws[i], 0, sizeof ws[i]);
    CHECK_OK(tapio_subprocess_shell(loop, "echo $$", &prec_proto, &ps[i],
                                    NULL, on_connected, &ws[i]));
  }
  for (i = 0; i < N; i++) { /* each its own output (gh-100133) */
    WAIT_FOR(loop, ps[i].lost);
    CHECK_EQ(ps[i].returncode, 0);
    CHECK(ps[i].nout[1] > 0 && ps[i].out[1][ps[i].nout[1] - 1] == '\n');
    CHECK_EQ(atoi(ps[i].out[1]), ps[i].pid);
    prec_free(&ps[i]);
  }
  free_loop(loop);
  return NULL;
}

static void two_loops_two_threads(void)
{
  pthread_t a, b;
  CHECK(pthread_create(&a, NULL, thread_children, NULL) == 0);
  CHECK(pthread_create(&b, NULL, thread_children, NULL) == 0);
  CHECK(pthread_join(a, NULL) == 0);
  CHECK(pthread_join(b, NULL) == 0);
  CHECK(waitpid(-1, NULL, WNOHANG) < 0 && errno == ECHILD);
}

/* A loop freed with children running kills and reaps them: the protocol
 * hears the end, and no zombie is left. */
static void loop_freed_with_children(void)
{
  tapio_loop *loop = new_loop();
  pid_t a, b;
  prec p, q;
  prec_init(&p);
  prec_init(&q);
  CHECK_OK(spawn_wait(loop, &p, sleep_argv, NULL));
  CHECK_OK(shell_wait(loop, &q, "exec sleep 30", NULL));
  a = tapio_subprocess_get_pid(p.t);
  b = tapio_subprocess_get_pid(q.t);
  free_loop(loop);
  CHECK_EVENTS(&p, "lost0:ECANCELED lost1:ECANCELED lost2:ECANCELED exited",
               "lost:ECANCELED");
  CHECK_EQ(p.returncode, -SIGKILL);
  CHECK_EQ(q.returncode, -SIGKILL);
  CHECK(reaped(a) && reaped(b));
  CHECK(kill(a, 0) < 0 && errno == ESRCH);
  prec_free(&p);
  prec_free(&q);
}

/* p, a `sleep 30` whose subprocess_exec is pending: w is its
 * completion's. */
static void exec_sleep_pending(tapio_loop *loop, conn_wait *w, prec *p)
{
  prec_init(p);
  CHECK_OK(tapio_subprocess_exec(loop, "sleep", sleep_argv + 1, 1,
                                 &prec_proto, p, NULL, on_connected, w));
}

/* Freed before connection_made ran: the child is killed and reaped, the
 * completion gets ECANCELED, nothing is told to the protocol. */
static void loop_freed_before_made(void)
{
  tapio_loop *loop = new_loop();
  conn_wait w = { 0 };
  prec p;
  exec_sleep_pending(loop, &w, &p);
  free_loop(loop);
  CHECK_EQ(w.done, 1);
  CHECK_ERR(w.status, TAPIO_ECANCELED);
  CHECK_STR(p.r.log, "");
  CHECK(waitpid(-1, NULL, WNOHANG) < 0 && errno == ECHILD);
  prec_free(&p);
}

/* A pending subprocess_exec cancelled before connection_made: the child
 * is killed and reaped at once, and nobody is called, then or later. */
static void cancelled_before_made(void)
{
  tapio_loop *loop = new_loop();
  conn_wait w = { 0 };
  prec p;
  exec_sleep_pending(loop, &w, &p);
  CHECK_EQ(tapio_cancel_pending(loop, &w), 1);
  CHECK(waitpid(-1, NULL, WNOHANG) < 0 && errno == ECHILD);
  CHECK_EQ(tapio_cancel_pending(loop, &w), 0);
  spin(loop, 3);
  CHECK_EQ(w.done, 0);
  CHECK_STR(p.r.log, "");
  free_loop(loop);
  prec_free(&p);
}

/* python/cpython#87744: a signal sent after the child exited but before
 * the loop noticed reaches the zombie, harmless, and takes nothing away
 * from the loop: the exit status is still the child's own (asyncio lost
 * it, 255, when send_signal's waitpid raced the child watcher's). */
static void signal_to_a_zombie_keeps_the_status(void)
{
  tapio_loop *loop = new_loop();
  tapio_options *o = devnull_opts(loop);
  siginfo_t si;
  prec p;
  prec_init(&p);
  CHECK_OK(shell_wait(loop, &p, "exit 3", o));
  tapio_options_free(o);
  memset(&si, 0, sizeof si); /* the exit, left for tapio to reap */
  CHECK(waitid(P_PID, (id_t)tapio_subprocess_get_pid(p.t), &si,
               WEXITED | WNOWAIT) == 0);
  CHECK_EQ(p.exited, 0);
  CHECK_OK(tapio_subprocess_terminate(p.t));
  CHECK_OK(tapio_subprocess_send_signal(p.t, SIGHUP));
  WAIT_FOR(loop, p.lost);
  CHECK_STR(p.r.log, "made exited lost:0");
  CHECK_EQ(p.returncode, 3);
  free_loop(loop);
  prec_free(&p);
}

/* In the pid namespace of reused_pid_is_left_alone: makes the next fork
 * take pid, forks a process that waits for signals there; its pid. */
static pid_t sleeper_at(pid_t pid)
{
  FILE *f = fopen("/proc/sys/kernel/ns_last_pid", "w");
  pid_t s;
  CHECK(f != NULL);
  CHECK(fprintf(f, "%d", (int)pid - 1) > 0);
  CHECK(fclose(f) == 0);
  s = fork();
  CHECK(s >= 0);
  if (s == 0)
    for (;;)
      pause();
  return s;
}

/* The test proper, as pid 1 of a pid namespace of its own. */
static void reused_pid_scenario(void)
{
  tapio_loop *loop = new_loop();
  tapio_options *o = stdio_opts(loop, TAPIO_STDIO_DEVNULL, TAPIO_STDIO_PIPE,
                                TAPIO_STDIO_DEVNULL);
  pid_t pid, other;
  prec p;
  prec_init(&p);
  p.hook = prec_pause_stdout_hook; /* it outlives the exit */
  CHECK_OK(spawn_wait(loop, &p, true_argv, o));
  tapio_options_free(o);
  pid = tapio_subprocess_get_pid(p.t);
  WAIT_FOR(loop, p.exited);
  CHECK(reaped(pid));
  other = sleeper_at(pid); /* the pid is somebody else's now */
  CHECK_EQ(other, pid);
  CHECK_ERR(tapio_subprocess_kill(p.t), TAPIO_ESRCH);
  CHECK_ERR(tapio_subprocess_terminate(p.t), TAPIO_ESRCH);
  CHECK_ERR(tapio_subprocess_send_signal(p.t, SIGINT), TAPIO_ESRCH);
  CHECK_ERR(tapio_subprocess_send_signal(p.t, 0), TAPIO_ESRCH);
  CHECK_OK(tapio_transport_close(p.t)); /* kills nobody either */
  WAIT_FOR(loop, p.lost);
  CHECK_EQ(p.returncode, 0);
  CHECK(waitpid(other, NULL, WNOHANG) == 0); /* it lives on, unsignalled */
  CHECK(kill(other, SIGKILL) == 0);
  CHECK(waitpid(other, NULL, 0) == other);
  free_loop(loop);
  prec_free(&p);
}

/* Waits for child; its exit status (-1 if a signal ended it). */
static int exit_status_of(pid_t child)
{
  int status;
  CHECK(waitpid(child, &status, 0) == child);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* In a process of its own (a process that made a pid namespace can fork
 * only once in it, and LeakSanitizer forks): a user and a pid namespace,
 * the scenario as its pid 1. LeakSanitizer cannot follow pids there, so
 * both end with _exit; their leaks show in the tests above. */
static void in_a_pid_namespace(void (*scenario)(void))
{
  uid_t uid = getuid();
  FILE *map;
  pid_t init;
  if (unshare(CLONE_NEWUSER | CLONE_NEWPID) != 0)
    _exit(TEST_SKIP_STATUS);
  map = fopen("/proc/self/uid_map", "w"); /* ourselves as ourselves */
  CHECK(map != NULL);
  CHECK(fprintf(map, "%d %d 1", (int)uid, (int)uid) > 0);
  CHECK(fclose(map) == 0);
  init = fork();
  CHECK(init >= 0);
  if (init == 0) {
    scenario();
    fflush(NULL);
    _exit(0);
  }
  _exit(exit_status_of(init) == 0 ? 0 : 1);
}

/* python/cpython#127049: once the child is reaped its pid may go to
 * another process, which must never get the signals of kill, terminate
 * and send_signal. A pid namespace of the test's own (through a user
 * namespace: no privilege needed) lets it hand the pid out on purpose. */
static void reused_pid_is_left_alone(void)
{
  pid_t x;
  int rc;
  fflush(NULL);
  x = fork();
  CHECK(x >= 0);
  if (x == 0)
    in_a_pid_namespace(reused_pid_scenario);
  rc = exit_status_of(x);
  if (rc == TEST_SKIP_STATUS)
    SKIP("no user and pid namespaces here");
  CHECK_EQ(rc, 0);
}

/* bpo-32115: with SIGCHLD ignored the kernel reaps children itself; the
 * exit is still seen (returncode 255: the status is gone), no hang. */
static void sigchld_ignored(void)
{
  tapio_loop *loop = new_loop();
  tapio_options *o = devnull_opts(loop);
  prec p;
  prec_init(&p);
  signal(SIGCHLD, SIG_IGN);
  CHECK_OK(shell_wait(loop, &p, "exit 5", o));
  tapio_options_free(o);
  WAIT_FOR(loop, p.lost);
  CHECK_STR(p.r.log, "made exited lost:0");
  CHECK_EQ(p.returncode, 255);
  free_loop(loop);
  prec_free(&p);
}

TEST_MAIN(
  TEST(exit_then_lost),
  TEST(exit_code_without_pipes),
  TEST(signals_give_negative_returncodes),
  TEST(bad_signal_numbers),
  TEST(close_kills_running_child),
  TEST(close_spares_finished_child),
  TEST(close_in_connection_made),
  TEST(close_inside_callbacks),
  TEST(abort_kills_at_once),
  TEST(child_closes_stdout_early),
  TEST(grandchild_holds_pipe),
  TEST(spawn_failures),
  TEST(ten_failed_spawns_leak_nothing),
  TEST(failures_then_one_exit),
  TEST(refusals),
  TEST(two_hundred_children),
  TEST(two_loops_two_threads),
  TEST(loop_freed_with_children),
  TEST(loop_freed_before_made),
  TEST(cancelled_before_made),
  TEST(sigchld_ignored),
  TEST(signal_to_a_zombie_keeps_the_status),
  TEST(reused_pid_is_left_alone)
)
