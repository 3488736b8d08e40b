/* Fake children on a virtual loop: subprocess_exec of a registered
 * program gives the code under test the subprocess transport of a real
 * child (its callbacks in the header's order, its pipes, returncode,
 * signals, close), with the child played by the test through memory
 * pipes, on the virtual clock. */
#include "pipes.h"

#define MIB (1024 * 1024)

/* One fake child as the test plays it: its ends' records, what started
 * and ended said, and what to do. */
typedef struct fk {
  tapio_loop *loop;
  tapio_fake_child *c;
  rec in, out, err;         /* the fake's ends of fd 0, 1, 2 */
  int started, ended, returncode;
  char program[64], args[256];
  const char *cwd;
  size_t nenv;
  uint64_t catch;           /* signals caught */
  char caught[128];         /* their numbers, in order */
  /* behaviour */
  int sort;                 /* sort its input's lines on end of file */
  int echo;                 /* stdin to stdout, with flow control */
  size_t flood;             /* write this many pattern bytes at start */
  size_t flooded;
  double exit_after;        /* exit 0 after this long (> 0) */
  tapio_handle *timer;
} fk;

static void fk_init(fk *f, tapio_loop *loop)
{
  memset(f, 0, sizeof *f);
  f->loop = loop;
  rec_init(&f->in);
  rec_init(&f->out);
  rec_init(&f->err);
  f->in.user = f->out.user = f->err.user = f;
  f->in.eof_ret = 1; /* stays open: sort answers after the end */
}

static void fk_free(fk *f)
{
  rec_free(&f->in);
  rec_free(&f->out);
  rec_free(&f->err);
}

static int cmp_lines(const void *a, const void *b)
{
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* sort: the lines received, sorted, then exit 0. */
static void sort_and_exit(fk *f)
{
  char *text = malloc(f->in.nin + 1), *lines[64], *save = NULL, *l;
  size_t n = 0, i;
  CHECK(text != NULL);
  memcpy(text, f->in.in, f->in.nin);
  text[f->in.nin] = '\0';
  for (l = strtok_r(text, "\n", &save); l && n < 64;
       l = strtok_r(NULL, "\n", &save))
    lines[n++] = l;
  qsort(lines, n, sizeof *lines, cmp_lines);
  for (i = 0; i < n; i++) {
    CHECK_OK(tapio_transport_write(f->out.t, lines[i], strlen(lines[i])));
    CHECK_OK(tapio_transport_write(f->out.t, "\n", 1));
  }
  free(text);
  CHECK_OK(tapio_fake_child_exit(f->c, 0));
}

/* Writes pattern bytes until the end's buffer is over its mark. */
static void flood_some(fk *f)
{
  char buf[16384];
  while (f->flooded < f->flood && !f->out.paused && f->out.t) {
    size_t k = f->flood - f->flooded < sizeof buf ? f->flood - f->flooded
                                                   : sizeof buf;
    pattern_fill(buf, k, f->flooded);
    CHECK_OK(tapio_transport_write(f->out.t, buf, k));
    f->flooded += k;
  }
}

static void in_hook(rec *r, rec_event ev)
{
  fk *f = r->user;
  if (ev == EV_EOF && f->sort)
    sort_and_exit(f);
}

/* cat: what comes in goes out; stdin paused while stdout is. */
static void echo_data(void *ud, tapio_transport *t, const char *data,
                      size_t len)
{
  fk *f = ud;
  (void)t;
  f->in.nin += len;
  CHECK_OK(tapio_transport_write(f->out.t, data, len));
}

static int echo_eof(void *ud, tapio_transport *t)
{
  fk *f = ud;
  (void)t;
  f->in.eof = 1;
  CHECK_OK(tapio_fake_child_exit(f->c, 0));
  return 1;
}

static const tapio_protocol echo_in = {
  .size = sizeof(tapio_protocol),
  .data_received = echo_data,
  .eof_received = echo_eof,
};

static void out_hook(rec *r, rec_event ev)
{
  fk *f = r->user;
  if (f->echo && ev == EV_PAUSE)
    CHECK_OK(tapio_transport_pause_reading(tapio_fake_child_pipe(f->c, 0)));
  if (f->echo && ev == EV_RESUME)
    CHECK_OK(tapio_transport_resume_reading(tapio_fake_child_pipe(f->c, 0)));
  if (ev == EV_RESUME || ev == EV_MADE)
    flood_some(f);
}

static void exit_now(void *ud)
{
  fk *f = ud;
  f->timer = NULL;
  CHECK_OK(tapio_fake_child_exit(f->c, 0));
}

static void fk_started(void *ud, tapio_fake_child *c, const char *program,
                       const char *const *args, size_t nargs)
{
  fk *f = ud;
  size_t i;
  f->c = c;
  f->started++;
  snprintf(f->program, sizeof f->program, "%s", program);
  for (i = 0; i < nargs; i++)
    snprintf(f->args + strlen(f->args), sizeof f->args - strlen(f->args),
             "%s%s", i ? " " : "", args[i]);
  f->cwd = tapio_fake_child_cwd(c);
  tapio_fake_child_env(c, &f->nenv);
  tapio_fake_child_set_data(c, f);
  if (tapio_fake_child_pipe(c, 0))
    CHECK_OK(tapio_transport_set_protocol(tapio_fake_child_pipe(c, 0),
                                          f->echo ? &echo_in : &rec_proto,
                                          f->echo ? (void *)f : &f->in));
  if (tapio_fake_child_pipe(c, 1))
    CHECK_OK(tapio_transport_set_protocol(tapio_fake_child_pipe(c, 1),
                                          &rec_proto, &f->out));
  if (tapio_fake_child_pipe(c, 2) &&
      tapio_fake_child_pipe(c, 2) != tapio_fake_child_pipe(c, 1))
    CHECK_OK(tapio_transport_set_protocol(tapio_fake_child_pipe(c, 2),
                                          &rec_proto, &f->err));
  f->in.hook = in_hook;
  f->out.hook = out_hook;
  if (f->exit_after > 0)
    CHECK_OK(tapio_call_later(f->loop, f->exit_after, exit_now, f,
                              &f->timer));
}

static int fk_signal(void *ud, tapio_fake_child *c, int sig)
{
  fk *f = ud;
  CHECK(tapio_fake_child_get_data(c) == f);
  snprintf(f->caught + strlen(f->caught), sizeof f->caught - strlen(f->caught),
           "%s%d", *f->caught ? " " : "", sig);
  return (f->catch >> sig) & 1;
}

static void fk_ended(void *ud, tapio_fake_child *c, int returncode)
{
  fk *f = ud;
  CHECK(tapio_fake_child_get_data(c) == f);
  f->ended++;
  f->returncode = returncode;
  if (f->timer) /* what the fake scheduled goes with it */
    tapio_handle_cancel(f->timer);
  f->timer = NULL;
  f->c = NULL;
}

static const tapio_fake_program fk_prog = {
  sizeof(tapio_fake_program), fk_started, fk_signal, fk_ended
};

/* Starts program (argv[0]) on loop, registered as name, and runs the
 * loop until its connection_made; p (zeroed, or its hook set) keeps its
 * hook. */
static void start(tapio_loop *loop, prec *p, fk *f, const char *name,
                  const char *const *argv, const tapio_options *o)
{
  void (*hook)(prec *p, pev ev, int fd) = p->hook;
  prec_init(p);
  p->hook = hook;
  CHECK_OK(tapio_loop_add_fake_program(loop, name, &fk_prog, f));
  CHECK_OK(spawn_wait(loop, p, argv, o));
  CHECK_EQ(f->started, 1);
}

static void idle(tapio_loop *loop)
{
  CHECK_OK(tapio_loop_run_until_idle(loop));
}

static void finish(tapio_loop *loop, prec *p, fk *f)
{
  CHECK_EQ(tapio_loop_transport_count(loop), 0);
  free_loop(loop);
  prec_free(p);
  fk_free(f);
}

/* ---- A filter -------------------------------------------------------- */

/* sort: fed through stdin, read from stdout; the transport is the real
 * kind's, the pipes real pipes' kinds, the order the header's. */
static void vchild_filter(void)
{
  static const char *const argv[] = { "/usr/bin/sort", "-r", NULL };
  tapio_loop *loop = new_virtual();
  tapio_transport *in;
  prec p = { 0 };
  fk f;
  fk_init(&f, loop);
  f.sort = 1;
  start(loop, &p, &f, "sort", argv, NULL);
  CHECK_STR(f.program, "/usr/bin/sort");
  CHECK_STR(f.args, "-r");
  CHECK_EQ(tapio_transport_get_kind(p.t), TAPIO_TRANSPORT_SUBPROCESS);
  CHECK(p.pid > 4194304);
  in = pipe_of(&p, 0);
  CHECK_EQ(tapio_transport_get_kind(in), TAPIO_TRANSPORT_WRITE_PIPE);
  CHECK_EQ(tapio_transport_get_kind(pipe_of(&p, 1)),
           TAPIO_TRANSPORT_READ_PIPE);
  CHECK_ERR(tapio_transport_write(pipe_of(&p, 1), "x", 1), TAPIO_ENOTSUP);
  CHECK_ERR(tapio_transport_set_protocol(in, &rec_proto, NULL),
            TAPIO_EINVAL);
  CHECK_OK(tapio_transport_write(in, "pear\napple\nfig\n", 15));
  CHECK_OK(tapio_transport_write_eof(in));
  idle(loop);
  CHECK_STR(p.r.log, "made lost0:0 out:15 exited lost1:0 lost2:0 lost:0");
  CHECK_EQ(p.returncode, 0);
  CHECK_EQ(memcmp(p.out[1], "apple\nfig\npear\n", 15), 0);
  CHECK_STR(f.in.log, "made data:15 eof lost:0");
  CHECK_STR(f.out.log, "made lost:0");
  CHECK_EQ(f.ended, 1);
  CHECK_EQ(f.returncode, 0);
  CHECK(tapio_loop_time(loop) == 0); /* nothing waited */
  finish(loop, &p, &f);
}

/* 1 MiB each way through cat, the parent not reading stdout for a while:
 * the child's stdout fills and pauses it, it pauses reading stdin, and the
 * parent's stdin pipe pauses in turn; nothing is lost, nothing deadlocks. */
static void vchild_megabyte_both_ways(void)
{
  static const char *const argv[] = { "cat", NULL };
  tapio_loop *loop = new_virtual();
  char *buf = malloc(MIB);
  prec p = { 0 };
  fk f;
  CHECK(buf != NULL);
  pattern_fill(buf, MIB, 0);
  fk_init(&f, loop);
  f.echo = 1;
  start(loop, &p, &f, "cat", argv, NULL);
  CHECK_OK(tapio_transport_pause_reading(pipe_of(&p, 1)));
  CHECK_OK(tapio_transport_write(pipe_of(&p, 0), buf, MIB));
  CHECK_OK(tapio_transport_write_eof(pipe_of(&p, 0)));
  idle(loop);
  CHECK_EQ(p.npause, 1); /* stdin: the child stopped reading */
  CHECK_EQ(f.out.npause, 1); /* the child's stdout: the parent stopped */
  CHECK(p.total[1] == 0);
  CHECK(f.in.nin < MIB);
  CHECK_OK(tapio_transport_resume_reading(pipe_of(&p, 1)));
  idle(loop);
  CHECK_EQ(p.nresume, 1);
  CHECK_EQ(f.out.nresume, 1);
  CHECK_EQ(p.total[1], MIB);
  CHECK_EQ(pattern_check(p.out[1], MIB, 0), -1);
  CHECK_EVENTS(&p, "pause resume lost0:0 lost1:0 lost2:0 exited", "lost:0");
  CHECK_EQ(p.returncode, 0);
  free(buf);
  finish(loop, &p, &f);
}

/* A child that floods stdout while the parent reads one chunk every
 * 10 ms: the child is held at the pipe's capacity (pause_writing), every
 * byte arrives in order, and it takes virtual time, not real. */
static void resume_pipe(void *ud)
{
  CHECK_OK(tapio_transport_resume_reading(ud));
}

static void pipe_read_slowly(prec *p, pev ev, int fd)
{
  tapio_transport *t;
  if (ev != PEV_DATA || fd != 1)
    return;
  t = tapio_subprocess_get_pipe_transport(p->t, 1);
  CHECK_OK(tapio_transport_pause_reading(t));
  CHECK_OK(tapio_call_later(tapio_transport_get_loop(p->t), 0.01,
                            resume_pipe, t, NULL));
}

static void vchild_flood_slow_reader(void)
{
  static const char *const argv[] = { "yes", NULL };
  tapio_loop *loop = new_virtual();
  tapio_options *o = stdio_opts(loop, TAPIO_STDIO_DEVNULL, TAPIO_STDIO_PIPE,
                                TAPIO_STDIO_DEVNULL);
  prec p = { 0 };
  fk f;
  fk_init(&f, loop);
  f.flood = MIB;
  start(loop, &p, &f, "yes", argv, o);
  tapio_options_free(o);
  CHECK(tapio_fake_child_pipe(f.c, 0) == NULL); /* DEVNULL: no pipe */
  p.hook = pipe_read_slowly;
  idle(loop);
  CHECK(f.out.npause >= 1);
  CHECK(f.flooded < MIB);
  while (f.flooded < MIB || p.total[1] < MIB)
    CHECK_OK(tapio_loop_advance(loop, 0.01));
  CHECK_EQ(pattern_check(p.out[1], MIB, 0), -1);
  CHECK(f.out.npause > 1);
  CHECK(tapio_loop_time(loop) > 0.1); /* 16 chunks of 64 KiB at least */
  CHECK_OK(tapio_fake_child_exit(f.c, 0));
  CHECK_ERR(tapio_fake_child_exit(f.c, 0), TAPIO_ESRCH);
  CHECK_OK(tapio_loop_advance(loop, 0.01)); /* the reader's next turn */
  CHECK_STR(p.r.log, "made out:1048576 exited lost1:0 lost:0");
  finish(loop, &p, &f);
}

/* ---- Time, death and signals ----------------------------------------- */

static void kill_it(void *ud)
{
  CHECK_OK(tapio_subprocess_kill(ud));
}

/* A child that would run 30 s, killed by the parent's 5 s timeout: at
 * t=5 of the virtual clock, with no real wait. */
static void vchild_slow_child_timeout(void)
{
  static const char *const argv[] = { "slow", NULL };
  tapio_loop *loop = new_virtual();
  double t0 = now_sec();
  prec p = { 0 };
  fk f;
  fk_init(&f, loop);
  f.exit_after = 30;
  start(loop, &p, &f, "slow", argv, NULL);
  CHECK_OK(tapio_call_later(loop, 5, kill_it, p.t, NULL));
  CHECK_OK(tapio_loop_advance(loop, 60));
  CHECK_EQ(p.returncode, -SIGKILL);
  CHECK_EQ(f.returncode, -SIGKILL);
  CHECK_EVENTS(&p, "lost0:EPIPE lost1:0 lost2:0 exited", "lost:0");
  CHECK(f.timer == NULL && f.ended == 1);
  CHECK_EQ(tapio_loop_next_timer(loop), -1); /* its timer went with it */
  CHECK(now_sec() - t0 < 2);
  finish(loop, &p, &f);
}

static void pause_stdout_at_made(prec *p, pev ev, int fd)
{
  (void)fd;
  if (ev == PEV_MADE)
    CHECK_OK(tapio_transport_pause_reading(pipe_of(p, 1)));
}

/* The child dies (SIGTERM, not caught) with 200 KB written and the parent
 * not reading: the parent reads what was in the pipe (its 64 KiB), then
 * end of file, then the exit: -15; what the child held back is lost. */
static void vchild_dies_mid_output(void)
{
  static const char *const argv[] = { "writer", NULL };
  tapio_loop *loop = new_virtual();
  prec p = { 0 };
  fk f;
  fk_init(&f, loop);
  f.flood = 200000;
  p.hook = pause_stdout_at_made;
  start(loop, &p, &f, "writer", argv, NULL);
  idle(loop);
  CHECK_OK(tapio_subprocess_terminate(p.t));
  CHECK_OK(tapio_subprocess_get_returncode(p.t, NULL)); /* not yet */
  idle(loop);
  CHECK_STR(f.caught, "15");
  CHECK_EQ(f.returncode, -SIGTERM);
  CHECK_STR(f.out.log, "made pause lost:0");
  CHECK_OK(tapio_transport_resume_reading(pipe_of(&p, 1)));
  idle(loop);
  CHECK_EQ(p.total[1], 65536);
  CHECK_EQ(pattern_check(p.out[1], 65536, 0), -1);
  CHECK_STR(p.r.log,
            "made exited lost0:EPIPE lost2:0 out:65536 lost1:0 lost:0");
  CHECK_EQ(p.returncode, -SIGTERM);
  finish(loop, &p, &f);
}

/* SIGTERM caught: the child runs on; SIGCHLD ignored; SIGINT and SIGHUP
 * not caught end it (-2); SIGKILL never reaches the program. */
static void vchild_signals(void)
{
  static const struct { int sig, caught, returncode; const char *seen; }
  cases[] = {
    { SIGTERM, 1, -SIGKILL, "15" },
    { SIGINT, 0, -SIGINT, "2" },
    { SIGHUP, 0, -SIGHUP, "1" },
    { SIGKILL, 0, -SIGKILL, "" },
    { SIGCHLD, 0, -SIGKILL, "17" },
  };
  size_t i;
  for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    static const char *const argv[] = { "daemon", NULL };
    tapio_loop *loop = new_virtual();
    prec p = { 0 };
    fk f;
    int rc;
    fk_init(&f, loop);
    f.catch = (uint64_t)cases[i].caught << cases[i].sig;
    start(loop, &p, &f, "daemon", argv, NULL);
    CHECK_OK(tapio_subprocess_send_signal(p.t, cases[i].sig));
    idle(loop);
    CHECK_STR(f.caught, cases[i].seen);
    if (cases[i].returncode == -SIGKILL && cases[i].sig != SIGKILL) {
      CHECK_EQ(f.ended, 0); /* runs on */
      CHECK_OK(tapio_subprocess_get_returncode(p.t, &rc));
      CHECK_OK(tapio_subprocess_kill(p.t));
      idle(loop);
      CHECK_STR(f.caught, cases[i].seen); /* SIGKILL: not asked */
    }
    CHECK_EQ(p.returncode, cases[i].returncode);
    CHECK_EQ(f.returncode, cases[i].returncode);
    CHECK_EVENTS(&p, "exited", "lost:0");
    finish(loop, &p, &f);
  }
}

/* close() of a running child kills it, as a real one; abort at once. */
static void vchild_close_and_abort(void)
{
  int how;
  for (how = 0; how < 2; how++) {
    static const char *const argv[] = { "sleep", "inf", NULL };
    tapio_loop *loop = new_virtual();
    prec p = { 0 };
    fk f;
    int rc = 0;
    fk_init(&f, loop);
    start(loop, &p, &f, "sleep", argv, NULL);
    if (how == 0) {
      CHECK_OK(tapio_transport_close(p.t));
      CHECK_EQ(tapio_subprocess_get_returncode(p.t, &rc), 0);
    } else {
      CHECK_OK(tapio_transport_abort(p.t));
      CHECK_EQ(tapio_subprocess_get_returncode(p.t, &rc), 1);
      CHECK_EQ(rc, -SIGKILL);
    }
    idle(loop);
    CHECK_EVENTS(&p, "lost0:0 lost1:0 lost2:0 exited", "lost:0");
    CHECK_EQ(p.returncode, -SIGKILL);
    CHECK_EQ(f.ended, 1);
    CHECK_EQ(f.returncode, -SIGKILL);
    CHECK_STR(f.in.log, "made lost:0");
    finish(loop, &p, &f);
  }
}

/* The stdin pipe of a child that exits without reading closes with
 * EPIPE; a write to it after fails as on a closed pipe. */
static void vchild_stdin_after_exit(void)
{
  static const char *const argv[] = { "true", NULL };
  tapio_loop *loop = new_virtual();
  tapio_transport *in;
  prec p = { 0 };
  fk f;
  fk_init(&f, loop);
  start(loop, &p, &f, "true", argv, NULL);
  in = pipe_of(&p, 0);
  CHECK_OK(tapio_fake_child_exit(f.c, 0));
  idle(loop);
  CHECK_STR(p.r.log, "made exited lost0:EPIPE lost1:0 lost2:0 lost:0");
  (void)in;
  finish(loop, &p, &f);
}

/* ---- Options and names ----------------------------------------------- */

/* stderr STDOUT: fd 2 is fd 1's end; cwd and env reach the fake. */
static void vchild_merged_stderr_env_cwd(void)
{
  static const char *const argv[] = { "tool", "a", "b", NULL };
  static const char *const env[] = { "A=1", "B=2" };
  tapio_loop *loop = new_virtual();
  tapio_options *o = stdio_opts(loop, TAPIO_STDIO_PIPE, TAPIO_STDIO_PIPE,
                                TAPIO_STDIO_STDOUT);
  prec p = { 0 };
  fk f;
  CHECK_OK(tapio_options_set_str(o, "cwd", "/nowhere"));
  CHECK_OK(tapio_options_add_str(o, "env", env[0]));
  CHECK_OK(tapio_options_add_str(o, "env", env[1]));
  fk_init(&f, loop);
  start(loop, &p, &f, "tool", argv, o);
  tapio_options_free(o);
  CHECK_STR(f.args, "a b");
  CHECK_STR(f.cwd, "/nowhere");
  CHECK_EQ(f.nenv, 2);
  CHECK(tapio_fake_child_pipe(f.c, 2) == tapio_fake_child_pipe(f.c, 1));
  CHECK(tapio_subprocess_get_pipe_transport(p.t, 2) == NULL);
  CHECK_OK(tapio_transport_write(tapio_fake_child_pipe(f.c, 2), "oops", 4));
  CHECK_OK(tapio_fake_child_exit(f.c, 3));
  idle(loop);
  CHECK_STR(p.r.log, "made out:4 exited lost0:EPIPE lost1:0 lost:0");
  CHECK_EQ(p.returncode, 3);
  finish(loop, &p, &f);
}

/* subprocess_shell(cmd) with a program registered as name: what its
 * started got, as "program|args". */
static void shell_run(tapio_loop *loop, const char *name, const char *cmd,
                      fk *f, char *seen, size_t size)
{
  conn_wait w = { 0 };
  prec p;
  prec_init(&p);
  CHECK_OK(tapio_loop_add_fake_program(loop, name, &fk_prog, f));
  CHECK_OK(tapio_subprocess_shell(loop, cmd, &prec_proto, &p, NULL,
                                  on_connected, &w));
  idle(loop);
  snprintf(seen, size, "%s|%s", f->program, f->args);
  CHECK_OK(tapio_fake_child_exit(f->c, 0));
  idle(loop);
  CHECK_STR(p.r.log, "made exited lost0:EPIPE lost1:0 lost2:0 lost:0");
  prec_free(&p);
}

/* subprocess_shell: the command's own program first, else "sh". */
static void vchild_shell(void)
{
  tapio_loop *loop = new_virtual();
  char seen[400];
  fk f, g;
  fk_init(&f, loop);
  fk_init(&g, loop);
  shell_run(loop, "sh", "ls | wc", &f, seen, sizeof seen);
  CHECK_STR(seen, "/bin/sh|-c ls | wc");
  shell_run(loop, "make all", "make all", &g, seen, sizeof seen);
  CHECK_STR(seen, "make all|");
  CHECK_EQ(f.started, 1);
  CHECK_EQ(tapio_loop_transport_count(loop), 0);
  free_loop(loop);
  fk_free(&f);
  fk_free(&g);
}

/* A program nobody registered: TAPIO_EVIRTUAL, with words that name it
 * and say how to register one; a real loop has no fake programs. */
static void vchild_unregistered(void)
{
  tapio_loop *loop = new_virtual(), *real = new_loop();
  prec p = { 0 };
  fk f;
  prec_init(&p);
  fk_init(&f, loop);
  CHECK_ERR(tapio_subprocess_exec(loop, "frobnicate", NULL, 0, &prec_proto,
                                  &p, NULL, never_connected, NULL),
            TAPIO_EVIRTUAL);
  CHECK(strstr(tapio_loop_error_message(loop), "'frobnicate'"));
  CHECK(strstr(tapio_loop_error_message(loop),
               "tapio_loop_add_fake_program"));
  CHECK_ERR(tapio_subprocess_shell(loop, "echo hi", &prec_proto, &p, NULL,
                                   never_connected, NULL),
            TAPIO_EVIRTUAL);
  CHECK(strstr(tapio_loop_error_message(loop), "'echo hi' (nor 'sh')"));
  CHECK_ERR(tapio_loop_add_fake_program(real, "x", &fk_prog, &f),
            TAPIO_ENOTSUP);
  CHECK_ERR(tapio_loop_add_fake_program(loop, "", &fk_prog, &f),
            TAPIO_EINVAL);
  CHECK_OK(tapio_loop_add_fake_program(loop, "x", &fk_prog, &f));
  CHECK_OK(tapio_loop_add_fake_program(loop, "x", NULL, NULL));
  CHECK_ERR(tapio_subprocess_exec(loop, "x", NULL, 0, &prec_proto, &p,
                                  NULL, never_connected, NULL),
            TAPIO_EVIRTUAL);
  CHECK_EQ(tapio_loop_transport_count(loop), 0);
  free_loop(real);
  finish(loop, &p, &f);
}

/* ---- The loop freed -------------------------------------------------- */

/* Children running, one not yet started, and the loop is freed: each
 * started one hears ended (-9), nothing leaks (valgrind, ASan). */
static void vchild_loop_freed_running(void)
{
  static const char *const argv[] = { "sleep", NULL };
  tapio_loop *loop = new_virtual();
  conn_wait w = { 0 };
  prec p[3];
  fk f;
  int i;
  fk_init(&f, loop);
  f.flood = 100000;
  CHECK_OK(tapio_loop_add_fake_program(loop, "sleep", &fk_prog, &f));
  for (i = 0; i < 3; i++) {
    prec_init(&p[i]);
    CHECK_OK(tapio_subprocess_exec(loop, "sleep", NULL, 0, &prec_proto,
                                   &p[i], NULL, on_connected, &w));
    if (i < 2)
      idle(loop);
  }
  CHECK_EQ(f.started, 2);
  CHECK(tapio_loop_transport_count(loop) > 0);
  free_loop(loop);
  CHECK_EQ(f.started, 2);
  CHECK_EQ(f.ended, 2);
  CHECK_EQ(f.returncode, -SIGKILL);
  for (i = 0; i < 3; i++)
    prec_free(&p[i]);
  (void)argv;
  fk_free(&f);
}

TEST_MAIN(
  TEST(vchild_filter),
  TEST(vchild_megabyte_both_ways),
  TEST(vchild_flood_slow_reader),
  TEST(vchild_slow_child_timeout),
  TEST(vchild_dies_mid_output),
  TEST(vchild_signals),
  TEST(vchild_close_and_abort),
  TEST(vchild_stdin_after_exit),
  TEST(vchild_merged_stderr_env_cwd),
  TEST(vchild_shell),
  TEST(vchild_unregistered),
  TEST(vchild_loop_freed_running)
)
