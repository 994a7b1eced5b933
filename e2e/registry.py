"""A real OCI registry for tests: the CNCF distribution registry (`registry serve`).

Built by hack/install-tools from its Go module; storage on the local filesystem in a
temporary directory, plain HTTP, no authentication (distribution's htpasswd needs bcrypt
hashes, and no bcrypt library is installed here). Models are pushed with oras-py, the
same library the fetch pulls with, as `oras push` would.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import time
import urllib.request

from e2e.object_store import free_port, tools_bin


class DistributionRegistry:
    def __init__(self, workdir: pathlib.Path, bind: str = "127.0.0.1",
                 advertise: str = "127.0.0.1") -> None:
        self.workdir = workdir
        self.bind = bind
        self.advertise = advertise  # the address pods and clients use
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"{self.advertise}:{self.port}"

    @property
    def log_path(self) -> pathlib.Path:
        return self.workdir / "registry.log"

    def start(self, timeout: float = 60) -> DistributionRegistry:
        binary = tools_bin() / "registry"
        if not binary.exists():
            raise RuntimeError(f"{binary} is missing: run hack/install-tools (it builds the "
                               f"distribution registry)")
        config = self.workdir / "config.yml"
        config.write_text(
            "version: 0.1\n"
            "log: {level: info}\n"
            f"storage: {{filesystem: {{rootdirectory: {self.workdir / 'data'}}}, "
            "delete: {enabled: true}}\n"
            f"http: {{addr: '{self.bind}:{self.port}', debug: {{addr: ''}}}}\n")
        env = {**os.environ, "OTEL_TRACES_EXPORTER": "none"}
        self.proc = subprocess.Popen([str(binary), "serve", str(config)], env=env,
                                     stdout=self.log_path.open("wb"), stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"registry exited {self.proc.returncode}: {self.logs()}")
            try:
                with urllib.request.urlopen(f"http://{self.address}/v2/", timeout=2):
                    return self
            except OSError as e:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"registry not ready in {timeout} s ({e}): "
                                       f"{self.logs()}") from e
                time.sleep(0.2)

    def push(self, repository: str, path: pathlib.Path) -> str:
        """Push one file the ORAS way; returns the oci:// URI of repository:tag."""
        import oras.client

        client = oras.client.OrasClient(hostname=self.address, insecure=True)
        cwd = os.getcwd()
        os.chdir(path.parent)  # oras titles the layer with the path as given
        try:
            client.push(target=f"{self.address}/{repository}", files=[path.name],
                        disable_path_validation=True)
        finally:
            os.chdir(cwd)
        return f"oci://{self.address}/{repository}"

    def logs(self) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return text[-3000:]

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait()
