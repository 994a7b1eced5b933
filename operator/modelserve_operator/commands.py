"""`modelserve promote|abort|rollback|history|status`: rollout control from a terminal.

These talk to the API server through kubectl (the user's kubeconfig, context and auth
plugins just work, and `kubectl modelserve …` is the same program). `promote` and
`abort` write only to the status subresource, as Argo Rollouts' plugin does, so a GitOps
tool sees no drift; `rollback` is the user's own spec edit, made easy.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import subprocess
import sys
import time
from typing import Any

from modelserve_operator.render.labels import DEPLOYMENT
from modelserve_operator.render.names import label_value
from modelserve_operator.render.pod import FETCH_CONTAINER

# The runtime's fetch prints this before each progress line (modelserve_runtime/fetch).
FETCH_PROGRESS_PREFIX = "fetch: progress "

ARGO_MARKERS = ("argocd.argoproj.io/tracking-id", "argocd.argoproj.io/instance")


class CommandError(Exception):
    """A message for the user; the command exits 1."""


def _kubectl() -> str:
    return os.environ.get("KUBECTL") or shutil.which("kubectl") or "kubectl"


def kubectl(*args: str, namespace: str | None = None, stdin: str | None = None) -> str:
    cmd = [_kubectl(), *args] + (["-n", namespace] if namespace else [])
    result = subprocess.run(cmd, input=stdin, capture_output=True, text=True)
    if result.returncode != 0:
        raise CommandError(result.stderr.strip() or f"kubectl {' '.join(args)} failed")
    return result.stdout


def get_md(name: str, namespace: str | None) -> dict[str, Any]:
    return json.loads(kubectl("get", "modeldeployment", name, "-o", "json",
                              namespace=namespace))


def _control(name: str, namespace: str | None, **request: bool) -> None:
    patch = json.dumps({"status": {"control": request}})
    kubectl("patch", "modeldeployment", name, "--subresource=status", "--type=merge",
            "-p", patch, namespace=namespace)


def promote(name: str, namespace: str | None, full: bool = False) -> str:
    md = get_md(name, namespace)
    status = md.get("status", {})
    if status.get("canaryRevision") is None:
        raise CommandError(f"{name} has no canary to promote (serving revision "
                           f"{status.get('revision')})")
    _control(name, namespace, **({"promoteFull": True} if full else {"promote": True}))
    what = "all remaining steps" if full else "the current pause"
    return f"promote requested for canary revision {status['canaryRevision']}: skipping {what}"


def abort(name: str, namespace: str | None) -> str:
    status = get_md(name, namespace).get("status", {})
    if status.get("canaryRevision") is None:
        raise CommandError(f"{name} has no canary to abort")
    _control(name, namespace, abort=True)
    return (f"abort requested: traffic goes back to stable revision {status.get('revision')}; "
            f"canary revision {status['canaryRevision']} is scaled to zero")


def _argo_managed(md: dict[str, Any]) -> bool:
    meta = md["metadata"]
    keys = {**meta.get("annotations", {}), **meta.get("labels", {})}
    return any(marker in keys for marker in ARGO_MARKERS)


def rollback(name: str, namespace: str | None, to_revision: int | None = None,
             wait: bool = False, timeout: float = 120) -> str:
    md = get_md(name, namespace)
    status = md.get("status", {})
    history = status.get("history") or []
    current = status.get("revision")
    if to_revision is None:
        older = [e for e in history if e["revision"] != current
                 and e.get("outcome") != "RolledBack"]
        if not older:
            raise CommandError(f"{name} has no earlier revision to roll back to")
        to_revision = older[0]["revision"]
    entry = next((e for e in history if e["revision"] == to_revision), None)
    retained = ", ".join(f"{e['revision']} ({e['modelVersion']})" for e in history)
    if entry is None:
        raise CommandError(f"revision {to_revision} of {name} is not retained "
                           f"(spec.revisionHistoryLimit); retained revisions: {retained}")
    if to_revision == current and status.get("canaryRevision") is None:
        return f"{name} already serves revision {current}"
    version_name = entry["modelVersion"]
    try:
        version = json.loads(kubectl("get", "modelversion", version_name, "-o", "json",
                                     namespace=namespace))
    except CommandError as error:
        raise CommandError(f"ModelVersion {version_name} of revision {to_revision} is gone "
                           f"({error}); retained revisions: {retained}") from None
    if "template" in md["spec"]:
        patch = {"spec": {"template": version["spec"]}}
    else:
        patch = {"spec": {"modelVersion": version_name}}
    if _argo_managed(md):
        print(f"warning: Argo CD manages {name}: its next sync reverts this edit; make the "
              f"rollback in git (point spec at {version_name}).", file=sys.stderr)
    started = time.monotonic()
    kubectl("patch", "modeldeployment", name, "--type=merge", "-p", json.dumps(patch),
            namespace=namespace)
    message = f"rolled {name} back to revision {to_revision} ({version_name})"
    if wait:
        deadline = started + timeout
        while time.monotonic() < deadline:
            st = get_md(name, namespace).get("status", {})
            if st.get("revision") == to_revision and st.get("phase") == "Ready":
                return f"{message}; Ready after {time.monotonic() - started:.2f}s"
            time.sleep(0.1)
        raise CommandError(f"{message}, but it was not Ready within {timeout:g}s")
    return message


def _ago(timestamp: str | None) -> str:
    if not timestamp:
        return "-"
    then = datetime.datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=datetime.UTC)
    seconds = int((datetime.datetime.now(datetime.UTC) - then).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def history_table(name: str, namespace: str | None) -> str:
    status = get_md(name, namespace).get("status", {})
    rows = [("REVISION", "MODELVERSION", "STARTED", "STOPPED", "OUTCOME")]
    for entry in status.get("history") or []:
        marker = " *" if entry["revision"] == status.get("revision") else ""
        rows.append((f"{entry['revision']}{marker}", entry["modelVersion"],
                     _ago(entry.get("startedAt")), _ago(entry.get("stoppedAt")),
                     entry.get("outcome", "")))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in rows)


def status_screen(name: str, namespace: str | None) -> str:
    md = get_md(name, namespace)
    st = md.get("status", {})
    lines = [f"Name:        {name}  (namespace {md['metadata']['namespace']})",
             f"Status:      {st.get('phase', 'Unknown')}   Ready {st.get('ready', '-')}",
             f"Stable:      revision {st.get('revision')} ({st.get('modelVersion')})"]
    if st.get("canaryRevision") is not None:
        step = st.get("currentStep")
        steps = ((md["spec"].get("rollout") or {}).get("canary") or {}).get("steps") or []
        lines.append(f"Canary:      revision {st['canaryRevision']} "
                     f"({st.get('canaryModelVersion')})  weight {st.get('canaryWeight', 0)}%  "
                     f"step {(step or 0) + 1}/{len(steps) or 1}")
    if st.get("trafficNote"):
        lines.append(f"Traffic:     {st['trafficNote']}")
    if st.get("fallbackActive"):
        lines.append("Fallback:    ACTIVE (no primary pod is ready)")
    if st.get("endpoint"):
        lines.append(f"Endpoint:    {st['endpoint']}")
    lines.append("Conditions:")
    for c in st.get("conditions") or []:
        lines.append(f"  {c['type']:<12} {c['status']:<6} {c.get('reason', '')}: "
                     f"{c.get('message', '')}")
    analysis = st.get("analysis")
    if analysis:
        lines.append(f"Analysis:    revision {analysis['revision']} step "
                     f"{analysis['step'] + 1}: {analysis.get('message', '')}")
        for m in (analysis.get("measurements") or [])[-5:]:
            value = "no data" if m.get("value") is None else f"{m['value']:g}"
            lines.append(f"  {m['metric']:<20} {value:<12} {'ok' if m['passed'] else 'FAILED'}")
    downloads = model_downloads(name, md["metadata"]["namespace"])
    if downloads:
        lines.append("Model downloads:")
        lines += ["  " + line for line in downloads]
    lines.append("History:")
    lines += ["  " + line for line in history_table(name, namespace).splitlines()]
    events = json.loads(kubectl(
        "get", "events", "--field-selector",
        f"involvedObject.kind=ModelDeployment,involvedObject.name={name}", "-o", "json",
        namespace=md["metadata"]["namespace"]))["items"]
    events.sort(key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "")
    lines.append("Events:")
    for event in events[-8:]:
        lines.append(f"  {_ago(event.get('lastTimestamp')):<8} {event.get('type', ''):<8} "
                     f"{event.get('reason', ''):<20} {event.get('message', '')}")
    return "\n".join(lines)


def fetching_pods(pods: list[dict[str, Any]]) -> list[str]:
    """Names of the pods whose model fetch (init container) is running now."""
    names = []
    for pod in pods:
        for container in pod.get("status", {}).get("initContainerStatuses", []):
            if container.get("name") == FETCH_CONTAINER and "running" in (
                    container.get("state") or {}):
                names.append(pod["metadata"]["name"])
    return sorted(names)


def latest_progress(log: str) -> str:
    """The newest progress line of a fetch log, without its prefix."""
    for line in reversed(log.splitlines()):
        if line.startswith(FETCH_PROGRESS_PREFIX):
            return line.removeprefix(FETCH_PROGRESS_PREFIX)
    return "started, no progress line yet (one comes every 5 s)"


def model_downloads(name: str, namespace: str) -> list[str]:
    """One line per pod still downloading its model: bytes done / total, rate, time left.

    Read from the fetch container's log, which the user's kubeconfig may read; the
    operator itself needs no access to logs for this.
    """
    pods = json.loads(kubectl("get", "pods", "-l", f"{DEPLOYMENT}={label_value(name)}",
                              "-o", "json", namespace=namespace))["items"]
    out = []
    for pod in fetching_pods(pods):
        try:
            log = kubectl("logs", pod, "-c", FETCH_CONTAINER, "--tail=20", namespace=namespace)
        except CommandError as e:
            out.append(f"{pod}  (log not readable: {e})")
            continue
        out.append(f"{pod}  {latest_progress(log)}")
    return out
