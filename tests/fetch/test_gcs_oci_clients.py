"""gs:// and oci:// through their real client libraries, against minimal local responders.

CI has no Google Cloud Storage and no registry; these responders answer only the few
requests the libraries make for one download (GCS JSON API metadata + media with Range;
OCI distribution manifest + blob, with a Basic-auth challenge), so that our glue — URI to
request, error to message, retry, digest — runs through google-cloud-storage and oras
unmodified. They are not claims of compatibility with the real services.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import threading

import pytest

from modelserve_runtime.fetch import FetchError, fetch

DATA = bytes(range(256)) * 12_000  # ~3 MiB: several 1 MiB reads
DIGEST = hashlib.sha256(DATA).hexdigest()


def serve(handler_class):
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler_class)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, f"127.0.0.1:{httpd.server_address[1]}"


def ranged(handler, body: bytes) -> None:
    start, end = 0, len(body) - 1
    if rng := handler.headers.get("Range"):
        first, _, last = rng.removeprefix("bytes=").partition("-")
        start, end = int(first), min(int(last) if last else end, end)
    handler.send_response(206 if handler.headers.get("Range") else 200)
    handler.send_header("Content-Length", str(end - start + 1))
    handler.send_header("Content-Range", f"bytes {start}-{end}/{len(body)}")
    handler.end_headers()
    handler.wfile.write(body[start:end + 1])


class Gcs(http.server.BaseHTTPRequestHandler):
    """GET /storage/v1/b/{bucket}/o/{name} (metadata) and /download/… ?alt=media."""

    requests: list[str] = []

    def do_GET(self):
        self.requests.append(self.path)
        path = self.path.split("?")[0]
        name = path.rsplit("/o/", 1)[-1]
        if name == "forbidden.onnx":
            return self.error(403, "caller does not have storage.objects.get access")
        if name != "model.onnx":
            return self.error(404, "No such object")
        if "alt=media" in self.path:
            return ranged(self, DATA)
        meta = {"kind": "storage#object", "bucket": "team-models", "name": "model.onnx",
                "size": str(len(DATA)), "generation": "1700000000000001",
                "metageneration": "1"}
        body = json.dumps(meta).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def error(self, code, message):
        body = json.dumps({"error": {"code": code, "message": message}}).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def gcs(monkeypatch, tmp_path):
    httpd, address = serve(Gcs)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://{address}")
    monkeypatch.setenv("MODELSERVE_STORAGE_SECRET_DIR", str(tmp_path / "no-secret"))
    Gcs.requests = []
    yield
    httpd.shutdown()


def test_gcs_streams_in_ranged_reads_and_verifies(gcs, tmp_path):
    dest = tmp_path / "m.onnx"
    assert fetch("gs://team-models/model.onnx", dest, DIGEST) == DIGEST
    assert dest.read_bytes() == DATA
    media = [r for r in Gcs.requests if "alt=media" in r]
    assert len(media) >= 1 and all("ifGenerationMatch=1700000000000001" in r for r in media)


@pytest.mark.parametrize("name,message", [
    ("forbidden.onnx", r"access denied to gs://team-models/forbidden.onnx: .*objectViewer"),
    ("missing.onnx", r"gs://team-models/missing.onnx not found"),
])
def test_gcs_errors_name_the_uri_and_what_to_check(gcs, tmp_path, name, message):
    with pytest.raises(FetchError, match=message):
        fetch(f"gs://team-models/{name}", tmp_path / "m.onnx", None)


LAYER = f"sha256:{DIGEST}"
MANIFEST = json.dumps({
    "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "artifactType": "application/vnd.modelserve.model",
    "config": {"mediaType": "application/vnd.oci.empty.v1+json", "size": 2,
               "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"},
    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "size": len(DATA),
                "digest": LAYER,
                "annotations": {"org.opencontainers.image.title": "model.onnx"}}],
}).encode()
USER, PASSWORD = "robot", "s3cret"


class Registry(http.server.BaseHTTPRequestHandler):
    """/v2/models/resnet50/manifests/v3 and its blob, behind Basic auth."""

    def do_GET(self):
        expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        if self.headers.get("Authorization") != expected:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="models"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.path == "/v2/models/resnet50/manifests/v3":
            self.send_response(200)
            self.send_header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
            self.send_header("Content-Length", str(len(MANIFEST)))
            self.end_headers()
            self.wfile.write(MANIFEST)
        elif self.path == f"/v2/models/resnet50/blobs/{LAYER}":
            ranged(self, DATA)
        else:
            body = b'{"errors":[{"code":"MANIFEST_UNKNOWN"}]}'
            self.send_response(404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def registry(monkeypatch, tmp_path):
    httpd, address = serve(Registry)
    secret = tmp_path / "secret"
    secret.mkdir()
    monkeypatch.setenv("MODELSERVE_STORAGE_SECRET_DIR", str(secret))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "no-docker-config"))
    yield address, secret
    httpd.shutdown()


def test_oci_pull_with_username_password_checks_the_layer_digest(registry, tmp_path):
    address, secret = registry
    (secret / "username").write_text(USER)
    (secret / "password").write_text(PASSWORD)
    dest = tmp_path / "m.onnx"
    got = fetch(f"oci://{address}/models/resnet50:v3", dest, None, oci_plain_http=True)
    assert got == DIGEST and dest.read_bytes() == DATA


def test_oci_with_a_docker_config_secret(registry, tmp_path):
    address, secret = registry
    auth = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    (secret / ".dockerconfigjson").write_text(json.dumps({"auths": {address: {"auth": auth}}}))
    assert fetch(f"oci://{address}/models/resnet50:v3", tmp_path / "m", DIGEST,
                 oci_plain_http=True) == DIGEST


def test_oci_without_credentials_is_denied_at_once(registry, tmp_path):
    address, _ = registry
    with pytest.raises(FetchError, match=r"access denied to oci://.*models/resnet50:v3"):
        fetch(f"oci://{address}/models/resnet50:v3", tmp_path / "m", None, oci_plain_http=True)


def test_oci_unknown_tag_is_not_found(registry, tmp_path):
    address, secret = registry
    (secret / "username").write_text(USER)
    (secret / "password").write_text(PASSWORD)
    with pytest.raises(FetchError, match=r"not found \(HTTP 404"):
        fetch(f"oci://{address}/models/resnet50:v9", tmp_path / "m", None, oci_plain_http=True)


class TokenRegistry(Registry):
    """The Bearer-token flow most public registries use (GHCR, Docker Hub, Harbor)."""

    def do_GET(self):
        basic = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        if self.path.startswith("/token"):
            if self.headers.get("Authorization") != basic:
                self.send_response(401)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = json.dumps({"token": "pull-token"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        if self.headers.get("Authorization") != "Bearer pull-token":
            host = self.headers["Host"]
            self.send_response(401)
            self.send_header("WWW-Authenticate",
                             f'Bearer realm="http://{host}/token",service="registry",'
                             f'scope="repository:models/resnet50:pull"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.headers.replace_header("Authorization", basic)
        super().do_GET()


def test_oci_bearer_token_flow(tmp_path, monkeypatch):
    httpd, address = serve(TokenRegistry)
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "username").write_text(USER)
    (secret / "password").write_text(PASSWORD)
    monkeypatch.setenv("MODELSERVE_STORAGE_SECRET_DIR", str(secret))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "no-docker-config"))
    try:
        assert fetch(f"oci://{address}/models/resnet50:v3", tmp_path / "m", DIGEST,
                     oci_plain_http=True) == DIGEST
    finally:
        httpd.shutdown()
