"""Lint covers every Python file, also the extension-less scripts in hack/."""

from __future__ import annotations

import pathlib
import tomllib

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_every_python_script_in_hack_is_linted():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    included = set(config["tool"]["ruff"].get("extend-include", []))
    scripts = {f"hack/{p.name}" for p in (ROOT / "hack").iterdir()
               if p.is_file() and not p.suffix
               and p.read_bytes()[:64].startswith(b"#!") and b"python" in
               p.read_bytes().split(b"\n", 1)[0]}
    assert scripts - included == set(), "add these to [tool.ruff] extend-include"
