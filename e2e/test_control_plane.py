"""What GitOps tools and on-call engineers see: kstatus through a canary, an emergency
rollback straight to a retained revision, and the CLI through the official client with a
kubeconfig whose credential comes from an exec plugin.

The session's operator runs these (the chart's pod); `MODELSERVE_E2E_OPERATOR=process`
runs the operator as a local process instead, for a cluster without a real node
(`MODELSERVE_REAL_NODE=0 hack/cluster up`).
"""

from __future__ import annotations

import json
import os
import pathlib
import sys
import textwrap
import time

import pytest
import yaml

from e2e import kstatus
from e2e.kube import Kubectl, eventually
from e2e.objects import deployment, modelserve, status, version, wait_status
from e2e.operator_process import OperatorProcess

ROOT = pathlib.Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "kstatus" / "fixtures"
PAUSED_CANARY = {"strategy": "Canary", "scaleDownDelaySeconds": 0,
                 "progressDeadlineSeconds": 60,
                 "canary": {"steps": [{"setWeight": 20}, {"pause": {}}]}}


@pytest.fixture(scope="module")
def control_operator(request: pytest.FixtureRequest, kubectl: Kubectl,
                     tmp_path_factory: pytest.TempPathFactory):
    if os.environ.get("MODELSERVE_E2E_OPERATOR") != "process":
        yield request.getfixturevalue("operator")
        return
    process = OperatorProcess(kubectl.kubeconfig, tmp_path_factory.mktemp("operator"))
    process.start()
    yield process
    process.stop()
    assert "Traceback" not in process.logs(), process.logs()[-5000:]


def save_fixture(name: str, obj: dict) -> None:
    """kstatus fixtures for tests/kstatus, refreshed with MODELSERVE_UPDATE_FIXTURES=1."""
    if os.environ.get("MODELSERVE_UPDATE_FIXTURES") != "1":
        return
    keep = {k: obj["metadata"][k] for k in ("name", "generation") if k in obj["metadata"]}
    slim = {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "metadata": keep,
            "spec": obj.get("spec", {}), "status": obj.get("status", {})}
    FIXTURES.mkdir(parents=True, exist_ok=True)
    (FIXTURES / f"{name}.json").write_text(json.dumps(slim, indent=2, sort_keys=True) + "\n")


def judged(kubectl: Kubectl, kind: str, namespace: str, name: str, expected: str,
           fixture: str | None = None, timeout: float = 60) -> dict:
    """Wait until kstatus reads `expected` on the live object; keep it as a fixture."""
    seen: list[tuple[str, str]] = []

    def check():
        obj = kubectl.get(kind, name, namespace)
        verdict = kstatus.judge(obj)
        seen.append(verdict)
        return verdict[0] == expected and obj
    obj = eventually(check, timeout=timeout, what=f"kstatus {expected} for {kind}/{name} "
                                                  f"(last: {seen[-1:]})")
    if fixture:
        save_fixture(fixture, obj)
    return obj


def test_kstatus_reads_every_phase_of_a_canary(kubectl, namespace, control_operator):
    kubectl.apply([version("v1"), version("v2"), version("v3"),
                   version("bad", backend="torch"),  # torch cannot load onnx: Invalid
                   deployment("m", "v1", replicas=2, rollout=PAUSED_CANARY)], namespace)
    judged(kubectl, "mv", namespace, "v1", "Current", "mv-valid")
    judged(kubectl, "mv", namespace, "bad", "Failed", "mv-invalid")
    judged(kubectl, "md", namespace, "m", "Current", "md-ready")

    kubectl.apply(deployment("m", "v2", replicas=2, rollout=PAUSED_CANARY), namespace)
    wait_status(kubectl, namespace, "m", canaryRevision=2, phase="Paused")
    judged(kubectl, "md", namespace, "m", "InProgress", "md-canary-paused")
    modelserve(kubectl, "promote", "m", "-n", namespace)
    wait_status(kubectl, namespace, "m", revision=2, phase="Ready")
    judged(kubectl, "md", namespace, "m", "Current")

    # A canary that is aborted: traffic back on stable, Degraded, and kstatus Failed until
    # the spec changes (no progress is possible without a person).
    kubectl.apply(deployment("m", "v3", replicas=2, rollout=PAUSED_CANARY), namespace)
    wait_status(kubectl, namespace, "m", canaryRevision=3, phase="Paused")
    modelserve(kubectl, "abort", "m", "-n", namespace)
    wait_status(kubectl, namespace, "m", phase="Degraded", revision=2)
    judged(kubectl, "md", namespace, "m", "Failed", "md-aborted")

    # The serving revision's ModelVersion is deleted: its pods keep serving (Ready), the
    # spec cannot be acted on (Degraded, Stalled: Failed).
    kubectl.apply(deployment("m", "v2", replicas=2, rollout=PAUSED_CANARY), namespace)
    wait_status(kubectl, namespace, "m", phase="Ready", revision=2)
    kubectl.run("delete", "mv", "v2", "-n", namespace)
    obj = judged(kubectl, "md", namespace, "m", "Failed", "md-serving-version-deleted")
    conditions = {c["type"]: (c["status"], c["reason"]) for c in obj["status"]["conditions"]}
    assert conditions["Ready"] == ("True", "Serving"), conditions
    assert conditions["Degraded"] == ("True", "ModelVersionNotFound"), conditions
    assert kubectl.get("deploy", "m-r2", namespace)["spec"]["replicas"] == 2


def test_emergency_rollback_goes_straight_to_a_retained_revision(kubectl, namespace,
                                                                  control_operator):
    kubectl.apply([version("v1"), version("v2"),
                   deployment("m", "v1", replicas=3, rollout=PAUSED_CANARY)], namespace)
    wait_status(kubectl, namespace, "m", revision=1, phase="Ready")
    kubectl.apply(deployment("m", "v2", replicas=3, rollout=PAUSED_CANARY), namespace)
    wait_status(kubectl, namespace, "m", canaryRevision=2, phase="Paused")
    modelserve(kubectl, "promote", "m", "-n", namespace)
    wait_status(kubectl, namespace, "m", revision=2, phase="Ready")
    eventually(lambda: kubectl.get("deploy", "m-r1", namespace, check=False) is None,
               timeout=60, what="revision 1 scaled away (scaleDownDelaySeconds 0)")

    started = time.monotonic()
    out = modelserve(kubectl, "rollback", "m", "-n", namespace, "--to-revision", "1",
                     "--wait").stdout
    took = time.monotonic() - started
    print(f"\nemergency rollback to a scaled-away revision: 100% on revision 1 after "
          f"{took:.1f}s (CLI: {out.strip().splitlines()[-1]})")
    assert "directly, skipping the canary steps" in out and "serves 100%" in out, out
    st = status(kubectl, namespace, "m")
    assert (st["revision"], st["phase"], st.get("canaryRevision")) == (1, "Ready", None)
    reasons = [e["reason"] for e in kubectl.get("events", namespace=namespace)["items"]]
    assert "RollbackStarted" in reasons and reasons.count("CanaryStarted") == 1, reasons
    history = {e["revision"]: e for e in st["history"]}
    assert history[1]["outcome"] == "Serving" and "stoppedAt" not in history[1]
    assert history[2]["outcome"] == "Superseded" and history[2]["stoppedAt"]

    # Opting into the steps: the rollback pauses where the canary would, and --wait says so.
    out = modelserve(kubectl, "rollback", "m", "-n", namespace, "--to-revision", "2",
                     "--canary", "--wait").stdout
    assert "through the canary steps" in out and "paused at 20%" in out, out
    wait_status(kubectl, namespace, "m", revision=1, canaryRevision=2, phase="Paused")


PLUGIN = textwrap.dedent("""\
    import json, pathlib, sys
    calls = pathlib.Path(sys.argv[1])
    calls.write_text(str(int(calls.read_text() or 0) + 1) if calls.exists() else "1")
    print(json.dumps({"apiVersion": "client.authentication.k8s.io/v1",
                      "kind": "ExecCredential",
                      "status": {"token": pathlib.Path(sys.argv[2]).read_text().strip()}}))
""")


def exec_plugin_kubeconfig(kubectl: Kubectl, namespace: str, tmp: pathlib.Path) -> pathlib.Path:
    """A kubeconfig for a service account whose token comes from an exec plugin, with a
    second context that is the current one, as a user with several clusters has."""
    kubectl.run("create", "serviceaccount", "oncall", "-n", namespace)
    kubectl.apply({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                   "metadata": {"name": "oncall"},
                   "rules": [{"apiGroups": ["modelserve.io"],
                              "resources": ["modeldeployments", "modelversions",
                                            "modeldeployments/status"],
                              "verbs": ["get", "list", "patch"]},
                             {"apiGroups": [""], "resources": ["events"],
                              "verbs": ["list"]}]}, namespace)
    kubectl.run("create", "rolebinding", "oncall", "-n", namespace, "--role=oncall",
                f"--serviceaccount={namespace}:oncall")
    (tmp / "token").write_text(kubectl.run("create", "token", "oncall", "-n", namespace)
                               .stdout.strip())
    (tmp / "plugin.py").write_text(PLUGIN)
    admin = yaml.safe_load(kubectl.run("config", "view", "--raw", "--minify",
                                       "--flatten").stdout)
    cluster = admin["clusters"][0]["cluster"]
    config = {
        "apiVersion": "v1", "kind": "Config", "current-context": "elsewhere",
        "clusters": [{"name": "local", "cluster": cluster},
                     {"name": "elsewhere", "cluster": {"server": "https://127.0.0.1:9"}}],
        "users": [{"name": "oncall", "user": {"exec": {
            "apiVersion": "client.authentication.k8s.io/v1", "command": sys.executable,
            "args": [str(tmp / "plugin.py"), str(tmp / "calls"), str(tmp / "token")],
            "interactiveMode": "Never"}}}],
        "contexts": [{"name": "oncall", "context": {"cluster": "local", "user": "oncall",
                                                     "namespace": namespace}},
                     {"name": "elsewhere", "context": {"cluster": "elsewhere",
                                                        "user": "oncall"}}]}
    path = tmp / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return path


def test_cli_through_the_official_client_with_an_exec_plugin(kubectl, namespace,
                                                             control_operator, tmp_path):
    kubectl.apply([version("v1"), version("v2"),
                   deployment("m", "v1", replicas=2, rollout=PAUSED_CANARY)], namespace)
    wait_status(kubectl, namespace, "m", revision=1, phase="Ready")
    kubectl.apply(deployment("m", "v2", replicas=2, rollout=PAUSED_CANARY), namespace)
    wait_status(kubectl, namespace, "m", canaryRevision=2, phase="Paused")
    config = exec_plugin_kubeconfig(kubectl, namespace, tmp_path)
    user = Kubectl(kubectl.binary, str(config))

    # No -n: the namespace comes from the chosen context, as for kubectl.
    out = modelserve(user, "status", "m", "--context", "oncall").stdout
    assert "Canary:      revision 2" in out and "CanaryStarted" in out, out
    modelserve(user, "promote", "m", "--context", "oncall")
    wait_status(kubectl, namespace, "m", revision=2, phase="Ready")
    table = modelserve(user, "history", "m", "--context", "oncall").stdout
    assert "2 *" in table and "Superseded" in table, table
    assert int((tmp_path / "calls").read_text()) >= 3  # each command asked the plugin

    # The current context points elsewhere: without --context the CLI says so plainly.
    failed = modelserve(user, "status", "m", "-n", namespace, check=False)
    assert failed.returncode == 1 and "cannot reach the API server" in failed.stderr, (
        failed.stderr)
    # What the service account may not do is the API server's answer, named.
    denied = modelserve(user, "status", "m", "--context", "oncall", "-n", "default",
                        check=False)
    assert denied.returncode == 1 and "forbidden" in denied.stderr, denied.stderr
