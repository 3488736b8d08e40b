"""TLS peers for tapio's tests, written with Python's ssl and asyncio: the
other side of a connection whose behaviour another implementation defines.

    peer.py MODE CERTDIR [PORT]

Servers print "PORT <n>" once listening on 127.0.0.1 (port 0), then serve
one connection and exit; clients connect to PORT. Every line they print is
something the test checks. Modes:

    echo-server        asyncio TLS echo; prints "GOT <line>" per line
    echo-server-tls12  the same, TLS 1.2 at most
    cert-server        asyncio TLS echo that requires a client certificate
                       and prints "PEER <commonName>"
    starttls-server    plain asyncio server: on "STARTTLS\\n" answers
                       "GO\\n", upgrades with loop.start_tls, then echoes
    silent-server      ssl socket that completes the handshake, then never
                       reads again (never answers close_notify)
    echo-client        asyncio TLS client: sends "hello from python\\n",
                       prints "GOT <echo>", closes, prints "CLOSED"
    starttls-client    plain asyncio client: sends "STARTTLS\\n", waits for
                       "GO\\n", upgrades, sends "hello after starttls\\n" at
                       once, prints "GOT <echo>"
    first-data-client  a handshake over memory BIOs whose last flight
                       goes in one send with "hello\n" (uvloop's
                       test_first_data_after_wakeup); prints "GOT <echo>"
    fault-server       an ssl socket (ragged ends raised, not hidden) that
    fault-client       follows commands on stdin, one a line, for the
                       tests of faults under TLS:
        send N         sends N bytes of test.h's pattern; prints "STUCK
                       <sent>" if the socket takes nothing for a second
                       (the other side's reading stopped), "SENT N" at
                       the end
        read           reads to the end, printing "READ <total>" after
                       every piece, then "END clean" (close_notify),
                       "END truncated" (a TCP end without it), "END reset"
                       or "END <exception>"; then exits
    fault-starttls-server
                       the server side of STARTTLS on a plain socket:
                       reads the line "STARTTLS", answers "GO\\n", then
                       is a fault-server on the upgraded connection
    notify-first-server
                       TLS over memory BIOs: answers "ping" with "pong",
                       then reads nothing until "shut" comes on stdin;
                       then sends its close_notify without waiting and
                       reads on to the client's close_notify: prints
                       "READ <total>" and "END clean"
    garbage-server     ssl socket: reads a line, prints "LINE <line>",
                       then writes a record of garbage under the session
                       (on the socket itself) and reads to the end
    starttls-first-data-client
                       plain client: "STARTTLS\\n", waits for "GO\\n",
                       then a handshake over memory BIOs whose last
                       flight goes in one send with "hello\\n"; prints
                       "GOT <echo>"
"""
import asyncio
import os
import select
import socket
import ssl
import sys


def server_ctx(certs, tls12=False, client_cert=False):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(os.path.join(certs, "server.pem"),
                        os.path.join(certs, "server.key"))
    if tls12:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    if client_cert:
        ctx.load_verify_locations(os.path.join(certs, "ca.pem"))
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def client_ctx(certs):
    ctx = ssl.create_default_context(cafile=os.path.join(certs, "ca.pem"))
    return ctx


def say(*words):
    print(*words, flush=True)


class Echo(asyncio.Protocol):
    def __init__(self, done):
        self.done = done
        self.buf = b""

    def connection_made(self, transport):
        self.transport = transport
        cert = transport.get_extra_info("peercert")
        if cert:
            for rdn in cert["subject"]:
                for key, value in rdn:
                    if key == "commonName":
                        say("PEER", value)

    def data_received(self, data):
        self.transport.write(data)
        self.buf += data
        while b"\n" in self.buf:
            line, self.buf = self.buf.split(b"\n", 1)
            say("GOT", line.decode())

    def connection_lost(self, exc):
        say("LOST", type(exc).__name__ if exc else "None")
        if not self.done.done():
            self.done.set_result(None)


async def serve(ctx):
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    server = await loop.create_server(lambda: Echo(done), "127.0.0.1", 0,
                                      ssl=ctx)
    say("PORT", server.sockets[0].getsockname()[1])
    await done
    server.close()


async def starttls_server(certs):
    loop = asyncio.get_running_loop()
    done = loop.create_future()

    async def handle(reader, writer):
        line = await reader.readline()
        say("LINE", line.decode().strip())
        writer.write(b"GO\n")
        await writer.drain()
        await writer.start_tls(server_ctx(certs))
        while True:
            data = await reader.readline()
            if not data:
                break
            say("GOT", data.decode().strip())
            writer.write(data)
            await writer.drain()
        writer.close()
        done.set_result(None)

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    say("PORT", server.sockets[0].getsockname()[1])
    await done
    server.close()


def accept_one():
    """Listens on 127.0.0.1 (port 0), prints "PORT <n>"; the first
    connection."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1)
    say("PORT", lsock.getsockname()[1])
    conn, _ = lsock.accept()
    lsock.close()
    return conn


def silent_server(certs):
    ctx = server_ctx(certs)
    conn = accept_one()
    tls = ctx.wrap_socket(conn, server_side=True)
    say("HANDSHAKE", tls.version())
    sys.stdin.read()  # until the test ends us; nothing is ever read


async def echo_and_close(reader, writer, line):
    writer.write(line)
    echo = await reader.readline()
    say("GOT", echo.decode().strip())
    writer.close()
    await writer.wait_closed()
    say("CLOSED")


async def echo_client(certs, port):
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=client_ctx(certs), server_hostname="localhost")
    await echo_and_close(reader, writer, b"hello from python\n")


async def starttls_client(certs, port):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"STARTTLS\n")
    line = await reader.readline()
    say("LINE", line.decode().strip())
    await writer.start_tls(client_ctx(certs), server_hostname="localhost")
    await echo_and_close(reader, writer, b"hello after starttls\n")


PERIOD = 251 * 256  # test.h's pattern repeats after this many bytes
PATTERN = bytes(((i * 31 + i // 251) & 0xFF) for i in range(PERIOD))


def pattern(offset, n):
    start = offset % PERIOD
    reps = (start + n) // PERIOD + 1
    return (PATTERN * reps)[start:start + n]


def send_pattern(tls, n):
    tls.setblocking(False)
    sent, stuck = 0, False
    while sent < n:
        try:
            sent += tls.send(pattern(sent, min(16384, n - sent)))
            continue
        except ssl.SSLWantReadError:
            select.select([tls], [], [], 1.0)
            continue
        except ssl.SSLWantWriteError:
            pass
        if stuck:
            select.select([], [tls], [])
        elif not select.select([], [tls], [], 1.0)[1]:
            say("STUCK", sent)
            stuck = True
    tls.setblocking(True)
    say("SENT", sent)


def read_to_end(tls):
    total = 0
    try:
        while True:
            data = tls.recv(65536)
            if not data:
                say("END clean")
                return
            total += len(data)
            say("READ", total)
    except ssl.SSLError as e:
        # OpenSSL names a TCP end it read (a FIN); a failed read of the
        # socket (a RST) is an EOF error without a reason
        if e.reason == "UNEXPECTED_EOF_WHILE_READING":
            say("END truncated")
        elif isinstance(e, ssl.SSLEOFError) and not e.reason:
            say("END reset")
        else:
            say("END", type(e).__name__, e)
    except ConnectionResetError:
        say("END reset")
    except Exception as e:  # noqa: BLE001 - the test reads the name
        say("END", type(e).__name__)


def fault_peer(tls):
    for line in sys.stdin:
        words = line.split()
        if words and words[0] == "send":
            send_pattern(tls, int(words[1]))
        elif words and words[0] == "read":
            read_to_end(tls)
            return


def small_send_buffer(conn):
    """What backs up when the other side stops reading: a little, soon."""
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)


def strict(ctx):
    """A TCP end without close_notify is an error, not an end: some
    Pythons (Debian's 3.11.2) ignore it by default."""
    ctx.options &= ~getattr(ssl, "OP_IGNORE_UNEXPECTED_EOF", 0)
    return ctx


def starttls_line(conn):
    """Reads the clear "STARTTLS\\n" (nothing follows it before "GO") and
    answers "GO\\n"."""
    line = b""
    while not line.endswith(b"\n"):
        data = conn.recv(1)
        if not data:
            sys.exit("the client left before STARTTLS")
        line += data
    say("LINE", line.decode().strip())
    conn.sendall(b"GO\n")


def fault_server(certs, starttls=False):
    conn = accept_one()
    small_send_buffer(conn)
    if starttls:
        starttls_line(conn)
    fault_peer(strict(server_ctx(certs)).wrap_socket(
        conn, server_side=True, suppress_ragged_eofs=False))


def fault_client(certs, port):
    conn = socket.socket()
    small_send_buffer(conn)
    conn.connect(("127.0.0.1", port))
    tls = strict(client_ctx(certs)).wrap_socket(conn, server_hostname="localhost",
                                        suppress_ragged_eofs=False)
    say("HANDSHAKE", tls.version())
    fault_peer(tls)


def memory_tls(ctx, server_side, **kw):
    """An SSLObject over memory BIOs: what goes out is sent when asked."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    return ctx.wrap_bio(incoming, outgoing, server_side=server_side,
                        **kw), incoming, outgoing


def memory_call(sock, tls, incoming, outgoing, fn, *args, send=True):
    """fn(*args) on tls, reading the socket as it needs; what it wrote
    last is sent after it returned (send), or left in outgoing."""
    while True:
        try:
            result = fn(*args)
            break
        except ssl.SSLWantReadError:
            if outgoing.pending:
                sock.sendall(outgoing.read())
            data = sock.recv(65536)
            if not data:
                raise
            incoming.write(data)
    if send and outgoing.pending:
        sock.sendall(outgoing.read())
    return result


def notify_first_server(certs):
    conn = accept_one()
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    io = (conn,) + memory_tls(server_ctx(certs), True)
    memory_call(*io, io[1].do_handshake)
    say("LINE", memory_call(*io, io[1].read, 5).decode().strip())
    memory_call(*io, io[1].write, b"pong\n")
    sys.stdin.readline()  # "shut": the client's backlog waits meanwhile
    tls, incoming, outgoing = io[1:]
    try:
        tls.unwrap()  # our close_notify; the client's is not here yet
    except ssl.SSLWantReadError:
        pass
    conn.sendall(outgoing.read())
    total = 0
    while True:
        try:
            total += len(memory_call(*io, tls.read, 65536))
        except ssl.SSLZeroReturnError:
            break
    say("READ", total)
    say("END clean")
    conn.close()


def garbage_server(certs):
    conn = accept_one()
    tls = server_ctx(certs).wrap_socket(conn, server_side=True)
    line = b""
    while not line.endswith(b"\n"):
        line += tls.recv(1)
    say("LINE", line.decode().strip())
    # an application data record whose bytes are not the session's
    os.write(tls.fileno(), b"\x17\x03\x03\x00\x05garbage")
    while os.read(tls.fileno(), 4096):
        pass


def first_data_client(certs, port, starttls):
    """Sends "hello" in the send of its last handshake flight (its
    Finished), after a STARTTLS line exchange if starttls."""
    sock = socket.create_connection(("127.0.0.1", port))
    if starttls:
        sock.sendall(b"STARTTLS\n")
        line = b""
        while not line.endswith(b"\n"):
            line += sock.recv(1)
        say("LINE", line.decode().strip())
    io = (sock,) + memory_tls(client_ctx(certs), False,
                              server_hostname="localhost")
    tls = io[1]
    memory_call(*io, tls.do_handshake, send=False)
    memory_call(*io, tls.write, b"hello\n")  # with the last flight
    echo = memory_call(*io, tls.read, 6)
    say("GOT", echo.decode().strip())
    sock.close()


def main():
    mode, certs = sys.argv[1], sys.argv[2]
    port = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    if mode == "echo-server":
        asyncio.run(serve(server_ctx(certs)))
    elif mode == "echo-server-tls12":
        asyncio.run(serve(server_ctx(certs, tls12=True)))
    elif mode == "cert-server":
        asyncio.run(serve(server_ctx(certs, client_cert=True)))
    elif mode == "starttls-server":
        asyncio.run(starttls_server(certs))
    elif mode == "silent-server":
        silent_server(certs)
    elif mode == "echo-client":
        asyncio.run(echo_client(certs, port))
    elif mode == "starttls-client":
        asyncio.run(starttls_client(certs, port))
    elif mode == "first-data-client":
        first_data_client(certs, port, starttls=False)
    elif mode == "fault-server":
        fault_server(certs)
    elif mode == "fault-starttls-server":
        fault_server(certs, starttls=True)
    elif mode == "fault-client":
        fault_client(certs, port)
    elif mode == "garbage-server":
        garbage_server(certs)
    elif mode == "notify-first-server":
        notify_first_server(certs)
    elif mode == "starttls-first-data-client":
        first_data_client(certs, port, starttls=True)
    else:
        sys.exit("unknown mode " + mode)


if __name__ == "__main__":
    main()
