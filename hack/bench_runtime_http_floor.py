"""The floor of `hack/bench-runtime`'s HTTP rows: a server that reads each request's
whole body and answers a canned response of the model's size, and does nothing else.

It is the least a Python server on this machine can cost per request (uvloop, a bare
asyncio protocol, no HTTP library, no parsing beyond Content-Length), so at concurrency
1 its p50 is the platform's own round trip for that body: the client's send, the
server's wake-up, the body over loopback, the answer, the client's wake-up. The
benchmark measures it in the same run, and reads the runtime's c=1 latency against
it. HTTP/1.1 keep-alive only, one request at a time per connection (the load generator
is closed-loop); anything else closes the connection.

usage: python bench_runtime_http_floor.py --port P --response-bytes N
"""

from __future__ import annotations

import argparse
import asyncio


class Floor(asyncio.Protocol):
    def __init__(self, response: bytes) -> None:
        self.response = response
        self.buf = bytearray()
        self.need = -1  # body bytes still due for the request being read; -1: headers

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            if self.need < 0:
                end = self.buf.find(b"\r\n\r\n")
                if end < 0:
                    return
                head = bytes(self.buf[:end]).lower()
                del self.buf[: end + 4]
                at = head.find(b"content-length:")
                if at < 0:
                    self.transport.close()
                    return
                self.need = int(head[at + 15 :].split(b"\r\n", 1)[0])
            if len(self.buf) < self.need:
                return
            del self.buf[: self.need]
            self.need = -1
            self.transport.write(self.response)


async def serve(port: int, response_bytes: int) -> None:
    body = bytes(response_bytes)
    response = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body)
    ) + body
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Floor(response), "127.0.0.1", port, backlog=4096)
    async with server:
        await server.serve_forever()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--response-bytes", type=int, default=4096)
    args = p.parse_args()
    try:
        import uvloop

        uvloop.run(serve(args.port, args.response_bytes))
    except ImportError:
        asyncio.run(serve(args.port, args.response_bytes))


if __name__ == "__main__":
    main()
