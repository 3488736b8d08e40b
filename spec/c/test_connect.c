/* Creating transports: create_connection (numeric IPv4 and IPv6, a name,
 * a local address, a socket handed over, refused), connect_accepted_socket
 * and the Unix socket endpoints. */
#include "pipes.h"

/* The addresses a transport reports. */
typedef struct names {
  char host[128];
  int port, family;
} names;

static names peername(tapio_transport *t)
{
  names n;
  memset(&n, 0, sizeof n);
  CHECK_OK(tapio_transport_get_peername(t, n.host, sizeof n.host, &n.port,
                                        &n.family));
  return n;
}

static names sockname(tapio_transport *t)
{
  names n;
  memset(&n, 0, sizeof n);
  CHECK_OK(tapio_transport_get_sockname(t, n.host, sizeof n.host, &n.port,
                                        &n.family));
  return n;
}

/* Closes the client, waits for both ends to be lost cleanly. */
static void close_both(tapio_loop *loop, rec *client, rec *server_side)
{
  CHECK_OK(tapio_transport_close(client->t));
  WAIT_FOR(loop, client->lost && server_side->lost);
  CHECK_STR(client->log, "made data:4 lost:0");
  CHECK_STR(server_side->log, "made data:4 eof lost:0");
}

/* ---- create_connection --------------------------------------------------- */

static void connect_ipv4_numeric(void)
{
  tapio_loop *loop = new_loop();
  srv sv;
  rec c, *s = srv_start_pair(&sv, loop, &c);
  names pn, sn;
  roundtrip(loop, &c, s);
  pn = peername(c.t);
  sn = sockname(s->t);
  CHECK_STR(pn.host, "127.0.0.1");
  CHECK_EQ(pn.port, sv.port);
  CHECK_EQ(pn.family, TAPIO_AF_INET);
  CHECK_STR(sn.host, "127.0.0.1");
  CHECK_EQ(sn.port, sv.port);
  CHECK_EQ(sn.family, TAPIO_AF_INET);
  close_both(loop, &c, s);
  srv_release_and_free(&sv, loop);
  rec_free(&c);
}

static void connect_ipv6_loopback(void)
{
  static const char *const hosts[] = { "::1" };
  tapio_loop *loop;
  srv sv;
  rec c, *s;
  names pn, sn;
  if (!ipv6_available())
    SKIP("no IPv6 loopback");
  loop = new_loop();
  rec_init(&c);
  srv_init(&sv, loop);
  CHECK_OK(srv_start_hosts(&sv, hosts, 1, 0, NULL));
  CHECK_OK(connect_tcp(loop, "::1", sv.port, &c, NULL));
  s = srv_wait_conn(&sv, 0);
  roundtrip(loop, &c, s);
  pn = peername(c.t);
  sn = sockname(s->t);
  CHECK_STR(pn.host, "::1");
  CHECK_EQ(pn.port, sv.port);
  CHECK_EQ(pn.family, TAPIO_AF_INET6);
  CHECK_STR(sn.host, "::1");
  CHECK_EQ(sn.family, TAPIO_AF_INET6);
  CHECK_EQ(peername(s->t).family, TAPIO_AF_INET6);
  close_both(loop, &c, s);
  srv_release_and_free(&sv, loop);
  rec_free(&c);
}

/* "localhost" may resolve to ::1 first; the server listens on 127.0.0.1
 * only, so that case also shows each address is tried in turn. */
static void connect_by_name(void)
{
  tapio_loop *loop = new_loop();
  srv sv;
  rec c, *s;
  rec_init(&c);
  srv_start(&sv, loop);
  CHECK_OK(connect_tcp(loop, "localhost", sv.port, &c, NULL));
  s = srv_wait_conn(&sv, 0);
  roundtrip(loop, &c, s);
  CHECK_STR(peername(c.t).host, "127.0.0.1");
  CHECK_EQ(sv.nfactory, 1);
  close_both(loop, &c, s);
  srv_release_and_free(&sv, loop);
  rec_free(&c);
}

/* A port nobody uses right now (bound, then released). */
static int free_port(void)
{
  int port, fd = raw_bind(AF_INET, &port);
  close(fd);
  return port;
}

static void connect_local_address_honoured(void)
{
  tapio_loop *loop = new_loop();
  tapio_options *o = new_options(loop);
  srv sv;
  rec c, *s;
  int lport = free_port();
  names csn, spn;
  rec_init(&c);
  srv_start(&sv, loop);
  CHECK_OK(tapio_options_set_str(o, "local_host", "127.0.0.1"));
  CHECK_OK(tapio_options_set_int(o, "local_port", lport));
  CHECK_OK(connect_tcp(loop, "127.0.0.1", sv.port, &c, o));
  tapio_options_free(o);
  s = srv_wait_conn(&sv, 0);
  csn = sockname(c.t);
  spn = peername(s->t);
  CHECK_STR(csn.host, "127.0.0.1");
  CHECK_EQ(csn.port, lport);
  CHECK_STR(spn.host, "127.0.0.1");
  CHECK_EQ(spn.port, lport);
  CHECK_EQ(peername(c.t).port, sv.port);
  roundtrip(loop, &c, s);
  close_both(loop, &c, s);
  srv_release_and_free(&sv, loop);
  rec_free(&c);
}

/* The "sock" option: tapio wraps a socket the caller connected. */
static void connect_sock_option(void)
{
  tapio_loop *loop = new_loop();
  tapio_options *o = new_options(loop);
  srv sv;
  rec c, *s;
  int fd, local;
  rec_init(&c);
  srv_start(&sv, loop);
  fd = raw_connect(AF_INET, "127.0.0.1", sv.port);
  CHECK(fd >= 0);
  local = raw_port(fd);
  CHECK_OK(tapio_options_set_int(o, "sock", fd));
  CHECK_OK(connect_tcp(loop, NULL, 0, &c, o));
  tapio_options_free(o);
  CHECK_EQ(tapio_transport_get_fd(c.t), fd);
  CHECK_EQ(sockname(c.t).port, local);
  s = srv_wait_conn(&sv, 0);
  roundtrip(loop, &c, s);
  close_both(loop, &c, s); /* tapio owns fd now and closes it */
  srv_release_and_free(&sv, loop);
  rec_free(&c);
}

/* A "sock" a transport or server of the loop owns (a connection's, a
 * listener's, a read pipe's) is refused with TAPIO_EBUSY and left open:
 * wrapped again, it would be closed twice, the second time under
 * whatever took its number. */
static void connect_sock_owned_refused(void)
{
  tapio_loop *loop = new_loop();
  tapio_options *o = new_options(loop);
  srv sv;
  rec c, p, *s;
  conn_wait w = { 0 };
  int fds[2];
  rec_init(&c);
  rec_init(&p);
  srv_start(&sv, loop);
  CHECK_OK(connect_tcp(loop, "127.0.0.1", sv.port, &c, NULL));
  s = srv_wait_conn(&sv, 0);
  make_pipe(fds);
  CHECK_OK(connect_pipe(loop, fds[0], 0, &p));
  CHECK_OK(tapio_options_set_int(o, "sock", tapio_transport_get_fd(c.t)));
  CHECK_ERR(tapio_create_connection(loop, NULL, 0, &rec_proto, NULL, o,
                                    on_connected, &w), TAPIO_EBUSY);
  CHECK_STR(tapio_loop_error_message(loop), "create_connection: 'sock' is "
            "in use by a transport or server of the loop");
  CHECK_OK(tapio_options_set_int(o, "sock", tapio_server_get_fd(sv.s, 0)));
  CHECK_ERR(tapio_create_server(loop, NULL, 0, 0, srv_factory, &sv, o,
                                on_server, &sv), TAPIO_EBUSY);
  CHECK_OK(tapio_options_set_int(o, "sock", fds[0]));
  CHECK_ERR(tapio_create_connection(loop, NULL, 0, &rec_proto, NULL, o,
                                    on_connected, &w), TAPIO_EBUSY);
  CHECK_ERR(tapio_connect_accepted_socket(loop, fds[0], &rec_proto, NULL,
                                          NULL, on_connected, &w),
            TAPIO_EBUSY);
  tapio_options_free(o);
  roundtrip(loop, &c, s); /* each still its owner's, open */
  CHECK(write(fds[1], "pipe", 4) == 4);
  WAIT_FOR(loop, p.nin == 4);
  CHECK_EQ(tapio_server_socket_count(sv.s), 1);
  CHECK(fcntl(tapio_server_get_fd(sv.s, 0), F_GETFD) >= 0);
  CHECK_EQ(w.done, 0);
  close(fds[1]);
  WAIT_FOR(loop, p.lost);
  close_both(loop, &c, s);
  srv_release_and_free(&sv, loop);
  rec_free(&c);
  rec_free(&p);
}

/* Nothing listens on a port that is bound and not listening: the connect
 * is refused, the completion says so, and no protocol callback runs. */
static void connect_refused(void)
{
  tapio_loop *loop = new_loop();
  rec c;
  int port, fd = raw_bind(AF_INET, &port);
  rec_init(&c);
  CHECK_ERR(connect_tcp(loop, "127.0.0.1", port, &c, NULL),
            TAPIO_ECONNREFUSED);
  spin(loop, 3);
  CHECK_STR(c.log, "");
  CHECK_EQ(c.made, 0);
  close(fd);
  free_loop(loop);
  rec_free(&c);
}

/* A create call that fails may fail at once (never calling cb) or
 * through cb; either way, no protocol callback runs. Its status. */
static int connect_status(tapio_loop *loop, const char *host, int port,
                          rec *r, const tapio_options *opts)
{
  conn_wait w = { 0 };
  int rc;
  w.r = r;
  rc = tapio_create_connection(loop, host, port, &rec_proto, r, opts,
                               on_connected, &w);
  if (rc == 0)
    return connect_wait(loop, &w);
  spin(loop, 2);
  CHECK_EQ(w.done, 0);
  return rc;
}

/* The completion's status and error message. */
typedef struct failed_wait {
  tapio_loop *loop;
  int done, status;
  char msg[256];
} failed_wait;

static void on_failed(void *ud, int status, tapio_transport *t)
{
  failed_wait *w = ud;
  const char *msg = tapio_loop_error_message(w->loop);
  CHECK(t == NULL);
  w->done++;
  w->status = status;
  snprintf(w->msg, sizeof w->msg, "%s", msg ? msg : "(none)");
}

/* Names that do not exist fail through name resolution (EAI_AGAIN where
 * no resolver answers), with a message that names the name. */
static void connect_unknown_host(void)
{
  tapio_loop *loop = new_loop();
  failed_wait w = { loop, 0, 0, "" };
  rec c;
  char want[256];
  rec_init(&c);
  CHECK_OK(tapio_create_connection(loop, "no-such-host.invalid", 80,
                                   &rec_proto, &c, NULL, on_failed, &w));
  WAIT_FOR(loop, w.done);
  if (w.status != TAPIO_EAI_NONAME && w.status != TAPIO_EAI_AGAIN)
    FAIL("got %d (%s), expected EAI_NONAME", w.status,
         tapio_errname(w.status));
  snprintf(want, sizeof want, "could not resolve 'no-such-host.invalid': %s",
           tapio_strerror(w.status));
  CHECK_STR(w.msg, want);
  CHECK_STR(c.log, "");
  free_loop(loop);
  rec_free(&c);
}

/* Programming errors are refused at once and the callback never runs. */
static void connect_bad_arguments_einval(void)
{
  tapio_loop *loop = new_loop();
  conn_wait w = { 0 };
  rec c;
  rec_init(&c);
  w.r = &c;
  CHECK_ERR(tapio_create_connection(loop, NULL, 80, &rec_proto, &c, NULL,
                                    on_connected, &w), TAPIO_EINVAL);
  CHECK_ERR(tapio_create_connection(loop, "127.0.0.1", 70000, &rec_proto, &c,
                                    NULL, on_connected, &w), TAPIO_EINVAL);
  CHECK_ERR(tapio_create_connection(loop, "127.0.0.1", -1, &rec_proto, &c,
                                    NULL, on_connected, &w), TAPIO_EINVAL);
  spin(loop, 3);
  CHECK_EQ(w.done, 0);
  CHECK_STR(c.log, "");
  free_loop(loop);
  rec_free(&c);
}

/* A local port somebody listens on: EADDRINUSE, no callbacks. */
static void connect_local_port_in_use(void)
{
  tapio_loop *loop = new_loop();
  tapio_options *o = new_options(loop);
  srv sv;
  rec c;
  int lport, busy = raw_bind(AF_INET, &lport);
  CHECK(listen(busy, 1) == 0);
  rec_init(&c);
  srv_start(&sv, loop);
  CHECK_OK(tapio_options_set_str(o, "local_host", "127.0.0.1"));
  CHECK_OK(tapio_options_set_int(o, "local_port", lport));
  CHECK_ERR(connect_status(loop, "127.0.0.1", sv.port, &c, o),
            TAPIO_EADDRINUSE);
  tapio_options_free(o);
  CHECK_STR(c.log, "");
  close(busy);
  srv_release_and_free(&sv, loop);
  rec_free(&c);
}

static int nodelay_of(tapio_transport *t)
{
  int v = -1;
  socklen_t len = sizeof v;
  CHECK(getsockopt(tapio_transport_get_fd(t), IPPROTO_TCP, TCP_NODELAY, &v,
                   &len) == 0);
  return v != 0;
}

/* TCP_NODELAY is on by default, as asyncio sets it, on both ends; the
 * option turns it off. */
static void connect_nodelay(void)
{
  tapio_loop *loop = new_loop();
  tapio_options *o = new_options(loop);
  srv sv;
  rec a, b;
  rec_init(&a);
  rec_init(&b);
  srv_start(&sv, loop);
  CHECK_OK(connect_tcp(loop, "127.0.0.1", sv.port, &a, NULL));
  CHECK_EQ(nodelay_of(a.t), 1);
  CHECK_EQ(nodelay_of(srv_wait_conn(&sv, 0)->t), 1);
  CHECK_OK(tapio_options_set_int(o, "nodelay", 0));
  CHECK_OK(connect_tcp(loop, "127.0.0.1", sv.port, &b, o));
  tapio_options_free(o);
  CHECK_EQ(nodelay_of(b.t), 0);
  srv_release_and_free(&sv, loop);
  rec_free(&a);
  rec_free(&b);
}

/* The completion runs from the loop, after connection_made; neither runs
 * inside the create call (connect_wait checks the same in every test). */
static void connect_made_before_completion(void)
{
  tapio_loop *loop = new_loop();
  srv sv;
  rec c;
  conn_wait w = { 0 };
  rec_init(&c);
  w.r = &c;
  srv_start(&sv, loop);
  CHECK_OK(tapio_create_connection(loop, "127.0.0.1", sv.port, &rec_proto,
                                   &c, NULL, on_connected, &w));
  CHECK_EQ(c.made, 0);
  CHECK_EQ(w.done, 0);
  WAIT_FOR(loop, w.done);
  CHECK_EQ(w.made_before, 1);
  CHECK(w.t == c.t);
  CHECK_STR(c.log, "made");
  tapio_server_release(sv.s);
  free_loop(loop);
  CHECK_STR(c.log, "made lost:ECANCELED");
  srv_free(&sv);
  rec_free(&c);
}

/* ---- connect_accepted_socket --------------------------------------------- */

static void accepted_socket_socketpair(void)
{
  tapio_loop *loop = new_loop();
  rec r;
  conn_wait w = { 0 };
  int sv[2];
  char buf[16];
  size_t n;
  rec_init(&r);
  w.r = &r;
  CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
  raw_nonblock(sv[1]);
  CHECK_OK(tapio_connect_accepted_socket(loop, sv[0], &rec_proto, &r, NULL,
                                         on_connected, &w));
  CHECK_OK(connect_wait(loop, &w));
  CHECK_EQ(tapio_transport_get_fd(r.t), sv[0]);
  CHECK_EQ(peername(r.t).family, TAPIO_AF_UNIX);
  CHECK_EQ(sockname(r.t).family, TAPIO_AF_UNIX);
  raw_send_str(loop, sv[1], "hello");
  WAIT_FOR(loop, r.nin == 5);
  CHECK_OK(tapio_transport_write(r.t, "world", 5));
  CHECK_OK(tapio_transport_close(r.t));
  CHECK_EQ(raw_recv_until_eof(loop, sv[1], buf, sizeof buf, &n), 0);
  CHECK_EQ(n, 5);
  CHECK(memcmp(buf, "world", 5) == 0);
  WAIT_FOR(loop, r.lost);
  CHECK_STR(r.log, "made data:5 lost:0");
  close(sv[1]);
  free_loop(loop);
  rec_free(&r);
}

static void accepted_socket_tcp(void)
{
  tapio_loop *loop = new_loop();
  rec r;
  conn_wait w = { 0 };
  int port, lfd = raw_listen(AF_INET, &port), client, accepted;
  char buf[16];
  size_t n;
  rec_init(&r);
  w.r = &r;
  client = raw_connect(AF_INET, "127.0.0.1", port);
  CHECK(client >= 0);
  accepted = raw_accept(NULL, lfd);
  CHECK_OK(tapio_connect_accepted_socket(loop, accepted, &rec_proto, &r,
                                         NULL, on_connected, &w));
  CHECK_OK(connect_wait(loop, &w));
  CHECK_EQ(peername(r.t).port, raw_port(client));
  CHECK_EQ(sockname(r.t).port, port);
  raw_send_str(loop, client, "hello");
  WAIT_FOR(loop, r.nin == 5);
  CHECK_OK(tapio_transport_write(r.t, "world", 5));
  CHECK_OK(tapio_transport_close(r.t));
  CHECK_EQ(raw_recv_until_eof(loop, client, buf, sizeof buf, &n), 0);
  CHECK_EQ(n, 5);
  WAIT_FOR(loop, r.lost);
  CHECK_STR(r.log, "made data:5 lost:0");
  close(client);
  close(lfd);
  free_loop(loop);
  rec_free(&r);
}

/* ---- Unix sockets -------------------------------------------------------- */

typedef struct tmpdir {
  char dir[64];
  char path[96]; /* fits sun_path */
} tmpdir;

static void tmpdir_make(tmpdir *td)
{
  snprintf(td->dir, sizeof td->dir, "/tmp/tapio-test-XXXXXX");
  CHECK(mkdtemp(td->dir) != NULL);
  snprintf(td->path, sizeof td->path, "%s/sock", td->dir);
}

static void tmpdir_remove(tmpdir *td)
{
  unlink(td->path);
  CHECK(rmdir(td->dir) == 0);
}

static int path_exists(const char *path)
{
  struct stat st;
  return lstat(path, &st) == 0;
}

/* A Unix stream socket bound at path, which makes the file there. */
static int bound_unix_socket(const char *path)
{
  struct sockaddr_un addr;
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  memset(&addr, 0, sizeof addr);
  addr.sun_family = AF_UNIX;
  snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path);
  CHECK(fd >= 0 && bind(fd, (struct sockaddr *)&addr, sizeof addr) == 0);
  return fd;
}

static int unix_server(srv *sv, tapio_loop *loop, const char *path,
                       const tapio_options *o)
{
  srv_init(sv, loop);
  CHECK_OK(tapio_create_unix_server(loop, path, srv_factory, sv, o,
                                    on_server, sv));
  WAIT_FOR(loop, sv->done);
  return sv->status;
}

static int unix_connect(tapio_loop *loop, const char *path, rec *r)
{
  conn_wait w = { 0 };
  w.r = r;
  CHECK_OK(tapio_create_unix_connection(loop, path, &rec_proto, r, NULL,
                                        on_connected, &w));
  return connect_wait(loop, &w);
}

/* Closes the server and waits for wait_closed's callback: whether a file
 * is at path then. */
static int close_leaves_file(srv *sv, const char *path)
{
  CHECK_OK(tapio_server_close(sv->s));
  CHECK_OK(tapio_server_wait_closed(sv->s, on_server_closed, sv));
  WAIT_FOR(sv->loop, sv->closed);
  return path_exists(path);
}

/* The end of a Unix server test: the server, the loop, the recs, the
 * directory. */
static void unix_server_free(srv *sv, tapio_loop *loop, tmpdir *td)
{
  srv_release_and_free(sv, loop);
  tmpdir_remove(td);
}

static void unix_connect_roundtrip(void)
{
  tapio_loop *loop = new_loop();
  tmpdir td;
  srv sv;
  rec c, *s;
  names n;
  rec_init(&c);
  tmpdir_make(&td);
  CHECK_OK(unix_server(&sv, loop, td.path, NULL));
  CHECK_OK(unix_connect(loop, td.path, &c));
  s = srv_wait_conn(&sv, 0);
  roundtrip(loop, &c, s);
  n = peername(c.t);
  CHECK_EQ(n.family, TAPIO_AF_UNIX);
  CHECK_STR(n.host, td.path);
  CHECK_EQ(n.port, 0);
  n = sockname(s->t);
  CHECK_EQ(n.family, TAPIO_AF_UNIX);
  CHECK_STR(n.host, td.path);
  CHECK_EQ(sockname(c.t).family, TAPIO_AF_UNIX); /* unnamed: "" */
  close_both(loop, &c, s);
  unix_server_free(&sv, loop, &td);
  rec_free(&c);
}

/* A socket file left behind by a dead server does not block a new one. */
static void unix_server_removes_stale_socket(void)
{
  tapio_loop *loop = new_loop();
  tmpdir td;
  srv sv;
  rec c;
  rec_init(&c);
  tmpdir_make(&td);
  close(bound_unix_socket(td.path)); /* the file stays */
  CHECK(path_exists(td.path));
  CHECK_OK(unix_server(&sv, loop, td.path, NULL));
  CHECK_OK(unix_connect(loop, td.path, &c));
  srv_wait_conn(&sv, 0);
  unix_server_free(&sv, loop, &td);
  rec_free(&c);
}

/* Only a socket file counts as stale: a regular file at the path is kept
 * and the server fails with EADDRINUSE, as in asyncio, with a message
 * that names the path. */
static void unix_server_keeps_regular_file(void)
{
  tapio_loop *loop = new_loop();
  tmpdir td;
  srv sv;
  struct stat st;
  char want[256];
  int fd, rc;
  tmpdir_make(&td);
  fd = open(td.path, O_WRONLY | O_CREAT | O_EXCL, 0600);
  CHECK(fd >= 0 && write(fd, "keep", 4) == 4);
  close(fd);
  srv_init(&sv, loop);
  rc = tapio_create_unix_server(loop, td.path, srv_factory, &sv, NULL,
                                on_server, &sv);
  if (rc == 0) {
    WAIT_FOR(loop, sv.done);
    rc = sv.status;
  }
  CHECK_ERR(rc, TAPIO_EADDRINUSE);
  snprintf(want, sizeof want, "error while attempting to bind on address "
           "'%s': address already in use", td.path);
  CHECK_STR(sv.msg, want);
  CHECK(lstat(td.path, &st) == 0 && S_ISREG(st.st_mode) && st.st_size == 4);
  free_loop(loop);
  srv_free(&sv);
  tmpdir_remove(&td);
}

/* Closing the server unlinks its socket file (cleanup_socket, default 1). */
static void unix_server_cleanup_on_close(void)
{
  tapio_loop *loop = new_loop();
  tmpdir td;
  srv sv;
  tmpdir_make(&td);
  CHECK_OK(unix_server(&sv, loop, td.path, NULL));
  CHECK(path_exists(td.path));
  CHECK(!close_leaves_file(&sv, td.path));
  unix_server_free(&sv, loop, &td);
}

/* cleanup_socket 0 leaves the file. */
static void unix_server_no_cleanup_option(void)
{
  tapio_loop *loop = new_loop();
  tapio_options *o = new_options(loop);
  tmpdir td;
  srv sv;
  tmpdir_make(&td);
  CHECK_OK(tapio_options_set_int(o, "cleanup_socket", 0));
  CHECK_OK(unix_server(&sv, loop, td.path, o));
  tapio_options_free(o);
  CHECK(close_leaves_file(&sv, td.path));
  unix_server_free(&sv, loop, &td);
}

/* A socket file made at the path after the server's (the server's file
 * removed, another program bound there) is not the server's: its close
 * leaves it (asyncio 3.13 checks the inode too: cpython gh-111246). */
static void unix_server_close_leaves_replaced_file(void)
{
  tapio_loop *loop = new_loop();
  tmpdir td;
  srv sv;
  int fd;
  tmpdir_make(&td);
  CHECK_OK(unix_server(&sv, loop, td.path, NULL));
  CHECK(unlink(td.path) == 0);
  fd = bound_unix_socket(td.path);
  CHECK(close_leaves_file(&sv, td.path)); /* the other program's */
  close(fd);
  unix_server_free(&sv, loop, &td);
}

/* A listening Unix socket handed over as "sock" is the caller's file: a
 * close does not remove it (asyncio removed it by default until
 * cpython gh-133354: systemd's socket activation breaks). */
static void unix_sock_handed_over_keeps_file(void)
{
  tapio_loop *loop = new_loop();
  tapio_options *o = new_options(loop);
  tmpdir td;
  srv sv;
  rec c;
  int fd;
  rec_init(&c);
  tmpdir_make(&td);
  fd = bound_unix_socket(td.path);
  CHECK(listen(fd, 8) == 0);
  CHECK_OK(tapio_options_set_int(o, "sock", fd));
  srv_init(&sv, loop);
  CHECK_OK(tapio_create_server(loop, NULL, 0, 0, srv_factory, &sv, o,
                               on_server, &sv));
  tapio_options_free(o);
  WAIT_FOR(loop, sv.done);
  CHECK_OK(sv.status);
  CHECK_OK(unix_connect(loop, td.path, &c));
  srv_wait_conn(&sv, 0);
  CHECK_OK(tapio_server_close_clients(sv.s));
  CHECK(close_leaves_file(&sv, td.path));
  unix_server_free(&sv, loop, &td);
  rec_free(&c);
}

/* create_unix_server and create_unix_connection take their socket as
 * "sock" too, as asyncio's: a listening one serves, a connected one
 * talks to it; the file stays the caller's. */
static void unix_calls_take_sock(void)
{
  tapio_loop *loop = new_loop();
  tapio_options *o = new_options(loop);
  struct sockaddr_un addr;
  conn_wait w = { 0 };
  tmpdir td;
  srv sv;
  rec c, *s;
  int lfd, cfd;
  rec_init(&c);
  tmpdir_make(&td);
  lfd = bound_unix_socket(td.path);
  CHECK(listen(lfd, 8) == 0);
  CHECK_OK(tapio_options_set_int(o, "sock", lfd));
  srv_init(&sv, loop);
  CHECK_OK(tapio_create_unix_server(loop, NULL, srv_factory, &sv, o,
                                    on_server, &sv));
  WAIT_FOR(loop, sv.done);
  CHECK_OK(sv.status);
  memset(&addr, 0, sizeof addr);
  addr.sun_family = AF_UNIX;
  snprintf(addr.sun_path, sizeof addr.sun_path, "%s", td.path);
  cfd = socket(AF_UNIX, SOCK_STREAM, 0);
  CHECK(connect(cfd, (struct sockaddr *)&addr, sizeof addr) == 0);
  CHECK_OK(tapio_options_set_int(o, "sock", cfd));
  w.r = &c;
  CHECK_OK(tapio_create_unix_connection(loop, NULL, &rec_proto, &c, o,
                                        on_connected, &w));
  tapio_options_free(o);
  CHECK_OK(connect_wait(loop, &w));
  s = srv_wait_conn(&sv, 0);
  roundtrip(loop, &c, s);
  CHECK_STR(peername(c.t).host, td.path);
  close_both(loop, &c, s);
  CHECK(close_leaves_file(&sv, td.path));
  unix_server_free(&sv, loop, &td);
  rec_free(&c);
}

/* Their "sock" is refused when it is no Unix socket, or comes with a
 * path; closed, as every refused "sock". */
static void unix_calls_refuse_sock(void)
{
  tapio_loop *loop = new_loop();
  tapio_options *o = new_options(loop);
  conn_wait w = { 0 };
  srv sv;
  rec c;
  int fd = raw_listen(AF_INET, NULL);
  rec_init(&c);
  srv_init(&sv, loop);
  CHECK_OK(tapio_options_set_int(o, "sock", fd));
  CHECK_ERR(tapio_create_unix_server(loop, NULL, srv_factory, &sv, o,
                                     on_server, &sv), TAPIO_EINVAL);
  CHECK_STR(tapio_loop_error_message(loop), "create_unix_server: 'sock' is "
            "not a Unix socket; a Unix stream socket was expected");
  CHECK(fcntl(fd, F_GETFD) < 0);
  fd = raw_bind(AF_INET, NULL);
  CHECK_OK(tapio_options_set_int(o, "sock", fd));
  CHECK_ERR(tapio_create_unix_connection(loop, NULL, &rec_proto, &c, o,
                                         on_connected, &w), TAPIO_EINVAL);
  CHECK_STR(tapio_loop_error_message(loop), "create_unix_connection: 'sock' "
            "is not a Unix socket; a Unix stream socket was expected");
  CHECK(fcntl(fd, F_GETFD) < 0);
  fd = socket(AF_UNIX, SOCK_STREAM, 0);
  CHECK_OK(tapio_options_set_int(o, "sock", fd));
  CHECK_ERR(tapio_create_unix_connection(loop, "/tmp/x", &rec_proto, &c, o,
                                         on_connected, &w), TAPIO_EINVAL);
  CHECK_STR(tapio_loop_error_message(loop), "create_unix_connection: path "
            "and sock can not be specified at the same time");
  CHECK(fcntl(fd, F_GETFD) < 0);
  tapio_options_free(o);
  spin(loop, 2);
  CHECK_EQ(w.done + sv.done, 0);
  free_loop(loop);
  rec_free(&c);
}

/* "@name" is Linux's abstract namespace: no file is made, looked at or
 * removed (a socket file called "@name" in the working directory stays,
 * before the bind and after the close); the names read back as
 * "@name"; the name is taken until the server closes. */
static void unix_abstract_name(void)
{
  tapio_loop *loop = new_loop();
  char name[64], cwd[512], longest[109], got[TAPIO_ADDR_MAX];
  tmpdir td;
  srv sv, again;
  rec c, *s;
  rec_init(&c);
  tmpdir_make(&td);
  snprintf(name, sizeof name, "@tapio-test-%d", (int)getpid());
  CHECK(getcwd(cwd, sizeof cwd) != NULL && chdir(td.dir) == 0);
  close(bound_unix_socket(name)); /* a socket file named like the name */
  CHECK_OK(unix_server(&sv, loop, name, NULL));
  CHECK_ERR(unix_server(&again, loop, name, NULL), TAPIO_EADDRINUSE);
  CHECK_OK(unix_connect(loop, name, &c));
  s = srv_wait_conn(&sv, 0);
  roundtrip(loop, &c, s);
  CHECK_STR(peername(c.t).host, name);
  CHECK_STR(sockname(s->t).host, name);
  close_both(loop, &c, s);
  CHECK(close_leaves_file(&sv, name)); /* the file was never the server's */
  CHECK(unlink(name) == 0 && chdir(cwd) == 0);
  /* the whole of sun_path, "@" standing for its first byte */
  memset(longest, 'n', sizeof longest - 1);
  longest[0] = '@';
  longest[sizeof longest - 1] = 0;
  CHECK_OK(unix_server(&again, loop, longest, NULL));
  CHECK_OK(tapio_server_get_address(again.s, 0, got, sizeof got, NULL, NULL));
  CHECK_STR(got, longest);
  CHECK_ERR(tapio_create_unix_server(loop, "@", srv_factory, &again, NULL,
                                     on_server, &again), TAPIO_EINVAL);
  tapio_server_release(again.s);
  unix_server_free(&sv, loop, &td);
  srv_free(&again);
  rec_free(&c);
}

static void unix_connect_missing_path(void)
{
  tapio_loop *loop = new_loop();
  tmpdir td;
  rec c;
  conn_wait w = { 0 };
  int rc;
  rec_init(&c);
  w.r = &c;
  tmpdir_make(&td);
  rc = tapio_create_unix_connection(loop, td.path, &rec_proto, &c, NULL,
                                    on_connected, &w);
  if (rc == 0)
    rc = connect_wait(loop, &w);
  else
    CHECK_EQ(w.done, 0); /* an error returned: no callback, ever */
  CHECK_ERR(rc, TAPIO_ENOENT);
  spin(loop, 2);
  CHECK_STR(c.log, "");
  free_loop(loop);
  rec_free(&c);
  tmpdir_remove(&td);
}

TEST_MAIN(
  TEST(connect_ipv4_numeric),
  TEST(connect_ipv6_loopback),
  TEST(connect_by_name),
  TEST(connect_local_address_honoured),
  TEST(connect_sock_option),
  TEST(connect_sock_owned_refused),
  TEST(connect_refused),
  TEST(connect_unknown_host),
  TEST(connect_bad_arguments_einval),
  TEST(connect_local_port_in_use),
  TEST(connect_nodelay),
  TEST(connect_made_before_completion),
  TEST(accepted_socket_socketpair),
  TEST(accepted_socket_tcp),
  TEST(unix_connect_roundtrip),
  TEST(unix_server_removes_stale_socket),
  TEST(unix_server_keeps_regular_file),
  TEST(unix_server_cleanup_on_close),
  TEST(unix_server_no_cleanup_option),
  TEST(unix_server_close_leaves_replaced_file),
  TEST(unix_sock_handed_over_keeps_file),
  TEST(unix_calls_take_sock),
  TEST(unix_calls_refuse_sock),
  TEST(unix_abstract_name),
  TEST(unix_connect_missing_path)
)
