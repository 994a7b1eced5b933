"""Names and label values derived from user-chosen names stay valid and distinct."""

from __future__ import annotations

import re

import pytest

from modelserve_operator.render import RenderSettings, endpoint_url
from modelserve_operator.render.names import (
    deployment_name,
    dns_label,
    label_value,
    service_name,
)

DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


@pytest.mark.parametrize(
    ("name", "md", "revision", "role", "want"),
    [
        ("short stable", "resnet50", 7, "stable", "resnet50-r7"),
        ("short canary", "resnet50", 8, "canary", "resnet50-r8"),
        ("fallback has a fixed name", "resnet50", 8, "fallback", "resnet50-fallback"),
        ("exactly 63 kept", "a" * 60, 1, "stable", "a" * 60 + "-r1"),
    ],
)
def test_deployment_name(name: str, md: str, revision: int, role: str, want: str) -> None:
    assert deployment_name(md, revision, role) == want, name


@pytest.mark.parametrize(
    "md", ["a" * 61, "x" * 253, "bert.large.v2", "9lives", "a" * 58 + ".b", "a-" * 40]
)
def test_truncated_names_are_valid_and_keep_suffix(md: str) -> None:
    for revision, role, suffix in ((12345, "stable", "-r12345"), (1, "fallback", "-fallback")):
        got = deployment_name(md, revision, role)
        assert len(got) <= 63 and DNS_LABEL.match(got), got
        assert got.endswith(suffix)
    assert DNS_LABEL.match(service_name(md)) and len(service_name(md)) <= 63


def test_truncation_keeps_distinct_names_distinct() -> None:
    a, b = "m" * 70 + "-one", "m" * 70 + "-two"
    assert deployment_name(a, 1, "stable") != deployment_name(b, 1, "stable")
    assert label_value(a) != label_value(b)
    assert dns_label(a) == dns_label(a)  # stable across reconciles


@pytest.mark.parametrize("value", ["resnet50-v3", "x" * 64, "a.b_c-" * 20, "v" * 253])
def test_label_value(value: str) -> None:
    got = label_value(value)
    assert len(got) <= 63 and LABEL_VALUE.match(got)
    if len(value) <= 63 and LABEL_VALUE.match(value):
        assert got == value


def test_endpoint_url() -> None:
    settings = RenderSettings()
    assert endpoint_url("resnet50", "ml", settings) == (
        "http://resnet50.ml.svc.cluster.local:8080/v2/models/resnet50")
    custom = RenderSettings(cluster_domain="corp.internal", port=9000)
    assert endpoint_url("bert.v2", "team-a", custom).startswith(
        f"http://{service_name('bert.v2')}.team-a.svc.corp.internal:9000/")
