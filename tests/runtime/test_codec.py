"""Open Inference Protocol codec: JSON, binary extension, and every malformed case."""

from __future__ import annotations

import contextlib
import json
import struct

import numpy as np
import pytest

from modelserve_runtime.codec import decode_request, encode_response
from modelserve_runtime.errors import BadRequest


def binary_body(header: dict, *blobs: bytes) -> tuple[bytes, int]:
    raw = json.dumps(header).encode()
    return raw + b"".join(blobs), len(raw)


def test_json_nested_and_flat_data_decode_the_same() -> None:
    for data in ([[1, 2], [3, 4]], [1, 2, 3, 4]):
        body = json.dumps(
            {"inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 2], "data": data}]}
        ).encode()
        req = decode_request(body)
        np.testing.assert_array_equal(req.inputs[0].data, [[1, 2], [3, 4]])
        assert req.inputs[0].data.dtype == np.float32


def test_binary_input_is_zero_copy_view() -> None:
    x = np.arange(6, dtype=np.float16).reshape(2, 3)
    header = {
        "id": "r1",
        "inputs": [
            {
                "name": "x",
                "datatype": "FP16",
                "shape": [2, 3],
                "parameters": {"binary_data_size": x.nbytes},
            }
        ],
        "outputs": [{"name": "y", "parameters": {"binary_data": True}}],
    }
    body, n = binary_body(header, x.tobytes())
    req = decode_request(body, str(n))
    np.testing.assert_array_equal(req.inputs[0].data, x)
    assert req.id == "r1"
    assert req.outputs is not None and req.outputs[0].binary is True


def test_bytes_tensor_binary_and_json() -> None:
    elems = [b"ab", b"", b"xyz"]
    blob = b"".join(struct.pack("<I", len(e)) + e for e in elems)
    header = {
        "inputs": [
            {
                "name": "s",
                "datatype": "BYTES",
                "shape": [3],
                "parameters": {"binary_data_size": len(blob)},
            }
        ]
    }
    body, n = binary_body(header, blob)
    assert list(decode_request(body, n).inputs[0].data) == elems
    body = json.dumps(
        {"inputs": [{"name": "s", "datatype": "BYTES", "shape": [1], "data": ["hi"]}]}
    ).encode()
    assert list(decode_request(body).inputs[0].data) == [b"hi"]


X4 = {"name": "x", "datatype": "FP32", "shape": [1, 4]}


@pytest.mark.parametrize(
    ("case", "body", "header_length", "message"),
    [
        ("not json", b"{nope", None, "not valid JSON"),
        ("not an object", b"[1]", None, "must be a JSON object"),
        ("no inputs", b"{}", None, "missing field 'inputs'"),
        ("empty inputs", b'{"inputs": []}', None, "'inputs' is empty"),
        (
            "unknown datatype",
            json.dumps({"inputs": [{**X4, "datatype": "FP8", "data": [1]}]}),
            None,
            "unknown datatype",
        ),
        (
            "negative dim",
            json.dumps({"inputs": [{**X4, "shape": [-1, 4], "data": [1]}]}),
            None,
            "non-negative",
        ),
        (
            "count mismatch",
            json.dumps({"inputs": [{**X4, "data": [1, 2, 3]}]}),
            None,
            "has 3 elements, shape needs 4",
        ),
        (
            "string in FP32",
            json.dumps({"inputs": [{**X4, "data": [1, 2, 3, "a"]}]}),
            None,
            "is not a number",
        ),
        (
            "overflow",
            json.dumps({"inputs": [{**X4, "datatype": "INT8", "data": [1, 2, 3, 999]}]}),
            None,
            "does not fit INT8",
        ),
        ("no data", json.dumps({"inputs": [X4]}), None, "needs 'data'"),
        (
            "duplicate input",
            json.dumps({"inputs": [{**X4, "data": [1] * 4}] * 2}),
            None,
            "appears twice",
        ),
        ("header length not int", b"{}", "abc", "must be an integer"),
        ("header past body", b"{}", "100", "the body has only 2 bytes"),
    ],
)
def test_malformed_requests_name_the_problem(
    case: str, body: bytes | str, header_length: str | None, message: str
) -> None:
    raw = body.encode() if isinstance(body, str) else body
    with pytest.raises(BadRequest, match=message):
        decode_request(raw, header_length)


def test_binary_size_must_match_shape() -> None:
    header = {"inputs": [{**X4, "parameters": {"binary_data_size": 12}}]}
    body, n = binary_body(header, b"\0" * 12)
    with pytest.raises(BadRequest, match="12 bytes of binary data, but shape"):
        decode_request(body, n)


def test_binary_size_past_body() -> None:
    header = {"inputs": [{**X4, "parameters": {"binary_data_size": 16}}]}
    body, n = binary_body(header, b"\0" * 8)
    with pytest.raises(BadRequest, match="runs past"):
        decode_request(body, n)


def test_unclaimed_binary_bytes() -> None:
    header = {"inputs": [{**X4, "parameters": {"binary_data_size": 16}}]}
    body, n = binary_body(header, b"\0" * 20)
    with pytest.raises(BadRequest, match="not claimed"):
        decode_request(body, n)


def test_encode_json_and_binary_outputs() -> None:
    y = np.arange(6, dtype=np.float32).reshape(2, 3)
    chunks, n = encode_response("m", "1", [("y", y, False)], "id7")
    assert n is None
    doc = json.loads(chunks[0])
    assert doc == {
        "model_name": "m",
        "model_version": "1",
        "id": "id7",
        "outputs": [{"name": "y", "datatype": "FP32", "shape": [2, 3], "data": [0, 1, 2, 3, 4, 5]}],
    }
    chunks, n = encode_response("m", "1", [("y", y, True)])
    body = b"".join(bytes(c) for c in chunks)
    head = json.loads(body[:n])
    assert head["outputs"][0]["parameters"]["binary_data_size"] == 24
    np.testing.assert_array_equal(np.frombuffer(body[n:], np.float32).reshape(2, 3), y)


def test_random_garbage_only_ever_raises_bad_request() -> None:
    rng = np.random.default_rng(1234)
    valid, n = binary_body({"inputs": [{**X4, "parameters": {"binary_data_size": 16}}]}, b"\1" * 16)
    for _ in range(2000):
        cut = valid[: rng.integers(0, len(valid))]
        noisy = bytearray(valid)
        for pos in rng.integers(0, len(noisy), size=3):
            noisy[pos] = int(rng.integers(0, 256))
        for body in (cut, bytes(noisy), rng.bytes(int(rng.integers(0, 64)))):
            with contextlib.suppress(BadRequest):
                decode_request(body, n if rng.random() < 0.7 else None)
