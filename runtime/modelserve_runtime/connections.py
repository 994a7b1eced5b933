"""Connection-level limits for the HTTP listener: how many connections may be open, and
how long a client may take to send a request's line and headers.

aiohttp bounds neither: a connection that sends half a request line and then trickles
a byte now and then holds its slot for aiohttp's keep-alive timeout (an hour), and
nothing caps how many such connections pile up (slowloris). `ConnectionGuard` wraps
each connection's aiohttp protocol: it rejects a connection over the limit with a 503,
and closes one whose request headers are not complete within the header timeout (a
408). The body timeout is the request handler's (server.py), since only it knows when
the body has been read. Idle keep-alive connections (no byte of a next request yet)
are not timed here: aiohttp's keep-alive timeout covers them.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable

log = logging.getLogger("modelserve.connections")


def raw_response(status: int, reason: str, message: str, extra: str = "") -> bytes:
    """A complete HTTP/1.1 error response for a connection no request handler owns."""
    body = json.dumps({"error": message}).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n{extra}\r\n"
    )
    return head.encode() + body


class ConnectionGuard(asyncio.Protocol):
    """Wraps one connection's HTTP protocol; every callback is passed through."""

    __slots__ = ("_timer", "in_request", "inner", "limits", "transport")

    def __init__(self, inner: asyncio.Protocol, limits: ConnectionLimits) -> None:
        self.inner = inner
        self.limits = limits
        self.transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self.in_request = False

    # --- protocol callbacks --------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        limits = self.limits
        if len(limits.open) >= limits.max_connections:
            limits.on_reject("connection_limit")
            transport.write(  # type: ignore[attr-defined]
                raw_response(
                    503,
                    "Service Unavailable",
                    f"too many open connections (--max-connections {limits.max_connections})",
                    "Retry-After: 1\r\n",
                )
            )
            transport.close()
            return
        limits.open[inner_key(self.inner)] = self
        # A new connection must send its first request's headers in time, like a slow
        # one; only a connection that has finished a request may then sit idle.
        self._arm()
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._timer is None and not self.in_request:
            self._arm()  # the first bytes of the next request on a kept-alive connection
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self.limits.open.pop(inner_key(self.inner), None) is None:
            return  # rejected over the limit: the inner protocol never saw it
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    # --- request boundaries (called by the server's middleware) ---------------------
    def request_started(self) -> None:
        """Headers are complete: the header timer stops; the handler times the body."""
        self.in_request = True
        self._disarm()

    def request_finished(self) -> None:
        self.in_request = False

    # --- the header timer -----------------------------------------------------------
    def _arm(self) -> None:
        self._disarm()
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self.limits.header_timeout_s, self._headers_too_slow)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _headers_too_slow(self) -> None:
        self._timer = None
        transport = self.transport
        if self.in_request or transport is None or transport.is_closing():
            return
        self.limits.on_reject("header_timeout")
        transport.write(
            raw_response(
                408,
                "Request Timeout",
                f"request headers not received within --header-timeout-s "
                f"{self.limits.header_timeout_s:g}",
            )
        )
        transport.close()


def inner_key(inner: asyncio.Protocol) -> int:
    return id(inner)


class ConnectionLimits:
    """Shared by every connection of one listener."""

    def __init__(
        self,
        max_connections: int,
        header_timeout_s: float,
        on_reject: Callable[[str], None] = lambda reason: None,
    ) -> None:
        self.max_connections = max_connections
        self.header_timeout_s = header_timeout_s
        self.on_reject = on_reject
        self.open: dict[int, ConnectionGuard] = {}

    def wrap(self, factory: Callable[[], asyncio.Protocol]) -> Callable[[], ConnectionGuard]:
        return lambda: ConnectionGuard(factory(), self)

    def guard_of(self, protocol: object) -> ConnectionGuard | None:
        """The guard of a request's connection (`request.protocol`)."""
        return self.open.get(id(protocol))
