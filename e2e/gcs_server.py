"""A server of the Google Cloud Storage JSON API for the gs:// fetch tests: fsouza's
fake-gcs-server (BSD-2-Clause), built by hack/install-tools from its Go module.

What it is, honestly: an emulator other projects test their GCS clients against, not
Google's service. It answers the JSON API's metadata and media requests (ranged reads,
generations) the way GCS documents them, so google-cloud-storage runs unmodified through
our fetch; it does not check credentials or IAM, so access-denied paths are not covered
here (tests/fetch/test_gcs_oci_clients.py covers them with a scripted responder).
The client is pointed at it through STORAGE_EMULATOR_HOST, which the library reads.
"""

from __future__ import annotations

import pathlib
import shutil
import urllib.request

from e2e.host_process import Process, binary, free_port


class FakeGcs:
    def __init__(self, workdir: pathlib.Path, bind: str = "127.0.0.1",
                 advertise: str = "127.0.0.1") -> None:
        self.workdir = workdir
        self.data = workdir / "data"  # <bucket>/<object path>, loaded at start
        self.data.mkdir(parents=True, exist_ok=True)
        self.bind = bind
        self.advertise = advertise
        self.port = free_port()
        self.process: Process | None = None

    @property
    def endpoint(self) -> str:
        return f"http://{self.advertise}:{self.port}"

    def add(self, bucket: str, name: str, source: pathlib.Path) -> str:
        """An object to serve from the start (call before start()); its gs:// URI."""
        target = self.data / bucket / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        return f"gs://{bucket}/{name}"

    def start(self, timeout: float = 60) -> FakeGcs:
        server = binary("fake-gcs-server")
        self.process = Process(
            "fake-gcs", [str(server), "-scheme", "http", "-host", self.bind, "-port",
                         str(self.port), "-public-host", f"{self.advertise}:{self.port}",
                         "-backend", "memory", "-data", str(self.data)],
            self.workdir)

        def answers() -> None:
            with urllib.request.urlopen(f"{self.endpoint}/storage/v1/b", timeout=2):
                pass

        self.process.wait_ready(answers, timeout)
        return self

    def stop(self) -> None:
        if self.process:
            self.process.stop()
