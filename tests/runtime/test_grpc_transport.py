"""gRPC's HTTP/2 transport (grpc_h2.py) against the real server process: what grpcio's
clients rely on (deadlines, cancels, compression refused, large messages through flow
control), what a misbehaving peer meets (a stalled message, a silent or broken
connection, a non-gRPC request), and the spec's small parts as pure functions. Bad
inputs, health, metadata and TLS go through tritonclient in test_clients.py and
test_process.py, on this same transport (the default)."""

from __future__ import annotations

import contextlib
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import h2.config
import h2.connection
import h2.errors
import h2.events
import numpy as np
import pytest

from modelserve_runtime.grpc_h2 import parse_timeout, status_message
from tests.runtime.conftest import Server, start_server, stop_server

pytest.importorskip("tritonclient.grpc")
from tritonclient.grpc import service_pb2

INFER = "/inference.GRPCInferenceService/ModelInfer"


@pytest.fixture(scope="module")
def server(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(tmp_path_factory.mktemp("h2"), tiny_model, "--max-batch-size", "65536",
                       "--header-timeout-s", "1", "--body-timeout-s", "1")
    yield srv
    assert stop_server(srv) == 0, srv.stderr_path.read_text()
    assert "Traceback" not in srv.stderr_path.read_text()


def infer_request(rows: int) -> service_pb2.ModelInferRequest:
    req = service_pb2.ModelInferRequest(model_name="tiny")
    req.inputs.add(name="x", datatype="FP32", shape=[rows, 4])
    req.raw_input_contents.append(np.ones((rows, 4), np.float32).tobytes())
    return req


def call(channel: grpc.Channel, payload: bytes, **kw) -> bytes:
    return channel.unary_unary(INFER)(payload, **kw)


def test_timeouts_and_messages_as_the_spec_writes_them() -> None:
    assert parse_timeout(b"100m") == pytest.approx(0.1)
    assert parse_timeout(b"2S") == 2.0 and parse_timeout(b"1H") == 3600.0
    assert parse_timeout(b"123456789S") is None  # over 8 digits
    assert parse_timeout(b"5x") is None and parse_timeout(b"S") is None
    assert status_message("input 'x': 100% wrong\n") == b"input 'x': 100%25 wrong%0A"


def test_a_large_message_each_way_passes_flow_control(server: Server) -> None:
    """~1 MiB in and ~0.6 MiB out: far past HTTP/2's 64 KiB default window."""
    rows = 65536
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        answer = service_pb2.ModelInferResponse.FromString(
            call(channel, infer_request(rows).SerializeToString()))
    sizes = [len(raw) for raw in answer.raw_output_contents]
    assert sum(sizes) >= rows * 8, sizes


def test_calls_in_parallel_on_one_connection_all_answer(server: Server) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        method = channel.unary_unary(INFER)
        futures = [method.future(infer_request(n % 7 + 1).SerializeToString())
                   for n in range(200)]
        answers = [service_pb2.ModelInferResponse.FromString(f.result(timeout=30))
                   for f in futures]
    assert [a.outputs[0].shape[0] for a in answers] == [n % 7 + 1 for n in range(200)]


def test_unknown_method_and_compression_are_unimplemented_saying_so(server: Server) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        with pytest.raises(grpc.RpcError) as unknown:
            channel.unary_unary("/inference.GRPCInferenceService/Nope")(b"")
        with pytest.raises(grpc.RpcError) as gzip:
            call(channel, infer_request(1).SerializeToString(),
                 compression=grpc.Compression.Gzip)
    assert unknown.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "Nope" in unknown.value.details()
    assert gzip.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "send uncompressed" in gzip.value.details()


class RawH2:
    """An HTTP/2 client on a plain socket, for what grpcio's clients never send."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.conn.initiate_connection()
        self.flush()

    def flush(self) -> None:
        self.sock.sendall(self.conn.data_to_send())

    def headers(self, content_type: str = "application/grpc", method: str = "POST",
                extra: tuple[tuple[str, str], ...] = ()) -> int:
        stream = self.conn.get_next_available_stream_id()
        self.conn.send_headers(stream, [(":method", method), (":scheme", "http"),
                                        (":authority", "x"), (":path", INFER),
                                        ("content-type", content_type), ("te", "trailers"),
                                        *extra])
        self.flush()
        return stream

    def events(self, until: type, timeout: float = 10) -> list:
        """Events until one of type `until` (or the connection's end)."""
        seen: list = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                data = self.sock.recv(65536)
            except ConnectionResetError:
                data = b""
            if not data:
                seen.append("closed")
                return seen
            seen += self.conn.receive_data(data)
            if any(isinstance(e, until) for e in seen):
                return seen
            # A server that ends the connection (GOAWAY) may reset it before our answers
            # to its earlier frames arrive; what it said is still there to read.
            with contextlib.suppress(ConnectionError):
                self.flush()
        raise AssertionError(f"no {until.__name__} in {timeout} s: {seen}")

    def close(self) -> None:
        self.sock.close()


def _header(events: list, name: bytes) -> bytes | None:
    for event in events:
        for key, value in getattr(event, "headers", None) or []:
            if key == name:
                return value
    return None


def test_a_message_that_stops_arriving_is_timed_out(server: Server) -> None:
    """Headers and 5 bytes of a 100-byte message, then nothing: DEADLINE_EXCEEDED after
    --body-timeout-s, as HTTP answers 408."""
    client = RawH2(server.grpc_port)
    stream = client.headers()
    client.conn.send_data(stream, b"\0" + struct.pack(">I", 95))
    client.flush()
    events = client.events(h2.events.StreamEnded)
    assert _header(events, b"grpc-status") == b"4", events
    assert b"did not arrive within 1 s" in (_header(events, b"grpc-message") or b"")
    client.close()


def test_the_callers_deadline_is_kept_by_the_server(server: Server) -> None:
    """grpc-timeout 200m and the message held back: DEADLINE_EXCEEDED from the server at
    the caller's deadline (before --body-timeout-s), and the next call is served."""
    client = RawH2(server.grpc_port)
    client.headers(extra=(("grpc-timeout", "200m"),))
    events = client.events(h2.events.StreamEnded)
    assert _header(events, b"grpc-status") == b"4", events
    assert _header(events, b"grpc-message") == b"deadline exceeded"  # not the body's
    client.close()
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        assert call(channel, infer_request(1).SerializeToString(), timeout=30)


def test_a_request_that_is_not_grpc_is_415_or_405(server: Server) -> None:
    client = RawH2(server.grpc_port)
    client.headers(content_type="application/json")
    events = client.events(h2.events.StreamEnded)
    assert _header(events, b":status") == b"415", events
    client.headers(method="GET")
    events = client.events(h2.events.StreamEnded)
    assert _header(events, b":status") == b"405", events
    client.close()


def rejected(server: Server, reason: str) -> float:
    """modelserve_rejected_connections_total{reason=...}, read from the HTTP port."""
    from prometheus_client.parser import text_string_to_metric_families

    text = server.request("GET", "/metrics").body.decode()
    return sum(sample.value for family in text_string_to_metric_families(text)
               for sample in family.samples
               if sample.name == "modelserve_rejected_connections_total"
               and sample.labels.get("reason") == reason)


def test_a_silent_connection_is_closed_after_the_header_timeout(server: Server) -> None:
    before = rejected(server, "header_timeout")
    client = RawH2(server.grpc_port)  # preface and settings, then no call
    events = client.events(h2.events.ConnectionTerminated, timeout=10)
    assert any(isinstance(e, h2.events.ConnectionTerminated) for e in events), events
    client.close()
    assert rejected(server, "header_timeout") >= before + 1  # counted as HTTP's are


def test_a_ping_flood_is_told_to_calm_down(server: Server) -> None:
    client = RawH2(server.grpc_port)
    for n in range(50):
        client.conn.ping(n.to_bytes(8, "big"))
    client.flush()
    events = client.events(h2.events.ConnectionTerminated)
    [end] = [e for e in events if isinstance(e, h2.events.ConnectionTerminated)]
    assert end.error_code == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM, end
    client.close()
    assert rejected(server, "ping_flood") >= 1
    # Keepalive PINGs, seconds apart, are answered as ever.
    client = RawH2(server.grpc_port)
    client.conn.ping(b"keepaliv")
    client.flush()
    assert any(isinstance(e, h2.events.PingAckReceived)
               for e in client.events(h2.events.PingAckReceived))
    client.close()


def test_bytes_that_are_not_http2_close_the_connection_and_nothing_else(
        server: Server) -> None:
    with socket.create_connection(("127.0.0.1", server.grpc_port), timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 4)
        while sock.recv(65536):
            pass  # until the server closes it
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        assert call(channel, infer_request(1).SerializeToString(), timeout=30)


def test_the_first_settings_announce_the_call_limit_and_a_large_window(server: Server) -> None:
    client = RawH2(server.grpc_port)
    client.events(h2.events.RemoteSettingsChanged)
    settings = client.conn.remote_settings
    assert settings.max_concurrent_streams == 1000  # --max-connections' default
    assert settings.initial_window_size == 4 << 20
    client.close()


def test_random_frames_never_take_the_server_down(server: Server) -> None:
    """Valid preface, then frames with random types, flags, streams and payloads."""
    rng = np.random.default_rng(14)
    for _ in range(40):
        with socket.create_connection(("127.0.0.1", server.grpc_port), timeout=10) as sock:
            sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes(9)[:3] + b"\x04\0"
                         + bytes(4))  # an empty SETTINGS frame
            for _ in range(int(rng.integers(1, 6))):
                payload = rng.bytes(int(rng.integers(0, 64)))
                header = (len(payload).to_bytes(3, "big") + bytes([rng.integers(0, 10)])
                          + bytes([rng.integers(0, 256)])
                          + int(rng.integers(0, 8)).to_bytes(4, "big"))
                try:
                    sock.sendall(header + payload)
                except OSError:
                    break
            sock.settimeout(2)
            try:
                while sock.recv(65536):
                    pass
            except (TimeoutError, OSError):
                pass
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        assert call(channel, infer_request(1).SerializeToString(), timeout=30)
