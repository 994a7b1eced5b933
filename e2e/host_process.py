"""A server the tests run on this host (Prometheus, SeaweedFS, a registry, a GCS server):
started with its log in a file, waited for, stopped with its children."""

from __future__ import annotations

import os
import pathlib
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from typing import Any


def tools_bin() -> pathlib.Path:
    """Where hack/install-tools keeps the binaries it builds."""
    root = pathlib.Path(__file__).resolve().parent.parent
    out = subprocess.run([str(root / "hack" / "install-tools"), "--bin-dir"], check=True,
                         capture_output=True, text=True).stdout.strip()
    return pathlib.Path(out)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class Process:
    """One host process, in a session of its own (stop() takes its children too)."""

    def __init__(self, name: str, args: list[str], log_dir: pathlib.Path,
                 env: dict[str, str] | None = None, cwd: pathlib.Path | None = None):
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self.proc = subprocess.Popen(args, stdout=self.log_path.open("wb"),
                                     stderr=subprocess.STDOUT, env=env, cwd=cwd,
                                     start_new_session=True)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait_ready(self, probe: Callable[[], Any], timeout: float, interval: float = 0.2) -> Any:
        """Until `probe()` returns without raising; fails with the log's tail if the process
        exits or the time runs out."""
        deadline = time.monotonic() + timeout
        while True:
            if not self.alive():
                raise RuntimeError(f"{self.name} exited {self.proc.returncode}: "
                                   f"{self.log_tail()}")
            try:
                return probe()
            except Exception as e:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self.name} not ready in {timeout} s ({e}): "
                                       f"{self.log_tail()}") from e
                time.sleep(interval)

    def stop(self) -> None:
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def log_tail(self, chars: int = 3000) -> str:
        if not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")[-chars:]


def binary(name: str, built_by: str = "hack/install-tools") -> pathlib.Path:
    path = tools_bin() / name
    if not path.exists():
        raise RuntimeError(f"{path} is missing: run {built_by}")
    return path
