"""Credential lookup: keys from the mounted Secret, explicit spec values first."""

import pytest

from modelserve_runtime.fetch import credentials
from modelserve_runtime.fetch.errors import FetchError


@pytest.fixture
def secret(tmp_path, monkeypatch):
    monkeypatch.setenv("MODELSERVE_STORAGE_SECRET_DIR", str(tmp_path))

    def write(**keys):
        for name, value in keys.items():
            (tmp_path / name).write_text(value)
        return tmp_path

    return write


def test_no_secret_means_the_default_chain(secret):
    settings = credentials.s3_settings()
    assert settings.access_key_id is None and settings.endpoint is None
    assert "default AWS chain" in settings.source
    assert credentials.gcs_service_account_file() is None
    assert credentials.registry_auth() == credentials.RegistryAuth()


def test_s3_keys_endpoint_region_and_path_style_from_the_secret(secret):
    secret(AWS_ACCESS_KEY_ID="AKID\n", AWS_SECRET_ACCESS_KEY="s3cr3t",
           AWS_ENDPOINT_URL="http://store:8333", AWS_DEFAULT_REGION="eu-west-1",
           AWS_S3_FORCE_PATH_STYLE="true")
    s = credentials.s3_settings()
    assert (s.access_key_id, s.secret_access_key, s.session_token) == ("AKID", "s3cr3t", None)
    assert (s.endpoint, s.region, s.force_path_style) == ("http://store:8333", "eu-west-1", True)
    assert "Secret" in s.source and "s3cr3t" not in s.source


def test_s3_specific_keys_win_over_generic_ones(secret):
    secret(AWS_ENDPOINT_URL="http://generic", AWS_ENDPOINT_URL_S3="http://s3-only",
           AWS_REGION="us-west-2", AWS_DEFAULT_REGION="eu-west-1")
    s = credentials.s3_settings()
    assert (s.endpoint, s.region) == ("http://s3-only", "us-west-2")


def test_the_model_version_wins_over_the_secret(secret):
    secret(AWS_ENDPOINT_URL="http://from-secret", AWS_REGION="eu-west-1",
           AWS_S3_FORCE_PATH_STYLE="true")
    s = credentials.s3_settings("http://from-spec", "ap-south-1", False)
    assert (s.endpoint, s.region, s.force_path_style) == ("http://from-spec", "ap-south-1", False)


def test_half_a_key_pair_names_the_missing_key(secret):
    secret(AWS_ACCESS_KEY_ID="AKID")
    with pytest.raises(FetchError, match=r"AWS_SECRET_ACCESS_KEY.*spec\.model\.secretRef"):
        credentials.s3_settings()


def test_gcs_key_file_and_registry_auth(secret):
    directory = secret(**{"service-account.json": "{}", ".dockerconfigjson": "{}"})
    assert credentials.gcs_service_account_file() == directory / "service-account.json"
    assert credentials.registry_auth().docker_config == directory / ".dockerconfigjson"


def test_registry_user_and_password(secret):
    secret(username="robot", password="pw")
    auth = credentials.registry_auth()
    assert (auth.username, auth.password, auth.docker_config) == ("robot", "pw", None)
