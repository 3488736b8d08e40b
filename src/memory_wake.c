/* When a memory pair's side runs. Its stream starts and stops its
 * watchers as it does for a socket; they watch a descriptor that is never
 * ready (an empty epoll instance, one per loop: memory.c), which libev
 * accepts and never fires. What fires them is the link: when bytes, room
 * or an end arrive, the side's wake task runs the stream's read or write
 * step (ev_invoke) if that watcher is on, from the loop's ready queue, one
 * read per turn, as a socket's readiness would; a delayed byte arms the
 * side's timer. */
#include "memory_int.h"

void tapio__mem_wake(mem_end *e) {
  if (e)
    tapio__task_post(e->s.head.loop, &e->wake);
}

static void run_wake(tapio__task *task) {
  mem_end *e = TAPIO_CONTAINER(task, mem_end, wake);
  tapio__stream *s = &e->s;
  struct ev_loop *ev = s->head.loop->ev;
  if (s->head.loop->freeing || tapio__mem_reader_left(e))
    return; /* nothing more is read or written while the loop goes */
  if (ev_is_active(&s->rio) && tapio__mem_can_read(e))
    ev_invoke(ev, &s->rio, EV_READ);
  if (ev_is_active(&s->wio) && tapio__mem_can_write(e))
    ev_invoke(ev, &s->wio, EV_WRITE);
}

/* A watcher of e's stream is on and the link can serve it now. */
static int wants_wake(mem_end *e) {
  tapio__stream *s = &e->s;
  return (ev_is_active(&s->rio) && tapio__mem_can_read(e)) ||
         (ev_is_active(&s->wio) && tapio__mem_can_write(e));
}

/* The stream starts its watchers after an EAGAIN, when the link wakes it
 * anyway; a layer with a session of its own (TLS on a memory pair) starts
 * them whenever it wants, as a socket's readiness would answer at once.
 * This answers it: before each poll (the kit's prepare watcher, which
 * keeps no run alive), and whenever a virtual run looks for work. */
int tapio__memory_poll(tapio_loop *loop) {
  tapio__link *l;
  int n = 0;
  if (!loop->kit || loop->freeing)
    return 0;
  for (l = loop->kit->ends.next; l != &loop->kit->ends; l = l->next) {
    mem_end *e = TAPIO_CONTAINER(l, mem_end, link);
    if (!e->wake.posted && wants_wake(e)) {
      tapio__mem_wake(e);
      n++;
    }
  }
  return n;
}

static void on_poll(struct ev_loop *ev, ev_prepare *w, int revents) {
  tapio_loop *loop = w->data;
  (void)ev;
  (void)revents;
  loop->preparing = 1;
  tapio__memory_poll(loop);
  loop->preparing = 0;
}

/* e joins the kit's sides (or leaves them); the prepare watcher runs
 * while there are any. */
static void poll_join(tapio_loop *loop, mem_end *e) {
  tapio__kit *kit = loop->kit;
  tapio__list_push(&kit->ends, &e->link);
  if (!ev_is_active(&kit->poll)) {
    ev_prepare_init(&kit->poll, on_poll);
    kit->poll.data = loop;
    ev_prepare_start(loop->ev, &kit->poll);
    ev_unref(loop->ev);
  }
}

static void poll_leave(tapio_loop *loop, mem_end *e) {
  tapio__kit *kit = loop->kit;
  tapio__list_remove(&e->link);
  if (tapio__list_empty(&kit->ends) && ev_is_active(&kit->poll)) {
    ev_ref(loop->ev);
    ev_prepare_stop(loop->ev, &kit->poll);
  }
}

static void on_due(tapio__timer *tm) {
  tapio__mem_wake(TAPIO_CONTAINER(tm, mem_end, due));
}

void tapio__mem_arm_due(mem_end *e) {
  mlink *l;
  double at;
  if (!e)
    return;
  l = in_link(e);
  if (l->head)
    at = l->head->at;
  else if (l->eof || l->error)
    at = l->end_at;
  else
    return;
  if (at <= now_of(e))
    return;
  if (!tapio__timer_active(&e->due) || e->due.dl.when != at)
    tapio__timer_start_at(&e->due, at);
}

void tapio__mem_wake_init(mem_end *e) {
  e->wake.run = run_wake;
  tapio__timer_init(&e->due, e->p->loop, on_due);
  poll_join(e->p->loop, e);
}

void tapio__mem_wake_stop(mem_end *e) {
  tapio_loop *loop = e->p->loop;
  poll_leave(loop, e);
  tapio__task_unpost(loop, &e->wake);
  tapio__timer_stop(&e->due);
}
