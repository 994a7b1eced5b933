"""`modelserve-runtime fetch`: the init container that puts the model where the runtime
loads it, and refuses to go on when its SHA-256 does not match the ModelVersion's.

Supported sources: https:// and http:// (streamed), file:// (copied). Object stores
(s3://, gs://) and oci:// need credentials and SDKs this image does not carry yet; they
fail with a message saying so, rather than serving something unverified.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import pathlib
import sys
import tempfile
import time
import urllib.request

CHUNK = 1 << 20


def sha256_file(path: str) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks (models are large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _copy(reader, writer, digest: hashlib._Hash, total: int | None) -> int:
    done = 0
    last = time.monotonic()
    while chunk := reader.read(CHUNK):
        writer.write(chunk)
        digest.update(chunk)
        done += len(chunk)
        if time.monotonic() - last > 5:  # long downloads show progress in the pod log
            share = f" of {total / 1e6:.0f} MB" if total else ""
            print(f"fetch: {done / 1e6:.0f} MB{share}", flush=True)
            last = time.monotonic()
    return done


def fetch(uri: str, dest: pathlib.Path, sha256: str | None) -> str:
    """Download `uri` to `dest` atomically; return its hex SHA-256."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    scheme = uri.split("://", 1)[0]
    with tempfile.NamedTemporaryFile(dir=dest.parent, delete=False) as handle:
        tmp = pathlib.Path(handle.name)
        try:
            if scheme in ("http", "https"):
                with urllib.request.urlopen(uri, timeout=60) as response:
                    length = response.headers.get("Content-Length")
                    size = _copy(response, handle, digest, int(length) if length else None)
            elif scheme == "file":
                with open(uri[len("file://") :], "rb") as source:
                    size = _copy(source, handle, digest, None)
            else:
                raise SystemExit(
                    f"fetch: {scheme}:// is not supported by this runtime image yet; serve the "
                    f"model from a PVC (pvc://claim/path) or over https"
                )
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    actual = digest.hexdigest()
    if sha256 and actual != sha256.lower():
        tmp.unlink(missing_ok=True)
        raise SystemExit(
            f"fetch: SHA-256 mismatch for {uri}: expected {sha256}, got {actual}; "
            f"refusing to serve it (check spec.model.sha256 of the ModelVersion)"
        )
    os.replace(tmp, dest)
    print(f"fetch: {uri} -> {dest} ({size} bytes, sha256 {actual})", flush=True)
    return actual


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="modelserve-runtime fetch", description=__doc__)
    parser.add_argument("--uri", required=True)
    parser.add_argument("--sha256", default=None)
    parser.add_argument("--dest", required=True)
    args = parser.parse_args(argv)
    fetch(args.uri, pathlib.Path(args.dest), args.sha256)
    return 0


if __name__ == "__main__":
    sys.exit(main())
