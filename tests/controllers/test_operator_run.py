"""`modelserve operator run` as the chart's pod runs it: a uid with no passwd entry."""

from __future__ import annotations

import getpass

import kopf
import prometheus_client

from modelserve_operator import cli


def test_operator_run_needs_no_passwd_entry_for_its_uid(monkeypatch):
    def no_passwd_entry() -> str:
        raise KeyError("getpwuid(): uid not found: 65532")

    seen: dict = {}
    monkeypatch.setattr(getpass, "getuser", no_passwd_entry)
    monkeypatch.setattr(kopf, "run", lambda **kwargs: seen.update(kwargs))
    monkeypatch.setattr(prometheus_client, "start_http_server", lambda *a, **k: None)
    monkeypatch.setenv("POD_NAME", "modelserve-abc")
    assert cli.main(["operator", "run", "--plain-logs"]) == 0
    assert seen["identity"].startswith("modelserve-abc")


def test_in_cluster_login_uses_the_service_address_not_cluster_dns(tmp_path, monkeypatch):
    """The API server at the `kubernetes` Service's address from the kubelet's environment,
    as client-go does (kubernetes.default.svc would need cluster DNS)."""
    import asyncio
    import pathlib

    import certifi

    from modelserve_operator.controllers.cluster import client as kube

    (tmp_path / "token").write_text("t")
    (tmp_path / "ca.crt").write_bytes(pathlib.Path(certifi.where()).read_bytes())  # any CA
    monkeypatch.setattr(kube, "SERVICE_ACCOUNT", str(tmp_path))
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")

    async def host(address: str) -> str:
        monkeypatch.setenv("KUBERNETES_SERVICE_HOST", address)
        client = await kube.Kube.connect()
        await client.close()
        return client.config.host

    assert asyncio.run(host("198.19.0.1")) == "https://198.19.0.1:443"
    assert asyncio.run(host("fd00::1")) == "https://[fd00::1]:443"
