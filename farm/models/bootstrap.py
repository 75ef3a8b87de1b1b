"""Models every farm has: the tiny default checkpoint, built on first use under FARM_HOME and
registered like any other, and the built-in Lanczos upscaler."""

from __future__ import annotations

from sqlalchemy import select

from farm.audit.log import record_event
from farm.db.models import RegisteredModel
from farm.licenses.registry import get_license
from farm.db.session import transaction
from farm.models.registry import register_model
from farm.render.upscale import BUILTIN_UPSCALER, BUILTIN_UPSCALER_SHA256, BUILTIN_UPSCALER_URI
from farm.render.tiny_model import TINY_MODEL_NAME, ensure_tiny_model

# The tiny model is built by this project from its own configs, so it carries the project's license.
TINY_MODEL_LICENSE = "Apache-2.0"


def ensure_tiny_model_registered(ctx) -> None:
    # Building is skipped when the folder already holds this build; a deleted folder is rebuilt
    # byte for byte, so its registered hash stays true.
    path = ensure_tiny_model(ctx.settings.models_dir / TINY_MODEL_NAME)
    with transaction(ctx.session_factory) as session:
        if session.scalar(select(RegisteredModel.id).where(RegisteredModel.name == TINY_MODEL_NAME)):
            return
        register_model(session, name=TINY_MODEL_NAME, kind="checkpoint", path=path,
                       license_identifier=TINY_MODEL_LICENSE, model_folders=[ctx.settings.models_dir])


def ensure_builtin_upscaler_registered(ctx) -> None:
    # Our own code (a Pillow resize), so it carries the project's license, like the tiny model.
    with transaction(ctx.session_factory) as session:
        if session.scalar(select(RegisteredModel.id).where(RegisteredModel.name == BUILTIN_UPSCALER)):
            return
        model = RegisteredModel(
            name=BUILTIN_UPSCALER, kind="upscaler", architecture="upscaler", uri=BUILTIN_UPSCALER_URI,
            sha256=BUILTIN_UPSCALER_SHA256, license_id=get_license(session, TINY_MODEL_LICENSE).id,
        )
        session.add(model)
        session.flush()
        record_event(session, action="model.registered", entity_type="model", entity_id=model.id,
                     after={"name": model.name, "kind": model.kind, "uri": model.uri, "sha256": model.sha256,
                            "license": TINY_MODEL_LICENSE})
