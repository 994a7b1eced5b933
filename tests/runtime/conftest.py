"""Fixtures for runtime integration tests: a tiny ONNX model built here (no downloads)
and the real `modelserve-runtime` process talking real HTTP."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

W = (np.arange(12, dtype=np.float32).reshape(4, 3) / 10).astype(np.float32)
B = np.array([0.5, -1.0, 0.0], dtype=np.float32)


def expected(x: np.ndarray) -> dict[str, np.ndarray]:
    return {"y": x @ W + B, "total": x.sum(axis=1)}


def build_tiny_model(path: Path) -> None:
    """y = x @ W + b (FP32 [batch, 3]) and total = sum(x, axis=1) (FP32 [batch])."""
    from onnx import TensorProto, helper, numpy_helper

    axes = numpy_helper.from_array(np.array([1], dtype=np.int64), "axes")
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "W"], ["xw"]),
            helper.make_node("Add", ["xw", "B"], ["y"]),
            helper.make_node("ReduceSum", ["x", "axes"], ["total"], keepdims=0),
        ],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3]),
            helper.make_tensor_value_info("total", TensorProto.FLOAT, ["batch"]),
        ],
        [numpy_helper.from_array(W, "W"), numpy_helper.from_array(B, "B"), axes],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # readable by older onnxruntime builds too
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("model") / "tiny.onnx"
    build_tiny_model(path)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict:
        return json.loads(self.body)


@dataclass
class Server:
    proc: subprocess.Popen
    port: int
    stdout_path: Path
    stderr_path: Path
    tls: bool = False
    headers: dict[str, str] = field(default_factory=dict)
    grpc_port: int = 0

    def connection(self) -> http.client.HTTPConnection:
        if self.tls:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            return http.client.HTTPSConnection("127.0.0.1", self.port, timeout=30, context=ctx)
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        conn = self.connection()
        try:
            conn.request(method, path, body=body, headers={**self.headers, **(headers or {})})
            resp = conn.getresponse()
            return Response(resp.status, dict(resp.getheaders()), resp.read())
        finally:
            conn.close()

    def infer_json(self, x: np.ndarray, model: str = "tiny", **extra: object) -> Response:
        doc = {
            "inputs": [
                {
                    "name": "x",
                    "datatype": "FP32",
                    "shape": list(x.shape),
                    "data": x.reshape(-1).tolist(),
                }
            ],
            **extra,
        }
        return self.request("POST", f"/v2/models/{model}/infer", json.dumps(doc).encode())

    def alive(self) -> bool:
        return self.proc.poll() is None and self.request("GET", "/v2/health/live").status == 200


def start_server(
    tmp: Path, model: Path, *extra: str, tls: bool = False, wait_ready: bool = True
) -> Server:
    port, grpc_port = free_port(), free_port()
    stdout_path, stderr_path = tmp / f"stdout-{port}.log", tmp / f"stderr-{port}.log"
    env = {
        **os.environ,
        "MODELSERVE_MODEL_NAME": "tiny",
        "MODELSERVE_MODEL_PATH": str(model),
        "MODELSERVE_ORT_THREADS": "1",
    }
    cmd = [
        sys.executable,
        "-m",
        "modelserve_runtime.server",
        "--port",
        str(port),
        "--host",
        "127.0.0.1",
        "--grpc-port",
        str(grpc_port),
        "--max-batch-size",
        "8",
        *extra,
    ]
    proc = subprocess.Popen(
        cmd, env=env, stdout=stdout_path.open("wb"), stderr=stderr_path.open("wb")
    )
    server = Server(proc, port, stdout_path, stderr_path, tls=tls, grpc_port=grpc_port)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited {proc.returncode}: {stderr_path.read_text()}")
        try:
            if server.request("GET", "/v2/health/ready").status == 200 or not wait_ready:
                return server
        except OSError:
            pass
        time.sleep(0.1)
    stop_server(server)
    raise AssertionError(f"server not ready in 60 s: {stderr_path.read_text()}")


def stop_server(server: Server) -> int:
    if server.proc.poll() is None:
        server.proc.send_signal(signal.SIGTERM)
        try:
            server.proc.wait(30)
        except subprocess.TimeoutExpired:
            server.proc.kill()
            server.proc.wait()
    return server.proc.returncode


@pytest.fixture(scope="module")
def server(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(tmp_path_factory.mktemp("server"), tiny_model, "--max-body-bytes", "65536")
    yield srv
    assert stop_server(srv) == 0, srv.stderr_path.read_text()
    assert "Traceback" not in srv.stderr_path.read_text()


def server_errors(metrics_text: str) -> float:
    """Requests counted with a 5xx status (the series exist at 0 from the start)."""
    from prometheus_client.parser import text_string_to_metric_families

    return sum(sample.value
               for family in text_string_to_metric_families(metrics_text)
               if family.name == "modelserve_requests"
               for sample in family.samples
               if sample.name == "modelserve_requests_total"
               and sample.labels.get("status", "").startswith("5"))
