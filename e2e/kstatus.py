"""Judge objects with kstatus itself, as Flux, kpt and other GitOps tools do.

kstatus (sigs.k8s.io/cli-utils/pkg/kstatus) is Go; hack/install-kstatus builds a tiny
command around `status.Compute` at the pinned version and caches it. No port: the point
is to read our status exactly as those tools will.
"""

from __future__ import annotations

import functools
import json
import pathlib
import subprocess
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parent.parent


class KstatusMissing(RuntimeError):
    """hack/install-kstatus could not build the command (no Go, no module proxy)."""


@functools.cache
def binary() -> str:
    built = subprocess.run([str(ROOT / "hack" / "install-kstatus")], capture_output=True,
                           text=True)
    if built.returncode != 0:
        raise KstatusMissing(built.stderr[-2000:])
    return built.stdout.strip()


def judge_all(objects: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(status, message) for each object: Current, InProgress, Failed, Terminating …"""
    done = subprocess.run([binary()], input=json.dumps(objects), capture_output=True,
                          text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"kstatus failed: {done.stderr}")
    return [(r["status"], r["message"]) for r in json.loads(done.stdout)]


def judge(obj: dict[str, Any]) -> tuple[str, str]:
    return judge_all([obj])[0]
