"""A TLS client through the C ABI from Python's cffi, against Python's own
ssl server (a thread): verified with the tests' CA, ALPN, bytes both
ways, the session and the server's certificate read through the ABI and
compared with what Python's ssl says; then a client that does not trust
that CA fails the handshake with a code and a message.

  tls_python.py TAPIO_CDEF_H LIBTAPIO_SO MAKE_CERTS_SH CERTDIR
"""
import socket
import ssl
import subprocess
import sys
import threading

sys.dont_write_bytecode = True  # no __pycache__ beside the sources

from cffi_kit import (C, NULL, Obj, check, connected, errors, ffi, name,
                      new_loop, run, table)

certs = subprocess.run(["sh", sys.argv[3], sys.argv[4]], check=True,
                       capture_output=True, text=True).stdout.strip()
CA, CA2 = certs + "/ca.pem", certs + "/ca2.pem"
CERT, KEY = certs + "/server.pem", certs + "/server.key"
LINE = b"".join(b"%d " % i for i in range(12000)) + b"\n"  # 4 records+


def serve(lsock, seen, n):
    """Python's ssl side: n connections, one at a time; each reads a line,
    sends it back after "python saw ", then ends the session cleanly."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(CERT, KEY)
    ctx.sni_callback = lambda _s, sni, _c: seen.append(("sni", sni))
    ctx.set_alpn_protocols(["tapio/1", "http/1.1"])
    for _ in range(n):
        conn, _ = lsock.accept()
        conn.settimeout(10)
        try:
            s = ctx.wrap_socket(conn, server_side=True)
        except (ssl.SSLError, OSError) as e:
            seen.append(("refused", type(e).__name__))
            conn.close()
            continue
        line = b""
        while not line.endswith(b"\n"):
            line += s.recv(65536)
        seen.append(("got", line, s.version(), s.cipher()[0],
                     s.selected_alpn_protocol()))
        s.sendall(b"python saw " + line)
        s.unwrap().close()  # close_notify both ways


def tls_info(t, which):
    n = ffi.new("size_t *")
    rc = C.tapio_transport_get_tls_info(t, which, NULL, 0, n)
    if rc == C.TAPIO_ENOENT:
        return None
    buf = ffi.new("char[]", n[0] + 1)
    check(C.tapio_transport_get_tls_info(t, which, buf, n[0] + 1, n),
          "get_tls_info")
    return ffi.buffer(buf, n[0])[:]


def peercert(t, which, room=8):
    """The entries; ENOBUFS says "more room", not "the end" (room starts
    small to go through that)."""
    entries, key = [], ffi.new("char[128]")
    while True:
        value = ffi.new("char[]", room)
        rc = C.tapio_transport_get_peercert_entry(t, which, len(entries),
                                                  key, 128, value, room)
        if rc == C.TAPIO_ENOBUFS:
            room *= 2
            continue
        if rc == C.TAPIO_ENOENT:
            return entries
        check(rc, "get_peercert_entry")
        entries.append((ffi.string(key).decode(), ffi.string(value).decode()))


def made(obj, t):
    obj.events.append("made")
    obj.info = {k: tls_info(t, getattr(C, "TAPIO_TLS_INFO_" + k)) for k in
                ("VERSION", "CIPHER", "SERVER_HOSTNAME", "PEER_CERT",
                 "PEER_SERIAL", "PEER_NOT_AFTER", "ALPN")}
    obj.info["names"] = {w: peercert(t, getattr(C, "TAPIO_TLS_" + w)) for w
                         in ("SUBJECT", "ISSUER", "SUBJECT_ALT_NAME")}
    value = ffi.new("char[10]")  # "localhost" needs 10 with its NUL
    obj.info["fits"] = [C.tapio_transport_get_peercert_entry(
        t, C.TAPIO_TLS_SUBJECT, 0, ffi.new("char[128]"), 128, value, n)
        for n in (9, 10)]
    obj.info["num_version"] = C.tapio_transport_get_tls_num(
        t, C.TAPIO_TLS_NUM_VERSION)
    check(C.tapio_transport_write(t, LINE, len(LINE)), "write")


def received(obj, t, data, n):
    obj.got += ffi.buffer(data, n)[:]
    if obj.got.endswith(b"\n"):
        C.tapio_transport_close(t)


def eof(obj, _t):
    obj.events.append("eof")
    return 0


def lost(obj, t, code, _message):
    obj.events.append(("lost", name(code) if code else 0))
    obj.end = C.tapio_transport_get_tls_num(t, C.TAPIO_TLS_NUM_END)
    obj.done()
    obj.step(obj)


STREAM = table("tapio_protocol", connection_made=made, data_received=received,
               eof_received=eof, connection_lost=lost)


def client(loop, port, cafile, then, step):
    ctx = ffi.new("tapio_tls_context **")
    check(C.tapio_tls_context_new(C.TAPIO_TLS_CLIENT, ctx), "context_new")
    check(C.tapio_tls_context_load_verify_locations(ctx[0], cafile.encode(),
                                                    NULL, NULL, 0), "CA")
    alpn = [ffi.new("char[]", p) for p in (b"h2", b"http/1.1")]
    check(C.tapio_tls_context_set_alpn(ctx[0], ffi.new("char *[]", alpn), 2),
          "set_alpn")
    opts = ffi.new("tapio_options **")
    check(C.tapio_options_new(loop, opts), "options_new")
    check(C.tapio_options_set_tls(opts[0], b"ssl", ctx[0]), "ssl")
    C.tapio_tls_context_release(ctx[0])  # the options hold it now
    check(C.tapio_options_set_str(opts[0], b"server_hostname", b"localhost"),
          "server_hostname")
    obj = Obj(then=then, step=step, got=b"")
    check(C.tapio_create_connection(loop, b"127.0.0.1", port, STREAM, obj.ud,
                                    opts[0], connected, obj.ud), "connect")
    C.tapio_options_free(opts[0])
    return obj


def main():
    lsock = socket.create_server(("127.0.0.1", 0))
    lsock.settimeout(10)
    seen = []
    server = threading.Thread(target=serve, args=(lsock, seen, 2))
    server.start()
    loop = new_loop()
    port = lsock.getsockname()[1]
    stop = lambda _obj: C.tapio_loop_stop(loop)  # noqa: E731

    def failed(obj):
        obj.message = ffi.string(C.tapio_loop_error_message(loop)).decode()
        stop(obj)
    good = client(loop, port, CA, None, stop)
    run(loop)
    bad = client(loop, port, CA2, failed, None)
    run(loop)
    server.join()
    lsock.close()
    assert not Obj.live
    check(C.tapio_loop_free(loop), "tapio_loop_free")

    assert good.got == b"python saw " + LINE, len(good.got)
    assert good.events[0] == "made" and good.events[-1] == ("lost", 0), \
        good.events
    assert good.end == C.TAPIO_TLS_END_CLEAN, good.end
    sni, got, sni2, refused = seen
    assert sni == sni2 == ("sni", "localhost"), seen
    assert got[:2] == ("got", LINE), seen
    info = good.info  # the session as the ABI tells it, as Python's ssl
    assert info["VERSION"].decode() == got[2], (info, got)
    assert info["CIPHER"].decode() == got[3], (info, got)
    assert info["num_version"] == {"TLSv1.3": C.TAPIO_TLS_1_3,
                                   "TLSv1.2": C.TAPIO_TLS_1_2}[got[2]]
    assert info["SERVER_HOSTNAME"] == b"localhost", info
    assert info["ALPN"] == b"http/1.1" == got[4].encode(), (info, got)
    assert info["PEER_CERT"] == ssl.PEM_cert_to_DER_cert(open(CERT).read())
    assert info["fits"] == [C.TAPIO_ENOBUFS, 0], info["fits"]
    names = info["names"]
    assert names["SUBJECT"] == [("commonName", "localhost")], names
    assert names["ISSUER"] == [("commonName", "tapio test CA")], names
    assert names["SUBJECT_ALT_NAME"] == [
        ("DNS", "localhost"), ("IP Address", "127.0.0.1"),
        ("IP Address", "0:0:0:0:0:0:0:1")], names
    decoded = getattr(ssl._ssl, "_test_decode_cert", None)  # CPython's own
    if decoded:
        d = decoded(CERT)
        assert info["PEER_SERIAL"].decode() == d["serialNumber"], (info, d)
        assert info["PEER_NOT_AFTER"].decode() == d["notAfter"], (info, d)
    assert bad.events == ["failed:ETLS_UNKNOWN_CA"], bad.events
    assert "certificate verify failed" in bad.message, bad.message
    assert refused[0] == "refused", seen
    assert not errors, errors
    print("1 passed, 0 failed")


main()
