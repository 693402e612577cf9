"""The only package that talks SQL: the schema, the engine, the migrations, and every query.

One module per group of tables; each exposes plain functions (or a small class) that take a
:class:`Store` and return Slipway's own values, never SQLAlchemy rows:

* ``engine``: :class:`Store` (engine, read and write transactions, migrate on open),
  :data:`TRANSIENT` (errors that mean "unreachable, retry"), ``upsert``;
* ``schema``: the Core tables; ``migrations/``: Alembic revisions that create them;
* ``registry``: ``models``, ``model_versions``, ``aliases``, ``alias_history``,
  ``audit_events`` (version allocation under the row lock, alias moves, the audit log);
* ``keys``: ``api_keys`` and :class:`~slipway.store.keys.ApiKey`;
* ``predictions``: the prediction log (``predictions``, ``validation_failures``, ``feedback``),
  its writer's rows and bulk inserts and all of its readers together;
* ``batch``: ``batch_runs``, ``batch_chunks``, ``batch_predictions``, ``batch_rejects``: runs,
  the exactly-once chunk commit with its bulk loads, the stored-prediction lookup;
* ``batchfeedback``: ``batch_feedback``: true labels of batch-scored rows sent by their key,
  the key lookup and why a key is unknown;
* ``query``: a user's own SELECT (``slipway batch --query``), run read-only;
* ``monitoring``: ``monitoring_runs``.

Records the store owns are defined beside their queries (``ApiKey``, ``ChunkRecord``,
``StoredPrediction``, the log's ``Entry``); wide rows that a capability turns into its own value
(``ModelVersion``, ``BatchRun``, ...) come back as dicts keyed by that value's fields. A new
capability adds its tables at the end of ``schema.py``, an Alembic revision, and its own module
here.
"""

from slipway.store import schema
from slipway.store.engine import TRANSIENT, Store, upgrade

__all__ = ["TRANSIENT", "Store", "schema", "upgrade"]
