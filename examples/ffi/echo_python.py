"""TCP echo, server and client, in Python through tapio's C ABI alone:
cffi reads the generated declarations (tapio_cdef.h) as they are, and the
protocols are C tables of Python callbacks.

  echo_python.py TAPIO_CDEF_H LIBTAPIO_SO serve [PORT [N]]
      listens on 127.0.0.1:PORT (0, the default: a free port), prints
      "listening on PORT", echoes; after N connections (0: never) have
      ended, prints "served N" and exits.
  echo_python.py TAPIO_CDEF_H LIBTAPIO_SO client PORT SIZE...
      one connection per SIZE, all at once: each sends SIZE bytes of its
      own, checks that exactly those come back, closes; prints
      "echoed SIZE" for each, in order, or exits 1 naming what differed.
"""
import sys

import cffi

ffi = cffi.FFI()
ffi.cdef(open(sys.argv[1]).read())
C = ffi.dlopen(sys.argv[2])
keep = []  # callbacks live as long as the program


def callback(ctype, fn):
    cb = ffi.callback(ctype, fn)
    keep.append(cb)
    return cb


def check(rc, what):
    if rc != 0:
        raise SystemExit("echo_python: %s: %s"
                         % (what, ffi.string(C.tapio_strerror(rc)).decode()))


def new_protocol(**callbacks):
    proto = ffi.new("tapio_protocol *")
    proto.size = ffi.sizeof("tapio_protocol")
    types = {
        "connection_made": "void(void *, tapio_transport *)",
        "connection_lost":
            "void(void *, tapio_transport *, int, const char *)",
        "pause_writing": "void(void *, tapio_transport *)",
        "resume_writing": "void(void *, tapio_transport *)",
        "data_received":
            "void(void *, tapio_transport *, const char *, size_t)",
    }
    for name, fn in callbacks.items():
        setattr(proto, name, callback(types[name], fn))
    keep.append(proto)
    return proto


def new_loop():
    lp = ffi.new("tapio_loop **")
    check(C.tapio_loop_new(lp), "tapio_loop_new")
    return lp[0]


def serve(port, limit):
    loop = new_loop()
    served = [0]
    server = []

    def lost(_ud, _t, code, message):
        if code:
            print("echo_python: connection lost:", ffi.string(message))
        served[0] += 1
        if served[0] == limit:
            C.tapio_loop_stop(loop)

    # A void callback must return None: cffi reports anything else, and
    # an exception in a callback, on stderr and goes on.
    def received(_ud, t, data, n):
        C.tapio_transport_write(t, data, n)

    # asyncio's flow control: stop reading while the peer does not read
    def pause(_ud, t):
        C.tapio_transport_pause_reading(t)

    def resume(_ud, t):
        C.tapio_transport_resume_reading(t)

    echo = new_protocol(data_received=received, pause_writing=pause,
                        resume_writing=resume, connection_lost=lost)

    def factory(_ud, _s, proto, ud):
        proto[0] = echo
        ud[0] = ffi.NULL
        return 0

    def listening(_ud, status, s):
        check(status, "tapio_create_server")
        server.append(s)
        host, p = ffi.new("char[64]"), ffi.new("int *")
        check(C.tapio_server_get_address(s, 0, host, 64, p, ffi.NULL),
              "address")
        print("listening on %d" % p[0], flush=True)

    # the array only points at the string: the string needs a name of its
    # own to stay alive (cffi frees an unnamed one as the line ends)
    host = ffi.new("char[]", b"127.0.0.1")
    hosts = ffi.new("const char *[1]", [host])
    check(C.tapio_create_server(
        loop, hosts, 1, port,
        callback("int(void *, tapio_server *, const tapio_protocol **,"
                 " void **)", factory), ffi.NULL, ffi.NULL,
        callback("void(void *, int, tapio_server *)", listening),
        ffi.NULL), "tapio_create_server")
    check(C.tapio_loop_run(loop), "tapio_loop_run")
    C.tapio_server_release(server[0])
    check(C.tapio_loop_free(loop), "tapio_loop_free")
    print("served %d" % served[0])


def pattern(size):
    return bytes((i * 7 + size) % 256 for i in range(size))


def clients(port, sizes):
    loop = new_loop()
    conns = {}  # the handle of each connection: its bytes
    left = [len(sizes)]

    def made(ud, t):
        conn = conns[int(ffi.cast("intptr_t", ud))]
        data = conn["out"]
        for k in range(0, len(data), 4096):  # in pieces, as a program would
            C.tapio_transport_write(t, data[k:k + 4096],
                                    len(data[k:k + 4096]))

    def received(ud, t, data, n):
        conn = conns[int(ffi.cast("intptr_t", ud))]
        conn["in"] += ffi.buffer(data, n)[:]
        if len(conn["in"]) >= len(conn["out"]):
            C.tapio_transport_close(t)

    def lost(ud, _t, code, message):
        conn = conns[int(ffi.cast("intptr_t", ud))]
        conn["lost"] = code
        left[0] -= 1
        if left[0] == 0:
            C.tapio_loop_stop(loop)

    proto = new_protocol(connection_made=made, data_received=received,
                         connection_lost=lost)
    def on_connected(_ud, status, _t):
        check(status, "connect")

    connected = callback("void(void *, int, tapio_transport *)",
                         on_connected)
    for i, size in enumerate(sizes):
        conns[i] = {"out": pattern(size), "in": b"", "lost": None}
        check(C.tapio_create_connection(
            loop, b"127.0.0.1", port, proto, ffi.cast("void *", i),
            ffi.NULL, connected, ffi.NULL), "tapio_create_connection")
    def on_deadline(_ud):
        C.tapio_loop_stop(loop)

    stop = callback("void(void *)", on_deadline)
    C.tapio_call_later(loop, 60, stop, ffi.NULL, ffi.NULL)  # a bound
    check(C.tapio_loop_run(loop), "tapio_loop_run")
    check(C.tapio_loop_free(loop), "tapio_loop_free")
    for i, size in enumerate(sizes):
        conn = conns[i]
        if conn["lost"] != 0 or conn["in"] != conn["out"]:
            raise SystemExit("echo_python: connection %d: %d of %d bytes "
                             "back, lost %r" % (i, len(conn["in"]), size,
                                                conn["lost"]))
        print("echoed %d" % size)


if sys.argv[3] == "serve":
    serve(int(sys.argv[4]) if len(sys.argv) > 4 else 0,
          int(sys.argv[5]) if len(sys.argv) > 5 else 0)
else:
    clients(int(sys.argv[4]), [int(s) for s in sys.argv[5:]])
