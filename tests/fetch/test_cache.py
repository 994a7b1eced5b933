"""The node cache: one download per digest under concurrent pods, LRU eviction that spares
models a pod on the node still links, and nothing half-written ever counted as a hit."""

import multiprocessing
import os
import time

import pytest

from modelserve_runtime.fetch.cache import NodeCache

MB = 1 << 20


def fill_with(data: bytes, log=None, delay=0.0):
    def fill(path):
        if log is not None:
            with open(log, "a") as f:
                f.write(f"{os.getpid()}\n")
        time.sleep(delay)
        tmp = path.with_name(f".{path.name}.x.partial")
        tmp.write_bytes(data)
        os.replace(tmp, path)

    return fill


def _pod(root, digest, dest, log):
    NodeCache(root).get(digest, fill_with(b"m" * MB, log, delay=0.5), dest)


def test_concurrent_pods_download_once(tmp_path):
    root, log = tmp_path / "cache", tmp_path / "fills"
    ctx = multiprocessing.get_context("fork")
    pods = [ctx.Process(target=_pod, args=(root, "a" * 64, tmp_path / f"pod{i}/m.onnx", log))
            for i in range(4)]
    for p in pods:
        p.start()
    for p in pods:
        p.join(30)
        assert p.exitcode == 0
    assert len(log.read_text().splitlines()) == 1
    for i in range(4):
        assert (tmp_path / f"pod{i}/m.onnx").read_bytes() == b"m" * MB
    # Hard links: one file on disk, linked from the cache and each pod volume.
    assert (root / "sha256" / ("a" * 64)).stat().st_nlink == 5


def test_a_hit_is_placed_without_calling_fill(tmp_path):
    cache = NodeCache(tmp_path / "cache")
    assert cache.get("b" * 64, fill_with(b"x"), tmp_path / "p1/m") is False

    def must_not_fill(path):
        raise AssertionError("downloaded again")

    assert cache.get("b" * 64, must_not_fill, tmp_path / "p2/m") is True
    assert (tmp_path / "p2/m").read_bytes() == b"x"


def test_a_failed_fill_leaves_no_entry_and_the_next_pod_retries(tmp_path):
    cache = NodeCache(tmp_path / "cache")

    def broken(path):
        path.with_name(f".{path.name}.y.partial").write_bytes(b"half")
        raise RuntimeError("pod killed mid-download")

    with pytest.raises(RuntimeError):
        cache.get("c" * 64, broken, tmp_path / "p1/m")
    assert cache.list() == []
    assert cache.get("c" * 64, fill_with(b"whole"), tmp_path / "p2/m") is False
    assert (tmp_path / "p2/m").read_bytes() == b"whole"
    assert not list((tmp_path / "cache/sha256").glob(".*"))  # the stale partial is gone


def test_eviction_drops_least_recently_used_models_no_pod_links(tmp_path):
    cache = NodeCache(tmp_path / "cache", max_bytes=3 * MB)
    placed = {}
    for n, digest in enumerate(["1" * 64, "2" * 64, "3" * 64]):
        placed[digest] = tmp_path / f"pod-{n}/m"
        cache.get(digest, fill_with(b"m" * MB), placed[digest])
        os.utime(cache.entries / digest, (1000 + n, 1000 + n))  # oldest first
    placed["1" * 64].unlink()  # pod 0 is gone: model 1 is unused; models 2 and 3 are in use
    placed["2" * 64].unlink()  # ... and so is pod 1
    os.utime(cache.entries / ("2" * 64), (5000, 5000))  # but model 2 was used more recently
    cache.get("4" * 64, fill_with(b"m" * MB), tmp_path / "pod-4/m")
    left = {e.digest for e in cache.list()}
    assert left == {"2" * 64, "3" * 64, "4" * 64}  # model 1 (unused, oldest) went


def test_models_in_use_are_never_evicted_even_over_the_limit(tmp_path, capsys):
    cache = NodeCache(tmp_path / "cache", max_bytes=MB)
    cache.get("5" * 64, fill_with(b"m" * MB), tmp_path / "pod-a/m")
    cache.get("6" * 64, fill_with(b"m" * MB), tmp_path / "pod-b/m")
    assert {e.digest for e in cache.list()} == {"5" * 64, "6" * 64}
    assert "every model left is in use" in capsys.readouterr().err


def test_a_model_being_filled_or_linked_is_not_evicted(tmp_path):
    cache = NodeCache(tmp_path / "cache", max_bytes=0)
    cache.get("7" * 64, fill_with(b"m" * MB), tmp_path / "pod/m")
    (tmp_path / "pod/m").unlink()  # no pod links it now ...
    with cache._locked("7" * 64):  # ... but another pod holds its lock
        assert cache.evict() == []
        assert (cache.entries / ("7" * 64)).exists()
    assert cache.evict() == ["7" * 64]


def test_unwritable_cache_says_what_to_fix(tmp_path):
    if os.getuid() == 0:
        pytest.skip("root writes everywhere")
    root = tmp_path / "cache"
    root.mkdir(mode=0o555)
    with pytest.raises(PermissionError, match="writable by the runtime user"):
        NodeCache(root).get("8" * 64, fill_with(b"x"), tmp_path / "m")


def test_a_model_a_runtime_serves_is_pinned_until_that_process_exits(tmp_path):
    import subprocess
    import sys

    cache = NodeCache(tmp_path / "cache", max_bytes=0)
    cache.get("9" * 64, fill_with(b"m" * MB), tmp_path / "pod/m")
    (tmp_path / "pod/m").unlink()  # copies don't count: only the runtime's pin does
    entry = cache.entries / ("9" * 64)
    runtime = subprocess.Popen(
        [sys.executable, "-c",
         "import sys; from modelserve_runtime.fetch.cache import pin_from_env; pin_from_env();"
         " print('pinned', flush=True); sys.stdin.read()"],
        env={**os.environ, "MODELSERVE_MODEL_CACHE_ENTRY": str(entry)},
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert runtime.stdout.readline().strip() == "pinned"
        assert cache.evict() == []
        assert entry.exists()
    finally:
        runtime.communicate("")  # the runtime exits: its lock goes with it
    assert cache.evict() == ["9" * 64]
    assert not entry.exists()


def test_pin_without_a_cache_entry_is_harmless(monkeypatch, capsys):
    from modelserve_runtime.fetch import cache as cache_module

    monkeypatch.delenv("MODELSERVE_MODEL_CACHE_ENTRY", raising=False)
    cache_module.pin_from_env()
    monkeypatch.setenv("MODELSERVE_MODEL_CACHE_ENTRY", "/nonexistent/sha256/abc")
    cache_module.pin_from_env()
    assert "cannot pin /nonexistent/sha256/abc" in capsys.readouterr().err
