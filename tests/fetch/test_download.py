"""The download loop, driven by a scripted source: retries, resume, verification, atomicity.

The real storage clients are exercised against real servers elsewhere (test_web.py,
test_s3_store.py); this file pins down the behaviour they all share.
"""

import contextlib
import hashlib
import importlib

import pytest

from modelserve_runtime.fetch.download import Stream, download
from modelserve_runtime.fetch.errors import FetchError, TransientError

DATA = bytes(range(256)) * 4096  # 1 MiB
DIGEST = hashlib.sha256(DATA).hexdigest()


class Scripted:
    """Serves DATA in 64 KiB chunks; `failures` says where each attempt breaks."""

    def __init__(self, failures=(), resumable=True, store_digest=None, total=1 << 20):
        self.uri = "s3://bucket/model.onnx"
        self.resumable = resumable
        self.failures = list(failures)  # per attempt: byte offset to fail at, or an exception
        self.offsets = []
        self.store_digest = store_digest
        self.total = total

    def expected_sha256(self):
        return self.store_digest

    @contextlib.contextmanager
    def open(self, offset):
        self.offsets.append(offset)
        failure = self.failures.pop(0) if self.failures else None
        if isinstance(failure, Exception):
            raise failure

        def chunks():
            for start in range(offset, len(DATA), 1 << 16):
                if failure is not None and start >= failure:
                    raise TransientError("connection reset by peer")
                yield DATA[start:start + (1 << 16)]

        yield Stream(chunks=chunks(), total=self.total)


def no_sleep(_):
    pass


def test_verifies_and_renames_into_place(tmp_path):
    dest = tmp_path / "models" / "model.onnx"
    result = download(Scripted(), dest, DIGEST, sleep=no_sleep)
    assert (result.sha256, result.size) == (DIGEST, len(DATA))
    assert dest.read_bytes() == DATA
    assert [p.name for p in dest.parent.iterdir()] == ["model.onnx"]


def test_a_dropped_stream_resumes_where_it_stopped(tmp_path):
    source = Scripted(failures=[300_000, 700_000])
    download(source, tmp_path / "m", DIGEST, sleep=no_sleep)
    assert source.offsets == [0, 327_680, 720_896]  # chunk boundaries past each failure
    assert (tmp_path / "m").read_bytes() == DATA


def test_a_source_that_cannot_resume_starts_again(tmp_path):
    source = Scripted(failures=[300_000], resumable=False)
    download(source, tmp_path / "m", DIGEST, sleep=no_sleep)
    assert source.offsets == [0, 0]
    assert (tmp_path / "m").read_bytes() == DATA


def test_backs_off_between_attempts(tmp_path):
    delays = []
    download(Scripted(failures=[0, 0, 0]), tmp_path / "m", DIGEST, sleep=delays.append)
    assert len(delays) == 3
    assert all(lo <= d <= hi for d, (lo, hi) in zip(delays, [(0.8, 1.2), (1.6, 2.4),
                                                             (3.2, 4.8)], strict=True))


def test_gives_up_with_the_uri_and_the_last_error(tmp_path):
    source = Scripted(failures=[TransientError("HTTP 503")] * 3)
    with pytest.raises(FetchError, match=r"gave up on s3://bucket/model.onnx after 3 attempts.*"
                                         r"HTTP 503"):
        download(source, tmp_path / "m", DIGEST, attempts=3, sleep=no_sleep)
    assert list(tmp_path.iterdir()) == []


def test_a_permanent_error_is_not_retried(tmp_path):
    source = Scripted(failures=[FetchError("access denied to s3://bucket/model.onnx")])
    with pytest.raises(FetchError, match="access denied"):
        download(source, tmp_path / "m", DIGEST, sleep=no_sleep)
    assert source.offsets == [0]
    assert list(tmp_path.iterdir()) == []


def test_digest_mismatch_names_uri_and_field_and_leaves_nothing(tmp_path):
    dest = tmp_path / "m"
    with pytest.raises(FetchError) as info:
        download(Scripted(), dest, "0" * 64, sleep=no_sleep)
    message = str(info.value)
    assert "s3://bucket/model.onnx" in message and "spec.model.sha256" in message
    assert DIGEST in message
    assert list(tmp_path.iterdir()) == []


def test_the_stores_own_digest_is_checked_too(tmp_path):
    with pytest.raises(FetchError, match="registry's manifest"):
        download(Scripted(store_digest="f" * 64), tmp_path / "m", None, sleep=no_sleep)
    assert download(Scripted(store_digest=DIGEST), tmp_path / "m", None,
                    sleep=no_sleep).sha256 == DIGEST


def test_a_short_stream_is_retried_not_accepted(tmp_path):
    source = Scripted(total=len(DATA) + 10)  # the store announced more than it sent
    with pytest.raises(FetchError, match="stream ended at 1048576 of 1048586"):
        download(source, tmp_path / "m", None, attempts=2, sleep=no_sleep)
    assert list(tmp_path.iterdir()) == []


def test_an_existing_file_is_replaced_only_when_verified(tmp_path):
    dest = tmp_path / "m"
    dest.write_bytes(b"old model")
    with pytest.raises(FetchError):
        download(Scripted(), dest, "0" * 64, sleep=no_sleep)
    assert dest.read_bytes() == b"old model"


def test_a_failing_disk_stops_the_read_ahead_and_fails(tmp_path, monkeypatch):
    import threading

    class FullDisk:
        def __init__(self, real):
            self.real, self.written = real, 0

        def __getattr__(self, name):
            return getattr(self.real, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.real.close()

        def write(self, chunk):
            self.written += len(chunk)
            if self.written > 200_000:
                raise OSError(28, "No space left on device")
            return self.real.write(chunk)

    module = importlib.import_module("modelserve_runtime.fetch.download")
    real = module.tempfile.NamedTemporaryFile
    monkeypatch.setattr(module.tempfile, "NamedTemporaryFile",
                        lambda **kw: FullDisk(real(**kw)))
    before = threading.active_count()
    with pytest.raises(OSError, match="No space left"):
        download(Scripted(), tmp_path / "m", DIGEST, sleep=no_sleep)
    assert threading.active_count() == before  # the reader thread is gone
    assert list(tmp_path.iterdir()) == []
