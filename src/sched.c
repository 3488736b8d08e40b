/* Scheduled calls: call_soon, call_later, call_at, call_idle (virtual
 * loops) and their handles. */
#include "tapio_int.h"

#include <math.h>

struct tapio_handle {
  tapio__task task;      /* in the ready queue */
  tapio__timer timer;    /* call_later / call_at */
  tapio__link link;      /* loop->handles */
  tapio__link due;       /* loop->due: fired, waiting for the check; or
                            the kit's idle list (call_idle) */
  tapio_loop *loop;
  tapio_handle *next_due; /* while the due list is sorted */
  tapio_call_fn fn;
  void *ud;
  double when;           /* -1 for call_soon */
  uint64_t seq;
  uint8_t refs;          /* the loop's while pending, the caller's */
  uint8_t released;      /* the caller gave its reference back */
  uint8_t cancelled;
  uint8_t state;         /* where the loop holds it */
};

enum { H_DONE, H_TIMER, H_DUE, H_READY, H_IDLE };

static void handle_unref(tapio_handle *h) {
  if (--h->refs == 0) {
    tapio__timer_stop(&h->timer);
    tapio__list_remove(&h->link);
    tapio__free(h->loop, h, sizeof *h);
  }
}

static void run_handle(tapio__task *task) {
  tapio_handle *h = TAPIO_CONTAINER(task, tapio_handle, task);
  h->state = H_DONE;
  if (!h->cancelled)
    h->fn(h->ud);
  handle_unref(h);
}

static tapio_handle *handle_new(tapio_loop *loop, tapio_call_fn fn, void *ud,
                                tapio_handle **out) {
  tapio_handle *h;
  if (out)
    *out = NULL;
  if (!fn || loop->freeing)
    return NULL;
  h = tapio__calloc(loop, sizeof *h);
  if (!h)
    return NULL;
  h->loop = loop;
  h->fn = fn;
  h->ud = ud;
  h->when = -1;
  h->seq = loop->seq++;
  h->refs = out ? 2 : 1;
  h->state = H_READY;
  h->task.run = run_handle;
  tapio__list_push(&loop->handles, &h->link);
  if (out)
    *out = h;
  return h;
}

/* A call that made no handle: *out is NULL and the reason returned. */
static int no_call(tapio_handle **out, int code) {
  if (out)
    *out = NULL;
  return code;
}

static int bad_call(tapio_loop *loop, tapio_call_fn fn, tapio_handle **out) {
  if (!loop || !fn)
    return no_call(out, TAPIO_EINVAL);
  return no_call(out, loop->freeing ? TAPIO_ECLOSED : TAPIO_ENOMEM);
}

int tapio_call_soon(tapio_loop *loop, tapio_call_fn fn, void *ud,
                    tapio_handle **out) {
  tapio_handle *h = loop ? handle_new(loop, fn, ud, out) : NULL;
  if (!h)
    return bad_call(loop, fn, out);
  tapio__task_post(loop, &h->task);
  return 0;
}

/* A fired timer joins the due list in the order libev fires it, which is
 * almost the order of due times; the list is sorted once per iteration. */
static void on_timer(tapio__timer *tm) {
  tapio_handle *h = TAPIO_CONTAINER(tm, tapio_handle, timer);
  tapio__list_push(&h->loop->due, &h->due);
  h->state = H_DUE;
  tapio__check_wanted(h->loop);
}

/* Calls due together run in the order they were scheduled. */
static int due_before(const tapio_handle *a, const tapio_handle *b) {
  return a->when < b->when || (a->when == b->when && a->seq < b->seq);
}

static tapio_handle *merge(tapio_handle *a, tapio_handle *b) {
  tapio_handle *out = NULL, **tail = &out;
  while (a && b) {
    tapio_handle **first = due_before(b, a) ? &b : &a;
    *tail = *first;
    tail = &(*first)->next_due;
    *first = *tail;
  }
  *tail = a ? a : b;
  return out;
}

/* A merge sort of the chain that merges the runs already in order: one
 * pass when libev fired the timers in order, k log k at worst. bins[i]
 * holds up to 2^i runs merged, as the digits of a binary counter. */
static tapio_handle *sort_chain(tapio_handle *list) {
  tapio_handle *bins[64] = {NULL}, *out = NULL;
  size_t i;
  while (list) {
    tapio_handle *run = list, *end = list;
    while (end->next_due && !due_before(end->next_due, end))
      end = end->next_due;
    list = end->next_due;
    end->next_due = NULL;
    for (i = 0; bins[i]; i++) {
      run = merge(bins[i], run);
      bins[i] = NULL;
    }
    bins[i] = run;
  }
  for (i = 0; i < 64; i++)
    if (bins[i])
      out = merge(bins[i], out);
  return out;
}

/* Moves the due list into the ready queue, sorted by (when, seq). */
void tapio__queue_due(tapio_loop *loop) {
  tapio_handle *h = NULL, **tail = &h;
  tapio__link *l;
  for (l = loop->due.next; l != &loop->due; l = l->next) {
    *tail = TAPIO_CONTAINER(l, tapio_handle, due);
    tail = &(*tail)->next_due;
  }
  *tail = NULL;
  tapio__list_init(&loop->due);
  for (h = sort_chain(h); h; h = h->next_due) {
    h->state = H_READY;
    tapio__task_post(loop, &h->task);
  }
}

int tapio_call_at(tapio_loop *loop, double when, tapio_call_fn fn, void *ud,
                  tapio_handle **out) {
  tapio_handle *h;
  if (isnan(when)) /* never due, and no place in the order of due times */
    return no_call(out, TAPIO_EINVAL);
  h = loop ? handle_new(loop, fn, ud, out) : NULL;
  if (!h)
    return bad_call(loop, fn, out);
  h->when = when;
  tapio__timer_init(&h->timer, loop, on_timer);
  tapio__timer_start_at(&h->timer, when);
  h->state = H_TIMER;
  return 0;
}

int tapio_call_later(tapio_loop *loop, double delay, tapio_call_fn fn,
                     void *ud, tapio_handle **out) {
  if (!loop || isnan(delay))
    return no_call(out, TAPIO_EINVAL);
  return tapio_call_at(loop, tapio__time(loop) + (delay > 0 ? delay : 0), fn,
                       ud, out);
}

/* ---- Virtual loops: calls at the end of a moment ------------------------- */

static tapio_handle *idle_first(tapio_loop *loop) {
  tapio__link *head = loop->kit ? &loop->kit->idle : NULL;
  if (!head || tapio__list_empty(head))
    return NULL;
  return TAPIO_CONTAINER(head->next, tapio_handle, due);
}

int tapio_call_idle(tapio_loop *loop, double delay, tapio_call_fn fn,
                    void *ud, tapio_handle **out) {
  tapio_handle *h;
  tapio__link *head, *l;
  if (!loop || !fn || isnan(delay))
    return no_call(out, TAPIO_EINVAL);
  if (!tapio__virtual(loop))
    return no_call(out, TAPIO_ENOTSUP);
  if (delay > 0 && !isfinite(loop->kit->now + delay))
    return no_call(out, TAPIO_EINVAL); /* as tapio_loop_advance */
  h = handle_new(loop, fn, ud, out);
  if (!h)
    return bad_call(loop, fn, out);
  h->when = tapio__vround(loop->kit->now + (delay > 0 ? delay : 0));
  h->state = H_IDLE;
  head = &loop->kit->idle; /* after the last one due no later: (when, seq) */
  for (l = head->prev; l != head; l = l->prev)
    if (TAPIO_CONTAINER(l, tapio_handle, due)->when <= h->when)
      break;
  tapio__list_push(l->next, &h->due);
  return 0;
}

double tapio__idle_next(tapio_loop *loop) {
  tapio_handle *h = idle_first(loop);
  return h ? h->when : -1;
}

void tapio__idle_post(tapio_loop *loop) {
  tapio_handle *h;
  while ((h = idle_first(loop)) != NULL && h->when <= loop->kit->now) {
    tapio__list_remove(&h->due);
    h->state = H_READY;
    tapio__task_post(loop, &h->task);
  }
}

void tapio_handle_cancel(tapio_handle *h) {
  if (!h || h->cancelled)
    return;
  h->cancelled = 1;
  /* A queued call is skipped when the queue reaches it; one that waits on
   * a timer or in the due list leaves the loop now. */
  if (h->state == H_TIMER)
    tapio__timer_stop(&h->timer);
  else if (h->state == H_DUE || h->state == H_IDLE)
    tapio__list_remove(&h->due);
  else
    return;
  h->state = H_DONE;
  handle_unref(h);
}

int tapio_handle_cancelled(tapio_handle *h) { return h ? h->cancelled : 0; }

double tapio_handle_when(tapio_handle *h) { return h ? h->when : -1; }

/* A second release while the loop still holds the handle does nothing:
 * the loop's own reference is never the caller's to drop. */
void tapio_handle_release(tapio_handle *h) {
  if (!h || h->released)
    return;
  h->released = 1;
  handle_unref(h);
}

/* tapio_loop_free: no user call runs during teardown. */
void tapio__handles_cancel_all(tapio_loop *loop) {
  tapio__link *l;
  for (l = loop->handles.next; l != &loop->handles; l = l->next) {
    tapio_handle *h = TAPIO_CONTAINER(l, tapio_handle, link);
    h->cancelled = 1;
    tapio__timer_stop(&h->timer);
    if (h->state == H_IDLE) { /* the kit's list goes with the loop */
      tapio__list_remove(&h->due);
      h->state = H_DONE;
    }
  }
}

/* tapio_loop_free: the caller's references die with the loop. */
void tapio__handles_free_all(tapio_loop *loop) {
  while (!tapio__list_empty(&loop->handles)) {
    tapio_handle *h = TAPIO_CONTAINER(loop->handles.next, tapio_handle, link);
    tapio__list_remove(&h->link);
    tapio__free(loop, h, sizeof *h);
  }
}
