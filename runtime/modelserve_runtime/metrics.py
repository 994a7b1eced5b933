"""Prometheus metrics. Names and labels are a contract with the operator's rollout
analysis and the dashboards: change them only together with those."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger("modelserve.metrics")

# `*_created` series double the scrape size and nothing of ours reads them.
disable_created_metrics()

_LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.002,
    0.004,
    0.006,
    0.008,
    0.01,
    0.015,
    0.02,
    0.03,
    0.05,
    0.075,
    0.1,
    0.15,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        # status is the HTTP code, for gRPC calls too (grpc_service.py maps the gRPC
        # code); a client that goes away before its answer is 499, never a 5xx, so the
        # error rate the rollout analysis and alerts read (status=~"5..") is ours alone.
        self.requests = Counter(
            "modelserve_requests",
            "Inference requests by final HTTP status (gRPC: the equivalent HTTP status).",
            ["model", "version", "status"],
            registry=r,
        )
        self.rejected_connections = Counter(
            "modelserve_rejected_connections",
            "Connections closed by the server's limits: HTTP ones over --max-connections, "
            "HTTP or gRPC ones without a request within --header-timeout-s, gRPC ones that "
            "flood PINGs.",
            ["reason"],
            registry=r,
        )
        self.request_duration = Histogram(
            "modelserve_request_duration_seconds",
            "Time from request received to response ready, inference requests only.",
            ["model", "version"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "modelserve_batch_size",
            "Rows per batch sent to the backend.",
            ["model"],
            buckets=_BATCH_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge(
            "modelserve_queue_depth",
            "Requests waiting in the batch queue.",
            ["model"],
            registry=r,
            multiprocess_mode="livesum",
        )
        # As Triton's nv_inference_queue_duration_us: a request's wait in the batch
        # queue, apart from its batch's time in the backend (inference_duration), so a
        # slow answer says which of the two it was. Two counters, added to once per
        # batch: the mean wait is the rate of the first over the rate of the second.
        self.queue_duration = Counter(
            "modelserve_queue_duration_seconds",
            "Seconds requests waited in the batch queue before their batch went to the "
            "backend, summed over requests.",
            ["model"],
            registry=r,
        )
        self.queued_requests = Counter(
            "modelserve_queued_requests",
            "Requests that left the batch queue in a batch (the divisor of "
            "modelserve_queue_duration_seconds_total).",
            ["model"],
            registry=r,
        )
        # Engine mode: a request's round trip from its HTTP or gRPC worker through the
        # engine process and back (frame out, queue, backend, reply in), as the worker
        # sees it. Beside the queue wait and the backend time it says how long the hop
        # itself takes: the two process wake-ups, the engine's event loop and the wire.
        self.engine_roundtrip = Counter(
            "modelserve_engine_roundtrip_seconds",
            "Engine mode: seconds from a worker sending a request to the engine process "
            "to the engine's answer arriving, summed over requests.",
            ["model"],
            registry=r,
        )
        self.engine_roundtrips = Counter(
            "modelserve_engine_roundtrips",
            "Engine mode: requests a worker sent to the engine process and got answered "
            "(the divisor of modelserve_engine_roundtrip_seconds_total).",
            ["model"],
            registry=r,
        )
        # The engine's side of that round trip: from the request's frame being read to
        # its answer being queued for sending; divided by modelserve_queued_requests_total
        # (every request in the engine crosses the queue). Round trip minus this is the
        # wire both ways and the waits for the two event loops to read and write it.
        self.engine_inside = Counter(
            "modelserve_engine_inside_seconds",
            "Engine mode: seconds requests spent inside the engine process, from their "
            "frame being read to their answer being queued for sending, summed.",
            ["model"],
            registry=r,
        )
        # Engine mode: a request whose tensors do not fit a shared-memory slot, or that
        # finds every slot of its worker taken, is pickled into the frame instead (two
        # more copies, and the engine's event loop unpickles it). Counted so that a
        # deployment sees when --shm-slots / --shm-slot-rows are too small for its load.
        self.inline_requests = Counter(
            "modelserve_engine_inline_requests",
            "Requests an HTTP or gRPC worker sent to the engine inside the frame rather "
            "than through shared memory: slots_busy (every slot of the worker taken) or "
            "too_large (more than a slot holds).",
            ["reason"],
            registry=r,
        )
        self.inference_duration = Histogram(
            "modelserve_inference_duration_seconds",
            "Backend time per batch.",
            ["model"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.inflight = Gauge(
            "modelserve_inflight_requests",
            "Inference requests being served.",
            ["model"],
            registry=r,
            multiprocess_mode="livesum",
        )
        self.gpu = NvmlCollector.create()
        # With --workers, every worker writes its samples to PROMETHEUS_MULTIPROC_DIR and
        # a scrape aggregates them all; GPU gauges are read live, once, by whoever answers.
        self.multiprocess_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if self.gpu is not None and not self.multiprocess_dir:
            r.register(self.gpu)

    def scrape_registry(self) -> CollectorRegistry:
        if not self.multiprocess_dir:
            return self.registry
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=self.multiprocess_dir)
        if self.gpu is not None:
            registry.register(self.gpu)
        return registry


class NvmlCollector(Collector):
    """GPU gauges read from NVML at scrape time; not registered at all without a GPU,
    so the series are absent rather than zero."""

    def __init__(self, nvml: object, handles: list[tuple[str, str, object]]) -> None:
        self.nvml = nvml
        self.handles = handles

    @classmethod
    def create(cls) -> NvmlCollector | None:
        try:
            import pynvml  # from nvidia-ml-py

            pynvml.nvmlInit()
            handles = []
            for i in range(pynvml.nvmlDeviceGetCount()):
                h = pynvml.nvmlDeviceGetHandleByIndex(i)
                uuid = pynvml.nvmlDeviceGetUUID(h)
                handles.append((str(i), uuid.decode() if isinstance(uuid, bytes) else uuid, h))
        except Exception as exc:  # no library, no driver, no device: no GPU metrics
            log.info("GPU metrics disabled: %s", exc)
            return None
        return cls(pynvml, handles) if handles else None

    def collect(self) -> Iterator[GaugeMetricFamily]:
        nvml = self.nvml
        labels = ["gpu", "uuid"]
        util = GaugeMetricFamily(
            "modelserve_gpu_utilization_percent", "GPU utilisation (NVML).", labels=labels
        )
        used = GaugeMetricFamily(
            "modelserve_gpu_memory_used_bytes", "GPU memory used (NVML).", labels=labels
        )
        total = GaugeMetricFamily(
            "modelserve_gpu_memory_total_bytes", "GPU memory total (NVML).", labels=labels
        )
        power = GaugeMetricFamily(
            "modelserve_gpu_power_watts", "GPU power draw (NVML).", labels=labels
        )
        for index, uuid, h in self.handles:
            try:
                util.add_metric([index, uuid], nvml.nvmlDeviceGetUtilizationRates(h).gpu)  # type: ignore[attr-defined]
                mem = nvml.nvmlDeviceGetMemoryInfo(h)  # type: ignore[attr-defined]
                used.add_metric([index, uuid], mem.used)
                total.add_metric([index, uuid], mem.total)
                power.add_metric([index, uuid], nvml.nvmlDeviceGetPowerUsage(h) / 1000.0)  # type: ignore[attr-defined]
            except Exception as exc:  # e.g. a MIG slice without power readings
                log.debug("NVML read failed for GPU %s: %s", index, exc)
        yield from (util, used, total, power)
