"""Peers of examples/socks5.lua for spec/socks5_spec.lua: the origins
behind the proxy and SOCKS5 clients that speak the protocol byte by byte.

    socks5_peer.py origins DIR     http.server on 127.0.0.1 and ::1 serving
                                   DIR, an answer-at-the-end server, and a
                                   port that refuses, one whose backlog is
                                   full, http.server on 127.0.0.1 with a
                                   full one at its port on ::1; prints
                                   "HTTP4 <port>", "HTTP6 <port>", "ANSWER
                                   <port>", "REFUSED <port>", "FULL
                                   <port>", "RACE <port>", serves until
                                   stdin ends
    socks5_peer.py request PROXY CMD ATYP HOST PORT
                                   one request; prints the reply, and
                                   after a failure what came next
    socks5_peer.py halfclose PROXY PORT DATA
                                   CONNECT to 127.0.0.1:PORT, sends DATA,
                                   shuts its writing down, reads to the end
    socks5_peer.py slowreader PROXY
                                   64 MiB from an origin of its own to a
                                   client that reads nothing for a second
    socks5_peer.py stall PROXY     sends half a greeting, prints
                                   "CONNECTED", then waits for the end

Every port is picked by the kernel; the refusing one is a socket bound and
never listening, held until the end so nobody else can take it. Each line
a client prints is something the spec checks.
"""
import http.server
import ipaddress
import socket
import struct
import sys
import threading
import time


def recv_exactly(sock, n):
    data = b""
    while len(data) < n:
        b = sock.recv(n - len(data))
        if not b:
            raise EOFError("the proxy closed after %r" % data)
        data += b
    return data


def recv_all(sock):
    parts = []
    while True:
        b = sock.recv(65536)
        if not b:
            return b"".join(parts)
        parts.append(b)


# ---- origins ---------------------------------------------------------------

class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


class HTTP6(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6


def answer_at_the_end(conn):
    """Reads to the end, then says who it heard from and what, and closes:
    an answer comes only if the client's end was passed on."""
    with conn:
        host, port = conn.getpeername()[:2]
        data = recv_all(conn)
        conn.sendall(b"from %s %d got %s" % (host.encode(), port, data))


def serve_answers(listener):
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=answer_at_the_end, args=(conn,),
                         daemon=True).start()


def same_port(handler):
    """http.server on 127.0.0.1 and, on ::1 at the same port, a backlog of
    0 with one connection waiting in it (the kernel drops the SYNs of any
    other, whose connect hangs): a name that resolves to ::1 first is
    reached on 127.0.0.1 only by racing. The kernel picks the port; one
    taken on ::1 already is given up for another."""
    while True:
        h = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        try:
            full = socket.create_server(("::1", h.server_address[1]),
                                        family=socket.AF_INET6, backlog=0)
        except OSError:
            h.server_close()
            continue
        return h, full, socket.create_connection(full.getsockname()[:2])


def origins(root):
    def handler(*args, **kw):
        return Quiet(*args, directory=root, **kw)
    h4 = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    race, race_full, race_filler = same_port(handler)
    h6 = HTTP6(("::1", 0), handler)
    answer = socket.create_server(("127.0.0.1", 0))
    refused = socket.socket()
    refused.bind(("127.0.0.1", 0))
    # a backlog of 0 with one connection waiting in it: the kernel drops
    # the SYNs of any other, whose connect times out
    full = socket.create_server(("127.0.0.1", 0), backlog=0)
    filler = socket.create_connection(full.getsockname())
    for s in (h4, h6, race):
        threading.Thread(target=s.serve_forever, daemon=True).start()
    threading.Thread(target=serve_answers, args=(answer,),
                     daemon=True).start()
    print("HTTP4", h4.server_address[1])
    print("HTTP6", h6.server_address[1])
    print("ANSWER", answer.getsockname()[1])
    print("REFUSED", refused.getsockname()[1])
    print("FULL", full.getsockname()[1])
    print("RACE", race.server_address[1], flush=True)
    sys.stdin.read()
    filler.close()
    race_filler.close()


# ---- clients ---------------------------------------------------------------

def address(atyp, host):
    if atyp == 1:
        return socket.inet_pton(socket.AF_INET, host)
    if atyp == 4:
        return socket.inet_pton(socket.AF_INET6, host)
    if atyp == 3:  # "\\x00" in the name (argv has no NUL) is a NUL
        name = host.encode().decode("unicode_escape").encode("latin-1")
        return bytes([len(name)]) + name
    return b"\x7f\x00\x00\x01"  # any 4 bytes: the type is unknown


def connect(proxy, cmd, atyp, host, port):
    """A socket past the greeting and the request; the reply as
    "REPLY <code> <bound host> <bound port>" and the bound address."""
    sock = socket.create_connection(("127.0.0.1", proxy), timeout=5)
    sock.sendall(b"\x05\x01\x00")
    assert recv_exactly(sock, 2) == b"\x05\x00"
    sock.sendall(struct.pack("!BBBB", 5, cmd, 0, atyp)
                 + address(atyp, host) + struct.pack("!H", port))
    ver, code, rsv, batyp = recv_exactly(sock, 4)
    assert (ver, rsv) == (5, 0), (ver, rsv)
    n = {1: 4, 4: 16}[batyp]
    bound = str(ipaddress.ip_address(recv_exactly(sock, n)))
    bport, = struct.unpack("!H", recv_exactly(sock, 2))
    return sock, code, bound, bport


def request(proxy, cmd, atyp, host, port):
    sock, code, bound, bport = connect(proxy, int(cmd), int(atyp), host,
                                       int(port))
    print("REPLY", code, bound, "port" if bport else 0)
    if code != 0:  # after a failure, the proxy closes
        print("THEN", "end" if recv_all(sock) == b"" else "data")
    sock.close()


def halfclose(proxy, port, data):
    sock, code, bound, bport = connect(int(proxy), 1, 1, "127.0.0.1",
                                       int(port))
    print("REPLY", code)
    sock.sendall(data.encode())
    sock.shutdown(socket.SHUT_WR)
    answer = recv_all(sock).decode()
    print(answer)
    print("BOUND", "matches" if answer.startswith(
        "from %s %d " % (bound, bport)) else "%s %d" % (bound, bport))


def slowreader(proxy):
    """64 MiB from an origin to a client that reads nothing for a second:
    the proxy must stop taking them from the origin meanwhile."""
    body = bytes(range(251)) * (64 * 1024 * 1024 // 251)
    origin = socket.create_server(("127.0.0.1", 0))
    sent = threading.Event()

    def serve():
        conn, _ = origin.accept()
        with conn:
            conn.sendall(body)
            sent.set()
    threading.Thread(target=serve, daemon=True).start()
    sock = connect(int(proxy), 1, 1, "127.0.0.1",
                   origin.getsockname()[1])[0]
    sock.settimeout(10)
    print("ORIGIN", "sent all" if sent.wait(1.0) else "held")
    data = recv_all(sock)
    print("READ", len(data), "same" if data == body else "different")


def stall(proxy):
    sock = socket.create_connection(("127.0.0.1", int(proxy)), timeout=30)
    sock.sendall(b"\x05")  # the number of methods never comes
    print("CONNECTED", flush=True)
    start = time.monotonic()
    rest = recv_all(sock)
    print("DROPPED after %.1f s with %d bytes" % (time.monotonic() - start,
                                                  len(rest)))


if __name__ == "__main__":
    {"origins": origins, "request": request, "halfclose": halfclose,
     "slowreader": slowreader, "stall": stall}[sys.argv[1]](*sys.argv[2:])
