/* A plain libev UDP echo server, written directly on libev as a careful C
 * programmer would: the UDP rows' reference for what the machine can do.
 *
 *   libev_udp_echo PORT
 *
 * Binds 127.0.0.1:PORT and sends every datagram back to its sender: one
 * recvfrom and one sendto per datagram, into one 64 KiB buffer, reading
 * until the socket is empty (at most 64 per wake-up, so a flood cannot
 * starve the loop). A datagram the socket refuses to send is dropped, as
 * UDP may drop it anyway. */
#define _GNU_SOURCE
#include <ev.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static char buf[64 * 1024];

static void on_readable(struct ev_loop *loop, ev_io *w, int revents)
{
  (void)loop;
  (void)revents;
  for (int i = 0; i < 64; i++) {
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    ssize_t n = recvfrom(w->fd, buf, sizeof buf, 0, (struct sockaddr *)&ss,
                         &len);
    if (n < 0)
      return; /* EAGAIN: empty; an ICMP error: nothing to echo */
    sendto(w->fd, buf, (size_t)n, 0, (struct sockaddr *)&ss, len);
  }
}

int main(int argc, char **argv)
{
  struct sockaddr_in sa = { .sin_family = AF_INET };
  struct ev_loop *loop = ev_default_loop(EVBACKEND_EPOLL);
  ev_io io;
  int fd;
  if (argc != 2) {
    fprintf(stderr, "usage: libev_udp_echo PORT\n");
    return 2;
  }
  sa.sin_port = htons((uint16_t)atoi(argv[1]));
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
    perror("libev_udp_echo: bind");
    return 1;
  }
  ev_io_init(&io, on_readable, fd, EV_READ);
  ev_io_start(loop, &io);
  ev_run(loop, 0); /* until SIGTERM ends the process */
  return 0;
}
