"""The operator↔runtime contract, checked from both sides: every golden render's runtime
container goes through the runtime's own settings parser, so a renamed env variable, a
flag the runtime dropped or a value it no longer accepts fails here, not in a pod."""

from __future__ import annotations

import pathlib
import re
import typing

import pytest
import yaml

from modelserve_operator.api.modelversion import Backend, ModelFormat, Precision
from modelserve_operator.render.pod import CONTRACT_ENV
from modelserve_runtime import config as runtime_config
from modelserve_runtime import contract

GOLDEN = pathlib.Path(__file__).parent / "golden"
RENDERS = sorted(p.relative_to(GOLDEN).as_posix() for p in GOLDEN.rglob("*.yaml"))
RUNTIME_SOURCE = pathlib.Path(runtime_config.__file__).parent
# What the runtime reads from its environment: its flag table, plus the names its other
# modules read directly (the fetch cache's pin, engine roles …).
FLAG_ENV = {env for _, env, _, _ in runtime_config._OPTIONS}
RUNTIME_ENV = FLAG_ENV | {
    name for path in RUNTIME_SOURCE.rglob("*.py")
    for name in re.findall(r'"(MODELSERVE_[A-Z0-9_]+)"', path.read_text())}


def runtime_containers(path: pathlib.Path) -> list[dict]:
    found = []
    for doc in yaml.safe_load_all(path.read_text()):
        if doc and doc.get("kind") == "Deployment":
            for container in doc["spec"]["template"]["spec"]["containers"]:
                if container.get("command") == ["modelserve-runtime"]:
                    found.append(container)
    return found


def test_every_contract_env_is_one_the_runtime_reads():
    assert set(CONTRACT_ENV) - RUNTIME_ENV == set()


@pytest.mark.parametrize("name", RENDERS)
def test_golden_render_parses_as_runtime_settings(name):
    containers = runtime_containers(GOLDEN / name)
    if not containers:
        pytest.skip("no runtime Deployment in this render")
    for container in containers:
        env = {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}
        unknown = {n for n in env if n.startswith("MODELSERVE_")} - RUNTIME_ENV
        assert unknown == set(), f"rendered env the runtime ignores: {unknown}"
        args = container.get("args", [])
        assert args[:1] == ["serve"], args
        settings = runtime_config.load_settings(args[1:], env)  # raises on a bad value
        assert settings.model_name == env["MODELSERVE_MODEL_NAME"]
        assert settings.model_path == env["MODELSERVE_MODEL_PATH"]
        assert settings.backend == env["MODELSERVE_BACKEND"]
        ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
        assert settings.port == ports["http"]


def test_the_api_offers_what_the_runtime_serves():
    """ModelVersion's formats, backends and precisions are the contract's."""
    assert set(typing.get_args(ModelFormat)) == set(contract.FORMATS)
    assert set(typing.get_args(Backend)) == set(contract.BACKENDS)
    assert set(typing.get_args(Precision)) == set(contract.PRECISIONS)
    assert set(contract.DEFAULT_BACKEND) == set(contract.FORMATS)


def test_contract_env_names_are_the_runtime_flags_env():
    """Every variable the contract names is one the runtime reads (flag table or source)."""
    names = {v for k, v in vars(contract).items() if k.isupper() and isinstance(v, str)
             and v.startswith("MODELSERVE_")}
    assert names - RUNTIME_ENV == set()
