"""The real operator process (`modelserve operator run`), started and killed by tests."""

from __future__ import annotations

import os
import pathlib
import re
import signal
import subprocess
import sys
import urllib.request

from e2e.host_process import free_port
from e2e.kube import eventually
from e2e.prometheus_text import scrape


class OperatorReadings:
    """What tests read from a running operator, process or pod alike: its write counter,
    queue and logs. Subclasses provide `metrics()` (the leader's samples) and `logs()`."""

    def metrics(self) -> dict[str, float]:
        raise NotImplementedError

    def logs(self) -> str:
        raise NotImplementedError

    def writes(self) -> float:
        return sum(self.writes_by().values())

    def writes_by(self) -> dict[str, float]:
        """Writes by verb and kind, leaving out a leader's Lease renewals (every
        retryPeriod, by design): "no writes in steady state" is about the models' objects."""
        return {re.sub(r"^modelserve_operator_api_writes_total", "", k): v
                for k, v in self.metrics().items()
                if k.startswith("modelserve_operator_api_writes_total")
                and 'kind="Lease"' not in k}

    def queue_idle(self) -> bool:
        return self.metrics().get("modelserve_operator_queue_depth", 1) == 0

    def tracebacks(self) -> list[str]:
        return [line for line in self.logs().splitlines() if "Traceback" in line]


class OperatorProcess(OperatorReadings):
    def __init__(self, kubeconfig: str, log_dir: pathlib.Path,
                 extra_args: tuple[str, ...] = (), env: dict[str, str] | None = None):
        self.kubeconfig = kubeconfig
        self.log_dir = log_dir
        self.metrics_port = free_port()
        self.health_port = free_port()
        self.extra_env = env or {}
        self.extra_args = extra_args
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def log_path(self) -> pathlib.Path:
        return self.log_dir / f"operator-{self.starts}.log"

    def start(self) -> None:
        self.starts += 1
        self.log_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "KUBECONFIG": self.kubeconfig, **self.extra_env}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "modelserve_operator.cli", "operator", "run",
             "--metrics-port", str(self.metrics_port), "--health-port", str(self.health_port),
             "--bind", "127.0.0.1", "--resync-seconds", "3600", *self.extra_args],
            env=env, stdout=self.log_path.open("wb"), stderr=subprocess.STDOUT,
        )
        eventually(self._healthy, timeout=60, what="operator /healthz")

    def _healthy(self) -> bool:
        assert self.proc and self.proc.poll() is None, f"operator exited: {self.logs()[-3000:]}"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/healthz",
                                        timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        self.kill(signal.SIGTERM)

    def metrics(self) -> dict[str, float]:
        """Prometheus samples as {'name{labels}': value}."""
        return scrape(f"http://127.0.0.1:{self.metrics_port}/metrics")

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace")
                         for p in sorted(self.log_dir.glob("operator-*.log")))

