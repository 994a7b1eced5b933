"""The standalone engine (`--torch-compile standalone`, backends/standalone.py): its file,
how the compiled graph's inputs are fed, and, where torch is installed, a build on CPU
loaded in a fresh process (inductor's CPU code: the same artifact path as on a GPU)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from modelserve_runtime.backends.standalone import Feed, arguments, feeds_for, pack, unpack

RUNTIME = Path(__file__).resolve().parents[2] / "runtime"


def test_engine_file_round_trips_and_refuses_anything_else() -> None:
    feeds = [Feed("size", index=0, dim=0), Feed("input"), Feed("state", name="fc.weight")]
    assert unpack(pack(feeds, b"torch's artifact")) == (feeds, b"torch's artifact")
    with pytest.raises(ValueError, match="not a standalone"):
        unpack(b"a mega-cache blob")
    with pytest.raises(ValueError, match="truncated"):
        unpack(pack(feeds, b"")[:-5])


class _Tensor:
    def __init__(self, *shape: int) -> None:
        self.shape = shape


def test_feeds_follow_identity_and_sizes_follow_their_input() -> None:
    x, mask, w, b = _Tensor(8, 3), _Tensor(8, 3), _Tensor(3, 3), _Tensor(3)
    placeholders = [  # as Dynamo lists them: a symbolic size before its tensor
        ("L['x'].size()[0]", 8, True),
        ("L['x']", x, False),
        ("L['self']._modules['fc']._parameters['weight']", w, False),
        ("L['mask']", mask, False),
        ("L['self']._modules['fc']._parameters['bias']", b, False),
    ]
    feeds = feeds_for(placeholders, [x, mask], {"fc.weight": w, "fc.bias": b})
    assert feeds == [
        Feed("size", index=0, dim=0),
        Feed("input", index=0),
        Feed("state", name="fc.weight"),
        Feed("input", index=1),
        Feed("state", name="fc.bias"),
    ]
    y, other = _Tensor(5, 3), _Tensor(5, 3)
    assert arguments(feeds, (y, other), {"fc.weight": w, "fc.bias": b}) == [5, y, w, other, b]


def test_a_graph_input_that_is_neither_input_nor_state_is_refused() -> None:
    x, stray = _Tensor(2), _Tensor(2)
    with pytest.raises(ValueError, match="neither an input nor the module's state"):
        feeds_for([("L['x']", x, False), ("G['cache']", stray, False)], [x], {})
    with pytest.raises(ValueError, match="a size of something not an input"):
        feeds_for([("L['y'].size()[0]", 2, True), ("L['x']", x, False)], [x], {})


# --- with torch: a real build, loaded in a fresh process -----------------------------
_LOAD = textwrap.dedent(
    """
    import json, sys
    import torch, torch._inductor
    from modelserve_runtime.backends.standalone import StandaloneEngine
    program, engine_file, swap = sys.argv[1], sys.argv[2], sys.argv[3] == "swap"
    module = torch.export.load(program).module()
    engine = StandaloneEngine.load(torch, module, engine_file)
    if swap:  # the two 4x4 weights fed the wrong way round
        names = [f.name for f in engine.feeds]
        a, b = names.index("0.weight"), names.index("2.weight")
        engine.feeds[a], engine.feeds[b] = engine.feeds[b], engine.feeds[a]
    diffs = {}
    with torch.no_grad():
        for rows in (5, 2, 16):
            x = torch.randn(rows, 4)
            try:
                diffs[rows] = float((engine(x)[0] - module(x)).abs().max())
            except Exception as exc:
                diffs[rows] = str(exc)
    print(json.dumps(diffs))
    """
)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    torch = pytest.importorskip("torch")
    pytest.importorskip("torch._inductor.standalone_compile")
    tmp = tmp_path_factory.mktemp("standalone")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp / "inductor-build"))
        return _build(torch, tmp)


def _build(torch, tmp: Path) -> tuple[Path, Path]:
    from modelserve_runtime.backends.standalone import StandaloneEngine

    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU(), torch.nn.Linear(4, 4))
    batch = torch.export.Dim("batch", min=1, max=64)
    program = torch.export.export(model.eval(), (torch.randn(2, 4),), dynamic_shapes=({0: batch},))
    torch.export.save(program, tmp / "mlp.pt2")
    engine = StandaloneEngine(torch, torch.export.load(tmp / "mlp.pt2").module())
    x = torch.randn(8, 4)
    torch._dynamo.maybe_mark_dynamic(x, 0)
    with torch.no_grad():
        engine(x)  # builds, then checks itself against the module
    assert engine.save(str(tmp / "mlp.engine")) > 0
    return tmp / "mlp.pt2", tmp / "mlp.engine"


def _load_in_fresh_process(program: Path, engine: Path, how: str) -> dict:
    env = dict(
        os.environ,
        PYTHONPATH=str(RUNTIME),
        TORCHINDUCTOR_CACHE_DIR=str(engine.parent / f"inductor-{how}"),
    )
    out = subprocess.run(
        [sys.executable, "-c", _LOAD, str(program), str(engine), how],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_a_built_engine_loads_in_a_fresh_process_and_answers_as_the_model(
    built: tuple[Path, Path],
) -> None:
    diffs = _load_in_fresh_process(*built, "plain")
    assert set(diffs) == {"5", "2", "16"}  # every batch size through one dynamic graph
    assert all(isinstance(d, float) and d < 1e-4 for d in diffs.values()), diffs


def test_a_wrongly_fed_engine_is_refused_at_its_first_call(built: tuple[Path, Path]) -> None:
    diffs = _load_in_fresh_process(*built, "swap")
    assert "unlike the model's" in diffs["5"], diffs


def test_two_inputs_and_a_dict_of_outputs_go_through_one_engine(tmp_path: Path) -> None:
    """BERT's shape of model: token ids and a mask sharing the batch dimension, a dict
    with a floating and an integer output (checked exactly)."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("torch._inductor.standalone_compile")
    from modelserve_runtime.backends.standalone import StandaloneEngine

    class Tagger(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = torch.nn.Embedding(100, 8)
            self.fc = torch.nn.Linear(8, 3)

        def forward(self, ids, mask):
            h = self.emb(ids) * mask.unsqueeze(-1).float()
            return {"logits": self.fc(h.mean(1)), "first": ids[:, 0]}

    def inputs(rows: int) -> tuple:
        return torch.randint(0, 100, (rows, 16)), torch.ones(rows, 16, dtype=torch.int64)

    batch = torch.export.Dim("batch", min=1, max=64)
    program = torch.export.export(Tagger().eval(), inputs(2), dynamic_shapes=({0: batch},) * 2)
    torch.export.save(program, tmp_path / "tagger.pt2")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
        engine = StandaloneEngine(torch, torch.export.load(tmp_path / "tagger.pt2").module())
        first = inputs(8)
        for t in first:
            torch._dynamo.maybe_mark_dynamic(t, 0)
        with torch.no_grad():
            engine(*first)
        assert [f.kind for f in engine.feeds][:3] == ["size", "input", "input"]
        engine.save(str(tmp_path / "tagger.engine"))
        module = torch.export.load(tmp_path / "tagger.pt2").module()
        loaded = StandaloneEngine.load(torch, module, str(tmp_path / "tagger.engine"))
        with torch.no_grad():
            x = inputs(5)
            logits, first_ids = loaded(*x)
            want = module(*x)
    assert float((logits - want["logits"]).abs().max()) < 1e-5
    assert torch.equal(first_ids, want["first"])
