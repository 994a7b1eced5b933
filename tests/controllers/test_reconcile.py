"""The ModelDeployment reconcile over a fake API and a hand-moved clock: which writes it
makes, what status says, and how a rollback, a promotion and a deleted version play out."""

from __future__ import annotations

import asyncio

from modelserve_operator import ROLLBACK_STEPS_ANNOTATION
from tests.controllers.fake_api import Harness, model_deployment, version

CANARY = {"strategy": "Canary", "scaleDownDelaySeconds": 30,
          "canary": {"steps": [{"setWeight": 20}, {"pause": {}}]}}


def run(coroutine):
    return asyncio.run(coroutine)


def serving_v1_then_v2(h: Harness, **md) -> None:
    """v1 serves; v2 went through its canary, was promoted, and the 30 s passed."""
    h.api.put(version("v1"))
    h.api.put(version("v2"))
    h.api.put(model_deployment("m", "v1", rollout=CANARY, **md))
    run(h.settle("m"))
    h.api.put(model_deployment("m", "v2", rollout=CANARY, **md))
    assert run(h.settle("m")) == ["Progressing", "Paused"]
    h.api.objects[("ModelDeployment", "ns", "m")]["status"]["control"] = {"promote": True}
    run(h.settle("m", max_wait=60))
    assert h.status("m")["revision"] == 2
    assert set(h.deployments()) == {"m-r2"}  # revision 1 scaled away after 30 s


def test_steady_state_makes_no_writes():
    h = Harness()
    h.api.put(version("v1"))
    h.api.put(model_deployment("m", "v1"))
    assert run(h.settle("m"))[-1] == "Ready"
    h.api.actions.clear()
    for _ in range(3):
        run(h.reconcile("m"))
    assert h.api.actions == []


def test_rollback_to_a_retained_revision_goes_straight_to_it():
    h = Harness()
    serving_v1_then_v2(h)
    h.api.events.clear()
    h.api.put(model_deployment("m", "v1", rollout=CANARY))  # `modelserve rollback`
    phases = run(h.settle("m", max_wait=5))
    assert "Paused" not in phases and phases[-1] == "Ready", phases
    st = h.status("m")
    assert (st["revision"], st.get("canaryRevision")) == (1, None)
    reasons = [r for r, _ in h.api.events]
    assert "RollbackStarted" in reasons and "RolledBack" in reasons
    assert "CanaryStarted" not in reasons
    # history: revision 1 serves again, revision 2 was superseded when traffic left it
    newest = st["history"][0]
    assert (newest["revision"], newest["outcome"]) == (1, "Serving")
    two = next(e for e in st["history"] if e["revision"] == 2)
    assert two["outcome"] == "Superseded" and two["stoppedAt"]


def test_rollback_with_canary_opt_in_runs_the_steps():
    h = Harness()
    serving_v1_then_v2(h)
    h.api.put(model_deployment("m", "v1", rollout=CANARY,
                               annotations={ROLLBACK_STEPS_ANNOTATION: "1"}))
    phases = run(h.settle("m", max_wait=5))
    assert phases[-1] == "Paused"
    st = h.status("m")
    assert (st["revision"], st["canaryRevision"], st["canaryWeight"]) == (2, 1, 20)


def test_rolling_back_reads_in_progress_then_current_conditions():
    h = Harness()
    serving_v1_then_v2(h)
    h.never_ready.add("m-r1")  # the old version's pods are still starting
    h.api.put(model_deployment("m", "v1", rollout=CANARY))
    run(h.settle("m"))
    assert h.condition("m", "Progressing") == ("True", "RollingBack")
    assert h.condition("m", "Reconciling") == ("True", "RollingBack")
    assert h.status("m")["revision"] == 2  # revision 2 serves until revision 1 is ready
    h.never_ready.clear()
    run(h.settle("m"))
    assert h.condition("m", "Reconciling")[0] == "False"
    assert h.condition("m", "Ready") == ("True", "Serving")


def test_promotion_stops_the_old_revision_in_history_at_once():
    h = Harness()
    h.api.put(version("v1"))
    h.api.put(version("v2"))
    h.api.put(model_deployment("m", "v1", rollout=CANARY))
    run(h.settle("m"))
    h.api.put(model_deployment("m", "v2", rollout=CANARY))
    run(h.settle("m"))
    h.api.objects[("ModelDeployment", "ns", "m")]["status"]["control"] = {"promote": True}
    run(h.settle("m"))  # no clock moves: revision 1 is still scaled up (scaleDownDelay)
    assert "m-r1" in h.deployments()
    entries = {e["revision"]: e for e in h.status("m")["history"]}
    assert entries[2]["outcome"] == "Serving" and "stoppedAt" not in entries[2]
    assert entries[1]["outcome"] == "Superseded" and entries[1]["stoppedAt"]


def test_deleting_the_serving_version_keeps_serving_and_says_why():
    h = Harness()
    h.api.put(version("v1"))
    h.api.put(model_deployment("m", "v1"))
    run(h.settle("m"))
    del h.api.objects[("ModelVersion", "ns", "v1")]
    h.store.delete("ModelVersion", "ns", "v1")
    h.api.actions.clear()
    run(h.settle("m"))
    assert h.condition("m", "Ready") == ("True", "Serving")
    assert h.condition("m", "Degraded") == ("True", "ModelVersionNotFound")
    assert h.condition("m", "Stalled") == ("True", "ModelVersionNotFound")
    assert h.deployments() == {"m-r1": 2}
    assert [a for a in h.api.actions if a[0] != "patch-status"] == []
