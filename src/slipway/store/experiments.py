"""Experiments and business outcomes in the store: every query the experiments capability runs.

Functions take a :class:`~slipway.store.Store` and return Slipway's own values: an
:class:`Experiment` per row, and :class:`ExperimentLog` (the experiment's rows of the prediction
log, joined with their labels) for analysis. Nothing above this module writes SQL for them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from slipway.clock import utcnow
from slipway.exceptions import ExperimentConflict, ExperimentNotFound
from slipway.store.engine import Store, upsert
from slipway.store.schema import (
    experiments,
    feedback,
    outcomes,
    predictions,
    validation_failures,
)

RUNNING, STOPPED = "running", "stopped"
_CHUNK = 500  # ids per IN (...) query


@dataclass(frozen=True)
class Experiment:
    """One experiment as stored: what runs, how it is analysed, and how it ended."""

    id: str
    model: str
    mode: str
    status: str
    control_version: int
    candidate_version: int
    split: float
    metric: str
    outcome: str | None
    unit_field: str | None
    salt: str
    config: dict[str, Any]
    phases: list[dict[str, Any]]
    started_at: datetime
    started_by: str
    updated_at: datetime
    stopped_at: datetime | None = None
    stopped_by: str | None = None
    decision: str | None = None
    stop_reason: str | None = None
    report: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def running(self) -> bool:
        """Whether the experiment still routes traffic."""
        return self.status == RUNNING

    @property
    def phase_started_at(self) -> datetime:
        """When the current split took effect: the analysis reads traffic from here on."""
        if not self.phases:
            return self.started_at
        return datetime.fromisoformat(self.phases[-1]["started_at"])

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, without the stored report."""
        return {
            "id": self.id,
            "model": self.model,
            "mode": self.mode,
            "status": self.status,
            "control_version": self.control_version,
            "candidate_version": self.candidate_version,
            "split": self.split,
            "metric": self.metric,
            "outcome": self.outcome,
            "unit_field": self.unit_field,
            "config": self.config,
            "phases": self.phases,
            "started_at": self.started_at.isoformat(),
            "started_by": self.started_by,
            "stopped_at": None if self.stopped_at is None else self.stopped_at.isoformat(),
            "stopped_by": self.stopped_by,
            "decision": self.decision,
            "stop_reason": self.stop_reason,
        }


@dataclass
class ExperimentLog:
    """An experiment's predictions since its current phase began, one entry per row, oldest
    first, with the true label where feedback gave one."""

    ids: list[str]
    created_at: np.ndarray  # datetime64[us], UTC
    arms: np.ndarray  # object: "control" / "treatment"
    versions: np.ndarray  # int
    units: list[str | None]
    outputs: list[dict[str, Any]]
    latency_ms: np.ndarray
    shadow_versions: list[int | None]
    shadow_outputs: list[dict[str, Any] | None]
    labeled: np.ndarray  # bool
    labels: list[Any]  # the label as sent, None where there is none

    def __len__(self) -> int:
        return len(self.ids)


def create(store: Store, experiment: Experiment) -> Experiment:
    """Insert a running experiment with the next id for its model (``fraud-3``).

    ExperimentConflict names the experiment already running for the model.
    """
    with store.write() as conn:
        running = _running(conn, experiment.model)
        if running is not None:
            raise _already_running(running)
        count = conn.execute(
            sa.select(sa.func.count())
            .select_from(experiments)
            .where(experiments.c.model_name == experiment.model)
        ).scalar_one()
        number = int(count) + 1
        while conn.execute(
            sa.select(experiments.c.id).where(experiments.c.id == f"{experiment.model}-{number}")
        ).first():
            number += 1
        created = replace(experiment, id=f"{experiment.model}-{number}", status=RUNNING)
        try:
            with conn.begin_nested():
                conn.execute(experiments.insert().values(**_values(created)))
        except sa_exc.IntegrityError:
            # Another process started one for this model between our check and our insert.
            other = _running(conn, experiment.model)
            if other is None:
                raise
            raise _already_running(other) from None
    return created


def get(store: Store, experiment_id: str) -> Experiment:
    """The experiment with that id; ExperimentNotFound lists the latest ones."""
    with store.read() as conn:
        row = conn.execute(sa.select(experiments).where(experiments.c.id == experiment_id)).first()
        if row is None:
            recent = conn.execute(
                sa.select(experiments.c.id).order_by(experiments.c.started_at.desc()).limit(5)
            ).scalars()
            listed = ", ".join(recent) or "none yet"
            raise ExperimentNotFound(
                f"No experiment {experiment_id!r} (latest: {listed}); `slipway experiment list` "
                "shows them all."
            )
    return _experiment(row)


def running(store: Store, model: str) -> Experiment | None:
    """The experiment running for ``model``, if any."""
    with store.read() as conn:
        return _running(conn, model)


def all_running(store: Store) -> list[Experiment]:
    """Every running experiment (what serving workers follow)."""
    with store.read() as conn:
        rows = conn.execute(sa.select(experiments).where(experiments.c.status == RUNNING)).all()
    return [_experiment(r) for r in rows]


def list_experiments(store: Store, model: str | None = None) -> list[Experiment]:
    """Experiments, newest first (of one model, or all)."""
    query = sa.select(experiments).order_by(experiments.c.started_at.desc())
    if model is not None:
        query = query.where(experiments.c.model_name == model)
    with store.read() as conn:
        return [_experiment(r) for r in conn.execute(query).all()]


def stop(
    store: Store,
    experiment_id: str,
    *,
    by: str,
    decision: str,
    reason: str,
    report: dict[str, Any] | None = None,
) -> Experiment | None:
    """Stop a running experiment; None if it was no longer running (someone stopped it first)."""
    now = utcnow()
    with store.write() as conn:
        done = conn.execute(
            experiments.update()
            .where(experiments.c.id == experiment_id, experiments.c.status == RUNNING)
            .values(
                status=STOPPED,
                stopped_at=now,
                updated_at=now,
                stopped_by=by,
                decision=decision,
                stop_reason=reason,
                report=report,
            )
        )
        if done.rowcount == 0:
            return None
        row = conn.execute(sa.select(experiments).where(experiments.c.id == experiment_id)).one()
    return _experiment(row)


def set_split(store: Store, experiment_id: str, split: float) -> Experiment:
    """Change a running experiment's split; a new phase starts now."""
    now = utcnow()
    with store.write() as conn:
        row = conn.execute(
            sa.select(experiments).where(experiments.c.id == experiment_id).with_for_update()
        ).first()
        if row is None or row.status != RUNNING:
            raise ExperimentConflict(f"Experiment {experiment_id!r} is not running.")
        phases = [*row.phases, {"split": split, "started_at": now.isoformat()}]
        conn.execute(
            experiments.update()
            .where(experiments.c.id == experiment_id)
            .values(split=split, phases=phases, updated_at=now)
        )
        row = conn.execute(sa.select(experiments).where(experiments.c.id == experiment_id)).one()
    return _experiment(row)


# -- outcomes ----------------------------------------------------------------------------------


def record_outcomes(store: Store, items: Sequence[tuple[str, str, float]]) -> int:
    """Store ``(prediction_id, outcome, value)`` items; the first value per pair wins.

    Returns how many were new.
    """
    if not items:
        return 0
    now = utcnow()
    rows = [{"prediction_id": p, "outcome": o, "value": v, "received_at": now} for p, o, v in items]
    with store.write() as conn:
        stmt = (
            upsert(conn, outcomes)
            .on_conflict_do_nothing(index_elements=["prediction_id", "outcome"])
            .returning(outcomes.c.prediction_id)
        )
        return len(conn.execute(stmt, rows).all())


def outcome_values(store: Store, experiment: Experiment, outcome: str) -> dict[str, float]:
    """``{prediction_id: value}`` of one outcome over the experiment's current phase."""
    query = (
        sa.select(outcomes.c.prediction_id, outcomes.c.value)
        .join(predictions, predictions.c.prediction_id == outcomes.c.prediction_id)
        .where(*_in_phase(experiment), outcomes.c.outcome == outcome)
    )
    with store.read() as conn:
        return {r.prediction_id: float(r.value) for r in conn.execute(query)}


def outcome_counts(store: Store, experiment: Experiment) -> dict[str, int]:
    """How many predictions of the current phase got each outcome name."""
    query = (
        sa.select(outcomes.c.outcome, sa.func.count())
        .join(predictions, predictions.c.prediction_id == outcomes.c.prediction_id)
        .where(*_in_phase(experiment))
        .group_by(outcomes.c.outcome)
    )
    with store.read() as conn:
        return {str(name): int(n) for name, n in conn.execute(query)}


# -- the experiment's traffic ------------------------------------------------------------------


def log(store: Store, experiment: Experiment, *, labeled_only: bool = False) -> ExperimentLog:
    """The experiment's rows of the prediction log in its current phase, with their labels."""
    p = predictions
    query = (
        sa.select(
            p.c.prediction_id,
            p.c.created_at,
            p.c.variant,
            p.c.version,
            p.c.unit_id,
            p.c.outputs,
            p.c.latency_ms,
            p.c.shadow_version,
            p.c.shadow_outputs,
            feedback.c.label,
            feedback.c.prediction_id.label("labeled"),
        )
        .select_from(
            p.join(
                feedback, feedback.c.prediction_id == p.c.prediction_id, isouter=not labeled_only
            )
        )
        .where(*_in_phase(experiment))
        .order_by(p.c.created_at, p.c.prediction_id)
    )
    with store.read() as conn:
        rows = conn.execute(query).all()
    created = [r.created_at.replace(tzinfo=None) for r in rows]
    return ExperimentLog(
        ids=[r.prediction_id for r in rows],
        created_at=np.array(created, dtype="datetime64[us]"),
        arms=np.array([r.variant for r in rows], dtype=object),
        versions=np.array([r.version for r in rows], dtype=np.int64),
        units=[r.unit_id for r in rows],
        outputs=[r.outputs for r in rows],
        latency_ms=np.array([r.latency_ms for r in rows], dtype=float),
        shadow_versions=[r.shadow_version for r in rows],
        shadow_outputs=[r.shadow_outputs for r in rows],
        labeled=np.array([r.labeled is not None for r in rows], dtype=bool),
        labels=[r.label for r in rows],
    )


def arm_counts(store: Store, experiment: Experiment) -> dict[str, int]:
    """Predictions per arm in the experiment's current phase."""
    query = (
        sa.select(predictions.c.variant, sa.func.count())
        .where(*_in_phase(experiment))
        .group_by(predictions.c.variant)
    )
    with store.read() as conn:
        return {str(arm): int(n) for arm, n in conn.execute(query)}


def refusals(store: Store, experiment: Experiment) -> dict[int, int]:
    """Requests refused for breaking the contract (422) per version of the experiment's model
    since its current phase began."""
    v = validation_failures
    query = (
        sa.select(v.c.version, sa.func.count())
        .where(v.c.model_name == experiment.model, v.c.created_at >= experiment.phase_started_at)
        .group_by(v.c.version)
    )
    with store.read() as conn:
        return {int(version): int(n) for version, n in conn.execute(query)}


def inputs(store: Store, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """The logged inputs of predictions, by id."""
    ids = list(ids)
    out: dict[str, dict[str, Any]] = {}
    with store.read() as conn:
        for i in range(0, len(ids), _CHUNK):
            chunk = ids[i : i + _CHUNK]
            query = sa.select(predictions.c.prediction_id, predictions.c.inputs).where(
                predictions.c.prediction_id.in_(chunk)
            )
            out.update({r.prediction_id: r.inputs for r in conn.execute(query)})
    return out


# -- helpers -----------------------------------------------------------------------------------


def _in_phase(experiment: Experiment) -> list[sa.ColumnElement[bool]]:
    return [
        predictions.c.model_name == experiment.model,
        predictions.c.created_at >= experiment.phase_started_at,
        predictions.c.experiment == experiment.id,
    ]


def _running(conn: sa.Connection, model: str) -> Experiment | None:
    row = conn.execute(
        sa.select(experiments).where(
            experiments.c.model_name == model, experiments.c.status == RUNNING
        )
    ).first()
    return None if row is None else _experiment(row)


def _already_running(other: Experiment) -> ExperimentConflict:
    return ExperimentConflict(
        f"Model {other.model!r} already has a running experiment, {other.id!r} ({other.mode}, "
        f"candidate version {other.candidate_version}, started "
        f"{other.started_at:%Y-%m-%d %H:%M} UTC); stop it first: "
        f"slipway experiment stop {other.model} --abandon (or --promote)."
    )


def _values(e: Experiment) -> dict[str, Any]:
    return {
        "id": e.id,
        "model_name": e.model,
        "mode": e.mode,
        "status": e.status,
        "control_version": e.control_version,
        "candidate_version": e.candidate_version,
        "split": e.split,
        "metric": e.metric,
        "outcome": e.outcome,
        "unit_field": e.unit_field,
        "salt": e.salt,
        "config": e.config,
        "phases": e.phases,
        "started_at": e.started_at,
        "started_by": e.started_by,
        "updated_at": e.updated_at,
    }


def _experiment(row: Any) -> Experiment:
    return Experiment(
        id=row.id,
        model=row.model_name,
        mode=row.mode,
        status=row.status,
        control_version=int(row.control_version),
        candidate_version=int(row.candidate_version),
        split=float(row.split),
        metric=row.metric,
        outcome=row.outcome,
        unit_field=row.unit_field,
        salt=row.salt,
        config=dict(row.config),
        phases=list(row.phases),
        started_at=row.started_at,
        started_by=row.started_by,
        updated_at=row.updated_at,
        stopped_at=row.stopped_at,
        stopped_by=row.stopped_by,
        decision=row.decision,
        stop_reason=row.stop_reason,
        report=row.report,
    )
