"""Small reads the dashboard's model pages need beside farm.models.admin: a model by id, the path
a form names (relative paths are under the farm's model folder), and the model files in the model
folders that are not registered yet (offered as suggestions by the add form).

The suggestions are a bounded look, never a crawl: MAX_DEPTH folders down from each model folder,
at most MAX_CANDIDATES entries, hidden folders skipped, and a diffusers folder (one holding
model_index.json) is offered whole and not entered. Registration checks every path again
(farm.models.registry.check_model_path): a suggestion is never trusted.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from farm.db.models import RegisteredModel
from farm.errors import InvalidInput, NotFound
from farm.models.registry import WEIGHTS_SUFFIX
from farm.settings import Settings

MAX_DEPTH = 3
MAX_CANDIDATES = 200
PATH_MAX_LENGTH = 4096


def model_name_by_id(session: Session, model_id: int) -> str:
    name = session.scalar(select(RegisteredModel.name).where(RegisteredModel.id == model_id))
    if name is None:
        raise NotFound("model", model_id)
    return name


def form_path(settings: Settings, value: object) -> Path:
    """The path a form or API body gave: absolute as given, relative under the farm's model folder
    ({home}/models). Whether the farm may register it is for the registry to say."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput("path", "is required: a .safetensors file or a diffusers folder in a model folder")
    value = value.strip()
    if len(value) > PATH_MAX_LENGTH or "\x00" in value:
        raise InvalidInput("path", "is not a usable path")
    path = Path(value).expanduser() if value.startswith("~") else Path(value)
    return path if path.is_absolute() else settings.models_dir / path


@dataclass(frozen=True)
class Candidate:
    path: str       # as a form takes it: relative to the farm's model folder when inside it
    kind: str       # "file" or "folder"
    size_bytes: int | None


def _shown(path: Path, models_dir: Path) -> str:
    try:
        return path.relative_to(models_dir).as_posix()
    except ValueError:
        return str(path)


def unregistered_model_files(session: Session, settings: Settings, limit: int = MAX_CANDIDATES) -> list[Candidate]:
    """Safetensors files and diffusers folders in the model folders that no model is registered at."""
    registered = {str(Path(uri)) for uri in session.scalars(select(RegisteredModel.uri))}
    models_dir = settings.models_dir.resolve()
    found: list[Candidate] = []
    for folder in settings.allowed_model_folders:
        if not folder.is_dir():
            continue
        for root, dirs, files in os.walk(folder):
            here = Path(root)
            depth = len(here.relative_to(folder).parts)
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            if (here / "model_index.json").is_file() and here != folder:
                dirs[:] = []
                if str(here.resolve()) not in registered:
                    found.append(Candidate(_shown(here, models_dir), "folder", None))
                continue
            if depth >= MAX_DEPTH:
                dirs[:] = []
            for name in sorted(files):
                path = here / name
                if name.startswith(".") or path.suffix.lower() != WEIGHTS_SUFFIX:
                    continue
                if str(path.resolve()) not in registered:
                    try:
                        size = path.stat().st_size
                    except OSError:
                        continue
                    found.append(Candidate(_shown(path, models_dir), "file", size))
            if len(found) >= limit:
                return found[:limit]
    return found
