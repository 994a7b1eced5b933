"""A real S3-compatible store for tests and hack/bench-fetch: SeaweedFS's `weed mini`.

One process runs SeaweedFS's master, volume server, filer and S3 gateway; data lives in a
temporary directory. Identities (access keys and what each may do) come from an S3 config
file, the way SeaweedFS is configured in production, so a wrong key or a key without read
rights gets the store's own 403, not a simulated one.
"""

from __future__ import annotations

import json
import pathlib

from e2e.host_process import Process, binary, free_port

BUCKET = "models"
# name: (access key, secret key, SeaweedFS actions)
IDENTITIES = {
    "admin": ("ms-admin", "ms-admin-secret", ["Admin", "Read", "Write", "List", "Tagging"]),
    "reader": ("ms-reader", "ms-reader-secret", [f"Read:{BUCKET}", f"List:{BUCKET}"]),
    # A valid key that may read another bucket only: AccessDenied on ours.
    "outsider": ("ms-outsider", "ms-outsider-secret", ["Read:elsewhere"]),
}


class SeaweedS3:
    """`weed mini` on free ports; `endpoint` is the S3 gateway's URL."""

    def __init__(self, workdir: pathlib.Path, bind: str = "127.0.0.1",
                 advertise: str = "127.0.0.1") -> None:
        self.workdir = workdir
        self.bind = bind
        self.advertise = advertise  # the address clients (and pods) use
        self.port = free_port()
        self.process: Process | None = None

    @property
    def endpoint(self) -> str:
        return f"http://{self.advertise}:{self.port}"

    def start(self, timeout: float = 90) -> SeaweedS3:
        weed = binary("weed", "hack/install-tools (it builds SeaweedFS)")
        data = self.workdir / "data"
        data.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "s3.json"
        config.write_text(json.dumps({"identities": [
            {"name": name, "credentials": [{"accessKey": key, "secretKey": secret}],
             "actions": actions}
            for name, (key, secret, actions) in IDENTITIES.items()
        ]}))
        ports = {flag: str(free_port()) for flag in (
            "master.port", "master.port.grpc", "volume.port", "volume.port.grpc",
            "filer.port", "filer.port.grpc")}
        args = [str(weed), "mini", f"-dir={data}", f"-ip={self.advertise}",
                f"-ip.bind={self.bind}", f"-s3.port={self.port}", f"-s3.config={config}",
                "-s3.port.iceberg=0", "-s3.port.lance=0", "-webdav=false", "-admin.ui=false",
                *(f"-{flag}={port}" for flag, port in ports.items())]
        self.process = Process("weed", args, self.workdir, cwd=self.workdir)

        def bucket() -> None:
            try:
                self.client().create_bucket(Bucket=BUCKET)
            except Exception as e:  # the gateway answers before the filer is ready
                if "BucketAlreadyOwnedByYou" not in str(e) and "BucketAlreadyExists" not in str(e):
                    raise

        self.process.wait_ready(bucket, timeout, interval=0.5)
        return self

    def client(self, identity: str = "admin"):
        import boto3
        from botocore.config import Config

        key, secret, _ = IDENTITIES[identity]
        return boto3.session.Session().client(
            "s3", endpoint_url=self.endpoint, region_name="us-east-1",
            aws_access_key_id=key, aws_secret_access_key=secret,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))

    def put(self, key: str, data: bytes | pathlib.Path) -> str:
        """Upload an object into BUCKET; returns its s3:// URI."""
        client = self.client()
        if isinstance(data, pathlib.Path):
            client.upload_file(str(data), BUCKET, key)
        else:
            client.put_object(Bucket=BUCKET, Key=key, Body=data)
        return f"s3://{BUCKET}/{key}"

    def secret_dir(self, path: pathlib.Path, identity: str = "reader", *,
                   with_endpoint: bool = True) -> pathlib.Path:
        """A directory laid out like the Kubernetes Secret a user would reference."""
        key, secret, _ = IDENTITIES.get(identity, (identity, "not-a-secret", []))
        path.mkdir(parents=True, exist_ok=True)
        files = {"AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": secret,
                 "AWS_REGION": "us-east-1", "AWS_S3_FORCE_PATH_STYLE": "true"}
        if with_endpoint:
            files["AWS_ENDPOINT_URL"] = self.endpoint
        for name, value in files.items():
            (path / name).write_text(value)
        return path

    def logs(self) -> str:
        return self.process.log_tail(100_000) if self.process else ""

    def stop(self) -> None:
        if self.process:
            self.process.stop()
