"""A real OCI registry for tests: the CNCF distribution registry (`registry serve`).

Built by hack/install-tools from its Go module; storage on the local filesystem in a
temporary directory, plain HTTP, no authentication (distribution's htpasswd needs bcrypt
hashes, and no bcrypt library is installed here). Models are pushed with oras-py, the
same library the fetch pulls with, as `oras push` would.
"""

from __future__ import annotations

import os
import pathlib
import urllib.request

from e2e.host_process import Process, binary, free_port


class DistributionRegistry:
    def __init__(self, workdir: pathlib.Path, bind: str = "127.0.0.1",
                 advertise: str = "127.0.0.1") -> None:
        self.workdir = workdir
        self.bind = bind
        self.advertise = advertise  # the address pods and clients use
        self.port = free_port()
        self.process: Process | None = None

    @property
    def address(self) -> str:
        return f"{self.advertise}:{self.port}"

    def start(self, timeout: float = 60) -> DistributionRegistry:
        registry = binary("registry", "hack/install-tools (it builds the distribution "
                          "registry)")
        config = self.workdir / "config.yml"
        config.write_text(
            "version: 0.1\n"
            "log: {level: info}\n"
            f"storage: {{filesystem: {{rootdirectory: {self.workdir / 'data'}}}, "
            "delete: {enabled: true}}\n"
            f"http: {{addr: '{self.bind}:{self.port}', debug: {{addr: ''}}}}\n")
        env = {**os.environ, "OTEL_TRACES_EXPORTER": "none"}
        self.process = Process("registry", [str(registry), "serve", str(config)],
                               self.workdir, env=env)

        def answers() -> None:
            with urllib.request.urlopen(f"http://{self.address}/v2/", timeout=2):
                pass

        self.process.wait_ready(answers, timeout)
        return self

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
        return self.process.log_tail() if self.process else ""

    def stop(self) -> None:
        if self.process:
            self.process.stop()
