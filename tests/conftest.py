"""Shared by every unit test."""

import pytest


@pytest.fixture(autouse=True)
def _progress_file(tmp_path_factory, monkeypatch):
    # modelserve_runtime.progress writes the pod's progress report to a file; each test
    # gets its own (outside tmp_path, which tests inspect), not one in /tmp that tests
    # running side by side would share.
    folder = tmp_path_factory.mktemp("progress")
    monkeypatch.setenv("MODELSERVE_PROGRESS_FILE", str(folder / "progress.json"))
