"""Runtime settings from command-line arguments and environment variables.

The operator renders both forms (see docs/runtime.md); an argument wins over its
environment variable so that a user's `args:` override can beat the rendered env.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .contract import (  # the operator's too
    BACKENDS,
    DEFAULT_BACKEND,
    DRAIN_TIMEOUT_S,
    FORMATS,
    PRECISIONS,
)

TORCH_COMPILE = ("auto", "off", "default", "max-autotune", "standalone")
GRPC_SERVERS = ("h2", "threads", "asyncio")  # --grpc-server (grpc_service.start_grpc)


class ConfigError(ValueError):
    """A setting is missing or out of range; the message names the flag and env var."""


@dataclass(frozen=True)
class Settings:
    model_name: str
    model_path: str
    model_format: str = "onnx"
    backend: str = "onnxruntime"
    model_version: str = "1"
    precision: str = "fp32"
    max_batch_size: int = 8
    max_queue_delay_us: int = 1000
    # A lone request on an idle device runs on the event loop itself when recent batches
    # took less than this (batcher.py); 0: always in a worker thread.
    inline_below_us: int = 3000
    max_queue_size: int = 1024
    port: int = 8080
    host: str = "0.0.0.0"
    engine_cache_dir: str | None = None
    # torch backend: compile a .pt2 program (backends/compiled.py). auto = inductor's
    # standalone engine on a GPU; off = eager ops in CUDA graphs.
    torch_compile: str = "auto"
    # After a lone request, keep the event loop polling this long instead of sleeping
    # (busypoll.py): lower latency at concurrency 1 for CPU; 0 = off.
    busy_poll_us: int = 0
    api_keys_file: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    max_body_bytes: int = 64 * 1024 * 1024
    # Open Inference Protocol gRPC port (grpc_service.py); 0: no gRPC listener.
    grpc_port: int = 8081
    # What takes gRPC calls (grpc_service.start_grpc): h2 on the event loop (grpc_h2.py),
    # or grpcio's thread-pool or asyncio server, kept as the fallback.
    grpc_server: str = "h2"
    # Misbehaving clients (connections.py, server.py): a request's line and headers must
    # arrive within header_timeout_s of its first byte, its body within body_timeout_s of
    # its headers; at most max_connections open HTTP connections (and concurrent gRPC
    # calls) per process; an idle kept-alive connection is closed after keepalive_timeout_s.
    header_timeout_s: float = 10.0
    body_timeout_s: float = 60.0
    max_connections: int = 1000
    # Longer than the hour Envoy (Istio, most gateways) keeps an idle upstream connection:
    # the proxy closes first, never racing a request into a connection we are closing.
    # Idle connections cannot pile up: a new one must send a request in header_timeout_s.
    keepalive_timeout_s: float = 3630.0
    device: str = "cuda"
    warmup: bool = True
    drain_timeout_s: float = DRAIN_TIMEOUT_S
    access_log: bool = True
    log_level: str = "INFO"
    # JSON list of {"name", "datatype", "shape"} for formats that carry no signature
    # (TorchScript); dim 0 is the batch dimension, -1 marks a dynamic dimension.
    inputs: str | None = None
    outputs: str | None = None
    # Batches run at once (each with its own stream/buffers on GPU); 0: backend default.
    instances: int = 0
    # Server processes sharing the port (see supervisor.py); 1: this process serves.
    workers: int = 1
    # With workers: 1 = one engine process owns the model, workers only do HTTP.
    engine_process: int = 0
    # Engine mode: each worker's shared-memory arena holds shm_slots requests of up to
    # shm_slot_rows rows (engine.py); other requests travel pickled in the frame.
    shm_slots: int = 64
    shm_slot_rows: int = 4
    # Not a flag: False in the engine process, whose threads do no HTTP (backends pick
    # their default `instances` by it).
    serves_http: bool = True


# flag name, env var, type, Settings field
_OPTIONS: list[tuple[str, str, type, str]] = [
    ("--model-name", "MODELSERVE_MODEL_NAME", str, "model_name"),
    ("--model-path", "MODELSERVE_MODEL_PATH", str, "model_path"),
    ("--model-version", "MODELSERVE_MODEL_VERSION", str, "model_version"),
    ("--format", "MODELSERVE_MODEL_FORMAT", str, "model_format"),
    ("--backend", "MODELSERVE_BACKEND", str, "backend"),
    ("--precision", "MODELSERVE_PRECISION", str, "precision"),
    ("--max-batch-size", "MODELSERVE_MAX_BATCH_SIZE", int, "max_batch_size"),
    ("--max-queue-delay-us", "MODELSERVE_MAX_QUEUE_DELAY_US", int, "max_queue_delay_us"),
    ("--max-queue-size", "MODELSERVE_MAX_QUEUE_SIZE", int, "max_queue_size"),
    ("--inline-below-us", "MODELSERVE_INLINE_BELOW_US", int, "inline_below_us"),
    ("--busy-poll-us", "MODELSERVE_BUSY_POLL_US", int, "busy_poll_us"),
    ("--port", "MODELSERVE_PORT", int, "port"),
    ("--host", "MODELSERVE_HOST", str, "host"),
    ("--engine-cache-dir", "MODELSERVE_ENGINE_CACHE_DIR", str, "engine_cache_dir"),
    ("--torch-compile", "MODELSERVE_TORCH_COMPILE", str, "torch_compile"),
    ("--api-keys-file", "MODELSERVE_API_KEYS_FILE", str, "api_keys_file"),
    ("--tls-cert", "MODELSERVE_TLS_CERT", str, "tls_cert"),
    ("--tls-key", "MODELSERVE_TLS_KEY", str, "tls_key"),
    ("--max-body-bytes", "MODELSERVE_MAX_BODY_BYTES", int, "max_body_bytes"),
    ("--grpc-port", "MODELSERVE_GRPC_PORT", int, "grpc_port"),
    ("--grpc-server", "MODELSERVE_GRPC_SERVER", str, "grpc_server"),
    ("--header-timeout-s", "MODELSERVE_HEADER_TIMEOUT_S", float, "header_timeout_s"),
    ("--body-timeout-s", "MODELSERVE_BODY_TIMEOUT_S", float, "body_timeout_s"),
    ("--max-connections", "MODELSERVE_MAX_CONNECTIONS", int, "max_connections"),
    ("--keepalive-timeout-s", "MODELSERVE_KEEPALIVE_TIMEOUT_S", float, "keepalive_timeout_s"),
    ("--device", "MODELSERVE_DEVICE", str, "device"),
    ("--drain-timeout-s", "MODELSERVE_DRAIN_TIMEOUT_S", float, "drain_timeout_s"),
    ("--log-level", "MODELSERVE_LOG_LEVEL", str, "log_level"),
    ("--inputs", "MODELSERVE_INPUTS", str, "inputs"),
    ("--outputs", "MODELSERVE_OUTPUTS", str, "outputs"),
    ("--instances", "MODELSERVE_INSTANCES", int, "instances"),
    ("--workers", "MODELSERVE_WORKERS", int, "workers"),
    ("--engine-process", "MODELSERVE_ENGINE_PROCESS", int, "engine_process"),
    ("--shm-slots", "MODELSERVE_SHM_SLOTS", int, "shm_slots"),
    ("--shm-slot-rows", "MODELSERVE_SHM_SLOT_ROWS", int, "shm_slot_rows"),
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="modelserve-runtime",
        description="Serve one model over the Open Inference Protocol v2 (HTTP and gRPC).",
    )
    for flag, env, _typ, _field in _OPTIONS:
        # Parse as strings; conversion happens once, for args and env alike.
        parser.add_argument(flag, default=None, help=f"(env {env})")
    parser.add_argument("--no-warmup", action="store_true", help="skip warm-up (tests only)")
    parser.add_argument("--no-access-log", action="store_true", help="disable the audit log")
    return parser


def _convert(flag: str, env: str, typ: type, raw: str) -> object:
    try:
        return typ(raw)
    except ValueError:
        raise ConfigError(f"{flag} / {env} must be {typ.__name__}, got {raw!r}") from None


def load_settings(
    argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    environ = os.environ if environ is None else environ
    args = build_parser().parse_args(argv)
    values: dict[str, object] = {}
    for flag, env, typ, field in _OPTIONS:
        raw = getattr(args, field_to_dest(flag))
        if raw is None:
            raw = environ.get(env) or None
        if raw is not None:
            values[field] = _convert(flag, env, typ, raw)
    for flag, env, field in (
        ("--model-name", "MODELSERVE_MODEL_NAME", "model_name"),
        ("--model-path", "MODELSERVE_MODEL_PATH", "model_path"),
    ):
        if not values.get(field):
            raise ConfigError(f"{flag} (or env {env}) is required")
    fmt = str(values.get("model_format", "onnx"))
    values.setdefault("backend", DEFAULT_BACKEND.get(fmt, "onnxruntime"))
    values["warmup"] = not args.no_warmup
    values["access_log"] = not args.no_access_log
    settings = Settings(**values)  # type: ignore[arg-type]
    validate(settings)
    return settings


def field_to_dest(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_")


def validate(s: Settings) -> None:
    checks = [
        (s.model_format in FORMATS, f"--format must be one of {FORMATS}, got {s.model_format!r}"),
        (s.backend in BACKENDS, f"--backend must be one of {BACKENDS}, got {s.backend!r}"),
        (
            s.precision in PRECISIONS,
            f"--precision must be one of {PRECISIONS}, got {s.precision!r}",
        ),
        (
            s.torch_compile in TORCH_COMPILE,
            f"--torch-compile must be one of {TORCH_COMPILE}, got {s.torch_compile!r}",
        ),
        (s.max_batch_size >= 1, f"--max-batch-size must be >= 1, got {s.max_batch_size}"),
        (
            s.max_queue_delay_us >= 0,
            f"--max-queue-delay-us must be >= 0, got {s.max_queue_delay_us}",
        ),
        (s.max_queue_size >= 1, f"--max-queue-size must be >= 1, got {s.max_queue_size}"),
        (s.inline_below_us >= 0, f"--inline-below-us must be >= 0, got {s.inline_below_us}"),
        (
            0 <= s.busy_poll_us <= 100_000,
            f"--busy-poll-us must be in 0..100000 (0: off), got {s.busy_poll_us}",
        ),
        (0 < s.port < 65536, f"--port must be in 1..65535, got {s.port}"),
        (
            0 <= s.grpc_port < 65536 and s.grpc_port != s.port,
            f"--grpc-port must be in 0..65535 (0: no gRPC) and differ from --port, "
            f"got {s.grpc_port}",
        ),
        (
            s.grpc_server in GRPC_SERVERS,
            f"--grpc-server must be one of {GRPC_SERVERS}, got {s.grpc_server!r}",
        ),
        (s.header_timeout_s > 0, f"--header-timeout-s must be > 0, got {s.header_timeout_s}"),
        (s.body_timeout_s > 0, f"--body-timeout-s must be > 0, got {s.body_timeout_s}"),
        (
            s.keepalive_timeout_s > 0,
            f"--keepalive-timeout-s must be > 0, got {s.keepalive_timeout_s}",
        ),
        (s.max_connections >= 1, f"--max-connections must be >= 1, got {s.max_connections}"),
        (1 <= s.workers <= 64, f"--workers must be in 1..64, got {s.workers}"),
        (
            0 <= s.instances <= 16,
            f"--instances must be in 0..16 (0: the backend's default), got {s.instances}",
        ),
        (s.max_body_bytes >= 1024, f"--max-body-bytes must be >= 1024, got {s.max_body_bytes}"),
        (1 <= s.shm_slots <= 65536, f"--shm-slots must be in 1..65536, got {s.shm_slots}"),
        (
            1 <= s.shm_slot_rows <= 4096,
            f"--shm-slot-rows must be in 1..4096, got {s.shm_slot_rows}",
        ),
        (
            (s.tls_cert is None) == (s.tls_key is None),
            "--tls-cert and --tls-key must be given together",
        ),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
