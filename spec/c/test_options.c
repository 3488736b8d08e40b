/* Options: the one table of the core that says which create call takes
 * which option, of which type and range; every call refusing what it does
 * not take; the "sock" descriptor closed on every failure. */
#include "test.h"

/* ---- Setting ----------------------------------------------------------- */

static void options_unknown_name_einval(void)
{
  tapio_loop *loop = new_loop();
  tapio_options *o = new_options(loop);
  CHECK_ERR(tapio_options_set_int(o, "no_such_option", 1), TAPIO_EINVAL);
  CHECK_ERR(tapio_options_set_str(o, "no_such_option", "x"), TAPIO_EINVAL);
  CHECK_ERR(tapio_options_set_int(o, "", 1), TAPIO_EINVAL);
  CHECK_OK(tapio_options_set_int(o, "backlog", 10)); /* a known one */
  tapio_options_free(o);
  free_loop(loop);
}

static void options_wrong_type_einval(void)
{
  tapio_loop *loop = new_loop();
  tapio_options *o = new_options(loop);
  CHECK_ERR(tapio_options_set_str(o, "backlog", "10"), TAPIO_EINVAL);
  CHECK_ERR(tapio_options_set_str(o, "local_port", "80"), TAPIO_EINVAL);
  CHECK_ERR(tapio_options_set_int(o, "local_host", 1), TAPIO_EINVAL);
  CHECK_OK(tapio_options_set_str(o, "local_host", "127.0.0.1"));
  tapio_options_free(o);
  free_loop(loop);
}

static void options_out_of_range_einval(void)
{
  tapio_loop *loop = new_loop();
  tapio_options *o = new_options(loop);
  CHECK_ERR(tapio_options_set_int(o, "family", 5), TAPIO_EINVAL);
  CHECK_ERR(tapio_options_set_int(o, "local_port", 70000), TAPIO_EINVAL);
  CHECK_ERR(tapio_options_set_int(o, "local_port", -2), TAPIO_EINVAL);
  CHECK_OK(tapio_options_set_int(o, "family", 6));
  tapio_options_free(o);
  free_loop(loop);
}

/* ---- The table, as bindings read it ------------------------------------ */

/* The options call takes, by tapio_option_name, joined with spaces. */
static void names_of(int call, char *out, size_t cap)
{
  const char *name;
  size_t i;
  out[0] = '\0';
  for (i = 0; (name = tapio_option_name(call, i)) != NULL; i++)
    snprintf(out + strlen(out), cap - strlen(out), "%s%s", i ? " " : "",
             name);
}

/* Each call lists the options the header documents for it, no other. */
static void option_names_per_call(void)
{
  char got[512];
  names_of(TAPIO_CALL_CREATE_CONNECTION, got, sizeof got);
  CHECK_STR(got, "local_host local_port family sock nodelay "
                 "happy_eyeballs_delay interleave ssl server_hostname "
                 "ssl_handshake_timeout ssl_shutdown_timeout proto flags "
                 "local_flowinfo");
  names_of(TAPIO_CALL_CREATE_UNIX_CONNECTION, got, sizeof got);
  CHECK_STR(got, "sock ssl server_hostname ssl_handshake_timeout "
                 "ssl_shutdown_timeout");
  names_of(TAPIO_CALL_CONNECT_ACCEPTED_SOCKET, got, sizeof got);
  CHECK_STR(got, "nodelay ssl ssl_handshake_timeout ssl_shutdown_timeout");
  names_of(TAPIO_CALL_CREATE_SERVER, got, sizeof got);
  CHECK_STR(got, "family sock nodelay backlog reuse_address reuse_port "
                 "keep_alive start_serving ssl ssl_handshake_timeout "
                 "ssl_shutdown_timeout flags");
  names_of(TAPIO_CALL_CREATE_UNIX_SERVER, got, sizeof got);
  CHECK_STR(got, "sock backlog start_serving cleanup_socket ssl "
                 "ssl_handshake_timeout ssl_shutdown_timeout");
  names_of(TAPIO_CALL_CREATE_DATAGRAM_ENDPOINT, got, sizeof got);
  CHECK_STR(got, "local_host local_port family sock reuse_port remote_host "
                 "remote_port local_path remote_path allow_broadcast proto "
                 "flags local_flowinfo remote_flowinfo");
  names_of(TAPIO_CALL_START_TLS, got, sizeof got);
  CHECK_STR(got, "server_hostname ssl_handshake_timeout "
                 "ssl_shutdown_timeout");
  CHECK(tapio_option_name(0, 0) == NULL);
  CHECK(tapio_option_name(99, 0) == NULL);
}

/* tapio_option_info: type, bounds and words, or ENOENT for an option the
 * call does not take. */
static void option_info_per_call(void)
{
  int type = 0;
  int64_t min = -1, max = -1;
  const char *expects = NULL;
  CHECK_OK(tapio_option_info(TAPIO_CALL_CREATE_CONNECTION, "local_port",
                             &type, &min, &max, &expects));
  CHECK_EQ(type, TAPIO_OPTION_INT);
  CHECK_EQ(min, 0);
  CHECK_EQ(max, 65535);
  CHECK_STR(expects, "integer 0..65535");
  CHECK_OK(tapio_option_info(TAPIO_CALL_CREATE_SERVER, "reuse_port", &type,
                             NULL, NULL, &expects));
  CHECK_EQ(type, TAPIO_OPTION_BOOL);
  CHECK_STR(expects, "boolean");
  CHECK_OK(tapio_option_info(TAPIO_CALL_CREATE_CONNECTION, "local_host",
                             &type, NULL, NULL, NULL));
  CHECK_EQ(type, TAPIO_OPTION_STR);
  CHECK_OK(tapio_option_info(TAPIO_CALL_CREATE_SERVER, "family", NULL, NULL,
                             NULL, &expects));
  CHECK_STR(expects, "0, 4 or 6");
  CHECK_ERR(tapio_option_info(TAPIO_CALL_CREATE_CONNECTION, "backlog", &type,
                              NULL, NULL, NULL), TAPIO_ENOENT);
  CHECK_ERR(tapio_option_info(TAPIO_CALL_CREATE_UNIX_SERVER, "reuse_port",
                              NULL, NULL, NULL, NULL), TAPIO_ENOENT);
  CHECK_ERR(tapio_option_info(TAPIO_CALL_CREATE_UNIX_SERVER, "family", NULL,
                              NULL, NULL, NULL), TAPIO_ENOENT);
  CHECK_ERR(tapio_option_info(TAPIO_CALL_CREATE_CONNECTION, "nope", NULL,
                              NULL, NULL, NULL), TAPIO_ENOENT);
  CHECK_ERR(tapio_option_info(0, "backlog", NULL, NULL, NULL, NULL),
            TAPIO_EINVAL);
  CHECK_ERR(tapio_option_info(99, "backlog", NULL, NULL, NULL, NULL),
            TAPIO_EINVAL);
  /* 7 is no call: the header's enum leaves it unassigned */
  CHECK_ERR(tapio_option_info(7, "backlog", NULL, NULL, NULL, NULL),
            TAPIO_EINVAL);
  CHECK(tapio_option_name(7, 0) == NULL);
  CHECK_ERR(tapio_option_info(TAPIO_CALL_CREATE_SERVER, NULL, NULL, NULL,
                              NULL, NULL), TAPIO_EINVAL);
}

/* ---- Calls refuse what they do not take -------------------------------- */

/* Options made with one int (or string) option set. */
static tapio_options *one_option(tapio_loop *loop, const char *name,
                                 int64_t value)
{
  tapio_options *o = new_options(loop);
  if (strcmp(name, "local_host") == 0)
    CHECK_OK(tapio_options_set_str(o, name, "127.0.0.1"));
  else
    CHECK_OK(tapio_options_set_int(o, name, value));
  return o;
}

/* Which create call to make, for the checks below. */
static int create(tapio_loop *loop, int call, const tapio_options *o)
{
  static const char *const hosts[] = { "127.0.0.1" };
  static rec r;
  switch (call) {
  case TAPIO_CALL_CREATE_CONNECTION:
    return tapio_create_connection(loop, "127.0.0.1", 9, &rec_proto, &r, o,
                                   never_connected, NULL);
  case TAPIO_CALL_CREATE_UNIX_CONNECTION:
    return tapio_create_unix_connection(loop, "/nonexistent", &rec_proto, &r,
                                        o, never_connected, NULL);
  case TAPIO_CALL_CONNECT_ACCEPTED_SOCKET: {
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    close(sv[1]);
    return tapio_connect_accepted_socket(loop, sv[0], &rec_proto, &r, o,
                                         never_connected, NULL);
  }
  case TAPIO_CALL_CREATE_SERVER:
    return tapio_create_server(loop, hosts, 1, 0, refusing_factory, NULL, o,
                               never_served, NULL);
  default:
    return tapio_create_unix_server(loop, "/nonexistent/s", refusing_factory, NULL,
                                    o, never_served, NULL);
  }
}

/* Every option a call does not take (here, every option some other call
 * takes) makes the call return TAPIO_EINVAL at once; no completion runs
 * and nothing is left behind (the loop's memory is back where it was). */
static void options_not_taken_einval(void)
{
  static const char *const all[] = {
    "local_host", "local_port", "family", "nodelay", "backlog",
    "reuse_address", "reuse_port", "keep_alive", "start_serving",
    "cleanup_socket"
  };
  tapio_loop *loop = new_loop();
  uint64_t mem = tapio_loop_memory(loop);
  int call, refused = 0;
  size_t i;
  for (call = TAPIO_CALL_CREATE_CONNECTION;
       call <= TAPIO_CALL_CREATE_UNIX_SERVER; call++) {
    for (i = 0; i < sizeof all / sizeof *all; i++) {
      tapio_options *o;
      if (tapio_option_info(call, all[i], NULL, NULL, NULL, NULL) == 0)
        continue;
      o = one_option(loop, all[i], strcmp(all[i], "family") ? 1 : 4);
      if (create(loop, call, o) != TAPIO_EINVAL)
        FAIL("call %d took option %s", call, all[i]);
      tapio_options_free(o);
      refused++;
    }
  }
  CHECK_EQ(refused, 6 + 10 + 9 + 3 + 7); /* 10 less what each call takes */
  spin(loop, 3);
  CHECK_EQ(tapio_loop_memory(loop), mem);
  free_loop(loop);
}

/* A refusal has words (tapio_loop_error_message right after the call),
 * which the next create call clears, refused or not, and a completion. */
static void refusal_words(void)
{
  tapio_loop *loop = new_loop();
  tapio_options *o = one_option(loop, "backlog", 1);
  srv sv;
  CHECK_ERR(create(loop, TAPIO_CALL_CREATE_CONNECTION, o), TAPIO_EINVAL);
  CHECK_STR(tapio_loop_error_message(loop),
            "create_connection does not take option 'backlog'");
  tapio_options_free(o);
  o = new_options(loop);
  CHECK_OK(tapio_options_set_double(o, "ssl_handshake_timeout", 5));
  CHECK_ERR(create(loop, TAPIO_CALL_CREATE_SERVER, o), TAPIO_EINVAL);
  CHECK_STR(tapio_loop_error_message(loop), "create_server: option "
            "'ssl_handshake_timeout' is for TLS: give 'ssl' too");
  tapio_options_free(o);
  srv_init(&sv, loop);
  CHECK_OK(tapio_create_server(loop, (const char *const[]){ "127.0.0.1" },
                               1, 0, srv_factory, &sv, NULL, on_server, &sv));
  CHECK(tapio_loop_error_message(loop) == NULL); /* not the last words */
  WAIT_FOR(loop, sv.done);
  CHECK_STR(sv.msg, "(none)"); /* nor during the completion */
  srv_release_and_free(&sv, loop);
}

/* ---- "sock" is tapio's from the call on -------------------------------- */

/* A fresh socket given as "sock" to a call that then fails. */
static int sock_after_failure(tapio_loop *loop, int call, int host_port,
                              const char *extra)
{
  static const char *const hosts[] = { "127.0.0.1" };
  int fd = socket(AF_INET, SOCK_STREAM, 0), rc;
  tapio_options *o = one_option(loop, "sock", fd);
  CHECK(fd >= 0);
  if (extra)
    CHECK_OK(tapio_options_set_int(o, extra, 1));
  if (call == TAPIO_CALL_CREATE_SERVER)
    rc = tapio_create_server(loop, host_port ? hosts : NULL, host_port ? 1 : 0,
                             0, refusing_factory, NULL, o, never_served, NULL);
  else if (call == TAPIO_CALL_CREATE_CONNECTION)
    rc = tapio_create_connection(loop, host_port ? "127.0.0.1" : NULL,
                                 host_port ? 9 : 0, host_port > 1 ? NULL :
                                 &rec_proto, NULL, o, never_connected, NULL);
  else
    rc = create(loop, call, o);
  tapio_options_free(o);
  CHECK_ERR(rc, TAPIO_EINVAL);
  return fd;
}

/* A descriptor given as "sock" is closed when the call fails, whatever
 * the reason: with a host, with an option the call does not take, with a
 * missing argument, or with a Unix server's path (which excludes it). */
static void sock_closed_on_every_failure(void)
{
  tapio_loop *loop = new_loop();
  int fds[6], i;
  fds[0] = sock_after_failure(loop, TAPIO_CALL_CREATE_CONNECTION, 1, NULL);
  fds[1] = sock_after_failure(loop, TAPIO_CALL_CREATE_CONNECTION, 0,
                              "backlog");
  fds[2] = sock_after_failure(loop, TAPIO_CALL_CREATE_CONNECTION, 2, NULL);
  fds[3] = sock_after_failure(loop, TAPIO_CALL_CREATE_SERVER, 1, NULL);
  fds[4] = sock_after_failure(loop, TAPIO_CALL_CREATE_SERVER, 0,
                              "cleanup_socket");
  fds[5] = sock_after_failure(loop, TAPIO_CALL_CREATE_UNIX_SERVER, 0, NULL);
  for (i = 0; i < 6; i++)
    if (fd_is_open(fds[i]))
      FAIL("case %d: the sock descriptor was left open", i);
  free_loop(loop);
}

/* A descriptor of the wrong kind: refused at once with words naming the
 * call and 'sock', no completion, and closed as every failure closes it.
 * rc is what the call returned. */
static void refused_sock(tapio_loop *loop, int rc, int fd, int want,
                         const char *words)
{
  CHECK_ERR(rc, want);
  CHECK_STR(tapio_loop_error_message(loop), words);
  CHECK(!fd_is_open(fd));
}

/* One end of a fresh socketpair of type; the other end is closed. */
static int pair_end(int type)
{
  int sv[2];
  CHECK(socketpair(AF_UNIX, type, 0, sv) == 0);
  close(sv[1]);
  return sv[0];
}

/* asyncio's "A Stream Socket was expected" (create_connection,
 * connect_accepted_socket, create_server) and "A datagram socket was
 * expected" (create_datagram_endpoint, D14); a pipe is not a socket. */
static void sock_of_the_wrong_kind(void)
{
  static const tapio_datagram_protocol dproto = {
    .size = sizeof(tapio_datagram_protocol) };
  tapio_loop *loop = new_loop();
  tapio_options *o;
  rec r;
  int fd, pfd[2];
  rec_init(&r);
  fd = pair_end(SOCK_DGRAM);
  o = one_option(loop, "sock", fd);
  refused_sock(loop, tapio_create_connection(loop, NULL, 0, &rec_proto, &r,
                                             o, never_connected, NULL),
               fd, TAPIO_EINVAL, "create_connection: 'sock' is a datagram "
               "socket; a stream socket was expected");
  tapio_options_free(o);
  fd = pair_end(SOCK_DGRAM);
  refused_sock(loop, tapio_connect_accepted_socket(loop, fd, &rec_proto, &r,
                                                   NULL, never_connected,
                                                   NULL),
               fd, TAPIO_EINVAL, "connect_accepted_socket: 'sock' is a "
               "datagram socket; a stream socket was expected");
  fd = socket(AF_INET, SOCK_DGRAM, 0);
  o = one_option(loop, "sock", fd);
  refused_sock(loop, tapio_create_server(loop, NULL, 0, 0, refusing_factory,
                                         NULL, o, never_served, NULL),
               fd, TAPIO_EINVAL, "create_server: 'sock' is a datagram "
               "socket; a stream socket was expected");
  tapio_options_free(o);
  fd = pair_end(SOCK_STREAM);
  o = one_option(loop, "sock", fd);
  refused_sock(loop, tapio_create_datagram_endpoint(loop, &dproto, NULL,
                                                    o, never_connected, NULL),
               fd, TAPIO_EINVAL, "create_datagram_endpoint: 'sock' is a "
               "stream socket; a datagram socket was expected");
  tapio_options_free(o);
  CHECK(pipe(pfd) == 0);
  close(pfd[1]);
  o = one_option(loop, "sock", pfd[0]);
  refused_sock(loop, tapio_create_server(loop, NULL, 0, 0, refusing_factory,
                                         NULL, o, never_served, NULL),
               pfd[0], TAPIO_ENOTSOCK, "create_server: 'sock' is not a "
               "socket");
  tapio_options_free(o);
  spin(loop, 3);
  CHECK_STR(r.log, "");
  free_loop(loop);
  rec_free(&r);
}

TEST_MAIN(
  TEST(options_unknown_name_einval),
  TEST(options_wrong_type_einval),
  TEST(options_out_of_range_einval),
  TEST(option_names_per_call),
  TEST(option_info_per_call),
  TEST(options_not_taken_einval),
  TEST(refusal_words),
  TEST(sock_closed_on_every_failure),
  TEST(sock_of_the_wrong_kind)
)
