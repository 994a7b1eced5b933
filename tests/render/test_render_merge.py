"""Merge rules between the user's spec.pod and what the operator renders."""

from __future__ import annotations

import pytest

from modelserve_operator.render import merge

GPU_TOL = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


@pytest.mark.parametrize(
    ("name", "theirs", "want"),
    [
        ("identical gpu toleration is dropped", [dict(GPU_TOL)], [GPU_TOL]),
        ("broader toleration (no effect) is kept",
         [{"key": "nvidia.com/gpu", "operator": "Exists"}],
         [GPU_TOL, {"key": "nvidia.com/gpu", "operator": "Exists"}]),
        ("operator Equal is the default",
         [{"key": "a", "value": "b"}, {"key": "a", "operator": "Equal", "value": "b"}],
         [GPU_TOL, {"key": "a", "value": "b"}]),
        ("tolerationSeconds is not part of identity",
         [{**GPU_TOL, "tolerationSeconds": 30}], [GPU_TOL]),
        ("none", None, [GPU_TOL]),
    ],
)
def test_merge_tolerations(name: str, theirs: list | None, want: list) -> None:
    assert merge.merge_tolerations([GPU_TOL], theirs) == want, name


def test_env_essential_fixed_defaults_overridable_later_user_list_wins() -> None:
    got = merge.merge_env(
        [{"name": "MODELSERVE_BACKEND", "value": "tensorrt"}],
        [{"name": "HOME", "value": "/tmp"}],
        [{"name": "A", "value": "version"}, {"name": "MODELSERVE_BACKEND", "value": "x"}],
        [{"name": "A", "value": "pod"}, {"name": "HOME", "value": "/home/m"}],
    )
    assert got == [
        {"name": "MODELSERVE_BACKEND", "value": "tensorrt"},
        {"name": "HOME", "value": "/home/m"},
        {"name": "A", "value": "pod"},
    ]


def test_named_lists_ours_win_user_later_wins() -> None:
    got = merge.merge_named(
        [{"name": "model", "emptyDir": {}}],
        [{"name": "model", "hostPath": {"path": "/x"}},
         {"name": "a", "emptyDir": {}}, {"name": "a", "secret": {"secretName": "s"}}],
    )
    assert got == [{"name": "model", "emptyDir": {}}, {"name": "a", "secret": {"secretName": "s"}}]


def test_affinity_product_is_anded_into_every_user_term() -> None:
    zone = {"key": "zone", "operator": "In", "values": ["a"]}
    theirs = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [
            {"matchExpressions": [zone]},
            {"matchExpressions": [{"key": merge.GPU_PRODUCT_LABEL, "operator": "In",
                                   "values": ["T4"]}]},
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]},
        ]}}}
    got = merge.merge_affinity(theirs, "H100")
    ours = {"key": merge.GPU_PRODUCT_LABEL, "operator": "In", "values": ["H100"]}
    terms = got["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"]
    assert [t["matchExpressions"] for t in terms] == [[zone, ours], [ours], [ours]]
    assert terms[2]["matchFields"]  # kept: AND-ed with ours by the scheduler
    # The input (a frozen spec's dict) is untouched.
    assert len(theirs["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"][0]["matchExpressions"]) == 1


def test_affinity_without_product_passes_user_through_or_none() -> None:
    assert merge.merge_affinity(None, None) is None
    assert merge.merge_affinity({"podAffinity": {}}, None) == {"podAffinity": {}}
    only_ours = merge.merge_affinity(None, "H100")
    assert only_ours["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"] == {
        "nodeSelectorTerms": [{"matchExpressions": [
            {"key": merge.GPU_PRODUCT_LABEL, "operator": "In", "values": ["H100"]}]}]}


def test_node_selector_product_conflict() -> None:
    theirs = {merge.GPU_PRODUCT_LABEL: "T4", "pool": "gpu"}
    assert merge.merge_node_selector(theirs, "H100") == {"pool": "gpu"}
    assert merge.merge_node_selector(theirs, None) == theirs  # no product: user decides
    assert merge.merge_node_selector({merge.GPU_PRODUCT_LABEL: "T4"}, "H100") is None


def test_maps_ours_win() -> None:
    assert merge.merge_maps({"a": "ours"}, {"a": "theirs", "b": "x"}) == {"a": "ours", "b": "x"}
