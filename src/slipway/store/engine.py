"""The database handle: one engine, read and write transactions, migrations on open."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from slipway.exceptions import ConfigError, MissingDependency

# Errors that mean "the database could not be reached", worth retrying, as opposed to "the
# database refused this statement".
TRANSIENT = (
    sa.exc.OperationalError,
    sa.exc.InterfaceError,
    sa.exc.DisconnectionError,
    sa.exc.TimeoutError,  # no pooled connection came free in time
)
_MIGRATIONS = Path(__file__).parent / "migrations"
_WRITE = "slipway_write"
# Any constant works; it only has to be the same for every Slipway process on a server.
_PG_MIGRATION_LOCK = 0x51_1B_3A_7


class Store:
    """A SQLAlchemy engine on the metadata database, migrated to the current schema.

    SQLite (the default) runs in WAL mode with a busy timeout; write transactions start with
    ``BEGIN IMMEDIATE`` so two writers queue instead of failing on lock upgrade.
    PostgreSQL is used when the URL says so.
    """

    def __init__(self, url: str, *, migrate: bool = True, create_dirs: bool = True) -> None:
        """Open (and migrate) the database at ``url``.

        ``create_dirs=False`` refuses a SQLite file whose directory does not exist, instead of
        creating it: the registry passes it for a URL the user typed (a typo must not silently
        create directories and an empty registry elsewhere), and keeps it for the default
        database under ``SLIPWAY_HOME``, which is created on first use.
        """
        self.url = sa.make_url(url)
        self.engine = _create_engine(self.url, create_dirs)
        if migrate:
            upgrade(self)

    @property
    def dialect(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return self.engine.dialect.name

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A connection in a read transaction."""
        with self.engine.connect() as conn, conn.begin():
            yield conn

    @contextmanager
    def read_driver(self) -> Iterator[Any]:
        """A pooled driver (DBAPI) connection for a few read-only statements, outside any
        explicit transaction: SQLAlchemy's connection and transaction objects (connect, BEGIN,
        COMMIT) cost more than a small indexed read. Each statement reads the newest committed
        data (SQLite runs in autocommit, see :func:`_sqlite_connect`; PostgreSQL's default
        READ COMMITTED gives each statement its own snapshot), so use it only where the
        statements need no snapshot in common. The pool rolls the connection back when it is
        returned. Statements on the driver's cursor raise the driver's own errors: see
        :func:`driver_errors`."""
        conn = self.engine.raw_connection()
        try:
            yield conn
        finally:
            conn.close()  # back to the pool

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A connection in a write transaction, committed on success, rolled back on error."""
        with self.engine.connect() as conn:
            conn = conn.execution_options(**{_WRITE: True})
            with conn.begin():
                yield conn

    def ping(self) -> None:
        """Raise if the database cannot be reached."""
        with self.engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")

    def dispose(self) -> None:
        """Close pooled connections (call in a child process after fork)."""
        self.engine.dispose()

    def __repr__(self) -> str:
        return f"Store({self.url.render_as_string(hide_password=True)!r})"


@contextmanager
def driver_errors(engine: Engine) -> Iterator[None]:
    """Raise the driver's own operational and interface errors (from statements run on its
    cursor directly) as SQLAlchemy's, which :data:`TRANSIENT` catches."""
    dbapi = engine.dialect.loaded_dbapi
    try:
        yield
    except dbapi.OperationalError as exc:
        raise sa.exc.OperationalError(None, None, exc) from exc
    except dbapi.InterfaceError as exc:
        raise sa.exc.InterfaceError(None, None, exc) from exc


_REVISION = re.compile(r"^revision(?:: *str)? *= *[\"']([^\"']+)[\"']", re.M)
_DOWN = re.compile(r"^down_revision(?:: *[\w |]+)? *= *(?:None|[\"']([^\"']+)[\"'])\s*$", re.M)


def head_revision() -> str | None:
    """The newest migration's revision id, read from the migration files without Alembic.

    None when the files do not make one plain chain (a merge, a tuple of down revisions, a
    file this reader does not understand): the caller then asks Alembic.
    """
    revisions, downs = set(), set()
    for path in (_MIGRATIONS / "versions").glob("*.py"):
        if path.name == "__init__.py":
            continue
        text = path.read_text()
        revision, down = _REVISION.search(text), _DOWN.search(text)
        if revision is None or down is None:
            return None
        revisions.add(revision[1])
        if down[1] is not None:
            downs.add(down[1])
    heads = revisions - downs
    return heads.pop() if len(heads) == 1 and downs <= revisions else None


def _at_head(store: Store) -> bool:
    """Whether the database's recorded revision is already :func:`head_revision`'s."""
    head = head_revision()
    if head is None:
        return False
    try:
        with store.engine.connect() as conn:
            current = conn.execute(sa.text("SELECT version_num FROM alembic_version")).all()
    except sa.exc.DBAPIError:  # no alembic_version table yet: a new database
        return False
    return [row[0] for row in current] == [head]


def _create_engine(url: sa.URL, create_dirs: bool = True) -> Engine:
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            _sqlite_directory(url, Path(url.database).parent, create_dirs)
        engine = sa.create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
        sa.event.listen(engine, "connect", _sqlite_connect)
        sa.event.listen(engine, "begin", _sqlite_begin)
        return engine
    if url.get_backend_name() == "postgresql":
        if url.get_driver_name() in ("psycopg", ""):
            try:
                import psycopg  # noqa: F401
            except ImportError:
                raise MissingDependency("psycopg", "postgres", "A PostgreSQL store") from None
            url = url.set(drivername="postgresql+psycopg")
        return sa.create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10)
    raise ConfigError(
        f"SLIPWAY_DATABASE_URL uses {url.get_backend_name()!r}; "
        "Slipway supports sqlite:/// and postgresql+psycopg:// URLs."
    )


def _sqlite_directory(url: sa.URL, folder: Path, create: bool) -> None:
    shown = url.render_as_string(hide_password=True)
    if folder.is_dir():
        return
    blocker = _file_above(folder)
    if blocker is not None:
        raise ConfigError(
            f"The SQLite database {shown} cannot be opened: {blocker} is a file, not a "
            "directory. Point SLIPWAY_HOME (or SLIPWAY_DATABASE_URL) at a directory."
        )
    if not create:
        raise ConfigError(
            f"The SQLite database {shown} is in {folder}, which does not exist. Create the "
            "directory first, or fix SLIPWAY_DATABASE_URL (only the default database under "
            "SLIPWAY_HOME is created automatically)."
        )
    folder.mkdir(parents=True, exist_ok=True)


def _file_above(folder: Path) -> Path | None:
    """The nearest existing path at or above ``folder`` when it is not a directory."""
    for path in (folder, *folder.parents):
        if path.exists():
            return None if path.is_dir() else path
    return None


def _sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
    # Take transaction control away from the sqlite3 module so _sqlite_begin decides.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA busy_timeout = 30000")
    cur.execute("PRAGMA journal_mode = WAL")
    cur.execute("PRAGMA synchronous = NORMAL")
    cur.execute("PRAGMA foreign_keys = ON")
    cur.close()


def _sqlite_begin(conn: Connection) -> None:
    immediate = conn.get_execution_options().get(_WRITE, False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def upsert(conn: Connection, table: sa.Table) -> Any:
    """An INSERT into ``table`` that takes ``on_conflict_do_nothing/update`` on either dialect."""
    from sqlalchemy.dialects import postgresql, sqlite

    return (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(table)


def upgrade(store: Store) -> None:
    """Bring the schema to the newest revision; safe when several processes start at once.

    A database already at the newest revision (every open but the first) is recognised with
    one query and without importing Alembic, which costs a serving worker about 10 MB and a
    few hundred milliseconds at each start (see :func:`_at_head`).
    """
    if _at_head(store):
        return
    from alembic import command
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    head = ScriptDirectory.from_config(cfg).get_current_head()
    with store.engine.connect() as conn:
        if MigrationContext.configure(conn).get_current_revision() == head:
            return
    # The write transaction (BEGIN IMMEDIATE on SQLite, an advisory lock on PostgreSQL)
    # serializes concurrent migrators; the loser finds the schema at head and does nothing.
    with store.write() as conn:
        if store.dialect == "postgresql":
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_PG_MIGRATION_LOCK)))
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
