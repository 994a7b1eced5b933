"""A canary 10 -> 50 -> 100 under real traffic through a real Gateway API implementation.

The operator's gateway-api provider renders an HTTPRoute with weighted backendRefs to the
revision Services; Traefik (built by hack/install-tools from its Go module) runs its
Kubernetes Gateway provider as a process on this host, which is the real node's host: it
watches the cluster through the kubeconfig and proxies each request straight to a ready
pod IP of one revision, chosen per request by weighted round robin. So unlike the service
provider (weights as replica ratios), the observed split should match the HTTPRoute's
weights: each test reports its split against them and the failed requests per phase
(0 expected in every phase). `hack/bench-rollout-traffic` prints the table.

gRPC goes the same way: the operator also renders a GRPCRoute (same Gateway, hostnames
and weights, the revisions' gRPC port), and tritonclient's gRPC client calls through the
same Traefik listener as HTTP.
"""

from __future__ import annotations

import collections
import json
import os
import pathlib
import signal
import subprocess
import time
import urllib.error
import urllib.request
import uuid

import numpy as np
import pytest

from e2e.host_process import free_port
from e2e.kube import Kubectl, eventually
from e2e.objects import modelserve, route_weights, wait_status
from e2e.test_real_traffic import (
    PAUSED_CANARY,
    assert_no_failures,
    ready_pods,
    real_deployment,
    real_version,
    report,
)
from e2e.traffic import PhaseStats, Traffic

ROOT = pathlib.Path(__file__).resolve().parent.parent
GATEWAY_API = "gateway.networking.k8s.io/v1"
# Traefik's documented controller name for its Kubernetes Gateway provider.
CONTROLLER = "traefik.io/gateway-controller"
# Label on our GatewayClass: this Traefik only takes classes carrying its own value, so
# two test sessions (or another Traefik) on the same cluster never fight over Gateways.
CLASS_LABEL = "modelserve.io/e2e-gateway"
# Seconds of traffic at each paused weight: a few hundred requests to measure the split.
STEADY_SECONDS = 8
# A local address: never through a proxy the environment may name.
_LOCAL = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def gateway_traffic(namespace: str) -> dict:
    """spec.traffic for the gateway-api provider, with a hostname of the test's own.

    Every test's Gateway is a listener on the same Traefik entrypoint. Without hostnames,
    the previous test's HTTPRoute (its namespace still terminating, its Services gone)
    matched the same requests at the same priority, and Traefik answered some of them 500
    (a backend it could not load) or 503 (no ready endpoints): seen in fresh-clone CI."""
    return {"provider": "gateway-api", "gatewayRef": {"name": "inference"},
            "hostnames": [route_host(namespace)]}


def route_host(namespace: str) -> str:
    return f"m.{namespace}.e2e.test"


class Traefik:
    """Traefik as a host process with its Kubernetes Gateway provider and a GatewayClass
    of its own; its API (on a second local port) says which weights it really routes by."""

    def __init__(self, kubectl: Kubectl, workdir: pathlib.Path):
        self.kubectl = kubectl
        bin_dir = subprocess.run([str(ROOT / "hack" / "install-tools"), "--bin-dir"],
                                 check=True, capture_output=True, text=True).stdout.strip()
        self.binary = pathlib.Path(bin_dir) / "traefik"
        if not self.binary.exists():
            raise AssertionError(f"{self.binary} is missing: run hack/install-tools")
        self.id = uuid.uuid4().hex[:6]
        self.gateway_class = f"traefik-e2e-{self.id}"
        self.port, self.api_port = free_port(), free_port()
        self.log_path = workdir / "traefik.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> Traefik:
        env = {k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_SERVICE")}
        # Traefik builds its client from $KUBECONFIG when it is not in a pod.
        env["KUBECONFIG"] = self.kubectl.kubeconfig
        args = [
            str(self.binary),
            "--global.checkNewVersion=false", "--global.sendAnonymousUsage=false",
            "--log.level=INFO", "--log.noColor=true", "--accessLog=false",
            f"--entryPoints.web.address=127.0.0.1:{self.port}",
            # The API, read-only and local, to see the weights the proxy applies.
            f"--entryPoints.traefik.address=127.0.0.1:{self.api_port}",
            "--api=true", "--api.insecure=true", "--api.dashboard=false",
            "--providers.kubernetesgateway=true",
            f"--providers.kubernetesgateway.labelSelector={CLASS_LABEL}={self.id}",
        ]
        log = open(self.log_path, "w")  # noqa: SIM115 - the process writes it until stop()
        self.process = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        log.close()
        self._wait(lambda: self._api("/api/version") is not None or self._exited(),
                   timeout=60, what="Traefik's API answering")
        assert not self._exited(), f"Traefik exited:\n{self.logs()}"
        self.kubectl.apply({
            "apiVersion": GATEWAY_API, "kind": "GatewayClass",
            "metadata": {"name": self.gateway_class, "labels": {CLASS_LABEL: self.id}},
            "spec": {"controllerName": CONTROLLER}})
        self._wait(lambda: self._condition(self.kubectl.get("gatewayclass", self.gateway_class),
                                           "Accepted") == "True",
                   timeout=90, what=f"GatewayClass {self.gateway_class} accepted by Traefik")
        return self

    def stop(self) -> None:
        self.kubectl.run("delete", "gatewayclass", self.gateway_class, "--wait=false",
                         check=False)
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def logs(self, tail: int = 4000) -> str:
        return self.log_path.read_text()[-tail:] if self.log_path.exists() else ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def gateway(self, namespace: str, name: str = "inference") -> None:
        """A Gateway of our class in `namespace`, with one HTTP listener on our entrypoint
        (Traefik maps a listener to the entrypoint whose address has the same port)."""
        self.kubectl.apply({
            "apiVersion": GATEWAY_API, "kind": "Gateway", "metadata": {"name": name},
            "spec": {"gatewayClassName": self.gateway_class,
                     "listeners": [{"name": "web", "port": self.port, "protocol": "HTTP"}]}},
            namespace)
        self._wait(lambda: self._condition(self.kubectl.get("gateway", name, namespace),
                                           "Programmed") == "True",
                   timeout=90, what=f"Gateway {namespace}/{name} programmed")

    def routed_weights(self, namespace: str, route: str,
                       kind: str = "httproute") -> dict[str, int]:
        """{revision Service: weight} of the weighted service Traefik built from the
        HTTPRoute (or GRPCRoute), as its running configuration has it ({} while not
        loaded)."""
        services = self._api("/api/http/services") or []
        for service in services:
            weighted = service.get("weighted")
            if not weighted or f"{kind}-{namespace}-{route}-" not in service["name"]:
                continue
            weights = {}
            for backend in weighted.get("services", []):
                # Traefik names a backend <namespace>-<service>-http-<port>@<provider>
                # (HTTPRoute) or <namespace>-<service>-<port>-grpc@<provider> (GRPCRoute).
                name = backend["name"].split("@")[0].removeprefix(f"{namespace}-")
                name = (name.rsplit("-http-", 1)[0] if kind == "httproute"
                        else name.rsplit("-", 2)[0])
                if "status" in backend:  # a backend Traefik could not load answers 500
                    name += f" (answers {backend['status']})"
                weights[name] = backend.get("weight", 1)
            return weights
        return {}

    def wait_routing(self, namespace: str, route: str, timeout: float = 120,
                     kind: str = "httproute") -> dict[str, int]:
        """Until Traefik routes by the HTTPRoute's (or GRPCRoute's) current weights."""
        def same():
            want = route_weights(self.kubectl, namespace, route, kind)
            have = self.routed_weights(namespace, route, kind)
            return have == want and have
        return self._wait(same, timeout=timeout, what=f"Traefik routing by the {kind}")

    def _wait(self, check, timeout: float, what: str):
        """eventually(), failing with what Traefik had configured and logged."""
        try:
            return eventually(check, timeout=timeout, what=what)
        except AssertionError as error:
            raise AssertionError(f"{error}\nTraefik's HTTP services: "
                                 f"{json.dumps(self._api('/api/http/services'))[:3000]}\n"
                                 f"Traefik's log:\n{self.logs()}") from None

    def _api(self, path: str):
        try:
            with _LOCAL.open(f"http://127.0.0.1:{self.api_port}{path}",
                             timeout=5) as response:
                return json.load(response)
        except (OSError, urllib.error.URLError, ValueError):
            return None

    def _exited(self) -> bool:
        return self.process is not None and self.process.poll() is not None

    @staticmethod
    def _condition(obj: dict | None, type_: str) -> str:
        for c in (obj or {}).get("status", {}).get("conditions", []):
            if c["type"] == type_:
                return c["status"]
        return ""


@pytest.fixture(scope="module")
def traefik(kubectl, tmp_path_factory) -> Traefik:
    proxy = Traefik(kubectl, tmp_path_factory.mktemp("traefik"))
    try:
        proxy.start()
        yield proxy
    finally:
        proxy.stop()


def _split_vs_weight(phase: PhaseStats, weights: dict[str, int], versions: dict[str, str]
                     ) -> str:
    """'v2 10.4% (weight 10)' for each version: the observed share against the route's."""
    split = phase.split()
    return ", ".join(f"{v} {split.get(v, 0.0)}% (weight {weights.get(svc, 0)})"
                     for svc, v in versions.items())


def _report_lines(lines: list[str]) -> None:
    """Below the table report() printed, and into the same report file."""
    text = "".join(f"{line}\n" for line in lines)
    print(text)
    path = os.environ.get("MODELSERVE_TRAFFIC_REPORT")
    if path:
        with open(path, "a") as out:
            out.write(text)


def test_canary_10_50_100_through_the_gateway(kubectl, namespace, operator, models, traefik):
    traefik.gateway(namespace)
    route = gateway_traffic(namespace)
    kubectl.apply([real_version(models, "v1", "good-v1"),
                   real_deployment("m", "v1", rollout=PAUSED_CANARY, traffic=route)],
                  namespace)
    wait_status(kubectl, namespace, "m", phase="Ready", timeout=180)
    traefik.wait_routing(namespace, "m")
    traffic = Traffic(traefik.url, "m", host=route_host(namespace)).start()
    try:
        traffic.wait_until_serving()
        kubectl.apply(real_version(models, "v2", "good-v2"), namespace)
        versions = {"m-r1": "v1", "m-r2": "v2"}
        steady: list[tuple[PhaseStats, dict[str, int]]] = []

        with traffic.phase("canary to 10% (1 of 5 pods)"):
            kubectl.apply(real_deployment("m", "v2", rollout=PAUSED_CANARY, traffic=route),
                          namespace)
            wait_status(kubectl, namespace, "m", canaryWeight=10, phase="Paused", timeout=180)
            weights = traefik.wait_routing(namespace, "m")
        with traffic.phase("paused at 10%") as p10:
            time.sleep(STEADY_SECONDS)
        steady.append((p10, weights))

        with traffic.phase("promote to 50%"):
            modelserve(kubectl, "promote", "m", "-n", namespace)
            wait_status(kubectl, namespace, "m", canaryWeight=50, phase="Paused", timeout=180)
            weights = traefik.wait_routing(namespace, "m")
            eventually(lambda: ready_pods(kubectl, namespace, "m-r1") == 2
                       and ready_pods(kubectl, namespace, "m-r2") == 2, timeout=180,
                       what="2 stable and 2 canary pods ready")
        with traffic.phase("paused at 50%") as p50:
            time.sleep(STEADY_SECONDS)
        steady.append((p50, weights))

        with traffic.phase("promote to 100%"):
            modelserve(kubectl, "promote", "m", "-n", namespace)
            wait_status(kubectl, namespace, "m", revision=2, phase="Ready", timeout=180)
            weights = traefik.wait_routing(namespace, "m")
        with traffic.phase("at 100%, old stable drained") as p100:
            eventually(lambda: not [
                p for p in kubectl.get("pods", namespace=namespace)["items"]
                if p["metadata"]["labels"].get("modelserve.io/revision") == "1"],
                timeout=180, what="revision 1's pods gone")
            time.sleep(2)
        steady.append((p100, weights))
    finally:
        traffic.stop()

    report(traffic, "canary 10 -> 50 -> 100 (gateway-api provider: Traefik weights each "
           "request by the HTTPRoute)")
    _report_lines([f"split vs HTTPRoute weight, {p.name}: {_split_vs_weight(p, w, versions)}"
                   for p, w in steady])
    assert_no_failures(traffic)
    # Weighted round robin per request: the split is the weight, within a few points.
    for phase, weights in steady:
        for svc, version in versions.items():
            observed = phase.split().get(version, 0.0)
            assert abs(observed - weights.get(svc, 0)) <= 5, (phase.name, phase.split(), weights)


def test_grpc_through_the_gateway_follows_the_grpcroute(kubectl, namespace, operator, models,
                                                          traefik):
    """tritonclient's gRPC client, unmodified, through Traefik: the GRPCRoute sends each
    call to a revision's gRPC port by the canary weights, on the same listener and
    hostname as the HTTPRoute, which keeps HTTP on the HTTP port."""
    grpcclient = pytest.importorskip("tritonclient.grpc")
    traefik.gateway(namespace)
    route = gateway_traffic(namespace)
    kubectl.apply([real_version(models, "v1", "good-v1"), real_version(models, "v2", "good-v2"),
                   real_deployment("m", "v1", rollout=PAUSED_CANARY, traffic=route)],
                  namespace)
    wait_status(kubectl, namespace, "m", phase="Ready", timeout=180)
    kubectl.apply(real_deployment("m", "v2", rollout=PAUSED_CANARY, traffic=route), namespace)
    wait_status(kubectl, namespace, "m", canaryWeight=10, phase="Paused", timeout=180)
    modelserve(kubectl, "promote", "m", "-n", namespace)
    wait_status(kubectl, namespace, "m", canaryWeight=50, phase="Paused", timeout=180)
    # Both sides settled (the stable scales 4 -> 2 at 50 %) and the stable's extra pods
    # gone: this test is about routing by the GRPCRoute; the HTTP canary test above covers
    # drains through the gateway.
    def settled() -> bool:
        pods = kubectl.get("pods", namespace=namespace)["items"]
        return (ready_pods(kubectl, namespace, "m-r1") == 2
                and ready_pods(kubectl, namespace, "m-r2") == 2
                and not [p for p in pods if p["metadata"].get("deletionTimestamp")])
    eventually(settled, timeout=180, what="2 stable and 2 canary pods, none terminating")
    weights = traefik.wait_routing(namespace, "m", kind="grpcroute")
    assert weights == {"m-r1": 50, "m-r2": 50}, weights
    traefik.wait_routing(namespace, "m")  # the HTTPRoute, on the same listener

    # The :authority header is the route's hostname, as a client resolving it would send.
    client = grpcclient.InferenceServerClient(
        traefik.url.removeprefix("http://"),
        channel_args=[("grpc.default_authority", route_host(namespace))])

    def answers() -> bool:
        try:
            return client.is_model_ready("m")
        except grpcclient.InferenceServerException:
            return False

    try:
        # Counting starts once the route answers (Traefik's API may list the weights a
        # moment before its proxy has the servers).
        eventually(answers, timeout=30, what="a gRPC answer through Traefik")
        x = np.arange(4, dtype=np.float32).reshape(1, 4)
        seen: collections.Counter = collections.Counter()
        failures: list[str] = []
        for _ in range(200):
            inp = grpcclient.InferInput("x", [1, 4], "FP32")
            inp.set_data_from_numpy(x)
            try:
                result = client.infer("m", [inp])
            except grpcclient.InferenceServerException as error:  # counted, not raised
                failures.append(str(error))
                continue
            response = result.get_response()
            seen[response.model_version] += 1
            # Each version answers its own model: y = x @ W_v + b, total = sum(x).
            np.testing.assert_allclose(result.as_numpy("total"), [6.0], rtol=1e-6)
    finally:
        client.close()
    # HTTP still reaches the HTTP port through the HTTPRoute.
    body = json.dumps({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32",
                                   "data": [0, 1, 2, 3]}]}).encode()
    request = urllib.request.Request(f"{traefik.url}/v2/models/m/infer", data=body,
                                     headers={"Content-Type": "application/json",
                                              "Host": route_host(namespace)})

    with _LOCAL.open(request, timeout=10) as response:
        assert json.load(response)["model_version"] in ("v1", "v2")

    _report_lines([f"gRPC through Traefik at GRPCRoute weights {weights}: {dict(seen)}, "
                   f"{len(failures)} failed"])
    assert not failures, failures[:5]
    # Traefik's weighted round robin picks per call: the split is the weight.
    for version in ("v1", "v2"):
        assert abs(100 * seen[version] / 200 - 50) <= 10, seen
