"""The prediction log writer and prediction ids: batched, bounded, never silently lossy."""

from __future__ import annotations

import time
from contextlib import contextmanager
from datetime import UTC, datetime

import numpy as np
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from slipway.serving.log import Entry, Failure, IdGenerator, PredictionLog, id_time
from slipway.serving.metrics import Metrics
from slipway.store import Store
from slipway.store.predictions import COLUMNS, ShadowSlot, to_json
from slipway.store.schema import predictions, validation_failures

NAMES = ("a", "b")


def entry(ids, value=1.0):
    """A logged request with one row per id."""
    rows = [{"b": "x", "a": value} for _ in ids]
    outputs = [{"label": 1, "probabilities": {"0": 0.25, "1": 0.75}} for _ in ids]
    return Entry(list(ids), datetime.now(UTC), "m", 3, NAMES, rows, outputs, 1.5)


def count(store, table=predictions):
    """Rows in a table."""
    with store.read() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(table)).scalar()


def test_ids_are_uuid7_increasing_and_carry_their_time():
    """Version 7, RFC variant, strictly increasing, and id_time recovers the millisecond."""
    ms = 1_767_225_600_123  # the generator's clock is a fake one: nothing races
    now = [ms * 1_000_000 + 456_789]
    gen = IdGenerator(clock=lambda: now[0])
    ids = gen.new(5000) + gen.new(3)  # more than 4,096 in one millisecond borrows the next
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert all(i[14] == "7" and i[19] in "89ab" for i in ids)
    assert [id_time(ids[i]) for i in (0, 4095, 4096, -1)] == [ms / 1000] * 2 + [(ms + 1) / 1000] * 2
    assert [ids[i][15:18] for i in (0, 1, 4095, 4096, -1)] == ["000", "001", "fff", "000", "38a"]
    now[0] -= 5 * 10**9  # the clock steps back: ids still increase
    assert gen.new(1)[0] > ids[-1]
    now[0] = (ms + 10) * 1_000_000  # a later millisecond: its own time, sequence from zero
    (later,) = gen.new(1)
    assert id_time(later) == (ms + 10) / 1000 and later[15:18] == "000"
    assert id_time("not-a-uuid7") is None
    before = time.time()  # the default clock is the system's
    assert abs(id_time(IdGenerator().new(1)[0]) - before) < 3600


def test_writer_stores_rows_in_batches_with_the_documented_shapes(settings):
    """Rows arrive with inputs in contract order and outputs as given, across backends."""
    store = Store(settings.resolved_database_url)
    log = PredictionLog(store, batch_rows=3, flush_seconds=0.05)
    log.start()
    ids = IdGenerator().new(7)
    for i in range(0, 7, 2):
        log.put(entry(ids[i : i + 2]))
    log.put(Failure(datetime.now(UTC), "m", 3, 2, [{"row": 0, "code": "null"}]))
    assert log.flush()
    with store.read() as conn:
        rows = conn.execute(sa.select(predictions).order_by(predictions.c.prediction_id)).all()
        failure = conn.execute(sa.select(validation_failures)).one()
    assert [r.prediction_id for r in rows] == ids
    assert list(rows[0].inputs) == ["a", "b"] and rows[0].outputs["probabilities"]["1"] == 0.75
    assert (failure.model_name, failure.rows, failure.problems) == (
        "m",
        2,
        [{"row": 0, "code": "null"}],
    )
    log.close()
    store.dispose()


def test_full_queue_drops_and_counts(tmp_path):
    """Beyond max_rows, puts are refused and counted in the metric, not blocked."""
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    metrics = Metrics()
    log = PredictionLog(store, max_rows=3, metrics=metrics)  # not started: nothing drains
    ids = IdGenerator().new(5)
    assert log.put(entry(ids[:2])) is True
    assert log.put(entry(ids[2:4])) is False
    assert log.dropped == 2
    value = metrics.registry.get_sample_value(
        "slipway_prediction_log_dropped_total", {"reason": "queue_full"}
    )
    assert value == 2
    log.start()
    log.close()
    assert count(store) == 2


def test_close_drains_everything_queued(tmp_path):
    """Graceful shutdown writes what is still queued, however long the flush interval."""
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    log = PredictionLog(store, flush_seconds=3600, batch_rows=10_000)
    log.start()
    for _ in range(50):
        log.put(entry(IdGenerator().new(3)))
    log.close()
    assert count(store) == 150 and log.dropped == 0


def test_a_row_the_database_refuses_costs_only_itself(tmp_path):
    """A batch with one bad row is retried row by row; the others are written."""
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    log = PredictionLog(store)
    log.start()
    ids = IdGenerator().new(3)
    log.put(entry(ids[:1]))
    log.flush()
    log.put(entry([ids[1], ids[0], ids[2]]))  # ids[0] again: primary-key violation
    log.close()
    assert count(store) == 3 and log.dropped == 1


class FlakyStore:
    """A store whose first ``failures`` writes fail as if the database were down."""

    def __init__(self, store, failures):
        self.store, self.failures = store, failures

    @contextmanager
    def write(self):
        if self.failures:
            self.failures -= 1
            raise sa_exc.OperationalError("INSERT", {}, Exception("connection refused"))
        with self.store.write() as conn:
            yield conn


def test_database_outages_are_retried_not_dropped(tmp_path):
    """Transient errors are retried with backoff; nothing is lost."""
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    log = PredictionLog(FlakyStore(store, failures=2), flush_seconds=0.01)  # type: ignore[arg-type]
    log.start()
    log.put(entry(IdGenerator().new(4)))
    assert log.flush(timeout=10)
    log.close()
    assert count(store) == 4 and log.dropped == 0


def test_log_rows_name_every_column_of_the_predictions_table():
    """The writer's tuples cover the table exactly (a new column must be added there too)."""
    assert sorted(COLUMNS) == sorted(predictions.columns.keys())
    assert len(set(COLUMNS)) == len(COLUMNS)


def test_log_json_is_compact_with_numpy_values_and_null_for_non_finite_floats():
    """orjson text: numpy scalars as numbers, NaN and infinities as null (valid JSON everywhere)."""
    value = {"a": float("nan"), "b": np.float32(1.5), "c": np.int64(3), "d": float("inf")}
    assert to_json(value) == '{"a":null,"b":1.5,"c":3,"d":null}'


def test_batches_larger_than_one_statement_are_written_whole(settings):
    """More rows than one multi-row INSERT holds (or one COPY) arrive complete, in order."""
    store = Store(settings.resolved_database_url)
    log = PredictionLog(store, batch_rows=5000, flush_seconds=3600)
    ids = IdGenerator().new(1234)
    for i in range(0, 1234, 617):
        log.put(entry(ids[i : i + 617], value=float(i)))
    log.start()
    assert log.flush()
    with store.read() as conn:
        rows = conn.execute(sa.select(predictions).order_by(predictions.c.prediction_id)).all()
    assert [r.prediction_id for r in rows] == ids
    assert rows[-1].inputs == {"a": 617.0, "b": "x"} and rows[0].created_at.tzinfo is not None
    log.close()
    store.dispose()


def test_a_refused_copy_or_insert_is_retried_row_by_row(settings):
    """A duplicate id fails the whole COPY (PostgreSQL) or INSERT (SQLite); only it is dropped."""
    store = Store(settings.resolved_database_url)
    log = PredictionLog(store, flush_seconds=3600)
    log.start()
    ids = IdGenerator().new(3)
    log.put(entry(ids[:1]))
    assert log.flush()
    log.put(entry([ids[1], ids[0], ids[2]]))
    log.close()
    assert count(store) == 3 and log.dropped == 1
    store.dispose()


def test_an_entry_that_cannot_become_rows_is_dropped_and_counted_not_raised(tmp_path):
    """A request already answered never fails on its log entry: it is counted as dropped."""
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    metrics = Metrics()
    log = PredictionLog(store, metrics=metrics)
    ids = IdGenerator().new(2)
    broken = Entry(ids[:1], datetime.now(UTC), "m", 3, NAMES, [[1.0]], [{"label": 1}], 1.5)
    assert log.put_many([broken, entry(ids[1:])]) == [False, True]
    value = metrics.registry.get_sample_value(
        "slipway_prediction_log_dropped_total", {"reason": "unserializable"}
    )
    assert value == 1 and log.dropped == 1
    log.start()
    log.close()
    assert count(store) == 1
    store.dispose()


def shadowed(ids, slot):
    """A logged request whose shadow answers land in ``slot``."""
    e = entry(ids)
    e.shadow = slot
    return e


def test_an_entry_whose_shadow_work_was_dropped_is_written_without_waiting(tmp_path):
    """A full shadow queue fills the slot at once: the log writes the rows now, not after the
    shadow wait (a slow shadow must not hold every dropped request's rows)."""
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    log = PredictionLog(store, flush_seconds=0.05, shadow_wait=3600)
    log.start()
    dropped = ShadowSlot(4)
    dropped.fill(None)
    log.put(shadowed(IdGenerator().new(2), dropped))
    assert log.flush(timeout=5)
    with store.read() as conn:
        rows = conn.execute(sa.select(predictions.c.shadow_version, predictions.c.shadow_outputs))
        assert [tuple(r) for r in rows] == [(4, None), (4, None)]
    log.close()


def test_a_shadow_answer_after_the_wait_is_refused_and_counted_late_once(tmp_path):
    """Rows written without their shadow answer mark the slot late: the answer coming after
    is refused (so the scorer does not count it as scored too), the rows count as late."""
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    metrics = Metrics()
    log = PredictionLog(store, flush_seconds=0.02, shadow_wait=0.05, metrics=metrics)
    log.start()
    slot = ShadowSlot(4)
    log.put(shadowed(IdGenerator().new(3), slot))
    deadline = time.monotonic() + 10
    while count(store) < 3:
        assert time.monotonic() < deadline, "the waiting rows were never written"
        time.sleep(0.02)
    assert slot.late and slot.fill([{"label": 1}] * 3) is False and slot.outputs is None
    late = metrics.registry.get_sample_value(
        "slipway_shadow_dropped_total", {"model": "m", "reason": "late"}
    )
    assert late == 3
    log.close()


def test_many_entries_waiting_for_shadow_answers_do_not_stop_the_others(tmp_path):
    """Thousands of rows waiting for a slow shadow do not count towards a full batch: a plain
    entry queued behind them is written at the next flush, and the waiting ones after theirs."""
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    log = PredictionLog(store, batch_rows=100, flush_seconds=0.05, shadow_wait=3600)
    log.start()
    slots = [ShadowSlot(4) for _ in range(300)]
    for slot in slots:
        log.put(shadowed(IdGenerator().new(1), slot))
    log.put(entry(IdGenerator().new(1)))
    deadline = time.monotonic() + 10
    while count(store) < 1:
        assert time.monotonic() < deadline, "the plain entry was held behind the waiting ones"
        time.sleep(0.02)
    assert count(store) == 1
    for slot in slots:
        slot.fill([{"label": 0}])
    assert log.flush(timeout=10)
    with store.read() as conn:
        query = sa.select(sa.func.count()).where(predictions.c.shadow_outputs.is_not(None))
        assert conn.execute(query).scalar() == 300
    log.close()
