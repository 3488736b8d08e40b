/* What posix_spawn cannot do: a child with another user, group,
 * supplementary groups or umask (Python's user, group, extra_groups,
 * umask). The names are looked up here in the parent, and the child is
 * started with fork, whose child carries out the same steps spawn.c
 * describes for posix_spawn, then those four, then execve.
 *
 * Why fork and not a vfork-like clone: glibc's setreuid, setregid and
 * setgroups change the ids of every thread of the process, by signalling
 * each; a child sharing the parent's memory would signal the parent's
 * threads. After fork the child is alone (Python's subprocess also forks
 * for these). The parent may have other threads (the to_thread pool, the
 * resolver), which may hold locks at the fork: the child calls only
 * async-signal-safe functions and allocates nothing. Every signal is
 * blocked around the fork, so no handler of the parent's runs in the
 * child before it has set them all to their defaults.
 *
 * The child reports the first step that failed (its stage and errno)
 * through a close-on-exec pipe and exits 127; the parent reads it,
 * reaps the child and returns that error, as posix_spawn returns its
 * child's. An exec that succeeds closes the pipe: the parent reads the
 * end of it. */
#include "tapio_int.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- Names, in the parent ---------------------------------------------- */

/* getpwnam_r or getgrnam_r of name into *id: 0, or the error with words
 * (not found: TAPIO_EINVAL, as for a bad option). The buffer grows while
 * the entry does not fit (ERANGE). */
static int look_up(tapio_loop *loop, const char *fn, const char *opt,
                   const char *name, int user, int64_t *id) {
  size_t size = 1024;
  int err;
  for (;;) {
    struct passwd pw, *pwp = NULL;
    struct group gr, *grp = NULL;
    char *buf = tapio__alloc(loop, size);
    if (!buf)
      return TAPIO_ENOMEM;
    if (user)
      err = getpwnam_r(name, &pw, buf, size, &pwp);
    else
      err = getgrnam_r(name, &gr, buf, size, &grp);
    tapio__free(loop, buf, size);
    if (err == ERANGE && size < (1u << 20)) {
      size *= 2;
      continue;
    }
    if (err == 0 && (pwp || grp)) {
      *id = user ? (int64_t)pw.pw_uid : (int64_t)gr.gr_gid;
      return 0;
    }
    break;
  }
  /* glibc says "not found" as 0, others as ENOENT, ESRCH, EBADF, EPERM */
  if (err == 0 || err == ENOENT || err == ESRCH || err == EBADF ||
      err == EPERM) {
    tapio__refuse(loop, "%s: option '%s': no %s named '%s'", fn, opt,
                  user ? "user" : "group", name);
    return TAPIO_EINVAL;
  }
  tapio__refuse(loop, "%s: option '%s': cannot look up '%s': %s", fn, opt,
                name, tapio_strerror(tapio__from_errno(err)));
  return tapio__from_errno(err);
}

/* An id option: *id its number (given, or looked up); 1 if it is set. */
static int id_option(tapio_loop *loop, const tapio_options *o,
                     enum tapio__opt which, const char *fn, const char *opt,
                     int user, int64_t *id) {
  const char *name = tapio__opt_str(o, which);
  int rc;
  if (!tapio__opt_is_set(o, which))
    return 0;
  *id = tapio__opt_int(o, which, -1);
  rc = name ? look_up(loop, fn, opt, name, user, id) : 0;
  return rc < 0 ? rc : 1;
}

static int extra_groups(tapio_loop *loop, const tapio_options *o,
                        const char *fn, tapio__start *st) {
  size_t n, i;
  const tapio__id *list = tapio__opt_list(o, TAPIO__OPT_EXTRA_GROUPS, &n);
  int rc = 0;
  if (!tapio__opt_is_set(o, TAPIO__OPT_EXTRA_GROUPS))
    return 0;
  if (n > 65536) { /* Linux's NGROUPS_MAX */
    tapio__refuse(loop, "%s: option 'extra_groups': more than 65536 groups",
                  fn);
    return TAPIO_EINVAL;
  }
  st->groups = n ? tapio__alloc(loop, n * sizeof *st->groups) : NULL;
  if (n && !st->groups)
    return TAPIO_ENOMEM;
  st->ngroups = (int)n;
  for (i = 0; i < n && rc == 0; i++) {
    int64_t id = list[i].id;
    if (list[i].name)
      rc = look_up(loop, fn, "extra_groups", list[i].name, 0, &id);
    st->groups[i] = (gid_t)id;
  }
  return rc;
}

int tapio__spawn_ids(tapio_loop *loop, const tapio_options *o,
                     const char *fn, tapio__start *st) {
  int64_t uid = -1, gid = -1;
  int rc = id_option(loop, o, TAPIO__OPT_USER, fn, "user", 1, &uid);
  if (rc >= 0)
    st->set_uid = rc;
  if (rc >= 0)
    rc = id_option(loop, o, TAPIO__OPT_GROUP, fn, "group", 0, &gid);
  if (rc >= 0)
    st->set_gid = rc;
  if (rc >= 0)
    rc = extra_groups(loop, o, fn, st);
  if (rc < 0)
    return rc;
  st->uid = (uid_t)uid;
  st->gid = (gid_t)gid;
  st->umask = (int)tapio__opt_int(o, TAPIO__OPT_UMASK, -1);
  return st->set_uid || st->set_gid || st->ngroups >= 0 || st->umask >= 0;
}

void tapio__spawn_ids_free(tapio_loop *loop, tapio__start *st) {
  if (st->ngroups > 0)
    tapio__free(loop, st->groups, (size_t)st->ngroups * sizeof *st->groups);
  st->groups = NULL;
  st->ngroups = -1;
}

/* ---- The child: async-signal-safe calls only ---------------------------- */

typedef struct report {
  int stage, err;
} report;

static void fail(int errfd, int stage) {
  report r;
  r.stage = stage;
  r.err = errno;
  while (write(errfd, &r, sizeof r) < 0 && errno == EINTR)
    ;
  _exit(127);
}

/* Descriptors from fd up closed, but errfd (above 2, close-on-exec: the
 * exec closes it). */
static void close_from(int fd, int errfd) {
  if (fd > errfd) {
    closefrom(fd);
    return;
  }
  for (; fd < errfd; fd++)
    close(fd); /* few: pipe2 gave errfd the lowest free number */
  closefrom(errfd + 1);
}

static int do_step(const tapio__step *s, int errfd) {
  int fd, flags;
  switch (s->kind) {
  case TAPIO__STEP_DUP2:
    if (s->fd != s->from)
      return dup2(s->from, s->fd) < 0 ? -1 : 0;
    flags = fcntl(s->fd, F_GETFD); /* kept: close-on-exec cleared */
    return flags < 0 ? -1 : fcntl(s->fd, F_SETFD, flags & ~FD_CLOEXEC);
  case TAPIO__STEP_OPEN:
    fd = open(s->path, s->flags);
    if (fd < 0 || fd == s->fd)
      return fd < 0 ? -1 : 0;
    if (dup2(fd, s->fd) < 0)
      return -1;
    return close(fd);
  case TAPIO__STEP_CLOSE:
    close(s->fd); /* as posix_spawn's, on a descriptor open before */
    return 0;
  case TAPIO__STEP_CLOSEFROM:
    close_from(s->fd, errfd);
    return 0;
  default:
    return chdir(s->path);
  }
}

/* Every signal to its default; the mask, empty, only last. Through the
 * system call, not sigaction: glibc's refuses its own two (32 and 33),
 * and an ignored one stays ignored across exec (a parent started with
 * them ignored gave its children them ignored, where posix_spawn's are
 * at their defaults). All zero bytes are the kernel's struct sigaction
 * for SIG_DFL, no flags and an empty mask, whatever its layout. */
static void default_signals(void) {
  static const unsigned long dfl[16];
  int sig;
  for (sig = 1; sig < NSIG; sig++) /* SIGKILL, SIGSTOP: EINVAL, harmless */
    syscall(SYS_rt_sigaction, sig, dfl, NULL, (size_t)(NSIG - 1) / 8);
}

/* posix_spawn's order (signals, setsid, setpgid, the steps), then
 * Python's for the rest (umask, setgroups, setregid, setreuid). */
static void child(const tapio__start *st, int errfd) {
  sigset_t none;
  size_t i;
  default_signals();
  if (st->setsid && setsid() < 0)
    fail(errfd, TAPIO__STAGE_SETSID);
  if (st->pgroup >= 0 && setpgid(0, st->pgroup) < 0)
    fail(errfd, TAPIO__STAGE_PGROUP);
  for (i = 0; i < st->nsteps; i++)
    if (do_step(&st->steps[i], errfd) < 0)
      fail(errfd, TAPIO__STAGE_STEP);
  if (st->umask >= 0)
    umask((mode_t)st->umask);
  if (st->ngroups >= 0 && setgroups((size_t)st->ngroups, st->groups) < 0)
    fail(errfd, TAPIO__STAGE_GROUPS);
  if (st->set_gid && setregid(st->gid, st->gid) < 0)
    fail(errfd, TAPIO__STAGE_GID);
  if (st->set_uid && setreuid(st->uid, st->uid) < 0)
    fail(errfd, TAPIO__STAGE_UID);
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  execve(st->file, st->argv, st->env);
  fail(errfd, TAPIO__STAGE_EXEC);
}

/* ---- The parent ---------------------------------------------------------- */

/* The report pipe, its write end above 2: no step's dup2 onto 0, 1 or 2
 * may replace it. */
static int report_pipe(int fds[2]) {
  int fd;
  if (pipe2(fds, O_CLOEXEC) < 0)
    return tapio__from_errno(errno);
  if (fds[1] >= 3)
    return 0;
  fd = fcntl(fds[1], F_DUPFD_CLOEXEC, 3);
  if (fd < 0) {
    int rc = tapio__from_errno(errno);
    close(fds[0]);
    close(fds[1]);
    return rc;
  }
  close(fds[1]);
  fds[1] = fd;
  return 0;
}

/* What the child reported: sizeof *r bytes, or 0 at the end (its exec
 * closed the pipe). */
static ssize_t read_report(int fd, report *r) {
  size_t got = 0;
  while (got < sizeof *r) {
    ssize_t n = read(fd, (char *)r + got, sizeof *r - got);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      break;
    got += (size_t)n;
  }
  return (ssize_t)got;
}

int tapio__spawn_fork(const tapio__start *st, pid_t *pid, int *stage) {
  sigset_t all, old;
  report r;
  pid_t child_pid;
  int fds[2], err, rc = report_pipe(fds);
  if (rc < 0)
    return rc;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  child_pid = fork();
  if (child_pid == 0)
    child(st, fds[1]);
  err = errno;
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  close(fds[1]);
  if (child_pid < 0) {
    close(fds[0]);
    return tapio__from_errno(err);
  }
  rc = read_report(fds[0], &r) == (ssize_t)sizeof r;
  close(fds[0]);
  if (!rc) {
    *pid = child_pid;
    return 0;
  }
  while (waitpid(child_pid, NULL, 0) < 0 && errno == EINTR)
    ;
  *stage = r.stage;
  return tapio__from_errno(r.err);
}
