"""asyncio.Runner's scenarios, for spec/runner_spec.lua: each prints what
it saw, in order, one event a line,

    SCENARIO|EVENT

and tapio.Runner must print the same lines. Runner is 3.11's, but the
spec shares the recording's way with its other parity scripts:

    python3.13 spec/support/runner_parity.py > spec/support/runner_parity.out
"""
import asyncio
import contextvars
import sys

var = contextvars.ContextVar("request")
EVENTS = []


def log(*words):
    EVENTS.append(" ".join(w if isinstance(w, str) else repr(w)
                           for w in words))


def get():
    return var.get("unset")


def runs():
    """Several runs on one loop; a task one run leaves goes on in the
    next."""
    r = asyncio.Runner()
    loop = r.get_loop()
    gate = asyncio.Event()

    async def waits():
        await gate.wait()
        log("left task resumed")
        return "left"

    async def first():
        log("first run, same loop:", asyncio.get_running_loop() is loop)
        return asyncio.create_task(waits())
    left = r.run(first())
    log("between runs, left done:", left.done())

    async def second():
        gate.set()
        return await left
    log("second run got", r.run(second()))
    log("loop open:", not r.get_loop().is_closed())
    r.close()
    log("loop closed:", loop.is_closed())


def contexts():
    """One context for every run, a copy of the caller's; a run given
    a context runs in it."""
    var.set("top")
    r = asyncio.Runner()

    async def sets(value):
        log("run sees", get())
        var.set(value)
    r.run(sets("run 1"))
    r.run(sets("run 2"))
    ctx = contextvars.copy_context()
    r.run(sets("in ctx"), context=ctx)
    log("ctx has", ctx[var])
    r.run(sets("run 3"))
    log("top sees", get())
    r.close()
    var.set("unset")


def closing():
    """close cancels what the runs left, and the Runner stays closed."""
    r = asyncio.Runner()

    async def forever():
        try:
            await asyncio.get_running_loop().create_future()
        except asyncio.CancelledError:
            log("left task cancelled")
            raise

    async def leaves():
        asyncio.create_task(forever())
        await asyncio.sleep(0)
    r.run(leaves())
    loop = r.get_loop()
    r.close()
    log("closed, loop closed:", loop.is_closed())
    try:
        r.get_loop()
    except RuntimeError:
        log("get_loop after close: RuntimeError")
    coro = leaves()
    try:
        r.run(coro)
    except RuntimeError:
        log("run after close: RuntimeError")
    coro.close()
    r.close()
    log("closed twice")


def unused_close():
    """close before the first run does nothing: the Runner still runs."""
    r = asyncio.Runner()
    r.close()

    async def answer():
        return 42
    log("run after an early close:", r.run(answer()))
    r.close()


def nested():
    """run inside a running loop: an error, the Runner's own or
    another's."""
    r = asyncio.Runner()
    other = asyncio.Runner()

    async def inner():
        return 1

    async def outer():
        for runner, name in ((r, "its own"), (other, "another")):
            coro = inner()
            try:
                runner.run(coro)
            except RuntimeError:
                log("run inside a run,", name + ": RuntimeError")
            coro.close()
        return "outer done"
    log(r.run(outer()))
    other.close()
    r.close()


def options():
    """debug sets the loop's debug mode; loop_factory makes the loop,
    once."""
    for debug in (True, False):
        r = asyncio.Runner(debug=debug)
        log("debug", debug, "loop debug:", r.get_loop().get_debug())
        r.close()
    made = []

    def factory():
        loop = asyncio.new_event_loop()
        made.append(loop)
        return loop
    r = asyncio.Runner(loop_factory=factory)

    async def running():
        return asyncio.get_running_loop()
    first = r.run(running())
    second = r.run(running())
    log("factory calls:", len(made), "its loop:", first is made[0],
        second is made[0], r.get_loop() is made[0])
    r.close()


def errors():
    """A run's error is raised; the next run goes on; a task that fails
    while close cancels it goes to the exception handler."""
    r = asyncio.Runner()

    async def fails():
        raise ValueError("boom")
    try:
        r.run(fails())
    except ValueError as e:
        log("run raised", str(e))

    async def handler_and_left():
        def handler(loop, context):
            if "exception" in context:
                log("handler got", str(context["exception"]))
        asyncio.get_running_loop().set_exception_handler(handler)

        async def bad_cleanup():
            try:
                await asyncio.get_running_loop().create_future()
            except asyncio.CancelledError:
                raise ValueError("cleanup failed")
        asyncio.create_task(bad_cleanup())
        await asyncio.sleep(0)
        return "next run ok"
    log(r.run(handler_and_left()))
    r.close()
    log("closed")


SCENARIOS = [runs, contexts, closing, unused_close, nested, options, errors]


def main():
    for scenario in SCENARIOS:
        EVENTS.clear()
        scenario()
        for e in EVENTS:
            print("%s|%s" % (scenario.__name__, e))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
