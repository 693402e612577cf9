"""`slipway features ingest|materialize|audit`."""

from __future__ import annotations

import json

import slipway.features as sf
from slipway.registry import Registry
from tests.cli_helpers import run_cli
from tests.features.helpers import history


def test_ingest_is_idempotent_and_names_unknown_sources(capsys, env, tmp_path):
    """A file ingested twice adds its events once; a new source needs its columns."""
    path = tmp_path / "events.csv"
    history(200).to_csv(path, index=False)
    new = ["--entity", "card_id", "--timestamp", "ts", "--id", "event_id", "--json"]
    first = run_cli(capsys, "features", "ingest", str(path), "--source", "tx", *new)
    assert first.code == 0, first.err
    assert json.loads(first.out) == {"source": "tx", "received": 200, "inserted": 200,
                                     "duplicates": 0}  # fmt: skip
    again = run_cli(capsys, "features", "ingest", str(path), "--source", "tx")
    assert again.code == 0 and "0 new, 200 already stored" in again.out
    unknown = run_cli(capsys, "features", "ingest", str(path), "--source", "other")
    assert unknown.code == 1 and "No event source named 'other'" in unknown.err


def test_materialize_copies_new_parquet_events_then_audit_exit_codes(capsys, env, tmp_path):
    """A Parquet source is copied into the store (new events only); audit exits 3 then 0."""
    from sklearn.linear_model import LinearRegression

    events = history(400)
    events.iloc[:300].to_parquet(tmp_path / "part1.parquet")
    source = sf.EventSource(str(tmp_path / "*.parquet"), entity="card_id", timestamp="ts",
                            name="tx", id="event_id")  # fmt: skip
    n = sf.Aggregate("n_7d", source, "count", window="7d")
    rows = events.sample(50, random_state=0)[["card_id", "ts", "amount"]]
    train = sf.training_frame(rows, [n], at="ts")
    registry = Registry(env)
    pipe = LinearRegression().fit(train[["amount", "n_7d"]], train.amount)
    registry.register(pipe, "spend", train, train.amount, features=[n], alias="production")
    done = run_cli(capsys, "features", "materialize", "spend", "--json")
    assert done.code == 0, done.err
    assert json.loads(done.out)[0] | {"newest_ts_us": None} == {
        "source": "tx",
        "kind": "parquet",
        "copied": 300,
        "events": 300,
        "newest_ts_us": None,
    }
    events.iloc[300:].to_parquet(tmp_path / "part2.parquet")
    more = json.loads(run_cli(capsys, "features", "materialize", "spend", "--json").out)[0]
    assert more["copied"] == 100 and more["events"] == 400
    nothing = run_cli(capsys, "features", "audit", "spend", "--since", "1h")
    assert nothing.code == 3 and "nothing to audit" in nothing.out
    model = registry.load("spend")
    from slipway.clock import utcnow
    from slipway.serving.answering import loggable
    from slipway.serving.log import Entry, PredictionLog

    body = [{"card_id": r.card_id, "ts": r.ts.isoformat(), "amount": r.amount}
            for r in events.iloc[::40].itertuples()]  # fmt: skip
    p = model.score(body)
    log = PredictionLog(registry.store)
    log.start()
    log.put(Entry([f"p{i}" for i in range(len(body))], utcnow(), "spend", 1,
                  model.contract.names, body, p.records(), 1.0, features=loggable(p)))  # fmt: skip
    assert log.flush()
    log.close()
    clean = run_cli(capsys, "features", "audit", "spend", "--since", "1h", "--json")
    assert clean.code == 0, clean.out
    assert json.loads(clean.out)["rows"] == len(body)
    registry.store.dispose()
