/* The reference's TCP echo client on tapio's C ABI: sends "Hello World!",
 * prints the echo, and exits 0 once the server has closed the connection.
 * Usage: echo_client [port]   (default 8888, on 127.0.0.1) */
#include <tapio.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char message[] = "Hello World!";

typedef struct client {
  tapio_loop *loop;
  int status;
  int got_data;
} client;

static void connection_made(void *ud, tapio_transport *t) {
  (void)ud;
  tapio_transport_write(t, message, strlen(message));
  printf("Data sent: '%s'\n", message);
}

static void data_received(void *ud, tapio_transport *t, const char *data,
                          size_t len) {
  client *c = ud;
  (void)t;
  c->got_data = 1;
  printf("Data received: '%.*s'\n", (int)len, data);
}

static void connection_lost(void *ud, tapio_transport *t, int code,
                            const char *msg) {
  client *c = ud;
  (void)t;
  if (code)
    printf("Connection lost: %s\n", msg);
  printf("The server closed the connection\n");
  c->status = code == 0 && c->got_data ? 0 : 1;
  tapio_loop_stop(c->loop);
}

static const tapio_protocol client_protocol = {
  .size = sizeof(tapio_protocol),
  .connection_made = connection_made,
  .data_received = data_received,
  .connection_lost = connection_lost,
};

static void connected(void *ud, int status, tapio_transport *t) {
  client *c = ud;
  (void)t;
  if (status < 0) {
    fprintf(stderr, "echo_client: %s\n", tapio_strerror(status));
    c->status = 1;
    tapio_loop_stop(c->loop);
  }
}

int main(int argc, char **argv) {
  client c = {NULL, 1, 0};
  int port = argc > 1 ? atoi(argv[1]) : 8888;
  int rc = tapio_loop_new(&c.loop);
  if (rc == 0)
    rc = tapio_create_connection(c.loop, "127.0.0.1", port, &client_protocol,
                                 &c, NULL, connected, &c);
  if (rc == 0)
    rc = tapio_loop_run(c.loop);
  fflush(stdout);
  if (rc < 0)
    fprintf(stderr, "echo_client: %s\n", tapio_strerror(rc));
  tapio_loop_free(c.loop);
  return rc < 0 ? 1 : c.status;
}
