"""Lease decisions: one leader at a time, expiry on our own clock, transitions counted."""

import asyncio
import json
from datetime import UTC, datetime

import pytest

from modelserve_operator.controllers.cluster.client import ApiError
from modelserve_operator.controllers.cluster.leader import (
    LeaderConfig,
    LeaderElector,
    Observation,
    decide,
    lease_body,
    observe,
    released_body,
)

ME = "pod-a_1234"


def lease(holder="pod-b_9", renew="2026-01-01T00:00:00.000000Z", duration=15, transitions=0):
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": "modelserve-operator", "namespace": "ops",
                         "resourceVersion": "42"},
            "spec": {"holderIdentity": holder, "leaseDurationSeconds": duration,
                     "renewTime": renew, "acquireTime": "2026-01-01T00:00:00.000000Z",
                     "leaseTransitions": transitions}}


# name: (lease, when its record was first seen, now, expected action)
CASES = {
    "no-lease": (None, None, 100.0, "create"),
    "ours": (lease(holder=ME), 0.0, 100.0, "renew"),
    "released": (lease(holder=""), 99.0, 100.0, "take"),
    "live-other": (lease(), 90.0, 100.0, "wait"),
    "just-expired": (lease(), 85.0, 100.0, "take"),
    "long-expired": (lease(), 0.0, 100.0, "take"),
}


@pytest.mark.parametrize("case", CASES)
def test_decide(case):
    obj, seen_at, now, expected = CASES[case]
    seen = observe(None, obj, seen_at) if seen_at is not None else None
    assert decide(obj, seen, ME, now) == expected


def test_expiry_uses_when_we_saw_the_record_not_its_timestamp():
    # renewTime far in the past by our wall clock (skew, or a stopped clock) must not make
    # a live leader look dead: what counts is whether the record changed while we watched.
    first = observe(None, lease(renew="1999-01-01T00:00:00.000000Z"), now=100.0)
    assert decide(lease(renew="1999-01-01T00:00:00.000000Z"), first, ME, 101.0) == "wait"


def test_a_renewal_resets_the_clock():
    seen = observe(None, lease(renew="t1"), now=0.0)
    seen = observe(seen, lease(renew="t1"), now=10.0)
    assert seen.seen_at == 0.0  # unchanged record: still the first sighting
    seen = observe(seen, lease(renew="t2"), now=14.0)
    assert seen == Observation("pod-b_9", "t2", 14.0)
    assert decide(lease(renew="t2"), seen, ME, 20.0) == "wait"
    assert decide(lease(renew="t2"), seen, ME, 29.0) == "take"


def test_a_new_holder_resets_the_clock():
    seen = observe(None, lease(holder="x"), now=0.0)
    seen = observe(seen, lease(holder="y"), now=14.0)
    assert decide(lease(holder="y"), seen, ME, 20.0) == "wait"


def test_create_body():
    config = LeaderConfig(namespace="ops", identity=ME)
    body = lease_body(None, "create", config, datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC))
    assert body["metadata"] == {"name": "modelserve-operator", "namespace": "ops"}
    assert body["spec"] == {"holderIdentity": ME, "leaseDurationSeconds": 15,
                            "acquireTime": "2026-01-02T03:04:05.000006Z",
                            "renewTime": "2026-01-02T03:04:05.000006Z", "leaseTransitions": 0}


def test_take_over_counts_a_transition_and_keeps_resource_version():
    config = LeaderConfig(namespace="ops", identity=ME)
    now = datetime(2026, 1, 2, tzinfo=UTC)
    body = lease_body(lease(transitions=3), "take", config, now)
    assert body["metadata"]["resourceVersion"] == "42"  # conditional write: 409 if stale
    assert body["spec"]["holderIdentity"] == ME
    assert body["spec"]["leaseTransitions"] == 4
    assert body["spec"]["acquireTime"] == body["spec"]["renewTime"]


def test_taking_a_released_lease_is_not_a_transition():
    config = LeaderConfig(namespace="ops", identity=ME)
    body = lease_body(lease(holder="", transitions=3), "take", config, datetime.now(UTC))
    assert body["spec"]["leaseTransitions"] == 3


def test_renew_keeps_acquire_time():
    config = LeaderConfig(namespace="ops", identity=ME)
    body = lease_body(lease(holder=ME, transitions=2), "renew", config,
                      datetime(2026, 5, 5, tzinfo=UTC))
    assert body["spec"]["acquireTime"] == "2026-01-01T00:00:00.000000Z"
    assert body["spec"]["renewTime"] == "2026-05-05T00:00:00.000000Z"
    assert body["spec"]["leaseTransitions"] == 2


def test_release_empties_the_holder():
    body = released_body(lease(holder=ME))
    assert body["spec"]["holderIdentity"] == ""
    assert body["metadata"]["resourceVersion"] == "42"


@pytest.mark.parametrize("timings", [(10, 10, 2), (15, 5, 5), (15, 10, 0)])
def test_timings_must_nest(timings):
    duration, deadline, retry = timings
    with pytest.raises(ValueError, match="lease-duration > renew-deadline > retry-period"):
        LeaderConfig(namespace="ops", lease_duration=duration, renew_deadline=deadline,
                     retry_period=retry)


class LeaseStore:
    """The API server's behaviour for one Lease: create once, PUT only at the current
    resourceVersion (a stale write is a 409), like the real one."""

    def __init__(self):
        self.lease = None
        self.version = 0

    async def get(self, api_version, kind, namespace, name):
        return None if self.lease is None else json.loads(json.dumps(self.lease))

    async def create(self, obj):
        if self.lease is not None:
            raise ApiError(409, '{"message": "already exists"}', "create")
        return self._store(obj)

    async def replace(self, obj):
        if obj["metadata"].get("resourceVersion") != str(self.version):
            raise ApiError(409, '{"message": "conflict"}', "replace")
        return self._store(obj)

    def _store(self, obj):
        self.version += 1
        self.lease = {**obj, "metadata": {**obj["metadata"],
                                          "resourceVersion": str(self.version)}}
        return json.loads(json.dumps(self.lease))


def test_candidates_racing_for_one_lease_elect_exactly_one():
    store = LeaseStore()

    async def race():
        started: list[str] = []
        electors = []
        for name in ("a", "b", "c"):
            config = LeaderConfig(namespace="ops", identity=name, lease_duration=3,
                                  renew_deadline=2, retry_period=0.01)

            async def kube():
                return store

            electors.append(LeaderElector(config, kube, on_started=lambda n=name:
                                          started.append(n), on_lost=lambda: None))
        tasks = [asyncio.create_task(e.run()) for e in electors]
        await asyncio.sleep(0.3)  # ~30 rounds each
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return started, electors

    started, electors = asyncio.run(race())
    assert len(started) == 1
    assert [e.leading for e in electors].count(True) == 1
    assert store.lease["spec"]["holderIdentity"] == started[0]
    assert store.lease["spec"]["leaseTransitions"] == 0


def elector(store, name, started, lost):
    config = LeaderConfig(namespace="ops", identity=name, lease_duration=1,
                          renew_deadline=0.5, retry_period=0.05)

    async def kube():
        return store

    return LeaderElector(config, kube, on_started=lambda: started.append(name),
                         on_lost=lambda: lost.append(name))


def test_standby_takes_over_a_lease_its_holder_stopped_renewing():
    store, started, lost = LeaseStore(), [], []

    async def scenario():
        a = asyncio.create_task(elector(store, "a", started, lost).run())
        await asyncio.sleep(0.2)
        b = asyncio.create_task(elector(store, "b", started, lost).run())
        await asyncio.sleep(0.3)
        assert started == ["a"]  # b waits while a renews
        a.cancel()  # a dies without releasing
        killed = asyncio.get_running_loop().time()
        while started[-1] != "b":
            await asyncio.sleep(0.01)
        waited = asyncio.get_running_loop().time() - killed
        b.cancel()
        await asyncio.gather(a, b, return_exceptions=True)
        return waited

    waited = asyncio.run(scenario())
    assert waited >= 0.9  # never before leaseDurationSeconds (1 s) since a's last renewal
    assert store.lease["spec"]["holderIdentity"] == "b"
    assert store.lease["spec"]["leaseTransitions"] == 1
    assert lost == []


def test_leader_that_cannot_renew_steps_down_before_the_lease_expires():
    store, started, lost = LeaseStore(), [], []

    async def failing_get(*_):
        raise ApiError(500, '{"message": "etcd unavailable"}', "get")

    async def scenario():
        task = asyncio.create_task(elector(store, "a", started, lost).run())
        await asyncio.sleep(0.2)
        assert started == ["a"]
        store.get = failing_get
        await asyncio.wait_for(task, timeout=5)  # run() returns after calling on_lost

    asyncio.run(scenario())
    assert lost == ["a"]
