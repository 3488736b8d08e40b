/* What the load generator's modes share: load.c (TCP modes, options,
 * /proc figures), load_udp.c (the UDP modes) and load_tls.c (the TLS
 * ones). */
#ifndef TAPIO_BENCH_LOAD_H
#define TAPIO_BENCH_LOAD_H

#include <stddef.h>
#include <stdint.h>

struct opts {
  const char *mode;
  int port, stats_port, conns, depth, pid;
  size_t size;
  double warmup, duration, deadline;
  uint64_t requests;  /* count mode: requests in all */
  int verify;         /* 1: compare content, 0: count only */
  int lines;          /* every request a line ending in "\n" */
};

/* Prints one "error=..." line and exits 1. */
void die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
double now(void);
/* The CPU time pid used, in seconds, or -1. */
double proc_cpu(int pid);
/* CPU seconds every process used, and the time stolen, from /proc/stat. */
void machine_cpu(double *busy, double *steal);
double self_cpu(void);
/* 1 while pid runs (not gone, not a zombie). */
int proc_alive(int pid);
/* VmRSS of pid in KiB, or -1. */
long proc_rss_kb(int pid);
/* The decimal number a stats port answers with, or -1. */
long long query_stats(int port);

int mode_udp(const struct opts *o);
int mode_udpcount(const struct opts *o);
int mode_udpwait(const struct opts *o);
/* tls-stream, tls-handshake, tls-idle (load_tls.c). */
int mode_tls(const struct opts *o);

#endif
