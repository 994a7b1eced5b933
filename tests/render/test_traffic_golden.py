"""Golden files for the routes each traffic provider renders during a canary: the whole
objects, HTTP and gRPC (tests/render/golden/traffic/<provider>.yaml).

Run with UPDATE_GOLDEN=1 to rewrite them, then read the diff before committing it.
"""

from __future__ import annotations

import pathlib

import pytest
import yaml

from modelserve_operator.api import ModelDeploymentSpec
from modelserve_operator.render import Meta, RenderSettings
from modelserve_operator.render.traffic import PROVIDERS, Split
from tests.golden import assert_golden

GOLDEN = pathlib.Path(__file__).parent / "golden" / "traffic"
MD = Meta(name="resnet50", namespace="ml", uid="6f1c3a52-1d1e-4a43-9b0e-3d1f0a9e2c11")
TRAFFIC = {
    "gateway-api": {"provider": "gateway-api", "hostnames": ["resnet50.example.com"],
                    "gatewayRef": {"name": "inference", "namespace": "gateways",
                                   "sectionName": "web"}},
    "istio": {"provider": "istio", "hostnames": ["resnet50.example.com"]},
}


def render(provider: str) -> str:
    spec = ModelDeploymentSpec.model_validate(
        {"modelVersion": "resnet50-v3", "traffic": TRAFFIC[provider]})
    # Stable revision 3 at 80 %, canary revision 4 at 20 %.
    objects = PROVIDERS[provider].render(MD, spec, Split(3, 4, 20), RenderSettings())
    return yaml.safe_dump_all(objects, sort_keys=False, width=100)


@pytest.mark.parametrize("provider", sorted(TRAFFIC))
def test_traffic_golden(provider: str) -> None:
    assert_golden(GOLDEN / f"{provider}.yaml", render(provider))
