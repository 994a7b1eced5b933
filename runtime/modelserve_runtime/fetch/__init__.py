"""`modelserve-runtime fetch`: the init container that puts the model where the runtime
loads it, and refuses to go on when its SHA-256 does not match the ModelVersion's.

Every scheme the ModelVersion CRD accepts except pvc:// (which the operator mounts, so
nothing is fetched): s3:// (boto3), gs:// (google-cloud-storage), oci:// (oras), https://
and http://, file://. Each kind only opens a byte stream (s3.py, gcs.py, oci.py, web.py);
download.py streams it to disk with bounded memory, hashes while it streams, retries
transient errors with backoff and renames the file into place only once verified. With a
node cache directory (cache.py) a model is downloaded once per node.

Failures print one line naming the URI and what to check, and write it to the container's
termination message, so `kubectl describe pod` and the operator's status show the reason.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

from .. import progress as pod_progress
from .cache import NodeCache
from .credentials import registry_auth, s3_settings
from .download import Result, Source, download, sha256_file
from .errors import FetchError, TransientError
from .progress import Progress
from .uri import ModelUri, parse

__all__ = ["FetchError", "TransientError", "fetch", "main", "open_source", "sha256_file"]

TERMINATION_LOG = "/dev/termination-log"


def open_source(uri: ModelUri, *, s3_endpoint: str | None = None, s3_region: str | None = None,
                s3_path_style: bool | None = None, oci_plain_http: bool = False) -> Source:
    """The reader for one URI's storage kind; the SDK is imported only for that kind."""
    if uri.scheme == "s3":
        from .s3 import S3Source

        return S3Source(uri, s3_settings(s3_endpoint, s3_region, s3_path_style))
    if uri.scheme == "gs":
        from .gcs import GcsSource

        return GcsSource(uri)
    if uri.scheme == "oci":
        from .oci import OciSource

        return OciSource(uri, registry_auth(), plain_http=oci_plain_http)
    if uri.scheme in ("http", "https"):
        from .web import HttpSource

        return HttpSource(uri)
    if uri.scheme == "file":
        from .web import FileSource

        return FileSource(uri)
    raise FetchError(f"{uri.raw}: pvc:// models are mounted into the pod by the operator, not "
                     f"fetched; nothing to do here")


def fetch(uri: str, dest: pathlib.Path, sha256: str | None, *,
          cache_dir: pathlib.Path | None = None, cache_max_bytes: int | None = None,
          **source_options) -> str:
    """Download `uri` to `dest` atomically, through the node cache when given; its SHA-256."""
    source = open_source(parse(uri), **source_options)
    progress = Progress(uri)
    if cache_dir is not None and sha256:
        digest = sha256.lower()
        cache = NodeCache(cache_dir, cache_max_bytes)
        # Shown until the cache's lock is ours: another pod on this node may be downloading.
        pod_progress.report("waiting for the node cache")
        hit = cache.get(digest, lambda path: download(source, path, digest, progress=progress,
                                                      durable=True), dest)
        print(f"fetch: {uri} -> {dest} (sha256 {digest}, node cache "
              f"{'hit: no download' if hit else 'filled'})", flush=True)
        return digest
    if cache_dir is not None:
        print("fetch: node cache skipped: it is keyed by digest and spec.model.sha256 is not "
              "set", file=sys.stderr, flush=True)
    result: Result = download(source, dest, sha256, progress=progress)
    print(f"fetch: {uri} -> {dest} ({result.size} bytes, sha256 {result.sha256})", flush=True)
    return result.sha256


def _termination_message(text: str) -> None:
    # Kubernetes shows this file's content as the container's termination message.
    try:
        with open(TERMINATION_LOG, "w") as f:
            f.write(text[:4000])
    except OSError:
        pass


def _size(text: str) -> int:
    units = {"": 1, "K": 1000, "M": 1000**2, "G": 1000**3, "T": 1000**4,
             "KI": 1024, "MI": 1024**2, "GI": 1024**3, "TI": 1024**4}
    number = text.rstrip("KMGTikmgt")
    try:
        return int(float(number) * units[text[len(number):].upper()])
    except (KeyError, ValueError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a size like 50Gi") from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="modelserve-runtime fetch",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--uri", required=True)
    p.add_argument("--sha256", default=None)
    p.add_argument("--dest", required=True, type=pathlib.Path)
    p.add_argument("--s3-endpoint", default=None, help="S3 endpoint URL (non-AWS stores)")
    p.add_argument("--s3-region", default=None)
    p.add_argument("--s3-path-style", action="store_true", default=None,
                   help="path-style addressing (http://endpoint/bucket/key)")
    p.add_argument("--oci-plain-http", action="store_true",
                   help="talk to the registry over plain HTTP")
    p.add_argument("--cache-dir", type=pathlib.Path, default=None,
                   help="node-local cache directory shared by this node's model pods")
    p.add_argument("--cache-max-size", type=_size, default=None,
                   help="evict unused models beyond this size, e.g. 100Gi")
    p.add_argument("--progress-port", type=int, default=None,
                   help="serve the download's progress as JSON on this port (the pod's "
                        "HTTP port, free while the init container runs)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.progress_port:
        pod_progress.serve_in_background(args.progress_port)
    try:
        fetch(args.uri, args.dest, args.sha256, cache_dir=args.cache_dir,
              cache_max_bytes=args.cache_max_size, s3_endpoint=args.s3_endpoint,
              s3_region=args.s3_region, s3_path_style=args.s3_path_style,
              oci_plain_http=args.oci_plain_http)
    except (FetchError, PermissionError) as e:
        message = f"fetch failed: {e}"
        print(message, file=sys.stderr, flush=True)
        _termination_message(message)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
