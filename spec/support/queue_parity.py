"""asyncio's Queue, PriorityQueue and LifoQueue on random sequences of
operations, for spec/queue_parity_spec.lua (see sequences.py for the
lines printed).

Each sequence: one kind of queue with maxsize 0, 1 or 3, then about 40
operations drawn from the seed: put_nowait, get_nowait, qsize, full,
empty, task_done, put, get and join as tasks (up to four waiting at
once), and cancelling one that waits, also right after a put_nowait,
get_nowait or task_done that woke it (in the same turn of the loop). A task writes its event when it
ends, so the order in which the waiting tasks end is compared too. Every event ends with the queue's
size and its count of unfinished tasks (asyncio's private
_unfinished_tasks). Items are small integers: asyncio's PriorityQueue
compares equal ones no further (heapq is not stable) and tapio's gives
them in the order put, which only integers cannot tell apart.
shutdown (immediate or not) is drawn where asyncio has it (3.13 on).
    python3 spec/support/queue_parity.py FIRST_SEED COUNT"""
import asyncio
import sys

from sequences import run_until_idle, main

SHUTDOWN = sys.version_info >= (3, 13)
ERRORS = (asyncio.QueueFull, asyncio.QueueEmpty, ValueError) + (
    (asyncio.QueueShutDown,) if SHUTDOWN else ())

KINDS = {"Queue": asyncio.Queue, "PriorityQueue": asyncio.PriorityQueue,
         "LifoQueue": asyncio.LifoQueue}


def failure(err):
    if isinstance(err, ERRORS):
        return type(err).__name__
    raise err


class Run:
    def __init__(self, loop, seq, rng):
        self.loop, self.seq, self.rng = loop, seq, rng
        kind = rng.choice(sorted(KINDS))
        maxsize = rng.choice([0, 1, 3])
        seq.op("queue", "%s %d" % (kind, maxsize))
        self.q = KINDS[kind](maxsize)
        self.tasks = {}  # op index: a task that waits, in the order made
        self.next_item = 0

    def event(self, index, name, text):
        self.seq.ev("#%d %s -> %s | size=%d unfinished=%d" % (
            index, name, text, self.q.qsize(), self.q._unfinished_tasks))

    def item(self):
        self.next_item += 1
        if isinstance(self.q, asyncio.PriorityQueue):
            return self.rng.randint(0, 9)
        return self.next_item

    def call(self, name, fn, *args, cancel=None):
        """fn(*args); with cancel (the op index of a task that waits), that
        task is cancelled right after, in the same turn of the loop: a
        task woken by fn is then cancelled before it runs."""
        shown = [str(a) for a in args]
        if cancel is not None:
            name, shown = name + "+cancel", shown + [str(cancel)]
        i = self.seq.op(name, " ".join(shown))
        try:
            text = "ok %s" % (fn(*args),)
        except Exception as e:
            text = failure(e)
        if cancel is not None:
            self.tasks[cancel].cancel()
        run_until_idle(self.loop)
        self.event(i, name, text)

    def waiting(self, name, fn, *args):
        i = self.seq.op(name, " ".join(str(a) for a in args))

        async def body():
            try:
                text = "ok %s" % (await fn(*args),)
            except asyncio.CancelledError:
                self.event(i, "done", "CancelledError")
                raise
            except Exception as e:
                text = failure(e)
            self.event(i, "done", text)

        task = self.loop.create_task(body())
        self.tasks[i] = task
        task.add_done_callback(lambda _: self.tasks.pop(i))
        run_until_idle(self.loop)
        if not task.done():
            self.event(i, name, "pending")

    def cancel(self, index):
        i = self.seq.op("cancel", index)
        self.tasks[index].cancel()
        run_until_idle(self.loop)
        self.event(i, "cancel", "ok")

    def step(self):
        q, rng = self.q, self.rng
        choices = [
            (lambda: self.call("put_nowait", q.put_nowait, self.item()), 6),
            (lambda: self.call("get_nowait", q.get_nowait), 5),
            (lambda: self.call("qsize", q.qsize), 1),
            (lambda: self.call("full", q.full), 1),
            (lambda: self.call("empty", q.empty), 1),
            (lambda: self.call("task_done", q.task_done), 4)]
        if len(self.tasks) < 4:
            choices += [
                (lambda: self.waiting("put", q.put, self.item()), 2),
                (lambda: self.waiting("get", q.get), 2),
                (lambda: self.waiting("join", q.join), 1)]
        if SHUTDOWN:
            choices.append((lambda: self.call("shutdown", q.shutdown,
                                              rng.randint(0, 1)), 0.3))
        if self.tasks:
            some = rng.choice(list(self.tasks))
            choices += [
                (lambda: self.cancel(some), 1),
                (lambda: self.call("put_nowait", q.put_nowait, self.item(),
                                   cancel=some), 1),
                (lambda: self.call("get_nowait", q.get_nowait,
                                   cancel=some), 1),
                (lambda: self.call("task_done", q.task_done,
                                   cancel=some), 0.5)]
        fns, weights = zip(*choices)
        rng.choices(fns, weights)[0]()

    def finish(self):
        """Tasks still waiting are cancelled."""
        for index in list(self.tasks):
            self.cancel(index)


def run_one(loop, seq, rng):
    run = Run(loop, seq, rng)
    for _ in range(rng.randint(20, 60)):
        run.step()
    run.finish()


main(run_one)
