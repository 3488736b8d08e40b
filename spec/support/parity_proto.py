"""Real sockets and processes. Protocols: a peer (a plain blocking socket in a
thread, or this script alone) does the same thing to a server on asyncio
and to one on tapio (spec/parity_spec.lua), and each server writes down
its protocol's callbacks. Connected datagram endpoints and subprocesses
with streams: a scenario on asyncio writes down what it saw (ALONE), and
the spec runs the same on tapio. Python defines the order.

  parity_proto.py asyncio [SCENARIO...] on asyncio: "SCENARIO|server|event"
                                     then "SCENARIO|peer|event" lines
  parity_proto.py peer SCENARIO PORT the peer alone, against 127.0.0.1:PORT
  parity_proto.py udp-echo           a UDP echo: prints its port, echoes
                                     "echo " + each datagram until "stop"
"""
import asyncio
import socket
import struct
import sys
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


def run_peer(name, port, out):
    sock = socket.create_connection(("127.0.0.1", port))
    try:
        PEERS[name](sock, out)
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


SERVERS = {
    "paused": Paused,
    "flow_control": FlowControl,
    "half_close": Recorder,
    "eof_keep_open": EofKeepOpen,
    "reset": Ack,
    "close_flushes": CloseFlushes,
    "write_eof": WriteEof,
    "small_buffer": SmallBuffer,
}


async def serve(name):
    loop = asyncio.get_running_loop()
    out, peer_out = [], []
    lost = loop.create_future()
    server = await loop.create_server(lambda: SERVERS[name](out, lost),
                                      "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    peer = threading.Thread(target=run_peer, args=(name, port, peer_out))
    peer.start()
    await lost
    await loop.run_in_executor(None, peer.join)
    server.close()
    await server.wait_closed()
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


def closed_udp_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
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
    proto.peer_port = closed_udp_port()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: proto, remote_addr=("127.0.0.1", proto.peer_port))
    transport.sendto(b"anyone?")
    await lost


# Scenarios that are one coroutine writing to out, with their own peer.
ALONE = {"datagram_echo": datagram_echo,
         "datagram_refused": datagram_refused}


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


ALONE.update({"streams_echo": streams_echo,
              "streams_incomplete": streams_incomplete})


def main():
    if sys.argv[1] == "peer":
        out = []
        if sys.argv[2] == "flow_control":
            threading.Thread(target=lambda: sys.stdin.readline() and
                             GO.set(), daemon=True).start()
        run_peer(sys.argv[2], int(sys.argv[3]), out)
        for event in out:
            print("peer|%s" % event)
        return
    if sys.argv[1] == "udp-echo":  # prints its port, echoes until "stop"
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        print(sock.getsockname()[1], flush=True)
        udp_echo(sock)
        return
    for name in (sys.argv[2:] or list(PEERS) + list(ALONE)):
        if name in ALONE:
            out, peer_out = [], []
            asyncio.run(ALONE[name](out, peer_out))
        else:
            out, peer_out = asyncio.run(serve(name))
        for event in out:
            print("%s|server|%s" % (name, event))
        for event in peer_out:
            print("%s|peer|%s" % (name, event))


main()
