"""TorchScript models carry no signature: the rendered env spells out their inputs."""

import json

from modelserve_operator.api import ModelDeploymentSpec, ModelVersionSpec
from modelserve_operator.render import Meta, RenderSettings, render_deployment


def test_input_shapes_become_modelserve_inputs():
    version = ModelVersionSpec.model_validate({
        "model": {"uri": "https://m/model.pt", "format": "torchscript"},
        "runtime": {"backend": "torch",
                    "inputShapes": [{"name": "x", "shape": [3, 224, 224], "datatype": "FP16"}]},
    })
    dep = render_deployment(Meta("m", "ns", "u"), ModelDeploymentSpec(model_version="v"),
                            "v", version, 1, "stable", 1, RenderSettings())
    env = {e["name"]: e.get("value") for e in
           dep["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert json.loads(env["MODELSERVE_INPUTS"]) == [
        {"name": "x", "datatype": "FP16", "shape": [3, 224, 224]}]
