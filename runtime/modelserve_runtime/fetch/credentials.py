"""Credentials and store settings from the Secret the ModelVersion references.

The operator never reads Secrets: it only mounts the one named in `spec.model.secretRef`
into the fetch container, read-only, at SECRET_DIR (one file per key). Each storage kind
reads the keys its ecosystem already uses, so a Secret made for the AWS CLI, gcloud or
`kubectl create secret docker-registry` works unchanged. Without a Secret every client
falls back to its own default chain: environment variables, the pod's service account
(IRSA web identity, GKE workload identity) or instance metadata.
"""

from __future__ import annotations

import os
import pathlib
from dataclasses import dataclass

SECRET_DIR = "/var/run/secrets/modelserve/storage"

# Keys looked up in the Secret, per storage kind.
S3_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
S3_ENDPOINT_KEYS = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
S3_REGION_KEYS = ("AWS_REGION", "AWS_DEFAULT_REGION")
S3_PATH_STYLE_KEY = "AWS_S3_FORCE_PATH_STYLE"
GCS_KEY = "service-account.json"
DOCKER_CONFIG_KEY = ".dockerconfigjson"
OCI_USER_KEYS = ("username", "password")


def secret_dir() -> pathlib.Path:
    """Where the Secret is mounted; MODELSERVE_STORAGE_SECRET_DIR moves it (tests, local runs)."""
    return pathlib.Path(os.environ.get("MODELSERVE_STORAGE_SECRET_DIR", SECRET_DIR))


def _read(directory: pathlib.Path, key: str) -> str | None:
    path = directory / key
    try:
        return path.read_text().strip() or None
    except FileNotFoundError:
        return None


def _first(directory: pathlib.Path, keys: tuple[str, ...]) -> str | None:
    return next((v for k in keys if (v := _read(directory, k)) is not None), None)


@dataclass(frozen=True)
class S3Settings:
    """What boto3 needs beyond the bucket and key. None means "the client's default"."""

    access_key_id: str | None = None
    secret_access_key: str | None = None
    session_token: str | None = None
    endpoint: str | None = None
    region: str | None = None
    force_path_style: bool = False

    @property
    def source(self) -> str:
        """Where the keys came from, for error messages (never the keys themselves)."""
        if self.access_key_id:
            return f"the Secret mounted at {secret_dir()}"
        return "the default AWS chain (environment, service account web identity, metadata)"


def s3_settings(endpoint: str | None = None, region: str | None = None,
                force_path_style: bool | None = None) -> S3Settings:
    """Explicit values (from the ModelVersion) win over the Secret's."""
    directory = secret_dir()
    key_id, secret, token = (_read(directory, k) for k in S3_KEYS)
    if bool(key_id) != bool(secret):
        from .errors import FetchError

        raise FetchError(
            f"the storage Secret (mounted at {directory}) has only one of AWS_ACCESS_KEY_ID and "
            f"AWS_SECRET_ACCESS_KEY: add the other key to the Secret named in "
            f"spec.model.secretRef"
        )
    style = _read(directory, S3_PATH_STYLE_KEY)
    return S3Settings(
        access_key_id=key_id,
        secret_access_key=secret,
        session_token=token,
        endpoint=endpoint or _first(directory, S3_ENDPOINT_KEYS),
        region=region or _first(directory, S3_REGION_KEYS),
        force_path_style=(force_path_style if force_path_style is not None
                          else (style or "").lower() in ("1", "true", "yes")),
    )


def gcs_service_account_file() -> pathlib.Path | None:
    """A service-account key from the Secret, else None (workload identity / ADC)."""
    path = secret_dir() / GCS_KEY
    return path if path.is_file() else None


@dataclass(frozen=True)
class RegistryAuth:
    """Registry credentials: a docker config file, or a user name and password."""

    docker_config: pathlib.Path | None = None
    username: str | None = None
    password: str | None = None


def registry_auth() -> RegistryAuth:
    directory = secret_dir()
    config = directory / DOCKER_CONFIG_KEY
    user, password = (_read(directory, k) for k in OCI_USER_KEYS)
    return RegistryAuth(docker_config=config if config.is_file() else None,
                        username=user, password=password)
