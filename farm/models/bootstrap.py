"""The tiny default model: built on first use under FARM_HOME and registered like any other."""

from __future__ import annotations

from sqlalchemy import select

from farm.db.models import RegisteredModel
from farm.db.session import transaction
from farm.models.registry import register_model
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
                       license_identifier=TINY_MODEL_LICENSE)
