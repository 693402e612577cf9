"""Online enrichment: equal to training_frame on both databases, one path, skew guard, audit."""

from __future__ import annotations

import importlib
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest

import slipway
import slipway.features as sf
from slipway.exceptions import ContractViolation, FeatureSkew
from slipway.features.audit import audit
from slipway.predict import Model
from tests.features.helpers import INPUTS, START, requests


def test_online_values_equal_offline_for_random_entities_and_times(registry, feature_model):
    """Counts exactly, means to 1e-9: Model.predict's features equal training_frame's."""
    fm = feature_model(registry)
    rng = np.random.default_rng(7)
    cards = [*fm.events.card_id.unique()[:30], "never_seen"]
    rows = pd.DataFrame(
        {
            "card_id": rng.choice(cards, 200),
            "ts": START + pd.to_timedelta(rng.integers(0, 65 * 86_400_000_000, 200), unit="us"),
            "amount": rng.lognormal(3, 1, 200).round(2),
        }
    )
    offline = sf.training_frame(rows, fm.features, at="ts", store=registry.store)
    model = registry.load("fraud")
    online = model.score(requests(rows)).features
    np.testing.assert_array_equal(online["txn_count_30d"], offline.txn_count_30d.to_numpy())
    for name in ("avg_amount_7d", "max_amount_1d", "amount_vs_avg"):
        np.testing.assert_allclose(online[name], offline[name].to_numpy(), rtol=1e-9, atol=1e-9)
    assert (online["txn_count_30d"][rows.card_id.to_numpy() == "never_seen"] == 0).all()


def test_one_path_model_predict_batch_and_http_agree(registry, feature_model, tmp_path):
    """Model.predict, slipway.score (batch) and the HTTP service give the same answers."""
    from fastapi.testclient import TestClient

    from slipway.app import create_app
    from slipway.keys import KeyStore

    fm = feature_model(registry)
    rows = fm.events.sample(20, random_state=4)
    body = requests(rows)
    model = registry.load("fraud")
    direct = model.predict_proba(body)[:, 1]
    frame = pd.DataFrame(body)
    batch = slipway.score(model, frame).predictions["proba:1"].to_numpy()
    np.testing.assert_array_equal(direct, batch)
    token = KeyStore(registry.store).create("k", "predict")[1]
    app = create_app(registry.settings, registry=registry)
    with TestClient(app) as client:
        answer = client.post(
            "/v1/models/fraud/predict",
            json={"instances": body},
            headers={"Authorization": f"Bearer {token}"},
        )
    assert answer.status_code == 200, answer.text
    served = [p["probabilities"]["1"] for p in answer.json()["predictions"]]
    np.testing.assert_allclose(served, direct, rtol=0, atol=1e-5)  # the service answers with ONNX


def test_requests_need_the_entity_key_and_time(registry, feature_model):
    """A row without the key or the time is a contract violation naming the field."""
    feature_model(registry)
    model = registry.load("fraud")
    with pytest.raises(ContractViolation) as err:
        model.predict(
            [{"amount": 5.0, "ts": "2026-02-01T00:00:00Z"}, {"card_id": "c1", "amount": 5.0}]
        )
    problems = {(p.row, p.field, p.code) for p in err.value.problems}
    assert problems == {(0, "card_id", "missing_field"), (1, "ts", "missing_field")}


def test_recorded_requests_become_events_seen_by_later_rows(registry, feature_model):
    """With record_events, a batch's earlier rows count for its later rows and are stored."""
    feature_model(registry, record_events=True)
    model = registry.load("fraud", record_events=True)
    t0 = START + pd.Timedelta(days=80)
    hours = pd.to_timedelta([0, 1, 2], unit="h")
    rows = pd.DataFrame(
        {"card_id": ["new_card"] * 3, "ts": t0 + hours, "amount": [10.0, 20.0, 30.0]}
    )
    got = model.score(requests(rows)).features["txn_count_30d"]
    assert got.tolist() == [0, 1, 2]
    again = registry.load("fraud").score(requests(rows.iloc[[2]])).features
    assert again["txn_count_30d"].tolist() == [2] and again["avg_amount_7d"].tolist() == [15.0]


def test_an_event_ingested_elsewhere_after_a_read_is_in_the_next_request(registry, feature_model):
    """Freshness: an event committed through another engine (another worker or replica) after
    a loaded model's read is in that same model's next answer; nothing is served stale."""
    from slipway.features.ingest import ingest
    from slipway.store import Store

    fm = feature_model(registry)
    model = registry.load("fraud")
    row = pd.DataFrame({"card_id": ["c001"], "ts": [START + pd.Timedelta(days=61)],
                        "amount": [5.0]})  # fmt: skip
    before = model.score(requests(row)).features
    other = Store(str(registry.store.engine.url.render_as_string(hide_password=False)))
    try:
        late = pd.DataFrame({"event_id": ["late-1"], "card_id": ["c001"],
                             "ts": [START + pd.Timedelta(days=60, hours=23)],
                             "amount": [1000.0], "merchant": ["travel"]})  # fmt: skip
        ingest(other, late, fm.source)
    finally:
        other.dispose()
    after = model.score(requests(row)).features
    assert after["txn_count_30d"].tolist() == [before["txn_count_30d"][0] + 1]
    assert after["max_amount_1d"].tolist() == [1000.0]


def test_skew_guard_refuses_changed_feature_code_or_warns(registry, tmp_path, monkeypatch):
    """Importable definitions that differ from the registered ones are refused, naming them."""
    module = tmp_path / "skewmod.py"
    body = textwrap.dedent(
        """
        import numpy as np
        import slipway.features as sf
        tx = sf.EventSource("transactions", entity="card_id", timestamp="ts")
        card = sf.FeatureSet("card", entity="card_id", features=[
            sf.Aggregate("avg_amount_7d", tx, "mean", column="amount", window="WINDOW",
                         fillna=FILL),
        ])
        @sf.row_feature
        def double(amount):
            return amount * 2
        """
    )
    monkeypatch.syspath_prepend(str(tmp_path))

    def write(window="7d", fill="0.0"):
        module.write_text(body.replace("WINDOW", window).replace("FILL", fill))
        sys.modules.pop("skewmod", None)
        importlib.invalidate_caches()
        return importlib.import_module("skewmod")

    mod = write()
    train = pd.DataFrame({"card_id": ["a", "b"] * 10, "ts": [START] * 20,
                          "amount": np.arange(20.0)})  # fmt: skip
    train = sf.training_frame(train, [mod.card, mod.double], at="ts", store=registry.store)
    from sklearn.linear_model import LinearRegression

    pipe = LinearRegression().fit(train[["amount", "avg_amount_7d", "double"]], train.amount)
    registry.register(pipe, "skewed", train, train.amount, features=[mod.card, mod.double])
    assert isinstance(registry.load("skewed"), Model)
    write(window="3d")
    with pytest.raises(FeatureSkew, match=r"avg_amount_7d \(window '7d' -> '3d'\)"):
        registry.load("skewed")
    write(fill="1.0")
    with pytest.raises(FeatureSkew, match="fillna 0.0 -> 1.0"):
        registry.load("skewed")
    warned = registry.__class__(registry.settings.model_copy(update={"feature_skew": "warn"}))
    with pytest.warns(UserWarning, match="Serving anyway"):
        warned.load("skewed")


@pytest.mark.parametrize("change", ["window", "fillna"])
def test_audit_is_clean_on_honest_traffic_and_finds_a_planted_skew(registry, feature_model, change):
    """Honest served features audit clean; a changed window or fillna is found and named."""
    from slipway.clock import utcnow
    from slipway.serving.answering import loggable
    from slipway.serving.log import Entry, PredictionLog

    fm = feature_model(registry)
    sample = fm.events.sample(50, random_state=5)
    sample.loc[sample.index[:5], "card_id"] = "new_card"  # no events: fillna decides
    rows = requests(sample)
    honest = registry.load("fraud")
    log = PredictionLog(registry.store)

    def serve(model):
        p = model.score(rows)
        ids = [
            f"{model.name}-{i}-{np.random.default_rng().integers(1e12)}" for i in range(len(rows))
        ]
        log.put(Entry(ids, utcnow(), "fraud", 1, model.contract.names, rows,
                      p.records(), 1.0, features=loggable(p)))  # fmt: skip
        log.start()
        assert log.flush()

    serve(honest)
    clean = audit(registry.store, "fraud", lambda v: registry.get(f"fraud:{v}"))
    assert clean.status == "ok" and clean.rows == 50 and clean.exit_code == 0
    assert {f.name for f in clean.features} == {*INPUTS[1:]}
    # serving computed with changed definitions: the audit compares with the registered ones
    from tests.features.helpers import definitions

    window, fillna = ("3d", 0.0) if change == "window" else ("7d", -1.0)
    changed = sf.resolve(definitions(fm.source, window=window, fillna=fillna))
    skewed = Model(honest.pipeline, honest.version, enricher=honest.enricher)
    honest.enricher.defs = changed  # type: ignore[union-attr]
    serve(skewed)
    log.close()
    found = audit(registry.store, "fraud", lambda v: registry.get(f"fraud:{v}"))
    bad = {f.name: f.mismatches for f in found.features if f.mismatches}
    assert found.status == "skew" and found.exit_code == 2 and found.rows == 100
    assert "avg_amount_7d" in bad and "txn_count_30d" not in bad
    assert found.features[1].examples[0]["served"] != found.features[1].examples[0]["offline"]


@pytest.mark.parametrize("record", [False, True])
def test_a_driver_error_while_reading_events_is_features_unavailable(
    registry, feature_model, monkeypatch, record
):
    """The database driver failing mid-read (its own OperationalError, raised on its cursor)
    is FeaturesUnavailable (503, retry), with or without recording, never a raw driver error."""
    from slipway.exceptions import FeaturesUnavailable
    from slipway.store import features as store_features

    feature_model(registry, record_events=record)
    model = registry.load("fraud", record_events=record)
    dbapi = registry.store.engine.dialect.loaded_dbapi

    def lost(*args, **kwargs):
        raise dbapi.OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(store_features, "_read_window", lost)
    row = pd.DataFrame({"card_id": ["c001"], "ts": [START + pd.Timedelta(days=61)],
                        "amount": [5.0]})  # fmt: skip
    with pytest.raises(FeaturesUnavailable, match="fraud: the feature events cannot be read"):
        model.score(requests(row))


def test_a_file_with_text_where_numbers_are_read_is_refused_whole(registry, feature_model):
    """Ingesting events whose averaged column holds text raises naming the column and a value,
    and stores none of the file; a later registration reading another column as numbers adds
    it to the source's record without dropping ``amount``."""
    from slipway.exceptions import FeatureDefinitionError
    from slipway.features.ingest import ingest, numeric_columns
    from slipway.store.features import event_stats, save_source

    fitted = feature_model(registry, n=600)
    before = event_stats(registry.store, "transactions")
    events = fitted.events.head(3).assign(
        event_id=["n1", "n2", "n3"], amount=pd.array([1.5, "oops", None], dtype=object)
    )
    with pytest.raises(FeatureDefinitionError, match=r"'amount'.*'oops' \(1 such values\)"):
        ingest(registry.store, events, "transactions")
    assert event_stats(registry.store, "transactions") == before
    assert numeric_columns(registry.store, "transactions") == ("amount",)
    save_source(registry.store, {**fitted.source.to_record(), "numeric": ["fee"]})
    assert numeric_columns(registry.store, "transactions") == ("amount", "fee")
