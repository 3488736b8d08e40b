/* The load generator's UDP modes (see load.c for the rest).
 *
 *   load udp --port P --conns N --size B --depth D [--warmup S]
 *            [--duration S] [--pid PID]
 *       N UDP sockets, each connected to 127.0.0.1:P, keep D datagrams of
 *       B bytes in flight and send a new one whenever one comes back.
 *       After the warm-up, counts the datagrams echoed for the duration and,
 *       with --pid, the server's CPU time over exactly that window. Each
 *       datagram carries its socket's number and sequence number, and its
 *       bytes follow from them: an echo that is not byte for byte a
 *       datagram this socket sent fails the run. UDP may drop: a socket
 *       that hears nothing for LOST_SECS counts what it had in flight as
 *       lost and sends a fresh window (a late echo of a lost one is
 *       counted as late, never as an echo). Losses above 1% fail the run.
 *   load udpcount --port P --conns N --size B --depth D --requests R
 *            [--deadline S]
 *       The same load, but exactly R datagrams in all (R / N on each
 *       socket, rounded up), all of them echoed, and no clock but the
 *       deadline: for counting what a server does per datagram (a lost
 *       datagram fails the run).
 *   load udpwait --port P [--deadline S] [--pid PID]
 *       Sends probe datagrams to 127.0.0.1:P until one comes back (exit 0),
 *       the deadline passes or process PID exits (exit 1).
 *
 * Results go to stdout as one line of key=value pairs, as load.c's. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "load.h"

enum { HEADER = 8, MAX_DGRAM = 65507 };
static const double LOST_SECS = 0.2;

struct uconn {
  int fd;
  uint32_t idx, next_seq;
  int inflight;
  double last;        /* when it last sent a window or had an echo */
};

struct urun {
  const struct opts *o;
  struct uconn *c;
  int ep;
  uint64_t echoed, lost, late;
  uint32_t quota;     /* datagrams per socket in udpcount, else 0 */
};

static unsigned char out_buf[MAX_DGRAM], in_buf[MAX_DGRAM + 1];

/* The bytes of datagram seq of socket idx after its header. */
static unsigned char byte_at(uint32_t idx, uint32_t seq, size_t i)
{
  return (unsigned char)(idx * 131 + seq * 31 + i * 7);
}

static int udp_socket(int port)
{
  struct sockaddr_in sa = { .sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port) };
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0)
    die("udp socket: %s", strerror(errno));
  return fd;
}

/* Sends one new datagram; 0 when the socket refused it. */
static int send_one(struct urun *r, struct uconn *c)
{
  size_t size = r->o->size;
  uint32_t seq = c->next_seq;
  if (r->quota && seq == r->quota)
    return 0;
  memcpy(out_buf, &c->idx, 4);
  memcpy(out_buf + 4, &seq, 4);
  for (size_t i = HEADER; i < size; i++)
    out_buf[i] = byte_at(c->idx, seq, i);
  if (send(c->fd, out_buf, size, 0) < 0) {
    if (errno == EAGAIN || errno == ENOBUFS || errno == ECONNREFUSED)
      return 0; /* refilled after LOST_SECS */
    die("send: %s", strerror(errno));
  }
  c->next_seq++;
  c->inflight++;
  return 1;
}

static void fill_window(struct urun *r, struct uconn *c)
{
  while (c->inflight < r->o->depth && send_one(r, c))
    ;
  c->last = now();
}

static void check_echo(const struct urun *r, const struct uconn *c,
                       ssize_t n)
{
  uint32_t idx, seq;
  if ((size_t)n != r->o->size)
    die("an echo of %zd bytes for %zu sent", n, r->o->size);
  memcpy(&idx, in_buf, 4);
  memcpy(&seq, in_buf + 4, 4);
  if (idx != c->idx || seq >= c->next_seq)
    die("an echo that socket %u never sent", c->idx);
  if (!r->o->verify)
    return;
  for (size_t i = HEADER; i < (size_t)n; i++)
    if (in_buf[i] != byte_at(idx, seq, i))
      die("echoed bytes differ from the bytes sent");
}

/* Reads no more than the socket has in flight (one, for a late echo):
 * one more recv would only say EAGAIN, and the load generator must stay
 * cheaper than the servers it paces. */
static void receive(struct urun *r, struct uconn *c)
{
  int budget = c->inflight > 0 ? c->inflight : 1;
  while (budget-- > 0) {
    ssize_t n = recv(c->fd, in_buf, sizeof in_buf, 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
      return;
    if (n < 0 && errno == ECONNREFUSED)
      die("the server is not there (connection refused)");
    if (n < 0)
      die("recv: %s", strerror(errno));
    check_echo(r, c, n);
    if (c->inflight == 0) { /* counted lost already */
      r->late++;
      continue;
    }
    c->inflight--;
    r->echoed++;
    c->last = now();
    send_one(r, c);
  }
}

/* Sockets that heard nothing for LOST_SECS lost what was in flight. */
static void refill(struct urun *r)
{
  double t = now();
  for (int i = 0; i < r->o->conns; i++) {
    struct uconn *c = &r->c[i];
    if (t - c->last < LOST_SECS)
      continue;
    r->lost += (uint64_t)c->inflight;
    c->inflight = 0;
    fill_window(r, c);
  }
}

static void pump(struct urun *r, double until)
{
  struct epoll_event ev[256];
  double next_check = now() + LOST_SECS / 2;
  for (;;) {
    double t = now(), left = until - t;
    if (left <= 0)
      return;
    if (t >= next_check) {
      refill(r);
      next_check = t + LOST_SECS / 2;
    }
    int ms = left > 0.05 ? 50 : (int)(left * 1000) + 1;
    int n = epoll_wait(r->ep, ev, 256, ms);
    if (n < 0 && errno != EINTR)
      die("epoll_wait: %s", strerror(errno));
    for (int i = 0; i < n; i++)
      receive(r, ev[i].data.ptr);
  }
}

static void open_sockets(struct urun *r)
{
  r->c = calloc((size_t)r->o->conns, sizeof *r->c);
  r->ep = epoll_create1(EPOLL_CLOEXEC);
  if (!r->c || r->ep < 0)
    die("out of memory or descriptors");
  for (int i = 0; i < r->o->conns; i++) {
    struct uconn *c = &r->c[i];
    struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };
    c->fd = udp_socket(r->o->port);
    c->idx = (uint32_t)i;
    if (epoll_ctl(r->ep, EPOLL_CTL_ADD, c->fd, &ev) < 0)
      die("epoll_ctl: %s", strerror(errno));
    fill_window(r, c);
  }
}

int mode_udp(const struct opts *o)
{
  struct urun r = { .o = o };
  double busy0, steal0, busy1, steal1;
  if (o->size < HEADER || o->size > MAX_DGRAM)
    die("--size must be %d..%d for udp", HEADER, MAX_DGRAM);
  open_sockets(&r);
  pump(&r, now() + o->warmup);
  uint64_t echoed0 = r.echoed, lost0 = r.lost;
  double cpu0 = o->pid ? proc_cpu(o->pid) : 0, self0 = self_cpu();
  if (cpu0 < 0)
    die("cannot read the CPU time of pid %d", o->pid);
  machine_cpu(&busy0, &steal0);
  double t0 = now();
  pump(&r, t0 + o->duration);
  double secs = now() - t0;
  double cpu = o->pid ? proc_cpu(o->pid) - cpu0 : 0;
  double self = self_cpu() - self0;
  machine_cpu(&busy1, &steal1);
  double other = busy1 - busy0 - cpu - self;
  uint64_t n = r.echoed - echoed0, lost = r.lost - lost0;
  if (n == 0)
    die("no echo in %.1f s", secs);
  if (lost * 100 > n)
    die("%llu of %llu datagrams lost", (unsigned long long)lost,
        (unsigned long long)(n + lost));
  printf("mode=udp conns=%d size=%zu depth=%d secs=%.3f datagrams=%llu "
         "requests=%llu rps=%.1f server_cpu_s=%.3f cpu_us_per_req=%.4f "
         "load_cpu_s=%.3f other_cpu_s=%.2f steal_s=%.2f lost=%llu late=%llu "
         "verify=%s\n", o->conns, o->size, o->depth, secs,
         (unsigned long long)n, (unsigned long long)n, (double)n / secs, cpu,
         cpu * 1e6 / (double)n, self, other > 0 ? other : 0, steal1 - steal0,
         (unsigned long long)lost, (unsigned long long)r.late,
         o->verify ? "content" : "count");
  for (int i = 0; i < o->conns; i++)
    close(r.c[i].fd);
  free(r.c);
  close(r.ep);
  return 0;
}

int mode_udpcount(const struct opts *o)
{
  struct urun r = { .o = o };
  uint64_t all;
  double t0 = now();
  if (o->size < HEADER || o->size > MAX_DGRAM)
    die("--size must be %d..%d for udpcount", HEADER, MAX_DGRAM);
  r.quota = (uint32_t)((o->requests + (uint64_t)o->conns - 1) /
                       (uint64_t)o->conns);
  if (r.quota == 0)
    die("udpcount needs --requests");
  all = (uint64_t)r.quota * (uint64_t)o->conns;
  open_sockets(&r);
  while (r.echoed < all) {
    struct epoll_event ev[256];
    int n = epoll_wait(r.ep, ev, 256, 1000);
    if (n < 0 && errno != EINTR)
      die("epoll_wait: %s", strerror(errno));
    for (int i = 0; i < n; i++)
      receive(&r, ev[i].data.ptr);
    if (now() - t0 > o->deadline)
      die("%llu of %llu datagrams echoed in %.0f s",
          (unsigned long long)r.echoed, (unsigned long long)all, o->deadline);
  }
  printf("mode=udpcount conns=%d size=%zu depth=%d requests=%llu "
         "secs=%.3f late=%llu\n", o->conns, o->size, o->depth,
         (unsigned long long)all, now() - t0, (unsigned long long)r.late);
  for (int i = 0; i < o->conns; i++)
    close(r.c[i].fd);
  free(r.c);
  close(r.ep);
  return 0;
}

int mode_udpwait(const struct opts *o)
{
  double until = now() + o->deadline;
  int fd = udp_socket(o->port);
  while (now() < until) {
    struct pollfd p = { .fd = fd, .events = POLLIN };
    send(fd, "probe", 5, 0);    /* refused while nothing is bound: retry */
    if (poll(&p, 1, 20) > 0 && recv(fd, in_buf, sizeof in_buf, 0) > 0) {
      close(fd);
      return 0;
    }
    if (o->pid && !proc_alive(o->pid)) {
      fprintf(stderr, "load: server pid %d exited before echoing\n", o->pid);
      return 1;
    }
  }
  fprintf(stderr, "load: nothing echoes on UDP port %d after %.1f s\n",
          o->port, o->deadline);
  close(fd);
  return 1;
}
