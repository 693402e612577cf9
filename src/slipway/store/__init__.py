"""The only package that talks SQL: the schema, the engine and its migrations."""

from slipway.store import schema
from slipway.store.engine import TRANSIENT, Store, upgrade

__all__ = ["TRANSIENT", "Store", "schema", "upgrade"]
