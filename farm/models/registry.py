"""The model registry: which checkpoint, LoRA, VAE or upscaler files the farm may use.

A model is identified by the sha256 of its weights, as AUTOMATIC1111 and Civitai identify
checkpoints; the first 10 hex digits are the short hash shown in infotext.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from farm.audit.log import record_event
from farm.db.models import ARCHITECTURES, MODEL_KINDS, RegisteredModel, User
from farm.errors import InvalidInput
from farm.licenses.registry import get_license
from farm.render.engine import PICKLE_SUFFIXES, detect_architecture

_CHUNK = 1 << 20


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def model_sha256(path: Path) -> str:
    """sha256 of a single weights file, or of a diffusers folder's manifest.

    For a folder the hash covers every file's relative path and sha256 (sorted), so renaming,
    editing, adding or removing any component changes it.
    """
    if path.is_file():
        return _file_sha256(path)
    manifest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        relative = file.relative_to(path).as_posix()
        if any(part.startswith(".") for part in relative.split("/")):
            continue
        manifest.update(f"{relative}\0{_file_sha256(file)}\n".encode())
    return manifest.hexdigest()


def _validate_path(path: Path) -> None:
    if not path.exists():
        raise InvalidInput("path", f"{path} does not exist")
    if path.is_file() and path.suffix.lower() in PICKLE_SUFFIXES:
        # Pickle-based formats execute code when loaded; the farm only accepts safetensors.
        raise InvalidInput("path", f"{path.name} is a pickle-based checkpoint; only safetensors are accepted")
    if path.is_file() and path.suffix.lower() != ".safetensors":
        raise InvalidInput("path", f"{path.name} is not a .safetensors file or a diffusers folder")


def register_model(
    session: Session,
    *,
    name: str,
    kind: str,
    path: Path,
    license_identifier: str,
    architecture: str | None = None,
    base_model_name: str | None = None,
    source_url: str | None = None,
    added_by: User | None = None,
) -> RegisteredModel:
    name = name.strip()
    if not name:
        raise InvalidInput("name", "is required")
    if len(name) > 200:
        raise InvalidInput("name", "is longer than 200 characters")
    if kind not in MODEL_KINDS:
        raise InvalidInput("kind", f"must be one of {', '.join(MODEL_KINDS)}")
    path = path.resolve()
    _validate_path(path)
    if architecture is None:
        architecture = detect_architecture(path)
    if architecture not in ARCHITECTURES:
        raise InvalidInput("architecture", f"must be one of {', '.join(ARCHITECTURES)}")
    license_ = get_license(session, license_identifier)
    base_model = get_model(session, base_model_name, field="base") if base_model_name else None
    if session.scalar(select(RegisteredModel.id).where(RegisteredModel.name == name)):
        raise InvalidInput("name", f"a model named '{name}' is already registered")

    model = RegisteredModel(
        name=name, kind=kind, architecture=architecture, uri=str(path), sha256=model_sha256(path),
        license=license_, base_model=base_model, source_url=source_url,
        added_by_id=added_by.id if added_by else None,
    )
    session.add(model)
    session.flush()
    record_event(
        session, action="model.registered", entity_type="model", entity_id=model.id, actor=added_by,
        after={"name": name, "kind": kind, "architecture": architecture, "uri": model.uri,
               "sha256": model.sha256, "license": license_.identifier},
    )
    return model


def get_model(session: Session, name: str, field: str = "model") -> RegisteredModel:
    model = session.scalar(select(RegisteredModel).where(RegisteredModel.name == name))
    if model is None:
        known = ", ".join(session.scalars(select(RegisteredModel.name).order_by(RegisteredModel.name)))
        raise InvalidInput(field, f"unknown model '{name}'; registered: {known or 'none'}")
    return model


def require_active_checkpoint(session: Session, name: str, field: str = "model") -> RegisteredModel:
    """The registered checkpoint `name`, if renders may use it now; InvalidInput(field) otherwise."""
    if not isinstance(name, str) or not name.strip():
        raise InvalidInput(field, "a model name is required")
    model = get_model(session, name.strip(), field=field)
    if model.status != "active":
        raise InvalidInput(field, f"model '{model.name}' is {model.status}: {model.status_reason or 'no reason given'}")
    if model.kind != "checkpoint":
        raise InvalidInput(field, f"'{model.name}' is a {model.kind}, not a checkpoint")
    return model
