/* The ABI's rules for bad input: every entry point with NULL handles, a
 * second release, NULL buffers and sizes at the edge of their types. */
#include "test.h"

#include <math.h>
#include <stdint.h>

/* ---- NULL handles ------------------------------------------------------ */

/* Every function of capi/tapio.h that takes a handle, given NULL: one that
 * returns an error code returns TAPIO_EINVAL, a query answers 0 (NULL,
 * -1 for tapio_handle_when) and zeroes its out-parameters, one that
 * returns nothing does nothing. Never a crash. */
static void null_loop_everywhere(void)
{
  tapio_handle *h = (tapio_handle *)&h;
  tapio_options *o = (tapio_options *)&o;
  const char *host = "127.0.0.1";
  CHECK_ERR(tapio_loop_new(NULL), TAPIO_EINVAL);
  CHECK_ERR(tapio_loop_new_with_allocator(NULL, NULL, NULL), TAPIO_EINVAL);
  CHECK_ERR(tapio_loop_free(NULL), TAPIO_EINVAL);
  CHECK_ERR(tapio_loop_run(NULL), TAPIO_EINVAL);
  CHECK_ERR(tapio_loop_run_once(NULL, 0), TAPIO_EINVAL);
  CHECK_ERR(tapio_loop_run_once(NULL, 1), TAPIO_EINVAL);
  tapio_loop_stop(NULL);
  CHECK_EQ(tapio_loop_is_running(NULL), 0);
  CHECK(tapio_loop_time(NULL) == 0);
  CHECK_EQ(tapio_loop_memory(NULL), 0);
  tapio_loop_set_exception_handler(NULL, exc_record, NULL);
  tapio_loop_call_exception_handler(NULL, TAPIO_EIO, "x", NULL);
  CHECK_ERR(tapio_call_soon(NULL, never_called, NULL, &h), TAPIO_EINVAL);
  CHECK(h == NULL);
  h = (tapio_handle *)&h;
  CHECK_ERR(tapio_call_later(NULL, 0, never_called, NULL, &h), TAPIO_EINVAL);
  CHECK(h == NULL);
  h = (tapio_handle *)&h;
  CHECK_ERR(tapio_call_at(NULL, 0, never_called, NULL, &h), TAPIO_EINVAL);
  CHECK(h == NULL);
  CHECK_ERR(tapio_call_soon_threadsafe(NULL, never_called, NULL), TAPIO_EINVAL);
  CHECK_ERR(tapio_add_reader(NULL, 0, never_called, NULL), TAPIO_EINVAL);
  CHECK_ERR(tapio_add_writer(NULL, 0, never_called, NULL), TAPIO_EINVAL);
  CHECK_ERR(tapio_remove_reader(NULL, 0), TAPIO_EINVAL);
  CHECK_ERR(tapio_remove_writer(NULL, 0), TAPIO_EINVAL);
  CHECK_ERR(tapio_add_signal_handler(NULL, SIGUSR1, never_called, NULL),
            TAPIO_EINVAL);
  CHECK_ERR(tapio_remove_signal_handler(NULL, SIGUSR1), TAPIO_EINVAL);
  CHECK_ERR(tapio_options_new(NULL, &o), TAPIO_EINVAL);
  CHECK(o == NULL);
  CHECK_ERR(tapio_create_connection(NULL, host, 1, &rec_proto, NULL, NULL,
                                    never_connected, NULL), TAPIO_EINVAL);
  CHECK_ERR(tapio_create_unix_connection(NULL, "/x", &rec_proto, NULL, NULL,
                                         never_connected, NULL),
            TAPIO_EINVAL);
  CHECK_ERR(tapio_create_server(NULL, &host, 1, 0, refusing_factory, NULL, NULL,
                                never_served, NULL), TAPIO_EINVAL);
  CHECK_ERR(tapio_create_unix_server(NULL, "/x", refusing_factory, NULL, NULL,
                                     never_served, NULL), TAPIO_EINVAL);
}

static void null_handle_and_options_everywhere(void)
{
  tapio_handle_cancel(NULL);
  CHECK_EQ(tapio_handle_cancelled(NULL), 0);
  CHECK(tapio_handle_when(NULL) == -1);
  tapio_handle_release(NULL);
  tapio_options_free(NULL);
  CHECK_ERR(tapio_options_set_int(NULL, "backlog", 1), TAPIO_EINVAL);
  CHECK_ERR(tapio_options_set_str(NULL, "local_host", "x"), TAPIO_EINVAL);
}

static void null_transport_everywhere(void)
{
  const tapio_protocol *proto = &rec_proto;
  const void *bufs[1] = { "x" };
  size_t lens[1] = { 1 }, low = 7, high = 7;
  char host[64] = "unchanged";
  int port = 7, family = 7;
  CHECK_ERR(tapio_transport_close(NULL), TAPIO_EINVAL);
  CHECK_ERR(tapio_transport_abort(NULL), TAPIO_EINVAL);
  CHECK_ERR(tapio_transport_fail(NULL, TAPIO_EIO, "x"), TAPIO_EINVAL);
  CHECK_EQ(tapio_transport_is_closing(NULL), 0);
  tapio_transport_set_protocol(NULL, &rec_proto, NULL);
  CHECK_ERR(tapio_transport_set_datagram_protocol(NULL, NULL, NULL),
            TAPIO_EINVAL);
  CHECK_ERR(tapio_transport_set_subprocess_protocol(NULL, NULL, NULL),
            TAPIO_EINVAL);
  CHECK(tapio_transport_get_protocol(NULL, &proto) == NULL);
  CHECK(proto == NULL);
  CHECK(tapio_transport_get_loop(NULL) == NULL);
  CHECK_EQ(tapio_transport_is_reading(NULL), 0);
  CHECK_ERR(tapio_transport_pause_reading(NULL), TAPIO_EINVAL);
  CHECK_ERR(tapio_transport_resume_reading(NULL), TAPIO_EINVAL);
  CHECK_ERR(tapio_transport_write(NULL, "x", 1), TAPIO_EINVAL);
  CHECK_ERR(tapio_transport_write(NULL, NULL, 0), TAPIO_EINVAL);
  CHECK_ERR(tapio_transport_writelines(NULL, bufs, lens, 1), TAPIO_EINVAL);
  CHECK_ERR(tapio_transport_writelines(NULL, NULL, NULL, 0), TAPIO_EINVAL);
  CHECK_EQ(tapio_transport_can_write_eof(NULL), 0);
  CHECK_ERR(tapio_transport_write_eof(NULL), TAPIO_EINVAL);
  CHECK_EQ(tapio_transport_get_write_buffer_size(NULL), 0);
  tapio_transport_get_write_buffer_limits(NULL, &low, &high);
  CHECK_EQ(low, 0);
  CHECK_EQ(high, 0);
  CHECK_ERR(tapio_transport_set_write_buffer_limits(NULL, -1, -1),
            TAPIO_EINVAL);
  CHECK_ERR(tapio_transport_get_peername(NULL, host, sizeof host, &port,
                                         &family), TAPIO_EINVAL);
  CHECK_ERR(tapio_transport_get_sockname(NULL, host, sizeof host, &port,
                                         &family), TAPIO_EINVAL);
  CHECK_ERR(tapio_transport_get_fd(NULL), TAPIO_EINVAL);
  CHECK_EQ(tapio_transport_get_stat(NULL, TAPIO_STAT_BYTES_SENT), 0);
}

static void null_server_everywhere(void)
{
  char host[64];
  int port = 7, family = 7;
  CHECK_ERR(tapio_server_start_serving(NULL), TAPIO_EINVAL);
  CHECK_EQ(tapio_server_is_serving(NULL), 0);
  CHECK_ERR(tapio_server_close(NULL), TAPIO_EINVAL);
  CHECK_ERR(tapio_server_close_clients(NULL), TAPIO_EINVAL);
  CHECK_ERR(tapio_server_abort_clients(NULL), TAPIO_EINVAL);
  CHECK_EQ(tapio_server_client_count(NULL), 0);
  CHECK_ERR(tapio_server_wait_closed(NULL, never_closed, NULL), TAPIO_EINVAL);
  CHECK_EQ(tapio_server_socket_count(NULL), 0);
  CHECK_ERR(tapio_server_get_address(NULL, 0, host, sizeof host, &port,
                                     &family), TAPIO_EINVAL);
  CHECK_ERR(tapio_server_get_fd(NULL, 0), TAPIO_EINVAL);
  CHECK(tapio_server_get_loop(NULL) == NULL);
  CHECK_ERR(tapio_server_set_handshake_failed(NULL, NULL, NULL),
            TAPIO_EINVAL);
  tapio_server_release(NULL);
}

/* ---- A second release ------------------------------------------------- */

/* A server released twice while its connection is open: the second
 * release does nothing, the connection goes on, the memory goes with it. */
static void server_release_twice_while_serving(void)
{
  tapio_loop *loop = new_loop();
  srv sv;
  rec c, *s = srv_start_pair(&sv, loop, &c);
  tapio_server_release(sv.s);
  tapio_server_release(sv.s);
  roundtrip(loop, &c, s);
  CHECK_OK(tapio_transport_close(c.t));
  WAIT_FOR(loop, c.lost && s->lost);
  free_loop(loop);
  srv_free(&sv);
  rec_free(&c);
}

/* ---- NULL buffers and sizes at the edge -------------------------------- */

/* The peer receives n pattern bytes, then tail, then EOF. */
static void expect_pattern_then(tapio_loop *loop, int peer, size_t n,
                                const char *tail)
{
  char *buf = malloc(n + 1);
  char rest[64];
  size_t got;
  CHECK(buf != NULL);
  raw_recv_n(loop, peer, buf, n);
  CHECK_EQ(pattern_check(buf, n, 0), -1);
  CHECK_EQ(raw_recv_until_eof(loop, peer, rest, sizeof rest - 1, &got), 0);
  rest[got] = '\0';
  CHECK_STR(rest, tail);
  free(buf);
}

/* A NULL buffer in writelines (with a length) is TAPIO_EINVAL, as write's
 * is: nothing of the call is sent or queued and the transport goes on,
 * whether the write buffer was empty or not. */
static void writelines_null_buffer_einval(void)
{
  tapio_loop *loop = new_loop();
  rec r;
  int peer, i;
  size_t offset = 0, before;
  const void *bufs[3] = { "ab", NULL, "cd" };
  size_t lens[3] = { 2, 5, 2 };
  const void *empty[2] = { NULL, "ok" };
  size_t empty_lens[2] = { 0, 2 };
  rec_init(&r);
  peer = pair_raw(loop, &r);
  for (i = 0; i < 2; i++) { /* empty buffer, then with data queued */
    if (i == 1)
      fill_until_buffered(r.t, &offset);
    before = tapio_transport_get_write_buffer_size(r.t);
    CHECK_ERR(tapio_transport_writelines(r.t, bufs, lens, 3), TAPIO_EINVAL);
    CHECK_EQ(tapio_transport_get_write_buffer_size(r.t), before);
    CHECK_EQ(tapio_transport_is_closing(r.t), 0);
    CHECK_ERR(tapio_transport_write(r.t, NULL, 3), TAPIO_EINVAL);
  }
  /* a NULL buffer of length 0 is skipped, as write(NULL, 0) is */
  CHECK_OK(tapio_transport_writelines(r.t, empty, empty_lens, 2));
  CHECK_OK(tapio_transport_close(r.t));
  expect_pattern_then(loop, peer, offset, "ok");
  WAIT_FOR(loop, r.lost);
  CHECK_STR(r.log, "made lost:0");
  end_pair(loop, &r, peer);
}

TEST_MAIN(
  TEST(null_loop_everywhere),
  TEST(null_handle_and_options_everywhere),
  TEST(null_transport_everywhere),
  TEST(null_server_everywhere),
  TEST(server_release_twice_while_serving),
  TEST(writelines_null_buffer_einval)
)
