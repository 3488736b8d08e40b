/* Fake children: what subprocess_exec and subprocess_shell start on a
 * virtual loop, for programs a test registered (capi/tapio.h, "Fake
 * programs"). The subprocess transport is process.c's own, with its pipe
 * forwarding and its order of callbacks; only its child differs (process.c
 * chooses the fake's steps once, when it starts one). Each piped fd is a
 * memory pair of pipe transports (memory.c): the parent's end is the
 * subprocess transport's pipe, the other the fake's, so that flow
 * control, end of file and delivery are the links' own.
 *
 * A child runs until it exits or a signal ends it. Exit closes its ends
 * (what they hold is flushed first, as a real process's exit flushes its
 * output, so a child whose reader never reads never exits); a signal
 * aborts them. Once every end is gone the subprocess transport hears of
 * the exit, from a task of the loop. */
#include "tapio_int.h"

#include <signal.h>
#include <string.h>

/* Above Linux's largest pid_max (2^22): never a real process's. */
#define FIRST_PID (4194304 + 1)

/* A registered program. */
typedef struct tapio__fake {
  struct tapio__fake *next;
  char *name;
  tapio_fake_program prog;
  void *ud;
} fake;

enum { RUNNING, EXITING, DEAD };

struct tapio_fake_child {
  tapio_loop *loop;
  tapio_fake_program prog; /* copied: the program may be replaced */
  void *ud;
  tapio_transport *process; /* told of the exit; NULL once let go */
  tapio_transport *ends[3]; /* the fake's; [2] == [1] when merged */
  char **argv;              /* argv[0] the program, then nargs more */
  size_t nargs;
  char *cwd;
  char **env;               /* the "env" option's entries, or NULL */
  size_t nenv;
  void *data;
  int pid;
  int state, status;
  int started;              /* started ran: ended is owed */
  int ended;                /* ended was called */
  int told;                 /* the exit task was posted */
  uint64_t pending;         /* signals sent, not yet delivered */
  tapio__task start_task, signal_task, exit_task, ended_task;
  int refs;                 /* the process's, and the program's until ended */
};

/* ---- The registry ------------------------------------------------------ */

static fake **find_slot(tapio__kit *kit, const char *name) {
  fake **f;
  for (f = &kit->fakes; *f; f = &(*f)->next)
    if (strcmp((*f)->name, name) == 0)
      return f;
  return NULL;
}

static void fake_free(tapio_loop *loop, fake *f) {
  tapio__strfree(loop, f->name);
  tapio__free(loop, f, sizeof *f);
}

int tapio_loop_add_fake_program(tapio_loop *loop, const char *name,
                                const tapio_fake_program *prog, void *ud) {
  tapio__kit *kit;
  fake **slot, *f;
  if (!loop || !name || !*name || (prog && (prog->size < sizeof *prog ||
                                            !prog->started)))
    return TAPIO_EINVAL;
  if (!tapio__virtual(loop))
    return TAPIO_ENOTSUP;
  kit = loop->kit;
  slot = find_slot(kit, name);
  if (!prog) { /* removed */
    if (slot) {
      f = *slot;
      *slot = f->next;
      fake_free(loop, f);
    }
    return 0;
  }
  f = slot ? *slot : tapio__calloc(loop, sizeof *f);
  if (!f || (!slot && !(f->name = tapio__strdup(loop, name)))) {
    tapio__free(loop, f, sizeof *f);
    return TAPIO_ENOMEM;
  }
  f->prog = *prog;
  f->ud = ud;
  if (!slot) {
    f->next = kit->fakes;
    kit->fakes = f;
  }
  return 0;
}

void tapio__fakes_free(tapio_loop *loop) {
  while (loop->kit && loop->kit->fakes) {
    fake *f = loop->kit->fakes;
    loop->kit->fakes = f->next;
    fake_free(loop, f);
  }
}

/* The program for argv: its name, then the name's last part
 * ("/usr/bin/sort" finds "sort"). A shell command: the command itself
 * (*whole set), then "sh". */
static fake *lookup(tapio__kit *kit, char *const *argv, const char *shell,
                    int *whole) {
  fake **f = find_slot(kit, shell ? shell : argv[0]);
  const char *base = strrchr(argv[0], '/');
  *whole = shell && f;
  if (!f && !shell && base && base[1])
    f = find_slot(kit, base + 1);
  if (!f && shell)
    f = find_slot(kit, "sh");
  return f ? *f : NULL;
}

/* Why there is no child, for tapio_loop_error_message. */
static void refuse(tapio_loop *loop, const char *program, const char *shell) {
  tapio__refuse(loop, "no fake program '%.60s'%s on this virtual loop, "
                "which starts no real child: register one with "
                "tapio_loop_add_fake_program (Lua: testing.fake_program)",
                shell ? shell : program, shell ? " (nor 'sh')" : "");
}

/* ---- Copies of what the child was started with ------------------------ */

static char **strings_copy(tapio_loop *loop, char *const *src, size_t n) {
  char **out = tapio__calloc(loop, (n + 1) * sizeof *out);
  size_t i;
  for (i = 0; out && i < n; i++)
    if (!(out[i] = tapio__strdup(loop, src[i]))) {
      while (i-- > 0)
        tapio__strfree(loop, out[i]);
      tapio__free(loop, out, (n + 1) * sizeof *out);
      return NULL;
    }
  return out;
}

static void strings_free(tapio_loop *loop, char **list, size_t n) {
  size_t i;
  for (i = 0; list && i < n; i++)
    tapio__strfree(loop, list[i]);
  tapio__free(loop, list, list ? (n + 1) * sizeof *list : 0);
}

static int copy_start(tapio__vchild *c, char *const *argv, size_t nargs,
                      const tapio_options *opts) {
  tapio_loop *loop = c->loop;
  const char *cwd = tapio__opt_str(opts, TAPIO__OPT_CWD);
  char *const *env = tapio__opt_list(opts, TAPIO__OPT_ENV, &c->nenv);
  c->nargs = nargs;
  if (!(c->argv = strings_copy(loop, argv, nargs + 1)))
    return TAPIO_ENOMEM;
  if (cwd && !(c->cwd = tapio__strdup(loop, cwd)))
    return TAPIO_ENOMEM;
  if (tapio__opt_is_set(opts, TAPIO__OPT_ENV) &&
      !(c->env = strings_copy(loop, env, c->nenv)))
    return TAPIO_ENOMEM;
  return 0;
}

/* ---- The end ----------------------------------------------------------- */

static void child_free(tapio__vchild *c) {
  tapio_loop *loop = c->loop;
  int i;
  tapio__task_unpost(loop, &c->start_task);
  tapio__task_unpost(loop, &c->signal_task);
  tapio__task_unpost(loop, &c->exit_task);
  tapio__task_unpost(loop, &c->ended_task);
  for (i = 0; i < 3; i++)
    if (c->ends[i])
      tapio__memory_on_gone(c->ends[i], NULL, NULL);
  strings_free(loop, c->argv, c->nargs + 1);
  strings_free(loop, c->env, c->nenv);
  tapio__strfree(loop, c->cwd);
  tapio__free(loop, c, sizeof *c);
}

static void unref(tapio__vchild *c) {
  if (--c->refs == 0)
    child_free(c);
}

static int ends_left(const tapio__vchild *c) {
  return c->ends[0] || c->ends[1] || c->ends[2];
}

/* The parent hears of the exit once the status is known and every end of
 * the child's is gone (what it wrote is in the links by then). */
static void maybe_tell(tapio__vchild *c) {
  if (c->state != DEAD || ends_left(c) || !c->process || c->told)
    return;
  c->told = 1;
  tapio__task_post(c->loop, &c->exit_task);
}

static void run_exit(tapio__task *task) {
  tapio__vchild *c = TAPIO_CONTAINER(task, tapio__vchild, exit_task);
  tapio_transport *process = c->process;
  c->process = NULL;
  if (process)
    tapio__process_exited(process, c->status);
}

static void run_ended(tapio__task *task) {
  tapio__vchild *c = TAPIO_CONTAINER(task, tapio__vchild, ended_task);
  c->ended = 1;
  if (c->prog.ended)
    c->prog.ended(c->ud, c, c->status);
  unref(c); /* the program's */
}

/* The status is final: the program hears of it (from the loop). */
static void become_dead(tapio__vchild *c, int status) {
  c->state = DEAD;
  c->status = status;
  c->pending = 0;
  tapio__task_unpost(c->loop, &c->signal_task);
  if (c->started && !c->ended)
    tapio__task_post(c->loop, &c->ended_task);
  maybe_tell(c);
}

/* A signal ends it: its ends are aborted, as the kernel closes a killed
 * process's descriptors (what it held back is lost). */
static void die(tapio__vchild *c, int sig) {
  int i;
  for (i = 0; i < 3; i++)
    if (c->ends[i])
      tapio__transport_force_close(c->ends[i], 0, NULL);
  become_dead(c, -sig);
}

/* One of the fake's ends is gone. */
static void end_gone(void *ud, tapio_transport *t) {
  tapio__vchild *c = ud;
  int i;
  for (i = 0; i < 3; i++)
    if (c->ends[i] == t)
      c->ends[i] = NULL;
  if (c->state == EXITING && !ends_left(c))
    become_dead(c, c->status);
  else
    maybe_tell(c);
}

/* ---- Starting ---------------------------------------------------------- */

/* The program's started, then each end's connection_made: from the loop,
 * before the subprocess transport's connection_made. */
static void run_start(tapio__task *task) {
  tapio__vchild *c = TAPIO_CONTAINER(task, tapio__vchild, start_task);
  tapio_transport *ends[3];
  int i;
  if (c->loop->freeing)
    return;
  c->started = 1;
  c->refs++; /* the program's, until ended returns */
  memcpy(ends, c->ends, sizeof ends);
  c->prog.started(c->ud, c, c->argv[0], (const char *const *)c->argv + 1,
                  c->nargs);
  for (i = 0; i < 3; i++)
    if (ends[i] && (i < 2 || ends[2] != ends[1]) &&
        !(ends[i]->flags & TAPIO__T_MADE))
      tapio__transport_made(ends[i]);
}

static void child_undo(tapio__vchild *c, tapio_transport *pipes[3]) {
  int i;
  for (i = 0; i < 3; i++) {
    if (pipes[i])
      tapio__transport_discard(pipes[i]);
    if (c->ends[i] && (i < 2 || c->ends[2] != c->ends[1]))
      tapio__transport_discard(c->ends[i]);
    pipes[i] = c->ends[i] = NULL;
  }
  child_free(c);
}

/* The pipes the options ask for: PIPE a pair; STDOUT (stderr only) the
 * stdout end again; anything else nothing the fake sees. */
static int make_ends(tapio__vchild *c, const tapio_options *opts,
                     const void *pipe_proto, void *ud,
                     tapio_transport *pipes[3]) {
  int i, rc;
  for (i = 0; i < 3; i++) {
    int v = tapio__stdio_opt(opts, i);
    if (v == TAPIO_STDIO_STDOUT && i != 2)
      return TAPIO_EINVAL;
    if (v == TAPIO_STDIO_STDOUT)
      c->ends[2] = c->ends[1];
    if (v != TAPIO_STDIO_PIPE)
      continue;
    rc = tapio__memory_pipe(c->loop, i == 0, pipe_proto, ud, &pipes[i],
                            &c->ends[i]);
    if (rc < 0)
      return rc;
    tapio__memory_on_gone(c->ends[i], end_gone, c);
  }
  return 0;
}

static tapio__vchild *child_new(tapio_loop *loop, const fake *f) {
  tapio__vchild *c = tapio__calloc(loop, sizeof *c);
  if (!c)
    return NULL;
  c->loop = loop;
  c->prog = f->prog;
  c->ud = f->ud;
  c->pid = FIRST_PID + loop->kit->next_pid++ % (1 << 24);
  c->start_task.run = run_start;
  c->exit_task.run = run_exit;
  c->ended_task.run = run_ended;
  c->refs = 1; /* the process's */
  return c;
}

static void run_signals(tapio__task *task);

int tapio__vchild_spawn(tapio_loop *loop, tapio_transport *process,
                        char *const *argv, size_t nargs, const char *shell,
                        const tapio_options *opts, const void *pipe_proto,
                        void *ud, tapio_transport *pipes[3],
                        tapio__vchild **out) {
  int whole, rc;
  fake *f = lookup(loop->kit, argv, shell, &whole);
  tapio__vchild *c;
  *out = NULL;
  if (!f) {
    refuse(loop, argv[0], shell);
    return TAPIO_EVIRTUAL;
  }
  if (!(c = child_new(loop, f)))
    return TAPIO_ENOMEM;
  c->process = process;
  c->signal_task.run = run_signals;
  if (whole) /* registered as the command: started gets it alone */
    rc = copy_start(c, (char *const[]){(char *)shell}, 0, opts);
  else
    rc = copy_start(c, argv, nargs, opts);
  if (rc == 0)
    rc = make_ends(c, opts, pipe_proto, ud, pipes);
  if (rc < 0) {
    child_undo(c, pipes);
    return rc;
  }
  tapio__task_post(loop, &c->start_task);
  *out = c;
  return 0;
}

/* ---- Signals ----------------------------------------------------------- */

/* What a signal nobody caught does: these are ignored by default (and a
 * fake child is never stopped); every other one ends the child. */
static int ignored(int sig) {
  return sig == SIGCHLD || sig == SIGURG || sig == SIGWINCH ||
         sig == SIGCONT || sig == SIGSTOP || sig == SIGTSTP ||
         sig == SIGTTIN || sig == SIGTTOU;
}

static void deliver(tapio__vchild *c, int sig) {
  if (c->state == DEAD)
    return;
  if (sig != SIGKILL && c->prog.signal && c->started &&
      c->state == RUNNING && c->prog.signal(c->ud, c, sig))
    return; /* caught */
  if (sig == SIGKILL || !ignored(sig))
    die(c, sig);
}

/* Pending signals, lowest first, as the kernel delivers them. */
static void run_signals(tapio__task *task) {
  tapio__vchild *c = TAPIO_CONTAINER(task, tapio__vchild, signal_task);
  int sig;
  c->refs++;
  for (sig = 1; sig < 64 && c->pending; sig++)
    if (c->pending & ((uint64_t)1 << sig)) {
      c->pending &= ~((uint64_t)1 << sig);
      deliver(c, sig);
    }
  unref(c);
}

int tapio__vchild_signal(tapio__vchild *c, int sig) {
  if (sig == 0 || c->state == DEAD)
    return 0; /* a zombie takes signals too */
  if (sig >= 64)
    return TAPIO_EINVAL;
  c->pending |= (uint64_t)1 << sig;
  tapio__task_post(c->loop, &c->signal_task);
  return 0;
}

/* ---- For process.c ----------------------------------------------------- */

int tapio__vchild_pid(const tapio__vchild *c) { return c->pid; }

int tapio__vchild_exited(const tapio__vchild *c) { return c->state == DEAD; }

int tapio__vchild_kill(tapio__vchild *c) {
  /* never started (its task still queued): nobody to tell */
  tapio__task_unpost(c->loop, &c->start_task);
  if (c->state != DEAD)
    die(c, SIGKILL);
  c->process = NULL;
  tapio__task_unpost(c->loop, &c->exit_task);
  return c->status;
}

void tapio__vchild_release(tapio__vchild *c) {
  c->process = NULL;
  unref(c);
}

/* ---- The fake's calls -------------------------------------------------- */

tapio_transport *tapio_fake_child_pipe(tapio_fake_child *c, int fd) {
  return c && fd >= 0 && fd <= 2 ? c->ends[fd] : NULL;
}

int tapio_fake_child_exit(tapio_fake_child *c, int status) {
  int i;
  if (!c || status < 0 || status > 255)
    return TAPIO_EINVAL;
  if (c->state != RUNNING)
    return TAPIO_ESRCH;
  c->state = EXITING;
  c->status = status;
  for (i = 0; i < 3; i++)
    if (c->ends[i])
      tapio_transport_close(c->ends[i]);
  if (!ends_left(c))
    become_dead(c, status);
  return 0;
}

const char *tapio_fake_child_cwd(tapio_fake_child *c) {
  return c ? c->cwd : NULL;
}

const char *const *tapio_fake_child_env(tapio_fake_child *c, size_t *n) {
  if (n)
    *n = c && c->env ? c->nenv : 0;
  return c ? (const char *const *)c->env : NULL;
}

void tapio_fake_child_set_data(tapio_fake_child *c, void *data) {
  if (c)
    c->data = data;
}

void *tapio_fake_child_get_data(tapio_fake_child *c) {
  return c ? c->data : NULL;
}
