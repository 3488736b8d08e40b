"""The echo benchmark's uvloop server: the fastest asyncio loop (Debian's
python3-uvloop) with an asyncio.Protocol echo.
Usage: /usr/bin/python3 uvloop_echo.py PORT"""
import asyncio
import sys

import uvloop


class Echo(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)


async def main(port):
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Echo, "127.0.0.1", port, backlog=1024)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


uvloop.install()
asyncio.run(main(int(sys.argv[1])))
