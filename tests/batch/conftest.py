"""Batch fixtures: a registered model, input files with planted bad rows, and their outcome."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from slipway.config import Settings
from slipway.registry import Registry
from tests.batch.helpers import input_frame


@pytest.fixture
def local_registry(tmp_path: Path):
    """A SQLite registry for tests that do not depend on the database backend."""
    reg = Registry(Settings(home=tmp_path / "local-home", user="tester"))
    yield reg
    reg.store.dispose()


@pytest.fixture
def make_model(make_fitted: Any):
    """Factory: ``make_model(registry, kind="frame")`` registers a fitted pipeline, loads it."""

    def make(registry: Registry, kind: str = "frame", name: str = "fraud") -> Any:
        fitted = make_fitted(kind)
        # unseen="reject": the planted unseen merchant must be a reject, although the
        # pipeline ignores unknown categories (registration would otherwise flag them).
        mv = registry.register(
            fitted.pipeline, name, fitted.X_train, fitted.y_train, unseen="reject"
        )
        return registry.load(mv.ref)

    return make


@pytest.fixture
def make_input(tmp_path: Path):
    """Factory: ``make_input(fmt, n, files=1)`` writes inputs; returns (path, whole frame).

    With ``files > 1`` the path is a directory of ``files`` parts that read back, in order,
    as the returned frame.
    """

    def make(
        fmt: str = "parquet", n: int = 2_000, *, files: int = 1, seed: int = 1, bad: bool = True
    ) -> tuple[Path, pd.DataFrame]:
        frame = input_frame(n, seed, bad=bad)
        folder = tmp_path / f"input-{fmt}-{n}-{files}-{seed}-{bad}"
        folder.mkdir()
        pieces = np.array_split(np.arange(n), files)
        for i, rows in enumerate(pieces):
            part = frame.iloc[rows]
            target = folder / f"part-{i:02d}.{fmt}"
            if fmt == "parquet":
                part.to_parquet(target, index=False)
            else:
                part.to_csv(target, index=False)
        return (folder if files > 1 else folder / f"part-00.{fmt}"), frame

    return make
