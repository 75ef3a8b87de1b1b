"""Object storage in a local folder: the embedded default, and handy in tests."""

from __future__ import annotations

import os
import secrets
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from farm.errors import InvalidInput
from farm.storage.base import ObjectMissing, StoredObject, validate_key, validate_prefix


class LocalFolderStorage:
    """Each key is a file under `root`; `images/ab/x.png` is `root/images/ab/x.png`.

    Writes go to a temporary file in the destination folder, are fsynced and then renamed
    over the destination, so a reader sees the old object or the new one, never a torn one.
    The content type is not kept: a file has nowhere to put it.
    """

    def __init__(self, root: Path | str):
        self.root = Path(root).absolute()
        self._real_root = self.root.resolve()

    def describe(self) -> str:
        return f"local folder {self.root}"

    def __repr__(self) -> str:
        return f"LocalFolderStorage({str(self.root)!r})"

    def put(self, key: str, data: bytes, content_type: str) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, path)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        _fsync_folder(path.parent)

    def get(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return path.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectMissing(key) from None

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        path = self._path(key)
        if path.is_file():
            # Empty folders are left behind on purpose: removing them would race with a
            # concurrent put that has just created the folder for its temporary file.
            path.unlink(missing_ok=True)

    def list_keys(self, prefix: str = "") -> Iterator[str]:
        validate_prefix(prefix)
        *folder_parts, name_start = prefix.split("/")
        folder = self.root
        for part in folder_parts:
            folder = folder / part
            if folder.is_symlink():
                return iter(())  # listing never follows symlinks, whatever the prefix
        key_start = "".join(part + "/" for part in folder_parts)
        return _walk(folder, key_start, name_start)

    def list_objects(self, prefix: str = "") -> Iterator[StoredObject]:
        for key in self.list_keys(prefix):
            try:
                mtime = self._path(key).stat().st_mtime
            except FileNotFoundError:
                continue  # deleted while we listed
            yield StoredObject(key, datetime.fromtimestamp(mtime, timezone.utc))

    def _path(self, key: str) -> Path:
        validate_key(key)
        path = self.root.joinpath(*key.split("/"))
        # The key rules already stop `..` and absolute keys; this catches a symlink inside the
        # root that points elsewhere.
        if not path.resolve().is_relative_to(self._real_root):
            raise InvalidInput("key", f"key {key!r} leads outside the storage folder {self.root}")
        return path


def _walk(folder: Path, key_start: str, name_start: str) -> Iterator[str]:
    """Yield keys under `folder` in lexicographic order, without loading the whole tree.

    Sorting a folder's entries by name, with "/" appended to subfolder names, gives the order
    of the full keys: every key inside subfolder "a" starts with "a/", and no sibling name can
    fall between "a/" and the keys that follow it.
    """
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return
    ordered = []
    for entry in entries:
        # Dot names are temporary files of writes in progress (keys cannot start with a dot).
        # Symlinks are not followed, so listing never wanders outside the root.
        if entry.name.startswith(".") or not entry.name.startswith(name_start):
            continue
        if entry.is_dir(follow_symlinks=False):
            ordered.append((entry.name + "/", True))
        elif entry.is_file(follow_symlinks=False):
            ordered.append((entry.name, False))
    ordered.sort()
    for name, is_folder in ordered:
        if is_folder:
            yield from _walk(Path(folder, name), key_start + name, "")
        else:
            yield key_start + name


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable, not just the file contents."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
