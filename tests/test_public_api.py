"""The public surface: a sorted, complete __all__ and the notebook workflow end to end."""

from __future__ import annotations

import numpy as np

import slipway
from slipway.exceptions import SlipwayError


def test_all_is_sorted_and_complete():
    """__all__ is sorted and names every public attribute of the package."""
    assert slipway.__all__ == sorted(slipway.__all__)
    public = {
        name
        for name in vars(slipway)
        if not name.startswith("_") and not isinstance(getattr(slipway, name), type(slipway))
    }
    public.discard("annotations")
    assert public == set(slipway.__all__) - {"__version__"}


def test_every_error_is_a_slipway_error_and_a_builtin():
    """Each leaf derives from SlipwayError, and the documented ones from a builtin too."""
    assert issubclass(slipway.ContractViolation, ValueError)
    assert issubclass(slipway.ModelNotFound, LookupError)
    assert issubclass(slipway.ArtifactMissing, FileNotFoundError)
    assert issubclass(slipway.MissingDependency, ImportError)
    for name in slipway.__all__:
        obj = getattr(slipway, name)
        if isinstance(obj, type) and issubclass(obj, Warning):
            assert issubclass(obj, slipway.SlipwayWarning)
        elif isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, SlipwayError)


def test_notebook_workflow(env, make_fitted):
    """register -> promote -> load -> predict -> rollback, via the top-level functions."""
    fitted = make_fitted("array")
    mv = slipway.register(
        fitted.pipeline,
        "fraud",
        fitted.X_train,
        fitted.y_train,
        X_val=fitted.X_val,
        y_val=fitted.y_val,
        description="GBC v1",
    )
    assert (mv.name, mv.version, len(mv.sha256)) == ("fraud", 1, 64)
    assert mv.metrics["accuracy"] > 0.5
    slipway.promote("fraud", mv.version, alias="production")
    model = slipway.load("fraud@production")
    np.testing.assert_array_equal(
        model.predict(fitted.X_val), fitted.pipeline.predict(fitted.X_val)
    )
    np.testing.assert_array_equal(
        model.predict_proba(fitted.X_val), fitted.pipeline.predict_proba(fitted.X_val)
    )
    slipway.register(fitted.pipeline, "fraud", fitted.X_train)
    slipway.promote("fraud", 2)
    assert slipway.load("fraud").version.version == 2
    assert slipway.load("fraud:1").version.version == 1
    assert slipway.rollback("fraud", alias="production").version == 1
