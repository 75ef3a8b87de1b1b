"""Where rendered images live: one small interface, a local folder or S3, picked by a URL.

    storage = open_storage(settings.storage_url, s3_endpoint_url=settings.s3_endpoint_url, ...)
    key = content_key(png_bytes, ".png")
    storage.put(key, png_bytes, "image/png")
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from farm.errors import InvalidInput
from farm.storage.base import (
    ObjectMissing, ObjectStorage, StorageUnavailable, StoredObject, content_key, validate_key,
)
from farm.storage.local import LocalFolderStorage
from farm.storage.s3 import S3Storage

__all__ = [
    "StorageUnavailable",
    "LocalFolderStorage",
    "ObjectMissing",
    "ObjectStorage",
    "S3Storage",
    "StoredObject",
    "content_key",
    "open_storage",
    "validate_key",
]

URL_FIELD = "FARM_STORAGE_URL"
_URL_FORMS = "file:///absolute/folder or s3://bucket/optional/prefix"
# open_storage's keyword arguments and the settings they come from, for error messages.
_S3_FIELDS = {
    "access_key_id": "FARM_S3_ACCESS_KEY_ID",
    "secret_access_key": "FARM_S3_SECRET_ACCESS_KEY",
}


def open_storage(
    storage_url: str,
    *,
    s3_endpoint_url: str | None = None,
    s3_region: str | None = None,
    s3_access_key_id: str | None = None,
    s3_secret_access_key: str | None = None,
) -> ObjectStorage:
    """The storage a URL names. Empty strings count as "not set", as in the settings file.

    The path of a file URL is taken literally, without percent-decoding, because settings
    build it by pasting a folder path into `file://{home}/...`.
    """
    if not isinstance(storage_url, str) or not storage_url:
        raise InvalidInput(URL_FIELD, f"is empty; use {_URL_FORMS}")
    scheme = storage_url.partition(":")[0].lower()
    if scheme == "file":
        return _open_folder(storage_url)
    if scheme == "s3":
        return _open_bucket(
            storage_url,
            endpoint_url=s3_endpoint_url,
            region=s3_region,
            access_key_id=s3_access_key_id,
            secret_access_key=s3_secret_access_key,
        )
    raise InvalidInput(URL_FIELD, f"unsupported storage URL {storage_url!r}; use {_URL_FORMS}")


def _open_folder(storage_url: str) -> LocalFolderStorage:
    rest = storage_url[len("file:"):]
    if not rest.startswith("///"):
        raise InvalidInput(
            URL_FIELD,
            f"{storage_url!r} is not an absolute file URL; write file:///absolute/folder "
            "(three slashes, no host, no relative path)",
        )
    path = rest[2:]
    if path.rstrip("/") == "":
        raise InvalidInput(URL_FIELD, "a file URL must name a folder, not the filesystem root")
    return LocalFolderStorage(Path(path))


def _open_bucket(storage_url: str, **connection: str | None) -> S3Storage:
    # No credentials in the URL: it gets logged and shown; secrets travel in their own settings.
    parts = urlsplit(storage_url)
    if "@" in parts.netloc:
        raise InvalidInput(
            URL_FIELD,
            "an S3 URL must not carry credentials; set FARM_S3_ACCESS_KEY_ID and "
            "FARM_S3_SECRET_ACCESS_KEY instead",
        )
    if parts.query or parts.fragment:
        raise InvalidInput(URL_FIELD, f"an S3 URL takes no '?' or '#' part: {storage_url!r}")
    if not parts.netloc:
        raise InvalidInput(URL_FIELD, f"{storage_url!r} names no bucket; use s3://bucket/prefix")
    try:
        return S3Storage(
            parts.netloc,
            prefix=parts.path,
            **{name: value or None for name, value in connection.items()},
        )
    except InvalidInput as error:
        field = _S3_FIELDS.get(error.field, URL_FIELD)
        raise InvalidInput(field, error.message) from None
