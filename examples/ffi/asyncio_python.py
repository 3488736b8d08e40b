"""tapio inside a Python asyncio program, through cffi alone: asyncio's
loop owns the process and drives tapio's (add_reader on its descriptor,
call_later for its timeout: no busy polling); a tapio TCP server whose
protocol is Python functions serves asyncio clients of the same process.

  asyncio_python.py TAPIO_CDEF_H LIBTAPIO_SO

A line "close" makes the server close the connection from its callback; a
line "raise" makes the callback raise, which goes to tapio's exception
handler and fails that connection, as asyncio does with a protocol's
error. Prints what each client saw, then "steps N" and exits 0.
"""
import asyncio
import sys

import cffi

ffi = cffi.FFI()
ffi.cdef(open(sys.argv[1]).read())
C = ffi.dlopen(sys.argv[2])


def check(rc, what):
    if rc < 0:
        raise OSError(rc, "%s: %s" % (what, ffi.string(C.tapio_errname(rc))
                                      .decode()))
    return rc


class TapioDriver:
    """Steps a tapio loop from asyncio's: when its descriptor is readable,
    and when its timeout comes. Work added between steps (a write from a
    coroutine) makes the descriptor readable by itself."""

    def __init__(self, aloop):
        out = ffi.new("tapio_loop **")
        check(C.tapio_loop_new(out), "tapio_loop_new")
        self.loop, self.aloop = out[0], aloop
        self.fd = check(C.tapio_loop_backend_fd(self.loop), "backend_fd")
        self.timer, self.steps = None, 0
        aloop.add_reader(self.fd, self.step)

    def step(self):
        self.steps += 1
        check(C.tapio_loop_run_once(self.loop, 0), "run_once")
        if self.timer:
            self.timer.cancel()
        ms = C.tapio_loop_backend_timeout(self.loop)
        self.timer = (self.aloop.call_later(ms / 1000, self.step)
                      if ms >= 0 else None)

    def close(self):
        self.aloop.remove_reader(self.fd)
        if self.timer:
            self.timer.cancel()
        check(C.tapio_loop_free(self.loop), "tapio_loop_free")


keep = []  # cffi frees a callback's thunk with its object: keep them all


def callback(ctype, fn, **kw):
    cb = ffi.callback(ctype, fn, **kw)
    keep.append(cb)
    return cb


def guarded(fn):
    """A C caller cannot take a Python exception: cffi would print it and
    return as if nothing happened, leaving the connection open. Do what
    asyncio (and tapio's Lua binding) does instead: the exception handler
    hears of it, and the transport fails with TAPIO_ECALLBACK."""
    def call(ud, t, *args):
        try:
            return fn(ud, t, *args)
        except Exception as e:
            msg = ("%s: %r" % (fn.__name__, e)).encode()
            C.tapio_loop_call_exception_handler(
                C.tapio_transport_get_loop(t), C.TAPIO_ECALLBACK, msg, t)
            C.tapio_transport_fail(t, C.TAPIO_ECALLBACK, msg)
    return call


@guarded
def data_received(_ud, t, data, n):
    line = ffi.buffer(data, n)[:]
    if line == b"raise\n":
        raise ValueError("asked to raise")
    if line == b"close\n":
        C.tapio_transport_close(t)  # from inside the callback: safe
        return
    C.tapio_transport_write(t, line.upper(), n)


def make_protocol():
    proto = ffi.new("tapio_protocol *")
    proto.size = ffi.sizeof("tapio_protocol")
    proto.data_received = callback(
        "void(void *, tapio_transport *, const char *, size_t)",
        data_received)
    keep.append(proto)
    return proto


def make_factory(proto):
    def factory(_ud, _server, out, out_ud):
        out[0] = proto
        out_ud[0] = ffi.NULL
        return 0
    # should it ever raise, cffi returns `error`: the connection is
    # refused and the exception handler hears TAPIO_ECALLBACK
    return callback("int(void *, tapio_server *, const tapio_protocol **,"
                    " void **)", factory, error=C.TAPIO_ECALLBACK)


def completion(aloop, ctype):
    """A tapio completion callback that settles an asyncio future."""
    fut = aloop.create_future()

    def done(_ud, *args):
        fut.set_result(args)
    return fut, callback(ctype, done)


async def exchange(port, *lines):
    """Sends each line after the reply to the one before; the last one's
    reply is all the server sends until it ends the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    got = []
    for i, line in enumerate(lines, 1):
        writer.write(line)
        got.append(await (reader.readline() if i < len(lines)
                          else reader.read()))
    writer.close()
    await writer.wait_closed()
    return got


async def main():
    aloop = asyncio.get_running_loop()
    tapio = TapioDriver(aloop)
    reported = []
    handler = callback(
        "void(void *, tapio_loop *, int, const char *, tapio_transport *)",
        lambda _ud, _l, code, msg, _t: reported.append(
            (ffi.string(C.tapio_errname(code)).decode(),
             ffi.string(msg).decode())))
    C.tapio_loop_set_exception_handler(tapio.loop, handler, ffi.NULL)

    listening, on_listening = completion(
        aloop, "void(void *, int, tapio_server *)")
    host = ffi.new("char[]", b"127.0.0.1")  # the array below only points
    hosts = ffi.new("const char *[1]", [host])  # at it: keep both alive
    check(C.tapio_create_server(tapio.loop, hosts, 1, 0,
                                make_factory(make_protocol()), ffi.NULL,
                                ffi.NULL, on_listening, ffi.NULL),
          "tapio_create_server")
    status, server = await listening
    check(status, "tapio_create_server")
    port = ffi.new("int *")
    check(C.tapio_server_get_address(server, 0, ffi.NULL, 0, port, ffi.NULL),
          "tapio_server_get_address")
    print("listening")

    print("close:", await exchange(port[0], b"hello\n", b"close\n"))
    print("raise:", await exchange(port[0], b"hello\n", b"raise\n"))
    for name, message in reported:
        print("handler:", name, message)

    closed, on_closed = completion(aloop, "void(void *, tapio_server *)")
    check(C.tapio_server_close(server), "tapio_server_close")
    check(C.tapio_server_wait_closed(server, on_closed, ffi.NULL),
          "tapio_server_wait_closed")
    await closed
    C.tapio_server_release(server)
    tapio.close()
    print("steps", tapio.steps)


asyncio.run(main())
