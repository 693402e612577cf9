"""The public surface: a sorted, complete __all__ and the notebook workflow end to end."""

from __future__ import annotations

import numpy as np
import pytest

import slipway
from slipway.exceptions import SlipwayError


def test_all_is_sorted_and_complete():
    """__all__ is sorted and names every public attribute of the package."""
    assert slipway.__all__ == sorted(slipway.__all__)
    public = {
        name
        for name in dir(slipway)  # dir: names imported on first use (slipway/_lazy.py) too
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


def test_option_errors_on_public_paths_are_leaves_of_the_tree(registry, make_fitted, tmp_path):
    """Bad options to register and score_file raise known errors (and still ValueError)."""
    from slipway.contract import Contract
    from slipway.exceptions import ConfigError, InvalidDigest, InvalidModel

    fitted = make_fitted("frame")
    with pytest.raises(ConfigError, match="unseen must be"):
        Contract.learn(fitted.X_train, unseen="ignore")
    with pytest.raises(InvalidModel, match="bounds name columns"):
        Contract.learn(fitted.X_train, bounds={"nope": (0, 1)})
    with pytest.raises(InvalidDigest, match="not a hex sha256"):
        registry.artifacts.path("abc")
    mv = registry.register(fitted.pipeline, "m", fitted.X_train)
    path = tmp_path / "in.csv"
    fitted.X_val.to_csv(path, index=False)
    for options in ({"engine": "spark"}, {"chunk_size": 0}):
        with pytest.raises(ConfigError) as caught:
            slipway.score_file(mv.ref, path, registry=registry, **options)
        assert isinstance(caught.value, ValueError)
