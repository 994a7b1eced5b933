"""gRPC's HTTP/2 transport on the event loop, with the h2 library: the default listener
for grpc_service's RPCs (MODELSERVE_GRPC_SERVER=h2).

Why not grpcio's servers: measured with `hack/bench-runtime --cpu` (docs/runtime.md), a
grpcio server that does nothing but answer ModelInfer costs 190-250 us of CPU a call on
its thread-pool server and 300-390 us on its asyncio one, because each call crosses
threads (grpcio's poller and handler threads, then our event loop) at least twice; KServe's
whole ModelInfer costs 800-1100 us, so a server on grpcio cannot be 3x cheaper. The same
do-nothing answer over h2 on the event loop costs ~110 us: no thread at all, and calls
that arrive in one socket read batch together as HTTP requests do. h2 (the HTTP/2 state
machine hypercorn and httpx use) does the HTTP/2 part: framing, HPACK, flow control,
stream states, PING and SETTINGS. What is left here is gRPC's thin layer over it, as its
spec (PROTOCOL-HTTP2.md) lays it out: the 5-byte message prefix, `grpc-timeout`,
metadata, and the status in trailers.

Limits mirror the HTTP listener's (config.Settings): a message over max_body_bytes is
RESOURCE_EXHAUSTED; at most max_connections calls in progress per process (more:
RESOURCE_EXHAUSTED), also announced as each connection's MAX_CONCURRENT_STREAMS; a
connection must open a call within header_timeout_s and is closed after
keepalive_timeout_s without one; a call's message must arrive within body_timeout_s of its
headers (else DEADLINE_EXCEEDED). A peer that breaks HTTP/2 gets GOAWAY(PROTOCOL_ERROR).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import ssl
import urllib.parse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
import h2.stream

from .errors import InferenceError

if TYPE_CHECKING:
    from .config import Settings
    from .grpc_service import Core

log = logging.getLogger("modelserve.grpc")

# gRPC status codes (grpc/status.h); grpc_service maps InferenceError's HTTP status.
DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, UNIMPLEMENTED, INTERNAL = 4, 8, 12, 13
# Headers that are the transport's, not the caller's metadata.
_RESERVED = frozenset({b"content-type", b"te", b"grpc-timeout", b"grpc-encoding",
                       b"grpc-accept-encoding", b"content-length"})
_TIMEOUT_UNITS = {b"H": 3600.0, b"M": 60.0, b"S": 1.0, b"m": 1e-3, b"u": 1e-6, b"n": 1e-9}
CONFIG = h2.config.H2Configuration(
    client_side=False,
    header_encoding=None,  # bytes in and out: no decoding of every header per call
    # h2's checks of every inbound header, in Python, were ~7 % of a call's CPU (py-spy,
    # c=64). A header here only selects (:method, :path, content-type, grpc-*) or is
    # compared (the API key); none is echoed, logged or forwarded, and a path or
    # content-type that is not exactly right is refused below. HPACK and frame errors
    # are still h2's PROTOCOL_ERROR.
    validate_inbound_headers=False,
    normalize_inbound_headers=False,
    validate_outbound_headers=False,  # ours are fixed and well-formed
    normalize_outbound_headers=False,
)
_WINDOW = 4 << 20  # per stream and connection: a large message arrives without stalls
# h2 answers every PING itself. Keepalive PINGs come seconds apart, and the PINGs clients
# use to size their windows come with calls; more than this many in one second with no
# call opened in between is a flood (grpcio's servers also answer one with GOAWAY
# ENHANCE_YOUR_CALM).
_PINGS_PER_SECOND = 20


def parse_timeout(value: bytes) -> float | None:
    """`grpc-timeout` (1-8 digits and a unit) in seconds; None when malformed."""
    unit = _TIMEOUT_UNITS.get(value[-1:])
    digits = value[:-1]
    if unit is None or not digits.isdigit() or len(digits) > 8:
        return None
    return int(digits) * unit


def status_message(text: str) -> bytes:
    """grpc-message: percent-encoded UTF-8 (the spec's escaping)."""
    return urllib.parse.quote(text, safe=" !\"#$&'()*+,-./:;<=>?@[\\]^_`{|}~").encode()


class H2Call:
    """One call as grpc_service reads it (its Call protocol). Its metadata is decoded
    from the headers only when asked (the API key check), not on every call."""

    __slots__ = ("_headers", "_peer", "ended", "task")

    def __init__(self, peer: str, headers: list[tuple[bytes, bytes]]) -> None:
        self._peer = peer
        self._headers = headers
        self.ended = False  # cancelled by the client, or past its deadline
        self.task: asyncio.Task | None = None

    def peer(self) -> str:
        return self._peer

    def metadata(self) -> list[tuple[str, str | bytes]]:
        return [item for name, value in self._headers
                if name[:1] != b":" and name not in _RESERVED
                and (item := _metadata(name, value)) is not None]

    def done(self) -> bool:
        return self.ended


class _Stream:
    """A call's state on its connection, from its headers to its last frame out."""

    __slots__ = (
        "answered",
        "body",
        "body_timer",
        "call",
        "deadline",
        "method",
        "outbox",
        "trailers",
    )

    def __init__(self, method: Core | None, call: H2Call) -> None:
        self.method = method
        self.call = call
        self.body = bytearray()
        self.body_timer: asyncio.TimerHandle | None = None  # body_timeout_s
        self.deadline: asyncio.TimerHandle | None = None  # the caller's grpc-timeout
        self.outbox = memoryview(b"")  # answer bytes waiting for flow-control window
        self.trailers: list[tuple[bytes, bytes]] | None = None
        self.answered = False

    def stop_timers(self) -> None:
        for timer in (self.body_timer, self.deadline):
            if timer is not None:
                timer.cancel()


def _metadata(name: bytes, value: bytes) -> tuple[str, str | bytes] | None:
    key = name.decode("latin-1")
    if not key.endswith("-bin"):
        return key, value.decode("latin-1")
    try:  # binary metadata travels base64-encoded, padding optional
        return key, base64.b64decode(value + b"==")
    except ValueError:
        return None


class Listener:
    """Shared by the connections of one listening socket: the service's methods, the
    limits, and the connections to close on stop()."""

    def __init__(self, methods: dict[str, Core], settings: Settings,
                 encode: Callable[[Any], bytes], code_of: Callable[[InferenceError], int],
                 on_reject: Callable[[str], None] = lambda reason: None):
        self.methods = {path.encode(): core for path, core in methods.items()}  # by :path
        self.settings = settings
        self.encode = encode
        self.code_of = code_of
        # modelserve_rejected_connections_total{reason}, as for HTTP connections.
        self.on_reject = on_reject
        self.connections: set[H2Protocol] = set()
        self.calls = 0  # in progress, over every connection
        self.server: asyncio.Server | None = None

    async def start(self, host: str, port: int, tls: ssl.SSLContext | None,
                    reuse_port: bool) -> None:
        if tls is not None:
            tls.set_alpn_protocols(["h2"])
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(lambda: H2Protocol(self), host, port, ssl=tls,
                                               backlog=4096, reuse_port=reuse_port or None)

    async def stop(self, grace: float | None) -> None:
        """Stop accepting, let calls in progress finish for up to `grace` seconds (the
        runtime's drain has already waited for them), then GOAWAY and close."""
        if self.server is not None:
            self.server.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (grace or 0)
        while self.calls and loop.time() < deadline:
            await asyncio.sleep(0.02)
        for connection in list(self.connections):
            connection.go_away()


class H2Protocol(asyncio.Protocol):
    """One HTTP/2 connection carrying gRPC calls."""

    def __init__(self, listener: Listener) -> None:
        self.listener = listener
        self.settings = listener.settings
        self.conn = h2.connection.H2Connection(config=CONFIG)
        self.streams: dict[int, _Stream] = {}
        self.transport: asyncio.Transport | None = None
        self.peer = ""
        self.idle: asyncio.TimerHandle | None = None
        self.flush_due = False
        self.loop = asyncio.get_running_loop()
        self.opened_a_call = False
        self.pings, self.pings_since = 0, 0.0  # PINGs this second since the last call

    # --- the connection -------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.listener.connections.add(self)
        host, port = (transport.get_extra_info("peername") or ("?", 0))[:2]
        self.peer = f"ipv6:[{host}]:{port}" if ":" in str(host) else f"ipv4:{host}:{port}"
        # In the first SETTINGS frame, and enforced from the first stream on.
        self.conn.local_settings = h2.settings.Settings(client=False, initial_values={
            h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: self.settings.max_connections,
            h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: _WINDOW,
        })
        self.conn.initiate_connection()
        self.conn.increment_flow_control_window(_WINDOW)
        # A connection must open a call soon, as an HTTP one must send its headers.
        self._arm_idle(self.settings.header_timeout_s)
        self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.listener.connections.discard(self)
        if self.idle is not None:
            self.idle.cancel()
        for stream in self.streams.values():
            self._end_call(stream)
        self.streams.clear()

    def data_received(self, data: bytes) -> None:
        try:
            self._events(self.conn.receive_data(data))
        except h2.exceptions.ProtocolError as exc:  # h2 has queued GOAWAY(PROTOCOL_ERROR)
            log.info("gRPC peer %s broke HTTP/2: %s", self.peer, exc)
            self._flush()
            self.close()
            return
        self._flush()

    def _events(self, events: list[h2.events.Event]) -> None:
        opened = []
        for event in events:
            kind = type(event)
            if kind is h2.events.DataReceived:
                self._data(event)
            elif kind is h2.events.RequestReceived:
                self._request(event.stream_id, event.headers)
                opened.append(event.stream_id)
            elif kind is h2.events.StreamEnded:
                self._message_complete(event.stream_id)
            elif kind is h2.events.StreamReset:
                self._reset(event.stream_id)
            elif kind is h2.events.WindowUpdated:
                self._window(event.stream_id)
            elif kind is h2.events.PingReceived and not self.streams and self._ping_flood():
                return
            elif kind is h2.events.ConnectionTerminated:
                self.close()
                return
        for stream_id in opened:  # a call whose message is still on its way: bound it
            stream = self.streams.get(stream_id)
            if stream is not None and not stream.answered and stream.call.task is None:
                stream.body_timer = self.loop.call_later(self.settings.body_timeout_s,
                                                         self._body_late, stream_id)

    def go_away(self, code: h2.errors.ErrorCodes = h2.errors.ErrorCodes.NO_ERROR,
                data: bytes | None = None) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        self.conn.close_connection(code, additional_data=data)
        self._flush()
        self.close()

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def _arm_idle(self, seconds: float) -> None:
        if self.idle is not None:
            self.idle.cancel()
        self.idle = self.loop.call_later(seconds, self._idle_expired)

    def _idle_expired(self) -> None:
        self.idle = None
        if not self.streams:
            if not self.opened_a_call:  # as an HTTP connection that sends no headers
                self.listener.on_reject("header_timeout")
            self.go_away()

    def _ping_flood(self) -> bool:
        """Count a PING that came with no call open; True once it is a flood and the
        connection is closed."""
        now = self.loop.time()
        if now - self.pings_since > 1.0:
            self.pings, self.pings_since = 0, now
        self.pings += 1
        if self.pings > _PINGS_PER_SECOND:
            log.info("gRPC peer %s sent more than %d PINGs in a second: closing", self.peer,
                     _PINGS_PER_SECOND)
            self.listener.on_reject("ping_flood")
            self.go_away(h2.errors.ErrorCodes.ENHANCE_YOUR_CALM, b"too_many_pings")
            return True
        return False

    def _flush(self) -> None:
        self.flush_due = False
        out = self.conn.data_to_send()
        if out and self.transport is not None and not self.transport.is_closing():
            self.transport.write(out)

    def _flush_soon(self) -> None:
        # The answers of one batch complete in one loop turn: one write for all of them.
        if not self.flush_due:
            self.flush_due = True
            self.loop.call_soon(self._flush)

    # --- a call ---------------------------------------------------------------------
    def _request(self, stream_id: int, headers: list[tuple[bytes, bytes]]) -> None:
        self.opened_a_call = True
        self.pings = 0
        if self.idle is not None:
            self.idle.cancel()
            self.idle = None
        method = path = content_type = encoding = timeout = None
        for name, value in headers:
            if name == b":path":
                path = value
            elif name == b":method":
                method = value
            elif name == b"content-type":
                content_type = value
            elif name == b"grpc-encoding":
                encoding = value
            elif name == b"grpc-timeout":
                timeout = value
        stream = _Stream(self.listener.methods.get(path or b""),
                         H2Call(self.peer, headers))
        self.streams[stream_id] = stream
        if method != b"POST":
            self._refuse_http(stream_id, b"405")  # gRPC calls are POSTs
        elif not (content_type or b"").startswith(b"application/grpc"):
            self._refuse_http(stream_id, b"415")  # not gRPC: the spec's HTTP answer
        elif stream.method is None:
            self._status(stream_id, UNIMPLEMENTED,
                         f"unknown method {(path or b'').decode('latin-1')[:200]}")
        elif encoding not in (None, b"identity"):
            self._status(stream_id, UNIMPLEMENTED,
                         f"grpc-encoding {encoding.decode('latin-1')[:50]} is not supported; "
                         "send uncompressed messages")
        elif self.listener.calls >= self.settings.max_connections:
            self._status(stream_id, RESOURCE_EXHAUSTED,
                         f"more than {self.settings.max_connections} calls in progress")
        else:
            seconds = parse_timeout(timeout) if timeout is not None else None
            if seconds is not None:
                stream.deadline = self.loop.call_later(seconds, self._deadline, stream_id)

    def _data(self, event: h2.events.DataReceived) -> None:
        self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        stream = self.streams.get(event.stream_id)
        if stream is None or stream.answered:
            return
        stream.body += event.data
        if len(stream.body) > self.settings.max_body_bytes + 5:
            self._status(event.stream_id, RESOURCE_EXHAUSTED,
                         f"received message larger than max ({len(stream.body) - 5} vs. "
                         f"{self.settings.max_body_bytes})")

    def _message_complete(self, stream_id: int) -> None:
        stream = self.streams.get(stream_id)
        if stream is None or stream.answered:
            return
        if stream.body_timer is not None:
            stream.body_timer.cancel()
        body = stream.body
        if len(body) < 5 or int.from_bytes(body[1:5], "big") != len(body) - 5:
            self._status(stream_id, INTERNAL, "expected one length-prefixed request message")
        elif body[0]:
            self._status(stream_id, UNIMPLEMENTED,
                         "compressed messages are not supported; send uncompressed ones")
        else:
            self.listener.calls += 1
            stream.call.task = self.loop.create_task(
                self._serve(stream_id, stream, bytes(memoryview(body)[5:])))

    async def _serve(self, stream_id: int, stream: _Stream, raw: bytes) -> None:
        assert stream.method is not None
        try:
            answer = await stream.method(raw, stream.call)
        except InferenceError as exc:
            self._status(stream_id, self.listener.code_of(exc), str(exc))
        except asyncio.CancelledError:  # reset by the client, or past its deadline
            pass
        except Exception:  # a bug: the caller still gets a status, the log the trace
            log.exception("gRPC call failed")
            self._status(stream_id, INTERNAL, "internal error; see the server log")
        else:
            self._answer(stream_id, stream, self.listener.encode(answer))
        finally:
            self.listener.calls -= 1
            self._forget(stream_id)
            self._flush_soon()

    def _answer(self, stream_id: int, stream: _Stream, message: bytes) -> None:
        if stream.answered or self.streams.get(stream_id) is not stream:
            return
        stream.answered = True
        stream.stop_timers()
        try:
            self.conn.send_headers(stream_id, [(b":status", b"200"),
                                               (b"content-type", b"application/grpc")])
        except h2.exceptions.ProtocolError:  # the stream or connection is gone
            return
        stream.outbox = memoryview(b"\0" + len(message).to_bytes(4, "big") + message)
        stream.trailers = [(b"grpc-status", b"0")]
        self._send(stream_id, stream)

    def _send(self, stream_id: int, stream: _Stream) -> None:
        """As much of the answer as the peer's flow-control window takes; the rest on
        its next WINDOW_UPDATE (_window)."""
        try:
            while stream.outbox:
                room = min(self.conn.local_flow_control_window(stream_id),
                           self.conn.max_outbound_frame_size)
                if room <= 0:
                    return
                self.conn.send_data(stream_id, stream.outbox[:room].tobytes())
                stream.outbox = stream.outbox[room:]
            if stream.trailers is not None:
                self.conn.send_headers(stream_id, stream.trailers, end_stream=True)
                stream.trailers = None
        except h2.exceptions.ProtocolError:  # the stream or connection is gone
            stream.outbox = memoryview(b"")
        self._forget(stream_id)

    def _status(self, stream_id: int, code: int, message: str) -> None:
        """The call ends without a message: gRPC's trailers-only answer."""
        stream = self.streams.get(stream_id)
        if stream is None or stream.answered:
            return
        stream.answered = True
        stream.stop_timers()
        try:
            self.conn.send_headers(stream_id, [
                (b":status", b"200"), (b"content-type", b"application/grpc"),
                (b"grpc-status", str(code).encode()),
                (b"grpc-message", status_message(message))], end_stream=True)
            if not self._remote_closed(stream_id):
                # Answered before its message was all read: the rest is not wanted.
                self.conn.reset_stream(stream_id, h2.errors.ErrorCodes.NO_ERROR)
        except h2.exceptions.ProtocolError:  # the stream or connection is gone
            pass
        self._forget(stream_id)
        self._flush_soon()

    def _refuse_http(self, stream_id: int, status: bytes) -> None:
        self.streams[stream_id].answered = True
        try:
            self.conn.send_headers(stream_id, [(b":status", status)], end_stream=True)
            if not self._remote_closed(stream_id):
                self.conn.reset_stream(stream_id, h2.errors.ErrorCodes.NO_ERROR)
        except h2.exceptions.ProtocolError:  # the stream or connection is gone
            pass
        self._forget(stream_id)

    def _remote_closed(self, stream_id: int) -> bool:
        state = self.conn.streams.get(stream_id)
        return state is None or state.state_machine.state in (
            h2.stream.StreamState.HALF_CLOSED_REMOTE, h2.stream.StreamState.CLOSED)

    def _reset(self, stream_id: int) -> None:
        """The client cancelled the call (RST_STREAM)."""
        stream = self.streams.pop(stream_id, None)
        if stream is not None:
            self._end_call(stream)
        self._maybe_idle()

    def _deadline(self, stream_id: int) -> None:
        stream = self.streams.get(stream_id)
        if stream is not None and not stream.answered:
            self._end_call(stream)
            self._status(stream_id, DEADLINE_EXCEEDED, "deadline exceeded")

    def _body_late(self, stream_id: int) -> None:
        stream = self.streams.get(stream_id)
        if stream is not None and stream.call.task is None:
            self._status(stream_id, DEADLINE_EXCEEDED, "the request message did not arrive "
                         f"within {self.settings.body_timeout_s:g} s")

    @staticmethod
    def _end_call(stream: _Stream) -> None:
        """The caller is gone (reset, deadline, connection lost): stop its work, which
        grpc_service counts as a client that went away (499), as over HTTP."""
        stream.call.ended = True
        stream.stop_timers()
        if stream.call.task is not None and not stream.call.task.done():
            stream.call.task.cancel()

    def _window(self, stream_id: int) -> None:
        waiting = [(sid, s) for sid, s in self.streams.items()
                   if s.outbox and (stream_id == 0 or sid == stream_id)]
        for sid, stream in waiting:
            self._send(sid, stream)

    def _forget(self, stream_id: int) -> None:
        """Drop a stream once it is answered, its answer all sent and its work over."""
        stream = self.streams.get(stream_id)
        if stream is None or not stream.answered or stream.outbox or stream.trailers:
            return
        if stream.call.task is not None and not stream.call.task.done() \
                and stream.call.task is not asyncio.current_task():
            return  # cancelled, still unwinding: _serve's finally forgets it
        del self.streams[stream_id]
        self._maybe_idle()

    def _maybe_idle(self) -> None:
        if not self.streams:
            self._arm_idle(self.settings.keepalive_timeout_s)
