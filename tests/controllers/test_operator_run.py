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
