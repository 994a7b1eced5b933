"""Session-wide local cluster and CRDs; a fresh namespace per test.

If the cluster is not running, the session starts it with `hack/cluster up` and stops it
at the end; when it already runs (hack/test, or a developer's shell) it is left running.
"""

from __future__ import annotations

import pathlib
import subprocess
import uuid

import pytest

from e2e.kube import Kubectl

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
    kube.run("wait", "--for=condition=Established", "crd", "-l", "", "--all", "--timeout=60s")
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
