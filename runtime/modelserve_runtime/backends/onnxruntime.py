"""ONNX Runtime backend: the CPU path CI exercises (CUDA provider used when present)."""

from __future__ import annotations

import os

import numpy as np

from . import Backend, Chunks, TensorSpec, concat, log

# ONNX Runtime's type strings -> Open Inference Protocol datatypes.
_ORT_TYPES = {
    "tensor(bool)": "BOOL",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(float16)": "FP16",
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(string)": "BYTES",
}


def _spec(arg: object) -> TensorSpec:
    name = arg.name  # type: ignore[attr-defined]
    datatype = _ORT_TYPES.get(arg.type)  # type: ignore[attr-defined]
    if datatype is None:
        raise ValueError(f"tensor {name!r} has unsupported type {arg.type}")  # type: ignore[attr-defined]
    # Symbolic dims ("batch", None) are dynamic.
    shape = tuple(d if isinstance(d, int) and d >= 0 else -1 for d in arg.shape)  # type: ignore[attr-defined]
    return TensorSpec(name, datatype, shape)


class OnnxRuntimeBackend(Backend):
    platform = "onnxruntime_onnx"

    def load(self) -> None:
        import onnxruntime as ort

        if self.settings.model_format != "onnx":
            raise ValueError(
                f"backend onnxruntime serves format onnx, not {self.settings.model_format!r}"
            )
        if self.settings.precision != "fp32":
            # Reduced precision on ORT comes from the model file itself (an fp16/QDQ export).
            log.warning(
                "onnxruntime runs the model as exported; precision %s is ignored",
                self.settings.precision,
            )
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        threads = int(os.environ.get("MODELSERVE_ORT_THREADS", "0"))
        if threads:
            options.intra_op_num_threads = threads
        providers = ["CPUExecutionProvider"]
        if self.settings.device.startswith("cuda") and (
            "CUDAExecutionProvider" in ort.get_available_providers()
        ):
            providers.insert(0, "CUDAExecutionProvider")
        self.session = ort.InferenceSession(
            self.settings.model_path, sess_options=options, providers=providers
        )
        self.inputs = [_spec(a) for a in self.session.get_inputs()]
        self.outputs = [_spec(a) for a in self.session.get_outputs()]
        self._output_names = [o.name for o in self.outputs]
        # InferenceSession.run is thread-safe; on CPU one batch at a time uses every core.
        self.instances = self.settings.instances or 1

    def infer(self, batch: Chunks, rows: int) -> dict[str, np.ndarray]:
        feeds = {name: concat(chunks) for name, chunks in batch.items()}
        results = self.session.run(self._output_names, feeds)
        return dict(zip(self._output_names, results, strict=True))
