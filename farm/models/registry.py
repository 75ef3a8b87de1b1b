"""The model registry: which checkpoint, LoRA, VAE or upscaler files the farm may use.

A model is identified by the sha256 of its weights, as AUTOMATIC1111 and Civitai identify
checkpoints; the first 10 hex digits are the short hash shown in infotext. farm.models.hashing
defines the hash (for a diffusers folder: a manifest of every file's sha256); workers check a
model against it before they load it.

Registration refuses, naming the field:
- a path outside the configured model folders ({home}/models and the `model_folders` setting),
  after resolving symlinks and `..` (also for every file inside a folder);
- pickle-based weights (.ckpt, .pt, .pth, .bin, .pkl): loading them runs code. A diffusers
  folder holding any is refused too;
- an unknown license, a LoRA without a registered base checkpoint of its architecture, a name
  or a sha256 that is registered already (one set of weights, one registration, one license).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from farm.audit.log import record_event
from farm.db.models import ARCHITECTURES, MODEL_KINDS, RegisteredModel, User
from farm.errors import InvalidInput
from farm.licenses.registry import get_license
from farm.models.hashing import file_sha256, model_files, model_sha256, short_hash  # noqa: F401  (re-exported)
from farm.render.engine import PICKLE_SUFFIXES, detect_architecture

NAME_MAX_LENGTH = 200
URL_MAX_LENGTH = 1000
_URL = re.compile(r"https?://[^\s]+")
WEIGHTS_SUFFIX = ".safetensors"


def _inside(path: Path, folders: Sequence[Path]) -> bool:
    return any(path != folder and path.is_relative_to(folder) for folder in folders)


def check_model_path(path: Path, model_folders: Sequence[Path]) -> Path:
    """The resolved path of model files the farm may register; InvalidInput("path") otherwise."""
    folders = [Path(folder).resolve() for folder in model_folders]
    given = Path(path).expanduser()
    if not given.exists():
        raise InvalidInput("path", f"{path} does not exist")
    resolved = given.resolve(strict=True)
    where = ", ".join(str(folder) for folder in folders) or "(none configured)"
    if not _inside(resolved, folders):
        shown = f"{path} (resolves to {resolved})" if str(resolved) != str(path) else str(path)
        raise InvalidInput("path", f"{shown} is outside the model folders ({where}); put the model in one of "
                                   "them, or add its folder to the model_folders setting")
    if resolved.is_file():
        _check_weights_file(resolved)
        return resolved
    if not resolved.is_dir():
        raise InvalidInput("path", f"{path} is neither a file nor a folder")
    files = model_files(resolved)
    pickled = sorted(relative for relative, file in files if file.suffix.lower() in PICKLE_SUFFIXES)
    if pickled:
        raise InvalidInput("path", f"{path} holds pickle-based weights ({', '.join(pickled[:5])}); loading them "
                                   "could run arbitrary code. Convert them to safetensors and remove them first")
    for relative, file in files:
        if not _inside(file.resolve(), folders):
            raise InvalidInput("path", f"{path}/{relative} links to {file.resolve()}, outside the model folders "
                                       f"({where})")
    if not any(file.suffix.lower() == WEIGHTS_SUFFIX for _, file in files):
        raise InvalidInput("path", f"{path} holds no .safetensors weights")
    return resolved


def _check_weights_file(path: Path) -> None:
    suffix = path.suffix.lower()
    if suffix in PICKLE_SUFFIXES:
        # Pickle-based formats execute code when loaded; the farm only accepts safetensors.
        raise InvalidInput("path", f"{path.name} is a pickle-based checkpoint; loading it could run arbitrary "
                                   "code. Only safetensors are accepted")
    if suffix != WEIGHTS_SUFFIX:
        raise InvalidInput("path", f"{path.name} is not a .safetensors file or a diffusers folder")


def _checked_name(name: object) -> str:
    if not isinstance(name, str) or not name.strip():
        raise InvalidInput("name", "is required")
    name = name.strip()
    if len(name) > NAME_MAX_LENGTH:
        raise InvalidInput("name", f"is longer than {NAME_MAX_LENGTH} characters")
    if any(ord(c) < 32 or c == "\x7f" for c in name):
        raise InvalidInput("name", "must not contain control characters")
    return name


def _checked_source_url(source_url: str | None) -> str | None:
    if source_url is None or not source_url.strip():
        return None
    source_url = source_url.strip()
    if len(source_url) > URL_MAX_LENGTH or not _URL.fullmatch(source_url):
        raise InvalidInput("source", f"'{source_url}' is not an http(s) URL of at most {URL_MAX_LENGTH} characters")
    return source_url


def _architecture(kind: str, path: Path, given: str | None, base: RegisteredModel | None) -> str:
    if given is not None and given not in ARCHITECTURES:
        raise InvalidInput("architecture", f"must be one of {', '.join(ARCHITECTURES)}")
    if kind == "upscaler":
        if given not in (None, "upscaler"):
            raise InvalidInput("architecture", "an upscaler's architecture is 'upscaler'")
        return "upscaler"
    if given == "upscaler":
        raise InvalidInput("architecture", f"a {kind} needs sd1, sd2 or sdxl")
    if kind == "checkpoint":
        if path.is_dir():
            detected = detect_architecture(path)
            if given is not None and given != detected:
                raise InvalidInput("architecture", f"{path} holds an {detected} model, not {given}")
            return detected
        if given is None:
            raise InvalidInput("architecture", "give the architecture (sd1, sd2, sdxl) of a single-file checkpoint")
        return given
    if base is not None:
        if given is not None and given != base.architecture:
            raise InvalidInput("architecture", f"base '{base.name}' is {base.architecture}, not {given}")
        return base.architecture
    if given is None:
        raise InvalidInput("architecture", f"give the architecture (sd1, sd2, sdxl) of the {kind}, or its --base")
    return given


def _base(session: Session, kind: str, base_model_name: str | None) -> RegisteredModel | None:
    if not base_model_name:
        if kind == "lora":
            raise InvalidInput("base", "a LoRA needs --base: the registered checkpoint it was trained on "
                                       "(its license terms come with the LoRA)")
        return None
    base = get_model(session, base_model_name.strip(), field="base")
    if base.kind != "checkpoint":
        raise InvalidInput("base", f"'{base.name}' is a {base.kind}; a base must be a checkpoint")
    return base


def register_model(
    session: Session,
    *,
    name: str,
    kind: str,
    path: Path,
    license_identifier: str,
    model_folders: Sequence[Path],
    architecture: str | None = None,
    base_model_name: str | None = None,
    source_url: str | None = None,
    added_by: User | None = None,
) -> RegisteredModel:
    """Register the model at `path` (inside one of `model_folders`), hashing it in full."""
    name = _checked_name(name)
    if kind not in MODEL_KINDS:
        raise InvalidInput("kind", f"must be one of {', '.join(MODEL_KINDS)}")
    source_url = _checked_source_url(source_url)
    if session.scalar(select(RegisteredModel.id).where(RegisteredModel.name == name)):
        raise InvalidInput("name", f"a model named '{name}' is already registered")
    license_ = get_license(session, license_identifier)
    base = _base(session, kind, base_model_name)
    path = check_model_path(path, model_folders)
    architecture = _architecture(kind, path, architecture, base)
    sha256 = model_sha256(path)  # streamed, 1 MiB at a time
    twin = session.scalar(select(RegisteredModel).where(RegisteredModel.sha256 == sha256))
    if twin is not None:
        raise InvalidInput("path", f"these files (sha256 {short_hash(sha256)}) are registered already, as "
                                   f"'{twin.name}' under {twin.license.identifier}")

    model = RegisteredModel(
        name=name, kind=kind, architecture=architecture, uri=str(path), sha256=sha256,
        license=license_, base_model=base, source_url=source_url,
        added_by_id=added_by.id if added_by else None,
    )
    session.add(model)
    session.flush()
    record_event(
        session, action="model.registered", entity_type="model", entity_id=model.id, actor=added_by,
        after={"name": name, "kind": kind, "architecture": architecture, "uri": model.uri,
               "sha256": model.sha256, "short_hash": short_hash(model.sha256), "license": license_.identifier,
               "base": base.name if base else None, "source_url": source_url},
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


def require_checkpoint(session: Session, name: str, field: str = "model") -> RegisteredModel:
    """The registered checkpoint `name`, whatever its status: submissions leave a suspended
    model to the license policy, which refuses it and audits the refusal."""
    if not isinstance(name, str) or not name.strip():
        raise InvalidInput(field, "a model name is required")
    model = get_model(session, name.strip(), field=field)
    if model.kind != "checkpoint":
        raise InvalidInput(field, f"'{model.name}' is a {model.kind}, not a checkpoint")
    return model
