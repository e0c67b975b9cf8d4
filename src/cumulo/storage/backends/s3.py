"""Objects in an S3 bucket (or any S3-compatible service): ``s3://bucket/prefix/buckets/...``.

Uploads are spooled to a local file first and then sent with a multipart upload, which S3 makes
visible only when it completes: a cut-off upload never shows up half-written.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, cast

from cumulo.config import S3Settings
from cumulo.errors import Invalid, Unavailable
from cumulo.storage.backends.blob import Blob

__all__ = ["S3Backend"]


def _import_boto3() -> Any:
    try:
        import boto3
    except ModuleNotFoundError as exc:
        raise Invalid("S3 storage needs boto3: pip install 'cumulo[s3]'") from exc
    return boto3


class S3Backend:
    kind = "s3"

    def __init__(self, url: str, settings: S3Settings, *, spool: Path) -> None:
        rest = url.removeprefix("s3://")
        self.bucket, _, prefix = rest.partition("/")
        if not self.bucket:
            raise Invalid(f"storage URL {url!r} names no bucket; use s3://bucket/prefix")
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.url = url
        self._spool = spool
        self._settings = settings
        boto3 = _import_boto3()
        from botocore.config import Config

        self._client = boto3.client(
            "s3",
            endpoint_url=settings.endpoint_url,
            aws_access_key_id=settings.access_key_id,
            aws_secret_access_key=settings.secret_access_key,
            region_name=settings.region,
            config=Config(
                connect_timeout=5, read_timeout=60, retries={"max_attempts": 3},
                max_pool_connections=32,
            ),
        )
        from boto3.s3.transfer import TransferConfig

        self._transfer = TransferConfig(
            multipart_threshold=64 * 2**20, multipart_chunksize=64 * 2**20, max_concurrency=4
        )

    def _key(self, key: str) -> str:
        return self.prefix + key

    def check(self) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        where = f"{self.url}" + (f" at {self._settings.endpoint_url}"
                                 if self._settings.endpoint_url else "")
        try:
            self._client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            hint = "create it first" if code in ("404", "NoSuchBucket") else "check the credentials"
            raise Unavailable(f"cannot use the storage {where}: {code or exc} ({hint})") from exc
        except BotoCoreError as exc:
            raise Unavailable(f"cannot reach the storage {where}: {exc}") from exc
        self._spool.mkdir(parents=True, exist_ok=True)

    def spool_dir(self) -> Path:
        return self._spool

    def commit(self, tmp: Path, key: str) -> None:
        try:
            self._client.upload_file(str(tmp), self.bucket, self._key(key),
                                     Config=self._transfer)
        finally:
            tmp.unlink(missing_ok=True)

    def open(self, key: str, *, offset: int = 0) -> BinaryIO:
        from botocore.exceptions import ClientError

        extra = {"Range": f"bytes={offset}-"} if offset else {}
        try:
            response = self._client.get_object(Bucket=self.bucket, Key=self._key(key), **extra)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if error.get("Code") == "InvalidRange" or status == 416:
                # A range from the end or past it: S3 refuses it, a file reads nothing.
                return io.BytesIO(b"")
            if error.get("Code") in ("NoSuchKey", "404") or status == 404:
                raise FileNotFoundError(f"no blob {key!r} in {self.url}") from exc
            raise
        return cast(BinaryIO, response["Body"])

    def delete(self, key: str) -> None:
        self._client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def local_path(self, key: str) -> Path | None:
        return None

    def arrow_path(self, key: str) -> tuple[Any, str]:
        from pyarrow import fs

        s = self._settings
        endpoint = s.endpoint_url or ""
        filesystem = fs.S3FileSystem(
            access_key=s.access_key_id, secret_key=s.secret_access_key, region=s.region,
            endpoint_override=endpoint.split("://", 1)[-1] or None,
            scheme="http" if endpoint.startswith("http://") else "https",
        )
        return filesystem, f"{self.bucket}/{self._key(key)}"

    def table_uri(self, key: str) -> tuple[str, dict[str, str] | None]:
        s = self._settings
        options = {"AWS_REGION": s.region}
        if s.endpoint_url:
            options["AWS_ENDPOINT_URL"] = s.endpoint_url
            options["AWS_ALLOW_HTTP"] = str(s.endpoint_url.startswith("http://")).lower()
        if s.access_key_id and s.secret_access_key:
            options["AWS_ACCESS_KEY_ID"] = s.access_key_id
            options["AWS_SECRET_ACCESS_KEY"] = s.secret_access_key
        # Writes to one table are serialized by the control plane, which is the one writer.
        options["AWS_S3_ALLOW_UNSAFE_RENAME"] = "true"
        return f"s3://{self.bucket}/{self._key(key)}", options

    def walk(self, prefix: str) -> Iterator[Blob]:
        from botocore.exceptions import BotoCoreError, ClientError

        cut = len(self._key(""))
        pages = self._client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self._key(prefix))
        try:
            for page in pages:
                for item in page.get("Contents", []):
                    key: str = item["Key"]
                    if key.endswith("/"):
                        continue  # a folder marker some tools write: no blob
                    modified = item["LastModified"]
                    yield Blob(key[cut:], int(item["Size"]),
                               int(modified.timestamp()) * 10**9 + modified.microsecond * 1000,
                               str(item.get("ETag", "")).strip('"') or None)
        except (BotoCoreError, ClientError) as exc:
            raise Unavailable(f"cannot list the storage {self.url}: {exc} (check the [s3] "
                              "settings: endpoint, keys, region)") from exc

    def delete_prefix(self, prefix: str) -> None:
        paginator = self._client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key(prefix)):
            keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
            if keys:
                self._client.delete_objects(Bucket=self.bucket, Delete={"Objects": keys})
