/* The virtual network of a virtual-clock loop: servers and connects meet
 * through memory pairs, with the addresses, refusals, backlog and resets
 * of the kernel's TCP and Unix sockets, and nothing real made. */
#include "test.h"

static void idle(tapio_loop *loop)
{
  CHECK_OK(tapio_loop_run_until_idle(loop));
}

/* A completion that keeps tapio_loop_error_message, as srv's does. */
typedef struct outcome {
  conn_wait w;
  tapio_loop *loop;
  char msg[256];
} outcome;

static void on_outcome(void *ud, int status, tapio_transport *t)
{
  outcome *o = ud;
  const char *msg = tapio_loop_error_message(o->loop);
  snprintf(o->msg, sizeof o->msg, "%s", msg ? msg : "(none)");
  on_connected(&o->w, status, t);
}

static void start_connect(tapio_loop *loop, const char *host, int port,
                          rec *r, outcome *o)
{
  memset(o, 0, sizeof *o);
  o->loop = loop;
  o->w.r = r;
  rec_init(r);
  CHECK_OK(tapio_create_connection(loop, host, port, &rec_proto, r, NULL,
                                   on_outcome, o));
}

static void server_with(srv *sv, tapio_loop *loop, const char *host,
                        int port, int serving, int backlog, int status)
{
  tapio_options *o = new_options(loop);
  const char *hosts[] = { host };
  CHECK_OK(tapio_options_set_int(o, "start_serving", serving));
  CHECK_OK(tapio_options_set_int(o, "backlog", backlog));
  srv_init(sv, loop);
  CHECK_ERR(srv_start_hosts(sv, hosts, 1, port, o), status);
  tapio_options_free(o);
}

static void check_name(tapio_transport *t, int peer, const char *host,
                       int port)
{
  char h[128];
  int p = -1, fam = -1;
  if (peer)
    CHECK_OK(tapio_transport_get_peername(t, h, sizeof h, &p, &fam));
  else
    CHECK_OK(tapio_transport_get_sockname(t, h, sizeof h, &p, &fam));
  CHECK_STR(h, host);
  if (port >= 0)
    CHECK_EQ(p, port);
}

/* ---- Meeting ------------------------------------------------------------- */

/* A client and a server, each through its usual call; both sides name
 * each other as sockets would, and nothing has a descriptor. */
static void vnet_exchange_and_names(void)
{
  tapio_loop *loop = new_virtual();
  srv sv;
  rec c;
  outcome o;
  rec *s;
  char host[64];
  int cport = -1, fam;
  server_with(&sv, loop, "127.0.0.1", 0, 1, 100, 0);
  CHECK_EQ(sv.port, 32768); /* the kernel's first ephemeral port */
  CHECK_ERR(tapio_server_get_fd(sv.s, 0), TAPIO_ENOTSUP);
  start_connect(loop, "127.0.0.1", sv.port, &c, &o);
  CHECK_OK(connect_wait(loop, &o.w));
  CHECK_OK(tapio_transport_write(o.w.t, "ping", 4));
  idle(loop);
  s = sv.conns[0];
  CHECK_STR(s->log, "made data:4");
  CHECK_EQ(memcmp(s->in, "ping", 4), 0);
  CHECK_OK(tapio_transport_get_sockname(c.t, host, sizeof host, &cport,
                                        &fam));
  CHECK_STR(host, "127.0.0.1");
  CHECK(cport != sv.port && cport >= 32768 && cport <= 60999);
  CHECK_EQ(fam, TAPIO_AF_INET);
  check_name(c.t, 1, "127.0.0.1", sv.port);
  check_name(s->t, 0, "127.0.0.1", sv.port);
  check_name(s->t, 1, "127.0.0.1", cport);
  CHECK_ERR(tapio_transport_get_fd(c.t), TAPIO_ENOTSUP);
  CHECK_EQ(tapio_server_client_count(sv.s), 1);
  CHECK_OK(tapio_transport_close(c.t));
  idle(loop);
  CHECK_STR(s->log, "made data:4 eof lost:0");
  CHECK_STR(c.log, "made lost:0"); /* closing: it reads no more */
  CHECK_EQ(tapio_loop_transport_count(loop), 0);
  srv_release_and_free(&sv, loop);
  rec_free(&c);
}

/* "localhost" is 127.0.0.1 there; a server on every interface (no host)
 * takes a connect to either family's loopback, naming the address the
 * client asked for. */
static void vnet_localhost_and_wildcard(void)
{
  tapio_loop *loop = new_virtual();
  srv sv;
  rec c4, c6;
  outcome o4, o6;
  srv_init(&sv, loop);
  CHECK_OK(srv_start_hosts(&sv, NULL, 0, 8080, NULL));
  CHECK_EQ(tapio_server_socket_count(sv.s), 2);
  start_connect(loop, "localhost", 8080, &c4, &o4);
  CHECK_OK(connect_wait(loop, &o4.w));
  start_connect(loop, "::1", 8080, &c6, &o6);
  CHECK_OK(connect_wait(loop, &o6.w));
  idle(loop);
  CHECK_EQ(sv.n, 2);
  check_name(c4.t, 1, "127.0.0.1", 8080);
  check_name(c6.t, 1, "::1", 8080);
  check_name(sv.conns[0]->t, 0, "127.0.0.1", 8080);
  check_name(sv.conns[1]->t, 0, "::1", 8080);
  srv_release_and_free(&sv, loop);
  rec_free(&c4);
  rec_free(&c6);
}

/* Nothing listening: refused, with the message a real connect gives; an
 * unknown name fails as a lookup (the network knows only localhost); a
 * Unix path where nothing listens: no such file. */
static void vnet_refused(void)
{
  tapio_loop *loop = new_virtual();
  rec r;
  outcome o;
  start_connect(loop, "127.0.0.1", 9, &r, &o);
  CHECK_ERR(connect_wait(loop, &o.w), TAPIO_ECONNREFUSED);
  CHECK_STR(o.msg, "connect call failed ('127.0.0.1', 9): connection "
                   "refused");
  CHECK_STR(r.log, "");
  start_connect(loop, "db.example", 5432, &r, &o);
  CHECK_ERR(connect_wait(loop, &o.w), TAPIO_EAI_NONAME);
  CHECK(strstr(o.msg, "could not resolve 'db.example'") != NULL);
  memset(&o, 0, sizeof o);
  o.loop = loop;
  CHECK_OK(tapio_create_unix_connection(loop, "/no/such/dir/x.sock",
                                        &rec_proto, &r, NULL, on_outcome,
                                        &o));
  CHECK_ERR(connect_wait(loop, &o.w), TAPIO_ENOENT);
  CHECK_EQ(tapio_loop_transport_count(loop), 0);
  free_loop(loop);
  rec_free(&r);
}

/* ---- Binding ------------------------------------------------------------- */

/* One listener per address and port, as bind() has it: the same address,
 * or the wildcard over it, is in use (named in the message); the other
 * family is free; with reuse_port on both, two servers share a port and
 * the first takes the connects. */
static void vnet_address_in_use(void)
{
  tapio_loop *loop = new_virtual();
  tapio_options *o = new_options(loop);
  srv a, b, c, d, e;
  rec r;
  outcome w;
  server_with(&a, loop, "127.0.0.1", 7000, 1, 100, 0);
  server_with(&b, loop, "127.0.0.1", 7000, 1, 100, TAPIO_EADDRINUSE);
  CHECK_STR(b.msg, "error while attempting to bind on address "
                   "('127.0.0.1', 7000): address already in use");
  server_with(&c, loop, "0.0.0.0", 7000, 1, 100, TAPIO_EADDRINUSE);
  CHECK(strstr(c.msg, "('0.0.0.0', 7000)") != NULL);
  server_with(&d, loop, "::1", 7000, 1, 100, 0);
  CHECK_OK(tapio_options_set_int(o, "reuse_port", 1));
  srv_init(&e, loop);
  CHECK_ERR(srv_start_hosts(&e, (const char *const[]){ "127.0.0.1" }, 1,
                            7001, o), 0);
  srv_init(&b, loop);
  CHECK_OK(srv_start_hosts(&b, (const char *const[]){ "127.0.0.1" }, 1,
                           7001, o));
  tapio_options_free(o);
  start_connect(loop, "127.0.0.1", 7001, &r, &w);
  CHECK_OK(connect_wait(loop, &w.w));
  idle(loop);
  CHECK_EQ(e.nfactory, 1);
  CHECK_EQ(b.nfactory, 0);
  tapio_server_release(d.s);
  tapio_server_release(e.s);
  tapio_server_release(b.s);
  srv_release_and_free(&a, loop);
  srv_free(&e);
  rec_free(&r);
}

/* local_addr: the client's address, as the server's side sees it. */
static void vnet_local_addr(void)
{
  tapio_loop *loop = new_virtual();
  tapio_options *opts = new_options(loop);
  srv sv;
  rec c;
  outcome o;
  server_with(&sv, loop, "0.0.0.0", 80, 1, 100, 0);
  CHECK_OK(tapio_options_set_str(opts, "local_host", "127.0.0.5"));
  CHECK_OK(tapio_options_set_int(opts, "local_port", 4000));
  memset(&o, 0, sizeof o);
  o.loop = loop;
  o.w.r = &c;
  rec_init(&c);
  CHECK_OK(tapio_create_connection(loop, "127.0.0.1", 80, &rec_proto, &c,
                                   opts, on_outcome, &o));
  tapio_options_free(opts);
  CHECK_OK(connect_wait(loop, &o.w));
  idle(loop);
  check_name(c.t, 0, "127.0.0.5", 4000);
  check_name(sv.conns[0]->t, 1, "127.0.0.5", 4000);
  check_name(sv.conns[0]->t, 0, "127.0.0.1", 80); /* not the wildcard */
  srv_release_and_free(&sv, loop);
  rec_free(&c);
}

/* ---- The backlog ----------------------------------------------------------- */

/* A server that does not serve, its backlog of 0 (one connection, as
 * Linux's queue holds backlog + 1) taken by c[0]'s connection (which wrote
 * "early"), c[1]'s connect waiting. */
static void fill_backlog(srv *sv, tapio_loop *loop, rec c[2], outcome o[2])
{
  server_with(sv, loop, "127.0.0.1", 0, 0, 0, 0);
  start_connect(loop, "127.0.0.1", sv->port, &c[0], &o[0]);
  CHECK_OK(connect_wait(loop, &o[0].w));
  CHECK_OK(tapio_transport_write(c[0].t, "early", 5));
  start_connect(loop, "127.0.0.1", sv->port, &c[1], &o[1]);
  idle(loop);
  CHECK_EQ(o[1].w.done, 0);
}

/* A server that does not serve yet: a connect completes while its backlog
 * has room (the client writes at once), the next one waits however long
 * the clock runs; serving accepts both, in order, with what was written. */
static void vnet_backlog_waits_until_served(void)
{
  tapio_loop *loop = new_virtual();
  srv sv;
  rec c[2];
  outcome o[2];
  fill_backlog(&sv, loop, c, o);
  CHECK_OK(tapio_loop_advance(loop, 100));
  CHECK_EQ(o[1].w.done, 0); /* a full backlog: the connect waits */
  CHECK_EQ(sv.nfactory, 0);
  CHECK_OK(tapio_server_start_serving(sv.s));
  idle(loop);
  CHECK_EQ(o[1].w.done, 1);
  CHECK_OK(o[1].w.status);
  CHECK_EQ(sv.n, 2);
  CHECK_STR(sv.conns[0]->log, "made data:5");
  CHECK_STR(sv.conns[1]->log, "made");
  srv_release_and_free(&sv, loop);
  rec_free(&c[0]);
  rec_free(&c[1]);
}

/* Past a full backlog a connect waits until the server serves: how a
 * connect timeout is tested. Cancelling it frees it, and calls nobody. */
static void vnet_connect_waits_and_cancels(void)
{
  tapio_loop *loop = new_virtual();
  srv sv;
  rec c[2];
  outcome o[2];
  fill_backlog(&sv, loop, c, o);
  CHECK_OK(tapio_loop_advance(loop, 30));
  CHECK_EQ(o[1].w.done, 0);
  CHECK_EQ(tapio_cancel_pending(loop, &o[1]), 1);
  CHECK_OK(tapio_server_start_serving(sv.s));
  CHECK_OK(tapio_loop_advance(loop, 1));
  CHECK_EQ(o[1].w.done, 0);
  CHECK_EQ(sv.nfactory, 1); /* c[0]'s only */
  CHECK_EQ(tapio_loop_transport_count(loop), 2);
  srv_release_and_free(&sv, loop);
  rec_free(&c[0]);
  rec_free(&c[1]);
}

/* A Unix connect past a full backlog does not wait: EAGAIN at once, with
 * the socket's words (Linux's unix_stream_connect, non-blocking). */
static void vnet_unix_backlog_full(void)
{
  static const char path[] = "/no/such/dir/full.sock";
  tapio_loop *loop = new_virtual();
  tapio_options *opts = new_options(loop);
  srv sv;
  rec c[2];
  outcome o[2];
  int i;
  CHECK_OK(tapio_options_set_int(opts, "start_serving", 0));
  CHECK_OK(tapio_options_set_int(opts, "backlog", 0));
  srv_init(&sv, loop);
  CHECK_OK(tapio_create_unix_server(loop, path, srv_factory, &sv, opts,
                                    on_server, &sv));
  tapio_options_free(opts);
  idle(loop);
  for (i = 0; i < 2; i++) {
    memset(&o[i], 0, sizeof o[i]);
    o[i].loop = loop;
    o[i].w.r = &c[i];
    rec_init(&c[i]);
    CHECK_OK(tapio_create_unix_connection(loop, path, &rec_proto, &c[i],
                                          NULL, on_outcome, &o[i]));
    idle(loop);
  }
  CHECK_OK(o[0].w.status);
  CHECK_EQ(o[1].w.done, 1);
  CHECK_ERR(o[1].w.status, TAPIO_EAGAIN);
  CHECK_STR(o[1].msg, "connect call failed '/no/such/dir/full.sock': "
                      "resource temporarily unavailable");
  srv_release_and_free(&sv, loop);
  rec_free(&c[0]);
  rec_free(&c[1]);
}

/* A listener that closes resets the connections it never accepted (the
 * client reads what it had, then ECONNRESET) and refuses the connects
 * still waiting. */
static void vnet_close_resets_backlog(void)
{
  tapio_loop *loop = new_virtual();
  srv sv;
  rec c[2];
  outcome o[2];
  fill_backlog(&sv, loop, c, o);
  CHECK_OK(tapio_server_close(sv.s));
  CHECK_EQ(o[1].w.done, 0); /* not inside the close */
  idle(loop);
  CHECK_STR(c[0].log, "made lost:ECONNRESET");
  CHECK_ERR(o[1].w.status, TAPIO_ECONNREFUSED);
  CHECK_EQ(sv.nfactory, 0);
  CHECK_EQ(tapio_loop_transport_count(loop), 0);
  srv_release_and_free(&sv, loop);
  rec_free(&c[0]);
  rec_free(&c[1]);
}

/* The loop freed with a connection in a backlog, a connect waiting and a
 * connection served: each ends (the waiting one ECANCELED), nothing leaks
 * (valgrind and LeakSanitizer check this test's exit). */
static void vnet_free_with_everything(void)
{
  tapio_loop *loop = new_virtual();
  srv idle_sv, sv;
  rec c1, c2, c3;
  outcome o1, o2, o3;
  server_with(&idle_sv, loop, "127.0.0.1", 0, 0, 0, 0);
  server_with(&sv, loop, "127.0.0.1", 0, 1, 100, 0);
  start_connect(loop, "127.0.0.1", idle_sv.port, &c1, &o1);
  start_connect(loop, "127.0.0.1", idle_sv.port, &c2, &o2);
  start_connect(loop, "127.0.0.1", sv.port, &c3, &o3);
  idle(loop);
  CHECK_EQ(o1.w.done + o2.w.done + o3.w.done, 2);
  CHECK_EQ(sv.n, 1);
  srv_release_and_free(&sv, loop);
  CHECK_ERR(o2.w.status, TAPIO_ECANCELED);
  CHECK_STR(c1.log, "made lost:ECANCELED");
  CHECK_STR(c3.log, "made lost:ECANCELED");
  srv_free(&idle_sv);
  rec_free(&c1);
  rec_free(&c2);
  rec_free(&c3);
}

/* The server closed from the connection_made of a connection it
 * accepted: the rest of its backlog is reset, the server goes. */
static srv *closing;
static void close_server_in_made(rec *r, rec_event ev)
{
  (void)r;
  if (ev == EV_MADE)
    CHECK_OK(tapio_server_close(closing->s));
}

static void vnet_close_inside_accept(void)
{
  tapio_loop *loop = new_virtual();
  srv sv;
  rec c1, c2;
  outcome o1, o2;
  server_with(&sv, loop, "127.0.0.1", 0, 0, 2, 0);
  sv.tmpl.hook = close_server_in_made;
  closing = &sv;
  start_connect(loop, "127.0.0.1", sv.port, &c1, &o1);
  start_connect(loop, "127.0.0.1", sv.port, &c2, &o2);
  idle(loop);
  CHECK_OK(tapio_server_start_serving(sv.s));
  idle(loop);
  CHECK_EQ(sv.n, 1);
  CHECK_STR(c2.log, "made lost:ECONNRESET");
  CHECK_EQ(tapio_server_is_serving(sv.s), 0);
  srv_release_and_free(&sv, loop);
  rec_free(&c1);
  rec_free(&c2);
}

/* ---- Unix paths and real sockets ----------------------------------------- */

/* A Unix server at a path of the network's own: no file is made; the
 * client names the path as its peer, the server's side an unnamed one. */
static void vnet_unix_path(void)
{
  static const char path[] = "/no/such/dir/vnet.sock";
  tapio_loop *loop = new_virtual();
  srv sv;
  rec c;
  outcome o;
  struct stat st;
  srv_init(&sv, loop);
  CHECK_OK(tapio_create_unix_server(loop, path, srv_factory, &sv, NULL,
                                    on_server, &sv));
  idle(loop);
  CHECK_OK(sv.status);
  CHECK(stat(path, &st) < 0);
  memset(&o, 0, sizeof o);
  o.loop = loop;
  o.w.r = &c;
  rec_init(&c);
  CHECK_OK(tapio_create_unix_connection(loop, path, &rec_proto, &c, NULL,
                                        on_outcome, &o));
  CHECK_OK(connect_wait(loop, &o.w));
  idle(loop);
  CHECK_EQ(sv.n, 1);
  check_name(c.t, 1, path, -1);
  check_name(sv.conns[0]->t, 0, path, -1);
  check_name(sv.conns[0]->t, 1, "", -1);
  srv_release_and_free(&sv, loop);
  rec_free(&c);
}

/* What would need a real socket stays refused: "sock", an accepted
 * socket (each closes the descriptor given, as any failure does). */
static void vnet_real_sockets_refused(void)
{
  tapio_loop *loop = new_virtual();
  tapio_options *o = new_options(loop);
  rec r;
  conn_wait w = { 0 };
  int sv[2];
  CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
  CHECK_OK(tapio_options_set_int(o, "sock", sv[0]));
  rec_init(&r);
  CHECK_ERR(tapio_create_connection(loop, NULL, 0, &rec_proto, &r, o,
                                    on_connected, &w),
            TAPIO_EVIRTUAL);
  CHECK(fcntl(sv[0], F_GETFD) < 0);
  CHECK_ERR(tapio_connect_accepted_socket(loop, sv[1], &rec_proto, &r,
                                          NULL, on_connected, &w),
            TAPIO_EVIRTUAL);
  CHECK(fcntl(sv[1], F_GETFD) < 0);
  tapio_options_free(o);
  free_loop(loop);
  rec_free(&r);
}

TEST_MAIN(TEST(vnet_exchange_and_names), TEST(vnet_localhost_and_wildcard),
          TEST(vnet_refused), TEST(vnet_address_in_use), TEST(vnet_local_addr),
          TEST(vnet_backlog_waits_until_served),
          TEST(vnet_connect_waits_and_cancels),
          TEST(vnet_close_resets_backlog), TEST(vnet_free_with_everything),
          TEST(vnet_close_inside_accept), TEST(vnet_unix_path),
          TEST(vnet_unix_backlog_full),
          TEST(vnet_real_sockets_refused))
