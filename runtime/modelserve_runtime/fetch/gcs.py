"""gs:// through google-cloud-storage.

Credentials: a service-account key from the referenced Secret, else Application Default
Credentials (GKE workload identity on the pod's service account). STORAGE_EMULATOR_HOST,
which the library reads itself, points it at a local emulator.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from .credentials import gcs_service_account_file
from .download import CHUNK, Stream
from .errors import FetchError, TransientError
from .uri import ModelUri

# Bytes per ranged media request: each is a round trip, so far more than one CHUNK.
REQUEST_BYTES = 8 << 20


class GcsSource:
    resumable = True

    def __init__(self, uri: ModelUri) -> None:
        self.uri = uri.raw
        self.bucket_name, self.key = uri.bucket, uri.key
        self._blob = None

    def expected_sha256(self) -> str | None:
        return None

    def _client(self):
        import google.auth.exceptions
        from google.cloud import storage

        key_file = gcs_service_account_file()
        try:
            if key_file is not None:
                return storage.Client.from_service_account_json(str(key_file))
            return storage.Client()
        except google.auth.exceptions.DefaultCredentialsError as e:
            raise FetchError(
                f"no Google credentials for {self.uri}: put a service-account key under "
                f"the key 'service-account.json' of the Secret named in spec.model.secretRef, "
                f"or run the pod with a workload-identity service account "
                f"(spec.pod.serviceAccountName)"
            ) from e

    def _explain(self, e: Exception) -> Exception:
        from google.api_core import exceptions as api

        if isinstance(e, api.Forbidden | api.Unauthorized):
            return FetchError(
                f"access denied to {self.uri}: the credentials need storage.objects.get on "
                f"bucket {self.bucket_name!r} (roles/storage.objectViewer); {e.message}"
            )
        if isinstance(e, api.NotFound):
            return FetchError(f"{self.uri} not found: check the bucket and object in "
                              f"spec.model.uri")
        if isinstance(e, api.GoogleAPICallError) and not isinstance(
                e, api.ServerError | api.TooManyRequests):
            return FetchError(f"{self.uri}: {e}")
        return TransientError(f"{self.uri}: {type(e).__name__}: {e}")

    @contextlib.contextmanager
    def open(self, offset: int) -> Iterator[Stream]:
        import google.auth.exceptions
        import requests
        from google.api_core import exceptions as api

        errors = (api.GoogleAPIError, google.auth.exceptions.TransportError,
                  requests.RequestException, ConnectionError, TimeoutError)
        try:
            if self._blob is None:
                blob = self._client().bucket(self.bucket_name).blob(self.key)
                blob.reload()  # its size and generation
                self._blob = blob
            # A retry must read the generation the first attempt read, not a newer upload.
            reader = self._blob.open("rb", chunk_size=REQUEST_BYTES,
                                     if_generation_match=self._blob.generation)
            reader.seek(offset)
        except errors as e:
            raise self._explain(e) from e

        def chunks() -> Iterator[bytes]:
            try:
                while block := reader.read(CHUNK):
                    yield block
            except errors as e:
                raise self._explain(e) from e

        try:
            yield Stream(chunks=chunks(), total=self._blob.size)
        finally:
            reader.close()
