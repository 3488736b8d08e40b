/* TLS over the testing kit's memory pairs, on a virtual clock: a
 * handshake through memory (also with every wire byte on its own), TLS's
 * timers at their virtual times, and a loop freed mid-handshake; under
 * ASan and valgrind too. The certificates are spec/tls/make_certs.sh's. */
#include "tls.h"

typedef struct side {
  tapio_recorder *rec;
  tapio_transport *t;
  int done, status;
} side;

static void on_tls(void *ud, int status, tapio_transport *t)
{
  side *s = ud;
  (void)t;
  s->done++;
  s->status = status;
}

typedef struct kit {
  tapio_loop *loop;
  side a, b;
} kit;

static void kit_open(kit *k, size_t chunk)
{
  memset(k, 0, sizeof *k);
  k->loop = recorded_pair_open(chunk, &k->a.rec, &k->a.t, &k->b.rec,
                               &k->b.t);
}

/* start_tls on s with ctx (released) and options o (may be NULL). */
static void start(side *s, tapio_tls_context *ctx, const tapio_options *o)
{
  CHECK_OK(tapio_transport_start_tls(s->t, tapio_recorder_protocol(s->rec),
                                     s->rec, ctx, o, NULL, 0, on_tls, s));
  tapio_tls_context_release(ctx);
}

static tapio_options *client_options(kit *k, double handshake_timeout)
{
  tapio_options *o = new_options(k->loop);
  CHECK_OK(tapio_options_set_str(o, "server_hostname", "localhost"));
  if (handshake_timeout > 0)
    CHECK_OK(tapio_options_set_double(o, "ssl_handshake_timeout",
                                      handshake_timeout));
  return o;
}

static void kit_free(kit *k)
{
  recorded_pair_free(k->loop, k->a.rec, k->b.rec);
}

/* Both sides upgrade; bytes both ways; a close with close_notify. */
static void handshake_through(size_t chunk)
{
  kit k;
  tapio_options *o;
  kit_open(&k, chunk);
  o = client_options(&k, 0);
  start(&k.b, server_ctx("server"), NULL);
  start(&k.a, client_ctx(), o);
  tapio_options_free(o);
  CHECK_OK(tapio_loop_run_until_idle(k.loop));
  CHECK(k.a.done == 1 && k.a.status == 0);
  CHECK(k.b.done == 1 && k.b.status == 0);
  CHECK_OK(tapio_transport_write(k.a.t, "secret", 6));
  CHECK_OK(tapio_transport_write(k.b.t, "reply", 5));
  CHECK_OK(tapio_loop_run_until_idle(k.loop));
  CHECK_OK(tapio_transport_close(k.a.t));
  CHECK_OK(tapio_loop_run_until_idle(k.loop));
  CHECK_STR(tapio_recorder_events(k.a.rec),
            "connection_made\ndata_received:reply\nconnection_lost:nil");
  CHECK_STR(tapio_recorder_events(k.b.rec),
            "connection_made\ndata_received:secret\neof_received\n"
            "connection_lost:nil");
  CHECK(tapio_loop_time(k.loop) == 0); /* nothing waited for time */
  CHECK_EQ(tapio_loop_transport_count(k.loop), 0);
  kit_free(&k);
}

static void tls_memory_handshake(void) { handshake_through(0); }

static void tls_memory_every_byte(void) { handshake_through(1); }

/* The peer never answers: the handshake fails at 7 s of loop time. */
static void tls_memory_handshake_timeout(void)
{
  kit k;
  tapio_options *o;
  kit_open(&k, 0);
  o = client_options(&k, 7);
  start(&k.a, client_ctx(), o);
  tapio_options_free(o);
  CHECK_OK(tapio_loop_advance(k.loop, 6.999));
  CHECK_EQ(k.a.done, 0);
  CHECK_OK(tapio_loop_advance(k.loop, 0.001));
  CHECK(k.a.done == 1 && k.a.status == TAPIO_ETIMEDOUT);
  CHECK(tapio_loop_time(k.loop) == 7);
  CHECK_OK(tapio_loop_run_until_idle(k.loop));
  CHECK_STR(tapio_recorder_events(k.a.rec),
            "connection_made\nconnection_lost:ETIMEDOUT");
  /* b read the ClientHello as plain bytes, then a's end */
  CHECK(strncmp(tapio_recorder_events(k.b.rec),
                "connection_made\ndata_received:\x16\x03", 32) == 0);
  CHECK(tapio_recorder_transport(k.b.rec) == NULL); /* ended too */
  CHECK_EQ(tapio_loop_transport_count(k.loop), 0);
  kit_free(&k);
}

/* The loop freed with a handshake half done: nothing leaks (valgrind and
 * ASan watch), the pending start_tls gets its error. */
static void tls_memory_loop_freed(void)
{
  kit k;
  tapio_options *o;
  kit_open(&k, 1);
  o = client_options(&k, 0);
  start(&k.b, server_ctx("server"), NULL);
  start(&k.a, client_ctx(), o);
  tapio_options_free(o);
  CHECK_OK(tapio_loop_run_once(k.loop, 0));
  kit_free(&k);
  CHECK(k.a.done <= 1 && k.b.done <= 1);
}

TEST_MAIN_WARM(tls_memory_handshake, TEST(tls_memory_handshake),
               TEST(tls_memory_every_byte), TEST(tls_memory_handshake_timeout),
               TEST(tls_memory_loop_freed))
