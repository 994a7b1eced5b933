"""`modelserve promote|abort|rollback|history|status`: rollout control from a terminal.

These talk to the API server through the official `kubernetes` client: the user's
kubeconfig (KUBECONFIG, contexts, exec credential plugins) or, in a pod, the service
account, as kubectl would, and `kubectl modelserve …` is the same program. `promote`
and `abort` write only to the status subresource, as Argo Rollouts' plugin does, so a
GitOps tool sees no drift; `rollback` is the user's own spec edit, made easy.
"""

from __future__ import annotations

import atexit
import datetime
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Any

import kubernetes
import urllib3
from kubernetes.client.exceptions import ApiException

from modelserve_operator import GROUP, ROLLBACK_STEPS_ANNOTATION, VERSION
from modelserve_operator.api import ModelDeploymentStatus
from modelserve_operator.render.labels import DEPLOYMENT
from modelserve_operator.render.names import label_value
from modelserve_operator.render.pod import FETCH_CONTAINER

# The runtime's fetch prints this before each progress line (modelserve_runtime/fetch).
FETCH_PROGRESS_PREFIX = "fetch: progress "

FIELD_MANAGER = "kubectl-modelserve"
ARGO_MARKERS = ("argocd.argoproj.io/tracking-id", "argocd.argoproj.io/instance")
SERVICE_ACCOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"


class CommandError(Exception):
    """A message for the user; the command exits 1."""


@dataclass
class Cluster:
    """An API client and the namespace the user's context defaults to."""

    api: kubernetes.client.ApiClient
    namespace: str

    @property
    def custom(self) -> kubernetes.client.CustomObjectsApi:
        return kubernetes.client.CustomObjectsApi(self.api)

    @property
    def core(self) -> kubernetes.client.CoreV1Api:
        return kubernetes.client.CoreV1Api(self.api)


_CLUSTER: Cluster | None = None
_CONTEXT: str | None = None


def use_context(context: str | None) -> None:
    """The kubeconfig context for the commands that follow (None: the current one)."""
    global _CLUSTER, _CONTEXT
    _CONTEXT, _CLUSTER = context, None


def _memory_dir() -> str:
    """Where the client's loader may write inline certificate data: in memory (tmpfs),
    private, removed when the command exits."""
    base = "/dev/shm" if os.path.isdir("/dev/shm") else None
    path = tempfile.mkdtemp(prefix="modelserve-cli-", dir=base)
    atexit.register(shutil.rmtree, path, True)
    return path


def cluster() -> Cluster:
    global _CLUSTER
    if _CLUSTER is not None:
        return _CLUSTER
    config = kubernetes.client.Configuration()
    token = os.path.join(SERVICE_ACCOUNT, "token")
    try:
        if os.path.exists(token) and not os.environ.get("KUBECONFIG") and not _CONTEXT:
            kubernetes.config.load_incluster_config(client_configuration=config)
            with open(os.path.join(SERVICE_ACCOUNT, "namespace")) as handle:
                namespace = handle.read().strip()
        else:
            path = os.environ.get("KUBECONFIG") or "~/.kube/config"
            kubernetes.config.load_kube_config(
                config_file=path, context=_CONTEXT, client_configuration=config,
                persist_config=False, temp_file_path=_memory_dir())
            contexts, current = kubernetes.config.list_kube_config_contexts(path)
            chosen = next((c for c in contexts if c["name"] == _CONTEXT), current)
            namespace = (chosen or {}).get("context", {}).get("namespace") or "default"
    except (kubernetes.config.ConfigException, OSError) as error:
        raise CommandError(f"no cluster to talk to: {error}. Set KUBECONFIG or "
                           f"--context, as for kubectl.") from None
    _CLUSTER = Cluster(kubernetes.client.ApiClient(config), namespace)
    return _CLUSTER


def _reason(error: Exception) -> str:
    """The innermost cause: "Connection refused", not urllib3's retry summary."""
    reason = getattr(error, "reason", None) or error
    return str(getattr(reason, "__cause__", None) or reason)


def _message(error: ApiException) -> str:
    """The API server's message (or the runtime's {"error": …} through a proxy)."""
    try:
        body = json.loads(error.body)
        return body.get("message") or body.get("error") or str(body)
    except (TypeError, ValueError, AttributeError):
        return f"HTTP {error.status} {error.reason}"


def _call(what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except ApiException as error:
        raise CommandError(f"{what}: {_message(error)}") from None
    except (OSError, urllib3.exceptions.HTTPError) as error:  # refused, DNS, TLS, timeout
        raise CommandError(f"{what}: cannot reach the API server ({_reason(error)})") from None


def _ns(namespace: str | None) -> str:
    return namespace or cluster().namespace


def get_md(name: str, namespace: str | None) -> dict[str, Any]:
    return _call(f"ModelDeployment {name}", cluster().custom.get_namespaced_custom_object,
                 GROUP, VERSION, _ns(namespace), "modeldeployments", name)


def get_mv(name: str, namespace: str | None) -> dict[str, Any]:
    return _call(f"ModelVersion {name}", cluster().custom.get_namespaced_custom_object,
                 GROUP, VERSION, _ns(namespace), "modelversions", name)


def patch_md(name: str, namespace: str | None, patch: dict[str, Any],
             status: bool = False) -> dict[str, Any]:
    custom = cluster().custom
    fn = (custom.patch_namespaced_custom_object_status if status
          else custom.patch_namespaced_custom_object)
    # The user's edit, made by the kubectl plugin: managedFields say so, as for kubectl.
    return _call(f"ModelDeployment {name}", fn, GROUP, VERSION, _ns(namespace),
                 "modeldeployments", name, patch, field_manager=FIELD_MANAGER,
                 _content_type="application/merge-patch+json")


def raw(method: str, path: str, body: Any = None, what: str = "request") -> Any:
    """A request on an API path the typed client has no method for (a Service proxy),
    with the same configuration and credentials; the JSON answer."""
    try:
        response = cluster().api.call_api(
            path, method, header_params={"Content-Type": "application/json",
                                         "Accept": "application/json"},
            body=body, auth_settings=["BearerToken"], _preload_content=False,
            _return_http_data_only=True)
    except ApiException as error:
        raise CommandError(f"{what}: HTTP {error.status}: {_message(error)[:500]}") from None
    except (OSError, urllib3.exceptions.HTTPError) as error:
        raise CommandError(f"{what}: cannot reach the API server ({_reason(error)})") from None
    text = response.data.decode()
    return json.loads(text) if text else None


def md_events(name: str, namespace: str) -> list[dict[str, Any]]:
    found = _call("Events", cluster().core.list_namespaced_event, namespace,
                  field_selector=f"involvedObject.kind=ModelDeployment,"
                                 f"involvedObject.name={name}")
    return cluster().api.sanitize_for_serialization(found).get("items") or []


def md_status(md: dict[str, Any]) -> ModelDeploymentStatus:
    """A ModelDeployment's status through the model its CRD schema is generated from."""
    return ModelDeploymentStatus.read(md.get("status"))


def _control(name: str, namespace: str | None, **request: bool) -> None:
    patch_md(name, namespace, {"status": {"control": request}}, status=True)


def promote(name: str, namespace: str | None, full: bool = False) -> str:
    status = md_status(get_md(name, namespace))
    if status.canary_revision is None:
        raise CommandError(f"{name} has no canary to promote (serving revision "
                           f"{status.revision})")
    _control(name, namespace, **({"promoteFull": True} if full else {"promote": True}))
    what = "all remaining steps" if full else "the current pause"
    return f"promote requested for canary revision {status.canary_revision}: skipping {what}"


def abort(name: str, namespace: str | None) -> str:
    status = md_status(get_md(name, namespace))
    if status.canary_revision is None:
        raise CommandError(f"{name} has no canary to abort")
    _control(name, namespace, abort=True)
    return (f"abort requested: traffic goes back to stable revision {status.revision}; "
            f"canary revision {status.canary_revision} is scaled to zero")


def _argo_managed(md: dict[str, Any]) -> bool:
    meta = md["metadata"]
    keys = {**meta.get("annotations", {}), **meta.get("labels", {})}
    return any(marker in keys for marker in ARGO_MARKERS)


def rollback(name: str, namespace: str | None, to_revision: int | None = None,
             wait: bool = False, timeout: float = 300, canary: bool = False) -> str:
    """Point the spec back at a retained revision.

    By default the operator serves it straight away, skipping the canary steps (it
    served before; during an incident it must serve now). `canary` opts into the steps:
    the annotation names the revision that should go through them.
    """
    md = get_md(name, namespace)
    namespace = md["metadata"]["namespace"]
    status = md_status(md)
    history = status.history or []
    current = status.revision
    if to_revision is None:
        older = [e for e in history if e.revision != current and e.outcome != "RolledBack"]
        if not older:
            raise CommandError(f"{name} has no earlier revision to roll back to")
        to_revision = older[0].revision
    entry = next((e for e in history if e.revision == to_revision), None)
    retained = ", ".join(f"{e.revision} ({e.model_version})" for e in history)
    if entry is None:
        raise CommandError(f"revision {to_revision} of {name} is not retained "
                           f"(spec.revisionHistoryLimit); retained revisions: {retained}")
    if to_revision == current and status.canary_revision is None:
        return f"{name} already serves revision {current}"
    version_name = entry.model_version
    try:
        version = get_mv(version_name, namespace)
    except CommandError as error:
        raise CommandError(f"ModelVersion {version_name} of revision {to_revision} is gone "
                           f"({error}); retained revisions: {retained}") from None
    patch: dict[str, Any] = ({"spec": {"template": version["spec"]}} if "template" in md["spec"]
                             else {"spec": {"modelVersion": version_name}})
    # Always written, so a `--canary` left from an earlier rollback cannot linger.
    patch["metadata"] = {"annotations": {ROLLBACK_STEPS_ANNOTATION: str(to_revision)
                                         if canary else None}}
    if _argo_managed(md):
        print(f"warning: Argo CD manages {name}: its next sync reverts this edit; make the "
              f"rollback in git (point spec at {version_name}).", file=sys.stderr)
    started = time.monotonic()
    patch_md(name, namespace, patch)
    how = "through the canary steps" if canary else "directly, skipping the canary steps"
    message = f"rolling {name} back to revision {to_revision} ({version_name}) {how}"
    if not wait:
        return message
    outcome = _wait_for_rollback(name, namespace, to_revision, canary, started, timeout)
    return f"{message}\n{outcome}"


def _wait_for_rollback(name: str, namespace: str, revision: int, canary: bool,
                       started: float, timeout: float) -> str:
    """Wait for what the rollback does: revision serving at 100 % and Ready; with
    `canary`, the same, or the first pause of its steps (which waits for a person)."""
    deadline = started + timeout
    last = ""
    while time.monotonic() < deadline:
        st = md_status(get_md(name, namespace))
        elapsed = time.monotonic() - started
        if st.revision == revision and st.phase == "Ready":
            return (f"revision {revision} serves 100% of the traffic, Ready after "
                    f"{elapsed:.1f}s")
        if st.phase == "Degraded":
            degraded = st.condition("Degraded")
            raise CommandError(f"rollback to revision {revision} is Degraded after "
                               f"{elapsed:.1f}s: {degraded and degraded.reason}: "
                               f"{degraded and degraded.message}")
        if canary and st.canary_revision == revision and st.phase == "Paused":
            return (f"canary revision {revision} paused at {st.canary_weight or 0}% after "
                    f"{elapsed:.1f}s; `modelserve promote {name}` continues the steps")
        progressing = st.condition("Progressing")
        last = f"{st.phase}: {(progressing.message if progressing else None) or ''}"
        time.sleep(0.2)
    raise CommandError(f"rollback to revision {revision} not done within {timeout:g}s "
                       f"(last seen: {last}); `modelserve status {name}` shows why")


def _ago(timestamp: str | None) -> str:
    if not timestamp:
        return "-"
    then = datetime.datetime.fromisoformat(timestamp)  # "…Z" or "…+00:00" (the client's)
    if then.tzinfo is None:
        then = then.replace(tzinfo=datetime.UTC)
    seconds = int((datetime.datetime.now(datetime.UTC) - then).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def history_table(name: str, namespace: str | None) -> str:
    status = md_status(get_md(name, namespace))
    rows = [("REVISION", "MODELVERSION", "STARTED", "STOPPED", "OUTCOME")]
    for entry in status.history or []:
        marker = " *" if entry.revision == status.revision else ""
        rows.append((f"{entry.revision}{marker}", entry.model_version,
                     _ago(entry.started_at), _ago(entry.stopped_at), entry.outcome or ""))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in rows)


def status_screen(name: str, namespace: str | None) -> str:
    md = get_md(name, namespace)
    st = md_status(md)
    lines = [f"Name:        {name}  (namespace {md['metadata']['namespace']})",
             f"Status:      {st.phase or 'Unknown'}   Ready {st.ready or '-'}",
             f"Stable:      revision {st.revision} ({st.model_version})"]
    if st.canary_revision is not None:
        steps = ((md["spec"].get("rollout") or {}).get("canary") or {}).get("steps") or []
        lines.append(f"Canary:      revision {st.canary_revision} "
                     f"({st.canary_model_version})  weight {st.canary_weight or 0}%  "
                     f"step {(st.current_step or 0) + 1}/{len(steps) or 1}")
    if st.traffic_note:
        lines.append(f"Traffic:     {st.traffic_note}")
    if st.fallback_active:
        lines.append("Fallback:    ACTIVE (no primary pod is ready)")
    if st.endpoint:
        lines.append(f"Endpoint:    {st.endpoint}")
    if st.model_progress:
        # What the operator read from the pods' progress endpoints (no log access needed).
        shown = st.model_progress
        lines.append(f"Progress:    {shown.message}  (updated {_ago(shown.updated_at)})")
    lines.append("Conditions:")
    for c in st.conditions or []:
        lines.append(f"  {c.type:<12} {c.status:<6} {c.reason or ''}: {c.message or ''}")
    analysis = st.analysis
    if analysis:
        lines.append(f"Analysis:    revision {analysis.revision} step "
                     f"{analysis.step + 1}: {analysis.message or ''}")
        for m in (analysis.measurements or [])[-5:]:
            value = "no data" if m.value is None else f"{m.value:g}"
            lines.append(f"  {m.metric:<20} {value:<12} {'ok' if m.passed else 'FAILED'}")
    # The fetch logs: for when the operator could not reach the pods to read progress.
    downloads = [] if st.model_progress else model_downloads(
        name, md["metadata"]["namespace"])
    if downloads:
        lines.append("Model downloads:")
        lines += ["  " + line for line in downloads]
    lines.append("History:")
    lines += ["  " + line for line in history_table(name, namespace).splitlines()]
    events = md_events(name, md["metadata"]["namespace"])
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
    core = cluster().core
    try:
        found = core.list_namespaced_pod(namespace,
                                         label_selector=f"{DEPLOYMENT}={label_value(name)}")
    except ApiException as error:
        if error.status == 403:  # a user who may not list pods still gets the rest
            return []
        raise CommandError(f"Pods: {_message(error)}") from None
    pods = cluster().api.sanitize_for_serialization(found).get("items") or []
    out = []
    for pod in fetching_pods(pods):
        try:
            log = _call(f"pod {pod} log", core.read_namespaced_pod_log, pod, namespace,
                        container=FETCH_CONTAINER, tail_lines=20)
        except CommandError as e:
            out.append(f"{pod}  (log not readable: {e})")
            continue
        out.append(f"{pod}  {latest_progress(log)}")
    return out
