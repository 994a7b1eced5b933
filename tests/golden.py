"""Golden files: compare a test's output with the file kept beside it.

UPDATE_GOLDEN=1 rewrites the files instead; read the diff before committing it.
"""

from __future__ import annotations

import os
import pathlib


def assert_golden(path: pathlib.Path, got: str) -> None:
    if os.environ.get("UPDATE_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(got)
    assert path.exists(), f"no golden file {path.name}: run with UPDATE_GOLDEN=1"
    assert got == path.read_text(), f"{path.name} differs: inspect, then UPDATE_GOLDEN=1"
