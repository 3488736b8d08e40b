"""The UDP echo benchmark's uvloop server: the fastest asyncio loop
(Debian's python3-uvloop) with an asyncio.DatagramProtocol echo.
Usage: /usr/bin/python3 uvloop_udp_echo.py PORT"""
import asyncio
import sys

import uvloop


class Echo(asyncio.DatagramProtocol):
    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.transport.sendto(data, addr)


async def main(port):
    loop = asyncio.get_running_loop()
    await loop.create_datagram_endpoint(Echo, local_addr=("127.0.0.1", port))
    print("ready", flush=True)
    await asyncio.Event().wait()


uvloop.install()
asyncio.run(main(int(sys.argv[1])))
