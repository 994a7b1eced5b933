"""A real Prometheus (Debian package) scraping the runtime's own /metrics from the real
model pods, for canary analysis e2e.

Debian's Prometheus is built without Kubernetes service discovery, so a thread here does
what kubernetes_sd_configs would: it lists the runtime pods through the API server every
second and writes them as file_sd targets with the labels a production scrape config
gives them (`namespace`, `pod`, `revision`, `pool`), so the queries users write against
their Prometheus work here unchanged. Prometheus scrapes the pods themselves every
second and listens on this host's address, where the operator pod on the real node
reaches it.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import threading
import urllib.parse
import urllib.request

import yaml

from e2e.kube import Kubectl, eventually
from e2e.metrics_stack import Process, free_port, host_address

RUNTIME_PODS = "app.kubernetes.io/name=modelserve-runtime"


def scrape_targets(pods: list[dict]) -> list[dict]:
    """file_sd groups for running runtime pods, labelled as a PodMonitor would."""
    groups = []
    for pod in pods:
        ip = pod.get("status", {}).get("podIP")
        if not ip or pod["status"].get("phase") != "Running":
            continue
        port = next((p["containerPort"] for c in pod["spec"]["containers"]
                     for p in c.get("ports", []) if p.get("name") == "http"), None)
        if port is None:
            continue
        meta = pod["metadata"]
        groups.append({"targets": [f"{ip}:{port}"], "labels": {
            "namespace": meta["namespace"], "pod": meta["name"],
            "revision": meta.get("labels", {}).get("modelserve.io/revision", ""),
            "pool": meta.get("labels", {}).get("modelserve.io/pool", "")}})
    return groups


class RuntimePrometheus:
    def __init__(self, kubectl: Kubectl, work: pathlib.Path):
        binary = shutil.which("prometheus")
        if binary is None:
            raise RuntimeError("prometheus is not installed: run hack/install-prometheus")
        self.kubectl = kubectl
        self.host = host_address()
        self.port = free_port()
        self.targets = work / "runtime-pods.json"
        self.targets.write_text("[]")
        self._stop = threading.Event()
        self._discovery = threading.Thread(target=self._discover, daemon=True)
        self._discovery.start()
        config = work / "prometheus-runtime.yml"
        config.write_text(yaml.safe_dump({
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s",
                       "evaluation_interval": "1s"},
            "scrape_configs": [{
                "job_name": "modelserve-runtime",
                "file_sd_configs": [{"files": [str(self.targets)], "refresh_interval": "1s"}],
            }],
        }))
        self.process = Process("prometheus-runtime", [
            binary, f"--config.file={config}", f"--storage.tsdb.path={work / 'tsdb-runtime'}",
            f"--web.listen-address={self.host}:{self.port}"], work)
        eventually(self._ready, timeout=60,
                   what=f"runtime Prometheus ready\n{self.process.log_tail()}")

    def _discover(self) -> None:
        while not self._stop.wait(1.0):
            result = self.kubectl.run("get", "pods", "-A", "-l", RUNTIME_PODS, "-o", "json",
                                      check=False)
            if result.returncode != 0:
                continue
            groups = scrape_targets(json.loads(result.stdout)["items"])
            tmp = self.targets.with_suffix(".tmp")
            tmp.write_text(json.dumps(groups))
            os.replace(tmp, self.targets)  # Prometheus never reads half a file

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def value(self, promql: str) -> float | None:
        """The first sample of an instant query, None without data."""
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(url, timeout=5) as response:
            result = json.load(response)["data"]["result"]
        return float(result[0]["value"][1]) if result else None

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def stop(self) -> None:
        self._stop.set()
        self.process.stop()
