"""A model download you can watch: bytes done / total in the ModelDeployment's status and
in `modelserve status`, read by the operator from the pod's own progress endpoint.

The model server here holds the download half-way until the test has seen the progress
(a gate, not a delay), so the test waits on what it asserts and never on a timer.
"""

from __future__ import annotations

import hashlib
import http.server
import pathlib
import threading

import numpy as np
import pytest

from e2e.kube import eventually
from e2e.metrics_stack import free_port, host_address
from e2e.models import _linear_graph, _save
from e2e.objects import API, deployment, modelserve, status, wait_status

FAST_PROBES = {"startup": {"periodSeconds": 1}, "readiness": {"periodSeconds": 1}}
PADDING_MIB = 32  # an unused initializer: a model worth watching download


class GatedModelServer:
    """Serves one model over HTTP; each download stops at half its bytes until `release`."""

    def __init__(self, path: pathlib.Path):
        self.body = path.read_bytes()
        self.sha256 = hashlib.sha256(self.body).hexdigest()
        self.gate = threading.Event()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                half = len(server.body) // 2
                self.send_response(200)
                self.send_header("Content-Length", str(len(server.body)))
                self.end_headers()
                self.wfile.write(server.body[:half])
                self.wfile.flush()
                server.gate.wait(timeout=300)
                self.wfile.write(server.body[half:])

            def log_message(self, *_args) -> None:
                pass

        self.port = free_port()
        self.http = http.server.ThreadingHTTPServer(("0.0.0.0", self.port), Handler)
        self.http.daemon_threads = True
        threading.Thread(target=self.http.serve_forever, daemon=True).start()
        self.url = f"http://{host_address()}:{self.port}/large.onnx"

    def release(self) -> None:
        self.gate.set()

    def stop(self) -> None:
        self.gate.set()
        self.http.shutdown()


@pytest.fixture(scope="module")
def gated(tmp_path_factory) -> GatedModelServer:
    from onnx import numpy_helper

    padding = numpy_helper.from_array(
        np.zeros(PADDING_MIB << 18, dtype=np.float32), "padding")  # 4 bytes each
    path = tmp_path_factory.mktemp("large-model") / "large.onnx"
    _save(_linear_graph(1.0, extra_init=[padding]), path)
    server = GatedModelServer(path)
    yield server
    server.stop()


def test_a_slow_download_shows_bytes_in_status_and_modelserve_status(kubectl, namespace,
                                                                      operator, gated):
    kubectl.apply([
        {"apiVersion": API, "kind": "ModelVersion", "metadata": {"name": "large"},
         "spec": {"model": {"uri": gated.url, "format": "onnx", "sha256": gated.sha256},
                  "runtime": {"backend": "onnxruntime", "maxBatchSize": 8},
                  "resources": {"gpu": {"count": 0}, "cpu": "50m", "memory": "400Mi"}}},
        deployment("m", "large", replicas=1, probes=FAST_PROBES)], namespace)
    total = len(gated.body)

    def half_way():
        shown = status(kubectl, namespace, "m").get("modelProgress") or {}
        # Within a read chunk (1 MiB) and a report step (1%) of where the server stopped.
        return total * 0.45 <= shown.get("done", 0) <= total // 2 and shown
    shown = eventually(half_way, timeout=120, what="status.modelProgress at half the bytes")
    assert shown["phase"] == "downloading" and shown["total"] == total, shown
    assert shown["unit"] == "bytes" and shown["pods"] == 1, shown
    assert f"of {total / (1 << 20):.1f} MiB (" in shown["message"], shown
    st = status(kubectl, namespace, "m")
    progressing = next(c for c in st["conditions"] if c["type"] == "Progressing")
    assert shown["message"] in progressing["message"], progressing

    screen = modelserve(kubectl, "status", "m", "-n", namespace).stdout
    print(f"\n{screen}")
    [line] = [x for x in screen.splitlines() if x.startswith("Progress:")]
    assert "downloading" in line and f"of {total / (1 << 20):.1f} MiB" in line, screen

    gated.release()
    st = wait_status(kubectl, namespace, "m", phase="Ready", timeout=180)
    assert "modelProgress" not in st, st
