"""Per-object exponential backoff for failed reconciles."""

from modelserve_operator.controllers.cluster.queue import Backoff


def test_each_failure_doubles_the_wait_up_to_the_ceiling():
    backoff = Backoff(ceiling=10)
    assert [backoff.failed("a") for _ in range(6)] == [1, 2, 4, 8, 10, 10]


def test_objects_back_off_independently_and_success_forgets():
    backoff = Backoff()
    backoff.failed("a")
    backoff.failed("a")
    assert backoff.failed("b") == 1  # another object is not slowed down
    backoff.succeeded("a")
    assert backoff.failures("a") == 0 and backoff.failed("a") == 1


def test_a_conflict_starts_sooner():
    backoff = Backoff()
    assert backoff.failed("a", first=0.2) == 0.2
    assert backoff.failed("a", first=0.2) == 0.4
