"""The kinds beyond TCP through the C ABI from Python's cffi, as a Python
user drives them: a datagram endpoint, a subprocess, the resolver (and a
lookup cancelled while its query is out), call_soon_threadsafe from
Python threads. Asserts the callbacks' order and arguments, the bytes,
the error names. The TLS client is tls_python.py's.

  kinds_python.py TAPIO_CDEF_H LIBTAPIO_SO
"""
import gc
import socket
import sys
import threading

sys.dont_write_bytecode = True  # no __pycache__ beside the sources
from cffi_kit import (C, NULL, Obj, addr_format, addr_of, callback, check,
                      connected, errors, ffi, name, new_loop, on_error,
                      options, run, sockname, table)


def closed_udp_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# ---- Datagrams ------------------------------------------------------------

def dgram_received(obj, t, data, n, addr, addrlen):
    payload = ffi.buffer(data, n)[:]
    obj.events.append(("datagram", payload, addr_format(addr, addrlen)))
    if obj.echo:  # the sender's address goes straight back, borrowed
        check(C.tapio_transport_sendto(t, b"echo:" + payload, n + 5, addr,
                                       addrlen), "sendto (echo)")
    obj.step(obj)


def dgram_error(obj, _t, code, message):
    obj.events.append(("error", name(code), ffi.string(message).decode()))
    obj.step(obj)


def dgram_lost(obj, _t, code, _message):
    obj.events.append(("lost", name(code) if code else 0))
    obj.done()
    obj.step(obj)


DGRAM = table("tapio_datagram_protocol",
              connection_made=lambda obj, t: obj.events.append("made"),
              datagram_received=dgram_received,
              error_received=dgram_error, connection_lost=dgram_lost)


def endpoint(loop, step, then, echo=False, **opts):
    obj = Obj(echo=echo, step=step, then=then)
    check(C.tapio_create_datagram_endpoint(loop, DGRAM, obj.ud,
                                           options(loop, **opts), connected,
                                           obj.ud), "datagram endpoint")
    return obj


def test_datagram():
    loop = new_loop()
    closed = closed_udp_port()
    ends = {}

    def idle(_obj):
        pass

    def all_lost(_obj):
        if all(e.events[-1:] and e.events[-1][0] == "lost"
               for e in ends.values()):
            C.tapio_loop_stop(loop)

    def client_step(b):  # after each of b's events
        got = [e for e in b.events if e[0] == "datagram"]
        if len(got) == 2 and len(b.events) == 3:  # the echoes: on to errors
            addr, n = addr_of("127.0.0.1", closed)
            check(C.tapio_transport_sendto(b.t, b"x", 1, addr, n), "sendto")
        elif b.events[-1][0] == "error":
            ends["c"] = endpoint(loop, connected_step, connected_up,
                                 remote_host="127.0.0.1", remote_port=closed)

    def connected_up(c):
        check(c.status, "connected endpoint")
        a_addr, n = addr_of("127.0.0.1", ends["a"].port)
        assert C.tapio_transport_sendto(c.t, b"x", 1, a_addr, n) == \
            C.TAPIO_EISCONN
        check(C.tapio_transport_sendto(c.t, b"y", 1, NULL, 0), "sendto peer")

    def connected_step(c):
        if c.events[-1][0] == "error":
            for e in ends.values():
                C.tapio_transport_close(e.t)
            for e in ends.values():
                e.step = all_lost

    def b_up(b):
        check(b.status, "endpoint b")
        b.port = sockname(b.t)[1]
        assert C.tapio_transport_sendto(b.t, b"x", 1, NULL, 0) == \
            C.TAPIO_EINVAL  # no peer, no address
        addr, n = addr_of("127.0.0.1", ends["a"].port)
        for payload in (b"hello", b""):
            check(C.tapio_transport_sendto(b.t, payload, len(payload), addr,
                                           n), "sendto")

    def a_up(a):
        check(a.status, "endpoint a")
        assert C.tapio_transport_get_kind(a.t) == C.TAPIO_TRANSPORT_DATAGRAM
        a.port = sockname(a.t)[1]
        ends["b"] = endpoint(loop, client_step, b_up, local_host="127.0.0.1",
                             local_port=0)

    ends["a"] = endpoint(loop, idle, a_up, echo=True,
                         local_host="127.0.0.1", local_port=0)
    # an option the call does not take: refused at once, in words
    assert C.tapio_create_datagram_endpoint(
        loop, DGRAM, NULL, options(loop, backlog=5), connected, NULL) == \
        C.TAPIO_EINVAL
    assert b"backlog" in ffi.string(C.tapio_loop_error_message(loop))
    run(loop)
    a, b, c = ends["a"], ends["b"], ends["c"]
    b_from = ("127.0.0.1", b.port, C.TAPIO_AF_INET)
    assert a.events == ["made", ("datagram", b"hello", b_from),
                        ("datagram", b"", b_from), ("lost", 0)], a.events
    a_from = ("127.0.0.1", a.port, C.TAPIO_AF_INET)
    assert b.events[:3] == ["made", ("datagram", b"echo:hello", a_from),
                            ("datagram", b"echo:", a_from)], b.events
    assert b.events[3][:2] == ("error", "ECONNREFUSED"), b.events
    assert str(closed) in b.events[3][2], b.events  # the address sent to
    assert b.events[4:] == [("lost", 0)], b.events
    assert c.events[0] == "made" and c.events[2:] == [("lost", 0)], c.events
    assert c.events[1][:2] == ("error", "ECONNREFUSED"), c.events
    assert not Obj.live
    check(C.tapio_loop_free(loop), "tapio_loop_free")
    return "datagram endpoints"


def test_set_protocol():
    """set_protocol is typed with the stream table, which cffi holds to
    (a datagram table wants a cast); set_datagram_protocol takes the
    datagram one, and checks the kind."""
    loop = new_loop()
    ends = {}
    via = Obj(echo=False, step=lambda _o: C.tapio_loop_stop(loop))

    def a_up(a):
        check(a.status, "endpoint a")
        try:
            C.tapio_transport_set_protocol(a.t, DGRAM, via.ud)
            raise AssertionError("cffi took a datagram table uncast")
        except TypeError:
            pass
        assert C.tapio_transport_set_subprocess_protocol(
            a.t, PROCESS, via.ud) == C.TAPIO_EINVAL  # not a subprocess
        check(C.tapio_transport_set_datagram_protocol(a.t, DGRAM, via.ud),
              "set_datagram_protocol")
        proto = ffi.new("tapio_protocol **")
        assert C.tapio_transport_get_protocol(a.t, proto) == via.ud
        assert ffi.cast("tapio_datagram_protocol *", proto[0]) == DGRAM
        a.done()  # tapio calls a's protocol no more: a goes, via stays
        ends["b"] = endpoint(loop, None, b_up, local_host="127.0.0.1",
                             local_port=0)

    def b_up(b):
        check(b.status, "endpoint b")
        addr, n = addr_of("127.0.0.1", sockname(ends["a"].t)[1])
        check(C.tapio_transport_sendto(b.t, b"to whom", 7, addr, n), "sendto")

    ends["a"] = endpoint(loop, None, a_up, local_host="127.0.0.1",
                         local_port=0)
    run(loop)
    assert via.events == [("datagram", b"to whom", ("127.0.0.1",
                                                   sockname(ends["b"].t)[1],
                                                   C.TAPIO_AF_INET))]
    assert ends["a"].events == ["made"], ends["a"].events
    left = [2]

    def gone(_obj):
        left[0] -= 1
        if not left[0]:
            C.tapio_loop_stop(loop)
    via.step = ends["b"].step = gone
    for e in ends.values():
        C.tapio_transport_close(e.t)
    run(loop)
    assert via.events[-1] == ("lost", 0) and not Obj.live, Obj.live
    check(C.tapio_loop_free(loop), "tapio_loop_free")
    return "a datagram endpoint's protocol replaced"


def test_table_per_connection(n=50):
    """The other way to keep callbacks alive: a table per connection, of
    bound methods, let go (and collected) inside its own connection_lost.
    tapio reads nothing of a table after connection_lost returns, and
    cffi keeps a running callback's own data: nothing crashes (valgrind
    finds nothing either, run by hand on this file)."""
    loop = new_loop()
    conns, gone = set(), []

    class Conn:
        def __init__(self):
            self.proto = ffi.new("tapio_datagram_protocol *")
            self.proto.size = ffi.sizeof("tapio_datagram_protocol")
            self.proto.connection_lost = self.lost_cb = ffi.callback(
                "void(void *, tapio_transport *, int, const char *)",
                self.lost, onerror=on_error)

        def lost(self, _ud, _t, code, _message):
            del self.proto, self.lost_cb  # the table and this callback
            conns.discard(self)
            gc.collect()
            gone.append(code)
            if len(gone) == n:
                C.tapio_loop_stop(loop)

    def up(_ud, status, t):
        check(status, "endpoint")
        C.tapio_transport_close(t)
    made = callback("tapio_connect_fn", up)
    for _ in range(n):
        c = Conn()
        conns.add(c)
        check(C.tapio_create_datagram_endpoint(
            loop, c.proto, NULL, options(loop, local_host="127.0.0.1",
                                         local_port=0), made, NULL), "create")
    del c
    run(loop)
    assert gone == [0] * n and not conns, (gone, conns)
    check(C.tapio_loop_free(loop), "tapio_loop_free")
    return "a table per connection, let go in its connection_lost"


# ---- Subprocesses ---------------------------------------------------------

def pipe_data(obj, _t, fd, data, n):
    obj.events.append(("data", fd, ffi.buffer(data, n)[:]))


def pipe_lost(obj, _t, fd, code, _message):
    obj.events.append(("pipe_lost", fd, code))


def process_exited(obj, t):
    rc = ffi.new("int *")
    assert C.tapio_subprocess_get_returncode(t, rc) == 1
    obj.events.append(("exited", rc[0]))


def process_lost(obj, _t, code, _message):
    obj.events.append(("lost", code))
    obj.done()
    obj.step(obj)


PROCESS = table("tapio_subprocess_protocol",
                connection_made=lambda obj, t: obj.events.append("made"),
                pipe_data_received=pipe_data, pipe_connection_lost=pipe_lost,
                process_exited=process_exited, connection_lost=process_lost)


def check_process_order(events):
    assert events[0] == "made" and events[-1] == ("lost", 0), events
    assert [e for e in events if e[0] == "exited"], events
    for fd in (0, 1, 2):
        lost = events.index(("pipe_lost", fd, 0))
        assert all(events.index(e) < lost for e in events
                   if e[0] == "data" and e[1] == fd), events


def test_subprocess():
    loop = new_loop()
    left = [2]

    def step(_obj):
        left[0] -= 1
        if left[0] == 0:
            C.tapio_loop_stop(loop)

    def talk(obj):  # the child reads a line from its stdin
        check(obj.status, "subprocess_shell")
        assert C.tapio_transport_get_kind(obj.t) == \
            C.TAPIO_TRANSPORT_SUBPROCESS
        assert C.tapio_subprocess_get_pid(obj.t) > 0
        stdin = C.tapio_subprocess_get_pipe_transport(obj.t, 0)
        for t in (stdin, obj.t):  # the kind is checked, the pipe's too
            assert C.tapio_transport_set_datagram_protocol(t, DGRAM, obj.ud) \
                == C.TAPIO_EINVAL
        assert C.tapio_transport_set_subprocess_protocol(
            stdin, PROCESS, obj.ud) == C.TAPIO_EINVAL
        check(C.tapio_transport_set_subprocess_protocol(obj.t, PROCESS,
                                                        obj.ud), "set")
        check(C.tapio_transport_write(stdin, b"hi there\n", 9), "write")
        check(C.tapio_transport_close(stdin), "close stdin")

    def kill(obj):
        check(obj.status, "subprocess_exec")
        check(C.tapio_subprocess_kill(obj.t), "kill")

    shell = Obj(step=step, then=talk)
    check(C.tapio_subprocess_shell(
        loop, b"read x; echo out:$x; echo err >&2; exit 3", PROCESS,
        shell.ud, NULL, connected, shell.ud), "subprocess_shell")
    sleeper = Obj(step=step, then=kill)
    args = [ffi.new("char[]", b"30")]
    check(C.tapio_subprocess_exec(
        loop, b"sleep", ffi.new("const char *[]", args), 1, PROCESS,
        sleeper.ud, options(loop, stdin=C.TAPIO_STDIO_DEVNULL), connected,
        sleeper.ud), "subprocess_exec")
    # a program that cannot start is the call's error, never a child's 127
    assert C.tapio_subprocess_exec(loop, b"/no/such/program", NULL, 0,
                                   PROCESS, NULL, NULL, connected, NULL) \
        == C.TAPIO_ENOENT
    run(loop)
    ev = shell.events
    check_process_order(ev)
    assert ("data", 1, b"out:hi there\n") in ev, ev
    assert ("data", 2, b"err\n") in ev, ev
    assert ("exited", 3) in ev, ev
    ev = sleeper.events  # no stdin pipe: its fd 0 is /dev/null
    assert ev[0] == "made" and ("exited", -9) in ev, ev
    assert ev[-1] == ("lost", 0) and ("pipe_lost", 0, 0) not in ev, ev
    assert not Obj.live
    check(C.tapio_loop_free(loop), "tapio_loop_free")
    return "subprocesses"


# ---- The resolver ---------------------------------------------------------

def resolved(ud, status, res):
    obj = ffi.from_handle(ud)
    obj.status, obj.entries = status, []
    for i in range(C.tapio_addrinfo_count(res) if status == 0 else 0):
        addr, n = ffi.new("void **"), ffi.new("size_t *")
        kind, proto = ffi.new("int *"), ffi.new("int *")
        check(C.tapio_addrinfo_get(res, i, addr, n, NULL, kind, proto),
              "addrinfo_get")
        obj.entries.append(addr_format(addr[0], n[0]) + (kind[0], proto[0]))
    obj.done()
    obj.step(obj)


RESOLVED = callback("tapio_addrinfo_fn", resolved)


def lookup(loop, host, step, family=4):
    obj = Obj(step=step)
    check(C.tapio_getaddrinfo(loop, host, b"80", family,
                              C.TAPIO_SOCK_STREAM, 0, RESOLVED, obj.ud),
          "getaddrinfo")
    return obj


def test_resolver():
    loop = new_loop()
    stop = lambda _obj: C.tapio_loop_stop(loop)  # noqa: E731
    local = lookup(loop, b"localhost", stop)
    run(loop)
    assert local.status == 0, name(local.status)
    assert ("127.0.0.1", 80, C.TAPIO_AF_INET, C.TAPIO_SOCK_STREAM, 6) in \
        local.entries, local.entries
    # A DNS server that never answers, a datagram endpoint of the loop's:
    # the lookup "a." is cancelled once a query has reached it; "b." goes
    # on to fail, so that a's callback, if it were called, would have been.
    dns = Obj(step=None, then=stop, echo=False)
    check(C.tapio_create_datagram_endpoint(
        loop, DGRAM, dns.ud, options(loop, local_host="127.0.0.1",
                                     local_port=0), connected, dns.ud),
        "dns endpoint")
    run(loop)
    server = "127.0.0.1:%d" % sockname(dns.t)[1]
    check(C.tapio_loop_set_resolver(loop, server.encode(), 0.3, 1),
          "set_resolver")
    cancelled = []

    def on_query(_obj):
        if not cancelled:
            cancelled.append(C.tapio_cancel_pending(loop, a.ud))
            Obj.live.discard(a)
    dns.step = on_query
    a = lookup(loop, b"a.tapio-kinds.test", stop)
    b = lookup(loop, b"b.tapio-kinds.test", stop)
    run(loop)
    assert cancelled == [1], cancelled
    assert not hasattr(a, "status"), "a cancelled lookup completed"
    assert name(b.status) == "EAI_AGAIN", name(b.status)
    assert C.tapio_cancel_pending(loop, a.ud) == 0  # nothing left of it
    dns.step = stop
    C.tapio_transport_close(dns.t)
    run(loop)
    assert not Obj.live, Obj.live
    check(C.tapio_loop_free(loop), "tapio_loop_free")
    return "the resolver"


# ---- call_soon_threadsafe -------------------------------------------------

def test_threadsafe(nthreads=4, calls=200):
    loop = new_loop()
    ran, loop_thread = [], threading.get_ident()

    def call(ud):
        ran.append((threading.get_ident(), int(ffi.cast("intptr_t", ud))))
        if len(ran) == nthreads * calls:
            C.tapio_loop_stop(loop)
    fn = callback("tapio_call_fn", call)

    def thread(k):
        for i in range(calls):
            check(C.tapio_call_soon_threadsafe(
                loop, fn, ffi.cast("void *", k * calls + i)), "threadsafe")
    threads = [threading.Thread(target=thread, args=(k,))
               for k in range(nthreads)]

    def start(_ud):  # from inside the run: the loop waits while they call
        for th in threads:
            th.start()
    check(C.tapio_call_soon(loop, callback("tapio_call_fn", start), NULL,
                            NULL), "call_soon")
    run(loop)
    for th in threads:
        th.join()
    assert all(tid == loop_thread for tid, _ in ran)
    got = [v for _, v in ran]
    assert sorted(got) == list(range(nthreads * calls)), "each once"
    for k in range(nthreads):  # one thread's calls run in its order
        mine = [v for v in got if v // calls == k]
        assert mine == sorted(mine), k
    check(C.tapio_loop_free(loop), "tapio_loop_free")
    return "call_soon_threadsafe from %d threads" % nthreads


CHECKS = [test_datagram, test_set_protocol, test_table_per_connection,
          test_subprocess, test_resolver, test_threadsafe]
if __name__ == "__main__":
    passed = 0
    for fn in CHECKS:
        print(fn())
        gc.collect()  # anything C still used would crash here and after
        passed += 1
    assert not errors, errors
    print("%d passed, 0 failed" % passed)
