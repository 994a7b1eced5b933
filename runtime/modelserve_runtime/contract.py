"""The operator↔runtime contract: what the operator renders into a pod and the runtime
reads back. Both sides import it (operator/modelserve_operator/render, config.py here);
tests/render/test_runtime_contract.py feeds every golden render through the runtime's
own settings parser, so the two cannot drift. Dependency-free: the operator imports it
without the runtime's libraries.
"""

from __future__ import annotations

# Model artifacts, backends and numeric precisions (ModelVersion spec.model.format,
# spec.runtime.backend, spec.runtime.precision use the same values).
FORMATS = ("onnx", "torchscript", "tensorrt-plan")
BACKENDS = ("onnxruntime", "torch", "tensorrt")
PRECISIONS = ("fp32", "fp16", "bf16", "int8")
# Which backend serves a format when the operator does not say.
DEFAULT_BACKEND = {"onnx": "onnxruntime", "torchscript": "torch", "tensorrt-plan": "tensorrt"}

# The container's command, and its two subcommands: serving and the model-fetch init
# container.
COMMAND = "modelserve-runtime"
SERVE = "serve"
FETCH = "fetch"

# Named container ports (the Services target them by name) and the health endpoints the
# probes call (Open Inference Protocol v2).
HTTP_PORT = "http"
GRPC_PORT = "grpc"
HEALTH_LIVE = "/v2/health/live"
HEALTH_READY = "/v2/health/ready"
# What a pod that is not Ready yet is doing (downloading, loading, building an engine), as
# JSON on the HTTP port: the fetch init container serves it, then the runtime
# (progress.py). The operator reads it from the pod IP while the pod is not Ready.
PROGRESS_PATH = "/modelserve/progress"

# Environment the operator sets on the runtime container (each also a flag; a flag in
# the user's `args:` wins over its variable).
MODEL_NAME = "MODELSERVE_MODEL_NAME"
MODEL_VERSION = "MODELSERVE_MODEL_VERSION"
MODEL_PATH = "MODELSERVE_MODEL_PATH"
MODEL_FORMAT = "MODELSERVE_MODEL_FORMAT"
BACKEND = "MODELSERVE_BACKEND"
PRECISION = "MODELSERVE_PRECISION"
MAX_BATCH_SIZE = "MODELSERVE_MAX_BATCH_SIZE"
MAX_QUEUE_DELAY_US = "MODELSERVE_MAX_QUEUE_DELAY_US"
MAX_QUEUE_SIZE = "MODELSERVE_MAX_QUEUE_SIZE"
PORT = "MODELSERVE_PORT"
GRPC_PORT_ENV = "MODELSERVE_GRPC_PORT"
ENGINE_CACHE_DIR = "MODELSERVE_ENGINE_CACHE_DIR"
INPUTS = "MODELSERVE_INPUTS"
# Seconds the runtime finishes in-flight requests after SIGTERM (--drain-timeout-s); the
# operator's terminationGracePeriodSeconds must cover it.
DRAIN_TIMEOUT_S = 30.0
# The node cache entry a fetched model lives in (the fetch container pins it).
MODEL_CACHE_ENTRY = "MODELSERVE_MODEL_CACHE_ENTRY"
