"""oci:// through oras-py: a model pushed to an OCI registry the ORAS way.

`oras push registry/models/resnet50:v3 model.onnx` makes a manifest whose one layer is the
file, titled by the `org.opencontainers.image.title` annotation. The layer's own sha256
digest is checked while streaming, as well as spec.model.sha256 when it is given.
Credentials: a `kubernetes.io/dockerconfigjson` Secret (`.dockerconfigjson` key) or
`username`/`password` keys in the Secret named by spec.model.secretRef.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from .credentials import RegistryAuth
from .download import CHUNK, Stream
from .errors import FetchError, TransientError
from .uri import ModelUri

TITLE = "org.opencontainers.image.title"
MODEL_SUFFIXES = (".onnx", ".pt", ".pth", ".plan", ".engine")
INDEX_TYPES = ("application/vnd.oci.image.index.v1+json",
               "application/vnd.docker.distribution.manifest.list.v2+json")


class OciSource:
    resumable = False  # a retry fetches the blob again; registries redirect blob reads

    def __init__(self, uri: ModelUri, auth: RegistryAuth, plain_http: bool = False) -> None:
        import oras.container

        self.uri = uri.raw
        separator = "@" if uri.reference.startswith("sha256:") else ":"
        self.container = oras.container.Container(
            f"{uri.repository}{separator}{uri.reference}", registry=uri.registry)
        self.auth = auth
        self.plain_http = plain_http
        self._registry = None
        self._layer: dict | None = None

    @property
    def registry(self):
        """oras's Registry, with the auth backend the registry's challenge asks for.

        oras's token backend answers Bearer challenges (Docker Hub, GHCR, Harbor, ECR);
        a registry with plain Basic auth (distribution with htpasswd) needs its basic
        backend, so one unauthenticated GET /v2/ (the distribution spec's version check)
        reads which scheme the registry wants.
        """
        if self._registry is None:
            import oras.provider
            import requests

            prefix = "http" if self.plain_http else "https"
            try:
                ping = requests.get(f"{prefix}://{self.container.registry}/v2/", timeout=30)
            except requests.RequestException as e:
                raise TransientError(f"{self.uri}: {type(e).__name__}: {e}") from e
            scheme = ping.headers.get("WWW-Authenticate", "").split(" ", 1)[0].lower()
            registry = oras.provider.Registry(
                hostname=self.container.registry, insecure=self.plain_http,
                auth_backend="basic" if scheme == "basic" else "token")
            if self.auth.docker_config is not None:
                registry.auth.load_configs(self.container,
                                           configs=[str(self.auth.docker_config)])
            elif self.auth.username and self.auth.password:
                registry.auth.set_basic_auth(self.auth.username, self.auth.password)
            else:
                registry.auth.load_configs(self.container)  # ~/.docker/config.json, if any
            # oras's basic backend fails with AttributeError when it has no credentials
            # (it has no public "have credentials" query): say what is missing instead.
            if scheme == "basic" and not getattr(registry.auth, "_basic_auth", None):
                raise self._denied("the registry asks for a user name and password; none "
                                   "were found for it")
            self._registry = registry
        return self._registry

    def _request(self, url: str, headers: dict, stream: bool = False):
        import requests

        # oras's do_request wraps every failure, denials included, in its own retry loop
        # of about two minutes; call the undecorated method and retry in download.py, which
        # knows a 403 from a dropped connection.
        request = type(self.registry).do_request.__wrapped__
        try:
            response = request(self.registry, url, "GET", headers=headers, stream=stream)
        except ValueError as e:  # oras: "Cannot respond to request for authentication."
            raise self._denied(str(e)) from e
        except requests.RequestException as e:
            raise TransientError(f"{self.uri}: {type(e).__name__}: {e}") from e
        status = response.status_code
        if status in (401, 403):
            raise self._denied(f"HTTP {status}")
        if status == 404:
            raise FetchError(f"{self.uri} not found (HTTP 404 for {url}): check the registry, "
                             f"repository and tag in spec.model.uri")
        if status == 429 or status >= 500:
            raise TransientError(f"{self.uri}: HTTP {status} from the registry")
        if status >= 400:
            raise FetchError(f"{self.uri}: HTTP {status} from the registry: {response.text[:200]}")
        return response

    def _denied(self, why: str) -> FetchError:
        return FetchError(
            f"access denied to {self.uri} ({why}): check the registry credentials in the "
            f"Secret named by spec.model.secretRef (.dockerconfigjson, or username and "
            f"password) and that they may pull {self.container.api_prefix}"
        )

    def layer(self) -> dict:
        """The manifest's model layer: the only one, or the only one with a model suffix."""
        if self._layer is not None:
            return self._layer
        import oras.defaults

        url = f"{self.registry.prefix}://{self.container.manifest_url()}"
        accept = ", ".join(oras.defaults.default_manifest_accepted_media_types)
        manifest = self._request(url, {"Accept": accept}).json()
        if manifest.get("mediaType") in INDEX_TYPES:
            raise FetchError(f"{self.uri} is an image index (several platforms), not an ORAS "
                             f"artifact: push the model with `oras push`")
        layers = manifest.get("layers") or []
        if len(layers) != 1:
            titled = [la for la in layers
                      if (la.get("annotations") or {}).get(TITLE, "").endswith(MODEL_SUFFIXES)]
            if len(titled) != 1:
                names = [(la.get("annotations") or {}).get(TITLE, la.get("digest"))
                         for la in layers]
                raise FetchError(
                    f"{self.uri} has {len(layers)} layers ({', '.join(map(str, names))}); "
                    f"expected one model file (.onnx, .pt, .plan): push the model alone"
                )
            layers = titled
        self._layer = layers[0]
        return self._layer

    def expected_sha256(self) -> str | None:
        digest = self.layer().get("digest", "")
        return digest.removeprefix("sha256:") if digest.startswith("sha256:") else None

    @contextlib.contextmanager
    def open(self, offset: int) -> Iterator[Stream]:
        import requests

        layer = self.layer()
        url = f"{self.registry.prefix}://{self.container.get_blob_url(layer['digest'])}"
        response = self._request(url, {}, stream=True)

        def chunks() -> Iterator[bytes]:
            try:
                yield from response.iter_content(chunk_size=CHUNK)
            except requests.RequestException as e:
                raise TransientError(f"{self.uri}: {type(e).__name__}: {e}") from e

        try:
            yield Stream(chunks=chunks(), total=layer.get("size"))
        finally:
            response.close()
