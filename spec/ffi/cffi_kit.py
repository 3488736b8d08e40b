"""What the cffi checks of tapio's ABI share (kinds_python.py,
tls_python.py): the library loaded from argv[1] (tapio_cdef.h) and
argv[2] (libtapio.so), and the way a Python program keeps cffi's
callbacks alive. A callback object collected while C still holds its
pointer crashes the program, so: each kind's protocol table and its
callbacks are made once and live as long as the program (the header asks
the table to outlive every transport that uses it); what differs per
connection goes in the user pointer, an ffi.new_handle the Python object
keeps until connection_lost (or a failed completion), when tapio stops
calling it. Exceptions in callbacks are collected in `errors` (cffi only
prints them and returns 0): each stops the loop run() is running
and run() raises it, so a check failing inside a callback fails the test
at once with its own message; the checks also assert none were left."""
import sys
import traceback

import cffi

ffi = cffi.FFI()
ffi.cdef(open(sys.argv[1]).read())
C = ffi.dlopen(sys.argv[2])
NULL = ffi.NULL
errors = []  # exceptions inside callbacks: cffi only prints them
running = []  # the loop run() runs, while it does


def on_error(exc, value, tb):
    errors.append(value.with_traceback(tb))  # run() raises it from there
    traceback.print_exception(exc, value, tb)
    if running:
        C.tapio_loop_stop(running[-1])


keep = []


def callback(ctype, fn):
    cb = ffi.callback(ctype, fn, onerror=on_error)
    keep.append(cb)
    return cb


def name(code):
    return ffi.string(C.tapio_errname(code)).decode()


def check(rc, what):
    if rc < 0:
        raise AssertionError("%s: %s" % (what, name(rc)))
    return rc


def table(ctype, **fns):
    """A protocol table of ctype whose callbacks call fns[name](obj, ...)
    with obj the Python object behind the user pointer."""
    proto = ffi.new(ctype + " *")
    proto.size = ffi.sizeof(ctype)
    for field, fn in fns.items():
        def relay(ud, *args, fn=fn):
            fn(ffi.from_handle(ud), *args)
        setattr(proto, field,
                callback(ffi.typeof(getattr(proto, field)), relay))
    keep.append(proto)
    return proto


class Obj:
    """Per-transport state: its handle is the user pointer; it lives in
    `live` until connection_lost (or a failed completion) lets it go."""
    live = set()

    def __init__(self, **kw):
        self.__dict__.update(kw)
        self.events, self.t = [], None
        self.ud = ffi.new_handle(self)
        Obj.live.add(self)

    def done(self):
        Obj.live.discard(self)


def on_connected(obj, status, t):
    obj.status, obj.t = status, t
    if status != 0:
        obj.events.append("failed:" + name(status))
        obj.done()
    if getattr(obj, "then", None):
        obj.then(obj)


connected = callback("tapio_connect_fn",
                     lambda ud, s, t: on_connected(ffi.from_handle(ud), s, t))


def new_loop():
    out = ffi.new("tapio_loop **")
    check(C.tapio_loop_new(out), "tapio_loop_new")
    return out[0]


def run(loop, seconds=10):
    """Runs loop until a callback stops it, failing after seconds; an
    exception raised inside a callback stops it and is raised here."""
    late, failed = [], len(errors)

    def deadline(_ud):
        late.append(1)
        C.tapio_loop_stop(loop)
    h = ffi.new("tapio_handle **")
    check(C.tapio_call_later(loop, seconds, callback("tapio_call_fn",
                                                     deadline), NULL, h),
          "call_later")
    running.append(loop)
    try:
        check(C.tapio_loop_run(loop), "tapio_loop_run")
    finally:
        running.pop()
    C.tapio_handle_cancel(h[0])
    C.tapio_handle_release(h[0])
    if len(errors) > failed:
        raise errors[failed]
    assert not late, "deadline passed"


def options(loop, **kw):
    out = ffi.new("tapio_options **")
    check(C.tapio_options_new(loop, out), "tapio_options_new")
    for key, value in kw.items():
        if isinstance(value, str):
            rc = C.tapio_options_set_str(out[0], key.encode(), value.encode())
        else:
            rc = C.tapio_options_set_int(out[0], key.encode(), value)
        check(rc, "option " + key)
    return ffi.gc(out[0], C.tapio_options_free)


def addr_of(host, port):
    addr = ffi.new("char[]", C.TAPIO_ADDR_MAX)
    n = ffi.new("size_t *", C.TAPIO_ADDR_MAX)
    check(C.tapio_addr_parse(host.encode(), port, addr, n), "addr_parse")
    return addr, n[0]


def addr_format(addr, addrlen):
    host, port, fam = ffi.new("char[64]"), ffi.new("int *"), ffi.new("int *")
    check(C.tapio_addr_format(addr, addrlen, host, 64, port, fam),
          "addr_format")
    return ffi.string(host).decode(), port[0], fam[0]


def sockname(t):
    host, port = ffi.new("char[64]"), ffi.new("int *")
    check(C.tapio_transport_get_sockname(t, host, 64, port, NULL), "sockname")
    return ffi.string(host).decode(), port[0]
