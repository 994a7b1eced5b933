"""Compiled engines for the torch backend: built once, cached, loaded in seconds.

The torch backend as it was (eager ops replayed in CUDA graphs) left most of an H200
unused: ResNet-50 fp16 ran 11.1k img/s in NCHW, 17.3k in channels_last and 30.0k
through torch.compile (inductor, frozen weights) at batch 128. This module turns a
model into that compiled engine and keeps what the compiler produced in the engine
cache, so that the next start loads instead of compiling again.

Two engines, one interface (`BuildOptions.loader`): by default inductor's standalone
artifact, which a start loads without Dynamo (standalone.py); with `--torch-compile
default` or `max-autotune`, torch.compile with the mega-cache
(`torch.compiler.save_cache_artifacts()` / `load_cache_artifacts()`, ResNet-50: 3.2 MB),
which lets Dynamo trace again on every start (~3 s more). Not AOTInductor: on torch
2.11+cu130 a package compiled (60-71 s) but `aoti_load_package` segfaulted every time,
also in a fresh process. An engine file is an opaque blob that only the same torch on
the same kind of GPU can use, so everything that changes the generated code is in its
key.

Only a torch.export program (`.pt2`) is compiled: dynamo cannot look inside a
TorchScript module, so `.pt` files keep running eagerly (still in channels_last).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

log = logging.getLogger("modelserve.backend")

# Bumped when the build recipe below changes what a cached file means (2: batch 1 runs
# in the 2-row graph, so no batch-1 graph is compiled or cached).
RECIPE = 2
SUFFIX = ".torchcompile"

# --- start-up progress hook ----------------------------------------------------------
# The backend reports each start-up phase ("import torch", "building engine", ...) and,
# during a long one, every `progress` tick, as (phase, seconds since the start began).
# A no-op here: the server wires it to whatever reports progress (status, events).
ProgressHook = Callable[[str, float], None]


def _no_progress(phase: str, elapsed_s: float) -> None:
    return None


_progress_hook: ProgressHook = _no_progress


def set_progress_hook(hook: ProgressHook | None) -> None:
    """Install `hook(phase, elapsed_s)`; None restores the no-op. Called from any thread
    (the loading thread and the progress ticker), so it must be cheap and thread-safe."""
    global _progress_hook
    _progress_hook = hook or _no_progress


def report_progress(phase: str, elapsed_s: float) -> None:
    try:
        _progress_hook(phase, elapsed_s)
    except Exception:  # a broken reporter must never stop a model from loading
        log.debug("progress hook failed", exc_info=True)


# --- warm-start choices (measured; see docs/runtime.md, Compiled engines) -------------
# torch always specializes a dimension of size 1, so a batch-1 call would trace, freeze
# and load a second graph on every start. With a dynamic batch, batch 1 runs padded in
# the 2-row graph instead.
SHARE_BATCH_ONE = True
# cuDNN's per-shape autotuning (torch.backends.cudnn.benchmark) tries every algorithm for
# every convolution at every bucket, on every start (its results are not cached across
# processes): "all", "none", or "large" (only buckets of at least half the max batch).
# Measured on an H200 (ResNet-50 fp16 compiled, warm start, hack/probe-warm-start):
# autotuning every bucket cost 13.6 s of the first instance's graphs, the large ones
# 5.2-5.6 s, none 1.1 s; GPU-only rows/s were the same within noise either way (b128
# 26.3k-27.5k with, 26.4k without in the same run; b8 12.4k with, 13.0k without), as
# was batch-1 latency. cuDNN's heuristics pick as well as its benchmark here.
CUDNN_AUTOTUNE = "none"


@dataclass(frozen=True)
class BuildOptions:
    """What changes the generated code, besides the model, GPU, torch and precision."""

    # inductor mode; max-autotune measured no faster for ResNet-50 (29.2k vs 30.0k
    # img/s) and took 282 s to compile, so "auto" means "default".
    mode: str = "default"
    # Frozen weights (constants: batch-norm folded into the convolutions, layouts
    # fixed once) measured no faster on an H200 (ResNet-50 b128 GPU-only, same run:
    # 26.2-26.3k img/s frozen, 26.2k not; another run 27.5k vs 26.1k), but a frozen
    # graph bypasses the AOT-autograd cache, so every start traced and froze it again:
    # the first call of a warm start took 9.4-10.7 s frozen, 5.1 s not
    # (hack/probe-warm-start). Off by default; True still works.
    freezing: bool = False
    # One graph whose batch dimension is symbolic (plus batch 1, which torch always
    # specializes) instead of one graph per bucket: a fraction of the build and load
    # time; every bucket still gets its own CUDA graph.
    dynamic_batch: bool = True
    channels_last: bool = True
    # "standalone": inductor's standalone artifact, loaded without Dynamo (standalone.py).
    # Through the server on an H200 a warm start's first call took 0.50-0.54 s against
    # 3.2-3.7 s, and the start 7.1-8.7 s to ready against 9.1-10.6 s, for the same
    # throughput (ResNet-50 uint8; BERT 9.5 s against 11.7-11.8 s; docs/runtime.md).
    # "dynamo": torch.compile with the mega-cache; Dynamo traces again on every start
    # (`--torch-compile default` or `max-autotune`).
    loader: str = "standalone"


@dataclass(frozen=True)
class EngineKey:
    model_sha256: str
    capability: str  # "sm90"
    torch_version: str
    precision: str
    buckets: tuple[int, ...]
    options: BuildOptions

    def filename(self) -> str:
        """Readable where it helps an operator clean up (model, GPU, torch, precision,
        largest batch), then a digest of every field so no two keys share a file."""
        fields = asdict(self)
        fields["recipe"] = RECIPE
        digest = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()
        torch_v = self.torch_version.replace("+", "-")
        return (
            f"{self.model_sha256[:16]}-{self.capability}-torch{torch_v}-{self.precision}"
            f"-b{max(self.buckets)}-{digest[:12]}{SUFFIX}"
        )


@dataclass(frozen=True)
class Plan:
    """What load() does: "eager" (why), "build" (save to `path` if set) or "load"."""

    action: str
    why: str
    path: str | None = None


def plan(
    setting: str,
    on_gpu: bool,
    model_path: str,
    cache_dir: str | None,
    key: EngineKey | None,
) -> Plan:
    """The build/load decision, kept pure so it is tested without torch or a GPU."""
    if setting == "off":
        return Plan("eager", "--torch-compile off")
    if not on_gpu:
        return Plan("eager", "no GPU: inductor's CPU code is not what this backend is for")
    if not model_path.endswith(".pt2"):
        return Plan("eager", "TorchScript (.pt) cannot be compiled; export a .pt2 to compile")
    if key is None:
        return Plan("eager", "no engine key")
    if not cache_dir:
        return Plan("build", "no --engine-cache-dir: every start compiles")
    path = os.path.join(cache_dir, key.filename())
    if os.path.isfile(path):
        return Plan("load", "cached engine", path)
    return Plan("build", "no cached engine for this key", path)


def graph_buckets(buckets: list[int], compiled: bool, options: BuildOptions) -> list[int]:
    """The batch sizes that get a CUDA graph: every bucket, except batch 1 in a compiled
    engine with a dynamic batch (it runs padded in the 2-row graph, see SHARE_BATCH_ONE)."""
    if compiled and options.dynamic_batch and SHARE_BATCH_ONE and len(buckets) > 1:
        return [b for b in buckets if b != 1]
    return list(buckets)


def cudnn_autotune(bucket: int, buckets: list[int], policy: str | None = None) -> bool:
    """Whether to autotune cuDNN while the graph of `bucket` is captured."""
    policy = policy or CUDNN_AUTOTUNE
    if policy == "all":
        return True
    if policy == "none":
        return False
    return bucket * 2 >= max(buckets)


def options_for(setting: str, conv_like: bool) -> BuildOptions:
    mode = "max-autotune" if setting == "max-autotune" else "default"
    loader = "standalone" if setting in ("auto", "standalone") else "dynamo"
    return BuildOptions(mode=mode, channels_last=conv_like, loader=loader)


def compile_module(torch: Any, module: Any, build: BuildOptions) -> Callable[..., Any]:
    # Enough recompiles for one graph per bucket when the batch is not dynamic
    # (the default limit, 8, is fewer than the buckets of max batch 128: past it
    # dynamo silently runs eagerly).
    torch._dynamo.config.recompile_limit = 64
    # torch.compile takes a mode or an options dict, not both; max-autotune as an
    # option leaves out the mode's own CUDA graphs (the backend captures its own).
    options = {"freezing": build.freezing, "max_autotune": build.mode == "max-autotune"}
    return torch.compile(module, dynamic=None if build.dynamic_batch else False, options=options)


def mark_batch_dynamic(torch: Any, tensors: list[Any], rows: int, options: BuildOptions) -> None:
    """Before the first call at a bucket: say that dim 0 will vary, so the first
    compile is already the shared graph (not a static one and then a dynamic one)."""
    if options.dynamic_batch and rows > 1:
        for t in tensors:
            torch._dynamo.maybe_mark_dynamic(t, 0)


def without_bytecode(source: str) -> bool:
    """True when the module file `source` (e.g. `torch.__file__`) has no compiled
    bytecode where this interpreter looks for it. Then every start compiles torch and
    its compiler from source: ~5 s of a ResNet-50 warm start on an H200 (16.0-18.3 s
    to ready without, 12.2-12.5 s with; docs/runtime.md, sixth round). The runtime
    image is byte-compiled at build time; an image installed without bytecode and run
    with PYTHONDONTWRITEBYTECODE=1 never gets it."""
    if not source.endswith(".py"):
        return False
    return not os.path.exists(importlib.util.cache_from_source(source))


def forget_earlier_builds(torch: Any) -> None:
    """The mega-cache collects everything compiled in this process; a second model
    built in the same process (the benchmark's raw pass does) would otherwise carry
    the first one's artifacts in its file."""
    with contextlib.suppress(Exception):
        from torch.compiler._cache import CacheArtifactManager

        CacheArtifactManager.clear()


def load_artifacts(torch: Any, path: str) -> bool:
    """Fills torch's local compile caches from the engine file; False (and a warning)
    when the file cannot be used, so the caller compiles from scratch instead."""
    try:
        with open(path, "rb") as f:
            blob = f.read()
        torch.compiler.load_cache_artifacts(blob)
    except Exception as exc:  # a truncated or foreign file must not stop the model
        log.warning("engine cache %s unusable (%s); compiling instead", path, exc)
        return False
    log.info("engine cache: loaded %s (%.1f MB)", path, len(blob) / 1e6)
    return True


def write_atomically(path: str, blob: bytes) -> None:
    """`blob` at `path` through a temp file and a rename: a replica reading the shared
    volume never sees half a file, and two builders just race to the same content."""
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def save_artifacts(torch: Any, path: str) -> bool:
    """Writes what this process compiled to `path` (write_atomically). False (and a
    warning) when there is nothing to save or the volume is read-only: the model still
    serves, the next start compiles again."""
    try:
        saved = torch.compiler.save_cache_artifacts()
        if saved is None:
            log.warning("engine cache: torch produced no artifacts to save")
            return False
        blob = saved[0]
        write_atomically(path, blob)
    except Exception as exc:
        log.warning("engine cache: could not save %s (%s)", path, exc)
        return False
    log.info("engine cache: saved %s (%.1f MB)", path, len(blob) / 1e6)
    return True


@contextlib.contextmanager
def progress(
    what: str, every_s: float = 10.0, since: float | None = None
) -> Iterator[Callable[[], float]]:
    """Logs "<what>, N s" every `every_s` while the block runs, so a long start shows
    what it is doing in the pod's log, and reports it to the progress hook (with the
    seconds since `since`, the start of the whole load, when given); yields a clock of
    the block's own seconds so far."""
    started = time.monotonic()
    origin = started if since is None else since
    done = threading.Event()

    def tick() -> None:
        while not done.wait(every_s):
            log.info("%s, %.0f s", what, time.monotonic() - started)
            report_progress(what, time.monotonic() - origin)

    report_progress(what, started - origin)
    ticker = threading.Thread(target=tick, name="engine-progress", daemon=True)
    ticker.start()
    try:
        yield lambda: time.monotonic() - started
    finally:
        done.set()
        ticker.join()
