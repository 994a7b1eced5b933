"""TensorRT backend, written against the TensorRT 10 Python API.

format onnx: the ONNX model is built into an engine (FP16/INT8 flags, one optimisation
profile covering batch 1..max_batch_size) and the serialized engine is cached on a
volume, keyed by model sha256 + GPU compute capability + TensorRT version + precision +
max batch size, so a restart or a second replica on the node loads instead of building.
format tensorrt-plan: the file already is a serialized engine.

Device memory and streams come from torch (present in our image) to avoid a second CUDA
binding. NOTE: not exercised in CI or in this repo's benchmark; tests run only where
`tensorrt` imports.
"""

from __future__ import annotations

import os
import queue
import tempfile
from typing import Any

import numpy as np

from ..fetch import sha256_file
from . import Backend, Chunks, TensorSpec, concat, log


def engine_cache_key(
    model_sha256: str,
    compute_capability: tuple[int, int],
    trt_version: str,
    precision: str,
    max_batch_size: int,
) -> str:
    major, minor = compute_capability
    return f"{model_sha256}-sm{major}{minor}-trt{trt_version}-{precision}-b{max_batch_size}.plan"


class TensorRTBackend(Backend):
    platform = "tensorrt_plan"

    def load(self) -> None:
        import tensorrt as trt
        import torch

        self.trt, self.torch = trt, torch
        s = self.settings
        if not torch.cuda.is_available():
            raise RuntimeError("backend tensorrt needs a CUDA GPU")
        self.device = torch.device(s.device if s.device.startswith("cuda") else "cuda")
        self.logger = trt.Logger(trt.Logger.WARNING)
        if s.model_format == "tensorrt-plan":
            with open(s.model_path, "rb") as f:
                plan = f.read()
        elif s.model_format == "onnx":
            plan = self._cached_or_built_plan()
        else:
            raise ValueError(f"backend tensorrt serves onnx or tensorrt-plan, not {s.model_format}")
        runtime = trt.Runtime(self.logger)
        self.engine = runtime.deserialize_cuda_engine(plan)
        if self.engine is None:
            raise RuntimeError(f"TensorRT could not deserialize the engine for {s.model_path}")
        from ..codec import datatype_of

        self.inputs, self.outputs = [], []
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(name)))
            spec = TensorSpec(name, datatype_of(dtype), tuple(self.engine.get_tensor_shape(name)))
            if self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                self.inputs.append(spec)
            else:
                self.outputs.append(spec)
        self.instances = s.instances or 2
        self._contexts: queue.Queue[tuple[Any, Any]] = queue.Queue()
        for _ in range(self.instances):
            self._contexts.put(
                (self.engine.create_execution_context(), torch.cuda.Stream(self.device))
            )

    def _cached_or_built_plan(self) -> bytes:
        trt, torch, s = self.trt, self.torch, self.settings
        key = engine_cache_key(
            sha256_file(s.model_path),
            torch.cuda.get_device_capability(self.device),
            trt.__version__,
            s.precision,
            s.max_batch_size,
        )
        cache_dir = s.engine_cache_dir
        path = os.path.join(cache_dir, key) if cache_dir else None
        if path and os.path.exists(path):
            log.info("loading cached TensorRT engine %s", path)
            with open(path, "rb") as f:
                return f.read()
        log.info("building TensorRT engine (%s); this can take minutes", key)
        plan = self._build()
        if path:
            os.makedirs(cache_dir, exist_ok=True)  # type: ignore[arg-type]
            # Write-then-rename: a replica building the same key at once never reads
            # a half-written engine.
            fd, tmp = tempfile.mkstemp(dir=cache_dir, suffix=".tmp")
            with os.fdopen(fd, "wb") as f:
                f.write(plan)
            os.replace(tmp, path)
        return plan

    def _build(self) -> bytes:
        trt, s = self.trt, self.settings
        builder = trt.Builder(self.logger)
        network = builder.create_network(0)  # explicit batch is the only mode in TRT 10
        parser = trt.OnnxParser(network, self.logger)
        with open(s.model_path, "rb") as f:
            if not parser.parse(f.read()):
                errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
                raise ValueError(f"TensorRT cannot parse {s.model_path}: {errors}")
        config = builder.create_builder_config()
        if s.precision == "fp16":
            config.set_flag(trt.BuilderFlag.FP16)
        elif s.precision == "bf16":
            config.set_flag(trt.BuilderFlag.BF16)
        elif s.precision == "int8":
            # INT8 expects a Q/DQ-quantized ONNX export; FP16 covers unquantized layers.
            config.set_flag(trt.BuilderFlag.INT8)
            config.set_flag(trt.BuilderFlag.FP16)
        profile = builder.create_optimization_profile()
        for i in range(network.num_inputs):
            tensor = network.get_input(i)
            shape = tuple(tensor.shape)
            if shape and shape[0] == -1:
                rest = tuple(d if d > 0 else 1 for d in shape[1:])
                opt = max(1, s.max_batch_size // 2)
                profile.set_shape(tensor.name, (1, *rest), (opt, *rest), (s.max_batch_size, *rest))
        config.add_optimization_profile(profile)
        plan = builder.build_serialized_network(network, config)
        if plan is None:
            raise RuntimeError("TensorRT engine build failed; see the log above")
        return bytes(plan)

    def infer(self, batch: Chunks, rows: int) -> dict[str, np.ndarray]:
        torch = self.torch
        context, stream = self._contexts.get()
        try:
            keep = []
            with torch.cuda.stream(stream):
                for spec in self.inputs:
                    host = np.ascontiguousarray(concat(batch[spec.name]))
                    dev = torch.from_numpy(host).to(self.device, non_blocking=False)
                    keep.append(dev)
                    context.set_input_shape(spec.name, tuple(dev.shape))
                    context.set_tensor_address(spec.name, dev.data_ptr())
                outs = {}
                for spec in self.outputs:
                    shape = tuple(context.get_tensor_shape(spec.name))
                    np_dtype = np.dtype(self.trt.nptype(self.engine.get_tensor_dtype(spec.name)))
                    dev = torch.empty(
                        shape,
                        dtype=torch.from_numpy(np.empty(0, np_dtype)).dtype,
                        device=self.device,
                    )
                    context.set_tensor_address(spec.name, dev.data_ptr())
                    outs[spec.name] = dev
                if not context.execute_async_v3(stream.cuda_stream):
                    raise RuntimeError("TensorRT execution failed")
                result = {name: dev.cpu().numpy() for name, dev in outs.items()}
            return result
        finally:
            self._contexts.put((context, stream))
