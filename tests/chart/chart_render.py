"""Render the chart with the pinned helm (`helm template`, no cluster)."""

from __future__ import annotations

import pathlib
import shutil
import subprocess
from typing import Any

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "modelserve"
SCENARIOS = sorted(p.name for p in (CHART / "ci").glob("*-values.yaml"))
# The prometheus-operator kinds are optional: tell helm the cluster has them.
API_VERSIONS = ("monitoring.coreos.com/v1/ServiceMonitor",
                "monitoring.coreos.com/v1/PrometheusRule")


def tool(name: str) -> str | None:
    bin_dir = subprocess.run([str(ROOT / "hack" / "install-tools"), "--bin-dir"],
                             capture_output=True, text=True, check=True).stdout.strip()
    path = pathlib.Path(bin_dir) / name
    return str(path) if path.exists() else shutil.which(name)


def helm_template(helm: str, *args: str, values: str | None = None,
                  namespace: str = "modelserve-system",
                  check: bool = True) -> subprocess.CompletedProcess[str]:
    cmd = [helm, "template", "ms", str(CHART), "--namespace", namespace,
           "--kube-version", "1.35.4"]
    for api in API_VERSIONS:
        cmd += ["--api-versions", api]
    if values:
        cmd += ["-f", str(CHART / "ci" / values)]
    result = subprocess.run([*cmd, *args], capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"helm template failed:\n{result.stderr}")
    return result


def render(helm: str, *args: str, values: str | None = None,
           include_tests: bool = True) -> list[dict[str, Any]]:
    out = helm_template(helm, *args, values=values).stdout
    docs = [d for d in yaml.safe_load_all(out) if d]
    if not include_tests:
        docs = [d for d in docs if "helm.sh/hook" not in
                d["metadata"].get("annotations", {})]
    return docs


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]
