/* `sh -c cat` children with piped stdio: what cat gives back is a prefix
 * of what it was given; connection_lost comes last, after the exit and
 * every pipe's end; a retained pipe is freed only once released. */
#include "chaos.h"

static void proc_made(void *ud, tapio_transport *t)
{
  proc *p = ud;
  made(&p->a, t);
  if (tapio_transport_retain(t) != TAPIO_ENOTSUP)
    BUG(&p->a.h, NULL, "a subprocess transport could be retained");
  proc_act(&p->a);
}

/* Last: after the exit and every pipe's end. */
static void proc_lost(void *ud, tapio_transport *t, int code,
                      const char *msg)
{
  proc *p = ud;
  int i;
  if (!p->exited)
    BUG(&p->a.h, NULL, "connection_lost before process_exited");
  for (i = 0; i < 3; i++)
    if (!p->pipe_lost[i] || tapio_subprocess_get_pipe_transport(t, i))
      BUG(&p->a.h, NULL, "connection_lost with pipe %d open", i);
  lost(&p->a, t, code, msg);
}

static void proc_data(void *ud, tapio_transport *t, int fd, const char *data,
                      size_t len)
{
  proc *p = ud;
  size_t i;
  enter(&p->a, t, fd == 1 ? "stdout" : "stderr");
  if ((fd != 1 && fd != 2) || p->pipe_lost[fd] || !len)
    BUG(&p->a.h, NULL, "pipe_data_received fd %d (lost %d) len %zu", fd,
        fd == 1 || fd == 2 ? p->pipe_lost[fd] : -1, len);
  if (fd == 1) {
    if (p->received + len > p->written)
      BUG(&p->a.h, NULL, "cat said %llu bytes; it was given %llu",
          (unsigned long long)(p->received + len),
          (unsigned long long)p->written);
    for (i = 0; i < len; i++)
      if ((unsigned char)data[i] != pat(p->sid, p->received + i))
        BUG(&p->a.h, NULL, "byte %llu from cat is wrong",
            (unsigned long long)(p->received + i));
    p->received += len;
  }
  proc_act(&p->a);
}

static void proc_pipe_lost(void *ud, tapio_transport *t, int fd, int code,
                           const char *msg)
{
  proc *p = ud;
  char what[40];
  snprintf(what, sizeof what, "pipe %d lost %s", fd,
           code ? tapio_errname(code) : "0");
  enter(&p->a, t, what);
  if (fd < 0 || fd > 2 || p->pipe_lost[fd])
    BUG(&p->a.h, NULL, "pipe_connection_lost %d twice", fd);
  if ((code == 0) != (msg == NULL))
    BUG(&p->a.h, NULL, "pipe_connection_lost code %d message %s", code,
        msg ? msg : "NULL");
  p->pipe_lost[fd] = 1;
  p->pipe_code[fd] = code;
  p->in_pipe_lost = fd + 1;
  proc_act(&p->a);
  p->in_pipe_lost = 0;
}

static void proc_exited(void *ud, tapio_transport *t)
{
  proc *p = ud;
  enter(&p->a, t, "exited");
  if (p->exited++)
    BUG(&p->a.h, NULL, "process_exited twice");
  p->exit_known = tapio_subprocess_get_returncode(t, &p->returncode);
  if (!p->exit_known)
    BUG(&p->a.h, NULL, "process_exited without a returncode");
  proc_act(&p->a);
}

static const tapio_subprocess_protocol proc_proto = {
  .size = sizeof(tapio_subprocess_protocol),
  .connection_made = proc_made,
  .connection_lost = proc_lost,
  .pause_writing = on_pause,
  .resume_writing = on_resume,
  .pipe_data_received = proc_data,
  .pipe_connection_lost = proc_pipe_lost,
  .process_exited = proc_exited,
};

static void proc_connected(void *ud, int status, tapio_transport *t)
{
  proc *p = ud;
  note(&p->a.h, "%.3f completion %s", now(p->a.c), tapio_errname(status));
  p->a.pending = 0;
  if (status != 0 || !p->a.made || t != p->a.t)
    BUG(&p->a.h, NULL, "subprocess completion %s", tapio_errname(status));
}

/* kill (term 0) or terminate (1) the child, unless it is gone (one that
 * exited is not terminated: a kill then checks ESRCH's answer). */
void proc_kill(proc *p, int term)
{
  const char *what = term ? "terminate" : "kill";
  int rc;
  if (!p->a.t || p->a.lost || (term && p->exited))
    return;
  note(&p->a.h, "%.3f %s", now(p->a.c), what);
  p->killed = 1;
  rc = term ? tapio_subprocess_terminate(p->a.t)
            : tapio_subprocess_kill(p->a.t);
  if (rc != 0 && rc != TAPIO_ESRCH)
    BUG(&p->a.h, NULL, "%s answered %s", what, tapio_errname(rc));
}

static void proc_write(proc *p)
{
  chaos *c = p->a.c;
  tapio_transport *in = tapio_subprocess_get_pipe_transport(p->a.t, 0);
  size_t n = rnd_size(c, c->max_write / 4);
  int closing, rc;
  if (!in || c->writing || !n)
    return;
  closing = tapio_transport_is_closing(in);
  pat_fill(c->scratch, n, p->sid, p->written);
  note(&p->a.h, "%.3f write %zu", now(c), n);
  p->written += n;
  write_begin(c, "write", p);
  rc = tapio_transport_write(in, c->scratch, n);
  write_end(c);
  if (rc != 0)
    p->written -= n;
  if (rc != (closing ? TAPIO_ECLOSED : 0))
    BUG(&p->a.h, NULL, "stdin write answered %s (closing %d)",
        tapio_errname(rc), closing);
}

void proc_pipe_ref(proc *p, int fd, int retain)
{
  tapio_transport *pt = NULL;
  if (retain && !p->a.lost) /* the subprocess transport is still there */
    pt = tapio_subprocess_get_pipe_transport(p->a.t, fd);
  if (retain && pt && !p->pref[fd]) {
    note(&p->a.h, "%.3f retain pipe %d", now(p->a.c), fd);
    CHECK_OK(tapio_transport_retain(pt));
    p->pref[fd] = pt;
    own(p->a.c, &p->a.h, pt, OWN_PIPE, p, fd);
  } else if (!retain && p->pref[fd]) {
    note(&p->a.h, "%.3f release pipe %d", now(p->a.c), fd);
    pt = p->pref[fd];
    p->pref[fd] = NULL;
    tapio_transport_release(pt);
    if (p->pipe_lost[fd] && p->in_pipe_lost != fd + 1 && !p->pfreed[fd])
      BUG(&p->a.h, NULL, "the release of ended pipe %d kept it", fd);
  }
}

void proc_do(actor *a, int what)
{
  proc *p = (proc *)a;
  chaos *c = a->c;
  tapio_transport *pt;
  switch (what) {
  case A_WRITE: case A_WRITELINES: proc_write(p); break;
  case A_WRITE_EOF: case A_END:
    if ((pt = tapio_subprocess_get_pipe_transport(p->a.t, 0)) != NULL) {
      note(&p->a.h, "%.3f stdin write_eof", now(c));
      p->a.closed = 1;
      CHECK_OK(tapio_transport_write_eof(pt));
    }
    break;
  case A_PAUSE_R: case A_RESUME_R:
    if ((pt = tapio_subprocess_get_pipe_transport(p->a.t, 1)) != NULL) {
      note(&p->a.h, "%.3f stdout %s", now(c), what == A_PAUSE_R ? "pause"
                                                              : "resume");
      CHECK_OK(what == A_PAUSE_R ? tapio_transport_pause_reading(pt)
                              : tapio_transport_resume_reading(pt));
    }
    break;
  case A_CLOSE: case A_ABORT:
    note(&p->a.h, "%.3f %s", now(c), what == A_CLOSE ? "close" : "abort");
    p->dropped = 1;
    CHECK_OK(what == A_CLOSE ? tapio_transport_close(p->a.t)
                          : tapio_transport_abort(p->a.t));
    break;
  case A_FAIL:
    if ((pt = tapio_subprocess_get_pipe_transport(p->a.t, 1 + rnd(c, 2)))) {
      note(&p->a.h, "%.3f close a read pipe", now(c));
      p->dropped = 1;
      CHECK_OK(tapio_transport_close(pt));
    }
    break;
  case A_RETAIN: proc_pipe_ref(p, (int)rnd(c, 3), 1); break;
  case A_RELEASE: proc_pipe_ref(p, (int)rnd(c, 3), 0); break;
  case A_KILL: /* it ends the child: now and then */
    if (chance(c, 20))
      proc_kill(p, !chance(c, 50));
    break;
  default: break;
  }
}

void proc_act(actor *a)
{
  draw(a, 1, proc_do);
}

void proc_start(chaos *c)
{
  proc *p;
  if (c->nprocs == MAX_PROCS || c->next_sid == MAX_SIDS)
    return;
  p = &c->procs[c->nprocs++];
  p->a.c = c;
  p->a.act = proc_act;
  p->sid = c->next_sid++;
  p->a.budget = 5 + (int)rnd(c, 40);
  snprintf(p->a.h.name, sizeof p->a.h.name, "cat#%d(sid %u)", c->nprocs - 1,
           p->sid);
  p->a.pending = 1;
  c->sync = "a create call";
  CHECK_OK(tapio_subprocess_shell(c->loop, "exec cat", &proc_proto, p, NULL,
                                  proc_connected, p));
  c->sync = NULL;
}
