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


def _python_files() -> list[pathlib.Path]:
    files = [p for top in ("operator", "runtime", "e2e", "tests")
             for p in (ROOT / top).rglob("*.py")]
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    files += [ROOT / p for p in config["tool"]["ruff"].get("extend-include", [])]
    return files


def test_every_imported_project_module_exists():
    """Imports inside functions (the CLI imports lazily) fail only when run: check them all."""
    import ast
    import importlib.util

    missing = []
    for path in _python_files():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and (
                    node.module.split(".")[0] in ("modelserve_operator", "modelserve_runtime")):
                if importlib.util.find_spec(node.module) is None:
                    missing.append(f"{path.relative_to(ROOT)}: {node.module}")
                    continue
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    module = importlib.import_module(node.module)
                    if not hasattr(module, alias.name) and importlib.util.find_spec(full) is None:
                        missing.append(f"{path.relative_to(ROOT)}: {full}")
    assert missing == []
