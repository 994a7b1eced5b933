"""The gateway-api provider on a cluster without GRPCRoute (Gateway API before v1.1, or
an implementation without gRPC): HTTP routing goes on, the user is told once why gRPC is
not routed, and later reconciles do not ask again."""

from __future__ import annotations

import asyncio
from typing import Any

from modelserve_operator.controllers.cluster.client import ApiError
from tests.controllers.fake_api import Harness, model_deployment, version

GATEWAY = {"provider": "gateway-api", "gatewayRef": {"name": "inference"}}


def gateway_md() -> dict[str, Any]:
    md = model_deployment("m", "v1")
    md["spec"]["traffic"] = GATEWAY
    return md


def without_grpcroute(h: Harness) -> None:
    apply = h.api.apply

    async def refuse_grpcroute(obj: dict[str, Any], *args: Any, **kwargs: Any) -> dict:
        if obj["kind"] == "GRPCRoute":
            h.api.actions.append(("apply", "GRPCRoute", obj["metadata"]["name"]))
            raise ApiError(404, "the server could not find the requested resource",
                           "apply GRPCRoute")
        return await apply(obj, *args, **kwargs)

    h.api.apply = refuse_grpcroute  # type: ignore[method-assign]


def test_both_routes_where_the_cluster_serves_them():
    h = Harness()
    h.api.put(version("v1"))
    h.api.put(gateway_md())
    assert asyncio.run(h.settle("m"))[-1] == "Ready"
    assert {kind for kind, _, name in h.api.objects if name == "m"} >= {
        "HTTPRoute", "GRPCRoute"}


def test_no_grpcroute_kind_keeps_http_routed_and_says_so_once():
    h = Harness()
    without_grpcroute(h)
    h.api.put(version("v1"))
    h.api.put(gateway_md())
    assert asyncio.run(h.settle("m"))[-1] == "Ready"
    assert ("HTTPRoute", "ns", "m") in h.api.objects
    warned = [message for reason, message in h.api.events if reason == "RouteKindNotServed"]
    assert len(warned) == 1 and "GRPCRoute" in warned[0], h.api.events
    h.api.actions.clear()
    for _ in range(3):
        asyncio.run(h.reconcile("m"))
    assert h.api.actions == []  # steady state: no write, no retry of the missing kind
