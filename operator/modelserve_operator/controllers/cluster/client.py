"""The operator's writes (and the occasional read) through kubernetes_asyncio.

Kopf watches; this facade writes: server-side apply, status merge-patches, deletes,
creates, and the Lease's compare-and-swap. The maintained client does what a
hand-written one got wrong: kubeconfig contexts, exec credential plugins, in-cluster
service-account tokens re-read as the kubelet rotates them, TLS set up from the
kubeconfig. The facade keeps the operator's own needs: one small API for reconcilers
and fakes, the write counter (`modelserve_operator_api_writes_total`), and raw dicts in
and out (no model classes: the store keeps slim dicts, and a thousand objects
round-tripped through generated models cost memory and time for nothing).

Key material stays off disk: in a cluster the client reads the token and CA files
Kubernetes mounts; from a kubeconfig with inline certificate data the client's loader
needs files, so they go to a private directory in memory (/dev/shm) that is removed as
soon as the TLS context holds them.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import os
import shutil
import ssl
import tempfile
import urllib.request
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import aiohttp
import kopf
from kubernetes_asyncio import client as k8s
from kubernetes_asyncio import config as k8s_config
from kubernetes_asyncio.config.incluster_config import InClusterConfigLoader

from modelserve_operator import FIELD_MANAGER
from modelserve_operator.controllers.cluster import metrics

SERVICE_ACCOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
REQUEST_TIMEOUT = 30.0

# kind -> plural, for the kinds the operator touches.
_PLURALS = {
    "Deployment": "deployments",
    "Service": "services",
    "Event": "events",
    "ModelVersion": "modelversions",
    "ModelDeployment": "modeldeployments",
    "HorizontalPodAutoscaler": "horizontalpodautoscalers",
    "ScaledObject": "scaledobjects",
    "HTTPRoute": "httproutes",
    "GRPCRoute": "grpcroutes",
    "VirtualService": "virtualservices",
    "Pod": "pods",
    "Lease": "leases",
}


class ApiError(Exception):
    """A non-2xx answer from the API server."""

    def __init__(self, status: int, body: str, what: str):
        self.status = status
        self.body = body
        try:
            self.reason = json.loads(body).get("message", body)
        except (ValueError, AttributeError):
            self.reason = body
        super().__init__(f"{what}: HTTP {status}: {self.reason}")


def object_path(api_version: str, kind: str, namespace: str | None, name: str | None = None,
                subresource: str | None = None) -> str:
    prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    path = prefix
    if namespace:
        path += f"/namespaces/{quote(namespace)}"
    path += f"/{_PLURALS[kind]}"
    if name:
        path += f"/{quote(name)}"
    if subresource:
        path += f"/{subresource}"
    return path


def proxy_in_environment() -> bool:
    """Whether a proxy variable is set (the standard library's reading of them)."""
    return bool(urllib.request.getproxies_environment())


def in_cluster() -> bool:
    """Running in a pod with a service account, and no kubeconfig asked for instead."""
    return (os.path.exists(f"{SERVICE_ACCOUNT}/token") and not os.environ.get("KUBECONFIG")
            and bool(os.environ.get("KUBERNETES_SERVICE_HOST")))


@contextlib.contextmanager
def memory_dir() -> Iterator[str]:
    """A private directory in memory (tmpfs) for the loader's certificate files, removed
    on exit. Falls back to the default temp dir where /dev/shm does not exist."""
    base = "/dev/shm" if os.path.isdir("/dev/shm") else None
    path = tempfile.mkdtemp(prefix="modelserve-kube-", dir=base)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _ssl_context(config: k8s.Configuration) -> ssl.SSLContext:
    """The TLS context the client builds too, for Kopf's watches (while the files exist)."""
    context = ssl.create_default_context(cafile=config.ssl_ca_cert)
    if config.cert_file:
        context.load_cert_chain(config.cert_file, keyfile=config.key_file)
    if not config.verify_ssl:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class Kube:
    """Writes (and the occasional read) against the API server. Make one with connect()."""

    def __init__(self, api: k8s.ApiClient, tls: ssl.SSLContext | None = None):
        self.api = api
        self.config: k8s.Configuration = api.configuration
        self._tls = tls
        if not proxy_in_environment():
            # kubernetes_asyncio's session trusts the environment, so aiohttp looks up
            # proxy variables and parses ~/.netrc on a worker thread before every request:
            # a seventh of the operator's CPU, profiled at 1,000 models. Without a proxy
            # variable that work finds nothing; with one, the client keeps honouring it.
            api.rest_client.pool_manager._trust_env = False

    @classmethod
    async def connect(cls, context: str | None = None) -> Kube:
        config = k8s.Configuration()
        if in_cluster():
            # Re-reads the mounted token once it is a minute old: rotation just works.
            loader = InClusterConfigLoader(token_filename=f"{SERVICE_ACCOUNT}/token",
                                           cert_filename=f"{SERVICE_ACCOUNT}/ca.crt")
            loader.load_and_set(config)
            config.refresh_api_key_hook = _token_file_refresher(loader,
                                                                config.refresh_api_key_hook)
            return cls(k8s.ApiClient(config), _ssl_context(config))
        with memory_dir() as tmp:
            # KUBECONFIG is read now, not when the client was imported; a list of paths
            # is merged as kubectl merges it.
            loader = await k8s_config.load_kube_config(
                config_file=os.environ.get("KUBECONFIG") or "~/.kube/config",
                client_configuration=config, context=context, persist_config=False,
                temp_file_path=tmp)
            api = k8s.ApiClient(config)  # builds its TLS context from the files now
            tls = _ssl_context(config)
        config.ssl_ca_cert = config.cert_file = config.key_file = None  # gone with tmp
        if "exec" in (loader._user or {}):
            config.refresh_api_key_hook = _exec_refresher(loader)
        return cls(api, tls)

    async def close(self) -> None:
        await self.api.close()

    async def kopf_session(self) -> kopf.AiohttpSession:
        """An HTTP session for Kopf's watches with this client's TLS context and current
        credential. Kopf asks again (login) when the API server answers 401, and gets the
        rotated token; it never sees a key file (its own login writes one for a moment)."""
        headers = {"User-Agent": "modelserve-operator", **await self._auth_headers()}
        auth = None
        if self.config.username and "authorization" not in {k.lower() for k in headers}:
            auth = aiohttp.BasicAuth(self.config.username, self.config.password or "")
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, ssl=self._tls or False),
            headers=headers, auth=auth)
        return kopf.AiohttpSession(server=self.config.host, aiohttp_session=session)

    async def _auth_headers(self) -> dict[str, str]:
        headers: dict[str, str] = {}
        await self.api.update_params_for_auth(headers, [], ["BearerToken"])
        return headers

    async def _request(self, method: str, path: str, *, verb: str, kind: str,
                       body: Any = None, content_type: str = "application/json",
                       params: dict[str, str] | None = None) -> dict[str, Any] | None:
        if method != "GET":
            metrics.API_WRITES.labels(verb=verb, kind=kind).inc()
        headers = {"Content-Type": content_type, "Accept": "application/json",
                   "User-Agent": "modelserve-operator", **await self._auth_headers()}
        # ApiClient.request, not call_api: the body is a plain dict already, and call_api
        # would walk every object to "sanitize" it on each write.
        for attempt in range(2):
            response = await self.api.request(
                method, self.config.host + path, query_params=list((params or {}).items()),
                headers=headers, body=body, _preload_content=False,
                _request_timeout=REQUEST_TIMEOUT)
            async with response:
                text = await response.text()
                status = response.status
            if status != 401 or attempt or not await self.reauthenticate():
                break
            headers.update(await self._auth_headers())  # the credential was rotated: again
        if status == 404 and method in ("GET", "DELETE"):
            return None
        if status >= 400:
            raise ApiError(status, text, f"{verb} {kind} {path}")
        return json.loads(text) if text else None

    async def reauthenticate(self) -> bool:
        """Fetch a fresh credential (exec plugin) after a 401; False if there is no way."""
        hook = self.config.refresh_api_key_hook
        if hook is None:
            return False
        # In a cluster the hook is the client's token-file reader (sync, re-reads a
        # rotated token within a minute); from a kubeconfig, ours for exec plugins.
        result = hook(self.config, True)
        if asyncio.iscoroutine(result):
            await result
        return True

    async def get(self, api_version: str, kind: str, namespace: str | None,
                  name: str) -> dict[str, Any] | None:
        return await self._request("GET", object_path(api_version, kind, namespace, name),
                                   verb="get", kind=kind)

    async def list(self, api_version: str, kind: str, namespace: str | None,
                   label_selector: str | None = None) -> list[dict[str, Any]]:
        params = {"labelSelector": label_selector} if label_selector else None
        result = await self._request("GET", object_path(api_version, kind, namespace),
                                     verb="list", kind=kind, params=params)
        return (result or {}).get("items", [])

    async def apply(self, obj: dict[str, Any], field_manager: str = FIELD_MANAGER,
                    ) -> dict[str, Any] | None:
        """Server-side apply as `modelserve-operator`, taking over fields we declare.

        Another `field_manager` is for handing a field over (see controllers.autoscaling).
        """
        meta = obj["metadata"]
        path = object_path(obj["apiVersion"], obj["kind"], meta.get("namespace"), meta["name"])
        return await self._request(
            "PATCH", path, verb="apply", kind=obj["kind"], body=obj,
            content_type="application/apply-patch+yaml",
            params={"fieldManager": field_manager, "force": "true"},
        )

    async def patch_status(self, api_version: str, kind: str, namespace: str, name: str,
                           status: dict[str, Any]) -> dict[str, Any] | None:
        """Merge-patch the status subresource (never the spec: GitOps owns that)."""
        path = object_path(api_version, kind, namespace, name, "status")
        return await self._request(
            "PATCH", path, verb="patch-status", kind=kind, body={"status": status},
            content_type="application/merge-patch+json",
        )

    async def delete(self, api_version: str, kind: str, namespace: str, name: str) -> None:
        body = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"}
        await self._request("DELETE", object_path(api_version, kind, namespace, name),
                            verb="delete", kind=kind, body=body)

    async def replace(self, obj: dict[str, Any]) -> dict[str, Any] | None:
        """PUT the whole object; its metadata.resourceVersion makes a stale write a 409."""
        meta = obj["metadata"]
        path = object_path(obj["apiVersion"], obj["kind"], meta.get("namespace"), meta["name"])
        return await self._request("PUT", path, verb="update", kind=obj["kind"], body=obj)

    async def create(self, obj: dict[str, Any]) -> dict[str, Any] | None:
        meta = obj["metadata"]
        path = object_path(obj["apiVersion"], obj["kind"], meta.get("namespace"))
        return await self._request("POST", path, verb="create", kind=obj["kind"], body=obj)


def _token_file_refresher(loader: InClusterConfigLoader, hook: Any) -> Any:
    """The client's own hook re-reads the mounted token once a minute; after a 401 (the
    kubelet rotated it, the old one was revoked) it is read again at once."""

    def refresh(config: k8s.Configuration, force: bool = False) -> None:
        if force:
            loader.token_expires_at = datetime.datetime.now()
        hook(config)

    return refresh


def _exec_refresher(loader: Any) -> Any:
    """A refresh hook for a kubeconfig's exec credential plugin: it runs the plugin again
    once the credential it gave has expired. A plugin that states no expiry runs again
    only when the API server answers 401 (Kube.reauthenticate)."""

    async def refresh(config: k8s.Configuration, force: bool = False) -> None:
        expiry = getattr(loader, "exec_plugin_expiry", None)
        if force and expiry is not None:
            del loader.exec_plugin_expiry
        if force or expiry is not None:
            await loader.load_from_exec_plugin()  # a no-op until the expiry passes
            if loader.token:
                config.api_key["BearerToken"] = loader.token

    return refresh
