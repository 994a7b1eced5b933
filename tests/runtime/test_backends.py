"""Backend helpers everywhere; torch and TensorRT paths only where they import."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from modelserve_runtime.backends import (
    DRAWN_ROWS,
    ExampleRows,
    TensorSpec,
    batch_buckets,
    example_tensor,
    parse_specs,
)
from modelserve_runtime.backends.tensorrt import engine_cache_key
from modelserve_runtime.backends.torch import default_instances
from modelserve_runtime.config import Settings
from modelserve_runtime.engine import EngineServer
from modelserve_runtime.fetch import sha256_file


@pytest.mark.parametrize(
    ("max_batch", "sizes"),
    [
        (1, [1]),
        (2, [1, 2]),
        (8, [1, 2, 4, 8]),
        (12, [1, 2, 4, 8, 12]),
        (16, [1, 2, 4, 8, 16]),
        (40, [1, 2, 4, 8, 16, 32, 40]),
        (128, [1, 2, 4, 8, 16, 32, 48, 64, 80, 96, 112, 128]),
        (1024, [1, 2, 4, 8, 16, 32, 64, 128, 256, 384, 512, 640, 768, 896, 1024]),
    ],
)
def test_batch_buckets_cover_every_size(max_batch: int, sizes: list[int]) -> None:
    buckets = batch_buckets(max_batch)
    assert buckets == sizes
    # every batch size fits a bucket padded by at most an eighth of the maximum (or 16)
    for rows in range(1, max_batch + 1):
        fit = next(b for b in buckets if b >= rows)
        assert fit - rows < max(16, -(-max_batch // 8))


def test_warm_up_data_is_drawn_once_and_sliced() -> None:
    spec = TensorSpec("input", "FP16", (-1, 3, 8, 8))
    examples = ExampleRows(16)
    biggest = examples.get(spec, 16)
    small = examples.get(spec, 4)
    assert biggest.shape == (16, 3, 8, 8) and small.shape == (4, 3, 8, 8)
    assert np.shares_memory(biggest, small)  # a view, not a second draw
    assert not small.flags.writeable  # shared by every bucket: nobody may write it
    assert examples.get(spec, 32).shape[0] == 32  # more than planned: drawn again
    assert examples.get(spec, 0).shape == (1, 3, 8, 8)  # no batch dim asked: one row


def test_warm_up_data_repeats_a_few_random_rows_never_zero() -> None:
    for datatype in ("FP16", "FP32", "UINT8", "INT64", "BOOL"):
        rows = example_tensor(TensorSpec("x", datatype, (-1, 3, 4)), DRAWN_ROWS * 2 + 3)
        assert rows.shape == (DRAWN_ROWS * 2 + 3, 3, 4) and rows.flags.c_contiguous
        assert rows.any()  # zeros hide bugs and time differently
        np.testing.assert_array_equal(rows[DRAWN_ROWS : DRAWN_ROWS * 2], rows[:DRAWN_ROWS])
    assert example_tensor(TensorSpec("x", "FP32", (4,)), 0).shape == (4,)


def test_parse_specs() -> None:
    raw = json.dumps([{"name": "input", "datatype": "FP16", "shape": [-1, 3, 224, 224]}])
    assert parse_specs(raw, "inputs") == [TensorSpec("input", "FP16", (-1, 3, 224, 224))]
    assert parse_specs(None, "inputs") is None
    with pytest.raises(ValueError, match="unknown datatype"):
        parse_specs('[{"name": "x", "datatype": "FP8"}]', "inputs")
    with pytest.raises(ValueError, match="--inputs must be a JSON list"):
        parse_specs("{nope", "inputs")


def test_engine_cache_key_names_everything_that_changes_an_engine(tmp_path: Path) -> None:
    model = tmp_path / "m.onnx"
    model.write_bytes(b"onnx bytes")
    digest = sha256_file(str(model))
    key = engine_cache_key(digest, (9, 0), "10.8.0", "fp16", 64)
    assert key == f"{digest}-sm90-trt10.8.0-fp16-b64.plan"
    others = {
        engine_cache_key(digest, (8, 9), "10.8.0", "fp16", 64),
        engine_cache_key(digest, (9, 0), "10.9.0", "fp16", 64),
        engine_cache_key(digest, (9, 0), "10.8.0", "int8", 64),
        engine_cache_key(digest, (9, 0), "10.8.0", "fp16", 32),
    }
    assert key not in others and len(others) == 4


def test_torch_instances_default_to_three_only_where_no_http_shares_the_gil() -> None:
    assert default_instances(on_gpu=True, serves_http=False) == 3
    assert default_instances(on_gpu=True, serves_http=True) == 2
    assert default_instances(on_gpu=False, serves_http=False) == 1


def test_engine_process_tells_its_backend_it_serves_no_http(tmp_path: Path) -> None:
    settings = Settings(model_name="m", model_path=str(tmp_path / "m.onnx"))
    assert settings.serves_http
    engine = EngineServer(settings, str(tmp_path / "engine.sock"))
    assert engine.model.backend.settings.serves_http is False


def test_torch_backend_cpu(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from modelserve_runtime.backends.torch import TorchBackend

    module = torch.jit.script(torch.nn.Linear(4, 2))
    path = tmp_path / "lin.pt"
    module.save(str(path))
    settings = Settings(
        model_name="lin",
        model_path=str(path),
        model_format="torchscript",
        backend="torch",
        device="cpu",
        max_batch_size=4,
        inputs=json.dumps([{"name": "x", "datatype": "FP32", "shape": [-1, 4]}]),
    )
    backend = TorchBackend(settings)
    backend.load()
    backend.warmup()
    x = np.ones((3, 4), np.float32)
    out = backend.infer({"x": [x[:1], x[1:]]}, 3)["output0"]
    with torch.no_grad():
        want = module(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(out, want, rtol=1e-6)


def test_tensorrt_builds_caches_and_reloads(tmp_path: Path) -> None:
    pytest.importorskip("tensorrt")
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("TensorRT needs a CUDA GPU")
    from modelserve_runtime.backends.tensorrt import TensorRTBackend

    from .conftest import build_tiny_model, expected

    model = tmp_path / "tiny.onnx"
    build_tiny_model(model)
    cache = tmp_path / "engines"

    def load() -> TensorRTBackend:
        backend = TensorRTBackend(
            Settings(
                model_name="tiny",
                model_path=str(model),
                model_format="onnx",
                backend="tensorrt",
                precision="fp32",
                max_batch_size=8,
                engine_cache_dir=str(cache),
            )
        )
        backend.load()
        return backend

    first = load()
    plans = list(cache.glob("*.plan"))
    assert len(plans) == 1 and plans[0].name.startswith(sha256_file(str(model)))
    mtime = plans[0].stat().st_mtime_ns
    second = load()  # from the cache: the file is not rewritten
    assert plans[0].stat().st_mtime_ns == mtime
    x = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    for backend in (first, second):
        out = backend.infer({"x": [x]}, 3)
        np.testing.assert_allclose(out["y"], expected(x)["y"], rtol=1e-4, atol=1e-5)
