"""validate() and validate_overrides(): problems the API server cannot catch."""

from __future__ import annotations

from typing import Any

import pytest
from render_cases import version

from modelserve_operator.api import ModelDeploymentSpec, ModelVersionSpec
from modelserve_operator.render import validate, validate_overrides


def _v(**overrides: Any) -> ModelVersionSpec:
    return ModelVersionSpec.model_validate(version(**overrides))


@pytest.mark.parametrize(
    ("name", "overrides", "fragments"),
    [
        ("valid", {}, []),
        ("backend cannot load format",
         {"model": {"uri": "s3://m/x.pt", "format": "torchscript"}},
         ["spec.runtime.backend 'tensorrt' cannot load spec.model.format 'torchscript'"]),
        ("tensorrt on cpu",
         {"resources": {"gpu": {"count": 0}}},
         ["'tensorrt' needs a GPU but spec.resources.gpu.count is 0"]),
        ("mig with count 0",
         {"resources": {"gpu": {"count": 0, "mig": "1g.10gb"}}},
         ["spec.resources.gpu.mig"]),
        ("bad memory quantity",
         {"resources": {"gpu": {"count": 1}, "memory": "16GB"}},
         ["spec.resources.memory '16GB'"]),
        ("pvc without path", {"model": {"uri": "pvc://store", "format": "onnx"}},
         ["names no file"]),
        ("pvc bad claim", {"model": {"uri": "pvc://Store_1/m.onnx", "format": "onnx"}},
         ["PersistentVolumeClaim name"]),
        ("reserved and duplicate env",
         {"env": [{"name": "MODELSERVE_PORT", "value": "1"}, {"name": "A", "value": "1"},
                  {"name": "A", "value": "2"}]},
         ["spec.env: MODELSERVE_PORT", "spec.env: A is listed 2 times"]),
    ],
)
def test_validate(name: str, overrides: dict[str, Any], fragments: list[str]) -> None:
    """One problem per fragment, in order; each names the field it is about."""
    problems = validate(_v(**overrides))
    assert len(problems) == len(fragments), (name, problems)
    for fragment, problem in zip(fragments, problems, strict=True):
        assert fragment in problem, (name, problem)


def test_validate_overrides_reports_what_render_drops() -> None:
    spec = ModelDeploymentSpec.model_validate({"modelVersion": "v", "pod": {
        "env": [{"name": "MODELSERVE_BACKEND", "value": "torch"}],
        "volumes": [{"name": "cache", "emptyDir": {}}],
        "volumeMounts": [{"name": "x", "mountPath": "/tmp"}],
        "nodeSelector": {"nvidia.com/gpu.product": "T4"},
    }})
    with_product = _v(resources={"gpu": {"count": 1, "product": "H100"}})
    problems = validate_overrides(spec, with_product)
    assert [p.split(":")[0] for p in problems] == [
        "spec.pod.env", "spec.pod.volumes", "spec.pod.volumeMounts",
        "spec.pod.nodeSelector['nvidia.com/gpu.product'] is ignored"]
    assert len(validate_overrides(spec, _v())) == 3  # no product: the selector stands
    assert validate_overrides(ModelDeploymentSpec(model_version="v"), _v()) == []
