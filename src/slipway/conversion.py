"""A fitted pipeline as an ONNX graph, in double precision where scikit-learn computes in double.

skl2onnx converts most pipelines, but its tree ensembles compare float32 features with float32
thresholds, and its imputer has no double kernel in onnxruntime: a random forest then differs
from scikit-learn by up to 0.17 near thresholds, regressors answer float32-rounded values, and
HistGradientBoosting does not convert at all. So :func:`convert` builds the graph with every
numeric input as float64 and hands skl2onnx converters of its own for what it gets wrong:

- **tree ensembles** (decision trees, random forests, extra trees, gradient boosting,
  HistGradientBoosting with missing values and native categorical splits) become one
  ``TreeEnsemble`` node (``ai.onnx.ml`` opset 5) with float64 thresholds and leaf values,
  followed by the model's own link (sigmoid or softmax for classifiers). Scikit-learn's own
  trees round their input to float32 before comparing it with a float64 threshold, and the
  graph does the same, so each row takes exactly the branches it takes in scikit-learn;
- **SimpleImputer** on numbers: ``Where(IsNaN(x), statistics, x)`` in float64.

Inputs are one ``[N, 1]`` tensor per contract field, in contract order (``[N, F]`` named ``X``
for array-trained models); ONNX may rename them, so callers feed them by position. Whatever
this builds, :func:`slipway.backends.assess` accepts only what matches scikit-learn on the
reference rows; :func:`convert` with ``precision="float"`` is skl2onnx's own float32 graph,
tried when the float64 one cannot be built or does not match.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

if TYPE_CHECKING:
    from slipway.contract import Contract

Precision = Literal["double", "float"]
# Tried in this order at registration; the first graph that matches scikit-learn serves.
PRECISIONS: tuple[Precision, ...] = ("double", "float")
# ONNX opsets of the graphs built here. TreeEnsemble is ai.onnx.ml 5, which skl2onnx does not
# know yet: it is added as version 3 and the graph's ai.onnx.ml import raised to 5 afterwards
# (onnxruntime checks the result when the session is built).
OPSETS = {"": 21, "ai.onnx.ml": 3}
_TREE_ENSEMBLE_ML = 5
_LEQ, _LT, _MEMBER = 0, 1, 6  # TreeEnsemble node modes
_SUM = 1  # TreeEnsemble aggregate function
_FLOAT, _DOUBLE = 1, 11  # ONNX tensor element types


def convert(pipeline: Any, contract: Contract, task: str, precision: Precision = "double") -> bytes:
    """The pipeline as a serialized ONNX graph taking the contract's fields as inputs."""
    from skl2onnx import convert_sklearn

    final = pipeline.steps[-1][1] if hasattr(pipeline, "steps") else pipeline
    options: dict[int, dict[str, Any]] = (
        {id(final): {"zipmap": False}} if task == "classification" else {}
    )
    if type(final).__name__ in ("KNeighborsClassifier", "KNeighborsRegressor"):
        # onnxruntime's CDist kernel instead of a Scan loop over the training rows: about 100x
        # faster for one row (16 ms -> 0.1 ms with 2,000 training rows), same distances.
        options.setdefault(id(final), {})["optim"] = "cdist"
    if precision == "double":
        graph = convert_sklearn(
            pipeline,
            initial_types=input_types(contract, precision, _takes_matrix(pipeline, contract)),
            target_opset=OPSETS,
            options=options or None,
            custom_conversion_functions=_converters(),
            custom_shape_calculators=dict.fromkeys(_tree_types(), _tree_shapes),
        )
        if any(node.op_type == "TreeEnsemble" for node in graph.graph.node):
            for opset in graph.opset_import:
                if opset.domain == "ai.onnx.ml":
                    opset.version = max(opset.version, _TREE_ENSEMBLE_ML)
    else:
        graph = convert_sklearn(
            pipeline, initial_types=input_types(contract, precision), options=options or None
        )
    data: bytes = graph.SerializeToString()
    return data


def input_types(
    contract: Contract, precision: Precision, matrix: bool = False
) -> list[tuple[str, Any]]:
    """The graph's inputs: numbers (and booleans, as 0/1) as float64 (or float32), strings;
    with ``matrix``, one ``[N, F]`` float64 input ``X`` (a pipeline whose first step takes the
    frame as one matrix: no ColumnTransformer to pick columns by name)."""
    from skl2onnx.common.data_types import (
        DoubleTensorType,
        FloatTensorType,
        Int64TensorType,
        StringTensorType,
    )

    number = DoubleTensorType if precision == "double" else FloatTensorType
    if contract.input_kind == "array" or (matrix and precision == "double"):
        return [("X", number([None, len(contract.fields)]))]
    types: list[tuple[str, Any]] = []
    for f in contract.fields:
        if f.kind in ("number", "boolean"):
            types.append((f.name, number([None, 1])))
        elif f.kind == "integer":
            types.append(
                (f.name, (number if precision == "double" else Int64TensorType)([None, 1]))
            )
        elif f.kind == "category" and (
            f.categories is not None and all(isinstance(c, str) for c in f.categories)
        ):
            types.append((f.name, StringTensorType([None, 1])))
        else:
            raise ValueError(f"field {f.name!r} of kind {f.kind} has no ONNX input type")
    return types


def _takes_matrix(pipeline: Any, contract: Contract) -> bool:
    """Whether a frame-trained pipeline reads its input as one numeric matrix."""
    from sklearn.compose import ColumnTransformer

    first = pipeline.steps[0][1] if hasattr(pipeline, "steps") else pipeline
    numeric = all(f.kind in ("number", "integer", "boolean") for f in contract.fields)
    return numeric and not isinstance(first, ColumnTransformer) and len(contract.fields) > 1


# -- converters handed to skl2onnx -----------------------------------------------------------


def _converters() -> dict[type, Any]:
    from sklearn.impute import SimpleImputer

    return {SimpleImputer: _convert_imputer, **dict.fromkeys(_tree_types(), _convert_trees)}


def _tree_types() -> tuple[type, ...]:
    from sklearn.ensemble import (
        ExtraTreesClassifier,
        ExtraTreesRegressor,
        GradientBoostingClassifier,
        GradientBoostingRegressor,
        HistGradientBoostingClassifier,
        HistGradientBoostingRegressor,
        RandomForestClassifier,
        RandomForestRegressor,
    )
    from sklearn.tree import (
        DecisionTreeClassifier,
        DecisionTreeRegressor,
        ExtraTreeClassifier,
        ExtraTreeRegressor,
    )

    return (
        DecisionTreeClassifier,
        DecisionTreeRegressor,
        ExtraTreeClassifier,
        ExtraTreeRegressor,
        RandomForestClassifier,
        RandomForestRegressor,
        ExtraTreesClassifier,
        ExtraTreesRegressor,
        GradientBoostingClassifier,
        GradientBoostingRegressor,
        HistGradientBoostingClassifier,
        HistGradientBoostingRegressor,
    )


def _tree_shapes(operator: Any) -> None:
    """Outputs in float64 whatever the input: values, or labels and probabilities."""
    from skl2onnx.common.data_types import DoubleTensorType, Int64TensorType, StringTensorType

    op = operator.raw_operator
    n = operator.inputs[0].get_first_dimension()
    if not hasattr(op, "classes_"):
        operator.outputs[0].type = DoubleTensorType([n, 1])
        return
    kind = np.asarray(op.classes_).dtype.kind
    operator.outputs[0].type = (Int64TensorType if kind in "iu" else StringTensorType)([n])
    operator.outputs[1].type = DoubleTensorType([n, len(op.classes_)])


def _convert_imputer(scope: Any, operator: Any, container: Any) -> None:
    """SimpleImputer on float64 numbers: missing values replaced by the learned statistics."""
    from skl2onnx.common.data_types import DoubleTensorType
    from skl2onnx.operator_converters.common import concatenate_variables
    from skl2onnx.operator_converters.imputer_op import convert_sklearn_imputer

    op = operator.raw_operator
    if not isinstance(operator.inputs[0].type, DoubleTensorType):
        convert_sklearn_imputer(scope, operator, container)
        return
    stats = np.asarray(op.statistics_, dtype=np.float64)
    if op.add_indicator or np.isnan(stats).any():
        raise NotImplementedError("SimpleImputer with indicators or empty features")
    graph = _Graph(scope, container)
    x = concatenate_variables(scope, operator.inputs, container)
    mv = op.missing_values
    if isinstance(mv, float) and np.isnan(mv):
        missing = graph.node("IsNaN", [x])
    else:
        missing = graph.node("Equal", [x, graph.const(np.array([float(mv)]))])
    graph.node("Where", [missing, graph.const(stats), x], out=operator.outputs[0].full_name)


def _convert_trees(scope: Any, operator: Any, container: Any) -> None:
    """A tree model as one TreeEnsemble node plus its link; see the module docstring."""
    from skl2onnx.common.data_types import DoubleTensorType
    from skl2onnx.operator_converters.common import concatenate_variables

    op = operator.raw_operator
    model = _tree_model(op)
    graph = _Graph(scope, container)
    x = concatenate_variables(scope, operator.inputs, container)
    if not isinstance(operator.inputs[0].type, DoubleTensorType):
        x = graph.node("Cast", [x], to=_DOUBLE)
    if model.float32_input:  # scikit-learn's own trees compare float32(x) <= threshold
        x = graph.node("Cast", [graph.node("Cast", [x], to=_FLOAT)], to=_DOUBLE)
    raw = graph.node("TreeEnsemble", [x], domain="ai.onnx.ml", **model.ensemble.attributes())
    if model.base is not None:
        raw = graph.node("Add", [raw, graph.const(model.base.reshape(1, -1))])
    outputs = operator.outputs
    if model.link in ("identity", "exp"):
        op_type = "Identity" if model.link == "identity" else "Exp"
        graph.node(op_type, [raw], out=outputs[0].full_name)
        return
    proba = outputs[1].full_name
    if model.link == "proba":
        graph.node("Identity", [raw], out=proba)
    elif model.link == "softmax":
        graph.node("Softmax", [raw], axis=1, out=proba)
    else:  # a binary model's probability of class 1, p: [1 - p, p]
        if model.link == "sigmoid2":
            raw = graph.node("Mul", [raw, graph.const(np.array([[2.0]]))])
        p1 = raw if model.link == "proba1" else graph.node("Sigmoid", [raw])
        p0 = graph.node("Sub", [graph.const(np.array([[1.0]])), p1])
        graph.node("Concat", [p0, p1], axis=1, out=proba)
    best = graph.node("ArgMax", [proba], axis=1, keepdims=0)
    classes = np.asarray(op.classes_)
    if classes.dtype.kind not in "iu":
        classes = classes.astype(str)
    graph.node("Gather", [graph.const(classes), best], out=outputs[0].full_name)


@dataclass
class _TreeModel:
    ensemble: _Ensemble
    link: str  # identity, exp (regressors); proba, proba1, sigmoid, sigmoid2, softmax
    base: np.ndarray | None = None
    float32_input: bool = True


def _tree_model(op: Any) -> _TreeModel:
    """What to build for a fitted tree model, or NotImplementedError."""
    if getattr(op, "n_outputs_", 1) != 1:
        raise NotImplementedError("multi-output trees")
    if hasattr(op, "_predictors"):
        return _hist_gradient_boosting(op)
    if hasattr(op, "learning_rate"):
        return _gradient_boosting(op)
    classifier = hasattr(op, "classes_")
    trees = [e.tree_ for e in op.estimators_] if hasattr(op, "estimators_") else [op.tree_]
    scale = 1.0 / len(trees)
    n_classes = len(op.classes_) if classifier else 1
    targets = 1 if n_classes <= 2 else n_classes
    ensemble = _Ensemble(targets)
    for tree in trees:
        values = tree.value[:, 0, :]
        if classifier:  # predict_proba: each leaf's class shares, averaged over the trees
            totals = values.sum(axis=1, keepdims=True)
            values = values / np.where(totals == 0, 1.0, totals)
        for k in range(targets):
            column = values[:, k + 1] if classifier and targets == 1 else values[:, k]
            ensemble.add(_SklearnTree(tree), k, column * scale)
    if not classifier:
        return _TreeModel(ensemble, "identity")
    return _TreeModel(ensemble, "proba1" if targets == 1 else "proba")


def _gradient_boosting(op: Any) -> _TreeModel:
    from sklearn.dummy import DummyClassifier, DummyRegressor

    if not (op.init_ == "zero" or isinstance(op.init_, DummyClassifier | DummyRegressor)):
        raise NotImplementedError("gradient boosting with a custom init estimator")
    n_iter, targets = op.estimators_.shape
    ensemble = _Ensemble(targets)
    for i in range(n_iter):
        for k in range(targets):
            tree = op.estimators_[i, k].tree_
            ensemble.add(_SklearnTree(tree), k, tree.value[:, 0, 0] * op.learning_rate)
    base = np.asarray(
        op._raw_predict_init(np.zeros((1, op.n_features_in_), dtype=np.float32)), np.float64
    ).ravel()
    if not hasattr(op, "classes_"):
        return _TreeModel(ensemble, "identity", base)
    return _TreeModel(ensemble, _classifier_link(op._loss), base)


def _hist_gradient_boosting(op: Any) -> _TreeModel:
    codes = _HistCodes(op)
    targets = op.n_trees_per_iteration_
    ensemble = _Ensemble(targets)
    for predictors in op._predictors:
        for k, predictor in enumerate(predictors):
            tree = _HistTree(predictor, codes)
            ensemble.add(tree, k, predictor.nodes["value"].astype(np.float64))
    base = np.asarray(op._baseline_prediction, dtype=np.float64).ravel()
    if hasattr(op, "classes_"):
        return _TreeModel(ensemble, _classifier_link(op._loss), base, float32_input=False)
    link = type(op._loss.link).__name__
    if link not in ("IdentityLink", "LogLink"):
        raise NotImplementedError(f"HistGradientBoosting with the {link}")
    return _TreeModel(
        ensemble, "identity" if link == "IdentityLink" else "exp", base, float32_input=False
    )


def _classifier_link(loss: Any) -> str:
    name = type(loss).__name__
    links = {"HalfBinomialLoss": "sigmoid", "ExponentialLoss": "sigmoid2"}
    if name == "HalfMultinomialLoss":
        return "softmax"
    if name not in links:
        raise NotImplementedError(f"a classifier with the {name}")
    return links[name]


# -- trees as TreeEnsemble attributes --------------------------------------------------------


class _SklearnTree:
    """A fitted ``sklearn.tree._tree.Tree``: ``x[feature] <= threshold`` goes left."""

    def __init__(self, tree: Any) -> None:
        self.left, self.right = tree.children_left, tree.children_right
        self.feature, self.threshold = tree.feature, tree.threshold
        missing = getattr(tree, "missing_go_to_left", None)
        self.missing_left = np.zeros(len(self.left), np.uint8) if missing is None else missing

    def is_leaf(self, node: int) -> bool:
        return bool(self.left[node] == -1)

    def split(self, node: int) -> tuple[int, float, list[float] | None, bool]:
        """(feature, threshold, categories going the member branch, member branch is left)."""
        return int(self.feature[node]), float(self.threshold[node]), None, True


class _HistCodes:
    """How a HistGradientBoosting model sees its input columns.

    With categorical features, the model first encodes them (an OrdinalEncoder placing them
    before the numeric ones; unknown categories become NaN) and its trees test the codes: the
    graph tests the raw values those codes stand for, in the input's own column order.
    """

    def __init__(self, op: Any) -> None:
        self.known, self.f_idx_map = op._bin_mapper.make_known_categories_bitsets()
        preprocessor = getattr(op, "_preprocessor", None)
        self.order = np.arange(op.n_features_in_)
        self.values: dict[int, np.ndarray] = {}  # model feature -> raw value of each code
        if preprocessor is None:
            return
        mask = np.asarray(op.is_categorical_, dtype=bool)
        self.order = np.concatenate([np.flatnonzero(mask), np.flatnonzero(~mask)])
        encoder = preprocessor.named_transformers_["encoder"]
        for i, categories in enumerate(encoder.categories_):
            try:
                self.values[i] = np.asarray(categories, dtype=np.float64)
            except (TypeError, ValueError):
                raise NotImplementedError("HistGradientBoosting on string categories") from None

    def column(self, feature: int) -> int:
        """The input column of the model's feature ``feature``."""
        return int(self.order[feature])

    def raw(self, feature: int, codes: set[int]) -> list[float]:
        """The raw values of ``codes`` of a categorical feature, sorted."""
        values = self.values.get(feature)
        return sorted(float(c) if values is None else float(values[c]) for c in codes)


class _HistTree:
    """One HistGradientBoosting predictor: numeric splits, categorical ones by bitsets."""

    def __init__(self, predictor: Any, codes: _HistCodes) -> None:
        nodes = predictor.nodes
        self.nodes, self.bitsets, self.codes = nodes, predictor.raw_left_cat_bitsets, codes
        self.left, self.right = nodes["left"], nodes["right"]
        self.missing_left = nodes["missing_go_to_left"]

    def is_leaf(self, node: int) -> bool:
        return bool(self.nodes["is_leaf"][node])

    def split(self, node: int) -> tuple[int, float, list[float] | None, bool]:
        rec = self.nodes[node]
        feature = int(rec["feature_idx"])
        column = self.codes.column(feature)
        if not rec["is_categorical"]:
            return column, float(rec["num_threshold"]), None, True
        left = _bits(self.bitsets[rec["bitset_idx"]])
        known = _bits(self.codes.known[self.codes.f_idx_map[feature]])
        # Unknown categories and NaN go where missing values go, so test membership in the
        # known categories of the *other* side.
        if rec["missing_go_to_left"]:
            return column, 0.0, self.codes.raw(feature, known - left), False
        return column, 0.0, self.codes.raw(feature, left & known), True


def _bits(bitset: np.ndarray) -> set[int]:
    return {
        32 * i + b for i, word in enumerate(bitset.tolist()) for b in range(32) if word >> b & 1
    }


@dataclass
class _Ensemble:
    """The attributes of one TreeEnsemble node, gathered tree by tree."""

    targets: int
    feature: list[int] = field(default_factory=list)
    split: list[float] = field(default_factory=list)
    mode: list[int] = field(default_factory=list)
    true_id: list[int] = field(default_factory=list)
    true_leaf: list[int] = field(default_factory=list)
    false_id: list[int] = field(default_factory=list)
    false_leaf: list[int] = field(default_factory=list)
    missing_true: list[int] = field(default_factory=list)
    members: list[float] = field(default_factory=list)
    roots: list[int] = field(default_factory=list)
    leaf_target: list[int] = field(default_factory=list)
    leaf_weight: list[float] = field(default_factory=list)

    def add(self, tree: _SklearnTree | _HistTree, target: int, weights: np.ndarray) -> None:
        """Add one tree contributing ``weights[leaf]`` to ``target``."""
        if tree.is_leaf(0):  # a lone leaf: one node whose branches both reach it
            leaf = self._leaf(target, float(weights[0]))
            self.roots.append(self._node(0, _LT, -np.inf, (leaf, 1), (leaf, 1), 0))
            return
        interior = [n for n in range(len(tree.left)) if not tree.is_leaf(n)]
        base = len(self.feature)
        index = {n: base + i for i, n in enumerate(interior)}
        leaves: dict[int, int] = {}

        def child(n: int) -> tuple[int, int]:
            if n in index:
                return index[n], 0
            if n not in leaves:
                leaves[n] = self._leaf(target, float(weights[n]))
            return leaves[n], 1

        for n in interior:
            feature, threshold, members, member_is_left = tree.split(n)
            left, right = child(int(tree.left[n])), child(int(tree.right[n]))
            missing_left = int(tree.missing_left[n])
            if members is None:
                self._node(feature, _LEQ, threshold, left, right, missing_left)
                continue
            true, false = (left, right) if member_is_left else (right, left)
            if members:
                self.members += [*members, np.nan]
                self._node(feature, _MEMBER, 0.0, true, false, 0)
            else:  # no known category on the tested side: every value takes the other
                self._node(feature, _LT, -np.inf, true, false, 0)
        self.roots.append(index[0])

    def _leaf(self, target: int, weight: float) -> int:
        self.leaf_target.append(target)
        self.leaf_weight.append(weight)
        return len(self.leaf_weight) - 1

    def _node(
        self,
        feature: int,
        mode: int,
        split: float,
        true: tuple[int, int],
        false: tuple[int, int],
        missing_true: int,
    ) -> int:
        self.feature.append(feature)
        self.mode.append(mode)
        self.split.append(split)
        self.true_id.append(true[0])
        self.true_leaf.append(true[1])
        self.false_id.append(false[0])
        self.false_leaf.append(false[1])
        self.missing_true.append(missing_true)
        return len(self.feature) - 1

    def attributes(self) -> dict[str, Any]:
        """Keyword arguments of the TreeEnsemble node."""
        from onnx import numpy_helper

        def tensor(values: Sequence[float], dtype: Any) -> Any:
            return numpy_helper.from_array(np.asarray(values, dtype=dtype))

        attrs = {
            "aggregate_function": _SUM,
            "post_transform": 0,
            "n_targets": self.targets,
            "tree_roots": self.roots,
            "nodes_featureids": self.feature,
            "nodes_splits": tensor(self.split, np.float64),
            "nodes_modes": tensor(self.mode, np.uint8),
            "nodes_truenodeids": self.true_id,
            "nodes_trueleafs": self.true_leaf,
            "nodes_falsenodeids": self.false_id,
            "nodes_falseleafs": self.false_leaf,
            "nodes_missing_value_tracks_true": self.missing_true,
            "leaf_targetids": self.leaf_target,
            "leaf_weights": tensor(self.leaf_weight, np.float64),
        }
        if self.members:
            attrs["membership_values"] = tensor(self.members, np.float64)
        return attrs


class _Graph:
    """Adds nodes and constants to skl2onnx's container under unique names."""

    def __init__(self, scope: Any, container: Any) -> None:
        self.scope, self.container = scope, container

    def node(
        self, op: str, inputs: list[str], *, out: str | None = None, domain: str = "", **attrs: Any
    ) -> str:
        name = out or self.scope.get_unique_variable_name(op.lower())
        version = OPSETS.get(domain) if domain else None
        self.container.add_node(
            op,
            inputs,
            [name],
            op_domain=domain,
            op_version=version,
            name=self.scope.get_unique_operator_name(op),
            **attrs,
        )
        return name

    def const(self, value: Any) -> str:
        from onnx import numpy_helper

        arr = np.asarray(value)
        if arr.dtype.kind == "f":
            arr = arr.astype(np.float64)
        elif arr.dtype.kind in "iu":
            arr = arr.astype(np.int64)
        name = self.scope.get_unique_variable_name("c")
        tensor = numpy_helper.from_array(arr, name)
        self.container.add_initializer(name, tensor.data_type, list(arr.shape), _flat(arr))
        return name


def _flat(arr: np.ndarray) -> list[Any]:
    if arr.dtype.kind in "US":
        return [s.encode() for s in arr.ravel().tolist()]
    return arr.ravel().tolist()
