/* Subprocess transports, their data and options: stdout and stderr through
 * pipe_data_received, 64 MiB with pause_reading, the pipe-buffer edges,
 * a slow reader (pause_writing), each stdio choice, cwd, env, sessions,
 * pass_fds and close_fds. Real children: sh, cat, head, yes, env, cut. */
#include "pipes.h"

/* ---- Data ---------------------------------------------------------------- */

/* P13: each fd's data before its pipe_connection_lost; all of it comes. */
static void stdout_and_stderr(void)
{
  tapio_loop *loop = new_loop();
  prec p;
  prec_init(&p);
  CHECK_OK(shell_wait(loop, &p, "printf hello; printf oops >&2", NULL));
  WAIT_FOR(loop, p.lost);
  CHECK_EVENTS(&p, "out:5 err:4 lost0:EPIPE lost1:0 lost2:0 exited",
               "lost:0");
  CHECK(strstr(p.r.log, "out:5") < strstr(p.r.log, "lost1:0"));
  CHECK(strstr(p.r.log, "err:4") < strstr(p.r.log, "lost2:0"));
  CHECK_OUT(&p, 1, "hello");
  CHECK_OUT(&p, 2, "oops");
  free_loop(loop);
  prec_free(&p);
}

static void subprocess_shell_runs_sh(void)
{
  tapio_loop *loop = new_loop();
  conn_wait w = { 0 };
  prec p;
  prec_init(&p);
  CHECK_OK(tapio_subprocess_shell(loop, "echo $((6 * 7))", &prec_proto, &p,
                                  NULL, on_connected, &w));
  WAIT_FOR(loop, p.lost);
  CHECK_OUT(&p, 1, "42\n");
  free_loop(loop);
  prec_free(&p);
}

/* 64 MiB from `yes | head`, checked byte for byte, with stdout's reading
 * paused every 4 MiB and resumed from a later call. */
#define LINE "abcdefghij\n"
#define BIG (64u << 20)

static void resume_stdout(void *ud)
{
  prec *p = ud;
  rec_log(&p->r, "resumed");
  CHECK_OK(tapio_transport_resume_reading(pipe_of(p, 1)));
}

static void big_stream_hook(prec *p, pev ev, int fd)
{
  size_t before, i;
  tapio_transport *out;
  if (ev != PEV_DATA || fd != 1)
    return;
  before = p->total[1] - p->lastlen;
  for (i = 0; i < p->lastlen; i++)
    if (p->last[i] != LINE[(before + i) % (sizeof LINE - 1)])
      FAIL("byte %zu of stdout is wrong", before + i);
  if (before / (4u << 20) == p->total[1] / (4u << 20))
    return;
  out = pipe_of(p, 1);
  CHECK_OK(tapio_transport_pause_reading(out));
  CHECK_EQ(tapio_transport_is_reading(out), 0);
  rec_log(&p->r, "paused");
  CHECK_OK(tapio_call_soon(tapio_transport_get_loop(p->t), resume_stdout, p,
                           NULL));
}

static void stream_64mib_with_pause_reading(void)
{
  tapio_loop *loop = new_loop();
  tapio_options *o = new_options(loop);
  char script[128];
  prec p;
  prec_init(&p);
  p.discard = 1;
  p.hook = big_stream_hook;
  snprintf(script, sizeof script, "yes abcdefghij | head -c %u", BIG);
  CHECK_OK(tapio_options_set_int(o, "stdin", TAPIO_STDIO_DEVNULL));
  run_script(loop, &p, script, o);
  CHECK_EQ(p.total[1], BIG);
  /* no data between a pause and its resume: they alternate in the log */
  CHECK(strstr(p.r.log, "paused out") == NULL);
  CHECK(strstr(p.r.log, "paused resumed") != NULL);
  free_loop(loop);
  prec_free(&p);
}

/* The pipe-buffer edges (uvloop#363): n bytes to cat's stdin, write_eof,
 * and the same n back from its stdout. */
static void pipe_buffer_edges(void)
{
  static const size_t sizes[] = { 8192, 8193, 65536, 65537, 219263, 219264,
                                  1000000 };
  static char data[1000000];
  tapio_loop *loop = new_loop();
  const char *argv[] = { "cat", NULL };
  size_t i;
  pattern_fill(data, sizeof data, 0);
  for (i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    tapio_transport *in;
    prec p;
    prec_init(&p);
    CHECK_OK(spawn_wait(loop, &p, argv, NULL));
    in = pipe_of(&p, 0);
    CHECK_OK(tapio_transport_write(in, data, sizes[i]));
    CHECK_OK(tapio_transport_write_eof(in));
    WAIT_FOR(loop, p.lost);
    CHECK_EVENTS(&p, "lost0:0 lost1:0 lost2:0 exited", "lost:0");
    CHECK_EQ(p.nout[1], sizes[i]);
    CHECK_EQ(pattern_check(p.out[1], sizes[i], 0), -1);
    CHECK_EQ(p.returncode, 0);
    prec_free(&p);
  }
  free_loop(loop);
}

/* A child that is slow to read its stdin: the stdin pipe's flow control
 * reaches the SubprocessProtocol as pause_writing and resume_writing. */
static void slow_reader_pauses_writing(void)
{
  static char data[512 * 1024];
  tapio_loop *loop = new_loop();
  tapio_transport *in;
  prec p;
  prec_init(&p);
  pattern_fill(data, sizeof data, 0);
  CHECK_OK(shell_wait(loop, &p, "sleep 0.1; exec cat", NULL));
  in = pipe_of(&p, 0);
  CHECK_OK(tapio_transport_write(in, data, sizeof data));
  CHECK_EQ(p.paused, 1);
  CHECK_OK(tapio_transport_write_eof(in));
  WAIT_FOR(loop, p.lost);
  CHECK_EVENTS(&p, "pause resume lost0:0 lost1:0 lost2:0 exited", "lost:0");
  CHECK(strstr(p.r.log, "pause") < strstr(p.r.log, "resume"));
  CHECK_EQ(p.nout[1], sizeof data);
  CHECK_EQ(pattern_check(p.out[1], sizeof data, 0), -1);
  free_loop(loop);
  prec_free(&p);
}

/* P11, uvloop's "exit seen before stdio": stdout is paused until the
 * child has exited; everything it wrote still comes, then the end. */
static void read_stdout_after_exit(void)
{
  tapio_loop *loop = new_loop();
  tapio_options *o = stdio_opts(loop, TAPIO_STDIO_DEVNULL, TAPIO_STDIO_PIPE,
                                TAPIO_STDIO_DEVNULL);
  prec p;
  prec_init(&p);
  p.hook = prec_pause_stdout_hook;
  CHECK_OK(shell_wait(loop, &p, "head -c 60000 /dev/zero", o));
  tapio_options_free(o);
  WAIT_FOR(loop, p.exited);
  CHECK_EQ(p.nout[1], 0);
  CHECK_OK(tapio_transport_resume_reading(pipe_of(&p, 1)));
  WAIT_FOR(loop, p.lost);
  CHECK_STR(p.r.log, "made exited out:60000 lost1:0 lost:0");
  free_loop(loop);
  prec_free(&p);
}

/* P15: closing the stdout pipe makes the child's next write fail: it is
 * killed by SIGPIPE (its default disposition). */
static void closed_stdout_breaks_child(void)
{
  tapio_loop *loop = new_loop();
  prec p;
  prec_init(&p);
  CHECK_OK(shell_wait(loop, &p, "read x; echo after", NULL));
  CHECK_ERR(tapio_transport_set_protocol(pipe_of(&p, 1), &rec_proto, NULL),
            TAPIO_EINVAL);
  CHECK_OK(tapio_transport_close(pipe_of(&p, 1)));
  WAIT_FOR(loop, p.pipe_lost[1]);
  CHECK(tapio_subprocess_get_pipe_transport(p.t, 1) == NULL);
  CHECK_OK(tapio_transport_write(pipe_of(&p, 0), "go\n", 3));
  WAIT_FOR(loop, p.lost);
  CHECK_EQ(p.returncode, -SIGPIPE);
  free_loop(loop);
  prec_free(&p);
}

/* P2: a child that exits before reading its stdin: the stdin pipe ends
 * with EPIPE (asyncio's drain() raises BrokenPipeError), nothing hangs. */
static void stdin_broken_pipe(void)
{
  static char data[1 << 20];
  tapio_loop *loop = new_loop();
  prec p;
  prec_init(&p);
  CHECK_OK(shell_wait(loop, &p, "exit 0", NULL));
  CHECK_OK(tapio_transport_write(pipe_of(&p, 0), data, sizeof data));
  WAIT_FOR(loop, p.lost);
  CHECK_EVENTS(&p, "lost0:EPIPE lost1:0 lost2:0 exited", "lost:0");
  CHECK_EQ(p.pipe_code[0], TAPIO_EPIPE);
  free_loop(loop);
  prec_free(&p);
}

TEST_MAIN(
  TEST(stdout_and_stderr),
  TEST(subprocess_shell_runs_sh),
  TEST(stream_64mib_with_pause_reading),
  TEST(pipe_buffer_edges),
  TEST(slow_reader_pauses_writing),
  TEST(read_stdout_after_exit),
  TEST(closed_stdout_breaks_child),
  TEST(stdin_broken_pipe)
)
