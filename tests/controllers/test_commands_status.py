"""The CLI reads ModelDeployment status through the typed model; its screens read as before.

The objects are ModelDeployments captured from e2e runs (tests/kstatus, tests/argocd);
the golden screens were written by the CLI as it was before it read status through the
model, so a difference here is a change users would see. Only the I/O around the screens
is replaced: the object comes from the fixture, pods and Events are empty, and times are
printed as stored (no clock).
"""

from __future__ import annotations

import json
import pathlib

import pytest

from modelserve_operator import commands
from tests.golden import assert_golden

TESTS = pathlib.Path(__file__).resolve().parent.parent
FIXTURES = sorted({p.name: p for d in ("kstatus", "argocd")
                   for p in (TESTS / d / "fixtures").glob("md-*.json")}.values())
GOLDEN = pathlib.Path(__file__).resolve().parent / "golden_cli"


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch,
             request: pytest.FixtureRequest) -> tuple[str, dict]:
    md = json.loads(request.param.read_text())
    md["metadata"].setdefault("namespace", "e2e")  # the captures leave it out
    monkeypatch.setattr(commands, "get_md", lambda name, namespace: md)
    monkeypatch.setattr(commands, "model_downloads", lambda name, namespace: [])
    monkeypatch.setattr(commands, "md_events", lambda name, namespace: [])
    monkeypatch.setattr(commands, "_ago", lambda timestamp: timestamp or "-")
    return request.param.stem, md


def screens(md: dict) -> str:
    name = md["metadata"]["name"]
    out = [commands.status_screen(name, None)]
    for action in (commands.promote, commands.abort, commands.rollback):
        try:
            out.append(f"{action.__name__}: " + _without_writes(action, name))
        except commands.CommandError as error:
            out.append(f"{action.__name__} refused: {error}")
    return "\n".join(out) + "\n"


def _without_writes(action, name: str) -> str:
    """What the command decides and says, stopping before it writes."""
    if action is commands.rollback:
        real_mv = commands.get_mv
        commands.get_mv = lambda version, namespace: (_ for _ in ()).throw(
            commands.CommandError(f"would read ModelVersion {version}"))
        try:
            return action(name, None)
        finally:
            commands.get_mv = real_mv
    real_control = commands._control
    commands._control = lambda *args, **kwargs: None
    try:
        return action(name, None)
    finally:
        commands._control = real_control


@pytest.mark.parametrize("captured", FIXTURES, ids=[f.stem for f in FIXTURES], indirect=True)
def test_screens_read_as_before(captured: tuple[str, dict]) -> None:
    stem, md = captured
    assert_golden(GOLDEN / f"{stem}.txt", screens(md))


def test_a_status_field_this_version_does_not_know_is_left_out() -> None:
    status = commands.md_status({"status": {"phase": "Ready", "someFutureField": 1}})
    assert status.phase == "Ready"


def test_condition_by_type() -> None:
    status = commands.md_status({"status": {"conditions": [
        {"type": "Ready", "status": "True"}, {"type": "Degraded", "status": "False"}]}})
    assert status.condition("Degraded").status == "False"
    assert status.condition("Stalled") is None
