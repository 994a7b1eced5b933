"""Runtime-format request metrics for canary analysis e2e: a test exporter publishing
`modelserve_requests_total` for chosen (namespace, model, version) with request and error
rates the test sets, scraped by a real Prometheus (Debian package) every second."""

from __future__ import annotations

import json
import pathlib
import shutil
import threading
import time
import urllib.parse
import urllib.request

import yaml

from e2e.kube import eventually
from e2e.metrics_stack import Process, exposition_server, free_port


class RuntimeExporter:
    """Counters that grow at the rates the test sets, as the runtime's /metrics would."""

    def __init__(self) -> None:
        self.port = free_port()
        self._lock = threading.Lock()
        # (namespace, model, version) -> (ok/s, errors/s, ok so far, errors so far, t)
        self._series: dict[tuple[str, str, str], list[float]] = {}
        self.server = exposition_server(self.port, self.exposition)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def set_rates(self, namespace: str, model: str, version: str, ok: float,
                  errors: float) -> None:
        with self._lock:
            self._advance()
            series = self._series.setdefault((namespace, model, version),
                                             [0.0, 0.0, 0.0, 0.0, time.monotonic()])
            series[0], series[1] = ok, errors

    def _advance(self) -> None:
        now = time.monotonic()
        for series in self._series.values():
            elapsed = now - series[4]
            series[2] += series[0] * elapsed
            series[3] += series[1] * elapsed
            series[4] = now

    def exposition(self) -> str:
        lines = ["# TYPE modelserve_requests_total counter"]
        with self._lock:
            self._advance()
            for (namespace, model, version), s in self._series.items():
                labels = f'namespace="{namespace}",model="{model}",version="{version}"'
                lines.append(f'modelserve_requests_total{{{labels},status="200"}} {s[2]:.3f}')
                lines.append(f'modelserve_requests_total{{{labels},status="500"}} {s[3]:.3f}')
        return "\n".join(lines) + "\n"

    def stop(self) -> None:
        self.server.shutdown()


class RuntimePrometheus:
    def __init__(self, work: pathlib.Path):
        self.exporter = RuntimeExporter()
        self.port = free_port()
        self.work = work
        binary = shutil.which("prometheus")
        if binary is None:
            raise RuntimeError("prometheus is not installed: run hack/install-prometheus")
        config = work / "prometheus-runtime.yml"
        # honor_labels: the exporter already carries the namespace label Prometheus's
        # Kubernetes discovery would add to a real runtime pod's series.
        config.write_text(yaml.safe_dump({
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
            "scrape_configs": [{"job_name": "modelserve-runtime", "honor_labels": True,
                                "static_configs": [
                                    {"targets": [f"127.0.0.1:{self.exporter.port}"]}]}],
        }))
        self.process = Process("prometheus-runtime", [
            binary, f"--config.file={config}", f"--storage.tsdb.path={work / 'tsdb-runtime'}",
            f"--web.listen-address=127.0.0.1:{self.port}"], work)
        eventually(self._ready, timeout=60, what="runtime Prometheus ready")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

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
        self.exporter.stop()
