"""The object storage interface, key rules and content-derived keys.

Keys are `/`-separated paths such as `images/ab/cd/<sha256>.png`. The same rules hold for
every backend, so a key that works on a local folder works on S3 and the other way round.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import hashlib
import re
from typing import Iterator, Protocol, runtime_checkable

from farm.errors import InvalidInput

# S3 allows keys up to 1024 bytes of UTF-8; we hold local folders to the same limit.
MAX_KEY_BYTES = 1024
_SUFFIX = re.compile(r"(\.[A-Za-z0-9]+)*")


class ObjectMissing(KeyError):
    """No object is stored under `key`."""

    def __init__(self, key: str):
        super().__init__(key)
        self.key = key

    def __str__(self) -> str:
        return f"no object stored under key {self.key!r}"


class StorageUnavailable(Exception):
    """The object store cannot be reached or answers with a server error (after the client's own
    retries): an outage of the service, not a fault of the data or of one worker. Renders that
    meet it wait and try again without spending attempts."""


@runtime_checkable
class ObjectStorage(Protocol):
    """A flat store of immutable-looking blobs addressed by `/`-separated keys."""

    def put(self, key: str, data: bytes, content_type: str) -> None:
        """Store `data` under `key`, replacing what was there; nobody reads half a write."""

    def get(self, key: str) -> bytes:
        """Return the bytes under `key`; raise ObjectMissing if there are none."""

    def exists(self, key: str) -> bool:
        """Whether an object is stored under `key`."""

    def delete(self, key: str) -> None:
        """Remove the object under `key`; deleting a missing object is not an error."""

    def list_keys(self, prefix: str = "") -> Iterator[str]:
        """Yield each key that starts with `prefix` once. The prefix is a plain string prefix:
        "images/a" matches "images/ab/..." and "images/ac/...".

        The order is not part of the contract: AWS lists keys in byte order, but SeaweedFS,
        for one, lists "images/..." before "images-old/..." (folder by folder).
        """

    def list_objects(self, prefix: str = "") -> Iterator["StoredObject"]:
        """Like list_keys, with each object's last-modified time (for the orphan sweep)."""

    def describe(self) -> str:
        """Where the objects live, for logs and the dashboard; never includes credentials."""


@dataclass(frozen=True)
class StoredObject:
    key: str
    modified_at: datetime  # timezone-aware UTC


def _check_characters(value: str, field: str, what: str) -> None:
    if not isinstance(value, str):
        raise InvalidInput(field, f"{what} must be a string, not {type(value).__name__}")
    if len(value.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise InvalidInput(field, f"{what} is longer than {MAX_KEY_BYTES} bytes")
    if value.startswith("/"):
        raise InvalidInput(field, f"{what} {value!r} must be relative, not start with '/'")
    if "\\" in value:
        raise InvalidInput(field, f"{what} {value!r} must use '/' between parts, not '\\'")
    if any(ord(char) < 32 or ord(char) == 127 for char in value):
        raise InvalidInput(field, f"{what} {value!r} contains a control character")


def _check_part(part: str, value: str, field: str, what: str) -> None:
    if part == "":
        raise InvalidInput(field, f"{what} {value!r} has an empty part ('//' or a '/' at an end)")
    if part in (".", ".."):
        raise InvalidInput(field, f"{what} {value!r} must not contain '.' or '..' parts")
    if part.startswith("."):
        # Names starting with a dot are reserved: the local folder writes its temporary files
        # under such names, and listing must be able to tell them from objects.
        raise InvalidInput(field, f"{what} {value!r} has a part starting with '.' (reserved)")


def validate_key(key: str, field: str = "key") -> str:
    """Return `key` unchanged if it is an acceptable object key, else raise InvalidInput."""
    _check_characters(key, field, "key")
    if key == "":
        raise InvalidInput(field, "key must not be empty")
    for part in key.split("/"):
        _check_part(part, key, field, "key")
    return key


def validate_prefix(prefix: str, field: str = "prefix") -> str:
    """Like validate_key, but "" is allowed and so is a trailing '/' ("images/")."""
    _check_characters(prefix, field, "prefix")
    parts = prefix.split("/")
    # The last part may be empty ("images/") or partial ("images/a"); a partial "." or ".."
    # could only match reserved names, so it is refused like any other part.
    for part in parts[:-1]:
        _check_part(part, prefix, field, "prefix")
    if parts[-1]:
        _check_part(parts[-1], prefix, field, "prefix")
    return prefix


def content_key(data: bytes, suffix: str, namespace: str = "images") -> str:
    """The key for `data`: `<namespace>/<h[0:2]>/<h[2:4]>/<h>.<suffix>` with h its SHA-256.

    Identical bytes always get the same key, so writing them twice (a retried render, a
    redelivered message) lands on one object. `suffix` may be given as ".png" or "png".
    """
    if suffix and not suffix.startswith("."):
        suffix = "." + suffix
    if not _SUFFIX.fullmatch(suffix):
        raise InvalidInput("suffix", f"{suffix!r} is not a file suffix like '.png'")
    validate_key(namespace, field="namespace")
    digest = hashlib.sha256(data).hexdigest()
    return f"{namespace}/{digest[:2]}/{digest[2:4]}/{digest}{suffix}"
