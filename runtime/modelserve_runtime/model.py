"""One served model: its backend, its batcher, and request validation against its
signature. The HTTP layer only decodes and encodes."""

from __future__ import annotations

import gc
import logging
import time

import numpy as np

from . import progress
from .backends import Backend, TensorSpec, compiled
from .batcher import Batcher, BatcherStats
from .codec import InferRequest
from .config import Settings
from .errors import BadRequest, Unavailable, name_list
from .metrics import Metrics

log = logging.getLogger("modelserve.model")

# The compiled engine's long phases, told as they start and every 10 s while they run.
ENGINE_PHASES = ("building engine", "loading engine", "warming up")


def report_engine_progress(phase: str, elapsed_s: float) -> None:
    """The torch backend's progress hook (compiled.set_progress_hook) into the pod's
    progress report, so status reads "building engine, 40 s" during a cold build. Its
    shorter steps ("import torch", "read model", ...) count as loading the model. The
    phase has no count: the progress endpoint tells its seconds from the phase's start
    (progress.estimate), so `elapsed_s` is not needed here."""
    del elapsed_s
    if phase == "ready":  # Model.warm_up reports "loaded" itself
        return
    progress.report(phase if phase in ENGINE_PHASES else "loading the model", unit=None)


class Model:
    def __init__(self, settings: Settings, backend: Backend, metrics: Metrics) -> None:
        self.name = settings.model_name
        self.version = settings.model_version
        self.settings = settings
        self.backend = backend
        self.metrics = metrics
        self.ready = False
        self.batcher: Batcher | None = None
        self._inputs: dict[str, TensorSpec] = {}
        self._outputs: list[str] = []

    def load(self, warm_up: bool = True) -> None:
        """Blocking: load and warm up (runs in a thread; the server is live meanwhile).
        `warm_up=False` only loads: the engine process opens its socket between the two,
        so its HTTP workers set up while it warms up, and calls `warm_up()` next."""
        started = time.monotonic()
        # A backend that builds an engine reports its own finer phases through the same
        # progress.report; these say where the pod is when it does not.
        progress.report("loading the model")
        compiled.set_progress_hook(report_engine_progress)
        self.backend.load()
        self._inputs = {spec.name: spec for spec in self.backend.inputs}
        self._outputs = [spec.name for spec in self.backend.outputs]
        self._load_s = time.monotonic() - started
        if warm_up:
            self.warm_up()

    def warm_up(self) -> None:
        """Blocking: every batch size once (graphs captured, engines built)."""
        started = time.monotonic()
        if self.settings.warmup:
            progress.report("warming up")
            self.backend.warmup()
        # A compiled engine leaves ~500k long-lived objects behind (FX graphs, guards,
        # sympy expressions; ResNet-50 on an H200: one full collection of them took
        # 0.26-0.41 s, hack/probe-warm-start). Frozen, the collector stops walking them,
        # so no full collection pauses the thread every request crosses.
        gc.collect()
        gc.freeze()
        progress.report("loaded")
        log.info(
            "model %s v%s loaded in %.1fs, warmed up in %.1fs (%s, %d instance(s))",
            self.name,
            self.version,
            self._load_s,
            time.monotonic() - started,
            self.backend.platform,
            self.backend.instances,
        )

    def start_batching(self) -> None:
        """On the event loop, once `load` has returned."""
        labels_q = self.metrics.queue_depth.labels(self.name)
        batch_hist = self.metrics.batch_size.labels(self.name)
        infer_hist = self.metrics.inference_duration.labels(self.name)
        queue_seconds = self.metrics.queue_duration.labels(self.name)
        queued = self.metrics.queued_requests.labels(self.name)

        def on_batch(rows: int, seconds: float) -> None:
            batch_hist.observe(rows)
            infer_hist.observe(seconds)

        def on_queue_wait(seconds: float, requests: int) -> None:
            queue_seconds.inc(seconds)
            queued.inc(requests)

        s = self.settings
        self.batcher = Batcher(
            self.backend,
            max_batch_size=s.max_batch_size,
            max_queue_delay_s=s.max_queue_delay_us / 1e6,
            max_queue_size=s.max_queue_size,
            batchable=self.backend.batchable,
            stats=BatcherStats(
                on_queue_depth=labels_q.set, on_batch=on_batch, on_queue_wait=on_queue_wait
            ),
            inline_below_s=s.inline_below_us / 1e6,
        )
        self.batcher.start()
        self.ready = True

    def close(self) -> None:
        self.backend.close()

    def metadata(self) -> dict[str, object]:
        return {
            "name": self.name,
            "versions": [self.version],
            "platform": self.backend.platform,
            "inputs": [spec.to_json() for spec in self.backend.inputs],
            "outputs": [spec.to_json() for spec in self.backend.outputs],
        }

    def validate(self, request: InferRequest) -> tuple[dict[str, np.ndarray], int]:
        given = {inp.name: inp for inp in request.inputs}
        unknown = sorted(set(given) - set(self._inputs))
        if unknown:
            raise BadRequest(
                f"unknown input(s) {name_list(unknown)}; model {self.name!r} takes "
                f"{name_list(sorted(self._inputs))}"
            )
        missing = sorted(set(self._inputs) - set(given))
        if missing:
            raise BadRequest(f"missing input(s) {name_list(missing)} for model {self.name!r}")
        batchable = self.backend.batchable
        rows: int | None = None
        feeds = {}
        for name, spec in self._inputs.items():
            inp = given[name]
            if inp.datatype != spec.datatype:
                raise BadRequest(
                    f"input {name!r} has datatype {inp.datatype}; model expects {spec.datatype}"
                )
            if len(inp.shape) != len(spec.shape) or any(
                want not in (-1, got)
                for i, (want, got) in enumerate(zip(spec.shape, inp.shape, strict=True))
                if i > 0 or not batchable
            ):
                raise BadRequest(
                    f"input {name!r} has shape {list(inp.shape)}; model expects "
                    f"{list(spec.shape)} (-1: any size)"
                )
            if batchable:
                batch = inp.shape[0]
                if not 1 <= batch <= self.settings.max_batch_size:
                    raise BadRequest(
                        f"input {name!r} has batch size {batch}; allowed 1.."
                        f"{self.settings.max_batch_size} (max batch size)"
                    )
                if rows is not None and batch != rows:
                    raise BadRequest(f"inputs disagree on batch size ({rows} vs {batch})")
                rows = batch
            feeds[name] = inp.data
        if request.outputs:
            names = [o.name for o in request.outputs]
            bad = sorted(set(names) - set(self._outputs))
            if bad:
                raise BadRequest(
                    f"unknown output(s) {name_list(bad)}; model has {name_list(self._outputs)}"
                )
        return feeds, rows or 1

    async def infer(self, request: InferRequest) -> list[tuple[str, np.ndarray, bool]]:
        if not self.ready or self.batcher is None:
            raise Unavailable(f"model {self.name!r} is not ready")
        feeds, rows = self.validate(request)
        results = await self.batcher.submit(
            feeds, rows, inline=not request.arrives_alone, company=request.company_expected
        )
        return self.select_outputs(request, results)

    def select_outputs(
        self, request: InferRequest, results: dict[str, np.ndarray]
    ) -> list[tuple[str, np.ndarray, bool]]:
        """The outputs the request asked for (all by default), each with its binary flag."""
        if request.outputs:
            return [
                (o.name, results[o.name], request.binary_output if o.binary is None else o.binary)
                for o in request.outputs
            ]
        return [(name, results[name], request.binary_output) for name in self._outputs]
