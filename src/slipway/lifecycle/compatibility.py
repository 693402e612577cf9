"""The gate's model-based checks: contract compatibility with the champion, invariance under
declared-irrelevant perturbations, and speed on the serving backend.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import numpy as np
import pandas as pd

from slipway.contract import Contract, FieldSpec
from slipway.lifecycle.comparisons import Outcome
from slipway.lifecycle.policy import CheckPolicy
from slipway.predict import Model
from slipway.versions import ModelVersion

# A field's kind may widen (an integer field becoming a number) but never narrow.
_WIDER = {("integer", "number")}


def contract_problems(champion: Contract, candidate: Contract) -> list[str]:
    """Ways a request the champion accepts could be refused by the candidate."""
    problems: list[str] = []
    if champion.input_kind != candidate.input_kind:
        problems.append(f"input kind changed from {champion.input_kind} to {candidate.input_kind}")
    theirs = {f.name: f for f in champion.fields}
    mine = {f.name: f for f in candidate.fields}
    for name in theirs.keys() - mine.keys():
        problems.append(f"field {name!r} was dropped: requests that send it would be refused")
    for name in mine.keys() - theirs.keys():
        problems.append(f"field {name!r} is new: requests without it would be refused")
    for name in [n for n in theirs if n in mine]:
        problems.extend(_field_problems(theirs[name], mine[name], champion, candidate))
    if candidate.abs_limit < champion.abs_limit:
        problems.append(
            f"abs_limit narrowed from {champion.abs_limit:g} to {candidate.abs_limit:g}"
        )
    return problems


def band_notes(champion: Contract, candidate: Contract) -> list[str]:
    """Plausibility bands that narrowed while still holding the champion's training range:
    reported, not failed (the band is derived from each version's own training data)."""
    theirs = {f.name: f for f in champion.fields}
    notes = []
    for new in candidate.fields:
        old = theirs.get(new.name)
        if old is None or old.kind not in ("number", "integer"):
            continue
        if _above(new.low, old.low) or _above(old.high, new.high):
            notes.append(
                f"field {new.name!r}: plausibility band {_rng(old.low, old.high)} -> "
                f"{_rng(new.low, new.high)}"
            )
    return notes


def _rng(low: float | None, high: float | None) -> str:
    return f"[{'-inf' if low is None else f'{low:g}'}, {'inf' if high is None else f'{high:g}'}]"


def _field_problems(
    old: FieldSpec, new: FieldSpec, old_contract: Contract, new_contract: Contract
) -> list[str]:
    out = []
    where = f"field {old.name!r}"
    if old.kind != new.kind and (old.kind, new.kind) not in _WIDER:
        out.append(f"{where}: kind changed from {old.kind} to {new.kind}")
    if old.nullable and not new.nullable:
        out.append(f"{where}: nulls were accepted and would now be refused")
    if old.kind in ("number", "integer") and new.kind in ("number", "integer"):
        # The band beyond the training range is derived from it and moves with every
        # retraining; refusing a value the champion was trained on breaks real clients.
        if _above(new.low, old.min):
            out.append(
                f"{where}: values down to {old.min:g} (the champion's training data) were "
                f"accepted; now nothing below {new.low:g}"
            )
        if _above(old.max, new.high):
            out.append(
                f"{where}: values up to {old.max:g} (the champion's training data) were "
                f"accepted; now nothing above {new.high:g}"
            )
    if old.kind in ("category", "boolean") and new.kind == old.kind:
        # per field: the pipeline may flag unseen categories of some fields only
        rejects_unseen = new_contract.unseen_for(new) == "reject" and new.categories is not None
        if rejects_unseen and old.categories is None:
            out.append(f"{where}: any text was accepted; now only {len(new.categories or ())}")
        elif rejects_unseen and old.categories is not None:
            dropped = [c for c in old.categories if c not in set(new.categories or ())]
            if dropped:
                shown = ", ".join(repr(c) for c in dropped[:10])
                out.append(f"{where}: categories no longer accepted: {shown}")
            if old_contract.unseen_for(old) == "flag":
                out.append(f"{where}: unseen categories were let through and would be refused")
    return out


def _above(a: float | None, b: float | None) -> bool:
    """``a`` is a tighter limit than ``b`` (None is unlimited)."""
    if a is None:
        return False
    return b is None or a > b


def check_contract(candidate: ModelVersion, champion: ModelVersion | None) -> Outcome:
    """Every request the champion's contract accepts must be accepted by the candidate's."""
    if champion is None:
        return Outcome("contract", "skip", "no champion to compare with", {})
    problems = contract_problems(champion.contract, candidate.contract)
    details = {
        "champion": champion.ref,
        "problems": problems,
        "notes": band_notes(champion.contract, candidate.contract),
    }
    if problems:
        return Outcome(
            "contract",
            "fail",
            f"{len(problems)} way(s) clients of {champion.ref} would break: {problems[0]}",
            details,
        )
    return Outcome("contract", "pass", f"accepts every request {champion.ref} accepts", details)


# -- invariance --------------------------------------------------------------------------------


def perturbations(frame: pd.DataFrame, perturb: dict[str, Any]) -> list[tuple[str, pd.DataFrame]]:
    """Copies of ``frame`` with one declared-irrelevant change each, labeled for the report."""
    out = []
    for name, change in perturb.items():
        if name not in frame:
            continue
        if isinstance(change, list):
            values = [str(v) for v in change]
            text = frame[name].astype(object).map(str)
            for value in values:
                moved = frame.copy()
                inside = text.isin(values) & (text != value)
                if inside.any():
                    moved.loc[inside.to_numpy(), name] = value
                    out.append((f"{name} -> {value}", moved.loc[inside.to_numpy()]))
        else:
            for sign in (1, -1):
                moved = frame.copy()
                moved[name] = pd.to_numeric(moved[name], errors="coerce") + sign * float(change)
                out.append((f"{name} {'+' if sign > 0 else '-'}{change:g}", moved))
    return out


def _answers(model: Model, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, Any]:
    scored = model.score(frame.reset_index(drop=True), on_error="split")
    out = scored.values if model.task == "regression" else scored.labels
    return scored.rows, np.asarray(out), scored.probabilities


def check_invariance(model: Model, frame: pd.DataFrame, policy: CheckPolicy) -> Outcome:
    """Label flips and probability (or value) changes under each declared perturbation."""
    ip = policy.invariance
    if not ip.perturb:
        return Outcome("invariance", "skip", "no perturbations declared in the policy", {})
    base = frame.iloc[: ip.rows].reset_index(drop=True)
    rows0, out0, proba0 = _answers(model, base)
    index0 = pd.Series(np.arange(len(rows0)), index=rows0)
    results: list[dict[str, Any]] = []
    for label, moved in perturbations(base, ip.perturb):
        positions = moved.index.to_numpy()
        rows1, out1, proba1 = _answers(model, moved)
        kept = positions[rows1]
        ok = np.isin(kept, rows0)
        ref = index0.loc[kept[ok]].to_numpy()
        entry: dict[str, Any] = {
            "perturbation": label,
            "rows": int(ok.sum()),
            "refused": int(len(positions) - ok.sum()),
        }
        if model.task == "regression":
            change = np.abs(out1[ok].astype(float) - out0[ref].astype(float))
            entry["max_value_change"] = float(change.max()) if change.size else 0.0
        else:
            entry["label_flips"] = float(np.mean(out1[ok] != out0[ref])) if ok.any() else 0.0
            if proba0 is not None and proba1 is not None and ok.any():
                entry["max_probability_change"] = float(np.max(np.abs(proba1[ok] - proba0[ref])))
        results.append(entry)
    bad = [
        r
        for r in results
        if r.get("label_flips", 0.0) > ip.max_label_flips
        or r.get("max_probability_change", 0.0) > ip.max_probability_change
        or (
            ip.max_value_change is not None and r.get("max_value_change", 0.0) > ip.max_value_change
        )
    ]
    details = {"perturbations": results, "limits": ip.model_dump(exclude={"perturb", "rows"})}
    if bad:
        worst = bad[0]
        return Outcome(
            "invariance",
            "fail",
            f"predictions move under {worst['perturbation']}: "
            + ", ".join(f"{k} {worst[k]:.4g}" for k in worst if k.startswith(("label", "max"))),
            details,
        )
    return Outcome("invariance", "pass", f"stable under {len(results)} perturbation(s)", details)


# -- speed -------------------------------------------------------------------------------------


def _latency(
    model: Model, rows: list[pd.DataFrame], batch: pd.DataFrame, repeats: int
) -> dict[str, float]:
    model.score(rows[0])  # warm caches (validation plans, ONNX session)
    single = []
    for i in range(repeats):
        row = rows[i % len(rows)]
        t0 = time.perf_counter()
        model.score(row)
        single.append(time.perf_counter() - t0)
    batched = []
    for _ in range(5):
        t0 = time.perf_counter()
        model.score(batch)
        batched.append(time.perf_counter() - t0)
    return {
        "row_ms": statistics.median(single) * 1e3,
        "batch_1000_ms": statistics.median(batched) * 1e3,
    }


def check_speed(
    candidate: Model, champion: Model | None, frame: pd.DataFrame, policy: CheckPolicy
) -> Outcome:
    """Median in-process latency of one row and of a 1,000-row batch, on the backend each
    version is served with; fails when the candidate is slower than the champion by more than
    ``max_slowdown`` on both, or above an absolute limit."""
    sp = policy.speed
    sample = frame.reset_index(drop=True)
    rows = [sample.iloc[[i]] for i in range(min(len(sample), 50))]
    batch = sample.iloc[np.arange(1000) % len(sample)].reset_index(drop=True)
    mine = _latency(candidate, rows, batch, sp.repeats)
    onnx = candidate.version.meta.get("onnx", {})
    details: dict[str, Any] = {
        "candidate": {**mine, "backend": candidate.backend, "onnx": onnx},
        "limits": sp.model_dump(),
    }
    problems = []
    if champion is not None:
        theirs = _latency(champion, rows, batch, sp.repeats)
        details["champion"] = {**theirs, "backend": champion.backend}
        ratios = {k: mine[k] / theirs[k] for k in mine if theirs[k] > 0}
        details["slowdown"] = ratios
        if ratios and min(ratios.values()) > sp.max_slowdown:
            problems.append(
                f"{min(ratios.values()):.1f}x slower than the champion (limit {sp.max_slowdown}x)"
            )
    if sp.max_row_ms is not None and mine["row_ms"] > sp.max_row_ms:
        problems.append(f"{mine['row_ms']:.2f} ms per row (limit {sp.max_row_ms} ms)")
    if sp.max_batch_ms is not None and mine["batch_1000_ms"] > sp.max_batch_ms:
        problems.append(f"{mine['batch_1000_ms']:.1f} ms per 1,000 rows (limit {sp.max_batch_ms})")
    accepted = "ONNX accepted" if onnx.get("accepted") else "scikit-learn (ONNX not accepted)"
    text = (
        f"{mine['row_ms']:.2f} ms per row, {mine['batch_1000_ms']:.1f} ms per 1,000 rows on "
        f"{candidate.backend}; {accepted}"
    )
    if problems:
        return Outcome("speed", "fail", "; ".join(problems), details)
    return Outcome("speed", "pass", text, details)
