"""controllers/kube.py against a real HTTP server playing the API server.

The kubeconfig uses an exec credential plugin whose token rotates, as cloud providers'
plugins do: the facade must send the current token, ask the plugin again after a 401,
count its writes, speak server-side apply, and leave no key material behind.
"""

from __future__ import annotations

import asyncio
import functools
import glob
import json
import pathlib
import ssl
import subprocess
import sys
import textwrap

import yaml
from aiohttp import web

from modelserve_operator.controllers.cluster import client, metrics
from modelserve_operator.controllers.cluster.client import ApiError, Kube

PLUGIN = textwrap.dedent("""\
    import json, pathlib, sys
    counter = pathlib.Path(sys.argv[1])
    n = int(counter.read_text()) + 1 if counter.exists() else 1
    counter.write_text(str(n))
    print(json.dumps({"apiVersion": "client.authentication.k8s.io/v1",
                      "kind": "ExecCredential", "status": {"token": f"token-{n}"}}))
""")


class FakeServer:
    """Records requests; accepts only the token it is told is current."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.valid_token = "token-1"

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.text()
        self.requests.append({"method": request.method, "path": request.path,
                              "query": dict(request.query),
                              "type": request.headers.get("Content-Type"),
                              "auth": request.headers.get("Authorization"),
                              "body": json.loads(body) if body else None})
        if request.headers.get("Authorization") != f"Bearer {self.valid_token}":
            return web.json_response({"message": "Unauthorized"}, status=401)
        if request.method == "GET" and request.path.endswith("/missing"):
            return web.json_response({"message": "not found"}, status=404)
        if request.method == "POST":
            return web.json_response({"message": "admission webhook said no"}, status=422)
        return web.json_response(json.loads(body) if body else {"items": []})


async def scenario(tmp_path: pathlib.Path) -> None:
    server = FakeServer()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", server.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    (tmp_path / "plugin.py").write_text(PLUGIN)
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "fake",
        "clusters": [{"name": "fake", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
        "users": [{"name": "plugin", "user": {"exec": {
            "apiVersion": "client.authentication.k8s.io/v1", "command": sys.executable,
            "args": [str(tmp_path / "plugin.py"), str(tmp_path / "count")],
            "interactiveMode": "Never"}}}],
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "plugin"}}]}))
    before = set(glob.glob("/dev/shm/modelserve-kube-*"))
    import os
    os.environ["KUBECONFIG"] = str(kubeconfig)
    try:
        kube = await Kube.connect()
    finally:
        del os.environ["KUBECONFIG"]
    try:
        writes = metrics.API_WRITES.labels(verb="apply", kind="Deployment")._value.get()
        obj = {"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": "m-r1", "namespace": "ns"}, "spec": {"replicas": 2}}
        assert await kube.apply(obj) == obj
        sent = server.requests[-1]
        assert (sent["method"], sent["path"], sent["type"]) == (
            "PATCH", "/apis/apps/v1/namespaces/ns/deployments/m-r1",
            "application/apply-patch+yaml")
        assert sent["query"] == {"fieldManager": "modelserve-operator", "force": "true"}
        assert sent["auth"] == "Bearer token-1"
        assert metrics.API_WRITES.labels(verb="apply", kind="Deployment")._value.get() == (
            writes + 1)

        assert await kube.get("v1", "Service", "ns", "missing") is None
        await kube.patch_status("modelserve.io/v1alpha1", "ModelDeployment", "ns", "m",
                                {"phase": "Ready"})
        assert server.requests[-1]["type"] == "application/merge-patch+json"
        assert server.requests[-1]["path"].endswith("/modeldeployments/m/status")

        # The plugin's token rotates: a 401, the plugin runs again, the request is repeated.
        server.valid_token = "token-2"
        await kube.apply(obj)
        assert [r["auth"] for r in server.requests[-2:]] == ["Bearer token-1",
                                                               "Bearer token-2"]
        session = await kube.kopf_session()  # Kopf's watches get the rotated token too
        assert session.aiohttp_session.headers["Authorization"] == "Bearer token-2"
        await session.aiohttp_session.close()

        try:
            await kube.create({"apiVersion": "v1", "kind": "Event",
                               "metadata": {"namespace": "ns", "generateName": "m."}})
        except ApiError as error:
            assert error.status == 422 and "webhook" in str(error)
        else:
            raise AssertionError("a 422 must raise ApiError")
    finally:
        await kube.close()
        await runner.cleanup()
    assert set(glob.glob("/dev/shm/modelserve-kube-*")) == before  # nothing left behind


def test_facade_against_a_real_http_server(tmp_path: pathlib.Path) -> None:
    asyncio.run(scenario(tmp_path))


def test_the_environment_is_read_for_a_proxy_only_when_one_is_set(monkeypatch) -> None:
    """aiohttp reads proxy variables and ~/.netrc on a thread per request when it trusts
    the environment: worth it only where a proxy variable is set."""
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY",
                 "all_proxy"):
        monkeypatch.delenv(name, raising=False)

    async def trust_env() -> bool:
        from kubernetes_asyncio import client as k8s

        config = k8s.Configuration(host="http://127.0.0.1:1")
        kube = Kube(k8s.ApiClient(config))
        try:
            return kube.api.rest_client.pool_manager.trust_env
        finally:
            await kube.close()

    assert asyncio.run(trust_env()) is False
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    assert asyncio.run(trust_env()) is True


def _certificates(tmp_path: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path, pathlib.Path]:
    """A CA and a serving certificate for 127.0.0.1, as the cluster's would be."""
    ca, key, cert = tmp_path / "ca.crt", tmp_path / "server.key", tmp_path / "server.crt"
    run = functools.partial(subprocess.run, check=True, capture_output=True)
    run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=test-ca", "-keyout", tmp_path / "ca.key", "-out", ca])
    run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=kubernetes",
         "-keyout", key, "-out", tmp_path / "server.csr"])
    (tmp_path / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    run(["openssl", "x509", "-req", "-in", tmp_path / "server.csr", "-CA", ca, "-CAkey",
         tmp_path / "ca.key", "-CAcreateserial", "-days", "1", "-out", cert,
         "-extfile", tmp_path / "san.ext"])
    return ca, key, cert


async def in_cluster_scenario(tmp_path: pathlib.Path, monkeypatch) -> None:
    ca, key, cert = _certificates(tmp_path)
    server = FakeServer()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", server.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    account = tmp_path / "serviceaccount"
    account.mkdir()
    (account / "ca.crt").write_bytes(ca.read_bytes())
    (account / "token").write_text("token-1")
    monkeypatch.setattr(client, "SERVICE_ACCOUNT", str(account))
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", str(port))
    assert client.in_cluster()
    kube = await Kube.connect()
    try:
        obj = {"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "m", "namespace": "ns"}, "spec": {}}
        await kube.apply(obj)
        assert server.requests[-1]["auth"] == "Bearer token-1"
        # The kubelet rotates the projected token; the API server stops taking the old one.
        (account / "token").write_text("token-2")
        server.valid_token = "token-2"
        await kube.apply(obj)
        assert [r["auth"] for r in server.requests[-2:]] == ["Bearer token-1",
                                                               "Bearer token-2"]
        session = await kube.kopf_session()  # TLS verified against the mounted CA
        async with session.aiohttp_session.get(f"https://127.0.0.1:{port}/api") as answer:
            assert answer.status == 200
        await session.aiohttp_session.close()
    finally:
        await kube.close()
        await runner.cleanup()


def test_in_cluster_config_follows_a_rotated_token(tmp_path: pathlib.Path, monkeypatch) -> None:
    asyncio.run(in_cluster_scenario(tmp_path, monkeypatch))
