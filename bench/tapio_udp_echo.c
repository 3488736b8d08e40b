/* tapio's C UDP echo server, written only against capi/tapio.h.
 *
 *   tapio_udp_echo PORT
 *
 * A datagram endpoint on 127.0.0.1:PORT whose datagram_received sends
 * every datagram back to its sender with the address it came with. */
#include "tapio.h"

#include <stdio.h>
#include <stdlib.h>

static void echo(void *ud, tapio_transport *t, const char *data, size_t len,
                 const void *addr, size_t addrlen)
{
  (void)ud;
  tapio_transport_sendto(t, data, len, addr, addrlen);
}

static const tapio_datagram_protocol echo_protocol = {
  .size = sizeof(tapio_datagram_protocol),
  .datagram_received = echo,
};

static void made(void *ud, int status, tapio_transport *t)
{
  (void)ud;
  (void)t;
  if (status < 0) {
    fprintf(stderr, "tapio_udp_echo: %s\n", tapio_strerror(status));
    exit(1);
  }
}

int main(int argc, char **argv)
{
  int port = argc > 1 ? atoi(argv[1]) : 0;
  tapio_loop *loop;
  tapio_options *o;
  int rc;
  if (port <= 0 || port > 65535) {
    fprintf(stderr, "usage: tapio_udp_echo PORT\n");
    return 2;
  }
  if (tapio_loop_new(&loop) < 0 || tapio_options_new(loop, &o) < 0) {
    fprintf(stderr, "tapio_udp_echo: cannot make the loop\n");
    return 1;
  }
  tapio_options_set_str(o, "local_host", "127.0.0.1");
  tapio_options_set_int(o, "local_port", port);
  rc = tapio_create_datagram_endpoint(loop, &echo_protocol, NULL, o, made,
                                      NULL);
  tapio_options_free(o);
  if (rc == 0)
    rc = tapio_loop_run(loop);
  if (rc < 0)
    fprintf(stderr, "tapio_udp_echo: %s\n", tapio_strerror(rc));
  tapio_loop_free(loop);
  return rc < 0;
}
