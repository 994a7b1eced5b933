"""Settings from args/env, and API-key handling."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelserve_runtime.auth import ApiKeys, presented_key
from modelserve_runtime.config import ConfigError, load_settings

BASE = ["--model-name", "m", "--model-path", "/m.onnx"]


def test_args_override_env() -> None:
    env = {
        "MODELSERVE_MAX_BATCH_SIZE": "16",
        "MODELSERVE_PORT": "9000",
        "MODELSERVE_MODEL_NAME": "from-env",
        "MODELSERVE_MODEL_PATH": "/e.onnx",
    }
    s = load_settings(["--port", "9100"], env)
    assert (s.model_name, s.port, s.max_batch_size) == ("from-env", 9100, 16)


def test_shared_memory_slots_are_settings_with_defaults() -> None:
    """Engine mode's arena (engine.py): once environment-only and unchecked, now settings."""
    s = load_settings(BASE, {})
    assert (s.shm_slots, s.shm_slot_rows) == (64, 4)
    s = load_settings([*BASE, "--shm-slots", "256"], {"MODELSERVE_SHM_SLOT_ROWS": "1"})
    assert (s.shm_slots, s.shm_slot_rows) == (256, 1)


def test_backend_follows_format_when_not_given() -> None:
    s = load_settings([*BASE, "--format", "torchscript", "--inputs", "[]"], {})
    assert s.backend == "torch"


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        ([], {}, "--model-name"),
        (["--model-name", "m"], {}, "--model-path"),
        ([*BASE, "--max-batch-size", "x"], {}, "--max-batch-size / MODELSERVE_MAX_BATCH_SIZE"),
        ([*BASE, "--max-batch-size", "0"], {}, "must be >= 1"),
        ([*BASE, "--precision", "fp8"], {}, "--precision must be one of"),
        ([*BASE, "--tls-cert", "/c"], {}, "together"),
        (BASE, {"MODELSERVE_INSTANCES": "-1"}, "--instances must be in 0..16"),
        ([*BASE, "--grpc-port", "8080"], {}, "--grpc-port must be in 0..65535"),
        (BASE, {"MODELSERVE_GRPC_SERVER": "grpcio"}, "--grpc-server must be one of"),
        (BASE, {"MODELSERVE_HEADER_TIMEOUT_S": "0"}, "--header-timeout-s must be > 0"),
        ([*BASE, "--body-timeout-s", "-1"], {}, "--body-timeout-s must be > 0"),
        ([*BASE, "--max-connections", "0"], {}, "--max-connections must be >= 1"),
        (BASE, {"MODELSERVE_BACKEND": "tvm"}, "--backend must be one of"),
        (BASE, {"MODELSERVE_SHM_SLOTS": "0"}, "--shm-slots must be in 1..65536, got 0"),
        (BASE, {"MODELSERVE_SHM_SLOT_ROWS": "four"}, "--shm-slot-rows / MODELSERVE_SHM_SLOT_ROWS"),
    ],
)
def test_bad_settings_name_the_flag(argv: list[str], env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(argv, env)


def test_api_keys_with_and_without_ids(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text("# comment\nalice:s3cret\n\nplainkey\n")
    keys = ApiKeys.from_file(str(path))
    assert keys.identify("s3cret") == "alice"
    assert keys.identify(
        "plainkey",
    ).startswith("sha256:")
    assert keys.identify("wrong") is None
    assert keys.identify(None) is None


def test_empty_key_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text("# nothing\n")
    with pytest.raises(ValueError, match="no API keys"):
        ApiKeys.from_file(str(path))


def test_presented_key_headers() -> None:
    assert presented_key({"Authorization": "Bearer abc"}) == "abc"
    assert presented_key({"X-API-Key": "xyz"}) == "xyz"
    assert presented_key({}) is None


def test_misbehaving_client_limits_have_defaults_and_env() -> None:
    s = load_settings(BASE, {})
    assert (s.grpc_port, s.header_timeout_s, s.body_timeout_s) == (8081, 10.0, 60.0)
    assert (s.max_connections, s.keepalive_timeout_s) == (1000, 3630.0)
    env = {"MODELSERVE_GRPC_PORT": "0", "MODELSERVE_MAX_CONNECTIONS": "50"}
    s = load_settings(BASE, env)
    assert (s.grpc_port, s.max_connections) == (0, 50)
