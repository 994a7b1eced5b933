"""The committed CRDs are exactly what the pydantic models generate, and structural."""

import pathlib
import subprocess
import sys

import pytest
import yaml

from modelserve_operator.api import ModelDeploymentSpec, ModelVersionSpec
from modelserve_operator.api.crd import all_crds

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_committed_crds_match_the_models():
    result = subprocess.run(
        [sys.executable, str(ROOT / "hack" / "gen-crds"), "--check"],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _walk(node, path="$"):
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from _walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _walk(value, f"{path}[{i}]")


@pytest.mark.parametrize("name", sorted(all_crds()))
def test_schema_is_structural(name):
    schema = all_crds()[name]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for path, node in _walk(schema):
        for banned in ("$ref", "anyOf", "allOf", "oneOf", "title", "$defs"):
            assert banned not in node or path.endswith(".properties"), f"{banned} at {path}"
        if "properties" in node and not path.endswith(".properties"):
            assert node.get("type") == "object", f"untyped object at {path}"
            assert "additionalProperties" not in node, path


@pytest.mark.parametrize("name", sorted(all_crds()))
def test_every_spec_field_has_a_description(name):
    spec = all_crds()[name]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]
    for path, node in _walk(spec["spec"]):
        if path.endswith(".properties") or ".properties" not in path:
            continue
        if path.rsplit(".", 2)[-2] == "properties":  # a field, not a keyword's value
            assert node.get("description"), f"no description at {path}"


def test_examples_parse_with_the_models():
    for path in (ROOT / "examples").glob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            model = {"ModelVersion": ModelVersionSpec,
                     "ModelDeployment": ModelDeploymentSpec}[doc["kind"]]
            model.model_validate(doc["spec"])


def test_model_deployment_has_scale_subresource_and_short_names():
    crd = all_crds()["modelserve.io_modeldeployments.yaml"]
    version = crd["spec"]["versions"][0]
    assert version["subresources"]["scale"]["specReplicasPath"] == ".spec.replicas"
    assert crd["spec"]["names"]["shortNames"] == ["md"]
    assert "modelserve" in crd["spec"]["names"]["categories"]
    assert [c["name"] for c in version["additionalPrinterColumns"]][:5] == [
        "Ready", "Revision", "Canary", "Weight", "Status"]
