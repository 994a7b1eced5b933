"""The torch backend's compiled engine: cache key, build/load decision, the cache file's
fallbacks (CPU, with a stand-in for torch.compiler), and on a GPU a real build and
reload (skipped elsewhere)."""

from __future__ import annotations

import dataclasses
import json
import os
import stat
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from modelserve_runtime.backends import compiled
from modelserve_runtime.backends.compiled import BuildOptions, EngineKey, plan
from modelserve_runtime.config import ConfigError, Settings, load_settings

KEY = EngineKey(
    model_sha256="ab" * 32,
    capability="sm90",
    torch_version="2.11.0+cu130",
    precision="fp16",
    buckets=(1, 2, 4, 8, 16, 32, 48, 64, 80, 96, 112, 128),
    options=BuildOptions(),
)


def test_engine_key_names_everything_that_changes_the_generated_code() -> None:
    name = KEY.filename()
    assert name.startswith("abababababababab-sm90-torch2.11.0-cu130-fp16-b128-")
    assert name.endswith(".torchcompile")
    changed = [
        dataclasses.replace(KEY, model_sha256="cd" * 32),
        dataclasses.replace(KEY, capability="sm80"),
        dataclasses.replace(KEY, torch_version="2.12.0+cu130"),
        dataclasses.replace(KEY, precision="bf16"),
        dataclasses.replace(KEY, buckets=(1, 2, 4, 8, 16, 32, 64, 128)),
        dataclasses.replace(KEY, options=BuildOptions(mode="max-autotune")),
        dataclasses.replace(KEY, options=BuildOptions(freezing=True)),
        dataclasses.replace(KEY, options=BuildOptions(dynamic_batch=False)),
        dataclasses.replace(KEY, options=BuildOptions(channels_last=False)),
    ]
    names = {k.filename() for k in changed}
    assert len(names) == len(changed) and name not in names
    assert EngineKey(**dataclasses.asdict(KEY) | {"options": BuildOptions()}).filename() == name


def test_engine_key_changes_with_the_recipe(monkeypatch: pytest.MonkeyPatch) -> None:
    before = KEY.filename()
    monkeypatch.setattr(compiled, "RECIPE", compiled.RECIPE + 1)
    assert KEY.filename() != before


def test_plan_compiles_only_an_exported_program_on_a_gpu(tmp_path: Path) -> None:
    pt2 = str(tmp_path / "m.pt2")
    assert plan("off", True, pt2, str(tmp_path), KEY).action == "eager"
    assert plan("auto", False, pt2, str(tmp_path), KEY).action == "eager"
    torchscript = plan("auto", True, str(tmp_path / "m.pt"), str(tmp_path), KEY)
    assert torchscript.action == "eager" and ".pt2" in torchscript.why
    assert plan("auto", True, pt2, str(tmp_path), None).action == "eager"


def test_plan_builds_then_loads_from_the_cache(tmp_path: Path) -> None:
    pt2 = str(tmp_path / "m.pt2")
    first = plan("auto", True, pt2, str(tmp_path), KEY)
    assert first.action == "build" and first.path == str(tmp_path / KEY.filename())
    Path(first.path).write_bytes(b"artifacts")
    second = plan("default", True, pt2, str(tmp_path), KEY)
    assert second.action == "load" and second.path == first.path
    other = dataclasses.replace(KEY, precision="bf16")
    assert plan("auto", True, pt2, str(tmp_path), other).action == "build"


def test_plan_without_a_cache_dir_builds_every_start(tmp_path: Path) -> None:
    p = plan("auto", True, str(tmp_path / "m.pt2"), None, KEY)
    assert p.action == "build" and p.path is None


def test_options_follow_the_setting_and_the_model() -> None:
    assert compiled.options_for("auto", True) == BuildOptions()
    assert compiled.options_for("default", False).channels_last is False
    assert compiled.options_for("max-autotune", True).mode == "max-autotune"
    assert compiled.options_for("standalone", True) == BuildOptions(loader="standalone")
    dynamo = compiled.options_for("default", True)
    assert dynamo == BuildOptions(loader="dynamo")  # torch.compile and its mega-cache
    assert compiled.options_for("max-autotune", True).loader == "dynamo"
    assert KEY.filename() != dataclasses.replace(KEY, options=dynamo).filename()


def _fake_torch(saved: bytes | None = b"blob", load_error: Exception | None = None):
    loaded: list[bytes] = []

    def load_cache_artifacts(blob: bytes) -> None:
        if load_error is not None:
            raise load_error
        loaded.append(blob)

    compiler = SimpleNamespace(
        save_cache_artifacts=lambda: None if saved is None else (saved, object()),
        load_cache_artifacts=load_cache_artifacts,
    )
    return SimpleNamespace(compiler=compiler), loaded


def test_save_writes_the_whole_file_by_rename_and_load_reads_it(tmp_path: Path) -> None:
    torch, loaded = _fake_torch(b"x" * 1000)
    path = str(tmp_path / "cache" / KEY.filename())
    assert compiled.save_artifacts(torch, path)
    assert Path(path).read_bytes() == b"x" * 1000
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [KEY.filename()]  # no temp left
    assert compiled.load_artifacts(torch, path) and loaded == [b"x" * 1000]


def test_an_unusable_cache_file_means_compile_not_fail(tmp_path: Path) -> None:
    path = tmp_path / KEY.filename()
    path.write_bytes(b"truncated")
    torch, _ = _fake_torch(load_error=RuntimeError("bad magic"))
    assert compiled.load_artifacts(torch, str(path)) is False
    assert compiled.load_artifacts(torch, str(tmp_path / "missing")) is False


def test_nothing_to_save_or_a_read_only_volume_still_serves(tmp_path: Path) -> None:
    torch, _ = _fake_torch(saved=None)
    assert compiled.save_artifacts(torch, str(tmp_path / "a")) is False
    if os.geteuid() == 0:
        pytest.skip("root writes into read-only directories")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(stat.S_IRUSR | stat.S_IXUSR)
    torch, _ = _fake_torch()
    assert compiled.save_artifacts(torch, str(ro / "b")) is False


def test_progress_says_what_it_is_doing(monkeypatch: pytest.MonkeyPatch) -> None:
    said = threading.Event()
    lines: list[str] = []

    def info(fmt: str, *args: object) -> None:
        lines.append(fmt % args)
        said.set()

    monkeypatch.setattr(compiled.log, "info", info)
    with compiled.progress("building engine", every_s=0.01) as clock:
        assert said.wait(30), "no progress line"
    assert lines[0].startswith("building engine, ") and lines[0].endswith(" s")
    assert clock() > 0


def test_progress_reaches_the_hook_with_seconds_since_the_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[tuple[str, float]] = []
    ticked = threading.Event()

    def hook(phase: str, elapsed_s: float) -> None:
        seen.append((phase, elapsed_s))
        if len(seen) > 1:
            ticked.set()

    compiled.set_progress_hook(hook)
    try:
        since = time.monotonic() - 100  # the load began 100 s ago
        with compiled.progress("loading engine", every_s=0.01, since=since):
            assert ticked.wait(30), "no tick reached the hook"
        compiled.report_progress("ready", 123.0)
    finally:
        compiled.set_progress_hook(None)
    assert seen[0][0] == "loading engine" and seen[0][1] >= 100
    assert seen[-1] == ("ready", 123.0)
    compiled.report_progress("after", 1.0)  # the no-op again
    assert seen[-1] == ("ready", 123.0)


def test_a_failing_progress_hook_never_stops_a_load() -> None:
    def broken(phase: str, elapsed_s: float) -> None:
        raise RuntimeError("status endpoint down")

    compiled.set_progress_hook(broken)
    try:
        compiled.report_progress("import torch", 3.0)
        with compiled.progress("building engine", every_s=60):
            pass
    finally:
        compiled.set_progress_hook(None)


@pytest.mark.parametrize(
    ("compiled_engine", "options", "expected"),
    [
        ("compiled, dynamic batch", BuildOptions(), [2, 4, 8, 16]),
        ("eager", None, [1, 2, 4, 8, 16]),
        ("compiled, one graph per bucket", BuildOptions(dynamic_batch=False), [1, 2, 4, 8, 16]),
    ],
)
def test_batch_one_shares_the_two_row_graph_only_in_a_dynamic_engine(
    compiled_engine: str, options: BuildOptions | None, expected: list[int]
) -> None:
    buckets = [1, 2, 4, 8, 16]
    is_compiled = options is not None
    got = compiled.graph_buckets(buckets, is_compiled, options or BuildOptions())
    assert got == expected, compiled_engine
    assert compiled.graph_buckets([1], True, BuildOptions()) == [1]  # max batch 1


def test_cudnn_autotuning_policies() -> None:
    buckets = [1, 2, 4, 8, 16, 32, 48, 64, 80, 96, 112, 128]
    assert not any(compiled.cudnn_autotune(b, buckets) for b in buckets)  # default: none
    tuned = [b for b in buckets if compiled.cudnn_autotune(b, buckets, "large")]
    assert tuned == [64, 80, 96, 112, 128]
    assert all(compiled.cudnn_autotune(b, buckets, "all") for b in buckets)


def test_weights_are_not_frozen_by_default() -> None:
    # A frozen graph bypasses the AOT-autograd cache: every warm start re-traced it.
    assert BuildOptions().freezing is False
    assert compiled.options_for("auto", True).freezing is False


def test_a_module_without_bytecode_is_told_apart(tmp_path: Path) -> None:
    """The torch backend warns when torch has no .pyc (every start then compiles its
    source): the check looks where this interpreter would read the bytecode."""
    import py_compile

    source = tmp_path / "mod.py"
    source.write_text("x = 1\n")
    assert compiled.without_bytecode(str(source))
    py_compile.compile(str(source))
    assert not compiled.without_bytecode(str(source))
    assert not compiled.without_bytecode(str(tmp_path / "ext.so"))  # nothing to compile


def test_torch_compile_setting_is_validated() -> None:
    base = ["--model-name", "m", "--model-path", "/m.pt2", "--format", "torchscript"]
    assert load_settings(base, {}).torch_compile == "auto"
    assert load_settings(base, {"MODELSERVE_TORCH_COMPILE": "off"}).torch_compile == "off"
    with pytest.raises(ConfigError, match="--torch-compile"):
        load_settings([*base, "--torch-compile", "fast"], {})


# --- on a GPU ----------------------------------------------------------------------
def _conv_program(torch, path: Path) -> None:
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, 3, padding=1),
        torch.nn.BatchNorm2d(16),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(16, 10),
    ).eval()
    batch = torch.export.Dim("batch", min=1, max=16)
    program = torch.export.export(model, (torch.randn(4, 3, 32, 32),), dynamic_shapes=({0: batch},))
    torch.export.save(program, str(path))


def test_compiled_engine_builds_caches_and_reloads_on_a_gpu(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    from modelserve_runtime.backends.torch import TorchBackend

    model = tmp_path / "conv.pt2"
    _conv_program(torch, model)
    spec = [{"name": "input", "datatype": "FP16", "shape": [-1, 3, 32, 32]}]

    def backend(compile_setting: str) -> TorchBackend:
        b = TorchBackend(
            Settings(
                model_name="conv",
                model_path=str(model),
                model_format="torchscript",
                backend="torch",
                precision="fp16",
                max_batch_size=16,
                inputs=json.dumps(spec),
                engine_cache_dir=str(tmp_path / "engines"),
                torch_compile=compile_setting,
            )
        )
        b.load()
        b.warmup()
        return b

    x = np.random.default_rng(1).standard_normal((5, 3, 32, 32)).astype(np.float16)
    eager = backend("off").infer({"input": [x]}, 5)["output0"]
    built = backend("auto")
    assert built.engine_info["action"] == "build" and built.engine_info["saved"]
    assert len(list((tmp_path / "engines").iterdir())) == 1
    reloaded = backend("auto")
    assert reloaded.engine_info["action"] == "load"
    for b in (built, reloaded):
        out = b.infer({"input": [x]}, 5)["output0"]
        err = np.linalg.norm(out - eager) / np.linalg.norm(eager)
        assert err < 2e-2, err


def test_a_cold_build_reports_building_engine_to_the_pods_progress(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The wiring Model.load installs (model.report_engine_progress): what the operator
    reads from the pod during a cold build names the engine build and its seconds."""
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    from modelserve_runtime import progress
    from modelserve_runtime.backends.torch import TorchBackend
    from modelserve_runtime.metrics import Metrics
    from modelserve_runtime.model import Model

    seen: list[tuple[str, str | None]] = []
    real_report = progress.report

    def record(phase, done=None, total=None, *, unit="bytes", **kw):
        seen.append((phase, unit if done is not None else None))
        real_report(phase, done, total, unit=unit, **kw)

    monkeypatch.setattr(progress, "report", record)
    model_file = tmp_path / "conv.pt2"
    _conv_program(torch, model_file)
    settings = Settings(
        model_name="conv", model_path=str(model_file), model_format="torchscript",
        backend="torch", precision="fp16", max_batch_size=16,
        inputs=json.dumps([{"name": "input", "datatype": "FP16", "shape": [-1, 3, 32, 32]}]),
        engine_cache_dir=str(tmp_path / "engines"), torch_compile="auto",
    )
    Model(settings, TorchBackend(settings), Metrics()).load()
    phases = [phase for phase, _ in seen]
    assert ("building engine", None) in seen, seen  # no count: seconds, when asked
    assert phases[0] == "loading the model" and phases[-1] == "loaded", phases
    assert progress.current()["phase"] == "loaded"
