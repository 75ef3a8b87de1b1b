"""Engines and sessions. Work is done in short transactions: `with transaction(factory) as s:`."""

from __future__ import annotations

import weakref
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker


# Engines whose PostgreSQL connections default to `synchronous_commit = off` (see transaction()).
_ASYNC_COMMIT_ENGINES: "weakref.WeakSet[Engine]" = weakref.WeakSet()


def make_engine(database_url: str, *, commits_wait_for_disk: bool = True) -> Engine:
    """An engine for the URL. `commits_wait_for_disk=False` (the workers' engines) makes
    non-durable commits the connection default, saving a statement per transaction on the hot
    path; transactions that must be durable say so and get `synchronous_commit = on`. Such an
    engine's callers must handle a connection found dead (OperationalError) by trying again."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        # Several farm processes (web, worker, CLI) share one SQLite file: wait for locks
        # instead of failing at once.
        engine = create_engine(url, connect_args={"timeout": 30})
        event.listen(engine, "connect", _configure_sqlite)
        # Let SQLAlchemy, not pysqlite, issue BEGIN, so transactions mean what they say.
        event.listen(engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))
        return engine
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    if commits_wait_for_disk:
        return create_engine(url, pool_pre_ping=True)
    # No pre-ping either: it costs a round trip per transaction. A connection that died with a
    # database restart fails its next statement instead; SQLAlchemy then drops the whole pool
    # and the render task tries again at once on fresh connections (farm.queue.tasks).
    engine = create_engine(url, connect_args={"options": "-c synchronous_commit=off"})
    _ASYNC_COMMIT_ENGINES.add(engine)
    return engine


def _configure_sqlite(dbapi_connection, _record) -> None:
    # Hand transaction control to SQLAlchemy (see the "begin" listener above).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session], durable: bool = True) -> Iterator[Session]:
    """One short unit of work: commit on success, roll back on any error.

    `durable=False` lets PostgreSQL acknowledge the commit before its WAL reaches the disk
    (`synchronous_commit = off` for this transaction only). A database crash may then forget
    the last fraction of a second of such commits, but never breaks consistency. The workers'
    render bookkeeping uses it: a forgotten lease, progress or finish only means the render is
    leased again and rendered again (its object becomes an orphan the sweep removes), while each
    commit no longer waits about 4 ms for a disk flush. Submissions, reviews and the audit log
    stay durable.
    """
    with factory() as session:
        with session.begin():
            bind = session.get_bind()
            if bind.dialect.name == "postgresql":
                commits_wait = bind not in _ASYNC_COMMIT_ENGINES
                if durable != commits_wait:
                    session.execute(text(f"SET LOCAL synchronous_commit TO {'ON' if durable else 'OFF'}"))
            yield session
