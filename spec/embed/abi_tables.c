/* A program built against capi/tapio.h and run against the shared library
 * built from it: the version it was built for is the library's, and the
 * protocol table works at every size the growth rule allows (this
 * version's size, and larger ones from newer headers whose extra
 * callbacks the library never calls) and is refused below it. */
#include "test.h"

/* A table as a newer header would declare it: this version's callbacks,
 * then more; a library that called one of them would call this. */
typedef struct newer_table {
  tapio_protocol p;
  void (*later[8])(void *ud, tapio_transport *t);
} newer_table;

static void never(void *ud, tapio_transport *t)
{
  (void)ud;
  (void)t;
  FAIL("the library called a callback past the table's size");
}

static newer_table table_of_size(size_t size)
{
  newer_table n;
  size_t i;
  memset(&n, 0, sizeof n);
  n.p = rec_proto;
  n.p.size = (uint32_t)size;
  for (i = 0; i < 8; i++)
    n.later[i] = never;
  return n;
}

static void version_is_the_libraries(void)
{
  CHECK_EQ(tapio_version() >> 16, TAPIO_VERSION_MAJOR);
  CHECK(tapio_version() >= TAPIO_VERSION);
}

/* A client and a server connection, both with a table of this size, send
 * and close: the whole callback sequence on each side. */
static void exchange(size_t size)
{
  tapio_loop *loop = new_loop();
  newer_table tc = table_of_size(size), ts = table_of_size(size);
  conn_wait w = { 0 };
  srv sv;
  rec c, *s;
  rec_init(&c);
  srv_start(&sv, loop);
  sv.proto = &ts.p;
  w.r = &c;
  CHECK_OK(tapio_create_connection(loop, "127.0.0.1", sv.port, &tc.p, &c,
                                   NULL, on_connected, &w));
  CHECK_OK(connect_wait(loop, &w));
  s = srv_wait_conn(&sv, 0);
  CHECK_OK(tapio_transport_set_protocol(s->t, &ts.p, s));
  roundtrip(loop, &c, s);
  CHECK_OK(tapio_transport_close(c.t));
  WAIT_FOR(loop, c.lost && s->lost);
  CHECK_STR(c.log, "made data:4 lost:0");
  CHECK_STR(s->log, "made data:4 eof lost:0");
  rec_free(&c);
  srv_release_and_free(&sv, loop);
}

static void this_versions_size(void) { exchange(sizeof(tapio_protocol)); }

static void newer_sizes(void)
{
  size_t k;
  for (k = 1; k <= 8; k++)
    exchange(sizeof(tapio_protocol) + k * sizeof(void (*)(void)));
}

/* Below this version's size (an older header than the first, or a size
 * never set): TAPIO_EINVAL where a table is given, a server's connection
 * refused with the exception handler told. */
static void smaller_sizes_refused(void)
{
  static const size_t sizes[] = { 0, 4, sizeof(tapio_protocol) / 2,
                                  sizeof(tapio_protocol) - 1 };
  size_t i;
  for (i = 0; i < sizeof sizes / sizeof *sizes; i++) {
    tapio_loop *loop = new_loop();
    newer_table small = table_of_size(sizes[i]);
    exc_rec exc = { 0 };
    srv sv;
    rec c, *s;
    int peer;
    s = srv_start_pair(&sv, loop, &c);
    CHECK_ERR(tapio_create_connection(loop, "127.0.0.1", sv.port, &small.p,
                                      NULL, NULL, never_connected, NULL),
              TAPIO_EINVAL);
    CHECK_ERR(tapio_transport_set_protocol(s->t, &small.p, NULL),
              TAPIO_EINVAL);
    tapio_loop_set_exception_handler(loop, exc_record, &exc);
    sv.proto = &small.p;
    peer = raw_connect(AF_INET, "127.0.0.1", sv.port);
    CHECK(peer >= 0);
    WAIT_FOR(loop, exc.n == 1);
    CHECK_EQ(exc.code, TAPIO_EINVAL);
    close(peer);
    tapio_transport_abort(c.t);
    WAIT_FOR(loop, c.lost && s->lost);
    rec_free(&c);
    srv_release_and_free(&sv, loop);
  }
}

TEST_MAIN(TEST(version_is_the_libraries), TEST(this_versions_size),
          TEST(newer_sizes), TEST(smaller_sizes_refused))
