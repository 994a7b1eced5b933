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


def test_in_cluster_login_uses_the_service_address_not_cluster_dns():
    from modelserve_operator.controllers.runtime import in_cluster_address

    info = kopf.ConnectionInfo(server="https://kubernetes.default.svc", token="t")
    env = {"KUBERNETES_SERVICE_HOST": "198.19.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    assert in_cluster_address(info, env).server == "https://198.19.0.1:443"
    assert in_cluster_address(info, {**env, "KUBERNETES_SERVICE_HOST": "fd00::1"}).server \
        == "https://[fd00::1]:443"
    assert in_cluster_address(info, {}).server == "https://kubernetes.default.svc"
    assert in_cluster_address(info, env).token == "t"
