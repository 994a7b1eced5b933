"""Model URI parsing: every scheme the CRD accepts, and a message naming the field otherwise."""

import pytest

from modelserve_runtime.fetch.errors import FetchError
from modelserve_runtime.fetch.uri import parse

GOOD = {
    "s3 key with folders": ("s3://models/resnet50/v3/model.onnx",
                            {"scheme": "s3", "bucket": "models", "key": "resnet50/v3/model.onnx"}),
    "gs": ("gs://team-models/bert.pt", {"scheme": "gs", "bucket": "team-models",
                                         "key": "bert.pt"}),
    "oci with port and tag": ("oci://registry.local:5000/models/resnet50:v3",
                              {"registry": "registry.local:5000",
                               "repository": "models/resnet50", "reference": "v3"}),
    "oci without tag is latest": ("oci://ghcr.io/acme/resnet50",
                                  {"repository": "acme/resnet50", "reference": "latest"}),
    "oci by digest": ("oci://ghcr.io/acme/resnet50@sha256:" + "a" * 64,
                      {"reference": "sha256:" + "a" * 64}),
    "oci tag and digest: digest wins": ("oci://ghcr.io/acme/m:v1@sha256:" + "b" * 64,
                                        {"reference": "sha256:" + "b" * 64}),
    "pvc": ("pvc://models-claim/resnet50/model.onnx",
            {"scheme": "pvc", "bucket": "models-claim", "path": "resnet50/model.onnx"}),
    "https": ("https://example.com/m.onnx", {"scheme": "https"}),
    "file": ("file:///data/m.onnx", {"scheme": "file", "path": "/data/m.onnx"}),
}


@pytest.mark.parametrize("uri,parts", GOOD.values(), ids=GOOD.keys())
def test_parses(uri, parts):
    parsed = parse(uri)
    assert parsed.raw == uri
    for name, value in parts.items():
        assert getattr(parsed, name) == value


BAD = {
    "unknown scheme": ("ftp://host/m.onnx", "scheme must be one of"),
    "no scheme": ("models/m.onnx", "scheme must be one of"),
    "s3 bucket only": ("s3://models", "s3://bucket/path/to/model.file"),
    "s3 folder": ("s3://models/resnet/", "one object, not a folder"),
    "gs empty key": ("gs://bucket/", "gs://bucket/path"),
    "oci upper-case repository": ("oci://ghcr.io/Acme/M:v1", "lower-case repository"),
    "oci no repository": ("oci://ghcr.io", "oci://registry"),
    "nothing after scheme": ("https://", "nothing follows"),
}


@pytest.mark.parametrize("uri,message", BAD.values(), ids=BAD.keys())
def test_rejects_with_field_name(uri, message):
    with pytest.raises(FetchError, match=r"spec\.model\.uri") as info:
        parse(uri)
    assert message in str(info.value)
