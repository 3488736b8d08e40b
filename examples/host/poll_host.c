/* poll_host: a program that sleeps in its own poll() on two descriptors,
 * tapio's (tapio_loop_backend_fd) and its own standard input, and serves
 * TCP echo in between. It never wakes but for work: idle, it takes no CPU.
 *
 *   poll_host [PORT]        (127.0.0.1; 0, the default, takes a free port)
 *
 * Prints "listening on PORT". Each line read from standard input is
 * answered "stdin: LINE"; the line "quit", or the end of the input, closes
 * the server, and the program ends once the connections it accepted have
 * ended (asyncio's close and wait_closed); it then prints
 *
 *   served N wakeups W ticks T
 *
 * (connections that ended, times poll() returned, runs of a 250 ms timer
 * the host keeps on tapio's loop). Written on capi/tapio.h only. */
#define _GNU_SOURCE
#include <tapio.h>

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static long served, ticks;
static int closed;

static void data_received(void *ud, tapio_transport *t, const char *data,
                          size_t len) {
  (void)ud;
  tapio_transport_write(t, data, len);
}

static void connection_lost(void *ud, tapio_transport *t, int code,
                            const char *message) {
  (void)ud;
  (void)t;
  (void)message;
  if (code == 0)
    served++;
}

static const tapio_protocol echo = {
  .size = sizeof(tapio_protocol),
  .connection_lost = connection_lost,
  .data_received = data_received,
};

static int factory(void *ud, tapio_server *s, const tapio_protocol **proto,
                   void **proto_ud) {
  (void)ud;
  (void)s;
  *proto = &echo;
  *proto_ud = NULL;
  return 0;
}

static void on_listening(void *ud, int status, tapio_server *s) {
  int port = 0;
  char host[64];
  if (status < 0) {
    fprintf(stderr, "poll_host: listen: %s\n", tapio_strerror(status));
    exit(1);
  }
  *(tapio_server **)ud = s;
  tapio_server_get_address(s, 0, host, sizeof host, &port, NULL);
  printf("listening on %d\n", port);
}

static void on_closed(void *ud, tapio_server *s) {
  (void)ud;
  (void)s;
  closed = 1;
}

static void tick(void *ud) {
  ticks++;
  tapio_call_later(ud, 0.25, tick, ud, NULL);
}

/* One line from standard input (buffered in buf); 0 at the end of the
 * input or on "quit". */
static int stdin_line(char *buf, size_t cap, size_t *n) {
  ssize_t k = read(0, buf + *n, cap - *n - 1);
  char *nl;
  if (k <= 0)
    return 0;
  *n += (size_t)k;
  buf[*n] = '\0';
  while ((nl = strchr(buf, '\n'))) {
    *nl = '\0';
    if (strcmp(buf, "quit") == 0)
      return 0;
    printf("stdin: %s\n", buf);
    *n -= (size_t)(nl + 1 - buf);
    memmove(buf, nl + 1, *n + 1);
  }
  return *n < cap - 1; /* a line longer than the buffer ends it */
}

int main(int argc, char **argv) {
  const char *host = "127.0.0.1";
  tapio_server *server = NULL;
  tapio_loop *loop;
  char buf[1024];
  size_t n = 0;
  long wakeups = 0;
  struct pollfd fds[2];
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (tapio_loop_new(&loop) != 0)
    return 1;
  if (tapio_create_server(loop, &host, 1, argc > 1 ? atoi(argv[1]) : 0,
                          factory, NULL, NULL, on_listening, &server) != 0)
    return 1;
  tapio_call_later(loop, 0.25, tick, loop, NULL);
  fds[0].fd = tapio_loop_backend_fd(loop);
  fds[0].events = POLLIN;
  fds[1].fd = 0;
  fds[1].events = POLLIN;
  if (fds[0].fd < 0) {
    fprintf(stderr, "poll_host: %s\n", tapio_strerror(fds[0].fd));
    return 1;
  }
  for (;;) {
    /* asked right before sleeping: it also covers calls made since */
    int timeout = tapio_loop_backend_timeout(loop);
    if (poll(fds, 2, timeout) < 0)
      continue; /* EINTR */
    wakeups++;
    if (fds[1].fd >= 0 && (fds[1].revents & (POLLIN | POLLHUP)) &&
        !stdin_line(buf, sizeof buf, &n)) {
      fds[1].fd = -1; /* no more input: poll() leaves it out */
      tapio_server_close(server);
      tapio_server_wait_closed(server, on_closed, NULL);
    }
    tapio_loop_run_once(loop, 0);
    if (closed)
      break;
  }
  printf("served %ld wakeups %ld ticks %ld\n", served, wakeups, ticks);
  tapio_server_release(server);
  return tapio_loop_free(loop) == 0 ? 0 : 1;
}
