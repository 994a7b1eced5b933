"""A real OCI registry for tests: the CNCF distribution registry (`registry serve`).

Built by hack/install-tools from its Go module; storage on the local filesystem in a
temporary directory, plain HTTP. With `users`, it asks for HTTP Basic auth from an
htpasswd file (distribution's own htpasswd backend; bcrypt hashes from the `bcrypt`
package, as `htpasswd -B` writes them). Models are pushed with oras-py, the same library
the fetch pulls with, as `oras push` would.
"""

from __future__ import annotations

import base64
import json
import os
import pathlib
import urllib.error
import urllib.request

from e2e.host_process import Process, binary, free_port


def docker_config(host: str, user: str, password: str) -> str:
    """What `kubectl create secret docker-registry` stores as .dockerconfigjson."""
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    return json.dumps({"auths": {host: {"username": user, "password": password,
                                        "auth": auth}}})


class DistributionRegistry:
    def __init__(self, workdir: pathlib.Path, bind: str = "127.0.0.1",
                 advertise: str = "127.0.0.1", users: dict[str, str] | None = None) -> None:
        self.workdir = workdir
        self.users = users or {}
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
            f"http: {{addr: '{self.bind}:{self.port}', debug: {{addr: ''}}}}\n"
            + self._auth_config())
        env = {**os.environ, "OTEL_TRACES_EXPORTER": "none"}
        self.process = Process("registry", [str(registry), "serve", str(config)],
                               self.workdir, env=env)

        def answers() -> None:
            try:
                with urllib.request.urlopen(f"http://{self.address}/v2/", timeout=2):
                    pass
            except urllib.error.HTTPError as error:  # 401: up, and asking for auth
                if error.code != 401 or not self.users:
                    raise

        self.process.wait_ready(answers, timeout)
        return self

    def push(self, repository: str, path: pathlib.Path) -> str:
        """Push one file the ORAS way; returns the oci:// URI of repository:tag."""
        import oras.client

        client = oras.client.OrasClient(hostname=self.address, insecure=True,
                                        auth_backend="basic" if self.users else "token")
        if self.users:  # the first user pushes
            client.auth.set_basic_auth(*next(iter(self.users.items())))
        cwd = os.getcwd()
        os.chdir(path.parent)  # oras titles the layer with the path as given
        try:
            client.push(target=f"{self.address}/{repository}", files=[path.name],
                        disable_path_validation=True)
        finally:
            os.chdir(cwd)
        return f"oci://{self.address}/{repository}"

    def _auth_config(self) -> str:
        if not self.users:
            return ""
        import bcrypt

        htpasswd = self.workdir / "htpasswd"
        htpasswd.write_text("".join(
            f"{user}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=5)).decode()}\n"
            for user, password in self.users.items()))
        return f"auth: {{htpasswd: {{realm: modelserve-e2e, path: {htpasswd}}}}}\n"

    def logs(self) -> str:
        return self.process.log_tail() if self.process else ""

    def stop(self) -> None:
        if self.process:
            self.process.stop()
