"""A pipeline step for bench/experiments.py's slow shadow candidate (importable by the server).

The step sleeps ``SLIPWAY_BENCH_SLEEP`` seconds per call when that variable is set (in the
server's environment only), so the candidate registers and loads at full speed.
"""

from __future__ import annotations

import os
import time

from sklearn.base import BaseEstimator, TransformerMixin


class Sleep(BaseEstimator, TransformerMixin):
    """Passes rows through, after sleeping ``SLIPWAY_BENCH_SLEEP`` seconds (0 when unset)."""

    def fit(self, X, y=None):
        """Nothing to learn."""
        return self

    def transform(self, X):
        """X, a while later."""
        seconds = float(os.environ.get("SLIPWAY_BENCH_SLEEP", "0"))
        if seconds:
            time.sleep(seconds)
        return X


class Fail(BaseEstimator, TransformerMixin):
    """Raises on every call but the first of each loaded copy (the smoke test at load) when
    ``SLIPWAY_BENCH_FAIL`` is set (in the server's environment only); else passes rows through."""

    def fit(self, X, y=None):
        """Nothing to learn."""
        return self

    def transform(self, X):
        """X the first time, an error every time after."""
        if os.environ.get("SLIPWAY_BENCH_FAIL"):
            self.calls_ = getattr(self, "calls_", 0) + 1
            if self.calls_ > 1:
                raise RuntimeError("bench candidate broken on purpose")
        return X
