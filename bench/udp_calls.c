/* What the UDP system calls cost on this kernel: one socket on
 * 127.0.0.1 sending 64-byte datagrams to itself, each way of receiving and
 * sending timed over many rounds (the best of 40 short runs; ns per datagram,
 * the send's cost included in the receive rows and the other way round,
 * so compare within a group).
 *
 *   udp_calls [ROUNDS]
 *
 * bench/README.md ("UDP echo and the resolver") has the figures: whether
 * a recvmmsg of N costs less than N recvfrom, what a slot of recvmmsg
 * that stays empty costs, what a read that finds nothing costs. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

enum { SIZE = 64, MAXN = 64 };

static int fd;
static struct sockaddr_in self;
static char buf[MAXN][2048];
static struct mmsghdr msgs[MAXN];
static struct iovec iov[MAXN];
static struct sockaddr_storage names[MAXN];

static double now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static void die(const char *what)
{
  perror(what);
  exit(1);
}

static void send_n(int n, int mm)
{
  if (!mm) {
    for (int i = 0; i < n; i++)
      if (sendto(fd, buf[0], SIZE, 0, (struct sockaddr *)&self,
                 sizeof self) != SIZE)
        die("sendto");
    return;
  }
  for (int i = 0; i < n; i++) {
    memset(&msgs[i], 0, sizeof msgs[i]);
    iov[i].iov_base = buf[i];
    iov[i].iov_len = SIZE;
    msgs[i].msg_hdr.msg_iov = &iov[i];
    msgs[i].msg_hdr.msg_iovlen = 1;
    msgs[i].msg_hdr.msg_name = &self;
    msgs[i].msg_hdr.msg_namelen = sizeof self;
  }
  if (sendmmsg(fd, msgs, (unsigned)n, 0) != n)
    die("sendmmsg");
}

/* Receives n datagrams: with recvfrom (vlen 0), recvmsg (vlen -1) or
 * recvmmsg of vlen slots; then one more call finding nothing when empty
 * is set. */
static void recv_n(int n, int vlen, int empty)
{
  if (vlen == -1) {
    for (int i = 0; i < n + empty; i++) {
      struct msghdr m = { .msg_name = &names[0],
                          .msg_namelen = sizeof names[0],
                          .msg_iov = &iov[0], .msg_iovlen = 1 };
      iov[0].iov_base = buf[0];
      iov[0].iov_len = sizeof buf[0];
      if (recvmsg(fd, &m, MSG_DONTWAIT) < 0 && i < n)
        die("recvmsg");
    }
    return;
  }
  if (vlen == 0) {
    for (int i = 0; i < n + empty; i++) {
      struct sockaddr_storage ss;
      socklen_t len = sizeof ss;
      if (recvfrom(fd, buf[0], sizeof buf[0], MSG_DONTWAIT,
                   (struct sockaddr *)&ss, &len) < 0 && i < n)
        die("recvfrom");
    }
    return;
  }
  for (int got = 0, calls = 0; got < n || (empty && calls == 0);) {
    int k;
    for (int i = 0; i < vlen; i++) {
      iov[i].iov_base = buf[i];
      iov[i].iov_len = sizeof buf[i];
      msgs[i].msg_hdr.msg_iov = &iov[i];
      msgs[i].msg_hdr.msg_iovlen = 1;
      msgs[i].msg_hdr.msg_name = &names[i];
      msgs[i].msg_hdr.msg_namelen = sizeof names[i];
      msgs[i].msg_hdr.msg_control = NULL;
      msgs[i].msg_hdr.msg_controllen = 0;
      msgs[i].msg_hdr.msg_flags = 0;
    }
    k = recvmmsg(fd, msgs, (unsigned)vlen, MSG_DONTWAIT, NULL);
    if (k < 0 && got < n)
      die("recvmmsg");
    if (k < 0 || got == n) {
      calls++;
      continue;
    }
    got += k;
    if (got == n && empty)
      calls = 0; /* one more, finding nothing */
    else
      calls = 1;
  }
}

static double timed(int rounds, int n, int smm, int vlen, int empty)
{
  double best = 1e18;
  for (int run = 0; run < 40; run++) {
    double t0 = now();
    for (int r = 0; r < rounds; r++) {
      send_n(n, smm);
      recv_n(n, vlen, empty);
    }
    double t = (now() - t0) / ((double)rounds * n);
    if (t < best)
      best = t;
  }
  return best;
}

int main(int argc, char **argv)
{
  int rounds = argc > 1 ? atoi(argv[1]) : 2000;
  socklen_t len = sizeof self;
  fd = socket(AF_INET, SOCK_DGRAM, 0);
  self.sin_family = AF_INET;
  self.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || bind(fd, (struct sockaddr *)&self, sizeof self) < 0 ||
      getsockname(fd, (struct sockaddr *)&self, &len) < 0)
    die("socket");
  printf("ns per 64-byte datagram, sent and received (best of 40 runs)\n");
  printf("one datagram:\n");
  printf("  sendto + recvfrom                 %6.0f\n", timed(rounds, 1, 0, 0, 0));
  printf("  sendto + recvfrom + recvfrom(none) %5.0f\n", timed(rounds, 1, 0, 0, 1));
  printf("  sendto + recvmsg                  %6.0f\n", timed(rounds, 1, 0, -1, 0));
  printf("  sendto + recvmsg + recvmsg(none)  %6.0f\n", timed(rounds, 1, 0, -1, 1));
  printf("  sendto + recvmmsg(1)              %6.0f\n", timed(rounds, 1, 0, 1, 0));
  printf("  sendto + recvmmsg(2) -> 1         %6.0f\n", timed(rounds, 1, 0, 2, 0));
  printf("  sendto + recvmmsg(16) -> 1        %6.0f\n", timed(rounds, 1, 0, 16, 0));
  printf("  sendto + recvmmsg(2) + recvmmsg(none) %2.0f\n", timed(rounds, 1, 0, 2, 1));
  printf("  sendmmsg(1) + recvfrom            %6.0f\n", timed(rounds, 1, 1, 0, 0));
  for (int n = 4; n <= 16; n *= 2) {
    printf("%d datagrams:\n", n);
    printf("  %2d sendto + %2d recvfrom          %6.0f\n", n, n, timed(rounds / n, n, 0, 0, 0));
    printf("  %2d sendto + recvmmsg(%2d)         %6.0f\n", n, n, timed(rounds / n, n, 0, n, 0));
    printf("  sendmmsg(%2d) + %2d recvfrom       %6.0f\n", n, n, timed(rounds / n, n, 1, 0, 0));
    printf("  sendmmsg(%2d) + recvmmsg(%2d)      %6.0f\n", n, n, timed(rounds / n, n, 1, n, 0));
  }
  return 0;
}
