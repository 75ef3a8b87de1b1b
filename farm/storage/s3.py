"""Object storage in an S3 bucket (AWS, or any S3-compatible server such as SeaweedFS)."""

from __future__ import annotations

import re
from contextlib import contextmanager
from datetime import timezone
from typing import Any, Iterator

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError, ConnectionError as BotoConnectionError, HTTPClientError

from farm.errors import InvalidInput
from farm.storage.base import ObjectMissing, StorageUnavailable, StoredObject, validate_key, validate_prefix

# DNS-style bucket names, as AWS requires for new buckets (3-63 characters).
_BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_MISSING_OBJECT_CODES = {"NoSuchKey", "404", "NotFound"}


def client_config(*, path_style: bool) -> Config:
    """Retries with backoff for throttling and dropped connections, and bounded waits, so a
    stalled S3 endpoint fails a render (which is then retried) instead of hanging a worker."""
    return Config(
        retries={"mode": "standard", "max_attempts": 5},
        connect_timeout=10,
        read_timeout=60,
        # Custom endpoints (SeaweedFS, MinIO, Ceph) rarely have per-bucket DNS names.
        s3={"addressing_style": "path" if path_style else "auto"},
    )


class S3Storage:
    """Each key is the object `<prefix>/<key>` in `bucket`.

    Credentials left out come from boto3's usual chain (environment, shared files, instance
    or pod role). Pass `client` to reuse an existing boto3 S3 client; the connection settings
    are then ignored.
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        client: Any = None,
        *,
        list_page_size: int = 1000,
    ):
        if not isinstance(bucket, str) or not _BUCKET_NAME.fullmatch(bucket) or ".." in bucket:
            raise InvalidInput(
                "bucket",
                f"{bucket!r} is not a valid bucket name: 3 to 63 lowercase letters, digits, "
                "dots or hyphens, starting and ending with a letter or digit",
            )
        prefix = prefix.strip("/")
        if prefix:
            validate_prefix(prefix)
        if bool(access_key_id) != bool(secret_access_key):
            raise InvalidInput(
                "secret_access_key" if access_key_id else "access_key_id",
                "give both an access key id and a secret access key, or neither",
            )
        if not 1 <= list_page_size <= 1000:
            raise InvalidInput("list_page_size", "must be between 1 and 1000")

        self.bucket = bucket
        self.prefix = prefix + "/" if prefix else ""
        self.endpoint_url = endpoint_url or None
        self.list_page_size = list_page_size
        if client is None:
            # A session of our own: boto3's default session is shared module state and is not
            # safe to create clients from in several threads at once.
            client = boto3.session.Session().client(
                "s3",
                endpoint_url=self.endpoint_url,
                region_name=region or None,
                aws_access_key_id=access_key_id or None,
                aws_secret_access_key=secret_access_key or None,
                config=client_config(path_style=self.endpoint_url is not None),
            )
        self.client = client

    def describe(self) -> str:
        where = f"s3://{self.bucket}/{self.prefix}"
        return f"{where} at {self.endpoint_url}" if self.endpoint_url else where

    def __repr__(self) -> str:
        return f"S3Storage({self.describe()!r})"

    def put(self, key: str, data: bytes, content_type: str) -> None:
        object_key = self._object_key(key)
        with self._outage_as_unavailable():
            self.client.put_object(Bucket=self.bucket, Key=object_key, Body=data, ContentType=content_type)

    def get(self, key: str) -> bytes:
        object_key = self._object_key(key)
        with self._outage_as_unavailable():
            try:
                response = self.client.get_object(Bucket=self.bucket, Key=object_key)
            except ClientError as error:
                if _error_code(error) in _MISSING_OBJECT_CODES:
                    raise ObjectMissing(key) from None
                raise
            with response["Body"] as body:
                return body.read()

    @contextmanager
    def _outage_as_unavailable(self) -> Iterator[None]:
        """Connection failures, timeouts and 5xx answers (left after boto3's own retries) mean
        the service is down: StorageUnavailable. Other errors (credentials, a missing bucket)
        stay as they are."""
        try:
            yield
        except (BotoConnectionError, HTTPClientError) as error:
            raise StorageUnavailable(f"{self.describe()} cannot be reached: {error}") from error
        except ClientError as error:
            status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
            if status >= 500:
                raise StorageUnavailable(f"{self.describe()} answered {status} ({_error_code(error)})") from error
            raise

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self._object_key(key))
        except ClientError as error:
            # A HEAD response has no body, so a missing bucket also reads as a bare 404 here;
            # put and get report that case properly.
            if _error_code(error) in _MISSING_OBJECT_CODES:
                return False
            raise
        return True

    def delete(self, key: str) -> None:
        # S3 answers a delete of a missing key with success, which is the contract we want.
        self.client.delete_object(Bucket=self.bucket, Key=self._object_key(key))

    def list_keys(self, prefix: str = "") -> Iterator[str]:
        validate_prefix(prefix)  # here, so a bad prefix fails on the call, not on iteration
        return self._list_keys(self.prefix + prefix)

    def list_objects(self, prefix: str = "") -> Iterator[StoredObject]:
        validate_prefix(prefix)
        return self._list_objects(self.prefix + prefix)

    def _list_keys(self, full_prefix: str) -> Iterator[str]:
        return (stored.key for stored in self._list_objects(full_prefix))

    def _list_objects(self, full_prefix: str) -> Iterator[StoredObject]:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket,
            Prefix=full_prefix,
            PaginationConfig={"PageSize": self.list_page_size},
        )
        for page in pages:
            for item in page.get("Contents", ()):
                key = item["Key"][len(self.prefix):]
                # Folder markers ("photos/") made by consoles and some servers are not objects.
                if not key.endswith("/"):
                    yield StoredObject(key, item["LastModified"].astimezone(timezone.utc))

    def _object_key(self, key: str) -> str:
        return self.prefix + validate_key(key)


def _error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))
