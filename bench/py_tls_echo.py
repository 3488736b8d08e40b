"""The TLS rows' Python servers: an asyncio.Protocol echo over TLS on
uvloop (Debian's python3-uvloop) or on asyncio's own loop.
Usage: /usr/bin/python3 py_tls_echo.py PORT CERT KEY uvloop|asyncio"""
import asyncio
import ssl
import sys


class Echo(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)

    def pause_writing(self):
        self.transport.pause_reading()

    def resume_writing(self):
        self.transport.resume_reading()


async def main(port, cert, key):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Echo, "127.0.0.1", port, backlog=1024,
                                      ssl=ctx)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


if sys.argv[4] == "uvloop":
    import uvloop
    uvloop.install()
asyncio.run(main(int(sys.argv[1]), sys.argv[2], sys.argv[3]))
