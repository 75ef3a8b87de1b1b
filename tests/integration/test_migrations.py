"""Migrations against a real Postgres: upgrade, no drift from the models, downgrade."""

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from farm.db import migrate
from farm.db.base import Base
from farm.db.session import make_engine

pytestmark = pytest.mark.integration


def _differences(engine):
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return compare_metadata(context, Base.metadata)


def test_upgrade_head_on_empty_postgres_matches_the_models(postgres_url):
    engine = make_engine(postgres_url)
    assert inspect(engine).get_table_names() == []
    migrate.upgrade(engine)
    tables = set(inspect(engine).get_table_names())
    assert set(Base.metadata.tables) <= tables
    assert _differences(engine) == []
    engine.dispose()


def test_downgrade_to_base_removes_everything_and_upgrade_works_again(postgres_url):
    engine = make_engine(postgres_url)
    migrate.upgrade(engine)
    migrate.downgrade(engine, "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    migrate.upgrade(engine)
    assert _differences(engine) == []
    engine.dispose()


def test_sqlite_migrates_to_the_same_schema(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path}/farm.sqlite3")
    migrate.upgrade(engine)
    assert _differences(engine) == []
    migrate.downgrade(engine, "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    engine.dispose()


def test_a_model_change_without_a_migration_is_detected(postgres_url):
    """The drift check can fail: an extra column on the models shows up as a difference."""
    from sqlalchemy import Column, Integer, MetaData, Table

    engine = make_engine(postgres_url)
    migrate.upgrade(engine)
    metadata = MetaData()
    for table in Base.metadata.tables.values():
        table.to_metadata(metadata)
    Table("renders", metadata, Column("surprise", Integer), extend_existing=True)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection)
        assert [d[0] for d in compare_metadata(context, metadata)] == ["add_column"]
    engine.dispose()
