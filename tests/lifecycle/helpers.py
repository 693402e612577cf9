"""Helpers shared by the lifecycle tests: data, a pipeline, and versions of ``fraud``."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler


def frame(n: int, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """Transactions where 10% of rows come from a small country, with a learnable target."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(
        {
            "amount": rng.lognormal(3, 1, n).round(2),
            "hour": rng.integers(0, 24, n),
            "merchant": rng.choice(["grocery", "travel", "gaming"], n),
            "country": rng.choice(["US", "GB", "NG"], n, p=[0.45, 0.45, 0.10]),
        }
    )
    logit = 0.03 * X["amount"].to_numpy() - 1.5 + (X["merchant"] == "gaming") * 2.0
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return X, y


def pipeline() -> Pipeline:
    pre = ColumnTransformer(
        [
            ("num", StandardScaler(), ["amount", "hour"]),
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["merchant", "country"]),
        ]
    )
    return Pipeline([("pre", pre), ("model", LogisticRegression(max_iter=500))])


class Models:
    """Registers versions of model ``fraud`` trained on shared data."""

    def __init__(self, registry):
        self.registry = registry
        self.X, self.y = frame(6000)
        self.train, self.val, self.hold = slice(0, 3000), slice(3000, 4000), slice(4000, 6000)

    def register(self, *, labels=None, rows=None, alias=None, **options):
        X, y = self.X.iloc[self.train], self.y[self.train] if labels is None else labels
        if rows is not None:
            X, y = X.loc[rows(X)], y[rows(X).to_numpy()]
        pipe = pipeline().fit(X, y)
        # The pipeline ignores unknown categories, so registration would flag them; these
        # tests gate candidates that refuse them unless they ask for "flag".
        options.setdefault("unseen", "reject")
        return self.registry.register(
            pipe,
            "fraud",
            X,
            y,
            X_val=self.X.iloc[self.val],
            y_val=self.y[self.val],
            alias=alias,
            **options,
        )

    def holdout(self) -> pd.DataFrame:
        return self.X.iloc[self.hold].assign(is_fraud=self.y[self.hold])
