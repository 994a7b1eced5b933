"""wire.FrameLink: the engine/worker wire. Frames split across reads, many frames in one read,
and the messages sent within one event-loop turn (or from threads before the loop
flushes) leaving as one frame."""

from __future__ import annotations

import asyncio
import threading

from modelserve_runtime.wire import FrameLink
from modelserve_runtime.wire import frame as _frame


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:  # type: ignore[override]
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True


def test_frames_split_and_merged_across_reads_arrive_whole_and_in_order() -> None:
    got: list[object] = []
    link = FrameLink(got.append)
    frames = [[{"id": i, "payload": b"x" * (i * 37)}] * (i % 3 + 1) for i in range(20)]
    stream = b"".join(_frame(f) for f in frames)
    # odd chunk sizes: frames split mid-length-prefix and mid-payload, several per read
    pos, size = 0, 1
    while pos < len(stream):
        link.data_received(stream[pos : pos + size])
        pos += size
        size = size * 3 % 97 + 1
    assert got == frames


def test_a_frame_that_fails_to_handle_does_not_break_the_link() -> None:
    got: list[object] = []

    def handle(messages: list) -> None:
        if messages == ["bad"]:
            raise ValueError("boom")
        got.extend(messages)

    link = FrameLink(handle)
    link.data_received(_frame(["bad"]) + _frame(["good"]))
    assert got == ["good"]


def test_sends_in_one_loop_turn_leave_as_one_frame_and_wait_for_the_transport() -> None:
    async def scenario() -> None:
        link = FrameLink(lambda messages: None)
        link.send("greeting", "ready")  # before the transport exists: held, not dropped
        transport = FakeTransport()
        link.connection_made(transport)
        assert transport.writes == [_frame(["greeting", "ready"])]
        for i in range(5):
            link.send(i)
        assert len(transport.writes) == 1  # nothing yet: flushed at the end of the turn
        await asyncio.sleep(0)
        assert transport.writes[1:] == [_frame([0, 1, 2, 3, 4])]
        lost: list[bool] = []
        link.on_lost = lambda: lost.append(True)
        link.connection_lost(None)
        assert lost == [True]

    asyncio.run(scenario())


def test_frames_sent_from_other_threads_are_written_by_the_loop_in_order() -> None:
    """The engine answers from its instance threads: the event loop writes what several
    threads sent, every message whole and each thread's in its order, woken once per
    flush rather than once per send."""

    async def scenario() -> None:
        link = FrameLink(lambda messages: None)
        transport = FakeTransport()
        link.connection_made(transport)

        def sender(tag: str) -> None:
            for i in range(0, 200, 2):
                link.send_threadsafe((tag, i), (tag, i + 1))

        threads = [threading.Thread(target=sender, args=(t,)) for t in "abc"]
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            await asyncio.sleep(0.001)
        await asyncio.sleep(0)  # the last wake-up's flush
        got: list[object] = []
        reader = FrameLink(got.extend)
        reader.data_received(b"".join(transport.writes))
        for tag in "abc":
            assert [i for t, i in got if t == tag] == list(range(200))  # type: ignore[misc]
        assert len(got) == 600
        assert len(transport.writes) < 600  # frames that queued up left together

    asyncio.run(scenario())
