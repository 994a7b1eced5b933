"""https:// and http:// (the standard library's client) and file:// (a local path)."""

from __future__ import annotations

import contextlib
import urllib.error
import urllib.request
from collections.abc import Iterator

from .download import CHUNK, Stream
from .errors import FetchError, TransientError
from .uri import ModelUri


class HttpSource:
    resumable = True

    def __init__(self, uri: ModelUri) -> None:
        self.uri = uri.raw

    def expected_sha256(self) -> str | None:
        return None

    @contextlib.contextmanager
    def open(self, offset: int) -> Iterator[Stream]:
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        request = urllib.request.Request(self.uri, headers=headers)
        try:
            response = urllib.request.urlopen(request, timeout=60)
        except urllib.error.HTTPError as e:
            if e.code in (401, 403):
                raise FetchError(f"access denied to {self.uri} (HTTP {e.code}): the URL must "
                                 f"be readable without credentials (a pre-signed URL works), "
                                 f"or move the model to s3://, gs:// or oci:// with a "
                                 f"spec.model.secretRef") from e
            if e.code == 404:
                raise FetchError(f"{self.uri} not found (HTTP 404): check spec.model.uri") from e
            if e.code == 429 or e.code >= 500:
                raise TransientError(f"{self.uri}: HTTP {e.code}") from e
            raise FetchError(f"{self.uri}: HTTP {e.code} {e.reason}") from e
        except (urllib.error.URLError, OSError) as e:
            raise TransientError(f"{self.uri}: {e}") from e
        with response:
            length = response.headers.get("Content-Length")
            size = int(length) if length is not None else None
            if offset and response.status != 206:
                # The server ignored Range and sends it all: skip what we already have.
                _discard(response, offset)
                total = size
            else:
                total = offset + size if size is not None else None

            def chunks() -> Iterator[bytes]:
                try:
                    while block := response.read(CHUNK):
                        yield block
                except OSError as e:
                    raise TransientError(f"{self.uri}: {e}") from e

            yield Stream(chunks=chunks(), total=total)


def _discard(response, n: int) -> None:
    while n > 0:
        block = response.read(min(n, CHUNK))
        if not block:
            raise TransientError("the response ended before the resume offset")
        n -= len(block)


class FileSource:
    resumable = True

    def __init__(self, uri: ModelUri) -> None:
        self.uri = uri.raw
        self.path = uri.path

    def expected_sha256(self) -> str | None:
        return None

    @contextlib.contextmanager
    def open(self, offset: int) -> Iterator[Stream]:
        try:
            handle = open(self.path, "rb")  # noqa: SIM115 - closed by the with below
        except FileNotFoundError as e:
            raise FetchError(f"{self.uri} not found: check spec.model.uri") from e
        except PermissionError as e:
            raise FetchError(f"access denied to {self.uri}: the fetch runs as uid 1000") from e
        with handle:
            handle.seek(offset)
            total = offset + (handle.seek(0, 2) - offset)
            handle.seek(offset)
            yield Stream(chunks=iter(lambda: handle.read(CHUNK), b""), total=total)
