"""asyncio's StreamReader on random sequences of operations, for
spec/reader_parity_spec.lua (see sequences.py for the lines printed).

Each sequence: a reader with a small limit (1..16), then about 40
operations drawn from the seed: feed_data of chunks made of a few
separator-rich pieces, feed_eof, set_exception, at_eof, and the reads
(read(n) for n in -1, 0, 1, 2, 5, 100, readline, readexactly, readuntil
with one separator or, where asyncio takes a tuple (3.13 on), several).
Each read runs as a task; once the loop has nothing ready, a read not
done is "pending", and the event of its end comes after the operation
that ended it. One read waits at a time: while one does, only feeds,
feed_eof, set_exception and at_eof are drawn.

Every event ends with the bytes left in the reader's buffer (its private
_buffer, as CPython's own tests read it), but for "?" while a read to the
end (read(-1)) waits, and for good once one ended in an error: asyncio's
read(-1) takes the bytes out as they come and drops them with the error,
where tapio's leaves them buffered until it returns (so a cancelled read
consumes nothing: lua/README.md, "Cancellation"). A user sees neither
buffer meanwhile, only that tapio's bytes are still there after the error
(at_eof is not compared then either).
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
    raise err


def task_outcome(task):
    if task.exception() is not None:
        return outcome(task.exception())
    return outcome(value=task.result())


class Run:
    def __init__(self, loop, seq, rng):
        self.loop, self.seq, self.rng = loop, seq, rng
        self.limit = rng.randint(1, 16)
        seq.op("limit", self.limit)
        self.reader = asyncio.StreamReader(limit=self.limit, loop=loop)
        self.pending = None  # (index, task) of the read that waits
        # the buffer is not compared (see above) while these hold
        self.to_end_waits = self.dropped = False

    def event(self, index, name, text):
        hidden = self.to_end_waits or self.dropped
        buffer = "?" if hidden else quoted(self.reader._buffer)
        self.seq.ev("#%d %s -> %s | %s" % (index, name, text, buffer))

    def settle(self):
        run_until_idle(self.loop)
        if self.pending and self.pending[1].done():
            index, task = self.pending
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
            self.pending = (i, task)
            if name == "read" and arg == -1:
                self.to_end_waits = True
            self.event(i, name, "pending")

    def a_read(self):
        r, rng = self.reader, self.rng
        kind = rng.choice(["read", "readline", "readexactly", "readuntil",
                           "readuntils" if SEVERAL else "readuntil"])
        if kind == "read":
            n = rng.choice(READ_SIZES)
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
            choices = [(self.feed, 12), (self.eof, 2), (self.at_eof, 2),
                       (self.exception, 0.2)]
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
