"""The real server process over real HTTP: protocol, binary extension, bad input, fuzz."""

from __future__ import annotations

import json
import random
import struct
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from modelserve_runtime.metrics import NvmlCollector

from .conftest import Server, expected

HCL = "Inference-Header-Content-Length"


def binary_request(
    x: np.ndarray, outputs: list[dict] | None = None, **params: object
) -> tuple[bytes, dict[str, str]]:
    header = {
        "inputs": [
            {
                "name": "x",
                "datatype": "FP32",
                "shape": list(x.shape),
                "parameters": {"binary_data_size": x.nbytes},
            }
        ]
    }
    if outputs is not None:
        header["outputs"] = outputs
    if params:
        header["parameters"] = params
    raw = json.dumps(header).encode()
    return raw + x.astype("<f4").tobytes(), {HCL: str(len(raw))}


def split_binary(body: bytes, header_length: int) -> tuple[dict, dict[str, np.ndarray]]:
    doc = json.loads(body[:header_length])
    offset = header_length
    arrays = {}
    for out in doc["outputs"]:
        if "data" in out:
            arrays[out["name"]] = np.array(out["data"], np.float32).reshape(out["shape"])
            continue
        size = out["parameters"]["binary_data_size"]
        arrays[out["name"]] = np.frombuffer(body[offset : offset + size], "<f4").reshape(
            out["shape"]
        )
        offset += size
    assert offset == len(body)
    return doc, arrays


def test_health_and_metadata(server: Server) -> None:
    assert server.request("GET", "/v2/health/live").json() == {"live": True}
    assert server.request("GET", "/v2/health/ready").json() == {"ready": True}
    assert "binary_tensor_data" in server.request("GET", "/v2").json()["extensions"]
    meta = server.request("GET", "/v2/models/tiny").json()
    assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}]
    assert [o["name"] for o in meta["outputs"]] == ["y", "total"]
    assert server.request("GET", "/v2/models/tiny/versions/1/ready").status == 200
    assert server.request("GET", "/v2/models/tiny/versions/7").status == 404
    assert server.request("GET", "/v2/models/other/ready").status == 404


def test_json_infer(server: Server) -> None:
    x = np.array([[1, 2, 3, 4], [0.5, 0, -1, 2]], np.float32)
    resp = server.infer_json(x, id="req-1")
    assert resp.status == 200, resp.body
    assert resp.headers["Content-Type"].startswith("application/json")
    doc = resp.json()
    assert (doc["model_name"], doc["model_version"], doc["id"]) == ("tiny", "1", "req-1")
    outs = {o["name"]: np.array(o["data"], np.float32).reshape(o["shape"]) for o in doc["outputs"]}
    for name, want in expected(x).items():
        np.testing.assert_allclose(outs[name], want, rtol=1e-6)


def test_json_infer_with_version_path(server: Server) -> None:
    x = np.ones((1, 4), np.float32)
    doc = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, 1, 1, 1]}]}
    resp = server.request("POST", "/v2/models/tiny/versions/1/infer", json.dumps(doc).encode())
    assert resp.status == 200
    assert resp.json()["outputs"][1]["data"] == [4.0]
    bad = server.request("POST", "/v2/models/tiny/versions/2/infer", json.dumps(doc).encode())
    assert bad.status == 404 and "unknown version" in bad.json()["error"]
    del x


def test_binary_in_binary_out(server: Server) -> None:
    x = np.random.default_rng(1).standard_normal((3, 4)).astype(np.float32)
    body, headers = binary_request(x, binary_data_output=True)
    resp = server.request("POST", "/v2/models/tiny/infer", body, headers)
    assert resp.status == 200, resp.body
    assert resp.headers["Content-Type"] == "application/octet-stream"
    _, outs = split_binary(resp.body, int(resp.headers[HCL]))
    for name, want in expected(x).items():
        np.testing.assert_allclose(outs[name], want, rtol=1e-5)


def test_binary_in_selected_outputs_mixed(server: Server) -> None:
    x = np.random.default_rng(2).standard_normal((2, 4)).astype(np.float32)
    outputs = [{"name": "total"}, {"name": "y", "parameters": {"binary_data": True}}]
    body, headers = binary_request(x, outputs)
    resp = server.request("POST", "/v2/models/tiny/infer", body, headers)
    assert resp.status == 200, resp.body
    doc, outs = split_binary(resp.body, int(resp.headers[HCL]))
    assert [o["name"] for o in doc["outputs"]] == ["total", "y"]
    assert "data" in doc["outputs"][0] and "parameters" in doc["outputs"][1]
    np.testing.assert_allclose(outs["y"], expected(x)["y"], rtol=1e-5)


def test_concurrent_requests_get_their_own_rows(server: Server) -> None:
    # Many callers at once: the batcher merges them; each must get back its own rows.
    def call(i: int) -> None:
        x = np.full((1 + i % 3, 4), float(i), np.float32)
        body, headers = binary_request(x, binary_data_output=True)
        resp = server.request("POST", "/v2/models/tiny/infer", body, headers)
        assert resp.status == 200, resp.body
        _, outs = split_binary(resp.body, int(resp.headers[HCL]))
        np.testing.assert_allclose(outs["total"], np.full(1 + i % 3, 4.0 * i))

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(call, range(96)))


def _json(doc: object) -> bytes:
    return json.dumps(doc).encode()


X = {"name": "x", "datatype": "FP32", "shape": [1, 4]}
BAD_CASES = [
    ("malformed json", "tiny", b'{"inputs": [', {}, 400, "not valid JSON"),
    (
        "unknown model",
        "nope",
        _json({"inputs": [{**X, "data": [1] * 4}]}),
        {},
        404,
        "unknown model",
    ),
    (
        "wrong shape",
        "tiny",
        _json({"inputs": [{**X, "shape": [1, 5], "data": [1] * 5}]}),
        {},
        400,
        "model expects [-1, 4]",
    ),
    (
        "wrong rank",
        "tiny",
        _json({"inputs": [{**X, "shape": [4], "data": [1] * 4}]}),
        {},
        400,
        "has shape [4]",
    ),
    (
        "wrong datatype",
        "tiny",
        _json({"inputs": [{**X, "datatype": "INT32", "data": [1] * 4}]}),
        {},
        400,
        "model expects FP32",
    ),
    (
        "unknown input",
        "tiny",
        _json({"inputs": [{**X, "name": "q", "data": [1] * 4}]}),
        {},
        400,
        "unknown input",
    ),
    (
        "batch too large",
        "tiny",
        _json({"inputs": [{**X, "shape": [9, 4], "data": [1] * 36}]}),
        {},
        400,
        "max batch size",
    ),
    (
        "unknown output",
        "tiny",
        _json({"inputs": [{**X, "data": [1] * 4}], "outputs": [{"name": "zz"}]}),
        {},
        400,
        "unknown output",
    ),
    (
        "byte length vs shape",
        "tiny",
        _json({"inputs": [{**X, "parameters": {"binary_data_size": 12}}]}) + b"\0" * 12,
        {HCL: "57"},
        400,
        "needs 16",
    ),
    ("header past body", "tiny", b'{"inputs": []}', {HCL: "4096"}, 400, "the body has only"),
    ("oversized body", "tiny", b"x" * 70000, {}, 413, "max-body-bytes"),
]


@pytest.mark.parametrize(
    ("case", "model", "body", "headers", "status", "message"),
    BAD_CASES,
    ids=[c[0] for c in BAD_CASES],
)
def test_bad_input_gets_4xx_naming_the_problem(
    server: Server,
    case: str,
    model: str,
    body: bytes,
    headers: dict[str, str],
    status: int,
    message: str,
) -> None:
    if case == "byte length vs shape":
        header_len = body.index(b"\0")
        headers = {HCL: str(header_len)}
    resp = server.request("POST", f"/v2/models/{model}/infer", body, headers)
    assert resp.status == status, resp.body
    assert message in resp.json()["error"]
    # ...and the server keeps serving.
    assert server.infer_json(np.ones((1, 4), np.float32)).status == 200


def test_fuzz_random_and_truncated_bodies_never_5xx(server: Server) -> None:
    rng = random.Random(20261121)
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    good_bin, good_headers = binary_request(x, binary_data_output=True)
    good_json = _json({"inputs": [{**X, "shape": [2, 4], "data": x.tolist()}]})
    statuses = []
    conn = server.connection()
    for i in range(300):
        kind = i % 4
        headers: dict[str, str] = {}
        if kind == 0:  # truncated binary request, header length kept
            body, headers = good_bin[: rng.randrange(len(good_bin))], dict(good_headers)
        elif kind == 1:  # truncated JSON
            body = good_json[: rng.randrange(len(good_json))]
        elif kind == 2:  # bit flips in a binary request, sometimes a lying header length
            raw = bytearray(good_bin)
            for _ in range(rng.randrange(1, 6)):
                raw[rng.randrange(len(raw))] = rng.randrange(256)
            body = bytes(raw)
            headers = {HCL: str(rng.choice([int(good_headers[HCL]), rng.randrange(-5, 200)]))}
        else:  # random bytes
            body = rng.randbytes(rng.randrange(0, 300))
            if rng.random() < 0.5:
                headers = {HCL: str(rng.randrange(0, 400))}
        conn.request("POST", "/v2/models/tiny/infer", body=body, headers=headers)
        resp = conn.getresponse()
        payload = resp.read()
        statuses.append(resp.status)
        assert resp.status < 500, (resp.status, payload, body[:80])
        if resp.status >= 400:
            assert "error" in json.loads(payload)
    conn.close()
    assert any(s >= 400 for s in statuses)
    assert server.alive() and server.infer_json(x).status == 200


def test_bytes_datatype_rejected_for_numeric_model(server: Server) -> None:
    blob = struct.pack("<I", 2) + b"hi"
    header = _json(
        {
            "inputs": [
                {
                    "name": "x",
                    "datatype": "BYTES",
                    "shape": [1],
                    "parameters": {"binary_data_size": len(blob)},
                }
            ]
        }
    )
    resp = server.request("POST", "/v2/models/tiny/infer", header + blob, {HCL: str(len(header))})
    assert resp.status == 400 and "model expects FP32" in resp.json()["error"]


def test_error_series_exist_at_zero_before_any_error(server: Server) -> None:
    # A canary analysis' error rate over a healthy version must read 0, not "no data".
    text = server.request("GET", "/metrics").body.decode()
    assert 'modelserve_requests_total{model="tiny",status="500",version="1"}' in text


def test_metrics_exposed_with_contract_names(server: Server) -> None:
    server.infer_json(np.ones((2, 4), np.float32))
    text = server.request("GET", "/metrics").body.decode()
    for needle in (
        'modelserve_requests_total{model="tiny",status="200",version="1"}',
        'modelserve_requests_total{model="tiny",status="400",version="1"}',
        'modelserve_request_duration_seconds_bucket{le="0.001",model="tiny",version="1"}',
        'modelserve_batch_size_bucket{le="1.0",model="tiny"}',
        'modelserve_queue_depth{model="tiny"}',
        'modelserve_inference_duration_seconds_count{model="tiny"}',
        'modelserve_queue_duration_seconds_total{model="tiny"}',
        'modelserve_queued_requests_total{model="tiny"}',
        'modelserve_inflight_requests{model="tiny"}',
    ):
        assert needle in text, needle
    # NVML gauges exist exactly where NVML sees a GPU: absent, not zero, without one.
    has_gpu = NvmlCollector.create() is not None
    for name in ("utilization_percent", "memory_used_bytes", "memory_total_bytes"):
        assert (f"modelserve_gpu_{name}{{gpu=" in text) == has_gpu, name
    assert 'model="nope"' not in text  # unknown names never become label values
