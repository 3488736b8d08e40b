"""HTTP peers for spec/http_spec.lua, written with Python's http.client,
urllib.request, http.server and plain sockets: the other side of
examples/http_server.lua and examples/http_get.lua.

    http_peer.py server CERTDIR|-          ThreadingHTTPServer (TLS with
                                           CERTDIR/server.pem); prints
                                           "PORT <n>", serves until stdin ends
    http_peer.py SCENARIO PORT CERTDIR     a client of the server at PORT

Bodies are PATTERN repeated (bytes 0..250); every line a client prints is
something the spec checks. Scenarios are the functions named client_*.
"""
import functools
import http.client
import http.server
import socket
import ssl
import struct
import sys
import threading
import time
import urllib.request

PATTERN = bytes(range(251))
MIB = 1024 * 1024


@functools.lru_cache(maxsize=None)
def body(n):
    block = PATTERN * 4096  # copies of 1 MiB are much faster than of 251 B
    return (block * (n // len(block) + 1))[:n]


def recv_all(sock):
    parts = []
    while True:
        b = sock.recv(65536)
        if not b:
            return b"".join(parts)
        parts.append(b)


def tls_client_context(certdir):
    return ssl.create_default_context(cafile=certdir + "/ca.pem")


# ---- clients of examples/http_server.lua ----------------------------------

def client_keepalive(port, certdir):
    """http.client: a GET, 1 MiB and 32 MiB echoed, on one connection."""
    c = http.client.HTTPConnection("127.0.0.1", port)
    c.request("GET", "/small")
    r = c.getresponse()
    print("GET", r.status, r.read() == body(13))
    sock = c.sock
    for n in (MIB, 32 * MIB):
        c.request("POST", "/echo", body=body(n))
        r = c.getresponse()
        print("POST", r.status, len(r.read()) == n, c.sock is sock)
    c.close()


def client_chunked(port, certdir):
    """http.client: chunked bodies of 1 MiB and 4 MiB (32 MiB go by
    Content-Length in client_keepalive)."""
    c = http.client.HTTPConnection("127.0.0.1", port)
    for n in (MIB, 4 * MIB):
        data = body(n)
        pieces = (data[i:i + 100000] for i in range(0, n, 100000))
        c.request("PUT", "/echo", body=pieces, encode_chunked=True)
        r = c.getresponse()
        print("CHUNKED", r.status, r.read() == body(n))
    c.close()


def client_continue(port, certdir):
    """A raw socket: waits for "100 Continue" before it sends the body;
    a body over the limit gets 413 before any of it is sent."""
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
              b"Expect: 100-continue\r\n\r\n")
    print("FIRST", s.recv(100).decode().strip())
    s.sendall(b"hello")
    print("THEN", recv_all_until(s, b"hello").split(b"\r\n")[0].decode())
    s.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: "
              b"1000000000\r\nExpect: 100-continue\r\n\r\n")
    print("BIG", recv_all(s).split(b"\r\n")[0].decode())
    s.close()


def recv_all_until(sock, end):
    data = b""
    while not data.endswith(end):
        b = sock.recv(65536)
        if not b:
            break
        data += b
    return data


def client_pipeline(port, certdir):
    """50 requests in one write; the answers in order, then the end."""
    s = socket.create_connection(("127.0.0.1", port))
    reqs = b"".join(b"GET /small?%d HTTP/1.1\r\nHost: x\r\n\r\n" % i
                    for i in range(49))
    reqs += b"POST /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" \
            b"Content-Length: 4\r\n\r\nlast"
    s.sendall(reqs)
    data = recv_all(s)
    answers = data.split(b"HTTP/1.1 200 OK\r\n")[1:]
    print("ANSWERS", len(answers),
          all(a.endswith(body(13)) for a in answers[:49]),
          answers[-1].endswith(b"last"))


def client_big_head(port, certdir):
    """A header over the reader's limit: 431, then the end."""
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET /small HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 200000
              + b"\r\n\r\n")
    print("BIG HEAD", recv_all(s).split(b"\r\n")[0].decode())


def client_big_body(port, certdir):
    """Bodies over the limit (32 MiB here), announced by Content-Length or
    by a chunk's size: 413 before the server reads any of it (so the
    client sends no more: a close with input unread would be a reset)."""
    for rest in (b"Content-Length: %d\r\n\r\n" % (33 * MIB),
                 b"Transfer-Encoding: chunked\r\n\r\n%x\r\n" % (33 * MIB)):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\n" + rest)
        print("BIG BODY", recv_all(s).split(b"\r\n")[0].decode())


def reset(sock):
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                    struct.pack("ii", 1, 0))
    sock.close()


def client_reset(port, certdir):
    """Resets mid-upload and mid-download; then a request still works."""
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
              % (32 * MIB) + body(MIB))
    reset(s)
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET /32m HTTP/1.1\r\nHost: x\r\n\r\n")
    got = 0
    while got < MIB:
        got += len(s.recv(65536))
    reset(s)
    c = http.client.HTTPConnection("127.0.0.1", port)
    c.request("GET", "/small")
    print("AFTER", c.getresponse().status)


def client_slow(port, certdir):
    """Reads a 32 MiB file slowly: nothing for half a second, then 64 KiB
    at a time with pauses, then the rest."""
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    s.sendall(b"GET /32m HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    time.sleep(0.5)
    data = b""
    for _ in range(20):
        data += s.recv(65536)
        time.sleep(0.01)
    data += recv_all(s)
    print("SLOW", data.endswith(body(32 * MIB)))


def client_tls(port, certdir):
    """urllib.request over TLS: 32 MiB down; http.client: 1 MiB up and back
    twice on one connection."""
    ctx = tls_client_context(certdir)
    url = "https://localhost:%d/32m" % port
    with urllib.request.urlopen(url, context=ctx) as r:
        print("TLS GET", r.status, r.read() == body(32 * MIB))
    c = http.client.HTTPSConnection("localhost", port, context=ctx)
    for _ in range(2):
        c.request("POST", "/echo", body=body(MIB))
        r = c.getresponse()
        print("TLS POST", r.status, r.read() == body(MIB))
    c.close()


def client_no_handshake(port, certdir):
    """Connects to the TLS port and sends the start of a ClientHello, no
    more: the server's handshake timeout ends it."""
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"\x16\x03\x01\x02\x00\x01")  # a record of 512 bytes, 1 sent
    start = time.monotonic()
    s.settimeout(10)
    try:
        end = recv_all(s)
    except ConnectionError:
        end = b""
    print("NO HANDSHAKE closed", end == b"", "after %.1f s"
          % (time.monotonic() - start) if time.monotonic() - start < 5
          else "too late")


def client_idle(port, certdir):
    """A GET, then nothing: the server's idle timeout ends the connection."""
    c = http.client.HTTPConnection("127.0.0.1", port)
    c.request("GET", "/small")
    c.getresponse().read()
    start = time.monotonic()
    c.sock.settimeout(10)
    print("IDLE closed", c.sock.recv(1) == b"",
          "after %.1f s" % (time.monotonic() - start))


def client_slow_body(port, certdir):
    """A POST whose body stops after 3 of its 10 bytes: the server's
    body timeout answers 408 and closes."""
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n"
              b"\r\nabc")
    start = time.monotonic()
    s.settimeout(10)
    answer = recv_all(s)
    print("SLOW BODY", answer.split(b"\r\n")[0].decode(),
          "after %.1f s" % (time.monotonic() - start))


def client_stop(port, certdir):
    """For the stop: an idle kept-alive connection and a download that
    reads slowly; says what each saw."""
    idle = http.client.HTTPConnection("127.0.0.1", port)
    idle.request("GET", "/small")
    idle.getresponse().read()
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    s.sendall(b"GET /32m HTTP/1.1\r\nHost: x\r\n\r\n")
    s.recv(1)
    print("READY", flush=True)
    sys.stdin.readline()  # the spec stops the server
    print("IDLE END", idle.sock.recv(1) == b"", flush=True)
    try:
        data = recv_all(s)
        print("SLOW END", "clean", len(data) < 32 * MIB)
    except ConnectionError:
        print("SLOW END", "reset")


# ---- a server for examples/http_get.lua -----------------------------------

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        kind, n = self.path.strip("/").split("/")
        data = body(int(n))
        self.send_response(200)
        self.send_header("X-Peer-Port", str(self.client_address[1]))
        if kind == "chunked":
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(0, len(data), 300000):
                piece = data[i:i + 300000]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    def do_POST(self):
        data = self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("X-Peer-Port", str(self.client_address[1]))
        self.send_header("X-Same", str(data == body(len(data))))
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def server(certdir):
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    if certdir != "-":
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(certdir + "/server.pem", certdir + "/server.key")
        httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    print("PORT", httpd.server_address[1], flush=True)
    sys.stdin.read()
    httpd.shutdown()


if __name__ == "__main__":
    if sys.argv[1] == "server":
        server(sys.argv[2])
    else:
        globals()["client_" + sys.argv[1]](int(sys.argv[2]), sys.argv[3])
