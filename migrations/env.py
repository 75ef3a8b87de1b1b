"""Alembic environment: migrates the database the farm's settings name.

`farm db upgrade` passes its engine's connection in `config.attributes["connection"]`;
run by hand, the URL comes from the settings (FARM_DATABASE_URL or the config file).
"""

from alembic import context

from farm.db.base import Base
from farm.db import models  # noqa: F401  (registers every table on Base.metadata)

config = context.config
target_metadata = Base.metadata


def run_migrations(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        compare_type=True,
        # SQLite cannot ALTER most things; batch mode recreates tables instead.
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        run_migrations(connection)
        return
    from farm.db.session import make_engine
    from farm.settings import load_settings

    engine = make_engine(load_settings().database_url)
    with engine.connect() as connection:
        run_migrations(connection)


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run against a database")
run_online()
