"""Backends: one small interface over ONNX Runtime, PyTorch and TensorRT.

A backend loads a model, describes its tensors, warms up, and runs one batch. It is
called from worker threads (never the event loop) and must allow `instances` calls at
once; the batcher never exceeds that.
"""

from __future__ import annotations

import abc
import json
import logging
from dataclasses import dataclass

import numpy as np

from ..config import Settings
from ..errors import BadRequest

log = logging.getLogger("modelserve.backend")


@dataclass(frozen=True)
class TensorSpec:
    name: str
    datatype: str  # Open Inference Protocol datatype, e.g. FP32
    shape: tuple[int, ...]  # -1 marks a dynamic dimension; dim 0 is the batch

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


# A batch arrives as the requests' chunks, per input, so a backend can concatenate them
# straight into its own (pinned) staging memory instead of paying for a second copy.
Chunks = dict[str, list[np.ndarray]]


class Backend(abc.ABC):
    platform: str = ""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.inputs: list[TensorSpec] = []
        self.outputs: list[TensorSpec] = []
        self.instances = 1

    @abc.abstractmethod
    def load(self) -> None:
        """Load (or build) the model; fill `inputs` and `outputs`."""

    @abc.abstractmethod
    def infer(self, batch: Chunks, rows: int) -> dict[str, np.ndarray]:
        """Run one batch of `rows` rows; return every output with `rows` rows."""

    @property
    def batchable(self) -> bool:
        # Batching concatenates along dim 0, which must then be dynamic for every tensor.
        return all(spec.shape and spec.shape[0] == -1 for spec in self.inputs)

    def warmup(self) -> None:
        """Run every batch size the batcher may form, so the first caller pays nothing."""
        sizes = batch_buckets(self.settings.max_batch_size) if self.batchable else [0]
        examples = ExampleRows(max(sizes))
        for rows in sizes:
            batch = {spec.name: [examples.get(spec, rows)] for spec in self.inputs}
            actual = rows or example_tensor(self.inputs[0], 0).shape[0]
            self.infer(batch, actual)

    def close(self) -> None:  # noqa: B027 - optional hook
        pass


def batch_buckets(max_batch_size: int) -> list[int]:
    """The batch sizes a backend prepares (one CUDA graph each) and warms up.

    A batch runs in the smallest bucket that holds it, padded. Powers of two up to a
    step of an eighth of the maximum (at least 16), then steps of that size: with powers
    of two alone a batch of 65 rows ran the 128-row graph, twice the work it needed
    (hack/bench-runtime saw served batches average 65 rows at 61% of raw throughput).
    Now padding stays under one step.
    """
    step = max(16, -(-max_batch_size // 8))
    sizes = [1]
    while sizes[-1] * 2 <= min(step, max_batch_size):
        sizes.append(sizes[-1] * 2)
    while sizes[-1] + step < max_batch_size:
        sizes.append(sizes[-1] + step)
    if sizes[-1] != max_batch_size:
        sizes.append(max_batch_size)
    return sizes


# Warm-up data repeats this many random rows: drawing ResNet-50's 128 rows afresh took
# ~0.4 s, twice per start (py-spy of a warm start, hack/probe-warm-start; 0.85 s of ~20).
DRAWN_ROWS = 8


def example_tensor(spec: TensorSpec, rows: int) -> np.ndarray:
    """Random (never zero: zeros hide bugs and time differently) data for warm-up: up to
    DRAWN_ROWS rows drawn, repeated to `rows`."""
    from ..codec import DATATYPES

    shape = [rows if (i == 0 and rows) else (d if d > 0 else 1) for i, d in enumerate(spec.shape)]
    dtype = DATATYPES[spec.datatype]
    if dtype.kind == "O":
        return np.full(shape, b"x", dtype=object)
    drawn = [min(shape[0], DRAWN_ROWS), *shape[1:]] if shape else shape
    rng = np.random.default_rng(0)
    if dtype.kind == "f":
        block = rng.standard_normal(drawn, dtype=np.float32).astype(dtype)
    else:  # ints and bools: 0s and 1s
        block = rng.integers(0, 2, size=drawn, dtype=np.uint8).astype(dtype)
    if not shape or shape[0] == drawn[0]:
        return block
    repeats = -(-shape[0] // drawn[0])
    return np.ascontiguousarray(np.tile(block, (repeats, *[1] * (len(shape) - 1)))[: shape[0]])


class ExampleRows:
    """Warm-up data drawn once per input, at the largest batch, and sliced for the
    smaller ones. Drawing it afresh for every bucket took ~2 s per instance for
    ResNet-50 (about 590 rows of 150,528 values over the buckets), a second or two of
    every start per instance and again for the end-to-end warm-up."""

    def __init__(self, max_rows: int) -> None:
        self.max_rows = max(max_rows, 1)
        self._arrays: dict[TensorSpec, np.ndarray] = {}

    def get(self, spec: TensorSpec, rows: int) -> np.ndarray:
        """`rows` rows of `spec` (a read-only view: callers copy, never write)."""
        if rows == 0:
            return example_tensor(spec, 0)
        have = self._arrays.get(spec)
        if have is None or have.shape[0] < rows:
            have = example_tensor(spec, max(rows, self.max_rows))
            have.flags.writeable = False
            self._arrays[spec] = have
        return have[:rows]


def concat(chunks: list[np.ndarray], out: np.ndarray | None = None) -> np.ndarray:
    if len(chunks) == 1 and out is None:
        return chunks[0]
    return np.concatenate(chunks, axis=0, out=out)


def parse_specs(raw: str | None, what: str) -> list[TensorSpec] | None:
    if not raw:
        return None
    from ..codec import DATATYPES

    try:
        items = json.loads(raw)
        specs = [
            TensorSpec(str(i["name"]), str(i.get("datatype", "FP32")), tuple(i.get("shape", ())))
            for i in items
        ]
    except (ValueError, TypeError, KeyError) as exc:
        raise ValueError(
            f"--{what} must be a JSON list of {{name, datatype, shape}}: {exc}"
        ) from None
    for spec in specs:
        if spec.datatype not in DATATYPES:
            raise ValueError(f"--{what}: tensor {spec.name!r} has unknown datatype {spec.datatype}")
    return specs


def create_backend(settings: Settings) -> Backend:
    """Import only the backend asked for: torch and tensorrt are heavy and optional."""
    if settings.backend == "onnxruntime":
        from .onnxruntime import OnnxRuntimeBackend

        return OnnxRuntimeBackend(settings)
    if settings.backend == "torch":
        from .torch import TorchBackend

        return TorchBackend(settings)
    if settings.backend == "tensorrt":
        from .tensorrt import TensorRTBackend

        return TensorRTBackend(settings)
    raise BadRequest(f"unknown backend {settings.backend!r}")
