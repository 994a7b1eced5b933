"""The GPU metrics pipeline for autoscaling e2e, all real parts, started once a session.

  test exporter (this process)  dcgm-exporter's exposition format: DCGM_FI_DEV_GPU_UTIL
        |  scraped every second  with namespace/pod labels for a ModelDeployment's pods
  Prometheus (Debian package)
        |  queried
  Prometheus Adapter             the rules of charts/prometheus-adapter-values.yaml,
        |  APIService            served as custom.metrics.k8s.io v1beta1/v1beta2
  kube-apiserver  ->  kube-controller-manager's HPA controller

The cluster has no pod network, so the adapter runs on this host and the API server
reaches it through a selector-less Service whose endpoint is this host's address
(hack/cluster turns on --enable-aggregator-routing for that).
"""

from __future__ import annotations

import contextlib
import json
import math
import pathlib
import shutil
import socket
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import yaml

from e2e.host_process import Process, free_port
from e2e.kube import Kubectl, eventually

ROOT = pathlib.Path(__file__).resolve().parent.parent
ADAPTER_VALUES = ROOT / "charts" / "prometheus-adapter-values.yaml"
NAMESPACE = "modelserve-metrics-e2e"
API_VERSIONS = ("v1beta1", "v1beta2")
# dcgm-exporter's label pairs for the GPU's pod (see render/autoscaling.py).
VARIANTS = {"pod": ("namespace", "pod"), "pod_name": ("pod_namespace", "pod_name"),
            "exported": ("exported_namespace", "exported_pod")}


def exposition_server(port: int, exposition: Callable[[], str]) -> ThreadingHTTPServer:
    """An HTTP server on 127.0.0.1:`port` answering every GET with `exposition()`, in
    Prometheus' text format (the caller starts serve_forever)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = exposition().encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: Any) -> None:
            pass

    return ThreadingHTTPServer(("127.0.0.1", port), Handler)


def host_address() -> str:
    """A non-loopback IPv4 address of this host (Endpoints reject 127.0.0.0/8)."""
    candidates = []
    with contextlib.suppress(OSError):
        candidates += socket.gethostbyname_ex(socket.gethostname())[2]
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        candidates += subprocess.run(["hostname", "-I"], capture_output=True, text=True,
                                     timeout=5).stdout.split()
    for address in candidates:
        if "." in address and not address.startswith("127."):
            return address
    raise RuntimeError(f"no non-loopback IPv4 address on this host (saw {candidates})")


@dataclass
class Load:
    """GPU work spread evenly over a ModelDeployment's primary pods.

    `total` is in percent of one GPU: 250 over 4 pods is 62.5% each. A pod is never
    busier than 100%, as with a real GPU, so the HPA scales up in steps.
    """

    total: float
    variant: str = "pod"


class GpuExporter:
    """An HTTP server speaking dcgm-exporter's format for pods the test names."""

    def __init__(self, kubectl: Kubectl):
        self.kubectl = kubectl
        self.loads: dict[tuple[str, str], Load] = {}
        self.lock = threading.Lock()
        self.port = free_port()
        self.server = exposition_server(self.port, self.exposition)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()

    def set_load(self, namespace: str, md: str, total: float, variant: str = "pod") -> None:
        with self.lock:
            self.loads[(namespace, md)] = Load(total, variant)

    def clear(self, namespace: str, md: str) -> None:
        with self.lock:
            self.loads.pop((namespace, md), None)

    def _pods(self, namespace: str, md: str) -> list[dict[str, Any]]:
        result = self.kubectl.run(
            "get", "pods", "-n", namespace, "-o", "json",
            "-l", f"modelserve.io/deployment={md},modelserve.io/pool=primary", check=False)
        if result.returncode != 0:
            return []
        return [p for p in json.loads(result.stdout)["items"]
                if p["status"].get("phase") == "Running"
                and not p["metadata"].get("deletionTimestamp")]

    def exposition(self) -> str:
        with self.lock:
            loads = dict(self.loads)
        lines = ["# HELP DCGM_FI_DEV_GPU_UTIL GPU utilization (in %).",
                 "# TYPE DCGM_FI_DEV_GPU_UTIL gauge"]
        for (namespace, md), load in sorted(loads.items()):
            pods = self._pods(namespace, md)
            if not pods:
                continue
            each = min(100.0, load.total / len(pods))
            ns_label, pod_label = VARIANTS[load.variant]
            for i, pod in enumerate(pods):
                labels = {
                    "gpu": "0", "UUID": f"GPU-{pod['metadata']['uid']}", "device": "nvidia0",
                    "modelName": "NVIDIA H100 80GB HBM3",
                    "Hostname": pod["spec"].get("nodeName", f"node-{i}"),
                    ns_label: namespace, pod_label: pod["metadata"]["name"],
                    "container": "runtime",
                }
                if load.variant == "exported":  # what a scrape without honorLabels leaves
                    labels.update(namespace="gpu-operator", pod="nvidia-dcgm-exporter-x7k2p")
                text = ",".join(f'{k}="{v}"' for k, v in labels.items())
                lines.append(f"DCGM_FI_DEV_GPU_UTIL{{{text}}} {each:g}")
        return "\n".join(lines) + "\n"


class MetricsStack:
    """Exporter + Prometheus + Prometheus Adapter, registered with the API server."""

    def __init__(self, kubectl: Kubectl, adapter_binary: str, work: pathlib.Path):
        self.kubectl = kubectl
        self.adapter_binary = adapter_binary
        self.work = work
        self.exporter = GpuExporter(kubectl)
        self.prometheus_port = free_port()
        self.adapter_port = free_port()
        self.processes: list[Process] = []

    @property
    def prometheus_url(self) -> str:
        return f"http://127.0.0.1:{self.prometheus_port}"

    def start(self) -> None:
        self.exporter.start()
        self._start_prometheus()
        self._start_adapter()
        self._register()

    def _start_prometheus(self) -> None:
        prometheus = shutil.which("prometheus")
        if prometheus is None:
            raise RuntimeError("prometheus is not installed: run hack/install-prometheus")
        config = self.work / "prometheus.yml"
        # honor_labels, as docs/autoscaling.md asks of a real dcgm-exporter scrape.
        config.write_text(yaml.safe_dump({
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s",
                       "evaluation_interval": "1s"},
            "scrape_configs": [{"job_name": "dcgm-exporter", "honor_labels": True,
                                "static_configs": [
                                    {"targets": [f"127.0.0.1:{self.exporter.port}"]}]}],
        }))
        self.processes.append(Process("prometheus", [
            prometheus, f"--config.file={config}",
            f"--storage.tsdb.path={self.work / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{self.prometheus_port}",
        ], self.work))
        eventually(lambda: self._http_ok(f"{self.prometheus_url}/-/ready"), timeout=60,
                   what=f"Prometheus ready\n{self.processes[-1].log_tail()}")

    def _start_adapter(self) -> None:
        values = yaml.safe_load(ADAPTER_VALUES.read_text())
        config = self.work / "adapter-rules.yaml"
        config.write_text(yaml.safe_dump({"rules": values["rules"]["custom"]}))
        kubeconfig = self.kubectl.kubeconfig
        self.processes.append(Process("prometheus-adapter", [
            self.adapter_binary,
            f"--secure-port={self.adapter_port}",
            f"--cert-dir={self.work / 'adapter-certs'}",
            f"--prometheus-url={self.prometheus_url}/",
            # The adapter learns which metrics exist by listing series; often here, so a
            # ModelDeployment created a moment ago is scalable at once.
            "--metrics-relist-interval=2s",
            f"--config={config}",
            f"--lister-kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--v=2",
        ], self.work))

    def _register(self) -> None:
        address = host_address()
        objects: list[dict[str, Any]] = [
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
            {"apiVersion": "v1", "kind": "Service",
             "metadata": {"name": "prometheus-adapter", "namespace": NAMESPACE},
             "spec": {"ports": [{"name": "https", "port": 443,
                                 "targetPort": self.adapter_port}]}},
            {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
             "metadata": {"name": "prometheus-adapter-host", "namespace": NAMESPACE,
                          "labels": {"kubernetes.io/service-name": "prometheus-adapter"}},
             "addressType": "IPv4",
             "endpoints": [{"addresses": [address], "conditions": {"ready": True}}],
             "ports": [{"name": "https", "port": self.adapter_port, "protocol": "TCP"}]},
        ]
        for version, priority in zip(API_VERSIONS, (100, 200), strict=True):
            objects.append({
                "apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
                "metadata": {"name": f"{version}.custom.metrics.k8s.io"},
                "spec": {"group": "custom.metrics.k8s.io", "version": version,
                         "service": {"name": "prometheus-adapter", "namespace": NAMESPACE,
                                     "port": 443},
                         # The adapter serves a self-signed certificate.
                         "insecureSkipTLSVerify": True,
                         "groupPriorityMinimum": 100, "versionPriority": priority}})
        self.kubectl.apply(objects)
        try:
            eventually(self._available, timeout=90, what="custom.metrics.k8s.io available")
        except AssertionError as error:
            service = self.kubectl.run("get", "apiservice", "v1beta2.custom.metrics.k8s.io",
                                       "-o", "yaml", check=False).stdout
            raise AssertionError(
                f"{error}\nThe API server must reach {address}:{self.adapter_port}; a cluster "
                f"started before hack/cluster set --enable-aggregator-routing=true needs "
                f"`hack/cluster down && hack/cluster up`.\n{service}\n{self.logs()}") from None

    def _available(self) -> bool:
        for version in API_VERSIONS:
            service = self.kubectl.get("apiservice", f"{version}.custom.metrics.k8s.io")
            conditions = {c["type"]: c["status"]
                          for c in service.get("status", {}).get("conditions", [])}
            if conditions.get("Available") != "True":
                return False
        return True

    @staticmethod
    def _http_ok(url: str) -> bool:
        import urllib.request
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def query(self, promql: str) -> list[dict[str, Any]]:
        """An instant query against the stack's Prometheus; the result vector."""
        import urllib.parse
        import urllib.request
        url = f"{self.prometheus_url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(url, timeout=5) as response:
            return json.load(response)["data"]["result"]

    def pods_metric(self, namespace: str, metric: str) -> dict[str, float]:
        """What the adapter serves to the HPA: pod name -> value, via the API server."""
        raw = self.kubectl.run(
            "get", "--raw",
            f"/apis/custom.metrics.k8s.io/v1beta2/namespaces/{namespace}/pods/*/{metric}",
            check=False)
        if raw.returncode != 0:
            return {}
        return {item["describedObject"]["name"]: _quantity(item["value"])
                for item in json.loads(raw.stdout)["items"]}

    def logs(self) -> str:
        return "\n".join(f"--- {p.name} log tail ---\n{p.log_tail()}" for p in self.processes)

    def stop(self) -> None:
        # An APIService left without its server breaks discovery (and namespace
        # deletion) for every later user of the cluster: it goes first.
        for version in API_VERSIONS:
            self.kubectl.run("delete", "apiservice", f"{version}.custom.metrics.k8s.io",
                             "--ignore-not-found", check=False)
        self.kubectl.run("delete", "namespace", NAMESPACE, "--wait=false",
                         "--ignore-not-found", check=False)
        for process in reversed(self.processes):
            process.stop()
        self.exporter.stop()


def _quantity(value: str) -> float:
    if value.endswith("m"):
        return float(value[:-1]) / 1000
    return float(value)


def expected_replicas(total: float, target: float, current: int, maximum: int) -> int:
    """Where the HPA settles for `total` load spread over the pods (see Load)."""
    replicas = current
    for _ in range(100):  # each HPA step: ceil(current * usage / target), usage <= 100%
        usage = min(100.0, total / replicas)
        ratio = usage / target
        if abs(ratio - 1.0) <= 0.1:  # the HPA's default tolerance
            return replicas
        wanted = min(maximum, max(1, math.ceil(replicas * ratio)))
        if wanted == replicas:
            return replicas
        replicas = wanted
    return replicas


def session_stack(kubectl: Kubectl) -> Iterator[MetricsStack]:
    """Body of the session fixture: start the stack once, stop it at the end."""
    bin_dir = subprocess.run([str(ROOT / "hack" / "install-tools"), "--bin-dir"], check=True,
                             capture_output=True, text=True).stdout.strip()
    adapter = pathlib.Path(bin_dir) / "prometheus-adapter"
    if not adapter.exists():
        raise RuntimeError(f"{adapter} is missing: run hack/install-tools")
    work = pathlib.Path(tempfile.mkdtemp(prefix="modelserve-metrics-"))
    stack = MetricsStack(kubectl, str(adapter), work)
    try:
        stack.start()
    except BaseException:
        logs = stack.logs()
        stack.stop()
        raise RuntimeError(f"metrics stack did not start\n{logs}") from None
    try:
        yield stack
    finally:
        stack.stop()
        shutil.rmtree(work, ignore_errors=True)
