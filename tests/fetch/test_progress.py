"""Progress lines: done / total, rate and time left, only as often as EVERY_SECONDS."""

import io

from modelserve_runtime.fetch.progress import PREFIX, Progress, describe


def test_describe_with_and_without_total():
    mib = 1 << 20
    assert describe(512 * mib, 1024 * mib, 4.0) == (
        "512.0 MiB of 1.0 GiB (50%), 128.0 MiB/s, about 4 s left")
    assert describe(3 * mib, None, 1.0) == "3.0 MiB, 3.0 MiB/s"
    assert describe(0, 10, 0.0) == "0 B of 10 B (0%)"


def test_prints_at_most_every_five_seconds():
    now = [0.0]
    out = io.StringIO()
    progress = Progress("s3://b/m.onnx", out=out, clock=lambda: now[0])
    progress.restart(0, 100)
    for _ in range(10):  # 10 chunks over 9 s: lines at 5 s only
        progress.advance(10)
        now[0] += 1.0
    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"{PREFIX}s3://b/m.onnx: 60 B of 100 B (60%)")


def test_the_pods_endpoint_hears_of_every_percent_even_within_a_second():
    from modelserve_runtime import progress as pod_progress

    now = [0.0]
    progress = Progress("s3://b/m.onnx", out=io.StringIO(), clock=lambda: now[0])
    progress.restart(0, 1000)
    for _ in range(55):  # 550 bytes at once, then the download stalls
        progress.advance(10)
    assert pod_progress.current()["done"] == 550
    now[0] += 2.0
    progress.advance(1)  # and a second later, whatever the step
    assert pod_progress.current()["done"] == 551
