"""NVIDIA's tritonclient, HTTP and gRPC, against the real server process: every path gives
the same answer on both protocols, and every bad input the same message.

The gRPC side builds its own messages with tritonclient's generated `service_pb2` (wire
compatible with ours) where tritonclient's high-level API would refuse to send them. The
runtime's own generated modules are never imported here: both register the `inference`
proto package in protobuf's default pool, and a process can hold only one of them.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator

import grpc
import numpy as np
import pytest

from .conftest import Server, expected, server_errors

tritonclient_grpc = pytest.importorskip("tritonclient.grpc")
tritonclient_http = pytest.importorskip("tritonclient.http")
from tritonclient.grpc import service_pb2, service_pb2_grpc  # noqa: E402
from tritonclient.utils import InferenceServerException  # noqa: E402

MAX_BATCH = 8  # the `server` fixture's --max-batch-size
MODEL_INFER = "/inference.GRPCInferenceService/ModelInfer"


@pytest.fixture(scope="module")
def http(server: Server) -> Iterator[tritonclient_http.InferenceServerClient]:
    client = tritonclient_http.InferenceServerClient(f"127.0.0.1:{server.port}")
    yield client
    client.close()


@pytest.fixture(scope="module")
def grpc_client(server: Server) -> Iterator[tritonclient_grpc.InferenceServerClient]:
    client = tritonclient_grpc.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
    yield client
    client.close()


@pytest.fixture(scope="module")
def channel(server: Server) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as ch:
        yield ch


def rows(batch: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(batch, 4)).astype(np.float32)


def infer_http(client, x: np.ndarray, binary: bool) -> dict[str, np.ndarray]:
    inp = tritonclient_http.InferInput("x", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=binary)
    outs = [tritonclient_http.InferRequestedOutput(n, binary_data=binary) for n in ("y", "total")]
    result = client.infer("tiny", [inp], outputs=outs)
    return {n: result.as_numpy(n) for n in ("y", "total")}


def infer_grpc_raw(client, x: np.ndarray) -> dict[str, np.ndarray]:
    inp = tritonclient_grpc.InferInput("x", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)  # raw_input_contents
    result = client.infer("tiny", [inp])
    return {n: result.as_numpy(n) for n in ("y", "total")}


def infer_grpc_contents(channel: grpc.Channel, x: np.ndarray) -> dict[str, np.ndarray]:
    """Typed `contents` instead of raw bytes: the JSON-like path of the gRPC protocol."""
    req = service_pb2.ModelInferRequest(model_name="tiny", id="typed")
    tensor = req.inputs.add(name="x", datatype="FP32", shape=list(x.shape))
    tensor.contents.fp32_contents.extend(x.reshape(-1).tolist())
    resp = service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(req)
    assert resp.id == "typed" and resp.model_version == "1"
    return {
        out.name: np.frombuffer(raw, "<f4").reshape(list(out.shape))
        for out, raw in zip(resp.outputs, resp.raw_output_contents, strict=True)
    }


@pytest.mark.parametrize("batch", [1, 7, MAX_BATCH])
def test_every_path_gives_the_same_answer(http, grpc_client, channel, batch: int) -> None:
    x = rows(batch, seed=batch)
    answers = {
        "http json": infer_http(http, x, binary=False),
        "http binary": infer_http(http, x, binary=True),
        "grpc raw": infer_grpc_raw(grpc_client, x),
        "grpc contents": infer_grpc_contents(channel, x),
    }
    want = expected(x)
    for path, got in answers.items():
        for name in ("y", "total"):
            assert got[name].dtype == np.float32 and got[name].shape == want[name].shape
            np.testing.assert_allclose(got[name], want[name], rtol=1e-5, err_msg=path)
            # Same rows, same model: equal up to the last bit onnxruntime may round
            # differently for an input that is a view into a request body.
            np.testing.assert_allclose(
                got[name], answers["http json"][name], rtol=1e-6, atol=1e-7, err_msg=path
            )


def test_health_and_metadata_agree(http, grpc_client) -> None:
    assert http.is_server_live() and grpc_client.is_server_live()
    assert http.is_server_ready() and grpc_client.is_server_ready()
    assert http.is_model_ready("tiny") and grpc_client.is_model_ready("tiny")
    assert not grpc_client.is_model_ready("tiny", "7")
    h = http.get_model_metadata("tiny")
    g = grpc_client.get_model_metadata("tiny", as_json=True)
    assert g["name"] == h["name"] == "tiny" and g["versions"] == h["versions"] == ["1"]
    for side in ("inputs", "outputs"):
        assert [(t["name"], t["datatype"], [int(d) for d in t["shape"]]) for t in g[side]] == [
            (t["name"], t["datatype"], t["shape"]) for t in h[side]
        ]
    assert grpc_client.get_server_metadata(as_json=True)["name"] == "modelserve"


# (case, model, numpy input, declared shape, datatype, input name, requested outputs,
#  HTTP status, gRPC code, message fragment). Each is sent by both clients.
F = np.float32
BAD = [
    ("unknown model", "nope", np.ones((1, 4), F), None, "FP32", "x", None, 404, "NOT_FOUND",
     "unknown model 'nope'"),
    ("wrong shape", "tiny", np.ones((1, 5), F), None, "FP32", "x", None, 400, "INVALID_ARGUMENT",
     "model expects [-1, 4]"),
    ("wrong rank", "tiny", np.ones(4, F), None, "FP32", "x", None, 400, "INVALID_ARGUMENT",
     "has shape [4]"),
    ("wrong datatype", "tiny", np.ones((1, 4), np.int32), None, "INT32", "x", None, 400,
     "INVALID_ARGUMENT", "model expects FP32"),
    ("unknown input", "tiny", np.ones((1, 4), F), None, "FP32", "q", None, 400,
     "INVALID_ARGUMENT", "unknown input(s) ['q']"),
    ("batch too large", "tiny", np.ones((9, 4), F), None, "FP32", "x", None, 400,
     "INVALID_ARGUMENT", "max batch size"),
    ("unknown output", "tiny", np.ones((1, 4), F), None, "FP32", "x", ["zz"], 400,
     "INVALID_ARGUMENT", "unknown output(s) ['zz']"),
    ("bytes for a numeric model", "tiny", np.array([b"hi"], dtype=object), None, "BYTES", "x",
     None, 400, "INVALID_ARGUMENT", "model expects FP32"),
]


def _http_error(client, model, x, datatype, name, outputs) -> InferenceServerException:
    inp = tritonclient_http.InferInput(name, list(x.shape), datatype)
    inp.set_data_from_numpy(x, binary_data=True)
    outs = [tritonclient_http.InferRequestedOutput(o) for o in outputs or []] or None
    with pytest.raises(InferenceServerException) as info:
        client.infer(model, [inp], outputs=outs)
    return info.value


def _grpc_error(client, model, x, datatype, name, outputs) -> InferenceServerException:
    inp = tritonclient_grpc.InferInput(name, list(x.shape), datatype)
    inp.set_data_from_numpy(x)
    outs = [tritonclient_grpc.InferRequestedOutput(o) for o in outputs or []] or None
    with pytest.raises(InferenceServerException) as info:
        client.infer(model, [inp], outputs=outs)
    return info.value


@pytest.mark.parametrize("case", BAD, ids=[c[0] for c in BAD])
def test_bad_input_same_message_on_both_protocols(http, grpc_client, case) -> None:
    _, model, x, _, datatype, name, outputs, status, code, fragment = case
    over_http = _http_error(http, model, x, datatype, name, outputs)
    over_grpc = _grpc_error(grpc_client, model, x, datatype, name, outputs)
    assert over_http.status() == str(status)
    assert over_grpc.status() == f"StatusCode.{code}"
    assert fragment in over_http.message()
    assert over_grpc.message() == over_http.message()


def _raw_request(datatype: str, shape: list[int], raw: bytes, name: str = "x") -> bytes:
    req = service_pb2.ModelInferRequest(model_name="tiny")
    req.inputs.add(name=name, datatype=datatype, shape=shape)
    req.raw_input_contents.append(raw)
    return req.SerializeToString()


def _call_raw(channel: grpc.Channel, payload: bytes) -> grpc.RpcError | None:
    try:
        channel.unary_unary(MODEL_INFER)(payload, timeout=30)
    except grpc.RpcError as exc:
        return exc
    return None


def test_byte_length_vs_shape_same_message(server: Server, channel: grpc.Channel) -> None:
    # tritonclient checks sizes before sending; a hand-made request does not.
    header = json.dumps(
        {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4],
                     "parameters": {"binary_data_size": 12}}]}
    ).encode()
    over_http = server.request(
        "POST", "/v2/models/tiny/infer", header + b"\0" * 12,
        {"Inference-Header-Content-Length": str(len(header))},
    )
    err = _call_raw(channel, _raw_request("FP32", [1, 4], b"\0" * 12))
    assert over_http.status == 400 and err is not None
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details() == over_http.json()["error"]
    assert "needs 16" in err.details()


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        (b"\xff\xff\xff", "not a valid ModelInferRequest"),
        (service_pb2.ModelInferRequest(model_name="tiny").SerializeToString(), "'inputs' is empty"),
        (_raw_request("FP32", [-1, 4], b""), "must hold non-negative integers"),
        (_raw_request("FP17", [1, 4], b"\0" * 16), "unknown datatype 'FP17'"),
        (_raw_request("FP16", [1, 4], b"\0" * 8), "model expects FP32"),
    ],
    ids=["not protobuf", "no inputs", "negative dim", "unknown datatype", "fp16 raw"],
)
def test_grpc_only_mistakes_are_invalid_argument(channel, payload: bytes, fragment: str) -> None:
    err = _call_raw(channel, payload)
    assert err is not None and err.code() == grpc.StatusCode.INVALID_ARGUMENT, err
    assert fragment in err.details()


def test_raw_contents_must_match_inputs(channel: grpc.Channel) -> None:
    req = service_pb2.ModelInferRequest(model_name="tiny")
    req.inputs.add(name="x", datatype="FP32", shape=[1, 4])
    req.inputs.add(name="q", datatype="FP32", shape=[1, 4])
    req.raw_input_contents.append(b"\0" * 16)
    err = _call_raw(channel, req.SerializeToString())
    assert err is not None and err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "1 raw_input_contents for 2 inputs" in err.details()


def test_oversized_message_is_refused_not_served(channel: grpc.Channel) -> None:
    # The fixture's --max-body-bytes (65536) bounds gRPC messages too.
    err = _call_raw(channel, _raw_request("FP32", [5000, 4], b"\0" * 80000))
    assert err is not None and err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_fuzz_grpc_messages_never_internal(server: Server, channel: grpc.Channel) -> None:
    rng = random.Random(20261130)
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    good = _raw_request("FP32", [2, 4], x.tobytes())
    codes = []
    for i in range(300):
        kind = i % 3
        if kind == 0:  # truncated
            payload = good[: rng.randrange(len(good))]
        elif kind == 1:  # bit flips
            raw = bytearray(good)
            for _ in range(rng.randrange(1, 6)):
                raw[rng.randrange(len(raw))] = rng.randrange(256)
            payload = bytes(raw)
        else:  # random bytes
            payload = rng.randbytes(rng.randrange(0, 200))
        err = _call_raw(channel, payload)
        code = grpc.StatusCode.OK if err is None else err.code()
        codes.append(code)
        assert code in (
            grpc.StatusCode.OK,
            grpc.StatusCode.INVALID_ARGUMENT,
            grpc.StatusCode.NOT_FOUND,
        ), (code, err and err.details(), payload[:80])
    assert grpc.StatusCode.INVALID_ARGUMENT in codes
    assert server.alive() and server.infer_json(x).status == 200
    # No message ever became a server error in the metric the rollout analysis reads.
    text = server.request("GET", "/metrics").body.decode()
    assert server_errors(text) == 0
