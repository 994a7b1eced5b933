"""Traffic providers render the split they are given."""

from modelserve_operator.api import ModelDeploymentSpec
from modelserve_operator.render import Meta, RenderSettings
from modelserve_operator.render.traffic import PROVIDERS, Split

MD = Meta("m", "ns", "uid")


def spec(provider):
    return ModelDeploymentSpec.model_validate({"modelVersion": "v", "traffic": {
        "provider": provider, "gatewayRef": {"name": "gw", "namespace": "gateways"},
        "hostnames": ["m.example.com"]}})


def render(provider, split):
    return {o["kind"]: o for o in PROVIDERS[provider].render(MD, spec(provider), split,
                                                             RenderSettings())}


def test_service_selects_only_stable_without_a_canary():
    svc = render("service", Split(3))["Service"]
    assert svc["spec"]["selector"]["modelserve.io/revision"] == "3"
    during = render("service", Split(3, 4, 10))["Service"]
    assert "modelserve.io/revision" not in during["spec"]["selector"]
    fallback = render("service", Split(3, fallback=True))["Service"]
    assert fallback["spec"]["selector"]["modelserve.io/pool"] == "fallback"


def test_httproute_weights_and_parent():
    route = render("gateway-api", Split(1, 2, 10))["HTTPRoute"]
    assert route["spec"]["parentRefs"][0] == {
        "group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "gw",
        "namespace": "gateways"}
    assert [(b["name"], b["weight"]) for b in route["spec"]["rules"][0]["backendRefs"]] == [
        ("m-r1", 90), ("m-r2", 10)]
    assert route["spec"]["hostnames"] == ["m.example.com"]
    assert route["metadata"]["ownerReferences"][0]["uid"] == "uid"


def test_grpcroute_has_the_httproute_weights_on_the_grpc_port():
    objects = render("gateway-api", Split(1, 2, 10))
    http, grpc = objects["HTTPRoute"], objects["GRPCRoute"]
    assert grpc["apiVersion"] == "gateway.networking.k8s.io/v1"
    assert grpc["spec"]["parentRefs"] == http["spec"]["parentRefs"]
    assert grpc["spec"]["hostnames"] == http["spec"]["hostnames"]
    rule = grpc["spec"]["rules"][0]
    assert [(b["name"], b["port"], b["weight"]) for b in rule["backendRefs"]] == [
        ("m-r1", 8081, 90), ("m-r2", 8081, 10)]
    # Only the inference service's paths: the HTTPRoute keeps everything else.
    assert rule["matches"] == [{"method": {"type": "Exact",
                                           "service": "inference.GRPCInferenceService"}}]
    assert grpc["metadata"]["ownerReferences"][0]["uid"] == "uid"


def test_no_grpc_routes_without_a_grpc_port():
    settings = RenderSettings(grpc_port=0)
    gateway = PROVIDERS["gateway-api"].render(MD, spec("gateway-api"), Split(1), settings)
    assert [o["kind"] for o in gateway] == ["Service", "HTTPRoute"]
    istio = PROVIDERS["istio"].render(MD, spec("istio"), Split(1), settings)
    assert [len(o["spec"]["http"]) for o in istio if o["kind"] == "VirtualService"] == [1]


def test_virtualservice_weights():
    vs = render("istio", Split(1, 2, 50))["VirtualService"]
    grpc, http = vs["spec"]["http"]
    assert [(r["destination"]["host"], r["destination"]["port"]["number"], r["weight"])
            for r in http["route"]] == [
        ("m-r1.ns.svc.cluster.local", 8080, 50), ("m-r2.ns.svc.cluster.local", 8080, 50)]
    assert "match" not in http  # everything that is not gRPC, as before
    # gRPC: matched on the port the caller dialled, sent to the revisions' gRPC port.
    assert grpc["match"] == [{"port": 8081}]
    assert [(r["destination"]["host"], r["destination"]["port"]["number"], r["weight"])
            for r in grpc["route"]] == [
        ("m-r1.ns.svc.cluster.local", 8081, 50), ("m-r2.ns.svc.cluster.local", 8081, 50)]
    assert vs["spec"]["hosts"][0] == "m.ns.svc.cluster.local"


def test_fallback_route():
    objects = render("gateway-api", Split(1, 2, 10, fallback=True))
    for kind in ("HTTPRoute", "GRPCRoute"):
        rule = objects[kind]["spec"]["rules"][0]
        assert [b["name"] for b in rule["backendRefs"]] == ["m-fallback"], kind


def test_switching_provider_names_the_kinds_left_behind() -> None:
    from modelserve_operator.render.traffic import API_VERSIONS, stale_kinds

    assert stale_kinds("gateway-api", "service") == ["GRPCRoute", "HTTPRoute"]
    assert stale_kinds("istio", "gateway-api") == ["VirtualService"]
    assert stale_kinds("service", "istio") == []  # the Service stays: istio renders it too
    assert stale_kinds(None, "service") == []  # first apply, or an older operator's status
    assert stale_kinds("gateway-api", "gateway-api") == []
    assert stale_kinds("linkerd", "service") == []  # unknown: nothing is guessed
    for provider in PROVIDERS.values():
        assert set(provider.kinds) <= set(API_VERSIONS)
