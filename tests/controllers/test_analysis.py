"""Analysis verdicts from measurements: interval, count and failure limit."""

from modelserve_operator.api.modeldeployment import AnalysisMetric
from modelserve_operator.controllers.decisions.analysis import judge, render_query, within

METRIC = AnalysisMetric.model_validate({
    "name": "errors", "max": 0.05, "interval": "10s", "count": 3, "failureLimit": 1,
    "prometheus": {"query": "q"}})


def m(value, at, passed=None):
    return {"metric": "errors", "value": value, "at": at,
            "passed": within(METRIC, value) if passed is None else passed}


def test_no_metrics_passes_on_pod_health_alone():
    assert judge([], [], 0).passed is True


def test_first_measurement_is_due_at_once():
    v = judge([METRIC], [], 100)
    assert (v.passed, v.due) == (None, ("errors",))


def test_next_measurement_waits_for_the_interval():
    assert judge([METRIC], [m(0.01, 95)], 100).due == ()
    assert judge([METRIC], [m(0.01, 90)], 100).due == ("errors",)


def test_passes_after_count_measurements_within_the_failure_limit():
    assert judge([METRIC], [m(0.01, 0), m(0.2, 10), m(0.0, 20)], 30).passed is True


def test_fails_beyond_the_failure_limit():
    v = judge([METRIC], [m(0.2, 0), m(0.3, 10)], 20)
    assert v.passed is False and "0.3" in v.message and "failureLimit 1" in v.message


def test_no_data_is_retried_then_fails():
    assert judge([METRIC], [m(None, 0), m(None, 10)], 20).passed is None
    v = judge([METRIC], [m(None, 0), m(None, 10), m(None, 20)], 30)
    assert v.passed is False and "no data" in v.message


def test_bounds():
    low = AnalysisMetric.model_validate({"name": "qps", "min": 5, "prometheus": {"query": "q"}})
    assert within(low, 6) and not within(low, 4) and not within(low, None)


def test_query_templating():
    q = render_query('x{ns="{{namespace}}",rev="{{ revision }}"}', namespace="a", revision="3")
    assert q == 'x{ns="a",rev="3"}'
