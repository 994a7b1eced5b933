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


def test_virtualservice_weights():
    vs = render("istio", Split(1, 2, 50))["VirtualService"]
    route = vs["spec"]["http"][0]["route"]
    assert [(r["destination"]["host"], r["weight"]) for r in route] == [
        ("m-r1.ns.svc.cluster.local", 50), ("m-r2.ns.svc.cluster.local", 50)]
    assert vs["spec"]["hosts"][0] == "m.ns.svc.cluster.local"


def test_fallback_route():
    route = render("gateway-api", Split(1, 2, 10, fallback=True))["HTTPRoute"]
    assert [b["name"] for b in route["spec"]["rules"][0]["backendRefs"]] == ["m-fallback"]


def test_switching_provider_names_the_kinds_left_behind() -> None:
    from modelserve_operator.render.traffic import API_VERSIONS, stale_kinds

    assert stale_kinds("gateway-api", "service") == ["HTTPRoute"]
    assert stale_kinds("istio", "gateway-api") == ["VirtualService"]
    assert stale_kinds("service", "istio") == []  # the Service stays: istio renders it too
    assert stale_kinds(None, "service") == []  # first apply, or an older operator's status
    assert stale_kinds("gateway-api", "gateway-api") == []
    assert stale_kinds("linkerd", "service") == []  # unknown: nothing is guessed
    for provider in PROVIDERS.values():
        assert set(provider.kinds) <= set(API_VERSIONS)
