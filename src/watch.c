/* Watching descriptors: asyncio's add_reader, remove_reader, add_writer and
 * remove_writer. One libev watcher per descriptor and direction, in a list
 * of the loop's (a program watches a few descriptors; the list is walked
 * only by add and remove, and once before the poll after an add). */
#include "tapio_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <unistd.h>

struct tapio__fdwatch {
  ev_io io;             /* first: libev's callback finds the watch by it */
  tapio__link link;     /* loop->fdwatches */
  tapio_loop *loop;
  tapio_call_fn fn;
  void *ud;
  int fresh;            /* started since the last poll: not in epoll yet */
  dev_t dev;            /* the file watched: its number may be reused */
  ino_t ino;
};

static void stale(tapio__fdwatch *fw);

static int same_file(const tapio__fdwatch *fw, const struct stat *st) {
  return fw->dev == st->st_dev && fw->ino == st->st_ino;
}

/* A watch is of the file it was added for. Closed without its watch
 * removed, its descriptor leaves epoll but not libev, which gives it
 * back to epoll (with every watch of the number) as soon as anything
 * watches a new descriptor of that number: the old callback would be
 * called for a file that is not its own (a transport's, say). */
static void on_ready(struct ev_loop *ev, ev_io *w, int revents) {
  tapio__fdwatch *fw = (tapio__fdwatch *)w;
  struct stat st;
  (void)ev;
  (void)revents;
  if (fstat(fw->io.fd, &st) < 0 || !same_file(fw, &st)) {
    stale(fw);
    return;
  }
  /* The call may remove this watch (its memory goes at once: libev does
   * not touch a watcher after its callback) or any other (ev_io_stop takes
   * a pending one off libev's queue): nothing of fw is read after it. */
  fw->fn(fw->ud);
}

/* ---- A descriptor closed before the poll --------------------------------
 * libev gives a started watcher to epoll only at its next poll, and
 * aborts (an assertion) when epoll_ctl says the descriptor is not open:
 * add_reader then close, with no poll between, would end the process.
 * Before that poll (libev's prepare phase) each new watch's descriptor is
 * checked; a closed one's watches stop (epoll is then not asked), stay
 * the caller's to remove, and the exception handler is told. */

static void stop_fd(tapio_loop *loop, int fd) {
  tapio__link *l;
  for (l = loop->fdwatches.next; l != &loop->fdwatches; l = l->next) {
    tapio__fdwatch *fw = TAPIO_CONTAINER(l, tapio__fdwatch, link);
    if (fw->io.fd == fd)
      ev_io_stop(loop->ev, &fw->io);
  }
}

static void report_closed(tapio_loop *loop, int fd) {
  char msg[160];
  snprintf(msg, sizeof msg, "descriptor %d was closed while watched by "
           "add_reader or add_writer (remove the watch before closing it): "
           "the watch is not called again", fd);
  tapio__report(loop, TAPIO_EBADF, msg, NULL);
}

/* fw's file was closed; its number may be another's now. Every watch of
 * the number not of the file open there stops (the caller's to remove,
 * as a watch closed before the poll), and the handler is told once. */
static void stale(tapio__fdwatch *fw) {
  tapio_loop *loop = fw->loop;
  int fd = fw->io.fd;
  struct stat st;
  int open = fstat(fd, &st) == 0;
  tapio__link *l;
  for (l = loop->fdwatches.next; l != &loop->fdwatches; l = l->next) {
    tapio__fdwatch *o = TAPIO_CONTAINER(l, tapio__fdwatch, link);
    if (o->io.fd == fd && (!open || !same_file(o, &st)))
      ev_io_stop(loop->ev, &o->io);
  }
  report_closed(loop, fd);
}

/* The descriptor of the first new watch found closed (its watches
 * stopped then), or -1 when none is left: the exception handler hears of
 * it after the walk, which it may change (remove a watch, add one). */
static int closed_fresh(tapio_loop *loop) {
  tapio__link *l;
  for (l = loop->fdwatches.next; l != &loop->fdwatches; l = l->next) {
    tapio__fdwatch *fw = TAPIO_CONTAINER(l, tapio__fdwatch, link);
    if (!fw->fresh)
      continue;
    fw->fresh = 0;
    if (ev_is_active(&fw->io) && tapio__fd_closed(fw->io.fd)) {
      stop_fd(loop, fw->io.fd);
      return fw->io.fd;
    }
  }
  return -1;
}

/* The handler runs here, before the poll, as any callback may: what it
 * queues runs in this iteration (preparing: the poll does not wait, and
 * the check runs after it, see tapio__check_wanted); a stop ends the run
 * before the poll, what it queued left to the next run (asyncio: a
 * callback scheduled after stop() runs at the next run_forever); a close
 * or an abort takes effect on the loop's turn, as from anywhere. */
static void on_fdcheck(struct ev_loop *ev, ev_prepare *w, int revents) {
  tapio_loop *loop = TAPIO_CONTAINER(w, tapio_loop, fdcheck);
  int fd;
  (void)revents;
  ev_ref(ev);
  ev_prepare_stop(ev, w);
  loop->preparing = 1;
  while ((fd = closed_fresh(loop)) >= 0)
    report_closed(loop, fd);
  tapio__sock_fdcheck(loop);
  loop->preparing = 0;
}

int tapio__fd_closed(int fd) {
  return fcntl(fd, F_GETFD) < 0 && errno == EBADF;
}

void tapio__fdcheck_arm(tapio_loop *loop) {
  if (ev_is_active(&loop->fdcheck))
    return;
  ev_prepare_init(&loop->fdcheck, on_fdcheck);
  ev_prepare_start(loop->ev, &loop->fdcheck);
  ev_unref(loop->ev);
}

/* fw was started: check it before the next poll. The check keeps no run
 * alive by itself. */
static void started(tapio__fdwatch *fw) {
  fw->fresh = 1;
  tapio__fdcheck_arm(fw->loop);
}

static tapio__fdwatch *find(tapio_loop *loop, int fd, int events) {
  tapio__link *l;
  for (l = loop->fdwatches.next; l != &loop->fdwatches; l = l->next) {
    tapio__fdwatch *fw = TAPIO_CONTAINER(l, tapio__fdwatch, link);
    if (fw->io.fd == fd && (fw->io.events & events))
      return fw;
  }
  return NULL;
}

/* A transport or server of the loop owns fd: watching it too would steal
 * its events (asyncio: "File descriptor is used by transport"). */
int tapio__fd_owned(tapio_loop *loop, int fd) {
  tapio__link *l;
  for (l = loop->transports.next; l != &loop->transports; l = l->next) {
    tapio_transport *t = TAPIO_CONTAINER(l, tapio_transport, link);
    if (t->kind->fd(t) == fd)
      return 1;
  }
  return tapio__servers_hold_fd(loop, fd);
}

/* 0 if epoll can watch fd; TAPIO_EPERM for a device whose driver cannot
 * say when it is ready (/dev/null, /dev/zero), as for a regular file.
 * libev takes such a descriptor all the same and calls its watchers at
 * every poll, which it then makes without waiting: a run that spins, and
 * a host asleep on the loop's descriptor that never hears of them. A
 * scratch epoll instance answers, for devices only (sockets, pipes and
 * the kernel's own descriptors always poll). */
int tapio__fd_pollable(int fd, const struct stat *st) {
  struct epoll_event ee;
  int ep, rc = 0;
  if (!S_ISCHR(st->st_mode) && !S_ISBLK(st->st_mode))
    return 0;
  ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0)
    return tapio__from_errno(errno);
  memset(&ee, 0, sizeof ee);
  ee.events = EPOLLIN;
  if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ee) < 0)
    rc = tapio__from_errno(errno);
  close(ep);
  return rc;
}

/* What epoll can watch: an open descriptor, neither a regular file nor a
 * directory nor a device that cannot poll (epoll refuses them with EPERM,
 * as asyncio's selector does). */
static int check_fd(int fd, struct stat *st) {
  if (fd < 0)
    return TAPIO_EINVAL;
  if (fcntl(fd, F_GETFD) < 0 || fstat(fd, st) < 0)
    return tapio__from_errno(errno);
  if (S_ISREG(st->st_mode) || S_ISDIR(st->st_mode))
    return TAPIO_EPERM;
  return tapio__fd_pollable(fd, st);
}

int tapio__fd_usable(tapio_loop *loop, int fd) {
  struct stat st;
  int rc = check_fd(fd, &st);
  if (rc == 0 && tapio__fd_owned(loop, fd))
    rc = TAPIO_EBUSY;
  return rc;
}

static int add(tapio_loop *loop, int fd, int events, tapio_call_fn fn,
               void *ud) {
  tapio__fdwatch *fw;
  struct stat st;
  int rc;
  if (!loop || !fn)
    return TAPIO_EINVAL;
  /* a virtual clock cannot know when a descriptor will be ready: a
   * timeout would fire before bytes merely in flight (as sock_recv) */
  if ((rc = tapio__io_refused(loop)) < 0)
    return rc;
  if ((rc = check_fd(fd, &st)) < 0)
    return rc;
  if ((fw = find(loop, fd, events)) != NULL) { /* replaces, as asyncio */
    fw->fn = fn;
    fw->ud = ud;
    /* started again, which tells epoll of the file fd is now: the one
     * watched may have been closed, and fd be another's (a FIFO reopened
     * is even the same device and inode), which epoll has never seen */
    ev_io_stop(loop->ev, &fw->io);
    ev_io_set(&fw->io, fd, events);
    ev_io_start(loop->ev, &fw->io);
    fw->dev = st.st_dev;
    fw->ino = st.st_ino;
    started(fw);
    return 0;
  }
  if (tapio__fd_owned(loop, fd))
    return TAPIO_EBUSY;
  fw = tapio__alloc(loop, sizeof *fw);
  if (!fw)
    return TAPIO_ENOMEM;
  fw->loop = loop;
  fw->fn = fn;
  fw->ud = ud;
  fw->dev = st.st_dev;
  fw->ino = st.st_ino;
  ev_io_init(&fw->io, on_ready, fd, events);
  ev_io_start(loop->ev, &fw->io);
  tapio__list_push(&loop->fdwatches, &fw->link);
  started(fw);
  return 0;
}

static void drop(tapio__fdwatch *fw) {
  ev_io_stop(fw->loop->ev, &fw->io);
  tapio__list_remove(&fw->link);
  tapio__free(fw->loop, fw, sizeof *fw);
}

static int remove_watch(tapio_loop *loop, int fd, int events) {
  tapio__fdwatch *fw;
  if (!loop)
    return TAPIO_EINVAL;
  fw = find(loop, fd, events);
  if (!fw)
    return 0;
  drop(fw);
  return 1;
}

int tapio_add_reader(tapio_loop *loop, int fd, tapio_call_fn fn, void *ud) {
  return add(loop, fd, EV_READ, fn, ud);
}

int tapio_add_writer(tapio_loop *loop, int fd, tapio_call_fn fn, void *ud) {
  return add(loop, fd, EV_WRITE, fn, ud);
}

int tapio_remove_reader(tapio_loop *loop, int fd) {
  return remove_watch(loop, fd, EV_READ);
}

int tapio_remove_writer(tapio_loop *loop, int fd) {
  return remove_watch(loop, fd, EV_WRITE);
}

void tapio__fdwatches_free_all(tapio_loop *loop) {
  if (ev_is_active(&loop->fdcheck)) {
    ev_ref(loop->ev);
    ev_prepare_stop(loop->ev, &loop->fdcheck);
  }
  while (!tapio__list_empty(&loop->fdwatches))
    drop(TAPIO_CONTAINER(loop->fdwatches.next, tapio__fdwatch, link));
}
