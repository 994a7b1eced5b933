"""The canary state machine, path by path."""

import pytest

from modelserve_operator.api.modeldeployment import CanaryStep
from modelserve_operator.controllers.decisions.canary import (
    CanaryState,
    Observations,
    advance,
    canary_replicas,
    parse_duration,
    stable_replicas,
)


def steps(*specs):
    return [CanaryStep.model_validate(s) for s in specs]


STANDARD = steps({"setWeight": 10}, {"pause": {"duration": "30s"}}, {"analysis": {}},
                 {"setWeight": 50}, {"pause": {}})


def obs(**kw):
    base = dict(now=1000.0, total_replicas=4, ready_canary_pods=0, canary_restarts=0,
                started=990.0, deadline_seconds=600.0)
    base.update(kw)
    return Observations(**base)


def test_waits_for_canary_pods_before_moving_weight():
    d = advance(STANDARD, CanaryState(2), obs())
    assert (d.action, d.reason, d.wanted_weight, d.state.weight) == (
        "progress", "WaitingForCanary", 10, 0)


def test_ready_canary_moves_weight_and_starts_pause():
    d = advance(STANDARD, CanaryState(2), obs(ready_canary_pods=1))
    assert (d.action, d.reason, d.state.weight, d.state.step) == ("progress", "Pausing", 10, 1)
    assert d.requeue == pytest.approx(30.0)


def test_pause_elapses_then_analysis_pending():
    state = CanaryState(2, step=1, step_started=900.0, weight=10)
    d = advance(STANDARD, state, obs(ready_canary_pods=1))
    assert (d.reason, d.state.step) == ("Analyzing", 2)


def test_analysis_pass_then_indefinite_pause():
    state = CanaryState(2, step=2, step_started=990.0, weight=10)
    d = advance(STANDARD, state, obs(ready_canary_pods=2, analysis=True))
    assert (d.action, d.reason, d.paused, d.state.weight, d.state.step) == (
        "progress", "Paused", True, 50, 4)


def test_analysis_failure_aborts():
    state = CanaryState(2, step=2, weight=10)
    d = advance(STANDARD, state, obs(ready_canary_pods=1, analysis=False,
                                     analysis_message="error-rate 0.2 > 0.05"))
    assert (d.action, d.reason, d.wanted_weight) == ("abort", "AnalysisFailed", 0)
    assert "error-rate" in d.message


def test_promote_ends_indefinite_pause_and_finishes():
    state = CanaryState(2, step=4, weight=50)
    d = advance(STANDARD, state, obs(ready_canary_pods=2, promote=True))
    assert (d.action, d.reason, d.consumed_promote) == ("promote", "Promoted", True)


def test_promote_skips_a_timed_pause_only():
    d = advance(STANDARD, CanaryState(2, step=1, step_started=999.0, weight=10),
                obs(ready_canary_pods=1, promote=True))
    assert (d.reason, d.state.step) == ("Analyzing", 2)


def test_promote_full_skips_everything():
    d = advance(STANDARD, CanaryState(2), obs(promote_full=True))
    assert (d.action, d.wanted_weight) == ("promote", 100)


def test_abort_request_wins():
    d = advance(STANDARD, CanaryState(2, step=4, weight=50), obs(abort=True, promote=True))
    assert (d.action, d.reason) == ("abort", "Aborted")


def test_restarting_canary_aborts():
    d = advance(STANDARD, CanaryState(2, step=1, weight=10), obs(canary_restarts=2))
    assert (d.action, d.reason) == ("abort", "CanaryUnhealthy")


def test_deadline_aborts_a_canary_that_never_gets_ready():
    d = advance(STANDARD, CanaryState(2), obs(now=2000.0, started=1000.0))
    assert (d.action, d.reason) == ("abort", "ProgressDeadlineExceeded")


def test_no_steps_promotes_at_once():
    assert advance([], CanaryState(2), obs()).action == "promote"


def test_weights_only_walk_through_when_ready():
    plan = steps({"setWeight": 10}, {"setWeight": 50}, {"setWeight": 100})
    d = advance(plan, CanaryState(2), obs(ready_canary_pods=1))
    assert (d.reason, d.state.weight, d.wanted_weight) == ("WaitingForCanary", 10, 50)
    d = advance(plan, d.state, obs(ready_canary_pods=2))
    assert (d.reason, d.state.weight, d.wanted_weight) == ("WaitingForCanary", 50, 100)
    d = advance(plan, d.state, obs(ready_canary_pods=4))
    assert d.action == "promote" and d.state.weight == 100


@pytest.mark.parametrize("total,weight,canary,stable", [
    (4, 0, 0, 4), (4, 10, 1, 4), (4, 50, 2, 2), (4, 100, 4, 0), (1, 10, 1, 1), (10, 25, 3, 8),
])
def test_replica_split(total, weight, canary, stable):
    assert canary_replicas(total, weight) == canary
    assert stable_replicas(total, weight) == stable


def test_parse_duration():
    assert parse_duration("1m30s") == 90 and parse_duration("250ms") == 0.25
