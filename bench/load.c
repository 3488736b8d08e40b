/* load: the echo benchmark's load generator. One thread, epoll, loopback.
 *
 *   load wait --port P [--deadline S] [--pid PID]
 *       Connect-polls 127.0.0.1:P until a server accepts (exit 0) or the
 *       deadline passes or process PID exits (exit 1).
 *   load echo --port P --conns N --size B --depth D [--warmup S]
 *             [--duration S] [--pid PID] [--verify content|count]
 *             [--lines yes]
 *       N connections each keep D requests of B bytes in flight and send a
 *       new one whenever a whole echo is back (D = 1 is ping-pong; a large
 *       B with a deep D is streaming). After the warm-up, counts the
 *       echoed bytes for the duration and, with --pid, the server's CPU
 *       time over exactly that window.
 *   load count --port P --conns N --size B --depth D --requests R
 *       The same load, but exactly R requests in all (R / N on each
 *       connection, rounded up) and no clock: for counting what a server
 *       does per request (instructions under valgrind), where only the
 *       number of requests may differ between two runs.
 *   load idle --port P --conns N --size B --pid PID [--stats-port P]
 *       Opens N connections, makes one B-byte round trip on each (so the
 *       server has accepted and served them all), and reports the
 *       server's RSS growth per connection; with --stats-port, also the
 *       growth of the number the server reports there (tapio_echo's
 *       tapio_loop_memory).
 *   load udp ..., udpcount ..., udpwait ...: the UDP echo rows (load_udp.c).
 *
 * Every connection sends a deterministic byte stream (a fixed pseudo-random
 * pattern at a per-connection offset), so the echo can be checked byte for
 * byte ("content") or by count ("count": no more bytes than were sent, and
 * all of them back in the end). With --lines yes every request is a line:
 * B - 1 bytes without a newline, then "\n" (for servers that read lines).
 * At the end each connection shuts down its sending side and reads until
 * EOF, and every byte sent must have come back. Any failure prints one
 * "error=..." line and exits 1.
 *
 * Results go to stdout as one line of key=value pairs. Every loop here is
 * bounded by a deadline. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "load.h"

/* The pattern's period is 64 times a prime, so that consecutive requests
 * of any power-of-two size carry different bytes while every write of a
 * 64-byte multiple starts cache-line aligned (the kernel copies unaligned
 * buffers several times slower on some CPUs, and the load generator is
 * often the bottleneck). The tail past the period repeats its start so
 * any MAX_IO-byte window is contiguous. */
enum { LINE = 64, PERIOD = LINE * 1021, MAX_IO = 256 * 1024 };
static _Alignas(4096) unsigned char pattern[PERIOD + MAX_IO];
/* The period in use: PERIOD, or with --lines the largest multiple of the
 * request size up to it (every request then ends where a line does). */
static size_t period = PERIOD;
static _Alignas(4096) unsigned char read_buf[MAX_IO];

/* How long the connecting, round-trip and draining phases may take. */
static const double SETUP_SECS = 30, DRAIN_SECS = 10;

struct conn {
  int fd;
  int out_armed;      /* EPOLLOUT is being watched */
  int eof;            /* the server closed its side */
  uint32_t seed;      /* where this connection's stream starts */
  uint64_t sent, recvd;
};


struct run {
  const struct opts *o;
  struct conn *c;
  int ep;
  int sending;        /* 0 once the drain has begun */
  uint64_t limit;     /* bytes each connection sends in all */
  uint64_t recvd;     /* echoed bytes over all connections */
  int done;           /* connections that reached limit, or EOF */
};

void die(const char *fmt, ...)
{
  char msg[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  for (char *p = msg; *p; p++)
    if (*p == ' ')            /* keep the line one key=value per field */
      *p = '_';
  printf("error=%s\n", msg);
  fflush(stdout);
  exit(1);
}

double now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* With lines, every size-th byte is the newline and no other is. */
static void fill_pattern(size_t size, int lines)
{
  uint32_t x = 2463534242u;   /* xorshift32: cheap, fixed, not periodic */
  period = lines ? PERIOD / size * size : PERIOD;
  for (size_t i = 0; i < period; i++) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    pattern[i] = (unsigned char)x;
    if (lines)
      pattern[i] = i % size == size - 1 ? '\n'
                   : pattern[i] == '\n' ? 'n' : pattern[i];
  }
  for (size_t i = period; i < sizeof pattern; i++)
    pattern[i] = pattern[i - period];
}

/* The connection's stream from offset off on, valid for MAX_IO bytes. */
static const unsigned char *stream_at(const struct conn *c, uint64_t off)
{
  return pattern + (c->seed + off) % period;
}

/* ---- The server process, from /proc ---------------------------------- */

/* utime + stime of pid in seconds from /proc/PID/stat (clock ticks), or
 * -1. */
static double proc_cpu_ticks(int pid)
{
  char path[64], buf[1024];
  snprintf(path, sizeof path, "/proc/%d/stat", pid);
  FILE *f = fopen(path, "r");
  if (!f)
    return -1;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = 0;
  char *p = strrchr(buf, ')');  /* the command name may hold spaces */
  unsigned long long ut, st;
  /* After ')': state is field 3; utime and stime are fields 14 and 15. */
  if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u "
                   "%llu %llu", &ut, &st) != 2)
    return -1;
  return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* The CPU time of every thread of pid in seconds, from the scheduler's
 * nanosecond figures (/proc/PID/task/TID/schedstat): a 1 s window counted
 * in 10 ms clock ticks would be 1% off. Falls back to clock ticks. */
double proc_cpu(int pid)
{
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/task", pid);
  DIR *d = opendir(path);
  if (!d)
    return -1;
  double sum = 0;
  int ok = 1;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    char file[300];
    unsigned long long ns;
    if (e->d_name[0] == '.')
      continue;
    snprintf(file, sizeof file, "/proc/%d/task/%s/schedstat", pid,
             e->d_name);
    FILE *f = fopen(file, "r");
    if (!f)
      continue;                 /* a thread that just ended */
    if (fscanf(f, "%llu", &ns) == 1)
      sum += (double)ns / 1e9;
    else
      ok = 0;
    fclose(f);
  }
  closedir(d);
  return ok ? sum : proc_cpu_ticks(pid);
}

/* VmRSS of pid in KiB, or -1. */
long proc_rss_kb(int pid)
{
  char path[64], line[256];
  long kb = -1;
  snprintf(path, sizeof path, "/proc/%d/status", pid);
  FILE *f = fopen(path, "r");
  if (!f)
    return -1;
  while (fgets(line, sizeof line, f))
    if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
      break;
  fclose(f);
  return kb;
}

/* CPU seconds spent in user and system mode by every process on the
 * machine, and the time the hypervisor stole, from /proc/stat. */
void machine_cpu(double *busy, double *steal)
{
  unsigned long long us, ni, sy, id, io, irq, sirq, st;
  FILE *f = fopen("/proc/stat", "r");
  *busy = *steal = 0;
  if (!f)
    return;
  if (fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &us, &ni,
             &sy, &id, &io, &irq, &sirq, &st) == 8) {
    double hz = (double)sysconf(_SC_CLK_TCK);
    *busy = (double)(us + ni + sy) / hz;
    *steal = (double)st / hz;
  }
  fclose(f);
}

double self_cpu(void)
{
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

/* ---- Sockets ----------------------------------------------------------- */

/* A blocking connect to 127.0.0.1:port that gives up after timeout
 * seconds: the descriptor, or -1 with errno set. */
static int dial(int port, int timeout)
{
  struct sockaddr_in sa = { .sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port) };
  struct timeval tv = { .tv_sec = timeout };
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -1;
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
    int e = errno;
    close(fd);
    errno = e;
    return -1;
  }
  return fd;
}

/* The decimal number a stats port answers with, or -1. */
long long query_stats(int port)
{
  char buf[64];
  size_t len = 0;
  ssize_t n;
  int fd = dial(port, 5);
  if (fd < 0)
    die("stats port %d: %s", port, strerror(errno));
  while (len < sizeof buf - 1 &&
         (n = read(fd, buf + len, sizeof buf - 1 - len)) > 0)
    len += (size_t)n;
  close(fd);
  buf[len] = 0;
  return len ? atoll(buf) : -1;
}

static void raise_nofile(void)
{
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

/* ---- Connections ------------------------------------------------------- */

static void watch_out(struct run *r, struct conn *c, int on)
{
  struct epoll_event ev = { .events = EPOLLIN | (on ? EPOLLOUT : 0),
                            .data.ptr = c };
  if (c->out_armed == on)
    return;
  if (epoll_ctl(r->ep, EPOLL_CTL_MOD, c->fd, &ev) < 0)
    die("epoll_ctl: %s", strerror(errno));
  c->out_armed = on;
}

/* How far this connection's stream may be sent now: D whole requests
 * beyond the last one fully echoed, and never past the limit. */
static uint64_t send_target(const struct run *r, const struct conn *c)
{
  uint64_t size = r->o->size;
  uint64_t t = (c->recvd / size + (uint64_t)r->o->depth) * size;
  return t < r->limit ? t : r->limit;
}

static void conn_send(struct run *r, struct conn *c)
{
  uint64_t target = r->sending ? send_target(r, c) : c->sent;
  while (c->sent < target) {
    uint64_t want = target - c->sent;
    size_t len = want < MAX_IO ? (size_t)want : MAX_IO;
    ssize_t n = write(c->fd, stream_at(c, c->sent), len);
    if (n > 0) {
      c->sent += (uint64_t)n;
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      watch_out(r, c, 1);
      return;
    } else if (!(n < 0 && errno == EINTR)) {
      die("write: %s", n < 0 ? strerror(errno) : "wrote nothing");
    }
  }
  watch_out(r, c, 0);
}

/* EOF is only expected once we have shut our side down. */
static void conn_eof(struct run *r, struct conn *c)
{
  if (r->sending)
    die("server closed a connection mid-run");
  if (c->recvd != c->sent)
    die("EOF after %llu of %llu bytes echoed",
        (unsigned long long)c->recvd, (unsigned long long)c->sent);
  c->eof = 1;
  r->done++;
  if (epoll_ctl(r->ep, EPOLL_CTL_DEL, c->fd, NULL) < 0)
    die("epoll_ctl: %s", strerror(errno));
}

static void conn_recv(struct run *r, struct conn *c)
{
  ssize_t n = read(c->fd, read_buf, sizeof read_buf);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
    return;
  if (n < 0)
    die("read: %s", strerror(errno));
  if (n == 0) {
    conn_eof(r, c);
    return;
  }
  if (c->recvd + (uint64_t)n > c->sent)
    die("server sent %llu bytes more than it was sent",
        (unsigned long long)(c->recvd + (uint64_t)n - c->sent));
  if (r->o->verify && memcmp(read_buf, stream_at(c, c->recvd), (size_t)n))
    die("echoed bytes differ from the bytes sent");
  uint64_t before = c->recvd;
  c->recvd += (uint64_t)n;
  r->recvd += (uint64_t)n;
  if (r->sending && before < r->limit && c->recvd >= r->limit)
    r->done++;
  conn_send(r, c);
}

static void open_conns(struct run *r)
{
  const struct opts *o = r->o;
  int one = 1;
  r->c = calloc((size_t)o->conns, sizeof *r->c);
  if (!r->c)
    die("out of memory");
  for (int i = 0; i < o->conns; i++) {
    struct conn *c = &r->c[i];
    c->fd = dial(o->port, 5);
    if (c->fd < 0)
      die("connection %d: %s", i, strerror(errno));
    fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    /* a multiple of 64 (aligned writes) or, with lines, of the size */
    size_t unit = o->lines ? o->size : LINE;
    c->seed = (uint32_t)((uint64_t)i * 7919 % (period / unit) * unit);
    struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };
    if (epoll_ctl(r->ep, EPOLL_CTL_ADD, c->fd, &ev) < 0)
      die("epoll_ctl: %s", strerror(errno));
  }
}

/* ---- The event loop ---------------------------------------------------- */

/* Serves events until the time `until` or, when all is nonzero, until
 * every connection is done: 1 if they all are, else 0. */
static int pump(struct run *r, double until, int all)
{
  struct epoll_event ev[256];
  for (;;) {
    if (all && r->done == r->o->conns)
      return 1;
    double left = until - now();
    if (left <= 0)
      return 0;
    int ms = left > 0.1 ? 100 : (int)(left * 1000) + 1;
    int n = epoll_wait(r->ep, ev, 256, ms);
    if (n < 0 && errno != EINTR)
      die("epoll_wait: %s", strerror(errno));
    for (int i = 0; i < n; i++) {
      struct conn *c = ev[i].data.ptr;
      if (ev[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))
        conn_recv(r, c);
      if (!c->eof && (ev[i].events & EPOLLOUT))
        conn_send(r, c);
    }
  }
}

/* Shuts every sending side down and waits for every byte and the EOF, so
 * a server that loses data cannot go unnoticed, and no connection ends
 * with a reset. */
static void drain_and_close(struct run *r)
{
  r->sending = 0;
  r->done = 0;
  for (int i = 0; i < r->o->conns; i++) {
    watch_out(r, &r->c[i], 0);
    if (shutdown(r->c[i].fd, SHUT_WR) < 0)
      die("shutdown: %s", strerror(errno));
  }
  if (!pump(r, now() + DRAIN_SECS, 1))
    die("%d of %d connections not echoed to the end in %.0f s",
        r->o->conns - r->done, r->o->conns, DRAIN_SECS);
  for (int i = 0; i < r->o->conns; i++)
    close(r->c[i].fd);
  free(r->c);
}

static void run_init(struct run *r, const struct opts *o, uint64_t limit)
{
  memset(r, 0, sizeof *r);
  r->o = o;
  r->limit = limit;
  r->sending = 1;
  r->ep = epoll_create1(EPOLL_CLOEXEC);
  if (r->ep < 0)
    die("epoll_create1: %s", strerror(errno));
  fill_pattern(o->size, o->lines);
}

/* ---- Modes ------------------------------------------------------------- */

/* 1 while pid runs (not gone, not a zombie). */
int proc_alive(int pid)
{
  char path[64], buf[512];
  snprintf(path, sizeof path, "/proc/%d/stat", pid);
  FILE *f = fopen(path, "r");
  if (!f)
    return 0;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = 0;
  char *p = strrchr(buf, ')');
  return p && p[1] == ' ' && p[2] != 'Z' && p[2] != 'X';
}

static int mode_wait(const struct opts *o)
{
  double until = now() + o->deadline;
  struct timespec pause = { .tv_nsec = 2 * 1000 * 1000 };
  while (now() < until) {
    int fd = dial(o->port, 1);
    if (fd >= 0) {
      close(fd);
      return 0;
    }
    if (o->pid && !proc_alive(o->pid)) {
      fprintf(stderr, "load: server pid %d exited before accepting\n",
              o->pid);
      return 1;
    }
    nanosleep(&pause, NULL);    /* poll interval, not a synchronisation */
  }
  fprintf(stderr, "load: nothing accepts on port %d after %.1f s\n",
          o->port, o->deadline);
  return 1;
}

static int mode_echo(const struct opts *o)
{
  struct run r;
  run_init(&r, o, UINT64_MAX);
  open_conns(&r);
  for (int i = 0; i < o->conns; i++)
    conn_send(&r, &r.c[i]);
  pump(&r, now() + o->warmup, 0);
  uint64_t bytes0 = r.recvd;
  double cpu0 = o->pid ? proc_cpu(o->pid) : 0, self0 = self_cpu();
  if (cpu0 < 0)
    die("cannot read the CPU time of pid %d", o->pid);
  double busy0, steal0, busy1, steal1;
  machine_cpu(&busy0, &steal0);
  double t0 = now();
  pump(&r, t0 + o->duration, 0);
  double secs = now() - t0;
  double cpu = o->pid ? proc_cpu(o->pid) - cpu0 : 0;
  double self = self_cpu() - self0;
  machine_cpu(&busy1, &steal1);
  /* What the rest of the machine did meanwhile: noise on the figures. */
  double other = busy1 - busy0 - cpu - self;
  uint64_t bytes = r.recvd - bytes0;
  drain_and_close(&r);
  if (bytes == 0)
    die("no echo in %.1f s", secs);
  double reqs = (double)bytes / (double)o->size, mb = (double)bytes / 1e6;
  printf("mode=echo conns=%d size=%zu depth=%d secs=%.3f bytes=%llu "
         "requests=%.0f rps=%.1f mbps=%.2f server_cpu_s=%.3f "
         "cpu_us_per_req=%.4f cpu_us_per_mb=%.2f load_cpu_s=%.3f "
         "other_cpu_s=%.2f steal_s=%.2f verify=%s\n", o->conns, o->size,
         o->depth, secs, (unsigned long long)bytes, reqs, reqs / secs,
         mb / secs, cpu, cpu * 1e6 / reqs, cpu * 1e6 / mb, self,
         other > 0 ? other : 0, steal1 - steal0,
         o->verify ? "content" : "count");
  return 0;
}

/* Exactly o->requests requests (rounded up to a multiple of the
 * connections), then the drain: nothing here depends on the clock but the
 * deadline, so two runs differ only in the count. */
static int mode_count(const struct opts *o)
{
  struct run r;
  uint64_t per_conn = (o->requests + (uint64_t)o->conns - 1) /
                      (uint64_t)o->conns;
  if (per_conn == 0)
    die("count needs --requests");
  run_init(&r, o, per_conn * o->size);
  double t0 = now();
  open_conns(&r);
  for (int i = 0; i < o->conns; i++)
    conn_send(&r, &r.c[i]);
  if (!pump(&r, t0 + o->deadline, 1))
    die("only %d of %d connections done in %.0f s", r.done, o->conns,
        o->deadline);
  drain_and_close(&r);
  printf("mode=count conns=%d size=%zu depth=%d requests=%llu secs=%.3f\n",
         o->conns, o->size, o->depth,
         (unsigned long long)(per_conn * (uint64_t)o->conns), now() - t0);
  return 0;
}

static int mode_idle(const struct opts *o)
{
  struct run r;
  if (!o->pid)
    die("idle needs --pid");
  run_init(&r, o, o->size);
  long rss0 = proc_rss_kb(o->pid);
  long long mem0 = o->stats_port ? query_stats(o->stats_port) : -1;
  open_conns(&r);
  for (int i = 0; i < o->conns; i++)
    conn_send(&r, &r.c[i]);
  if (!pump(&r, now() + SETUP_SECS, 1))
    die("only %d of %d round trips done in %.0f s", r.done, o->conns,
        SETUP_SECS);
  long rss1 = proc_rss_kb(o->pid);
  long long mem1 = o->stats_port ? query_stats(o->stats_port) : -1;
  drain_and_close(&r);
  if (rss0 < 0 || rss1 < 0)
    die("cannot read VmRSS of pid %d", o->pid);
  printf("mode=idle conns=%d size=%zu rss_before_kb=%ld rss_after_kb=%ld "
         "rss_per_conn=%.1f", o->conns, o->size, rss0, rss1,
         (double)(rss1 - rss0) * 1024 / o->conns);
  if (mem0 >= 0 && mem1 >= 0)
    printf(" cmem_before=%lld cmem_after=%lld cmem_per_conn=%.1f", mem0,
           mem1, (double)(mem1 - mem0) / o->conns);
  printf("\n");
  return 0;
}

/* ---- Options ----------------------------------------------------------- */

static void usage(void)
{
  fprintf(stderr,
          "usage: load wait --port P [--deadline S] [--pid PID]\n"
          "       load echo --port P --conns N --size B --depth D\n"
          "                 [--warmup S] [--duration S] [--pid PID]\n"
          "                 [--verify content|count] [--lines yes]\n"
          "       load count --port P --conns N --size B --depth D\n"
          "                 --requests R [--deadline S]\n"
          "       load idle --port P --conns N --size B --pid PID\n"
          "                 [--stats-port P]\n"
          "       load udp --port P --conns N --size B --depth D\n"
          "                [--warmup S] [--duration S] [--pid PID]\n"
          "       load udpcount --port P --conns N --size B --depth D\n"
          "                --requests R [--deadline S]\n"
          "       load udpwait --port P [--deadline S] [--pid PID]\n"
          "       load tls-stream --port P --conns N --size B --depth D\n"
          "                 [--warmup S] [--duration S] [--pid PID]\n"
          "       load tls-handshake --port P --conns N [--warmup S]\n"
          "                 [--duration S] [--pid PID]\n"
          "       load tls-idle --port P --conns N --pid PID\n"
          "                 [--stats-port P]\n");
  exit(2);
}

static void parse_opt(struct opts *o, const char *k, const char *v)
{
  if (!strcmp(k, "--port")) o->port = atoi(v);
  else if (!strcmp(k, "--stats-port")) o->stats_port = atoi(v);
  else if (!strcmp(k, "--conns")) o->conns = atoi(v);
  else if (!strcmp(k, "--size")) o->size = (size_t)atol(v);
  else if (!strcmp(k, "--depth")) o->depth = atoi(v);
  else if (!strcmp(k, "--pid")) o->pid = atoi(v);
  else if (!strcmp(k, "--warmup")) o->warmup = atof(v);
  else if (!strcmp(k, "--duration")) o->duration = atof(v);
  else if (!strcmp(k, "--deadline")) o->deadline = atof(v);
  else if (!strcmp(k, "--requests")) o->requests = strtoull(v, NULL, 10);
  else if (!strcmp(k, "--verify")) o->verify = !strcmp(v, "content");
  else if (!strcmp(k, "--lines")) o->lines = !strcmp(v, "yes");
  else usage();
}

static void parse(struct opts *o, int argc, char **argv)
{
  *o = (struct opts){ .conns = 1, .size = 64, .depth = 1, .warmup = 1,
                      .duration = 5, .deadline = 10, .verify = 1 };
  if (argc < 2)
    usage();
  o->mode = argv[1];
  for (int i = 2; i < argc; i += 2) {
    if (i + 1 >= argc)
      usage();
    parse_opt(o, argv[i], argv[i + 1]);
  }
  if (o->port <= 0 || o->port > 65535 || o->conns <= 0 || o->depth <= 0 ||
      o->size == 0 || o->size > MAX_IO || o->duration <= 0 ||
      (o->lines && (o->size < 2 || o->size > PERIOD)) ||
      o->warmup < 0)
    usage();
}

int main(int argc, char **argv)
{
  struct opts o;
  parse(&o, argc, argv);
  raise_nofile();
  signal(SIGPIPE, SIG_IGN);     /* a dead server shows as EPIPE, reported */
  if (!strcmp(o.mode, "wait"))
    return mode_wait(&o);
  if (!strcmp(o.mode, "echo"))
    return mode_echo(&o);
  if (!strcmp(o.mode, "idle"))
    return mode_idle(&o);
  if (!strcmp(o.mode, "count"))
    return mode_count(&o);
  if (!strcmp(o.mode, "udp"))
    return mode_udp(&o);
  if (!strcmp(o.mode, "udpcount"))
    return mode_udpcount(&o);
  if (!strcmp(o.mode, "udpwait"))
    return mode_udpwait(&o);
  if (!strncmp(o.mode, "tls-", 4))
    return mode_tls(&o);
  usage();
  return 2;
}
