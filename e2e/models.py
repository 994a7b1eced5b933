"""Real ONNX models for the real runtime pods, served over HTTP from this host.

The fetch init container downloads them (and checks sha256) from a plain HTTP server the
tests start on this host's address, which pods on the real node reach through the pod
network's gateway. Every model takes x: FP32 [batch, 4]; what it answers tells the
versions apart:

- `good-v1`, `good-v2`, `good-v3`: y = x @ W_v + b and total = sum(x), W differing per
  version, so a response says which version computed it.
- `broken`: bytes that are not ONNX. The fetch succeeds (right digest); the runtime fails
  to load it and exits, so the pod never turns Ready.
- `errors-under-load`: loads, warms up and passes its probes, then fails every request
  whose x[:, 0] lies outside [-10, 9] (an out-of-range Gather): onnxruntime raises, the
  runtime answers 500. The traffic generator sends x[:, 0] = 50, which the good versions
  take like any other number. Warm-up's random normal data never leaves that range.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import pathlib
import threading

import numpy as np

from e2e.metrics_stack import free_port, host_address

# What the traffic generator sends: the first feature trips `errors-under-load`.
REQUEST_X = [50.0, 1.0, 2.0, 3.0]
GOOD_VERSIONS = {"good-v1": 1.0, "good-v2": 2.0, "good-v3": 3.0}
B = np.array([0.5, -1.0, 0.0], dtype=np.float32)


def weights(scale: float) -> np.ndarray:
    return (np.arange(12, dtype=np.float32).reshape(4, 3) / 10 * scale).astype(np.float32)


def expected_y(model: str, x: list[float] = REQUEST_X) -> list[float]:
    """What a good version answers for `x` (float32 arithmetic, as the runtime does)."""
    row = np.array([x], dtype=np.float32)
    return (row @ weights(GOOD_VERSIONS[model]) + B)[0].tolist()


def _linear_graph(scale: float, extra_nodes=(), extra_outputs=(), extra_init=()):
    from onnx import TensorProto, helper, numpy_helper

    axes = numpy_helper.from_array(np.array([1], dtype=np.int64), "axes")
    return helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["xw"]),
         helper.make_node("Add", ["xw", "B"], ["y"]),
         helper.make_node("ReduceSum", ["x", "axes"], ["total"], keepdims=0),
         *extra_nodes],
        "modelserve-e2e",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3]),
         helper.make_tensor_value_info("total", TensorProto.FLOAT, ["batch"]),
         *extra_outputs],
        [numpy_helper.from_array(weights(scale), "W"), numpy_helper.from_array(B, "B"), axes,
         *extra_init],
    )


def _save(graph, path: pathlib.Path) -> None:
    import onnx
    from onnx import helper

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def build_good(path: pathlib.Path, scale: float) -> None:
    _save(_linear_graph(scale), path)


def build_errors_under_load(path: pathlib.Path) -> None:
    from onnx import TensorProto, helper, numpy_helper

    table = numpy_helper.from_array(np.arange(10, dtype=np.float32), "table")
    first = numpy_helper.from_array(np.array([0], dtype=np.int64), "first")
    nodes = [
        helper.make_node("Gather", ["x", "first"], ["x0"], axis=1),  # [batch, 1]
        helper.make_node("Cast", ["x0"], ["index"], to=TensorProto.INT64),
        helper.make_node("Gather", ["table", "index"], ["lookup"], axis=0),
    ]
    outputs = [helper.make_tensor_value_info("lookup", TensorProto.FLOAT, ["batch", 1])]
    _save(_linear_graph(1.0, nodes, outputs, [table, first]), path)


def sha256(path: pathlib.Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class ModelStore:
    """The models above as files, served by a plain HTTP server on this host's address."""

    def __init__(self, work: pathlib.Path):
        self.dir = work
        for name, scale in GOOD_VERSIONS.items():
            build_good(work / f"{name}.onnx", scale)
        build_errors_under_load(work / "errors-under-load.onnx")
        (work / "broken.onnx").write_bytes(b"this is not an ONNX model\n" * 64)
        self.host = host_address()
        self.port = free_port()
        handler = functools.partial(_QuietHandler, directory=str(work))
        self.server = http.server.ThreadingHTTPServer(("0.0.0.0", self.port), handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, model: str) -> str:
        return f"http://{self.host}:{self.port}/{model}.onnx"

    def sha256(self, model: str) -> str:
        return sha256(self.dir / f"{model}.onnx")

    def stop(self) -> None:
        self.server.shutdown()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *_args) -> None:
        pass
