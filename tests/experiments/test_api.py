"""slipway.experiments from Python: a sorted, complete __all__ and the whole life of one."""

from __future__ import annotations

import pytest

import slipway
import slipway.experiments as experiments


def test_all_is_sorted_and_complete():
    """__all__ is sorted and names every public attribute of the package."""
    assert experiments.__all__ == sorted(experiments.__all__)
    public = {
        n
        for n in dir(experiments)
        if not n.startswith("_")
        and n not in ("annotations", "Any", "Registry", "Settings")
        and not isinstance(getattr(experiments, n), type(experiments))
    }
    assert public == set(experiments.__all__)


def test_start_report_stop_from_python(env, two_versions):
    """The module functions act on the registry the environment points at."""
    started = experiments.start("fraud", mode="shadow", candidate=2)
    assert experiments.get("fraud").id == started.id
    assert [e.id for e in experiments.list_experiments()] == [started.id]
    assert experiments.status("fraud").verdict.code == "cannot_trust"
    assert experiments.report(started.id).experiment.mode == "shadow"
    with pytest.raises(slipway.ExperimentConflict, match="already has a running experiment"):
        experiments.start("fraud", mode="ab", candidate=2, split=0.5)
    stopped = experiments.stop("fraud", promote=False)
    assert stopped.decision == "abandoned"
    with pytest.raises(slipway.ExperimentNotFound):
        experiments.get("nope-1")
