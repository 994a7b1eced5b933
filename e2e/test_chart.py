"""The Helm chart on the real control plane.

`helm install`, then the operator process runs with the chart's own ServiceAccount token
(so a permission the chart forgot fails here), with the chart's leader-election settings.
Every rendered manifest is validated by the API server itself (`--dry-run=server`, Pod
Security `restricted` enforced on the namespace). Then: apply -> Ready under that
identity, `helm upgrade` to a chart whose CRD changed, and a leader SIGKILLed mid-change.

The flow in `test_models_serve_under_the_charts_identity` is a list of steps; a canary
step (apply v2 -> Paused -> promote/rollback) slots in after `ready`.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import time
import uuid

import pytest
import yaml

from e2e.argocd_health import health
from e2e.kube import Kubectl, eventually
from e2e.objects import modelserve
from e2e.operator_pod import imported_images
from e2e.operator_process import OperatorProcess

ROOT = pathlib.Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "modelserve"
FIXTURES = ROOT / "tests" / "argocd" / "fixtures"
API = "modelserve.io/v1alpha1"
RELEASE = "ms"
SERVICE_ACCOUNT = "ms-modelserve"
LEASE = "ms-modelserve"


def _tool(name: str) -> str:
    if name == "helm":
        bin_dir = subprocess.run([str(ROOT / "hack" / "install-tools"), "--bin-dir"],
                                 capture_output=True, text=True, check=True).stdout.strip()
        return str(pathlib.Path(bin_dir) / "helm")
    return subprocess.run([str(ROOT / "hack" / name)], capture_output=True, text=True,
                          check=True).stdout.strip().splitlines()[-1]


class Helm:
    def __init__(self, kubeconfig: str):
        self.binary = _tool("helm")
        self.env = {**os.environ, "KUBECONFIG": kubeconfig}

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([self.binary, *args], capture_output=True, text=True,
                                env=self.env, timeout=300)
        if check and result.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)}:\n{result.stderr}")
        return result


def version(name: str) -> dict:
    return {"apiVersion": API, "kind": "ModelVersion", "metadata": {"name": name},
            "spec": {"model": {"uri": f"https://models.example.com/{name}.onnx",
                               "format": "onnx"},
                     "runtime": {"backend": "onnxruntime"},
                     "resources": {"gpu": {"count": 1}}}}


def model(name: str, model_version: str, replicas: int = 2, **spec) -> dict:
    return {"apiVersion": API, "kind": "ModelDeployment", "metadata": {"name": name},
            "spec": {"modelVersion": model_version, "replicas": replicas, **spec}}


def md_when(kubectl: Kubectl, namespace: str, name: str, phase: str, timeout: float = 90,
            **fields) -> dict:
    """The ModelDeployment once its status (for the current generation) is `phase`."""
    seen: list[dict] = []

    def check():
        md = kubectl.get("md", name, namespace)
        seen[:] = [md]
        st = md.get("status", {})
        return (st.get("observedGeneration") == md["metadata"]["generation"]
                and st.get("phase") == phase
                and all(st.get(k) == v for k, v in fields.items()) and md)
    try:
        return eventually(check, timeout=timeout, what=f"md/{name} {phase} {fields}")
    except AssertionError as error:
        last = seen[0] if seen else {}
        raise AssertionError(f"{error}\ngeneration {last.get('metadata', {}).get('generation')}"
                             f", status: {json.dumps(last.get('status'), indent=1)}") from None


def save_fixture(name: str, obj: dict) -> None:
    """Status fixtures for tests/argocd, refreshed with MODELSERVE_UPDATE_FIXTURES=1."""
    if os.environ.get("MODELSERVE_UPDATE_FIXTURES") != "1":
        return
    keep = {"apiVersion": obj["apiVersion"], "kind": obj["kind"],
            "metadata": {k: obj["metadata"][k] for k in ("name", "generation")},
            "spec": obj["spec"], "status": obj.get("status")}
    FIXTURES.mkdir(parents=True, exist_ok=True)
    (FIXTURES / f"{name}.json").write_text(json.dumps(keep, indent=2, sort_keys=True) + "\n")


def sa_kubeconfig(kubectl: Kubectl, namespace: str, path: pathlib.Path) -> str:
    """A kubeconfig that authenticates as the chart's ServiceAccount (a bound token)."""
    token = kubectl.run("create", "token", SERVICE_ACCOUNT, "-n", namespace,
                        "--duration=2h").stdout.strip()
    admin = yaml.safe_load(pathlib.Path(kubectl.kubeconfig).read_text())
    current = admin.get("current-context") or admin["contexts"][0]["name"]
    context = next(c for c in admin["contexts"] if c["name"] == current)["context"]
    cluster = next(c for c in admin["clusters"] if c["name"] == context["cluster"])
    config = {"apiVersion": "v1", "kind": "Config", "current-context": "sa",
              "clusters": [cluster],
              "users": [{"name": "sa", "user": {"token": token}}],
              "contexts": [{"name": "sa", "context": {"cluster": cluster["name"],
                                                      "user": "sa"}}]}
    path.write_text(yaml.safe_dump(config))
    return str(path)


@pytest.fixture(scope="module")
def no_session_operator(operator):
    """The session's cluster-admin operator would reconcile our objects (and hide missing
    RBAC): stop it while this module runs, restart it afterwards."""
    operator.stop()
    yield
    operator.start()


@pytest.fixture(scope="module")
def release(kubectl: Kubectl, no_session_operator, tmp_path_factory):
    """`helm install` into a restricted namespace; yields (namespace, settings, helm)."""
    namespace = f"modelserve-system-{uuid.uuid4().hex[:5]}"
    kubectl.run("create", "namespace", namespace)
    kubectl.run("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted",
                "pod-security.kubernetes.io/warn=restricted")
    helm = Helm(kubectl.kubeconfig)
    repository, tag = imported_images()["MODELSERVE_OPERATOR_IMAGE"].rsplit(":", 1)
    helm.run("install", RELEASE, str(CHART), "-n", namespace, "--set",
             f"image.repository={repository}", "--set", f"image.tag={tag}",
             "--set", "image.pullPolicy=Never")
    # The chart's pods are admitted under the restricted Pod Security Standard and really
    # start on the real node; then they step aside, so that the tests below can time and
    # SIGKILL the operator as a local process with the chart's identity and Lease.
    chart_pods_step_aside(kubectl, namespace)
    settings = kubectl.get("configmap", f"{RELEASE}-modelserve-config", namespace)["data"]
    yield namespace, settings, helm
    helm.run("uninstall", RELEASE, "-n", namespace, check=False)
    kubectl.run("delete", "namespace", namespace, "--wait=false", check=False)


def chart_pods_step_aside(kubectl: Kubectl, namespace: str) -> None:
    """Once the release's operator pods are Ready, scale them to 0: they would otherwise
    compete for the Lease with the local processes the tests time and kill."""
    kubectl.run("rollout", "status", f"deployment/{RELEASE}-modelserve", "-n", namespace,
                "--timeout=120s", timeout=150)
    kubectl.run("scale", f"deployment/{RELEASE}-modelserve", "-n", namespace, "--replicas=0")
    eventually(lambda: not kubectl.get("pods", namespace=namespace)["items"], timeout=90,
               what="the chart's operator pods stepped aside")


def chart_operator(kubectl: Kubectl, release, tmp_path: pathlib.Path, identity: str,
                   ) -> OperatorProcess:
    """`modelserve operator run` as the chart's pod runs it: its token, its Lease."""
    namespace, settings, _ = release
    kubeconfig = sa_kubeconfig(kubectl, namespace, tmp_path / f"{identity}.kubeconfig")
    return OperatorProcess(kubeconfig, tmp_path / identity, extra_args=(
        "--leader-election", f"--leader-election-namespace={namespace}",
        f"--leader-election-name={settings['MODELSERVE_LEASE_NAME']}",
        f"--leader-election-identity={identity}",
        f"--leader-election-lease-duration={settings['MODELSERVE_LEASE_DURATION']}",
        f"--leader-election-renew-deadline={settings['MODELSERVE_RENEW_DEADLINE']}",
        f"--leader-election-retry-period={settings['MODELSERVE_RETRY_PERIOD']}",
        "--workers", settings["MODELSERVE_WORKERS"], "--plain-logs"))


# How the API server words an RBAC denial (a 403 for a terminating namespace is not one).
RBAC_DENIED = re.compile(r'forbidden: User "system:serviceaccount:[^"]+" cannot [^\n]*')


def assert_no_permission_errors(process: OperatorProcess) -> None:
    logs = process.logs()
    denied = RBAC_DENIED.findall(logs)
    assert not denied, "the chart's RBAC lacks:\n" + "\n".join(sorted(set(denied)))
    assert not process.tracebacks(), logs[-4000:]


def lease_holder(kubectl: Kubectl, namespace: str) -> str | None:
    lease = kubectl.get("lease", LEASE, namespace, check=False) or {}
    return (lease.get("spec") or {}).get("holderIdentity") or None


# --- every rendered manifest, validated by the API server ---------------------------------

SCENARIOS = [None, *sorted(p.name for p in (CHART / "ci").glob("*-values.yaml"))]


@pytest.mark.parametrize("values", SCENARIOS)
def test_rendered_chart_passes_server_side_validation(kubectl, values, tmp_path):
    helm = Helm(kubectl.kubeconfig)
    kubectl.run("apply", "--server-side", "-f", _tool("install-prometheus-crds"))
    kubectl.run("wait", "--for=condition=Established", "crd/servicemonitors.monitoring.coreos.com",
                "crd/prometheusrules.monitoring.coreos.com", "--timeout=60s")
    namespace = f"chart-dry-{uuid.uuid4().hex[:5]}"
    kubectl.run("create", "namespace", namespace)
    kubectl.run("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted",
                "pod-security.kubernetes.io/warn=restricted")
    extra = []
    if values == "namespaced-values.yaml":  # its Roles go into namespaces that must exist
        extra = ["--set", f"watchNamespaces={{{namespace}}}"]
    try:
        args = ["template", RELEASE, str(CHART), "-n", namespace, "--validate"] + (
            ["-f", str(CHART / "ci" / values)] if values else []) + extra
        manifest = helm.run(*args).stdout
        (tmp_path / "manifest.yaml").write_text(manifest)
        result = kubectl.run("apply", "--dry-run=server", "-n", namespace, "-f",
                             str(tmp_path / "manifest.yaml"))
        assert "would violate PodSecurity" not in result.stderr, result.stderr
        assert "Warning" not in result.stderr, result.stderr
        assert len(result.stdout.splitlines()) == len(
            [d for d in yaml.safe_load_all(manifest) if d]), result.stdout
    finally:
        kubectl.run("delete", "namespace", namespace, "--wait=false", check=False)


def test_argocd_example_models_validate(kubectl, tmp_path):
    namespace = f"argocd-example-{uuid.uuid4().hex[:5]}"
    kubectl.run("create", "namespace", namespace)
    try:
        result = kubectl.run("apply", "--dry-run=server", "-n", namespace, "-f",
                             str(ROOT / "examples" / "argocd" / "models"))
        assert result.stdout.count("(server dry run)") == 2, result.stdout
    finally:
        kubectl.run("delete", "namespace", namespace, "--wait=false", check=False)


# --- apply -> Ready under the chart's identity ----------------------------------------------

def test_models_serve_under_the_charts_identity(kubectl, release, tmp_path):
    operator = chart_operator(kubectl, release, tmp_path, "solo")
    operator.start()
    app = f"app-{uuid.uuid4().hex[:5]}"
    kubectl.run("create", "namespace", app)
    try:
        eventually(lambda: lease_holder(kubectl, release[0]) == "solo", timeout=60,
                   what="the only replica to take the Lease")

        # step: a version that can never be scheduled (no node has 64 GPUs) -> Degraded
        bad = version("huge")
        bad["spec"]["resources"]["gpu"]["count"] = 64
        kubectl.apply([bad, model("stuck", "huge", replicas=1)], app)
        stuck = md_when(kubectl, app, "stuck", "Degraded")
        save_fixture("md-degraded-gpus-unavailable", stuck)
        assert health(stuck)[0] == "Degraded"

        # step: apply -> Progressing -> Ready
        kubectl.apply([version("v1"), model("resnet", "v1")], app)
        mv = eventually(lambda: (kubectl.get("mv", "v1", app).get("status") or {})
                        .get("phase") == "Valid" and kubectl.get("mv", "v1", app),
                        what="mv/v1 Valid")
        save_fixture("mv-valid", mv)
        assert health(mv) == ("Healthy", "Valid: the version can be served")
        ready = md_when(kubectl, app, "resnet", "Ready")
        save_fixture("md-ready", ready)
        assert health(ready)[0] == "Healthy"

        # step: scale -> Ready again at the new generation (and Argo CD never sees a
        # stale Ready as Healthy: generation ahead of observedGeneration is Progressing)
        stale = json.loads(json.dumps(ready))
        stale["metadata"]["generation"] += 1
        assert health(stale)[0] == "Progressing"
        kubectl.apply(model("resnet", "v1", replicas=3), app)
        rescaled = md_when(kubectl, app, "resnet", "Ready", readyReplicas=3)
        assert health(rescaled)[0] == "Healthy"

        # step: a version the operator cannot serve -> Degraded, the message names the field
        invalid = version("wrong-format")
        invalid["spec"]["runtime"]["backend"] = "torch"  # torch cannot load ONNX
        kubectl.apply(invalid, app)
        invalid = eventually(lambda: (kubectl.get("mv", "wrong-format", app).get("status")
                                      or {}).get("phase") == "Invalid"
                             and kubectl.get("mv", "wrong-format", app), what="mv Invalid")
        save_fixture("mv-invalid", invalid)
        assert health(invalid)[0] == "Degraded"
        assert "spec.runtime.backend" in health(invalid)[1]

        # step: a canary (lead's rollout work: promote / rollback steps slot in here)
        canary = {"strategy": "Canary", "canary": {"steps": [
            {"setWeight": 20}, {"pause": {"duration": "1h"}}, {"setWeight": 50},
            {"pause": {}}]}}
        traffic = {"provider": "gateway-api", "gatewayRef": {"name": "inference"}}
        kubectl.apply([version("v2"), model("resnet", "v1", replicas=3, rollout=canary,
                                            traffic=traffic)], app)
        md_when(kubectl, app, "resnet", "Ready")
        kubectl.apply(model("resnet", "v2", replicas=3, rollout=canary, traffic=traffic), app)
        pausing = md_when(kubectl, app, "resnet", "Progressing", canaryWeight=20)
        save_fixture("md-canary-pausing", pausing)
        weight = f'modelserve_operator_canary_weight{{name="resnet",namespace="{app}"}}'
        eventually(lambda: operator.metrics().get(weight) == 20, timeout=30,
                   what="the canary weight on the operator's /metrics")
        assert health(pausing)[0] == "Progressing"
        kubectl.apply(model("resnet", "v2", replicas=3, traffic=traffic, rollout={
            "strategy": "Canary", "canary": {"steps": [{"setWeight": 20}, {"pause": {}}]}}),
            app)
        paused = md_when(kubectl, app, "resnet", "Paused", canaryWeight=20)
        save_fixture("md-canary-paused", paused)
        assert health(paused)[0] == "Suspended"

        # step: promote -> revision 2 serves; then roll back to revision 1 (a user edit,
        # made by the CLI) -> revision 1 serves again at once: it is still scaled up
        modelserve(kubectl, "promote", "resnet", "-n", app)
        promoted = md_when(kubectl, app, "resnet", "Ready", revision=2)
        assert health(promoted)[0] == "Healthy"
        modelserve(kubectl, "rollback", "resnet", "--to-revision", "1", "-n", app)
        rolled_back = md_when(kubectl, app, "resnet", "Ready", revision=1)
        assert rolled_back["status"]["modelVersion"] == "v1"

        # step: the operator changed no spec and wrote only status on what users commit
        md = json.loads(kubectl.run("get", "md", "resnet", "-n", app, "-o", "json",
                                    "--show-managed-fields").stdout)
        operator_writes = {(m["manager"], m.get("subresource", "")) for m in
                           md["metadata"]["managedFields"] if "kubectl" not in m["manager"]}
        assert operator_writes and all(sub == "status" for _, sub in operator_writes), (
            operator_writes)
        # the user's five applies and the rollback edit, nothing more
        assert md["metadata"]["generation"] == 6
    except AssertionError:
        assert_no_permission_errors(operator)  # a missing permission is the likely cause
        raise
    finally:
        operator.stop()
        kubectl.run("delete", "namespace", app, "--wait=false", check=False)
    assert_no_permission_errors(operator)


# --- helm upgrade with a changed CRD ------------------------------------------------------

def test_helm_upgrade_with_a_changed_crd_keeps_models_serving(kubectl, release, tmp_path):
    namespace, _, helm = release
    operator = chart_operator(kubectl, release, tmp_path, "upgrader")
    operator.start()
    app = f"app-{uuid.uuid4().hex[:5]}"
    kubectl.run("create", "namespace", app)
    try:
        kubectl.apply([version("v1"), model("resnet", "v1")], app)
        md_when(kubectl, app, "resnet", "Ready")
        before = {d["metadata"]["name"]: (d["metadata"]["uid"], d["metadata"]["generation"])
                  for d in kubectl.get("deploy", namespace=app)["items"]}

        # The next chart release: a new optional field in the ModelDeployment CRD.
        new_chart = tmp_path / "modelserve"
        shutil.copytree(CHART, new_chart)
        chart_yaml = yaml.safe_load((new_chart / "Chart.yaml").read_text())
        chart_yaml["version"] = "0.1.1-e2e"
        (new_chart / "Chart.yaml").write_text(yaml.safe_dump(chart_yaml))
        crd_path = new_chart / "crds" / "modelserve.io_modeldeployments.yaml"
        crd = yaml.safe_load(crd_path.read_text())
        spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
        spec["properties"]["owner"] = {"type": "string", "maxLength": 63,
                                       "description": "Team that owns this model."}
        crd_path.write_text(yaml.safe_dump(crd, sort_keys=False))

        # The documented upgrade path (docs/helm.md): CRDs first, then the release.
        kubectl.run("apply", "--server-side", "--force-conflicts", "-f",
                    str(new_chart / "crds"))
        kubectl.run("wait", "--for=condition=Established",
                    "crd/modeldeployments.modelserve.io", "--timeout=60s")
        helm.run("upgrade", RELEASE, str(new_chart), "-n", namespace, "--reuse-values")
        assert "0.1.1-e2e" in helm.run("list", "-n", namespace, "-o", "json").stdout
        chart_pods_step_aside(kubectl, namespace)  # the upgrade brought them back

        # The new schema is served (kubectl explain reads it from the API server). The
        # API server republishes its OpenAPI a moment after the CRD is Established: a
        # first explain can still miss the field (seen once in CI).
        explained = eventually(
            lambda: kubectl.run("explain", "modeldeployment.spec.owner", check=False).stdout,
            timeout=60, what="the new CRD field in the served OpenAPI")
        assert "Team that owns this model." in explained

        # Existing models keep serving: same Deployments, untouched, still Ready; and the
        # operator still acts on changes after the upgrade.
        md_when(kubectl, app, "resnet", "Ready")
        after = {d["metadata"]["name"]: (d["metadata"]["uid"], d["metadata"]["generation"])
                 for d in kubectl.get("deploy", namespace=app)["items"]}
        assert after == before
        kubectl.apply(model("resnet", "v1", replicas=3), app)
        md_when(kubectl, app, "resnet", "Ready", readyReplicas=3)
        assert_no_permission_errors(operator)
    except AssertionError:
        assert_no_permission_errors(operator)
        raise
    finally:
        operator.stop()
        kubectl.run("delete", "namespace", app, "--wait=false", check=False)
        # Back to this checkout's CRDs for the tests that follow.
        kubectl.run("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))


# --- high availability ----------------------------------------------------------------------

def test_standby_takes_over_when_the_leader_is_killed(kubectl, release, tmp_path):
    namespace = release[0]
    first = chart_operator(kubectl, release, tmp_path, "replica-a")
    second = chart_operator(kubectl, release, tmp_path, "replica-b")
    first.start()
    eventually(lambda: lease_holder(kubectl, namespace) == "replica-a", timeout=60,
               what="replica-a to lead")
    second.start()
    app = f"app-{uuid.uuid4().hex[:5]}"
    kubectl.run("create", "namespace", app)
    try:
        kubectl.apply([version("v1"), version("v2"), model("resnet", "v1")], app)
        md_when(kubectl, app, "resnet", "Ready", modelVersion="v1")
        assert second.writes() == 0, "a standby wrote to the API server"

        # Mid-change: a new version, and the leader dies the moment the change lands.
        kubectl.apply(model("resnet", "v2", replicas=3), app)
        first.kill(signal.SIGKILL)
        killed = time.monotonic()
        md = kubectl.get("md", "resnet", app)
        done_at_kill = (md.get("status", {}).get("observedGeneration")
                        == md["metadata"]["generation"])

        eventually(lambda: lease_holder(kubectl, namespace) == "replica-b", timeout=90,
                   interval=0.1, what="replica-b to take the Lease")
        takeover = time.monotonic() - killed
        md_when(kubectl, app, "resnet", "Ready", timeout=90, modelVersion="v2",
                readyReplicas=3)
        finished = time.monotonic() - killed
        lease = kubectl.get("lease", LEASE, namespace)["spec"]
        print(f"\nleader SIGKILLed; standby took the Lease after {takeover:.1f}s "
              f"(leaseDuration {lease['leaseDurationSeconds']}s) and finished the change "
              f"after {finished:.1f}s; change already observed at kill: {done_at_kill}; "
              f"leaseTransitions {lease['leaseTransitions']}")
        assert lease["leaseTransitions"] >= 1
        assert second.writes() > 0
        assert_no_permission_errors(second)

        # A clean shutdown hands over at once: the leader releases the Lease.
        first.start()
        second.stop()
        released = time.monotonic()
        eventually(lambda: lease_holder(kubectl, namespace) == "replica-a", timeout=60,
                   interval=0.1, what="replica-a to take over after a clean shutdown")
        print(f"clean shutdown: replica-a took over after {time.monotonic() - released:.1f}s")
    finally:
        first.stop()
        second.stop()
        kubectl.run("delete", "namespace", app, "--wait=false", check=False)
