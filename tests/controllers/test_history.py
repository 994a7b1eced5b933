"""Revision numbers and status.history bookkeeping."""

from modelserve_operator.api.modeldeployment import HistoryEntry
from modelserve_operator.controllers.decisions.history import next_revision, record, revision_for


def dep(revision, version):
    return {"metadata": {"name": f"md-r{revision}",
                         "labels": {"modelserve.io/revision": str(revision),
                                    "modelserve.io/pool": "primary"},
                         "annotations": {"modelserve.io/model-version": version}}}


def test_known_version_keeps_its_revision():
    assert revision_for("b", [dep(1, "a"), dep(2, "b")], [], []) == 2
    assert revision_for("a", [], [HistoryEntry(revision=3, model_version="a")], []) == 3


def test_new_version_gets_the_next_revision():
    assert revision_for("c", [dep(1, "a")], [HistoryEntry(revision=4, model_version="z")],
                        []) == 5
    assert next_revision([], [], []) == 1


def test_record_rollout_then_supersede():
    h = record([], 1, "a", "t1", rolled_out=False, retired=[], keep=10)
    assert [e.wire() for e in h] == [{"revision": 1, "modelVersion": "a", "startedAt": "t1",
                                      "outcome": "Progressing"}]
    h = record(h, 1, "a", "t2", rolled_out=True, retired=[], keep=10)
    assert h[0].outcome == "Serving" and h[0].started_at == "t1"
    h = record(h, 2, "b", "t3", rolled_out=True, retired=[1], keep=10)
    assert [e.revision for e in h] == [2, 1]
    assert h[1].stopped_at == "t3" and h[1].outcome == "Superseded"


def test_record_is_stable_when_nothing_changes():
    h = record([], 1, "a", "t1", rolled_out=True, retired=[], keep=10)
    assert record(h, 1, "a", "t9", rolled_out=True, retired=[], keep=10) == h


def test_record_keeps_at_most_the_limit():
    h = []
    for rev in range(1, 15):
        h = record(h, rev, f"v{rev}", f"t{rev:02d}", rolled_out=True, retired=[rev - 1], keep=10)
    assert len(h) == 10 and h[0].revision == 14 and h[-1].revision == 5


def test_live_revisions_stay_listed_beyond_the_limit():
    h = record([], 1, "v1", "t01", rolled_out=True, retired=[], keep=3)
    for rev in range(2, 6):  # revision 1 stays scaled up as the previous stable
        h = record(h, rev, f"v{rev}", f"t{rev:02d}", rolled_out=True, retired=[], keep=3,
                   live=frozenset({1}))
    assert [e.revision for e in h] == [5, 4, 1]


def test_an_aborted_canary_is_recorded_rolled_back_and_the_stable_stays_first():
    h = record([], 1, "v1", "t1", rolled_out=True, retired=[], keep=10)
    h = record(h, 1, "v1", "t2", rolled_out=True, retired=[], keep=10, aborted=(2, "v2"))
    assert [(e.revision, e.outcome, e.stopped_at) for e in h] == [
        (1, "Serving", None), (2, "RolledBack", "t2")]


def test_the_entries_given_are_not_changed():
    h = record([], 1, "a", "t1", rolled_out=False, retired=[], keep=10)
    record(h, 1, "a", "t2", rolled_out=True, retired=[], keep=10)
    assert h[0].outcome == "Progressing"
