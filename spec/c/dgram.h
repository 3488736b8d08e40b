/* A datagram protocol that records its callbacks, and raw datagram
 * sockets (the peers that are not tapio), for the datagram tests. */
#ifndef TAPIO_TEST_DGRAM_H
#define TAPIO_TEST_DGRAM_H

#include "test.h"

static inline void raw_sendto(int fd, const char *data, size_t len,
                              int family, const char *host, int port);

/* One endpoint's view: its callbacks as one string ("made data:3
 * err:ECONNREFUSED lost:0"), the last datagram and its sender, and what
 * to do on a datagram. */
typedef struct drec {
  char log[4096];
  tapio_transport *t;
  int made, lost, lost_code, ndata, nerr, npause;
  int err_code;
  char err_msg[256];
  char last[1024];             /* the last datagram (its first 1 KiB) */
  size_t last_len;
  char from[TAPIO_ADDR_MAX];   /* its sender */
  size_t from_len;
  int echo;                    /* reply "resp:" + data to the sender */
  int close_on_data;           /* 1 close, 2 abort in datagram_received */
  int close_at;                /* ... of this datagram (0: the first) */
  int send_fd, send_port;      /* with send_fd > 0: on the first datagram,
                                  send "more" from send_fd to send_port */
} drec;

static inline void drec_init(drec *r)
{
  memset(r, 0, sizeof *r);
}

static inline void drec_log(drec *r, const char *fmt, const char *arg)
{
  size_t len = strlen(r->log);
  if (len + 64 > sizeof r->log)
    return; /* full: the counts still count */
  if (len)
    r->log[len++] = ' ';
  snprintf(r->log + len, sizeof r->log - len, fmt, arg);
}

static inline void drec_made_(void *ud, tapio_transport *t)
{
  drec *r = ud;
  if (r->made)
    drec_log(r, "%s", "BAD:made-twice");
  r->made = 1;
  r->t = t;
  drec_log(r, "%s", "made");
}

static inline void drec_lost_(void *ud, tapio_transport *t, int code,
                              const char *message)
{
  drec *r = ud;
  (void)message;
  if (!r->made || r->lost || t != r->t)
    drec_log(r, "%s", "BAD:lost");
  r->lost = 1;
  r->lost_code = code;
  drec_log(r, "lost:%s", code ? tapio_errname(code) : "0");
  r->t = NULL;
}

static inline void drec_pause_(void *ud, tapio_transport *t)
{
  drec *r = ud;
  (void)t;
  r->npause++;
  drec_log(r, "%s", "pause");
}

static inline void drec_resume_(void *ud, tapio_transport *t)
{
  drec *r = ud;
  (void)t;
  drec_log(r, "%s", "resume");
}

static inline void drec_data_(void *ud, tapio_transport *t, const char *data,
                              size_t len, const void *addr, size_t addrlen)
{
  drec *r = ud;
  char n[32];
  if (!r->made || r->lost || t != r->t)
    drec_log(r, "%s", "BAD:data");
  r->ndata++;
  r->last_len = len;
  memcpy(r->last, data, len < sizeof r->last ? len : sizeof r->last);
  r->from_len = addrlen;
  if (addrlen)
    memcpy(r->from, addr, addrlen);
  snprintf(n, sizeof n, "%zu", len);
  drec_log(r, "data:%s", n);
  if (r->echo) {
    char reply[1100];
    size_t m = len < 1024 ? len : 1024;
    memcpy(reply, "resp:", 5);
    memcpy(reply + 5, data, m);
    CHECK_OK(tapio_transport_sendto(t, reply, m + 5, addr, addrlen));
  }
  if (r->send_fd > 0 && r->ndata == 1)
    raw_sendto(r->send_fd, "more", 4, AF_INET, "127.0.0.1", r->send_port);
  if (r->close_at > r->ndata)
    return;
  if (r->close_on_data == 1)
    tapio_transport_close(t);
  else if (r->close_on_data == 2)
    tapio_transport_abort(t);
}

static inline void drec_error_(void *ud, tapio_transport *t, int code,
                               const char *message)
{
  drec *r = ud;
  if (!r->made || r->lost || t != r->t)
    drec_log(r, "%s", "BAD:error");
  r->nerr++;
  r->err_code = code;
  snprintf(r->err_msg, sizeof r->err_msg, "%s", message ? message : "");
  drec_log(r, "err:%s", tapio_errname(code));
}

static const tapio_datagram_protocol drec_proto = {
  .size = sizeof(tapio_datagram_protocol),
  .connection_made = drec_made_,
  .connection_lost = drec_lost_,
  .pause_writing = drec_pause_,
  .resume_writing = drec_resume_,
  .datagram_received = drec_data_,
  .error_received = drec_error_,
};

/* Makes an endpoint for r with opts; waits; its status. */
static inline int endpoint(tapio_loop *loop, drec *r, const tapio_options *o)
{
  conn_wait w = { 0 };
  CHECK_OK(tapio_create_datagram_endpoint(loop, &drec_proto, r, o,
                                          on_connected, &w));
  CHECK_EQ(w.done, 0);
  CHECK_STR(r->log, "");
  WAIT_FOR(loop, w.done);
  if (w.status == 0)
    CHECK(r->made && r->t == w.t);
  return w.status;
}

/* Options naming a local and/or a remote address (NULL: none). */
static inline tapio_options *dgram_opts(tapio_loop *loop, const char *lhost,
                                        int lport, const char *rhost,
                                        int rport)
{
  tapio_options *o = new_options(loop);
  if (lhost) {
    CHECK_OK(tapio_options_set_str(o, "local_host", lhost));
    CHECK_OK(tapio_options_set_int(o, "local_port", lport));
  }
  if (rhost) {
    CHECK_OK(tapio_options_set_str(o, "remote_host", rhost));
    CHECK_OK(tapio_options_set_int(o, "remote_port", rport));
  }
  return o;
}

/* An endpoint bound on host, port 0; its port. */
static inline int bound_endpoint(tapio_loop *loop, drec *r, const char *host)
{
  tapio_options *o = dgram_opts(loop, host, 0, NULL, 0);
  int port;
  drec_init(r);
  CHECK_OK(endpoint(loop, r, o));
  tapio_options_free(o);
  CHECK_OK(tapio_transport_get_sockname(r->t, NULL, 0, &port, NULL));
  return port;
}

static inline size_t addr_of(const char *host, int port, char *buf)
{
  size_t len = TAPIO_ADDR_MAX;
  CHECK_OK(tapio_addr_parse(host, port, buf, &len));
  return len;
}

/* A raw UDP socket bound on host:port (0: any), nonblocking; -1 if that
 * port is taken. */
static inline int raw_udp_on(int family, const char *host, int port)
{
  struct sockaddr_storage ss;
  socklen_t len = raw_addr(family, host, port, &ss);
  int fd = socket(family, SOCK_DGRAM | SOCK_NONBLOCK, 0);
  CHECK(fd >= 0);
  if (bind(fd, (struct sockaddr *)&ss, len) < 0) {
    close(fd);
    return -1;
  }
  return fd;
}

/* The same on an ephemeral port, stored in *port unless NULL. */
static inline int raw_udp(int family, const char *host, int *port)
{
  int fd = raw_udp_on(family, host, 0);
  CHECK(fd >= 0);
  if (port)
    *port = raw_port(fd);
  return fd;
}

/* Binds a Unix socket address for path into *un. */
static inline socklen_t unix_sockaddr(struct sockaddr_un *un,
                                      const char *path)
{
  size_t n = strlen(path);
  CHECK(n < sizeof un->sun_path);
  memset(un, 0, sizeof *un);
  un->sun_family = AF_UNIX;
  memcpy(un->sun_path, path, n);
  return (socklen_t)sizeof *un;
}

static inline void raw_sendto(int fd, const char *data, size_t len,
                              int family, const char *host, int port)
{
  struct sockaddr_storage ss;
  socklen_t alen = raw_addr(family, host, port, &ss);
  CHECK(sendto(fd, data, len, 0, (struct sockaddr *)&ss, alen) ==
        (ssize_t)len);
}

/* Receives one datagram into buf (the loop runs meanwhile); its length. */
static inline size_t raw_recv_dgram(tapio_loop *loop, int fd, char *buf,
                                    size_t cap)
{
  ssize_t n;
  while ((n = recv(fd, buf, cap, 0)) < 0 && errno == EAGAIN)
    if (!raw_wait(loop, fd, POLLIN))
      FAIL("no datagram came");
  CHECK(n >= 0);
  return (size_t)n;
}

/* A UDP port where nothing listens. */
static inline int closed_udp_port(void)
{
  int port, fd = raw_udp(AF_INET, "127.0.0.1", &port);
  close(fd);
  return port;
}

#endif /* TAPIO_TEST_DGRAM_H */
