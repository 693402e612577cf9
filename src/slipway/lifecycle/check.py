"""`slipway check`: the validation gate a candidate version passes before a person promotes it.

:func:`check` compares the candidate with the champion (``production`` by default) on the same
holdout rows: metrics with a paired test, slice metrics, calibration, contract compatibility,
invariance and speed. The result is stored with the candidate (``check_results``), recorded in
the audit trail, and shown by ``slipway models show``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from slipway.clock import parse_duration, utcnow
from slipway.exceptions import CannotCheck, ModelNotFound
from slipway.lifecycle.comparisons import (
    Answers,
    Outcome,
    compare_calibration,
    compare_metrics,
    compare_slices,
)
from slipway.lifecycle.compatibility import check_contract, check_invariance, check_speed
from slipway.lifecycle.policy import CheckPolicy
from slipway.predict import Model
from slipway.problems import jsonable
from slipway.registry import Registry
from slipway.store import lifecycle as store_lifecycle
from slipway.store.lifecycle import StoredCheck
from slipway.versions import ModelVersion

PASS, FAIL = "pass", "fail"


@dataclass
class CheckResult:
    """The gate's verdict on a candidate: passed when no check failed."""

    candidate: str
    champion: str | None
    checks: list[Outcome]
    holdout: dict[str, Any]
    policy: dict[str, Any]
    created_at: datetime = field(default_factory=utcnow)
    id: int | None = None

    @property
    def passed(self) -> bool:
        """True when no check failed (skipped checks do not fail the gate)."""
        return all(c.verdict != FAIL for c in self.checks)

    @property
    def status(self) -> str:
        """``pass`` or ``fail``."""
        return PASS if self.passed else FAIL

    @property
    def exit_code(self) -> int:
        """0 pass, 1 fail: what `slipway check` exits with."""
        return 0 if self.passed else 1

    @property
    def failed(self) -> list[str]:
        """Names of the failed checks."""
        return [c.name for c in self.checks if c.verdict == FAIL]

    def summary(self) -> dict[str, Any]:
        """Each check's verdict and sentence: what listings show."""
        return {
            "status": self.status,
            "champion": self.champion,
            "holdout_rows": self.holdout.get("rows"),
            "checks": {c.name: {"verdict": c.verdict, "summary": c.summary} for c in self.checks},
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready view (stored in ``check_results.result``)."""
        return _clean(
            {
                "id": self.id,
                "candidate": self.candidate,
                "champion": self.champion,
                "status": self.status,
                "passed": self.passed,
                "created_at": self.created_at.isoformat(),
                "holdout": self.holdout,
                "policy": self.policy,
                "checks": [c.to_dict() for c in self.checks],
            }
        )

    def to_json(self, *, indent: int | None = 2) -> str:
        """Strict JSON (no NaN or Infinity)."""
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    def to_html(self) -> str:
        """One self-contained HTML page."""
        from slipway.lifecycle.report import render_html

        return render_html(self)

    def __rich__(self) -> Any:
        from slipway.lifecycle.report import render_table

        return render_table(self)


def check(
    registry: Registry,
    candidate: str,
    *,
    against: str | None = "production",
    data: str | Path | pd.DataFrame | None = None,
    policy: CheckPolicy | None = None,
    store: bool = True,
    clock: Callable[[], datetime] = utcnow,
) -> CheckResult:
    """Run the gate on ``candidate`` (a reference) against ``against`` (an alias of the same
    model, a reference, or None for no champion).

    ``data`` is the holdout: a Parquet or CSV file, or a DataFrame, holding the model's fields
    and the target column (``policy.target``, else the one column that is not a field).
    Without it, the model's served traffic of the last ``policy.holdout_since`` that has
    ground truth is the holdout. Raises CannotCheck when there is no usable holdout.
    """
    policy = policy or CheckPolicy()
    cand = registry.get(candidate)
    champ = _champion(registry, cand, against)
    if data is None:
        since = parse_duration(policy.holdout_since, "holdout_since")
        end = clock()
        frame, labels = store_lifecycle.labeled_traffic(registry.store, cand.name, end - since, end)
        source: dict[str, Any] = {
            "source": "prediction log",
            "since": policy.holdout_since,
            "model": cand.name,
        }
    else:
        frame, labels, source = _read_holdout(data, cand, policy)
    if len(frame) < policy.min_rows:
        where = source.get("path") or f"the labeled traffic of the last {policy.holdout_since}"
        raise CannotCheck(
            f"Cannot check {cand.ref}: {where} has {len(frame)} usable rows, fewer than "
            f"min_rows ({policy.min_rows}); give a holdout with --data FILE."
        )
    cand_model = registry.load(cand.ref)
    champ_model = registry.load(champ.ref) if champ is not None else None
    holdout = _Holdout.build(frame, labels, cand_model, champ_model)
    if holdout.n < policy.min_rows:
        raise CannotCheck(
            f"Cannot check {cand.ref}: only {holdout.n} holdout rows are valid for "
            f"{'both models' if champ else 'the candidate'} and have a known label (min_rows "
            f"{policy.min_rows}); {holdout.describe()}."
        )
    source.update(rows=holdout.n, **holdout.counts)
    kinds = {f.name: f.kind for f in cand.contract.fields}
    y, mine, theirs = holdout.y, holdout.cand, holdout.champ
    outcomes = [
        compare_metrics(cand.task, y, mine, theirs, policy),
        compare_slices(cand.task, y, holdout.frame, kinds, mine, theirs, policy),
    ]
    if cand.task == "classification":
        outcomes.append(compare_calibration(y, mine, theirs, policy))
    outcomes.append(check_contract(cand, champ))
    outcomes.append(check_invariance(cand_model, holdout.frame, policy))
    backend = registry.settings.serve_backend
    outcomes.append(
        check_speed(
            registry.load(cand.ref, backend=backend),
            registry.load(champ.ref, backend=backend) if champ is not None else None,
            holdout.frame,
            policy,
        )
    )
    result = CheckResult(
        cand.ref,
        None if champ is None else champ.ref,
        outcomes,
        source,
        policy.to_dict(),
        created_at=clock(),
    )
    if store:
        _store(registry, cand, champ, result)
    return result


def checks_of(registry: Registry, ref: str, *, limit: int = 5) -> list[StoredCheck]:
    """The newest stored gate results of the version ``ref`` points at."""
    mv = registry.get(ref)
    return store_lifecycle.list_checks(registry.store, mv.name, mv.version, limit=limit)


def latest_checks(registry: Registry, name: str) -> dict[int, StoredCheck]:
    """The newest stored gate result of each version of model ``name``, by version (newest
    version first); ModelNotFound for an unknown model."""
    model = registry.resolve(name)[0]
    return {c.version: c for c in store_lifecycle.latest_checks(registry.store, model)}


def _store(
    registry: Registry, cand: ModelVersion, champ: ModelVersion | None, result: CheckResult
) -> None:
    from slipway.provenance import current_user

    actor = current_user(registry.settings.user)
    result.id = store_lifecycle.record_check(
        registry.store,
        model=cand.name,
        version=cand.version,
        against=None if champ is None else champ.version,
        actor=actor,
        passed=result.passed,
        summary=_clean(result.summary()),
        result=result.to_dict(),
    )
    registry.record_event(
        "check",
        cand.name,
        version=cand.version,
        detail={
            "check_id": result.id,
            "status": result.status,
            "against": result.champion,
            "failed": result.failed,
        },
    )


def _champion(registry: Registry, cand: ModelVersion, against: str | None) -> ModelVersion | None:
    if against is None or against.lower() == "none":
        return None
    ref = against if (":" in against or "@" in against) else f"{cand.name}@{against}"
    try:
        return registry.get(ref)
    except ModelNotFound:
        if "@" in ref and ":" not in against and "@" not in against:
            return None  # the model has no such alias yet: nothing to compare with
        raise


def _read_holdout(
    data: str | Path | pd.DataFrame, mv: ModelVersion, policy: CheckPolicy
) -> tuple[pd.DataFrame, list[Any], dict[str, Any]]:
    if isinstance(data, pd.DataFrame):
        frame, source = data, {"source": "frame"}
    else:
        path = Path(data)
        if not path.exists():
            raise CannotCheck(f"Holdout file {path} does not exist.")
        suffix = path.suffix.lower()
        if suffix in (".parquet", ".pq"):
            frame = pd.read_parquet(path)
        elif suffix == ".csv":
            frame = pd.read_csv(path)
        else:
            raise CannotCheck(f"Holdout file {path} is neither .parquet nor .csv.")
        source = {"source": "file", "path": str(path)}
    fields = set(mv.feature_names)
    target = policy.target
    if target is None:
        others = [c for c in frame.columns if c not in fields]
        if len(others) != 1:
            raise CannotCheck(
                f"The holdout has {len(others)} columns besides {mv.ref}'s fields "
                f"({', '.join(map(str, others[:8])) or 'none'}); name the label column with "
                'target = "..." in the policy file.'
            )
        target = str(others[0])
    if target not in frame:
        raise CannotCheck(f"The holdout has no target column {target!r}.")
    source["target"] = target
    labels = frame[target].tolist()
    return frame[[c for c in frame.columns if c != target]], labels, source


@dataclass
class _Holdout:
    """Holdout rows valid for both models with a known label, and both models' answers."""

    frame: pd.DataFrame
    y: np.ndarray
    cand: Answers
    champ: Answers | None
    counts: dict[str, int]

    @property
    def n(self) -> int:
        return len(self.y)

    def describe(self) -> str:
        return ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in self.counts.items())

    @classmethod
    def build(
        cls, frame: pd.DataFrame, labels: list[Any], cand: Model, champ: Model | None
    ) -> _Holdout:
        frame = frame.reset_index(drop=True)
        keep = np.ones(len(frame), dtype=bool)
        counts: dict[str, int] = {}
        scored = {}
        for role, model in (("candidate", cand), ("champion", champ)):
            if model is None:
                continue
            cols = [c for c in model.contract.names if c in frame]
            if len(cols) < len(model.contract.names):
                missing = sorted(set(model.contract.names) - set(cols))
                raise CannotCheck(f"The holdout lacks {model.ref}'s fields {missing}.")
            result = model.score(frame[cols], on_error="split")
            ok = np.zeros(len(frame), dtype=bool)
            ok[result.rows] = True
            counts[f"refused_by_{role}"] = int((~ok).sum())
            keep &= ok
            scored[role] = result
        if cand.task == "regression":
            y_num = pd.to_numeric(pd.Series(labels, dtype=object), errors="coerce").to_numpy(
                dtype=float
            )
            known = np.isfinite(y_num)
        else:
            keys = [str(jsonable(c)) for c in cand.classes or []]
            if champ is not None and [str(jsonable(c)) for c in champ.classes or []] != keys:
                raise CannotCheck(
                    f"{cand.ref} and {champ.ref} predict different classes; they cannot be "
                    "compared row by row."
                )
            text = np.array([str(jsonable(v)) for v in labels], dtype=object)
            known = np.isin(text, np.array(keys, dtype=object))
            y_num = np.array([keys.index(t) if k else -1 for t, k in zip(text, known, strict=True)])
        counts["unknown_labels"] = int((~known).sum())
        keep &= known
        answers = {
            role: _answers(model, scored[role], keep)
            for role, model in (("candidate", cand), ("champion", champ))
            if model is not None
        }
        return cls(
            frame.loc[keep].reset_index(drop=True),
            y_num[keep],
            answers["candidate"],
            answers.get("champion"),
            counts,
        )


def _answers(model: Model, scored: Any, keep: np.ndarray) -> Answers:
    position = np.full(len(keep), -1)
    position[scored.rows] = np.arange(len(scored.rows))
    take = position[keep]
    if model.task == "regression":
        return Answers(values=np.asarray(scored.values, dtype=float)[take])
    classes = list(model.classes or [])
    index = {c: i for i, c in enumerate(classes)}
    predicted = np.array([index[v] for v in scored.labels[take].tolist()], dtype=np.int64)
    proba = None if scored.probabilities is None else np.asarray(scored.probabilities)[take]
    return Answers(predicted=predicted, proba=proba)


def _clean(value: Any) -> Any:
    """NaN and infinities become None, numpy scalars Python numbers: strict JSON."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value
