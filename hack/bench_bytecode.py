"""Byte-compile what the runtime imports, as the runtime image does, before a benchmark
times any start.

The image's packages are byte-compiled at build time (runtime/install-into-image: pip
writes every module's .pyc), so a pod never compiles Python source. A GPU machine whose
packages were installed without bytecode, and that runs with PYTHONDONTWRITEBYTECODE=1
(the lent H200 machines do both), compiles torch, sympy and the compiler stack from source
on every start: ~5 s of a ResNet-50 warm start there (16.0-18.3 s to ready, against
12.2-12.5 s with bytecode, same machine and run; docs/runtime.md, sixth round). Timing
such starts would measure that machine's packaging, not the runtime.

Bytecode is written in place (`__pycache__` beside each source, what pip does), not under
PYTHONPYCACHEPREFIX: with a prefix set, Python ignores every `__pycache__` in the source
tree, the standard library's included.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time


def import_path(env: dict[str, str]) -> list[str]:
    """The directories the runtime imports from under `env` (its PYTHONPATH first)."""
    out = subprocess.run(
        [sys.executable, "-c", "import json, sys; print(json.dumps(sys.path))"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return [p for p in json.loads(out) if p and os.path.isdir(p)]


def missing_bytecode(module: str = "torch") -> str | None:
    """The source file of `module` whose bytecode is missing, or None when it is there
    (or the module is not installed): the runtime's own check, which warns at start."""
    from modelserve_runtime.backends.compiled import without_bytecode

    spec = importlib.util.find_spec(module)
    if spec is None or not spec.origin or not without_bytecode(spec.origin):
        return None
    return spec.origin


def ensure(env: dict[str, str], module: str = "torch") -> str:
    """Byte-compile the runtime's import path in place when `module` has no bytecode; a
    line saying what the starts below are measured with."""
    source = missing_bytecode(module)
    if source is None:
        return "imports: byte-compiled, as in the runtime image"
    dirs = import_path(env)
    print(
        f"{module} has no bytecode ({source}): byte-compiling the runtime's import path as "
        f"the image build does, {len(dirs)} directories ...",
        flush=True,
    )
    started = time.monotonic()
    # Quiet, and no check: the standard library's test data holds files that do not
    # compile on purpose. Whether torch's bytecode is there afterwards is what counts.
    subprocess.run(
        [sys.executable, "-m", "compileall", "-qq", "-j", "0", *dirs],
        check=False,
        stderr=subprocess.DEVNULL,
    )
    seconds = time.monotonic() - started
    if missing_bytecode(module) is not None:
        return (
            f"imports: NOT byte-compiled ({source} stays without .pyc, read-only?): "
            "start times include compiling Python source"
        )
    return f"imports: byte-compiled here in {seconds:.0f} s, as in the runtime image"
