"""The pieces a farm process needs, built from settings: database, queue, storage.

The CLI and the dashboard each build one FarmContext at start-up; nothing here is global.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from celery import Celery
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from farm.db.session import make_engine, make_session_factory, transaction
from farm.settings import Settings


@dataclass
class FarmContext:
    settings: Settings

    @cached_property
    def db_engine(self) -> Engine:
        return make_engine(self.settings.database_url)

    @cached_property
    def session_factory(self) -> sessionmaker[Session]:
        return make_session_factory(self.db_engine)

    @cached_property
    def celery(self) -> Celery:
        from farm.queue.app import create_celery_app

        return create_celery_app(self.settings)

    @cached_property
    def storage(self):
        from farm.queue.runtime import open_settings_storage

        return open_settings_storage(self.settings)

    @property
    def is_embedded(self) -> bool:
        return self.db_engine.dialect.name == "sqlite"


def prepare_database(ctx: FarmContext) -> None:
    """Migrate, seed the license registry, and register the tiny default model and built-in upscaler."""
    from farm.db import migrate
    from farm.licenses.registry import seed_licenses
    from farm.models.bootstrap import ensure_builtin_upscaler_registered, ensure_tiny_model_registered

    migrate.upgrade(ctx.db_engine)
    with transaction(ctx.session_factory) as session:
        seed_licenses(session)
    ensure_tiny_model_registered(ctx)
    ensure_builtin_upscaler_registered(ctx)
