"""Real sockets and processes. Protocols: a peer (a plain blocking socket in a
thread, or this script alone) does the same thing to a server on asyncio
and to one on tapio (spec/parity_spec.lua), and each server writes down
its protocol's callbacks; client protocols likewise against a peer server
(a listener). Scenarios named tls_* are over TLS (the certificates of
spec/tls/make_certs.sh, in the directory TAPIO_TLS_CERTS names). Datagram
endpoints, subprocesses with streams, servers' lifecycles: a scenario on
asyncio writes down what it saw (ALONE), and the spec runs the same on
tapio. Python defines the order.

  parity_proto.py asyncio [SCENARIO...] on asyncio: "SCENARIO|server|event"
                                     then "SCENARIO|peer|event" lines
  parity_proto.py peer SCENARIO PORT the peer alone, against 127.0.0.1:PORT
  parity_proto.py listen SCENARIO    the listener alone: prints its port,
                                     then "peer|event" lines at the end
  parity_proto.py udp-echo           a UDP echo: prints its port, echoes
                                     "echo " + each datagram until "stop"
"""
import asyncio
import os
import socket
import ssl
import struct
import sys
import tempfile
import threading

BIG = 256 * 1024


def recv_all(sock):
    """Everything until the server's end of file, as a length."""
    n = 0
    while True:
        data = sock.recv(65536)
        if not data:
            return n
        n += len(data)


def recv_until(sock, want):
    got = b""
    while not got.endswith(want):
        data = sock.recv(65536)
        if not data:
            break
        got += data
    return got.decode()


# ---- the peers -------------------------------------------------------------

def peer_half_close(sock, out):
    sock.sendall(b"hello")
    sock.shutdown(socket.SHUT_WR)
    out.append("read %d bytes, then the end" % recv_all(sock))


def peer_eof_keep_open(sock, out):
    sock.sendall(b"hello")
    sock.shutdown(socket.SHUT_WR)
    out.append("read %s" % recv_until(sock, b"bye"))
    out.append("then %d bytes and the end" % recv_all(sock))


def peer_reset(sock, out):
    sock.sendall(b"x")
    out.append("read %s" % recv_until(sock, b"got x"))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                    struct.pack("ii", 1, 0))
    sock.close()  # a reset, not a FIN
    out.append("reset")


def peer_close_flushes(sock, out):
    out.append("read %d bytes, then the end" % recv_all(sock))


def peer_write_eof(sock, out):
    sock.sendall(b"ping")
    out.append("read %s" % recv_until(sock, b"pong"))
    out.append("then %d bytes and the end" % recv_all(sock))
    sock.sendall(b"more")
    sock.shutdown(socket.SHUT_WR)


def peer_small_buffer(sock, out):
    sock.sendall(b"0123456789")
    out.append("read %s" % recv_until(sock, b"done"))
    sock.close()


def peer_paused(sock, out):
    sock.sendall(b"abc")
    sock.shutdown(socket.SHUT_WR)
    out.append("read %d bytes, then the end" % recv_all(sock))


# Set once the flow_control server has written: its peer reads only then,
# so that the write meets full kernel buffers and must pause (a peer that
# reads meanwhile on the other core can take it all as it is sent). The
# peer alone ("peer" below) waits for a line on its standard input.
GO = threading.Event()


def peer_flow_control(sock, out):
    GO.wait()
    out.append("read %d bytes, then the end" % recv_all(sock))


PEERS = {
    "paused": peer_paused,
    "flow_control": peer_flow_control,
    "half_close": peer_half_close,
    "eof_keep_open": peer_eof_keep_open,
    "reset": peer_reset,
    "close_flushes": peer_close_flushes,
    "write_eof": peer_write_eof,
    "small_buffer": peer_small_buffer,
}


# ---- TLS: the server protocols under TLS, the peer a blocking ssl socket
# (certificates: spec/tls/make_certs.sh's, in TAPIO_TLS_CERTS) ------------

def certs(name):
    return os.path.join(os.environ["TAPIO_TLS_CERTS"], name)


def client_ctx(ca="ca.pem"):
    return ssl.create_default_context(cafile=certs(ca))


def server_ctx(cert="server"):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(certs(cert + ".pem"), certs(cert + ".key"))
    return ctx


def tls_connect(sock):
    # A ragged end raises here (SSLEOFError) rather than passing for a
    # close_notify: the peer tells them apart.
    return client_ctx().wrap_socket(sock, server_hostname="localhost",
                                    suppress_ragged_eofs=False)


def tls_recv_all(tls):
    """Everything until the server's close_notify, as text, and how the
    TLS stream ended."""
    got = b""
    try:
        while True:
            data = tls.recv(65536)
            if not data:
                return got.decode(), "close_notify"
            got += data
    except ssl.SSLEOFError:
        return got.decode(), "a ragged end"


def peer_tls_server_closes(sock, out):
    tls = tls_connect(sock)
    tls.sendall(b"hello")
    out.append("read %r, then %s" % tls_recv_all(tls))
    plain = tls.unwrap()  # our close_notify back; then TCP's end
    out.append("then %d bytes and the end" % recv_all(plain))


def peer_tls_peer_closes(sock, out):
    tls = tls_connect(sock)
    tls.sendall(b"hello")
    out.append("read %s" % recv_until(tls, b"got hello"))
    plain = tls.unwrap()  # sends close_notify, waits for the server's
    out.append("close_notify answered")
    out.append("then %d bytes and the end" % recv_all(plain))


def peer_tls_paused_close_notify(sock, out):
    tls = tls_connect(sock)
    for piece in (b"one ", b"two ", b"three"):
        tls.sendall(piece)
    plain = tls.unwrap()
    out.append("close_notify answered")
    out.append("then %d bytes and the end" % recv_all(plain))


PEERS.update({
    "tls_server_closes": peer_tls_server_closes,
    "tls_peer_closes": peer_tls_peer_closes,
    "tls_paused_close_notify": peer_tls_paused_close_notify,
})


def run_peer(name, port, out):
    sock = socket.create_connection(("127.0.0.1", port))
    try:
        (PEERS.get(name) or ALONE_PEERS[name])(sock, out)
    finally:
        if sock.fileno() >= 0:
            sock.close()


# ---- the servers on asyncio ------------------------------------------------

def error_name(exc):
    if exc is None:
        return "nil"
    return {ConnectionResetError: "ECONNRESET",
            ConnectionRefusedError: "ECONNREFUSED",
            BrokenPipeError: "EPIPE"}.get(type(exc), type(exc).__name__)


class Recording:
    """Writes down a stream protocol's callbacks in out; lost is set at
    the end."""

    def __init__(self, out, lost):
        self.out, self.lost = out, lost

    def connection_made(self, transport):
        self.transport = transport
        self.out.append("connection_made")

    def eof_received(self):
        if self.transport.is_closing():
            # asyncio's TLS transport calls eof_received after close()
            # when the peer answers close_notify (its plain transports
            # stop reading at close); tapio's, as its plain ones, does
            # not (lua/README.md's differences)
            return
        self.out.append("eof_received")

    def connection_lost(self, exc):
        self.out.append("connection_lost %s" % error_name(exc))
        self.lost.set_result(None)


class Recorder(Recording, asyncio.Protocol):
    def data_received(self, data):
        self.out.append("data_received %s" % data.decode())


class EofKeepOpen(Recorder):
    def eof_received(self):
        super().eof_received()
        asyncio.get_running_loop().call_soon(self.goodbye)
        return True  # half-open: the transport stays for goodbye

    def goodbye(self):
        self.out.append("is_closing %s" % self.transport.is_closing())
        self.transport.write(b"bye")
        self.transport.close()


class Ack(Recorder):
    def data_received(self, data):
        super().data_received(data)
        self.transport.write(b"got " + data)


class CloseFlushes(Recorder):
    def connection_made(self, transport):
        super().connection_made(transport)
        transport.write(b"z" * BIG)
        transport.close()
        self.out.append("is_closing %s" % transport.is_closing())


class WriteEof(Recorder):
    def data_received(self, data):
        super().data_received(data)
        if data == b"ping":
            self.transport.write(b"pong")
            self.out.append("can_write_eof %s" % self.transport.can_write_eof())
            self.transport.write_eof()


class SmallBuffer(Recording, asyncio.BufferedProtocol):
    def __init__(self, out, lost):
        super().__init__(out, lost)
        self.buf = bytearray(4)
        self.got = b""

    def get_buffer(self, sizehint):
        return self.buf

    def buffer_updated(self, nbytes):
        self.got += bytes(self.buf[:nbytes])
        self.out.append("buffer_updated %d" % nbytes)
        if len(self.got) == 10:
            self.transport.write(b"done")


class Paused(Recorder):
    def connection_made(self, transport):
        super().connection_made(transport)
        # Not transport.pause_reading() here: Debian 12's Python 3.11.2
        # starts reading after connection_made returns, pause or not (a
        # bug fixed in later 3.11 releases). tapio's spec pauses right here.
        asyncio.get_running_loop().call_soon(self.pause)

    def pause(self):
        self.transport.pause_reading()
        self.out.append("is_reading %s" % self.transport.is_reading())
        asyncio.get_running_loop().call_later(0.05, self.resume)

    def resume(self):
        self.out.append("resumed")
        self.transport.resume_reading()


class FlowControl(Recorder):
    def connection_made(self, transport):
        super().connection_made(transport)
        # 32 MiB to a peer not reading yet: more than the kernel's send and
        # receive buffers take, so that writing must pause
        transport.set_write_buffer_limits(high=64 * 1024)
        self.out.append("limits %d %d" % transport.get_write_buffer_limits())
        transport.write(b"z" * (128 * BIG))
        self.out.append("wrote")
        GO.set()

    def pause_writing(self):
        self.out.append("pause_writing")

    def resume_writing(self):
        self.out.append("resume_writing %d"
                        % self.transport.get_write_buffer_size())
        # Not transport.close() here: Python 3.11's selector transport
        # then calls connection_lost twice (the second time it raises
        # AttributeError inside the loop). tapio's spec closes right here.
        asyncio.get_running_loop().call_soon(self.transport.close)


class TlsBye(Recorder):
    def connection_made(self, transport):
        super().connection_made(transport)
        self.out.append("over %s" % transport.get_extra_info("cipher")[1])
        self.out.append("can_write_eof %s" % transport.can_write_eof())
        try:
            transport.write_eof()
        except NotImplementedError:
            self.out.append("write_eof refused")

    def data_received(self, data):
        super().data_received(data)
        self.transport.write(b"bye")
        self.transport.close()


class TlsPaused(Recording, asyncio.Protocol):
    """Reads only once the peer has sent its data and close_notify (here
    Python 3.11.2 pauses in connection_made, and delivers it all)."""

    def connection_made(self, transport):
        super().connection_made(transport)
        self.got = b""
        transport.pause_reading()
        self.out.append("is_reading %s" % transport.is_reading())
        asyncio.get_running_loop().call_later(0.05, self.resume)

    def resume(self):
        self.out.append("resumed")
        self.transport.resume_reading()

    def data_received(self, data):  # as many calls as records: not written
        self.got += data

    def eof_received(self):
        self.out.append("eof_received after %r" % self.got.decode())


SERVERS = {
    "paused": Paused,
    "flow_control": FlowControl,
    "half_close": Recorder,
    "eof_keep_open": EofKeepOpen,
    "reset": Ack,
    "close_flushes": CloseFlushes,
    "write_eof": WriteEof,
    "small_buffer": SmallBuffer,
    "tls_server_closes": TlsBye,
    "tls_peer_closes": Ack,
    "tls_paused_close_notify": TlsPaused,
}


async def serve(name):
    loop = asyncio.get_running_loop()
    out, peer_out = [], []
    lost = loop.create_future()
    server = await loop.create_server(
        lambda: SERVERS[name](out, lost), "127.0.0.1", 0,
        ssl=server_ctx() if name.startswith("tls_") else None)
    port = server.sockets[0].getsockname()[1]
    peer = threading.Thread(target=run_peer, args=(name, port, peer_out))
    peer.start()
    await lost
    await loop.run_in_executor(None, peer.join)
    server.close()
    await server.wait_closed()
    return out, peer_out


# ---- client protocols (CLIENTS) against a peer server (LISTENERS): a
# thread on a listening socket here, "parity_proto.py listen NAME" for
# tapio. A listener takes the listening socket and accepts what it needs.

def accept(lsock):
    conn, _ = lsock.accept()
    return conn


def listen_client_server_closes(lsock, out):
    with accept(lsock) as conn:
        out.append("read %s" % recv_until(conn, b"hello"))
        conn.sendall(b"bye")


def listen_client_half_close(lsock, out):
    with accept(lsock) as conn:
        conn.sendall(b"bye")
        conn.shutdown(socket.SHUT_WR)
        out.append("read %d bytes, then the end" % recv_all(conn))


def listen_client_eof_keep_open(lsock, out):
    with accept(lsock) as conn:
        conn.sendall(b"hi")
        conn.shutdown(socket.SHUT_WR)
        out.append("read %s" % recv_until(conn, b"bye"))
        out.append("then %d bytes and the end" % recv_all(conn))


def listen_client_reset(lsock, out):
    with accept(lsock) as conn:
        out.append("read %s" % recv_until(conn, b"hello"))
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                        struct.pack("ii", 1, 0))
    out.append("reset")


def listen_tls_client(lsock, out):
    ctx = server_ctx()
    ctx.set_alpn_protocols(["parity/1"])
    with ctx.wrap_socket(accept(lsock), server_side=True,
                         suppress_ragged_eofs=False) as tls:
        out.append("alpn %s" % tls.selected_alpn_protocol())
        out.append("read %s" % recv_until(tls, b"hello"))
        tls.sendall(b"hi")
        out.append("read %r, then %s" % tls_recv_all(tls))
        tls.unwrap()


def listen_starttls_client(lsock, out):
    with accept(lsock) as conn:
        out.append("read %s" % recv_until(conn, b"STARTTLS"))
        conn.sendall(b"GO")
        tls = server_ctx().wrap_socket(conn, server_side=True,
                                       suppress_ragged_eofs=False)
        tls.sendall(b"welcome")  # at once after the handshake
        out.append("read %r, then %s" % tls_recv_all(tls))
        tls.unwrap()


# The handshakes that fail, as the client sees them: what it trusts, the
# name it asks for, the certificate the server shows.
FAILS = (("unknown CA", "ca2.pem", "localhost", "server"),
         ("wrong host name", "ca.pem", "other.example", "server"),
         ("expired", "ca.pem", "localhost", "expired"))


def listen_tls_handshake_fails(lsock, out):
    for _, _, _, cert in FAILS:
        with server_ctx(cert).wrap_socket(
                accept(lsock), server_side=True,
                do_handshake_on_connect=False) as tls:
            try:
                tls.do_handshake()
                out.append("handshake done")
            except ssl.SSLError:
                # (not why: asyncio 3.11's client closes without an alert,
                # an end of file here; tapio's sends one, "unknown ca",
                # "bad certificate", "certificate expired")
                out.append("handshake failed")


LISTENERS = {
    "client_server_closes": listen_client_server_closes,
    "client_half_close": listen_client_half_close,
    "client_eof_keep_open": listen_client_eof_keep_open,
    "client_reset": listen_client_reset,
    "tls_client": listen_tls_client,
    "starttls_client": listen_starttls_client,
    "tls_handshake_fails": listen_tls_handshake_fails,
}


def listen(name, out):
    """LISTENERS[name] in a thread: its port and the thread."""
    lsock = socket.create_server(("127.0.0.1", 0))
    peer = threading.Thread(target=serve_peer, args=(name, lsock, out))
    peer.start()
    return lsock.getsockname()[1], peer


def serve_peer(name, lsock, out):
    with lsock:
        LISTENERS[name](lsock, out)


class Hello(Recorder):
    def connection_made(self, transport):
        super().connection_made(transport)
        transport.write(b"hello")


class TlsInfo(Hello):
    """What a TLS client's transport tells, then hello; closes on hi."""

    def connection_made(self, transport):
        self.out.append("over %s %s %d" % transport.get_extra_info("cipher"))
        # (asyncio has no "alpn_protocol" key; tapio's answers the same)
        ssl_object = transport.get_extra_info("ssl_object")
        self.out.append("alpn %s" % ssl_object.selected_alpn_protocol())
        cert = transport.get_extra_info("peercert")
        for key in ("subject", "issuer"):
            # tapio's are lists of {name, value}, with no level for the
            # relative distinguished names (lua/README.md's differences)
            self.out.append("%s %s" % (key, tuple(
                pair for rdn in cert[key] for pair in rdn)))
        for key in ("subjectAltName", "notBefore", "notAfter", "serialNumber"):
            self.out.append("%s %s" % (key, cert[key]))
        super().connection_made(transport)

    def data_received(self, data):
        super().data_received(data)
        self.transport.close()


class StartTlsClient(Recorder):
    """STARTTLS from the client: upgrades on GO, closes after welcome, the
    server's first bytes over TLS."""

    def connection_made(self, transport):
        super().connection_made(transport)
        self.welcome = asyncio.get_running_loop().create_future()
        transport.write(b"STARTTLS")

    def data_received(self, data):
        super().data_received(data)
        if data == b"GO":
            asyncio.get_running_loop().create_task(self.upgrade())
        elif data == b"welcome":
            self.welcome.set_result(None)

    async def upgrade(self):
        tls = await asyncio.get_running_loop().start_tls(
            self.transport, self, client_ctx(), server_hostname="localhost")
        await self.welcome  # (it may come before start_tls returns)
        self.out.append("upgraded over %s" % tls.get_extra_info("cipher")[1])
        self.transport = tls  # (tapio's start_tls upgrades in place)
        tls.close()


CLIENTS = {
    "client_server_closes": Hello,
    "client_half_close": Recorder,
    "client_eof_keep_open": EofKeepOpen,
    "client_reset": Hello,
    "tls_client": TlsInfo,
    "starttls_client": StartTlsClient,
}


async def connect(name):
    loop = asyncio.get_running_loop()
    out, peer_out = [], []
    port, peer = listen(name, peer_out)
    lost = loop.create_future()
    tls = {}
    if name.startswith("tls_"):
        ctx = client_ctx()
        ctx.set_alpn_protocols(["h2", "parity/1"])
        tls = {"ssl": ctx, "server_hostname": "localhost"}
    await loop.create_connection(lambda: CLIENTS[name](out, lost),
                                 "127.0.0.1", port, **tls)
    await lost
    await loop.run_in_executor(None, peer.join)
    return out, peer_out


# ---- datagram endpoints (each scenario a coroutine, in ALONE) -------------
# A connected endpoint (remote_addr) on asyncio or tapio: its peer is a UDP
# echo (a thread here, parity_proto.py udp-echo for tapio) that answers each
# datagram with "echo " + it and stops at "stop"; a closed port's ICMP error
# reaches error_received.

def udp_echo(sock):
    while True:
        data, addr = sock.recvfrom(65536)
        sock.sendto(b"echo " + data, addr)
        if data == b"stop":
            return


def closed_port(kind=socket.SOCK_DGRAM):
    s = socket.socket(socket.AF_INET, kind)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class DatagramRecorder(asyncio.DatagramProtocol):
    def __init__(self, out, lost, done_after):
        self.out, self.lost, self.done_after = out, lost, done_after
        self.echoes = self.errors = 0

    def connection_made(self, transport):
        self.transport = transport
        self.out.append("connection_made")

    def datagram_received(self, data, addr):
        self.out.append("datagram_received %s from the peer: %s"
                        % (data.decode(), addr[1] == self.peer_port))
        self.echoes += 1
        if self.echoes == self.done_after:
            self.transport.close()
            self.out.append("is_closing %s" % self.transport.is_closing())

    def error_received(self, exc):
        self.out.append("error_received %s" % error_name(exc))
        self.errors += 1
        if self.errors == 1:  # the endpoint still sends
            self.transport.sendto(b"after the error")
        else:
            self.transport.close()

    def connection_lost(self, exc):
        self.out.append("connection_lost %s" % error_name(exc))
        self.lost.set_result(None)


async def datagram_echo(out, _peer_out):
    loop = asyncio.get_running_loop()
    echo = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    echo.bind(("127.0.0.1", 0))
    port = echo.getsockname()[1]
    peer = threading.Thread(target=udp_echo, args=(echo,))
    peer.start()
    lost = loop.create_future()
    proto = DatagramRecorder(out, lost, 3)
    proto.peer_port = port
    transport, _ = await loop.create_datagram_endpoint(
        lambda: proto, remote_addr=("127.0.0.1", port))
    for data in (b"one", b"two", b"stop"):
        transport.sendto(data)
    await lost
    await loop.run_in_executor(None, peer.join)
    echo.close()


async def datagram_refused(out, _peer_out):
    loop = asyncio.get_running_loop()
    lost = loop.create_future()
    proto = DatagramRecorder(out, lost, 0)
    proto.peer_port = closed_port()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: proto, remote_addr=("127.0.0.1", proto.peer_port))
    transport.sendto(b"anyone?")
    await lost


def send_empty(transport, addr):
    # Python 3.11's sendto drops an empty datagram (asyncio gh-113812,
    # fixed in 3.13): the endpoint's socket sends it, as tapio's sendto does
    fd = transport.get_extra_info("socket").fileno()
    with socket.fromfd(fd, socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(b"", addr)


class Into(asyncio.DatagramProtocol):
    """Puts what it receives in a queue."""

    def __init__(self, queue):
        self.queue = queue

    def datagram_received(self, data, addr):
        self.queue.put_nowait(data)


class Upper(asyncio.DatagramProtocol):
    """An unconnected endpoint answering each peer (named in names by
    address) with its datagram in upper case."""

    def __init__(self, out, lost, names):
        self.out, self.lost, self.names = out, lost, names

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.out.append("datagram_received %r from %s"
                        % (data.decode(), self.names[addr]))
        if data:
            self.transport.sendto(data.upper(), addr)
        else:
            send_empty(self.transport, addr)

    def connection_lost(self, exc):
        self.out.append("connection_lost %s" % error_name(exc))
        self.lost.set_result(None)


async def datagram_peers(out, peer_out):
    loop = asyncio.get_running_loop()
    lost, names, peers = loop.create_future(), {}, {}
    server, _ = await loop.create_datagram_endpoint(
        lambda: Upper(out, lost, names), local_addr=("127.0.0.1", 0))
    for name in ("a", "b"):
        queue = asyncio.Queue()
        peer, _ = await loop.create_datagram_endpoint(
            lambda: Into(queue), remote_addr=server.get_extra_info("sockname"))
        names[peer.get_extra_info("sockname")] = name
        peers[name] = peer, queue
    for name, data in (("a", b"one"), ("b", b""), ("a", b"two")):
        peer, queue = peers[name]
        if data:
            peer.sendto(data)
        else:
            send_empty(peer, server.get_extra_info("sockname"))
        peer_out.append("%s got %r" % (name, (await queue.get()).decode()))
    server.close()
    server.sendto(b"late", peers["a"][0].get_extra_info("sockname"))
    out.append("sendto after close: no error, is_closing %s"
               % server.is_closing())
    await lost
    for peer, _ in peers.values():
        peer.close()


# Scenarios that are one coroutine writing to out, with their own peer.
ALONE = {"datagram_echo": datagram_echo,
         "datagram_refused": datagram_refused,
         "datagram_peers": datagram_peers}


# ---- subprocesses with streams (in ALONE too) ------------------------------

async def subprocess_communicate(out, _peer_out):
    p = await asyncio.create_subprocess_exec(
        "/bin/sh", "-c", "echo out; echo err >&2; exit 3",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    stdout, stderr = await p.communicate()
    out.append("stdout %r stderr %r returncode %d"
               % (stdout.decode(), stderr.decode(), p.returncode))


async def subprocess_large_input(out, _peer_out):
    data = b"x" * (4 * 1024 * 1024)
    p = await asyncio.create_subprocess_exec(
        "/bin/cat", stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE)
    stdout, stderr = await p.communicate(data)
    out.append("echoed %s, stderr %s, returncode %d"
               % (stdout == data, stderr, p.returncode))


async def subprocess_lines(out, _peer_out):
    p = await asyncio.create_subprocess_exec(
        "/bin/sh", "-c", "printf 'a\\nbb\\nccc'",
        stdout=asyncio.subprocess.PIPE)
    while True:
        line = await p.stdout.readline()
        if not line:
            break
        out.append("line %r" % line.decode())
    out.append("returncode %d" % await p.wait())


async def subprocess_signals(out, _peer_out):
    for how in ("terminate", "kill"):
        p = await asyncio.create_subprocess_exec("/bin/sleep", "10")
        getattr(p, how)()
        out.append("%s: returncode %d" % (how, await p.wait()))


async def subprocess_shell(out, _peer_out):
    p = await asyncio.create_subprocess_shell(
        "read x; echo \"got $x\"; exit 7",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    stdout, _ = await p.communicate(b"hi\n")
    out.append("stdout %r returncode %d" % (stdout.decode(), p.returncode))


ALONE.update({
    "subprocess_communicate": subprocess_communicate,
    "subprocess_large_input": subprocess_large_input,
    "subprocess_lines": subprocess_lines,
    "subprocess_signals": subprocess_signals,
    "subprocess_shell": subprocess_shell,
})


# ---- streams on real sockets (in ALONE: "server" is the server's handler,
# "peer" the client) --------------------------------------------------------

async def streams_echo(out, peer_out):
    handled = asyncio.get_running_loop().create_future()

    async def handle(reader, writer):
        line = await reader.readline()
        out.append("server read %r" % line.decode())
        writer.write(line.upper())
        await writer.drain()
        out.append("server at_eof %s" % reader.at_eof())
        out.append("server read to the end %r" % (await reader.read()).decode())
        out.append("server at_eof %s" % reader.at_eof())
        writer.close()
        out.append("server is_closing %s" % writer.is_closing())
        await writer.wait_closed()
        handled.set_result(None)

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"hello\n")
    out_line = await reader.readline()
    peer_out.append("client read %r" % out_line.decode())
    peer_out.append("client can_write_eof %s" % writer.can_write_eof())
    writer.write(b"last words")
    writer.write_eof()
    rest = await reader.read()
    peer_out.append("client read to the end %r" % rest.decode())
    peer_out.append("client at_eof %s" % reader.at_eof())
    writer.close()
    await writer.wait_closed()
    await handled
    server.close()
    await server.wait_closed()


async def streams_incomplete(out, peer_out):
    handled = asyncio.get_running_loop().create_future()

    async def handle(reader, writer):
        try:
            await reader.readexactly(10)
        except asyncio.IncompleteReadError as e:
            out.append("server readexactly: partial %r expected %d"
                       % (e.partial.decode(), e.expected))
        try:
            await reader.readuntil(b"\n")
        except asyncio.IncompleteReadError as e:
            out.append("server readuntil: partial %r expected %s"
                       % (e.partial.decode(), e.expected))
        writer.close()
        await writer.wait_closed()
        handled.set_result(None)

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"short")
    writer.close()
    await writer.wait_closed()
    peer_out.append("client closed: is_closing %s" % writer.is_closing())
    await handled
    server.close()
    await server.wait_closed()


# What a failed handshake's error says, by the OpenSSL verify code.
VERIFY = {20: "unknown CA", 62: "wrong host name", 10: "expired"}


class Calls(asyncio.Protocol):
    """Writes down every callback it gets."""

    def __init__(self, calls):
        self.calls = calls

    def connection_made(self, transport):
        self.calls.append("connection_made")

    def connection_lost(self, exc):
        self.calls.append("connection_lost")


async def tls_handshake_fails(out, peer_out):
    loop = asyncio.get_running_loop()
    port, peer = listen("tls_handshake_fails", peer_out)
    calls = []
    for word, ca, host, _ in FAILS:
        try:
            await loop.create_connection(
                lambda: Calls(calls), "127.0.0.1", port, ssl=client_ctx(ca),
                server_hostname=host)
            out.append("%s: connected" % word)
        except ssl.SSLCertVerificationError as exc:
            out.append("%s: create_connection failed: %s"
                       % (word, VERIFY[exc.verify_code]))
    await loop.run_in_executor(None, peer.join)
    out.append("protocol calls: %s" % (", ".join(calls) or "none"))


async def client_refused(out, peer_out):
    calls = []
    try:
        await asyncio.get_running_loop().create_connection(
            lambda: Calls(calls), "127.0.0.1", closed_port(socket.SOCK_STREAM))
        out.append("connected")
    except ConnectionRefusedError as exc:
        out.append("create_connection failed: %s" % error_name(exc))
    out.append("protocol calls: %s" % (", ".join(calls) or "none"))


# Set by the asyncio server once start_tls has begun. Python 3.11 loses a
# ClientHello that came with the STARTTLS line (cpython#142352: its
# StreamReader keeps it, start_tls never sees it), so on its side the peer
# sends the line alone and waits; tapio's peer (parity_proto.py peer, where
# this is set from the start) sends both in one segment.
UPGRADING = threading.Event()


class BioTls:
    """A TLS client over a blocking socket, on memory BIOs: the first bytes
    it sends go out with its ClientHello, in one send."""

    def __init__(self, sock, first):
        self.sock, self.first = sock, first
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = client_ctx().wrap_bio(self.incoming, self.outgoing,
                                         server_hostname="localhost")

    def call(self, fn, *args):
        """fn(*args) of the SSLObject, moving bytes until it is done."""
        while True:
            try:
                result = fn(*args)
            except ssl.SSLWantReadError:
                self.flush()
                data = self.sock.recv(65536)
                if not data:
                    raise ConnectionError("end of file")
                self.incoming.write(data)
            else:
                self.flush()
                return result

    def flush(self):
        self.sock.sendall(self.first + self.outgoing.read())
        self.first = b""


def peer_starttls_server(sock, out):
    if not UPGRADING.is_set():  # Python's server (see UPGRADING)
        sock.sendall(b"STARTTLS\n")
        UPGRADING.wait()
        bio = BioTls(sock, b"")
    else:
        bio = BioTls(sock, b"STARTTLS\n")
    bio.call(bio.tls.do_handshake)
    bio.call(bio.tls.write, b"hello\n")
    got = b""
    while not got.endswith(b"\n"):
        got += bio.call(bio.tls.read, 65536)
    out.append("read %r" % got.decode())
    bio.call(bio.tls.unwrap)
    out.append("close_notify answered")


# The peers of ALONE's scenarios (run_peer finds them here too).
ALONE_PEERS = {"starttls_server": peer_starttls_server}


async def starttls_server(out, peer_out):
    handled = asyncio.get_running_loop().create_future()

    async def handle(reader, writer):
        out.append("server read %r" % (await reader.readline()).decode())
        asyncio.get_running_loop().call_soon(UPGRADING.set)
        await writer.start_tls(server_ctx())
        out.append("server upgraded over %s"
                   % writer.get_extra_info("cipher")[1])
        line = await reader.readline()
        out.append("server read %r" % line.decode())
        writer.write(b"got " + line)
        await writer.drain()
        out.append("server read to the end %r" % (await reader.read()).decode())
        writer.close()
        await writer.wait_closed()
        handled.set_result(None)

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    peer = threading.Thread(target=run_peer,
                            args=("starttls_server", port, peer_out))
    peer.start()
    await handled
    await asyncio.get_running_loop().run_in_executor(None, peer.join)
    server.close()
    await server.wait_closed()


class Lifecycle(Ack):
    """Ack, setting made (a future) to itself once connected."""

    def __init__(self, out, lost, made):
        super().__init__(out, lost)
        self.made = made

    def connection_made(self, transport):
        super().connection_made(transport)
        self.made.set_result(self)


async def refused(port, peer_out):
    try:
        await asyncio.open_connection("127.0.0.1", port)
    except ConnectionRefusedError:
        peer_out.append("a new client is refused")


async def server_close_live(out, peer_out):
    loop = asyncio.get_running_loop()
    lost, made = loop.create_future(), loop.create_future()
    server = await loop.create_server(lambda: Lifecycle(out, lost, made),
                                      "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    await made
    # Python 3.11's wait_closed returns at once once the server is closed
    # (cpython gh-79033, fixed in 3.12.1): begun before close, it waits
    # for the last connection, as tapio's does begun after close
    closed = loop.create_task(server.wait_closed())
    await asyncio.sleep(0)
    server.close()
    out.append("closed: is_serving %s" % server.is_serving())
    writer.write(b"x")
    peer_out.append("client read %r" % (await reader.readexactly(5)).decode())
    await refused(port, peer_out)
    out.append("wait_closed done %s" % closed.done())
    writer.close()
    await closed
    out.append("wait_closed returned")


async def server_serving(out, peer_out):
    loop = asyncio.get_running_loop()
    lost = loop.create_future()
    made = loop.create_future()
    server = await loop.create_server(lambda: Lifecycle(out, lost, made),
                                      "127.0.0.1", 0, start_serving=False)
    port = server.sockets[0].getsockname()[1]
    out.append("is_serving %s" % server.is_serving())
    await server.start_serving()
    out.append("start_serving: is_serving %s" % server.is_serving())
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"x")
    peer_out.append("client read %r" % (await reader.readexactly(5)).decode())
    writer.close()
    await lost
    forever = loop.create_task(server.serve_forever())
    await asyncio.sleep(0)
    out.append("serve_forever: is_serving %s" % server.is_serving())
    forever.cancel()
    try:
        await forever
    except asyncio.CancelledError:
        out.append("serve_forever cancelled: is_serving %s"
                   % server.is_serving())
    await refused(port, peer_out)


def addresses(transport, path):
    """A transport's sockname and peername, the socket's path as PATH."""
    return "sockname %r, peername %r" % tuple(
        "PATH" if name == path else name
        for name in (transport.get_extra_info("sockname"),
                     transport.get_extra_info("peername")))


async def unix_server(out, peer_out):
    loop = asyncio.get_running_loop()
    lost, made = loop.create_future(), loop.create_future()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "sock")
        with socket.socket(socket.AF_UNIX) as stale:
            stale.bind(path)  # a socket file no one serves any more
        server = await loop.create_unix_server(
            lambda: Lifecycle(out, lost, made), path)
        out.append("serving at PATH %s"
                   % (server.sockets[0].getsockname() == path))
        reader, writer = await asyncio.open_unix_connection(path)
        protocol = await made
        out.append("server side: %s" % addresses(protocol.transport, path))
        peer_out.append("client side: %s" % addresses(writer, path))
        writer.write(b"x")
        peer_out.append("client read %r"
                        % (await reader.readexactly(5)).decode())
        writer.close()
        await lost
        server.close()
        await server.wait_closed()


# ---- closed shells: what a transport answers after connection_lost (in
# ALONE too) -----------------------------------------------------------------

class Ends(asyncio.Protocol, asyncio.SubprocessProtocol):
    """Sets lost once connection_lost has run."""

    def __init__(self, lost):
        self.lost = lost

    def connection_lost(self, exc):
        self.lost.set_result(None)


def shell_answers(out, transport):
    """What a transport with a write buffer answers after the end."""
    out.append("get_write_buffer_size %d" % transport.get_write_buffer_size())
    out.append("get_write_buffer_limits %d %d"
               % transport.get_write_buffer_limits())
    transport.set_write_buffer_limits(high=400, low=100)
    out.append("then %d %d" % transport.get_write_buffer_limits())
    try:
        transport.set_write_buffer_limits(high=10, low=20)
    except ValueError:
        out.append("low > high refused")
    out.append("get_protocol %s" % transport.get_protocol())
    other = Ends(None)
    transport.set_protocol(other)
    out.append("set_protocol kept %s" % (transport.get_protocol() is other))


async def closed_shell(out, _peer_out):
    loop = asyncio.get_running_loop()
    lost = loop.create_future()
    server = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    transport, _ = await loop.create_connection(
        lambda: Ends(lost), "127.0.0.1", port)
    sockname = transport.get_extra_info("sockname")
    seen = loop.create_future()
    lost.add_done_callback(lambda _: seen.set_result(
        transport.get_extra_info("peername")))
    transport.set_write_buffer_limits(high=1000)
    transport.close()
    out.append("peername in a done callback is the server's %s"
               % ((await seen)[1] == port))
    out.append("sockname kept %s"
               % (transport.get_extra_info("sockname") == sockname))
    out.append("is_closing %s, is_reading %s"
               % (transport.is_closing(), transport.is_reading()))
    transport.close()
    transport.abort()
    transport.pause_reading()
    transport.resume_reading()
    shell_answers(out, transport)
    out.append("can_write_eof %s" % transport.can_write_eof())
    transport.write_eof()
    out.append("write_eof: nothing to do")
    server.close()
    await server.wait_closed()


async def closed_shell_subprocess(out, _peer_out):
    loop = asyncio.get_running_loop()
    lost = loop.create_future()
    transport, _ = await loop.subprocess_exec(
        lambda: Ends(lost), "/bin/sh", "-c", "exit 3",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL)
    pid = transport.get_pid()
    await lost
    out.append("get_pid kept %s, get_returncode %d"
               % (transport.get_pid() == pid, transport.get_returncode()))
    stdin = transport.get_pipe_transport(0)
    out.append("stdin is_closing %s" % stdin.is_closing())
    stdin.close()
    shell_answers(out, stdin)
    out.append("stdin can_write_eof %s" % stdin.can_write_eof())
    stdin.write_eof()
    # (not is_reading: Debian 12's Python 3.11.2 pipes lack it)
    out.append("stdout is_closing %s"
               % transport.get_pipe_transport(1).is_closing())
    out.append("stderr %s" % transport.get_pipe_transport(2))
    out.append("get_protocol %s" % transport.get_protocol())
    try:
        transport.kill()
    except ProcessLookupError:
        out.append("kill: no such process")
    transport.close()
    out.append("is_closing %s" % transport.is_closing())


ALONE.update({"streams_echo": streams_echo,
              "streams_incomplete": streams_incomplete,
              "tls_handshake_fails": tls_handshake_fails,
              "client_refused": client_refused,
              "starttls_server": starttls_server,
              "server_close_live": server_close_live,
              "server_serving": server_serving,
              "unix_server": unix_server,
              "closed_shell": closed_shell,
              "closed_shell_subprocess": closed_shell_subprocess})


def main():
    if sys.argv[1] == "peer":
        out = []
        UPGRADING.set()  # (see UPGRADING)
        if sys.argv[2] == "flow_control":
            threading.Thread(target=lambda: sys.stdin.readline() and
                             GO.set(), daemon=True).start()
        run_peer(sys.argv[2], int(sys.argv[3]), out)
        for event in out:
            print("peer|%s" % event)
        return
    if sys.argv[1] == "listen":  # prints its port, then what it saw
        lsock = socket.create_server(("127.0.0.1", 0))
        print(lsock.getsockname()[1], flush=True)
        out = []
        serve_peer(sys.argv[2], lsock, out)
        for event in out:
            print("peer|%s" % event)
        return
    if sys.argv[1] == "udp-echo":  # prints its port, echoes until "stop"
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        print(sock.getsockname()[1], flush=True)
        udp_echo(sock)
        return
    for name in (sys.argv[2:] or list(PEERS) + list(CLIENTS) + list(ALONE)):
        if name in ALONE:
            out, peer_out = [], []
            asyncio.run(ALONE[name](out, peer_out))
        elif name in CLIENTS:
            out, peer_out = asyncio.run(connect(name))
        else:
            out, peer_out = asyncio.run(serve(name))
        for event in out:
            print("%s|server|%s" % (name, event))
        for event in peer_out:
            print("%s|peer|%s" % (name, event))


main()
