/* How a memory pair's side's end reaches the other side, as a socket's
 * or a pipe's does: end of file after the bytes sent, a reset (the side
 * left bytes unread, or the test asked for one), the RST a closed
 * socket's kernel sends back for bytes that reach it, and EPIPE for a
 * write pipe whose reader went (as pipe.c's). */
#include "memory_int.h"

/* As pipe.c's that watches for it; a closing one meets EPIPE in its
 * flush. */
int tapio__mem_reader_left(mem_end *e) {
  tapio_transport *t = &e->s.head;
  if (peer_of(e) || tapio__base_kind(t) != &tapio__mem_write_pipe_kind ||
      (t->flags & (TAPIO__T_MADE | TAPIO__T_CLOSING)) != TAPIO__T_MADE)
    return 0;
  tapio__transport_force_close(t, TAPIO_EPIPE, NULL);
  return 1;
}

/* The peer's socket is closed and bytes of e's reach it at `at`: its
 * kernel's RST is back a delay later (once: the first such bytes). */
static void rst_coming(mem_end *e, double at) {
  if (!e || e->rst_set)
    return;
  e->rst_set = 1;
  e->rst_at = tapio__vround(at + in_link(e)->delay);
}

/* A write to a side whose peer has gone, as TCP answers it: a reset that
 * has arrived fails it; else it is taken (its bytes are lost: the peer's
 * kernel answers them with a RST, which on loopback is back before the
 * call returns) until that RST is back, then writes fail with EPIPE. So
 * a last answer written in eof_received after the peer's close ends as
 * on a socket, with connection_lost(nil). */
ssize_t tapio__mem_write_to_gone(mem_end *e, const struct iovec *iov,
                                 int n) {
  double now = now_of(e);
  size_t len = 0;
  int i;
  /* a reset that has arrived (after a FIN: EPIPE) */
  if (in_link(e)->error && tapio__mem_ended(in_link(e), now))
    return in_link(e)->eof_first ? TAPIO_EPIPE : in_link(e)->error;
  if (e->rst_set && e->rst_at <= now)
    return TAPIO_EPIPE;
  rst_coming(e, tapio__vround(now + out_link(e)->delay));
  for (i = 0; i < n; i++)
    len += iov[i].iov_len;
  return (ssize_t)len;
}

/* The side goes (its connection_lost ran): end of file to the peer after
 * what it sent, or, when it leaves bytes unread (arrived: due), a reset,
 * as the kernel sends RST; what the peer sent it is dropped, and bytes
 * still on their way reach a closed socket, whose RST goes back to the
 * peer. Once. */
void tapio__mem_end_gone(mem_end *e) {
  pair *p = e->p;
  tapio_loop *loop = p->loop;
  mem_end *peer = p->ends[!e->side];
  mlink *in = in_link(e);
  if (p->ends[e->side] != e)
    return;
  p->ends[e->side] = NULL;
  tapio__mem_wake_stop(e);
  tapio__task_unpost(loop, &e->made);
  if (tapio__mem_readable(in, now_of(e)) > 0)
    tapio__mem_link_end(loop, out_link(e), TAPIO_ECONNRESET);
  else if (in->head && peer)
    rst_coming(peer, in->head->at);
  tapio__mem_link_end(loop, out_link(e), 0);
  tapio__mem_take(loop, in, NULL, in->queued);
  tapio__mem_wake(peer);
  tapio__mem_arm_due(peer);
  if (e->gone)
    e->gone(e->gone_ud, &e->s.head);
}

int tapio__memory_reset(tapio_transport *t, int code) {
  mem_end *e = tapio__mem_of(t);
  if (!e)
    return TAPIO_ENOTSUP;
  tapio__mem_link_end(t->loop, out_link(e), code);
  tapio__mem_wake(peer_of(e));
  tapio__mem_arm_due(peer_of(e));
  return 0;
}
