"""The init container's fetch: verified or refused, never half-written."""

import hashlib

import pytest

from modelserve_runtime.fetch import fetch


def test_fetch_verifies_and_places_the_file(tmp_path):
    source = tmp_path / "model.onnx"
    source.write_bytes(b"weights" * 1000)
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    dest = tmp_path / "models" / "model.onnx"
    assert fetch(f"file://{source}", dest, digest) == digest
    assert dest.read_bytes() == source.read_bytes()


def test_digest_mismatch_refuses_and_leaves_nothing(tmp_path):
    source = tmp_path / "model.onnx"
    source.write_bytes(b"tampered")
    dest = tmp_path / "models" / "model.onnx"
    with pytest.raises(SystemExit, match="SHA-256 mismatch"):
        fetch(f"file://{source}", dest, "0" * 64)
    assert list(dest.parent.iterdir()) == []


def test_unsupported_scheme_says_what_to_do(tmp_path):
    with pytest.raises(SystemExit, match="pvc://"):
        fetch("s3://bucket/model.onnx", tmp_path / "m.onnx", None)


def test_entrypoint_dispatches_fetch(tmp_path):
    from modelserve_runtime.server import main

    source = tmp_path / "m.onnx"
    source.write_bytes(b"x")
    assert main(["fetch", "--uri", f"file://{source}", "--dest", str(tmp_path / "d/m.onnx")]) == 0
    assert (tmp_path / "d/m.onnx").read_bytes() == b"x"
