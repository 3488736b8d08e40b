"""asyncio's StreamReader on random sequences of operations, for
spec/reader_parity_spec.lua (see sequences.py for the lines printed).

Each sequence: a reader with a small limit (1..16), then about 40
operations drawn from the seed: feed_data of chunks made of a few
separator-rich pieces, feed_eof, set_exception, at_eof, and the reads
(read(n) for n in -1, 0, 1, 2, 5, 100, readline, readexactly, readuntil
with one separator or, where asyncio takes a tuple (3.13 on), several).
Each read runs as a task; once the loop has nothing ready, a read not
done is "pending", and the event of its end comes after the operation
that ended it. One read waits at a time: while one does, the draw is
among feeds, feed_eof, set_exception, at_eof, cancelling it, and now and
then a second read (asyncio raises RuntimeError where it would wait).

Every event ends with the bytes left in the reader's buffer (its private
_buffer, as CPython's own tests read it), and "paused" where the reader
has paused its transport (a stub that says whether it reads: flow
control, over twice the limit buffered), but for "~" while the buffer
holds more than the limit and at most twice it: tapio resumes a waiting
read inside feed_data (lua/README.md, "How a waiting task wakes"), and
pauses on what that read left; asyncio's read runs later, and the pause
is decided on all that was fed, and kept until a read leaves the limit
(so not after the end either: a transport that has ended reads nothing,
and asyncio's can stay paused from the band once the end's errors empty
the buffer). Where tapio differs by design,
the draw or the comparison leaves it out: asyncio's read(-1) takes the
bytes out of the buffer as they come, and drops them when it is cancelled
or fails; tapio's leaves them there until it returns (a cancelled read
consumes nothing: lua/README.md, "Cancellation"). So while a read(-1)
waits the buffer is "?", neither a cancel nor a second read is drawn
(the second would find tapio's bytes), once set_exception ended it the
buffer and at_eof are "?" for good (the reads raise the exception in
both), paused is not compared where the buffer is not, and a second
read is never a read(-1) (asyncio's takes what is
there, then raises RuntimeError where it would wait, and the bytes are
gone; tapio's raises first).

And where asyncio is wrong: its readuntil (and so readline) keeps how far
it has searched across its wait, also when another task reads meanwhile,
so that it then searches from too far: it skips a separator that came
(readline returns two lines in one) or waits for one it already has.
tapio's searches from the start again (spec/reader_spec.lua, "searches
from the start again when another task read what a waiting readuntil had
searched"). Found by this spec; no CPython issue for it found. So a
second read is drawn beside a waiting readexactly or read(n) only.
    python3 spec/support/reader_parity.py FIRST_SEED COUNT"""
import asyncio
import sys

from sequences import esc, quoted, run_until_idle, main

PIECES = ["a", "\n", "\r", "xy", "yx", "\r\n"]
SEPARATORS = ["\n", "\r", "\r\n", "xy", "yx", "a", "aa", "xyx", "\n\n"]
READ_SIZES = [-1, 0, 1, 2, 5, 100]
EXACT_SIZES = [0, 1, 2, 3, 5, 8, 17]
# asyncio's readuntil takes a tuple of separators from 3.13 on
SEVERAL = sys.version_info >= (3, 13)


def chunk(rng):
    n = rng.choice([0, 1, 1, 2, 2, 3, 4, 6, 10, 20])
    return "".join(rng.choice(PIECES) for _ in range(n)).encode()


def outcome(err=None, value=None):
    """A read's result as the Lua side writes it too."""
    if err is None:
        return "ok " + quoted(value)
    if isinstance(err, asyncio.IncompleteReadError):
        return "IncompleteReadError partial=%s expected=%s: %s" % (
            quoted(err.partial), err.expected, err)
    if isinstance(err, asyncio.LimitOverrunError):
        return "LimitOverrunError consumed=%d: %s" % (err.consumed, err)
    # readline's over the limit (tapio: a LimitOverrunError), feed_data
    # after feed_eof (an assert), set_exception's
    if isinstance(err, (ValueError, AssertionError, ConnectionResetError)):
        return "%s: %s" % (type(err).__name__, err)
    if isinstance(err, RuntimeError):  # a second task waiting
        return "RuntimeError"
    raise err


def task_outcome(task):
    if task.cancelled():
        return "CancelledError"
    if task.exception() is not None:
        return outcome(task.exception())
    return outcome(value=task.result())


class Transport:
    """The reader's transport: only whether it reads."""
    paused = False

    def pause_reading(self):
        self.paused = True

    def resume_reading(self):
        self.paused = False


class Run:
    def __init__(self, loop, seq, rng):
        self.loop, self.seq, self.rng = loop, seq, rng
        self.limit = rng.randint(1, 16)
        seq.op("limit", self.limit)
        self.reader = asyncio.StreamReader(limit=self.limit, loop=loop)
        self.transport = Transport()
        self.reader.set_transport(self.transport)
        self.pending = None  # (index, task, name) of the read that waits
        # the buffer is not compared (see above) while these hold
        self.to_end_waits = self.dropped = False

    def event(self, index, name, text):
        hidden = self.to_end_waits or self.dropped
        buffer = "?" if hidden else quoted(self.reader._buffer)
        if not hidden and not self.reader._eof:
            size = len(self.reader._buffer)
            if self.limit < size <= 2 * self.limit:
                buffer += " ~"
            elif self.transport.paused:
                buffer += " paused"
        self.seq.ev("#%d %s -> %s | %s" % (index, name, text, buffer))

    def settle(self):
        run_until_idle(self.loop)
        if self.pending and self.pending[1].done():
            index, task, _ = self.pending
            self.pending = None
            if self.to_end_waits:
                self.to_end_waits = False
                self.dropped = task.exception() is not None
            self.event(index, "done", task_outcome(task))

    def feed(self):
        data = chunk(self.rng)
        i = self.seq.op("feed", esc(data))
        try:
            self.reader.feed_data(data)
            text = "ok"
        except AssertionError as e:
            text = outcome(e)
        self.settle()
        self.event(i, "feed", text)

    def eof(self):
        i = self.seq.op("eof")
        self.reader.feed_eof()
        self.settle()
        self.event(i, "eof", "ok")

    def exception(self):
        i = self.seq.op("exception")
        self.reader.set_exception(ConnectionResetError("reset"))
        self.settle()
        self.event(i, "exception", "ok")

    def cancel(self):
        i = self.seq.op("cancel")
        self.pending[1].cancel()
        self.settle()
        self.event(i, "cancel", "ok")

    def at_eof(self):
        i = self.seq.op("at_eof")
        # (after the error that dropped bytes, asyncio's may be at the end)
        text = "?" if self.dropped else str(self.reader.at_eof())
        self.event(i, "at_eof", text)

    def read(self, name, arg, coro):
        i = self.seq.op(name, arg)
        task = self.loop.create_task(coro)
        run_until_idle(self.loop)
        if task.done():
            self.event(i, name, task_outcome(task))
        else:
            assert not self.pending, "a second read waits"
            self.pending = (i, task, name)
            if name == "read" and arg == -1:
                self.to_end_waits = True
            self.event(i, name, "pending")

    def a_read(self):
        r, rng = self.reader, self.rng
        second = self.pending is not None
        kind = rng.choice(["read", "readline", "readexactly", "readuntil",
                           "readuntils" if SEVERAL else "readuntil"])
        if kind == "read":
            n = rng.choice([n for n in READ_SIZES if n != -1 or not second])
            self.read(kind, n, r.read(n))
        elif kind == "readline":
            self.read(kind, "", r.readline())
        elif kind == "readexactly":
            n = rng.choice(EXACT_SIZES)
            self.read(kind, n, r.readexactly(n))
        elif kind == "readuntil":
            sep = rng.choice(SEPARATORS)
            self.read(kind, esc(sep), r.readuntil(sep.encode()))
        else:
            seps = rng.sample(SEPARATORS, rng.randint(1, 3))
            self.read(kind, ",".join(esc(s) for s in seps),
                      r.readuntil(tuple(s.encode() for s in seps)))

    def step(self):
        rng = self.rng
        eof = self.reader._eof
        if self.pending:
            # (see the top for what is not drawn)
            alone = self.to_end_waits or self.pending[2] in (
                "readline", "readuntil", "readuntils")
            choices = [(self.feed, 12), (self.eof, 2), (self.at_eof, 2),
                       (self.exception, 0.2),
                       (self.cancel, 0 if self.to_end_waits else 1.5),
                       (self.a_read, 0 if alone else 1.5)]
        else:
            choices = [(self.feed, 1 if eof else 7), (self.eof, 1),
                       (self.at_eof, 1), (self.exception, 0.1),
                       (self.a_read, 10)]
        fns, weights = zip(*choices)
        rng.choices(fns, weights)[0]()


def run_one(loop, seq, rng):
    run = Run(loop, seq, rng)
    for _ in range(rng.randint(20, 60)):
        run.step()
    if run.pending:  # (no task is left waiting)
        run.eof()


main(run_one)
