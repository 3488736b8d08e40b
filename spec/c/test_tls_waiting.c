/* What a TLS connection holds while it waits, over the testing kit's
 * memory pairs on a virtual clock. A server's connection waiting for its
 * ClientHello holds only its SSL object (no record buffers, no handshake
 * state: under a burst of connections every waiting one would), and a
 * ClientHello that is already there when the session starts (held by the
 * outer session of TLS inside TLS, where no readiness announces it) is
 * read all the same. A connection waiting for its end after the peer's
 * close_notify holds no read buffer. What OpenSSL holds is counted
 * through its allocator, set before it runs. */
#include "tls.h"

#include "../../bench/ossl_count.h" /* ossl_bytes: what OpenSSL holds */

__attribute__((constructor)) static void count_openssl(void)
{
  if (!ossl_count_install())
    abort(); /* OpenSSL ran before main: nothing here would be true */
}

typedef struct side {
  tapio_recorder *rec;
  tapio_transport *t;
  int done, status;
  tapio_tls_context *inner; /* started from the first completion */
  const char *inner_name;   /* its server_hostname (a client's) */
} side;

static void start(side *s, tapio_tls_context *ctx, const char *hostname);

static void on_tls(void *ud, int status, tapio_transport *t)
{
  side *s = ud;
  tapio_tls_context *inner = s->inner;
  (void)t;
  s->done++;
  s->status = status;
  s->inner = NULL;
  if (inner && status == 0)
    start(s, inner, s->inner_name);
}

/* start_tls on s with ctx (released); a client's names localhost. */
static void start(side *s, tapio_tls_context *ctx, const char *hostname)
{
  tapio_options *o = NULL;
  if (hostname) {
    o = new_options(tapio_transport_get_loop(s->t));
    CHECK_OK(tapio_options_set_str(o, "server_hostname", hostname));
  }
  CHECK_OK(tapio_transport_start_tls(s->t, tapio_recorder_protocol(s->rec),
                                     s->rec, ctx, o, NULL, 0, on_tls, s));
  if (o)
    tapio_options_free(o);
  tapio_tls_context_release(ctx);
}

typedef struct kit {
  tapio_loop *loop;
  side a, b; /* a the client, b the server */
} kit;

static void kit_open(kit *k)
{
  memset(k, 0, sizeof *k);
  k->loop = recorded_pair_open(0, &k->a.rec, &k->a.t, &k->b.rec, &k->b.t);
}

/* A byte each way through the session, then a close with close_notify. */
static void kit_finish(kit *k)
{
  CHECK_OK(tapio_transport_write(k->a.t, "a", 1));
  CHECK_OK(tapio_transport_write(k->b.t, "b", 1));
  CHECK_OK(tapio_loop_advance(k->loop, 1)); /* past any link's delay */
  CHECK_OK(tapio_transport_close(k->a.t));
  CHECK_OK(tapio_loop_advance(k->loop, 1));
  CHECK_STR(tapio_recorder_events(k->a.rec),
            "connection_made\ndata_received:b\nconnection_lost:nil");
  CHECK_STR(tapio_recorder_events(k->b.rec),
            "connection_made\ndata_received:a\neof_received\n"
            "connection_lost:nil");
  CHECK_EQ(tapio_loop_transport_count(k->loop), 0);
  recorded_pair_free(k->loop, k->a.rec, k->b.rec);
}

/* The server's session starts, the client says nothing yet: OpenSSL
 * holds its SSL object and little else (8.7 KB here), not the record
 * buffers and handshake state a first step makes (56 KB in all). Then
 * the client speaks and the handshake goes through. */
static void server_waits_for_hello(void)
{
  kit k;
  tapio_tls_context *sc;
  long long before;
  kit_open(&k);
  sc = server_ctx("server");
  before = ossl_bytes;
  start(&k.b, sc, NULL);
  CHECK_OK(tapio_loop_run_until_idle(k.loop));
  CHECK_OK(tapio_loop_advance(k.loop, 1));
  CHECK_EQ(k.b.done, 0);
  CHECK_CMP(ossl_bytes - before, <, 16 * 1024);
  start(&k.a, client_ctx(), "localhost");
  CHECK_OK(tapio_loop_run_until_idle(k.loop));
  CHECK(k.a.done == 1 && k.a.status == 0);
  CHECK(k.b.done == 1 && k.b.status == 0);
  kit_finish(&k);
}

/* TLS inside TLS: the client's last outer flight and its inner
 * ClientHello reach the server in one read (the link delays both to the
 * same time), so the outer session holds the ClientHello when the
 * server's inner session starts (from the outer one's completion): the
 * inner handshake reads it at once, with no readiness to wait for. */
static void server_hello_held_below(void)
{
  kit k;
  kit_open(&k);
  CHECK_OK(tapio_memory_set_delay(k.a.t, 0.01));
  k.a.inner = client_ctx();
  k.a.inner_name = "localhost";
  k.b.inner = server_ctx("rsa");
  start(&k.b, server_ctx("server"), NULL);
  start(&k.a, client_ctx(), "localhost");
  CHECK_OK(tapio_loop_advance(k.loop, 1));
  CHECK(k.a.done == 2 && k.a.status == 0);
  CHECK(k.b.done == 2 && k.b.status == 0);
  kit_finish(&k);
}

/* What OpenSSL held when the server's connection_lost came. */
static long long bytes_at_lost = -1;

static void count_at_lost(void *ud, tapio_transport *t, int code,
                          const char *msg)
{
  (void)ud;
  (void)t;
  (void)msg;
  CHECK_OK(code);
  bytes_at_lost = ossl_bytes;
}

static const tapio_protocol lost_proto = {
  .size = sizeof(tapio_protocol),
  .connection_lost = count_at_lost,
};

/* The client closes (close_notify) and the server answers and ends. When
 * the server's connection_lost comes (a loop turn after the close_notify
 * was read, behind every other connection's events), neither side holds
 * a read buffer: not the server, which read the client's close_notify,
 * nor the client, which read the answer in its shutdown. OpenSSL keeps
 * it (64 KiB each) after an alert, where it lets it go after data: a
 * thousand connections ending at once held 64 MB. */
static void read_buffer_goes_at_close_notify(void)
{
  kit k;
  long long open_bytes;
  tapio_tls_context *sc;
  kit_open(&k);
  sc = server_ctx("server");
  CHECK_OK(tapio_transport_start_tls(k.b.t, &lost_proto, NULL, sc, NULL,
                                     NULL, 0, on_tls, &k.b));
  tapio_tls_context_release(sc);
  start(&k.a, client_ctx(), "localhost");
  CHECK_OK(tapio_loop_run_until_idle(k.loop));
  CHECK(k.a.done == 1 && k.a.status == 0);
  CHECK(k.b.done == 1 && k.b.status == 0);
  open_bytes = ossl_bytes;
  CHECK_OK(tapio_transport_close(k.a.t));
  CHECK_OK(tapio_loop_run_until_idle(k.loop));
  CHECK_CMP(bytes_at_lost, >=, 0);
  CHECK_CMP(bytes_at_lost - open_bytes, <, 16 * 1024);
  CHECK_STR(tapio_recorder_events(k.a.rec),
            "connection_made\nconnection_lost:nil");
  CHECK_EQ(tapio_loop_transport_count(k.loop), 0);
  recorded_pair_free(k.loop, k.a.rec, k.b.rec);
}

TEST_MAIN_WARM(server_waits_for_hello, TEST(server_waits_for_hello),
               TEST(server_hello_held_below),
               TEST(read_buffer_goes_at_close_notify))
