/* Starting a child process for subprocess_exec: the options turned into
 * the child's steps (tapio__start), carried out by posix_spawn or, for
 * what it cannot do, by spawn_fork.c; the program found before the spawn,
 * and the child's pidfd.
 *
 * Why posix_spawn: glibc runs it as a clone(CLONE_VM | CLONE_VFORK) on a
 * stack of its own, so nothing of the parent's memory is copied (fork
 * costs grow with the parent's size) and the parent's signal handlers
 * never run in the child, and it reports an exec failure as its result.
 * Its file actions do all subprocess_exec needs: dup2 (with fd == newfd it
 * clears close-on-exec), open, chdir, closefrom; its attributes reset every
 * signal to its default and empty the mask (bpo-31034: a SIGHUP the parent
 * ignores must not be ignored in the child) and setsid. It cannot change
 * the child's user, groups or umask: a spawn that asks for those runs the
 * same steps in a child of fork (spawn_fork.c); every other one stays with
 * posix_spawn.
 *
 * The program is looked up here, in the parent, as execvp would (PATH,
 * then EACCES if some candidate was not executable, else ENOENT), and the
 * cwd checked: these errors are then reported wherever the spawn runs,
 * also where the spawn's own report is lost (valgrind turns glibc's vfork
 * into a fork, after which an exec failure is a child exiting 127). */
#include "tapio_int.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/stat.h>
#include <unistd.h>

extern char **environ;

#define DEFAULT_PATH "/bin:/usr/bin" /* Python's os.defpath */

/* What one spawn holds until it is done, freed by spawn_free. */
typedef struct spawn {
  tapio_loop *loop;
  const tapio_options *opts;
  const char *fn;       /* the call, for the words of a refusal */
  const char *program;  /* the file to run, "executable" or argv[0] */
  char **env;           /* the environment given, or environ */
  size_t envsize;       /* bytes of env when allocated here, else 0 */
  char *path;           /* the program's file */
  size_t pathsize;
  int parent[3];        /* our ends of the pipes */
  int child[3];         /* the ends, or descriptors, the child gets */
  int temp[3];          /* child[i] when it is a duplicate made here */
  tapio__start st;      /* the child's start */
} spawn;

/* ---- The environment --------------------------------------------------- */

/* Whether entry (NAME=value) names name (up to its '='). */
static int same_name(const char *entry, const char *name) {
  size_t n = strcspn(name, "=");
  return strncmp(entry, name, n) == 0 && entry[n] == '=';
}

static int overridden(const char *entry, char *const *list, size_t n) {
  size_t i;
  for (i = 0; i < n; i++)
    if (same_name(entry, list[i]))
      return 1;
  return 0;
}

/* env replaces the parent's environment, or with extend_env is added to
 * it; the strings stay the options' and environ's. */
static int make_env(spawn *sp) {
  size_t n, i, k = 0, nparent = 0;
  char *const *list = tapio__opt_list(sp->opts, TAPIO__OPT_ENV, &n);
  int extend = (int)tapio__opt_int(sp->opts, TAPIO__OPT_EXTEND_ENV, 0);
  sp->env = environ;
  if (!tapio__opt_is_set(sp->opts, TAPIO__OPT_ENV))
    return 0;
  while (extend && environ[nparent])
    nparent++;
  sp->envsize = (nparent + n + 1) * sizeof *sp->env;
  sp->env = tapio__alloc(sp->loop, sp->envsize);
  if (!sp->env) {
    sp->envsize = 0;
    return TAPIO_ENOMEM;
  }
  for (i = 0; i < nparent; i++)
    if (!overridden(environ[i], list, n))
      sp->env[k++] = environ[i];
  for (i = 0; i < n; i++)
    sp->env[k++] = list[i];
  sp->env[k] = NULL;
  return 0;
}

/* ---- Finding the program ----------------------------------------------- */

/* The PATH the child would search (Python's os.get_exec_path(env)). */
static const char *exec_path(char *const *env) {
  size_t i;
  for (i = 0; env[i]; i++)
    if (strncmp(env[i], "PATH=", 5) == 0)
      return env[i] + 5;
  return DEFAULT_PATH;
}

/* 0 if file is an executable regular file; else its error. A relative
 * name is taken from cwd, where the child will be. */
static int check_file(const char *cwd, const char *file) {
  char buf[4096];
  struct stat st;
  if (cwd && file[0] != '/') {
    if ((size_t)snprintf(buf, sizeof buf, "%s/%s", cwd, file) >= sizeof buf)
      return TAPIO_ENAMETOOLONG;
    file = buf;
  }
  if (stat(file, &st) < 0)
    return tapio__from_errno(errno);
  if (!S_ISREG(st.st_mode))
    return TAPIO_EACCES; /* what execve says of a directory */
  return access(file, X_OK) < 0 ? tapio__from_errno(errno) : 0;
}

static int keep_path(spawn *sp, const char *dir, size_t dlen,
                     const char *prog) {
  size_t plen = strlen(prog);
  sp->pathsize = dlen + 1 + plen + 1;
  sp->path = tapio__alloc(sp->loop, sp->pathsize);
  if (!sp->path)
    return TAPIO_ENOMEM;
  memcpy(sp->path, dir, dlen);
  sp->path[dlen] = '/';
  memcpy(sp->path + dlen + 1, prog, plen + 1);
  return 0;
}

/* execvp's search: the first executable dir/prog along PATH (an empty
 * entry is "."); when none, EACCES if one was found but not executable. */
static int search(spawn *sp, const char *prog, const char *cwd) {
  const char *dirs = exec_path(sp->env), *end;
  int seen_eacces = 0;
  for (;; dirs = end + 1) {
    size_t dlen;
    int rc;
    end = strchr(dirs, ':');
    if (!end)
      end = dirs + strlen(dirs);
    dlen = (size_t)(end - dirs);
    rc = keep_path(sp, dlen ? dirs : ".", dlen ? dlen : 1, prog);
    if (rc == 0)
      rc = check_file(cwd, sp->path);
    if (rc == 0 || rc == TAPIO_ENOMEM)
      return rc;
    seen_eacces |= rc == TAPIO_EACCES;
    tapio__free(sp->loop, sp->path, sp->pathsize);
    sp->path = NULL;
    if (!*end)
      return seen_eacces ? TAPIO_EACCES : TAPIO_ENOENT;
  }
}

static int check_cwd(const char *cwd) {
  struct stat st;
  if (stat(cwd, &st) < 0)
    return tapio__from_errno(errno);
  if (!S_ISDIR(st.st_mode))
    return TAPIO_ENOTDIR;
  return access(cwd, X_OK) < 0 ? tapio__from_errno(errno) : 0;
}

static int find_program(spawn *sp, const char *prog) {
  const char *cwd = tapio__opt_str(sp->opts, TAPIO__OPT_CWD);
  int rc = cwd ? check_cwd(cwd) : 0;
  if (rc < 0)
    return rc;
  if (!*prog)
    return TAPIO_ENOENT;
  if (strchr(prog, '/'))
    return check_file(cwd, prog);
  return search(sp, prog, cwd);
}

/* ---- The child's steps -------------------------------------------------- */

int tapio__stdio_opt(const tapio_options *o, int i) {
  static const enum tapio__opt which[3] = {
    TAPIO__OPT_STDIN, TAPIO__OPT_STDOUT, TAPIO__OPT_STDERR
  };
  return (int)tapio__opt_int(o, which[i], TAPIO_STDIO_PIPE);
}

static int fd_open(int fd) { return fcntl(fd, F_GETFD) >= 0; }

/* Appends a step to sp's start. */
static int step(spawn *sp, int kind, int fd, int from, const char *path) {
  tapio__start *st = &sp->st;
  if (st->nsteps == st->cap) {
    size_t cap = st->cap ? 2 * st->cap : 16;
    tapio__step *steps = tapio__alloc(sp->loop, cap * sizeof *steps);
    if (!steps)
      return TAPIO_ENOMEM;
    if (st->nsteps)
      memcpy(steps, st->steps, st->nsteps * sizeof *steps);
    tapio__free(sp->loop, st->steps, st->cap * sizeof *steps);
    st->steps = steps;
    st->cap = cap;
  }
  /* flags: an open's, /dev/null's for reading and writing */
  st->steps[st->nsteps++] = (tapio__step){kind, fd, from, O_RDWR, path};
  return 0;
}

/* TAPIO_EBADF for descriptor fd given as option opt, with words that say
 * which (the code alone would blame the program). */
static int not_open(spawn *sp, const char *opt, int64_t fd) {
  tapio__refuse(sp->loop, "cannot run '%s': %s descriptor %lld is not open",
                sp->program, opt, (long long)fd);
  return TAPIO_EBADF;
}

/* A descriptor below 3 that is not child fd i itself is moved up first,
 * so that no dup2 onto 0, 1 or 2 overwrites a source still to be used
 * (a parent whose stdin was closed gets a pipe at 0, say). */
static int lift(spawn *sp, int i) {
  int fd = sp->child[i];
  if (fd >= 3 || fd == i)
    return 0;
  fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
  if (fd < 0)
    return tapio__from_errno(errno);
  if (sp->temp[i] >= 0)
    close(sp->temp[i]); /* a pipe's end: the duplicate replaces it */
  sp->child[i] = sp->temp[i] = fd;
  return 0;
}

/* The "pipesize" option on a pipe made for the child (Python's: only a
 * size above 0; nothing where Linux's F_SETPIPE_SZ is missing). */
static int pipe_size(spawn *sp, int fd) {
#ifdef F_SETPIPE_SZ
  int64_t size = tapio__opt_int(sp->opts, TAPIO__OPT_PIPESIZE, -1);
  int rc;
  if (size <= 0 || fcntl(fd, F_SETPIPE_SZ, (int)size) >= 0)
    return 0;
  rc = tapio__from_errno(errno);
  tapio__refuse(sp->loop, "cannot run '%s': pipesize %lld: %s", sp->program,
                (long long)size, tapio_strerror(rc));
  return rc;
#else
  (void)sp;
  (void)fd;
  return 0;
#endif
}

/* A pipe for child fd i: the child's end blocking, ours non-blocking. */
static int make_pipe(spawn *sp, int i) {
  int fds[2], ours = i == 0 ? 1 : 0;
  if (pipe2(fds, O_CLOEXEC) < 0)
    return tapio__from_errno(errno);
  sp->parent[i] = fds[ours];
  sp->child[i] = sp->temp[i] = fds[1 - ours];
  if (fcntl(fds[ours], F_SETFL, O_NONBLOCK) < 0)
    return tapio__from_errno(errno);
  return pipe_size(sp, fds[ours]);
}

/* Child fd i as the option says, as a step. */
static int stdio_step(spawn *sp, int i) {
  int v = tapio__stdio_opt(sp->opts, i), rc = 0;
  if (v == TAPIO_STDIO_INHERIT)
    return 0;
  if (v == TAPIO_STDIO_DEVNULL)
    return step(sp, TAPIO__STEP_OPEN, i, -1, "/dev/null");
  if (v == TAPIO_STDIO_STDOUT) {
    if (i != 2)
      return TAPIO_EINVAL; /* only stderr can go where stdout goes */
    sp->child[i] = 1;
  } else if (v == TAPIO_STDIO_PIPE) {
    rc = make_pipe(sp, i);
  } else if (!fd_open(v)) {
    return not_open(sp, i == 0 ? "stdin" : i == 1 ? "stdout" : "stderr", v);
  } else {
    sp->child[i] = v;
  }
  if (rc == 0 && v != TAPIO_STDIO_STDOUT)
    rc = lift(sp, i);
  if (rc == 0)
    rc = step(sp, TAPIO__STEP_DUP2, i, sp->child[i], NULL);
  return rc;
}

static int cmp_int64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return (x > y) - (x < y);
}

/* pass_fds stay open in the child (dup2 onto themselves clears their
 * close-on-exec); with close_fds every other descriptor from 3 up is
 * closed: the open ones below the highest kept, then all above it. keep:
 * the n descriptors, sorted. */
static int keep_steps(spawn *sp, const int64_t *keep, size_t n) {
  size_t i;
  int fd = 3, rc = 0;
  for (i = 0; i < n && rc == 0; i++) {
    if (!fd_open((int)keep[i]))
      return not_open(sp, "pass_fds", keep[i]);
    if (keep[i] >= 3)
      rc = step(sp, TAPIO__STEP_DUP2, (int)keep[i], (int)keep[i], NULL);
  }
  if (!tapio__opt_int(sp->opts, TAPIO__OPT_CLOSE_FDS, 1))
    return rc;
  for (i = 0; i < n && rc == 0; i++) {
    for (; fd < keep[i] && rc == 0; fd++)
      if (fd_open(fd))
        rc = step(sp, TAPIO__STEP_CLOSE, fd, -1, NULL);
    if (fd == keep[i])
      fd++; /* kept */
  }
  return rc ? rc : step(sp, TAPIO__STEP_CLOSEFROM, fd, -1, NULL);
}

/* keep_steps on a sorted copy of pass_fds (as many as given: Python's
 * has no bound either). */
static int fd_steps(spawn *sp) {
  size_t n;
  const int64_t *given = tapio__opt_list(sp->opts, TAPIO__OPT_PASS_FDS, &n);
  int64_t *keep = NULL;
  int rc;
  if (n) {
    keep = tapio__alloc(sp->loop, n * sizeof *keep);
    if (!keep)
      return TAPIO_ENOMEM;
    memcpy(keep, given, n * sizeof *keep);
    qsort(keep, n, sizeof *keep, cmp_int64);
  }
  rc = keep_steps(sp, keep, n);
  if (n)
    tapio__free(sp->loop, keep, n * sizeof *keep);
  return rc;
}

/* The steps, and the session and group (glibc's posix_spawn does setsid,
 * then setpgid, in the child, as Python's subprocess does). */
static int describe(spawn *sp) {
  const char *cwd = tapio__opt_str(sp->opts, TAPIO__OPT_CWD);
  int i, rc = 0;
  sp->st.setsid = (int)tapio__opt_int(sp->opts,
                                      TAPIO__OPT_START_NEW_SESSION, 0);
  sp->st.pgroup = (pid_t)tapio__opt_int(sp->opts, TAPIO__OPT_PROCESS_GROUP,
                                        -1);
  for (i = 0; i < 3 && rc == 0; i++)
    rc = stdio_step(sp, i);
  if (rc == 0)
    rc = fd_steps(sp);
  if (rc == 0 && cwd)
    rc = step(sp, TAPIO__STEP_CHDIR, -1, -1, cwd);
  return rc;
}

/* ---- posix_spawn --------------------------------------------------------- */

static int file_action(posix_spawn_file_actions_t *fa, const tapio__step *s) {
  switch (s->kind) {
  case TAPIO__STEP_DUP2:
    return posix_spawn_file_actions_adddup2(fa, s->from, s->fd);
  case TAPIO__STEP_OPEN:
    return posix_spawn_file_actions_addopen(fa, s->fd, s->path, s->flags, 0);
  case TAPIO__STEP_CLOSE:
    return posix_spawn_file_actions_addclose(fa, s->fd);
  case TAPIO__STEP_CLOSEFROM:
    return posix_spawn_file_actions_addclosefrom_np(fa, s->fd);
  default:
    return posix_spawn_file_actions_addchdir_np(fa, s->path);
  }
}

/* Every signal at its default, none blocked, whatever the parent's; a
 * session or a process group of the child's own on request.
 * glibc's sigfillset leaves out its own two signals (32 and 33), and its
 * posix_spawn sets every blocked signal left out of the defaults to
 * SIG_IGN in the child, which exec keeps: every child and its children
 * would start with those two ignored (Python's subprocess leaves them at
 * their default). Every bit set, as glibc's sigfillset sets them before
 * it clears those two, puts them among the defaults. */
static int attributes(posix_spawnattr_t *attr, const tapio__start *st) {
  short flags = POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK;
  sigset_t all, none;
  sigfillset(&all);
#ifdef __GLIBC__
  memset(&all, 0xff, sizeof all);
#endif
  sigemptyset(&none);
  if (st->setsid)
    flags |= POSIX_SPAWN_SETSID;
  if (st->pgroup >= 0) {
    flags |= POSIX_SPAWN_SETPGROUP;
    if (posix_spawnattr_setpgroup(attr, st->pgroup))
      return TAPIO_EINVAL;
  }
  if (posix_spawnattr_setsigdefault(attr, &all) ||
      posix_spawnattr_setsigmask(attr, &none) ||
      posix_spawnattr_setflags(attr, flags))
    return TAPIO_EINVAL;
  return 0;
}

static int spawn_posix(const tapio__start *st, pid_t *pid) {
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t attr;
  size_t i;
  int rc = 0;
  if (posix_spawn_file_actions_init(&fa) != 0)
    return TAPIO_ENOMEM;
  if (posix_spawnattr_init(&attr) != 0) {
    posix_spawn_file_actions_destroy(&fa);
    return TAPIO_ENOMEM;
  }
  for (i = 0; i < st->nsteps && rc == 0; i++)
    if (file_action(&fa, &st->steps[i]))
      rc = TAPIO_ENOMEM;
  if (rc == 0)
    rc = attributes(&attr, st);
  if (rc == 0)
    rc = posix_spawn(pid, st->file, &fa, &attr, st->argv, st->env);
  if (rc > 0)
    rc = tapio__from_errno(rc);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  return rc;
}

/* ---- Spawning ---------------------------------------------------------- */

static void close_fds(int *fds) {
  int i;
  for (i = 0; i < 3; i++)
    if (fds[i] >= 0) {
      close(fds[i]);
      fds[i] = -1;
    }
}

static void spawn_free(spawn *sp) {
  close_fds(sp->temp);
  close_fds(sp->parent);
  if (sp->envsize)
    tapio__free(sp->loop, sp->env, sp->envsize);
  tapio__free(sp->loop, sp->path, sp->pathsize);
  tapio__free(sp->loop, sp->st.steps, sp->st.cap * sizeof *sp->st.steps);
  tapio__spawn_ids_free(sp->loop, &sp->st);
}

/* Where there are no pidfds (kernels before 5.3, valgrind, a seccomp
 * filter) the exit is polled; once ENOSYS says so, this process asks no
 * more. ESRCH means someone else reaped the child already: the polling
 * finds that too. */
static int open_pidfd(pid_t pid) {
  static int missing; /* process-wide, and only ever set */
  int fd;
  if (__atomic_load_n(&missing, __ATOMIC_RELAXED))
    return -1;
  fd = pidfd_open(pid, 0);
  if (fd < 0 && errno == ENOSYS)
    __atomic_store_n(&missing, 1, __ATOMIC_RELAXED);
  return fd;
}

/* Changing the child's ids refused (EPERM, say), in words that name the
 * call that failed. */
static void ids_refused(spawn *sp, int code, int stage) {
  const tapio__start *st = &sp->st;
  if (stage == TAPIO__STAGE_GROUPS)
    tapio__refuse(sp->loop, "cannot run '%s': cannot set extra_groups "
                  "(setgroups): %s", sp->program, tapio_strerror(code));
  else if (stage == TAPIO__STAGE_GID)
    tapio__refuse(sp->loop, "cannot run '%s': cannot become group %lu "
                  "(setregid): %s", sp->program, (unsigned long)st->gid,
                  tapio_strerror(code));
  else
    tapio__refuse(sp->loop, "cannot run '%s': cannot become user %lu "
                  "(setreuid): %s", sp->program, (unsigned long)st->uid,
                  tapio_strerror(code));
}

/* A step of the child's that failed, with words where the program is not
 * to blame. posix_spawn does not say which step: joining a process group
 * is the one that fails with EPERM there (the group has no process left,
 * or is another session's). */
static int spawn_failed(spawn *sp, int code, int stage) {
  int64_t group = sp->st.pgroup;
  if (stage == TAPIO__STAGE_GROUPS || stage == TAPIO__STAGE_GID ||
      stage == TAPIO__STAGE_UID)
    ids_refused(sp, code, stage);
  else if (code == TAPIO_EPERM && group > 0 &&
           (stage == TAPIO__STAGE_PGROUP || stage == TAPIO__STAGE_UNKNOWN))
    tapio__refuse(sp->loop, "cannot run '%s': cannot join process group "
                  "%lld: %s (no process of it is left, or it is another "
                  "session's)", sp->program, (long long)group,
                  tapio_strerror(code));
  return code;
}

static int run(spawn *sp, char *const *argv, tapio__child *out) {
  int rc = make_env(sp), fork_needed = 0, stage = TAPIO__STAGE_UNKNOWN;
  if (rc == 0)
    rc = find_program(sp, sp->program);
  if (rc == 0)
    rc = describe(sp);
  if (rc == 0)
    rc = fork_needed = tapio__spawn_ids(sp->loop, sp->opts, sp->fn, &sp->st);
  if (rc < 0)
    return rc;
  sp->st.file = sp->path ? sp->path : sp->program;
  sp->st.argv = argv;
  sp->st.env = sp->env;
  rc = fork_needed ? tapio__spawn_fork(&sp->st, &out->pid, &stage)
                   : spawn_posix(&sp->st, &out->pid);
  if (rc < 0)
    return spawn_failed(sp, rc, stage);
  out->pidfd = open_pidfd(out->pid);
  memcpy(out->fds, sp->parent, sizeof out->fds);
  memset(sp->parent, -1, sizeof sp->parent);
  return 0;
}

int tapio__spawn(tapio_loop *loop, const char *fn, char *const *argv,
                 const tapio_options *opts, tapio__child *out) {
  spawn sp;
  int rc;
  memset(&sp, 0, sizeof sp);
  memset(sp.parent, -1, sizeof sp.parent);
  memset(sp.temp, -1, sizeof sp.temp);
  memset(sp.child, -1, sizeof sp.child);
  sp.loop = loop;
  sp.opts = opts;
  sp.fn = fn;
  /* the file run, named in the words of a failure, as Python's */
  sp.program = tapio__opt_str(opts, TAPIO__OPT_EXECUTABLE);
  if (!sp.program)
    sp.program = argv[0];
  sp.st.pgroup = sp.st.umask = sp.st.ngroups = -1;
  rc = run(&sp, argv, out);
  spawn_free(&sp);
  return rc;
}
