"""What the differential specs' Python sides share (reader_parity.py,
queue_parity.py): the command line, the escaping of bytes, and a loop
run until nothing is ready.

A script built on it generates, from each seed, a random sequence of
operations, runs it on asyncio and prints two kinds of lines:
    SEED|op|NAME|ARG      an operation, for the Lua side to run again
    SEED|ev|TEXT          what was observed, in order
spec/support/sequences.lua runs the operations on tapio and compares the
events. One generator only: the Lua side never draws anything."""
import asyncio
import sys


def esc(data):
    """data (bytes or str) as printable text with no "|", "," or '"':
    \\n, \\r, \\\\ and \\xNN for the rest (the Lua side undoes it)."""
    if isinstance(data, str):
        data = data.encode()
    out = []
    for b in data:
        if b == 0x5C:
            out.append("\\\\")
        elif b == 0x0A:
            out.append("\\n")
        elif b == 0x0D:
            out.append("\\r")
        elif 0x21 <= b <= 0x7E and b not in b'|,"':
            out.append(chr(b))
        else:
            out.append("\\x%02x" % b)
    return "".join(out)


def quoted(data):
    return '"%s"' % esc(data)


def run_until_idle(loop):
    """Runs the loop until nothing is ready (asyncio's private _ready, as
    parity.py's VirtualClockLoop reads it): as tapio.testing's
    clock:run_until_idle()."""
    while loop._ready:
        loop.call_soon(loop.stop)
        loop.run_forever()


class Sequence:
    """One seed's operations and events, printed as they come."""

    def __init__(self, seed):
        self.seed = seed
        self.index = 0

    def op(self, name, arg=""):
        self.index += 1
        print("%d|op|%s|%s" % (self.seed, name, arg))
        return self.index

    def ev(self, text):
        print("%d|ev|%s" % (self.seed, text))


def main(run_one):
    """reader_parity.py FIRST_SEED COUNT: run_one(loop, Sequence, rng)
    for each seed of FIRST_SEED .. FIRST_SEED + COUNT - 1."""
    import random
    first, count = int(sys.argv[1]), int(sys.argv[2])
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        for seed in range(first, first + count):
            run_one(loop, Sequence(seed), random.Random(seed))
            run_until_idle(loop)
    finally:
        loop.close()
