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
        (BASE, {"MODELSERVE_BACKEND": "tvm"}, "--backend must be one of"),
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
