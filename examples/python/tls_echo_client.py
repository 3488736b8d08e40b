# The reference's TCP echo client with TLS (Python asyncio), as the Lua
# version's peer in examples/test_examples.sh.
# Usage: tls_echo_client.py [cafile [port]]
import asyncio
import ssl
import sys

CAFILE = sys.argv[1] if len(sys.argv) > 1 else None
PORT = int(sys.argv[2]) if len(sys.argv) > 2 else 8443


class EchoClientProtocol(asyncio.Protocol):
    def __init__(self, message, on_con_lost):
        self.message = message
        self.on_con_lost = on_con_lost

    def connection_made(self, transport):
        cert = transport.get_extra_info('peercert')
        print('TLS: {}, certificate of {}'.format(
            transport.get_extra_info('ssl_object').version(),
            cert['subject'][0][0][1]))
        transport.write(self.message.encode())
        print('Data sent: {!r}'.format(self.message))

    def data_received(self, data):
        print('Data received: {!r}'.format(data.decode()))

    def connection_lost(self, exc):
        print('The server closed the connection')
        self.on_con_lost.set_result(True)


async def main():
    loop = asyncio.get_running_loop()
    on_con_lost = loop.create_future()
    context = ssl.create_default_context(cafile=CAFILE)
    transport, protocol = await loop.create_connection(
        lambda: EchoClientProtocol('Hello World!', on_con_lost),
        '127.0.0.1', PORT, ssl=context, server_hostname='localhost')
    try:
        await on_con_lost
    finally:
        transport.close()


asyncio.run(main())
