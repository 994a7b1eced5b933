"""Session-wide local cluster, CRDs and operator; a fresh namespace per test.

If the cluster is not running, the session starts it with `hack/cluster up` and stops it
at the end; when it already runs (hack/test, or a developer's shell) it is left running.
The session's operator is the chart's, running as pods on the real node (OperatorPod);
real models are served to the runtime pods from this host (ModelStore).
"""

from __future__ import annotations

import pathlib
import subprocess
import uuid

import pytest

from e2e.kube import Kubectl
from e2e.models import ModelStore
from e2e.operator_pod import OperatorPod
from e2e.runtime_metrics import RuntimePrometheus

ROOT = pathlib.Path(__file__).resolve().parent.parent
HACK = ROOT / "hack"


def _hack(*args: str) -> str:
    return subprocess.run([str(HACK / args[0]), *args[1:]], check=True, capture_output=True,
                          text=True).stdout.strip()


@pytest.fixture(scope="session")
def kubectl() -> Kubectl:
    started_here = subprocess.run([str(HACK / "cluster"), "status"],
                                  capture_output=True).returncode != 0
    if started_here:
        subprocess.run([str(HACK / "cluster"), "up"], check=True)
    kubeconfig = _hack("cluster", "env").split("=", 1)[1]
    kube = Kubectl(str(pathlib.Path(_hack("install-tools", "--bin-dir")) / "kubectl"), kubeconfig)
    kube.run("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
    gateway_crds = pathlib.Path(_hack("install-tools", "--bin-dir")) / "gateway-api-crds.yaml"
    kube.run("apply", "--server-side", "--force-conflicts", "-f", str(gateway_crds))
    kube.run("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
    yield kube
    if started_here:
        subprocess.run([str(HACK / "cluster"), "down"], check=False)


@pytest.fixture
def namespace(kubectl: Kubectl, request: pytest.FixtureRequest) -> str:
    name = f"e2e-{request.node.name[:40].lower().replace('_', '-')}-{uuid.uuid4().hex[:5]}"
    name = "".join(c for c in name if c.isalnum() or c == "-").strip("-")
    kubectl.run("create", "namespace", name)
    yield name
    kubectl.run("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="session")
def operator(kubectl: Kubectl) -> OperatorPod:
    """The chart's operator on the real node for the session (tests may kill its leader,
    stop and start it)."""
    helm = str(pathlib.Path(_hack("install-tools", "--bin-dir")) / "helm")
    pod = OperatorPod(kubectl, helm)
    pod.install()
    yield pod
    logs = pod.logs()
    pod.stop()
    assert "Traceback" not in logs, logs[-5000:]


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> ModelStore:
    """Real ONNX models served over HTTP from this host to the runtime pods."""
    store = ModelStore(tmp_path_factory.mktemp("models"))
    yield store
    store.stop()


@pytest.fixture(scope="session")
def runtime_prometheus(kubectl: Kubectl,
                       tmp_path_factory: pytest.TempPathFactory) -> RuntimePrometheus:
    """A real Prometheus scraping the real runtime pods' /metrics."""
    stack = RuntimePrometheus(kubectl, tmp_path_factory.mktemp("runtime-prom"))
    yield stack
    stack.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """On failure, attach the operator's log tail and the namespace's objects and Events."""
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed:
        return
    funcargs = getattr(item, "funcargs", {})
    kube, namespace = funcargs.get("kubectl"), funcargs.get("namespace")
    if kube and namespace:
        for what in (("get", "md,mv,deploy,svc,pods", "-o", "wide"),
                     ("get", "events", "--sort-by=.lastTimestamp"),
                     ("get", "md", "-o", "yaml")):
            result = kube.run(*what, "-n", namespace, check=False)
            report.sections.append((f"kubectl {' '.join(what)}", result.stdout[-6000:]))
    if "operator" in funcargs:
        report.sections.append(("operator log", funcargs["operator"].logs()[-6000:]))
