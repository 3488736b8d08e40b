/* Racing connects: a stream socket connected to one of several addresses,
 * tried one after the other or, with a delay, with Happy Eyeballs (RFC
 * 8305, asyncio's staggered start): a new attempt every `delay` seconds,
 * or at once when the one started last fails; the first to connect wins and
 * the others are closed. When all fail, the message says what each
 * address answered, as asyncio's "Multiple exceptions: ...". */
#include "tapio_int.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

typedef struct attempt {
  ev_io io;
  tapio__race *race;
  int code;              /* 0: not failed (yet) */
  const tapio__addr *bound; /* the local address that failed to bind */
  int nolocal;           /* no local address of its family: no connect */
} attempt;

struct tapio__race {
  tapio_loop *loop;
  tapio__addr *addrs;    /* the caller's, reordered in place */
  size_t n, next;        /* next: the first address not tried */
  const tapio__addr *locals;
  size_t nlocals;
  double delay;          /* < 0: one after the other */
  int proto;             /* the sockets' IP protocol, 0 TCP */
  tapio__timer timer;   /* the next attempt's staggered start */
  size_t running;        /* attempts under way */
  tapio__race_fn done;
  void *ud;
  attempt at[];          /* one per address */
};

static size_t race_size(size_t n) {
  return sizeof(tapio__race) + n * sizeof(attempt);
}

/* ---- Interleaving -------------------------------------------------------- */

/* Moves the first address of family f not yet used from a to out[*k]. */
static int take(const tapio__addr *a, size_t n, char *used, int f,
                tapio__addr *out, size_t *k) {
  size_t i;
  for (i = 0; i < n; i++)
    if (!used[i] && a[i].ss.ss_family == f) {
      used[i] = 1;
      out[(*k)++] = a[i];
      return 1;
    }
  return 0;
}

/* asyncio's _interleave_addrinfos: `first` - 1 addresses of the first
 * family, then one of each family in turn (families in the order they
 * first appear), each family keeping its order. */
static void interleave(tapio_loop *loop, tapio__addr *a, size_t n,
                       size_t first) {
  tapio__addr *out = tapio__alloc(loop, n * sizeof *a);
  char *used = tapio__calloc(loop, n);
  int fams[4];
  size_t nf = 0, i, j, k = 0;
  for (i = 0; i < n && nf < 4; i++) {
    for (j = 0; j < nf && fams[j] != a[i].ss.ss_family; j++)
      ;
    if (j == nf)
      fams[nf++] = a[i].ss.ss_family;
  }
  if (out && used && nf > 1) { /* out of memory: the order stays */
    while (k + 1 < first && take(a, n, used, fams[0], out, &k))
      ;
    for (;;) {
      size_t before = k;
      for (j = 0; j < nf; j++)
        take(a, n, used, fams[j], out, &k);
      if (k == before)
        break;
    }
    for (i = 0; i < n; i++) /* families past the fourth, in order */
      if (!used[i])
        out[k++] = a[i];
    memcpy(a, out, n * sizeof *a);
  }
  tapio__free(loop, used, used ? n : 0);
  tapio__free(loop, out, out ? n * sizeof *a : 0);
}

/* ---- Attempts ------------------------------------------------------------ */

static void start_next(tapio__race *race);

/* Binds to the first local address of family af that binds; else the
 * error, and at->bound says which address gave it (at->nolocal: none of
 * af). */
static int bind_local(tapio__race *race, attempt *at, int fd, int af) {
  size_t i;
  int err = TAPIO_EADDRNOTAVAIL;
  for (i = 0; i < race->nlocals; i++) {
    const tapio__addr *l = &race->locals[i];
    if (l->ss.ss_family != af)
      continue;
    if (bind(fd, (const struct sockaddr *)&l->ss, l->len) == 0)
      return 0;
    err = tapio__from_errno(errno);
    at->bound = l;
  }
  at->nolocal = at->bound == NULL;
  return err;
}

static void stop_attempt(tapio__race *race, attempt *at) {
  if (ev_is_active(&at->io))
    ev_io_stop(race->loop->ev, &at->io);
  if (at->io.fd >= 0)
    close(at->io.fd);
  at->io.fd = -1;
}

/* Stops everything; the race is freed by its caller or here. */
static void race_free(tapio__race *race) {
  size_t i;
  for (i = 0; i < race->n; i++)
    stop_attempt(race, &race->at[i]);
  tapio__timer_stop(&race->timer);
  tapio__free(race->loop, race, race_size(race->n));
}

void tapio__race_cancel(tapio__race *race) {
  if (race)
    race_free(race);
}

/* Appends what attempt i answered ("connect call failed ('::1', 80, 0,
 * 0): connection refused"), with the error's name when there are
 * several. */
static void describe(const tapio__race *race, size_t i, char *buf,
                     size_t size) {
  const attempt *at = &race->at[i];
  const tapio__addr *a = at->bound ? at->bound : &race->addrs[i];
  size_t len = strlen(buf);
  const char *what = "connect call failed";
  if (at->bound)
    what = "error while attempting to bind on address";
  else if (at->nolocal)
    what = a->ss.ss_family == AF_INET6
               ? "no matching local address with family AF_INET6 found to "
                 "connect to"
               : "no matching local address with family AF_INET found to "
                 "connect to";
  tapio__describe(buf + len, size - len, what,
                  (const struct sockaddr *)&a->ss, a->len, at->code);
  len = strlen(buf);
  if (race->n > 1)
    snprintf(buf + len, size - len, " (%s)", tapio_errname(at->code));
}

/* Every attempt failed (each was tried: one fails before the next is
 * given up on): the first address's code, which is the code they share
 * when they share one. */
static void all_failed(tapio__race *race) {
  char msg[1024] = "";
  size_t i, described = 0;
  int code = race->at[0].code;
  tapio__race_fn done = race->done;
  void *ud = race->ud;
  if (race->n > 1)
    snprintf(msg, sizeof msg, "Multiple exceptions: ");
  for (i = 0; i < race->n; i++) {
    if (described++ && strlen(msg) + 2 < sizeof msg)
      strcat(msg, ", ");
    describe(race, i, msg, sizeof msg);
  }
  race_free(race);
  done(ud, -1, NULL, code, msg);
}

/* Only the failure of the attempt started last starts the next one at
 * once (RFC 8305, asyncio's staggered start: each attempt waits for the
 * one before it to fail, or for the delay); an older one's failure
 * leaves the delay running. */
static void attempt_failed(tapio__race *race, attempt *at, int code) {
  int latest = (size_t)(at - race->at) + 1 == race->next;
  stop_attempt(race, at);
  at->code = code;
  race->running--;
  if (race->next < race->n && (latest || race->running == 0))
    start_next(race);
  else if (race->running == 0)
    all_failed(race);
}

static void won(tapio__race *race, attempt *at) {
  size_t i = (size_t)(at - race->at);
  int fd = at->io.fd;
  tapio__addr addr = race->addrs[i];
  tapio__race_fn done = race->done;
  void *ud = race->ud;
  ev_io_stop(race->loop->ev, &at->io);
  at->io.fd = -1; /* the winner's descriptor is the caller's now */
  race_free(race);
  done(ud, fd, &addr, 0, NULL);
}

static void on_connect(struct ev_loop *ev, ev_io *w, int revents) {
  attempt *at = TAPIO_CONTAINER(w, attempt, io);
  int err = 0;
  socklen_t len = sizeof err;
  (void)ev;
  (void)revents;
  if (getsockopt(w->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
    err = errno;
  if (err == 0)
    won(at->race, at);
  else
    attempt_failed(at->race, at, tapio__from_errno(err));
}

/* Starts attempt i: 0 when under way, or its error. */
static int begin(tapio__race *race, size_t i) {
  attempt *at = &race->at[i];
  const tapio__addr *a = &race->addrs[i];
  int af = a->ss.ss_family, rc = 0;
  int fd = socket(af, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
                  race->proto);
  if (fd < 0)
    return tapio__from_errno(errno);
  at->io.fd = fd;
  if (race->nlocals)
    rc = bind_local(race, at, fd, af);
  if (rc == 0 && connect(fd, (const struct sockaddr *)&a->ss, a->len) < 0 &&
      errno != EINPROGRESS)
    rc = tapio__from_errno(errno);
  if (rc < 0)
    return rc;
  ev_io_set(&at->io, fd, EV_WRITE);
  ev_io_start(race->loop->ev, &at->io);
  return 0;
}

/* Starts the next address (and the next after it, as long as they fail
 * at once); then waits `delay` before another. */
static void start_next(tapio__race *race) {
  while (race->next < race->n) {
    attempt *at = &race->at[race->next++];
    int rc = begin(race, (size_t)(at - race->at));
    race->running++;
    if (rc == 0)
      break;
    stop_attempt(race, at);
    at->code = rc;
    race->running--;
  }
  if (race->running == 0) {
    all_failed(race);
    return;
  }
  if (race->delay >= 0 && race->next < race->n)
    tapio__timer_start(&race->timer, race->delay);
}

static void on_delay(tapio__timer *tm) {
  start_next(TAPIO_CONTAINER(tm, tapio__race, timer));
}

int tapio__race_start(tapio_loop *loop, tapio__addr *addrs, size_t n,
                      const tapio__addr *locals, size_t nlocals, double delay,
                      size_t first, int proto, tapio__race_fn done, void *ud,
                      tapio__race **out) {
  tapio__race *race;
  size_t i;
  *out = NULL;
  race = tapio__calloc(loop, race_size(n));
  if (!race)
    return TAPIO_ENOMEM;
  if (first > 0 && n > 1)
    interleave(loop, addrs, n, first);
  race->loop = loop;
  race->addrs = addrs;
  race->n = n;
  race->locals = locals;
  race->nlocals = nlocals;
  race->delay = delay;
  race->proto = proto;
  race->done = done;
  race->ud = ud;
  tapio__timer_init(&race->timer, loop, on_delay);
  for (i = 0; i < n; i++) {
    race->at[i].race = race;
    race->at[i].io.fd = -1;
    ev_init(&race->at[i].io, on_connect);
  }
  *out = race;
  start_next(race);
  return 0;
}
