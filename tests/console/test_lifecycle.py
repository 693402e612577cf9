"""The lifecycle in the console: stored gate results on the models, model and version pages,
and estimated performance beside realized performance on the monitoring page."""

from __future__ import annotations

import json
import re
from html import unescape
from html.parser import HTMLParser

from sklearn.base import clone

from slipway.console.charts import DISAGREES, ESTIMATED, REALIZED
from slipway.console.web import number
from slipway.lifecycle import CheckPolicy, check
from slipway.monitoring import Monitor

FAST = {"resamples": 200, "speed": {"repeats": 5, "max_slowdown": 1000.0}}


class _Tables(HTMLParser):
    """Every table of a page: its id (or caption) -> rows of cell texts (header row included)."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self._rows: list[list[str]] | None = None
        self._key = ""
        self._cell: list[str] | None = None
        self._caption: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table":
            self._rows, self._key = [], a.get("id") or a.get("data-check") or ""
        elif tag == "tr" and self._rows is not None:
            self._rows.append([])
        elif tag in ("td", "th") and self._rows is not None:
            self._cell = []
        elif tag == "caption":
            self._caption = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None and self._rows is not None:
            self._rows[-1].append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "caption" and self._caption is not None:
            if not self._key:
                self._key = " ".join("".join(self._caption).split())
            self._caption = None
        elif tag == "table" and self._rows is not None:
            key, n = self._key, 2
            while key in self.tables:
                key, n = f"{self._key} #{n}", n + 1
            self.tables[key] = self._rows
            self._rows = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)
        if self._caption is not None:
            self._caption.append(data)


def tables(html: str) -> dict[str, list[list[str]]]:
    """The page's tables by id (else data-check, else caption)."""
    parser = _Tables()
    parser.feed(html)
    return parser.tables


def charts(html: str) -> list[dict]:
    """The chart specs a page carries in its data-chart attributes."""
    return [json.loads(unescape(m)) for m in re.findall(r"data-chart='([^']*)'", html)]


def _holdout(fitted):
    frame = fitted.X_val.copy()
    frame["is_fraud"] = fitted.y_val
    return frame


def _checked(ui):
    """fraud:2 (production fraud:1's pipeline fitted on fewer rows) checked twice, failing then
    passing, and fraud:1 checked against no champion; returns the three results in order."""
    f = ui.fitted
    X, y = f.X_train.iloc[:300], f.y_train[:300]
    ui.registry.register(clone(f.pipeline).fit(X, y), "fraud", X, y, X_val=f.X_val, y_val=f.y_val)
    slow = CheckPolicy.model_validate({**FAST, "speed": {"repeats": 5, "max_row_ms": 1e-6}})
    fast = CheckPolicy.model_validate(FAST)
    first = check(ui.registry, "fraud:2", data=_holdout(f), policy=slow)
    second = check(ui.registry, "fraud:2", data=_holdout(f), policy=fast)
    third = check(ui.registry, "fraud:1", against=None, data=_holdout(f), policy=fast)
    assert (first.passed, second.passed, third.passed) == (False, True, True)
    return first, second, third


def test_models_table_shows_the_newest_check_of_each_model(ui_any):
    """The models table's 'latest check' cell is the model's newest stored check: its
    version, verdict, champion and time, linking to that version (SQLite and PostgreSQL)."""
    ui_any.login()
    before = tables(ui_any.client.get("/ui").text)["models"]
    column = before[0].index("latest check")
    assert before[1][column] == "not checked"
    _first, _second, third = _checked(ui_any)
    html = ui_any.client.get("/ui").text
    row = tables(html)["models"][1]
    stamp = f"{third.created_at:%Y-%m-%d %H:%M} UTC"
    assert row[column] == f"version 1: pass against no champion, {stamp}"
    assert 'href="/ui/models/fraud/versions/1">version 1: pass' in html


def test_model_page_lists_the_newest_check_of_each_version(ui_any):
    """The model page's gate checks: one row per checked version, its newest result, the
    champion it was compared with and the failed checks (SQLite and PostgreSQL)."""
    ui_any.login()
    assert "Gate checks" not in ui_any.client.get("/ui/models/fraud").text
    _first, second, _third = _checked(ui_any)
    rows = tables(ui_any.client.get("/ui/models/fraud").text)["checks"]
    assert rows[0][:4] == ["version", "result", "against", "failed checks"]
    assert [r[:4] for r in rows[1:]] == [
        ["2", "pass", "fraud:1", "-"],
        ["1", "pass", "no champion", "-"],
    ]
    assert rows[1][4] == f"{second.holdout['rows']:,}"


def test_version_page_lists_each_check_with_its_verdict_and_numbers(ui):
    """The version page shows the newest check: each check's verdict and sentence as stored,
    the metric numbers as stored, and the earlier (failed) check below."""
    ui.login()
    first, second, _ = _checked(ui)
    html = ui.client.get("/ui/models/fraud/versions/2").text
    verdict = re.search(r'<p id="check-verdict">(.*?)</p>', html, re.S)[1]
    assert ">pass</span>" in verdict and "fraud:1" in verdict
    assert f"check {second.id}" in verdict and f"{second.holdout['rows']:,} holdout rows" in verdict
    found = tables(html)
    stored = second.to_dict()["checks"]
    assert [r for r in found["check-results"][1:]] == [
        [c["name"], c["verdict"], " ".join(c["summary"].split())] for c in stored
    ]
    metrics = next(c for c in stored if c["name"] == "metrics")["details"]["metrics"]
    shown = {r[0].rstrip(" *"): r for r in found["metrics"][1:]}
    assert set(shown) == set(metrics)
    assert any(m["candidate"] != m["champion"] for m in metrics.values())
    for name, m in metrics.items():
        assert shown[name][1:4] == [number(m[k]) for k in ("candidate", "champion", "difference")]
        assert shown[name][5] == m["verdict"]
    speed = next(c for c in stored if c["name"] == "speed")["details"]
    assert found["speed"][1][:3] == ["candidate", number(speed["candidate"]["row_ms"]),
                                     number(speed["candidate"]["batch_1000_ms"])]  # fmt: skip
    earlier = found["earlier-checks"]
    assert [r[:3] for r in earlier[1:]] == [[str(first.id), "fail", "fraud:1"]]


def test_an_unchecked_version_says_how_to_check_it(ui):
    """Before any check the version page names the command (a check that could not run
    stores nothing), and the models table says 'not checked'."""
    ui.login()
    html = ui.client.get("/ui/models/fraud/versions/1").text
    assert "Not checked yet" in html and "slipway check fraud:1" in html
    assert 'id="check-results"' not in html


def _monitor(ui, flip: bool):
    """Serve the validation rows, send their labels (flipped: a planted concept shift), run
    the monitor; returns the stored report and the page's performance charts."""
    rows = ui.fitted.X_val.to_dict("records")
    auth = {"Authorization": f"Bearer {ui.keys['predict']}"}
    answer = ui.client.post("/v1/models/fraud/predict", json={"instances": rows}, headers=auth)
    ids = [p["prediction_id"] for p in answer.json()["predictions"]]
    labels = [int(1 - y if flip else y) for y in ui.fitted.y_val]
    body = {
        "feedback": [{"prediction_id": i, "label": y} for i, y in zip(ids, labels, strict=True)]
    }
    assert ui.client.post("/v1/feedback", json=body, headers=auth).status_code == 200
    Monitor(ui.registry, sinks=[]).run("fraud")
    report = Monitor(ui.registry, sinks=[]).latest("fraud")
    html = ui.client.get("/ui/monitoring/fraud").text
    lines = {s["metric"]: s for s in charts(html) if s["kind"] == "lines"}
    return report, lines, html


def test_estimated_performance_is_drawn_beside_realized_with_its_band(make_console):
    """Each estimated metric of each window is on the chart with the report's value and band,
    beside the realized value; no disagreement marker when the labels follow the model."""
    ui = make_console(serve_backend="sklearn")
    ui.login()
    report, lines, html = _monitor(ui, flip=False)
    windows = [*report.get("history", []), *report["windows"]]
    estimated = [(i, w["estimation"]) for i, w in enumerate(windows)
                 if (w.get("estimation") or {}).get("status") == "ok"]  # fmt: skip
    assert estimated, "the monitor estimated nothing"
    names = set(estimated[-1][1]["metrics"])
    assert {"accuracy", "roc_auc"} <= names <= set(lines)
    for name in names:
        series = {s["label"]: s for s in lines[name]["series"]}
        assert list(series)[:2] == [REALIZED, ESTIMATED] and DISAGREES not in series
        line = series[ESTIMATED]
        for i, est in estimated:
            m = est["metrics"][name]
            assert (line["values"][i], line["low"][i], line["high"][i]) == (
                m["value"], m["low"], m["high"])  # fmt: skip
        assert sum(v is not None for v in line["values"]) == len(estimated)
    assert "realized and estimated" in lines["accuracy"]["title"]
    realized = {s["label"]: s for s in lines["accuracy"]["series"]}[REALIZED]
    assert realized["values"][estimated[-1][0]] is not None
    assert 'id="disagreements"' not in html and "no concept shift" in html


def test_realized_outside_the_band_is_marked_as_concept_drift(make_console):
    """Labels that no longer follow the probabilities (flipped): the window gets a marker at
    the realized value and a line naming realized, the estimate and its band."""
    ui = make_console(serve_backend="sklearn")
    ui.login()
    report, lines, html = _monitor(ui, flip=True)
    windows = [*report.get("history", []), *report["windows"]]
    i, est = next((i, w["estimation"]) for i, w in enumerate(windows)
                  if (w.get("estimation") or {}).get("status") == "ok")  # fmt: skip
    labeled = est["labeled"]["metrics"]["accuracy"]
    assert labeled["agrees"] is False
    series = {s["label"]: s for s in lines["accuracy"]["series"]}
    marks = series[DISAGREES]
    assert marks["points"] is True
    assert marks["values"][i] == labeled["realized"]
    assert sum(v is not None for v in marks["values"]) == 1
    agreeing = [n for n, m in est["labeled"]["metrics"].items() if m["agrees"]]
    for name in agreeing:
        assert DISAGREES not in {s["label"] for s in lines[name]["series"]}
    e = labeled["estimated"]
    item = re.search(r'<ul class="reasons" id="disagreements">(.*?)</ul>', html, re.S)[1]
    assert (
        f"accuracy: realized {number(labeled['realized'])} outside the estimate's band "
        f"{number(e['low'])}–{number(e['high'])} (estimated {number(e['value'])}"
    ) in unescape(item)
