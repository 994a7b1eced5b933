"""A real Prometheus (Debian package) scraping the runtime's own /metrics from the real
model pods, for canary analysis e2e.

It discovers pods through the API server (kubernetes_sd_configs, the way a cluster's
Prometheus does), keeps modelserve runtime pods, and adds `namespace`, `pod` and
`revision` labels from the pod, so the queries users write against a production
Prometheus work here unchanged. It scrapes every second and listens on this host's
address, where the operator pod on the real node reaches it.
"""

from __future__ import annotations

import json
import pathlib
import shutil
import urllib.parse
import urllib.request

import yaml

from e2e.kube import eventually
from e2e.metrics_stack import Process, free_port, host_address

# The labels the chart's ServiceMonitor / a PodMonitor would give a runtime pod's series.
POD_LABELS = {
    "__meta_kubernetes_namespace": "namespace",
    "__meta_kubernetes_pod_name": "pod",
    "__meta_kubernetes_pod_label_modelserve_io_revision": "revision",
    "__meta_kubernetes_pod_label_modelserve_io_pool": "pool",
}


class RuntimePrometheus:
    def __init__(self, kubeconfig: str, work: pathlib.Path):
        binary = shutil.which("prometheus")
        if binary is None:
            raise RuntimeError("prometheus is not installed: run hack/install-prometheus")
        self.host = host_address()
        self.port = free_port()
        config = work / "prometheus-runtime.yml"
        relabel = [
            {"source_labels": ["__meta_kubernetes_pod_label_app_kubernetes_io_name"],
             "regex": "modelserve-runtime", "action": "keep"},
            {"source_labels": ["__meta_kubernetes_pod_container_port_name"],
             "regex": "http", "action": "keep"},
            *({"source_labels": [source], "target_label": target}
              for source, target in POD_LABELS.items()),
        ]
        config.write_text(yaml.safe_dump({
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s",
                       "evaluation_interval": "1s"},
            "scrape_configs": [{
                "job_name": "modelserve-runtime",
                "kubernetes_sd_configs": [{"role": "pod", "kubeconfig_file": kubeconfig}],
                "relabel_configs": relabel,
            }],
        }))
        self.process = Process("prometheus-runtime", [
            binary, f"--config.file={config}", f"--storage.tsdb.path={work / 'tsdb-runtime'}",
            f"--web.listen-address={self.host}:{self.port}"], work)
        eventually(self._ready, timeout=60,
                   what=f"runtime Prometheus ready\n{self.process.log_tail()}")

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
        self.process.stop()
