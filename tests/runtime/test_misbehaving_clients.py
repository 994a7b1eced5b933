"""Clients that hang up, stall or pile up connections, against the real server process:
the server keeps serving everyone else, and none of it shows up as a server error in
the metric the rollout analysis and the alert rules read."""

from __future__ import annotations

import json
import queue
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from .conftest import Server, server_errors, start_server, stop_server

HEADER_TIMEOUT_S = 3.0  # long enough to fill the house before any is timed out
BODY_TIMEOUT_S = 1.0
MAX_CONNECTIONS = 40


@pytest.fixture(scope="module")
def strict(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(
        tmp_path_factory.mktemp("strict"),
        tiny_model,
        "--header-timeout-s",
        str(HEADER_TIMEOUT_S),
        "--body-timeout-s",
        str(BODY_TIMEOUT_S),
        "--max-connections",
        str(MAX_CONNECTIONS),
    )
    yield srv
    assert stop_server(srv) == 0, srv.stderr_path.read_text()


def raw_connection(srv: Server, data: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    if data:
        sock.sendall(data)
    return sock


def partial_infer(body_bytes_sent: int, length: int = 100) -> bytes:
    head = (
        f"POST /v2/models/tiny/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()
    return head + b"{" * body_bytes_sent


def read_until_closed(sock: socket.socket, within_s: float = 15.0) -> bytes:
    """Everything the server sends until it closes the connection (deadline, not timing)."""
    sock.settimeout(within_s)
    chunks = []
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except (ConnectionResetError, TimeoutError):
        pass
    finally:
        sock.close()
    return b"".join(chunks)


def metrics(srv: Server) -> str:
    return srv.request("GET", "/metrics").body.decode()


def counter(text: str, prefix: str) -> float:
    lines = [line for line in text.splitlines() if line.startswith(prefix)]
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines)


def wait_until_running(srv: Server) -> None:
    """Until the server is handling one request: a request dropped before its handler
    starts is never seen, so never counted."""
    deadline = time.monotonic() + 30
    while 'modelserve_inflight_requests{model="tiny"} 1.0' not in metrics(srv):
        assert time.monotonic() < deadline, metrics(srv)
        time.sleep(0.01)


def audit_lines(srv: Server, status: int, count: int) -> list[dict]:
    """The audit records with `status`, once there are `count` of them (the log is
    flushed every 50 ms)."""
    deadline = time.monotonic() + 30
    while True:
        lines = srv.stdout_path.read_text().splitlines()
        records = [r for r in map(json.loads, filter(None, lines)) if r["status"] == status]
        if len(records) >= count or time.monotonic() > deadline:
            return records
        time.sleep(0.05)


def test_client_hanging_up_mid_body_is_499_not_a_server_error(strict: Server) -> None:
    before = counter(metrics(strict), 'modelserve_requests_total{model="tiny",status="499"')
    sock = raw_connection(strict, partial_infer(5))
    wait_until_running(strict)  # the handler is reading the body when the client goes
    sock.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        text = metrics(strict)
        if counter(text, 'modelserve_requests_total{model="tiny",status="499"') > before:
            break
        time.sleep(0.05)
    assert counter(text, 'modelserve_requests_total{model="tiny",status="499"') == before + 1
    assert server_errors(text) == 0
    stderr = strict.stderr_path.read_text()
    assert "Traceback" not in stderr and "inference failed" not in stderr
    aborted = audit_lines(strict, 499, 1)
    # bytes_in is what arrived (5), not the Content-Length claimed (100).
    assert aborted and aborted[-1]["bytes_in"] == 5 and aborted[-1]["protocol"] == "http"


def test_slow_clients_are_cut_off_and_others_still_served(strict: Server) -> None:
    slow_headers = [raw_connection(strict, b"POST /v2/models/tiny/in") for _ in range(12)]
    slow_bodies = [raw_connection(strict, partial_infer(5)) for _ in range(12)]
    silent = [raw_connection(strict, b"") for _ in range(6)]
    # 30 slow connections are open; normal requests are answered meanwhile.
    for batch in (1, 3, 8):
        assert strict.infer_json(np.ones((batch, 4), np.float32)).status == 200
    # Each slow connection gets its 408 and is closed: headers and bodies alike.
    for sock in slow_headers + silent:
        reply = read_until_closed(sock)
        assert reply.startswith(b"HTTP/1.1 408"), reply[:100]
        assert b"--header-timeout-s" in reply
    for sock in slow_bodies:
        reply = read_until_closed(sock)
        assert reply.startswith(b"HTTP/1.1 408"), reply[:100]
        assert b"--body-timeout-s" in reply and b"5 of 100 bytes arrived" in reply
    text = metrics(strict)
    assert counter(text, 'modelserve_rejected_connections_total{reason="header_timeout"}') >= 18
    assert counter(text, 'modelserve_requests_total{model="tiny",status="408"') >= 12
    assert server_errors(text) == 0
    assert strict.infer_json(np.ones((2, 4), np.float32)).status == 200


def test_connections_over_the_limit_get_503_and_the_rest_are_served(strict: Server) -> None:
    # Fill the server to its limit with connections that sent nothing yet...
    held = [raw_connection(strict, b"") for _ in range(MAX_CONNECTIONS)]
    time.sleep(0.3)  # let the server accept them all
    # ...then one more is turned away at once with a 503, not queued.
    reply = read_until_closed(raw_connection(strict, b""))
    assert reply.startswith(b"HTTP/1.1 503") and b"--max-connections" in reply, reply[:200]
    for sock in held:
        sock.close()
    # Once they are gone, normal requests are served again.
    deadline = time.monotonic() + 10
    while True:
        try:
            if strict.infer_json(np.ones((1, 4), np.float32)).status == 200:
                break
        except ConnectionError:
            pass
        assert time.monotonic() < deadline, "server did not recover from a full house"
        time.sleep(0.05)
    text = metrics(strict)
    assert counter(text, 'modelserve_rejected_connections_total{reason="connection_limit"}') >= 1
    assert server_errors(text) == 0


def test_unmatched_route_answers_json(strict: Server) -> None:
    for method, path, status in [
        ("POST", "/v2/models/../mlp/infer", 404),
        ("GET", "/v2/nothing/here", 404),
        ("GET", "/v2/health/nothing", 404),
        ("DELETE", "/v2/models/tiny/infer", 405),
    ]:
        resp = strict.request(method, path, b"{}" if method == "POST" else None)
        assert resp.status == status, (path, resp.body)
        assert resp.headers["Content-Type"].startswith("application/json"), path
        assert resp.json()["error"], path


def test_error_bodies_are_bounded(strict: Server) -> None:
    inputs = [
        {"name": f"input-{i:05d}", "datatype": "FP32", "shape": [1, 4], "data": [0, 0, 0, 0]}
        for i in range(10_000)
    ]
    body = json.dumps({"inputs": inputs}).encode()
    conn = strict.connection()
    conn.request("POST", "/v2/models/tiny/infer", body=body)
    resp = conn.getresponse()
    payload = resp.read()
    conn.close()
    assert resp.status == 400 and len(payload) < 2048, len(payload)
    assert "and 9990 more" in json.loads(payload)["error"]
    huge_name = {"inputs": [{"name": "n" * 50_000, "datatype": "FP32", "shape": [1, 4],
                             "data": [0, 0, 0, 0]}]}
    resp = strict.request("POST", "/v2/models/tiny/infer", json.dumps(huge_name).encode())
    assert resp.status == 400 and len(resp.body) < 2048


def test_negative_header_length_says_so(strict: Server) -> None:
    resp = strict.request(
        "POST", "/v2/models/tiny/infer", b'{"inputs": []}',
        {"Inference-Header-Content-Length": "-5"},
    )
    assert resp.status == 400
    assert resp.json()["error"] == "Inference-Header-Content-Length must be a length >= 0, got -5"


def build_slow_model(path: Path, width: int = 2048, layers: int = 400) -> None:
    """x [batch, width] through `layers` MatMuls with one identity matrix: a model that
    reads 6 GB of weights per row (tenths of a second on one CPU thread), so a client
    can give up while its batch runs."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, prev = [], "x"
    for i in range(layers):
        out = "y" if i == layers - 1 else f"h{i}"
        nodes.append(helper.make_node("MatMul", [prev, "W"], [out]))
        prev = out
    graph = helper.make_graph(
        nodes,
        "slow",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", width])],
        [numpy_helper.from_array(np.eye(width, dtype=np.float32), "W")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


@pytest.fixture(scope="module")
def slow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("slow")
    build_slow_model(tmp / "slow.onnx")
    srv = start_server(tmp, tmp / "slow.onnx", "--max-batch-size", "1")
    yield srv
    assert stop_server(srv) == 0, srv.stderr_path.read_text()


def test_clients_giving_up_while_their_batch_runs_are_499(slow: Server) -> None:
    grpcclient = pytest.importorskip("tritonclient.grpc")
    from tritonclient.utils import InferenceServerException

    x = np.ones((1, 2048), np.float32)
    # gRPC: the client cancels while the model runs (as a passing deadline does; a short
    # deadline could also pass before the call reaches the server, which never counts it).
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{slow.grpc_port}")
    inp = grpcclient.InferInput("x", [1, 2048], "FP32")
    inp.set_data_from_numpy(x)
    errors: queue.Queue = queue.Queue()
    call = client.async_infer("tiny", [inp], callback=lambda result, error: errors.put(error))
    wait_until_running(slow)
    call.cancel()
    error = errors.get(timeout=30)
    assert isinstance(error, InferenceServerException) and "CANCELLED" in str(error.status())
    client.close()
    # HTTP: the whole request is sent, then the client hangs up before the answer.
    body = json.dumps(
        {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 2048], "data": [1] * 2048}]}
    ).encode()
    head = (
        f"POST /v2/models/tiny/infer HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    sock = raw_connection(slow, head + body)
    wait_until_running(slow)
    sock.close()
    prefix = 'modelserve_requests_total{model="tiny",status="499"'
    deadline = time.monotonic() + 30
    while counter(metrics(slow), prefix) < 2:
        assert time.monotonic() < deadline, metrics(slow)
        time.sleep(0.05)
    text = metrics(slow)
    assert counter(text, prefix) == 2 and server_errors(text) == 0
    stderr = slow.stderr_path.read_text()
    assert "Traceback" not in stderr and "inference failed" not in stderr
    protocols = sorted(r["protocol"] for r in audit_lines(slow, 499, 2))
    assert protocols == ["grpc", "http"]
