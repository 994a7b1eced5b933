"""The operator as users run it: the chart installed with the image hack/build-images
made, its pods on the real node, reaching the API server through in-cluster config.

Same interface as OperatorProcess (start/stop/kill/metrics/logs), so tests do not care
which one they drive; the out-of-cluster process stays for tests that must time or
signal the operator precisely (e2e/test_chart.py).
"""

from __future__ import annotations

import json
import pathlib
import signal
import subprocess
import time

from e2e.kube import Kubectl, eventually, kill_container
from e2e.operator_process import OperatorReadings
from e2e.prometheus_text import scrape

ROOT = pathlib.Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "modelserve"
NAMESPACE = "modelserve-system"
RELEASE = "modelserve"
DEPLOYMENT = "modelserve"  # the chart's fullname for release "modelserve"
METRICS_PORT = 8080


def imported_images() -> dict[str, str]:
    """Build (cached) and import this tree's images into the real node; their references.
    One call gives both, so a tree that changes meanwhile cannot split them."""
    out = subprocess.run([str(ROOT / "hack" / "cluster"), "images"], check=True,
                         capture_output=True, text=True).stdout
    return dict(line.split("=", 1) for line in out.split())


class OperatorPod(OperatorReadings):
    def __init__(self, kubectl: Kubectl, helm: str, replicas: int = 2,
                 values: dict[str, str] | None = None):
        self.kubectl = kubectl
        self.helm = helm
        self.replicas = replicas
        self.values = values or {}
        self._logs: dict[str, str] = {}  # pod/container-start -> log, kept across restarts

    def install(self) -> None:
        refs = imported_images()  # the cluster may predate a change to the tree
        repository, tag = refs["MODELSERVE_OPERATOR_IMAGE"].rsplit(":", 1)
        self.kubectl.run("create", "namespace", NAMESPACE, check=False)
        self.kubectl.run("label", "--overwrite", "namespace", NAMESPACE,
                         "pod-security.kubernetes.io/enforce=restricted")
        values = {
            "image.repository": repository, "image.tag": tag,
            # Imported into the node's containerd; there is no registry to pull from.
            "image.pullPolicy": "Never",
            "operator.runtimeImage": refs["MODELSERVE_RUNTIME_IMAGE"],
            "operator.logFormat": "plain",
            "replicas": str(self.replicas),
            **self.values,
        }
        args = [arg for k, v in values.items() for arg in ("--set", f"{k}={v}")]
        for attempt in range(3):
            helm = self._helm("upgrade", "--install", RELEASE, str(CHART), "-n", NAMESPACE,
                              "--wait", "--timeout", "180s", *args)
            if helm.returncode == 0 or "another operation" not in helm.stderr or attempt == 2:
                break
            # A release left pending by an interrupted run (or another session on this
            # cluster): give a live operation time to finish, then roll the leftover back.
            time.sleep(20)
            self._helm("rollback", RELEASE, "-n", NAMESPACE, "--wait", "--timeout", "120s")
        if helm.returncode != 0:
            raise AssertionError(f"helm upgrade --install: {helm.stderr}\n{self.describe()}")
        self.wait_leader()

    def _helm(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([self.helm, *args], capture_output=True, text=True,
                              env=self.kubectl.env, timeout=300)

    # -- the OperatorProcess interface -----------------------------------------------------

    def start(self) -> None:
        self.kubectl.run("scale", "deploy", DEPLOYMENT, "-n", NAMESPACE,
                         f"--replicas={self.replicas}")
        self.kubectl.run("rollout", "status", "deploy", DEPLOYMENT, "-n", NAMESPACE,
                         "--timeout=180s", timeout=200)
        self.wait_leader()

    def stop(self) -> None:
        self._collect_logs()
        self.kubectl.run("scale", "deploy", DEPLOYMENT, "-n", NAMESPACE, "--replicas=0")
        eventually(lambda: not self._pods(), timeout=90, what="operator pods gone")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the leader's operator process on the node, as a crash or OOM kill would
        (the kubelet restarts the container; a standby takes the lease meanwhile)."""
        leader = self.leader_pod()
        self._collect_logs()
        kill_container(leader["status"]["containerStatuses"][0]["containerID"], sig)

    def metrics(self) -> dict[str, float]:
        """The leader's Prometheus samples as {'name{labels}': value}."""
        return scrape(f"http://{self.leader_pod()['status']['podIP']}:{METRICS_PORT}/metrics")

    def logs(self) -> str:
        self._collect_logs()
        return "\n".join(self._logs.values())

    # -- helpers ---------------------------------------------------------------------------

    def _pods(self) -> list[dict]:
        found = self.kubectl.get("pods", namespace=NAMESPACE)["items"]
        return [p for p in found
                if p["metadata"].get("labels", {}).get("app.kubernetes.io/instance") == RELEASE
                and p["metadata"].get("deletionTimestamp") is None]

    def leader_identity(self) -> str:
        lease = self.kubectl.get("lease", DEPLOYMENT, NAMESPACE, check=False) or {}
        return lease.get("spec", {}).get("holderIdentity") or ""

    def leader_pod(self) -> dict:
        holder = self.leader_identity()
        for pod in self._pods():
            if holder.startswith(pod["metadata"]["name"]):
                return pod
        raise AssertionError(f"no operator pod holds the lease (holder {holder!r})")

    def wait_leader(self, timeout: float = 90) -> dict:
        def ready_leader():
            try:
                pod = self.leader_pod()
            except AssertionError:
                return None
            statuses = pod["status"].get("containerStatuses", [])
            return pod if statuses and all(s.get("ready") for s in statuses) else None
        return eventually(ready_leader, timeout=timeout, what="a Ready operator pod leading")

    def _collect_logs(self) -> None:
        for pod in self._pods():
            name = pod["metadata"]["name"]
            for status in pod["status"].get("containerStatuses", []):
                restarts = status.get("restartCount", 0)
                for previous, count in ((True, restarts - 1), (False, restarts)):
                    if count < 0:
                        continue
                    args = ["logs", name, "-n", NAMESPACE] + (["--previous"] if previous else [])
                    result = self.kubectl.run(*args, check=False)
                    if result.returncode == 0:
                        self._logs[f"{name}#{count}"] = result.stdout

    def describe(self) -> str:
        pods = self.kubectl.get("pods", namespace=NAMESPACE)
        return json.dumps([{"name": p["metadata"]["name"], "status": p["status"]}
                           for p in pods["items"]], indent=1)[-4000:]
