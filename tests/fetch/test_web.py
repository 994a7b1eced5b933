"""https:// and http:// against a real HTTP server (the standard library's) on localhost."""

import contextlib
import hashlib
import http.server
import importlib
import threading

import pytest

from modelserve_runtime.fetch import FetchError, fetch

# The module, not the function of the same name that the package exports.
DOWNLOAD = importlib.import_module("modelserve_runtime.fetch.download")
DATA = b"\x00model-bytes" * 50_000


class Handler(http.server.BaseHTTPRequestHandler):
    drop_first = [0]  # responses still to cut short

    def do_GET(self):
        if self.path == "/denied.onnx":
            self.send_error(403)
            return
        if self.path != "/model.onnx":
            self.send_error(404)
            return
        start = 0
        if rng := self.headers.get("Range"):
            start = int(rng.removeprefix("bytes=").split("-")[0])
        body = DATA[start:]
        self.send_response(206 if start else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.drop_first[0] > 0:
            self.drop_first[0] -= 1
            self.wfile.write(body[: len(body) // 2])  # then hang up
            return
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    Handler.drop_first[0] = 0


def test_streams_and_verifies(server, tmp_path):
    digest = hashlib.sha256(DATA).hexdigest()
    assert fetch(f"{server}/model.onnx", tmp_path / "m.onnx", digest) == digest
    assert (tmp_path / "m.onnx").read_bytes() == DATA


def test_a_connection_cut_mid_body_resumes_with_a_range_request(server, tmp_path,
                                                                 monkeypatch):
    monkeypatch.setattr(DOWNLOAD, "_backoff", lambda attempt: 0.0)
    Handler.drop_first[0] = 1
    digest = hashlib.sha256(DATA).hexdigest()
    assert fetch(f"{server}/model.onnx", tmp_path / "m.onnx", digest) == digest


@pytest.mark.parametrize("path,message", [
    ("/missing.onnx", r"not found \(HTTP 404\): check spec.model.uri"),
    ("/denied.onnx", r"access denied to .*/denied.onnx \(HTTP 403\)"),
])
def test_clear_messages(server, tmp_path, path, message):
    with pytest.raises(FetchError, match=message):
        fetch(f"{server}{path}", tmp_path / "m.onnx", None)


def test_nothing_listening_is_retried_then_reported(tmp_path, monkeypatch):
    monkeypatch.setattr(DOWNLOAD, "_backoff", lambda attempt: 0.0)
    with contextlib.closing(__import__("socket").socket()) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(FetchError, match=r"gave up on .* after 6 attempts.*reachable"):
        fetch(f"http://127.0.0.1:{port}/m.onnx", tmp_path / "m.onnx", None)
