"""Batch outputs as a monitoring source: ``slipway monitor --source batch[:RUN_ID]``.

A batch run that kept its inputs (``slipway batch --keep-inputs``, database output) is
checked like served traffic: each scored row is a prediction made when its chunk was scored,
with the inputs it was scored on. The store gives the rows as the prediction log's JSON lines
(:func:`slipway.store.batch.kept_lines`), so they are parsed and checked exactly like the log.
Labels sent to ``/v1/feedback`` by a row's key (``{"model", "batch_key", "label"}``) join their
rows as feedback joins the log, so performance is realized performance on the labeled rows;
rows a run rejected count as refused requests.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

import pandas as pd
import pyarrow as pa

from slipway.exceptions import ConfigError
from slipway.monitoring.log import LogSchema, parse, prefetched
from slipway.monitoring.sources import _FromTables
from slipway.store import Store
from slipway.store import batch as tables


@dataclass
class BatchOutputs(_FromTables):
    """The kept inputs and predictions of a model's batch runs (or of one run)."""

    store: Store
    run_id: str | None = None

    def runs(self, model: str) -> list[tables.KeptRun]:
        """The runs read, oldest first; refuses when there is none, with the way to get one."""
        found = tables.runs_with_inputs(self.store, model, self.run_id)
        if not found:
            which = (
                f"Batch run {self.run_id!r} of {model}"
                if self.run_id
                else f"No batch run of {model}"
            )
            verb = " did not keep its inputs" if self.run_id else " kept its inputs"
            raise ConfigError(
                f"{which}{verb} in the database: score with `slipway batch {model} INPUT "
                "--keep-inputs` (output db), then run `slipway monitor "
                f"{model} --source batch`."
            )
        return found

    def tables(
        self, schema: LogSchema, model: str, start: datetime, end: datetime, labels: bool
    ) -> Iterator[pa.Table]:
        """The runs' rows as tables of the log's columns; with ``labels``, only the rows that
        have a label sent by their key, with it."""
        self.runs(model)
        blocks = tables.kept_lines(self.store, model, start, end, self.run_id, labels=labels)
        for block in prefetched(blocks, 2):
            yield parse(block, schema, labels=labels, details=False)

    def refusals(self, model: str, start: datetime, end: datetime) -> pd.DataFrame:
        """Rows the runs rejected, each a refused request at the time its run started."""
        ids = [r.run_id for r in self.runs(model)]
        rows = [(at, 1, problems) for at, problems in tables.kept_rejects(self.store, ids)]
        return pd.DataFrame(rows, columns=["created_at", "rows", "problems"])
