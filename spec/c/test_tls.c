/* TLS handshakes between tapio's own client and server: what connects,
 * what each side learns, and every way a handshake fails, each with the
 * code that says why and without a callback to the protocol. */
#include "tls.h"

/* A handshake, data both ways, a clean close. */
static void handshake_and_echo(void)
{
  tapio_loop *loop = new_loop();
  srv sv;
  rec c;
  rec *s;
  rec_init(&c);
  tls_srv_start(&sv, loop, server_ctx("server"));
  CHECK_OK(tls_connect(loop, sv.port, &c, client_ctx(), "localhost"));
  s = srv_wait_conn(&sv, 0);
  CHECK_STR(c.log, "made");
  roundtrip(loop, &c, s);
  CHECK_STR(tls_info(c.t, TAPIO_TLS_INFO_VERSION), "TLSv1.3");
  CHECK_STR(tls_info(s->t, TAPIO_TLS_INFO_SERVER_HOSTNAME), "localhost");
  CHECK_OK(tapio_transport_close(c.t));
  WAIT_FOR(loop, c.lost && s->lost);
  CHECK_STR(c.log, "made data:4 lost:0");
  CHECK_STR(s->log, "made data:4 eof lost:0");
  srv_release_and_free(&sv, loop);
  rec_free(&c);
}

TEST_MAIN(TEST(handshake_and_echo))
