"""Busy-polling after a lone request (busypoll.py): the loop polls for the window and then
sleeps again; off unless configured; only a request that had the process to itself
kicks it."""

from __future__ import annotations

import asyncio
import json

import pytest

from modelserve_runtime import busypoll, server
from modelserve_runtime.busypoll import BusyPoll
from modelserve_runtime.config import ConfigError, Settings, load_settings


def test_off_unless_configured() -> None:
    poll = BusyPoll()

    async def main() -> None:
        poll.kick()
        await asyncio.sleep(0.01)

    asyncio.run(main())
    assert poll.spins == 0


def test_a_kick_keeps_the_loop_polling_for_the_window_then_it_sleeps() -> None:
    poll = BusyPoll()
    poll.configure(20_000)

    async def main() -> tuple[int, int, int]:
        poll.kick()
        poll.kick()  # within the window: extends it
        await asyncio.sleep(0.06)
        after_window = poll.spins
        await asyncio.sleep(0.03)
        idle = poll.spins - after_window
        poll.kick()  # after the window: polls again
        await asyncio.sleep(0.001)
        return after_window, idle, poll.spins - after_window

    after_window, idle, again = asyncio.run(main())
    assert after_window > 10  # polled many turns while a sleep of 60 ms ran
    assert idle == 0  # then slept
    assert again > 0


def test_only_a_request_alone_in_the_process_kicks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kicks: list[int] = []
    monkeypatch.setattr(busypoll.POLL, "kick", lambda: kicks.append(1))
    spec = [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}]
    srv = server.RuntimeServer(
        Settings(model_name="m", model_path="/nonexistent.onnx", inputs=json.dumps(spec))
    )
    alone = srv.request_began()
    srv.request_ended(alone)
    assert kicks == [1] and srv.inflight == 0

    first, second = srv.request_began(), srv.request_began()  # overlapping
    srv.request_ended(first)
    srv.request_ended(second)
    assert kicks == [1]

    first = srv.request_began()
    other = srv.request_began()  # begins and ends within the first one's life
    srv.request_ended(other)
    srv.request_ended(first)
    assert kicks == [1] and srv.inflight == 0


def test_the_window_is_a_validated_setting() -> None:
    base = ["--model-name", "m", "--model-path", "/m.onnx"]
    assert load_settings(base, {}).busy_poll_us == 0
    assert load_settings(base, {"MODELSERVE_BUSY_POLL_US": "2000"}).busy_poll_us == 2000
    with pytest.raises(ConfigError, match=r"--busy-poll-us must be in 0\.\.100000"):
        load_settings([*base, "--busy-poll-us", "-1"], {})
