"""The FFI example programs against tapio's Lua side, byte for byte:
examples/ffi/echo_luajit.lua (LuaJIT, ffi.cdef) and the server of
examples/ffi/echo_python.py (cffi) serve tapio Lua clients
(spec/embed/echo_clients.lua); the Python client exchanges data with a
tapio Lua server (spec/embed/echo_server.lua) and with the LuaJIT one;
examples/ffi/asyncio_python.py runs a tapio server of Python callbacks
inside asyncio's loop, with asyncio clients.
Usage: test_ffi.py BUILD_DIR SOURCE_DIR LUAJIT"""
import os
import subprocess
import sys

from checks import check, finish

build, src, luajit = sys.argv[1], sys.argv[2], sys.argv[3]
tapio = os.path.join(build, "tapio")
cdef = os.path.join(build, "tapio_cdef.h")
lib = os.path.join(build, "libtapio.so")
embed = os.path.join(src, "spec", "embed")
python = [sys.executable, os.path.join(src, "examples", "ffi",
                                       "echo_python.py"), cdef, lib]
luajit_server = [luajit, os.path.join(src, "examples", "ffi",
                                      "echo_luajit.lua"), cdef, lib]



def exchange(name, server_cmd, client_cmd, expect, served):
    """Starts a server that prints its port, runs the client against it,
    then checks the client's and the server's words and stderr."""
    server = subprocess.Popen(server_cmd, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        line = server.stdout.readline()
        if not line.startswith("listening on "):
            check(False, name, line + server.stderr.read())
            return
        port = line.split()[2]
        client = subprocess.run(client_cmd(port), capture_output=True,
                                text=True, timeout=60)
        out, err = server.communicate(timeout=30)
    finally:
        server.kill()
    check(client.returncode == 0 and client.stdout.split("\n") == expect
          and client.stderr == "", name + ": the client",
          client.stdout + client.stderr)
    check(server.returncode == 0 and out == "served %d\n" % served
          and err == "", name + ": the server", out + err)


sizes = ["1", "4096", "70000", "300000"]
python_expect = ["echoed " + s for s in sizes] + [""]
exchange("LuaJIT FFI server, tapio Lua clients",
         luajit_server + ["0", "5"],
         lambda port: [tapio, os.path.join(embed, "echo_clients.lua"),
                       port, "5"], ["echoed 5", ""], 5)
exchange("Python cffi server, tapio Lua clients",
         python + ["serve", "0", "5"],
         lambda port: [tapio, os.path.join(embed, "echo_clients.lua"),
                       port, "5"], ["echoed 5", ""], 5)
exchange("tapio Lua server, Python cffi client",
         [tapio, os.path.join(embed, "echo_server.lua"), "4"],
         lambda port: python + ["client", port] + sizes, python_expect, 4)
exchange("LuaJIT FFI server, Python cffi client",
         luajit_server + ["0", "4"],
         lambda port: python + ["client", port] + sizes, python_expect, 4)


def asyncio_python():
    r = subprocess.run([sys.executable, os.path.join(
        src, "examples", "ffi", "asyncio_python.py"), cdef, lib],
        capture_output=True, text=True, timeout=60)
    lines = r.stdout.split("\n")
    check(r.returncode == 0 and r.stderr == "" and lines[:4] == [
        "listening",
        "close: [b'HELLO\\n', b'']",
        "raise: [b'HELLO\\n', b'']",
        "handler: ECALLBACK data_received: ValueError('asked to raise')"],
        "asyncio drives a tapio server of Python callbacks; closing from a "
        "callback, a callback that raises", r.stdout + r.stderr)
    # no busy polling: a step per event, a few dozen in all
    steps = (lines[4:5] or [""])[0].split()
    check(len(steps) == 2 and steps[0] == "steps" and int(steps[1]) < 60,
          "asyncio steps tapio only when it has work: %s" % steps)

asyncio_python()
finish()
