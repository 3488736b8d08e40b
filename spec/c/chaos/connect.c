/* Where stream ends come from: servers (TCP, Unix, TLS) and their
 * clients, pipes, socketpairs and the testing kit's memory pairs. */
#include "chaos.h"

/* ---- Servers ----------------------------------------------------------- */

static int chaos_factory(void *ud, tapio_server *s,
                         const tapio_protocol **proto, void **proto_ud)
{
  srvact *sa = ud;
  ep *e;
  note(&sa->h, "%.3f factory", now(sa->c));
  check_sync(sa->c, &sa->h, "the protocol factory", NULL);
  if (s != sa->s)
    BUG(&sa->h, NULL, "factory for server %p, not %p", (void *)s,
        (void *)sa->s);
  if (sa->released)
    BUG(&sa->h, NULL, "factory called after tapio_server_release");
  e = ep_new(sa->c, sa->kind, 1, 1, 1);
  if (!e)
    return TAPIO_EAGAIN; /* full: rejected, as the ABI says */
  e->srv = sa;
  *proto = tables[e->table];
  *proto_ud = e;
  return 0;
}

static void srv_closed(void *ud, tapio_server *s)
{
  srvact *sa = ud;
  note(&sa->h, "%.3f wait_closed", now(sa->c));
  check_sync(sa->c, &sa->h, "wait_closed's callback", NULL);
  if (s != sa->s || sa->closed_cb++)
    BUG(&sa->h, NULL, "wait_closed callback twice or for another server");
  if (tapio_server_client_count(s) != 0)
    BUG(&sa->h, NULL, "wait_closed with %zu clients",
        tapio_server_client_count(s));
}

static void srv_created(void *ud, int status, tapio_server *s)
{
  srvact *sa = ud;
  note(&sa->h, "%.3f created %s", now(sa->c), tapio_errname(status));
  if (status != 0 || !s)
    BUG(&sa->h, NULL, "create_server failed: %s", tapio_errname(status));
  sa->s = s;
  sa->created = 1;
  own(sa->c, &sa->h, s, OWN_SRV, sa, 0);
  CHECK_OK(tapio_server_wait_closed(s, srv_closed, sa));
  if (sa->kind != K_UNIX)
    CHECK_OK(tapio_server_get_address(s, 0, NULL, 0, &sa->port, NULL));
}

/* A server is ours to call until we release it. */
void srv_close(srvact *sa)
{
  if (!sa->s || sa->released)
    return;
  note(&sa->h, "%.3f close", now(sa->c));
  sa->closed = 1;
  sa->c->sync = "tapio_server_close";
  CHECK_OK(tapio_server_close(sa->s));
  sa->c->sync = NULL;
}

void srv_release(srvact *sa)
{
  if (!sa->s || sa->released)
    return;
  note(&sa->h, "%.3f release", now(sa->c));
  sa->released = 1;
  sa->closed = 1;
  sa->c->sync = "tapio_server_release";
  tapio_server_release(sa->s);
  sa->c->sync = NULL;
}

/* close_clients (abort 0) or abort_clients (1), noting it on each. */
void srv_clients(srvact *sa, int abort)
{
  chaos *c = sa->c;
  int i;
  if (!sa->s || sa->released)
    return;
  note(&sa->h, "%.3f %s_clients", now(c), abort ? "abort" : "close");
  for (i = 0; i < MAX_EPS; i++) {
    ep *e = &c->eps[i];
    if (e->used && e->srv == sa && e->a.made && !e->a.lost) {
      note(&e->a.h, "%.3f by server's %s_clients", now(c),
           abort ? "abort" : "close");
      closing(e, abort);
    }
  }
  c->sync = abort ? "abort_clients" : "close_clients";
  CHECK_OK(abort ? tapio_server_abort_clients(sa->s)
                 : tapio_server_close_clients(sa->s));
  c->sync = NULL;
}

void listener_start(chaos *c, int kind)
{
  static const char *const hosts[] = { "127.0.0.1" };
  srvact *sa = &c->srvs[c->nsrvs];
  CHECK(c->nsrvs < MAX_SRVS);
  c->nsrvs++;
  sa->c = c;
  sa->kind = kind;
  snprintf(sa->h.name, sizeof sa->h.name, "%s.listener#%d",
           kind_name[kind], c->nsrvs - 1);
  if (kind == K_UNIX) {
    snprintf(sa->path, sizeof sa->path, "%s/s%d", c->dir, c->nsrvs);
    CHECK_OK(tapio_create_unix_server(c->loop, sa->path, chaos_factory, sa,
                                      NULL, srv_created, sa));
  } else {
    CHECK_OK(tapio_create_server(c->loop, hosts, 1, 0, chaos_factory, sa,
                                 kind == K_TLS ? c->srv_tls : NULL,
                                 srv_created, sa));
  }
}

/* A client of a random server, now. */
void client_start(chaos *c)
{
  srvact *sa = &c->srvs[rnd(c, (unsigned)c->nsrvs)];
  ep *e;
  int rc;
  if (!sa->created || c->winding)
    return;
  e = ep_new(c, sa->kind, 0, 1, 1);
  if (!e)
    return;
  e->a.pending = 1;
  note(&e->a.h, "%.3f connect to %s", now(c), sa->h.name);
  c->sync = "a create call";
  if (sa->kind == K_UNIX)
    rc = tapio_create_unix_connection(c->loop, sa->path, tables[e->table],
                                      e, NULL, ep_connected, e);
  else
    rc = tapio_create_connection(c->loop, "127.0.0.1", sa->port,
                                 tables[e->table], e,
                                 sa->kind == K_TLS ? c->cli_tls : NULL,
                                 ep_connected, e);
  c->sync = NULL;
  if (rc != 0)
    BUG(&e->a.h, NULL, "create connection: %s", tapio_errname(rc));
}

/* ---- Pipes, socketpairs, memory pairs ---------------------------------- */

void pipe_start(chaos *c)
{
  int fds[2], rc;
  ep *r = ep_new(c, K_PIPE, 0, 1, 0), *w = r ? ep_new(c, K_PIPE, 0, 0, 1)
                                              : NULL;
  if (!w)
    return;
  CHECK(pipe2(fds, O_CLOEXEC) == 0);
  snprintf(r->a.h.name, sizeof r->a.h.name, "pipe.read#%d", (int)(r - c->eps));
  snprintf(w->a.h.name, sizeof w->a.h.name, "pipe.write#%d(sid %u)",
           (int)(w - c->eps), w->sid);
  r->a.pending = w->a.pending = 1;
  c->sync = "a create call";
  rc = tapio_connect_read_pipe(c->loop, fds[0], tables[r->table], r, NULL,
                               ep_connected, r);
  if (rc == 0)
    rc = tapio_connect_write_pipe(c->loop, fds[1], tables[w->table], w,
                                  NULL, ep_connected, w);
  c->sync = NULL;
  if (rc != 0)
    BUG(&r->a.h, &w->a.h, "connect pipe: %s", tapio_errname(rc));
}

/* Both ends of a socketpair, through connect_accepted_socket; the second
 * plays the server's part in STARTTLS. */
void socketpair_start(chaos *c)
{
  int fds[2], i;
  ep *e[2];
  e[0] = ep_new(c, K_UNIX, 0, 1, 1);
  e[1] = e[0] ? ep_new(c, K_UNIX, 1, 1, 1) : NULL;
  if (!e[1])
    return;
  CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0);
  for (i = 0; i < 2; i++) {
    snprintf(e[i]->a.h.name, sizeof e[i]->a.h.name, "pair.%c#%d(sid %u)",
             "ab"[i], (int)(e[i] - c->eps), e[i]->sid);
    e[i]->a.pending = 1;
    c->sync = "a create call";
    CHECK_OK(tapio_connect_accepted_socket(c->loop, fds[i],
                                           tables[e[i]->table], e[i], NULL,
                                           ep_connected, e[i]));
    c->sync = NULL;
  }
}

/* A memory pair of the testing kit (virtual rounds), its reads cut in
 * pieces now and then. */
void mempair_start(chaos *c)
{
  tapio_transport *t[2];
  ep *e[2];
  int i;
  e[0] = ep_new(c, K_MEM, 0, 1, 1);
  e[1] = e[0] ? ep_new(c, K_MEM, 1, 1, 1) : NULL;
  if (!e[1])
    return;
  c->sync = "a create call";
  CHECK_OK(tapio_memory_pair(c->loop, tables[e[0]->table], e[0],
                             tables[e[1]->table], e[1], &t[0], &t[1]));
  c->sync = NULL;
  for (i = 0; i < 2; i++) {
    snprintf(e[i]->a.h.name, sizeof e[i]->a.h.name, "mem.%c#%d(sid %u)",
             "ab"[i], (int)(e[i] - c->eps), e[i]->sid);
    if (chance(c, 50))
      CHECK_OK(tapio_memory_set_chunks(t[i], 1, 1 + rnd(c, 70000),
                                       c->seed + (uint64_t)i));
  }
}
