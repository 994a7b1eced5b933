"""checkov on every rendered scenario: nothing fails that is not explained here."""

from __future__ import annotations

import json
import pathlib
import subprocess

import pytest
from chart_render import ROOT, SCENARIOS, helm_template

# (check, kind of resource) -> why it does not apply. Every entry must still be needed
# (the test fails on a stale one), so the list cannot silently grow.
EXPLAINED = {
    ("CKV_K8S_11", "Deployment"):
        "No CPU limit on purpose: CFS throttling of a single-threaded asyncio controller "
        "delays watch events and Lease renewals; the request reserves what it needs.",
    ("CKV_K8S_43", "Deployment"):
        "Image by digest is supported (image.digest; see ci/single-replica-values.yaml); the "
        "default is the chart's appVersion tag so `helm install` works without one.",
    ("CKV_K8S_38", "Deployment"):
        "The operator is a Kubernetes API client: it needs its service account token. "
        "The ServiceAccount itself sets automountServiceAccountToken: false.",
    ("CKV_K8S_15", "Deployment"):
        "IfNotPresent with immutable version tags or digests: Always would make a failover to "
        "a standby depend on the registry being reachable.",
    ("CKV_K8S_8", "Pod"):
        "The `helm test` pod runs one wget and exits; there is nothing to probe for liveness.",
    ("CKV_K8S_9", "Pod"):
        "The `helm test` pod runs one wget and exits; it serves nothing to be ready for.",
    ("CKV_K8S_11", "Pod"):
        "The `helm test` pod runs for a second; a CPU limit would only slow it down.",
    ("CKV_K8S_43", "Pod"):
        "The `helm test` image is a value (tests.image) users may pin by digest.",
    ("CKV_K8S_15", "Pod"):
        "The `helm test` image is pinned by tag; pulling it every run adds nothing.",
    ("CKV2_K8S_6", "Pod"):
        "The `helm test` pod is a client of the metrics Service and accepts no connections; "
        "the operator pods are covered by the chart's NetworkPolicy.",
}


@pytest.fixture(scope="module")
def checkov() -> str:
    path = subprocess.run([str(ROOT / "hack" / "install-checkov")], capture_output=True,
                          text=True)
    if path.returncode != 0:
        pytest.skip(f"checkov could not be installed: {path.stderr[-500:]}")
    return path.stdout.strip().splitlines()[-1]


def test_checkov_finds_nothing_unexplained(helm, checkov, tmp_path: pathlib.Path):
    seen = set()
    for values in (None, *SCENARIOS):
        manifest = tmp_path / f"{values or 'default'}.yaml"
        manifest.write_text(helm_template(helm, values=values).stdout)
        result = subprocess.run(
            [checkov, "-f", str(manifest), "--framework", "kubernetes", "--quiet",
             "--compact", "-o", "json"], capture_output=True, text=True)
        report = json.loads(result.stdout)
        assert report["summary"]["parsing_errors"] == 0
        for failed in report["results"]["failed_checks"]:
            kind = failed["resource"].split(".", 1)[0]
            key = (failed["check_id"], kind)
            assert key in EXPLAINED, (
                f"{values or 'default values'}: {failed['check_id']} "
                f"{failed['check_name']} on {failed['resource']}: fix the chart, or explain it "
                f"in EXPLAINED")
            seen.add(key)
    assert set(EXPLAINED) <= seen, f"stale explanations: {set(EXPLAINED) - seen}"
