#!/usr/bin/env python3
"""A UDP echo server on asyncio, a real peer for the datagram specs.

    udp_echo.py [HOST]

Binds HOST (127.0.0.1 unless given) at an ephemeral port, prints
"PORT <n>" on stdout once it listens, sends each datagram back to its
sender as it came, and serves until its stdin closes (it dies with the
test that started it).
"""
import asyncio
import sys


class Echo(asyncio.DatagramProtocol):
    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.transport.sendto(data, addr)


async def main():
    host = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1"
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        Echo, local_addr=(host, 0))
    print("PORT", transport.get_extra_info("sockname")[1], flush=True)
    done = loop.create_future()

    def on_stdin():
        if not sys.stdin.buffer.read1(4096) and not done.done():
            done.set_result(None)

    loop.add_reader(sys.stdin.fileno(), on_stdin)
    await done
    transport.close()


asyncio.run(main())
