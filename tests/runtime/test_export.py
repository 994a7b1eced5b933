"""`modelserve export`: argument parsing everywhere; the export itself where torch is."""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import pytest

from modelserve_runtime.export import build_parser, main, parse_input, sha256_file


def test_parse_input_forms() -> None:
    assert parse_input("input=1x3x224x224") == ("input", (1, 3, 224, 224), "float32")
    assert parse_input("ids=2x128:int64") == ("ids", (2, 128), "int64")
    for bad in ("1x3", "x=1xa", "x=1x0", "x=1:complex"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_input(bad)


def test_output_is_required() -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["m:f", "--input", "x=1x4"])


def test_sha256_file(tmp_path: Path) -> None:
    path = tmp_path / "blob"
    path.write_bytes(b"modelserve")
    assert sha256_file(str(path)) == hashlib.sha256(b"modelserve").hexdigest()


def test_export_linear_module(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("torch")
    ort = pytest.importorskip("onnxruntime")
    import numpy as np

    out = tmp_path / "lin.onnx"
    assert main(["torch.nn:Identity", "-o", str(out), "--input", "x=1x4"]) == 0
    digest = sha256_file(str(out))
    assert f"sha256: {digest}" in capsys.readouterr().out
    session = ort.InferenceSession(str(out))
    x = np.ones((3, 4), np.float32)  # dynamic batch: 3 rows through a 1-row export
    np.testing.assert_array_equal(session.run(None, {"x": x})[0], x)
