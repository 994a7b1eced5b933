"""kubectl against the local cluster, for e2e tests (the real API server, no mocks)."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import time
from collections.abc import Callable
from typing import Any

import yaml


class Kubectl:
    """Runs the pinned kubectl with the local cluster's kubeconfig."""

    def __init__(self, binary: str, kubeconfig: str):
        self.binary = binary
        self.kubeconfig = kubeconfig
        self.env = {**os.environ, "KUBECONFIG": kubeconfig}

    def run(self, *args: str, stdin: str | None = None, check: bool = True,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [self.binary, *args], input=stdin, capture_output=True, text=True,
            env=self.env, timeout=timeout,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} failed ({result.returncode}):\n{result.stderr}"
            )
        return result

    def apply(self, objects: dict[str, Any] | list[dict[str, Any]], namespace: str | None = None,
              check: bool = True) -> subprocess.CompletedProcess[str]:
        docs = objects if isinstance(objects, list) else [objects]
        args = ["apply", "-f", "-"] + (["-n", namespace] if namespace else [])
        return self.run(*args, stdin=yaml.safe_dump_all(docs), check=check)

    def get(self, kind: str, name: str | None = None, namespace: str | None = None,
            check: bool = True) -> dict[str, Any] | None:
        args = ["get", kind] + ([name] if name else []) + ["-o", "json"]
        if namespace:
            args += ["-n", namespace]
        result = self.run(*args, check=check)
        if result.returncode != 0:
            return None
        return json.loads(result.stdout)


def eventually(check: Callable[[], Any], timeout: float = 60, interval: float = 0.5,
               what: str = "condition") -> Any:
    """Poll `check` until it returns something truthy; fail with its last answer."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except AssertionError as error:  # a kubectl call that fails is "not yet"
            last = error
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


def kill_container(container_id: str, sig: int = signal.SIGKILL) -> None:
    """Signal a container's process on the real node through containerd, as a crash or an
    OOM kill would (the kubelet then restarts it). `container_id` is a containerStatus's
    `containerID` ("containerd://…")."""
    hack = pathlib.Path(__file__).resolve().parent.parent / "hack"
    subprocess.run([str(hack / "cluster"), "ctr", "tasks", "kill", "-s",
                    signal.Signals(sig).name, container_id.split("//")[-1]],
                   check=True, capture_output=True)
