"""Protocols on real sockets: a peer (a plain blocking socket in a
thread, or this script alone) does the same thing to a server on asyncio
and to one on tapio (spec/parity_spec.lua), and each server writes down
its protocol's callbacks. Python defines the order.

  parity_proto.py asyncio SCENARIO   the server on asyncio and its peer:
                                     "server|event" then "peer|event"
  parity_proto.py peer SCENARIO PORT the peer alone, against 127.0.0.1:PORT
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


PEERS = {
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
            BrokenPipeError: "EPIPE"}.get(type(exc), type(exc).__name__)


class Recorder(asyncio.Protocol):
    def __init__(self, out, lost):
        self.out, self.lost = out, lost

    def connection_made(self, transport):
        self.transport = transport
        self.out.append("connection_made")

    def data_received(self, data):
        self.out.append("data_received %s" % data.decode())

    def eof_received(self):
        self.out.append("eof_received")

    def connection_lost(self, exc):
        self.out.append("connection_lost %s" % error_name(exc))
        self.lost.set_result(None)


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


class SmallBuffer(asyncio.BufferedProtocol):
    def __init__(self, out, lost):
        self.out, self.lost = out, lost
        self.buf = bytearray(4)
        self.got = b""

    def connection_made(self, transport):
        self.transport = transport
        self.out.append("connection_made")

    def get_buffer(self, sizehint):
        return self.buf

    def buffer_updated(self, nbytes):
        self.got += bytes(self.buf[:nbytes])
        self.out.append("buffer_updated %d" % nbytes)
        if len(self.got) == 10:
            self.transport.write(b"done")

    def eof_received(self):
        self.out.append("eof_received")

    def connection_lost(self, exc):
        self.out.append("connection_lost %s" % error_name(exc))
        self.lost.set_result(None)


SERVERS = {
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


def main():
    if sys.argv[1] == "peer":
        out = []
        run_peer(sys.argv[2], int(sys.argv[3]), out)
        for event in out:
            print("peer|%s" % event)
        return
    for name in (sys.argv[2:] or PEERS):
        out, peer_out = asyncio.run(serve(name))
        for event in out:
            print("%s|server|%s" % (name, event))
        for event in peer_out:
            print("%s|peer|%s" % (name, event))


main()
