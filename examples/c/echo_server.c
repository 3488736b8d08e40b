/* The reference's TCP echo server on tapio's C ABI: prints what the Python
 * version prints, echoes the first data it gets and closes the connection.
 * Usage: echo_server [port]   (default 8888, on 127.0.0.1) */
#include <tapio.h>

#include <stdio.h>
#include <stdlib.h>

static void connection_made(void *ud, tapio_transport *t) {
  char host[64];
  int port = 0;
  (void)ud;
  if (tapio_transport_get_peername(t, host, sizeof host, &port, NULL) == 0)
    printf("Connection from ('%s', %d)\n", host, port);
  fflush(stdout);
}

static void data_received(void *ud, tapio_transport *t, const char *data,
                          size_t len) {
  (void)ud;
  printf("Data received: '%.*s'\n", (int)len, data);
  printf("Send: '%.*s'\n", (int)len, data);
  tapio_transport_write(t, data, len);
  printf("Close the client socket\n");
  fflush(stdout);
  tapio_transport_close(t);
}

static const tapio_protocol echo_protocol = {
  .size = sizeof(tapio_protocol),
  .connection_made = connection_made,
  .data_received = data_received,
};

static int factory(void *ud, tapio_server *s, const tapio_protocol **proto,
                   void **proto_ud) {
  (void)ud;
  (void)s;
  *proto = &echo_protocol;
  *proto_ud = NULL;
  return 0;
}

static void listening(void *ud, int status, tapio_server *s) {
  tapio_loop *loop = ud;
  if (status < 0) {
    fprintf(stderr, "echo_server: cannot listen: %s\n",
            tapio_strerror(status));
    tapio_loop_stop(loop);
    return;
  }
  (void)s; /* serves until the process is stopped */
}

int main(int argc, char **argv) {
  const char *host = "127.0.0.1";
  int port = argc > 1 ? atoi(argv[1]) : 8888;
  tapio_loop *loop;
  int rc = tapio_loop_new(&loop);
  if (rc == 0)
    rc = tapio_create_server(loop, &host, 1, port, factory, NULL, NULL,
                             listening, loop);
  if (rc == 0)
    rc = tapio_loop_run(loop);
  if (rc < 0)
    fprintf(stderr, "echo_server: %s\n", tapio_strerror(rc));
  tapio_loop_free(loop);
  return rc < 0 ? 1 : 0;
}
