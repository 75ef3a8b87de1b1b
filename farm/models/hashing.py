"""What a model's sha256 is, and checking a model on disk against it before it is loaded.

One definition serves the registry (`farm models add`) and the workers, so they always agree:
- a single weights file: the sha256 of its bytes (what AUTOMATIC1111 and Civitai show; the short
  hash is its first 10 hex digits);
- a diffusers folder: the sha256 of a manifest with one line `RELATIVE_PATH\\0FILE_SHA256\\n` per
  file, in the order of their relative paths compared component by component (POSIX
  separators), skipping names that start with a dot (caches, editor files). Every file counts, configs included: a swapped scheduler config or
  model_index.json changes what the model renders just as a swapped weights file does.

Files are read in 1 MiB chunks, so hashing a multi-GB checkpoint takes little memory.
This module imports nothing else of the farm: the render engine uses it too.
"""

from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from farm.errors import InvalidInput

_CHUNK = 1 << 20
SHORT_HASH_LENGTH = 10


def short_hash(sha256: str) -> str:
    return sha256[:SHORT_HASH_LENGTH]


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def model_files(path: Path) -> list[tuple[str, Path]]:
    """(relative POSIX path, path) of every file the hash covers, in hashing order."""
    path = Path(path)
    if path.is_file():
        return [(path.name, path)]
    files = []
    for root, dirs, names in os.walk(path):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in names:
            if name.startswith("."):
                continue
            file = Path(root) / name
            if file.is_file():
                files.append((file.relative_to(path).as_posix(), file))
    return sorted(files, key=lambda entry: entry[0].split("/"))


def model_sha256(path: Path) -> str:
    """The model's sha256 as the module docstring defines it."""
    path = Path(path)
    if path.is_file():
        return file_sha256(path)
    manifest = hashlib.sha256()
    for relative, file in model_files(path):
        manifest.update(f"{relative}\0{file_sha256(file)}\n".encode())
    return manifest.hexdigest()


def fingerprint(path: Path) -> tuple:
    """What says a model on disk is unchanged since it was last hashed: every covered file's
    relative path, size and modification time (in ns). Costs a stat per file, never a read."""
    entries = []
    for relative, file in model_files(path):
        stat = file.stat()
        entries.append((relative, stat.st_size, stat.st_mtime_ns))
    return tuple(entries)


class ModelHashMismatch(InvalidInput):
    """The files at a model's path do not hash to the sha256 it was registered with."""

    def __init__(self, name: str, path: Path, registered: str, found: str):
        super().__init__("model", f"model '{name}' at {path} does not match its registration: registered sha256 "
                                  f"{registered}, the files on disk hash to {found}; it was not loaded. Register "
                                  f"the new files as a new model, or put the registered ones back")
        self.model_name = name
        self.registered = registered
        self.found = found


@dataclass(frozen=True)
class _Verified:
    fingerprint: tuple
    sha256: str


class HashVerifier:
    """Checks model files against their registered sha256 before a load, once per process for
    each path and fingerprint (sizes and mtimes): the next load of an unchanged model costs a
    stat per file; a file changed on disk since is hashed again."""

    def __init__(self) -> None:
        self._verified: dict[str, _Verified] = {}
        self._lock = threading.Lock()
        self.models_hashed = 0  # models read in full so far (a measure of what the cache saves)

    def verify(self, name: str, path: Path, registered_sha256: str) -> None:
        """Return if the files at `path` hash to `registered_sha256`; ModelHashMismatch otherwise."""
        key = str(Path(path).resolve())
        current = fingerprint(Path(path))
        with self._lock:
            known = self._verified.get(key)
        if known is None or known.fingerprint != current:
            known = _Verified(current, model_sha256(Path(path)))
            self.models_hashed += 1
            # A file replaced while it was read shows up as a new fingerprint next time.
            if fingerprint(Path(path)) == current:
                with self._lock:
                    self._verified[key] = known
        if known.sha256 != registered_sha256:
            raise ModelHashMismatch(name, Path(path), registered_sha256, known.sha256)
