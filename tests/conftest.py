"""Fixtures shared by every test: embedded farms in temporary folders, and real services.

Service fixtures fail, never skip, when a service is missing: CI must prove the real thing.
Service addresses can be changed with RENDERFARM_TEST_* variables (not FARM_*, which the farm's
own settings loader owns and checks).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from farm.context import FarmContext, prepare_database  # noqa: E402
from farm.render.tiny_model import TINY_MODEL_NAME, ensure_tiny_model  # noqa: E402
from farm.settings import Settings, load_settings  # noqa: E402
from tests.fixtures.brokers import BrokerFixtureError, RedisServer, rabbitmq_vhost  # noqa: E402
from tests.fixtures.s3 import private_s3_server, s3_bucket, s3_server  # noqa: E402,F401

POSTGRES_ADMIN_URL = os.environ.get("RENDERFARM_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("RENDERFARM_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
RABBITMQ_URL = os.environ.get("RENDERFARM_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672//")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """The tiny model, built once per test session and copied into each test's farm home."""
    return ensure_tiny_model(tmp_path_factory.mktemp("tiny-model") / TINY_MODEL_NAME)


def embedded_environ(home: Path, **overrides: str) -> dict[str, str]:
    return {"FARM_HOME": str(home), **overrides}


@pytest.fixture
def farm_home(tmp_path, tiny_model_dir) -> Path:
    home = tmp_path / "farm-data"
    shutil.copytree(tiny_model_dir, home / "models" / TINY_MODEL_NAME)
    return home


@pytest.fixture
def embedded_settings(farm_home) -> Settings:
    return load_settings(embedded_environ(farm_home))


@pytest.fixture
def embedded_farm(embedded_settings) -> FarmContext:
    """A migrated embedded farm (SQLite + folder storage + embedded broker) in a temp folder."""
    ctx = FarmContext(embedded_settings)
    prepare_database(ctx)
    yield ctx
    ctx.db_engine.dispose()


# -- real services --------------------------------------------------------------------------

@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    import psycopg

    try:
        psycopg.connect(POSTGRES_ADMIN_URL, connect_timeout=5).close()
    except psycopg.OperationalError as error:
        pytest.fail(f"PostgreSQL is required at {POSTGRES_ADMIN_URL}: {error}")
    return POSTGRES_ADMIN_URL


@pytest.fixture
def postgres_url(postgres_admin_url) -> str:
    """A fresh, empty Postgres database for one test, dropped afterwards."""
    from tests.fixtures.databases import scratch_database

    with scratch_database(postgres_admin_url) as url:
        yield url


@pytest.fixture(scope="session")
def redis_url() -> str:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=5).ping()
    except redis.RedisError as error:
        pytest.fail(f"Redis is required at {REDIS_URL}: {error}")
    return REDIS_URL


@pytest.fixture(scope="session")
def rabbitmq_url() -> str:
    from kombu import Connection

    try:
        with Connection(RABBITMQ_URL, connect_timeout=5) as connection:
            connection.ensure_connection(max_retries=1)
    except Exception as error:  # kombu raises several transport-specific errors
        pytest.fail(f"RabbitMQ is required at {RABBITMQ_URL}: {error}")
    return RABBITMQ_URL


@pytest.fixture
def rabbitmq_vhost_url(rabbitmq_url) -> str:
    """The shared RabbitMQ, in a virtual host of this test's own (deleted afterwards)."""
    try:
        with rabbitmq_vhost(rabbitmq_url) as url:
            yield url
    except BrokerFixtureError as error:
        pytest.fail(str(error), pytrace=False)


@pytest.fixture
def private_redis(tmp_path_factory) -> RedisServer:
    """A Redis server of this test's own, started; the test may kill it and start it again."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    try:
        server.start()
    except BrokerFixtureError as error:
        pytest.fail(str(error), pytrace=False)
    yield server
    server.kill()
