"""The scenarios of spec/context_spec.lua on asyncio: each prints what it
saw, one line per event, as the spec writes it for tapio; the spec
compares the two lists. Run by the spec with python3.13 (a handle's
get_context is 3.12's: context_parity.out, what it printed, stands in
where no 3.12 or later is found):

    python3.13 spec/support/context_parity.py > spec/support/context_parity.out
"""
import asyncio
import contextvars

var = contextvars.ContextVar("request")
other = contextvars.ContextVar("other", default="dflt")
out = []


def say(*words):
    out.append(" ".join(str(w) for w in words))


def get():
    return var.get("unset")


async def inherit():
    var.set("a")

    async def child():
        say("inherit child sees", get())
        await asyncio.sleep(0)
        say("inherit child later sees", get())
        var.set("c")
        say("inherit child set", get())

    t = asyncio.create_task(child())
    var.set("b")
    await t
    say("inherit creator sees", get())


async def callbacks():
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    var.set("x")
    loop.call_soon(lambda: say("call_soon sees", get()))
    loop.call_later(0, lambda: say("call_later sees", get()))
    loop.call_at(loop.time(), lambda: say("call_at sees", get()))
    fut = loop.create_future()
    fut.add_done_callback(lambda f: say("done callback sees", get()))

    def sets():
        var.set("in callback")
        say("callback set", get())
    loop.call_soon(sets)
    var.set("y")
    fut.set_result(1)
    loop.call_later(0.01, lambda: done.set_result(None))
    await done
    say("callbacks task sees", get())


def tokens():
    t = var.set("t1")
    var.reset(t)
    say("reset gives", get())
    try:
        var.reset(t)
    except RuntimeError:
        say("reset twice: RuntimeError")
    t2 = other.set("o")
    try:
        var.reset(t2)
    except ValueError:
        say("reset other var: ValueError")
    ctx = contextvars.copy_context()
    t3 = var.set("t3")
    try:
        ctx.run(var.reset, t3)
    except ValueError:
        say("reset other context: ValueError")
    var.reset(t3)
    t2.var.reset(t2)
    try:
        var.reset(t2)  # used, and of another var: the first check wins
    except RuntimeError:
        say("used and other var: RuntimeError")
    say("old_value", t3.old_value is contextvars.Token.MISSING)
    say("default", other.get(), other.get("given"))
    try:
        contextvars.ContextVar("nothing").get()
    except LookupError:
        say("unset get: LookupError")


def contexts():
    var.set("outer")
    ctx = contextvars.copy_context()
    ctx2 = contextvars.copy_context()

    def inner():
        var.set("inner2")
        say("nested run sees", get())

    def outer():
        var.set("inner1")
        ctx2.run(inner)
        say("back in ctx sees", get())
        try:
            ctx.run(lambda: None)
        except RuntimeError:
            say("entered twice: RuntimeError")
    ctx.run(outer)
    say("after run sees", get(), ctx[var], ctx2[var])


async def group():
    var.set("g")
    seen = []

    async def child(i):
        await asyncio.sleep(0)
        seen.append(get())
        var.set(i)
    async with asyncio.TaskGroup() as tg:
        for i in range(2):
            tg.create_task(child(i))
    say("group children see", *seen)
    say("group parent sees", get())


async def given_context():
    ctx = contextvars.copy_context()

    async def child():
        var.set("from task")
    await asyncio.create_task(child(), context=ctx)
    say("task context", ctx[var], get())


async def given_callbacks():
    loop = asyncio.get_running_loop()
    var.set("current")
    ctx = contextvars.copy_context()
    ctx.run(var.set, "in ctx")
    h1 = loop.call_soon(lambda: say("call_soon context= sees", get()),
                        context=ctx)
    h2 = loop.call_later(0, lambda: say("call_later context= sees", get()),
                         context=ctx)
    h3 = loop.call_at(loop.time(),
                      lambda: say("call_at context= sees", get()),
                      context=ctx)
    say("handles give it", h1.get_context() is ctx,
        h2.get_context() is ctx, h3.get_context() is ctx)
    h4 = loop.call_soon(lambda: None)
    var.set("after")
    say("plain handle's context", h4.get_context()[var],
        h4.get_context() is h4.get_context(),
        h4.get_context() is asyncio.current_task().get_context())
    await asyncio.sleep(0.01)
    done = loop.create_future()
    loop.call_soon(var.set, "set in ctx", context=ctx)
    loop.call_soon(done.set_result, None)
    await done
    say("after the callbacks", ctx[var], get())

    async def child():
        say("group task in ctx sees", get())
        var.set("group task")
    async with asyncio.TaskGroup() as tg:
        t = tg.create_task(child(), context=ctx)
    say("group task's context is it", t.get_context() is ctx, ctx[var])


async def streams():
    var.set("at start_server")

    async def handle(reader, writer):
        say("server handler sees", get())
        var.set("handler")
        writer.write(await reader.readline())
        writer.close()
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    var.set("after start_server")
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"hi\n")
    await reader.readline()
    writer.close()
    server.close()
    await server.wait_closed()
    say("streams main sees", get())


async def protocols():
    loop = asyncio.get_running_loop()
    var.set("server start")
    servers = []

    class Server(asyncio.Protocol):
        def __init__(self):
            servers.append(self)
            self.name = "server %d" % len(servers)
            self.lost = loop.create_future()
            say(self.name, "factory sees", get())
            var.set(self.name + " factory")

        def connection_made(self, transport):
            self.transport = transport
            say(self.name, "made sees", get())
            var.set(self.name + " made")

        def data_received(self, data):
            say(self.name, "data sees", get())
            var.set(self.name + " " + data.decode())
            self.transport.write(data)

        def eof_received(self):
            say(self.name, "eof sees", get())

        def connection_lost(self, exc):
            say(self.name, "lost sees", get())
            self.lost.set_result(None)

    class Client(asyncio.Protocol):
        def __init__(self, name):
            self.name = name
            say(name, "factory sees", get())
            var.set(name + " factory")

        def connection_made(self, transport):
            say(self.name, "made sees", get())
            var.set(self.name + " made")

        def data_received(self, data):
            say(self.name, "data sees", get())
            self.echo.set_result(data)

    server = await loop.create_server(Server, "127.0.0.1", 0)
    var.set("after create_server")
    port = server.sockets[0].getsockname()[1]
    t1, c1 = await loop.create_connection(lambda: Client("client 1"),
                                          "127.0.0.1", port)
    say("create_connection's caller sees", get())
    var.set("main")
    t2, c2 = await loop.create_connection(lambda: Client("client 2"),
                                          "127.0.0.1", port)
    for t, c, data in ((t1, c1, "a"), (t2, c2, "b"), (t1, c1, "c")):
        c.echo = loop.create_future()
        t.write(data.encode())
        await c.echo
    t1.write_eof()
    t2.write_eof()
    for s in servers:
        await s.lost
    t1.close()
    t2.close()
    server.close()
    say("protocols main sees", get())


async def main():
    await inherit()
    await callbacks()
    tokens()
    contexts()
    await group()
    await given_context()
    await given_callbacks()
    await streams()
    await protocols()


asyncio.run(main())
print("\n".join(out))
