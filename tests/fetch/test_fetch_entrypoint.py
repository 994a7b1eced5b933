"""`modelserve-runtime fetch` as the init container runs it: exit code, messages, cache."""

import hashlib

import pytest

from modelserve_runtime.fetch import FetchError, fetch, main


def model(tmp_path, data=b"weights" * 1000):
    source = tmp_path / "src" / "model.onnx"
    source.parent.mkdir(exist_ok=True)
    source.write_bytes(data)
    return source, hashlib.sha256(data).hexdigest()


def test_fetch_verifies_and_places_the_file(tmp_path):
    source, digest = model(tmp_path)
    dest = tmp_path / "models" / "model.onnx"
    assert fetch(f"file://{source}", dest, digest) == digest
    assert dest.read_bytes() == source.read_bytes()


def test_digest_mismatch_refuses_and_leaves_nothing(tmp_path):
    source, _ = model(tmp_path, b"tampered")
    dest = tmp_path / "models" / "model.onnx"
    with pytest.raises(FetchError, match="SHA-256 mismatch"):
        fetch(f"file://{source}", dest, "0" * 64)
    assert list(dest.parent.iterdir()) == []


def test_pvc_is_mounted_not_fetched(tmp_path):
    with pytest.raises(FetchError, match="mounted into the pod"):
        fetch("pvc://claim/model.onnx", tmp_path / "m.onnx", None)


def test_entrypoint_dispatches_fetch(tmp_path):
    from modelserve_runtime.server import main as server_main

    source, _ = model(tmp_path, b"x")
    argv = ["fetch", "--uri", f"file://{source}", "--dest", str(tmp_path / "d/m.onnx")]
    assert server_main(argv) == 0
    assert (tmp_path / "d/m.onnx").read_bytes() == b"x"


def test_failure_exits_1_with_one_line_and_a_termination_message(tmp_path, capsys,
                                                                 monkeypatch):
    log = tmp_path / "termination-log"
    log.touch()
    monkeypatch.setattr("modelserve_runtime.fetch.TERMINATION_LOG", str(log))
    code = main(["--uri", f"file://{tmp_path}/missing.onnx", "--dest", str(tmp_path / "m")])
    assert code == 1
    err = capsys.readouterr().err
    assert err.startswith("fetch failed: file://") and "not found" in err
    assert log.read_text() == err.strip()


def test_second_fetch_through_the_node_cache_downloads_nothing(tmp_path, capsys):
    source, digest = model(tmp_path)
    cache = tmp_path / "node-cache"
    args = ["--uri", f"file://{source}", "--sha256", digest, "--cache-dir", str(cache),
            "--cache-max-size", "1Gi"]
    assert main([*args, "--dest", str(tmp_path / "pod1/model.onnx")]) == 0
    assert "node cache filled" in capsys.readouterr().out
    source.unlink()  # the store is gone: only the cache can serve the second pod
    assert main([*args, "--dest", str(tmp_path / "pod2/model.onnx")]) == 0
    assert "node cache hit: no download" in capsys.readouterr().out
    assert (tmp_path / "pod2/model.onnx").read_bytes() == b"weights" * 1000


def test_cache_needs_a_digest(tmp_path, capsys):
    source, _ = model(tmp_path)
    main(["--uri", f"file://{source}", "--dest", str(tmp_path / "m"), "--cache-dir",
          str(tmp_path / "c")])
    assert "node cache skipped" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()


def test_bad_cache_size_is_an_argument_error(tmp_path):
    with pytest.raises(SystemExit):
        main(["--uri", "file:///x", "--dest", "/tmp/x", "--cache-max-size", "lots"])


def test_the_command_runs_fetch_without_importing_the_server(tmp_path):
    import subprocess
    import sys

    source, digest = model(tmp_path)
    code = (
        "import sys\n"
        "from modelserve_runtime.command import main\n"
        "rc = main(sys.argv[1:])\n"
        "assert 'modelserve_runtime.server' not in sys.modules, 'server imported'\n"
        "assert 'numpy' not in sys.modules, 'numpy imported'\n"
        "sys.exit(rc)\n"
    )
    done = subprocess.run([sys.executable, "-c", code, "fetch", "--uri", f"file://{source}",
                           "--sha256", digest, "--dest", str(tmp_path / "m.onnx")],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
