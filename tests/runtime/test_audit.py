"""The audit line is exactly what json.dumps would write, for every value it can hold."""

from __future__ import annotations

import asyncio
import io
import json

import pytest

from modelserve_runtime.audit import AuditLog, audit_line

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


def test_lines_from_other_threads_are_written_by_the_loop() -> None:
    # gRPC handler threads record their calls; the loop the log was made on writes them.
    async def scenario() -> list[str]:
        stream = io.StringIO()
        log = AuditLog(stream, interval_s=0.01)
        await asyncio.gather(
            *(asyncio.to_thread(log.record, {"thread": i}) for i in range(20)),
        )
        log.record({"loop": True})
        while stream.getvalue().count("\n") < 21:  # a hang here is the failure
            await asyncio.sleep(0.005)
        return stream.getvalue().splitlines()

    lines = asyncio.run(scenario())
    assert sorted(json.loads(line).get("thread", -1) for line in lines) == [-1, *range(20)]
