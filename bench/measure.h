/* What the benchmark's load generators share (load.c, tls_load.c): one
 * error line and exit, the clock, the server process's CPU time and memory
 * from /proc, the machine's, and dialling 127.0.0.1. Each program includes
 * it once; unused functions cost nothing (static inline). */
#ifndef TAPIO_BENCH_MEASURE_H
#define TAPIO_BENCH_MEASURE_H

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static inline void die(const char *fmt, ...)
    __attribute__((noreturn, format(printf, 1, 2)));
static inline void die(const char *fmt, ...)
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

static inline double now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- The server process, from /proc ---------------------------------- */

/* utime + stime of pid in seconds from /proc/PID/stat (clock ticks), or
 * -1. */
static inline double proc_cpu_ticks(int pid)
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
static inline double proc_cpu(int pid)
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
static inline long proc_rss_kb(int pid)
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
static inline void machine_cpu(double *busy, double *steal)
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

static inline double self_cpu(void)
{
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

/* ---- Sockets ----------------------------------------------------------- */

/* A blocking connect to 127.0.0.1:port that gives up after timeout
 * seconds: the descriptor, or -1 with errno set. */
static inline int dial(int port, int timeout)
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
static inline long long query_stats(int port)
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

static inline void raise_nofile(void)
{
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

#endif
