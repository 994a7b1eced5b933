"""The audit line is exactly what json.dumps would write, for every value it can hold."""

from __future__ import annotations

import json

import pytest

from modelserve_runtime.audit import audit_line

CASES = {
    "grpc call": dict(ts=1764489600.123, protocol="grpc", remote="ipv4:127.0.0.1:5555",
                      method="ModelInfer", path="/inference.GRPCInferenceService/ModelInfer",
                      key_id=None, model="mlp", version="1", status=200, latency_ms=1.234,
                      request_id=None, bytes_in=3160),
    "caller-chosen strings": dict(model='quo"te\\back\nline\x00', request_id="ünïcödé ☃ 𝄞",
                                  path="/v2/models/</script>/infer"),
    "numbers": dict(zero=0, negative=-5, big=2**70, tiny=1e-300, whole=3.0, status=499),
    "booleans and none": dict(yes=True, no=False, nothing=None),
    "not finite": dict(nan=float("nan"), inf=float("inf"), minus_inf=float("-inf")),
    "anything else": dict(items=[1, "a", None], mapping={"k": 1.5}),
}


@pytest.mark.parametrize("fields", CASES.values(), ids=CASES.keys())
def test_audit_line_is_json_dumps(fields: dict[str, object]) -> None:
    assert audit_line(fields) == json.dumps(fields, separators=(",", ":"))
