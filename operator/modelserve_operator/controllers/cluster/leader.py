"""Leader election on a `coordination.k8s.io/v1` Lease, so that replicas > 1 is safe.

Every replica watches and keeps its store warm; only the one holding the Lease runs the
work queue's workers (the reconciles that write). A standby that sees the Lease go
unrenewed for `lease_duration` takes it over, and since its store is already full, it
starts reconciling within a second of winning.

The rules are client-go's (`tools/leaderelection`), written small:
- Writes are conditional on `metadata.resourceVersion`: two candidates racing for the same
  Lease get one 200 and one 409, never two leaders.
- Expiry is judged on this process's monotonic clock, from the moment it first *saw* the
  current record, never by comparing `renewTime` with the local wall clock, so clock skew
  between nodes cannot make a live leader look dead.
- A leader that cannot renew within `renew_deadline` stops its workers and exits; the pod
  restarts as a standby. Being wrong about leadership for longer is worse than a restart.
- On a clean shutdown the leader releases the Lease (empty holder), so a rolling update
  hands over at once instead of after `lease_duration`.

`decide` is the pure part (unit-tested); `LeaderElector` does the I/O around it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from prometheus_client import Counter, Gauge

from modelserve_operator.controllers.cluster.client import ApiError, Kube

log = logging.getLogger("modelserve.leader")

IS_LEADER = Gauge("modelserve_operator_leader", "1 while this replica holds the leader Lease.")
TRANSITIONS = Counter("modelserve_operator_leader_transitions_total",
                      "Times this replica became leader.")

LEASE_API = "coordination.k8s.io/v1"


@dataclass(frozen=True)
class LeaderConfig:
    namespace: str
    name: str = "modelserve-operator"
    identity: str = field(default_factory=lambda: default_identity())
    lease_duration: float = 15.0  # a standby waits this long after the last renewal seen
    renew_deadline: float = 10.0  # a leader gives up if it could not renew for this long
    retry_period: float = 2.0  # how often the leader renews and a standby looks

    def __post_init__(self) -> None:
        if not self.lease_duration > self.renew_deadline > self.retry_period > 0:
            raise ValueError(
                "leader election timings must satisfy lease-duration > renew-deadline > "
                f"retry-period > 0; got {self.lease_duration}, {self.renew_deadline}, "
                f"{self.retry_period}")


def default_identity() -> str:
    """Pod name (the chart passes POD_NAME) plus a random suffix: unique per process."""
    host = os.environ.get("POD_NAME") or socket.gethostname()
    return f"{host}_{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class Observation:
    """What a candidate remembers about the Lease between looks."""

    holder: str  # "" when nobody holds it (released, or never held)
    renew_time: str | None
    seen_at: float  # monotonic time this exact (holder, renew_time) was first seen


Action = Literal["create", "renew", "take", "wait"]


def observe(previous: Observation | None, lease: dict[str, Any] | None,
            now: float) -> Observation | None:
    """Remember when the record last changed, on our own clock."""
    if lease is None:
        return None
    spec = lease.get("spec") or {}
    holder, renew = spec.get("holderIdentity") or "", spec.get("renewTime")
    if previous and previous.holder == holder and previous.renew_time == renew:
        return previous
    return Observation(holder, renew, now)


def decide(lease: dict[str, Any] | None, seen: Observation | None, me: str,
           now: float) -> Action:
    """What a candidate should do, given the Lease as read and when its record changed.

    create: no Lease yet.  renew: it is ours.  take: nobody holds it, or the holder let it
    expire.  wait: someone else holds a live Lease.
    """
    if lease is None:
        return "create"
    spec = lease.get("spec") or {}
    holder = spec.get("holderIdentity") or ""
    if holder == me:
        return "renew"
    if not holder or seen is None:
        return "take"
    duration = float(spec.get("leaseDurationSeconds") or 0)
    return "take" if now - seen.seen_at >= duration else "wait"


def _micro_time(now: datetime) -> str:
    return now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def lease_body(lease: dict[str, Any] | None, action: Action, config: LeaderConfig,
               wall_now: datetime) -> dict[str, Any]:
    """The Lease to write for `action`; carries resourceVersion so a stale write gets 409."""
    stamp = _micro_time(wall_now)
    duration = max(1, round(config.lease_duration))
    if lease is None:
        return {"apiVersion": LEASE_API, "kind": "Lease",
                "metadata": {"name": config.name, "namespace": config.namespace},
                "spec": {"holderIdentity": config.identity, "leaseDurationSeconds": duration,
                         "acquireTime": stamp, "renewTime": stamp, "leaseTransitions": 0}}
    body = {"apiVersion": LEASE_API, "kind": "Lease", "metadata": dict(lease["metadata"]),
            "spec": dict(lease.get("spec") or {})}
    spec = body["spec"]
    if action == "take":
        had_holder = bool(spec.get("holderIdentity"))
        spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + (1 if had_holder
                                                                            else 0)
        spec["acquireTime"] = stamp
    spec.update(holderIdentity=config.identity, leaseDurationSeconds=duration, renewTime=stamp)
    return body


def released_body(lease: dict[str, Any]) -> dict[str, Any]:
    """Give the Lease up: no holder, so a standby takes it on its next look."""
    body = {**lease, "spec": dict(lease.get("spec") or {})}
    body["spec"].update(holderIdentity="", leaseDurationSeconds=1,
                        renewTime=_micro_time(datetime.now(UTC)))
    return body


class LeaderElector:
    """Runs for the life of the process: campaigns, then renews; calls back on changes."""

    def __init__(self, config: LeaderConfig, kube: Callable[[], Awaitable[Kube]],
                 on_started: Callable[[], None], on_lost: Callable[[], None]):
        self.config = config
        self._kube = kube
        self._on_started = on_started
        self._on_lost = on_lost
        self._seen: Observation | None = None
        self._lease: dict[str, Any] | None = None
        self.leading = False

    async def run(self) -> None:
        kube = await self._kube()
        log.info("leader election: %s campaigning for Lease %s/%s", self.config.identity,
                 self.config.namespace, self.config.name)
        last_renewed = time.monotonic()
        # One attempt may not outlast what is left of the lease after the renew deadline
        # and a retry period, or a hung request could keep a deposed leader reconciling.
        attempt_timeout = max(0.5, self.config.lease_duration - self.config.renew_deadline
                              - self.config.retry_period)
        while True:
            started = time.monotonic()
            try:
                async with asyncio.timeout(attempt_timeout):
                    won = await self._try(kube)
            except Exception as error:  # API, network, timeouts: the deadline decides
                log.warning("leader election: %s: %s", type(error).__name__, error)
                won = False
            now = time.monotonic()
            if won:
                # Counted from before the request: the server may have stored the renewal
                # (and a standby seen it) any time after we sent it.
                last_renewed = started
                if not self.leading:
                    self.leading = True
                    IS_LEADER.set(1)
                    TRANSITIONS.inc()
                    log.info("leader election: %s is the leader; starting workers",
                             self.config.identity)
                    self._on_started()
            elif self.leading and (self._taken_over()
                                   or now - last_renewed >= self.config.renew_deadline):
                self.leading = False
                IS_LEADER.set(0)
                log.error("leader election: lost Lease %s/%s (holder %r, last renewed %.1fs "
                          "ago); stepping down", self.config.namespace, self.config.name,
                          self._seen.holder if self._seen else None, now - last_renewed)
                self._on_lost()
                return
            await asyncio.sleep(self.config.retry_period)

    def _taken_over(self) -> bool:
        return bool(self._seen and self._seen.holder
                    and self._seen.holder != self.config.identity)

    async def _try(self, kube: Kube) -> bool:
        """One look at the Lease; True when we hold it afterwards."""
        lease = await kube.get(LEASE_API, "Lease", self.config.namespace, self.config.name)
        now = time.monotonic()
        self._seen = observe(self._seen, lease, now)
        action = decide(lease, self._seen, self.config.identity, now)
        if action == "wait":
            return False
        body = lease_body(lease, action, self.config, datetime.now(UTC))
        try:
            if action == "create":
                written = await kube.create(body)
            else:
                written = await kube.replace(body)
        except ApiError as error:
            if error.status == 409:  # another candidate wrote first: look again next time
                return False
            raise
        self._lease = written
        self._seen = observe(self._seen, written, now)
        return True

    async def release(self) -> None:
        """Clean shutdown of a leader: hand the Lease over now instead of letting it expire."""
        if not self.leading or self._lease is None:
            return
        self.leading = False
        IS_LEADER.set(0)
        try:
            kube = await self._kube()
            await kube.replace(released_body(self._lease))
            log.info("leader election: released Lease %s/%s", self.config.namespace,
                     self.config.name)
        except Exception as error:
            log.warning("leader election: release failed (%s); it expires by itself", error)
