"""plan(): which revision is stable, which is canary, and how big each is."""

from modelserve_operator.api import ModelDeploymentSpec
from modelserve_operator.controllers.decisions.plan import Inputs, plan
from modelserve_operator.controllers.decisions.status import typed

CANARY = {"strategy": "Canary", "canary": {"steps": [{"setWeight": 25}, {"pause": {}}]},
          "scaleDownDelaySeconds": 30}


def inputs(status=None, target=2, ready=None, rollout=None, **kw):
    spec = ModelDeploymentSpec.model_validate(
        {"modelVersion": f"v{target}", "replicas": 4, "rollout": rollout or CANARY})
    ready = ready if ready is not None else {1: 4}
    raw = status if status is not None else {"revision": 1, "modelVersion": "v1"}
    base = dict(spec=spec, status=typed(raw),
                target=target, target_version=f"v{target}", total=4, ready=ready,
                restarts={}, created={r: 100.0 for r in ready}, version_of={1: "v1", 2: "v2"},
                now=200.0)
    base.update(kw)
    return Inputs(**base)


def test_first_rollout_is_stable_at_once():
    p = plan(inputs(status={}, target=1, ready={}))
    assert (p.stable, p.canary, p.stable_replicas) == (1, None, 4)


def test_steady_state():
    p = plan(inputs(target=1))
    assert (p.stable, p.canary, p.events) == (1, None, [])


def test_new_version_starts_a_canary_sized_for_its_first_weight():
    p = plan(inputs(ready={1: 4}))
    assert (p.stable, p.canary, p.canary_replicas, p.weight, p.stable_replicas) == (
        1, 2, 1, 0, 4)
    assert p.events[0][0] == "CanaryStarted"


def test_ready_canary_gets_weight_then_pauses():
    st = {"revision": 1, "canaryRevision": 2, "currentStep": 0, "canaryWeight": 0}
    p = plan(inputs(status=st, ready={1: 4, 2: 1}))
    assert (p.weight, p.paused, p.stable_replicas, p.canary_replicas) == (25, True, 3, 1)


def test_promotion_waits_for_full_size_then_switches():
    st = {"revision": 1, "canaryRevision": 2, "currentStep": 1, "canaryWeight": 25,
          "control": {"promote": True}}
    p = plan(inputs(status=st, ready={1: 3, 2: 1}))
    assert (p.stable, p.canary, p.canary_replicas, p.progressing[1]) == (1, 2, 4, "Promoting")
    assert p.consumed_control
    st = {**st, "currentStep": 2, "control": None}
    p = plan(inputs(status=st, ready={1: 3, 2: 4}))
    assert (p.stable, p.canary, p.previous, p.previous_retire_at) == (2, None, 1, 230.0)


def test_abort_keeps_stable_and_remembers_the_revision():
    st = {"revision": 1, "canaryRevision": 2, "currentStep": 1, "canaryWeight": 25,
          "control": {"abort": True}}
    p = plan(inputs(status=st, ready={1: 3, 2: 1}))
    assert (p.stable, p.canary_replicas, p.aborted, p.problem.reason) == (1, 0, 2, "Aborted")
    again = plan(inputs(status={"revision": 1, "abortedRevision": 2, "conditions": [
        {"type": "Degraded", "status": "True", "reason": "Aborted", "message": "m"}]},
        ready={1: 4, 2: 0}))
    assert (again.stable, again.canary, again.problem.reason) == (1, None, "Aborted")


def test_rollback_to_a_still_scaled_previous_is_immediate():
    st = {"revision": 2, "previousRevision": 1, "previousRetireAt": 250.0}
    p = plan(inputs(status=st, target=1, ready={1: 4, 2: 4}))
    assert (p.stable, p.canary, p.previous) == (1, None, 2)
    assert p.events[0][0] == "RolledBack"


def test_recreate_stops_the_old_revision_first():
    p = plan(inputs(rollout={"strategy": "Recreate"}))
    assert (p.stable, p.recreate, p.canary) == (2, True, None)


def test_rolling_is_a_full_size_canary():
    p = plan(inputs(rollout={"strategy": "Rolling"}, ready={1: 4, 2: 0}))
    assert (p.canary, p.canary_replicas, p.weight) == (2, 4, 0)


def test_newer_version_replaces_a_running_canary():
    st = {"revision": 1, "canaryRevision": 2, "currentStep": 1, "canaryWeight": 25}
    p = plan(inputs(status=st, target=3, ready={1: 3, 2: 1}))
    assert (p.canary, p.weight) == (3, 0)
    assert [e[0] for e in p.events] == ["CanaryAbandoned", "CanaryStarted"]


def test_promote_full_survives_until_the_canary_is_full_size():
    st = {"revision": 1, "canaryRevision": 2, "currentStep": 1, "canaryWeight": 25,
          "control": {"promoteFull": True}}
    p = plan(inputs(status=st, ready={1: 3, 2: 1}))
    assert (p.canary_replicas, p.state.step, p.consumed_control) == (4, 2, True)
    st = {**st, "currentStep": p.state.step, "control": None}
    p = plan(inputs(status=st, ready={1: 3, 2: 4}))
    assert (p.stable, p.canary) == (2, None)
