/* TLS handshakes between tapio's own client and server: what connects,
 * what each side learns, and every way a handshake fails, each with the
 * code that says why and without a callback to the protocol. */
#include "tls.h"

static void pair_up(tls_pair *p, tapio_tls_context *sctx,
                    tapio_tls_context *cctx, const char *name)
{
  tls_pair_init(p);
  tls_pair_up(p, sctx, cctx, name);
}

/* A client with cctx to a server with sctx that must fail with code,
 * the words containing text; neither protocol hears of it. */
static void must_fail(tapio_tls_context *sctx, tapio_tls_context *cctx,
                      const char *name, int code, const char *text)
{
  tapio_loop *loop = new_loop();
  srv sv;
  rec c;
  rec_init(&c);
  tls_srv_start(&sv, loop, sctx);
  CHECK_ERR(tls_connect(loop, sv.port, &c, cctx, name), code);
  if (!strstr(tls_last_msg, text))
    FAIL("the message \"%s\" does not say \"%s\"", tls_last_msg, text);
  CHECK_STR(c.log, "");
  spin(loop, 5);
  CHECK_EQ(sv.nfactory, 0); /* the server made no protocol either */
  srv_release_and_free(&sv, loop);
  rec_free(&c);
}

/* ---- Handshakes that work ------------------------------------------------ */

/* A handshake, data both ways, a clean close. */
static void handshake_and_echo(void)
{
  tls_pair p;
  pair_up(&p, server_ctx("server"), client_ctx(), "localhost");
  CHECK_STR(p.c.log, "made");
  roundtrip(p.loop, &p.c, p.s);
  CHECK_STR(tls_info(p.s->t, TAPIO_TLS_INFO_SERVER_HOSTNAME), "localhost");
  CHECK_STR(tls_info(p.c.t, TAPIO_TLS_INFO_SERVER_HOSTNAME), "localhost");
  CHECK_OK(tapio_transport_close(p.c.t));
  WAIT_FOR(p.loop, p.c.lost && p.s->lost);
  CHECK_STR(p.c.log, "made data:4 lost:0");
  CHECK_STR(p.s->log, "made data:4 eof lost:0");
  tls_pair_end(&p);
}

/* What get_extra_info tells on both sides. */
static void extra_info(void)
{
  tls_pair p;
  char name[64], value[128], der[4096];
  size_t len = 0;
  pair_up(&p, server_ctx("server"), client_ctx(), "localhost");
  roundtrip(p.loop, &p.c, p.s);
  CHECK_STR(tls_info(p.c.t, TAPIO_TLS_INFO_VERSION), "TLSv1.3");
  CHECK_EQ(tapio_transport_get_tls_num(p.c.t, TAPIO_TLS_NUM_VERSION),
           TAPIO_TLS_1_3);
  CHECK(strncmp(tls_info(p.c.t, TAPIO_TLS_INFO_CIPHER), "TLS_AES_", 8) == 0);
  CHECK_STR(tls_info(p.c.t, TAPIO_TLS_INFO_CIPHER),
            tls_info(p.s->t, TAPIO_TLS_INFO_CIPHER));
  CHECK(tapio_transport_get_tls_num(p.c.t, TAPIO_TLS_NUM_SECRET_BITS) >= 128);
  CHECK_EQ(tapio_transport_get_tls_num(p.c.t, TAPIO_TLS_NUM_SESSION_REUSED),
           0);
  CHECK(tapio_transport_get_tls_num(p.c.t, TAPIO_TLS_NUM_HANDSHAKE_USEC) > 0);
  CHECK_EQ(tapio_transport_get_tls_num(p.c.t, TAPIO_TLS_NUM_END),
           TAPIO_TLS_END_OPEN);
  /* ciphertext costs more than the 4 plain bytes each way */
  CHECK_EQ(tapio_transport_get_stat(p.c.t, TAPIO_STAT_BYTES_SENT), 4);
  CHECK(tapio_transport_get_tls_num(p.c.t,
                                    TAPIO_TLS_NUM_WIRE_BYTES_SENT) > 4);
  CHECK(tapio_transport_get_tls_num(p.c.t,
                                    TAPIO_TLS_NUM_WIRE_BYTES_RECEIVED) > 4);
  /* the server's certificate, as the client sees it */
  CHECK_OK(tapio_transport_get_peercert_entry(p.c.t, TAPIO_TLS_SUBJECT, 0,
                                              name, sizeof name, value,
                                              sizeof value));
  CHECK_STR(name, "commonName");
  CHECK_STR(value, "localhost");
  CHECK_OK(tapio_transport_get_peercert_entry(p.c.t, TAPIO_TLS_ISSUER, 0,
                                              name, sizeof name, value,
                                              sizeof value));
  CHECK_STR(value, "tapio test CA");
  CHECK_OK(tapio_transport_get_peercert_entry(
      p.c.t, TAPIO_TLS_SUBJECT_ALT_NAME, 0, name, sizeof name, value,
      sizeof value));
  CHECK_STR(name, "DNS");
  CHECK_STR(value, "localhost");
  CHECK_OK(tapio_transport_get_peercert_entry(
      p.c.t, TAPIO_TLS_SUBJECT_ALT_NAME, 1, name, sizeof name, value,
      sizeof value));
  CHECK_STR(name, "IP Address");
  CHECK_STR(value, "127.0.0.1");
  CHECK_OK(tapio_transport_get_peercert_entry(
      p.c.t, TAPIO_TLS_SUBJECT_ALT_NAME, 2, name, sizeof name, value,
      sizeof value));
  CHECK_STR(value, "0:0:0:0:0:0:0:1"); /* as Python writes it */
  CHECK_ERR(tapio_transport_get_peercert_entry(
                p.c.t, TAPIO_TLS_SUBJECT_ALT_NAME, 3, name, sizeof name,
                value, sizeof value), TAPIO_ENOENT);
  CHECK_STR(tls_info(p.c.t, TAPIO_TLS_INFO_PEER_NOT_AFTER),
            "Dec 31 00:00:00 2099 GMT");
  CHECK_STR(tls_info(p.c.t, TAPIO_TLS_INFO_PEER_NOT_BEFORE),
            "Jan  1 00:00:00 2020 GMT");
  CHECK(strlen(tls_info(p.c.t, TAPIO_TLS_INFO_PEER_SERIAL)) >= 2);
  CHECK_OK(tapio_transport_get_tls_info(p.c.t, TAPIO_TLS_INFO_PEER_CERT, der,
                                        sizeof der, &len));
  CHECK(len > 100 && (unsigned char)der[0] == 0x30); /* a DER SEQUENCE */
  CHECK_ERR(tapio_transport_get_tls_info(p.c.t, TAPIO_TLS_INFO_PEER_CERT, der,
                                         10, &len), TAPIO_ENOBUFS);
  CHECK(len > 100); /* the length, to size a buffer */
  /* the server asked nothing of the client */
  CHECK_ERR(tapio_transport_get_tls_info(p.s->t, TAPIO_TLS_INFO_PEER_CERT,
                                         der, sizeof der, &len),
            TAPIO_ENOENT);
  CHECK_ERR(tapio_transport_get_tls_info(p.c.t, TAPIO_TLS_INFO_ALPN, value,
                                         sizeof value, NULL), TAPIO_ENOENT);
  CHECK_ERR(tapio_transport_get_tls_info(p.c.t, TAPIO_TLS_INFO_COMPRESSION,
                                         value, sizeof value, NULL),
            TAPIO_ENOENT);
  CHECK(tapio_transport_get_ssl(p.c.t) != NULL);
  CHECK_EQ(tapio_tls_context_get_side(tapio_transport_get_tls_context(p.c.t)),
           TAPIO_TLS_CLIENT);
  /* TLS closes both ways at once */
  CHECK_EQ(tapio_transport_can_write_eof(p.c.t), 0);
  CHECK_ERR(tapio_transport_write_eof(p.c.t), TAPIO_ENOTSUP);
  tls_pair_end(&p);
}

/* TLS 1.2 when the client goes no higher. */
static void tls12(void)
{
  tls_pair p;
  tapio_tls_context *cc = client_ctx();
  CHECK_OK(tapio_tls_context_set_versions(cc, 0, TAPIO_TLS_1_2));
  pair_up(&p, server_ctx("server"), cc, "localhost");
  roundtrip(p.loop, &p.c, p.s);
  CHECK_STR(tls_info(p.s->t, TAPIO_TLS_INFO_VERSION), "TLSv1.2");
  CHECK_EQ(tapio_transport_get_tls_num(p.s->t, TAPIO_TLS_NUM_VERSION),
           TAPIO_TLS_1_2);
  tls_pair_end(&p);
}

/* The host given to create_connection is the name checked: an address is
 * checked against the certificate's addresses, and sent as no SNI. */
static void ip_address_checked(void)
{
  tls_pair p;
  pair_up(&p, server_ctx("server"), client_ctx(), NULL);
  CHECK_STR(tls_info(p.c.t, TAPIO_TLS_INFO_SERVER_HOSTNAME), "127.0.0.1");
  CHECK_STR(tls_info(p.s->t, TAPIO_TLS_INFO_SERVER_HOSTNAME), "");
  tls_pair_end(&p);
  must_fail(server_ctx("noip"), client_ctx(), NULL, TAPIO_ETLS_HOSTNAME,
            "IP address mismatch");
}

/* Verification off, the explicit way: a self-signed server is taken. */
static void verify_none(void)
{
  tls_pair p;
  tapio_tls_context *cc = client_ctx();
  CHECK_OK(tapio_tls_context_set_verify(cc, TAPIO_TLS_VERIFY_NONE));
  pair_up(&p, server_ctx("self"), cc, "other.example");
  roundtrip(p.loop, &p.c, p.s);
  tls_pair_end(&p);
}

/* A client context given no CAs trusts the system's store, which
 * SSL_CERT_FILE overrides as OpenSSL reads it. */
static void system_store_from_env(void)
{
  tls_pair p;
  tapio_tls_context *cc = NULL;
  CHECK(setenv("SSL_CERT_FILE", cert("ca.pem"), 1) == 0);
  CHECK_OK(tapio_tls_context_new(TAPIO_TLS_CLIENT, &cc));
  pair_up(&p, server_ctx("server"), cc, "localhost");
  roundtrip(p.loop, &p.c, p.s);
  tls_pair_end(&p);
}

/* The system store's directory (SSL_CERT_DIR; its file missing): OpenSSL
 * still reads it, as a handshake needs a certificate of it. */
static void system_store_dir_from_env(void)
{
  char dir[] = "/tmp/tapio-certdir-XXXXXX", cmd[1024];
  tapio_tls_context *cc = NULL;
  tls_pair p;
  CHECK(mkdtemp(dir) != NULL);
  snprintf(cmd, sizeof cmd, "cp %s %s/ && openssl rehash %s", cert("ca.pem"),
           dir, dir);
  CHECK_EQ(system(cmd), 0);
  CHECK(setenv("SSL_CERT_FILE", "/nonexistent/ca.pem", 1) == 0);
  CHECK(setenv("SSL_CERT_DIR", dir, 1) == 0);
  CHECK_OK(tapio_tls_context_new(TAPIO_TLS_CLIENT, &cc));
  pair_up(&p, server_ctx("server"), cc, "localhost");
  roundtrip(p.loop, &p.c, p.s);
  tls_pair_end(&p);
  snprintf(cmd, sizeof cmd, "rm -r %s", dir);
  CHECK_EQ(system(cmd), 0);
}

/* Closing or aborting from inside every callback of a TLS client: one
 * connection_lost, last, and nothing used after it is freed (the asan and
 * valgrind builds run this too). */
static void close_inside_callbacks(void)
{
  static const rec_action acts[] = { ACT_CLOSE, ACT_ABORT, ACT_CLOSE_ABORT,
                                     ACT_ABORT_CLOSE };
  static const rec_event evs[] = { EV_MADE, EV_DATA };
  size_t a, e;
  for (a = 0; a < sizeof acts / sizeof *acts; a++)
    for (e = 0; e < sizeof evs / sizeof *evs; e++) {
      tls_pair p;
      tls_pair_init(&p);
      p.c.act[evs[e]] = acts[a];
      p.sv.tmpl.act[EV_MADE] = ACT_NONE;
      tls_pair_up(&p, server_ctx("server"), client_ctx(), "localhost");
      if (p.s->t) /* the client's close may have ended it already */
        tapio_transport_write(p.s->t, "x", 1);
      WAIT_FOR(p.loop, p.c.lost && p.s->lost);
      CHECK(strstr(p.c.log, "BAD") == NULL);
      CHECK(strstr(p.c.log, "lost:0") != NULL);
      tls_pair_end(&p);
    }
}

/* Handed-over sockets: connect_accepted_socket takes the server's side,
 * create_connection's "sock" the client's, each end of a socketpair. */
static void handed_over_sockets(void)
{
  tapio_loop *loop = new_loop();
  tapio_options *so = tls_options(loop, server_ctx("server"));
  tapio_options *co = tls_options(loop, client_ctx());
  conn_wait ws = { 0 }, wc = { 0 };
  rec s, c;
  int sv[2];
  rec_init(&s);
  rec_init(&c);
  CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
  /* a server context for the client's side is refused */
  CHECK_ERR(tapio_connect_accepted_socket(loop, dup(sv[0]), &rec_proto, &s,
                                          co, never_connected, NULL),
            TAPIO_EINVAL);
  ws.r = &s;
  wc.r = &c;
  CHECK_OK(tapio_connect_accepted_socket(loop, sv[0], &rec_proto, &s, so,
                                         on_connected, &ws));
  CHECK_OK(tapio_options_set_int(co, "sock", sv[1]));
  CHECK_OK(tapio_options_set_str(co, "server_hostname", "localhost"));
  CHECK_OK(tapio_create_connection(loop, NULL, 0, &rec_proto, &c, co,
                                   on_connected, &wc));
  WAIT_FOR(loop, ws.done && wc.done);
  CHECK_OK(ws.status);
  CHECK_OK(wc.status);
  roundtrip(loop, &c, &s);
  CHECK_STR(tls_info(s.t, TAPIO_TLS_INFO_SERVER_HOSTNAME), "localhost");
  tapio_options_free(so);
  tapio_options_free(co);
  free_loop(loop);
  rec_free(&s);
  rec_free(&c);
}

/* ---- Handshakes that fail, each saying why -------------------------------- */

static void cert_expired(void)
{
  must_fail(server_ctx("expired"), client_ctx(), "localhost",
            TAPIO_ETLS_EXPIRED, "certificate has expired");
}

static void cert_not_yet_valid(void)
{
  must_fail(server_ctx("future"), client_ctx(), "localhost",
            TAPIO_ETLS_NOT_YET_VALID, "certificate is not yet valid");
}

static void cert_wrong_host(void)
{
  must_fail(server_ctx("other"), client_ctx(), "localhost",
            TAPIO_ETLS_HOSTNAME, "hostname mismatch");
}

static void cert_unknown_ca(void)
{
  tapio_tls_context *cc = NULL;
  CHECK_OK(tapio_tls_context_new(TAPIO_TLS_CLIENT, &cc));
  CHECK_OK(tapio_tls_context_load_verify_locations(cc, cert("ca2.pem"), NULL,
                                                   NULL, 0));
  must_fail(server_ctx("server"), cc, "localhost", TAPIO_ETLS_UNKNOWN_CA,
            "unable to get local issuer certificate");
}

static void cert_self_signed(void)
{
  must_fail(server_ctx("self"), client_ctx(), "localhost",
            TAPIO_ETLS_SELF_SIGNED, "self-signed certificate");
}

static void version_mismatch(void)
{
  tapio_tls_context *sc = server_ctx("server"), *cc = client_ctx();
  CHECK_OK(tapio_tls_context_set_versions(sc, 0, TAPIO_TLS_1_2));
  CHECK_OK(tapio_tls_context_set_versions(cc, TAPIO_TLS_1_3, 0));
  must_fail(sc, cc, "localhost", TAPIO_ETLS_VERSION, "protocol version");
}

static void cipher_mismatch(void)
{
  tapio_tls_context *sc = server_ctx("server"), *cc = client_ctx();
  CHECK_OK(tapio_tls_context_set_ciphers(sc, NULL, "TLS_AES_256_GCM_SHA384"));
  CHECK_OK(tapio_tls_context_set_ciphers(cc, NULL, "TLS_AES_128_GCM_SHA256"));
  must_fail(sc, cc, "localhost", TAPIO_ETLS_CIPHER, "handshake failure");
}

/* A raw peer that accepts and then does `what` (close at once, reset,
 * send garbage, say nothing): the client's result. */
enum { RAW_CLOSE, RAW_GARBAGE, RAW_SILENT, RAW_RESET };

static int raw_server_peer(int what, double timeout)
{
  tapio_loop *loop = new_loop();
  tapio_options *o = tls_options(loop, client_ctx());
  tls_try tt;
  rec c;
  int port, lfd = raw_listen(AF_INET, &port), peer, status;
  char hello[512];
  rec_init(&c);
  memset(&tt, 0, sizeof tt);
  tt.w.r = &c;
  tt.loop = loop;
  CHECK_OK(tapio_options_set_str(o, "server_hostname", "localhost"));
  if (timeout > 0)
    CHECK_OK(tapio_options_set_double(o, "ssl_handshake_timeout", timeout));
  CHECK_OK(tapio_create_connection(loop, "127.0.0.1", port, &rec_proto, &c,
                                   o, tls_try_done, &tt));
  tapio_options_free(o);
  peer = raw_accept(loop, lfd);
  CHECK(raw_wait(loop, peer, POLLIN)); /* the ClientHello */
  CHECK(recv(peer, hello, sizeof hello, 0) > 0);
  if (timeout >= 10) { /* a host polling the loop wakes for the timeout
                          (a long one: valgrind is slow) */
    int ms, steps = 0;
    while ((ms = tapio_loop_backend_timeout(loop)) == 0 && steps++ < 10)
      CHECK_OK(tapio_loop_run_once(loop, 0)); /* what is ready first */
    CHECK(ms > 0 && ms <= (int)(timeout * 1000));
  }
  if (what == RAW_CLOSE)
    close(peer);
  else if (what == RAW_RESET)
    raw_reset(peer);
  else if (what == RAW_GARBAGE)
    raw_send_str(loop, peer, "HTTP/1.0 400 Bad Request\r\n\r\n");
  status = connect_wait(loop, &tt.w);
  snprintf(tls_last_msg, sizeof tls_last_msg, "%s", tt.msg);
  CHECK_STR(c.log, "");
  if (what != RAW_CLOSE && what != RAW_RESET)
    close(peer);
  close(lfd);
  free_loop(loop);
  rec_free(&c);
  return status;
}

/* S2, S17: the peer closes during the handshake (which the loop's backend
 * timeout counts down to meanwhile). */
static void peer_closes_during_handshake(void)
{
  CHECK_ERR(raw_server_peer(RAW_CLOSE, 30), TAPIO_ECONNRESET);
  CHECK(strstr(tls_last_msg, "the peer closed the connection") != NULL);
}

/* S3: the peer resets during the handshake (asyncio's connection_lost
 * with an error then): the connect fails with it, calling no protocol. */
static void peer_resets_during_handshake(void)
{
  CHECK_ERR(raw_server_peer(RAW_RESET, 0), TAPIO_ECONNRESET);
  CHECK_STR(tls_last_msg, "TLS handshake failed: connection reset by peer");
}

/* A peer that answers a ClientHello with something else. */
static void garbage_instead_of_handshake(void)
{
  CHECK_ERR(raw_server_peer(RAW_GARBAGE, 0), TAPIO_ETLS);
  CHECK(strstr(tls_last_msg, "wrong version number") != NULL);
}

/* S14: a peer that stalls the handshake; the timeout says so. */
static void handshake_timeout(void)
{
  double t0 = now_sec();
  CHECK_ERR(raw_server_peer(RAW_SILENT, 0.3), TAPIO_ETIMEDOUT);
  CHECK(now_sec() - t0 >= 0.29);
  CHECK_STR(tls_last_msg, "TLS handshake is taking longer than 0.3 "
                          "seconds: aborting the connection");
}

/* The server's side: a client that never speaks is dropped after the
 * server's handshake timeout; the factory never runs. */
static void server_handshake_timeout(void)
{
  tapio_loop *loop = new_loop();
  tapio_options *o = tls_options(loop, server_ctx("server"));
  srv sv;
  char buf[64];
  size_t n;
  int peer;
  srv_init(&sv, loop);
  CHECK_OK(tapio_options_set_double(o, "ssl_handshake_timeout", 0.2));
  tls_srv_listen(&sv, o);
  tapio_options_free(o);
  peer = raw_connect(AF_INET, "127.0.0.1", sv.port);
  CHECK(peer >= 0);
  CHECK_EQ(raw_recv_until_eof(loop, peer, buf, sizeof buf, &n), 0);
  CHECK_EQ(n, 0);
  CHECK_EQ(sv.nfactory, 0);
  WAIT_FOR(loop, tapio_server_client_count(sv.s) == 0);
  close(peer);
  srv_release_and_free(&sv, loop);
}

/* A handshake that ends after the server was released: the factory (the
 * caller may have freed what it uses) is not called; the connection is
 * aborted, which the client sees. */
static void released_server_calls_no_factory(void)
{
  tapio_loop *loop = new_loop();
  tapio_options *o;
  conn_wait w = { 0 };
  srv sv;
  rec c;
  int fd;
  tls_srv_start(&sv, loop, server_ctx("server"));
  fd = raw_connect(AF_INET, "127.0.0.1", sv.port);
  CHECK(fd >= 0);
  WAIT_FOR(loop, tapio_server_client_count(sv.s) == 1); /* accepted */
  tapio_server_release(sv.s); /* its handshake has not begun */
  o = tls_options(loop, client_ctx());
  CHECK_OK(tapio_options_set_int(o, "sock", fd));
  CHECK_OK(tapio_options_set_str(o, "server_hostname", "localhost"));
  rec_init(&c);
  w.r = &c;
  CHECK_OK(tapio_create_connection(loop, NULL, 0, &rec_proto, &c, o,
                                   on_connected, &w));
  tapio_options_free(o);
  WAIT_FOR(loop, w.done);
  if (w.status == 0) /* TLS 1.3: the client may finish first */
    WAIT_FOR(loop, c.lost);
  CHECK_EQ(sv.nfactory, 0);
  free_loop(loop);
  srv_free(&sv);
  rec_free(&c);
}

/* ---- Client certificates -------------------------------------------------- */

static tapio_tls_context *asking_server(void)
{
  tapio_tls_context *sc = server_ctx("server");
  CHECK_OK(tapio_tls_context_load_verify_locations(sc, cert("ca.pem"), NULL,
                                                   NULL, 0));
  CHECK_OK(tapio_tls_context_set_verify(sc, TAPIO_TLS_VERIFY_REQUIRED));
  return sc;
}

static void client_cert_given(void)
{
  tls_pair p;
  tapio_tls_context *cc = client_ctx();
  char name[64], value[64];
  CHECK_OK(tapio_tls_context_load_cert_chain(cc, cert("client.pem"),
                                             cert("client.key"), NULL));
  pair_up(&p, asking_server(), cc, "localhost");
  roundtrip(p.loop, &p.c, p.s);
  CHECK_OK(tapio_transport_get_peercert_entry(p.s->t, TAPIO_TLS_SUBJECT, 0,
                                              name, sizeof name, value,
                                              sizeof value));
  CHECK_STR(value, "tapio client");
  tls_pair_end(&p);
}

/* TLS 1.3 ends the client's handshake before the server has looked at
 * its certificate: the client is connected, then gets the server's
 * refusal with its first read. The server's factory never runs. */
static void client_cert_missing(void)
{
  tapio_loop *loop = new_loop();
  srv sv;
  rec c;
  rec_init(&c);
  tls_srv_start(&sv, loop, asking_server());
  CHECK_OK(tls_connect(loop, sv.port, &c, client_ctx(), "localhost"));
  WAIT_FOR(loop, c.lost);
  CHECK_STR(c.log, "made lost:ETLS_NO_CERT");
  CHECK(strstr(c.lost_msg, "certificate required") != NULL);
  CHECK_EQ(sv.nfactory, 0);
  srv_release_and_free(&sv, loop);
  rec_free(&c);
}

/* TLS 1.2: the client's handshake fails itself, on a bare
 * handshake_failure alert that the client knows to follow the server's
 * request for a certificate it had none of: not a cipher mismatch. */
static void client_cert_missing_tls12(void)
{
  tapio_tls_context *cc = client_ctx();
  CHECK_OK(tapio_tls_context_set_versions(cc, 0, TAPIO_TLS_1_2));
  must_fail(asking_server(), cc, "localhost", TAPIO_ETLS_NO_CERT,
            "handshake failure (a client certificate was asked for)");
}

/* ---- The server's hook for failed handshakes ------------------------------- */

/* What tapio_server_set_handshake_failed's hook heard, last call's. */
typedef struct hs_heard {
  int n, status, peer_port;
  int release; /* the hook releases its server */
  char msg[256], sni[64];
} hs_heard;

static void on_hs_failed(void *ud, tapio_server *s, tapio_transport *t,
                         int status)
{
  hs_heard *h = ud;
  const char *m = tapio_loop_error_message(tapio_server_get_loop(s));
  h->n++;
  h->status = status;
  snprintf(h->msg, sizeof h->msg, "%s", m ? m : "");
  snprintf(h->sni, sizeof h->sni, "%s",
           tls_info(t, TAPIO_TLS_INFO_SERVER_HOSTNAME));
  CHECK_OK(tapio_transport_get_peername(t, NULL, 0, &h->peer_port, NULL));
  CHECK(tapio_transport_is_closing(t));
  if (h->release)
    tapio_server_release(s);
}

/* A raw client of sv that does `what` (RAW_CLOSE, RAW_GARBAGE, or
 * RAW_SILENT: nothing), then waits for the hook's next call; the hook
 * heard the client's own port. */
static void raw_client_fails(srv *sv, hs_heard *h, int what)
{
  int n = h->n, fd = raw_connect(AF_INET, "127.0.0.1", sv->port);
  CHECK(fd >= 0);
  if (what == RAW_GARBAGE)
    raw_send_str(sv->loop, fd, "GET / HTTP/1.0\r\n\r\n");
  else if (what == RAW_CLOSE)
    WAIT_FOR(sv->loop, tapio_server_client_count(sv->s) == 1);
  if (what == RAW_CLOSE)
    close(fd);
  WAIT_FOR(sv->loop, h->n > n);
  if (what != RAW_CLOSE) {
    CHECK_EQ(h->peer_port, raw_port(fd));
    close(fd);
  }
}

/* A server with asking_server's context and a handshake timeout of secs
 * (0: the default), whose hook tells h. */
static void hs_srv_start(srv *sv, tapio_loop *loop, double secs, hs_heard *h)
{
  tapio_options *o = tls_options(loop, asking_server());
  memset(h, 0, sizeof *h);
  srv_init(sv, loop);
  if (secs > 0)
    CHECK_OK(tapio_options_set_double(o, "ssl_handshake_timeout", secs));
  tls_srv_listen(sv, o);
  tapio_options_free(o);
  CHECK_OK(tapio_server_set_handshake_failed(sv->s, on_hs_failed, h));
}

/* A server can hear of every failed handshake (a scanner, a client that
 * gives up, one with no certificate), with why and who; the factory never
 * runs. */
static void server_hears_failed_handshakes(void)
{
  tapio_loop *loop = new_loop();
  hs_heard h;
  srv sv;
  rec c;
  hs_srv_start(&sv, loop, 0, &h);
  CHECK_ERR(tapio_server_set_handshake_failed(NULL, on_hs_failed, &h),
            TAPIO_EINVAL);
  raw_client_fails(&sv, &h, RAW_GARBAGE);
  CHECK_ERR(h.status, TAPIO_ETLS);
  CHECK(h.msg[0] != '\0');
  raw_client_fails(&sv, &h, RAW_CLOSE);
  CHECK_ERR(h.status, TAPIO_ECONNRESET);
  rec_init(&c); /* TLS 1.3: the client is in before the server refuses */
  CHECK_OK(tls_connect(loop, sv.port, &c, client_ctx(), "localhost"));
  WAIT_FOR(loop, c.lost && h.n == 3);
  CHECK_ERR(h.status, TAPIO_ETLS_NO_CERT);
  CHECK_STR(h.sni, "localhost");
  CHECK(h.peer_port > 0);
  rec_free(&c);
  CHECK_EQ(sv.nfactory, 0);
  srv_release_and_free(&sv, loop);
}

/* A client that never speaks is heard of when ssl_handshake_timeout ends
 * its connection. */
static void server_hears_handshake_timeout(void)
{
  tapio_loop *loop = new_loop();
  hs_heard h;
  srv sv;
  hs_srv_start(&sv, loop, 0.2, &h);
  raw_client_fails(&sv, &h, RAW_SILENT);
  CHECK_ERR(h.status, TAPIO_ETIMEDOUT);
  CHECK(strstr(h.msg, "TLS handshake is taking longer than 0.2") != NULL);
  srv_release_and_free(&sv, loop);
}

/* A hook may release its server (the last reference): the server goes
 * once the hook has returned and its connection is gone. */
static void hook_releases_server(void)
{
  tapio_loop *loop = new_loop();
  hs_heard h;
  srv sv;
  char buf[256];
  size_t n;
  int fd;
  hs_srv_start(&sv, loop, 0, &h);
  h.release = 1;
  fd = raw_connect(AF_INET, "127.0.0.1", sv.port);
  CHECK(fd >= 0);
  raw_send_str(loop, fd, "GET / HTTP/1.0\r\n\r\n");
  CHECK_EQ(raw_recv_until_eof(loop, fd, buf, sizeof buf, &n), 0);
  WAIT_FOR(loop, h.n == 1);
  CHECK_ERR(h.status, TAPIO_ETLS);
  close(fd);
  spin(loop, 5);
  free_loop(loop);
  srv_free(&sv);
}

/* The server's own abort_clients during a handshake, and a release, are
 * not the client's failures: the hook is not called. */
static void server_cut_short_is_not_heard(void)
{
  tapio_loop *loop = new_loop();
  hs_heard h;
  srv sv;
  char buf[256];
  size_t n;
  int fd;
  memset(&h, 0, sizeof h);
  tls_srv_start(&sv, loop, server_ctx("server"));
  CHECK_OK(tapio_server_set_handshake_failed(sv.s, on_hs_failed, &h));
  fd = raw_connect(AF_INET, "127.0.0.1", sv.port);
  CHECK(fd >= 0);
  WAIT_FOR(loop, tapio_server_client_count(sv.s) == 1);
  CHECK_OK(tapio_server_abort_clients(sv.s));
  WAIT_FOR(loop, tapio_server_client_count(sv.s) == 0);
  close(fd);
  fd = raw_connect(AF_INET, "127.0.0.1", sv.port);
  CHECK(fd >= 0);
  WAIT_FOR(loop, tapio_server_client_count(sv.s) == 1);
  tapio_server_release(sv.s);
  sv.s = NULL;
  raw_send_str(loop, fd, "not a client hello\r\n");
  CHECK_EQ(raw_recv_until_eof(loop, fd, buf, sizeof buf, &n), 0);
  CHECK_EQ(h.n, 0);
  close(fd);
  free_loop(loop);
  srv_free(&sv);
}

/* ---- ALPN, SNI, sessions, key log ----------------------------------------- */

static void alpn(void)
{
  static const char *const offer[] = { "h2", "http/1.1" };
  static const char *const accept[] = { "spdy/3", "http/1.1" };
  static const char *const other[] = { "imap" };
  tls_pair p;
  tapio_tls_context *sc = server_ctx("server"), *cc = client_ctx();
  CHECK_OK(tapio_tls_context_set_alpn(cc, offer, 2));
  CHECK_OK(tapio_tls_context_set_alpn(sc, accept, 2));
  pair_up(&p, sc, cc, "localhost");
  CHECK_STR(tls_info(p.c.t, TAPIO_TLS_INFO_ALPN), "http/1.1");
  CHECK_STR(tls_info(p.s->t, TAPIO_TLS_INFO_ALPN), "http/1.1");
  tls_pair_end(&p);
  /* nothing in common: the connection goes on without a protocol */
  sc = server_ctx("server");
  cc = client_ctx();
  CHECK_OK(tapio_tls_context_set_alpn(cc, offer, 2));
  CHECK_OK(tapio_tls_context_set_alpn(sc, other, 1));
  pair_up(&p, sc, cc, "localhost");
  roundtrip(p.loop, &p.c, p.s);
  CHECK_STR(tls_info(p.c.t, TAPIO_TLS_INFO_ALPN), "");
  CHECK_STR(tls_info(p.s->t, TAPIO_TLS_INFO_ALPN), "");
  tls_pair_end(&p);
}

/* SNI picks the context by the name the client asks for. */
static void sni_table(void)
{
  tls_pair p;
  tapio_tls_context *sc = server_ctx("server"), *other = server_ctx("other");
  char name[64], value[64];
  CHECK_OK(tapio_tls_context_add_sni(sc, "other.example", other));
  CHECK_ERR(tapio_tls_context_add_sni(sc, "OTHER.example", other),
            TAPIO_EEXIST);
  pair_up(&p, sc, client_ctx(), "other.example");
  CHECK_OK(tapio_transport_get_peercert_entry(p.c.t, TAPIO_TLS_SUBJECT, 0,
                                              name, sizeof name, value,
                                              sizeof value));
  CHECK_STR(value, "other.example");
  CHECK(tapio_transport_get_tls_context(p.s->t) == other);
  CHECK_STR(tls_info(p.s->t, TAPIO_TLS_INFO_SERVER_HOSTNAME),
            "other.example");
  tls_pair_end(&p);
  tapio_tls_context_release(other);
}

static int sni_pick(void *ud, tapio_tls_context *ctx, const char *name,
                    tapio_tls_context **use)
{
  (void)ctx;
  if (name && strcmp(name, "refused.example") == 0)
    return -1;
  if (name && strcmp(name, "other.example") == 0)
    *use = ud;
  return 0;
}

static void sni_callback(void)
{
  tls_pair p;
  tapio_tls_context *sc = server_ctx("server"), *other = server_ctx("other");
  CHECK_OK(tapio_tls_context_set_sni_callback(sc, sni_pick, other));
  pair_up(&p, sc, client_ctx(), "other.example");
  CHECK(tapio_transport_get_tls_context(p.s->t) == other);
  tls_pair_end(&p);
  sc = server_ctx("server");
  CHECK_OK(tapio_tls_context_set_sni_callback(sc, sni_pick, other));
  must_fail(sc, client_ctx(), "refused.example", TAPIO_ETLS,
            "unrecognized name");
  tapio_tls_context_release(other);
}

/* A client resumes its session with the same server; a fresh context, or
 * one that keeps no sessions, does not. */
static void session_resumption(void)
{
  tapio_loop *loop = new_loop();
  tapio_tls_context *cc = client_ctx();
  srv sv;
  rec c[3];
  int i;
  tls_srv_start(&sv, loop, server_ctx("server"));
  for (i = 0; i < 3; i++) {
    rec_init(&c[i]);
    if (i == 2)
      CHECK_OK(tapio_tls_context_set_session_cache(cc, 0));
    tapio_options *o = new_options(loop);
    CHECK_OK(tapio_options_set_tls(o, "ssl", cc));
    CHECK_OK(tapio_options_set_str(o, "server_hostname", "localhost"));
    CHECK_OK(tls_connect_opts(loop, sv.port, &c[i], o));
    tapio_options_free(o);
    roundtrip(loop, &c[i], srv_wait_conn(&sv, (size_t)i)); /* the ticket */
    CHECK_EQ(tapio_transport_get_tls_num(c[i].t,
                                         TAPIO_TLS_NUM_SESSION_REUSED),
             i == 1);
    CHECK_EQ(tapio_transport_get_tls_num(sv.conns[i]->t,
                                         TAPIO_TLS_NUM_SESSION_REUSED),
             i == 1);
    CHECK_OK(tapio_transport_close(c[i].t));
    WAIT_FOR(loop, c[i].lost);
  }
  tapio_tls_context_release(cc);
  srv_release_and_free(&sv, loop);
  for (i = 0; i < 3; i++)
    rec_free(&c[i]);
}

static void count_line(void *ud, const char *line)
{
  if (strstr(line, "TRAFFIC_SECRET") || strstr(line, "CLIENT_RANDOM"))
    ++*(int *)ud;
}

/* The secrets as SSLKEYLOGFILE lines, to a file and to a callback. */
static void keylog(void)
{
  tls_pair p;
  tapio_tls_context *cc = client_ctx();
  char path[] = "/tmp/tapio-keylog-XXXXXX", line[512];
  int fd = mkstemp(path), lines = 0, n = 0;
  FILE *f;
  CHECK(fd >= 0);
  close(fd);
  CHECK_OK(tapio_tls_context_set_keylog_file(cc, path));
  CHECK_OK(tapio_tls_context_set_keylog_callback(cc, count_line, &n));
  pair_up(&p, server_ctx("server"), cc, "localhost");
  roundtrip(p.loop, &p.c, p.s);
  tls_pair_end(&p);
  f = fopen(path, "r");
  CHECK(f != NULL);
  while (fgets(line, sizeof line, f))
    lines += strstr(line, "CLIENT_HANDSHAKE_TRAFFIC_SECRET ") == line ||
             strstr(line, "SERVER_TRAFFIC_SECRET_0 ") == line;
  fclose(f);
  unlink(path);
  CHECK_EQ(lines, 2);
  CHECK(n >= 4);
}

/* The files tapio reads itself (test_inherit: OpenSSL's reads left the
 * descriptor to a child): an encrypted key with its password, and not
 * with a wrong one or none (the key file named); a chain of two; a CA
 * directory (capath), which OpenSSL still reads itself. */
static void files_read_as_openssl_reads_them(void)
{
  char dir[] = "/tmp/tapio-files-XXXXXX", cmd[1024], key[256], chain[256];
  tapio_tls_context *s, *c;
  tls_pair p;
  CHECK(mkdtemp(dir) != NULL);
  snprintf(key, sizeof key, "%s/enc.key", dir);
  snprintf(chain, sizeof chain, "%s/chain.pem", dir);
  snprintf(cmd, sizeof cmd,
           "openssl pkey -in %s -aes128 -passout pass:secret -out %s && "
           "cat %s %s > %s && cp %s %s/ && openssl rehash %s 2>/dev/null",
           cert("server.key"), key, cert("server.pem"), cert("ca.pem"), chain,
           cert("ca.pem"), dir, dir);
  CHECK_EQ(system(cmd), 0);
  CHECK_OK(tapio_tls_context_new(TAPIO_TLS_SERVER, &s));
  CHECK_ERR(tapio_tls_context_load_cert_chain(s, chain, key, "wrong"),
            TAPIO_ETLS);
  CHECK(strstr(tapio_tls_context_error(s), key) != NULL);
  CHECK_ERR(tapio_tls_context_load_cert_chain(s, chain, key, NULL),
            TAPIO_ETLS);
  CHECK(strstr(tapio_tls_context_error(s), key) != NULL);
  CHECK_OK(tapio_tls_context_load_cert_chain(s, chain, key, "secret"));
  CHECK_OK(tapio_tls_context_new(TAPIO_TLS_CLIENT, &c));
  CHECK_OK(tapio_tls_context_load_verify_locations(c, NULL, dir, NULL, 0));
  pair_up(&p, s, c, "localhost");
  roundtrip(p.loop, &p.c, p.s);
  tls_pair_end(&p);
  snprintf(cmd, sizeof cmd, "rm -r %s", dir);
  CHECK_EQ(system(cmd), 0);
}

/* Each refused call says why in tapio_tls_context_error: none answers
 * with the words of an earlier failure. */
static void context_errors_say_why(void)
{
  tapio_tls_context *c = client_ctx(), *s = server_ctx("server");
  static const char *const empty[] = { "" };
  CHECK_ERR(tapio_tls_context_load_cert_chain(c, cert("nothere.pem"), NULL,
                                              NULL), TAPIO_ENOENT);
  CHECK(strstr(tapio_tls_context_error(c), "nothere.pem") != NULL);
  CHECK_ERR(tapio_tls_context_set_verify(c, 7), TAPIO_EINVAL);
  CHECK_STR(tapio_tls_context_error(c),
            "TAPIO_TLS_VERIFY_NONE, _OPTIONAL or _REQUIRED expected");
  CHECK_ERR(tapio_tls_context_set_versions(c, TAPIO_TLS_1_3, TAPIO_TLS_1_2),
            TAPIO_EINVAL);
  CHECK_STR(tapio_tls_context_error(c),
            "the minimum version is above the maximum");
  CHECK_ERR(tapio_tls_context_set_alpn(c, empty, 1), TAPIO_EINVAL);
  CHECK_STR(tapio_tls_context_error(c),
            "a protocol name is 1 to 255 bytes");
  CHECK_ERR(tapio_tls_context_add_sni(s, "a.example", c), TAPIO_EINVAL);
  CHECK_STR(tapio_tls_context_error(s), "server contexts only");
  CHECK_ERR(tapio_tls_context_set_session_cache(s, 1), TAPIO_ENOTSUP);
  CHECK_STR(tapio_tls_context_error(s), "a client context's setting");
  CHECK_ERR(tapio_tls_context_set_keylog_file(c, "/nonexistent/k.log"),
            TAPIO_ENOENT);
  CHECK_STR(tapio_tls_context_error(c),
            "/nonexistent/k.log: no such file or directory");
  tapio_tls_context_release(c);
  tapio_tls_context_release(s);
}

TEST_MAIN_WARM(handshake_and_echo, TEST(released_server_calls_no_factory),
               TEST(server_hears_failed_handshakes),
               TEST(server_hears_handshake_timeout),
               TEST(hook_releases_server), TEST(server_cut_short_is_not_heard),
               TEST(handshake_and_echo), TEST(extra_info), TEST(tls12),
               TEST(ip_address_checked), TEST(verify_none),
               TEST(system_store_from_env), TEST(system_store_dir_from_env),
               TEST(close_inside_callbacks),
               TEST(handed_over_sockets), TEST(cert_expired),
               TEST(cert_not_yet_valid), TEST(cert_wrong_host),
               TEST(cert_unknown_ca), TEST(cert_self_signed),
               TEST(version_mismatch), TEST(cipher_mismatch),
               TEST(peer_closes_during_handshake),
               TEST(peer_resets_during_handshake),
               TEST(garbage_instead_of_handshake), TEST(handshake_timeout),
               TEST(server_handshake_timeout), TEST(client_cert_given),
               TEST(client_cert_missing), TEST(client_cert_missing_tls12),
               TEST(alpn), TEST(sni_table), TEST(sni_callback),
               TEST(session_resumption), TEST(keylog),
               TEST(context_errors_say_why),
               TEST(files_read_as_openssl_reads_them))
