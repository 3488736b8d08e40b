/* The tests' own DNS server (spec/support/dns_server.py, see its zone)
 * as a child process: started per test, pointed at with
 * tapio_loop_set_resolver, gone when its stdin closes. With log set, it
 * prints each query it gets, which dns_queries reads back. */
#ifndef TAPIO_TEST_DNS_H
#define TAPIO_TEST_DNS_H

#include "test.h"

#ifndef TAPIO_SPEC_DIR
#error "TAPIO_SPEC_DIR must name spec/ (the build defines it)"
#endif

typedef struct dns_server {
  pid_t pid;
  int in;          /* its stdin: closing it ends the server */
  int out;         /* its stdout, non-blocking after the PORT line */
  int port;
  char servers[32]; /* "127.0.0.1:port", for tapio_loop_set_resolver */
} dns_server;

/* Reads one line (blocking, bounded by the test's alarm) into buf. */
static inline void dns_read_line(int fd, char *buf, size_t cap)
{
  size_t n = 0;
  while (n + 1 < cap) {
    ssize_t k = read(fd, buf + n, 1);
    if (k <= 0)
      FAIL("the DNS server ended before it listened");
    if (buf[n] == '\n')
      break;
    n++;
  }
  buf[n] = '\0';
}

static inline void dns_start(dns_server *d, int log)
{
  int in[2], out[2];
  char line[64];
  CHECK(pipe(in) == 0 && pipe(out) == 0);
  fflush(NULL);
  d->pid = fork();
  CHECK(d->pid >= 0);
  if (d->pid == 0) {
    dup2(in[0], 0);
    dup2(out[1], 1);
    close(in[1]);
    close(out[0]);
    execlp("python3", "python3", TAPIO_SPEC_DIR "/support/dns_server.py",
           log ? "--log" : "--port=0", (char *)NULL);
    _exit(127);
  }
  close(in[0]);
  close(out[1]);
  d->in = in[1];
  d->out = out[0];
  fcntl(d->in, F_SETFD, FD_CLOEXEC);
  fcntl(d->out, F_SETFD, FD_CLOEXEC);
  dns_read_line(d->out, line, sizeof line);
  CHECK(sscanf(line, "PORT %d", &d->port) == 1);
  raw_nonblock(d->out);
  snprintf(d->servers, sizeof d->servers, "127.0.0.1:%d", d->port);
}

/* A loop whose resolver asks d, with a short timeout and one try. */
static inline tapio_loop *dns_loop(dns_server *d, double timeout)
{
  tapio_loop *loop = new_loop();
  CHECK_OK(tapio_loop_set_resolver(loop, d->servers, timeout, 1));
  return loop;
}

/* The queries the server logged so far, appended to buf ("QUERY A
 * v4.tapio.test\n..."). */
static inline void dns_queries(dns_server *d, char *buf, size_t cap)
{
  size_t n = strlen(buf);
  ssize_t k;
  while (n + 1 < cap && (k = read(d->out, buf + n, cap - n - 1)) > 0)
    n += (size_t)k;
  buf[n] = '\0';
}

/* Whether socket inode ino is open in this process (/proc/self/fd). */
static inline int own_socket(unsigned long ino)
{
  char path[64], link[64], want[40];
  int fd, found = 0;
  snprintf(want, sizeof want, "socket:[%lu]", ino);
  for (fd = 0; fd < 1024 && !found; fd++) {
    ssize_t k;
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    k = readlink(path, link, sizeof link - 1);
    if (k > 0) {
      link[k] = '\0';
      found = strcmp(link, want) == 0;
    }
  }
  return found;
}

/* This process's sockets connecting (SYN_SENT) to the loopback address of
 * family (AF_INET: 127.0.0.1, AF_INET6: ::1) at port, from /proc/net/tcp
 * or tcp6: a connect that a full backlog stalls. Only its own: a test run
 * beside it may have left a stalled connect to a listener that had this
 * port before (it stays in SYN_SENT until its next retry). */
static inline int connecting_to(int family, int port)
{
  char line[256], want[64], rem[64];
  unsigned st;
  unsigned long ino;
  int n = 0;
  FILE *f = fopen(family == AF_INET6 ? "/proc/net/tcp6" : "/proc/net/tcp",
                  "r");
  CHECK(f != NULL);
  snprintf(want, sizeof want, "%s:%04X", family == AF_INET6
           ? "00000000000000000000000001000000" : "0100007F", port);
  while (fgets(line, sizeof line, f))
    if (sscanf(line, "%*d: %*s %63s %x %*s %*s %*s %*u %*d %lu", rem, &st,
               &ino) == 3 && strcmp(rem, want) == 0 && st == 2 &&
        own_socket(ino))
      n++;
  fclose(f);
  return n;
}

static inline int tcp_connecting_to(int port)
{
  return connecting_to(AF_INET, port);
}

static inline void dns_stop(dns_server *d)
{
  int status;
  close(d->in);
  close(d->out);
  while (waitpid(d->pid, &status, 0) < 0 && errno == EINTR)
    ;
}

#endif /* TAPIO_TEST_DNS_H */
