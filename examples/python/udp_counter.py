# A counter service over UDP, with asyncio.DatagramProtocol (Python 3.13).
# The server keeps named counters: "ID INC NAME" adds one to NAME and is
# answered "ID NAME=N". A request it has answered before (the client sent
# it again) gets the same answer, so a retry never counts twice; and, to
# show the retries, it drops the first copy of each request with an even
# ID, as a lossy network would. The client sends its requests over a
# connected endpoint, one at a time: it waits TIMEOUT seconds for each
# answer (call_later and a future) and sends again, and where nothing
# listens yet the port unreachable ICMP reaches error_received
# (ConnectionRefusedError): it says so once, and tries again later.
# Usage: python3.13 udp_counter.py server PORT
#        python3.13 udp_counter.py client PORT NAME COUNT
import asyncio
import sys

MODE, PORT = sys.argv[1], int(sys.argv[2])
TIMEOUT = 0.2  # seconds for an answer
TRIES = 25


class CounterServer(asyncio.DatagramProtocol):
    def __init__(self):
        self.counters = {}
        self.answers = {}  # (addr, ID) -> the answer sent
        self.dropped = set()

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        rid, command, name = data.decode().split(" ")
        key = (addr, rid)
        if key not in self.answers:
            if int(rid) % 2 == 0 and key not in self.dropped:
                self.dropped.add(key)
                print(f"dropped request {rid} ({command} {name})")
                return
            self.counters[name] = self.counters.get(name, 0) + 1
            self.answers[key] = f"{rid} {name}={self.counters[name]}"
        self.transport.sendto(self.answers[key].encode(), addr)


class CounterClient(asyncio.DatagramProtocol):
    def __init__(self):
        self.pending = {}  # ID -> the future of its answer
        self.told = False  # that the server is not up

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        rid, answer = data.decode().split(" ", 1)
        future = self.pending.get(int(rid))
        if future and not future.done():  # not a late answer
            future.set_result(answer)

    def error_received(self, exc):  # nobody listens there (yet)
        for future in self.pending.values():
            if not future.done():
                future.set_exception(exc)


def expire(future):
    if not future.done():
        future.set_exception(TimeoutError())


async def request(protocol, rid, text):
    loop = asyncio.get_running_loop()
    for _ in range(TRIES):
        answer = protocol.pending[rid] = loop.create_future()
        timer = loop.call_later(TIMEOUT, expire, answer)
        protocol.transport.sendto(f"{rid} {text}".encode())
        try:
            return await answer
        except TimeoutError:  # lost, or late: send it again
            pass
        except ConnectionRefusedError:
            if not protocol.told:
                print("the server is not up yet: trying again")
                protocol.told = True
            await asyncio.sleep(TIMEOUT)
        finally:
            timer.cancel()
            del protocol.pending[rid]
    raise TimeoutError(f"no answer to request {rid} after {TRIES} tries")


async def main():
    loop = asyncio.get_running_loop()
    if MODE == "server":
        transport, _ = await loop.create_datagram_endpoint(
            CounterServer, local_addr=("127.0.0.1", PORT))
        await asyncio.Event().wait()  # serve until killed
    name, count = sys.argv[3], int(sys.argv[4])
    transport, protocol = await loop.create_datagram_endpoint(
        CounterClient, remote_addr=("127.0.0.1", PORT))
    try:
        for rid in range(1, count + 1):
            print(f"INC {name}: {await request(protocol, rid, f'INC {name}')}")
    finally:
        transport.close()

asyncio.run(main())
