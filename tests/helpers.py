"""Helpers shared by the tests (importable; fixtures live in the conftest modules)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import sqlalchemy as sa

PG_URL = os.environ.get("SLIPWAY_TEST_DATABASE_URL")
NO_PG = "PostgreSQL tests need SLIPWAY_TEST_DATABASE_URL (set by .ci/run, which starts a server)"


def pg_schema_url(base: str) -> Iterator[str]:
    """A fresh PostgreSQL schema for one test, dropped afterwards."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base)
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    url = sa.make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()
