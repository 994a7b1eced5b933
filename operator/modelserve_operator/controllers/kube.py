"""A small async Kubernetes client: server-side apply, status patches, Events.

Kopf watches; this client writes. It reuses the credentials Kopf logged in with, so the
operator authenticates once, the same way, in a cluster or from a kubeconfig.
"""

from __future__ import annotations

import base64
import json
import ssl
import tempfile
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
import kopf

from modelserve_operator import FIELD_MANAGER
from modelserve_operator.controllers import metrics

# apiVersion -> (path prefix, plural) for the kinds the operator touches.
_PLURALS = {
    "Deployment": "deployments",
    "Service": "services",
    "Event": "events",
    "ModelVersion": "modelversions",
    "ModelDeployment": "modeldeployments",
    "HorizontalPodAutoscaler": "horizontalpodautoscalers",
    "ScaledObject": "scaledobjects",
    "HTTPRoute": "httproutes",
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
        except ValueError:
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


def _write_temp(data: str | bytes) -> str:
    raw = data if isinstance(data, bytes) else data.encode()
    try:  # kubeconfig "-data" fields are base64; Kopf may have decoded them already
        decoded = base64.b64decode(raw, validate=True)
        if b"-----BEGIN" in decoded:
            raw = decoded
    except ValueError:
        pass
    with tempfile.NamedTemporaryFile(delete=False, suffix=".pem") as handle:
        handle.write(raw)
    return handle.name


def _ssl_context(info: kopf.ConnectionInfo) -> ssl.SSLContext | bool:
    if info.insecure:
        return False
    context = ssl.create_default_context()
    if info.ca_path:
        context.load_verify_locations(cafile=info.ca_path)
    elif info.ca_data:
        context.load_verify_locations(cafile=_write_temp(info.ca_data))
    cert = info.certificate_path or (info.certificate_data and _write_temp(info.certificate_data))
    key = info.private_key_path or (info.private_key_data and _write_temp(info.private_key_data))
    if cert and key:
        context.load_cert_chain(cert, key)
    return context


class Kube:
    """Writes (and the occasional read) against the API server."""

    def __init__(self, info: kopf.ConnectionInfo):
        self.server = info.server.rstrip("/")
        headers = {"User-Agent": "modelserve-operator"}
        if info.token:
            headers["Authorization"] = f"{info.scheme or 'Bearer'} {info.token}"
        auth = aiohttp.BasicAuth(info.username, info.password or "") if info.username else None
        connector = aiohttp.TCPConnector(ssl=_ssl_context(info), limit=64)
        self.session = aiohttp.ClientSession(
            headers=headers, auth=auth, connector=connector,
            timeout=aiohttp.ClientTimeout(total=30),
        )

    async def close(self) -> None:
        await self.session.close()

    async def _request(self, method: str, path: str, *, verb: str, kind: str,
                       body: Any = None, content_type: str = "application/json",
                       params: dict[str, str] | None = None) -> dict[str, Any] | None:
        url = self.server + path + (f"?{urlencode(params)}" if params else "")
        data = json.dumps(body) if body is not None else None
        if method != "GET":
            metrics.API_WRITES.labels(verb=verb, kind=kind).inc()
        async with self.session.request(
            method, url, data=data, headers={"Content-Type": content_type}
        ) as response:
            text = await response.text()
            if response.status == 404 and method in ("GET", "DELETE"):
                return None
            if response.status >= 400:
                raise ApiError(response.status, text, f"{verb} {kind} {path}")
            return json.loads(text) if text else None

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
