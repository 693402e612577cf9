"""Features: one definition for training, batch and serving, point-in-time correct.

Define event sources, windowed aggregates and row features once::

    import slipway.features as sf

    transactions = sf.EventSource("transactions", entity="card_id", timestamp="ts")
    card = sf.FeatureSet("card", entity="card_id", features=[
        sf.Aggregate("txn_count_30d", transactions, "count", window="30d"),
    ])

then ``sf.training_frame(labels, [card], at="ts")`` computes them without leakage for
training, and a version registered with ``features=[card]`` computes them, with the same
engine, for every request, batch row and ``Model.predict`` call. Modules: ``definitions``
(the nouns, checks, code hash), ``engine`` (the point-in-time computation), ``sources``
(reading events), ``offline`` (:func:`training_frame`), ``distributed`` (the Dask path),
``online`` (enrichment from the store), ``records`` (the skew guard), ``versions``
(registration and loading), ``ingest`` (events into the store), ``audit`` (the skew audit).
"""

from __future__ import annotations

from slipway.features.definitions import (
    AGGREGATIONS,
    Aggregate,
    Definitions,
    EventSource,
    FeatureSet,
    RowFeature,
    resolve,
    row_feature,
)
from slipway.features.offline import training_frame

__all__ = [
    "AGGREGATIONS",
    "Aggregate",
    "Definitions",
    "EventSource",
    "FeatureSet",
    "RowFeature",
    "resolve",
    "row_feature",
    "training_frame",
]
