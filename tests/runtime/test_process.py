"""Process-level behaviour: auth + TLS + audit log, SIGTERM drain, startup failures."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from modelserve_runtime.contract import PROGRESS_PATH

from .conftest import Server, expected, free_port, start_server, stop_server

KEY = "k-3f9a1c7e5b"


@pytest.fixture(scope="module")
def secure_server(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl CLI not available to make a test certificate")
    tmp = tmp_path_factory.mktemp("secure")
    cert, key = tmp / "tls.crt", tmp / "tls.key"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    keys = tmp / "api-keys"
    keys.write_text(f"# mounted from a Secret\nci-client:{KEY}\n")
    srv = start_server(
        tmp,
        tiny_model,
        "--api-keys-file",
        str(keys),
        "--tls-cert",
        str(cert),
        "--tls-key",
        str(key),
        tls=True,
    )
    srv.cert = cert  # type: ignore[attr-defined]
    yield srv
    assert stop_server(srv) == 0


def _infer(srv: Server, headers: dict[str, str]) -> int:
    doc = {
        "id": "audit-me",
        "inputs": [
            {"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [0.5, 2.5, 3.75, 98765.25]}
        ],
    }
    return srv.request("POST", "/v2/models/tiny/infer", json.dumps(doc).encode(), headers).status


def test_health_is_open_but_inference_needs_a_key(secure_server: Server) -> None:
    assert secure_server.request("GET", "/v2/health/ready").status == 200
    assert secure_server.request("GET", "/v2/health/live").status == 200
    # What the pod did before it was ready: the operator reads it without a key.
    answer = secure_server.request("GET", PROGRESS_PATH)
    assert answer.status == 200 and answer.json()["phase"] == "loaded"
    assert _infer(secure_server, {}) == 401
    assert _infer(secure_server, {"Authorization": "Bearer wrong"}) == 401
    assert secure_server.request("GET", "/v2/models/tiny").status == 401
    assert _infer(secure_server, {"Authorization": f"Bearer {KEY}"}) == 200
    assert _infer(secure_server, {"X-API-Key": KEY}) == 200


def test_grpc_shares_tls_and_keys(secure_server: Server) -> None:
    grpcclient = pytest.importorskip("tritonclient.grpc")
    from tritonclient.utils import InferenceServerException

    client = grpcclient.InferenceServerClient(
        f"localhost:{secure_server.grpc_port}",
        ssl=True,
        root_certificates=str(secure_server.cert),  # type: ignore[attr-defined]
    )
    try:
        assert client.is_server_ready()  # health is open, as over HTTP
        x = np.array([[0.5, 2.5, 3.75, 98765.25]], np.float32)
        inp = grpcclient.InferInput("x", [1, 4], "FP32")
        inp.set_data_from_numpy(x)
        for headers in ({}, {"authorization": "Bearer wrong"}):
            with pytest.raises(InferenceServerException) as info:
                client.infer("tiny", [inp], headers=headers)
            assert info.value.status() == "StatusCode.UNAUTHENTICATED"
        with pytest.raises(InferenceServerException):
            client.get_model_metadata("tiny")
        for headers in ({"authorization": f"Bearer {KEY}"}, {"x-api-key": KEY}):
            result = client.infer("tiny", [inp], headers=headers, request_id="grpc-audit")
            np.testing.assert_allclose(result.as_numpy("y"), expected(x)["y"], rtol=1e-5)
    finally:
        client.close()


def test_audit_log_names_caller_never_tensors(secure_server: Server) -> None:
    assert _infer(secure_server, {"Authorization": f"Bearer {KEY}"}) == 200
    assert _infer(secure_server, {}) == 401
    stop_server(secure_server)  # flushes the audit log
    lines = [json.loads(line) for line in secure_server.stdout_path.read_text().splitlines()]
    ok = [r for r in lines if r["status"] == 200 and r["request_id"] == "audit-me"]
    over_grpc = [r for r in lines if r["request_id"] == "grpc-audit"]
    assert over_grpc and all(r["key_id"] == "ci-client" for r in over_grpc)
    assert over_grpc[0]["protocol"] == "grpc" and over_grpc[0]["bytes_in"] > 16
    assert ok and ok[0]["key_id"] == "ci-client" and ok[0]["model"] == "tiny"
    assert ok[0]["version"] == "1" and ok[0]["latency_ms"] >= 0
    assert any(r["status"] == 401 and r["key_id"] is None for r in lines)
    text = secure_server.stdout_path.read_text()
    assert "98765.25" not in text and KEY not in text
    audit_fields = {
        "ts",
        "remote",
        "method",
        "path",
        "key_id",
        "model",
        "version",
        "status",
        "latency_ms",
        "request_id",
        "bytes_in",
        "protocol",
    }
    assert all(set(r) == audit_fields for r in lines)


def test_sigterm_finishes_inflight_requests_and_exits_zero(
    tiny_model: Path, tmp_path: Path
) -> None:
    srv = start_server(tmp_path, tiny_model)
    results: list[int] = []

    def hammer() -> None:
        for _ in range(50):
            try:
                results.append(srv.infer_json(np.ones((1, 4), np.float32)).status)
            except OSError:
                results.append(-1)  # connection refused once the process is gone

    workers = [threading.Thread(target=hammer) for _ in range(4)]
    for w in workers:
        w.start()
    while not results:
        pass
    assert stop_server(srv) == 0
    for w in workers:
        w.join()
    # Every answered request got 200 or a clean 503 during drain; none failed mid-flight.
    assert set(results) <= {200, 503, -1}, set(results)
    assert 200 in results
    assert "drained" in srv.stderr_path.read_text()


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "modelserve_runtime.server", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_bad_settings_exit_2_naming_the_flag() -> None:
    done = _run("--model-name", "m", "--model-path", "/x.onnx", "--max-batch-size", "-1")
    assert done.returncode == 2 and "--max-batch-size" in done.stderr


def test_model_that_fails_to_load_exits_1(tmp_path: Path) -> None:
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"not a model")
    done = _run(
        "--model-name", "m", "--model-path", str(bad), "--port", str(free_port()),
        "--grpc-port", str(free_port()),
    )
    assert done.returncode == 1 and "failed to load" in done.stderr


def test_workers_share_the_port_and_aggregate_metrics(tiny_model: Path, tmp_path: Path) -> None:
    srv = start_server(tmp_path, tiny_model, "--workers", "2")
    try:
        # Readiness answers from whichever worker the kernel picks: wait for both.
        while srv.stderr_path.read_text().count("ready: model") < 2:
            assert srv.proc.poll() is None, srv.stderr_path.read_text()
            time.sleep(0.05)
        for _ in range(10):
            assert srv.infer_json(np.ones((1, 4), np.float32)).status == 200
        # A scrape answered by either worker sums both workers' counters.
        text = srv.request("GET", "/metrics").body.decode()
        assert 'modelserve_requests_total{model="tiny",status="200",version="1"} 10.0' in text
    finally:
        assert stop_server(srv) == 0
    assert srv.stderr_path.read_text().count("drained; exiting") == 2


@pytest.mark.parametrize("busy_poll", ["0", "2000"], ids=["sleeping", "busy-polling"])
def test_engine_answers_never_cross_between_concurrent_requests(
    tiny_model: Path, tmp_path: Path, busy_poll: str
) -> None:
    """Engine mode under concurrency: answers are written into slots and sent from the
    engine's instance threads; each request must get its own, whichever worker, batch
    and slot it went through (rows 6 exceed a slot and travel inline). With busy-polling
    on, a lone client first (it keeps the loops polling), then the crowd."""
    srv = start_server(
        tmp_path, tiny_model, "--workers", "2", "--engine-process", "1",
        "--busy-poll-us", busy_poll,
    )
    failures: list[str] = []

    def client(seed: int) -> None:
        rng = np.random.default_rng(seed)
        for i in range(25):
            x = rng.standard_normal((int(rng.choice([1, 2, 3, 6])), 4)).astype(np.float32)
            resp = srv.infer_json(x)
            if resp.status != 200:
                failures.append(f"client {seed} request {i}: {resp.status} {resp.body!r}")
                continue
            outs = {o["name"]: np.array(o["data"], np.float32) for o in resp.json()["outputs"]}
            got, want = outs["total"], expected(x)["total"].reshape(-1)
            if got.shape != want.shape or not np.allclose(got, want, rtol=1e-5, atol=1e-5):
                failures.append(f"client {seed} request {i}: another request's answer")

    try:
        while srv.stderr_path.read_text().count("ready: model") < 2:
            assert srv.proc.poll() is None, srv.stderr_path.read_text()
            time.sleep(0.05)
        client(100)  # alone
        threads = [threading.Thread(target=client, args=(seed,)) for seed in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not failures, failures[:5]
    finally:
        assert stop_server(srv) == 0
    log = srv.stderr_path.read_text()
    assert "Traceback" not in log and "ERROR" not in log, log


def test_engine_process_serves_through_shared_memory(tiny_model: Path, tmp_path: Path) -> None:
    srv = start_server(tmp_path, tiny_model, "--workers", "2", "--engine-process", "1")
    try:
        while srv.stderr_path.read_text().count("ready: model") < 2:
            assert srv.proc.poll() is None, srv.stderr_path.read_text()
            time.sleep(0.05)
        # gRPC in a worker goes through the same engine.
        grpcclient = pytest.importorskip("tritonclient.grpc")
        client = grpcclient.InferenceServerClient(f"127.0.0.1:{srv.grpc_port}")
        x = np.ones((2, 4), np.float32)
        inp = grpcclient.InferInput("x", [2, 4], "FP32")
        inp.set_data_from_numpy(x)
        np.testing.assert_allclose(
            client.infer("tiny", [inp]).as_numpy("total"), expected(x)["total"], rtol=1e-6
        )
        client.close()
        rng = np.random.default_rng(7)
        for rows in (1, 3, 4, 8):  # 8 rows exceed a shared-memory slot: sent inline
            x = rng.standard_normal((rows, 4)).astype(np.float32)
            resp = srv.infer_json(x)
            assert resp.status == 200, resp.body
            outs = {
                o["name"]: np.array(o["data"], np.float32).reshape(o["shape"])
                for o in resp.json()["outputs"]
            }
            for name, want in expected(x).items():
                np.testing.assert_allclose(outs[name], want, rtol=1e-5, atol=1e-6)
        bad = srv.infer_json(np.ones((1, 5), np.float32))
        assert bad.status == 400 and "model expects [-1, 4]" in bad.json()["error"]
        # Last, a request in a shared-memory slot: the engine then unmaps a worker's
        # arena right after a batch that read from it (a view kept alive by the batcher
        # once made that unmap a BufferError at exit).
        assert srv.infer_json(np.ones((1, 4), np.float32)).status == 200
        text = srv.request("GET", "/metrics").body.decode()
        assert 'modelserve_requests_total{model="tiny",status="200",version="1"} 6.0' in text
        assert 'modelserve_batch_size_count{model="tiny"} 6.0' in text  # counted by the engine
        assert 'modelserve_queued_requests_total{model="tiny"} 6.0' in text
        # each of them went worker -> engine -> worker once, and that took some time
        assert 'modelserve_engine_roundtrips_total{model="tiny"} 6.0' in text
        [roundtrip] = re.findall(
            r'modelserve_engine_roundtrip_seconds_total\{model="tiny"\} (\S+)', text
        )
        [inside] = re.findall(
            r'modelserve_engine_inside_seconds_total\{model="tiny"\} (\S+)', text
        )
        assert 0 < float(inside) < float(roundtrip)  # the engine's part of the trip
        # the 8-row request, more than a slot holds; no request found the slots all taken
        assert 'modelserve_engine_inline_requests_total{reason="too_large"} 1.0' in text
        assert 'modelserve_engine_inline_requests_total{reason="slots_busy"} 0.0' in text
    finally:
        assert stop_server(srv) == 0
    log = srv.stderr_path.read_text()
    assert log.count("drained; exiting") == 3 and "Traceback" not in log
    assert "BufferError" not in log and "ERROR" not in log, log
