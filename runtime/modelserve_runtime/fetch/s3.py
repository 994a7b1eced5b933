"""s3:// through botocore (boto3's core): AWS S3 and any S3-compatible store (SeaweedFS,
Ceph RGW, R2 …).

Endpoint, region and path-style addressing come from the ModelVersion (`spec.model.s3`)
or the referenced Secret; credentials from the Secret or boto3's default chain, which
includes IRSA's web identity token on a pod's service account.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from .credentials import S3Settings
from .download import CHUNK, Stream
from .errors import FetchError, TransientError
from .uri import ModelUri

DENIED = {"AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch",
          "ExpiredToken", "InvalidToken", "AllAccessDisabled", "AuthorizationHeaderMalformed"}
MISSING = {"NoSuchKey", "NoSuchBucket", "404", "NotFound"}


class S3Source:
    resumable = True

    def __init__(self, uri: ModelUri, settings: S3Settings) -> None:
        # botocore, boto3's core, directly: `import boto3` also imports s3transfer (the
        # managed-transfer engine we do not use), 60% of the import time and paid at every
        # pod start (hack/bench-fetch). Same credential chain, IRSA's web identity included.
        import botocore.session
        from botocore.config import Config

        self.uri = uri.raw
        self.bucket, self.key = uri.bucket, uri.key
        self.settings = settings
        config = Config(
            # botocore's own retries cover the request; download.py retries the stream.
            retries={"max_attempts": 3, "mode": "standard"},
            s3={"addressing_style": "path" if settings.force_path_style else "auto"},
            connect_timeout=10,
            read_timeout=60,
            # botocore would also check the object's CRC32 while streaming: half the
            # client's CPU (measured, hack/bench-fetch) for a check the SHA-256 subsumes.
            response_checksum_validation="when_required",
        )
        self.client = botocore.session.get_session().create_client(
            "s3",
            endpoint_url=settings.endpoint,
            region_name=settings.region,
            aws_access_key_id=settings.access_key_id,
            aws_secret_access_key=settings.secret_access_key,
            aws_session_token=settings.session_token,
            config=config,
        )

    def expected_sha256(self) -> str | None:
        return None

    def _explain(self, e: Exception) -> Exception:
        from botocore.exceptions import (
            ClientError,
            NoCredentialsError,
            PartialCredentialsError,
        )

        where = f" at {self.settings.endpoint}" if self.settings.endpoint else ""
        if isinstance(e, NoCredentialsError | PartialCredentialsError):
            return FetchError(
                f"no credentials for {self.uri}: name a Secret with AWS_ACCESS_KEY_ID and "
                f"AWS_SECRET_ACCESS_KEY in spec.model.secretRef, or give the pod a service "
                f"account with an IAM role (spec.pod.serviceAccountName)"
            )
        if isinstance(e, ClientError):
            code = str(e.response.get("Error", {}).get("Code", ""))
            status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code in DENIED or status == 403:
                return FetchError(
                    f"access denied to {self.uri}{where} ({code}): check the keys from "
                    f"{self.settings.source} and that they may s3:GetObject on bucket "
                    f"{self.bucket!r}"
                )
            if code in MISSING or status == 404:
                return FetchError(
                    f"{self.uri} not found{where} ({code}): check the bucket and key in "
                    f"spec.model.uri (and spec.model.s3.endpoint/region for non-AWS stores)"
                )
            throttled = code in ("SlowDown", "RequestTimeout")
            if throttled or (status and (status >= 500 or status == 429)):
                return TransientError(f"{self.uri}: {code} (HTTP {status})")
            return FetchError(f"{self.uri}{where}: {code} (HTTP {status}): {e}")
        return TransientError(f"{self.uri}: {type(e).__name__}: {e}")

    @contextlib.contextmanager
    def open(self, offset: int) -> Iterator[Stream]:
        from botocore.exceptions import BotoCoreError, ClientError

        errors = (BotoCoreError, ClientError, ConnectionError, TimeoutError)
        try:
            kwargs = {"Range": f"bytes={offset}-"} if offset else {}
            response = self.client.get_object(Bucket=self.bucket, Key=self.key, **kwargs)
        except errors as e:
            raise self._explain(e) from e
        body = response["Body"]
        length = int(response["ContentLength"])
        total = offset + length

        def chunks() -> Iterator[bytes]:
            try:
                yield from body.iter_chunks(CHUNK)
            except errors as e:
                raise self._explain(e) from e

        try:
            yield Stream(chunks=chunks(), total=total)
        finally:
            body.close()
