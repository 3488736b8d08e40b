/* Subprocess options: stdin, stdout and stderr (pipe, /dev/null, a given
 * descriptor, inherited, stderr into stdout), cwd, env (replaced and
 * extended), start_new_session, process_group, pass_fds, close_fds, and the descriptors
 * the child gets (no other of the parent's); executable, pipesize, user,
 * group, extra_groups, umask, and the fork that starts a child with the
 * last four: the same start and the same errors as posix_spawn's. */
#include "pipes.h"

#include <grp.h>
#include <sys/syscall.h>

/* ---- stdin, stdout, stderr ----------------------------------------------- */

/* P16: stderr to stdout: both in fd 1, no fd 2 pipe. */
static void stderr_into_stdout(void)
{
  tapio_loop *loop = new_loop();
  prec p;
  prec_init(&p);
  run_script(loop, &p, "echo out; echo err >&2",
             stdio_opts(loop, TAPIO_STDIO_DEVNULL, TAPIO_STDIO_PIPE,
                        TAPIO_STDIO_STDOUT));
  CHECK_OUT(&p, 1, "out\nerr\n");
  CHECK_EVENTS(&p, "lost1:0 exited", "lost:0");
  CHECK(!prec_has(&p, "lost2:0") && strstr(p.r.log, "err") == NULL);
  free_loop(loop);
  prec_free(&p);
}

/* P6: /dev/null as stdin reads nothing; as stdout and stderr, nothing
 * comes, and those fds have no pipe. */
static void devnull_stdio(void)
{
  tapio_loop *loop = new_loop();
  tapio_options *o;
  prec p, q;
  prec_init(&p);
  prec_init(&q);
  o = stdio_opts(loop, TAPIO_STDIO_DEVNULL, TAPIO_STDIO_PIPE,
                 TAPIO_STDIO_PIPE);
  run_script(loop, &p, "cat; echo done", o);
  CHECK_OUT(&p, 1, "done\n");
  CHECK(!prec_has(&p, "lost0:0") && !prec_has(&p, "lost0:EPIPE"));
  o = stdio_opts(loop, TAPIO_STDIO_PIPE, TAPIO_STDIO_DEVNULL,
                 TAPIO_STDIO_DEVNULL);
  CHECK_OK(shell_wait(loop, &q, "echo lost; echo lost >&2", o));
  tapio_options_free(o);
  CHECK(tapio_subprocess_get_pipe_transport(q.t, 1) == NULL);
  CHECK(tapio_subprocess_get_pipe_transport(q.t, 2) == NULL);
  WAIT_FOR(loop, q.lost);
  CHECK_EVENTS(&q, "lost0:EPIPE exited", "lost:0");
  CHECK(!prec_has(&q, "lost1:0") && !prec_has(&q, "lost2:0"));
  free_loop(loop);
  prec_free(&p);
  prec_free(&q);
}

/* Descriptors of the caller's as stdin and stdout: the child gets them,
 * and they stay the caller's. */
static void given_descriptors(void)
{
  tapio_loop *loop = new_loop();
  tapio_options *o;
  int in[2], out[2], eof;
  char got[16];
  prec p;
  prec_init(&p);
  make_pipe(in);
  make_pipe(out);
  o = stdio_opts(loop, in[0], out[1], TAPIO_STDIO_DEVNULL);
  CHECK_OK(shell_wait(loop, &p, "cat", o));
  tapio_options_free(o);
  CHECK(write(in[1], "given", 5) == 5);
  CHECK(close(in[1]) == 0 && close(out[1]) == 0);
  WAIT_FOR(loop, p.lost);
  CHECK_STR(p.r.log, "made exited lost:0");
  raw_nonblock(out[0]);
  CHECK_EQ(read_fd_all(loop, out[0], got, sizeof got, &eof), 5);
  CHECK(eof && memcmp(got, "given", 5) == 0);
  CHECK(fd_is_open(in[0]));
  CHECK(close(in[0]) == 0 && close(out[0]) == 0);
  free_loop(loop);
  prec_free(&p);
}

/* Inherited stdout: the parent's own fd 1 (here a pipe put there). */
static void inherited_stdout(void)
{
  tapio_loop *loop = new_loop();
  int out[2], saved = dup(1), eof;
  char got[16];
  prec p;
  prec_init(&p);
  make_pipe(out);
  CHECK(saved >= 0 && dup2(out[1], 1) == 1);
  run_script(loop, &p, "echo inherited",
             stdio_opts(loop, TAPIO_STDIO_DEVNULL, TAPIO_STDIO_INHERIT,
                        TAPIO_STDIO_DEVNULL));
  CHECK(dup2(saved, 1) == 1 && close(saved) == 0 && close(out[1]) == 0);
  CHECK_STR(p.r.log, "made exited lost:0");
  raw_nonblock(out[0]);
  CHECK_EQ(read_fd_all(loop, out[0], got, sizeof got, &eof), 10);
  CHECK(memcmp(got, "inherited\n", 10) == 0);
  CHECK(close(out[0]) == 0);
  free_loop(loop);
  prec_free(&p);
}

/* libuv's spawn_closed_process_io: the parent's fd 0 is closed, so a pipe
 * lands there; the child still gets each end where it belongs. */
static void parent_stdin_closed(void)
{
  tapio_loop *loop = new_loop();
  const char *argv[] = { "cat", NULL };
  prec p;
  prec_init(&p);
  CHECK(close(0) == 0);
  CHECK_OK(spawn_wait(loop, &p, argv, NULL));
  CHECK_OK(tapio_transport_write(pipe_of(&p, 0), "through", 7));
  CHECK_OK(tapio_transport_close(pipe_of(&p, 0)));
  WAIT_FOR(loop, p.lost);
  CHECK_OUT(&p, 1, "through");
  CHECK_EQ(p.returncode, 0);
  free_loop(loop);
  prec_free(&p);
}

/* With 0 and 1 closed, stderr's pipe gets 0 and 1; its child end (1) must
 * not be taken for the child's stdout (/dev/null by then). */
static void parent_stdout_closed(void)
{
  tapio_loop *loop = new_loop();
  prec p;
  prec_init(&p);
  CHECK(close(0) == 0 && close(1) == 0);
  run_script(loop, &p, "echo err >&2",
             stdio_opts(loop, TAPIO_STDIO_INHERIT, TAPIO_STDIO_DEVNULL,
                        TAPIO_STDIO_PIPE));
  CHECK_OUT(&p, 2, "err\n");
  free_loop(loop);
  prec_free(&p);
}

/* ---- cwd, env, session, descriptors -------------------------------------- */

static void cwd_option(void)
{
  tapio_loop *loop = new_loop();
  tapio_options *o = new_options(loop);
  char dir[] = "/tmp/tapio-cwd-XXXXXX", path[64];
  const char *argv[] = { "./run.sh", NULL };
  int fd;
  prec p, q;
  prec_init(&p);
  prec_init(&q);
  CHECK(mkdtemp(dir) != NULL);
  snprintf(path, sizeof path, "%s/run.sh", dir);
  fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0755);
  CHECK(fd >= 0);
  CHECK(write(fd, "#!/bin/sh\npwd\n", 14) == 14 && close(fd) == 0);
  CHECK_OK(tapio_options_set_str(o, "cwd", dir));
  CHECK_OK(tapio_options_set_int(o, "stdin", TAPIO_STDIO_DEVNULL));
  /* a relative program is found from cwd, where the child runs */
  CHECK_OK(spawn_wait(loop, &p, argv, o));
  WAIT_FOR(loop, p.lost);
  CHECK_EQ(p.returncode, 0);
  CHECK_EQ(p.nout[1], strlen(dir) + 1);
  CHECK(memcmp(p.out[1], dir, strlen(dir)) == 0);
  CHECK_OK(tapio_options_set_str(o, "cwd", "/"));
  run_script(loop, &q, "pwd", o);
  CHECK_OUT(&q, 1, "/\n");
  CHECK(unlink(path) == 0 && rmdir(dir) == 0);
  free_loop(loop);
  prec_free(&p);
  prec_free(&q);
}

/* env replaces the environment (Python's env=); an empty one is empty;
 * the program is looked up in its PATH. */
static void env_replaced(void)
{
  tapio_loop *loop = new_loop();
  tapio_options *o = new_options(loop);
  const char *env[] = { "/usr/bin/env", NULL };
  const char *true_argv[] = { "true", NULL };
  prec p, q, r;
  prec_init(&p);
  prec_init(&q);
  prec_init(&r);
  CHECK_OK(tapio_options_add_str(o, "env", "A=1"));
  CHECK_OK(tapio_options_add_str(o, "env", "B=two words"));
  CHECK_OK(spawn_wait(loop, &p, env, o));
  tapio_options_free(o);
  WAIT_FOR(loop, p.lost);
  CHECK_OUT(&p, 1, "A=1\nB=two words\n");
  o = new_options(loop);
  CHECK_OK(tapio_options_add_str(o, "env", NULL)); /* given, and empty */
  CHECK_OK(spawn_wait(loop, &q, env, o));
  WAIT_FOR(loop, q.lost);
  CHECK_EQ(q.nout[1], 0);
  CHECK_EQ(q.returncode, 0);
  CHECK_OK(tapio_options_add_str(o, "env", "PATH=/nonexistent"));
  CHECK_ERR(spawn_wait(loop, &r, true_argv, o), TAPIO_ENOENT);
  tapio_options_free(o);
  free_loop(loop);
  prec_free(&p);
  prec_free(&q);
  prec_free(&r);
}

/* extend_env adds to the parent's environment, replacing same names. */
static void env_extended(void)
{
  tapio_loop *loop = new_loop();
  tapio_options *o = new_options(loop);
  prec p;
  prec_init(&p);
  CHECK(setenv("TAPIO_A", "parent", 1) == 0);
  CHECK(setenv("TAPIO_B", "parent", 1) == 0);
  CHECK_OK(tapio_options_add_str(o, "env", "TAPIO_A=child"));
  CHECK_OK(tapio_options_set_int(o, "extend_env", 1));
  run_script(loop, &p, "echo $TAPIO_A-$TAPIO_B", o);
  CHECK_OUT(&p, 1, "child-parent\n");
  free_loop(loop);
  prec_free(&p);
}

/* start_new_session: the child leads a session of its own (its session id
 * is its pid); without it, it shares ours. */
static void new_session(void)
{
  const char *argv[] = { "cut", "-d", " ", "-f", "6", "/proc/self/stat",
                         NULL };
  tapio_loop *loop = new_loop();
  tapio_options *o = new_options(loop);
  prec p, q;
  prec_init(&p);
  prec_init(&q);
  CHECK_OK(tapio_options_set_int(o, "start_new_session", 1));
  CHECK_OK(spawn_wait(loop, &p, argv, o));
  CHECK_OK(spawn_wait(loop, &q, argv, NULL));
  tapio_options_free(o);
  WAIT_FOR(loop, p.lost && q.lost);
  CHECK(p.nout[1] > 0 && q.nout[1] > 0);
  CHECK_EQ(atoi(p.out[1]), p.pid);
  CHECK_EQ(atoi(q.out[1]), getsid(0));
  free_loop(loop);
  prec_free(&p);
  prec_free(&q);
}

/* process_group 0: the child leads a group of its own (its group id is
 * its pid) in our session; with start_new_session too: refused, with
 * words. */
static void new_group(void)
{
  const char *argv[] = { "cut", "-d", " ", "-f", "5,6", "/proc/self/stat",
                         NULL };
  tapio_loop *loop = new_loop();
  tapio_options *o = new_options(loop);
  prec p;
  prec_init(&p);
  CHECK_OK(tapio_options_set_int(o, "process_group", 0));
  CHECK_OK(spawn_wait(loop, &p, argv, o));
  WAIT_FOR(loop, p.lost);
  CHECK(p.nout[1] > 0);
  CHECK_EQ(atoi(p.out[1]), p.pid);
  CHECK_EQ(atoi(strchr(p.out[1], ' ') + 1), getsid(0));
  CHECK_OK(tapio_options_set_int(o, "start_new_session", 1));
  CHECK_ERR(spawn_wait(loop, &p, argv, o), TAPIO_EINVAL);
  CHECK(strstr(tapio_loop_error_message(loop), "'process_group'") != NULL);
  tapio_options_free(o);
  free_loop(loop);
  prec_free(&p);
}

/* pass_fds: the child keeps a descriptor at its number, even one with
 * close-on-exec; without it the descriptor is not there. */
static void pass_fds_option(void)
{
  tapio_loop *loop = new_loop();
  tapio_options *o = new_options(loop);
  char script[64], got[16];
  int fds[2], eof;
  prec p, q;
  prec_init(&p);
  prec_init(&q);
  make_pipe(fds);
  snprintf(script, sizeof script, "echo passed >&%d", fds[1]);
  CHECK_OK(tapio_options_add_int(o, "pass_fds", fds[1]));
  run_script(loop, &p, script, o);
  CHECK_OK(shell_wait(loop, &q, script, NULL));
  WAIT_FOR(loop, q.lost);
  CHECK(q.returncode != 0);
  CHECK(close(fds[1]) == 0);
  raw_nonblock(fds[0]);
  CHECK_EQ(read_fd_all(loop, fds[0], got, sizeof got, &eof), 7);
  CHECK(eof && memcmp(got, "passed\n", 7) == 0);
  CHECK(close(fds[0]) == 0);
  free_loop(loop);
  prec_free(&p);
  prec_free(&q);
}

/* As many pass_fds as given (a bound of 256 refused more, in words that
 * did not name the option): 300 kept, each open in the child, which
 * lists its own descriptors (ls: 0, 1, 2, the 300, and its own one). */
static void pass_fds_many(void)
{
  const char *argv[] = { "ls", "-1", "/proc/self/fd", NULL };
  tapio_loop *loop = new_loop();
  tapio_options *o = stdio_opts(loop, TAPIO_STDIO_DEVNULL, TAPIO_STDIO_PIPE,
                                TAPIO_STDIO_DEVNULL);
  int fds[2], kept[300], i, lines = 0;
  char last[16];
  prec p;
  prec_init(&p);
  make_pipe(fds);
  for (i = 0; i < 300; i++) {
    kept[i] = dup(fds[1]);
    CHECK(kept[i] >= 0);
    CHECK_OK(tapio_options_add_int(o, "pass_fds", kept[i]));
  }
  CHECK_OK(spawn_wait(loop, &p, argv, o));
  tapio_options_free(o);
  WAIT_FOR(loop, p.lost);
  CHECK_EQ(p.returncode, 0);
  for (i = 0; i < (int)p.nout[1]; i++)
    lines += p.out[1][i] == '\n';
  CHECK_EQ(lines, 304);
  snprintf(last, sizeof last, "\n%d\n", kept[299]);
  CHECK(memmem(p.out[1], p.nout[1], last, strlen(last)) != NULL);
  for (i = 0; i < 300; i++)
    CHECK(close(kept[i]) == 0);
  CHECK(close(fds[0]) == 0 && close(fds[1]) == 0);
  free_loop(loop);
  prec_free(&p);
}

/* close_fds (the default) closes even a descriptor without close-on-exec;
 * close_fds off lets it through. Either way the child has none of
 * tapio's descriptors (P5: the stdin pipe is not inheritable): its fds
 * are 0, 1, 2 and what the parent left without close-on-exec. */
/* The numbers in text, sorted, as "0 1 2 ..." into out. */
static void sorted_fds(const char *text, size_t len, char *out, size_t size)
{
  int seen[1024] = { 0 }, i;
  size_t n = 0, k;
  for (k = 0; k < len; k++)
    if (text[k] >= '0' && text[k] <= '9' && (k == 0 || text[k - 1] < '0' ||
                                             text[k - 1] > '9'))
      seen[atoi(text + k) & 1023] = 1;
  out[0] = '\0';
  for (i = 0; i < 1024; i++)
    if (seen[i])
      n += (size_t)snprintf(out + n, size - n, n ? " %d" : "%d", i);
}

static void close_fds_option(void)
{
  tapio_loop *loop = new_loop();
  tapio_options *o = new_options(loop);
  char script[128], want[128], got[128];
  int fd = open("/dev/null", O_RDONLY), i;
  size_t n = 0;
  prec p, q;
  prec_init(&p);
  prec_init(&q);
  CHECK(fd >= 3);
  snprintf(script, sizeof script,
           "[ -e /proc/$$/fd/%d ] && echo open || echo closed", fd);
  run_script(loop, &p, script, NULL);
  CHECK_OUT(&p, 1, "closed\n");
  CHECK_OK(tapio_options_set_int(o, "close_fds", 0));
  run_script(loop, &q, "ls /proc/$$/fd", o); /* the shell's, not ls's */
  for (i = 0; i < 1024; i++) {
    int fl = fcntl(i, F_GETFD);
    if (i < 3 || (fl >= 0 && !(fl & FD_CLOEXEC)))
      n += (size_t)snprintf(want + n, sizeof want - n, n ? " %d" : "%d", i);
  }
  sorted_fds(q.out[1], q.nout[1], got, sizeof got);
  CHECK_STR(got, want);
  CHECK(close(fd) == 0);
  free_loop(loop);
  prec_free(&p);
  prec_free(&q);
}


/* ---- executable, pipesize ------------------------------------------------ */

/* tapio_subprocess_shell (shell_wait runs sh -c with subprocess_exec),
 * waited for as spawn_wait waits. */
static int real_shell_wait(tapio_loop *loop, prec *p, const char *cmd,
                           const tapio_options *o)
{
  conn_wait w = { 0 };
  int rc = tapio_subprocess_shell(loop, cmd, &prec_proto, p, o,
                                  on_connected, &w);
  if (rc < 0)
    return rc;
  WAIT_FOR(loop, w.done);
  CHECK_EQ(w.status, 0);
  return 0;
}

/* executable: the file run, while argv[0] stays the program's name
 * (exec); for the shell, the shell run and its $0 too (Python's). */
static void executable_option(void)
{
  tapio_loop *loop = new_loop();
  tapio_options *o = new_options(loop);
  const char *argv[] = { "mysh", "-c", "echo $0", NULL };
  prec p, q, r;
  prec_init(&p);
  prec_init(&q);
  prec_init(&r);
  CHECK_OK(tapio_options_set_int(o, "stdin", TAPIO_STDIO_DEVNULL));
  CHECK_OK(tapio_options_set_str(o, "executable", "/bin/sh"));
  CHECK_OK(spawn_wait(loop, &p, argv, o));
  WAIT_FOR(loop, p.lost);
  CHECK_OUT(&p, 1, "mysh\n");
  CHECK_OK(tapio_options_set_str(o, "executable", "sh")); /* from PATH */
  CHECK_OK(real_shell_wait(loop, &q, "echo $0", o));
  WAIT_FOR(loop, q.lost);
  CHECK_OUT(&q, 1, "sh\n");
  CHECK_OK(tapio_options_set_str(o, "executable", "/nonexistent/sh"));
  CHECK_ERR(spawn_wait(loop, &r, argv, o), TAPIO_ENOENT);
  tapio_options_free(o);
  free_loop(loop);
  prec_free(&p);
  prec_free(&q);
  prec_free(&r);
}

static int pipe_size_of(prec *p, int fd)
{
  return fcntl(tapio_transport_get_fd(pipe_of(p, fd)), F_GETPIPE_SZ);
}

/* pipesize: each pipe made for the child has that size; without it, the
 * system's. */
static void pipesize_option(void)
{
  tapio_loop *loop = new_loop();
  tapio_options *o = new_options(loop);
  prec p, q;
  int fd;
  prec_init(&p);
  prec_init(&q);
  CHECK_OK(tapio_options_set_int(o, "pipesize", 1 << 18));
  CHECK_OK(shell_wait(loop, &p, "cat", o));
  CHECK_OK(shell_wait(loop, &q, "cat", NULL));
  tapio_options_free(o);
  for (fd = 0; fd < 3; fd++) {
    CHECK_EQ(pipe_size_of(&p, fd), 1 << 18);
    CHECK(pipe_size_of(&q, fd) > 0 && pipe_size_of(&q, fd) != 1 << 18);
  }
  CHECK_OK(tapio_transport_close(pipe_of(&p, 0)));
  CHECK_OK(tapio_transport_close(pipe_of(&q, 0)));
  WAIT_FOR(loop, p.lost && q.lost);
  CHECK_EQ(p.returncode, 0);
  free_loop(loop);
  prec_free(&p);
  prec_free(&q);
}

/* ---- user, group, extra_groups, umask ------------------------------------ */

static void need_root(void)
{
  if (geteuid() != 0)
    SKIP("not root: the child cannot change its user and groups");
}

/* Python's user, group, extra_groups: by name or number; the child says
 * what it is. user alone keeps the parent's groups, as Python's. */
static void ids_as_asked(void)
{
  tapio_loop *loop;
  tapio_options *o;
  char want[64];
  prec p, q;
  need_root();
  loop = new_loop();
  o = new_options(loop);
  prec_init(&p);
  prec_init(&q);
  CHECK_OK(tapio_options_set_str(o, "user", "nobody"));
  CHECK_OK(tapio_options_set_int(o, "group", 65534));
  CHECK_OK(tapio_options_add_str(o, "extra_groups", "nogroup"));
  CHECK_OK(tapio_options_add_int(o, "extra_groups", 4242));
  run_script(loop, &p, "id -u; id -g; id -G", o);
  CHECK_OUT(&p, 1, "65534\n65534\n65534 4242\n");
  o = new_options(loop);
  CHECK_OK(tapio_options_set_int(o, "user", 65534));
  run_script(loop, &q, "id -u; id -g", o);
  snprintf(want, sizeof want, "65534\n%d\n", (int)getgid());
  CHECK_OUT(&q, 1, want);
  free_loop(loop);
  prec_free(&p);
  prec_free(&q);
}

/* umask: the child's; the parent's stays. */
static void umask_option(void)
{
  tapio_loop *loop = new_loop();
  tapio_options *o = new_options(loop);
  mode_t mine = umask(022);
  prec p, q;
  prec_init(&p);
  prec_init(&q);
  CHECK_OK(tapio_options_set_int(o, "umask", 027));
  run_script(loop, &p, "umask", o);
  CHECK_OUT(&p, 1, "0027\n");
  o = new_options(loop);
  CHECK_OK(tapio_options_set_int(o, "umask", 0));
  run_script(loop, &q, "umask", o);
  CHECK_OUT(&q, 1, "0000\n");
  CHECK_EQ(umask(mine), 022);
  free_loop(loop);
  prec_free(&p);
  prec_free(&q);
}

/* Values of the wrong type or range are refused when set; a name that
 * does not exist is the call's TAPIO_EINVAL, naming the call and the
 * option, with no child left. */
static void id_options_refused(void)
{
  tapio_loop *loop = new_loop();
  tapio_options *o = new_options(loop);
  const char *argv[] = { "true", NULL };
  int type = 0;
  prec p;
  prec_init(&p);
  CHECK_ERR(tapio_options_set_int(o, "umask", 01000), TAPIO_EINVAL);
  CHECK_ERR(tapio_options_set_int(o, "umask", -2), TAPIO_EINVAL);
  CHECK_ERR(tapio_options_set_str(o, "umask", "022"), TAPIO_EINVAL);
  CHECK_ERR(tapio_options_set_int(o, "user", -1), TAPIO_EINVAL);
  CHECK_ERR(tapio_options_set_int(o, "group", 4294967295LL), TAPIO_EINVAL);
  CHECK_ERR(tapio_options_add_int(o, "extra_groups", -1), TAPIO_EINVAL);
  CHECK_ERR(tapio_options_set_int(o, "pipesize", -2), TAPIO_EINVAL);
  CHECK_OK(tapio_option_info(TAPIO_CALL_SUBPROCESS_EXEC, "user", &type, NULL,
                             NULL, NULL));
  CHECK_EQ(type, TAPIO_OPTION_ID);
  CHECK_OK(tapio_option_info(TAPIO_CALL_SUBPROCESS_SHELL, "extra_groups",
                             &type, NULL, NULL, NULL));
  CHECK_EQ(type, TAPIO_OPTION_ID_LIST);
  CHECK_OK(tapio_options_set_int(o, "user", 65534));
  CHECK_OK(tapio_options_set_str(o, "user", "tapio-nosuch")); /* replaces */
  CHECK_ERR(spawn_wait(loop, &p, argv, o), TAPIO_EINVAL);
  CHECK_STR(tapio_loop_error_message(loop), "subprocess_exec: option "
            "'user': no user named 'tapio-nosuch'");
  tapio_options_free(o);
  o = new_options(loop);
  CHECK_OK(tapio_options_set_str(o, "group", "tapio-nosuch"));
  CHECK_ERR(real_shell_wait(loop, &p, "true", o), TAPIO_EINVAL);
  CHECK_STR(tapio_loop_error_message(loop), "subprocess_shell: option "
            "'group': no group named 'tapio-nosuch'");
  tapio_options_free(o);
  o = new_options(loop);
  CHECK_OK(tapio_options_add_str(o, "extra_groups", "nogroup"));
  CHECK_OK(tapio_options_add_str(o, "extra_groups", "tapio-nosuch"));
  CHECK_ERR(spawn_wait(loop, &p, argv, o), TAPIO_EINVAL);
  CHECK_STR(tapio_loop_error_message(loop), "subprocess_exec: option "
            "'extra_groups': no group named 'tapio-nosuch'");
  tapio_options_free(o);
  CHECK(waitpid(-1, NULL, WNOHANG) < 0 && errno == ECHILD);
  free_loop(loop);
  prec_free(&p);
}

/* What the child of each way printed: the same. */
static void check_same_output(prec p[2])
{
  if (p[0].nout[1] != p[1].nout[1] ||
      memcmp(p[0].out[1], p[1].out[1], p[0].nout[1]) != 0)
    printf("posix_spawn:\n%.*s\nfork:\n%.*s\n", (int)p[0].nout[1],
           p[0].out[1], (int)p[1].nout[1], p[1].out[1]);
  CHECK_EQ(p[0].nout[1], p[1].nout[1]);
  CHECK(memcmp(p[0].out[1], p[1].out[1], p[0].nout[1]) == 0);
  p[1].out[1][p[1].nout[1] - 1] = '\0'; /* the last newline */
}

/* glibc's own signals (32, 33) ignored, as a parent may have been
 * started with them (CI's was): glibc's sigaction refuses them, so the
 * system call, with the kernel's struct of x86-64 and arm64. */
static void ignore_glibcs_own(void)
{
#if defined(__x86_64__) || defined(__aarch64__)
  struct {
    void (*handler)(int);
    unsigned long flags;
    void (*restorer)(void);
    unsigned long mask;
  } ign = { SIG_IGN, 0, NULL, 0 };
  int sig;
  for (sig = 32; sig <= 33; sig++)
    CHECK(syscall(SYS_rt_sigaction, sig, &ign, NULL, sizeof ign.mask) == 0);
#endif
}

/* The signals of a program the child execs first (grep, reading its own
 * status): a shell would not do, as dash empties its mask when it starts
 * and blocks every signal for a moment around each fork. Every signal
 * at its default and none blocked, whatever the parent's. */
static void same_signals_both_ways(tapio_loop *loop)
{
  const char *argv[] = { "grep", "-E", "^Sig(Ign|Blk)", "/proc/self/status",
                         NULL };
  sigset_t usr1;
  prec p[2];
  int i;
  ignore_glibcs_own();
  CHECK(signal(SIGHUP, SIG_IGN) != SIG_ERR);
  sigemptyset(&usr1);
  sigaddset(&usr1, SIGUSR1);
  CHECK(sigprocmask(SIG_BLOCK, &usr1, NULL) == 0);
  for (i = 0; i < 2; i++) {
    tapio_options *o = stdio_opts(loop, TAPIO_STDIO_DEVNULL, TAPIO_STDIO_PIPE,
                                  TAPIO_STDIO_STDOUT);
    if (i)
      CHECK_OK(tapio_options_set_int(o, "umask", 022)); /* the fork's */
    prec_init(&p[i]);
    CHECK_OK(spawn_wait(loop, &p[i], argv, o));
    tapio_options_free(o);
    WAIT_FOR(loop, p[i].lost);
    CHECK_EQ(p[i].returncode, 0);
  }
  check_same_output(p);
  CHECK_STR(p[1].out[1], "SigBlk:\t0000000000000000\n"
                         "SigIgn:\t0000000000000000");
  prec_free(&p[0]);
  prec_free(&p[1]);
}

/* The fork (umask given) carries out the steps posix_spawn does: the
 * same descriptors (pass_fds kept, close-on-exec cleared; stderr into
 * stdout; the rest closed), cwd, session and signals. */
static void same_start_both_ways(void)
{
  const char *script =
      "ls /proc/$$/fd; pwd; [ $(cut -d ' ' -f 6 /proc/$$/stat) = $$ ] && "
      "echo leader; echo err >&2";
  tapio_loop *loop = new_loop();
  tapio_options *o[2];
  mode_t mine = umask(022);
  char fdtext[16];
  int fds[2], i;
  prec p[2];
  make_pipe(fds);
  for (i = 0; i < 2; i++) {
    prec_init(&p[i]);
    o[i] = stdio_opts(loop, TAPIO_STDIO_DEVNULL, TAPIO_STDIO_PIPE,
                      TAPIO_STDIO_STDOUT);
    CHECK_OK(tapio_options_add_int(o[i], "pass_fds", fds[1]));
    CHECK_OK(tapio_options_set_str(o[i], "cwd", "/"));
    CHECK_OK(tapio_options_set_int(o[i], "start_new_session", 1));
  }
  CHECK_OK(tapio_options_set_int(o[1], "umask", 022)); /* the fork's */
  for (i = 0; i < 2; i++)
    run_script(loop, &p[i], script, o[i]);
  check_same_output(p);
  snprintf(fdtext, sizeof fdtext, "\n%d\n", fds[1]);
  CHECK(strstr(p[1].out[1], "0\n1\n2\n") == p[1].out[1]);
  CHECK(strstr(p[1].out[1], fdtext) != NULL);
  CHECK(strstr(p[1].out[1], "\n/\nleader\nerr") != NULL);
  CHECK(close(fds[0]) == 0 && close(fds[1]) == 0);
  same_signals_both_ways(loop);
  umask(mine);
  free_loop(loop);
  prec_free(&p[0]);
  prec_free(&p[1]);
}

/* A missing cwd or program, a cwd that is a file: the same error from
 * the fork as from posix_spawn, no child left. */
static void same_errors_both_ways(void)
{
  tapio_loop *loop = new_loop();
  const char *missing[] = { "tapio-no-such-program", NULL };
  const char *argv[] = { "true", NULL };
  int i;
  prec p;
  prec_init(&p);
  for (i = 0; i < 2; i++) {
    tapio_options *o = new_options(loop);
    if (i)
      CHECK_OK(tapio_options_set_int(o, "umask", 022)); /* the fork's */
    /* a PATH of directories anyone may search (not root's own) */
    CHECK_OK(tapio_options_add_str(o, "env", "PATH=/usr/bin:/bin"));
    CHECK_ERR(spawn_wait(loop, &p, missing, o), TAPIO_ENOENT);
    CHECK_OK(tapio_options_set_str(o, "cwd", "/nonexistent"));
    CHECK_ERR(spawn_wait(loop, &p, argv, o), TAPIO_ENOENT);
    CHECK_OK(tapio_options_set_str(o, "cwd", "/etc/passwd"));
    CHECK_ERR(spawn_wait(loop, &p, argv, o), TAPIO_ENOTDIR);
    tapio_options_free(o);
  }
  CHECK(waitpid(-1, NULL, WNOHANG) < 0 && errno == ECHILD);
  free_loop(loop);
  prec_free(&p);
}

/* A step that fails in the fork's child is the call's error, with words
 * where the program is not to blame, and the child is reaped: a program
 * only root may run, run as nobody (execve's EACCES); then, as nobody,
 * becoming root (setreuid's, setregid's, setgroups's EPERM) and a pipe
 * above the size an unprivileged process may ask for. */
static void refused_in_the_child(void)
{
  tapio_loop *loop;
  tapio_options *o;
  char dir[] = "/tmp/tapio-ids-XXXXXX", path[64], big[32];
  const char *argv[] = { path, NULL }, *true_argv[] = { "true", NULL };
  int fd;
  FILE *f;
  prec p;
  need_root();
  loop = new_loop();
  prec_init(&p);
  CHECK(mkdtemp(dir) != NULL && chmod(dir, 0755) == 0);
  snprintf(path, sizeof path, "%s/rootonly", dir);
  fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0700);
  CHECK(fd >= 0);
  CHECK(write(fd, "#!/bin/sh\ntrue\n", 15) == 15 && close(fd) == 0);
  o = new_options(loop);
  CHECK_OK(tapio_options_set_int(o, "user", 65534));
  CHECK_ERR(spawn_wait(loop, &p, argv, o), TAPIO_EACCES);
  CHECK(waitpid(-1, NULL, WNOHANG) < 0 && errno == ECHILD);
  CHECK(unlink(path) == 0 && rmdir(dir) == 0);
  tapio_options_free(o);
  /* this test's process becomes nobody */
  CHECK(setgroups(0, NULL) == 0 && setgid(65534) == 0 &&
        setuid(65534) == 0);
  o = new_options(loop);
  CHECK_OK(tapio_options_set_int(o, "user", 0));
  CHECK_ERR(spawn_wait(loop, &p, true_argv, o), TAPIO_EPERM);
  CHECK_STR(tapio_loop_error_message(loop), "cannot run 'true': cannot "
            "become user 0 (setreuid): operation not permitted");
  tapio_options_free(o);
  o = new_options(loop);
  CHECK_OK(tapio_options_set_int(o, "group", 0));
  CHECK_ERR(spawn_wait(loop, &p, true_argv, o), TAPIO_EPERM);
  CHECK_STR(tapio_loop_error_message(loop), "cannot run 'true': cannot "
            "become group 0 (setregid): operation not permitted");
  tapio_options_free(o);
  o = new_options(loop);
  CHECK_OK(tapio_options_add_str(o, "extra_groups", NULL)); /* none */
  CHECK_ERR(spawn_wait(loop, &p, true_argv, o), TAPIO_EPERM);
  CHECK_STR(tapio_loop_error_message(loop), "cannot run 'true': cannot "
            "set extra_groups (setgroups): operation not permitted");
  tapio_options_free(o);
  CHECK(waitpid(-1, NULL, WNOHANG) < 0 && errno == ECHILD);
  f = fopen("/proc/sys/fs/pipe-max-size", "r");
  CHECK(f != NULL && fgets(big, sizeof big, f) != NULL && fclose(f) == 0);
  o = new_options(loop);
  CHECK_OK(tapio_options_set_int(o, "pipesize", 2LL * atoll(big)));
  CHECK_ERR(spawn_wait(loop, &p, true_argv, o), TAPIO_EPERM);
  snprintf(path, sizeof path, "cannot run 'true': pipesize %lld: "
           "operation not permitted", 2LL * atoll(big));
  CHECK_STR(tapio_loop_error_message(loop), path);
  tapio_options_free(o);
  free_loop(loop);
  prec_free(&p);
}

TEST_MAIN(
  TEST(stderr_into_stdout),
  TEST(devnull_stdio),
  TEST(given_descriptors),
  TEST(inherited_stdout),
  TEST(parent_stdin_closed),
  TEST(parent_stdout_closed),
  TEST(cwd_option),
  TEST(env_replaced),
  TEST(env_extended),
  TEST(new_session),
  TEST(new_group),
  TEST(pass_fds_option),
  TEST(pass_fds_many),
  TEST(close_fds_option),
  TEST(executable_option),
  TEST(pipesize_option),
  TEST(ids_as_asked),
  TEST(umask_option),
  TEST(id_options_refused),
  TEST(same_start_both_ways),
  TEST(same_errors_both_ways),
  TEST(refused_in_the_child)
)
