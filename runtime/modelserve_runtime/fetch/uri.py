"""Model URIs, split into the parts each storage client needs.

One parser for every scheme the ModelVersion CRD accepts, so a typo is reported with the
field name before any client is built.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import FetchError

SCHEMES = ("s3", "gs", "oci", "https", "http", "file", "pvc")

# registry[:port]/repository[:tag][@sha256:hex]; the repository may have several path parts.
_OCI = re.compile(
    r"^(?P<registry>[^/]+)/(?P<repository>[a-z0-9]+(?:[._/-][a-z0-9]+)*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?"
    r"(?:@(?P<digest>sha256:[a-f0-9]{64}))?$"
)


@dataclass(frozen=True)
class ModelUri:
    """A parsed `spec.model.uri`.

    `bucket`/`key` for s3 and gs; `registry`/`repository`/`reference` for oci; `path` for
    file and pvc (the claim is `bucket`); `raw` always keeps the text for messages.
    """

    raw: str
    scheme: str
    bucket: str = ""
    key: str = ""
    registry: str = ""
    repository: str = ""
    reference: str = ""
    path: str = ""


def _bad(uri: str, why: str) -> FetchError:
    return FetchError(f"spec.model.uri {uri!r}: {why}")


def parse(uri: str) -> ModelUri:
    """Split a model URI; a FetchError names what is wrong with it."""
    scheme, sep, rest = uri.partition("://")
    if not sep or scheme not in SCHEMES:
        raise _bad(uri, f"the scheme must be one of {', '.join(s + '://' for s in SCHEMES)}")
    if not rest:
        raise _bad(uri, "nothing follows the scheme")
    if scheme in ("s3", "gs"):
        bucket, _, key = rest.partition("/")
        if not bucket or not key or key.endswith("/"):
            raise _bad(uri, f"expected {scheme}://bucket/path/to/model.file (one object, not a "
                            f"folder)")
        return ModelUri(raw=uri, scheme=scheme, bucket=bucket, key=key)
    if scheme == "oci":
        match = _OCI.match(rest)
        if not match:
            raise _bad(uri, "expected oci://registry[:port]/repository[:tag][@sha256:digest] "
                            "(lower-case repository)")
        reference = match["digest"] or match["tag"] or "latest"
        return ModelUri(raw=uri, scheme=scheme, registry=match["registry"],
                        repository=match["repository"], reference=reference)
    if scheme == "pvc":
        claim, _, path = rest.partition("/")
        return ModelUri(raw=uri, scheme=scheme, bucket=claim, path=path.strip("/"))
    if scheme == "file":
        return ModelUri(raw=uri, scheme=scheme, path=rest)
    return ModelUri(raw=uri, scheme=scheme)
