"""Model storage in the pod: the fetch's flags, the credentials Secret and the node cache."""

import pytest

from modelserve_operator.api.modeldeployment import ModelCache
from modelserve_operator.api.modelversion import ModelArtifact
from modelserve_operator.render import RenderSettings
from modelserve_operator.render.model import fetch_command, fetch_volumes, uses_node_cache

SHA = "ab" * 32
CACHE_ON = RenderSettings(model_cache_path="/var/lib/modelserve/models")
CACHE_DEFAULT_ON = RenderSettings(model_cache_path="/var/lib/modelserve/models",
                                  model_cache_default=True)


def artifact(uri="s3://b/m.onnx", sha256=SHA, **extra):
    return ModelArtifact.model_validate({"uri": uri, "format": "onnx", "sha256": sha256,
                                         **extra})


CACHE_CASES = {
    "chart has no cache path": (artifact(), ModelCache(enabled=True), RenderSettings(), False),
    "no digest to key it by": (artifact(sha256=None), ModelCache(enabled=True), CACHE_ON, False),
    "pvc is mounted, not fetched": (artifact("pvc://claim/m.onnx"), ModelCache(enabled=True),
                                    CACHE_ON, False),
    "deployment opts in": (artifact(), ModelCache(enabled=True), CACHE_ON, True),
    "chart default off, unset": (artifact(), None, CACHE_ON, False),
    "chart default on, unset": (artifact(), ModelCache(), CACHE_DEFAULT_ON, True),
    "chart default on, deployment opts out": (artifact(), ModelCache(enabled=False),
                                              CACHE_DEFAULT_ON, False),
}


@pytest.mark.parametrize("art,cache,settings,want", CACHE_CASES.values(), ids=CACHE_CASES.keys())
def test_uses_node_cache(art, cache, settings, want):
    assert uses_node_cache(art, cache, settings) is want


def test_flags_follow_the_spec():
    art = artifact(s3={"endpoint": "http://store:8333", "forcePathStyle": False})
    assert fetch_command(art) == ["modelserve-runtime", "fetch", "--uri", "s3://b/m.onnx",
                                  "--sha256", SHA, "--s3-endpoint", "http://store:8333",
                                  "--dest", "/models/model.onnx"]


def test_the_secret_is_mounted_into_the_fetch_only_and_never_read():
    volumes, mounts = fetch_volumes(artifact(secretRef={"name": "store"}), False, CACHE_ON)
    assert volumes == [{"name": "model-credentials", "secret": {"secretName": "store"}}]
    assert mounts == [{"name": "model-credentials", "readOnly": True,
                       "mountPath": "/var/run/secrets/modelserve/storage"}]


def test_no_secret_and_no_cache_add_nothing():
    assert fetch_volumes(artifact(), False, RenderSettings()) == ([], [])
