"""The store: migrations match the schema, SQLite is tuned, concurrent starts are safe."""

from __future__ import annotations

import multiprocessing as mp

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from slipway.clock import utcnow
from slipway.exceptions import ConfigError
from slipway.store import Store, schema


def test_migrations_create_exactly_the_declared_schema(settings):
    """Alembic's autogenerate finds no difference between the migrated DB and schema.py."""
    store = Store(settings.resolved_database_url)
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), schema.metadata)
    store.dispose()
    assert diff == []


def test_opening_twice_does_not_migrate_again(settings):
    """A second open finds the schema at head and leaves data alone."""
    first = Store(settings.resolved_database_url)
    with first.write() as conn:
        conn.execute(schema.models.insert().values(name="kept", created_at=utcnow()))
    first.dispose()
    second = Store(settings.resolved_database_url)
    with second.read() as conn:
        assert conn.execute(sa.select(schema.models.c.name)).scalars().all() == ["kept"]
    second.dispose()


def test_sqlite_runs_in_wal_mode_with_a_busy_timeout(tmp_path):
    """WAL lets readers proceed during writes; the timeout makes writers wait, not fail."""
    store = Store(f"sqlite:///{tmp_path}/x.db")
    with store.read() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    store.dispose()


def test_write_transactions_roll_back_on_error(settings):
    """An exception inside write() leaves nothing behind."""
    store = Store(settings.resolved_database_url)

    def insert_then_fail() -> None:
        with store.write() as conn:
            conn.execute(schema.models.insert().values(name="gone", created_at=utcnow()))
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        insert_then_fail()
    with store.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(schema.models)).scalar() == 0
    store.dispose()


def test_unsupported_database_is_a_config_error():
    """Only SQLite and PostgreSQL URLs are accepted, and the message says so."""
    with pytest.raises(ConfigError, match="sqlite:/// and postgresql"):
        Store("mysql://localhost/db", migrate=False)


def _open(url: str, start) -> None:
    start.wait(timeout=60)
    Store(url).dispose()


@pytest.mark.slow
def test_concurrent_first_opens_migrate_once(settings):
    """Three processes opening a fresh database at once all succeed."""
    ctx = mp.get_context("spawn")
    start = ctx.Barrier(3)
    procs = [
        ctx.Process(target=_open, args=(settings.resolved_database_url, start)) for _ in range(3)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    store = Store(settings.resolved_database_url)
    with store.engine.connect() as conn:
        assert MigrationContext.configure(conn).get_current_revision() == _head()
    store.dispose()


def _head() -> str:
    """The newest migration revision."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from slipway.store import engine

    cfg = Config()
    cfg.set_main_option("script_location", str(engine._MIGRATIONS))
    return str(ScriptDirectory.from_config(cfg).get_current_head())
