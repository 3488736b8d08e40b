/* Requests: the pending create calls and lookups of a loop, each ended
 * with ECANCELED when the loop is freed, or cancelled by the user
 * (tapio_cancel_pending), and the message of a failed completion. */
#include "tapio_int.h"

#include <stdarg.h>
#include <stdio.h>

void tapio__request_start(tapio_loop *loop, tapio__request *req,
                          tapio__task_fn run,
                          void (*cancel)(tapio__request *)) {
  req->loop = loop;
  req->task.run = run;
  req->cancel = cancel;
  tapio__list_push(&loop->requests, &req->link);
  tapio__task_post(loop, &req->task);
}

int tapio__request_done(tapio__request *req) {
  tapio__list_remove(&req->link);
  req->loop->refused[0] = '\0'; /* a completion's message is its own */
  return !req->quiet;
}

void tapio__refuse(tapio_loop *loop, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(loop->refused, sizeof loop->refused, fmt, ap);
  va_end(ap);
}

/* Requests still waiting on I/O when the loop is freed. */
void tapio__requests_cancel_all(tapio_loop *loop) {
  while (!tapio__list_empty(&loop->requests)) {
    tapio__request *req =
        TAPIO_CONTAINER(loop->requests.next, tapio__request, link);
    req->cancel(req);
  }
}

/* The first pending request whose completion was given ud, or NULL. */
static tapio__request *find(tapio_loop *loop, void *ud) {
  tapio__link *l;
  for (l = loop->requests.next; l != &loop->requests; l = l->next) {
    tapio__request *req = TAPIO_CONTAINER(l, tapio__request, link);
    if (req->ud == ud)
      return req;
  }
  return NULL;
}

/* Each cancel frees the request before returning: its task leaves the
 * ready queue, its watchers and timers stop, its descriptors close, and
 * a lookup it waits for is dropped. */
int tapio_cancel_pending(tapio_loop *loop, void *cb_ud) {
  tapio__request *req;
  int n = 0;
  if (!loop)
    return TAPIO_EINVAL;
  while ((req = find(loop, cb_ud)) != NULL) {
    tapio__task_unpost(loop, &req->task);
    req->quiet = 1;
    req->cancel(req);
    n++;
  }
  return n;
}

void tapio__connect_failed(tapio_loop *loop, int call, tapio_connect_fn cb,
                           void *ud, int code, const char *message) {
  const char *old = loop->errmsg;
  if (!call)
    return;
  loop->errmsg = message; /* what tapio_loop_error_message answers */
  cb(ud, code, NULL);
  loop->errmsg = old;
}

const char *tapio_loop_error_message(tapio_loop *loop) {
  if (!loop)
    return NULL;
  return loop->errmsg ? loop->errmsg : loop->refused[0] ? loop->refused
                                                         : NULL;
}
