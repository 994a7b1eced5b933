"""The compiled engine a warm start loads without Dynamo (`--torch-compile auto`, the
default, or `standalone`).

The other engine (`default`/`max-autotune`, compiled.py) keeps torch's mega-cache and
calls torch.compile again on every start: Dynamo traces the exported graph anew (3.4-5.8
s of a ResNet-50 warm start on an H200) and only inductor's part comes from the cache.
Here the build keeps the graph Dynamo traced, compiles it with
`torch._inductor.standalone_compile`, and saves that `CompiledArtifact`; a start loads
the artifact and calls it directly. The artifact takes the graph's inputs as Dynamo
lifted them (the module's weights and buffers, the user's tensors, a tensor's size where
it is symbolic), so the engine file also records where each input comes from (`Feed`).

Measured on an H200 (hack/probe-standalone-compile, ResNet-50 fp16, fresh process and
inductor cache): from the model read to the first output 1.41 s against 3.70 s through
torch.compile and the mega-cache, GPU-only batch 128 in a CUDA graph 27.1k against 26.0k
rows/s, the same largest difference from the eager module (0.125) at batch 2-128.
Through the server (docs/runtime.md, Benchmark, seventh round): a warm start's first call
0.45-0.71 s against 3.2-3.7 s, the same throughput.

The first call after a build or a load is checked against the eager module, so a
mis-fed input or a stale file is caught before anything is served from it: a mismatch
raises, and the backend serves eagerly with a warning.
"""

from __future__ import annotations

import json
import os
import re
import struct
import tempfile
from dataclasses import asdict, dataclass
from typing import Any

from .compiled import write_atomically

MAGIC = b"modelserve-standalone-1\n"
_LENGTH = struct.Struct("<I")


@dataclass(frozen=True)
class Feed:
    """Where one input of the compiled graph comes from: `input` (the caller's
    positional tensor `index`), `size` (that tensor's size at `dim`), or `state` (the
    module's parameter or buffer `name`)."""

    kind: str
    index: int = 0
    dim: int = 0
    name: str = ""


def pack(feeds: list[Feed], artifact: bytes) -> bytes:
    """The engine file: a magic line, the feeds as JSON, then torch's artifact."""
    head = json.dumps([asdict(f) for f in feeds]).encode()
    return MAGIC + _LENGTH.pack(len(head)) + head + artifact


def unpack(blob: bytes) -> tuple[list[Feed], bytes]:
    """The inverse of `pack`; ValueError for anything else (a mega-cache file, a
    truncated one)."""
    if not blob.startswith(MAGIC) or len(blob) < len(MAGIC) + _LENGTH.size:
        raise ValueError("not a standalone engine file")
    (n,) = _LENGTH.unpack_from(blob, len(MAGIC))
    start = len(MAGIC) + _LENGTH.size
    if len(blob) < start + n:
        raise ValueError("truncated standalone engine file")
    feeds = [Feed(**f) for f in json.loads(blob[start : start + n])]
    return feeds, blob[start + n :]


_SIZE = re.compile(r"^(?P<base>.+)\.size\(\)\[(?P<dim>\d+)\]$")


def feeds_for(
    placeholders: list[tuple[str, Any, bool]], inputs: list[Any], state: dict
) -> list[Feed]:
    """Feeds from a Dynamo graph's placeholders, each (source name, example value,
    whether it is a symbolic size): the caller's tensors and the module's state are
    recognised by identity, sizes by their source (`<input's source>.size()[dim]`, which
    Dynamo places before the input itself). ValueError for any other input (nothing is
    guessed)."""
    by_id = {id(t): name for name, t in state.items()}
    input_at = {}  # an input's source name -> its position in the call
    for source, example, symbolic in placeholders:
        for i, t in enumerate(inputs):
            if not symbolic and example is t:
                input_at[source] = i
    feeds = []
    for source, example, symbolic in placeholders:
        if symbolic:
            match = _SIZE.match(source)
            if match is None or match["base"] not in input_at:
                raise ValueError(f"graph input {source!r}: a size of something not an input")
            feeds.append(Feed("size", index=input_at[match["base"]], dim=int(match["dim"])))
        elif source in input_at:
            feeds.append(Feed("input", index=input_at[source]))
        elif id(example) in by_id:
            feeds.append(Feed("state", name=by_id[id(example)]))
        else:
            raise ValueError(f"graph input {source!r} is neither an input nor the module's state")
    return feeds


def arguments(feeds: list[Feed], inputs: tuple[Any, ...], state: dict) -> list[Any]:
    """The compiled graph's arguments for one call."""
    args: list[Any] = []
    for f in feeds:
        if f.kind == "input":
            args.append(inputs[f.index])
        elif f.kind == "size":
            args.append(int(inputs[f.index].shape[f.dim]))
        else:
            args.append(state[f.name])
    return args


class StandaloneEngine:
    """A callable like the compiled module: built on its first call (the caller marks
    the batch dimension dynamic first, as for torch.compile), or loaded from a file."""

    def __init__(self, torch: Any, module: Any) -> None:
        self.torch = torch
        self.module = module
        self.state = {
            **dict(module.named_parameters(remove_duplicate=False)),
            **dict(module.named_buffers(remove_duplicate=False)),
        }
        self.feeds: list[Feed] | None = None
        self.artifact: Any = None
        self._checked = False

    @classmethod
    def load(cls, torch: Any, module: Any, path: str) -> StandaloneEngine:
        """Read an engine file; raises when it cannot be used (the caller builds)."""
        engine = cls(torch, module)
        with open(path, "rb") as f:
            engine.feeds, artifact = unpack(f.read())
        for feed in engine.feeds:
            if feed.kind == "state" and feed.name not in engine.state:
                raise ValueError(f"engine file feeds {feed.name!r}, which the model lacks")
        # torch loads an artifact from a path only; the temp file goes right after.
        with tempfile.TemporaryDirectory() as tmp:
            art_path = os.path.join(tmp, "artifact.bin")
            with open(art_path, "wb") as f:
                f.write(artifact)
            engine.artifact = torch._inductor.CompiledArtifact.load(path=art_path, format="binary")
        return engine

    def __call__(self, *inputs: Any) -> Any:
        if self.artifact is None:
            self._build(inputs)
        assert self.feeds is not None
        out = self.artifact(*arguments(self.feeds, inputs, self.state))
        if not self._checked:
            self._check(inputs, out)
        return tuple(out) if isinstance(out, list | tuple) else out

    def _build(self, inputs: tuple[Any, ...]) -> None:
        torch = self.torch
        graphs: list[tuple[Any, list[Any], list[tuple[str, Any, bool]]]] = []

        def keep(graph_module: Any, example_inputs: list[Any]) -> Any:
            graphs.append((graph_module, example_inputs, _placeholders(torch, graph_module)))
            return graph_module.forward

        torch.compile(self.module, backend=keep)(*inputs)
        if len(graphs) != 1:
            raise RuntimeError(f"Dynamo traced {len(graphs)} graphs; standalone needs exactly one")
        graph, example_inputs, placeholders = graphs[0]
        self.feeds = feeds_for(placeholders, list(inputs), self.state)
        # After the trace, not inside the backend: a cold compile there adds shape guards
        # whose symbols Dynamo cannot source (IndexError in produce_guards, torch 2.11).
        self.artifact = torch._inductor.standalone_compile(
            graph, example_inputs, dynamic_shapes="from_graph"
        )

    def _check(self, inputs: tuple[Any, ...], out: Any) -> None:
        """The first answer against the eager module's: same shapes, and each floating
        output pointing the same way (cosine >= 0.99; reduced precision moves values a
        little, a wrong weight moves them everywhere)."""
        torch = self.torch
        got = list(out) if isinstance(out, list | tuple) else [out]
        want = self.module(*inputs)
        want = list(want.values()) if isinstance(want, dict) else want
        want = list(want) if isinstance(want, list | tuple) else [want]
        if len(got) != len(want):
            raise RuntimeError(f"standalone engine: {len(got)} outputs, the model has {len(want)}")
        for g, w in zip(got, want, strict=True):
            if g.shape != w.shape:
                raise RuntimeError(
                    f"standalone engine: output {tuple(g.shape)}, model {tuple(w.shape)}"
                )
            if w.is_floating_point():
                cos = torch.nn.functional.cosine_similarity(
                    g.float().flatten(), w.float().flatten(), dim=0
                )
                if float(cos) < 0.99:
                    raise RuntimeError(
                        f"standalone engine: output unlike the model's (cosine {float(cos):.3f})"
                    )
            elif not torch.equal(g, w):
                raise RuntimeError("standalone engine: integer output differs from the model")
        self._checked = True

    def save(self, path: str) -> int:
        """The engine file at `path` (compiled.write_atomically); its size in bytes."""
        assert self.artifact is not None and self.feeds is not None
        # torch saves an artifact to a path only; the temp file goes right after.
        with tempfile.TemporaryDirectory() as tmp:
            art_path = os.path.join(tmp, "artifact.bin")
            self.artifact.save(path=art_path, format="binary")
            with open(art_path, "rb") as f:
                blob = pack(self.feeds, f.read())
        write_atomically(path, blob)
        return len(blob)


def _placeholders(torch: Any, graph_module: Any) -> list[tuple[str, Any, bool]]:
    """(source name, example value, symbolic size?) of each input of a Dynamo graph."""
    out = []
    for node in graph_module.graph.nodes:
        if node.op != "placeholder":
            continue
        arg = node.meta["grapharg"]
        name = arg.source.name
        name = name() if callable(name) else name
        symbolic = isinstance(node.meta.get("example_value"), torch.SymInt)
        out.append((name, arg.example, symbolic))
    return out
