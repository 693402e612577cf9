"""What a fitted pipeline tolerates in its input: nulls, and categories it never saw.

Registration follows each input column through the fitted pipeline and infers, where the answer
is unambiguous, what the contract may let through:

- **nulls** are handled when the column meets an imputer of NaN before any step that refuses
  NaN (scalers pass NaN along; an estimator that accepts NaN, such as
  ``HistGradientBoostingClassifier``, handles it itself);
- **unseen categories** are handled when the column reaches an encoder that tolerates unknown
  values (``OneHotEncoder(handle_unknown="ignore" | "infrequent_if_exist")``,
  ``OrdinalEncoder(handle_unknown="use_encoded_value")``, ``TargetEncoder``) after steps that
  only impute.

A column a ``ColumnTransformer`` drops tolerates anything. Every other step (a
``FunctionTransformer``, an estimator Slipway does not know) counts as refusing, so the contract
stays strict unless the pipeline clearly copes.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Literal

from sklearn.compose import ColumnTransformer
from sklearn.impute import KNNImputer, SimpleImputer
from sklearn.pipeline import FeatureUnion, Pipeline
from sklearn.preprocessing import (
    FunctionTransformer,
    OneHotEncoder,
    OrdinalEncoder,
    TargetEncoder,
)
from sklearn.utils import get_tags
from sklearn.utils._missing import is_scalar_nan

Hazard = Literal["null", "unseen"]
HAZARDS: tuple[Hazard, ...] = ("null", "unseen")
_HANDLED, _PASSES, _REFUSED = "handled", "passes", "refused"
# (fate, why): why names the step that handles the hazard, for the model card.
_Fate = tuple[str, str]


def tolerated(pipeline: Any, names: Sequence[str]) -> dict[str, dict[str, str]]:
    """Per input column, the hazards the fitted ``pipeline`` handles and the step that does.

    ``names`` are the input columns in training order. A column absent from the result
    handles neither hazard::

        {"amount": {"null": "SimpleImputer (step pre__num)"},
         "country": {"unseen": "OneHotEncoder(handle_unknown='ignore') (step pre__cat)"}}
    """
    out: dict[str, dict[str, str]] = {}
    for index, name in enumerate(names):
        for hazard in HAZARDS:
            fate, why = _walk(pipeline, index, hazard, ())
            if fate == _HANDLED:
                out.setdefault(name, {})[hazard] = why
    return out


def _walk(node: Any, column: int | None, hazard: Hazard, path: tuple[str, ...]) -> _Fate:
    """Where a bad value in input ``column`` (None: position unknown) ends up in ``node``."""
    if node is None or (isinstance(node, str) and node == "passthrough"):
        return _PASSES, ""
    if isinstance(node, str) and node == "drop":
        return _HANDLED, f"dropped {_at(path)}"
    if isinstance(node, Pipeline):
        for name, step in node.steps:
            fate, why = _walk(step, column, hazard, (*path, name))
            if fate != _PASSES:
                return fate, why
            column = None  # past the first step, which output column is ours is not tracked
        return _PASSES, ""
    if isinstance(node, ColumnTransformer | FeatureUnion):
        if column is None:
            return _REFUSED, ""
        fates = [_walk(t, c, hazard, (*path, n)) for n, t, c in _branches(node, column)]
        if not fates:
            return _HANDLED, f"dropped {_at(path)}"
        if any(f == _REFUSED for f, _ in fates):
            return _REFUSED, ""
        if all(f == _HANDLED for f, _ in fates):
            return _HANDLED, "; ".join(dict.fromkeys(why for _, why in fates))
        return _PASSES, ""
    return _step(node, hazard, path)


def _branches(node: Any, column: int) -> Iterator[tuple[str, Any, int]]:
    """The branches that receive ``column``, with its position among their inputs."""
    if isinstance(node, FeatureUnion):
        for name, transformer in node.transformer_list:
            if not (isinstance(transformer, str) and transformer == "drop"):
                yield name, transformer, column
        return
    indices = getattr(node, "_transformer_to_input_indices", None) or {}
    for name, transformer, _ in node.transformers_:
        taken = list(indices.get(name, []))
        if column in taken:
            yield name, transformer, taken.index(column)


def _step(step: Any, hazard: Hazard, path: tuple[str, ...]) -> _Fate:
    kind = type(step).__name__
    if isinstance(step, FunctionTransformer) and step.func is None:
        return _PASSES, ""  # the identity: what a fitted ColumnTransformer makes of "passthrough"
    imputer = isinstance(step, SimpleImputer | KNNImputer) or kind == "IterativeImputer"
    if hazard == "null":
        if imputer and is_scalar_nan(getattr(step, "missing_values", None)):
            return _HANDLED, f"{kind} {_at(path)}"
        if isinstance(step, OneHotEncoder | OrdinalEncoder | TargetEncoder):
            return _REFUSED, ""  # a null would be a category of its own: not unambiguous
        if _allows_nan(step):
            if hasattr(step, "transform"):
                return _PASSES, ""
            return _HANDLED, f"{kind} {_at(path)}, which accepts missing values"
        return _REFUSED, ""
    if imputer:
        return _PASSES, ""
    unknown = getattr(step, "handle_unknown", None)
    if (isinstance(step, OneHotEncoder) and unknown in ("ignore", "infrequent_if_exist")) or (
        isinstance(step, OrdinalEncoder) and unknown == "use_encoded_value"
    ):
        return _HANDLED, f"{kind}(handle_unknown={unknown!r}) {_at(path)}"
    if isinstance(step, TargetEncoder):
        return _HANDLED, f"TargetEncoder {_at(path)}, which encodes them as the target mean"
    return _REFUSED, ""


def _allows_nan(step: Any) -> bool:
    try:
        return bool(get_tags(step).input_tags.allow_nan)
    except (AttributeError, TypeError, ValueError):  # not a scikit-learn estimator
        return False


def _at(path: tuple[str, ...]) -> str:
    """A step's place as scikit-learn's parameter names spell it: ``(step pre__num)``."""
    return f"(step {'__'.join(path)})" if path else "(the estimator)"
