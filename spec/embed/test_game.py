"""examples/host/game_host.c, a game engine's shape on LuaJIT: its own
state and 60 frames a second, with examples/host/game.lua talking to an
asyncio server of this test's across frames (a task sending lines and
reading the replies, a datagram endpoint sending a position per frame),
then quitting with everything closed.
Usage: test_game.py GAME_HOST SCRIPT [VALGRIND]"""
import asyncio
import subprocess
import sys
import threading

from checks import check, finish

host, script = sys.argv[1], sys.argv[2]
valgrind = sys.argv[3:4]
LINES = 12


class Server:
    """TCP: each line answered "ack LINE"; UDP: the datagrams kept."""

    def __init__(self):
        self.positions, self.lines = [], []
        self.ready = threading.Event()
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_until_complete,
                         args=(self.serve(),), daemon=True).start()
        self.ready.wait(30)

    async def chat(self, reader, writer):
        while line := await reader.readline():
            self.lines.append(line)
            writer.write(b"ack " + line)
            await writer.drain()
        writer.close()

    async def serve(self):
        server = self

        class Udp(asyncio.DatagramProtocol):
            def datagram_received(self, data, addr):
                server.positions.append(data)

        tcp = await asyncio.start_server(self.chat, "127.0.0.1", 0)
        udp, _ = await self.loop.create_datagram_endpoint(
            Udp, local_addr=("127.0.0.1", 0))
        self.ports = (tcp.sockets[0].getsockname()[1],
                      udp.get_extra_info("sockname")[1])
        self.done = asyncio.Event()
        self.ready.set()
        await self.done.wait()
        tcp.close()
        udp.close()

    def stop(self):
        self.loop.call_soon_threadsafe(self.done.set)


server = Server()
cmd = ([valgrind[0], "--quiet", "--leak-check=full", "--show-leak-kinds=all", "--errors-for-leak-kinds=all", "--error-exitcode=99"]
       if valgrind else []) + [host, script, str(server.ports[0]),
                               str(server.ports[1]), str(LINES)]
r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
server.stop()
words = r.stdout.split()
stats = dict(zip(words[::2], words[1::2]))
check(r.returncode == 0, "game_host quits cleanly, status 0%s" %
      (", valgrind clean" if valgrind else ""), r.stdout + r.stderr)
check(stats.get("replies") == str(LINES) and len(server.lines) == LINES,
      "the task sent %d lines across frames and read each reply" % LINES,
      r.stdout)
sent = int(stats.get("positions", "0"))
# a datagram on loopback is not lost unless a buffer overflows: at one
# per frame, none is
check(sent > LINES and len(server.positions) == sent and
      all(p.startswith(b"position ") for p in server.positions),
      "one position datagram per frame: sent %d, received %d" %
      (sent, len(server.positions)))
check(int(stats.get("frames", "0")) > sent,
      "the frames went on while the task waited", r.stdout)
finish()
